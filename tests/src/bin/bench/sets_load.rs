//! The IP sets bench's inputs: three copies of a 100 000-entry block set on
//! lab addresses (198.18.0.0/15, fd00::/8) and the flood's sources. An entry
//! is a slot of one kind (a v4 or v6 address, a v4 /29 or a v6 /120); a copy
//! is slot ranges by kind, so what a source is on follows from its slot.
//!
//! - `A`, the first copy (loaded at start);
//! - `B`, `A` with 10 000 entries replaced (10 % of each kind's slots shifted):
//!   10 000 stale, 10 000 new, 90 000 on both;
//! - `C`, 100 000 entries none of which is on `B` (mostly v6: 198.18.0.0/15
//!   cannot hold two disjoint copies of 80 000 v4 addresses).

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
};

/// What an entry (and a source) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    V4,
    V6,
    V4Range,
    V6Range,
    /// On no copy.
    Neither,
}

/// 198.18.128.0 up: v4 addresses (98 304 slots, to 198.19.255.255).
const V4_BASE: u32 = 0xc612_8000;
/// 198.18.64.0 up: v4 /29s (2 048 slots, to 198.18.127.255).
const V4_RANGE_BASE: u32 = 0xc612_4000;
/// 198.18.10.10 up: v4 sources on no copy.
const NEITHER_V4_BASE: u32 = 0xc612_0a0a;
/// Inside the crawler's link (fd00:f100:1::/64): fd00:f100:1:0:1::/80 v6
/// addresses, fd00:f100:1:0:2::/80 v6 /120s, fd00:f100:1:0:3::/80 sources on
/// no copy.
const V6_BASE: u128 = 0xfd00_f100_0001_0000_0001_0000_0000_0000;
const V6_RANGE_BASE: u128 = 0xfd00_f100_0001_0000_0002_0000_0000_0000;
const NEITHER_V6_BASE: u128 = 0xfd00_f100_0001_0000_0003_0000_0000_0000;

pub const TOTAL: usize = 100_000;

/// A copy of the set: slot ranges by kind.
pub type Copy = Vec<(Kind, Range<u32>)>;

/// 80 000 v4 addresses, 10 000 v6 addresses, 1 800 v4 /29s, 8 200 v6 /120s.
pub fn copy_a() -> Copy {
    vec![
        (Kind::V4, 0..80_000),
        (Kind::V6, 0..10_000),
        (Kind::V4Range, 0..1_800),
        (Kind::V6Range, 0..8_200),
    ]
}

/// `A` with 10 % of each kind's slots shifted: 10 000 entries replaced.
pub fn copy_b() -> Copy {
    vec![
        (Kind::V4, 8_000..88_000),
        (Kind::V6, 1_000..11_000),
        (Kind::V4Range, 200..2_000),
        (Kind::V6Range, 800..9_000),
    ]
}

/// 100 000 entries, none on `B` (the 200 v4 /29s are `A`'s stale ones).
pub fn copy_c() -> Copy {
    vec![
        (Kind::V4, 88_000..98_000),
        (Kind::V6, 11_000..90_800),
        (Kind::V4Range, 0..200),
        (Kind::V6Range, 9_000..19_000),
    ]
}

pub fn len(copy: &Copy) -> usize {
    copy.iter().map(|(_, r)| r.len()).sum()
}

/// The copy as a `cidr` list, one entry a line (v4 addresses bare, the rest
/// as CIDRs), with a comment header as the feeds have.
pub fn text(copy: &Copy) -> String {
    let mut out = String::with_capacity(len(copy) * 24);
    out.push_str("; floodgate bench: a 100 000-entry block set\n");
    for (kind, slots) in copy {
        for s in slots.clone() {
            let _ = match kind {
                Kind::V4 => writeln!(out, "{}", Ipv4Addr::from(V4_BASE + s)),
                Kind::V6 => writeln!(out, "{}/128", Ipv6Addr::from(V6_BASE + u128::from(s))),
                Kind::V4Range => writeln!(out, "{}/29", Ipv4Addr::from(V4_RANGE_BASE + s * 8)),
                Kind::V6Range => writeln!(
                    out,
                    "{}/120",
                    Ipv6Addr::from(V6_RANGE_BASE + u128::from(s) * 256)
                ),
                Kind::Neither => Ok(()),
            };
        }
    }
    out
}

/// One flood source: its kind and slot.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub kind: Kind,
    pub slot: u32,
}

impl Source {
    /// The address it sends from (inside its entry, for ranges).
    pub fn addr(self) -> IpAddr {
        let s = self.slot;
        match self.kind {
            Kind::V4 => IpAddr::V4(Ipv4Addr::from(V4_BASE + s)),
            Kind::V6 => IpAddr::V6(Ipv6Addr::from(V6_BASE + u128::from(s))),
            Kind::V4Range => IpAddr::V4(Ipv4Addr::from(V4_RANGE_BASE + s * 8 + 5)),
            Kind::V6Range => IpAddr::V6(Ipv6Addr::from(V6_RANGE_BASE + u128::from(s) * 256 + 0x77)),
            Kind::Neither if s.is_multiple_of(2) => {
                IpAddr::V4(Ipv4Addr::from(NEITHER_V4_BASE + s / 2))
            }
            Kind::Neither => IpAddr::V6(Ipv6Addr::from(NEITHER_V6_BASE + u128::from(s) + 1)),
        }
    }

    pub fn on(self, copy: &Copy) -> bool {
        copy.iter()
            .any(|(k, r)| *k == self.kind && r.contains(&self.slot))
    }
}

/// The flood's sources: for each kind, `per_region` slots spread over each
/// stretch between the copies' boundaries (so on both `A` and `B`, only on
/// one, only on `C`...), right by the boundaries too; and 40 on no copy.
pub fn sources(copies: &[&Copy], per_region: [u32; 4]) -> Vec<Source> {
    let kinds = [Kind::V4, Kind::V6, Kind::V4Range, Kind::V6Range];
    let mut out = Vec::new();
    for (kind, n) in kinds.into_iter().zip(per_region) {
        let mut cuts: Vec<u32> = copies
            .iter()
            .flat_map(|c| c.iter())
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, r)| [r.start, r.end])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let (lo, span) = (w[0], w[1] - w[0]);
            // The first and last slot of the stretch, and n - 2 between.
            for k in 0..n.min(span) {
                let slot = lo
                    + u32::try_from(u64::from(k) * u64::from(span - 1) / u64::from((n - 1).max(1)))
                        .unwrap_or(0);
                out.push(Source { kind, slot });
            }
        }
    }
    out.extend((0..40).map(|slot| Source {
        kind: Kind::Neither,
        slot,
    }));
    out
}
