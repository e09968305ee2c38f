//! Token buckets shared across CPUs.
//!
//! Concurrency: one source's packets can arrive on several CPUs at once (RSS, or
//! veth's per-CPU NAPI), so bucket state lives in the shared LRU entry and is
//! updated with 64-bit atomics (BPF_ATOMIC: cmpxchg, fetch_add; kernel ≥ 5.12).
//!
//! Each rate bucket is GCRA: one "theoretical arrival time" (TAT) per bucket. A
//! packet conforms if charging it keeps the TAT within `tolerance` of now; the
//! charge is a compare-and-swap from the TAT we read, so two CPUs can never both
//! spend the same token. Error bound: exact, except when a CPU loses the swap
//! [`CAS_TRIES`] times in a row; it then charges with an unconditional atomic add
//! and lets the packet through (at most one extra packet per such event, counted in
//! `GlobalState::cas_exhausted`). A packet refused by a later bucket is refunded
//! to the earlier ones with an atomic subtract, which can over-credit by at most
//! one packet's cost when the TAT had already fallen behind now. With two CPUs
//! contending this stays far inside the ±5% the limiter promises.

use floodgate_common::{FP_SHIFT, Rate, limit::gcra_charge};

use crate::atomic::Cell;

/// Compare-and-swap attempts before falling back to an unconditional charge.
/// Bounded so the verifier sees a finite loop; two or three CPUs racing on one
/// source resolve within this many tries.
pub const CAS_TRIES: usize = 4;

/// Outcome of charging a bucket.
pub enum Take {
    /// Conforming; `charged` must be refunded if a later check refuses the packet.
    Ok { charged: u64 },
    /// Over the limit: nothing was charged.
    Over,
    /// Conforming after [`CAS_TRIES`] lost races (charged with an atomic add).
    Contended { charged: u64 },
}

/// Charges `cost` units to the GCRA bucket at `tat`.
#[inline(always)]
pub fn take(tat: Cell, rate: &Rate, cost: u64, now: u64) -> Take {
    if !rate.is_on() {
        return Take::Ok { charged: 0 };
    }
    // Userspace validates rates so cost * interval_fp fits in 64 bits
    // (cost ≤ 65535 bytes, interval ≤ 2^47 fixed-point ns per byte).
    let inc = (cost.wrapping_mul(rate.interval_fp)) >> FP_SHIFT;
    let mut old = tat.load();
    for _ in 0..CAS_TRIES {
        let Some(new) = gcra_charge(old, now, inc, rate.tolerance_ns) else {
            return Take::Over;
        };
        match tat.cas(old, new) {
            Ok(_) => return Take::Ok { charged: inc },
            Err(current) => old = current,
        }
    }
    tat.add(inc);
    Take::Contended { charged: inc }
}

/// Gives back a charge made by [`take`] for a packet a later check refused.
#[inline(always)]
pub fn refund(tat: Cell, charged: u64) {
    if charged != 0 {
        tat.sub(charged);
    }
}
