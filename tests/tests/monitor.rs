//! Monitor mode through the real daemon and real traffic (issue "Data plane:
//! no way around the limiter", item 3): what monitor mode records never drops
//! a packet, not after `mode enforce` and not for an enforced neighbour of a
//! monitored rule. On the program before that change both dropped at once.

use std::time::Duration;

use anyhow::Result;
use floodgate_tests::daemon::{DaemonLab, burst_through, n, with_ban};
use floodgate_tests::lab::traffic::UdpSink;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

fn ban_of<'a>(bans: &'a Value, target: &str) -> Option<&'a Value> {
    bans.as_array()?.iter().find(|b| b["target"] == target)
}

#[test]
fn a_would_ban_drops_nothing_after_mode_enforce() -> Result<()> {
    let cfg = format!("mode = \"monitor\"\n{}", with_ban("1h"));
    let mut d = DaemonLab::new("mon2enf", BIN, &cfg)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // Far over 200/s (burst 50): monitor mode passes it all.
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 500)?, 500);
    let bans = d.json(&["bans", "list"])?;
    let b = ban_of(&bans, "198.18.1.3/32").expect("a would-ban is listed");
    assert_eq!(b["would_ban"], true, "{bans}");
    let stats = d.json(&["stats"])?;
    assert_eq!(n(&stats, &["dropped", "packets"]), 0);
    assert!(n(&stats, &["would_drop", "packets"]) > 0, "{stats}");

    d.ok(&["mode", "enforce"])?;
    // Under its limit now (the bucket refilled): the would-ban drops nothing.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 20)?,
        20,
        "monitor mode's would-ban dropped packets after `mode enforce`"
    );
    // Offending again under enforcement bans for real.
    burst_through(&d, &sink, "198.18.1.3", 500)?;
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 20)?, 0, "banned now");
    let bans = d.json(&["bans", "list"])?;
    let b = ban_of(&bans, "198.18.1.3/32").expect("the ban is listed");
    assert_eq!(b["would_ban"], false, "{bans}");
    Ok(())
}

#[test]
fn a_monitored_rules_prefix_would_ban_spares_its_enforced_neighbours() -> Result<()> {
    // The /24 may pass 300/s and is banned for an hour over it; 198.18.1.3 is
    // in a monitored rule, 198.18.1.2 (same /24) is not.
    let cfg = with_ban("0s").replace(
        "[prefix]\npackets = \"off\"",
        "[prefix]\npackets = \"300/s\"\npackets_burst = 100\nban = \"1h\"",
    ) + "\n[[rule]]\nname = \"watched\"\nmatch = [\"198.18.1.3/32\"]\nmode = \"monitor\"\npackets = \"100000/s\"\n";
    let mut d = DaemonLab::new("monrule", BIN, &cfg)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // The watched source floods its /24 far over 300/s: it all passes.
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 1000)?, 1000);
    let bans = d.json(&["bans", "list"])?;
    let b = ban_of(&bans, "198.18.1.0/24").expect("the prefix would-ban is listed");
    assert_eq!(b["would_ban"], true, "{bans}");
    // Its enforced neighbour, under the prefix limit once it refilled: untouched.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.2", 20)?,
        20,
        "a monitored rule's prefix would-ban dropped an enforced neighbour"
    );
    // The watched source's packets after its would-ban count as would-drop
    // `banned`; nothing at all was dropped.
    let stats = d.json(&["stats"])?;
    assert_eq!(n(&stats, &["dropped", "packets"]), 0, "{stats}");
    assert_eq!(
        stats["by_reason"]["banned"]["verdict"], "would_drop",
        "{stats}"
    );
    Ok(())
}
