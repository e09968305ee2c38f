//! The map values of the previous layout version ([`PREVIOUS_LAYOUT_VERSION`])
//! that differ from this one, and how each maps onto today's. A daemon that
//! finds pins of that layout migrates them (userspace `daemon::migrate`):
//! every other map kept its layout and is copied as it is.
//!
//! Layout 2 → 3: the quota became a sliding window (`TrackState::quota`),
//! eviction pressure a turnover meter (`GlobalState::pressure_meter`), and
//! `POLICIES` double-buffered (`Settings::default_policy`; the policy maps are
//! rewritten from the config, not migrated).

use crate::{GlobalState, QuotaState, TrackState};

/// The layout version these types describe.
pub const PREVIOUS_LAYOUT_VERSION: u32 = 2;

// The next layout bump must rewrite this module for the layout it replaces.
const _: () = assert!(PREVIOUS_LAYOUT_VERSION + 1 == crate::LAYOUT_VERSION);

/// `TrackState` of layout 2: a fixed quota window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackStateV2 {
    pub packets_tat: u64,
    pub bytes_tat: u64,
    pub syn_tat: u64,
    pub quota_start_ns: u64,
    pub quota_used: u64,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// `GlobalState` of layout 2: no pressure meter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalStateV2 {
    pub source_inserts: u64,
    pub prefix_inserts: u64,
    pub new_source_tat: u64,
    pub event_tat: u64,
    pub events_suppressed: u64,
    pub events_lost: u64,
    pub cas_exhausted: u64,
    pub map_update_errors: u64,
    pub ban_horizon_ns: u64,
}

/// `Settings` of layout 2, up to `user_ban_horizon_ns` (its last field): the
/// one value a migration takes from it. Everything else is rewritten from the
/// config.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsV2 {
    pub flags: u32,
    pub prefix_v4: u32,
    pub prefix_v6: u32,
    pub ban_factor: u32,
    pub ban_max_ns: u64,
    pub ban_forget_ns: u64,
    pub pressure_threshold: u64,
    pub new_source_budget: crate::Rate,
    pub event_rate: crate::Rate,
    pub user_ban_horizon_ns: u64,
}

impl From<TrackStateV2> for TrackState {
    /// Buckets, counters and times carry over. The fixed quota window has no
    /// exact sliding-window equivalent: the window starts afresh (README
    /// "Upgrades").
    fn from(old: TrackStateV2) -> TrackState {
        TrackState {
            packets_tat: old.packets_tat,
            bytes_tat: old.bytes_tat,
            syn_tat: old.syn_tat,
            quota: QuotaState::default(),
            packets: old.packets,
            bytes: old.bytes,
            drops: old.drops,
            first_seen_ns: old.first_seen_ns,
            last_seen_ns: old.last_seen_ns,
        }
    }
}

impl From<GlobalStateV2> for GlobalState {
    /// Statistics, the event budget and the ban horizon carry over; the
    /// pressure meter starts at rest.
    fn from(old: GlobalStateV2) -> GlobalState {
        GlobalState {
            source_inserts: old.source_inserts,
            prefix_inserts: old.prefix_inserts,
            new_source_tat: old.new_source_tat,
            event_tat: old.event_tat,
            events_suppressed: old.events_suppressed,
            events_lost: old.events_lost,
            cas_exhausted: old.cas_exhausted,
            map_update_errors: old.map_update_errors,
            ban_horizon_ns: old.ban_horizon_ns,
            pressure_meter: 0,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)`, `Copy`, only u64/u32 fields and `Rate` (itself
    // Pod), no hidden padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::TrackStateV2 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GlobalStateV2 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SettingsV2 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sizes_are_those_layout_2_pinned() {
        // Layout 2's own size assertions (commit d81b606^, layout.rs).
        assert_eq!(size_of::<TrackStateV2>(), 80);
        assert_eq!(size_of::<SettingsV2>(), 16 + 24 + 32 + 8);
        assert_eq!(size_of::<GlobalStateV2>(), 72);
    }

    #[test]
    fn a_tracked_source_keeps_its_buckets_counters_and_times() {
        let old = TrackStateV2 {
            packets_tat: 1,
            bytes_tat: 2,
            syn_tat: 3,
            quota_start_ns: 4,
            quota_used: 5,
            packets: 6,
            bytes: 7,
            drops: 8,
            first_seen_ns: 9,
            last_seen_ns: 10,
        };
        let new = TrackState::from(old);
        assert_eq!((new.packets_tat, new.bytes_tat, new.syn_tat), (1, 2, 3));
        assert_eq!((new.packets, new.bytes, new.drops), (6, 7, 8));
        assert_eq!((new.first_seen_ns, new.last_seen_ns), (9, 10));
        assert_eq!(new.quota, QuotaState::default());
    }

    #[test]
    fn the_ban_horizon_carries_over() {
        let old = GlobalStateV2 {
            ban_horizon_ns: 77,
            events_suppressed: 3,
            ..GlobalStateV2::default()
        };
        let new = GlobalState::from(old);
        assert_eq!((new.ban_horizon_ns, new.events_suppressed), (77, 3));
        assert_eq!(new.pressure_meter, 0);
    }
}
