//! Bans and limits that mean what they say (issue "Data plane: no way around the
//! limiter"), through BPF_PROG_TEST_RUN on the real program. Each test failed on
//! the program before this change:
//! - the 33rd offence started over at the base duration;
//! - out-of-scope traffic was dropped as `new_source_budget` and filled SOURCES;
//! - a bucket whose TAT wrapped to near 2^64 refused its source forever;
//! - banned packets were missing from their prefix's statistics.

use std::{net::IpAddr, thread::sleep, time::Duration};

use anyhow::Result;
use floodgate::addr::mapped;
use floodgate_common::{
    Ban, BanKey, Policy, PortKey, Reason, SETTINGS_PORTS_SCOPED, Verdict, limit::MAX_OFFENSES, maps,
};
use floodgate_tests::{
    dut::{Dut, XDP_DROP, XDP_PASS, monotonic_ns, per_sec, settings},
    packets::{Frame, ip},
};

const MS: u64 = 1_000_000;
const SECOND: u64 = 1000 * MS;

fn ban_of(dut: &Dut, key: &BanKey) -> Result<Ban> {
    Ok(dut
        .fg
        .bans()?
        .into_iter()
        .find(|(k, _)| k == key)
        .expect("a ban entry")
        .1)
}

#[test]
fn the_33rd_offence_stays_at_the_cap() -> Result<()> {
    let mut dut = Dut::load()?;
    let mut s = settings();
    s.ban_factor = 2;
    s.ban_max_ns = 4 * SECOND;
    dut.configure(
        &s,
        &[Policy {
            packets: per_sec(1, 1),
            ban_ns: SECOND,
            ..Policy::default()
        }],
    )?;
    let src = ip("198.18.91.1");
    let key = BanKey {
        addr: mapped(src),
        prefix_len: 128,
        _pad: 0,
    };
    // A repeat offender at the cap whose 32nd ban ended a moment ago.
    dut.fg.insert_ban(
        &key,
        &Ban {
            until_ns: monotonic_ns() - SECOND / 10,
            duration_ns: 4 * SECOND,
            banned_at_ns: 0,
            offenses: MAX_OFFENSES,
            reason: Reason::RatePackets as u32,
            packets: 0,
            bytes: 0,
        },
    )?;
    let f = Frame::udp(src, 80).build();
    assert_eq!(dut.run_n(&f, 3)?, 1, "one packet, then over the limit");
    let ban = ban_of(&dut, &key)?;
    assert_eq!(
        (ban.offenses, ban.duration_ns),
        (MAX_OFFENSES, 4 * SECOND),
        "the offence after the 32nd keeps the cap, not the base duration"
    );
    Ok(())
}

/// Under eviction pressure with the new-source budget spent, traffic outside
/// `[limits] ports` (a DNS reply, ICMP) still passes and is never inserted.
#[test]
fn the_port_scope_comes_before_the_new_source_budget() -> Result<()> {
    let mut dut = Dut::load()?;
    let mut s = settings();
    s.flags |= SETTINGS_PORTS_SCOPED;
    floodgate_tests::dut::pressure(&mut s, 1, Duration::from_secs(60));
    // One first-seen source a minute: no stall of a loaded host refills it.
    s.new_source_budget = floodgate_common::Rate::new(1, 60 * SECOND, 1);
    dut.configure(&s, &[Policy::default()])?;
    dut.fg.sync_ports(&[PortKey { proto: 6, port: 80 }])?;
    // In-scope sources: two within the window are over the threshold of one
    // (pressure), the third spends the budget's burst, a fourth is refused.
    for host in 1..=3u8 {
        let f = Frame::syn(ip(&format!("198.18.92.{host}")), 80).build();
        assert_eq!(dut.run(&f)?, XDP_PASS);
    }
    assert_eq!(
        dut.run(&Frame::syn(ip("198.18.92.4"), 80).build())?,
        XDP_DROP
    );
    assert_eq!(dut.count(Verdict::Drop, Reason::NewSourceBudget)?, 1);
    // Out of scope: passes, as `unscoped`, and takes no entry.
    let dns: IpAddr = ip("198.18.93.53");
    assert_eq!(dut.run_n(&Frame::udp(dns, 53).build(), 5)?, 5);
    assert_eq!(dut.run_n(&Frame::icmp(ip("198.18.93.1")).build(), 5)?, 5);
    assert_eq!(dut.count(Verdict::Pass, Reason::Unscoped)?, 10);
    assert_eq!(dut.count(Verdict::Drop, Reason::NewSourceBudget)?, 1);
    assert!(
        dut.fg.source(dns)?.is_none(),
        "out-of-scope traffic inserted nothing"
    );
    Ok(())
}

/// A refund that lands on a recycled entry wraps its TAT to just under 2^64:
/// that state counts as now, not as over the limit forever.
#[test]
fn a_wrapped_bucket_counts_as_now() -> Result<()> {
    let mut dut = Dut::load()?;
    dut.configure(
        &settings(),
        &[Policy {
            packets: per_sec(10, 5),
            ..Policy::default()
        }],
    )?;
    let src = ip("198.18.94.1");
    let f = Frame::udp(src, 80).build();
    assert_eq!(dut.run(&f)?, XDP_PASS);
    let mut entry = dut
        .fg
        .tracked_entries(maps::SOURCES)?
        .into_iter()
        .find(|e| e.addr == mapped(src))
        .expect("the source is tracked");
    entry.state.packets_tat = 0u64.wrapping_sub(100 * MS);
    dut.fg.put_tracked(maps::SOURCES, &[entry])?;
    assert_eq!(dut.run_n(&f, 5)?, 5, "the burst is there again");
    Ok(())
}

/// A banned source's packets count toward its prefix's statistics too.
#[test]
fn banned_packets_count_toward_their_prefix() -> Result<()> {
    let mut dut = Dut::load()?;
    dut.configure(
        &settings(),
        &[Policy {
            packets: per_sec(1, 1),
            ban_ns: 60 * SECOND,
            ..Policy::default()
        }],
    )?;
    let src = ip("198.18.95.7");
    let f = Frame::udp(src, 80).build();
    assert_eq!(dut.run_n(&f, 2)?, 1);
    // Let the coarse clock pass the ban's start.
    sleep(Duration::from_millis(20));
    assert_eq!(dut.run_n(&f, 3)?, 0);
    assert_eq!(dut.count(Verdict::Drop, Reason::Banned)?, 3);
    let prefix = dut
        .fg
        .tracked(maps::PREFIXES)?
        .into_iter()
        .find(|(a, _)| *a == ip("198.18.95.0"))
        .expect("the /24 is tracked")
        .1;
    assert_eq!((prefix.packets, prefix.drops), (5, 4));
    // The source's share of the banned packets is on its ban (layout 4: one
    // lookup per banned packet), and `top` adds it back to the source.
    let ban = dut
        .fg
        .ban(&BanKey::source(mapped(src)))?
        .expect("the source is banned");
    assert_eq!((ban.packets, ban.bytes), (3, 3 * f.len() as u64), "{ban:?}");
    let reader = floodgate::daemon::reader::Reader::new(&dut.fg)?;
    let rows = reader.top(1, floodgate::control::proto::TopBy::Drops, false, (24, 64))?;
    assert_eq!(rows[0].target, src.to_string());
    assert_eq!((rows[0].packets, rows[0].drops), (5, 4), "{rows:?}");
    Ok(())
}

fn would_ban_of(dut: &Dut, key: &BanKey) -> Result<Option<Ban>> {
    Ok(dut
        .fg
        .bans()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, b)| b))
}

/// Monitor mode records would-bans that never drop: not in monitor mode, and not
/// after `mode enforce` (the program before this change made real bans that
/// dropped at once after the switch).
#[test]
fn monitor_mode_bans_drop_nothing_then_or_later() -> Result<()> {
    let mut dut = Dut::load()?;
    let mut s = settings();
    s.flags |= floodgate_common::SETTINGS_MONITOR;
    let strict = Policy {
        packets: per_sec(1, 1),
        ban_ns: 3600 * SECOND,
        ..Policy::default()
    };
    dut.configure(&s, &[strict])?;
    let src = ip("198.18.97.1");
    let f = Frame::udp(src, 80).build();
    assert_eq!(dut.run_n(&f, 5)?, 5, "monitor mode passes everything");
    let key = BanKey {
        addr: mapped(src),
        prefix_len: 128,
        _pad: 0,
    };
    let b = would_ban_of(&dut, &key)?.expect("a would-ban is recorded");
    assert!(b.is_would_ban(), "{b:?}");
    assert_eq!(b.reason_code(), Reason::RatePackets as u32);
    sleep(Duration::from_millis(20));
    assert_eq!(dut.run(&f)?, XDP_PASS);
    assert!(dut.count(Verdict::WouldDrop, Reason::Banned)? >= 1);
    // `mode enforce` with no limit left for this source: the would-ban drops nothing.
    dut.configure(&settings(), &[Policy::default()])?;
    assert_eq!(
        dut.run_n(&f, 5)?,
        5,
        "a would-ban never drops after the switch"
    );
    assert_eq!(dut.count(Verdict::Drop, Reason::Banned)?, 0);
    Ok(())
}

/// A monitored rule's prefix would-ban does not drop an enforced neighbour in
/// the same /24 (before this change it dropped it as `banned`).
#[test]
fn a_monitor_rules_prefix_ban_spares_enforced_neighbours() -> Result<()> {
    let mut dut = Dut::load()?;
    let monitored = Policy {
        prefix_packets: per_sec(1, 2),
        prefix_ban_ns: 3600 * SECOND,
        flags: floodgate_common::POLICY_MONITOR,
        ..Policy::default()
    };
    dut.configure(&settings(), &[Policy::default(), monitored])?;
    dut.fg
        .sync_rules(&[(floodgate::addr::lpm_key(&"198.18.98.0/25".parse()?), 1)])?;
    // The monitored half of the /24 goes over its prefix limit: a would-ban of the /24.
    for host in 1..=5u8 {
        let f = Frame::udp(ip(&format!("198.18.98.{host}")), 80).build();
        assert_eq!(dut.run(&f)?, XDP_PASS);
    }
    sleep(Duration::from_millis(20));
    let prefix_key = BanKey {
        addr: mapped(ip("198.18.98.0")),
        prefix_len: 96 + 24,
        _pad: 0,
    };
    let b = would_ban_of(&dut, &prefix_key)?.expect("the /24's would-ban");
    assert!(b.is_would_ban());
    // The enforced neighbour in the other half passes.
    let neighbour = Frame::udp(ip("198.18.98.200"), 80).build();
    assert_eq!(dut.run_n(&neighbour, 3)?, 3);
    assert_eq!(dut.count(Verdict::Drop, Reason::Banned)?, 0);
    Ok(())
}

/// An IPv6 packet from `::ffff:a.b.c.d` is the IPv4 host: its entry and its /24.
#[test]
fn ipv4_mapped_sources_share_the_ipv4_hosts_state() -> Result<()> {
    let mut dut = Dut::load()?;
    dut.configure(
        &settings(),
        &[Policy {
            packets: per_sec(1, 3),
            ..Policy::default()
        }],
    )?;
    let v4 = ip("198.18.99.5");
    let as_v6 = ip("::ffff:198.18.99.5");
    assert_eq!(dut.run_n(&Frame::udp(v4, 80).build(), 2)?, 2);
    // One token left for the host, whichever family it uses.
    assert_eq!(dut.run_n(&Frame::udp(as_v6, 80).build(), 3)?, 1);
    let prefixes = dut.fg.tracked(maps::PREFIXES)?;
    let slash24 = prefixes
        .iter()
        .find(|(a, _)| *a == ip("198.18.99.0"))
        .expect("the IPv4 /24 is tracked");
    assert_eq!(slash24.1.packets, 5, "{prefixes:?}");
    assert_eq!(
        prefixes.len(),
        1,
        "no /64 of mapped addresses: {prefixes:?}"
    );
    Ok(())
}
