//! A reload never applies a rule's neighbour's policy (issue "Control plane:
//! every change atomic, durable, and checked", item 1). Rule slots are file
//! positions: on the daemon before this change a reload wrote the policies by
//! slot before re-pointing the rules, so inserting a strict rule ahead of a
//! partner's made the partner's CIDR read the strict policy for a moment, and
//! alternating such reloads got the partner banned for an hour.

use anyhow::Result;
use floodgate_tests::{
    daemon::{DaemonLab, LIMITED, n, to_crawler_side},
    lab::traffic::{UdpSink, udp_send},
    packets::ip,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

const PARTNER: &str = r#"
[[rule]]
name = "partner"
match = ["198.18.1.2/32"]
packets = "100000/s"
packets_burst = 100000
"#;

const STRICT: &str = r#"
[[rule]]
name = "strict"
match = ["198.18.1.3/32"]
packets = "1/s"
packets_burst = 1
ban = "1h"
"#;

#[test]
fn two_hundred_reloads_never_give_the_partner_its_neighbours_policy() -> Result<()> {
    let alone = format!("{LIMITED}{PARTNER}");
    let behind_strict = format!("{LIMITED}{STRICT}{PARTNER}");
    let mut d = DaemonLab::new("slots", BIN, &alone)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // The partner sends 10 000 packets/s (its rule allows 100 000/s; the
    // default 200/s) throughout the reloads.
    let crawler = d.crawler.clone();
    let flood = std::thread::spawn(move || {
        udp_send(
            &crawler,
            ip("198.18.1.2"),
            to_crawler_side(),
            60_000,
            64,
            Some(10_000),
        )
    });
    for i in 0..200 {
        d.write_config(if i % 2 == 0 { &behind_strict } else { &alone })?;
        d.ok(&["reload"])?;
    }
    let sent = flood
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    sink.wait_quiet(
        std::time::Duration::from_millis(300),
        std::time::Duration::from_secs(5),
    );
    let stats = d.json(&["stats"])?;
    assert_eq!(n(&stats, &["dropped", "packets"]), 0, "{stats}");
    assert_eq!(
        sink.from(ip("198.18.1.2")),
        sent,
        "the partner lost packets"
    );
    let bans: Value = d.json(&["bans", "list"])?;
    assert!(
        bans.as_array().is_none_or(Vec::is_empty),
        "the partner was banned: {bans}"
    );
    Ok(())
}
