//! IP sets kept current from a feed (issue "Lists that keep themselves
//! current", items 1, 2 and 4; lab): a block set served by nginx in a lab
//! namespace is enforced; the list edited is applied within one refresh; a
//! malformed list is reported with its line and the last good copy stays; the
//! server down keeps the last good copy, across a daemon restart too; an
//! allow set lets a crawler over every limit through whole.

use std::time::Duration;

use anyhow::{Context as _, Result};
use floodgate_tests::{
    crawl::nginx::Nginx,
    daemon::{DaemonLab, LIMITED, burst_through},
    fleet::wait_for,
    lab::traffic::UdpSink,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");
/// The shortest refresh a set may have.
const REFRESH: Duration = Duration::from_secs(10);
/// One refresh, plus the fetch and the apply.
const WITHIN_A_REFRESH: Duration = Duration::from_secs(REFRESH.as_secs() + 3);
const FEEDS: &str = "198.18.30.2";

/// A daemon lab with nginx serving `files` from a namespace of its own
/// (`feeds`, linked to the edge on 198.18.30.0/24, a link floodgate does not
/// filter), the daemon's config being `config`.
fn lab(
    tag: &str,
    config: &str,
    files: &[(&str, &str)],
) -> Result<(DaemonLab, Nginx, tempfile::TempDir)> {
    let mut d = DaemonLab::new(tag, BIN, config)?;
    let feeds = d.lab.add_ns("feeds")?;
    d.lab.link(
        &d.edge,
        &["198.18.30.1/24"],
        &feeds,
        &[&format!("{FEEDS}/24")],
    )?;
    let dir = tempfile::tempdir()?;
    let nginx = Nginx::start(
        &mut d.lab,
        &feeds,
        dir.path(),
        format!("{FEEDS}:80").parse()?,
    )?;
    for (name, text) in files {
        std::fs::write(nginx.www().join(name), text)?;
    }
    Ok((d, nginx, dir))
}

fn set_row(d: &DaemonLab, name: &str) -> Result<Value> {
    let sets = d.json(&["sets", "list"])?;
    sets.as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .with_context(|| format!("set {name} in {sets}"))
}

const DROP_V1: &str = "; Spamhaus-style header\n; Last-Modified: today\n198.18.1.3/32 ; SBL1\n";
const DROP_V2: &str = "; edited\n198.18.1.2 ; SBL2\n";

#[test]
fn a_block_set_is_enforced_kept_current_and_kept_through_failures() -> Result<()> {
    // Top-level keys before the tables of LIMITED.
    let config = format!(
        "block = [\"@drop\"]\n{LIMITED}\n[[set]]\nname = \"drop\"\nsource = \"http://{FEEDS}/drop.txt\"\nrefresh = \"10s\"\n"
    );
    let (mut d, nginx, _dir) = lab("setblk", &config, &[("drop.txt", DROP_V1)])?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    wait_for(Duration::from_secs(5), "the first fetch", || {
        Ok(set_row(&d, "drop")?["entries"] == 1)
    })?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 20)?,
        0,
        "on the list"
    );
    assert_eq!(burst_through(&d, &sink, "198.18.1.2", 20)?, 20, "not on it");
    let blocks = d.json(&["block", "list"])?;
    assert!(
        blocks.as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["cidr"] == "198.18.1.3/32" && e["origin"] == "set:drop")),
        "{blocks}"
    );

    // Edited at the source: applied within one refresh, by difference.
    std::fs::write(nginx.www().join("drop.txt"), DROP_V2)?;
    wait_for(WITHIN_A_REFRESH, "the edited list", || {
        Ok(burst_through(&d, &sink, "198.18.1.2", 5)? == 0)
    })?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 20)?,
        20,
        "taken off the list"
    );

    // Malformed: the error names the line; the last good copy stays.
    std::fs::write(nginx.www().join("drop.txt"), "198.18.1.3\nnot-an-address\n")?;
    d.ok(&["sets", "refresh", "drop"])?;
    wait_for(Duration::from_secs(5), "the parse error", || {
        Ok(set_row(&d, "drop")?["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("line 2")))
    })?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.2", 20)?,
        0,
        "the last good copy"
    );
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 20)?,
        20,
        "nothing of the bad copy"
    );

    // The server down: kept, and kept across a restart with it still down.
    std::fs::write(nginx.www().join("drop.txt"), DROP_V2)?;
    nginx.stop(&mut d.lab)?;
    d.ok(&["sets", "refresh"])?;
    wait_for(Duration::from_secs(5), "the fetch error", || {
        let row = set_row(&d, "drop")?;
        Ok(row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(FEEDS))
            && row["errors"].as_u64() >= Some(2))
    })?;
    d.stop(Signal::SIGTERM)?;
    d.start()?;
    let row = set_row(&d, "drop")?;
    assert_eq!(row["entries"], 1, "the saved copy: {row}");
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.2", 20)?,
        0,
        "enforced after the restart"
    );
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 20)?, 20);
    Ok(())
}

#[test]
fn an_allow_set_crawler_over_every_limit_passes_whole() -> Result<()> {
    let googlebot = r#"{"creationTime": "2026-12-01T00:00:00.000000", "prefixes": [{"ipv4Prefix": "198.18.1.2/32"}, {"ipv6Prefix": "fd00:f100:1::/64"}]}"#;
    let config = format!(
        "allow = [\"@googlebot\"]\n{LIMITED}\n[[set]]\nname = \"googlebot\"\nsource = \"http://{FEEDS}/googlebot.json\"\nformat = \"google-json\"\n"
    );
    let (mut d, _nginx, _dir) = lab("setalw", &config, &[("googlebot.json", googlebot)])?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    wait_for(Duration::from_secs(5), "the first fetch", || {
        Ok(set_row(&d, "googlebot")?["entries"] == 2)
    })?;
    // 200/s with a burst of 50 per source: 500 at once is far over it.
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.2", 500)?,
        500,
        "allowed: passes whole"
    );
    let limited = burst_through(&d, &sink, "198.18.1.3", 500)?;
    assert!(
        limited < 100,
        "not on the set: limited ({limited} of 500 passed)"
    );
    let row = set_row(&d, "googlebot")?;
    assert_eq!(row["used_in"], serde_json::json!(["allow"]), "{row}");
    Ok(())
}
