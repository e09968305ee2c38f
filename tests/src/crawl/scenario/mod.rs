//! The crawler-lab scenarios. Each builds its own [`CrawlLab`], runs real
//! clients, measures with nftables (independent of floodgate) and with the
//! CLI, and returns an [`Outcome`] whose checks the tests require and the demo
//! prints. Rates are modest and windows short so a noisy two-CPU machine meets
//! every margin.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde_json::Value;

use crate::packets::{Frame, Vlan};

mod control;
mod floods;

pub use control::{reload_under_flood, restart_under_flood, syn_flood_and_monitor};
pub use floods::{distributed, flood, low_and_slow, vlan_flood};

use super::{
    CrawlLab, Net, VLAN_ID,
    clients::{Browsing, Hping, Scraper, SourceLog, Visit, Wrk},
    counters::{Reading, rate, window_bounds},
    raw::{RawFlood, mac_bytes},
    report::{Outcome, Row, quantile_ms},
};

/// Relative tolerance of a limiter measured over a window.
const TOLERANCE: f64 = 0.05;

/// People's latency during an attack: median at most ×1.5 the no-attack
/// baseline + 5 ms, p95 at most ×2 + 25 ms (README states these).
const LATENCY_MEDIAN: (f64, f64) = (1.5, 5.0);
const LATENCY_P95: (f64, f64) = (2.0, 25.0);

/// How long people browse before an attack, for the latency baseline.
const BASELINE: Duration = Duration::from_secs(3);

/// Pause between page views of one browsing person.
const THINK: Duration = Duration::from_millis(500);

/// Limits off except what a scenario turns on.
const QUIET: &str = r#"
[capacity]
sources = 16384
[limits]
ports = ["tcp/80"]
packets = "off"
bytes = "off"
syn = "off"
quota = "off"
ban = "0s"
[prefix]
packets = "off"
syn = "off"
quota = "off"
ban = "0s"
"#;

/// `QUIET` with `key = value` lines replaced inside `[limits]` / `[prefix]`.
fn config(limits: &[(&str, &str)], prefix: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut section = "";
    for line in QUIET.lines() {
        if line.starts_with('[') {
            section = line;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        let set = match section {
            "[limits]" => limits,
            "[prefix]" => prefix,
            _ => &[],
        };
        match set.iter().find(|(k, _)| *k == key) {
            Some((k, v)) => out += &format!("{k} = {v}\n"),
            None => out += &format!("{line}\n"),
        }
    }
    // Keys QUIET lacks go at the top of their section.
    for (section, set) in [("[limits]", limits), ("[prefix]", prefix)] {
        let body = QUIET.split(section).nth(1).unwrap_or("");
        let body = body.split("\n[").next().unwrap_or(body);
        for (k, v) in set {
            if !body.contains(&format!("\n{k} =")) {
                out = out.replacen(section, &format!("{section}\n{k} = {v}"), 1);
            }
        }
    }
    out
}

/// The flood crawler's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    V4,
    V6,
}

/// Everything floodgate reports at one moment.
struct Seen {
    stats: Value,
    top: Vec<Value>,
    bans: Vec<Value>,
}

fn seen(l: &CrawlLab) -> Result<Seen> {
    let as_list = |v: Value| v.as_array().cloned().unwrap_or_default();
    Ok(Seen {
        stats: l.daemon.json(&["stats"])?,
        top: as_list(l.daemon.json(&["top", "-n", "1000"])?),
        bans: as_list(l.daemon.json(&["bans", "list"])?),
    })
}

fn num(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, p| &v[*p]).as_u64().unwrap_or(0)
}

/// Dropped (or would-drop) packets per reason between two stats snapshots.
fn drops_between(a: &Value, b: &Value) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Some(map) = b["by_reason"].as_object() {
        for (key, r) in map {
            if r["verdict"] == "pass" {
                continue;
            }
            let n = num(r, &["packets"]).saturating_sub(num(&a["by_reason"][key], &["packets"]));
            if n > 0 {
                out.push((key.clone(), n));
            }
        }
    }
    out.sort();
    out
}

fn drops_of(drops: &[(String, u64)], reason: &str) -> u64 {
    drops
        .iter()
        .filter(|(k, _)| k.split('/').next() == Some(reason))
        .map(|(_, n)| n)
        .sum()
}

fn ip_of(target: &str) -> Option<IpAddr> {
    target.split('/').next()?.parse().ok()
}

/// The ban reason floodgate lists for `target` (an address or a CIDR).
fn ban_reason(s: &Seen, target: &str) -> Option<String> {
    let want: IpNet = target
        .parse()
        .ok()
        .or_else(|| ip_of(target).map(IpNet::from))?;
    s.bans.iter().find_map(|b| {
        let t: IpNet = b["target"].as_str()?.parse().ok()?;
        (t == want).then(|| b["reason"].as_str().unwrap_or("?").to_owned())
    })
}

/// A table row for the hosts of `net` in one family.
fn row(
    s: &Seen,
    net: &Net,
    v6: bool,
    client: &str,
    http: String,
    sent: &Reading,
    passed: &Reading,
) -> Row {
    let fam = if v6 { "6" } else { "" };
    let counter = format!("{}{fam}", net.name);
    let cidr: IpNet = net.cidr(net_number(net), v6).parse().unwrap_or_default();
    let mut dropped = 0;
    let mut reasons: Vec<String> = Vec::new();
    for r in &s.top {
        let Some(ip) = r["target"].as_str().and_then(ip_of) else {
            continue;
        };
        if cidr.contains(&ip) {
            dropped += num(r, &["drops"]);
            if let Some(reason) = r["ban"]["reason"].as_str() {
                let text = format!("{reason} ban");
                if !reasons.contains(&text) {
                    reasons.push(text);
                }
            }
        }
    }
    if let Some(reason) = ban_reason(s, &cidr.to_string()) {
        reasons.push(format!("{reason} ban of {cidr}"));
    }
    let hosts = if v6 { &net.hosts_v6 } else { &net.hosts_v4 };
    let address = match hosts.len() {
        1 => hosts[0].to_string(),
        n => format!("{n} hosts of {cidr}"),
    };
    Row {
        client: client.to_owned(),
        address,
        http,
        sent: sent.get(&counter),
        passed: passed.get(&counter),
        dropped,
        reasons: reasons.join(", "),
    }
}

fn net_number(net: &Net) -> u8 {
    match net.edge_v4 {
        IpAddr::V4(a) => a.octets()[2],
        IpAddr::V6(_) => 0,
    }
}

/// People browsing from the user network (two IPv4 sessions, one IPv6).
fn people(l: &CrawlLab) -> Browsing {
    let u = l.net("user");
    Browsing::start(
        &u.ns,
        &[
            (u.hosts_v4[0], u.edge_v4),
            (u.hosts_v4[1], u.edge_v4),
            (u.hosts_v6[2], u.edge_v6),
        ],
        THINK,
    )
}

fn baseline(l: &CrawlLab) -> Vec<Visit> {
    let b = people(l);
    std::thread::sleep(BASELINE);
    b.stop()
}

/// People: every page view succeeded and latency stayed near the baseline.
fn check_people(o: &mut Outcome, base: &[Visit], during: &[Visit]) {
    let failed = during.iter().filter(|v| v.status != 200).count();
    o.check(
        failed == 0 && !during.is_empty(),
        "every page view of the people browsing succeeded",
        format!("{} of {} failed", failed, during.len()),
    );
    let lat = |v: &[Visit]| -> Vec<Duration> { v.iter().map(|v| v.latency).collect() };
    let (b50, b95) = (quantile_ms(&lat(base), 0.5), quantile_ms(&lat(base), 0.95));
    let (d50, d95) = (
        quantile_ms(&lat(during), 0.5),
        quantile_ms(&lat(during), 0.95),
    );
    // Near the baseline, with room for a shared two-CPU machine's jitter (the
    // flood's own CPU cost lands on the same two CPUs). A limiter that drops a
    // person's packet costs them a TCP retransmission, 200 ms at the least:
    // far outside this.
    o.check(
        d50 <= LATENCY_MEDIAN.0 * b50 + LATENCY_MEDIAN.1
            && d95 <= LATENCY_P95.0 * b95 + LATENCY_P95.1,
        "people's latency stayed near the no-attack baseline",
        format!("median {d50:.1} ms (baseline {b50:.1}), p95 {d95:.1} ms (baseline {b95:.1})"),
    );
}

fn people_row(l: &CrawlLab, s: &Seen, during: &[Visit], sent: &Reading, passed: &Reading) -> Row {
    let ok = during.iter().filter(|v| v.status == 200).count();
    let mut r = row(
        s,
        l.net("user"),
        false,
        "people (curl)",
        format!("{ok}/{}", during.len()),
        sent,
        passed,
    );
    let r6 = row(s, l.net("user"), true, "", String::new(), sent, passed);
    r.address = "198.18.2.2–.3, fd00:f100:2::4".to_owned();
    r.sent += r6.sent;
    r.passed += r6.passed;
    r.dropped += r6.dropped;
    r
}

/// Reads a network's sent counters (its own namespace).
fn sent(net: &Net) -> Result<Reading> {
    net.sent.read()
}

/// Steady-state window check of a limiter: `passed` packets over `[a, b]` is
/// at most `limit × seconds × (1 + 5 %) + slack` (and, with `exact`, at least
/// `limit × seconds × (1 − 5 %)`).
fn check_rate(
    o: &mut Outcome,
    what: &str,
    a: &Reading,
    b: &Reading,
    counter: &str,
    limit: f64,
    exact: bool,
) {
    let r = rate(a, b, counter);
    let secs = b.at.duration_since(a.at).as_secs_f64();
    // One packet of read-timing jitter at each end of the window.
    let slack = 2.0 / secs;
    let hi = limit * (1.0 + TOLERANCE) + slack;
    let lo = limit * (1.0 - TOLERANCE) - slack;
    // Judged over the window's possible lengths (each snapshot happened
    // somewhere inside its nft call), so a stalled nft cannot make a limiter
    // look too fast or too slow; a quick one leaves the bounds at `r`.
    let (shortest, longest) = window_bounds(a, b);
    let count = b.get(counter).saturating_sub(a.get(counter)) as f64;
    let ok = count / longest <= hi && (!exact || count / shortest >= lo);
    let range = if exact {
        format!("{lo:.0}–{hi:.0}")
    } else {
        format!("≤ {hi:.0}")
    };
    o.check(
        ok,
        what,
        format!("{r:.1} packets/s over {secs:.1} s; limit {limit}/s, allowed {range}"),
    );
}

/// `stats` put every drop between two snapshots under `reason` (and some
/// there); returns the drops by reason.
fn check_only_reason(
    o: &mut Outcome,
    before: &Seen,
    after: &Seen,
    reason: &str,
) -> Vec<(String, u64)> {
    let drops = drops_between(&before.stats, &after.stats);
    o.check(
        drops_of(&drops, reason) > 0 && drops.iter().all(|(k, _)| k.starts_with(reason)),
        format!("stats attribute every drop to {reason}"),
        format!("{drops:?}"),
    );
    drops
}

/// `top`'s first row is `who`.
fn check_top_first(o: &mut Outcome, s: &Seen, who: IpAddr, what: &str) {
    let first = s
        .top
        .first()
        .and_then(|r| r["target"].as_str())
        .unwrap_or("-");
    o.check(
        ip_of(first) == Some(who),
        what,
        format!("first row {first}, expected {who}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sets_keys_in_their_sections() {
        let c = config(
            &[("packets", "\"5/s\""), ("packets_burst", "9")],
            &[("ban", "\"1m\"")],
        );
        let v: toml::Table = toml::from_str(&c).unwrap_or_default();
        assert_eq!(v["limits"]["packets"].as_str(), Some("5/s"));
        assert_eq!(v["limits"]["packets_burst"].as_integer(), Some(9));
        assert_eq!(v["prefix"]["ban"].as_str(), Some("1m"));
        assert_eq!(v["prefix"]["packets"].as_str(), Some("off"));
    }
}
