//! Every map of the program. Names match `floodgate_common::maps`; sizes here
//! are defaults that userspace overrides at load from its configuration.

use aya_ebpf::{
    Global,
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use floodgate_common::{
    AddrKey, AggState, Ban, BanKey, BlockEntry, COUNTER_ENTRIES, Counter, DEFAULT_LIST_CAPACITY,
    DEFAULT_SOURCE_CAPACITY, EVENTS_BYTES, GlobalState, IFACE_SLOTS, IfaceName, MAX_AGGREGATES,
    MAX_IFINDEX, MAX_POLICIES, MAX_PORTS, Meta, Policy, PortKey, Settings, Track6,
    set_table::{Set, sets_for},
};

/// Layout version and creation parameters, written by userspace.
#[map]
pub static META: Array<Meta> = Array::with_max_entries(1, 0);

/// Global settings (slot 0).
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Policies: slot 0 default, rules after it.
#[map]
pub static POLICIES: Array<Policy> = Array::with_max_entries(MAX_POLICIES, 0);

/// The shared state of each `aggregate = true` rule (`Policy::aggregate_slot`).
#[map]
pub static AGGREGATES: Array<AggState> = Array::with_max_entries(MAX_AGGREGATES, 0);

/// Source CIDR → policy slot; most specific prefix wins.
#[map]
pub static RULES: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, 0);

/// Block list: CIDR → expiry.
#[map]
pub static BLOCK: LpmTrie<[u8; 16], BlockEntry> =
    LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, 0);

/// Allow list: CIDR → unused flags.
#[map]
pub static ALLOW: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(DEFAULT_LIST_CAPACITY, 0);

/// Port/protocol scope of the limits (used when `SETTINGS_PORTS_SCOPED`).
#[map]
pub static PORTS: HashMap<PortKey, u32> = HashMap::with_max_entries(MAX_PORTS, 0);

/// The set tables' hash multiplier (`Meta::table_seed`), given by userspace
/// at load: read-only data, so the verifier knows it as a constant.
#[unsafe(no_mangle)]
pub static TABLE_SEED: Global<u64> = Global::new(0);

/// Per-source state of IPv4 sources: a set table (`floodgate_common::set_table`);
/// a full set gives up its way seen longest ago.
#[map]
pub static SOURCES: Array<Set> =
    Array::with_max_entries(sets_for(DEFAULT_SOURCE_CAPACITY), BPF_F_MMAPABLE);

/// Per-prefix state of IPv4 prefixes (masked address), the same kind of table.
#[map]
pub static PREFIXES: Array<Set> =
    Array::with_max_entries(sets_for(DEFAULT_SOURCE_CAPACITY), BPF_F_MMAPABLE);

/// Per-source state of IPv6 sources. LRU: a full map evicts the least
/// recently seen source.
#[map]
pub static SOURCES6: LruHashMap<AddrKey, Track6> = LruHashMap::with_max_entries(65_536, 0);

/// Per-prefix state of IPv6 prefixes.
#[map]
pub static PREFIXES6: LruHashMap<AddrKey, Track6> = LruHashMap::with_max_entries(65_536, 0);

/// Bans of sources and prefixes, kept past expiry to remember offences.
#[map]
pub static BANS: LruHashMap<BanKey, Ban> = LruHashMap::with_max_entries(DEFAULT_SOURCE_CAPACITY, 0);

/// Packets and bytes per (interface slot, verdict, reason), per CPU; indexed by
/// `iface_counter_index`.
#[map]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

/// Ingress ifindex → interface slot in `COUNTERS` (0, "other", when unset).
/// An array rather than a hash: the kernel inlines array lookups into a bounds
/// check and an add, so attributing a packet to its interface costs a few
/// instructions, not a hash lookup. Ifindexes from `MAX_IFINDEX` up fall to
/// slot 0 (the daemon warns when it attaches to one).
#[map]
pub static IFINDEX_SLOTS: Array<u32> = Array::with_max_entries(MAX_IFINDEX, 0);

/// Interface slot → interface name; only userspace reads it (kept in a map so it
/// is pinned, and adopted, together with the counters it names).
#[map]
pub static IFACE_NAMES: Array<IfaceName> = Array::with_max_entries(IFACE_SLOTS, 0);

/// Shared global state (slot 0), updated with atomics.
#[map]
pub static GLOBAL_STATE: Array<GlobalState> = Array::with_max_entries(1, 0);

/// Ban events for the daemon.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
