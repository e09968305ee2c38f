//! What the previous layout version ([`PREVIOUS_LAYOUT_VERSION`]) kept
//! differently from this one, and how a migration (userspace `migrate`) makes
//! it today's.
//!
//! Layout 5 → 6: no key or value changed its size or place. A prefix entry's
//! `bytes_tat`, unused (0) in layout 5, is now the prefix's ban horizon
//! ([`crate::horizon`]): read as it was pinned, every prefix entry would say
//! no ban of it or of its sources can be in force, and the bans the old
//! program enforced would stop at the swap. So each copied prefix entry gets
//! [`migrated_prefix`]: a horizon covering every ban the old maps hold.

use crate::{TrackState, horizon};

/// The layout version these notes describe.
pub const PREVIOUS_LAYOUT_VERSION: u32 = 5;

// The next layout bump must rewrite this module for the layout it replaces.
const _: () = assert!(PREVIOUS_LAYOUT_VERSION + 1 == crate::LAYOUT_VERSION);

/// A prefix entry of the old maps as today's: its horizon at least
/// `latest_ban_ns`, the latest end of every ban the old maps hold (and of
/// both global horizons). Everything else carries over.
pub const fn migrated_prefix(state: TrackState, latest_ban_ns: u64) -> TrackState {
    horizon::raise_prefix(state, latest_ban_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuotaState;

    #[test]
    fn a_migrated_prefix_covers_the_old_bans_and_keeps_its_state() {
        let old = TrackState {
            packets_tat: 1,
            bytes_tat: 0,
            syn_tat: 3,
            quota: QuotaState {
                newest_lane: 4,
                lanes: [5, 6, 7, 8],
            },
            packets: 9,
            bytes: 10,
            drops: 11,
            first_seen_tick: 13,
        };
        let new = migrated_prefix(old, 1_000);
        assert_eq!(horizon::prefix_horizon(&new), 1_000);
        assert_eq!(
            TrackState {
                bytes_tat: 0,
                ..new
            },
            old
        );
    }
}
