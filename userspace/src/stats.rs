//! Drop statistics: the per-(verdict, reason) counters, in total and per
//! interface, in the shape `floodgate stats --json` prints.

use std::collections::BTreeMap;

use floodgate_common::{COUNTER_SLOTS, Counter, Reason, Verdict, counter_index};
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
/// The totals are over every interface; `by_interface` splits them by the
/// interface the packets came in on (same shape, keyed by interface name,
/// "other" for interfaces without a counter slot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// "enforce" or "monitor".
    pub mode: String,
    pub passed: Totals,
    pub dropped: Totals,
    pub would_drop: Totals,
    pub by_reason: BTreeMap<String, ReasonTotals>,
    /// Added in layout 2; absent from older daemons' replies.
    #[serde(default)]
    pub by_interface: BTreeMap<String, IfaceStats>,
}

/// One interface's share of [`Stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceStats {
    pub passed: Totals,
    pub dropped: Totals,
    pub would_drop: Totals,
    pub by_reason: BTreeMap<String, ReasonTotals>,
}

/// Label of the interface slot 0 and of interfaces without a slot.
pub const OTHER_IFACE: &str = "other";

impl IfaceStats {
    /// Builds the totals from one block of `COUNTER_SLOTS` counters.
    fn from_block(block: &[Counter]) -> IfaceStats {
        let mut s = IfaceStats::default();
        // Drop first so the plain reason key goes to the drop-most verdict.
        for verdict in [Verdict::Drop, Verdict::WouldDrop, Verdict::Pass] {
            for reason in Reason::ALL {
                let Some(c) = block.get(counter_index(verdict, reason) as usize) else {
                    continue;
                };
                if c.packets == 0 {
                    continue;
                }
                match verdict {
                    Verdict::Drop => s.dropped.add(c),
                    Verdict::Pass => s.passed.add(c),
                    Verdict::WouldDrop => {
                        s.passed.add(c);
                        s.would_drop.add(c);
                    }
                }
                let key = if s.by_reason.contains_key(reason.name()) {
                    format!("{}/{}", reason.name(), verdict.name())
                } else {
                    reason.name().to_owned()
                };
                s.by_reason.insert(
                    key,
                    ReasonTotals {
                        verdict: verdict.name().to_owned(),
                        packets: c.packets,
                        bytes: c.bytes,
                    },
                );
            }
        }
        s
    }
}

/// Adds the block of `counters` (as `Floodgate::counters` returns them) that
/// starts at `offset` into `into`, slot by slot.
fn fold(counters: &[Counter], into: &mut [Counter], offset: usize) {
    for (acc, c) in into.iter_mut().zip(counters.iter().skip(offset)) {
        acc.packets += c.packets;
        acc.bytes += c.bytes;
    }
}

impl Stats {
    /// Builds the totals (over every interface) from the `COUNTERS` slots
    /// summed over CPUs; `by_interface` stays empty (see [`Stats::with_interfaces`]).
    pub fn from_counters(counters: &[Counter], monitor: bool) -> Stats {
        let mut sum = vec![Counter::default(); COUNTER_SLOTS as usize];
        for offset in (0..counters.len()).step_by(COUNTER_SLOTS as usize) {
            fold(counters, &mut sum, offset);
        }
        let IfaceStats {
            passed,
            dropped,
            would_drop,
            by_reason,
        } = IfaceStats::from_block(&sum);
        Stats {
            mode: if monitor { "monitor" } else { "enforce" }.to_owned(),
            passed,
            dropped,
            would_drop,
            by_reason,
            by_interface: BTreeMap::new(),
        }
    }

    /// Fills `by_interface` from the same counters: `names` gives the name of
    /// each named interface slot; slot 0 and unnamed slots are "other". Named
    /// interfaces are listed even with no packets, "other" only with some.
    pub fn with_interfaces(mut self, counters: &[Counter], names: &[(u32, String)]) -> Stats {
        let mut blocks: BTreeMap<&str, Vec<Counter>> = BTreeMap::new();
        for (slot, offset) in (0..counters.len())
            .step_by(COUNTER_SLOTS as usize)
            .enumerate()
        {
            let name = names
                .iter()
                .find(|(s, _)| *s as usize == slot && slot != 0)
                .map_or(OTHER_IFACE, |(_, n)| n.as_str());
            let block = blocks
                .entry(name)
                .or_insert_with(|| vec![Counter::default(); COUNTER_SLOTS as usize]);
            fold(counters, block, offset);
        }
        self.by_interface = blocks
            .into_iter()
            .map(|(name, block)| (name.to_owned(), IfaceStats::from_block(&block)))
            .filter(|(name, s)| name != OTHER_IFACE || !s.by_reason.is_empty())
            .collect();
        self
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
    use floodgate_common::{COUNTER_ENTRIES, iface_counter_index};

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

    #[test]
    fn totals_sum_the_interfaces_and_the_breakdown_names_them() {
        let mut c = vec![Counter::default(); COUNTER_ENTRIES as usize];
        let mut put = |slot, v, r, n: u64| {
            c[iface_counter_index(slot, v, r) as usize] = Counter {
                packets: n,
                bytes: n * 10,
            };
        };
        put(0, Verdict::Pass, Reason::NonIp, 2);
        put(1, Verdict::Drop, Reason::RatePackets, 5);
        put(1, Verdict::Pass, Reason::Ok, 7);
        put(2, Verdict::Pass, Reason::Ok, 11);
        // Slot 5 lost its name (never in practice): its packets are "other".
        put(5, Verdict::Drop, Reason::Banned, 3);
        let names = [
            (1, "crawl0".to_owned()),
            (2, "user0".to_owned()),
            (3, "idle0".to_owned()),
        ];
        let s = Stats::from_counters(&c, false).with_interfaces(&c, &names);
        assert_eq!(s.passed.packets, 20);
        assert_eq!(s.dropped.packets, 8);
        assert_eq!(s.by_reason["ok"].packets, 18);
        assert_eq!(s.by_reason["ok"].bytes, 180);
        let crawl = &s.by_interface["crawl0"];
        assert_eq!(crawl.dropped.packets, 5);
        assert_eq!(crawl.by_reason["rate_packets"].verdict, "drop");
        assert_eq!(crawl.by_reason["ok"].packets, 7);
        assert_eq!(s.by_interface["user0"].passed.packets, 11);
        assert!(s.by_interface["user0"].dropped.packets == 0);
        assert_eq!(s.by_interface["idle0"], IfaceStats::default());
        let other = &s.by_interface[OTHER_IFACE];
        assert_eq!(other.by_reason["non_ip"].packets, 2);
        assert_eq!(other.by_reason["banned"].packets, 3);
        // The breakdown adds up to the totals.
        let sum: u64 = s
            .by_interface
            .values()
            .map(|i| i.passed.packets + i.dropped.packets)
            .sum();
        assert_eq!(sum, s.passed.packets + s.dropped.packets);
        // A reply from an older daemon (no by_interface) still parses.
        let mut json = serde_json::to_value(&s).expect("serialises");
        json.as_object_mut().expect("object").remove("by_interface");
        let old: Stats = serde_json::from_value(json).expect("old replies parse");
        assert!(old.by_interface.is_empty());
    }

    #[test]
    fn other_is_listed_only_with_packets() {
        let c = vec![Counter::default(); COUNTER_ENTRIES as usize];
        let s = Stats::from_counters(&c, false).with_interfaces(&c, &[(1, "a".to_owned())]);
        assert_eq!(s.by_interface.keys().collect::<Vec<_>>(), ["a"]);
    }
}
