//! Long-window quotas as a sliding window: in any interval of the window's
//! length a source (or prefix) passes at most `limit` packets, wherever the
//! interval starts.
//!
//! A fixed window lets a scraper spend its quota at the end of one window and
//! again at the start of the next: twice the quota in a moment. A weighted
//! two-window estimate still lets through nearly twice the quota when the
//! previous window's packets all came at its end. Here the window is tracked in
//! [`QUOTA_LANES`] sub-windows ("lanes") of `slot_ns = ⌈window / 7⌉`: the
//! current lane and the 7 before it cover at least one whole window, and a
//! packet passes only if their sum stays within the limit. So:
//!
//! - **at most the quota**: any interval of the window's length ending now lies
//!   inside the lanes summed, so it never holds more than `limit` packets (ε = 0);
//! - **at least 7/8 of it for a steady sender**: a refusal means `limit`
//!   packets passed within the last window and one lane (see the tests);
//! - **no reset by clock skew**: lanes are numbered by absolute time and only
//!   ever advance; a CPU whose clock is a little behind counts in the newest lane.
//!
//! Concurrency: lane counts are 32-bit halves of 64-bit words updated with
//! atomic adds, so packets of one source on several CPUs are all counted; a
//! packet that finds the sum over the limit takes its own count back. The only
//! inexactness is a packet counted into a lane at the instant another CPU clears
//! it for reuse: at most one packet per CPU per lane change.

use crate::Quota;

/// Sub-windows tracked per quota; a power of two so a lane index is an AND.
/// Eight keep the state at five words per source (more lanes would bring a
/// steady sender closer to its whole quota, at 4 bytes a lane per source).
pub const QUOTA_LANES: u64 = 8;
/// Full lanes one window spans (the current lane is partial).
pub const QUOTA_SPAN: u64 = QUOTA_LANES - 1;
/// Lane words: two 32-bit lane counts per 64-bit word.
pub const QUOTA_WORDS: usize = (QUOTA_LANES / 2) as usize;
/// The largest quota: lane counts are 32-bit, and a CPU may count one packet
/// past the limit before taking it back.
pub const MAX_QUOTA: u64 = (1 << 31) - 1;
/// Compare-and-swap attempts when taking a count back.
const GIVE_BACK_TRIES: usize = 4;
/// What [`take`] returns for an off quota: nothing was counted.
pub const NOT_COUNTED: u64 = u64::MAX;

/// The words of one quota's state: word 0 is the number of the newest lane
/// (absolute time / `slot_ns`), words 1 to [`QUOTA_WORDS`] the lane counts. The
/// program implements this over a map value with atomics, the tests over an
/// array.
pub trait QuotaWords {
    fn load(&self, i: usize) -> u64;
    fn store(&self, i: usize, v: u64);
    fn add(&self, i: usize, v: u64);
    fn sub(&self, i: usize, v: u64);
    /// Compare-and-swap; true if the word was `old` and is now `new`.
    fn cas(&self, i: usize, old: u64, new: u64) -> bool;
}

impl Quota {
    /// A quota of `limit` packets per `window_ns`; `limit == 0` is off.
    pub const fn new(limit: u64, window_ns: u64) -> Quota {
        let slot = window_ns.div_ceil(QUOTA_SPAN);
        Quota {
            limit,
            slot_ns: if slot == 0 { 1 } else { slot },
        }
    }

    /// The shortest window this quota enforces (`QUOTA_SPAN` lanes).
    pub const fn window_ns(&self) -> u64 {
        self.slot_ns.saturating_mul(QUOTA_SPAN)
    }
}

/// The word holding `lane` and the unit that counts one packet in it.
#[inline(always)]
const fn lane_pos(lane: u64) -> (usize, u64) {
    let lane = lane & (QUOTA_LANES - 1);
    (1 + (lane >> 1) as usize, 1 << ((lane & 1) * 32))
}

/// The count of `lane` in its word `w`.
#[inline(always)]
const fn lane_count(w: u64, lane: u64) -> u64 {
    (w >> ((lane & 1) * 32)) & 0xffff_ffff
}

/// Packets counted in every lane.
#[inline(always)]
pub fn total<W: QuotaWords>(w: &W) -> u64 {
    let mut sum = 0;
    for i in 1..=QUOTA_WORDS {
        let x = w.load(i);
        sum += (x & 0xffff_ffff) + (x >> 32);
    }
    sum
}

/// Packets the quota `q` at `state` counts at `now`: those of the lanes a
/// packet at `now` would still count (userspace's view; the program sums
/// every lane after moving the newest one up).
pub fn used_at(state: &crate::QuotaState, q: &Quota, now: u64) -> u64 {
    if q.limit == 0 || q.slot_ns == 0 {
        return 0;
    }
    let newest = state.newest_lane;
    let oldest_live = (now / q.slot_ns)
        .max(newest)
        .saturating_sub(QUOTA_LANES - 1);
    let mut sum = 0;
    for back in 0..QUOTA_LANES {
        let Some(l) = newest.checked_sub(back) else {
            break;
        };
        if l < oldest_live {
            break;
        }
        let (word, _) = lane_pos(l);
        sum += lane_count(state.lanes[word - 1], l);
    }
    sum
}

/// Moves the newest lane up to `lane` (clearing the lanes it reuses) and
/// returns the newest lane, which may be ahead of `lane` (another CPU's clock).
#[inline(always)]
fn advance<W: QuotaWords>(w: &W, lane: u64) -> u64 {
    let old = w.load(0);
    if lane <= old {
        // This lane, or a CPU whose clock is behind: count in the newest lane.
        return old;
    }
    if !w.cas(0, old, lane) {
        // Another CPU moved it (and clears what it reuses).
        return w.load(0);
    }
    let gap = lane - old;
    if gap >= QUOTA_LANES {
        for i in 1..=QUOTA_WORDS {
            w.store(i, 0);
        }
        return lane;
    }
    // Lanes old+1 ..= lane held counts from QUOTA_LANES lanes ago. Subtracting
    // what was read (rather than storing 0) keeps a concurrent add.
    for i in 1..QUOTA_LANES {
        if i > gap {
            break;
        }
        let l = old + i;
        let (word, unit) = lane_pos(l);
        let n = lane_count(w.load(word), l);
        if n != 0 {
            w.sub(word, n * unit);
        }
    }
    lane
}

/// Counts one packet at `now`. Returns the lane it was counted in (for
/// [`give_back`] if a later check refuses the packet), or `None` when the quota
/// is spent (nothing is counted then). An off quota (`limit == 0`) passes and
/// counts nothing ([`NOT_COUNTED`]).
#[inline(always)]
pub fn take<W: QuotaWords>(w: &W, q: &Quota, now: u64) -> Option<u64> {
    if q.limit == 0 || q.slot_ns == 0 {
        return Some(NOT_COUNTED);
    }
    let lane = advance(w, now / q.slot_ns);
    let (word, unit) = lane_pos(lane);
    w.add(word, unit);
    if total(w) > q.limit {
        give_back(w, lane);
        return None;
    }
    Some(lane)
}

/// Takes back one packet counted by [`take`] in `lane`; never below zero (the
/// lane may have been cleared for reuse since).
#[inline(always)]
pub fn give_back<W: QuotaWords>(w: &W, lane: u64) {
    if lane == NOT_COUNTED {
        return;
    }
    let (word, unit) = lane_pos(lane);
    for _ in 0..GIVE_BACK_TRIES {
        let x = w.load(word);
        if lane_count(x, lane) == 0 || w.cas(word, x, x - unit) {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
