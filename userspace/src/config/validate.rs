//! Validation: turns the file as written into a [`Config`], collecting every
//! problem with its position.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    ops::Range,
    time::Duration,
};

use ipnet::IpNet;
use serde_spanned::Spanned;

use super::{
    Capacity, Config, ConfigIssue, Escalation, Limit, MIN_BYTES_BURST, PortSpec, PrefixLimits,
    QuotaSpec, RateSpec, Rule, SourceLimits,
    raw::{NumOrStr, RawConfig, RawRule, S},
    units,
};

pub(super) struct Validator<'a> {
    pub(super) file: String,
    pub(super) text: &'a str,
    pub(super) issues: Vec<ConfigIssue>,
}

pub(super) const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);

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

    /// A rate such as "1000/s", or "off". `bytes` allows byte units.
    fn rate(
        &mut self,
        key: &str,
        v: &S<String>,
        default: Option<RateSpec>,
        bytes: bool,
    ) -> Option<RateSpec> {
        let Some(v) = v else { return default };
        let example = if bytes {
            "\"10MiB/s\""
        } else {
            "\"1000/s\", \"60/m\""
        };
        match units::parse_rate(v.get_ref(), bytes) {
            Ok(None) => None,
            Ok(Some(r)) if r.count == 0 => {
                self.issue(v.span(), format!("{key}: a rate of 0 drops everything — write \"off\" to disable the limit, or a positive rate"));
                None
            }
            Ok(Some(r)) if r.per > DAY => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} spans more than a day — use `quota` for long windows",
                        v.get_ref()
                    ),
                );
                None
            }
            Ok(Some(r)) if r.per_second() > 1e9 => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is above 10^9 per second — write a smaller rate",
                        v.get_ref()
                    ),
                );
                None
            }
            Ok(Some(r)) if bytes && r.per_second() < 1.0 => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is below 1 byte per second — write a larger rate or \"off\"",
                        v.get_ref()
                    ),
                );
                None
            }
            Ok(Some(r)) => Some(r),
            Err(units::BadRate) => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a rate — write it like {example} or \"off\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A burst; default one second's worth of the rate (at least 1, or
    /// `MIN_BYTES_BURST` for bytes).
    fn burst(
        &mut self,
        key: &str,
        v: Option<(u64, Range<usize>)>,
        rate: Option<RateSpec>,
        min: u64,
    ) -> u64 {
        let default = rate.map_or(min, |r| (r.per_second().ceil() as u64).max(min));
        let Some((n, span)) = v else { return default };
        if n < min.max(1) {
            let what = if min > 1 {
                format!("{key}: {n} bytes cannot hold one full-size IP packet — use at least {min}")
            } else {
                format!("{key}: a burst of {n} admits nothing — use at least 1")
            };
            self.issue(span, what);
            return default;
        }
        if n > 1_000_000_000_000 {
            self.issue(
                span,
                format!("{key}: {n} is larger than any real burst — use at most 10^12"),
            );
            return default;
        }
        if let Some(r) = rate
            && let Some(most) = most_burst(r, n)
        {
            self.issue(
                span,
                format!(
                    "{key}: a burst of {n} at {}/{} is more than a bucket holds (over 146 years \
                     of the rate) — use at most {most}, or a faster rate",
                    r.count,
                    humantime::format_duration(r.per)
                ),
            );
            return default;
        }
        n
    }

    fn int_burst(&mut self, key: &str, v: &S<i64>, rate: Option<RateSpec>) -> u64 {
        let v = v
            .as_ref()
            .map(|s| (u64::try_from(*s.get_ref()).unwrap_or(0), s.span()));
        self.burst(key, v, rate, 1)
    }

    fn bytes_burst(&mut self, key: &str, v: &S<NumOrStr>, rate: Option<RateSpec>) -> u64 {
        let parsed = match v {
            None => None,
            Some(s) => {
                match s.get_ref() {
                    NumOrStr::Num(n) => Some((u64::try_from(*n).unwrap_or(0), s.span())),
                    NumOrStr::Str(text) => match units::parse_bytes(text) {
                        Some(n) => Some((n, s.span())),
                        None => {
                            self.issue(s.span(), format!("{key}: {text:?} is not a size — write it like \"20MiB\" or 65536"));
                            None
                        }
                    },
                }
            }
        };
        self.burst(key, parsed, rate, MIN_BYTES_BURST)
    }

    /// `capacity.pressure_window`: 1 s to 1 h (default 60 s).
    fn pressure_window(&mut self, v: &S<String>) -> Duration {
        const DEFAULT: Duration = Duration::from_secs(60);
        let d = self.duration("capacity.pressure_window", v, DEFAULT);
        if let Some(v) = v
            && !(SECOND..=Duration::from_secs(3600)).contains(&d)
        {
            self.issue(
                v.span(),
                format!(
                    "capacity.pressure_window: {:?} is out of range — use 1s to 1h (e.g. \"60s\")",
                    v.get_ref()
                ),
            );
            return DEFAULT;
        }
        d
    }

    fn duration(&mut self, key: &str, v: &S<String>, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match units::parse_duration(v.get_ref()) {
            Some(d) => d,
            None => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a duration — write it like \"5m\", \"24h\" or \"0s\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn quota(&mut self, key: &str, v: &S<String>, default: Option<QuotaSpec>) -> Option<QuotaSpec> {
        let Some(v) = v else { return default };
        match units::parse_rate(v.get_ref(), false) {
            Ok(None) => None,
            Ok(Some(r)) if r.per < SECOND || r.per > 30 * DAY => {
                self.issue(v.span(), format!("{key}: the window of {:?} must be between 1s and 30d — write it like \"200000/24h\"", v.get_ref()));
                None
            }
            Ok(Some(r)) if r.count == 0 => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: a quota of 0 drops everything — write \"off\" or a positive count"
                    ),
                );
                None
            }
            Ok(Some(r)) if r.count > floodgate_common::quota::MAX_QUOTA => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {} packets is more than a quota can count (at most {} per window) — use a shorter window or \"off\"",
                        r.count,
                        floodgate_common::quota::MAX_QUOTA
                    ),
                );
                None
            }
            Ok(Some(r)) => Some(QuotaSpec {
                limit: r.count,
                window: r.per,
            }),
            Err(units::BadRate) => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a quota — write it like \"200000/24h\" or \"off\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn cidr(&mut self, key: &str, v: &Spanned<String>) -> Option<IpNet> {
        let s = v.get_ref().trim();
        match s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(n) => Some(n.trunc()),
            Err(_) => {
                self.issue(v.span(), format!("{key}: {s:?} is not a CIDR — write it like \"203.0.113.0/24\" or \"2001:db8::/32\""));
                None
            }
        }
    }

    fn capacity(&mut self, key: &str, v: &S<i64>, default: u32) -> u32 {
        let Some(v) = v else { return default };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if (16..=100_000_000).contains(&n) => n,
            _ => {
                self.issue(
                    v.span(),
                    format!(
                        "capacity.{key}: {} is out of range — use 16 to 100000000 entries",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A share of something written as a percentage ("25%"), or "off" (None).
    fn share(&mut self, key: &str, v: &S<String>, default: Option<f64>) -> Option<f64> {
        let Some(v) = v else { return default };
        let text = v.get_ref().trim();
        if text == "off" {
            return None;
        }
        match units::parse_percent(text) {
            Some(pct) if pct > 0.0 && pct <= 100.0 => Some(pct / 100.0),
            _ => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a share of the available memory — write a \
                         percentage above 0 and at most 100, like \"25%\", or \"off\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn mode(&mut self, key: &str, v: &S<String>) -> Option<bool> {
        let v = v.as_ref()?;
        match v.get_ref().as_str() {
            "enforce" => Some(false),
            "monitor" => Some(true),
            other => {
                self.issue(
                    v.span(),
                    format!("{key}: {other:?} is not a mode — write \"enforce\" or \"monitor\""),
                );
                None
            }
        }
    }

    fn port(&mut self, v: &Spanned<String>) -> Option<PortSpec> {
        let s = v.get_ref().trim().to_ascii_lowercase();
        let (proto, port) = s
            .split_once('/')
            .map_or((s.as_str(), None), |(p, n)| (p, Some(n)));
        let proto = match proto {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmpv6" => 58,
            _ => {
                self.issue(v.span(), format!("limits.ports: {:?} is not a port — write it like \"tcp/443\", \"udp/53\", \"tcp\" or \"icmp\"", v.get_ref()));
                return None;
            }
        };
        let port = match port {
            None => None,
            Some(_) if proto == 1 || proto == 58 => {
                self.issue(
                    v.span(),
                    format!(
                        "limits.ports: {:?}: ICMP has no ports — write \"icmp\" or \"icmpv6\"",
                        v.get_ref()
                    ),
                );
                return None;
            }
            Some(n) => match n.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    self.issue(
                        v.span(),
                        format!(
                            "limits.ports: {:?} has no valid port — use 1 to 65535",
                            v.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        Some(PortSpec { proto, port })
    }

    fn prefix_len(&mut self, key: &str, v: &S<i64>, default: u8, max: u8) -> u8 {
        let Some(v) = v else { return default };
        match u8::try_from(*v.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                self.issue(
                    v.span(),
                    format!(
                        "prefix.{key}: /{} is not a prefix length — use 1 to {max}",
                        v.get_ref()
                    ),
                );
                default
            }
        }
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
        let allow = raw
            .allow
            .iter()
            .filter_map(|c| self.cidr("allow", c))
            .collect();
        let block = raw
            .block
            .iter()
            .filter_map(|c| self.cidr("block", c))
            .collect();

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
            prefixes: self.capacity("prefixes", &c.prefixes, sources),
            bans: self.capacity("bans", &c.bans, sources),
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
            &default_source_limits(),
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
            &default_prefix_limits(),
        );
        let event_rate = self.rate("events.rate", &raw.events.rate, rate(100, SECOND), false);

        let rules = self.rules(&raw.rule, &limits, &prefix, escalation.max);
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
        }
    }

    /// Lists, rules and ports within what the maps hold, so no file that passes
    /// `config check` fails when it is applied.
    fn fits_the_maps(
        &mut self,
        raw: &RawConfig,
        capacity: &Capacity,
        ports: &[PortSpec],
        rules: &[Rule],
    ) {
        let lists = capacity.lists as usize;
        for (key, list) in [("allow", &raw.allow), ("block", &raw.block)] {
            if let Some(over) = list.get(lists) {
                self.issue(
                    over.span(),
                    format!(
                        "{key}: {} entries, more than capacity.lists ({lists}) holds — raise [capacity] lists or shorten the list",
                        list.len()
                    ),
                );
            }
        }
        let cidrs: usize = rules.iter().map(|r| r.matches.len()).sum();
        if cidrs > lists {
            let span = raw
                .rule
                .iter()
                .find_map(|r| r.matches.as_ref().map(Spanned::span))
                .unwrap_or(0..0);
            self.issue(
                span,
                format!("rule: {cidrs} CIDRs in all, more than capacity.lists ({lists}) holds — raise [capacity] lists"),
            );
        }
        if ports.len() > floodgate_common::MAX_PORTS as usize
            && let Some(p) = raw
                .limits
                .ports
                .as_ref()
                .and_then(|l| l.get(floodgate_common::MAX_PORTS as usize))
        {
            self.issue(
                p.span(),
                format!(
                    "limits.ports: {} entries, more than the {} the program holds — list protocols without a port to cover them whole",
                    ports.len(),
                    floodgate_common::MAX_PORTS
                ),
            );
        }
    }

    /// A packet-like limit: its rate and burst keys under `at`. With neither key
    /// set it inherits `base` whole (a rule keeps the [limits] burst too).
    fn count_limit(
        &mut self,
        at: &str,
        name: &str,
        rate: &S<String>,
        burst: &S<i64>,
        base: Limit,
    ) -> Limit {
        let r = self.rate(&format!("{at}{name}"), rate, base.rate, false);
        Limit {
            rate: r,
            burst: if rate.is_none() && burst.is_none() {
                base.burst
            } else {
                self.int_burst(&format!("{at}{name}_burst"), burst, r)
            },
        }
    }

    fn source_limits(
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
    ) -> Vec<Rule> {
        let mut names = HashSet::new();
        let mut seen: BTreeMap<IpNet, String> = BTreeMap::new();
        let mut out = Vec::new();
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
            match &r.matches {
                Some(m) if !m.get_ref().is_empty() => {
                    for c in m.get_ref() {
                        if let Some(net) = self.cidr(&format!("{at}match"), c) {
                            if let Some(other) = seen.insert(net, name.clone()) {
                                self.issue(c.span(), format!("{at}match: {net} is already matched by rule {other:?} — a CIDR may belong to one rule only"));
                            }
                            matches.push(net);
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
            let limits = self.source_limits(
                &at,
                [&r.packets, &r.bytes, &r.syn, &r.quota, &r.ban],
                [&r.packets_burst, &r.syn_burst],
                &r.bytes_burst,
                limits,
            );
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
                monitor,
                limits,
                prefix,
            });
        }
        out
    }
}

/// Built-in defaults: the same values `default.toml` documents.
fn default_source_limits() -> SourceLimits {
    SourceLimits {
        packets: Limit {
            rate: rate(1000, SECOND),
            burst: 2000,
        },
        bytes: Limit {
            rate: rate(10 << 20, SECOND),
            burst: 20 << 20,
        },
        syn: Limit {
            rate: rate(50, SECOND),
            burst: 100,
        },
        quota: Some(QuotaSpec {
            limit: 200_000,
            window: DAY,
        }),
        ban: Duration::from_secs(300),
    }
}

fn default_prefix_limits() -> PrefixLimits {
    PrefixLimits {
        packets: Limit {
            rate: rate(20_000, SECOND),
            burst: 40_000,
        },
        syn: Limit {
            rate: rate(500, SECOND),
            burst: 1000,
        },
        quota: Some(QuotaSpec {
            limit: 2_000_000,
            window: DAY,
        }),
        ban: Duration::from_secs(300),
    }
}

/// The largest burst the kernel form of rate `r` holds, when `burst` is over it
/// (`None` when `burst` fits). See `floodgate_common::Rate::checked_new`.
fn most_burst(r: RateSpec, burst: u64) -> Option<u64> {
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
