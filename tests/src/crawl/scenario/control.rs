//! The control plane under a flood: a SYN flood enforced and then in monitor
//! mode, a reload and a daemon restart while the crawlers run.

use super::*;

/// Sends `count` SYNs with hping3 at 2500/s from the syn network and waits.
fn syn_burst(l: &mut CrawlLab, count: u64, name: &str) -> Result<()> {
    let net = l.net("syn");
    let (ns, dst) = (net.ns.clone(), net.edge_v4);
    let log = l.file(name);
    let mut cmd = ns.command("hping3");
    cmd.args(["-q", "-S", "-p", "80", "-i", "u400", "-c"])
        .arg(count.to_string())
        .arg(dst.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let status = cmd
        .status()
        .context("running hping3 (installed by `cargo xtask setup`)")?;
    // hping3 exits 1 when no reply came back for the last probes; both are fine.
    anyhow::ensure!(status.code().is_some(), "hping3 was killed: {status}");
    Ok(())
}

/// SYN flood against a 50 SYN/s limit: the limit holds within ±5 %; then the
/// same flood in monitor mode passes everything and reports as would-drop
/// what enforce mode dropped (within 5 %).
pub fn syn_flood_and_monitor(bin: &str) -> Result<Outcome> {
    // Low against the flood, so what passes (burst + limit × the flood's
    // duration) is a small share of it: the drop counts of the two runs agree
    // within 5 % even if one run's flood takes twice as long on a busy machine.
    const LIMIT: f64 = 50.0;
    const COUNT: u64 = 10_000;
    let cfg = config(&[("syn", "\"50/s\""), ("syn_burst", "50")], &[]);
    let mut l = CrawlLab::new("syn", bin, &cfg)?;
    let mut o = Outcome::new("SYN flood (hping3), enforce then monitor");
    let base = baseline(&l);
    let users = people(&l);
    let s0 = seen(&l)?;
    let (sent0, pass0) = (sent(l.net("syn"))?, l.passed.read()?);
    // Enforce: measure the steady state while the burst runs.
    let net = l.net("syn");
    let (ns, dst) = (net.ns.clone(), net.edge_v4);
    let log = l.file("hping-steady.log");
    let hping = Hping::start(&mut l.lab, &ns, dst, 400, &log)?;
    std::thread::sleep(Duration::from_secs(2));
    let (a, b) = l.passed.window(Duration::from_secs(3))?;
    hping.stop(&mut l.lab)?;
    check_rate(
        &mut o,
        "SYNs passed are held to the limit (±5 %)",
        &a,
        &b,
        "syn_syn",
        LIMIT,
        true,
    );
    std::thread::sleep(Duration::from_secs(2)); // the bucket refills
    let s1 = seen(&l)?;
    syn_burst(&mut l, COUNT, "hping-enforce.log")?;
    let s2 = seen(&l)?;
    let dropped = drops_of(&drops_between(&s1.stats, &s2.stats), "rate_syn");
    l.daemon.ok(&["mode", "monitor"])?;
    std::thread::sleep(Duration::from_secs(2));
    let (sent_m0, pass_m0) = (sent(l.net("syn"))?, l.passed.read()?);
    let s3 = seen(&l)?;
    syn_burst(&mut l, COUNT, "hping-monitor.log")?;
    let s4 = seen(&l)?;
    let (sent_m1, pass_m1) = (sent(l.net("syn"))?, l.passed.read()?);
    let during = users.stop();
    let monitor = drops_between(&s3.stats, &s4.stats);
    let would = drops_of(&monitor, "rate_syn");
    let dropped_in_monitor =
        num(&s4.stats, &["dropped", "packets"]) - num(&s3.stats, &["dropped", "packets"]);
    o.check(
        dropped > 0 && (would as f64 - dropped as f64).abs() <= dropped as f64 * TOLERANCE,
        "monitor mode's would_drop matches what enforce mode dropped (±5 %)",
        format!("enforce dropped {dropped} of {COUNT}; monitor would-drop {would} of {COUNT}"),
    );
    let sent_m = sent_m1.get("syn") - sent_m0.get("syn");
    let pass_m = pass_m1.get("syn") - pass_m0.get("syn");
    o.check(
        dropped_in_monitor == 0 && pass_m == sent_m,
        "monitor mode dropped nothing",
        format!(
            "floodgate dropped {dropped_in_monitor}; {pass_m} of {sent_m} packets reached the shop"
        ),
    );
    let st = num(&s4.stats, &["would_drop", "packets"]);
    o.check(
        st >= would,
        "stats report would_drop totals",
        format!("would_drop total {st}"),
    );
    check_people(&mut o, &base, &during);
    let passed = l.passed.read()?;
    let sent_u = sent(l.net("user"))?;
    let mut r = row(
        &s4,
        l.net("syn"),
        false,
        "SYN flood (hping3)",
        "-".into(),
        &sent_m1,
        &passed,
    );
    r.sent -= sent0.get("syn");
    r.passed -= pass0.get("syn");
    r.reasons = format!("enforce: rate_syn {dropped}; monitor: would_drop rate_syn {would}");
    o.rows.push(r);
    o.rows.push(people_row(&l, &s4, &during, &sent_u, &passed));
    o.reasons = drops_between(&s0.stats, &s4.stats);
    Ok(o)
}

/// Reload under a SYN flood: 400/s tightened to 100/s takes effect within a
/// second, counters carry on, people unaffected.
pub fn reload_under_flood(bin: &str) -> Result<Outcome> {
    let loose = config(&[("syn", "\"400/s\""), ("syn_burst", "400")], &[]);
    let tight = config(&[("syn", "\"100/s\""), ("syn_burst", "100")], &[]);
    let mut l = CrawlLab::new("reload", bin, &loose)?;
    let mut o = Outcome::new("reload under a SYN flood (400/s → 100/s)");
    let base = baseline(&l);
    let users = people(&l);
    let net = l.net("syn");
    let (ns, dst) = (net.ns.clone(), net.edge_v4);
    let log = l.file("hping.log");
    let hping = Hping::start(&mut l.lab, &ns, dst, 400, &log)?;
    std::thread::sleep(Duration::from_secs(2));
    let (a, b) = l.passed.window(Duration::from_secs(2))?;
    let s1 = seen(&l)?;
    l.daemon.write_config(&tight)?;
    l.daemon.ok(&["reload"])?;
    let reloaded = Instant::now();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(reloaded.elapsed()));
    let (c, d) = l.passed.window(Duration::from_secs(3))?;
    hping.stop(&mut l.lab)?;
    let during = users.stop();
    let s2 = seen(&l)?;
    check_rate(
        &mut o,
        "before the reload: 400 SYN/s pass (±5 %)",
        &a,
        &b,
        "syn_syn",
        400.0,
        true,
    );
    check_rate(
        &mut o,
        "from 1 s after the reload: 100 SYN/s pass (±5 %)",
        &c,
        &d,
        "syn_syn",
        100.0,
        true,
    );
    let total =
        |s: &Seen| num(&s.stats, &["passed", "packets"]) + num(&s.stats, &["dropped", "packets"]);
    o.check(
        total(&s2) > total(&s1)
            && num(&s2.stats, &["dropped", "packets"]) >= num(&s1.stats, &["dropped", "packets"]),
        "counters were not reset by the reload",
        format!("packets seen {} before, {} after", total(&s1), total(&s2)),
    );
    check_people(&mut o, &base, &during);
    let (sent_s, sent_u, passed) = (sent(l.net("syn"))?, sent(l.net("user"))?, l.passed.read()?);
    o.rows.push(row(
        &s2,
        l.net("syn"),
        false,
        "SYN flood (hping3)",
        "-".into(),
        &sent_s,
        &passed,
    ));
    o.rows.push(people_row(&l, &s2, &during, &sent_u, &passed));
    o.reasons = drops_between(&s1.stats, &s2.stats);
    Ok(o)
}

/// Restart under flood: wrk gets the crawler banned, hping3 runs against a SYN
/// limit (a rule exempts it from bans); the daemon is SIGKILLed and restarted
/// mid-flood. Filtering never stops and the ban survives.
pub fn restart_under_flood(bin: &str) -> Result<Outcome> {
    let mut cfg = config(
        &[
            ("packets", "\"300/s\""),
            ("packets_burst", "300"),
            ("syn", "\"200/s\""),
            ("syn_burst", "200"),
            ("ban", "\"2m\""),
        ],
        &[],
    );
    cfg += "\n[[rule]]\nname = \"syn-lab\"\nmatch = [\"198.18.5.0/24\"]\nban = \"0s\"\n";
    let mut l = CrawlLab::new("restart", bin, &cfg)?;
    let mut o = Outcome::new("restart under flood (SIGKILL, then start again)");
    let base = baseline(&l);
    let users = people(&l);
    let crawl = l.net("crawl");
    let (cns, ctarget, crawler) = (crawl.ns.clone(), crawl.edge_v4, crawl.hosts_v4[0]);
    let syn = l.net("syn");
    let (sns, starget) = (syn.ns.clone(), syn.edge_v4);
    let wlog = l.file("wrk.log");
    let wrk = Wrk::start(
        &mut l.lab,
        &cns,
        ctarget,
        32,
        Duration::from_secs(20),
        &wlog,
    )?;
    let hlog = l.file("hping.log");
    let hping = Hping::start(&mut l.lab, &sns, starget, 400, &hlog)?;
    // Measure only once both limits are in steady state: the crawler banned
    // and the SYN bucket drained (its first drop). Until then the SYN source
    // still spends its 200-packet burst and a window would count it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = seen(&l)?;
        let banned = ban_reason(&s, &crawler.to_string()).is_some();
        let drained = drops_of(&drops_between(&Value::Null, &s.stats), "rate_syn") > 0;
        if (banned && drained) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (a, b) = l.passed.window(Duration::from_secs(2))?;
    l.daemon
        .stop_in(&mut l.lab, nix::sys::signal::Signal::SIGKILL)?;
    let (c, d) = l.passed.window(Duration::from_secs(2))?;
    l.start_daemon()?;
    let status = l.daemon.json(&["status"])?;
    let (e, f) = l.passed.window(Duration::from_secs(2))?;
    let result = wrk.finish(&mut l.lab);
    hping.stop(&mut l.lab)?;
    let during = users.stop();
    let after = seen(&l)?;
    let reason = ban_reason(&after, &crawler.to_string());

    for (when, x, y) in [
        ("before", &a, &b),
        ("while the daemon was down", &c, &d),
        ("after the restart", &e, &f),
    ] {
        let through = y.get("crawl") - x.get("crawl");
        o.check(
            through == 0,
            format!("the banned crawler gets nothing through {when}"),
            format!("{through} packets"),
        );
        check_rate(
            &mut o,
            &format!("the SYN flood stays at its limit {when} (±5 %)"),
            x,
            y,
            "syn_syn",
            200.0,
            true,
        );
    }
    o.check(
        status["adopted_pinned_state"] == true,
        "the restarted daemon adopted the pinned state",
        format!("adopted_pinned_state = {}", status["adopted_pinned_state"]),
    );
    o.check(
        reason.as_deref() == Some("rate_packets"),
        "the crawler's ban survived the restart with its reason",
        format!("{reason:?}"),
    );
    check_people(&mut o, &base, &during);
    let (sent_c, sent_s, sent_u, passed) = (
        sent(l.net("crawl"))?,
        sent(l.net("syn"))?,
        sent(l.net("user"))?,
        l.passed.read()?,
    );
    let requests = result
        .map(|r| r.requests.to_string())
        .unwrap_or_else(|e| format!("{e}"));
    o.rows.push(row(
        &after,
        l.net("crawl"),
        false,
        "flood crawler (wrk)",
        format!("{requests}/-"),
        &sent_c,
        &passed,
    ));
    o.rows.push(row(
        &after,
        l.net("syn"),
        false,
        "SYN flood (hping3)",
        "-".into(),
        &sent_s,
        &passed,
    ));
    o.rows
        .push(people_row(&l, &after, &during, &sent_u, &passed));
    o.reasons = drops_between(&Value::Null, &after.stats);
    Ok(o)
}
