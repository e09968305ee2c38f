//! What the previous layout version ([`PREVIOUS_LAYOUT_VERSION`]) kept
//! differently from this one, and how a migration (userspace `migrate`) makes
//! it today's.
//!
//! Layout 6 → 7: three reasons were added (`aggregate_packets`,
//! `aggregate_syn`, `aggregate_quota`), so each interface's block of
//! `COUNTERS` has more entries and every old entry moves
//! ([`migrated_counter_index`]). `POLICIES` values grew by the aggregate
//! budget; they are not copied (the daemon writes the policy into the new
//! maps before the swap). `AGGREGATES` is new and starts empty: no rule of
//! the old configuration could be aggregate. Sources, prefixes and bans
//! carry over as they are.

use crate::{COUNTER_ENTRIES, Reason, Verdict};

/// The layout version these notes describe.
pub const PREVIOUS_LAYOUT_VERSION: u32 = 6;

// The next layout bump must rewrite this module for the layout it replaces.
const _: () = assert!(PREVIOUS_LAYOUT_VERSION + 1 == crate::LAYOUT_VERSION);

/// Reasons the previous layout counted: `Reason::Ok` to `Reason::Fragment`.
pub const PREVIOUS_REASONS: u32 = 16;
/// One interface's block of the previous `COUNTERS`.
pub const PREVIOUS_COUNTER_SLOTS: u32 = Verdict::COUNT * PREVIOUS_REASONS;

/// Where entry `old` of the previous `COUNTERS` (interface slot, verdict,
/// reason) is today. `None`: past the previous map's end.
pub const fn migrated_counter_index(old: u32) -> Option<u32> {
    let slot = old / PREVIOUS_COUNTER_SLOTS;
    let within = old % PREVIOUS_COUNTER_SLOTS;
    let verdict = within / PREVIOUS_REASONS;
    let reason = within % PREVIOUS_REASONS;
    let new = slot * crate::COUNTER_SLOTS + verdict * Reason::COUNT + reason;
    if new < COUNTER_ENTRIES {
        Some(new)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IFACE_SLOTS, iface_counter_index};

    #[test]
    fn every_old_counter_lands_on_its_own_interface_verdict_and_reason() {
        for slot in 0..IFACE_SLOTS {
            for (v, verdict) in Verdict::ALL.iter().enumerate() {
                for r in 0..PREVIOUS_REASONS {
                    let old = slot * PREVIOUS_COUNTER_SLOTS + v as u32 * PREVIOUS_REASONS + r;
                    let Some(reason) = Reason::from_u32(r) else {
                        panic!("reason {r} is gone");
                    };
                    assert_eq!(
                        migrated_counter_index(old),
                        Some(iface_counter_index(slot, *verdict, reason))
                    );
                }
            }
        }
        assert_eq!(
            migrated_counter_index(IFACE_SLOTS * PREVIOUS_COUNTER_SLOTS),
            None
        );
    }
}
