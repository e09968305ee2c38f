//! Long-window quotas hold over any interval of their window (issue "Data
//! plane: no way around the limiter", item 5), through BPF_PROG_TEST_RUN on the
//! real program. On the program before this change the window was fixed: a
//! scraper spent its quota at the end of one window and again at the start of
//! the next, 19 packets of a 10-per-1.5 s quota within 250 ms.

use std::{thread::sleep, time::Duration};

use anyhow::Result;
use floodgate_common::{Policy, Reason, Verdict};
use floodgate_tests::{
    dut::{Dut, XDP_PASS, monotonic_ns, quota, settings},
    packets::{Frame, ip},
};

const WINDOW: Duration = Duration::from_millis(1500);

#[test]
fn a_window_edge_does_not_double_the_quota() -> Result<()> {
    let mut dut = Dut::load()?;
    let policy = Policy {
        quota: quota(10, WINDOW),
        ..Policy::default()
    };
    dut.configure(&settings(), &[policy])?;
    let f = Frame::udp(ip("198.18.81.1"), 80).build();
    let start = monotonic_ns();
    assert_eq!(dut.run_n(&f, 1)?, 1);
    sleep(Duration::from_millis(1300));
    assert_eq!(dut.run_n(&f, 9)?, 9, "the quota's first 10");
    // Just past the first packet's window: a fixed window starts over here.
    let edge = start + 1_550_000_000;
    sleep(Duration::from_nanos(edge.saturating_sub(monotonic_ns())));
    let late = dut.run_n(&f, 10)?;
    let elapsed = Duration::from_nanos(monotonic_ns() - start);
    // Within 1.5 s of the 9 (sent at ~1.3 s) at most the first packet's slot
    // frees up: one packet, never ten.
    assert!(
        elapsed < Duration::from_millis(2700),
        "the host stalled: {elapsed:?}"
    );
    assert!(late <= 1, "{late} of 10 passed right after the window edge");
    assert_eq!(dut.count(Verdict::Drop, Reason::Quota)?, 10 - late);
    Ok(())
}

#[test]
fn no_window_of_a_paced_scraper_holds_more_than_the_quota() -> Result<()> {
    let mut dut = Dut::load()?;
    let policy = Policy {
        quota: quota(20, Duration::from_secs(1)),
        ..Policy::default()
    };
    dut.configure(&settings(), &[policy])?;
    let f = Frame::udp(ip("198.18.81.2"), 80).build();
    // Twice the quota's pace for 3 s; each pass with the times around its run
    // (the program's clock reads between them).
    let mut passes = Vec::new();
    let begin = monotonic_ns();
    while monotonic_ns() - begin < 3_000_000_000 {
        let before = monotonic_ns();
        let passed = dut.run(&f)? == XDP_PASS;
        let after = monotonic_ns();
        if passed {
            passes.push((before, after));
        }
        sleep(Duration::from_millis(25));
    }
    // Passes surely within one second of each other: never more than 20.
    for (i, &(_, last)) in passes.iter().enumerate() {
        let within = passes[..=i]
            .iter()
            .filter(|&&(first, _)| last - first < 1_000_000_000)
            .count();
        assert!(
            within <= 20,
            "{within} passes within 1 s ending at pass {i}"
        );
    }
    // And the quota is not starved: 3 s at twice its pace pass at least two
    // windows' worth less a lane's share each.
    assert!(passes.len() >= 2 * 20 * 7 / 8, "{} passed", passes.len());
    Ok(())
}
