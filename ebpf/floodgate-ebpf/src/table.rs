//! The IPv4 set tables (`floodgate_common::set_table`) as the program walks
//! them: the four tags of a set read from its first cache line, a hit's tag
//! refreshed at most once a tick, a miss's way claimed with one CAS.

use aya_ebpf::{Global, maps::Array};
use floodgate_common::{
    Track6, TrackState,
    quota::QUOTA_WORDS,
    set_table::{Set, WAYS, choose, holds, second_set_of, set_of, tag, tag_tick, tick},
};

use crate::{
    atomic::Cell,
    maps::{PREFIXES, SOURCES, TABLE_SEED},
};

/// Sets of `SOURCES` and of `PREFIXES` (their `max_entries`), given by
/// userspace at load like the seed.
#[unsafe(no_mangle)]
static SOURCE_SETS: Global<u32> = Global::new(1);
#[unsafe(no_mangle)]
static PREFIX_SETS: Global<u32> = Global::new(1);

/// A table and its number of sets.
#[derive(Clone, Copy)]
pub(crate) struct Table {
    map: &'static Array<Set>,
    sets: u32,
}

#[inline(always)]
pub(crate) fn sources() -> Table {
    Table {
        map: &SOURCES,
        sets: SOURCE_SETS.load(),
    }
}

#[inline(always)]
pub(crate) fn prefixes() -> Table {
    Table {
        map: &PREFIXES,
        sets: PREFIX_SETS.load(),
    }
}

/// What a lookup found: the key's state (`hit`), or else the way a newcomer
/// would claim — its set, index and the tag it had (`set` null when the set
/// is out of the map: a table loaded without its sizes). Every field is
/// always set: LLVM spills the undefined parts of an enum's payload as
/// registers the verifier has never seen written, and refuses them.
#[derive(Clone, Copy)]
pub(crate) struct Lookup {
    pub hit: *mut TrackState,
    set: *mut Set,
    way: usize,
    old: u64,
}

/// Tag `w` of `set` as an atomic cell.
#[inline(always)]
fn tag_cell(set: *mut Set, w: usize) -> Cell {
    // SAFETY: `set` is a live, aligned map value and `w < WAYS`: the pointer
    // stays inside its `tags`.
    unsafe {
        Cell::new(
            (&raw mut (*set).tags)
                .cast::<u64>()
                .add(w & (WAYS as usize - 1)),
        )
    }
}

/// The state of way `w` of `set`.
#[inline(always)]
fn way_state(set: *mut Set, w: usize) -> *mut TrackState {
    // SAFETY: as in `tag_cell`: inside the set's `ways`.
    unsafe {
        (&raw mut (*set).ways)
            .cast::<TrackState>()
            .add(w & (WAYS as usize - 1))
    }
}

/// The four tags of `set`.
#[inline(always)]
fn tags(set: *mut Set) -> [u64; WAYS as usize] {
    [
        tag_cell(set, 0).load(),
        tag_cell(set, 1).load(),
        tag_cell(set, 2).load(),
        tag_cell(set, 3).load(),
    ]
}

/// The way of `tags` holding `key`, if any.
#[inline(always)]
fn held(tags: &[u64; WAYS as usize], key: u32) -> Option<(usize, u64)> {
    if holds(tags[0], key) {
        Some((0, tags[0]))
    } else if holds(tags[1], key) {
        Some((1, tags[1]))
    } else if holds(tags[2], key) {
        Some((2, tags[2]))
    } else if holds(tags[3], key) {
        Some((3, tags[3]))
    } else {
        None
    }
}

/// The hit on way `w` of `set`, its tag brought to this tick (a lost race
/// means another CPU refreshed it or claimed the way: either is current).
#[inline(always)]
fn hit(set: *mut Set, w: usize, held: u64, key: u32, now_tick: u32) -> *mut TrackState {
    if tag_tick(held) != now_tick {
        let _ = tag_cell(set, w).cas(held, tag(key, now_tick));
    }
    way_state(set, w)
}

/// Looks `key` up in its two sets of `t` (the first, then the second: a
/// newcomer goes to the emptier, `set_table::choose`).
#[inline(always)]
pub(crate) fn find(t: Table, key: u32, now: u64) -> Lookup {
    let mut found = Lookup {
        hit: core::ptr::null_mut(),
        set: core::ptr::null_mut(),
        way: 0,
        old: 0,
    };
    let seed = TABLE_SEED.load();
    let Some(a) = t.map.get_ptr_mut(set_of(key, seed, t.sets)) else {
        return found;
    };
    let now_tick = tick(now);
    let ta = tags(a);
    if let Some((w, old)) = held(&ta, key) {
        found.hit = hit(a, w, old, key, now_tick);
        return found;
    }
    let Some(b) = t.map.get_ptr_mut(second_set_of(key, seed, t.sets)) else {
        return found;
    };
    let tb = tags(b);
    if let Some((w, old)) = held(&tb, key) {
        found.hit = hit(b, w, old, key, now_tick);
        return found;
    }
    let (in_b, w) = choose(&ta, &tb, now_tick);
    found.set = if in_b { b } else { a };
    found.way = w;
    found.old = if in_b { tb[w & 3] } else { ta[w & 3] };
    found
}

/// Claims the way a missed lookup chose for `key`, with a fresh state. When
/// another CPU claimed it this instant for the same key, that entry is used;
/// for another key (or no set), null: the packet is not tracked, its source
/// a newcomer either way.
#[inline(always)]
pub(crate) fn claim(miss: &Lookup, key: u32, now: u64) -> *mut TrackState {
    if miss.set.is_null() {
        return core::ptr::null_mut();
    }
    let t = tick(now);
    let s = way_state(miss.set, miss.way);
    match tag_cell(miss.set, miss.way).cas(miss.old, tag(key, t)) {
        Ok(_) => {
            fresh(s, t);
            s
        }
        Err(current) if holds(current, key) => s,
        Err(_) => core::ptr::null_mut(),
    }
}

/// The state of an IPv6 entry, its last-seen tick brought to `now`'s.
#[inline(always)]
pub(crate) fn seen6(v: *mut Track6, now: u64) -> *mut TrackState {
    let t = u64::from(tick(now));
    // SAFETY: `v` is a live, aligned map value; a plain store of the tick
    // races only with other CPUs storing the same or a later tick.
    unsafe {
        if (*v).last_seen_tick != t {
            (*v).last_seen_tick = t;
        }
        &raw mut (*v).state
    }
}

/// Writes a fresh state first seen at tick `t` into `s`, one store per field:
/// volatile so LLVM cannot fold the zeroes into a `memset` call, a subprogram
/// with a frame of its own. Another CPU may read the way between the claim
/// and these stores: it sees the evicted entry's buckets for that instant.
#[inline(always)]
pub(crate) fn fresh(s: *mut TrackState, t: u32) {
    // SAFETY: `s` is a live, aligned TrackState (map value or scratch); each
    // pointer is a field of it.
    unsafe {
        core::ptr::write_volatile(&raw mut (*s).packets_tat, 0);
        core::ptr::write_volatile(&raw mut (*s).bytes_tat, 0);
        core::ptr::write_volatile(&raw mut (*s).syn_tat, 0);
        core::ptr::write_volatile(&raw mut (*s).quota.newest_lane, 0);
        let lanes = (&raw mut (*s).quota.lanes).cast::<u64>();
        for i in 0..QUOTA_WORDS {
            core::ptr::write_volatile(lanes.add(i), 0);
        }
        core::ptr::write_volatile(&raw mut (*s).packets, 0);
        core::ptr::write_volatile(&raw mut (*s).bytes, 0);
        core::ptr::write_volatile(&raw mut (*s).drops, 0);
        core::ptr::write_volatile(&raw mut (*s).first_seen_tick, t);
    }
}
