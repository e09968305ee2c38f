//! The walks behind `status`, `top`, `bans list` and every scrape (the IPv4
//! tables by mmap, the IPv6 maps and bans by BPF_MAP_LOOKUP_BATCH, over the
//! real program's maps) read exactly what was written, across many batches.

use std::net::IpAddr;

use anyhow::Result;
use aya::maps::{HashMap, MapData};
use floodgate::{
    control::proto::TopBy,
    daemon::reader::Reader,
    loader::Capacity,
    tables::{Tracked, tick_of},
};
use floodgate_common::{Ban, BanKey, Reason, TrackState, maps};
use floodgate_tests::dut::{Dut, monotonic_ns};

/// More than a few batches of the walk's 4096; one in ten IPv4.
const SOURCES: u32 = 20_000;
const BANS: u32 = 3_000;
const PREFIXES: u32 = 1_500;

/// Source `i`: IPv4 (198.18.0.0/15) for one in ten, else IPv6.
fn source(i: u32) -> [u8; 16] {
    if i.is_multiple_of(10) {
        let v4 = 0xc612_0000 + i;
        floodgate::addr::mapped(IpAddr::from(std::net::Ipv4Addr::from(v4)))
    } else {
        addr(0, i)
    }
}

fn addr(net: u8, i: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = net;
    a[12..].copy_from_slice(&i.to_be_bytes());
    a
}

fn filled() -> Result<Dut> {
    // IPv6 sides of 32 768 entries each; an IPv4 table 65 times its 2000.
    let mut dut = Dut::load_with(Capacity::new(1 << 19, 1 << 19, 8192, 4096))?;
    let now = monotonic_ns();
    let tracked = |addr, state| Tracked {
        addr,
        state,
        last_seen_tick: tick_of(now),
    };
    let sources: Vec<Tracked> = (0..SOURCES)
        .map(|i| {
            // Distinct weights in a scrambled order, so the top is one answer.
            let packets = u64::from(i.wrapping_mul(7919) % SOURCES) + 1;
            let state = TrackState {
                packets,
                bytes: 3 * packets,
                drops: (packets % 17) as u32,
                ..TrackState::default()
            };
            tracked(source(i), state)
        })
        .collect();
    dut.fg.put_tracked(maps::SOURCES, &sources)?;
    let prefixes: Vec<Tracked> = (0..PREFIXES)
        .map(|i| {
            let state = TrackState {
                packets: u64::from(i) + 1_000_000,
                ..TrackState::default()
            };
            tracked(addr(2, i), state)
        })
        .collect();
    dut.fg.put_tracked(maps::PREFIXES, &prefixes)?;
    let mut bans: HashMap<&mut MapData, BanKey, Ban> = dut.fg.typed_map(maps::BANS)?;
    for i in 0..BANS {
        let key = BanKey {
            addr: addr(1, i),
            prefix_len: 128,
            _pad: 0,
        };
        // Every other one has ended (kept for its offences, not active).
        let until_ns = if i % 2 == 0 {
            now + 3_600_000_000_000 + u64::from(i)
        } else {
            now.saturating_sub(1)
        };
        let ban = Ban {
            until_ns,
            duration_ns: 3_600_000_000_000,
            banned_at_ns: now,
            offenses: 1,
            reason: Reason::Banned as u32,
            packets: 0,
            bytes: 0,
        };
        bans.insert(key, ban, 0)?;
    }
    Ok(dut)
}

#[test]
fn batched_walks_read_what_the_per_key_walk_reads() -> Result<()> {
    let mut dut = filled()?;
    let reader = Reader::new(&dut.fg)?;

    let fills = reader.fills()?;
    let fill = |name| fills.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
    assert_eq!(fill(maps::SOURCES), Some(u64::from(SOURCES / 10)));
    assert_eq!(
        fill(maps::SOURCES6),
        Some(u64::from(SOURCES - SOURCES / 10))
    );
    assert_eq!(fill(maps::BANS), Some(u64::from(BANS)));
    assert_eq!(fill(maps::PREFIXES6), Some(u64::from(PREFIXES)));
    let heaviest = reader.top(3, TopBy::Packets, true, (24, 48))?;
    let packets: Vec<u64> = heaviest.iter().map(|r| r.packets).collect();
    let p = u64::from(PREFIXES) + 1_000_000;
    assert_eq!(packets, [p - 1, p - 2, p - 3]);

    // The top 50 by each weight, against all that was written, sorted.
    let mut all = dut.fg.tracked(maps::SOURCES)?;
    assert_eq!(all.len(), SOURCES as usize);
    for by in [TopBy::Packets, TopBy::Bytes] {
        let rows = reader.top(50, by, false, (24, 48))?;
        all.sort_by_key(|(_, s)| std::cmp::Reverse(s.packets));
        let want: Vec<String> = all[..50].iter().map(|(a, _)| a.to_string()).collect();
        let got: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        assert_eq!(got, want, "{by:?}");
        assert_eq!(rows[0].packets, u64::from(SOURCES));
    }
    let by_drops = reader.top(10, TopBy::Drops, false, (24, 48))?;
    assert!(by_drops.iter().all(|r| r.drops == 16), "{by_drops:?}");

    // A top row carries its source's active ban, and only that one.
    let rows = reader.top(5, TopBy::Packets, false, (24, 48))?;
    assert!(rows.iter().all(|r| r.ban.is_none()), "{rows:?}");
    let heaviest: IpAddr = rows[0].target.parse()?;
    let now = monotonic_ns();
    dut.fg.insert_ban(
        &BanKey {
            addr: floodgate::addr::mapped(heaviest),
            prefix_len: 128,
            _pad: 0,
        },
        &Ban {
            until_ns: now + 60_000_000_000,
            duration_ns: 60_000_000_000,
            banned_at_ns: now,
            offenses: 2,
            reason: Reason::Banned as u32,
            packets: 0,
            bytes: 0,
        },
    )?;
    let rows = reader.top(5, TopBy::Packets, false, (24, 48))?;
    let ban = rows[0]
        .ban
        .as_ref()
        .map(|b| (b.reason.as_str(), b.offenses));
    assert_eq!(ban, Some(("banned", 2)), "{rows:?}");
    assert!(rows[1..].iter().all(|r| r.ban.is_none()), "{rows:?}");
    let banned: IpAddr = floodgate::addr::unmapped(addr(1, 0));

    let (rows, total) = reader.active_bans(100)?;
    assert_eq!(total, u64::from(BANS / 2) + 1);
    assert_eq!(reader.active_ban_count()?, u64::from(BANS / 2) + 1);
    assert_eq!(rows.len(), 100);
    // Those ending last first: the highest even indices.
    assert_eq!(
        rows[0].target,
        ipnet::IpNet::from(floodgate::addr::unmapped(addr(1, BANS - 2)))
    );
    assert!(
        rows.windows(2)
            .all(|w| w[0].remaining_secs >= w[1].remaining_secs)
    );
    let (every, _) = reader.active_bans(usize::MAX)?;
    assert!(every.iter().any(|b| b.target == ipnet::IpNet::from(banned)));
    Ok(())
}
