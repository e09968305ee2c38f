//! IP sets at scale (#16): a 100 000-entry block set (`sets_load.rs`) in a
//! `file://` source, refreshed twice under a UDP flood — `A` → `B` (10 000
//! entries replaced) and `B` → `C` (all 100 000) — by `floodgate sets
//! refresh`. Measured from each trigger: when the daemon logged the new copy
//! applied, and, per source, whether one datagram got through that the copy
//! in force should have dropped: a source on both copies at any moment, a
//! source only on the new copy once it was applied. Sources only on the old
//! copy must flow again, and those on no copy all along.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use floodgate_tests::{daemon::DaemonLab, fleet::dual_stack_sinks, lab::traffic::UdpSink};
use serde_json::{Value, json};

use crate::{
    crowdsec::{ms, now_unix, unix_secs},
    cs_flood::{Flood, by_source, every_5ms, gap_ms},
    sets_load::{self, Copy, Source, TOTAL},
};

/// The claim: a refreshed copy enforced within this of the trigger.
pub const APPLY_MS_MAX: f64 = 1000.0;
/// 100 datagrams/s a source on average (some 350 sources).
const FLOOD_PPS: u64 = 35_000;

/// Limits far above a source's rate: every drop is the set's.
const POLICY: &str = r#"
block = ["@bench"]
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

/// Replaces the set's file whole (a rename: the refresher never reads half).
fn write_copy(path: &Path, copy: &Copy) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, sets_load::text(copy))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The time (Unix s) and `apply_ms` of the `n`th "set refreshed" line (0 the
/// first) of `log` with `entries`, once it is there.
fn refreshed(log: &Path, n: usize, max: Duration) -> Result<(f64, u64)> {
    let deadline = Instant::now() + max;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "set refreshed")
            .filter(|v| v["fields"]["entries"].as_u64() == Some(TOTAL as u64))
            .filter_map(|v| {
                let at = v["timestamp"].as_str().and_then(unix_secs)?;
                Some((at, v["fields"]["apply_ms"].as_u64()?))
            })
            .collect();
        if let Some(&hit) = lines.get(n) {
            return Ok(hit);
        }
        if Instant::now() > deadline {
            bail!("no refresh #{n} of {TOTAL} entries in the log after {max:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Samples: when, and datagrams through so far by source.
type Timeline = Vec<(Instant, Vec<u64>)>;

/// Per-source timeline while `phase` runs, and 1 s after it.
fn watched<T>(
    sinks: [&UdpSink; 2],
    index: &HashMap<IpAddr, usize>,
    phase: impl FnOnce() -> Result<T>,
) -> Result<(T, Timeline)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| every_5ms(&stop, || by_source(sinks, index)));
        let result = phase();
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

/// Datagrams of the sources `pick` took that reached the sinks after `at`
/// (from the first sample taken after it), and the last time any did.
fn through_after(timeline: &Timeline, at: Instant, pick: &[usize]) -> (u64, Option<Instant>) {
    let sum = |v: &[u64]| pick.iter().map(|&i| v[i]).sum::<u64>();
    let Some(base) = timeline.iter().position(|(t, _)| *t >= at) else {
        return (0, None);
    };
    let last = timeline[base..]
        .windows(2)
        .filter(|w| sum(&w[1].1) > sum(&w[0].1))
        .map(|w| w[1].0)
        .next_back();
    let end = timeline.last().map_or(0, |(_, v)| sum(v));
    (end - sum(&timeline[base].1), last)
}

/// One refresh `old` → `new` under the flood.
fn refresh(
    d: &DaemonLab,
    file: &Path,
    sinks: [&UdpSink; 2],
    sources: &[Source],
    (old, new, n): (&Copy, &Copy, usize),
) -> Result<Value> {
    let index: HashMap<IpAddr, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.addr(), i))
        .collect();
    let of = |f: &dyn Fn(&Source) -> bool| -> Vec<usize> {
        (0..sources.len()).filter(|&i| f(&sources[i])).collect()
    };
    let both = of(&|s| s.on(old) && s.on(new));
    let added = of(&|s| !s.on(old) && s.on(new));
    let removed = of(&|s| s.on(old) && !s.on(new));
    let neither = of(&|s| !s.on(old) && !s.on(new));
    write_copy(file, new)?;
    let (t0, wall0) = (Instant::now(), now_unix());
    let ((at, apply_ms), timeline) = watched(sinks, &index, || {
        d.ok(&["sets", "refresh", "bench"])?;
        refreshed(&d.log(1), n, Duration::from_secs(30))
    })?;
    let applied_ms = (at - wall0) * 1e3;
    let applied = t0 + Duration::from_secs_f64(applied_ms.max(0.0) / 1e3);
    let start = timeline.first().map_or(t0, |s| s.0);
    let (both_through, _) = through_after(&timeline, start, &both);
    let (added_after, _) = through_after(&timeline, applied, &added);
    let (_, last_added) = through_after(&timeline, start, &added);
    let (removed_after, _) = through_after(&timeline, applied, &removed);
    let (neither_through, _) = through_after(&timeline, start, &neither);
    let end = timeline.last().map_or(t0, |s| s.0);
    let neither_gap = gap_ms(
        &timeline,
        |s| (s.0, neither.iter().map(|&i| s.1[i]).sum()),
        t0,
        end,
    );
    let last_added_ms = last_added.map_or(0.0, |t| ms(t.saturating_duration_since(t0)));
    let enforced_ms = applied_ms.max(last_added_ms);
    let leaked = both_through + added_after;
    Ok(json!({
        "entries_before": sets_load::len(old),
        "entries_after": sets_load::len(new),
        "sources": {"on_both": both.len(), "added": added.len(), "removed": removed.len(), "on_neither": neither.len()},
        "trigger_to_applied_ms": applied_ms,
        "engine_apply_ms": apply_ms,
        "last_added_datagram_ms": last_added_ms,
        "trigger_to_enforced_ms": enforced_ms,
        "on_both_through": both_through,
        "added_through_after_applied": added_after,
        "removed_through_after_applied": removed_after,
        "neither_through": neither_through,
        "neither_longest_gap_ms": neither_gap,
        "within_claim": enforced_ms < APPLY_MS_MAX && leaked == 0 && removed_after > 0 && neither_through > 0,
    }))
}

/// Waits for `sets list` to show the set with `TOTAL` entries.
fn wait_loaded(d: &DaemonLab, max: Duration) -> Result<()> {
    let deadline = Instant::now() + max;
    loop {
        let sets = d.json(&["sets", "list"])?;
        if sets[0]["entries"].as_u64() == Some(TOTAL as u64) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the set is not loaded after {max:?}: {sets}{}",
                d.daemon_log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let mut d = DaemonLab::new("setscale", bin.to_str().context("a UTF-8 path")?, POLICY)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bench.netset");
    let (a, b, c) = (
        sets_load::copy_a(),
        sets_load::copy_b(),
        sets_load::copy_c(),
    );
    write_copy(&file, &a)?;
    d.write_config(&format!(
        "{POLICY}\n[[set]]\nname = \"bench\"\nsource = \"file://{}\"\nformat = \"cidr\"\nrefresh = \"1h\"\n",
        file.display()
    ))?;
    d.daemon.extra_args = vec!["--log-format".into(), "json".into()];
    let sources = sets_load::sources(&[&a, &b, &c], [12, 8, 6, 6]);
    let addrs: Vec<IpAddr> = sources.iter().map(|s| s.addr()).collect();
    d.add_crawler_sources(&addrs)?;
    let [v4, v6] = dual_stack_sinks(&d)?;
    let t0 = Instant::now();
    d.start()?;
    wait_loaded(&d, Duration::from_secs(30))?;
    let first_load_ms = ms(t0.elapsed());
    let flood = Flood::start(&d.crawler, &addrs, FLOOD_PPS)?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        v4.total() + v6.total() > 0,
        "the flood does not reach the edge's sinks"
    );
    eprintln!("bench: refreshing the set under a flood: 10 000 entries replaced, then all");
    let partial = refresh(&d, &file, [&v4, &v6], &sources, (&a, &b, 1))?;
    let whole = refresh(&d, &file, [&v4, &v6], &sources, (&b, &c, 2))?;
    let (secs, sent) = flood.stop()?;
    Ok(json!({
        "entries": TOTAL,
        "first_load_ms": first_load_ms,
        "flood": {"sources": sources.len(), "pps_target": FLOOD_PPS, "pps_sent": sent as f64 / secs, "seconds": secs},
        "partial": partial,
        "whole": whole,
    }))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub fn print(s: &Value) {
    if !s.is_object() {
        return;
    }
    println!("\n### IP sets at scale\n");
    println!(
        "- a {}-entry `cidr` block set (v4 and v6 addresses, v4 /29s, v6 /120s) from `file://`, \
         first loaded {:.0} ms after the daemon started; a UDP flood from {} sources at {:.0} datagrams/s",
        s["entries"],
        f(&s["first_load_ms"]),
        s["flood"]["sources"],
        f(&s["flood"]["pps_sent"]),
    );
    println!(
        "\n| refresh | trigger → applied | engine apply | trigger → enforced | leaked (on both / new after apply) | old-only flowing again | within claim (< {APPLY_MS_MAX:.0} ms, 0 leaked) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (name, r) in [
        ("10 000 replaced", &s["partial"]),
        ("all 100 000 replaced", &s["whole"]),
    ] {
        println!(
            "| {name} | {:.0} ms | {} ms | {:.0} ms | {} / {} | {} datagrams | {} |",
            f(&r["trigger_to_applied_ms"]),
            r["engine_apply_ms"],
            f(&r["trigger_to_enforced_ms"]),
            r["on_both_through"],
            r["added_through_after_applied"],
            r["removed_through_after_applied"],
            if r["within_claim"] == true {
                "yes"
            } else {
                "NO"
            },
        );
    }
}
