//! The shared budget of an `aggregate = true` rule: one entry of `AGGREGATES`
//! that every address the rule matches, on every CPU, charges with the same
//! atomics as a source's buckets and quota (exact across CPUs in the same
//! way: see `bucket`).
//!
//! Charged last, once the source's and prefix's own limits admitted the
//! packet: a packet those refuse spends nothing of what all the rule's
//! addresses share, and one the budget refuses still counts toward its
//! source's own limits (it was sent). A subprogram that looks the policy and
//! the entry up again from the slot: kept in the decision, those values cost
//! stack that Linux 6.1 does not have (`tests/stack.rs`), and a refund of the
//! source's charges would double the paths its verifier walks.

use floodgate_common::{AggState, Reason};

use crate::{
    atomic::Cell,
    bucket::{Take, refund as bucket_refund, take},
    counters::bump,
    maps::{AGGREGATES, POLICIES},
    quota,
};

/// [`charge`]'s answer: the budget admits the packet (or the policy has none).
pub(crate) const ADMITTED: u32 = 0;

/// The shared state of the policy in `POLICIES` slot `slot`, with the policy.
#[inline(always)]
fn lookup(slot: u32) -> Option<(&'static floodgate_common::Policy, *mut AggState)> {
    let policy = POLICIES.get(slot)?;
    if policy.aggregate_slot == 0 {
        return None;
    }
    Some((policy, AGGREGATES.get_ptr_mut(policy.aggregate_slot)?))
}

/// Charges the bucket at `tat`; `None` when it is empty.
#[inline(always)]
fn charge_one(tat: *mut u64, rate: &floodgate_common::Rate, now: u64) -> Option<u64> {
    // SAFETY: a live, aligned u64 of an array map value.
    let tat = unsafe { Cell::new(tat) };
    match take(tat, rate, 1, now) {
        Take::Ok { charged } => Some(charged),
        Take::Contended { charged } => {
            bump(|g| {
                // SAFETY: only forms a field pointer inside the live map value.
                unsafe { &raw mut (*g).cas_exhausted }
            });
            Some(charged)
        }
        Take::Over => None,
    }
}

/// Charges one packet (`syn`: a new connection) at `now` to the shared budget
/// of the policy in slot `slot`. Returns [`ADMITTED`] or the reason
/// (`Reason::Aggregate*` as u32) it refused the packet for; either is
/// counted on the entry.
#[inline(never)]
pub(crate) fn charge(slot: u32, syn: bool, now: u64) -> u32 {
    let Some((policy, a)) = lookup(slot) else {
        return ADMITTED;
    };
    let b = &policy.aggregate;
    // SAFETY: field pointers of the live map value `a`.
    let (p_tat, s_tat, q, passed, dropped) = unsafe {
        (
            &raw mut (*a).packets_tat,
            &raw mut (*a).syn_tat,
            &raw mut (*a).quota,
            &raw mut (*a).passed,
            &raw mut (*a).dropped,
        )
    };
    let refused = |reason: Reason| {
        // SAFETY: a live, aligned u64 of the map value.
        unsafe { Cell::new(dropped) }.add(1);
        reason as u32
    };
    let Some(packets) = charge_one(p_tat, &b.packets, now) else {
        return refused(Reason::AggregatePackets);
    };
    // SAFETY: live, aligned u64s of the map value.
    let p_cell = unsafe { Cell::new(p_tat) };
    let syn_charged = if syn {
        match charge_one(s_tat, &b.syn, now) {
            Some(c) => c,
            None => {
                bucket_refund(p_cell, packets);
                return refused(Reason::AggregateSyn);
            }
        }
    } else {
        0
    };
    if quota::charge(q, &b.quota, now).is_none() {
        bucket_refund(p_cell, packets);
        // SAFETY: as `p_cell`.
        bucket_refund(unsafe { Cell::new(s_tat) }, syn_charged);
        return refused(Reason::AggregateQuota);
    }
    // SAFETY: a live, aligned u64 of the map value.
    unsafe { Cell::new(passed) }.add(1);
    ADMITTED
}
