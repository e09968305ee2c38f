//! The floods: one crawler over its limit (IPv4, IPv6, VLAN-tagged), a
//! low-and-slow scraper against its quota, and a crawler spread over two
//! prefixes.

use super::*;

/// Flood crawler: wrk with 32 connections against a 300 packets/s limit (no
/// ban, so the limit itself is measured), people browsing meanwhile.
pub fn flood(bin: &str, variant: Flood) -> Result<Outcome> {
    const LIMIT: f64 = 300.0;
    let cfg = config(&[("packets", "\"300/s\""), ("packets_burst", "300")], &[]);
    let v6 = variant == Flood::V6;
    let mut l = CrawlLab::new(if v6 { "fl6" } else { "fl4" }, bin, &cfg)?;
    let net_name = "crawl";
    let mut o = Outcome::new(&format!(
        "flood crawler (wrk, {})",
        if v6 { "IPv6" } else { "IPv4" }
    ));
    let base = baseline(&l);
    let before = seen(&l)?;
    let net = l.net(net_name);
    let (ns, target, crawler) = (net.ns.clone(), net.edge(v6), net.host(v6));
    let counter = format!("{net_name}{}", if v6 { "6" } else { "" });
    let users = people(&l);
    let log = l.file("wrk.log");
    let wrk = Wrk::start(&mut l.lab, &ns, target, 32, Duration::from_secs(9), &log)?;
    std::thread::sleep(Duration::from_secs(3));
    let (a, b) = l.passed.window(Duration::from_secs(5))?;
    let result = wrk.finish(&mut l.lab)?;
    let during = users.stop();
    let after = seen(&l)?;
    let (sent_c, sent_u) = (sent(l.net(net_name))?, sent(l.net("user"))?);
    let passed = l.passed.read()?;

    // Within ±5 % both ways: held to the limit, and served up to it (a
    // limiter that black-holes the crawler, or passes it in bursts, fails).
    check_rate(
        &mut o,
        "the crawler is held to its packet limit and served up to it (±5 %)",
        &a,
        &b,
        &counter,
        LIMIT,
        true,
    );
    o.check(
        result.requests > 0,
        "nginx answers the crawler at its limit",
        format!("{} requests answered", result.requests),
    );
    let drops = check_only_reason(&mut o, &before, &after, "rate_packets");
    check_top_first(&mut o, &after, crawler, "top lists the crawler first");
    let crow = row(
        &after,
        l.net(net_name),
        v6,
        "flood crawler (wrk)",
        format!("{}/-", result.requests),
        &sent_c,
        &passed,
    );
    // What floodgate says it dropped matches what the wire lost (sent − passed).
    let lost = crow.sent.saturating_sub(crow.passed);
    o.check(
        (crow.dropped as f64 - lost as f64).abs() <= lost as f64 * 0.02 + 20.0,
        "floodgate's drop count for the crawler matches sent − passed",
        format!(
            "floodgate {} dropped, nftables sent {} passed {} (lost {lost})",
            crow.dropped, crow.sent, crow.passed
        ),
    );
    check_people(&mut o, &base, &during);
    o.rows.push(crow);
    o.rows
        .push(people_row(&l, &after, &during, &sent_u, &passed));
    o.reasons = drops;
    Ok(o)
}

/// VLAN-tagged flood: TCP SYN frames in VLAN 100 at 1500/s from one source
/// (raw frames: this kernel has no VLAN interfaces) against a 300 packets/s
/// limit; the tagged frames floodgate passes are counted on the edge's ingress.
pub fn vlan_flood(bin: &str) -> Result<Outcome> {
    const LIMIT: f64 = 300.0;
    let cfg = config(&[("packets", "\"300/s\""), ("packets_burst", "300")], &[]);
    let l = CrawlLab::new("vlan", bin, &cfg)?;
    let mut o = Outcome::new("flood crawler in VLAN 100 (tagged SYN frames)");
    let base = baseline(&l);
    let before = seen(&l)?;
    let net = l.net("vlan");
    let src: IpAddr = "198.18.6.2".parse()?;
    let mut frame = Frame::syn(src, 80);
    frame.dst = net.edge_v4;
    let mut bytes = frame.with_vlan(Vlan::Single(VLAN_ID)).build();
    bytes[..6].copy_from_slice(&mac_bytes(&net.link.a_mac)?);
    bytes[6..12].copy_from_slice(&mac_bytes(&net.link.b_mac)?);
    let users = people(&l);
    let flood = RawFlood::start(&net.ns, &net.link.b_if, bytes, 1500);
    std::thread::sleep(Duration::from_secs(2));
    let (a, b) = l.tagged.window(Duration::from_secs(4))?;
    let sent_frames = flood.stop()?;
    let during = users.stop();
    let after = seen(&l)?;
    let (passed, sent_u) = (l.passed.read()?, sent(l.net("user"))?);
    let tagged = l.tagged.read()?;

    check_rate(
        &mut o,
        "tagged frames passed are held to the limit (±5 %)",
        &a,
        &b,
        "vlan_syn",
        LIMIT,
        true,
    );
    let drops = check_only_reason(&mut o, &before, &after, "rate_packets");
    check_top_first(
        &mut o,
        &after,
        src,
        "top lists the tagged crawler first (the VLAN header was parsed)",
    );
    check_people(&mut o, &base, &during);
    let mut r = row(
        &after,
        l.net("vlan"),
        false,
        "tagged SYN flood (raw)",
        "-".into(),
        &tagged,
        &passed,
    );
    r.address = src.to_string();
    r.sent = sent_frames;
    r.passed = tagged.get("vlan_syn");
    o.rows.push(r);
    o.rows
        .push(people_row(&l, &after, &during, &sent_u, &passed));
    o.reasons = drops;
    Ok(o)
}

/// Low-and-slow scraper: 10 pages/s on fresh connections (about 60 packets/s),
/// under every per-second limit, against a 500-packet quota per 30 s window
/// (standing in for a daily quota; people browsing spend about half of it). It
/// must be cut off once the quota is spent, and banned.
pub fn low_and_slow(bin: &str) -> Result<Outcome> {
    const QUOTA: f64 = 500.0;
    let cfg = config(
        &[
            ("packets", "\"100/s\""),
            ("packets_burst", "200"),
            ("syn", "\"20/s\""),
            ("syn_burst", "40"),
            ("quota", "\"500/30s\""),
            ("ban", "\"1m\""),
        ],
        &[],
    );
    let l = CrawlLab::new("slow", bin, &cfg)?;
    let mut o = Outcome::new("low-and-slow scraper (quota 500 packets / 30 s)");
    let base = baseline(&l);
    let before = seen(&l)?;
    let net = l.net("slow");
    let scraper = Scraper::start(&net.ns, vec![net.hosts_v4[0]], net.edge_v4, 10.0);
    let users = people(&l);
    std::thread::sleep(Duration::from_secs(14));
    let logs = scraper.stop()?;
    let during = users.stop();
    let after = seen(&l)?;
    let passed = l.passed.read()?;
    let (sent_s, sent_u) = (sent(l.net("slow"))?, sent(l.net("user"))?);
    let log = logs.first().cloned().context("the scraper ran no source")?;

    let drops = drops_between(&before.stats, &after.stats);
    o.check(
        ["rate_packets", "rate_syn", "rate_bytes"]
            .iter()
            .all(|r| drops_of(&drops, r) == 0),
        "the scraper stayed under every per-second limit",
        format!("{drops:?}"),
    );
    let got = passed.get("slow") as f64;
    o.check(
        (got - QUOTA).abs() <= QUOTA * TOLERANCE,
        "it was served its quota and no more",
        format!("{got} packets reached the shop; quota {QUOTA}"),
    );
    o.check(
        log.first_failure
            .is_some_and(|t| t >= Duration::from_secs(3))
            && log.ok_after_failure <= 1,
        "it was cut off once the quota was spent",
        format!(
            "{} pages, first failure at {:?}, {} pages after it",
            log.ok, log.first_failure, log.ok_after_failure
        ),
    );
    let reason = ban_reason(&after, &log.src.to_string());
    o.check(
        reason.as_deref() == Some("quota"),
        "bans list shows the scraper banned for its quota",
        format!("{reason:?}"),
    );
    check_people(&mut o, &base, &during);
    o.rows.push(row(
        &after,
        l.net("slow"),
        false,
        "low-and-slow scraper",
        http(&[log]),
        &sent_s,
        &passed,
    ));
    o.rows
        .push(people_row(&l, &after, &during, &sent_u, &passed));
    o.reasons = drops;
    Ok(o)
}

fn http(logs: &[SourceLog]) -> String {
    let ok: u64 = logs.iter().map(|l| l.ok).sum();
    let tried: u64 = logs.iter().map(|l| l.ok + l.failed).sum();
    format!("{ok}/{tried}")
}

/// Distributed crawler: 32 addresses of one /24 and 32 of one IPv6 /64, each
/// at 4 pages/s (about 25 packets/s, far under the 100/s per-source limit),
/// together well over the 400 packets/s prefix limit.
pub fn distributed(bin: &str) -> Result<Outcome> {
    let cfg = config(
        &[
            ("packets", "\"100/s\""),
            ("packets_burst", "200"),
            ("syn", "\"20/s\""),
            ("syn_burst", "40"),
            ("ban", "\"1m\""),
        ],
        &[
            ("packets", "\"400/s\""),
            ("packets_burst", "400"),
            ("ban", "\"1m\""),
        ],
    );
    let l = CrawlLab::new("dist", bin, &cfg)?;
    let mut o =
        Outcome::new("distributed crawler (32 hosts of 198.18.3.0/24 and of fd00:f100:3::/64)");
    let base = baseline(&l);
    let before = seen(&l)?;
    let net = l.net("dist");
    let v4 = Scraper::start(&net.ns, net.hosts_v4.clone(), net.edge_v4, 4.0);
    let v6 = Scraper::start(&net.ns, net.hosts_v6.clone(), net.edge_v6, 4.0);
    let users = people(&l);
    // Wait for both prefix bans (they come within a second or two).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut mid = seen(&l)?;
    while Instant::now() < deadline
        && !(ban_reason(&mid, "198.18.3.0/24").is_some()
            && ban_reason(&mid, "fd00:f100:3::/64").is_some())
    {
        std::thread::sleep(Duration::from_millis(250));
        mid = seen(&l)?;
    }
    // Banned prefixes get nothing through.
    std::thread::sleep(Duration::from_millis(500));
    let (a, b) = l.passed.window(Duration::from_secs(3))?;
    let (logs4, logs6) = (v4.stop()?, v6.stop()?);
    let during = users.stop();
    let after = seen(&l)?;
    let passed = l.passed.read()?;
    let (sent_d, sent_u) = (sent(l.net("dist"))?, sent(l.net("user"))?);

    let drops = drops_between(&before.stats, &after.stats);
    o.check(
        ["rate_packets", "rate_syn"]
            .iter()
            .all(|r| drops_of(&drops, r) == 0),
        "no single address went over the per-source limits",
        format!("{drops:?}"),
    );
    for cidr in ["198.18.3.0/24", "fd00:f100:3::/64"] {
        let reason = ban_reason(&after, cidr);
        o.check(
            reason.as_deref() == Some("prefix_rate"),
            format!("bans list shows {cidr} banned by the prefix limit"),
            format!("{reason:?}"),
        );
    }
    let through = b.get("dist") + b.get("dist6") - a.get("dist") - a.get("dist6");
    o.check(
        through == 0,
        "nothing of the banned prefixes reaches the shop",
        format!("{through} packets in 3 s"),
    );
    let firsts: Vec<&str> = after
        .top
        .iter()
        .take(5)
        .filter_map(|r| r["target"].as_str())
        .collect();
    let prefixes = l.daemon.json(&["top", "--prefixes", "-n", "2"])?;
    let top2: Vec<String> = prefixes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["target"].as_str().map(str::to_owned))
        .collect();
    o.check(
        top2.iter()
            .all(|t| t == "198.18.3.0/24" || t == "fd00:f100:3::/64")
            && top2.len() == 2,
        "top --prefixes lists the crawler's two prefixes first",
        format!("{top2:?} (top sources: {firsts:?})"),
    );
    check_people(&mut o, &base, &during);
    o.rows.push(row(
        &after,
        l.net("dist"),
        false,
        "distributed crawler v4",
        http(&logs4),
        &sent_d,
        &passed,
    ));
    o.rows.push(row(
        &after,
        l.net("dist"),
        true,
        "distributed crawler v6",
        http(&logs6),
        &sent_d,
        &passed,
    ));
    o.rows
        .push(people_row(&l, &after, &during, &sent_u, &passed));
    o.reasons = drops;
    Ok(o)
}
