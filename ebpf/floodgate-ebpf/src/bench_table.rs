//! `set_table`: the one-map limiter's bucket kept in a set-associative table
//! (`floodgate_common::set_table`) instead of the kernel's LRU hash — the
//! measurement issue #13 asks for before the product's maps move to it.

use aya_ebpf::{
    Global, bindings::BPF_F_MMAPABLE, bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::map,
    maps::Array,
};
use floodgate_common::set_table::{self, Slot, WAYS};

use crate::atomic::Cell;

/// Slots of the table: as many as `one_map`'s LRU holds entries.
const SLOTS: u32 = 1 << 20;
const SETS: u32 = SLOTS / WAYS;

/// The hash's secret multiplier; the bench draws one at load.
#[unsafe(no_mangle)]
static SET_TABLE_SEED: Global<u64> = Global::new(0x9e37_79b9_7f4a_7c15);

#[map]
static SET_TABLE: Array<Slot> = Array::with_max_entries(SLOTS, BPF_F_MMAPABLE);

/// The same bucket as `one_map` (interval, tolerance) on `slot`, which holds
/// `src` since `tag`.
#[inline(always)]
fn limit(slot: *mut Slot, tag: u64, src: u32, now: u64, interval: u64, tolerance: u64) -> u32 {
    let t = set_table::tick(now);
    // SAFETY: `slot` is a live, aligned value of SET_TABLE.
    let (tag_cell, tat) = unsafe { (Cell::new(&raw mut (*slot).tag), &raw mut (*slot).tat) };
    if set_table::tag_tick(tag) != t {
        // Once a tick (about 67 ms) at most; a lost race means another CPU
        // refreshed it or claimed the way, either of which is current.
        let _ = tag_cell.cas(tag, set_table::tag(src, t));
    }
    crate::naive_bucket(tat, now, interval, tolerance)
}

/// Way `w` of the set at `base`, and its tag.
#[inline(always)]
fn way(base: u32, w: u32) -> Option<(*mut Slot, u64)> {
    let slot = SET_TABLE.get_ptr_mut(base + w)?;
    // SAFETY: a live, aligned value of SET_TABLE.
    let tag = unsafe { Cell::new(&raw mut (*slot).tag) }.load();
    Some((slot, tag))
}

/// The `set_table` program's decision for IPv4 source `src`.
#[inline(always)]
pub fn decide(src: u32, interval: u64, tolerance: u64) -> u32 {
    // SAFETY: helper without memory arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let base = set_table::set_of(src, SET_TABLE_SEED.load(), SETS) * WAYS;
    // The ways one by one (WAYS is 4): a loop over an array of tags made
    // LLVM spill an undefined register, which the verifier refuses.
    let (Some(w0), Some(w1), Some(w2), Some(w3)) =
        (way(base, 0), way(base, 1), way(base, 2), way(base, 3))
    else {
        return xdp_action::XDP_PASS;
    };
    for (slot, tag) in [w0, w1, w2, w3] {
        if set_table::holds(tag, src) {
            return limit(slot, tag, src, now, interval, tolerance);
        }
    }
    let t = set_table::tick(now);
    let (slot, old) = match set_table::victim(&[w0.1, w1.1, w2.1, w3.1], t) {
        0 => w0,
        1 => w1,
        2 => w2,
        _ => w3,
    };
    // SAFETY: a live, aligned value of SET_TABLE.
    let tag = unsafe { Cell::new(&raw mut (*slot).tag) };
    if tag.cas(old, set_table::tag(src, t)).is_ok() {
        // SAFETY: this CPU just claimed the way.
        unsafe { (*slot).tat = now + interval };
    }
    // A lost claim: another CPU took the way this instant; the packet is a
    // newcomer's first, which a bucket passes anyway.
    xdp_action::XDP_PASS
}
