//! Drop statistics: the global per-(verdict, reason) counters in the shape
//! `floodgate stats --json` prints.

use std::collections::BTreeMap;

use floodgate_common::{Counter, Reason, Verdict, counter_index};
use serde::{Deserialize, Serialize};

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, c: &Counter) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

/// One reason's totals and the verdict they got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonTotals {
    /// "pass", "drop" or "would_drop".
    pub verdict: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The stable `stats --json` schema.
///
/// Every packet the program saw is in exactly one of `passed` and `dropped`;
/// monitor-mode would-drops passed, so they are in `passed` and also in
/// `would_drop`. `by_reason` is keyed by reason name (`rate_packets`, …); when one
/// reason has counts under two verdicts (say `banned` dropped in enforce mode and
/// would-dropped in monitor mode), the key `<reason>` holds the drop-most verdict
/// (drop, then would_drop, then pass) and the others appear as `<reason>/<verdict>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// "enforce" or "monitor".
    pub mode: String,
    pub passed: Totals,
    pub dropped: Totals,
    pub would_drop: Totals,
    pub by_reason: BTreeMap<String, ReasonTotals>,
}

impl Stats {
    /// Builds the totals from the summed `COUNTERS` slots.
    pub fn from_counters(counters: &[Counter], monitor: bool) -> Stats {
        let mut stats = Stats {
            mode: if monitor { "monitor" } else { "enforce" }.to_owned(),
            ..Stats::default()
        };
        // Drop first so the plain reason key goes to the drop-most verdict.
        for verdict in [Verdict::Drop, Verdict::WouldDrop, Verdict::Pass] {
            for reason in Reason::ALL {
                let Some(c) = counters.get(counter_index(verdict, reason) as usize) else {
                    continue;
                };
                if c.packets == 0 {
                    continue;
                }
                match verdict {
                    Verdict::Drop => stats.dropped.add(c),
                    Verdict::Pass => stats.passed.add(c),
                    Verdict::WouldDrop => {
                        stats.passed.add(c);
                        stats.would_drop.add(c);
                    }
                }
                let key = if stats.by_reason.contains_key(reason.name()) {
                    format!("{}/{}", reason.name(), verdict.name())
                } else {
                    reason.name().to_owned()
                };
                stats.by_reason.insert(
                    key,
                    ReasonTotals {
                        verdict: verdict.name().to_owned(),
                        packets: c.packets,
                        bytes: c.bytes,
                    },
                );
            }
        }
        stats
    }

    /// Packets counted under `reason` with `verdict` (0 if none).
    pub fn packets(&self, reason: Reason, verdict: Verdict) -> u64 {
        self.by_reason
            .iter()
            .filter(|(k, v)| {
                k.split('/').next() == Some(reason.name()) && v.verdict == verdict.name()
            })
            .map(|(_, v)| v.packets)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate_common::COUNTER_SLOTS;

    fn counters(entries: &[(Verdict, Reason, u64)]) -> Vec<Counter> {
        let mut c = vec![Counter::default(); COUNTER_SLOTS as usize];
        for (v, r, n) in entries {
            c[counter_index(*v, *r) as usize] = Counter {
                packets: *n,
                bytes: n * 100,
            };
        }
        c
    }

    #[test]
    fn every_packet_is_passed_or_dropped_once() {
        let c = counters(&[
            (Verdict::Pass, Reason::Ok, 10),
            (Verdict::Drop, Reason::RatePackets, 5),
            (Verdict::WouldDrop, Reason::Quota, 3),
            (Verdict::Pass, Reason::NonIp, 2),
        ]);
        let s = Stats::from_counters(&c, false);
        assert_eq!(s.passed.packets, 15);
        assert_eq!(s.dropped.packets, 5);
        assert_eq!(s.would_drop.packets, 3);
        assert_eq!(s.by_reason["rate_packets"].verdict, "drop");
        assert_eq!(s.by_reason["quota"].verdict, "would_drop");
        assert_eq!(s.packets(Reason::Quota, Verdict::WouldDrop), 3);
    }

    #[test]
    fn a_reason_under_two_verdicts_keeps_both() {
        let c = counters(&[
            (Verdict::Drop, Reason::Banned, 7),
            (Verdict::WouldDrop, Reason::Banned, 4),
        ]);
        let s = Stats::from_counters(&c, true);
        assert_eq!(s.mode, "monitor");
        assert_eq!(s.by_reason["banned"].packets, 7);
        assert_eq!(s.by_reason["banned/would_drop"].packets, 4);
        assert_eq!(s.packets(Reason::Banned, Verdict::WouldDrop), 4);
    }
}
