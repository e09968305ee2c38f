//! Types shared by the floodgate XDP program and its userspace.
//!
//! Every map key and value crosses the kernel/user boundary as raw bytes, so each
//! type here is `#[repr(C)]`, `Copy`, and laid out with explicit padding fields:
//! hidden padding would be uninitialised memory in a map key (two equal keys
//! hashing differently) and would make the layout depend on the compiler.
//! Flags are `u32`, never `bool`, for the same reason.
//!
//! Addresses are stored as 16 bytes in network order. IPv4 addresses are
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so one map and one LPM trie serve both
//! families; an IPv4 `/24` is the mapped prefix `/120`.
#![no_std]

pub mod aggregate;
pub mod horizon;
pub mod layout;
pub mod limit;
pub mod prefix;
pub mod pressure;
pub mod previous;
pub mod quota;
pub mod reason;
pub mod set_table;

pub use aggregate::{AggState, AggregateLimits};
pub use layout::*;
pub use reason::{
    COUNTER_ENTRIES, COUNTER_SLOTS, IFACE_SLOTS, MAX_IFACES, MAX_IFINDEX, Reason, Verdict,
    counter_index, iface_counter_index,
};

/// Bumped whenever a map's key or value layout, or a map's meaning, changes.
/// Stored in the `META` map so a daemon never adopts pinned maps it would misread.
/// 2: `COUNTERS` per interface slot, `IFINDEX_SLOTS` and `IFACE_NAMES` added.
/// 3: `TrackState` holds a sliding-window quota (`QuotaState`); eviction
/// pressure is a turnover meter (`Settings::pressure_*`, `GlobalState::pressure_meter`);
/// `POLICIES` is double-buffered (`Settings::default_policy`).
/// 4: `Ban` counts the packets and bytes it decided (`Ban::packets`, `bytes`).
/// 5: IPv4 sources and prefixes live in set tables the program hashes itself
/// (`SOURCES`, `PREFIXES`: arrays of [`set_table::Set`]), IPv6 ones in
/// `SOURCES6` and `PREFIXES6`; `TrackState` keeps no first- and last-seen
/// times; `Meta::table_seed`.
/// 6: a prefix entry's `bytes_tat` (no byte limit applies to a prefix) holds
/// its ban horizon ([`horizon`]).
/// 7: `AGGREGATES` (the shared state of `aggregate = true` rules),
/// `Policy::aggregate` and `aggregate_slot`; three reasons (`aggregate_*`),
/// so `COUNTERS` has more entries per interface.
pub const LAYOUT_VERSION: u32 = 7;

/// Map names, shared so userspace and the program cannot disagree.
pub mod maps {
    pub const META: &str = "META";
    pub const SETTINGS: &str = "SETTINGS";
    pub const POLICIES: &str = "POLICIES";
    pub const RULES: &str = "RULES";
    pub const BLOCK: &str = "BLOCK";
    pub const ALLOW: &str = "ALLOW";
    pub const PORTS: &str = "PORTS";
    pub const SOURCES: &str = "SOURCES";
    pub const PREFIXES: &str = "PREFIXES";
    pub const SOURCES6: &str = "SOURCES6";
    pub const PREFIXES6: &str = "PREFIXES6";
    pub const BANS: &str = "BANS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const GLOBAL_STATE: &str = "GLOBAL_STATE";
    pub const EVENTS: &str = "EVENTS";
    pub const IFINDEX_SLOTS: &str = "IFINDEX_SLOTS";
    pub const IFACE_NAMES: &str = "IFACE_NAMES";
    pub const AGGREGATES: &str = "AGGREGATES";

    /// Every map the program defines; pinned and adopted as a set.
    pub const ALL: [&str; 18] = [
        META,
        SETTINGS,
        POLICIES,
        RULES,
        BLOCK,
        ALLOW,
        PORTS,
        SOURCES,
        PREFIXES,
        SOURCES6,
        PREFIXES6,
        BANS,
        COUNTERS,
        GLOBAL_STATE,
        EVENTS,
        IFINDEX_SLOTS,
        IFACE_NAMES,
        AGGREGATES,
    ];
}

/// Name of the XDP program in the object.
pub const PROGRAM_NAME: &str = "floodgate";

/// Capacity of the policy array: two halves of [`POLICY_HALF`] slots, each a
/// default policy and its rules. A reload writes the half no rule points at,
/// re-points the rules, then switches `Settings::default_policy`: a packet
/// reads its own rule's old or new policy, never a neighbour's.
pub const MAX_POLICIES: u32 = 16_384;
/// First slot of the second half of `POLICIES`.
pub const POLICY_HALF: u32 = MAX_POLICIES / 2;
/// Rules one configuration may have (a half less its default policy).
pub const MAX_RULES: usize = POLICY_HALF as usize - 1;
/// Entries of `AGGREGATES`: slot 0 unused (no aggregate), so a configuration
/// may have `MAX_AGGREGATES - 1` rules with `aggregate = true`. Indexed by the
/// rule's place among them, not by its `POLICIES` slot, so a reload (which
/// writes the other half of `POLICIES`) keeps each budget's state.
pub const MAX_AGGREGATES: u32 = 256;
/// Capacity of each LPM trie (allow, block, rules) unless configured otherwise.
pub const DEFAULT_LIST_CAPACITY: u32 = 262_144;
/// Capacity of the port-scope hash.
pub const MAX_PORTS: u32 = 1024;
/// Sources tracked at once unless configured otherwise.
pub const DEFAULT_SOURCE_CAPACITY: u32 = 1_000_000;

/// Prefixes tracked at once for `sources` unless configured: an eighth (a
/// prefix holds many sources; a default IPv4 /24 up to 256).
pub const fn default_prefix_capacity(sources: u32) -> u32 {
    at_least_16(sources / 8)
}

/// Ban entries for `sources` unless configured: a sixteenth. A ban entry
/// lives on after the ban, for escalation; the least recently looked up
/// go first, and a banned source still sending is looked up on every packet.
pub const fn default_ban_capacity(sources: u32) -> u32 {
    at_least_16(sources / 16)
}

/// The smallest capacity a map is given.
const fn at_least_16(n: u32) -> u32 {
    if n < 16 { 16 } else { n }
}
/// Size of the ban-event ring buffer in bytes (power of two, page multiple).
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// How many distinct IPv4 sources the benchmark's `fresh_source` hands out in
/// turn: more than a first-seen case of `cargo xtask bench` sends (its
/// floor's packets and floodgate's, 2 × 5 × 2 000 000), so none repeats while
/// it is measured.
pub const BENCH_FRESH_SOURCES: u64 = 1 << 25;
