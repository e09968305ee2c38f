//! The lab itself: namespaces, veth, traffic helpers, spawned processes and
//! teardown. Needs root (it fails, loudly, without it).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use floodgate_tests::lab::{self, BpfFs, Lab, Ns, sh, traffic};
use nix::sys::signal::Signal;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid address literal")
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("a valid socket address literal")
}

/// The namespaces `ip netns list` shows whose names start with `prefix`.
fn lab_namespaces(prefix: &str) -> Result<Vec<String>> {
    Ok(sh("ip", &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Two namespaces `a` (.1 / ::1) and `b` (.2 / ::2) on one veth, subnet `net`.
fn pair(tag: &str, net: u8) -> Result<(Lab, Ns, Ns, lab::Link)> {
    lab::require_root()?;
    let mut lab = Lab::new(tag)?;
    let a = lab.add_ns("a")?;
    let b = lab.add_ns("b")?;
    let link = lab.link(
        &a,
        &[
            &format!("198.18.{net}.1/24"),
            &format!("fd00:f100:{net}::1/64"),
        ],
        &b,
        &[
            &format!("198.18.{net}.2/24"),
            &format!("fd00:f100:{net}::2/64"),
        ],
    )?;
    Ok((lab, a, b, link))
}

#[test]
fn ping_works_both_ways_over_v4_and_v6() -> Result<()> {
    let (_lab, a, b, link) = pair("ping", 10)?;
    assert!(link.a_if.len().max(link.b_if.len()) <= 15, "IFNAMSIZ");
    assert_ne!(link.a_mac, link.b_mac);
    assert_eq!(a.mac(&link.a_if)?, link.a_mac);
    assert_eq!(b.mac(&link.b_if)?, link.b_mac);
    assert_eq!(traffic::ping(&a, ip("198.18.10.2"), 3)?, 3);
    assert_eq!(traffic::ping(&b, ip("198.18.10.1"), 3)?, 3);
    assert_eq!(traffic::ping(&a, ip("fd00:f100:10::2"), 3)?, 3);
    assert_eq!(traffic::ping(&b, ip("fd00:f100:10::1"), 3)?, 3);
    assert_eq!(
        traffic::ping_from(&a, Some(ip("198.18.10.1")), ip("198.18.10.2"), 2)?,
        2
    );
    // The static neighbour entries are there, so no ARP/ND is needed.
    let neigh = a.ip(&["neigh", "show", "dev", &link.a_if, "nud", "permanent"])?;
    assert!(
        neigh.contains("198.18.10.2") && neigh.contains("fd00:f100:10::2"),
        "{neigh}"
    );
    // Nothing of the lab is visible from the host's namespace.
    assert!(!sh("ip", &["-o", "link", "show"])?.contains(&format!(" {}@", link.a_if)));
    Ok(())
}

#[test]
fn udp_sink_counts_exactly_what_was_sent_per_source() -> Result<()> {
    let (_lab, a, b, link) = pair("udp", 11)?;
    let sink = traffic::UdpSink::bind(&b, sock("198.18.11.2:9000"))?;
    let sink6 = traffic::UdpSink::bind(&b, sock("[fd00:f100:11::2]:9000"))?;
    let sent = traffic::udp_send(
        &a,
        ip("198.18.11.1"),
        sock("198.18.11.2:9000"),
        200,
        64,
        None,
    )?;
    assert_eq!(sent, 200);
    let sent6 = traffic::udp_send(
        &a,
        ip("fd00:f100:11::1"),
        sock("[fd00:f100:11::2]:9000"),
        50,
        64,
        Some(10_000),
    )?;
    assert_eq!(sent6, 50);

    // A /32 secondary on the client is a source of its own (one-way traffic
    // needs no neighbour entry on the peer).
    a.add_addr(&link.a_if, "198.18.11.77/32")?;
    traffic::udp_send(
        &a,
        ip("198.18.11.77"),
        sock("198.18.11.2:9000"),
        30,
        64,
        None,
    )?;

    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    sink6.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    let expected = HashMap::from([(ip("198.18.11.1"), 200), (ip("198.18.11.77"), 30)]);
    assert_eq!(sink.counts(), expected);
    assert_eq!(sink.total(), 230);
    assert_eq!(sink.from(ip("198.18.11.77")), 30);
    assert_eq!(sink6.counts(), HashMap::from([(ip("fd00:f100:11::1"), 50)]));
    Ok(())
}

#[test]
fn many_sources_from_one_batch() -> Result<()> {
    let (_lab, a, b, link) = pair("many", 12)?;
    // 300 sources: 198.18.13.0 – 198.18.14.43 as /32 secondaries, plus a route.
    let sources: Vec<IpAddr> = (0..300u32)
        .map(|i| IpAddr::from([198, 18, 13 + (i / 256) as u8, (i % 256) as u8]))
        .collect();
    let cidrs: Vec<String> = sources.iter().map(|s| format!("{s}/32")).collect();
    a.add_addrs(&link.a_if, &cidrs)?;
    // The replies would need a way back; the sink side does not reply, but the
    // route shows add_route works (v4 and v6).
    b.add_route("198.18.13.0/24", &link.b_if)?;
    b.add_route("fd00:f100:13::/64", &link.b_if)?;
    let routes = b.ip(&["route", "show", "198.18.13.0/24"])?
        + &b.ip(&["-6", "route", "show", "fd00:f100:13::/64"])?;
    assert!(routes.contains(&link.b_if), "{routes}");

    let sink = traffic::UdpSink::bind(&b, sock("0.0.0.0:9001"))?;
    for &src in &sources {
        assert_eq!(
            traffic::udp_send(&a, src, sock("198.18.12.2:9001"), 1, 32, None)?,
            1
        );
    }
    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    let counts = sink.counts();
    assert_eq!(counts.len(), 300);
    assert!(sources.iter().all(|s| counts.get(s) == Some(&1)));
    Ok(())
}

#[test]
fn enter_runs_inside_and_reports_panics() -> Result<()> {
    let (_lab, a, _b, _link) = pair("enter", 14)?;
    // The lab address exists only inside the namespace.
    let inside = a.enter(|| std::net::UdpSocket::bind("198.18.14.1:0").map(drop))?;
    assert!(inside.is_ok(), "{inside:?}");
    assert!(
        std::net::UdpSocket::bind("198.18.14.1:0").is_err(),
        "not on the host"
    );
    let err = a
        .enter(|| -> u32 { panic!("boom inside") })
        .expect_err("a panic is an error");
    assert!(format!("{err:#}").contains("boom inside"), "{err:#}");
    Ok(())
}

/// The inode of a network namespace, for "is it in there" checks.
fn netns_inode(path: &str) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {path}"))?
        .ino())
}

#[test]
fn spawned_processes_live_in_the_namespace_and_die_with_the_lab() -> Result<()> {
    let (mut lab, a, _b, link) = pair("spawn", 15)?;
    let dir = tempfile::tempdir()?;

    // In the namespace, with its own /sys (like `ip netns exec`) and our stdio.
    let out = std::fs::File::create(dir.path().join("ls.out"))?;
    let pid = lab.spawn(
        &a,
        Command::new("sh")
            .args(["-c", "ls /sys/class/net; exec sleep 30"])
            .stdout(out)
            .stdin(Stdio::null()),
    )?;
    let want = netns_inode(&format!("/run/netns/{}", a.name))?;
    assert_eq!(netns_inode(&format!("/proc/{pid}/ns/net"))?, want);
    let deadline = Instant::now() + Duration::from_secs(5);
    let listing = loop {
        let text = std::fs::read_to_string(dir.path().join("ls.out"))?;
        if text.contains(&link.a_if) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        ["lo", link.a_if.as_str()],
        "/sys/class/net inside the namespace"
    );
    let status = lab.stop(pid, Signal::SIGTERM)?;
    assert!(!status.success());
    assert!(lab.stop(pid, Signal::SIGTERM).is_err(), "already stopped");

    // A process that ignores SIGTERM is SIGKILLed when the lab drops.
    let log = dir.path().join("stubborn.log");
    let stubborn = lab.spawn_logged(
        &a,
        "sh",
        &["-c", "trap '' TERM; echo ready; exec sleep 60"],
        &log,
    )?;
    let plain = lab.spawn(&a, Command::new("sleep").arg("60"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)?.contains("ready") {
        ensure!(
            Instant::now() < deadline,
            "the stubborn process never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    drop(lab);
    assert!(started.elapsed() < Duration::from_secs(4));
    for pid in [stubborn, plain] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived the lab"
        );
    }
    Ok(())
}

#[test]
fn dropping_the_lab_deletes_its_namespaces() -> Result<()> {
    let (lab, _a, _b, _link) = pair("drop", 16)?;
    let name = lab.name().to_owned();
    assert_eq!(lab_namespaces(&format!("{name}-"))?.len(), 2);
    drop(lab);
    assert_eq!(lab_namespaces(&format!("{name}-"))?, Vec::<String>::new());
    Ok(())
}

#[test]
fn a_failed_step_still_tears_down() -> Result<()> {
    let mut lab = Lab::new("fail")?;
    let name = lab.name().to_owned();
    let a = lab.add_ns("a")?;
    let b = lab.add_ns("b")?;
    assert!(lab.link(&a, &["not-an-address"], &b, &[]).is_err());
    assert!(lab.add_ns("a").is_err(), "the same role twice");
    drop(lab);
    assert_eq!(lab_namespaces(&format!("{name}-"))?, Vec::<String>::new());
    Ok(())
}

#[test]
fn a_panicking_test_still_tears_its_lab_down() -> Result<()> {
    let mut prefix = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = Lab::new("panic").expect("lab");
        prefix = format!("{}-", lab.name());
        let x = lab.add_ns("x").expect("namespace");
        let y = lab.add_ns("y").expect("namespace");
        lab.link(&x, &["198.18.17.1/24"], &y, &["198.18.17.2/24"])
            .expect("link");
        lab.spawn(&x, Command::new("sleep").arg("60"))
            .expect("spawn");
        panic!("test body fails");
    }));
    assert!(result.is_err());
    assert!(!prefix.is_empty());
    assert_eq!(lab_namespaces(&prefix)?, Vec::<String>::new());
    Ok(())
}

#[test]
fn stale_namespaces_of_dead_processes_are_swept() -> Result<()> {
    lab::require_root()?;
    // Above the kernel's largest pid_max (2^22), so that process never exists.
    let stale = format!("fg4999999x0sweep-t{}", std::process::id());
    // A look-alike that is not a lab name must survive.
    let other = format!("fg4999999xsweep-t{}", std::process::id());
    sh("ip", &["netns", "add", &stale])?;
    sh("ip", &["netns", "add", &other])?;
    lab::sweep_stale();
    let left = lab_namespaces("fg4999999x")?;
    let _ = sh("ip", &["netns", "del", &other]);
    let _ = sh("ip", &["netns", "del", &stale]);
    assert!(!left.contains(&stale), "{left:?}");
    assert!(left.contains(&other), "{left:?}");
    Ok(())
}

#[test]
fn private_bpffs_mounts_and_unmounts() -> Result<()> {
    lab::require_root()?;
    let fs = BpfFs::new()?;
    let path = fs.path().to_owned();
    let st = nix::sys::statfs::statfs(&path)?;
    assert_eq!(st.filesystem_type(), nix::sys::statfs::BPF_FS_MAGIC);
    assert_eq!(st.filesystem_type().0 as u64, 0xcafe_4a11);
    drop(fs);
    assert!(!path.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(!mounts.contains(path.to_string_lossy().as_ref()));
    Ok(())
}
