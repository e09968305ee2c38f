//! Source and prefix entries: finding or inserting them (within the
//! new-source budget under eviction pressure) and counting packets into them.
//! IPv4 keys live in the set tables (`table`), IPv6 ones in the LRU maps.

use aya_ebpf::bindings::BPF_NOEXIST;
use floodgate_common::{
    AddrKey, Settings, TrackState,
    pressure::{after_insert, under_pressure},
    set_table::tick,
};

use crate::{
    atomic::Cell,
    bans::fresh_prefix_horizon,
    bucket::{CAS_TRIES, Take, take},
    counters::{bump, global},
    maps::{PREFIXES6, SOURCES6},
    scratch::{fresh_entry, scratch},
    table,
};

/// Where a source or prefix is kept: in the IPv4 table by `key4`, or with
/// `v6` in the IPv6 map by `key6`. A struct with every field set, not an
/// enum: LLVM spills the undefined parts of an enum's payload as registers
/// the verifier has never seen written, and refuses them.
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    pub v6: bool,
    pub key4: u32,
    pub key6: &'a AddrKey,
}

/// Counts a packet into a source or prefix entry.
///
/// Plain (non-atomic) adds: these counters are for reporting, and a locked add
/// costs ~7 ns each here, three per entry per packet. They are exact while a
/// source's packets arrive on one CPU (the common case: RSS keeps a flow on one
/// queue); packets of one source on two CPUs at the same instant can lose an
/// increment. Limits never depend on them (the buckets use compare-and-swap).
/// When the entry was last seen is its tag's (refreshed by the lookup).
#[inline(always)]
pub(crate) fn account(s: *mut TrackState, len: u64, dropped: bool) {
    // SAFETY: `s` is a live, aligned map value; these plain updates race
    // only with other CPUs updating the same counters (see above).
    unsafe {
        (*s).packets += 1;
        (*s).bytes += len;
        if dropped {
            (*s).drops = (*s).drops.wrapping_add(1);
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

/// The tracked entry of a source (`prefix` false) or prefix, if there is one:
/// nothing is inserted.
#[inline(always)]
pub(crate) fn tracked(prefix: bool, place: Place<'_>, now: u64) -> Option<*mut TrackState> {
    if place.v6 {
        let v = if prefix {
            PREFIXES6.get_ptr_mut(place.key6)
        } else {
            SOURCES6.get_ptr_mut(place.key6)
        }?;
        return Some(table::seen6(v, now));
    }
    let found = table::find(prefix, place.key4, now);
    (!found.is_null()).then_some(found)
}

/// Looks up the source's entry, inserting a fresh one for a first-seen source.
/// Under eviction pressure a first-seen source must first draw on the global
/// budget: `Err(())` when it is spent (the source is not inserted, so a spoofed
/// flood cannot churn the table).
#[inline(always)]
pub(crate) fn source_entry(
    place: Place<'_>,
    settings: &Settings,
    now: u64,
) -> Result<Option<*mut TrackState>, ()> {
    if place.v6 {
        if let Some(v) = SOURCES6.get_ptr_mut(place.key6) {
            return Ok(Some(table::seen6(v, now)));
        }
        admit(settings, now)?;
        insert_fresh(false, place.key6, now, 0);
        // SAFETY: only forms a field pointer inside the live map value.
        return Ok(SOURCES6
            .get_ptr_mut(place.key6)
            .map(|v| unsafe { &raw mut (*v).state }));
    }
    let found = table::find(false, place.key4, now);
    if !found.is_null() {
        return Ok(Some(found));
    }
    admit(settings, now)?;
    let claimed = table::claim(false, place.key4, now, 0);
    Ok((!claimed.is_null()).then_some(claimed))
}

/// Admits a first-seen source: under eviction pressure it must draw on the
/// global budget (`Err(())` when that is spent); an admitted one is counted
/// and moves the turnover meter.
#[inline(always)]
fn admit(settings: &Settings, now: u64) -> Result<(), ()> {
    let Some(g) = global() else { return Ok(()) };
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
    inserts.add(1);
    if settings.pressure_threshold != 0 {
        meter_insert(meter, now, settings.pressure_step_ns, window);
    }
    Ok(())
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

/// The prefix entry, inserted when missing with a ban horizon covering every
/// ban that may hold it (see `floodgate_common::horizon`). Prefix inserts
/// follow admitted sources, so the source budget bounds them too.
#[inline(always)]
pub(crate) fn prefix_entry(
    place: Place<'_>,
    settings: &Settings,
    now: u64,
) -> Option<*mut TrackState> {
    if let Some(p) = tracked(true, place, now) {
        return Some(p);
    }
    let horizon = fresh_prefix_horizon(settings);
    let entry = if place.v6 {
        insert_fresh(true, place.key6, now, horizon);
        // SAFETY: only forms a field pointer inside the live map value.
        PREFIXES6
            .get_ptr_mut(place.key6)
            .map(|v| unsafe { &raw mut (*v).state })
    } else {
        let claimed = table::claim(true, place.key4, now, horizon);
        (!claimed.is_null()).then_some(claimed)
    };
    bump(|g| {
        // SAFETY: only forms a field pointer inside the live map value.
        unsafe { &raw mut (*g).prefix_inserts }
    });
    entry
}

/// Inserts a zeroed entry first seen at `now` into `PREFIXES6` or `SOURCES6`
/// (a flag, not a map reference: subprogram arguments must be scalars or
/// pointers the verifier can type), a prefix's with its ban horizon
/// `horizon`. BPF_NOEXIST: when another CPU inserted the same key first, its
/// entry (and its counts) win.
#[inline(never)]
pub(crate) fn insert_fresh(prefixes: bool, key: &AddrKey, now: u64, horizon: u64) {
    let Some(sc) = scratch() else { return };
    // SAFETY: this CPU's scratch slot, filled just above and read by the helper.
    let fresh = unsafe { &*fresh_entry(sc, tick(now), horizon) };
    let r = if prefixes {
        PREFIXES6.insert(key, fresh, u64::from(BPF_NOEXIST))
    } else {
        SOURCES6.insert(key, fresh, u64::from(BPF_NOEXIST))
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
