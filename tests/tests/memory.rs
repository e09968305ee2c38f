//! The memory check at start: a daemon whose maps would need more than
//! `[capacity] max_memory` of the host's available memory refuses before it
//! creates a single map, and a restart that adopts pinned maps (already
//! allocated) is never refused.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use floodgate::{
    daemon::budget::parse_mem_available,
    loader::Capacity,
    memory::{estimate, possible_cpus},
};
use floodgate_tests::daemon::{DaemonLab, UDP_LIMITED};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

/// A `max_memory` share half of what maps at capacity `c` need of what this
/// host has available now, so the check must refuse whatever the host's size.
fn failing_share(c: &Capacity) -> Result<String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let available = parse_mem_available(&meminfo).context("MemAvailable")?;
    let need = estimate(c, possible_cpus()).total();
    let pct = need as f64 / available as f64 * 50.0;
    Ok(format!("{pct:.6}%"))
}

fn with_max_memory(config: &str, share: &str) -> String {
    config.replace(
        "[capacity]\n",
        &format!("[capacity]\nmax_memory = \"{share}\"\n"),
    )
}

#[test]
fn maps_too_large_for_the_host_are_refused_before_loading() -> Result<()> {
    // The default capacities against a share they cannot fit.
    let share = failing_share(&Capacity::default())?;
    let config = format!("[capacity]\nmax_memory = \"{share}\"\n");
    let mut d = DaemonLab::new("mem", BIN, &config)?;
    let log = d.dir.path().join("refused.log");
    let socket = d.socket().display().to_string();
    let (config_path, pin_dir, state_dir) = (
        d.config_path().display().to_string(),
        d.pin_dir().display().to_string(),
        d.state_dir().display().to_string(),
    );
    let iface = d.links[0].a_if.clone();
    let args = [
        "--socket",
        &socket,
        "run",
        "--iface",
        &iface,
        "--config",
        &config_path,
        "--pin-dir",
        &pin_dir,
        "--state-dir",
        &state_dir,
    ];
    let bin = d.bin.clone();
    let pid = d.lab.spawn_logged(&d.edge, &bin, &args, &log)?;
    let status = d.lab.wait(pid, Duration::from_secs(20))?;
    let text = std::fs::read_to_string(&log)?;
    ensure!(status.code() == Some(1), "exit {status}, log:\n{text}");
    let expected = [
        "the maps need ",
        "of kernel memory at these capacities, more than [capacity] max_memory allows",
        "lower [capacity] sources (1000000), lists (262144), prefixes (125000) or bans \
         (62500) in ",
        &config_path,
        "raise max_memory",
    ];
    for e in expected {
        ensure!(text.contains(e), "{e:?} missing from the log:\n{text}");
    }
    // Nothing was created: no maps directory, let alone META.
    ensure!(
        !d.pin_dir().join("maps").exists(),
        "maps were pinned although the start was refused"
    );
    ensure!(
        d.cli(&["status"])?.status.code() == Some(3),
        "no daemon answers"
    );
    Ok(())
}

#[test]
fn adopted_maps_are_not_refused_and_status_shows_their_cost() -> Result<()> {
    let mut d = DaemonLab::new("memadp", BIN, UDP_LIMITED)?;
    d.start()?;
    let json = d.json(&["status"])?;
    let cap = Capacity::new(
        4096,
        floodgate_common::default_prefix_capacity(4096),
        floodgate_common::default_ban_capacity(4096),
        262_144,
    );
    let need = estimate(&cap, possible_cpus());
    ensure!(
        json["kernel_memory"]["at_capacity_bytes"].as_u64() == Some(need.total()),
        "{json:#}"
    );
    ensure!(
        json["kernel_memory"]["preallocated_bytes"].as_u64() == Some(need.preallocated()),
        "{json:#}"
    );
    let sources = json["maps"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "sources"))
        .context("sources in status")?;
    ensure!(
        sources["kernel_memory_bytes"].as_u64() == Some(need.of(&["SOURCES"])),
        "{json:#}"
    );
    let human = d.ok(&["status"])?;
    ensure!(
        human.contains("kernel memory: ") && human.contains("(maps at capacity; "),
        "{human}"
    );

    // Restarted with a share the maps cannot fit: the pinned maps are adopted
    // (their memory is already allocated), so the daemon comes up.
    d.stop(Signal::SIGTERM)?;
    d.write_config(&with_max_memory(UDP_LIMITED, &failing_share(&cap)?))?;
    d.start()?;
    let json = d.json(&["status"])?;
    ensure!(json["adopted_pinned_state"] == true, "{json:#}");
    Ok(())
}
