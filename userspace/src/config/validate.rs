//! Validation: turns the file as written into a [`Config`], collecting every
//! problem with its position.

use std::{
    collections::{BTreeMap, HashSet},
    ops::Range,
    time::Duration,
};

use ipnet::IpNet;
use serde_spanned::Spanned;

use super::{
    Capacity, Config, ConfigIssue, Escalation, Limit, PortSpec, PrefixLimits, RateSpec, Rule,
    SourceLimits, defaults,
    raw::{NumOrStr, RawConfig, RawRule, S},
};

pub(super) struct Validator<'a> {
    pub(super) file: String,
    pub(super) text: &'a str,
    pub(super) issues: Vec<ConfigIssue>,
}

pub(super) const SECOND: Duration = Duration::from_secs(1);
pub(super) const DAY: Duration = Duration::from_secs(86_400);

pub(super) fn rate(count: u64, per: Duration) -> Option<RateSpec> {
    Some(RateSpec { count, per })
}

impl Validator<'_> {
    pub(super) fn issue(&mut self, span: Range<usize>, message: String) {
        let upto = &self.text[..span.start.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.issues.push(ConfigIssue {
            file: self.file.clone(),
            line,
            col,
            message,
        });
    }

    pub(super) fn config(&mut self, raw: &RawConfig) -> Config {
        let monitor = self.mode("mode", &raw.mode).unwrap_or(false);
        let drop_malformed = match &raw.malformed {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "pass" => false,
                "drop" => true,
                other => {
                    self.issue(v.span(), format!("malformed: {other:?} is not a verdict — write \"pass\" (fail-open) or \"drop\""));
                    false
                }
            },
        };
        let sets = self.sets(&raw.set);
        let (allow, allow_sets) = super::sets::split(
            raw.allow
                .iter()
                .filter_map(|c| self.entry("allow", c, &sets))
                .collect(),
        );
        let (block, block_sets) = super::sets::split(
            raw.block
                .iter()
                .filter_map(|c| self.entry("block", c, &sets))
                .collect(),
        );

        let c = &raw.capacity;
        let sources = self.capacity("sources", &c.sources, 1_000_000);
        let pressure = match &c.pressure {
            None => 0.9,
            Some(p) if *p.get_ref() > 0.0 && *p.get_ref() <= 1.0 => *p.get_ref(),
            Some(p) => {
                self.issue(p.span(), format!("capacity.pressure: {} is not a fraction — use a value above 0 and at most 1 (e.g. 0.9)", p.get_ref()));
                0.9
            }
        };
        let capacity = Capacity {
            sources,
            prefixes: self.capacity(
                "prefixes",
                &c.prefixes,
                floodgate_common::default_prefix_capacity(sources),
            ),
            bans: self.capacity(
                "bans",
                &c.bans,
                floodgate_common::default_ban_capacity(sources),
            ),
            lists: self.capacity("lists", &c.lists, 262_144),
            pressure,
            pressure_window: self.pressure_window(&c.pressure_window),
            new_source_budget: self.rate(
                "capacity.new_source_budget",
                &c.new_source_budget,
                rate(5000, SECOND),
                false,
            ),
            max_memory: self.share("capacity.max_memory", &c.max_memory, Some(0.25)),
        };

        let l = &raw.limits;
        let ports = match &l.ports {
            None => vec![
                PortSpec {
                    proto: 6,
                    port: Some(80),
                },
                PortSpec {
                    proto: 6,
                    port: Some(443),
                },
            ],
            Some(list) => list.iter().filter_map(|p| self.port(p)).collect(),
        };
        let limits = self.source_limits(
            "limits.",
            [&l.packets, &l.bytes, &l.syn, &l.quota, &l.ban],
            [&l.packets_burst, &l.syn_burst],
            &l.bytes_burst,
            &defaults::source_limits(),
        );
        let esc = l.ban_escalation.as_ref().map(Spanned::get_ref);
        let escalation = Escalation {
            factor: match esc.and_then(|e| e.factor.as_ref()) {
                None => 2,
                Some(f) => match u32::try_from(*f.get_ref()) {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => {
                        self.issue(f.span(), format!("limits.ban_escalation.factor: {} is out of range — use 1 (no escalation) to 1000", f.get_ref()));
                        2
                    }
                },
            },
            max: self.duration(
                "limits.ban_escalation.max",
                &esc.and_then(|e| e.max.clone()),
                DAY,
            ),
            forget: self.duration(
                "limits.ban_escalation.forget",
                &esc.and_then(|e| e.forget.clone()),
                DAY,
            ),
        };
        if escalation.max < limits.ban
            && let Some(e) = &l.ban_escalation
        {
            self.issue(e.span(), "limits.ban_escalation.max: shorter than limits.ban — make max at least as long as ban".to_owned());
        }

        let p = &raw.prefix;
        let prefix_v4 = self.prefix_len("ipv4", &p.ipv4, 24, 32);
        let prefix_v6 = self.prefix_len("ipv6", &p.ipv6, 64, 128);
        let prefix = self.prefix_limits(
            "prefix.",
            [&p.packets, &p.syn, &p.quota, &p.ban],
            [&p.packets_burst, &p.syn_burst],
            &defaults::prefix_limits(),
        );
        let event_rate = self.rate("events.rate", &raw.events.rate, rate(100, SECOND), false);

        let rules = self.rules(&raw.rule, &limits, &prefix, escalation.max, &sets);
        let crowdsec = raw.crowdsec.as_ref().and_then(|c| self.crowdsec(c));
        self.fits_the_maps(raw, &capacity, &ports, &rules);
        if let Some(b) = &p.ban
            && prefix.ban > escalation.max
        {
            self.issue(
                b.span(),
                "prefix.ban: longer than limits.ban_escalation.max — shorten it or raise max"
                    .to_owned(),
            );
        }
        Config {
            monitor,
            drop_malformed,
            allow,
            block,
            capacity,
            ports,
            limits,
            escalation,
            prefix_v4,
            prefix_v6,
            prefix,
            event_rate,
            rules,
            crowdsec,
            sets,
            allow_sets,
            block_sets,
        }
    }

    pub(super) fn source_limits(
        &mut self,
        at: &str,
        [packets, bytes, syn, quota, ban]: [&S<String>; 5],
        [packets_burst, syn_burst]: [&S<i64>; 2],
        bytes_burst: &S<NumOrStr>,
        base: &SourceLimits,
    ) -> SourceLimits {
        let b = self.rate(&format!("{at}bytes"), bytes, base.bytes.rate, true);
        SourceLimits {
            packets: self.count_limit(at, "packets", packets, packets_burst, base.packets),
            bytes: Limit {
                rate: b,
                burst: if bytes.is_none() && bytes_burst.is_none() {
                    base.bytes.burst
                } else {
                    self.bytes_burst(&format!("{at}bytes_burst"), bytes_burst, b)
                },
            },
            syn: self.count_limit(at, "syn", syn, syn_burst, base.syn),
            quota: self.quota(&format!("{at}quota"), quota, base.quota),
            ban: self.duration(&format!("{at}ban"), ban, base.ban),
        }
    }

    fn prefix_limits(
        &mut self,
        at: &str,
        [packets, syn, quota, ban]: [&S<String>; 4],
        [packets_burst, syn_burst]: [&S<i64>; 2],
        base: &PrefixLimits,
    ) -> PrefixLimits {
        PrefixLimits {
            packets: self.count_limit(at, "packets", packets, packets_burst, base.packets),
            syn: self.count_limit(at, "syn", syn, syn_burst, base.syn),
            quota: self.quota(&format!("{at}quota"), quota, base.quota),
            ban: self.duration(&format!("{at}ban"), ban, base.ban),
        }
    }

    fn rules(
        &mut self,
        raw: &[RawRule],
        limits: &SourceLimits,
        prefix: &PrefixLimits,
        max_ban: Duration,
        sets: &[super::SetSpec],
    ) -> Vec<Rule> {
        let mut names = HashSet::new();
        let mut seen: BTreeMap<IpNet, String> = BTreeMap::new();
        let mut out = Vec::new();
        let mut aggregates = 0;
        for (i, r) in raw.iter().enumerate() {
            let name = match &r.name {
                Some(n) if !n.get_ref().trim().is_empty() => {
                    if !names.insert(n.get_ref().clone()) {
                        self.issue(n.span(), format!("rule.name: {:?} is used by an earlier rule — give every rule its own name", n.get_ref()));
                    }
                    n.get_ref().clone()
                }
                other => {
                    let span = other.as_ref().map_or(0..0, Spanned::span);
                    self.issue(
                        span,
                        format!("rule #{}: has no name — add name = \"…\"", i + 1),
                    );
                    format!("rule #{}", i + 1)
                }
            };
            let at = format!("rule {name:?}: ");
            if i == floodgate_common::MAX_RULES {
                let span = r.name.as_ref().map_or(0..0, Spanned::span);
                self.issue(
                    span,
                    format!(
                        "{at}is rule #{}; the program holds at most {} rules — merge rules that share limits (a rule may match many CIDRs)",
                        i + 1,
                        floodgate_common::MAX_RULES
                    ),
                );
            }
            let mut matches = Vec::new();
            let mut match_sets = Vec::new();
            match &r.matches {
                Some(m) if !m.get_ref().is_empty() => {
                    for c in m.get_ref() {
                        match self.entry(&format!("{at}match"), c, sets) {
                            Some(super::sets::Entry::Net(net)) => {
                                if let Some(other) = seen.insert(net, name.clone()) {
                                    self.issue(c.span(), format!("{at}match: {net} is already matched by rule {other:?} — a CIDR may belong to one rule only"));
                                }
                                matches.push(net);
                            }
                            Some(super::sets::Entry::Set(s)) if !match_sets.contains(&s) => {
                                match_sets.push(s);
                            }
                            Some(super::sets::Entry::Set(_)) | None => {}
                        }
                    }
                }
                Some(m) => self.issue(
                    m.span(),
                    format!("{at}match is empty — list the CIDRs the rule applies to"),
                ),
                None => {
                    let span = r.name.as_ref().map_or(0..0, Spanned::span);
                    self.issue(
                        span,
                        format!("{at}has no match — add match = [\"203.0.113.0/24\"]"),
                    );
                }
            }
            let monitor = self.mode(&format!("{at}mode"), &r.mode).unwrap_or(false);
            let (aggregate, limits) = match self.aggregate(&at, r, limits, aggregates) {
                Some((budget, own)) => {
                    aggregates += 1;
                    (Some(budget), own)
                }
                None => (
                    None,
                    self.source_limits(
                        &at,
                        [&r.packets, &r.bytes, &r.syn, &r.quota, &r.ban],
                        [&r.packets_burst, &r.syn_burst],
                        &r.bytes_burst,
                        limits,
                    ),
                ),
            };
            let prefix = self.prefix_limits(
                &format!("{at}prefix_"),
                [
                    &r.prefix_packets,
                    &r.prefix_syn,
                    &r.prefix_quota,
                    &r.prefix_ban,
                ],
                [&None, &None],
                prefix,
            );
            for (key, raw_ban, ban) in [
                ("ban", &r.ban, limits.ban),
                ("prefix_ban", &r.prefix_ban, prefix.ban),
            ] {
                if let Some(b) = raw_ban
                    && ban > max_ban
                {
                    self.issue(b.span(), format!("{at}{key}: longer than limits.ban_escalation.max — shorten it or raise max"));
                }
            }
            out.push(Rule {
                name,
                matches,
                match_sets,
                monitor,
                limits,
                prefix,
                aggregate,
            });
        }
        out
    }
}

/// The largest burst the kernel form of rate `r` holds, when `burst` is over it
/// (`None` when `burst` fits). See `floodgate_common::Rate::checked_new`.
pub(super) fn most_burst(r: RateSpec, burst: u64) -> Option<u64> {
    let per_ns = u64::try_from(r.per.as_nanos()).unwrap_or(u64::MAX);
    if floodgate_common::Rate::checked_new(r.count, per_ns, burst).is_some() {
        return None;
    }
    // The kernel's tolerance is burst × interval: find the largest burst that
    // fits by halving (the check is exact; 64 steps at most).
    let (mut lo, mut hi) = (0u64, burst);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if floodgate_common::Rate::checked_new(r.count, per_ns, mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}
