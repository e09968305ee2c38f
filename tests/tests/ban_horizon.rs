//! Prefix ban horizons (`floodgate_common::horizon`), through
//! BPF_PROG_TEST_RUN on the real program. While bans are live somewhere, the
//! program skips the `BANS` lookups for a tracked prefix whose horizon has
//! passed; these tests prove that no ban is skipped that way: a ban made after
//! its prefix was tracked — by userspace or by the program, of a source or of
//! the prefix, IPv4 and IPv6 — drops the very next packet it covers, while its
//! unbanned neighbours still pass.

use std::{net::IpAddr, thread::sleep, time::Duration};

use anyhow::Result;
use floodgate::addr::mapped;
use floodgate_common::{
    Ban, BanKey, Policy, Reason, Verdict,
    prefix::{mapped_prefix_len, mask},
};
use floodgate_tests::{
    dut::{Dut, XDP_DROP, XDP_PASS, monotonic_ns, per_sec, settings},
    packets::{Frame, ip},
};

const SECOND: u64 = 1_000_000_000;

/// One source to ban, a neighbour in its prefix, and a source of another
/// prefix whose ban keeps the global horizons open.
struct Case {
    source: &'static str,
    neighbour: &'static str,
    elsewhere: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        source: "198.18.7.1",
        neighbour: "198.18.7.2",
        elsewhere: "198.18.200.1",
    },
    Case {
        source: "fd00:7::1",
        neighbour: "fd00:7::2",
        elsewhere: "fd00:200::1",
    },
];

fn frame(addr: &str) -> Vec<u8> {
    Frame::udp(ip(addr), 80).build()
}

/// A ban from userspace ending a minute from now.
fn user_ban() -> Ban {
    Ban {
        until_ns: monotonic_ns() + 60 * SECOND,
        duration_ns: 60 * SECOND,
        banned_at_ns: monotonic_ns(),
        offenses: 1,
        reason: Reason::Banned as u32,
        packets: 0,
        bytes: 0,
    }
}

/// The ban key of `addr`'s prefix under the test settings (/24, /64).
fn prefix_key(addr: IpAddr) -> BanKey {
    let s = settings();
    let len = mapped_prefix_len(addr.is_ipv6(), s.prefix_v4, s.prefix_v6);
    BanKey {
        addr: mask(&mapped(addr), len),
        prefix_len: len,
        _pad: 0,
    }
}

/// A program whose `case.source` prefix is tracked with no ban (its horizon
/// passed), while a ban of another prefix keeps the global horizons open.
fn tracked_then_other_ban(case: &Case, policy: Policy) -> Result<Dut> {
    let mut dut = Dut::load()?;
    dut.configure(&settings(), &[policy])?;
    assert_eq!(dut.run(&frame(case.source))?, XDP_PASS);
    dut.fg
        .insert_ban(&BanKey::source(mapped(ip(case.elsewhere))), &user_ban())?;
    assert_eq!(dut.run(&frame(case.elsewhere))?, XDP_DROP);
    // The source's prefix has no ban: it passes (and skips the lookups).
    assert_eq!(dut.run(&frame(case.source))?, XDP_PASS);
    Ok(dut)
}

#[test]
fn a_user_ban_of_a_tracked_source_drops_its_next_packet() -> Result<()> {
    for case in &CASES {
        let mut dut = tracked_then_other_ban(case, Policy::default())?;
        dut.fg
            .insert_ban(&BanKey::source(mapped(ip(case.source))), &user_ban())?;
        assert_eq!(dut.run(&frame(case.source))?, XDP_DROP, "{}", case.source);
        assert_eq!(dut.count(Verdict::Drop, Reason::Banned)?, 2);
        assert_eq!(dut.run(&frame(case.neighbour))?, XDP_PASS);
    }
    Ok(())
}

#[test]
fn a_user_ban_of_a_tracked_prefix_drops_all_its_sources() -> Result<()> {
    for case in &CASES {
        let mut dut = tracked_then_other_ban(case, Policy::default())?;
        dut.fg
            .insert_ban(&prefix_key(ip(case.source)), &user_ban())?;
        assert_eq!(dut.run(&frame(case.source))?, XDP_DROP, "{}", case.source);
        assert_eq!(dut.run(&frame(case.neighbour))?, XDP_DROP);
        assert_eq!(dut.count(Verdict::Drop, Reason::Banned)?, 3);
    }
    Ok(())
}

#[test]
fn a_program_ban_of_a_tracked_source_outlasts_its_bucket() -> Result<()> {
    for case in &CASES {
        let policy = Policy {
            // 10/s: a busy host's stall between runs refills no token.
            packets: per_sec(10, 3),
            ban_ns: 10 * SECOND,
            ..Policy::default()
        };
        let dut = tracked_then_other_ban(case, policy)?;
        // Two packets passed already: one more, then the limit bans it.
        let f = frame(case.source);
        assert_eq!(dut.run_n(&f, 2)?, 1);
        assert_eq!(dut.count(Verdict::Drop, Reason::RatePackets)?, 1);
        // The bucket refills; the ban, not the bucket, drops what comes next.
        sleep(Duration::from_millis(300));
        assert_eq!(dut.run(&f)?, XDP_DROP, "{}", case.source);
        assert_eq!(dut.count(Verdict::Drop, Reason::Banned)?, 2);
        assert_eq!(dut.run(&frame(case.neighbour))?, XDP_PASS);
    }
    Ok(())
}

#[test]
fn a_program_ban_of_a_tracked_prefix_drops_its_newcomers() -> Result<()> {
    for case in &CASES {
        let policy = Policy {
            prefix_packets: per_sec(10, 3),
            prefix_ban_ns: 10 * SECOND,
            ..Policy::default()
        };
        let dut = tracked_then_other_ban(case, policy)?;
        assert_eq!(dut.run_n(&frame(case.neighbour), 2)?, 1);
        assert_eq!(dut.count(Verdict::Drop, Reason::PrefixRate)?, 1);
        sleep(Duration::from_millis(300));
        assert_eq!(dut.run(&frame(case.source))?, XDP_DROP, "{}", case.source);
        assert_eq!(dut.count(Verdict::Drop, Reason::Banned)?, 2);
    }
    Ok(())
}
