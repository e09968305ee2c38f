//! Map keys and values. See the crate docs for the layout rules every type follows.

use crate::aggregate::AggregateLimits;

/// A source or prefix address: 16 bytes, network order, IPv4 as IPv4-mapped IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey {
    pub addr: [u8; 16],
}

/// Key of the `BANS` map: a source (`prefix_len` 128) or a prefix (masked address and
/// its mapped length) is banned. The length is in the key because a prefix's network
/// address is also a valid host address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BanKey {
    pub addr: [u8; 16],
    /// Mapped prefix length (IPv4 /24 is 120).
    pub prefix_len: u32,
    pub _pad: u32,
}

impl BanKey {
    /// The ban key of one source (mapped address).
    #[inline(always)]
    pub const fn source(addr: [u8; 16]) -> BanKey {
        BanKey {
            addr,
            prefix_len: 128,
            _pad: 0,
        }
    }

    /// The ban key of a prefix: its masked (mapped) address and mapped length.
    #[inline(always)]
    pub const fn prefix(masked: [u8; 16], prefix_len: u32) -> BanKey {
        BanKey {
            addr: masked,
            prefix_len,
            _pad: 0,
        }
    }
}

/// Key of the `PORTS` scope hash. `port` is host order; port 0 with a protocol
/// means "every port of this protocol".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u16,
    pub port: u16,
}

/// A token bucket in GCRA form (generic cell rate algorithm): the state is one
/// "theoretical arrival time" per bucket, updated with compare-and-swap.
///
/// `interval_fp` is the time one unit (packet, byte or SYN) costs, in nanoseconds
/// shifted left by [`FP_SHIFT`] so byte rates of gigabytes per second keep
/// precision. `tolerance_ns` is `burst * interval`: how far ahead of now the
/// arrival time may run. `interval_fp == 0` means the limit is off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub interval_fp: u64,
    pub tolerance_ns: u64,
}

/// Fixed-point shift of [`Rate::interval_fp`].
pub const FP_SHIFT: u32 = 16;

/// The longest period a rate may have: `per_ns << FP_SHIFT` must fit in 64 bits
/// (2^47 ns is about 39 hours).
pub const MAX_PER_NS: u64 = u64::MAX >> FP_SHIFT;

/// The most a bucket's tolerance (`burst × interval`) may be: 2^62 ns, about
/// 146 years, so `now + tolerance` and the program's sanity margin
/// (`limit::sane_ahead_ns`) never overflow.
pub const MAX_TOLERANCE_NS: u64 = 1 << 62;

impl Rate {
    pub const OFF: Rate = Rate {
        interval_fp: 0,
        tolerance_ns: 0,
    };

    /// `rate` units per `per_ns` nanoseconds, allowing `burst` units at once.
    /// Returns `OFF` for a zero rate. What the kernel form cannot hold (see
    /// [`Rate::checked_new`]) saturates — configuration validation rejects it
    /// first, so this never silently shortens a burst a user asked for.
    pub const fn new(rate: u64, per_ns: u64, burst: u64) -> Rate {
        match Rate::checked_new(rate, per_ns, burst) {
            Some(r) => r,
            None => {
                let per_ns = if per_ns > MAX_PER_NS {
                    MAX_PER_NS
                } else {
                    per_ns
                };
                let interval_fp = (per_ns << FP_SHIFT) / rate;
                Rate {
                    interval_fp: if interval_fp == 0 { 1 } else { interval_fp },
                    tolerance_ns: MAX_TOLERANCE_NS,
                }
            }
        }
    }

    /// [`Rate::new`], or `None` when the kernel form cannot hold it: a period
    /// over [`MAX_PER_NS`], or a burst worth more than [`MAX_TOLERANCE_NS`] of
    /// the rate (`burst × interval`; the old `as u64` wrapped such a burst to a
    /// few nanoseconds, which dropped everything).
    pub const fn checked_new(rate: u64, per_ns: u64, burst: u64) -> Option<Rate> {
        if rate == 0 {
            return Some(Rate::OFF);
        }
        if per_ns > MAX_PER_NS {
            return None;
        }
        let interval_fp = (per_ns << FP_SHIFT) / rate;
        let interval_fp = if interval_fp == 0 { 1 } else { interval_fp };
        let tolerance = (burst as u128 * interval_fp as u128) >> FP_SHIFT;
        if tolerance > MAX_TOLERANCE_NS as u128 {
            return None;
        }
        Some(Rate {
            interval_fp,
            tolerance_ns: tolerance as u64,
        })
    }

    pub const fn is_on(&self) -> bool {
        self.interval_fp != 0
    }
}

/// A long-window quota: at most `limit` packets in any interval of the window's
/// length, tracked in lanes of `slot_ns` (see [`crate::quota`]; build it with
/// [`Quota::new`]). `limit == 0` means off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub slot_ns: u64,
}

/// Sliding-window quota state of a source or prefix (see [`crate::quota`]): the
/// newest lane's number and the lane counts, two per word. Inside `TrackState`:
/// a map of its own would cost every packet two more hash lookups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub newest_lane: u64,
    pub lanes: [u64; crate::quota::QUOTA_WORDS],
}

/// `Policy::flags`: the rule is in monitor mode (decide, count, but pass).
pub const POLICY_MONITOR: u32 = 1;

/// The limits applied to a source. Slot 0 of `POLICIES` is the default policy;
/// rules (matched by LPM on the source) point at other slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub packets: Rate,
    pub bytes: Rate,
    pub syn: Rate,
    pub quota: Quota,
    pub prefix_packets: Rate,
    pub prefix_syn: Rate,
    pub prefix_quota: Quota,
    /// Ban length for a source over a per-source limit (0: drop only the excess).
    pub ban_ns: u64,
    /// Ban length for a prefix over a per-prefix limit (0: drop only the excess).
    pub prefix_ban_ns: u64,
    /// The shared budget of an `aggregate = true` rule (all off otherwise).
    pub aggregate: AggregateLimits,
    pub flags: u32,
    /// Slot in `AGGREGATES` of the rule's shared state (1 to
    /// [`crate::MAX_AGGREGATES`] − 1; 0: the policy has none).
    pub aggregate_slot: u32,
}

/// `Settings::flags`: global monitor mode.
pub const SETTINGS_MONITOR: u32 = 1;
/// `Settings::flags`: drop malformed IP packets instead of passing them (fail-closed).
pub const SETTINGS_DROP_MALFORMED: u32 = 2;
/// `Settings::flags`: only traffic matching `PORTS` counts toward limits.
pub const SETTINGS_PORTS_SCOPED: u32 = 4;
/// `Settings::flags`: the policy has been written; until then the program passes
/// everything it sees (counted as `ok`) rather than enforcing zeroed limits.
pub const SETTINGS_READY: u32 = 8;
/// `Settings::flags`: the block trie has entries (an empty trie is not looked up).
pub const SETTINGS_HAS_BLOCK: u32 = 16;
/// `Settings::flags`: the allow trie has entries.
pub const SETTINGS_HAS_ALLOW: u32 = 32;
/// `Settings::flags`: the rule trie has entries.
pub const SETTINGS_HAS_RULES: u32 = 64;

/// Global settings, slot 0 of the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    /// Prefix length used to aggregate IPv4 sources (e.g. 24).
    pub prefix_v4: u32,
    /// Prefix length used to aggregate IPv6 sources (e.g. 64).
    pub prefix_v6: u32,
    /// Ban escalation factor for repeat offenders (1: no escalation).
    pub ban_factor: u32,
    /// Longest ban escalation may reach.
    pub ban_max_ns: u64,
    /// An offender with no ban for this long starts over at the base duration.
    pub ban_forget_ns: u64,
    /// First-seen sources per `pressure_window_ns` above which the source map
    /// is under eviction pressure (0: never; see [`crate::pressure`]).
    pub pressure_threshold: u64,
    /// Global budget for first-seen sources while under eviction pressure.
    pub new_source_budget: Rate,
    /// Rate limit on ban events sent to userspace.
    pub event_rate: Rate,
    /// Latest end of any ban userspace inserted itself; with
    /// `GlobalState::ban_horizon_ns` it lets the program skip the ban lookups
    /// while no ban can be active.
    pub user_ban_horizon_ns: u64,
    /// The window of `pressure_threshold`.
    pub pressure_window_ns: u64,
    /// How far one insert moves `GlobalState::pressure_meter`
    /// ([`crate::pressure::step_ns`]).
    pub pressure_step_ns: u64,
    /// Slot of the default policy: 0 or [`crate::POLICY_HALF`], the half of
    /// `POLICIES` the rules of the live configuration point into.
    pub default_policy: u32,
    pub _pad: u32,
}

/// Per-source (and per-prefix) state: a way of the IPv4 set tables `SOURCES`
/// and `PREFIXES` ([`crate::set_table::Set`]), or inside the value of the IPv6
/// LRU maps `SOURCES6` and `PREFIXES6` ([`Track6`]). When the entry was last
/// seen is kept beside it (the way's tag, `Track6::last_seen_tick`), not in it.
/// The buckets and the quota are updated with atomic operations (see the
/// program's bucket module); the counters with plain adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackState {
    pub packets_tat: u64,
    /// A source's byte bucket; in a prefix entry (no byte limit applies to
    /// prefixes) its ban horizon ([`crate::horizon::prefix_horizon`]).
    pub bytes_tat: u64,
    pub syn_tat: u64,
    pub quota: QuotaState,
    pub packets: u64,
    pub bytes: u64,
    /// Packets dropped (or would-dropped): 32 bits that wrap, beside the tick
    /// the entry was made at ([`crate::set_table::tick`]), so the entry stays
    /// 88 bytes and a set of four fits six cache lines. A source over its
    /// limits long enough to drop 4 billion packets has long been banned
    /// (what a ban decides is counted on the ban).
    pub drops: u32,
    pub first_seen_tick: u32,
}

/// Value of `SOURCES6` and `PREFIXES6`: the state and the tick
/// ([`crate::set_table::tick`]) it was last seen at.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Track6 {
    pub state: TrackState,
    pub last_seen_tick: u64,
}

/// A ban (value of `BANS`). Kept after it expires so repeat offences escalate;
/// the program ignores an entry whose `until_ns` has passed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ban {
    /// `bpf_ktime_get_ns` time the ban ends.
    pub until_ns: u64,
    pub duration_ns: u64,
    pub banned_at_ns: u64,
    pub offenses: u32,
    /// The [`crate::Reason`] that triggered the ban.
    pub reason: u32,
    /// Packets and bytes this ban decided (dropped, or would-dropped for a
    /// would-ban), carried over when the key is banned again. The banned key's
    /// own statistics: a packet banned by its source's ban counts here and on
    /// its prefix's tracked entry, one banned by its prefix's ban here and on
    /// its source's entry — one lookup fewer than counting on both entries.
    pub packets: u64,
    pub bytes: u64,
}

/// Value of the `BLOCK` trie. `expires_ns == 0`: permanent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEntry {
    pub expires_ns: u64,
}

/// Packets and bytes, one slot of the per-CPU `COUNTERS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Value of `IFACE_NAMES` (indexed by interface slot): which interface a slot of
/// `COUNTERS` belongs to. Written by the daemon at attach and pinned with the
/// counters, so a restarted daemon gives each interface its old slot back.
/// An empty name: the slot is free.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceName {
    /// Interface name, NUL-padded (IFNAMSIZ is 16 with the NUL).
    pub name: [u8; 16],
    /// The ifindex the slot was last mapped from in `IFINDEX_SLOTS`.
    pub ifindex: u32,
    pub _pad: u32,
}

/// Shared global state, slot 0 of `GLOBAL_STATE`, updated with atomics.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalState {
    /// Sources inserted into `SOURCES` since the maps were created (a
    /// statistic: pressure is `pressure_meter`'s).
    pub source_inserts: u64,
    /// Prefixes inserted into `PREFIXES` (same meaning).
    pub prefix_inserts: u64,
    /// GCRA state of the new-source budget.
    pub new_source_tat: u64,
    /// GCRA state of the ban-event rate limit.
    pub event_tat: u64,
    /// Ban events not sent because of the event rate limit.
    pub events_suppressed: u64,
    /// Ban events lost because the ring buffer was full.
    pub events_lost: u64,
    /// Times a compare-and-swap lost to another CPU repeatedly (see bucket module).
    pub cas_exhausted: u64,
    /// Map updates that failed (for example a full map).
    pub map_update_errors: u64,
    /// Latest end of any ban the program created (raised with compare-and-swap).
    /// Before it, bans may be active; after it, none are (cleared bans only
    /// make it conservative).
    pub ban_horizon_ns: u64,
    /// Turnover meter of first-seen sources ([`crate::pressure`]).
    pub pressure_meter: u64,
}

/// `Event::kind`: a source or prefix was banned.
pub const EVENT_BAN: u32 = 1;
/// `Event::kind`: monitor mode recorded a would-ban (nothing is dropped).
pub const EVENT_WOULD_BAN: u32 = 2;

/// Set in `Ban::reason` for a would-ban: the ban monitor mode records where
/// enforce mode would have banned. It never drops a packet: packets of a
/// monitored policy count it as `would_drop`, an enforced policy ignores it
/// (and bans for real when the source itself offends), so switching to enforce
/// or an enforced neighbour of a monitored prefix is never hit by it.
pub const BAN_WOULD: u32 = 1 << 31;

impl Ban {
    /// True for a would-ban (see [`BAN_WOULD`]).
    pub const fn is_would_ban(&self) -> bool {
        self.reason & BAN_WOULD != 0
    }

    /// The [`crate::Reason`] code, without the would-ban flag.
    pub const fn reason_code(&self) -> u32 {
        self.reason & !BAN_WOULD
    }
}

/// A record in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    /// The [`crate::Reason`] of the limit that was exceeded.
    pub reason: u32,
    pub addr: [u8; 16],
    /// Mapped prefix length (128 for a single source).
    pub prefix_len: u32,
    pub offenses: u32,
    pub duration_ns: u64,
    /// Observed packet rate of the offender since first seen (packets/s).
    pub observed_pps: u64,
    pub time_ns: u64,
}

/// Slot 0 of `META`: the layout version the maps were created with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub layout_version: u32,
    pub _pad: u32,
    /// Capacity the maps were created with (so a restart can tell a resize).
    pub source_capacity: u64,
    /// The secret multiplier of the set tables' hash
    /// ([`crate::set_table::set_of`]), drawn when the tables were created and
    /// given to every program that adopts them.
    pub table_seed: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (for every impl below): each type is `repr(C)`, `Copy`, made only of
    // integers and byte arrays, with explicit padding fields, so every bit pattern
    // is valid and there are no uninitialised bytes.
    macro_rules! pod {
        ($($t:ty),* $(,)?) => {
            $(
                // SAFETY: see the module comment.
                unsafe impl aya::Pod for $t {}
            )*
        };
    }
    pod!(
        super::AddrKey,
        super::BanKey,
        super::PortKey,
        super::Rate,
        super::Quota,
        super::Policy,
        crate::aggregate::AggregateLimits,
        crate::aggregate::AggState,
        super::Settings,
        super::TrackState,
        super::Track6,
        crate::set_table::Set,
        super::Ban,
        super::BlockEntry,
        super::Counter,
        super::GlobalState,
        super::Event,
        super::Meta,
        super::IfaceName,
    );
}

#[cfg(test)]
mod tests;
