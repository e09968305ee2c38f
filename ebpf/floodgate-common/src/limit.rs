//! The arithmetic of the limits, shared by the XDP program (which calls these on
//! every packet) and userspace (which reasons about the same state): one
//! definition, tested on the host.

/// Nanoseconds per second.
const SECOND_NS: u64 = 1_000_000_000;

/// How far ahead of now a bucket's theoretical arrival time (TAT) may
/// legitimately be: a conforming charge keeps it within `tolerance_ns`, and the
/// charges made after lost compare-and-swap races, clock skew between CPUs and a
/// late refund add far less than another tolerance and a second. A TAT further
/// ahead is not state a limiter produced — a refund that landed on a recycled
/// LRU entry wraps it to just under 2^64 — and counts as now, so a source is
/// never refused forever by a corrupt bucket.
pub const fn sane_ahead_ns(tolerance_ns: u64) -> u64 {
    tolerance_ns.saturating_mul(2).saturating_add(SECOND_NS)
}

/// The new TAT when a charge of `inc` at `now` conforms to a GCRA bucket with
/// `tolerance_ns`, or `None` when it is over the limit.
pub const fn gcra_charge(tat: u64, now: u64, inc: u64, tolerance_ns: u64) -> Option<u64> {
    let base = if tat <= now || tat - now > sane_ahead_ns(tolerance_ns) {
        now
    } else {
        tat
    };
    let new = base.saturating_add(inc);
    if new - now > tolerance_ns {
        None
    } else {
        Some(new)
    }
}

/// How many packets the GCRA bucket `rate` at `tat` admits at once at `now`
/// (the same test as [`gcra_charge`]); `u64::MAX` for an off rate.
pub const fn packets_left(tat: u64, now: u64, rate: &crate::Rate) -> u64 {
    if !rate.is_on() {
        return u64::MAX;
    }
    let ahead = if tat <= now || tat - now > sane_ahead_ns(rate.tolerance_ns) {
        0
    } else {
        tat - now
    };
    let inc = rate.interval_fp >> crate::FP_SHIFT;
    let inc = if inc == 0 { 1 } else { inc };
    rate.tolerance_ns.saturating_sub(ahead) / inc
}

/// Offences counted for escalation saturate here; the duration keeps its cap.
pub const MAX_OFFENSES: u32 = 32;

/// Ban escalation settings (`[limits] ban_escalation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escalation {
    pub factor: u32,
    /// The longest ban; 0 = no cap.
    pub max_ns: u64,
    /// A source with no ban for this long starts over at the base duration.
    pub forget_ns: u64,
}

/// A ban that ended before now, remembered for escalation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PastBan {
    pub until_ns: u64,
    pub duration_ns: u64,
    pub offenses: u32,
}

/// (offences, duration) of a ban made at `now` for `base_ns`, after `prev`.
/// A remembered repeat offender's ban grows `factor` times, never shrinks below
/// the base or the previous ban, stops at `max_ns`, and stays there however many
/// offences follow.
pub const fn next_ban(prev: Option<PastBan>, now: u64, base_ns: u64, e: &Escalation) -> (u32, u64) {
    let Some(p) = prev else {
        return (1, base_ns);
    };
    if now.saturating_sub(p.until_ns) >= e.forget_ns {
        return (1, base_ns);
    }
    let mut d = grow(p.duration_ns, e.factor);
    if d < p.duration_ns {
        d = p.duration_ns;
    }
    if d < base_ns {
        d = base_ns;
    }
    if e.max_ns != 0 && d > e.max_ns {
        d = e.max_ns;
    }
    let offenses = if p.offenses >= MAX_OFFENSES {
        MAX_OFFENSES
    } else {
        p.offenses + 1
    };
    (offenses, d)
}

/// `d * factor`, saturating. Written without a 128-bit multiply, which BPF
/// cannot call: both operands are clamped first (2^48 ns is over three days
/// beyond any cap, userspace limits the factor to 1000) so the product fits.
const fn grow(d: u64, factor: u32) -> u64 {
    let d = if d > 1 << 48 { 1 << 48 } else { d };
    let factor = if factor > 1 << 15 {
        1 << 15
    } else {
        factor as u64
    };
    d * factor
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    const E: Escalation = Escalation {
        factor: 2,
        max_ns: 3600 * SECOND_NS,
        forget_ns: 86_400 * SECOND_NS,
    };

    #[test]
    fn a_corrupt_tat_counts_as_now() {
        // A refund of 5 on a fresh entry (TAT 0) wraps to just under 2^64.
        let wrapped = 0u64.wrapping_sub(5);
        assert_eq!(gcra_charge(wrapped, 1000, 10, 100), Some(1010));
        // A TAT legitimately ahead by less than the tolerance still counts.
        assert_eq!(gcra_charge(1050, 1000, 10, 100), Some(1060));
        assert_eq!(gcra_charge(1095, 1000, 10, 100), None);
    }

    #[test]
    fn escalation_saturates_at_the_cap() {
        let mut prev = None;
        let mut now = 0;
        let mut last = (0, 0);
        for _ in 0..40 {
            last = next_ban(prev, now, 60 * SECOND_NS, &E);
            now += last.1 + SECOND_NS;
            prev = Some(PastBan {
                until_ns: now - SECOND_NS,
                duration_ns: last.1,
                offenses: last.0,
            });
        }
        assert_eq!(last, (MAX_OFFENSES, E.max_ns));
    }

    #[test]
    fn the_33rd_offence_keeps_the_cap() {
        let prev = PastBan {
            until_ns: 100,
            duration_ns: E.max_ns,
            offenses: MAX_OFFENSES,
        };
        assert_eq!(next_ban(Some(prev), 200, 60, &E), (MAX_OFFENSES, E.max_ns));
    }

    #[test]
    fn forgotten_offenders_start_over() {
        let prev = PastBan {
            until_ns: 0,
            duration_ns: E.max_ns,
            offenses: 9,
        };
        assert_eq!(next_ban(Some(prev), E.forget_ns, 60, &E), (1, 60));
    }

    #[test]
    fn no_cap_never_shrinks() {
        let e = Escalation { max_ns: 0, ..E };
        let prev = PastBan {
            until_ns: 0,
            duration_ns: u64::MAX / 2,
            offenses: 5,
        };
        assert_eq!(next_ban(Some(prev), 1, 60, &e).1, u64::MAX / 2);
    }

    /// A token bucket in exact arithmetic: `burst` tokens, one more every
    /// `interval` ns (levels scaled by `interval` so they stay integers).
    struct Bucket {
        level: u128,
        last: u64,
        interval: u64,
        burst: u64,
    }

    impl Bucket {
        fn take(&mut self, now: u64) -> bool {
            let full = u128::from(self.burst) * u128::from(self.interval);
            self.level = (self.level + u128::from(now.saturating_sub(self.last))).min(full);
            self.last = self.last.max(now);
            let ok = self.level >= u128::from(self.interval);
            if ok {
                self.level -= u128::from(self.interval);
            }
            ok
        }
    }

    proptest::proptest! {
        /// What `packets_left` reports is exactly how many charges at that
        /// moment then conform, whatever the bucket went through.
        #[test]
        fn packets_left_is_what_conforms_now(
            per_second in 1u64..100_000,
            burst in 1u64..200,
            start in 0u64..1 << 50,
            gaps in proptest::collection::vec(0u64..20_000_000, 1..200),
        ) {
            let Some(rate) = crate::Rate::checked_new(per_second, SECOND_NS, burst) else {
                return Ok(());
            };
            let inc = rate.interval_fp >> crate::FP_SHIFT;
            let (mut tat, mut now) = (0u64, start);
            for g in gaps {
                now += g;
                let left = packets_left(tat, now, &rate);
                let mut t = tat;
                let mut conforming = 0;
                while let Some(next) = gcra_charge(t, now, inc, rate.tolerance_ns) {
                    t = next;
                    conforming += 1;
                }
                proptest::prop_assert_eq!(left, conforming);
                if let Some(next) = gcra_charge(tat, now, inc, rate.tolerance_ns) {
                    tat = next;
                }
            }
        }
    }

    proptest::proptest! {
        /// Fed random arrivals, GCRA passes what the token bucket passes, give
        /// or take one burst, and never more than a burst plus the rate over
        /// any interval.
        #[test]
        fn gcra_matches_a_token_bucket(
            interval in 1u64..10_000,
            burst in 1u64..50,
            start in 0u64..1 << 50,
            gaps in proptest::collection::vec(0u64..20_000, 1..500),
        ) {
            let tolerance = burst * interval;
            let mut model = Bucket { level: u128::from(tolerance), last: start, interval, burst };
            let (mut tat, mut now) = (0u64, start);
            let (mut ours, mut theirs) = (0u64, 0u64);
            let mut passes = std::vec::Vec::new();
            for g in gaps {
                now += g;
                if let Some(t) = gcra_charge(tat, now, interval, tolerance) {
                    tat = t;
                    ours += 1;
                    passes.push(now);
                }
                theirs += u64::from(model.take(now));
                proptest::prop_assert!(ours <= theirs + 1, "{ours} passed, the model {theirs}");
                proptest::prop_assert!(ours + burst >= theirs, "{ours} passed, the model {theirs}");
            }
            for (i, &first) in passes.iter().enumerate() {
                for (j, &last) in passes.iter().enumerate().skip(i) {
                    let n = (j - i + 1) as u64;
                    proptest::prop_assert!(
                        n <= burst + (last - first) / interval + 1,
                        "{n} passes within {} ns", last - first
                    );
                }
            }
        }
    }
}
