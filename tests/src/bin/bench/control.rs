//! The control plane under load: the real daemon on the receiving veth, its
//! RSS at rest and under a flood, and a reload to 100 000 block CIDRs while the
//! flood runs (wall time, and whether the flood got through meanwhile).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use floodgate_tests::lab::{BpfFs, Lab, traffic::UdpSink};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::live::{DUT_MAC_IF, GEN_MAC_IF, LIMIT_PPS, generate};

const CONFIG: &str = r#"
[capacity]
sources = 1_048_576
[limits]
ports = []
packets = "100/s"
packets_burst = 100
bytes = "off"
syn = "off"
quota = "off"
ban = "0s"
[prefix]
packets = "off"
syn = "off"
quota = "off"
"#;

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn cli(bin: &Path, socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "floodgate {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// 100 000 /32 block entries in 11.0.0.0/8, never the flooding source.
fn config_with_blocks() -> String {
    let mut s = String::from("block = [\n");
    for i in 0..100_000u32 {
        let a = std::net::Ipv4Addr::from(0x0b00_0000 + i);
        s.push_str(&format!("  \"{a}\",\n"));
    }
    s.push_str("]\n");
    s.push_str(CONFIG);
    s
}

pub fn run(secs: f64) -> Result<Value> {
    let bin: PathBuf = std::env::current_exe()?
        .parent()
        .context("no exe dir")?
        .join("floodgate-cli");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build the floodgate-tests bins",
        bin.display()
    );
    let mut lab = Lab::new("ctl")?;
    let sender = lab.add_ns("gen")?;
    let dut = lab.add_ns("dut")?;
    let link = lab.link(&sender, &["198.18.0.1/24"], &dut, &["198.18.0.2/24"])?;
    sender.run("ip", &["link", "set", &link.a_if, "address", GEN_MAC_IF])?;
    dut.run("ip", &["link", "set", &link.b_if, "address", DUT_MAC_IF])?;
    let pins = BpfFs::new()?;
    let dir = tempfile::tempdir()?;
    let (config, socket) = (dir.path().join("fg.toml"), dir.path().join("fg.sock"));
    std::fs::write(&config, CONFIG)?;
    let sink = UdpSink::bind(&dut, "198.18.0.2:9".parse()?)?;
    let pin_dir = pins.path().join("fg");
    let args = [
        "--socket",
        socket.to_str().context("path")?,
        "run",
        "--iface",
        &link.b_if,
        "--xdp-mode",
        "native",
        "--config",
        config.to_str().context("path")?,
        "--pin-dir",
        pin_dir.to_str().context("path")?,
        "--state-dir",
        dir.path().to_str().context("path")?,
    ];
    let pid = lab.spawn_logged(&dut, &bin, &args, &dir.path().join("daemon.log"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cli(&bin, &socket, &["status"]).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_rest = rss_kib(pid)?;

    // A one-source flood over the limit while the config grows by 100 000 CIDRs.
    std::fs::write(&config, config_with_blocks())?;
    let flood_secs = secs.max(2.0) * 2.0;
    let (s2, iface) = (sender.clone(), link.a_if.clone());
    let flood = std::thread::spawn(move || generate(&s2, &iface, 1, flood_secs));
    std::thread::sleep(Duration::from_millis(500));
    let rss_flood = rss_kib(pid)?;
    let start = Instant::now();
    cli(&bin, &socket, &["reload"])?;
    let reload_ms = start.elapsed().as_secs_f64() * 1e3;
    let rss_after_reload = rss_kib(pid)?;
    let (sent, secs) = flood
        .join()
        .map_err(|_| anyhow::anyhow!("generator panicked"))??;
    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(3));
    let delivered = sink.total();
    let allowed = LIMIT_PPS as f64 * (secs + 1.0) + 100.0;
    let status: Value = serde_json::from_str(&cli(&bin, &socket, &["status", "--json"])?)?;
    let block_entries = status["maps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == "block")
        .map_or(0, |m| m["entries"].as_u64().unwrap_or(0));
    cli(&bin, &socket, &["detach"])?;
    let _ = lab.stop(pid, Signal::SIGTERM);
    Ok(json!({
        "daemon_rss_kib_at_rest": rss_rest,
        "daemon_rss_kib_under_flood": rss_flood,
        "daemon_rss_kib_after_100k_cidr_reload": rss_after_reload,
        "reload_100k_cidrs_ms": reload_ms,
        "block_entries_after_reload": block_entries,
        "flood_sent": sent,
        "flood_seconds": secs,
        "flood_delivered": delivered,
        "flood_allowed_by_limit": allowed,
        "unfiltered_during_reload": delivered as f64 > allowed,
    }))
}
