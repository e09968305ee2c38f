//! Source and prefix entries: finding or inserting them (within the
//! new-source budget under eviction pressure) and counting packets into them.

use aya_ebpf::bindings::BPF_NOEXIST;
use floodgate_common::{
    AddrKey, Settings, TrackState,
    pressure::{after_insert, under_pressure},
};

use crate::{
    atomic::Cell,
    bucket::{CAS_TRIES, Take, take},
    counters::{bump, global},
    maps::{PREFIXES, SOURCES},
    scratch::{fresh_entry, scratch},
};

/// Counts a packet into a source or prefix entry.
///
/// Plain (non-atomic) adds: these counters are for reporting, and a locked add
/// costs ~7 ns each here, three per entry per packet. They are exact while a
/// source's packets arrive on one CPU (the common case: RSS keeps a flow on one
/// queue); packets of one source on two CPUs at the same instant can lose an
/// increment. Limits never depend on them (the buckets use compare-and-swap).
#[inline(always)]
pub(crate) fn account(s: *mut TrackState, len: u64, now: u64, dropped: bool) {
    // SAFETY: `s` is a live, aligned map value; these plain u64 updates race
    // only with other CPUs updating the same counters (see above).
    unsafe {
        (*s).packets += 1;
        (*s).bytes += len;
        (*s).last_seen_ns = now;
        if dropped {
            (*s).drops += 1;
        }
    }
}

/// Draws one first-seen source from the global budget (GCRA shared by all CPUs).
#[inline(never)]
pub(crate) fn new_source_allowed(settings: &Settings, now: u64) -> bool {
    let Some(g) = global() else { return true };
    // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
    let tat = unsafe { Cell::new(&raw mut (*g).new_source_tat) };
    !matches!(take(tat, &settings.new_source_budget, 1, now), Take::Over)
}

/// Looks up the source's entry, inserting a fresh one for a first-seen source.
/// Under eviction pressure a first-seen source must first draw on the global
/// budget: `Err(())` when it is spent (the source is not inserted, so a spoofed
/// flood cannot churn the map).
#[inline(always)]
pub(crate) fn source_entry(
    key: &AddrKey,
    settings: &Settings,
    now: u64,
) -> Result<Option<*mut TrackState>, ()> {
    if let Some(p) = SOURCES.get_ptr_mut(key) {
        return Ok(Some(p));
    }
    let Some(g) = global() else { return Ok(None) };
    // SAFETY: live, aligned u64s inside the GLOBAL_STATE map value.
    let (inserts, meter) = unsafe {
        (
            Cell::new(&raw mut (*g).source_inserts),
            Cell::new(&raw mut (*g).pressure_meter),
        )
    };
    let window = settings.pressure_window_ns;
    if settings.pressure_threshold != 0
        && under_pressure(meter.load(), now, window)
        && !new_source_allowed(settings, now)
    {
        return Err(());
    }
    insert_fresh(false, key, now);
    inserts.add(1);
    if settings.pressure_threshold != 0 {
        meter_insert(meter, now, settings.pressure_step_ns, window);
    }
    Ok(SOURCES.get_ptr_mut(key))
}

/// Moves the turnover meter for one insert. A lost compare-and-swap retries;
/// after [`CAS_TRIES`] the step is added unconditionally (the meter may then
/// pass its cap by a few steps, which only delays the end of pressure by as
/// many inserts' worth).
#[inline(always)]
fn meter_insert(meter: Cell, now: u64, step: u64, window: u64) {
    let mut old = meter.load();
    for _ in 0..CAS_TRIES {
        match meter.cas(old, after_insert(old, now, step, window)) {
            Ok(_) => return,
            Err(current) => old = current,
        }
    }
    meter.add(step);
}

/// The prefix entry, inserted when missing. Prefix inserts follow admitted
/// sources, so the source budget bounds them too.
#[inline(always)]
pub(crate) fn prefix_entry(key: &AddrKey, now: u64) -> Option<*mut TrackState> {
    if let Some(p) = PREFIXES.get_ptr_mut(key) {
        return Some(p);
    }
    insert_fresh(true, key, now);
    bump(|g| {
        // SAFETY: only forms a field pointer inside the live map value.
        unsafe { &raw mut (*g).prefix_inserts }
    });
    PREFIXES.get_ptr_mut(key)
}

/// Inserts a zeroed entry first seen at `now` into `PREFIXES` or `SOURCES` (a
/// flag, not a map reference: subprogram arguments must be scalars or pointers the
/// verifier can type). BPF_NOEXIST: when another CPU
/// inserted the same key first, its entry (and its counts) win.
#[inline(never)]
pub(crate) fn insert_fresh(prefixes: bool, key: &AddrKey, now: u64) {
    let Some(sc) = scratch() else { return };
    // SAFETY: this CPU's scratch slot, filled just above and read by the helper.
    let fresh = unsafe { &*fresh_entry(sc, now) };
    let r = if prefixes {
        PREFIXES.insert(key, fresh, u64::from(BPF_NOEXIST))
    } else {
        SOURCES.insert(key, fresh, u64::from(BPF_NOEXIST))
    };
    // -EEXIST (-17) is the lost race above, not an error.
    if let Err(e) = r
        && e != -17
    {
        bump(|g| {
            // SAFETY: only forms a field pointer inside the live map value.
            unsafe { &raw mut (*g).map_update_errors }
        });
    }
}
