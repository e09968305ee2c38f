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

/// The two sets `key` may live in, of `map`'s `count` (None when out of the
/// map: a table loaded without its sizes).
#[inline(always)]
fn sets(map: &'static Array<Set>, count: u32, key: u32) -> Option<(*mut Set, *mut Set)> {
    let seed = TABLE_SEED.load();
    let a = map.get_ptr_mut(set_of(key, seed, count))?;
    let b = map.get_ptr_mut(second_set_of(key, seed, count))?;
    Some((a, b))
}

/// `w` (below [`WAYS`]) as the verifier sees a value read from a map: a
/// number from 0 to 3, not one of four constants. A way known as a constant
/// makes the pointer to its state one of four, and the verifier follows the
/// rest of the decision once for each — for the source's way and again for the
/// prefix's, 64 times over the limits: Linux 6.1 gave up at its million
/// instructions. Through this CPU's scratch slot, all four are one state.
#[inline(always)]
fn opaque(w: usize) -> usize {
    let Some(sc) = crate::scratch::scratch() else {
        return w & (WAYS as usize - 1);
    };
    // SAFETY: this CPU's scratch slot; volatile so the value goes through
    // memory rather than being forwarded.
    let w = unsafe {
        let p = &raw mut (*sc).way;
        core::ptr::write_volatile(p, w as u64);
        core::ptr::read_volatile(p)
    };
    w as usize & (WAYS as usize - 1)
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
    way_state(set, opaque(w))
}

/// The state of `key` in the sources' table (`prefix` false) or the
/// prefixes', null when neither of its sets holds it.
///
/// The lookups live in subprograms, one per table and kind: their branches
/// (which set, which way, a tag to refresh) are verified inside them and the
/// decision after them once for all of those (Linux 6.1 gave up at its
/// million instructions with them inlined), and each subprogram knows its
/// one map, so the verifier still inlines the array lookups (a subprogram
/// picking between two maps called `array_map_lookup_elem`, a fifth of the
/// rate-limited path).
#[inline(always)]
pub(crate) fn find(prefix: bool, key: u32, now: u64) -> *mut TrackState {
    if prefix {
        find_prefix(key, now)
    } else {
        find_source(key, now)
    }
}

/// Claims a way for `key`, which [`find`] did not find (see [`claim_in`]);
/// a prefix's starts with the ban horizon `horizon` (see [`fresh`]).
#[inline(always)]
pub(crate) fn claim(prefix: bool, key: u32, now: u64, horizon: u64) -> *mut TrackState {
    if prefix {
        claim_prefix(key, now, horizon)
    } else {
        claim_source(key, now)
    }
}

#[inline(never)]
fn find_source(key: u32, now: u64) -> *mut TrackState {
    find_in(&SOURCES, SOURCE_SETS.load(), key, now)
}

#[inline(never)]
fn find_prefix(key: u32, now: u64) -> *mut TrackState {
    find_in(&PREFIXES, PREFIX_SETS.load(), key, now)
}

#[inline(never)]
fn claim_source(key: u32, now: u64) -> *mut TrackState {
    claim_in(&SOURCES, SOURCE_SETS.load(), key, now, 0)
}

#[inline(never)]
fn claim_prefix(key: u32, now: u64, horizon: u64) -> *mut TrackState {
    claim_in(&PREFIXES, PREFIX_SETS.load(), key, now, horizon)
}

/// The state of `key` in the table `map` of `count` sets, or null.
#[inline(always)]
fn find_in(map: &'static Array<Set>, count: u32, key: u32, now: u64) -> *mut TrackState {
    let Some((a, b)) = sets(map, count, key) else {
        return core::ptr::null_mut();
    };
    let now_tick = tick(now);
    if let Some((w, old)) = held(&tags(a), key) {
        return hit(a, w, old, key, now_tick);
    }
    if let Some((w, old)) = held(&tags(b), key) {
        return hit(b, w, old, key, now_tick);
    }
    core::ptr::null_mut()
}

/// Claims a way of `map` for `key` with a fresh state: in the emptier of
/// its two sets, else the way of the eight seen longest ago
/// (`set_table::choose`). When another CPU claimed one for the same key this
/// instant, that entry is used; when it claimed the chosen way for another
/// key, null: the packet is not tracked, its source a newcomer either way.
#[inline(always)]
fn claim_in(
    map: &'static Array<Set>,
    count: u32,
    key: u32,
    now: u64,
    horizon: u64,
) -> *mut TrackState {
    let Some((a, b)) = sets(map, count, key) else {
        return core::ptr::null_mut();
    };
    let t = tick(now);
    let (ta, tb) = (tags(a), tags(b));
    let (in_b, w) = choose(&ta, &tb, t);
    let (set, old) = if in_b { (b, tb[w & 3]) } else { (a, ta[w & 3]) };
    let w = opaque(w);
    let s = way_state(set, w);
    match tag_cell(set, w).cas(old, tag(key, t)) {
        Ok(_) => {
            fresh(s, t, horizon);
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
/// with a frame of its own. `horizon` goes to `bytes_tat`: 0 for a source, a
/// prefix's ban horizon (`floodgate_common::horizon::fresh_prefix`). Another
/// CPU may read the way between the claim and these stores: it sees the
/// evicted entry's buckets (and horizon) for that instant.
#[inline(always)]
pub(crate) fn fresh(s: *mut TrackState, t: u32, horizon: u64) {
    // SAFETY: `s` is a live, aligned TrackState (map value or scratch); each
    // pointer is a field of it.
    unsafe {
        core::ptr::write_volatile(&raw mut (*s).packets_tat, 0);
        core::ptr::write_volatile(&raw mut (*s).bytes_tat, horizon);
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
