//! Where the time of a path goes: `perf record -e cpu-clock` (a software
//! clock: this VM has no hardware counters, and Debian's bpftool is built
//! without `prog profile`) while BPF_PROG_TEST_RUN repeats the path on CPU 1,
//! or while a live round floods the receiver (generator and receiver on CPU 0).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};
use serde_json::{Value, json};

/// Samples the kernel while `prog` runs `frame` for `secs`; returns the
/// symbols with at least 1% of the samples.
pub fn sample(prog: &Xdp, frame: &[u8], secs: f64) -> Result<Value> {
    // The loop runs on its own thread pinned to CPU 1, so the caller keeps its
    // CPU affinity.
    record(1, secs, || {
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<()> {
                    let mut set = CpuSet::new();
                    set.set(1)?;
                    sched_setaffinity(Pid::from_raw(0), &set)?;
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_secs_f64(secs) {
                        prog.test_run(TestRunOptions {
                            data_in: Some(frame),
                            repeat: 200_000,
                            ..TestRunOptions::default()
                        })?;
                    }
                    Ok(())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the profiled loop panicked"))?
        })
    })
}

/// Samples CPU `cpu` for `secs` while `work` runs; returns the symbols with
/// at least 1% of the samples (or why there are none).
pub fn record(cpu: u32, secs: f64, work: impl FnOnce() -> Result<()>) -> Result<Value> {
    if Command::new("perf").arg("--version").output().is_err() {
        work()?;
        return Ok(json!("perf is not installed"));
    }
    let data = tempfile::Builder::new()
        .prefix("floodgate-perf")
        .tempfile()?;
    let path = data.path().to_owned();
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-C",
            &cpu.to_string(),
            "-o",
        ])
        .arg(&path)
        .args(["--", "sleep", &format!("{secs}")])
        .spawn()
        .context("starting perf record")?;
    let worked = work();
    if worked.is_err() {
        let _ = perf.kill();
    }
    perf.wait()?;
    worked?;
    let report = Command::new("perf")
        .args([
            "report",
            "-q",
            "--stdio",
            "--sort",
            "symbol",
            "--percent-limit",
            "1",
            "-i",
        ])
        .arg(&path)
        .output()?;
    let text = String::from_utf8_lossy(&report.stdout);
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let pct = parts.next()?.trim_end_matches('%').parse::<f64>().ok()?;
            let symbol = parts
                .filter(|p| !p.starts_with('['))
                .collect::<Vec<_>>()
                .join(" ");
            Some(json!({"percent": pct, "symbol": symbol}))
        })
        .collect();
    Ok(Value::Array(rows))
}
