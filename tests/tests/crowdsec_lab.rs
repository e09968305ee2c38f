//! The CrowdSec lab harness itself: a real LAPI (Debian's crowdsec 1.4.6) in a
//! lab namespace, decisions added with cscli, read back the way a bouncer
//! does (`GET /v1/decisions/stream` with `X-Api-Key`) from another namespace.
//! Run with `--nocapture` to see the raw stream replies.

use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use floodgate_tests::lab::{Lab, Ns, crowdsec::Lapi};
use serde_json::Value;

/// A lab of two namespaces: `lapi` (`.1`/`::1`) and `edge` (`.2`/`::2`) on `net`.
fn lab(tag: &str, net: u8) -> Result<(Lab, Ns, Ns)> {
    let mut lab = Lab::new(tag)?;
    let lapi = lab.add_ns("lapi")?;
    let edge = lab.add_ns("edge")?;
    lab.link(
        &lapi,
        &[
            &format!("198.18.{net}.1/24"),
            &format!("fd00:f100:{net}::1/64"),
        ],
        &edge,
        &[
            &format!("198.18.{net}.2/24"),
            &format!("fd00:f100:{net}::2/64"),
        ],
    )?;
    Ok((lab, lapi, edge))
}

/// One pull of the decision stream from `ns`, as a bouncer does it; returns
/// the raw body and its JSON.
fn pull(ns: &Ns, lapi: &Lapi, key: &str, startup: bool) -> Result<(String, Value)> {
    let url = format!(
        "{}v1/decisions/stream{}",
        lapi.url(),
        if startup { "?startup=true" } else { "" }
    );
    let header = format!("X-Api-Key: {key}");
    let body = ns.run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--globoff",
            "--max-time",
            "5",
            "-H",
            &header,
            &url,
        ],
    )?;
    let json = serde_json::from_str(&body).with_context(|| format!("parsing {url}: {body}"))?;
    Ok((body, json))
}

/// The values listed under `new` or `deleted` (1.4.6 sends `null` for none).
fn values(reply: &Value, list: &str) -> Vec<String> {
    reply[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["value"].as_str().map(str::to_owned))
        .collect()
}

fn find<'a>(reply: &'a Value, list: &str, value: &str) -> Option<&'a Value> {
    reply[list]
        .as_array()?
        .iter()
        .find(|d| d["value"].as_str() == Some(value))
}

#[test]
fn stream_serves_ip_and_range_decisions_then_the_deletion() -> Result<()> {
    let (mut lab, lapi_ns, edge) = lab("csv4", 41)?;
    let t = Instant::now();
    let lapi = Lapi::start(&mut lab, &lapi_ns, "198.18.41.1".parse()?, 8080)?;
    println!("LAPI up at {} in {:?}", lapi.url(), t.elapsed());
    assert_eq!(lapi.url(), "http://198.18.41.1:8080/");

    let key = lapi.add_bouncer("floodgate-lab")?;
    assert!(lapi.decisions()?.as_array().is_some_and(Vec::is_empty));
    lapi.add_decision("198.18.1.3", "1h", "lab: one address")?;
    lapi.add_decision("198.18.1.0/24", "30m", "lab: a range")?;

    let listed = lapi.decisions()?;
    println!("cscli decisions (flattened): {listed}");
    let listed = listed.as_array().context("decisions() is an array")?;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(lapi.alerts()?.as_array().map(Vec::len), Some(2));

    let (raw, startup) = pull(&edge, &lapi, &key, true)?;
    println!("stream ?startup=true: {raw}");
    let ip = find(&startup, "new", "198.18.1.3").context("the Ip decision is new")?;
    let range = find(&startup, "new", "198.18.1.0/24").context("the Range decision is new")?;
    assert_eq!(ip["scope"], "Ip");
    assert_eq!(range["scope"], "Range");
    for d in [ip, range] {
        assert_eq!(d["type"], "ban");
        assert_eq!(d["origin"], "cscli");
        let duration = d["duration"].as_str().context("duration is a string")?;
        assert!(duration.ends_with('s'), "Go duration syntax: {duration}");
    }
    assert_eq!(
        ip["scenario"], "lab: one address",
        "the reason is the scenario"
    );

    // Nothing changed since the last pull.
    let (raw, quiet) = pull(&edge, &lapi, &key, false)?;
    println!("stream (no change): {raw}");
    assert!(values(&quiet, "new").is_empty(), "{raw}");

    // Only that address: the range covering it stays.
    lapi.delete_decisions("198.18.1.3")?;
    let (raw, delta) = pull(&edge, &lapi, &key, false)?;
    println!("stream after deleting 198.18.1.3: {raw}");
    assert_eq!(values(&delta, "deleted"), ["198.18.1.3"], "{raw}");
    assert!(values(&delta, "new").is_empty(), "{raw}");
    let listed = lapi.decisions()?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["value"], "198.18.1.0/24");

    // A wrong key is refused.
    let refused = pull(&edge, &lapi, "not-a-key", true);
    ensure!(
        refused.is_err(),
        "a wrong API key was accepted: {refused:?}"
    );
    Ok(())
}

#[test]
fn keeps_its_data_across_a_restart_on_ipv6() -> Result<()> {
    let (mut lab, lapi_ns, edge) = lab("csv6", 42)?;
    let mut lapi = Lapi::start(&mut lab, &lapi_ns, "fd00:f100:42::1".parse()?, 8081)?;
    assert_eq!(lapi.url(), "http://[fd00:f100:42::1]:8081/");

    lapi.add_machine("lab-watcher", "watcher-password-123")?;
    let machines: Value = serde_json::from_str(&lapi.cscli(&["machines", "list", "-o", "json"])?)?;
    let watcher = machines
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["machineId"] == "lab-watcher")
        .with_context(|| format!("lab-watcher among {machines}"))?;
    assert_eq!(watcher["isValidated"], true, "{watcher}");

    let key = lapi.add_bouncer("floodgate-lab")?;
    lapi.add_decision("fd00:bad::/64", "2h", "lab: v6 range")?;
    lapi.add_decision("fd00:bad:1::7", "2h", "lab: v6 address")?;

    lapi.stop(&mut lab)?;
    assert!(lapi.pid().is_none());
    assert!(
        pull(&edge, &lapi, &key, true).is_err(),
        "the stopped LAPI still answers"
    );

    let t = Instant::now();
    lapi.restart(&mut lab)?;
    println!("LAPI restarted at {} in {:?}", lapi.url(), t.elapsed());
    let (raw, startup) = pull(&edge, &lapi, &key, true)?;
    println!("stream ?startup=true after the restart: {raw}");
    let mut new = values(&startup, "new");
    new.sort();
    assert_eq!(new, ["fd00:bad:1::7", "fd00:bad::/64"], "{raw}");

    // A start that fails says why, with the log's last lines.
    let failed = Lapi::start(&mut lab, &lapi_ns, "fd00:f100:99::1".parse()?, 8081)
        .err()
        .context("a LAPI started on an address the namespace does not have")?;
    let failed = format!("{failed:#}");
    assert!(
        failed.contains("cannot assign requested address"),
        "{failed}"
    );
    Ok(())
}
