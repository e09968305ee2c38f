//! Per-CPU scratch space for what the decision would otherwise keep on the
//! stack: the lookup keys and the entry a first-seen source is inserted with.
//!
//! Linux 6.1 (Debian 12) rounds every stack frame up to 32 bytes, counts an
//! empty one as 32 and refuses a call chain over 512 bytes; the keys alone were
//! 110 bytes of frame, a fresh entry 80 more in `insert_fresh`, and
//! LLVM turned its zeroing into a call to `memset` (one more frame). Map values
//! cost no stack, and the helpers take them as keys and values like stack
//! memory. A CPU runs one XDP program at a time with preemption off, so its slot
//! is never shared.

use aya_ebpf::{macros::map, maps::PerCpuArray, maps::lpm_trie::Key};
use floodgate_common::{AddrKey, BanKey, Track6};

use crate::parse::Packet;

/// The keys of one packet's decision.
#[repr(C)]
pub struct Scratch {
    /// The source as an LPM key (`/128`) for the block, allow and rule tries.
    pub lpm: Key<[u8; 16]>,
    _pad: u32,
    pub src: AddrKey,
    pub pfx: AddrKey,
    pub src_ban: BanKey,
    pub pfx_ban: BanKey,
    /// The value a first-seen IPv6 source or prefix is inserted with.
    pub fresh: Track6,
    /// The parser's result, on its way to the decision (see [`settle`]).
    pub pkt: Packet,
    /// A table way's index on its way through memory (`table::opaque`).
    pub way: u64,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch slot (the lookup of a one-entry per-CPU array the kernel
/// inlines into a few instructions; it fails only if the map is missing).
#[inline(always)]
pub fn scratch() -> Option<*mut Scratch> {
    SCRATCH.get_ptr_mut(0)
}

/// Fills `fresh` for an IPv6 entry first seen at tick `t`.
#[inline(always)]
pub fn fresh_entry(sc: *mut Scratch, t: u32, horizon: u64) -> *const Track6 {
    // SAFETY: `sc` is this CPU's live scratch slot; each pointer is a field of it.
    unsafe {
        let f = &raw mut (*sc).fresh;
        crate::table::fresh(&raw mut (*f).state, t, horizon);
        core::ptr::write_volatile(&raw mut (*f).last_seen_tick, u64::from(t));
        f
    }
}

/// Hands the parser's result to the decision through this CPU's scratch slot.
///
/// The verifier follows every path through the parser separately — each number
/// of VLAN tags and IPv6 extension headers, each header kind — and would verify
/// the whole decision once for every distinct register state a path leaves
/// behind: with 16 extension headers that passes its million-instruction limit.
/// Values it reads back from a map are unknown to it, so after this round trip
/// every path reaches the decision in the same state and is verified once. The
/// volatile accesses keep LLVM from forwarding the store to the load.
/// Returns the slot too, so the decision does not look it up again.
#[inline(always)]
pub fn settle(pkt: Packet) -> Option<(*mut Scratch, Packet)> {
    let sc = scratch()?;
    // SAFETY: this CPU's live scratch slot; `pkt` is plain data.
    unsafe {
        let slot = &raw mut (*sc).pkt;
        core::ptr::write_volatile(slot, pkt);
        Some((sc, core::ptr::read_volatile(slot)))
    }
}

/// `flag` (0 or 1) as the verifier sees a value read from a map: either,
/// not one known constant that splits every later path in two. Through this
/// CPU's scratch slot, like [`settle`].
#[inline(always)]
pub fn opaque_flag(flag: u32) -> bool {
    let Some(sc) = scratch() else {
        return flag != 0;
    };
    // SAFETY: this CPU's live scratch slot; volatile so the value goes
    // through memory rather than being forwarded.
    unsafe {
        let p = &raw mut (*sc).way;
        core::ptr::write_volatile(p, u64::from(flag));
        core::ptr::read_volatile(p) & 1 != 0
    }
}
