//! Ban horizons: times before which a ban may be in force, after which none
//! is. The program looks bans up only for a packet inside every horizon that
//! covers it, so once bans are live somewhere (normal under attack) the
//! packets of prefixes with none skip both `BANS` lookups.
//!
//! Three horizons, each at least the end of every ban it covers:
//! - the global one (`GlobalState::ban_horizon_ns`), raised by each ban the
//!   program makes, and `Settings::user_ban_horizon_ns` for bans userspace
//!   inserts: past both, no ban is live anywhere;
//! - a prefix entry's ([`prefix_horizon`]): the latest end of any ban of the
//!   prefix or of one of its sources. Raised by the program when it bans
//!   either, by userspace when it inserts one, and set from the other two when
//!   the entry is made (a ban may predate the entry: the prefix was evicted
//!   while banned, or the ban was inserted before any of its packets came).
//!
//! A packet whose prefix is not tracked looks its bans up while the global
//! horizons are open, as before: such a prefix's first packet inserts it.

use crate::TrackState;

/// True while a ban with this horizon may still be in force at `now`.
#[inline(always)]
pub const fn open(horizon_ns: u64, now: u64) -> bool {
    horizon_ns > now
}

/// The horizon a new prefix entry starts with: the later of the global ones,
/// which cover every ban that may hold it.
#[inline(always)]
pub const fn fresh_prefix(global_ns: u64, user_ns: u64) -> u64 {
    if global_ns > user_ns {
        global_ns
    } else {
        user_ns
    }
}

/// A prefix entry's horizon. It is kept in `bytes_tat`: no byte limit applies
/// to a prefix, so that word is free in every prefix entry and the entry stays
/// 88 bytes (a set of four ways, six cache lines).
#[inline(always)]
pub const fn prefix_horizon(state: &TrackState) -> u64 {
    state.bytes_tat
}

/// `state` (a prefix entry) with its horizon at least `until_ns`.
#[inline(always)]
pub const fn raise_prefix(mut state: TrackState, until_ns: u64) -> TrackState {
    if until_ns > state.bytes_tat {
        state.bytes_tat = until_ns;
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_horizon_is_open_until_it_passes() {
        assert!(open(10, 9));
        assert!(!open(10, 10));
        assert!(!open(0, 0));
    }

    #[test]
    fn a_fresh_prefix_covers_both_global_horizons() {
        assert_eq!(fresh_prefix(5, 9), 9);
        assert_eq!(fresh_prefix(9, 5), 9);
        assert_eq!(fresh_prefix(0, 0), 0);
    }

    #[test]
    fn raising_never_lowers_and_touches_nothing_else() {
        let s = TrackState {
            bytes_tat: 50,
            packets: 7,
            ..TrackState::default()
        };
        assert_eq!(prefix_horizon(&raise_prefix(s, 40)), 50);
        let r = raise_prefix(s, 60);
        assert_eq!(prefix_horizon(&r), 60);
        assert_eq!(r.packets, 7);
    }
}
