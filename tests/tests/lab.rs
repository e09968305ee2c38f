//! The lab itself: namespaces, veth, traffic helpers and teardown.

use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use floodgate_tests::{
    lab::{BpfFs, Lab, sh, traffic},
    packets::ip,
};

fn lab_namespaces(prefix: &str) -> Result<Vec<String>> {
    Ok(sh("ip", &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

#[test]
fn two_namespaces_talk_over_veth_and_vanish_on_drop() -> Result<()> {
    let mut lab = Lab::new("veth")?;
    let name = lab.name().to_owned();
    let a = lab.add_ns("a")?;
    let b = lab.add_ns("b")?;
    let link = lab.link(
        &a,
        &["198.18.10.1/24", "fd00:f100:10::1/64"],
        &b,
        &["198.18.10.2/24", "fd00:f100:10::2/64"],
    )?;
    assert_eq!(traffic::ping(&a, ip("198.18.10.2"), 3)?, 3);
    assert_eq!(traffic::ping(&b, ip("fd00:f100:10::1"), 3)?, 3);

    let sink = traffic::UdpSink::bind(&b, "198.18.10.2:9000".parse()?)?;
    let dst: SocketAddr = "198.18.10.2:9000".parse()?;
    assert_eq!(
        traffic::udp_send(&a, ip("198.18.10.1"), dst, 200, 64, None)?,
        200
    );
    // A secondary address is a second source.
    a.add_addr(&link.a_if, "198.18.10.77/32")?;
    traffic::udp_send(&a, ip("198.18.10.77"), dst, 50, 64, Some(5000))?;
    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    assert_eq!(sink.from(ip("198.18.10.1")), 200);
    assert_eq!(sink.from(ip("198.18.10.77")), 50);
    drop(sink);

    assert_eq!(lab_namespaces(&name)?.len(), 2);
    drop(lab);
    assert!(lab_namespaces(&name)?.is_empty());
    Ok(())
}

#[test]
fn a_panicking_test_still_tears_its_lab_down() -> Result<()> {
    let mut prefix = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = Lab::new("panic").expect("lab");
        prefix = lab.name().to_owned();
        lab.add_ns("x").expect("namespace");
        panic!("test body fails");
    }));
    assert!(result.is_err());
    assert!(!prefix.is_empty());
    assert!(lab_namespaces(&prefix)?.is_empty());
    Ok(())
}

#[test]
fn private_bpffs_mounts_and_unmounts() -> Result<()> {
    let fs = BpfFs::new()?;
    let path = fs.path().to_owned();
    let st = nix::sys::statfs::statfs(&path)?;
    assert_eq!(st.filesystem_type(), nix::sys::statfs::BPF_FS_MAGIC);
    drop(fs);
    assert!(!path.exists());
    Ok(())
}
