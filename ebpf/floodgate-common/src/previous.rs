//! The map values of the previous layout version ([`PREVIOUS_LAYOUT_VERSION`])
//! that differ from this one, and how each maps onto today's. A daemon that
//! finds pins of that layout migrates them (userspace `migrate`): every other
//! map kept its layout and is copied as it is.
//!
//! Layout 3 → 4: a ban counts the packets and bytes it decided
//! (`Ban::packets`, `Ban::bytes`), so a banned packet is counted with one map
//! lookup fewer.

use crate::Ban;

/// The layout version these types describe.
pub const PREVIOUS_LAYOUT_VERSION: u32 = 3;

// The next layout bump must rewrite this module for the layout it replaces.
const _: () = assert!(PREVIOUS_LAYOUT_VERSION + 1 == crate::LAYOUT_VERSION);

/// `Ban` of layouts 2 and 3: no counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanV3 {
    pub until_ns: u64,
    pub duration_ns: u64,
    pub banned_at_ns: u64,
    pub offenses: u32,
    pub reason: u32,
}

impl From<BanV3> for Ban {
    /// End, length, start, offences and reason carry over; the counters start
    /// at zero (the packets the ban decided until now were counted on the
    /// tracked entries).
    fn from(old: BanV3) -> Ban {
        Ban {
            until_ns: old.until_ns,
            duration_ns: old.duration_ns,
            banned_at_ns: old.banned_at_ns,
            offenses: old.offenses,
            reason: old.reason,
            packets: 0,
            bytes: 0,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)`, `Copy`, only u64/u32 fields in an order that leaves
    // no hidden padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::BanV3 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_the_one_layout_3_pinned() {
        assert_eq!(size_of::<BanV3>(), 32);
    }

    #[test]
    fn a_ban_keeps_its_end_offences_and_reason() {
        let old = BanV3 {
            until_ns: 1,
            duration_ns: 2,
            banned_at_ns: 3,
            offenses: 4,
            reason: 5 | crate::BAN_WOULD,
        };
        let new = Ban::from(old);
        assert_eq!(
            (
                new.until_ns,
                new.duration_ns,
                new.banned_at_ns,
                new.offenses
            ),
            (1, 2, 3, 4)
        );
        assert!(new.is_would_ban());
        assert_eq!((new.packets, new.bytes), (0, 0));
    }
}
