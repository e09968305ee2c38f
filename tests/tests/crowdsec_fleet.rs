//! Two floodgate edges sharing one CrowdSec LAPI (issue "Fleet, part 1",
//! lab): range and address decisions (a v4 /24, a v6 /64) enforced on both
//! edges within one poll, every address of the ranges dropped; deletions
//! lifted on both; a flood banned on edge 1 dropped on edge 2 within one
//! poll plus one batch; the LAPI killed mid-run: both edges go on filtering,
//! the alert waits and reaches the other edge when the LAPI is back; a
//! restarted edge re-syncs.

use std::time::{Duration, Instant};

use anyhow::Result;
use floodgate_tests::{
    daemon::with_ban,
    fleet::{two_edges::Fleet, wait_for},
};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

/// The poll of both edges; "within one poll" allows a second more for the
/// pull itself and the test's own reads.
const POLL: Duration = Duration::from_secs(1);
const WITHIN_A_POLL: Duration = Duration::from_secs(2 * POLL.as_secs() + 1);
/// One poll plus one batch of the watcher (1 s), with the same allowance.
const WITHIN_A_POLL_AND_A_BATCH: Duration = Duration::from_secs(3 * POLL.as_secs() + 2);

/// The first, a middle and the last address of each decided range.
const IN_RANGE: [&str; 6] = [
    "198.18.100.0",
    "198.18.100.128",
    "198.18.100.255",
    "fd00:f100:100::",
    "fd00:f100:100:0:8000::1",
    "fd00:f100:100:0:ffff:ffff:ffff:ffff",
];
const BANNED: &str = "198.18.101.7";
/// Next to the decisions: never dropped.
const CLEAN: [&str; 4] = [
    "198.18.101.8",
    "198.18.99.200",
    "fd00:f100:101::1",
    "fd00:f100:100:1::1",
];
/// Floods edge 1.
const FLOODER: &str = "198.18.102.9";

fn sources() -> Vec<&'static str> {
    let mut all: Vec<&str> = IN_RANGE.to_vec();
    all.extend(CLEAN);
    all.extend([BANNED, FLOODER]);
    all
}

fn assert_dropped_on_both(f: &Fleet, srcs: &[&str]) -> Result<()> {
    for edge in 0..2 {
        for src in srcs {
            assert_eq!(f.through(edge, src, 20)?, 0, "{src} on edge {}", edge + 1);
        }
    }
    Ok(())
}

fn assert_passed_on_both(f: &Fleet, srcs: &[&str]) -> Result<()> {
    for edge in 0..2 {
        for src in srcs {
            assert_eq!(f.through(edge, src, 20)?, 20, "{src} on edge {}", edge + 1);
        }
    }
    Ok(())
}

#[test]
fn decisions_reach_both_edges_and_a_ban_on_one_edge_reaches_the_other() -> Result<()> {
    let mut f = Fleet::new("csfl", BIN, &with_ban("1h"), &sources())?;
    f.start(0)?;
    f.start(1)?;
    f.wait_held(0, Duration::from_secs(10))?;
    f.lapi.add_decision("198.18.100.0/24", "1h", "lab range")?;
    f.lapi
        .add_decision("fd00:f100:100::/64", "1h", "lab range v6")?;
    f.lapi.add_decision(BANNED, "1h", "lab address")?;
    f.wait_held(3, WITHIN_A_POLL)?;
    assert_dropped_on_both(&f, &IN_RANGE)?;
    assert_dropped_on_both(&f, &[BANNED])?;
    assert_passed_on_both(&f, &CLEAN)?;

    f.lapi.delete_decisions("198.18.100.0/24")?;
    f.lapi.delete_decisions(BANNED)?;
    f.wait_held(1, WITHIN_A_POLL)?;
    assert_passed_on_both(&f, &IN_RANGE[..3])?;
    assert_passed_on_both(&f, &[BANNED])?;
    assert_dropped_on_both(&f, &IN_RANGE[3..])?;

    // A flood banned on edge 1 (200/s, burst 50: banned for an hour) ...
    assert_eq!(
        f.through(1, FLOODER, 20)?,
        20,
        "edge 2 lets it through before"
    );
    let banned_at = Instant::now();
    let passed = f.through(0, FLOODER, 500)?;
    assert!(passed < 500, "edge 1 banned it: {passed} of 500 passed");
    // ... is dropped on edge 2 within one poll and one batch.
    wait_for(
        WITHIN_A_POLL_AND_A_BATCH,
        "edge 2 to drop the flooder",
        || Ok(f.through(1, FLOODER, 5)? == 0),
    )?;
    println!(
        "edge 2 dropped edge 1's ban after {:?}",
        banned_at.elapsed()
    );
    let s = f.status(1)?;
    assert_eq!(
        s["decisions"]["crowdsec"], 1,
        "edge 2 holds it as a remote decision: {s}"
    );
    // Edge 1 sees its own decision come back at its next pull, which may
    // come up to a poll after edge 2's.
    wait_for(WITHIN_A_POLL, "edge 1 to know its own decision", || {
        Ok(f.status(0)?["ignored"]["own"].as_u64() >= Some(1))
    })?;
    Ok(())
}

#[test]
fn the_lapi_killed_mid_run_and_a_restarted_edge() -> Result<()> {
    let mut f = Fleet::new("cslk", BIN, &with_ban("1h"), &sources())?;
    f.lapi.add_decision("198.18.100.0/24", "1h", "lab range")?;
    f.lapi
        .add_decision("fd00:f100:100::/64", "1h", "lab range v6")?;
    f.start(0)?;
    f.start(1)?;
    f.wait_held(2, Duration::from_secs(10))?;
    f.lapi.stop(&mut f.lab)?;
    // Both edges go on filtering; edge 1 bans a flood and queues the alert.
    assert_dropped_on_both(&f, &IN_RANGE)?;
    assert_passed_on_both(&f, &CLEAN)?;
    f.through(0, FLOODER, 500)?;
    wait_for(Duration::from_secs(10), "edge 1 to queue the alert", || {
        Ok(f.status(0)?["alerts_queued"] == 1)
    })?;
    assert_eq!(f.through(1, FLOODER, 20)?, 20, "edge 2 has not heard of it");
    // The LAPI is back: the alert goes, and edge 2 drops the flooder.
    f.lapi.restart(&mut f.lab)?;
    wait_for(
        Duration::from_secs(30),
        "edge 2 to drop the flooder",
        || Ok(f.through(1, FLOODER, 5)? == 0),
    )?;
    // A restarted edge re-syncs: what came meanwhile is enforced.
    f.stop(1)?;
    f.lapi.delete_decisions("fd00:f100:100::/64")?;
    f.lapi
        .add_decision("198.18.101.8", "1h", "while edge 2 was down")?;
    f.start(1)?;
    wait_for(Duration::from_secs(10), "edge 2 to re-sync", || {
        Ok(f.held(1)? == Some(3))
    })?;
    assert_eq!(f.through(1, "198.18.101.8", 20)?, 0);
    assert_eq!(
        f.through(1, IN_RANGE[4], 20)?,
        20,
        "deleted while it was down"
    );
    Ok(())
}
