//! The metrics of what the daemon keeps current on its own: the CrowdSec
//! bouncer and watcher (with `[crowdsec]`) and the `[[set]]`s.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::render::{Labels, labels};
use crate::control::proto::{CrowdsecStatus, RuleRow, SetRow};

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// Registers the bouncer's metrics under `floodgate_crowdsec_*`.
pub fn register(registry: &mut Registry, c: &CrowdsecStatus) {
    let r = registry.sub_registry_with_prefix("crowdsec");
    r.register(
        "up",
        "1 when the last pull from the CrowdSec LAPI succeeded",
        gauge(u64::from(c.up)),
    );
    r.register(
        "last_pull_timestamp_seconds",
        "Unix time of the last successful pull (0: none yet)",
        gauge(c.last_pull_unix.unwrap_or(0)),
    );
    let failures = Counter::<u64>::default();
    failures.inc_by(c.failures);
    r.register(
        "pull_failures",
        "Failed pulls since the daemon started",
        failures,
    );
    let held = Family::<Labels, Gauge>::default();
    for (origin, n) in &c.decisions {
        held.get_or_create(&labels(&[("origin", origin)]))
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    r.register("decisions", "CrowdSec decisions enforced, by origin", held);
    let enforced = Family::<Labels, Gauge>::default();
    for (how, n) in [("ban", c.bans), ("block", c.blocks)] {
        enforced
            .get_or_create(&labels(&[("as", how)]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register(
        "enforced",
        "Networks of CrowdSec decisions, as source bans or block entries",
        enforced,
    );
    let skipped = Family::<Labels, Counter>::default();
    for (why, n) in &c.ignored {
        skipped.get_or_create(&labels(&[("why", why)])).inc_by(*n);
    }
    if c.invalid > 0 {
        skipped
            .get_or_create(&labels(&[("why", "invalid")]))
            .inc_by(c.invalid);
    }
    if let Some(up) = c.watcher_up {
        r.register(
            "watcher_up",
            "1 when the last send of alerts to the LAPI succeeded",
            gauge(u64::from(up)),
        );
        let sent = Counter::<u64>::default();
        sent.inc_by(c.alerts_sent);
        r.register(
            "alerts_sent",
            "floodgate's bans sent to the LAPI as alerts since the start",
            sent,
        );
        r.register(
            "alerts_queued",
            "Alerts waiting for the LAPI",
            gauge(c.alerts_queued),
        );
        let dropped = Counter::<u64>::default();
        dropped.inc_by(c.alerts_dropped);
        r.register(
            "alerts_dropped",
            "Alerts dropped: the queue was full",
            dropped,
        );
    }
    r.register(
        "decisions_skipped",
        "Decisions not applied: a type, scope or origin left out, or a value that did not parse",
        skipped,
    );
}

/// Registers each set's entries, last refresh and errors under `floodgate_set_*`.
pub fn register_sets(registry: &mut Registry, sets: &[SetRow]) {
    if sets.is_empty() {
        return;
    }
    let r = registry.sub_registry_with_prefix("set");
    let entries = Family::<Labels, Gauge>::default();
    let refreshed = Family::<Labels, Gauge>::default();
    let errors = Family::<Labels, Counter>::default();
    for s in sets {
        let l = labels(&[("set", &s.name)]);
        entries
            .get_or_create(&l)
            .set(i64::try_from(s.entries).unwrap_or(i64::MAX));
        refreshed
            .get_or_create(&l)
            .set(i64::try_from(s.last_refresh_unix.unwrap_or(0)).unwrap_or(i64::MAX));
        errors.get_or_create(&l).inc_by(s.errors);
    }
    r.register(
        "entries",
        "Entries of the copy of each set enforced",
        entries,
    );
    r.register(
        "last_refresh_timestamp_seconds",
        "Unix time of each set's last successful fetch (0: none yet)",
        refreshed,
    );
    r.register(
        "refresh_errors",
        "Failed fetches or parses of each set since the start",
        errors,
    );
}

/// Registers each aggregate rule's budget use under `floodgate_aggregate_*`.
pub fn register_aggregates(registry: &mut Registry, rules: &[RuleRow]) {
    if rules.is_empty() {
        return;
    }
    let r = registry.sub_registry_with_prefix("aggregate");
    let passed = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let left = Family::<Labels, Gauge>::default();
    let quota = Family::<Labels, Gauge>::default();
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for rule in rules {
        let Some(a) = &rule.aggregate else {
            continue;
        };
        let l = labels(&[("rule", &rule.name)]);
        passed.get_or_create(&l).inc_by(a.passed);
        dropped.get_or_create(&l).inc_by(a.dropped);
        if let Some(b) = &a.packets {
            left.get_or_create(&l).set(as_i64(b.left));
        }
        if let Some(q) = &a.quota {
            quota.get_or_create(&l).set(as_i64(q.used));
        }
    }
    r.register(
        "passed_packets",
        "Packets each aggregate rule's shared budget admitted since it was set",
        passed,
    );
    r.register(
        "dropped_packets",
        "Packets each aggregate rule's shared budget refused (or would have, in monitor mode)",
        dropped,
    );
    r.register(
        "packets_left",
        "Packets each aggregate rule's shared bucket admits at once now",
        left,
    );
    r.register(
        "quota_used",
        "Packets each aggregate rule's shared quota counts now",
        quota,
    );
}
