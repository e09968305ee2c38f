//! One scrape: the prometheus-client registry built from a status and the stats.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{control::proto::Status, stats::Stats};

pub(super) type Labels = Vec<(String, String)>;

pub(super) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Renders one scrape.
pub fn render(status: &Status, stats: &Stats, active_bans: u64) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("floodgate");

    let packets = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    // Per interface: the sum over `iface` is the global total (`stats`).
    for (iface, i) in &stats.by_interface {
        for (key, r) in &i.by_reason {
            let reason = key.split('/').next().unwrap_or(key);
            let l = labels(&[
                ("verdict", &r.verdict),
                ("reason", reason),
                ("iface", iface),
            ]);
            packets.get_or_create(&l).inc_by(r.packets);
            bytes.get_or_create(&l).inc_by(r.bytes);
        }
    }
    registry.register(
        "packets",
        "Packets seen by the XDP program, by verdict, reason and ingress interface",
        packets,
    );
    registry.register(
        "bytes",
        "Bytes seen by the XDP program, by verdict, reason and ingress interface",
        bytes,
    );

    let bans = Gauge::<i64>::default();
    bans.set(i64::try_from(active_bans).unwrap_or(i64::MAX));
    registry.register("active_bans", "Sources and prefixes banned right now", bans);

    let entries = Family::<Labels, Gauge>::default();
    let capacity = Family::<Labels, Gauge>::default();
    for m in &status.maps {
        let l = labels(&[("map", &m.name)]);
        entries
            .get_or_create(&l)
            .set(i64::try_from(m.entries).unwrap_or(i64::MAX));
        capacity
            .get_or_create(&l)
            .set(i64::try_from(m.capacity).unwrap_or(i64::MAX));
    }
    registry.register(
        "map_entries",
        "Entries in each map (sources and prefixes tracked, bans, lists)",
        entries,
    );
    registry.register("map_capacity", "Capacity of each map", capacity);

    let inserts = Counter::<u64>::default();
    inserts.inc_by(status.source_inserts);
    registry.register(
        "source_inserts",
        "Sources inserted into the source map (beyond its capacity, each insert evicts one)",
        inserts,
    );
    let pressure = Gauge::<i64>::default();
    pressure.set(i64::from(status.eviction_pressure));
    registry.register(
        "eviction_pressure",
        "1 while first-seen sources draw on the new-source budget",
        pressure,
    );
    let suppressed = Counter::<u64>::default();
    suppressed.inc_by(status.events_suppressed);
    registry.register(
        "ban_events_suppressed",
        "Ban events over the event rate limit, not logged",
        suppressed,
    );
    let log_suppressed = Counter::<u64>::default();
    log_suppressed.inc_by(status.log_lines_suppressed);
    registry.register(
        "log_lines_suppressed",
        "Event log lines not written because of the [events] rate limit (since the daemon started)",
        log_suppressed,
    );
    let lost = Counter::<u64>::default();
    lost.inc_by(status.events_lost);
    registry.register(
        "ban_events_lost",
        "Ban events lost because the ring buffer was full",
        lost,
    );

    let info = Family::<Labels, Gauge>::default();
    let id = status.program_id.to_string();
    info.get_or_create(&labels(&[
        ("program_id", &id),
        ("mode", status.mode.name()),
    ]))
    .set(1);
    registry.register("program_info", "The loaded XDP program", info);
    let ifaces = Family::<Labels, Gauge>::default();
    for i in &status.interfaces {
        ifaces
            .get_or_create(&labels(&[("iface", &i.name), ("xdp_mode", i.mode.name())]))
            .set(1);
    }
    registry.register(
        "interface_info",
        "Interfaces floodgate is attached to",
        ifaces,
    );
    let build = Family::<Labels, Gauge>::default();
    build
        .get_or_create(&labels(&[("version", &status.version)]))
        .set(1);
    registry.register("build_info", "The floodgate build", build);
    let uptime = Gauge::<i64>::default();
    uptime.set(i64::try_from(status.uptime_secs).unwrap_or(i64::MAX));
    registry.register("uptime_seconds", "Seconds since the daemon started", uptime);

    if let Some(c) = &status.crowdsec {
        super::fleet::register(&mut registry, c);
    }
    super::fleet::register_sets(&mut registry, &status.sets);
    super::fleet::register_aggregates(&mut registry, &status.aggregates);

    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeSet;

    use floodgate_common::{COUNTER_ENTRIES, Counter, Reason, Verdict, iface_counter_index};

    use super::*;
    use crate::{
        control::proto::{InterfaceStatus, MapFill, Mode},
        loader::AttachedMode,
    };

    const DASHBOARD: &str = include_str!("../../../../contrib/grafana/floodgate.json");

    /// A status and stats with every verdict and reason counted and every map
    /// filled a bit (also what the HTTP tests' stub engine answers).
    pub(in crate::daemon::metrics) fn fixture() -> (Status, Stats) {
        let mut counters = vec![Counter::default(); COUNTER_ENTRIES as usize];
        for v in Verdict::ALL {
            for r in Reason::ALL {
                counters[iface_counter_index(1, v, r) as usize] = Counter {
                    packets: 3,
                    bytes: 300,
                };
            }
        }
        let status = Status {
            version: "0.1.0".to_owned(),
            mode: Mode::Enforce,
            interfaces: vec![InterfaceStatus {
                name: "eth1".to_owned(),
                mode: AttachedMode::Native,
            }],
            program_id: 42,
            uptime_secs: 60,
            config_source: "/etc/floodgate/floodgate.toml".to_owned(),
            adopted_pinned_state: false,
            pin_dir: "/sys/fs/bpf/floodgate".to_owned(),
            maps: ["sources", "prefixes", "bans", "allow", "block", "rules"]
                .iter()
                .map(|m| MapFill {
                    name: (*m).to_owned(),
                    entries: 1,
                    capacity: 10,
                    kernel_memory_bytes: 0,
                })
                .collect(),
            source_inserts: 5,
            eviction_pressure: true,
            events_suppressed: 1,
            events_lost: 1,
            log_lines_suppressed: 1,
            kernel_memory: None,
            active_bans: Some(2),
            crowdsec: None,
            sets: Vec::new(),
            aggregates: Vec::new(),
        };
        let names = [(1, "eth1".to_owned())];
        let stats = Stats::from_counters(&counters, false).with_interfaces(&counters, &names);
        (status, stats)
    }

    /// A scrape of [`fixture`].
    fn sample() -> String {
        let (status, stats) = fixture();
        render(&status, &stats, 2).expect("render")
    }

    /// Names of the samples in a text exposition.
    fn emitted(scrape: &str) -> BTreeSet<String> {
        scrape
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap_or(l).to_owned())
            .collect()
    }

    /// Every `floodgate_*` name in a PromQL expression.
    fn names_in(expr: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = expr;
        while let Some(at) = rest.find("floodgate_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.push(name);
        }
        names
    }

    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone());
                        }
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_dashboard_uses_only_emitted_metrics() {
        let emitted = emitted(&sample());
        let dashboard: serde_json::Value =
            serde_json::from_str(DASHBOARD).expect("contrib/grafana/floodgate.json parses");
        let mut all = Vec::new();
        exprs(&dashboard, &mut all);
        let used: BTreeSet<String> = all.iter().flat_map(|e| names_in(e)).collect();
        // The dashboard shows every family, so a renamed metric fails either way.
        assert!(used.len() >= 13, "only {used:?} in the dashboard");
        let missing: Vec<&String> = used.difference(&emitted).collect();
        assert!(
            missing.is_empty(),
            "the dashboard queries {missing:?}, which /metrics does not emit (it emits {emitted:?})"
        );
        let unused: Vec<&String> = emitted.difference(&used).collect();
        assert!(unused.is_empty(), "no panel shows {unused:?}");
    }

    #[test]
    fn the_dashboard_is_templated() {
        let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("parses");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(vars, ["datasource", "instance"]);
        for p in d["panels"].as_array().expect("panels") {
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            for t in p["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("expr");
                assert!(
                    expr.contains("instance=~\"$instance\""),
                    "{}: {expr} ignores $instance",
                    p["title"]
                );
            }
        }
    }

    #[test]
    fn packets_carry_the_iface_label_and_suppressed_lines_are_exposed() {
        let mut c = vec![Counter::default(); COUNTER_ENTRIES as usize];
        c[iface_counter_index(1, Verdict::Drop, Reason::Banned) as usize] = Counter {
            packets: 7,
            bytes: 700,
        };
        c[iface_counter_index(2, Verdict::Drop, Reason::Banned) as usize] = Counter {
            packets: 3,
            bytes: 300,
        };
        c[iface_counter_index(0, Verdict::Pass, Reason::NonIp) as usize] = Counter {
            packets: 1,
            bytes: 60,
        };
        let names = [(1, "eth1".to_owned()), (2, "eth2".to_owned())];
        let stats = Stats::from_counters(&c, false).with_interfaces(&c, &names);
        let status = Status {
            version: "0".into(),
            mode: Mode::Enforce,
            interfaces: Vec::new(),
            program_id: 1,
            uptime_secs: 1,
            config_source: String::new(),
            adopted_pinned_state: false,
            pin_dir: String::new(),
            maps: Vec::new(),
            source_inserts: 0,
            eviction_pressure: false,
            events_suppressed: 0,
            events_lost: 0,
            log_lines_suppressed: 42,
            kernel_memory: None,
            active_bans: None,
            crowdsec: None,
            sets: Vec::new(),
            aggregates: Vec::new(),
        };
        let out = render(&status, &stats, 0).expect("renders");
        for line in [
            r#"floodgate_packets_total{verdict="drop",reason="banned",iface="eth1"} 7"#,
            r#"floodgate_packets_total{verdict="drop",reason="banned",iface="eth2"} 3"#,
            r#"floodgate_packets_total{verdict="pass",reason="non_ip",iface="other"} 1"#,
            r#"floodgate_bytes_total{verdict="drop",reason="banned",iface="eth1"} 700"#,
            "floodgate_log_lines_suppressed_total 42",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
        // No series without the label: the sum over iface is the total.
        assert!(!out.contains(r#"reason="banned"} "#), "{out}");
    }
}
