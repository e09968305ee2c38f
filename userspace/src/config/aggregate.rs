//! A rule's `aggregate = true`: its `packets`, `syn` and `quota` become one
//! budget shared by every address it matches; each address keeps the
//! per-source limits of `[limits]` (with the rule's `bytes` and `ban`).

use super::{AggregateLimits, Limit, SourceLimits, raw::RawRule, validate::Validator};

/// Rules with `aggregate = true` one configuration may have (the program's
/// `AGGREGATES` less its unused slot 0).
pub const MAX_AGGREGATE_RULES: usize = floodgate_common::MAX_AGGREGATES as usize - 1;

const OFF: Limit = Limit {
    rate: None,
    burst: 0,
};

impl Validator<'_> {
    /// The rule's shared budget when it has `aggregate = true` (None
    /// otherwise), and the per-source limits its addresses keep. `nth` is
    /// how many aggregate rules came before it.
    pub(super) fn aggregate(
        &mut self,
        at: &str,
        r: &RawRule,
        limits: &SourceLimits,
        nth: usize,
    ) -> Option<(AggregateLimits, SourceLimits)> {
        let on = r.aggregate.as_ref()?;
        if !*on.get_ref() {
            return None;
        }
        if nth == MAX_AGGREGATE_RULES {
            self.issue(
                on.span(),
                format!(
                    "{at}aggregate: the program holds at most {MAX_AGGREGATE_RULES} aggregate rules — merge rules that share a budget (a rule may match many sets and CIDRs)"
                ),
            );
        }
        let budget = AggregateLimits {
            packets: self.count_limit(at, "packets", &r.packets, &r.packets_burst, OFF),
            syn: self.count_limit(at, "syn", &r.syn, &r.syn_burst, OFF),
            quota: self.quota(&format!("{at}quota"), &r.quota, None),
        };
        if budget.packets.rate.is_none() && budget.syn.rate.is_none() && budget.quota.is_none() {
            self.issue(
                on.span(),
                format!(
                    "{at}aggregate = true has no budget — set packets, syn or quota: with aggregate = true they limit everything the rule matches as one source"
                ),
            );
        }
        let own = self.source_limits(
            at,
            [&None, &r.bytes, &None, &None, &r.ban],
            [&None, &None],
            &r.bytes_burst,
            limits,
        );
        Some((budget, own))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, Limit, QuotaSpec, RateSpec};
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::from_toml(text, "fg.toml").map_err(|e| match e {
            ConfigError::Invalid { issues } => issues.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        })
    }

    const SET: &str = "[[set]]\nname = \"cloud\"\nsource = \"file:///var/lib/cloud.txt\"\n";

    #[test]
    fn an_aggregate_rule_shares_its_limits_and_keeps_the_per_source_ones() {
        let c = parse(&format!(
            "[limits]\npackets = \"300/s\"\npackets_burst = 600\n\n[[rule]]\nname = \"cloud\"\nmatch = [\"@cloud\"]\naggregate = true\npackets = \"100/s\"\npackets_burst = 250\nquota = \"5000/1h\"\nbytes = \"1MiB/s\"\n\n{SET}"
        ))
        .expect("valid");
        let r = &c.rules[0];
        let a = r.aggregate.expect("an aggregate rule");
        let per = |count, per| Some(RateSpec { count, per });
        assert_eq!(
            a.packets,
            Limit {
                rate: per(100, Duration::from_secs(1)),
                burst: 250
            }
        );
        assert_eq!(a.syn.rate, None, "unset: no shared SYN bucket");
        assert_eq!(
            a.quota,
            Some(QuotaSpec {
                limit: 5000,
                window: Duration::from_secs(3600)
            })
        );
        // Each address keeps [limits]' own packets and syn, with the rule's bytes.
        assert_eq!(r.limits.packets, c.limits.packets);
        assert_eq!(r.limits.syn, c.limits.syn);
        assert_eq!(r.limits.quota, c.limits.quota);
        assert_eq!(r.limits.bytes.rate, per(1 << 20, Duration::from_secs(1)));
    }

    #[test]
    fn an_aggregate_rule_without_a_budget_is_an_error_with_its_line() {
        let e = parse(&format!(
            "[[rule]]\nname = \"cloud\"\nmatch = [\"@cloud\"]\naggregate = true\n{SET}"
        ))
        .expect_err("no budget");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("fg.toml:4:") && e[0].contains("set packets, syn or quota"),
            "{e:?}"
        );
    }

    #[test]
    fn aggregate_false_is_an_ordinary_rule() {
        let c = parse("[[rule]]\nname = \"p\"\nmatch = [\"192.0.2.0/24\"]\naggregate = false\npackets = \"5/s\"\n")
            .expect("valid");
        assert_eq!(c.rules[0].aggregate, None);
        assert_eq!(c.rules[0].limits.packets.rate.map(|r| r.count), Some(5));
    }

    #[test]
    fn aggregate_slots_follow_the_aggregate_rules_in_file_order() {
        let c = parse(&format!(
            "[[rule]]\nname = \"a\"\nmatch = [\"192.0.2.0/24\"]\naggregate = true\npackets = \"5/s\"\n\n[[rule]]\nname = \"b\"\nmatch = [\"198.51.100.0/24\"]\npackets = \"5/s\"\n\n[[rule]]\nname = \"c\"\nmatch = [\"@cloud\"]\naggregate = true\nsyn = \"5/s\"\n{SET}"
        ))
        .expect("valid");
        let p = crate::policy::compile(&c).policies;
        let slots: Vec<u32> = p.iter().map(|p| p.aggregate_slot).collect();
        assert_eq!(slots, [0, 1, 0, 2]);
        assert!(p[1].aggregate.packets.is_on() && !p[1].aggregate.syn.is_on());
        assert!(p[3].aggregate.syn.is_on() && !p[3].aggregate.packets.is_on());
        assert_eq!(p[2].aggregate, floodgate_common::AggregateLimits::default());
    }
}
