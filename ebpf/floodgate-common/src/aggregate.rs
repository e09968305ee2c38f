//! The shared state of `aggregate = true` rules (`AGGREGATES`) and the
//! budget a policy gives them.

use crate::{Quota, QuotaState, Rate};

/// The budget an `aggregate = true` rule gives everything it matches as one
/// source: one packet bucket, one new-connection bucket and one quota.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregateLimits {
    pub packets: Rate,
    pub syn: Rate,
    pub quota: Quota,
}

/// Value of `AGGREGATES`: one `aggregate = true` rule's shared state, updated
/// by every CPU with atomics (the buckets and the quota as a source's are;
/// the counters with atomic adds: every CPU writes the same entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggState {
    pub packets_tat: u64,
    pub syn_tat: u64,
    pub quota: QuotaState,
    /// Packets the budget admitted.
    pub passed: u64,
    /// Packets it refused (or would have, in monitor mode).
    pub dropped: u64,
    /// The budget this state was counted against, written by userspace: a
    /// reload that changes it starts the state afresh, one that keeps it
    /// keeps the state. The program reads the policy's copy.
    pub budget: AggregateLimits,
}
