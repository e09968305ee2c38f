//! The map values of the previous layout version ([`PREVIOUS_LAYOUT_VERSION`])
//! that differ from this one, and how each maps onto today's. A daemon that
//! finds pins of that layout migrates them (userspace `migrate`): every other
//! map kept its layout and is copied as it is.
//!
//! Layout 4 → 5: sources and prefixes were one LRU hash each, keyed by the
//! 16-byte address ([`crate::AddrKey`]) with a [`TrackStateV4`] value; IPv4
//! ones now go to the set tables and IPv6 ones to `SOURCES6` / `PREFIXES6`,
//! with the state of [`TrackState`] and the last-seen time as a tick. `META`
//! gained the tables' seed (a layout-4 `META` reads as seed 0).

use crate::{QuotaState, TrackState, set_table};

/// The layout version these types describe.
pub const PREVIOUS_LAYOUT_VERSION: u32 = 4;

// The next layout bump must rewrite this module for the layout it replaces.
const _: () = assert!(PREVIOUS_LAYOUT_VERSION + 1 == crate::LAYOUT_VERSION);

/// `TrackState` of layouts 3 and 4: with first- and last-seen times.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackStateV4 {
    pub packets_tat: u64,
    pub bytes_tat: u64,
    pub syn_tat: u64,
    pub quota: QuotaState,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

impl TrackStateV4 {
    /// Today's state (buckets, quota and counters carry over; drops keep
    /// their low 32 bits) and the tick it was last seen at.
    pub fn split(&self) -> (TrackState, u32) {
        let state = TrackState {
            packets_tat: self.packets_tat,
            bytes_tat: self.bytes_tat,
            syn_tat: self.syn_tat,
            quota: self.quota,
            packets: self.packets,
            bytes: self.bytes,
            drops: self.drops as u32,
            first_seen_tick: set_table::tick(self.first_seen_ns),
        };
        (state, set_table::tick(self.last_seen_ns))
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)`, `Copy`, only u64 fields (and QuotaState's): every
    // bit pattern is valid and there is no hidden padding.
    unsafe impl aya::Pod for super::TrackStateV4 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_the_one_layout_4_pinned() {
        assert_eq!(size_of::<TrackStateV4>(), 104);
    }

    #[test]
    fn buckets_quota_and_counters_carry_over() {
        let old = TrackStateV4 {
            packets_tat: 1,
            bytes_tat: 2,
            syn_tat: 3,
            quota: QuotaState {
                newest_lane: 4,
                lanes: [5, 6, 7, 8],
            },
            packets: 9,
            bytes: 10,
            drops: 11,
            first_seen_ns: 3 << set_table::TICK_SHIFT,
            last_seen_ns: 7 << set_table::TICK_SHIFT,
        };
        let (new, tick) = old.split();
        assert_eq!(
            (new.packets_tat, new.bytes_tat, new.syn_tat, new.quota),
            (1, 2, 3, old.quota)
        );
        assert_eq!((new.packets, new.bytes, new.drops), (9, 10, 11));
        assert_eq!((tick, new.first_seen_tick), (7, 3));
    }
}
