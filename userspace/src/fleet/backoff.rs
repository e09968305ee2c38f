//! Capped exponential backoff with jitter, for reconnecting to a remote
//! engine: a fleet of edges that lost it at once does not come back in step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            failures: 0,
        }
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub const fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait after one more failure: `first × 2^(failures − 1)`, at most
    /// `cap`, then a uniformly random point of its upper half.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.ceiling();
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    fn ceiling(&self) -> Duration {
        let shift = self.failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << shift).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let (first, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut b = Backoff::new(first, cap);
        let mut seen = Vec::new();
        for n in 1..=40u32 {
            let d = b.next_wait();
            let ceiling = first.saturating_mul(1 << (n - 1).min(30)).min(cap);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "failure {n}: {d:?} outside {ceiling:?}"
            );
            seen.push(d);
        }
        assert!(seen.iter().rev().take(10).all(|d| *d <= cap));
        // Jitter: the capped waits are not all the same.
        let tail: std::collections::BTreeSet<_> = seen.iter().rev().take(10).collect();
        assert!(tail.len() > 1);
        b.reset();
        assert!(b.next_wait() <= first);
        assert_eq!(b.failures(), 1);
    }
}
