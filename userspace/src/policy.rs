//! Compiles a validated [`Config`] into what the maps hold.

use floodgate_common::{
    AggregateLimits, POLICY_MONITOR, Policy, PortKey, Quota, Rate, SETTINGS_DROP_MALFORMED,
    SETTINGS_MONITOR, SETTINGS_PORTS_SCOPED, SETTINGS_READY, Settings,
};
use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::config::{Config, Limit, PrefixLimits, QuotaSpec, RateSpec, SourceLimits};

/// Map capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub sources: u32,
    pub prefixes: u32,
    pub bans: u32,
    pub lists: u32,
}

impl From<Capacity> for crate::loader::Capacity {
    fn from(c: Capacity) -> Self {
        crate::loader::Capacity::new(c.sources, c.prefixes, c.bans, c.lists)
    }
}

/// Everything the maps hold for one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub settings: Settings,
    /// Slot 0 is the default policy, then one per rule in file order.
    pub policies: Vec<Policy>,
    /// Each CIDR of rule `i` points at slot `i + 1`.
    pub rules: Vec<(IpNet, u32)>,
    pub allow: Vec<IpNet>,
    pub block: Vec<IpNet>,
    pub ports: Vec<PortKey>,
    pub capacity: Capacity,
    /// The allow and block entries (and rule CIDRs) that came from a set,
    /// with its name, for listings; the config's own are not here.
    pub from_set: BTreeMap<IpNet, String>,
}

/// The entries of each set, by name.
pub type SetNets = BTreeMap<String, Vec<IpNet>>;

/// `config`'s CIDRs with the entries of its `sets` added, without repeats;
/// each added one is recorded in `from` with its set's name.
fn with_sets(
    config: &[IpNet],
    names: &[String],
    sets: &SetNets,
    from: &mut BTreeMap<IpNet, String>,
) -> Vec<IpNet> {
    let mut out = config.to_vec();
    let mut seen: BTreeSet<IpNet> = config.iter().copied().collect();
    for name in names {
        for net in sets.get(name).map_or(&[][..], Vec::as_slice) {
            if seen.insert(*net) {
                out.push(*net);
                from.entry(*net).or_insert_with(|| name.clone());
            }
        }
    }
    out
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn rate(spec: Option<RateSpec>, burst: u64) -> Rate {
    spec.map_or(Rate::OFF, |r| Rate::new(r.count, ns(r.per), burst))
}

fn limit(l: &Limit) -> Rate {
    rate(l.rate, l.burst)
}

fn quota(q: Option<QuotaSpec>) -> Quota {
    q.map_or(Quota::default(), |q| Quota::new(q.limit, ns(q.window)))
}

fn policy(source: &SourceLimits, prefix: &PrefixLimits, monitor: bool) -> Policy {
    Policy {
        aggregate: AggregateLimits::default(),
        aggregate_slot: 0,
        packets: limit(&source.packets),
        bytes: limit(&source.bytes),
        syn: limit(&source.syn),
        quota: quota(source.quota),
        prefix_packets: limit(&prefix.packets),
        prefix_syn: limit(&prefix.syn),
        prefix_quota: quota(prefix.quota),
        ban_ns: ns(source.ban),
        prefix_ban_ns: ns(prefix.ban),
        flags: if monitor { POLICY_MONITOR } else { 0 },
    }
}

/// Compiles the config with no set entries (see [`compile_with_sets`]).
pub fn compile(config: &Config) -> Compiled {
    compile_with_sets(config, &SetNets::new())
}

/// Compiles the config, `@name` references expanded to the entries of `sets`
/// (a set not in it has none yet). Global monitor mode is a settings flag
/// and applies to every rule; a rule's own `mode = "monitor"` sets its
/// policy flag. A CIDR two rules match (one through a set) stays with the
/// first rule in file order.
pub fn compile_with_sets(config: &Config, sets: &SetNets) -> Compiled {
    let mut flags = SETTINGS_READY;
    if config.monitor {
        flags |= SETTINGS_MONITOR;
    }
    if config.drop_malformed {
        flags |= SETTINGS_DROP_MALFORMED;
    }
    if !config.ports.is_empty() {
        flags |= SETTINGS_PORTS_SCOPED;
    }
    let cap = &config.capacity;
    let (pressure_threshold, new_source_budget) = match cap.new_source_budget {
        Some(r) => (
            ((f64::from(cap.sources) * cap.pressure) as u64).max(1),
            Rate::new(r.count, ns(r.per), (r.per_second().ceil() as u64).max(1)),
        ),
        None => (0, Rate::OFF),
    };
    let settings = Settings {
        flags,
        prefix_v4: u32::from(config.prefix_v4),
        prefix_v6: u32::from(config.prefix_v6),
        ban_factor: config.escalation.factor,
        ban_max_ns: ns(config.escalation.max),
        ban_forget_ns: ns(config.escalation.forget),
        pressure_threshold,
        pressure_window_ns: ns(cap.pressure_window),
        pressure_step_ns: floodgate_common::pressure::step_ns(
            ns(cap.pressure_window),
            pressure_threshold,
        ),
        new_source_budget,
        event_rate: config.event_rate.map_or(Rate::OFF, |r| {
            Rate::new(r.count, ns(r.per), (r.per_second().ceil() as u64).max(1))
        }),
        user_ban_horizon_ns: 0,
        default_policy: 0,
        _pad: 0,
    };
    let mut policies = vec![policy(&config.limits, &config.prefix, false)];
    let mut rules = Vec::new();
    let mut from_set = BTreeMap::new();
    let mut matched: BTreeSet<IpNet> = config
        .rules
        .iter()
        .flat_map(|r| r.matches.iter().copied())
        .collect();
    let mut aggregate_slot = 0;
    for (i, rule) in config.rules.iter().enumerate() {
        let mut p = policy(&rule.limits, &rule.prefix, rule.monitor);
        if let Some(a) = &rule.aggregate {
            // Slots in rule order among the aggregate rules: a reload that
            // keeps them keeps each budget's state (see the engine's apply).
            aggregate_slot += 1;
            p.aggregate = AggregateLimits {
                packets: limit(&a.packets),
                syn: limit(&a.syn),
                quota: quota(a.quota),
            };
            p.aggregate_slot = aggregate_slot;
        }
        policies.push(p);
        let slot = u32::try_from(i + 1).unwrap_or(u32::MAX);
        rules.extend(rule.matches.iter().map(|net| (*net, slot)));
        for name in &rule.match_sets {
            for net in sets.get(name).map_or(&[][..], Vec::as_slice) {
                if matched.insert(*net) {
                    rules.push((*net, slot));
                    from_set.entry(*net).or_insert_with(|| name.clone());
                }
            }
        }
    }
    let allow = with_sets(&config.allow, &config.allow_sets, sets, &mut from_set);
    let block = with_sets(&config.block, &config.block_sets, sets, &mut from_set);
    let ports = config
        .ports
        .iter()
        .map(|p| PortKey {
            proto: u16::from(p.proto),
            port: p.port.unwrap_or(0),
        })
        .collect();
    Compiled {
        settings,
        policies,
        rules,
        allow,
        block,
        ports,
        capacity: Capacity {
            sources: cap.sources,
            prefixes: cap.prefixes,
            bans: cap.bans,
            lists: cap.lists,
        },
        from_set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate_common::FP_SHIFT;

    #[test]
    fn default_policy_compiles_to_kernel_numbers() {
        let c = compile(&Config::default());
        let p = &c.policies[0];
        assert_eq!(p.packets.interval_fp, 1_000_000 << FP_SHIFT);
        assert_eq!(p.packets.tolerance_ns, 2_000_000_000);
        assert_eq!(p.quota, Quota::new(200_000, 86_400_000_000_000));
        // Lanes of a seventh of a day: any 24 h holds at most the quota.
        assert_eq!(p.quota.slot_ns, 12_342_857_142_858);
        assert_eq!(p.ban_ns, 300_000_000_000);
        assert_eq!(c.settings.flags, SETTINGS_READY | SETTINGS_PORTS_SCOPED);
        assert_eq!(c.settings.prefix_v4, 24);
        assert_eq!(c.settings.pressure_threshold, 900_000);
        assert_eq!(
            c.ports,
            vec![
                PortKey { proto: 6, port: 80 },
                PortKey {
                    proto: 6,
                    port: 443
                }
            ]
        );
    }

    #[test]
    fn rules_get_their_own_slots() {
        let config = Config::from_toml(
            "mode = \"monitor\"\nlimits.ports = []\n[[rule]]\nname = \"a\"\nmatch = [\"203.0.113.0/24\", \"2001:db8::/48\"]\nmode = \"monitor\"\npackets = \"10/s\"\n",
            "t.toml",
        )
        .expect("valid");
        let c = compile(&config);
        assert_eq!(c.policies.len(), 2);
        assert_eq!(c.policies[1].flags, POLICY_MONITOR);
        assert_eq!(c.policies[1].packets.tolerance_ns, 1_000_000_000);
        assert_eq!(c.rules.len(), 2);
        assert!(c.rules.iter().all(|(_, slot)| *slot == 1));
        assert_eq!(c.settings.flags, SETTINGS_READY | SETTINGS_MONITOR);
    }

    #[test]
    fn sets_expand_where_they_are_named() {
        let config = Config::from_toml(
            "allow = [\"10.0.0.0/8\", \"@bots\"]\nblock = [\"@drop\"]\n[[set]]\nname = \"bots\"\nsource = \"file:///b\"\n[[set]]\nname = \"drop\"\nsource = \"file:///d\"\n[[rule]]\nname = \"r\"\nmatch = [\"203.0.113.0/24\", \"@drop\"]\npackets = \"10/s\"\n",
            "t.toml",
        )
        .expect("valid");
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        let sets: SetNets = [
            (
                "bots".to_owned(),
                vec![net("66.249.64.0/27"), net("10.0.0.0/8")],
            ),
            (
                "drop".to_owned(),
                vec![net("198.51.100.0/24"), net("203.0.113.0/24")],
            ),
        ]
        .into();
        let c = compile_with_sets(&config, &sets);
        assert_eq!(
            c.allow,
            vec![net("10.0.0.0/8"), net("66.249.64.0/27")],
            "no repeats"
        );
        assert_eq!(c.block, vec![net("198.51.100.0/24"), net("203.0.113.0/24")]);
        assert_eq!(
            c.rules,
            vec![(net("203.0.113.0/24"), 1), (net("198.51.100.0/24"), 1)]
        );
        assert_eq!(
            c.from_set.get(&net("66.249.64.0/27")).map(String::as_str),
            Some("bots")
        );
        assert!(
            !c.from_set.contains_key(&net("10.0.0.0/8")),
            "the config's own entry"
        );
        // Before a set is loaded it has no entries.
        let empty = compile(&config);
        assert_eq!(
            (empty.allow.len(), empty.block.len(), empty.rules.len()),
            (1, 0, 1)
        );
    }
}
