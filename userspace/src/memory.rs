//! What the program's maps cost in kernel memory at their capacities.
//!
//! Hash and LRU hash maps preallocate every element when they are created, so
//! their whole cost is paid at load, before a single packet: on a small host the
//! default capacities alone can push the kernel out of memory. The model follows
//! the kernel's allocators (kernel/bpf/hashtab.c, arraymap.c, lpm_trie.c,
//! ringbuf.c) and leaves out what is small next to the elements (map headers,
//! per-CPU LRU and free lists, lock counters).

use std::mem::size_of;

use floodgate_common::{
    AddrKey, AggState, Ban, BanKey, BlockEntry, COUNTER_ENTRIES, Counter, EVENTS_BYTES,
    GlobalState, IFACE_SLOTS, IfaceName, MAX_AGGREGATES, MAX_IFINDEX, MAX_POLICIES, MAX_PORTS,
    Meta, Policy, PortKey, Settings, Track6, maps, set_table::Set,
};

use crate::loader::Capacity;

/// `struct htab_elem`: hash node, LRU node and hash, before the key.
const HTAB_ELEM: u64 = 48;
/// `struct bucket`: list head and spinlock, one per power-of-two slot.
const HTAB_BUCKET: u64 = 16;
/// `struct lpm_trie_node` before its data: RCU head, two children, prefix
/// length and flags.
const LPM_NODE: u64 = 40;
/// `struct bpf_lpm_trie_key`'s prefix length, which the key carries before the
/// address but a node does not store as data.
const LPM_PREFIXLEN: u64 = 4;
/// A ring buffer's header and consumer/producer positions: three pages beside
/// its data (the data is mapped twice, but allocated once).
const RINGBUF_META_PAGES: u64 = 3;
const PAGE: u64 = 4096;
/// aya-log's ring buffer (`AYA_LOGS` in aya-log-ebpf), which the program gets
/// with its log statements; not one of `maps::ALL`.
const AYA_LOGS: &str = "AYA_LOGS";
const AYA_LOGS_BYTES: u64 = 1 << 17;
/// `[u8; 16]` behind the prefix length: the key of every LPM trie.
const LPM_KEY: u64 = LPM_PREFIXLEN + 16;

/// How a map type allocates its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// BPF_MAP_TYPE_HASH, preallocated: one spare element per possible CPU
    /// beside `max_entries` (the per-CPU free lists' extras).
    Hash,
    /// BPF_MAP_TYPE_LRU_HASH: every element preallocated.
    LruHash,
    /// BPF_MAP_TYPE_LPM_TRIE: nodes allocated as entries are inserted.
    LpmTrie,
    Array,
    /// BPF_MAP_TYPE_ARRAY with BPF_F_MMAPABLE: its values in whole pages.
    MmapArray,
    PerCpuArray,
    /// BPF_MAP_TYPE_RINGBUF: `max_entries` is its size in bytes.
    RingBuf,
}

impl Kind {
    /// True when the memory is allocated with the map, not on insert.
    pub const fn preallocated(self) -> bool {
        !matches!(self, Kind::LpmTrie)
    }
}

/// One map as created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub key_size: u64,
    pub value_size: u64,
    pub max_entries: u64,
}

/// One map's cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapCost {
    pub name: &'static str,
    pub bytes: u64,
    /// Paid at load (false: an upper bound reached only when the map is full).
    pub preallocated: bool,
}

/// Every map's cost at the capacities the program is loaded with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub maps: Vec<MapCost>,
}

impl Estimate {
    /// Every map full; the LPM tries at their upper bound.
    pub fn total(&self) -> u64 {
        self.maps.iter().map(|m| m.bytes).sum()
    }

    /// What creating the maps allocates.
    pub fn preallocated(&self) -> u64 {
        self.maps
            .iter()
            .filter(|m| m.preallocated)
            .map(|m| m.bytes)
            .sum()
    }

    /// The cost of the named maps together.
    pub fn of(&self, names: &[&str]) -> u64 {
        self.maps
            .iter()
            .filter(|m| names.contains(&m.name))
            .map(|m| m.bytes)
            .sum()
    }
}

const fn round8(n: u64) -> u64 {
    n.next_multiple_of(8)
}

/// The bytes one map takes when full. `cpus` is the number of possible CPUs
/// (per-CPU storage is allocated for each, online or not).
pub fn map_cost(m: &MapSpec, cpus: u64) -> u64 {
    let entries = m.max_entries;
    match m.kind {
        Kind::Hash | Kind::LruHash => {
            let elem = HTAB_ELEM + round8(m.key_size) + round8(m.value_size);
            let elems = if m.kind == Kind::Hash {
                entries + cpus
            } else {
                entries
            };
            elem * elems + HTAB_BUCKET * entries.next_power_of_two()
        }
        Kind::LpmTrie => {
            // Upper bound: every entry a leaf (address and value), plus at most
            // one intermediate node (address only) per entry where prefixes
            // fork.
            let data = m.key_size.saturating_sub(LPM_PREFIXLEN);
            let leaf = round8(LPM_NODE + data + m.value_size);
            let intermediate = round8(LPM_NODE + data);
            entries * (leaf + intermediate)
        }
        Kind::Array => round8(m.value_size) * entries,
        Kind::MmapArray => (round8(m.value_size) * entries).next_multiple_of(PAGE),
        // A pointer per entry, then each value on every CPU.
        Kind::PerCpuArray => (8 + round8(m.value_size) * cpus) * entries,
        Kind::RingBuf => entries + RINGBUF_META_PAGES * PAGE,
    }
}

fn size<T>() -> u64 {
    size_of::<T>() as u64
}

/// Every map of the program (see ebpf/floodgate-ebpf/src/maps.rs) with its
/// key, value and the capacity it is loaded with.
pub fn specs(c: &Capacity) -> Vec<MapSpec> {
    let spec = |name, kind, key_size, value_size, max_entries: u32| MapSpec {
        name,
        kind,
        key_size,
        value_size,
        max_entries: u64::from(max_entries),
    };
    vec![
        spec(maps::META, Kind::Array, 4, size::<Meta>(), 1),
        spec(maps::SETTINGS, Kind::Array, 4, size::<Settings>(), 1),
        spec(
            maps::POLICIES,
            Kind::Array,
            4,
            size::<Policy>(),
            MAX_POLICIES,
        ),
        spec(maps::RULES, Kind::LpmTrie, LPM_KEY, 4, c.lists),
        spec(
            maps::BLOCK,
            Kind::LpmTrie,
            LPM_KEY,
            size::<BlockEntry>(),
            c.lists,
        ),
        spec(maps::ALLOW, Kind::LpmTrie, LPM_KEY, 4, c.lists),
        spec(maps::PORTS, Kind::Hash, size::<PortKey>(), 4, MAX_PORTS),
        spec(
            maps::SOURCES,
            Kind::MmapArray,
            4,
            size::<Set>(),
            c.source_sets(),
        ),
        spec(
            maps::PREFIXES,
            Kind::MmapArray,
            4,
            size::<Set>(),
            c.prefix_sets(),
        ),
        spec(
            maps::SOURCES6,
            Kind::LruHash,
            size::<AddrKey>(),
            size::<Track6>(),
            c.sources6,
        ),
        spec(
            maps::PREFIXES6,
            Kind::LruHash,
            size::<AddrKey>(),
            size::<Track6>(),
            c.prefixes6,
        ),
        spec(
            maps::BANS,
            Kind::LruHash,
            size::<BanKey>(),
            size::<Ban>(),
            c.bans,
        ),
        spec(
            maps::COUNTERS,
            Kind::PerCpuArray,
            4,
            size::<Counter>(),
            COUNTER_ENTRIES,
        ),
        spec(maps::GLOBAL_STATE, Kind::Array, 4, size::<GlobalState>(), 1),
        spec(
            maps::AGGREGATES,
            Kind::Array,
            4,
            size::<AggState>(),
            MAX_AGGREGATES,
        ),
        spec(maps::EVENTS, Kind::RingBuf, 0, 0, EVENTS_BYTES),
        spec(maps::IFINDEX_SLOTS, Kind::Array, 4, 4, MAX_IFINDEX),
        spec(
            maps::IFACE_NAMES,
            Kind::Array,
            4,
            size::<IfaceName>(),
            IFACE_SLOTS,
        ),
        MapSpec {
            name: AYA_LOGS,
            kind: Kind::RingBuf,
            key_size: 0,
            value_size: 0,
            max_entries: AYA_LOGS_BYTES,
        },
    ]
}

/// What the maps cost at capacity `c` on a host with `cpus` possible CPUs.
pub fn estimate(c: &Capacity, cpus: u64) -> Estimate {
    Estimate {
        maps: specs(c)
            .iter()
            .map(|m| MapCost {
                name: m.name,
                bytes: map_cost(m, cpus),
                preallocated: m.kind.preallocated(),
            })
            .collect(),
    }
}

/// The number of possible CPUs (per-CPU maps allocate for each); one when
/// sysfs cannot tell.
pub fn possible_cpus() -> u64 {
    aya::util::nr_cpus().map_or(1, |n| n as u64).max(1)
}

/// A size for messages: "452 MiB", "1.2 GiB", "96 KiB".
pub fn human(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.0} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.0} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn capacity(sources: u32, lists: u32) -> Capacity {
        Capacity::new(sources, sources, sources, lists)
    }

    fn cost(e: &Estimate, name: &str) -> u64 {
        e.of(&[name])
    }

    #[test]
    fn an_ipv4_source_costs_96_bytes() {
        // A set of 4: 32 bytes of tags and 4 × 88 of state, in whole pages.
        let e = estimate(&capacity(1 << 20, 16), 4);
        assert_eq!(cost(&e, maps::SOURCES), 96 * (1 << 20));
        assert_eq!(cost(&e, maps::PREFIXES), 96 * MIB);
        // IPv6: 48 header + 16 key + 96 value, and a 16-byte bucket each.
        assert_eq!(cost(&e, maps::SOURCES6), (48 + 16 + 96 + 16) * (1 << 16));
        // Bans: 48 + 24 key + 48 value (with its counters), plus the bucket.
        assert_eq!(cost(&e, maps::BANS), (48 + 24 + 48 + 16) * (1 << 20));
    }

    #[test]
    fn buckets_round_up_to_a_power_of_two_and_tables_to_a_page() {
        let e = estimate(&capacity(1_000_000, 16), 1);
        assert_eq!(
            cost(&e, maps::SOURCES),
            96_000_000_u64.next_multiple_of(4096),
            "one million sources"
        );
        assert_eq!(
            cost(&e, maps::SOURCES6),
            160 * 62_500 + 16 * 65_536,
            "their IPv6 side"
        );
        assert_eq!(
            cost(&estimate(&capacity(1000, 16), 1), maps::SOURCES),
            24 * 4096,
            "250 sets of 384 bytes in 24 pages"
        );
    }

    #[test]
    fn the_default_capacities_fit_in_128_mib() {
        let e = estimate(&Capacity::default(), 2);
        // Tables: 1 000 000 sources and 125 000 prefixes at 96 bytes; IPv6
        // maps of 62 500 and 7 812 at 160 and a bucket; 62 500 bans at 120
        // and a bucket.
        let tracked = e.of(&[
            maps::SOURCES,
            maps::PREFIXES,
            maps::SOURCES6,
            maps::PREFIXES6,
        ]);
        assert_eq!(
            tracked,
            96_002_048 + 12_001_280 + (160 * 62_500 + 16 * 65_536) + (160 * 7_812 + 16 * 8_192)
        );
        assert_eq!(cost(&e, maps::BANS), 120 * 62_500 + 16 * 65_536);
        assert!(e.preallocated() <= 128 * MIB, "{}", human(e.preallocated()));
        // Each trie entry: a 64-byte leaf (40 + 16 + value, rounded) and at
        // most one 56-byte intermediate node; allocated as the lists fill.
        let tries = e.of(&[maps::RULES, maps::BLOCK, maps::ALLOW]);
        assert_eq!(tries, 3 * 262_144 * (64 + 56));
        assert_eq!(e.total() - e.preallocated(), tries, "tries fill on insert");
    }

    #[test]
    fn small_maps_follow_their_allocators() {
        let ring = MapSpec {
            name: "r",
            kind: Kind::RingBuf,
            key_size: 0,
            value_size: 0,
            max_entries: 256 * 1024,
        };
        assert_eq!(map_cost(&ring, 8), 256 * 1024 + 3 * 4096);
        let percpu = MapSpec {
            name: "c",
            kind: Kind::PerCpuArray,
            key_size: 4,
            value_size: 12,
            max_entries: 10,
        };
        assert_eq!(map_cost(&percpu, 4), (8 + 16 * 4) * 10);
        let array = MapSpec {
            kind: Kind::Array,
            ..percpu
        };
        assert_eq!(map_cost(&array, 4), 16 * 10);
        // A plain hash keeps one spare element per CPU.
        let hash = MapSpec {
            name: "h",
            kind: Kind::Hash,
            key_size: 4,
            value_size: 4,
            max_entries: 1024,
        };
        assert_eq!(map_cost(&hash, 2), 64 * (1024 + 2) + 16 * 1024);
    }

    #[test]
    fn every_map_is_counted() {
        let e = estimate(&Capacity::default(), 1);
        for name in maps::ALL {
            assert!(e.maps.iter().any(|m| m.name == name), "{name}");
        }
        assert_eq!(e.maps.len(), maps::ALL.len() + 1, "and aya-log's ring");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(452 * MIB), "452 MiB");
        assert_eq!(human(1288 * MIB), "1.3 GiB");
        assert_eq!(human(96 * 1024), "96 KiB");
        assert_eq!(human(12), "12 B");
    }
}
