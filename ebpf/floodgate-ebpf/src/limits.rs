//! Every limit of a policy for one packet: the token buckets, then the
//! long-window quotas, refunding earlier charges when a later one refuses.

use floodgate_common::{Policy, Reason, TrackState};

use crate::{
    atomic::Cell,
    bucket::{Take, refund, take},
    counters::bump,
    parse::Packet,
    quota,
};

/// Charges one bucket, remembering the charge for a refund.
macro_rules! charge {
    ($field:expr, $rate:expr, $cost:expr, $now:expr) => {{
        // SAFETY: a live, aligned u64 inside an LRU map value.
        let tat = unsafe { Cell::new($field) };
        match take(tat, $rate, $cost, $now) {
            Take::Ok { charged } => Some((tat, charged)),
            Take::Contended { charged } => {
                bump(|g| {
                    // SAFETY: only forms a field pointer inside the live map value.
                    unsafe { &raw mut (*g).cas_exhausted }
                });
                Some((tat, charged))
            }
            Take::Over => None,
        }
    }};
}

/// Runs every limit of `policy` for the packet. Returns the first limit exceeded;
/// charges made before it are refunded so a refused packet costs nothing.
#[inline(always)]
pub(crate) fn limits(
    policy: &Policy,
    src: *mut TrackState,
    pfx: *mut TrackState,
    pkt: &Packet,
    len: u64,
    now: u64,
) -> Option<Reason> {
    let syn = pkt.syn;
    // Per source: packets, bytes, new connections.
    let Some(p1) = charge!(&raw mut (*src).packets_tat, &policy.packets, 1, now) else {
        return Some(Reason::RatePackets);
    };
    let Some(p2) = charge!(&raw mut (*src).bytes_tat, &policy.bytes, len, now) else {
        refund(p1.0, p1.1);
        return Some(Reason::RateBytes);
    };
    let p3 = if syn {
        charge!(&raw mut (*src).syn_tat, &policy.syn, 1, now)
    } else {
        Some((p1.0, 0))
    };
    let Some(p3) = p3 else {
        refund(p1.0, p1.1);
        refund(p2.0, p2.1);
        return Some(Reason::RateSyn);
    };
    let refund_src = || {
        refund(p1.0, p1.1);
        refund(p2.0, p2.1);
        refund(p3.0, p3.1);
    };
    // Per prefix: packets, new connections.
    let Some(q1) = charge!(&raw mut (*pfx).packets_tat, &policy.prefix_packets, 1, now) else {
        refund_src();
        return Some(Reason::PrefixRate);
    };
    let q2 = if syn {
        charge!(&raw mut (*pfx).syn_tat, &policy.prefix_syn, 1, now)
    } else {
        Some((q1.0, 0))
    };
    let Some(q2) = q2 else {
        refund_src();
        refund(q1.0, q1.1);
        return Some(Reason::PrefixSyn);
    };
    // Long windows last: a packet refused by a rate limit does not spend quota.
    let refund_rates = || {
        refund_src();
        refund(q1.0, q1.1);
        refund(q2.0, q2.1);
    };
    // SAFETY: `quota` fields of live LRU map values.
    let (s_quota, p_quota) = unsafe { (&raw mut (*src).quota, &raw mut (*pfx).quota) };
    let Some(s_charge) = quota::charge(s_quota, &policy.quota, now) else {
        refund_rates();
        return Some(Reason::Quota);
    };
    if quota::charge(p_quota, &policy.prefix_quota, now).is_none() {
        refund_rates();
        quota::refund(s_charge);
        return Some(Reason::PrefixQuota);
    }
    None
}
