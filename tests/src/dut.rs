//! The real program loaded for BPF_PROG_TEST_RUN: a device under test with a
//! policy written straight into its maps.

use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions};
use floodgate::{
    loader::{Capacity, Floodgate},
    stats::Stats,
};
use floodgate_common::{Policy, Quota, Rate, Reason, SETTINGS_READY, Settings, Verdict};

/// XDP verdicts as the program returns them.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

const SECOND: u64 = 1_000_000_000;

/// CLOCK_MONOTONIC in nanoseconds: the clock the program's ban and block
/// expiries are on.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * SECOND + ts.tv_nsec as u64
}

/// A per-second rate with a burst.
pub fn per_sec(rate: u64, burst: u64) -> Rate {
    Rate::new(rate, SECOND, burst)
}

/// A quota of `limit` packets per `window`.
pub fn quota(limit: u64, window: Duration) -> Quota {
    Quota::new(
        limit,
        u64::try_from(window.as_nanos()).expect("window fits in u64 ns"),
    )
}

/// Settings with every optional feature off: /24 and /64 prefixes, ban
/// escalation ×2 up to an hour, no eviction-pressure budget, 1000 events/s.
pub fn settings() -> Settings {
    Settings {
        flags: SETTINGS_READY,
        prefix_v4: 24,
        prefix_v6: 64,
        ban_factor: 2,
        ban_max_ns: 3600 * SECOND,
        ban_forget_ns: 3600 * SECOND,
        pressure_threshold: 0,
        new_source_budget: Rate::OFF,
        event_rate: per_sec(1000, 1000),
        user_ban_horizon_ns: 0,
        pressure_window_ns: 0,
        pressure_step_ns: 0,
        default_policy: 0,
        _pad: 0,
    }
}

/// `s` under eviction pressure once `threshold` sources are first seen within
/// `window`.
pub fn pressure(s: &mut Settings, threshold: u64, window: Duration) {
    let window = u64::try_from(window.as_nanos()).expect("window fits in u64 ns");
    s.pressure_threshold = threshold;
    s.pressure_window_ns = window;
    s.pressure_step_ns = floodgate_common::pressure::step_ns(window, threshold);
}

/// The program under test.
pub struct Dut {
    pub fg: Floodgate,
    policies: usize,
}

impl Dut {
    /// Loads the program with small maps (no pins) and no limits.
    pub fn load() -> Result<Dut> {
        Dut::load_with(Capacity::new(4096, 4096, 4096, 4096))
    }

    pub fn load_with(capacity: Capacity) -> Result<Dut> {
        let fg = Floodgate::load(capacity, None).context("loading the XDP program")?;
        let mut dut = Dut { fg, policies: 0 };
        dut.configure(&settings(), &[Policy::default()])?;
        Ok(dut)
    }

    /// Writes settings and policies (slot 0 = default).
    pub fn configure(&mut self, settings: &Settings, policies: &[Policy]) -> Result<()> {
        self.fg.write_settings(settings)?;
        self.fg.write_policies(policies, self.policies)?;
        self.policies = policies.len();
        Ok(())
    }

    /// Runs one frame through the program; returns the XDP action.
    pub fn run(&self, frame: &[u8]) -> Result<u32> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        let r = self
            .fg
            .program()?
            .test_run(opts)
            .context("BPF_PROG_TEST_RUN")?;
        Ok(r.return_value)
    }

    /// Runs a frame `n` times, returning how many passed.
    pub fn run_n(&self, frame: &[u8], n: u64) -> Result<u64> {
        let mut passed = 0;
        for _ in 0..n {
            if self.run(frame)? == XDP_PASS {
                passed += 1;
            }
        }
        Ok(passed)
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats::from_counters(&self.fg.counters()?, false))
    }

    /// Packets counted under (verdict, reason).
    pub fn count(&self, verdict: Verdict, reason: Reason) -> Result<u64> {
        Ok(self.stats()?.packets(reason, verdict))
    }
}
