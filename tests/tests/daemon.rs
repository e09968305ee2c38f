//! The daemon and CLI against real traffic in a lab: every command's effect on
//! packets, reloads, restarts that never stop filtering, and a hostile socket.

use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    time::Duration,
};

use anyhow::Result;
use floodgate_tests::{
    daemon::{DaemonLab, LIMITED, burst_through, n, to_crawler_side, with_ban},
    lab::traffic::{UdpSink, udp_send},
    packets::ip,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

#[test]
fn every_cli_command_changes_real_traffic() -> Result<()> {
    let mut d = DaemonLab::new("cli", BIN, LIMITED)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;

    let status = d.json(&["status"])?;
    assert_eq!(status["mode"], "enforce");
    assert_eq!(status["interfaces"].as_array().map(Vec::len), Some(2));
    assert!(n(&status, &["program_id"]) > 0);

    // Over the limit: cut to the burst (the sender takes ~0.1 s: +20 refill).
    let got = burst_through(&d, &sink, "198.18.1.2", 2000)?;
    assert!((50..=90).contains(&got), "limited source got {got}");

    // block add → nothing passes; block remove → traffic flows again.
    d.ok(&["block", "add", "198.18.1.3"])?;
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 30)?, 0);
    let list = d.json(&["block", "list"])?;
    assert_eq!(list[0]["cidr"], "198.18.1.3/32");
    assert_eq!(list[0]["origin"], "runtime");
    d.ok(&["block", "remove", "198.18.1.3"])?;
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 30)?, 30);

    // allow add → an over-limit source passes untouched.
    d.ok(&["allow", "add", "198.18.1.0/24"])?;
    assert_eq!(burst_through(&d, &sink, "198.18.1.2", 2000)?, 2000);
    d.ok(&["allow", "remove", "198.18.1.0/24"])?;

    // mode monitor → nothing dropped, would_drop grows.
    let before = d.json(&["stats"])?;
    d.ok(&["mode", "monitor"])?;
    assert_eq!(burst_through(&d, &sink, "198.18.1.2", 2000)?, 2000);
    let after = d.json(&["stats"])?;
    assert_eq!(after["mode"], "monitor");
    assert!(n(&after, &["would_drop", "packets"]) >= n(&before, &["would_drop", "packets"]) + 1800);
    assert_eq!(
        n(&after, &["dropped", "packets"]),
        n(&before, &["dropped", "packets"])
    );
    d.ok(&["mode", "enforce"])?;

    // top lists the heaviest source first, with its drops.
    let top = d.json(&["top", "-n", "3"])?;
    assert_eq!(top[0]["target"], "198.18.1.2");
    assert!(n(&top[0], &["drops"]) > 1000);

    // The user under the limit lost nothing through all of this.
    assert_eq!(burst_through(&d, &sink, "198.18.2.2", 40)?, 40);
    let stats = d.json(&["stats"])?;
    assert!(n(&stats, &["by_reason", "rate_packets", "packets"]) > 1500);
    assert_eq!(stats["by_reason"]["blocklist"]["verdict"], "drop");

    // detach one interface: its traffic is no longer filtered.
    let crawler_if = d.links[0].a_if.clone();
    d.ok(&["detach", "--iface", &crawler_if])?;
    assert_eq!(burst_through(&d, &sink, "198.18.1.2", 2000)?, 2000);
    Ok(())
}

#[test]
fn bans_list_and_clear() -> Result<()> {
    let mut d = DaemonLab::new("bans", BIN, &with_ban("1h"))?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    let got = burst_through(&d, &sink, "198.18.1.2", 500)?;
    assert!(got <= 60, "got {got}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(burst_through(&d, &sink, "198.18.1.2", 5)?, 0, "banned");
    let bans = d.json(&["bans", "list"])?;
    assert_eq!(bans[0]["target"], "198.18.1.2/32");
    assert_eq!(bans[0]["reason"], "rate_packets");
    assert_eq!(bans[0]["offenses"], 1);
    let stats = d.json(&["stats"])?;
    assert!(n(&stats, &["by_reason", "banned", "packets"]) >= 5);
    d.ok(&["bans", "clear", "198.18.1.2"])?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.2", 5)?,
        5,
        "traffic resumes"
    );
    let log = d.daemon_log();
    assert!(
        log.contains("banned") && log.contains("198.18.1.2/32"),
        "the ban event reached the log: {log}"
    );
    assert!(
        log.contains("floodgate: banned a source"),
        "the program's aya-log line reached the log: {log}"
    );
    Ok(())
}

#[test]
fn reload_applies_changes_without_resetting_and_refuses_bad_configs() -> Result<()> {
    let mut d = DaemonLab::new("reload", BIN, LIMITED)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    burst_through(&d, &sink, "198.18.1.2", 1000)?;
    let before = d.json(&["stats"])?;

    // Tighter limit, applied by `floodgate reload`.
    d.write_config(&LIMITED.replace("packets_burst = 50", "packets_burst = 5"))?;
    let msg = d.ok(&["reload"])?;
    assert!(msg.contains("reloaded"), "{msg}");
    std::thread::sleep(Duration::from_millis(300));
    let got = burst_through(&d, &sink, "198.18.1.3", 1000)?;
    assert!(got <= 30, "the new burst of 5 applies: got {got}");
    let after = d.json(&["stats"])?;
    assert!(
        n(&after, &["passed", "packets"]) >= n(&before, &["passed", "packets"]),
        "counters survive"
    );
    assert!(n(&after, &["dropped", "packets"]) > n(&before, &["dropped", "packets"]));

    // An invalid config is refused with FILE:LINE:COL and changes nothing.
    d.write_config("[limits]\npackets = \"lots\"\n")?;
    let out = d.cli(&["reload"])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fg.toml:2:11: limits.packets"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let got = burst_through(&d, &sink, "198.18.1.2", 1000)?;
    assert!(got <= 30, "the old policy still runs: got {got}");

    // SIGHUP reloads too.
    d.write_config(LIMITED)?;
    let pid = d.pid.expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        Signal::SIGHUP,
    )?;
    std::thread::sleep(Duration::from_millis(1000));
    assert!(d.daemon_log().contains("reloaded"), "{}", d.daemon_log());
    Ok(())
}

#[test]
fn a_restart_keeps_bans_and_counters_and_filtering_never_stops() -> Result<()> {
    let mut d = DaemonLab::new("restart", BIN, &with_ban("1h"))?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // Ban .3; .2 floods under a 200/s limit (burst 50) across the restart.
    burst_through(&d, &sink, "198.18.1.3", 500)?;
    let before = d.json(&["stats"])?;
    let crawler = d.crawler.clone();
    let flood = std::thread::spawn(move || {
        udp_send(
            &crawler,
            ip("198.18.1.2"),
            to_crawler_side(),
            3 * 150,
            64,
            Some(150),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    d.stop(Signal::SIGTERM)?;
    // The daemon is gone; filtering is not.
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 20)?,
        0,
        "the ban holds with no daemon"
    );
    d.start()?;
    let sent = flood
        .join()
        .map_err(|_| anyhow::anyhow!("flood panicked"))??;
    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    // The flood ran at 150/s, under the limit: all of it passes, every time.
    assert_eq!(sink.from(ip("198.18.1.2")), sent);

    let status = d.json(&["status"])?;
    assert_eq!(status["adopted_pinned_state"], true);
    let bans = d.json(&["bans", "list"])?;
    assert_eq!(
        bans[0]["target"], "198.18.1.3/32",
        "bans survive the restart"
    );
    let after = d.json(&["stats"])?;
    assert!(n(&after, &["dropped", "packets"]) >= n(&before, &["dropped", "packets"]) + 20);
    // The interfaces kept their counter slots: every drop is still the crawler
    // link's, before and after the restart.
    let crawler_if = d.links[0].a_if.clone();
    let crawler_drops = |s: &Value| n(s, &["by_interface", &crawler_if, "dropped", "packets"]);
    assert_eq!(crawler_drops(&before), n(&before, &["dropped", "packets"]));
    assert_eq!(crawler_drops(&after), n(&after, &["dropped", "packets"]));
    assert!(crawler_drops(&after) >= crawler_drops(&before) + 20);
    assert!(
        d.daemon_log()
            .contains("replaced the program in the pinned XDP link"),
        "{}",
        d.daemon_log()
    );

    // A second flood far over the limit during a restart is limited throughout.
    let crawler = d.crawler.clone();
    let flood = std::thread::spawn(move || {
        udp_send(
            &crawler,
            ip("198.18.1.2"),
            to_crawler_side(),
            3000,
            64,
            Some(1000),
        )
    });
    let start = sink.from(ip("198.18.1.2"));
    std::thread::sleep(Duration::from_millis(800));
    d.stop(Signal::SIGINT)?;
    d.start()?;
    flood
        .join()
        .map_err(|_| anyhow::anyhow!("flood panicked"))??;
    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    let got = sink.from(ip("198.18.1.2")) - start;
    // 3 s at 200/s plus the burst: no unlimited window.
    assert!(got <= 50 + 3 * 200 + 60, "got {got} over ~3 s");

    // detach removes the program and the pins; the daemon exits.
    d.ok(&["detach"])?;
    assert!(!d.pin_dir().join("maps").exists());
    // Off the interfaces when `detach` answers, not an RCU grace period later.
    for link in &d.links {
        assert!(!d.edge.has_xdp(&link.a_if)?, "{} still has XDP", link.a_if);
    }
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 20)?,
        20,
        "unfiltered after detach"
    );
    Ok(())
}

#[test]
fn cli_changes_survive_a_reboot() -> Result<()> {
    let mut d = DaemonLab::new("state", BIN, LIMITED)?;
    d.start()?;
    d.ok(&["block", "add", "198.18.1.3"])?;
    d.ok(&["mode", "monitor"])?;
    d.ok(&["detach"])?;
    // A reboot loses the pins; the state dir stays.
    std::thread::sleep(Duration::from_millis(200));
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 20)?,
        0,
        "the runtime block is back"
    );
    assert_eq!(d.json(&["status"])?["mode"], "monitor");
    Ok(())
}

#[test]
fn the_socket_survives_garbage_and_strangers() -> Result<()> {
    let mut d = DaemonLab::new("sock", BIN, LIMITED)?;
    d.start()?;
    let socket = d.socket();
    let mode = std::fs::metadata(&socket)?;
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // A malformed request gets an error answer.
    let mut s = UnixStream::connect(&socket)?;
    let body = b"{not json";
    s.write_all(&(body.len() as u32).to_be_bytes())?;
    s.write_all(body)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply)?;
    assert!(String::from_utf8_lossy(&reply).contains("malformed request"));
    // An oversized frame is refused, and the daemon stays up.
    let mut s = UnixStream::connect(&socket)?;
    s.write_all(&(512u32 << 20).to_be_bytes())?;
    s.write_all(&[0u8; 1024])?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).contains("bad request frame"));
    d.ok(&["status"])?;

    // A caller without access gets a clear error, not a hang.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--socket",
        ])
        .arg(&socket)
        .arg("status")
        .output()?;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));

    // No daemon: a clear error with exit code 3.
    d.stop(Signal::SIGTERM)?;
    let out = d.cli(&["status"])?;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no floodgate daemon listens"));
    Ok(())
}

#[test]
fn config_check_and_default() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str]| std::process::Command::new(BIN).args(args).output();
    let default = run(&["config", "default"])?;
    assert!(default.status.success());
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &default.stdout)?;
    let out = run(&["config", "check", good.to_str().unwrap_or_default()])?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "mode = \"enforce\"\n[prefix]\nipv4 = 40\n")?;
    let out = run(&["config", "check", bad.to_str().unwrap_or_default()])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:8: prefix.ipv4: /40 is not a prefix length — use 1 to 32"),
        "{err}"
    );
    Ok(())
}

/// Scrapes the daemon's `/metrics` (served on `addr` in the edge namespace).
fn scrape(d: &DaemonLab, addr: &'static str) -> Result<Vec<prometheus_parse::Sample>> {
    let body = d.edge.enter(move || -> Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })??;
    let (head, text) = body.split_once("\r\n\r\n").unwrap_or_default();
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
    Ok(scrape.samples)
}

/// The sum of the samples of `name` that carry every label of `labels`
/// (`None` when there is none).
fn metric(
    samples: &[prometheus_parse::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .reduce(|a, b| a + b)
}

#[test]
fn metrics_are_served_in_prometheus_format() -> Result<()> {
    let mut d = DaemonLab::new("metric", BIN, LIMITED)?;
    d.extra_args = vec!["--metrics".into(), "127.0.0.1:9470".into()];
    d.start()?;
    let (crawler_if, user_if) = (d.links[0].a_if.clone(), d.links[1].a_if.clone());
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    burst_through(&d, &sink, "198.18.1.2", 1000)?;
    assert_eq!(burst_through(&d, &sink, "198.18.2.2", 40)?, 40);
    let stats = d.json(&["stats"])?;
    let samples = scrape(&d, "127.0.0.1:9470")?;
    let value = |name: &str, labels: &[(&str, &str)]| metric(&samples, name, labels);
    let dropped = n(&stats, &["by_reason", "rate_packets", "packets"]);
    assert!(dropped > 800, "{stats}");
    let rate_drops = [("verdict", "drop"), ("reason", "rate_packets")];
    // Summed over interfaces, the metric is the global total.
    assert_eq!(
        value("floodgate_packets_total", &rate_drops),
        Some(dropped as f64),
        "{samples:?}"
    );
    // Every drop came in on the crawler link, none on the user link.
    let (crawler, user) = (crawler_if.as_str(), user_if.as_str());
    assert_eq!(
        value(
            "floodgate_packets_total",
            &[rate_drops[0], rate_drops[1], ("iface", crawler)]
        ),
        Some(dropped as f64)
    );
    assert!(
        value(
            "floodgate_packets_total",
            &[("verdict", "drop"), ("iface", user)]
        )
        .is_none(),
        "nothing dropped on the user link: {samples:?}"
    );
    let user_ok = value(
        "floodgate_packets_total",
        &[("verdict", "pass"), ("reason", "ok"), ("iface", user)],
    );
    assert!(user_ok.is_some_and(|v| v >= 40.0), "{user_ok:?}");
    assert!(
        value(
            "floodgate_bytes_total",
            &[("verdict", "drop"), ("iface", crawler)]
        )
        .is_some_and(|v| v >= dropped as f64 * 64.0)
    );
    // stats --json carries the same split.
    assert_eq!(
        n(&stats, &["by_interface", &crawler_if, "dropped", "packets"]),
        n(&stats, &["dropped", "packets"])
    );
    assert!(n(&stats, &["by_interface", &user_if, "passed", "packets"]) >= 40);
    assert_eq!(
        n(&stats, &["by_interface", &user_if, "dropped", "packets"]),
        0
    );

    assert_eq!(
        value("floodgate_map_capacity", &[("map", "sources")]),
        Some(4096.0)
    );
    assert!(value("floodgate_map_entries", &[("map", "sources")]).is_some_and(|v| v >= 1.0));
    assert_eq!(value("floodgate_active_bans", &[]), Some(0.0));
    assert_eq!(
        value("floodgate_log_lines_suppressed_total", &[]),
        Some(0.0)
    );
    assert!(value("floodgate_build_info", &[]).is_some());
    Ok(())
}

#[test]
fn a_ban_flood_is_logged_within_the_event_rate() -> Result<()> {
    // Every source banned at its second packet; at most 2 event lines a second.
    // Only UDP to the sink counts, so the links' own IPv6 chatter bans nobody.
    let config = with_ban("1h")
        .replace(
            "packets = \"200/s\"\npackets_burst = 50",
            "packets = \"1/s\"\npackets_burst = 1",
        )
        .replace("ports = []", "ports = [\"udp/9000\"]")
        + "[events]\nrate = \"2/s\"\n";
    assert!(
        config.contains("packets_burst = 1\n") && config.contains("udp/9000"),
        "{config}"
    );
    let mut d = DaemonLab::new("logflood", BIN, &config)?;
    d.extra_args = vec!["--metrics".into(), "127.0.0.1:9470".into()];
    d.start()?;
    let sources: Vec<String> = (10..70).map(|i| format!("198.18.1.{i}")).collect();
    let cidrs: Vec<String> = sources.iter().map(|s| format!("{s}/24")).collect();
    d.crawler.add_addrs(&d.links[0].b_if, &cidrs)?;
    let flood_start = std::time::Instant::now();
    for src in &sources {
        udp_send(&d.crawler, ip(src), to_crawler_side(), 3, 64, None)?;
    }
    // The daemon's 1 s tick folds in the program's count and logs the summary.
    std::thread::sleep(Duration::from_millis(2500));
    let bans = d.json(&["bans", "list"])?.as_array().map_or(0, Vec::len) as u64;
    assert_eq!(bans, 60, "every source was banned");
    let status = d.json(&["status"])?;
    let log = std::fs::read_to_string(d.log(1))?;
    let secs = flood_start.elapsed().as_secs() + 1;
    let allowed = 2 + 2 * secs;
    let ban_lines = log.lines().filter(|l| l.contains("event=\"ban\"")).count() as u64;
    let program_lines = log
        .lines()
        .filter(|l| l.contains("floodgate: banned a source"))
        .count() as u64;
    assert!(
        (1..=allowed).contains(&ban_lines),
        "{ban_lines} ban lines in {secs} s:\n{log}"
    );
    assert!(
        (1..=allowed).contains(&program_lines),
        "{program_lines} program lines in {secs} s:\n{log}"
    );
    // Each ban is one event line and one program line: written or counted.
    let suppressed = n(&status, &["log_lines_suppressed"]);
    assert_eq!(
        ban_lines + program_lines + suppressed,
        2 * bans,
        "{status}\n{log}"
    );
    let summary = log
        .lines()
        .find(|l| l.contains("event=\"log_suppressed\""))
        .unwrap_or_else(|| panic!("a summary of suppressed lines:\n{log}"));
    assert!(summary.contains("log lines"), "{summary}");
    assert!(
        summary.contains("ban=") && summary.contains("program="),
        "{summary}"
    );
    let samples = scrape(&d, "127.0.0.1:9470")?;
    assert_eq!(
        metric(&samples, "floodgate_log_lines_suppressed_total", &[]),
        Some(suppressed as f64)
    );

    // Other kinds have their own buckets: a reload storm is cut to the rate
    // too, and every reload line is written or counted.
    for _ in 0..6 {
        assert!(d.ok(&["reload"])?.contains("reloaded"));
    }
    let log = std::fs::read_to_string(d.log(1))?;
    let reload_lines = log
        .lines()
        .filter(|l| l.contains("event=\"reload\""))
        .count() as u64;
    assert!((1..=4).contains(&reload_lines), "{reload_lines}:\n{log}");
    let status = d.json(&["status"])?;
    assert_eq!(
        n(&status, &["log_lines_suppressed"]),
        suppressed + 6 - reload_lines
    );
    assert!(
        flood_start.elapsed() < Duration::from_secs(15),
        "{:?}",
        flood_start.elapsed()
    );
    Ok(())
}

#[test]
fn the_remaining_commands_and_human_output() -> Result<()> {
    let mut d = DaemonLab::new("human", BIN, &with_ban("1h"))?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    burst_through(&d, &sink, "198.18.1.2", 500)?;

    // Human tables carry what the JSON carries.
    let status = d.ok(&["status"])?;
    assert!(
        status.contains("mode enforce") && status.contains("sources"),
        "{status}"
    );
    let stats = d.ok(&["stats"])?;
    assert!(
        stats.contains("rate_packets") && stats.contains("drop"),
        "{stats}"
    );
    let top = d.ok(&["top", "--by", "drops", "-n", "5"])?;
    assert!(
        top.contains("198.18.1.2") && top.contains("rate_packets"),
        "{top}"
    );
    let prefixes = d.json(&["top", "--prefixes"])?;
    assert_eq!(prefixes[0]["target"], "198.18.1.0/24");
    let bans = d.ok(&["bans", "list"])?;
    assert!(bans.contains("198.18.1.2/32"), "{bans}");
    d.ok(&["bans", "clear", "--all"])?;
    assert_eq!(d.json(&["bans", "list"])?.as_array().map(Vec::len), Some(0));

    // A temporary block ends by itself.
    d.ok(&["block", "add", "198.18.1.3", "--for", "2s"])?;
    assert!(d.ok(&["block", "list"])?.contains("198.18.1.3/32"));
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 10)?, 0);
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!d.ok(&["block", "list"])?.contains("198.18.1.3"));
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 10)?, 10);
    d.ok(&["allow", "add", "198.18.2.0/24"])?;
    assert!(d.ok(&["allow", "list"])?.contains("198.18.2.0/24"));

    // stats --watch refreshes with rates until interrupted.
    let mut watch = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(d.socket())
        .args(["stats", "--watch", "--interval", "500ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1800));
    watch.kill()?;
    let out = watch.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("mode enforce").count() >= 2, "{text}");
    assert!(text.contains("/s"), "rates are shown: {text}");

    // Completions come without a daemon.
    let bash = std::process::Command::new(BIN)
        .args(["completions", "bash"])
        .output()?;
    assert!(String::from_utf8_lossy(&bash.stdout).contains("floodgate"));
    Ok(())
}
