//! Eviction pressure ends when the flood does (issue "Data plane: no way around
//! the limiter", item 8), through BPF_PROG_TEST_RUN on the real program. On the
//! program before this change pressure was a count of inserts that nothing
//! lowered: once the threshold had ever been reached, every first-seen source
//! drew on the new-source budget forever.

use std::{net::IpAddr, thread::sleep, time::Duration};

use anyhow::Result;
use floodgate::loader::Capacity;
use floodgate_common::{Policy, Rate, Reason, Verdict};
use floodgate_tests::{
    dut::{Dut, monotonic_ns, per_sec, pressure, settings},
    packets::Frame,
};

fn source(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 | i))
}

#[test]
fn pressure_ends_within_a_window_of_the_flood() -> Result<()> {
    let mut dut = Dut::load_with(Capacity::new(256, 256, 256, 64))?;
    let mut s = settings();
    pressure(&mut s, 50, Duration::from_secs(1));
    // A budget of one source a minute: under pressure nothing more is new.
    s.new_source_budget = Rate::new(1, 60_000_000_000, 1);
    dut.configure(
        &s,
        &[Policy {
            packets: per_sec(100, 100),
            ..Policy::default()
        }],
    )?;
    // A flood of 300 first-seen sources. The meter drains while it runs (one
    // insert's worth, 20 ms, at a time), so a flood slowed by a busy host
    // admits that many more before pressure: at most one more per 20 ms.
    let mut passed = 0;
    let begin = monotonic_ns();
    for i in 0..300 {
        passed += dut.run_n(&Frame::udp(source(i), 80).build(), 1)?;
    }
    let drained = (monotonic_ns() - begin).div_ceil(20_000_000);
    assert!(
        (50..=52 + drained).contains(&passed),
        "{passed} of the flood passed in {drained} × 20 ms"
    );
    let refused = dut.count(Verdict::Drop, Reason::NewSourceBudget)?;
    assert_eq!(refused, 300 - passed);
    // The flood is over; within a window (1 s) so is the pressure.
    sleep(Duration::from_millis(1300));
    let mut after = 0;
    for i in 1000..1020 {
        after += dut.run_n(&Frame::udp(source(i), 80).build(), 1)?;
    }
    assert_eq!(after, 20, "new sources after the flood drew on the budget");
    assert_eq!(dut.count(Verdict::Drop, Reason::NewSourceBudget)?, refused);
    Ok(())
}

#[test]
fn a_slow_stream_of_new_sources_is_never_pressure() -> Result<()> {
    let mut dut = Dut::load_with(Capacity::new(64, 64, 64, 64))?;
    let mut s = settings();
    // 100 a second would be pressure; 50 a second, for three times the map's
    // capacity, is not (the map turns over, but slower than that).
    pressure(&mut s, 20, Duration::from_millis(200));
    s.new_source_budget = per_sec(1, 1);
    dut.configure(&s, &[Policy::default()])?;
    let mut passed = 0;
    for i in 0..192 {
        passed += dut.run_n(&Frame::udp(source(i), 80).build(), 1)?;
        sleep(Duration::from_millis(20));
    }
    assert_eq!(passed, 192);
    assert_eq!(dut.count(Verdict::Drop, Reason::NewSourceBudget)?, 0);
    Ok(())
}
