//! `top --rules`: each rule, and an aggregate rule's use of its shared
//! budget read from `AGGREGATES` (the arithmetic the program uses, from
//! `floodgate_common`).

use floodgate_common::{AggState, limit::packets_left, quota::used_at};

use super::{Engine, monotonic_ns};
use crate::{
    config::{AggregateLimits, Limit, Rule},
    control::proto::{AggregateUse, BucketUse, QuotaUse, RuleRow},
    daemon::DaemonError,
};

fn bucket(limit: &Limit, tat: u64, rate: &floodgate_common::Rate, now: u64) -> Option<BucketUse> {
    let spec = limit.rate?;
    Some(BucketUse {
        per_second: spec.per_second(),
        burst: limit.burst,
        left: packets_left(tat, now, rate).min(limit.burst),
    })
}

fn aggregate_use(budget: &AggregateLimits, state: &AggState, now: u64) -> AggregateUse {
    let b = &state.budget;
    AggregateUse {
        packets: bucket(&budget.packets, state.packets_tat, &b.packets, now),
        syn: bucket(&budget.syn, state.syn_tat, &b.syn, now),
        quota: budget.quota.map(|q| QuotaUse {
            limit: q.limit,
            window_secs: q.window.as_secs(),
            used: used_at(&state.quota, &b.quota, now),
        }),
        passed: state.passed,
        dropped: state.dropped,
    }
}

impl Engine {
    /// Every rule in file order, with its CIDRs (its sets' included) and an
    /// aggregate rule's use of its budget.
    pub(super) fn rule_rows(&self) -> Result<Vec<RuleRow>, DaemonError> {
        let now = monotonic_ns();
        let rules: &[Rule] = &self.config.rules;
        let mut rows = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let slot = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let cidrs = self
                .compiled
                .rules
                .iter()
                .filter(|(_, s)| *s == slot)
                .count();
            let aggregate = match (&rule.aggregate, self.compiled.policies.get(i + 1)) {
                (Some(budget), Some(p)) if p.aggregate_slot != 0 => {
                    let state = self.fg.aggregate(p.aggregate_slot)?;
                    Some(aggregate_use(budget, &state, now))
                }
                _ => None,
            };
            rows.push(RuleRow {
                name: rule.name.clone(),
                cidrs: cidrs as u64,
                sets: rule.match_sets.clone(),
                monitor: rule.monitor,
                aggregate,
            });
        }
        Ok(rows)
    }
}
