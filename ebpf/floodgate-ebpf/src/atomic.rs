//! 64-bit atomics on map memory.
//!
//! The BPF target spec declares no compare-and-swap, so `core::sync::atomic`
//! offers only loads and stores there; the kernel does have BPF_ATOMIC
//! (cmpxchg, fetch-add; kernel ≥ 5.12, `-mcpu=v3`), reached through the
//! compiler intrinsics. On the host (clippy, unit checks) the same functions use
//! `AtomicU64`. Each value is an independent counter or bucket, never a guard
//! for other memory, so ordering only matters for correct code generation (see
//! below).

#[cfg(target_arch = "bpf")]
mod imp {
    use core::intrinsics::{
        AtomicOrdering::SeqCst, atomic_cxchg, atomic_or, atomic_xadd, atomic_xsub,
    };

    // Read-modify-write operations use SeqCst: LLVM lowers a *relaxed* 64-bit
    // fetch-add to BPF's non-fetching `lock add` even when the old value is used
    // (seen with LLVM 22), which silently returns the operand instead. The
    // kernel's BPF_FETCH atomics are fully ordered anyway, so this costs nothing.

    // Relaxed atomic loads and stores are plain aligned 64-bit loads and stores on
    // BPF (single instructions, never torn); LLVM only selects atomic ones for
    // -mcpu=v4, so volatile accesses stand in for them.
    #[inline(always)]
    pub unsafe fn load(p: *mut u64) -> u64 {
        // SAFETY: the caller passes a live, aligned u64.
        unsafe { p.read_volatile() }
    }
    #[inline(always)]
    pub unsafe fn store(p: *mut u64, v: u64) {
        // SAFETY: as above.
        unsafe { p.write_volatile(v) }
    }
    #[inline(always)]
    pub unsafe fn add(p: *mut u64, v: u64) -> u64 {
        // SAFETY: as above.
        unsafe { atomic_xadd::<u64, u64, { SeqCst }>(p, v) }
    }
    #[inline(always)]
    pub unsafe fn sub(p: *mut u64, v: u64) -> u64 {
        // SAFETY: as above.
        unsafe { atomic_xsub::<u64, u64, { SeqCst }>(p, v) }
    }
    #[inline(always)]
    pub unsafe fn or(p: *mut u64, v: u64) {
        // SAFETY: as above.
        unsafe { atomic_or::<u64, u64, { SeqCst }>(p, v) };
    }
    #[inline(always)]
    pub unsafe fn cas(p: *mut u64, old: u64, new: u64) -> Result<u64, u64> {
        // SAFETY: as above.
        let (prev, ok) = unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(p, old, new) };
        if ok { Ok(prev) } else { Err(prev) }
    }
}

#[cfg(not(target_arch = "bpf"))]
mod imp {
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[inline(always)]
    fn at<'a>(p: *mut u64) -> &'a AtomicU64 {
        // SAFETY: callers of the public functions pass a live, aligned u64.
        unsafe { AtomicU64::from_ptr(p) }
    }
    pub unsafe fn load(p: *mut u64) -> u64 {
        at(p).load(Relaxed)
    }
    pub unsafe fn store(p: *mut u64, v: u64) {
        at(p).store(v, Relaxed)
    }
    pub unsafe fn add(p: *mut u64, v: u64) -> u64 {
        at(p).fetch_add(v, Relaxed)
    }
    pub unsafe fn sub(p: *mut u64, v: u64) -> u64 {
        at(p).fetch_sub(v, Relaxed)
    }
    pub unsafe fn or(p: *mut u64, v: u64) {
        at(p).fetch_or(v, Relaxed);
    }
    pub unsafe fn cas(p: *mut u64, old: u64, new: u64) -> Result<u64, u64> {
        at(p).compare_exchange(old, new, Relaxed, Relaxed)
    }
}

/// A u64 inside a map value, accessed only atomically.
#[derive(Clone, Copy)]
pub struct Cell(*mut u64);

impl Cell {
    /// # Safety
    /// `p` must point to a live, 8-byte-aligned u64 in a map value for as long as
    /// the cell is used (one program invocation).
    #[inline(always)]
    pub unsafe fn new(p: *mut u64) -> Cell {
        Cell(p)
    }
    #[inline(always)]
    pub fn load(self) -> u64 {
        // SAFETY: Cell::new's contract.
        unsafe { imp::load(self.0) }
    }
    #[inline(always)]
    pub fn store(self, v: u64) {
        // SAFETY: Cell::new's contract.
        unsafe { imp::store(self.0, v) }
    }
    /// Adds `v`, returning the previous value.
    #[inline(always)]
    pub fn add(self, v: u64) -> u64 {
        // SAFETY: Cell::new's contract.
        unsafe { imp::add(self.0, v) }
    }
    /// Subtracts `v`, returning the previous value.
    #[inline(always)]
    pub fn sub(self, v: u64) -> u64 {
        // SAFETY: Cell::new's contract.
        unsafe { imp::sub(self.0, v) }
    }
    /// Sets the bits of `v` (the old value is not returned).
    #[inline(always)]
    pub fn or(self, v: u64) {
        // SAFETY: Cell::new's contract.
        unsafe { imp::or(self.0, v) }
    }
    /// Compare-and-swap: `Ok(old)` if the value was `old` and is now `new`,
    /// `Err(current)` otherwise.
    #[inline(always)]
    pub fn cas(self, old: u64, new: u64) -> Result<u64, u64> {
        // SAFETY: Cell::new's contract.
        unsafe { imp::cas(self.0, old, new) }
    }
}
