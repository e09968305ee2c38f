//! Sliding-window quotas over the `quota` words of a source or prefix entry
//! (see `floodgate_common::quota` for the algorithm and its bounds).

use floodgate_common::{
    Quota, QuotaState,
    quota::{QUOTA_WORDS, QuotaWords, give_back, take},
};

use crate::atomic::Cell;

/// A quota's state in its map value, accessed word by word with atomics.
#[derive(Clone, Copy)]
struct MapWords(*mut QuotaState);

impl MapWords {
    #[inline(always)]
    fn cell(self, i: usize) -> Cell {
        // Word 0 is `newest_lane`, 1..=QUOTA_WORDS the lanes. The callers'
        // indexes never exceed it; the clamp keeps the verifier sure of it.
        let i = if i > QUOTA_WORDS { QUOTA_WORDS } else { i };
        // SAFETY: `QuotaState` is `repr(C)`: `QUOTA_WORDS + 1` aligned u64s in a
        // live map value, and `i` is at most `QUOTA_WORDS`.
        unsafe { Cell::new(self.0.cast::<u64>().add(i)) }
    }
}

impl QuotaWords for MapWords {
    #[inline(always)]
    fn load(&self, i: usize) -> u64 {
        self.cell(i).load()
    }
    #[inline(always)]
    fn store(&self, i: usize, v: u64) {
        self.cell(i).store(v);
    }
    #[inline(always)]
    fn add(&self, i: usize, v: u64) {
        self.cell(i).add(v);
    }
    #[inline(always)]
    fn sub(&self, i: usize, v: u64) {
        self.cell(i).sub(v);
    }
    #[inline(always)]
    fn cas(&self, i: usize, old: u64, new: u64) -> bool {
        self.cell(i).cas(old, new).is_ok()
    }
}

/// A packet counted against a quota: where to take it back from.
#[derive(Clone, Copy)]
pub struct Charged {
    state: MapWords,
    lane: u64,
}

/// Counts one packet against `q` in `state`. `None`: the quota is spent.
#[inline(always)]
pub fn charge(state: *mut QuotaState, q: &Quota, now: u64) -> Option<Charged> {
    let state = MapWords(state);
    let lane = take(&state, q, now)?;
    Some(Charged { state, lane })
}

/// Takes back a [`charge`] for a packet a later check refused.
#[inline(always)]
pub fn refund(c: Charged) {
    give_back(&c.state, c.lane);
}
