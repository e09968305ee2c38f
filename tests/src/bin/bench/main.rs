//! `cargo xtask bench [--quick]`: floodgate side by side with a bare XDP_DROP
//! and the tools operators would pick instead. Method (see
//! ../shared/reference/perf-lab): a live-frames generator floods a veth pair;
//! generator and receiver share one CPU, so each filter's rate is compared with
//! a bare XDP_DROP measured in the same round (ratios, never absolute rates:
//! this machine's speed drifts). Prints a markdown table and writes
//! `target/bench/latest.json`.

mod before;
mod control;
mod crowdsec;
mod cs_flood;
mod cs_load;
mod filters;
mod fresh;
mod instances;
mod kernel;
mod limit;
mod lists;
mod live;
mod memory;
mod one_map;
mod profile;
mod report;
mod sets;
mod sets_load;
mod spoofed;
mod walks;

use anyhow::Result;
use serde_json::json;

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub repeat: u32,
    pub runs: usize,
    pub secs: f64,
    pub rounds_one: usize,
    pub rounds_many: usize,
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            repeat: 1_000_000,
            runs: 3,
            secs: 0.5,
            rounds_one: 3,
            rounds_many: 1,
        }
    } else {
        Plan {
            repeat: 2_000_000,
            runs: 5,
            secs: 1.0,
            rounds_one: 5,
            rounds_many: 3,
        }
    }
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--walks`: only the control-plane walks, printed as JSON (a quick check
    // of `top` and scrape delays without the minutes of the whole bench).
    if std::env::args().any(|a| a == "--walks") {
        floodgate_tests::lab::require_root()?;
        println!("{}", serde_json::to_string_pretty(&walks::run(quick)?)?);
        return Ok(());
    }
    // `--crowdsec`: only the CrowdSec bouncer at scale, printed as JSON.
    if std::env::args().any(|a| a == "--crowdsec") {
        floodgate_tests::lab::require_root()?;
        let c = crowdsec::run()?;
        println!("{}", serde_json::to_string_pretty(&c)?);
        report::print_crowdsec(&c);
        return Ok(());
    }
    // `--sets`: only the IP sets refreshed at scale, printed as JSON.
    if std::env::args().any(|a| a == "--sets") {
        floodgate_tests::lab::require_root()?;
        let s = sets::run()?;
        println!("{}", serde_json::to_string_pretty(&s)?);
        sets::print(&s);
        return Ok(());
    }
    let plan = plan(quick);
    // `--before`: only issue #11's comparison with the program before it.
    if std::env::args().any(|a| a == "--before") {
        floodgate_tests::lab::require_root()?;
        println!("{}", serde_json::to_string_pretty(&kernel::before(&plan)?)?);
        return Ok(());
    }
    floodgate_tests::lab::require_root()?;
    let started = std::time::Instant::now();
    eprintln!(
        "bench: in-kernel cost per packet (test_run, repeat {}, {} runs)",
        plan.repeat, plan.runs
    );
    let kernel = kernel::run(&plan)?;
    eprintln!(
        "bench: each path against the program before #11 ({})",
        before::BEFORE
    );
    let before = kernel::before(&plan)?;
    eprintln!("bench: live drop rate on veth");
    let live = live::run(&plan)?;
    eprintln!("bench: the daemon under a flood, reloading 100 000 CIDRs");
    let control = control::run(plan.secs)?;
    eprintln!("bench: top, status and scrapes over a million tracked sources");
    let walks = walks::run(quick)?;
    eprintln!("bench: the CrowdSec bouncer: 100 000 decisions under a flood, and a restart");
    let crowdsec = crowdsec::run()?;
    eprintln!("bench: a 100 000-entry IP set refreshed under a flood");
    let sets = sets::run()?;
    let report = json!({
        "date": report::date(),
        "quick": quick,
        "machine": report::machine(),
        "config": {
            "test_run_repeat": plan.repeat,
            "test_run_runs": plan.runs,
            "live_seconds_per_run": plan.secs,
            "rounds_one_source": plan.rounds_one,
            "rounds_many_sources": plan.rounds_many,
            "limit_one_source": limit::ONE_SOURCE.config(),
            "limit_many_sources": limit::MANY_SOURCES.config(),
            "frame_bytes": 60,
        },
        "kernel": kernel,
        "before": before,
        "live": live.rows,
        "over_capacity": live.over_capacity,
        "maps_memory_bytes": live.map_memory,
        "defaults": live.defaults,
        "daemon": control,
        "walks": walks,
        "crowdsec": crowdsec,
        "sets": sets,
        "seconds": started.elapsed().as_secs_f64(),
    });
    report::print(&report);
    report::save(&report)?;
    Ok(())
}
