extern crate std;

use core::cell::Cell;
use std::{collections::VecDeque, vec::Vec};

use proptest::prelude::*;

use super::*;

/// One quota's state on the host.
#[derive(Default)]
struct Words([Cell<u64>; QUOTA_WORDS + 1]);

impl QuotaWords for Words {
    fn load(&self, i: usize) -> u64 {
        self.0[i].get()
    }
    fn store(&self, i: usize, v: u64) {
        self.0[i].set(v);
    }
    fn add(&self, i: usize, v: u64) {
        self.0[i].set(self.0[i].get().wrapping_add(v));
    }
    fn sub(&self, i: usize, v: u64) {
        self.0[i].set(self.0[i].get().wrapping_sub(v));
    }
    fn cas(&self, i: usize, old: u64, new: u64) -> bool {
        let ok = self.0[i].get() == old;
        if ok {
            self.0[i].set(new);
        }
        ok
    }
}

const MS: u64 = 1_000_000;

/// Passes of `arrivals` (absolute times) through a fresh quota.
fn run(q: &Quota, arrivals: &[u64]) -> Vec<(u64, bool)> {
    let w = Words::default();
    arrivals
        .iter()
        .map(|&t| (t, take(&w, q, t).is_some()))
        .collect()
}

/// Passed packets in the interval `(t - len, t]`.
fn passed_within(log: &[(u64, bool)], t: u64, len: u64) -> u64 {
    log.iter()
        .filter(|&&(a, ok)| ok && a <= t && a + len > t)
        .count() as u64
}

#[test]
fn the_window_edge_does_not_double_the_quota() {
    // The case: 10 per 1.5 s let 19 through in 200 ms across the edge
    // of a fixed window. Anchor with one packet, spend the rest just before
    // 1.5 s, then try again just after it.
    let q = Quota::new(10, 1_500 * MS);
    let base = 1_000_000 * MS;
    let mut arrivals = std::vec![base];
    arrivals.extend((0..9).map(|i| base + 1_400 * MS + i * MS));
    arrivals.extend((0..10).map(|i| base + 1_550 * MS + i * MS));
    let log = run(&q, &arrivals);
    // The 9 before the edge pass; after it, the anchor has (or, within a lane
    // of it, has not yet) left the window: one more may pass, never 10 more.
    let late = log[1..].iter().filter(|p| p.1).count();
    assert!((9..=10).contains(&late), "{log:?}");
    for &(t, _) in &log {
        assert!(passed_within(&log, t, 1_500 * MS) <= 10, "{log:?}");
    }
}

#[test]
fn a_clock_a_little_behind_never_resets_the_window() {
    let q = Quota::new(5, 10_000 * MS);
    let w = Words::default();
    let now = 3_600_000 * MS;
    for _ in 0..5 {
        assert!(take(&w, &q, now).is_some());
    }
    // Another CPU's clock, 2 ms and 2 lanes behind, and far behind.
    for t in [now - 2 * MS, now - 2 * q.slot_ns, 0] {
        assert!(take(&w, &q, t).is_none(), "at {t}");
    }
    assert_eq!(total(&w), 5);
}

#[test]
fn an_idle_source_starts_with_a_full_quota() {
    let q = Quota::new(3, 1_000 * MS);
    let w = Words::default();
    for _ in 0..3 {
        assert!(take(&w, &q, 5_000 * MS).is_some());
    }
    assert!(take(&w, &q, 5_500 * MS).is_none());
    // Exactly one window and a lane later, then 100 windows later.
    for t in [5_000 * MS + q.window_ns() + q.slot_ns, 105_000 * MS] {
        for _ in 0..3 {
            assert!(take(&w, &q, t).is_some(), "at {t}");
        }
        assert!(take(&w, &q, t).is_none());
    }
}

#[test]
fn give_back_returns_the_count_and_never_goes_below_zero() {
    let q = Quota::new(2, 1_000 * MS);
    let w = Words::default();
    let lane = take(&w, &q, 7_000 * MS).expect("passes");
    give_back(&w, lane);
    give_back(&w, lane);
    assert_eq!(total(&w), 0);
    give_back(&w, NOT_COUNTED);
    assert_eq!(
        take(&Words::default(), &Quota::default(), 1),
        Some(NOT_COUNTED)
    );
}

#[test]
fn a_steady_sender_gets_at_least_7_8_of_its_quota() {
    // 1000 per 10 s offered at exactly that pace (one per 10 ms) for 100 s.
    let q = Quota::new(1_000, 10_000 * MS);
    let arrivals: Vec<u64> = (0..10_000).map(|i| 1_000_000 * MS + i * 10 * MS).collect();
    let log = run(&q, &arrivals);
    let passed = log.iter().filter(|p| p.1).count() as u64;
    assert!(passed <= 10_000, "{passed}");
    assert!(passed * 8 >= 10_000 * 7, "{passed}");
}

proptest! {
    /// Against the exact sliding-window model: no interval of the window's
    /// length ever holds more than the quota, and a packet is refused only when
    /// the quota was spent within the last window and one lane.
    #[test]
    fn the_quota_holds_in_every_window(
        limit in 1u64..40,
        window in 7u64..100_000,
        start in 0u64..1 << 40,
        gaps in proptest::collection::vec(0u64..3_000, 1..600),
        jitter in proptest::collection::vec(0u64..50, 1..600),
    ) {
        let q = Quota::new(limit, window);
        let mut t = start;
        let mut arrivals = Vec::new();
        for (i, g) in gaps.iter().enumerate() {
            t += g;
            // Now and then a CPU whose clock is a little behind.
            let j = jitter[i % jitter.len()];
            arrivals.push(if j < 5 { t.saturating_sub(j * 7) } else { t });
        }
        let w = Words::default();
        // The model's clock is the latest time seen, as the lanes only advance.
        let mut latest = 0;
        let mut passed: VecDeque<u64> = VecDeque::new();
        for &a in &arrivals {
            latest = latest.max(a);
            let ok = take(&w, &q, a).is_some();
            if ok {
                passed.push_back(latest);
                let n = within(&passed, latest, window);
                prop_assert!(n <= limit, "{n} passed in a window at {latest}");
            } else {
                let n = within(&passed, latest, q.window_ns() + q.slot_ns);
                prop_assert!(n >= limit, "refused at {latest} with {n} passed in the last window and a lane");
            }
        }
        // The lanes hold exactly the passes of the last QUOTA_LANES lanes.
        prop_assert_eq!(total(&w), total_live(&passed, latest, &q));
    }
}

/// Passes in `(latest - len, latest]`.
fn within(passed: &VecDeque<u64>, latest: u64, len: u64) -> u64 {
    passed.iter().filter(|&&p| p + len > latest).count() as u64
}

/// Passed packets still in the lanes at `latest`.
fn total_live(passed: &VecDeque<u64>, latest: u64, q: &Quota) -> u64 {
    let newest = latest / q.slot_ns;
    passed
        .iter()
        .filter(|&&p| p / q.slot_ns + QUOTA_LANES > newest)
        .count() as u64
}

#[test]
fn quota_new_rounds_the_lane_up_so_the_window_is_covered() {
    for window in [1, 6, 7, 8, 1_000, 86_400_000_000_000] {
        let q = Quota::new(1, window);
        assert!(q.window_ns() >= window, "{window}");
        assert!(q.slot_ns >= 1);
    }
}

/// The words as the map value holds them.
fn state_of(w: &Words) -> crate::QuotaState {
    let mut s = crate::QuotaState {
        newest_lane: w.load(0),
        ..Default::default()
    };
    for i in 0..QUOTA_WORDS {
        s.lanes[i] = w.load(i + 1);
    }
    s
}

proptest! {
    /// `used_at` is what the quota holds against a packet at that moment:
    /// exactly `limit - used` more packets then pass.
    #[test]
    fn used_at_is_what_a_packet_then_counts_against(
        limit in 1u64..60,
        window_ms in 70u64..5_000,
        gaps in proptest::collection::vec(0u64..400, 1..200),
        probe_ms in 0u64..10_000,
    ) {
        let q = Quota::new(limit, window_ms * MS);
        let w = Words::default();
        let mut now = 1_000 * MS;
        for g in gaps {
            now += g * MS;
            let _ = take(&w, &q, now);
        }
        let at = now + probe_ms * MS;
        let used = used_at(&state_of(&w), &q, at);
        let mut more = 0;
        while take(&w, &q, at).is_some() {
            more += 1;
        }
        prop_assert_eq!(used.min(limit) + more, limit, "used {} then {} more", used, more);
    }
}
