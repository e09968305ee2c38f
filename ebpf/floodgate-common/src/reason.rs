//! Why a packet got its verdict. Every exit of the program records one reason, so
//! the global counters account for every packet exactly once.

/// The reason code attached to every verdict. Values are stable: they index the
/// `COUNTERS` map and appear in ring-buffer events.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Under every limit.
    Ok = 0,
    /// Not IPv4/IPv6 (ARP, LLDP, …).
    NonIp = 1,
    /// Truncated or malformed IP packet.
    Malformed = 2,
    /// Source matched the allow list.
    Allowlist = 3,
    /// Source matched the block list.
    Blocklist = 4,
    /// Source or its prefix is banned.
    Banned = 5,
    /// Per-source packets/s bucket empty.
    RatePackets = 6,
    /// Per-source bytes/s bucket empty.
    RateBytes = 7,
    /// Per-source new-TCP-connections/s bucket empty.
    RateSyn = 8,
    /// Per-prefix packets/s bucket empty.
    PrefixRate = 9,
    /// Per-prefix new-connections/s bucket empty.
    PrefixSyn = 10,
    /// Per-source long-window quota spent.
    Quota = 11,
    /// Per-prefix long-window quota spent.
    PrefixQuota = 12,
    /// First-seen source while the source map is under eviction pressure and the
    /// global budget for new sources is spent.
    NewSourceBudget = 13,
    /// Outside the port/protocol scope of the limits: counted, never limited.
    Unscoped = 14,
    /// Non-first IP fragment (no L4 header): limited by its source like any packet.
    Fragment = 15,
    /// An `aggregate = true` rule's shared packets/s bucket empty.
    AggregatePackets = 16,
    /// An aggregate rule's shared new-connections/s bucket empty.
    AggregateSyn = 17,
    /// An aggregate rule's shared long-window quota spent.
    AggregateQuota = 18,
}

impl Reason {
    /// Number of reason codes; `COUNTERS` has `Verdict::COUNT * COUNT` slots per
    /// interface slot.
    pub const COUNT: u32 = 19;

    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::Ok,
        Reason::NonIp,
        Reason::Malformed,
        Reason::Allowlist,
        Reason::Blocklist,
        Reason::Banned,
        Reason::RatePackets,
        Reason::RateBytes,
        Reason::RateSyn,
        Reason::PrefixRate,
        Reason::PrefixSyn,
        Reason::Quota,
        Reason::PrefixQuota,
        Reason::NewSourceBudget,
        Reason::Unscoped,
        Reason::Fragment,
        Reason::AggregatePackets,
        Reason::AggregateSyn,
        Reason::AggregateQuota,
    ];

    /// The stable snake_case name used in logs, JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::NonIp => "non_ip",
            Reason::Malformed => "malformed",
            Reason::Allowlist => "allowlist",
            Reason::Blocklist => "blocklist",
            Reason::Banned => "banned",
            Reason::RatePackets => "rate_packets",
            Reason::RateBytes => "rate_bytes",
            Reason::RateSyn => "rate_syn",
            Reason::PrefixRate => "prefix_rate",
            Reason::PrefixSyn => "prefix_syn",
            Reason::Quota => "quota",
            Reason::PrefixQuota => "prefix_quota",
            Reason::NewSourceBudget => "new_source_budget",
            Reason::Unscoped => "unscoped",
            Reason::Fragment => "fragment",
            Reason::AggregatePackets => "aggregate_packets",
            Reason::AggregateSyn => "aggregate_syn",
            Reason::AggregateQuota => "aggregate_quota",
        }
    }

    pub fn from_u32(v: u32) -> Option<Reason> {
        Self::ALL.get(v as usize).copied()
    }

    /// True for the reasons that come from a limit being exceeded (all but
    /// the aggregate ones may ban).
    pub const fn is_limit(self) -> bool {
        matches!(
            self,
            Reason::RatePackets
                | Reason::RateBytes
                | Reason::RateSyn
                | Reason::PrefixRate
                | Reason::PrefixSyn
                | Reason::Quota
                | Reason::PrefixQuota
                | Reason::AggregatePackets
                | Reason::AggregateSyn
                | Reason::AggregateQuota
        )
    }

    /// True for an aggregate rule's shared budget: its drops never ban (the
    /// source itself is within its own limits).
    pub const fn is_aggregate(self) -> bool {
        matches!(
            self,
            Reason::AggregatePackets | Reason::AggregateSyn | Reason::AggregateQuota
        )
    }

    /// True for limits kept per prefix (their ban applies to the whole prefix).
    pub const fn is_prefix(self) -> bool {
        matches!(
            self,
            Reason::PrefixRate | Reason::PrefixSyn | Reason::PrefixQuota
        )
    }
}

/// What happened to the packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Pass = 0,
    Drop = 1,
    /// Monitor mode: the decision was "drop", the packet passed.
    WouldDrop = 2,
}

impl Verdict {
    pub const COUNT: u32 = 3;
    pub const ALL: [Verdict; 3] = [Verdict::Pass, Verdict::Drop, Verdict::WouldDrop];

    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::WouldDrop => "would_drop",
        }
    }
}

/// Index of a (verdict, reason) pair within one interface's block of the
/// `COUNTERS` per-CPU array (see [`iface_counter_index`]).
pub const fn counter_index(verdict: Verdict, reason: Reason) -> u32 {
    verdict as u32 * Reason::COUNT + reason as u32
}

/// Number of (verdict, reason) slots: one interface's share of `COUNTERS`.
pub const COUNTER_SLOTS: u32 = Verdict::COUNT * Reason::COUNT;

/// Interfaces counted separately. Attached interfaces get slots 1..=MAX_IFACES
/// (assigned by the daemon at attach, remembered in `IFACE_NAMES`); slot 0,
/// "other", counts every packet from an interface without a slot.
pub const MAX_IFACES: u32 = 16;
/// Interface slots in `COUNTERS`, "other" included.
pub const IFACE_SLOTS: u32 = MAX_IFACES + 1;
/// Entries of the `COUNTERS` per-CPU array: one block of [`COUNTER_SLOTS`] per
/// interface slot.
pub const COUNTER_ENTRIES: u32 = IFACE_SLOTS * COUNTER_SLOTS;
/// Interfaces with an ifindex at or above this have no slot (`IFINDEX_SLOTS` is
/// an array indexed by ifindex, the cheapest lookup there is) and count as "other".
pub const MAX_IFINDEX: u32 = 8192;

/// Index in `COUNTERS` of (verdict, reason) on interface slot `iface_slot`.
/// A slot out of range counts as slot 0 ("other"), so the index is always in
/// bounds.
pub const fn iface_counter_index(iface_slot: u32, verdict: Verdict, reason: Reason) -> u32 {
    let slot = if iface_slot < IFACE_SLOTS {
        iface_slot
    } else {
        0
    };
    slot * COUNTER_SLOTS + counter_index(verdict, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_dense_and_round_trip() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Reason::from_u32(i as u32), Some(*r));
        }
        assert_eq!(Reason::from_u32(Reason::COUNT), None);
    }

    #[test]
    fn counter_slots_do_not_overlap() {
        let mut seen = [false; COUNTER_SLOTS as usize];
        for v in Verdict::ALL {
            for r in Reason::ALL {
                let i = counter_index(v, r) as usize;
                assert!(!seen[i]);
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn interface_blocks_tile_the_counters_without_overlap() {
        let mut seen = [false; COUNTER_ENTRIES as usize];
        for slot in 0..IFACE_SLOTS {
            for v in Verdict::ALL {
                for r in Reason::ALL {
                    let i = iface_counter_index(slot, v, r);
                    assert_eq!(i / COUNTER_SLOTS, slot);
                    assert_eq!(i % COUNTER_SLOTS, counter_index(v, r));
                    assert!(!seen[i as usize]);
                    seen[i as usize] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
        // Slot 0 keeps the old single-interface layout; bad slots fold into it.
        assert_eq!(
            iface_counter_index(0, Verdict::Drop, Reason::Banned),
            counter_index(Verdict::Drop, Reason::Banned)
        );
        for bad in [IFACE_SLOTS, IFACE_SLOTS + 1, u32::MAX] {
            assert_eq!(
                iface_counter_index(bad, Verdict::Pass, Reason::Ok),
                counter_index(Verdict::Pass, Reason::Ok)
            );
        }
        assert_eq!(
            iface_counter_index(MAX_IFACES, Verdict::WouldDrop, Reason::AggregateQuota),
            COUNTER_ENTRIES - 1
        );
    }
}
