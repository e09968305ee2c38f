//! Eviction pressure as a turnover meter: the source map is under pressure
//! while first-seen sources arrive faster than `threshold` per `window`, so a
//! flood of new (often spoofed) addresses would turn the map over and push out
//! the sources it tracks. The LRU map cannot report its fill or its
//! evictions, and a count of inserts only ever grows (once 0.9 × capacity
//! sources had ever been seen, pressure never ended); the meter drains with
//! time instead, so pressure ends at most one window after the flood does.
//!
//! The meter is a time: each insert moves it `step = window / threshold` past
//! `max(meter, now)`. From quiet, `threshold` inserts in a burst put it a
//! window ahead of now, which is pressure; it never runs more than two windows
//! ahead, so after a flood it is back under one window within one window.

/// How far one insert moves the meter; 0 (no pressure tracking) when
/// `threshold` is 0.
pub const fn step_ns(window_ns: u64, threshold: u64) -> u64 {
    if threshold == 0 || window_ns == 0 {
        return 0;
    }
    // Rounded up: `threshold` steps reach a whole window.
    window_ns.div_ceil(threshold)
}

/// The meter after one insert at `now`.
pub const fn after_insert(meter: u64, now: u64, step: u64, window_ns: u64) -> u64 {
    let cap = now.saturating_add(window_ns.saturating_mul(2));
    // Behind now: quiet until now. Past the cap: another CPU's clock, or state
    // no meter produces; either way at most the cap.
    let base = if meter < now {
        now
    } else if meter > cap {
        cap
    } else {
        meter
    };
    let next = base.saturating_add(step);
    if next > cap { cap } else { next }
}

/// Whether a meter reading `meter` at `now` means eviction pressure: more
/// than a window ahead, i.e. more than the threshold of inserts within one
/// (exactly the threshold, all in one tick of the coarse clock, is not).
pub const fn under_pressure(meter: u64, now: u64, window_ns: u64) -> bool {
    window_ns != 0 && meter > now && meter - now > window_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn flood(meter: &mut u64, from: u64, n: u64, every: u64, step: u64, w: u64) {
        for i in 0..n {
            *meter = after_insert(*meter, from + i * every, step, w);
        }
    }

    #[test]
    fn threshold_inserts_in_a_burst_are_pressure() {
        let (w, threshold) = (60 * S, 900);
        let step = step_ns(w, threshold);
        let now = 1_000 * S;
        let mut m = 0;
        flood(&mut m, now, threshold - 1, 0, step, w);
        assert!(!under_pressure(m, now, w));
        flood(&mut m, now, 1, 0, step, w);
        assert!(under_pressure(m, now, w));
    }

    #[test]
    fn pressure_ends_within_a_window_of_the_flood_ending() {
        let (w, threshold) = (10 * S, 100);
        let step = step_ns(w, threshold);
        let mut m = 0;
        // An hour of 1000 new sources a second.
        flood(&mut m, 5 * S, 3_600_000, S / 1000, step, w);
        let end = 5 * S + 3_600 * S;
        assert!(under_pressure(m, end, w));
        assert!(
            !under_pressure(m, end + w, w),
            "still under pressure a window later"
        );
    }

    #[test]
    fn a_steady_trickle_below_the_rate_is_never_pressure() {
        // 900 per minute allowed; 14 a second is 840 a minute.
        let (w, threshold) = (60 * S, 900);
        let step = step_ns(w, threshold);
        let mut m = 0;
        for i in 0..100_000u64 {
            let now = 7 * S + i * (S / 14);
            m = after_insert(m, now, step, w);
            assert!(!under_pressure(m, now, w), "at insert {i}");
        }
    }

    #[test]
    fn off_and_corrupt_meters() {
        assert_eq!(step_ns(60 * S, 0), 0);
        assert!(!under_pressure(u64::MAX, 5, 0));
        // A meter far ahead counts as at most two windows ahead.
        let m = after_insert(u64::MAX, S, 1, S);
        assert_eq!(m, 3 * S);
    }
}
