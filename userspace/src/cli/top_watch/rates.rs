//! Per-second rates from successive snapshots: the global counters (with a
//! short history for the sparklines) and the `top` rows.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Instant,
};

use crate::{control::proto::TopRow, stats::Stats};

/// Samples kept per series (one per refresh).
pub const HISTORY: usize = 60;

/// A per-second rate and its last [`HISTORY`] values, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    samples: VecDeque<f64>,
}

impl Series {
    pub fn push(&mut self, rate: f64) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(rate);
    }

    /// The latest rate; 0 before the second snapshot.
    pub fn last(&self) -> f64 {
        self.samples.back().copied().unwrap_or(0.0)
    }

    /// The samples rounded to whole packets/s, for a sparkline.
    pub fn points(&self) -> Vec<u64> {
        self.samples
            .iter()
            .map(|r| r.max(0.0).round() as u64)
            .collect()
    }
}

/// Δ`now`−`before` per second; counters that went back (a reset) count as 0.
fn per_sec(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / secs
}

/// Rates of the global counters, from one `Stats` snapshot to the next.
#[derive(Debug, Default)]
pub struct StatRates {
    previous: Option<(Stats, Instant)>,
    pub passed: Series,
    pub dropped: Series,
    pub would_drop: Series,
    /// Per reason with a drop or would-drop verdict, keyed like `Stats::by_reason`.
    pub reasons: BTreeMap<String, Series>,
}

impl StatRates {
    /// Adds a snapshot taken at `at`; rates start with the second one.
    pub fn observe(&mut self, stats: Stats, at: Instant) {
        if let Some((before, then)) = &self.previous {
            let secs = at.saturating_duration_since(*then).as_secs_f64();
            self.passed
                .push(per_sec(stats.passed.packets, before.passed.packets, secs));
            self.dropped
                .push(per_sec(stats.dropped.packets, before.dropped.packets, secs));
            self.would_drop.push(per_sec(
                stats.would_drop.packets,
                before.would_drop.packets,
                secs,
            ));
            for (reason, totals) in &stats.by_reason {
                if totals.verdict == "pass" {
                    continue;
                }
                let was = before.by_reason.get(reason).map_or(0, |r| r.packets);
                self.reasons
                    .entry(reason.clone())
                    .or_default()
                    .push(per_sec(totals.packets, was, secs));
            }
        }
        self.previous = Some((stats, at));
    }
}

/// One `top` row with its rates since the previous snapshot of the same target.
#[derive(Debug, Clone)]
pub struct RateRow {
    pub row: TopRow,
    /// None until the target was seen twice.
    pub packets_per_sec: Option<f64>,
    pub bytes_per_sec: Option<f64>,
    pub drops_per_sec: Option<f64>,
    /// Dropped share of its packets in percent: of the last interval when it sent
    /// any, else of its whole history.
    pub drop_share: f64,
}

/// Remembers each target's counters to turn the next snapshot into rates.
#[derive(Debug, Default)]
pub struct RowRates {
    seen: HashMap<String, (u64, u64, u64, Instant)>,
}

impl RowRates {
    pub fn observe(&mut self, rows: Vec<TopRow>, at: Instant) -> Vec<RateRow> {
        let out: Vec<RateRow> = rows
            .into_iter()
            .map(|row| {
                let before = self.seen.get(&row.target).copied();
                let rates = before.map(|(p, b, d, then)| {
                    let secs = at.saturating_duration_since(then).as_secs_f64();
                    (
                        per_sec(row.packets, p, secs),
                        per_sec(row.bytes, b, secs),
                        per_sec(row.drops, d, secs),
                        row.packets.saturating_sub(p),
                        row.drops.saturating_sub(d),
                    )
                });
                let (packets, drops) = match rates {
                    Some((_, _, _, dp, dd)) if dp > 0 => (dp, dd),
                    _ => (row.packets, row.drops),
                };
                let drop_share = if packets == 0 {
                    0.0
                } else {
                    drops.min(packets) as f64 * 100.0 / packets as f64
                };
                RateRow {
                    packets_per_sec: rates.map(|r| r.0),
                    bytes_per_sec: rates.map(|r| r.1),
                    drops_per_sec: rates.map(|r| r.2),
                    drop_share,
                    row,
                }
            })
            .collect();
        for r in &out {
            self.seen.insert(
                r.row.target.clone(),
                (r.row.packets, r.row.bytes, r.row.drops, at),
            );
        }
        out
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{ReasonTotals, Totals};

    fn stats(passed: u64, dropped: u64, rate_packets: u64) -> Stats {
        let mut s = Stats {
            passed: Totals {
                packets: passed,
                bytes: passed * 100,
            },
            dropped: Totals {
                packets: dropped,
                bytes: dropped * 100,
            },
            ..Stats::default()
        };
        s.by_reason.insert(
            "rate_packets".into(),
            ReasonTotals {
                verdict: "drop".into(),
                packets: rate_packets,
                bytes: 0,
            },
        );
        s.by_reason.insert(
            "ok".into(),
            ReasonTotals {
                verdict: "pass".into(),
                packets: passed,
                bytes: 0,
            },
        );
        s
    }

    /// A top row with no ban (shared with the model's tests).
    pub(in crate::cli::top_watch) fn row(
        target: &str,
        packets: u64,
        bytes: u64,
        drops: u64,
    ) -> TopRow {
        TopRow {
            target: target.into(),
            packets,
            bytes,
            drops,
            last_seen_secs_ago: 0.0,
            ban: None,
        }
    }

    #[test]
    fn stat_rates_are_per_second_deltas_of_drop_reasons() {
        let t0 = Instant::now();
        let mut r = StatRates::default();
        r.observe(stats(100, 10, 10), t0);
        assert_eq!(r.passed.last(), 0.0, "no rate from one snapshot");
        assert!(r.reasons.is_empty());
        r.observe(stats(300, 410, 410), t0 + Duration::from_secs(2));
        assert_eq!(r.passed.last(), 100.0);
        assert_eq!(r.dropped.last(), 200.0);
        assert_eq!(r.reasons["rate_packets"].last(), 200.0);
        assert!(!r.reasons.contains_key("ok"), "pass reasons are not drops");
        // A counter reset reads as no traffic, not as a huge rate.
        r.observe(stats(0, 0, 0), t0 + Duration::from_secs(3));
        assert_eq!(r.dropped.last(), 0.0);
        assert_eq!(r.dropped.points(), vec![200, 0]);
    }

    #[test]
    fn series_keep_the_last_samples() {
        let mut s = Series::default();
        for i in 0..HISTORY + 5 {
            s.push(i as f64);
        }
        let p = s.points();
        assert_eq!(p.len(), HISTORY);
        assert_eq!(p.first(), Some(&5));
        assert_eq!(s.last(), (HISTORY + 4) as f64);
    }

    #[test]
    fn row_rates_need_two_snapshots_and_share_uses_the_interval() {
        let t0 = Instant::now();
        let mut r = RowRates::default();
        let first = r.observe(vec![row("198.18.1.2", 1000, 64_000, 500)], t0);
        assert_eq!(first[0].packets_per_sec, None);
        assert_eq!(first[0].drop_share, 50.0, "history share until a delta");
        let next = r.observe(
            vec![
                row("198.18.1.2", 1400, 89_600, 800),
                row("198.18.1.3", 5, 320, 0),
            ],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(next[0].packets_per_sec, Some(200.0));
        assert_eq!(next[0].bytes_per_sec, Some(12_800.0));
        assert_eq!(next[0].drops_per_sec, Some(150.0));
        assert_eq!(next[0].drop_share, 75.0);
        assert_eq!(next[1].packets_per_sec, None, "new target");
        // Idle since: the share falls back to the whole history.
        let idle = r.observe(
            vec![row("198.18.1.2", 1400, 89_600, 800)],
            t0 + Duration::from_secs(3),
        );
        assert_eq!(idle[0].packets_per_sec, Some(0.0));
        assert!((idle[0].drop_share - 800.0 * 100.0 / 1400.0).abs() < 1e-9);
    }
}
