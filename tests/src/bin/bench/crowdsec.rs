//! The CrowdSec bouncer at scale: a real LAPI (crowdsec 1.4.6) holding
//! 100 000 decisions (`cs_load.rs`), the real daemon pulling them with
//! `startup=true` while a UDP flood from 400 sources — decided addresses,
//! addresses inside decided ranges, undecided ones — hits the edge
//! (`cs_flood.rs`). Measured: how long from the bouncer's first pull until
//! every decision is enforced (the daemon's log, its status and the sinks),
//! and, with the 100 000 held, whether a restart (SIGTERM, start again: the
//! pinned maps adopted, then a `startup=true` resync) lets a single datagram
//! of a covered source through.

use std::{
    collections::HashSet,
    net::IpAddr,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail, ensure};
use floodgate_tests::{daemon::DaemonLab, fleet::CsLab};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::{
    cs_flood::{Flood, Sample, clean_gap_ms, last_covered, sample, watch},
    cs_load::{self, IP_V4, IP_V6, RANGE_V4, RANGE_V6, Sources, TOTAL},
};

/// The claim: every decision of a startup pull enforced within this.
pub const APPLY_MS_MAX: f64 = 2000.0;
/// How often `status` is asked while waiting (each walks the maps, on a
/// 2-CPU host a load of its own: the times come from the log and the sinks,
/// status only confirms).
const STATUS_EVERY: Duration = Duration::from_millis(100);
/// The flood's total rate: 100 datagrams/s from each of the 400 sources, so
/// an unfiltered millisecond would show as ~30 covered datagrams.
pub const FLOOD_PPS: u64 = 40_000;

/// Default capacities (1 000 000 sources, so 62 500 bans: remote addresses
/// may take 31 250); limits far above the flood's per-source rate, so every
/// drop is a decision's.
const POLICY: &str = r#"
[limits]
ports = []
packets = "1000/s"
packets_burst = 1000
bytes = "off"
syn = "off"
quota = "off"
ban = "0s"
[prefix]
packets = "off"
syn = "off"
quota = "off"
"#;

/// A log line's time (RFC 3339, UTC) as Unix seconds.
pub fn unix_secs(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let mut t = time.split(':');
    let (h, mi, s) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    Some(days as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + s)
}

/// From the daemon's JSON log: when it started filtering (the bouncer's
/// first pull goes out right then) and when the first full pull was applied,
/// both in ms after `t0` (Unix seconds), with the engine's `apply_ms`.
fn log_times(log: &Path, t0: f64) -> Result<(f64, f64, u64, u64)> {
    let text = std::fs::read_to_string(log)?;
    let (mut filtering, mut applied) = (None, None);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let at = v["timestamp"].as_str().and_then(unix_secs);
        match v["fields"]["message"].as_str() {
            Some("floodgate is filtering") => filtering = filtering.or(at),
            Some("applied a full CrowdSec pull") if applied.is_none() => {
                let f = &v["fields"];
                let decisions = f["decisions"].as_u64();
                ensure!(
                    decisions == Some(TOTAL),
                    "the first full pull brought {decisions:?} decisions, not {TOTAL}: {line}"
                );
                applied = Some((at, f["apply_ms"].as_u64(), f["changed"].as_u64()));
            }
            _ => {}
        }
    }
    let filtering = filtering.context("no \"floodgate is filtering\" in the daemon's log")?;
    let Some((Some(at), Some(apply_ms), Some(changed))) = applied else {
        bail!("no \"applied a full CrowdSec pull\" line in the daemon's log:\n{text}");
    };
    Ok(((filtering - t0) * 1e3, (at - t0) * 1e3, apply_ms, changed))
}

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The bouncer's status once it holds all `TOTAL` decisions after a good pull.
fn wait_held(d: &DaemonLab, max: Duration) -> Result<Value> {
    let deadline = Instant::now() + max;
    loop {
        let s = d.json(&["status"])?["crowdsec"].clone();
        let held: u64 = s["decisions"]
            .as_object()
            .map_or(0, |o| o.values().filter_map(Value::as_u64).sum());
        if s["up"] == true && held == TOTAL {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "the bouncer holds {held} of {TOTAL} decisions after {} s: {s}{}",
                max.as_secs(),
                d.daemon_log()
            );
        }
        std::thread::sleep(STATUS_EVERY);
    }
}

/// Runs `phase` on the daemon while the sinks are sampled every 5 ms, then
/// samples 1 s more, so covered datagrams that come late are seen.
fn watched<T>(
    l: &mut CsLab,
    covered: &HashSet<IpAddr>,
    phase: impl FnOnce(&mut DaemonLab) -> Result<T>,
) -> Result<(T, Vec<Sample>)> {
    let stop = AtomicBool::new(false);
    let CsLab { d, v4, v6, .. } = l;
    let sinks = [&*v4, &*v6];
    std::thread::scope(|s| {
        let sampler = s.spawn(|| watch(sinks, covered, &stop));
        let result = phase(d);
        if result.is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, Ordering::Relaxed);
        let timeline = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
        Ok((result?, timeline))
    })
}

/// What a timeline's `count` grew by after `at`.
fn grew_after(timeline: &[Sample], at: Instant, count: impl Fn(&Sample) -> u64) -> u64 {
    let before = timeline.iter().rev().find(|s| s.at <= at).map_or(0, &count);
    timeline.last().map_or(0, &count) - before
}

/// Datagrams the flood sent from the clean sources (indices `clean`).
fn clean_sent(flood: &Flood, clean: &[usize]) -> u64 {
    let sent = flood.sent();
    clean.iter().map(|&i| sent[i]).sum()
}

/// Cold start under the flood: the daemon starts with no decision held; the
/// bouncer's first pull brings all 100 000. Once status says they are held,
/// no covered datagram may get through, and the clean ones still must.
fn cold(l: &mut CsLab, covered: &HashSet<IpAddr>, flood: &Flood, clean: &[usize]) -> Result<Value> {
    let (t0, wall0) = (Instant::now(), now_unix());
    let ((up, held, status, sent_at_held), timeline) = watched(l, covered, |d| {
        d.start()?;
        let up = t0.elapsed();
        let status = wait_held(d, Duration::from_secs(60))?;
        Ok((up, t0.elapsed(), status, clean_sent(flood, clean)))
    })?;
    let clean_sent_after = clean_sent(flood, clean) - sent_at_held;
    let (filtering_ms, applied_ms, apply_ms, changed) = log_times(&l.d.log(1), wall0)?;
    let last = last_covered(&timeline).map_or(0.0, |t| ms(t - t0));
    let after_held = grew_after(&timeline, t0 + held, |s| s.covered);
    let clean_after = grew_after(&timeline, t0 + held, |s| s.clean);
    let before = grew_after(&timeline, t0, |s| s.covered) - after_held;
    // Enforced: applied (maps written, state saved) and no covered datagram
    // reaching the sinks any more.
    let enforced_ms = applied_ms.max(last) - filtering_ms;
    let clean_flowed = clean_after as f64 >= 0.9 * clean_sent_after as f64;
    Ok(json!({
        "socket_up_ms": ms(up),
        "filtering_ms": filtering_ms,
        "applied_ms": applied_ms,
        "status_held_ms": ms(held),
        "last_covered_datagram_ms": last,
        "pull_to_enforced_ms": enforced_ms,
        "engine_apply_ms": apply_ms,
        "networks_changed": changed,
        "covered_through_before_enforced": before,
        "covered_through_after_held": after_held,
        "clean_sent_after_held": clean_sent_after,
        "clean_through_after_held": clean_after,
        "bans": status["bans"],
        "blocks": status["blocks"],
        "within_claim": enforced_ms < APPLY_MS_MAX && after_held == 0 && clean_flowed,
    }))
}

/// With the 100 000 held: SIGTERM, start again, resync; every covered
/// datagram that reaches the sinks meanwhile is a leak.
fn restart(
    l: &mut CsLab,
    covered: &HashSet<IpAddr>,
    flood: &Flood,
    clean: &[usize],
) -> Result<Value> {
    let sinks = [&l.v4, &l.v6];
    let (first, clean_sent_before) = (sample(sinks, covered), clean_sent(flood, clean));
    let (t0, wall0) = (Instant::now(), now_unix());
    let ((stopped, up, held), timeline) = watched(l, covered, |d| {
        d.stop(Signal::SIGTERM)?;
        let stopped = t0.elapsed();
        d.start()?;
        let up = t0.elapsed();
        wait_held(d, Duration::from_secs(60))?;
        Ok((stopped, up, t0.elapsed()))
    })?;
    let last = sample([&l.v4, &l.v6], covered);
    let sent = clean_sent(flood, clean) - clean_sent_before;
    let (filtering_ms, applied_ms, apply_ms, changed) = log_times(&l.d.log(2), wall0)?;
    let leaked = last.covered - first.covered;
    let clean_through = last.clean - first.clean;
    let gap = clean_gap_ms(&timeline, t0, t0 + held);
    let flowed = clean_through as f64 >= 0.9 * sent as f64;
    Ok(json!({
        "stopped_ms": ms(stopped),
        "socket_up_ms": ms(up),
        "filtering_ms": filtering_ms,
        "applied_ms": applied_ms,
        "status_held_ms": ms(held),
        "resync_ms": applied_ms - filtering_ms,
        "engine_apply_ms": apply_ms,
        "networks_changed": changed,
        "window_ms": ms(last.at - first.at),
        "covered_leaked": leaked,
        "clean_sent": sent,
        "clean_through": clean_through,
        "clean_longest_gap_ms": gap,
        "flood_flowed": flowed,
        "no_unfiltered_moment": leaked == 0 && flowed,
    }))
}

pub fn run() -> Result<Value> {
    let bin = std::env::current_exe()?
        .parent()
        .context("no exe dir")?
        .join("floodgate-cli");
    ensure!(
        bin.exists(),
        "{} is missing: build the floodgate-tests bins",
        bin.display()
    );
    let mut l = CsLab::new(
        "csscale",
        bin.to_str().context("a UTF-8 path")?,
        POLICY,
        None,
        false,
    )?;
    l.d.extra_args = vec!["--log-format".into(), "json".into()];
    let src = Sources::new();
    // The crawler knows the edge's MAC: ARP from a covered source is never needed.
    l.d.add_crawler_sources(&src.all())?;
    let dir = tempfile::tempdir()?;
    eprintln!("bench: loading {TOTAL} decisions into a CrowdSec LAPI");
    let load = cs_load::load(&l.lapi, &l.d.edge, dir.path())?;
    let covered: HashSet<IpAddr> = src.covered().copied().collect();
    let all = src.all();
    let clean: Vec<usize> = (0..all.len())
        .filter(|i| !covered.contains(&all[*i]))
        .collect();
    let flood = Flood::start(&l.d.crawler, &all, FLOOD_PPS)?;
    // No daemon yet: everything gets through, covered sources too.
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        sample([&l.v4, &l.v6], &covered).covered > 0,
        "the flood does not reach the edge's sinks"
    );
    eprintln!("bench: the daemon pulls them under a flood, then restarts");
    let cold = cold(&mut l, &covered, &flood, &clean)?;
    let restart = restart(&mut l, &covered, &flood, &clean)?;
    let (secs, sent) = flood.stop()?;
    Ok(json!({
        "decisions": TOTAL,
        "mix": {"ip_v4": IP_V4, "ip_v6": IP_V6, "range_v4_29": RANGE_V4, "range_v6_120": RANGE_V6},
        "lapi": load,
        "flood": {
            "sources_decided": src.decided.len(),
            "sources_in_ranges": src.ranged.len(),
            "sources_clean": src.clean.len(),
            "pps_target": FLOOD_PPS,
            "pps_sent": sent as f64 / secs,
            "seconds": secs,
        },
        "cold": cold,
        "restart": restart,
    }))
}
