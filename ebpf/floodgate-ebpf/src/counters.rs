//! Per-packet counters and the global state shared by every CPU.

use aya_ebpf::programs::XdpContext;
use floodgate_common::{GlobalState, Reason, Verdict, iface_counter_index};

use crate::{
    atomic::Cell,
    maps::{COUNTERS, GLOBAL_STATE, IFINDEX_SLOTS},
};

/// The `COUNTERS` slot of the interface a packet came in on: 0 ("other") for an
/// interface the daemon did not give a slot, or an ifindex beyond the table.
#[inline(always)]
pub fn iface_slot(ctx: &XdpContext) -> u32 {
    // Lossless: xdp_md's ingress_ifindex is a u32 (usize is only aya's accessor
    // type). The lookup fails past the table's end; a stored slot out of range
    // is folded to 0 by `iface_counter_index`.
    let ifindex = ctx.ingress_ifindex() as u32;
    IFINDEX_SLOTS.get(ifindex).copied().unwrap_or(0)
}

/// Adds one packet to the per-CPU (interface, verdict, reason) counter. Per-CPU
/// slots are only touched by their own CPU with preemption off, so plain adds
/// are exact.
#[inline(always)]
pub fn count(iface_slot: u32, verdict: Verdict, reason: Reason, len: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(iface_counter_index(iface_slot, verdict, reason)) {
        // SAFETY: the pointer is a live per-CPU map value.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        }
    }
}

#[inline(always)]
pub(crate) fn global() -> Option<*mut GlobalState> {
    GLOBAL_STATE.get_ptr_mut(0)
}

/// Adds one to a GlobalState counter.
#[inline(always)]
pub(crate) fn bump(field: impl FnOnce(*mut GlobalState) -> *mut u64) {
    if let Some(g) = global() {
        // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
        unsafe { Cell::new(field(g)) }.add(1);
    }
}
