//! One budget for a whole network set (issue "Lists that keep themselves
//! current", item 3; lab): an `aggregate = true` rule whose `match` is a set
//! of eight /24s holds 32 addresses spread over them to the rule's one
//! budget, while each address stays within its own limits and a source
//! outside the set keeps its own; a reload that keeps the budget keeps its
//! state, so a reload never hands the set a full budget; `top --rules`
//! shows the budget's use.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context as _, Result, ensure};
use floodgate_tests::{
    daemon::{DaemonLab, LIMITED, burst_through, n, to_crawler_side},
    fleet::{scrape, wait_for},
    lab::traffic::{UdpSink, udp_send},
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");
/// The shared budget: 100 packets at once, refilled at 10/s.
const BURST: u64 = 100;
const PER_SECOND: u64 = 10;

/// 32 addresses, four in each of 198.18.40.0/24 to 198.18.47.0/24.
fn members() -> Vec<IpAddr> {
    (40..48u8)
        .flat_map(|third| (10..14u8).map(move |last| IpAddr::from([198, 18, third, last])))
        .collect()
}

fn config(set: &std::path::Path) -> String {
    format!(
        "{LIMITED}\n[[rule]]\nname = \"cloud\"\nmatch = [\"@cloud\"]\naggregate = true\npackets = \"{PER_SECOND}/s\"\npackets_burst = {BURST}\n\n[[set]]\nname = \"cloud\"\nsource = \"file://{}\"\nformat = \"cidr\"\n",
        set.display()
    )
}

/// Sends `each` datagrams from every member, back to back; returns how many
/// reached the edge and how long the sending took.
fn round(d: &DaemonLab, sink: &UdpSink, each: u64) -> Result<(u64, Duration)> {
    let before = sink.total();
    let start = std::time::Instant::now();
    for src in members() {
        udp_send(&d.crawler, src, to_crawler_side(), each, 64, Some(20_000))?;
    }
    let took = start.elapsed();
    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    Ok((sink.total() - before, took))
}

fn cloud_rule(d: &DaemonLab) -> Result<Value> {
    let rules = d.json(&["top", "--rules"])?;
    rules
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "cloud").cloned())
        .with_context(|| format!("rule cloud in {rules}"))
}

#[test]
fn an_aggregate_rule_holds_a_whole_set_to_one_budget() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let set = dir.path().join("cloud.txt");
    let nets: String = (40..48).map(|t| format!("198.18.{t}.0/24\n")).collect();
    std::fs::write(&set, nets)?;
    let mut d = DaemonLab::new("aggr", BIN, &config(&set))?;
    d.extra_args = vec!["--metrics".into(), "127.0.0.1:9470".into()];
    d.add_crawler_sources(&members())?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    wait_for(Duration::from_secs(5), "the set loaded", || {
        Ok(d.json(&["sets", "list"])?[0]["entries"] == 8)
    })?;

    // 10 from each of 32 addresses: each well within its own burst of 50,
    // 320 together against one budget of 100 and 10/s.
    let (through, took) = round(&d, &sink, 10)?;
    let refill = PER_SECOND * (took.as_millis() as u64 + 999) / 1000;
    ensure!(
        (BURST..=BURST + refill + 1).contains(&through),
        "{through} of 320 passed in {took:?}: the budget allows {BURST} + {refill}"
    );
    let stats = d.json(&["stats"])?;
    assert_eq!(
        n(&stats, &["by_reason", "aggregate_packets", "packets"]),
        320 - through,
        "every refused packet has the aggregate's reason"
    );
    assert_eq!(
        n(&stats, &["by_reason", "rate_packets", "packets"]),
        0,
        "no address went over its own limit"
    );
    assert!(
        d.json(&["bans", "list"])?
            .as_array()
            .is_some_and(Vec::is_empty),
        "the shared budget bans no one"
    );
    let rule = cloud_rule(&d)?;
    assert_eq!(rule["cidrs"], 8, "{rule}");
    assert_eq!(rule["aggregate"]["passed"], through, "{rule}");
    assert_eq!(rule["aggregate"]["dropped"], 320 - through, "{rule}");
    assert_eq!(rule["aggregate"]["packets"]["burst"], BURST, "{rule}");
    ensure!(
        n(&rule, &["aggregate", "packets", "left"]) <= refill + 2,
        "the budget is spent: {rule}"
    );

    // The same in `status` and the metrics.
    let status = d.json(&["status"])?;
    assert_eq!(
        status["aggregates"][0]["aggregate"]["passed"], through,
        "{status}"
    );
    let metrics = scrape(&d.edge)?;
    for line in [
        format!("floodgate_aggregate_passed_packets_total{{rule=\"cloud\"}} {through}"),
        format!(
            "floodgate_aggregate_dropped_packets_total{{rule=\"cloud\"}} {}",
            320 - through
        ),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // A source outside the set keeps its own limits (burst 50).
    assert_eq!(burst_through(&d, &sink, "198.18.1.2", 40)?, 40);

    // A reload that keeps the budget keeps its state: no fresh burst.
    d.ok(&["reload"])?;
    let kept = cloud_rule(&d)?;
    assert_eq!(kept["aggregate"]["passed"], through, "{kept}");
    let (again, took) = round(&d, &sink, 2)?;
    let refill = PER_SECOND * (took.as_millis() as u64 + 2_000) / 1000;
    ensure!(
        again <= refill + 1,
        "after the reload {again} of 64 passed: only the refill of {refill} may"
    );

    // A changed budget starts afresh.
    d.write_config(
        &config(&set).replace(&format!("packets_burst = {BURST}"), "packets_burst = 20"),
    )?;
    d.ok(&["reload"])?;
    let (fresh, took) = round(&d, &sink, 2)?;
    let refill = PER_SECOND * (took.as_millis() as u64 + 999) / 1000;
    ensure!(
        (20..=20 + refill + 1).contains(&fresh),
        "with the new budget of 20, {fresh} of 64 passed"
    );
    Ok(())
}
