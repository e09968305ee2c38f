//! One source's packets arriving on two CPUs at once share one limit: the
//! token bucket holds within ±5% (it is updated with compare-and-swap).

use std::time::{Duration, Instant};

use anyhow::Result;
use floodgate_common::{Policy, Reason, Verdict};
use floodgate_tests::{
    dut::{Dut, XDP_PASS, per_sec, settings},
    packets::{Frame, ip},
};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};

const RATE: u64 = 20_000;
const BURST: u64 = 1_000;

#[test]
fn one_source_on_two_cpus_stays_within_five_percent_of_its_limit() -> Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    let mut dut = Dut::load()?;
    let policy = Policy {
        packets: per_sec(RATE, BURST),
        ..Policy::default()
    };
    dut.configure(&settings(), &[policy])?;
    let src = ip("198.18.33.33");
    let frame = Frame::udp(src, 80).build();
    let run_for = Duration::from_secs(2);
    // The senders' span, timed around them: the tables keep when a source
    // was seen to a tick (67 ms), too coarse for this bound.
    let start_ns = floodgate_tests::dut::monotonic_ns();

    let per_cpu: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|cpu| {
                let (dut, frame) = (&dut, &frame);
                scope.spawn(move || -> Result<(u64, u64)> {
                    let mut set = CpuSet::new();
                    set.set(cpu)?;
                    sched_setaffinity(Pid::from_raw(0), &set)?;
                    let (mut sent, mut passed) = (0u64, 0u64);
                    let start = Instant::now();
                    while start.elapsed() < run_for {
                        sent += 1;
                        if dut.run(frame)? == XDP_PASS {
                            passed += 1;
                        }
                    }
                    Ok((sent, passed))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sender thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;

    let elapsed_ns = floodgate_tests::dut::monotonic_ns() - start_ns;
    dut.fg.source(src)?.expect("source tracked");
    let expected = BURST as f64 + RATE as f64 * elapsed_ns as f64 / 1e9;
    let passed: u64 = per_cpu.iter().map(|(_, p)| p).sum();
    let sent: u64 = per_cpu.iter().map(|(s, _)| s).sum();
    let error = (passed as f64 - expected) / expected;
    println!(
        "two CPUs: sent {sent}, passed {passed}, expected {expected:.0} over {:.3} s, error {:+.2}%; per CPU {per_cpu:?}",
        elapsed_ns as f64 / 1e9,
        error * 100.0
    );
    assert!(
        sent > 2 * passed,
        "the senders must outrun the limit (sent {sent})"
    );
    assert!(
        per_cpu.iter().all(|(_, p)| *p > 0),
        "both CPUs passed packets: {per_cpu:?}"
    );
    assert!(error.abs() <= 0.05, "limit off by {:+.2}%", error * 100.0);
    assert_eq!(dut.count(Verdict::Pass, Reason::Ok)?, passed);
    assert_eq!(
        dut.count(Verdict::Drop, Reason::RatePackets)?,
        sent - passed
    );
    Ok(())
}
