//! Rate limit on the daemon's event log lines, so a flood (thousands of bans a
//! second, a script hammering `floodgate reload`) cannot flood the log.
//!
//! One token bucket per kind of event, all at the `[events] rate` of the config
//! (the rate the program also applies to ban events before they reach the
//! daemon), with a burst of one second's worth. Lines over it are counted, not
//! written; [`LogLimiter::summary`] reports the count at most once per
//! [`SUMMARY_EVERY`].
//!
//! Hand-written rather than a crate (governor): it needs injected time for its
//! tests, per-kind suppressed counts for the summary, and nothing else.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, Instant},
};

use crate::config::RateSpec;

/// How often, at most, a summary of suppressed lines is logged.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The kinds of event log lines, each limited on its own so a ban flood cannot
/// hide a reload or a detach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A source or prefix banned (ring-buffer events).
    Ban,
    /// Bans cleared with the CLI.
    Unban,
    Reload,
    Mode,
    Attach,
    Detach,
    /// The XDP program's own log records (aya-log).
    Program,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Ban => "ban",
            Kind::Unban => "unban",
            Kind::Reload => "reload",
            Kind::Mode => "mode",
            Kind::Attach => "attach",
            Kind::Detach => "detach",
            Kind::Program => "program",
        }
    }
}

/// A token bucket: `burst` tokens at most, refilled at `per_sec` a second.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limit: `None` = unlimited (`[events] rate = "off"`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Limit {
    per_sec: f64,
    burst: f64,
}

impl Limit {
    fn of(rate: Option<RateSpec>) -> Option<Limit> {
        let r = rate?;
        let per_sec = r.per_second();
        if !per_sec.is_finite() || per_sec <= 0.0 {
            return None;
        }
        // Same burst as the program's event limit: one second's worth, at least one.
        Some(Limit {
            per_sec,
            burst: per_sec.ceil().max(1.0),
        })
    }
}

/// What [`LogLimiter::summary`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Lines suppressed since the last summary.
    pub suppressed: u64,
    /// The same, by kind.
    pub by_kind: BTreeMap<Kind, u64>,
}

impl fmt::Display for Summary {
    /// `ban=40 program=41`: the per-kind counts as one log field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, n) in &self.by_kind {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{}={n}", k.name())?;
        }
        Ok(())
    }
}

/// Per-kind token buckets and the count of lines they held back.
#[derive(Debug)]
pub struct LogLimiter {
    limit: Option<Limit>,
    buckets: BTreeMap<Kind, Bucket>,
    /// Suppressed since the daemon started.
    total: u64,
    /// Suppressed since the last summary, by kind.
    pending: BTreeMap<Kind, u64>,
    last_summary: Option<Instant>,
}

impl LogLimiter {
    pub fn new(rate: Option<RateSpec>) -> LogLimiter {
        LogLimiter {
            limit: Limit::of(rate),
            buckets: BTreeMap::new(),
            total: 0,
            pending: BTreeMap::new(),
            last_summary: None,
        }
    }

    /// Changes the rate (a reload); buckets keep their tokens, capped to the new burst.
    pub fn set_rate(&mut self, rate: Option<RateSpec>) {
        self.limit = Limit::of(rate);
        if let Some(l) = self.limit {
            for b in self.buckets.values_mut() {
                b.tokens = b.tokens.min(l.burst);
            }
        }
    }

    /// True when a line of `kind` may be written at `now`; otherwise counts it
    /// as suppressed.
    pub fn allow(&mut self, kind: Kind, now: Instant) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let b = self.buckets.entry(kind).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_sec).min(limit.burst);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.suppressed(kind, 1);
            false
        }
    }

    /// Counts `n` lines of `kind` suppressed elsewhere (ban events the program
    /// held back before they reached the daemon).
    pub fn suppressed(&mut self, kind: Kind, n: u64) {
        if n == 0 {
            return;
        }
        self.total = self.total.saturating_add(n);
        let p = self.pending.entry(kind).or_insert(0);
        *p = p.saturating_add(n);
    }

    /// Lines suppressed since the daemon started.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The lines suppressed since the last summary, when there are some and the
    /// last summary is at least [`SUMMARY_EVERY`] old (the first comes at once,
    /// so a flood is reported as it starts).
    pub fn summary(&mut self, now: Instant) -> Option<Summary> {
        if self.pending.is_empty() {
            return None;
        }
        if let Some(last) = self.last_summary
            && now.saturating_duration_since(last) < SUMMARY_EVERY
        {
            return None;
        }
        self.last_summary = Some(now);
        let by_kind = std::mem::take(&mut self.pending);
        Some(Summary {
            suppressed: by_kind.values().sum(),
            by_kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u64, per: Duration) -> Option<RateSpec> {
        Some(RateSpec { count, per })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(rate(2, Duration::from_secs(1)));
        // Burst of 2, then nothing until a token refills (500 ms at 2/s).
        assert!(l.allow(Kind::Ban, t0));
        assert!(l.allow(Kind::Ban, t0));
        assert!(!l.allow(Kind::Ban, t0));
        assert!(!l.allow(Kind::Ban, t0 + ms(499)));
        assert!(l.allow(Kind::Ban, t0 + ms(510)));
        assert!(!l.allow(Kind::Ban, t0 + ms(600)));
        // Over 10 s of flood at most burst + 10 s × 2/s lines get through.
        let passed = (0..10_000)
            .filter(|i| l.allow(Kind::Ban, t0 + ms(1000 + i)))
            .count();
        assert!((19..=22).contains(&passed), "{passed}");
        assert_eq!(l.total(), 3 + 10_000 - passed as u64);
    }

    #[test]
    fn kinds_have_their_own_buckets() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(rate(1, Duration::from_secs(1)));
        assert!(l.allow(Kind::Ban, t0));
        assert!(!l.allow(Kind::Ban, t0));
        // A ban flood does not hide a reload or a detach.
        assert!(l.allow(Kind::Reload, t0));
        assert!(l.allow(Kind::Detach, t0));
        assert!(!l.allow(Kind::Reload, t0));
        assert_eq!(l.total(), 2);
    }

    #[test]
    fn an_idle_bucket_refills_only_to_its_burst() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(rate(3, Duration::from_secs(1)));
        assert!(l.allow(Kind::Mode, t0));
        let later = t0 + Duration::from_secs(3600);
        let passed = (0..10).filter(|_| l.allow(Kind::Mode, later)).count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn off_means_unlimited_and_rates_below_one_per_second_allow_one() {
        let t0 = Instant::now();
        let mut off = LogLimiter::new(None);
        assert!((0..1000).all(|_| off.allow(Kind::Ban, t0)));
        assert_eq!(off.total(), 0);
        let mut slow = LogLimiter::new(rate(1, Duration::from_secs(60)));
        assert!(slow.allow(Kind::Ban, t0));
        assert!(!slow.allow(Kind::Ban, t0 + Duration::from_secs(59)));
        assert!(slow.allow(Kind::Ban, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn summaries_come_at_most_every_ten_seconds_and_only_when_nonzero() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(rate(1, Duration::from_secs(1)));
        assert_eq!(l.summary(t0), None, "nothing suppressed yet");
        assert!(l.allow(Kind::Ban, t0));
        for _ in 0..5 {
            assert!(!l.allow(Kind::Ban, t0));
        }
        l.suppressed(Kind::Ban, 10);
        assert!(l.allow(Kind::Program, t0));
        assert!(!l.allow(Kind::Program, t0));
        let s = l
            .summary(t0 + ms(100))
            .expect("the first summary comes at once");
        assert_eq!(s.suppressed, 16);
        assert_eq!(s.by_kind[&Kind::Ban], 15);
        assert_eq!(s.to_string(), "ban=15 program=1");
        // More suppressed lines wait for the period.
        assert!(!l.allow(Kind::Ban, t0 + ms(200)));
        assert_eq!(l.summary(t0 + Duration::from_secs(5)), None);
        let s = l
            .summary(t0 + ms(100) + SUMMARY_EVERY)
            .expect("due after the period");
        assert_eq!(s.suppressed, 1);
        assert_eq!(
            l.summary(t0 + Duration::from_secs(60)),
            None,
            "none pending"
        );
        assert_eq!(l.total(), 17);
    }

    #[test]
    fn a_reload_changes_the_rate() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(rate(100, Duration::from_secs(1)));
        assert!(l.allow(Kind::Ban, t0));
        l.set_rate(rate(1, Duration::from_secs(1)));
        assert!(l.allow(Kind::Ban, t0));
        assert!(!l.allow(Kind::Ban, t0));
        l.set_rate(None);
        assert!(l.allow(Kind::Ban, t0));
    }
}
