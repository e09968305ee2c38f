use super::{
    validate::{SECOND, rate},
    *,
};

fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::from_toml(text, "fg.toml").map_err(|e| match e {
        ConfigError::Invalid { issues } => issues.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    })
}

fn errors(text: &str) -> Vec<String> {
    parse(text).expect_err("the config must be rejected")
}

#[test]
fn default_policy_parses_and_equals_an_empty_file() {
    let d = parse(Config::default_toml()).expect("default.toml is valid");
    assert_eq!(d, parse("").expect("an empty file is valid"));
    assert_eq!(d, Config::default());
    assert_eq!(
        d.limits.packets,
        Limit {
            rate: rate(1000, SECOND),
            burst: 2000
        }
    );
    assert_eq!(d.prefix_v4, 24);
    assert_eq!(d.ports.len(), 2);
    assert!(!d.monitor);
}

#[test]
fn a_full_file_parses() {
    let c = parse(
        r#"
mode = "monitor"
malformed = "drop"
allow = ["10.0.0.0/8", "2001:db8::/32"]
block = ["198.51.100.7"]
[capacity]
sources = 5000
[limits]
ports = ["tcp", "udp/53", "icmp"]
packets = "50/100ms"
bytes = "1MB/s"
bytes_burst = 70000
quota = "100/30s"
ban = "0s"
[prefix]
ipv4 = 16
syn = "off"
[[rule]]
name = "partner"
match = ["203.0.113.0/24"]
packets = "5000/s"
mode = "monitor"
prefix_packets = "100000/s"
"#,
    )
    .expect("valid");
    assert!(c.monitor && c.drop_malformed);
    assert_eq!(
        c.block,
        vec!["198.51.100.7/32".parse::<IpNet>().expect("literal")]
    );
    assert_eq!(
        c.limits.packets,
        Limit {
            rate: rate(50, Duration::from_millis(100)),
            burst: 500
        }
    );
    assert_eq!(c.limits.bytes.burst, 70_000);
    assert_eq!(
        c.limits.quota,
        Some(QuotaSpec {
            limit: 100,
            window: Duration::from_secs(30)
        })
    );
    assert_eq!(
        c.ports[0],
        PortSpec {
            proto: 6,
            port: None
        }
    );
    assert_eq!(c.prefix.syn.rate, None);
    let r = &c.rules[0];
    assert!(r.monitor);
    assert_eq!(r.limits.packets.rate, rate(5000, SECOND));
    assert_eq!(r.limits.syn, c.limits.syn, "unset keys inherit [limits]");
    assert_eq!(r.prefix.packets.rate, rate(100_000, SECOND));
    assert_eq!(
        c.capacity.prefixes, 625,
        "prefix capacity defaults to an eighth of sources"
    );
}

#[test]
fn syntax_errors_point_at_the_spot() {
    let e = errors("mode = \"enforce\"\n[limits\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("fg.toml:2:"), "{e:?}");
    assert!(e[0].ends_with("fix the TOML syntax"), "{e:?}");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let e = errors("[limits]\npackts = \"10/s\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("fg.toml:2:1: unknown field `packts`"),
        "{e:?}"
    );
    assert!(e[0].contains("remove it or fix its spelling"), "{e:?}");
}

#[test]
fn every_value_error_names_line_column_and_fix() {
    let file = r#"mode = "strict"
[limits]
packets = "1000/fortnight"
packets_burst = 0
bytes = "10 parsecs/s"
bytes_burst = 1500
quota = "10/60d"
ban = "forever"
ban_escalation = { factor = 0 }
ports = ["sctp/9"]
[prefix]
ipv4 = 33
[capacity]
pressure = 1.5
"#;
    let e = errors(&format!("{file}allow = 1\n"));
    let expected = [
        r#"fg.toml:1:8: mode: "strict" is not a mode — write "enforce" or "monitor""#,
        r#"fg.toml:14:12: capacity.pressure: 1.5 is not a fraction — use a value above 0 and at most 1 (e.g. 0.9)"#,
    ];
    // `allow = 1` under [capacity] is an unknown key: reported alone (the file
    // does not deserialize), so check the value errors without it.
    assert!(e[0].contains("unknown field `allow`"), "{e:?}");
    let e = errors(file);
    assert_eq!(e[0], expected[0]);
    let has = |needle: &str| {
        assert!(
            e.iter().any(|l| l == needle),
            "missing {needle:?} in {e:#?}"
        )
    };
    has(
        r#"fg.toml:3:11: limits.packets: "1000/fortnight" is not a rate — write it like "1000/s", "60/m" or "off""#,
    );
    has("fg.toml:4:17: limits.packets_burst: a burst of 0 admits nothing — use at least 1");
    has(
        r#"fg.toml:5:9: limits.bytes: "10 parsecs/s" is not a rate — write it like "10MiB/s" or "off""#,
    );
    has(
        "fg.toml:6:15: limits.bytes_burst: 1500 bytes cannot hold one full-size IP packet — use at least 65536",
    );
    has(
        r#"fg.toml:7:9: limits.quota: the window of "10/60d" must be between 1s and 30d — write it like "200000/24h""#,
    );
    has(
        r#"fg.toml:8:7: limits.ban: "forever" is not a duration — write it like "5m", "24h" or "0s""#,
    );
    has(
        "fg.toml:9:29: limits.ban_escalation.factor: 0 is out of range — use 1 (no escalation) to 1000",
    );
    has(
        r#"fg.toml:10:10: limits.ports: "sctp/9" is not a port — write it like "tcp/443", "udp/53", "tcp" or "icmp""#,
    );
    has("fg.toml:12:8: prefix.ipv4: /33 is not a prefix length — use 1 to 32");
    has(expected[1]);
    assert_eq!(e.len(), 11, "{e:#?}");
}

#[test]
fn rule_errors() {
    let e = errors(
        r#"
[[rule]]
name = "a"
match = ["203.0.113.0/24", "not-a-cidr"]
[[rule]]
name = "a"
match = ["203.0.113.0/24"]
[[rule]]
name = "b"
match = []
[[rule]]
match = ["192.0.2.0/24"]
mode = "loud"
"#,
    );
    let has = |needle: &str| {
        assert!(
            e.iter().any(|l| l == needle),
            "missing {needle:?} in {e:#?}"
        )
    };
    has(
        r#"fg.toml:4:28: rule "a": match: "not-a-cidr" is not a CIDR — write it like "203.0.113.0/24" or "2001:db8::/32""#,
    );
    has(r#"fg.toml:6:8: rule.name: "a" is used by an earlier rule — give every rule its own name"#);
    has(
        r#"fg.toml:7:10: rule "a": match: 203.0.113.0/24 is already matched by rule "a" — a CIDR may belong to one rule only"#,
    );
    has(r#"fg.toml:10:9: rule "b": match is empty — list the CIDRs the rule applies to"#);
    has("fg.toml:1:1: rule #4: has no name — add name = \"…\"");
    has(
        r#"fg.toml:13:8: rule "rule #4": mode: "loud" is not a mode — write "enforce" or "monitor""#,
    );
    assert_eq!(e.len(), 6, "{e:#?}");
}

#[test]
fn escalation_max_must_cover_the_ban() {
    let e = errors("[limits]\nban = \"2h\"\nban_escalation = { max = \"1h\" }\n");
    assert_eq!(
        e,
        vec![
            "fg.toml:3:18: limits.ban_escalation.max: shorter than limits.ban — make max at least as long as ban"
        ]
    );
}

#[test]
fn rates_out_of_kernel_range_are_refused() {
    let e = errors("[limits]\npackets = \"1/2d\"\nbytes = \"1/10s\"\nsyn = \"0/s\"\n");
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].contains("spans more than a day"));
    assert!(e[1].contains("below 1 byte per second"));
    assert!(e[2].contains("a rate of 0 drops everything"));
}

#[test]
fn max_memory_is_a_percentage_or_off() {
    assert_eq!(parse("").expect("valid").capacity.max_memory, Some(0.25));
    let c = parse("[capacity]\nmax_memory = \"12.5%\"\n").expect("valid");
    assert_eq!(c.capacity.max_memory, Some(0.125));
    let c = parse("[capacity]\nmax_memory = \"off\"\n").expect("valid");
    assert_eq!(c.capacity.max_memory, None);
    for bad in ["\"25\"", "\"0%\"", "\"150%\"", "\"lots\""] {
        let e = errors(&format!("[capacity]\nsources = 5000\nmax_memory = {bad}\n"));
        assert_eq!(
            e,
            vec![format!(
                "fg.toml:3:14: capacity.max_memory: {bad} is not a share of the available \
                 memory — write a percentage above 0 and at most 100, like \"25%\", or \"off\""
            )],
        );
    }
}

/// `packets = "1/s"` with a burst of 18446744074 used to validate, then wrap in
/// the kernel form to a tolerance of a few nanoseconds (dropping everything).
#[test]
fn a_burst_the_kernel_cannot_hold_is_rejected_with_its_line() {
    let e = errors("[limits]\npackets = \"1/s\"\npackets_burst = 18446744074\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("fg.toml:3:"), "{e:?}");
    assert!(e[0].contains("limits.packets_burst"), "{e:?}");
    assert!(e[0].contains("use at most 4611686018"), "{e:?}");
    // The largest burst that fits is accepted and kept whole.
    let ok = parse("[limits]\npackets = \"1/s\"\npackets_burst = 4611686018\n")
        .expect("the largest burst that fits");
    assert_eq!(ok.limits.packets.burst, 4_611_686_018);
}

#[test]
fn quotas_and_the_pressure_window_stay_within_what_the_kernel_counts() {
    let e = errors(
        r#"[limits]
quota = "3000000000/24h"
[capacity]
pressure_window = "2h"
"#,
    );
    assert_eq!(
        e,
        [
            r#"fg.toml:2:9: limits.quota: 3000000000 packets is more than a quota can count (at most 2147483647 per window) — use a shorter window or "off""#,
            r#"fg.toml:4:19: capacity.pressure_window: "2h" is out of range — use 1s to 1h (e.g. "60s")"#,
        ]
    );
    let c = parse("[capacity]\npressure_window = \"10s\"\n").expect("valid");
    assert_eq!(c.capacity.pressure_window, Duration::from_secs(10));
}

#[test]
fn config_check_holds_the_file_to_what_the_maps_hold() {
    let block: Vec<String> = (0..40).map(|i| format!("\"198.51.100.{i}\"")).collect();
    let file = format!(
        "block = [{}]\n[capacity]\nlists = 16\n[limits]\nban = \"1h\"\nban_escalation = {{ max = \"2h\" }}\n[prefix]\nban = \"3h\"\n[[rule]]\nname = \"r\"\nmatch = [\"203.0.113.0/24\"]\nban = \"5h\"\n",
        block.join(", ")
    );
    let e = errors(&file);
    let has = |needle: &str| {
        assert!(
            e.iter().any(|l| l.contains(needle)),
            "missing {needle:?} in {e:#?}"
        )
    };
    has(
        "block: 40 entries, more than capacity.lists (16) holds — raise [capacity] lists or shorten the list",
    );
    has("prefix.ban: longer than limits.ban_escalation.max");
    has("rule \"r\": ban: longer than limits.ban_escalation.max");
    assert!(e.iter().all(|l| l.starts_with("fg.toml:")), "{e:#?}");
}

#[test]
fn a_burst_shorter_than_two_ticks_is_refused_with_the_least_that_works() {
    let check = |text: &str| errors(text).join("\n");
    let err = check("[limits]\npackets = \"1000/s\"\npackets_burst = 19\n");
    assert!(
        err.contains("limits.packets_burst: a burst of 19 is under 20 ms of 1000/1s")
            && err.contains("use at least 20"),
        "{err}"
    );
    assert!(parse("[limits]\npackets = \"1000/s\"\npackets_burst = 20\n").is_ok());
    let err = check("[limits]\nbytes = \"100MiB/s\"\nbytes_burst = \"1MiB\"\n");
    assert!(err.contains("use at least 2097152"), "{err}");
}
