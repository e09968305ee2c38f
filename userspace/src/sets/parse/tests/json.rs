//! `google-json` and `aws-json`.

use super::*;

// ---- google-json ----

#[test]
fn googlebot() {
    let p = ok(GOOGLEBOT, None);
    assert_eq!(p.format, Format::GoogleJson);
    assert_eq!(
        p.nets,
        nets(&[
            "66.249.64.0/27",
            "66.249.64.32/27",
            "192.178.5.0/27",
            "2001:4860:4801:10::/64",
            "2001:4860:4801:12::/64",
        ])
    );
    assert_eq!(ok(GOOGLEBOT, Some(Format::GoogleJson)), p);
}

#[test]
fn bingbot_with_bom_and_crlf() {
    let p = ok(BINGBOT, None);
    assert_eq!(p.format, Format::GoogleJson);
    assert_eq!(
        p.nets,
        nets(&["40.77.167.0/24", "157.55.39.0/24", "207.46.13.0/24"])
    );
}

#[test]
fn google_unknown_keys_ignored_host_bits_widened() {
    let text = r#"{"syncToken": "1", "extra": {"prefixes": 1},
        "prefixes": [{"ipv4Prefix": "66.249.64.9/27", "note": "x"}, {"ipv6Prefix": "2001:db8::1"}]}"#;
    assert_eq!(
        ok(text, None).nets,
        nets(&["66.249.64.0/27", "2001:db8::1/128"])
    );
}

fn google_entry_error(entries: &str) -> (Option<usize>, usize, String) {
    let text = format!(
        "{{\n  \"syncToken\": \"a[b\\\"{{\",\n  \"prefixes\": [\n    {{\"ipv4Prefix\": \"66.249.64.0/27\"}},\n{entries}\n  ]\n}}\n"
    );
    match err(&text, None) {
        ParseError::JsonEntry {
            list: "prefixes",
            index,
            line,
            problem,
        } => (line, index, problem),
        other => panic!("{other:?}"),
    }
}

#[test]
fn google_entry_errors_name_index_and_line() {
    let (line, index, problem) =
        google_entry_error("    {\"ipv4Prefix\": \"66.249.64.32/27\"},\n    {\"note\": 1}");
    assert_eq!((line, index), (Some(6), 2));
    assert_eq!(
        problem,
        r#"{"note":1} has neither "ipv4Prefix" nor "ipv6Prefix""#
    );
    let cases = [
        (
            "    {\"ipv4Prefix\": \"66.249.64.0/33\"}",
            r#""ipv4Prefix": "66.249.64.0/33" is not a CIDR (prefix length 33 is over 32)"#,
        ),
        (
            "    {\"ipv4Prefix\": 42}",
            r#""ipv4Prefix" is not a string"#,
        ),
        (
            "    {\"ipv4Prefix\": \"2001:db8::/32\"}",
            r#""ipv4Prefix" holds an IPv6 prefix, "2001:db8::/32""#,
        ),
        (
            "    {\"ipv6Prefix\": \"192.0.2.0/24\"}",
            r#""ipv6Prefix" holds an IPv4 prefix, "192.0.2.0/24""#,
        ),
        (
            "    [\"66.249.64.0/27\"]",
            r#"["66.249.64.0/27"] is not an object"#,
        ),
        (
            "    {\"ipv4Prefix\": \"192.0.2.0/24\", \"ipv6Prefix\": \"2001:db8::/32\"}",
            "has both",
        ),
    ];
    for (entry, want) in cases {
        let (line, index, problem) = google_entry_error(entry);
        assert_eq!((line, index), (Some(5), 1), "{entry}");
        assert!(problem.contains(want), "{problem} / {want}");
    }
    // Message shape.
    let text = "{\"prefixes\": [\n{\"ipv4Prefix\": \"1.2.3.4/33\"}]}";
    assert_eq!(
        err(text, None).to_string(),
        "line 2: prefixes[0]: \"ipv4Prefix\": \"1.2.3.4/33\" is not a CIDR (prefix length 33 is over 32) \
         — the feed is malformed; check the URL and `format`"
    );
}

#[test]
fn json_shape_errors() {
    let g = Some(Format::GoogleJson);
    let e = err("{\"creationTime\": \"x\"}", g);
    assert!(
        matches!(&e, ParseError::JsonShape { line: 1, format: Format::GoogleJson, problem } if problem.contains("no \"prefixes\"")),
        "{e:?}"
    );
    let e = err(
        "{\n\"a\": 1,\n\"prefixes\": {\"ipv4Prefix\": \"1.2.3.0/24\"}}",
        g,
    );
    assert!(
        matches!(&e, ParseError::JsonShape { line: 3, problem, .. } if problem == "\"prefixes\" is not a list"),
        "{e:?}"
    );
    let e = err("\n\n[1, 2]", g);
    assert!(matches!(&e, ParseError::JsonShape { line: 3, .. }), "{e:?}");
    assert!(e.to_string().contains("is this a google-json feed?"), "{e}");
    let e = err("{\"syncToken\": \"1\"}", Some(Format::AwsJson));
    assert!(
        matches!(
            &e,
            ParseError::JsonShape {
                format: Format::AwsJson,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn json_syntax_error_has_serde_position() {
    let cut = &GOOGLEBOT[..GOOGLEBOT.find("66.249.64.32").expect("in sample")];
    let e = err(cut, None);
    assert!(
        matches!(&e, ParseError::JsonSyntax { line: 14, message, .. } if message == "EOF while parsing a string"),
        "{e:?}"
    );
    let e = err(
        "{\"prefixes\": [\n  {\"ipv4Prefix\": \"1.2.3.0/24\",}\n]}",
        Some(Format::GoogleJson),
    );
    assert!(
        matches!(
            &e,
            ParseError::JsonSyntax {
                line: 2,
                column: 31,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        !e.to_string().contains("at line"),
        "no repeated position: {e}"
    );
}

// ---- aws-json ----

#[test]
fn aws_both_lists() {
    let p = ok(AWS, None);
    assert_eq!(p.format, Format::AwsJson);
    assert_eq!(
        p.nets,
        nets(&[
            "3.2.34.0/26",
            "3.5.140.0/22",
            "18.34.0.0/19",
            "2600:1f00:4000::/40",
            "2600:1f14::/35"
        ])
    );
    assert_eq!((p.entries, p.filtered), (6, 0));
}

#[test]
fn aws_service_filter() {
    let ec2 = svc(&["ec2"]);
    let p = parse(AWS, None, Some(&ec2)).expect("parses");
    assert_eq!(p.nets, nets(&["18.34.0.0/19", "2600:1f14::/35"]));
    assert_eq!((p.entries, p.filtered), (2, 4));
    let both = svc(&["S3", " EC2 "]);
    let p = parse(AWS, Some(Format::AwsJson), Some(&both)).expect("parses");
    assert_eq!(
        p.nets,
        nets(&["3.5.140.0/22", "18.34.0.0/19", "2600:1f14::/35"])
    );
    let p = parse(AWS, None, Some(&[])).expect("parses");
    assert_eq!((p.nets.len(), p.filtered), (0, 6));
}

#[test]
fn aws_unknown_service() {
    let e = parse(AWS, None, Some(&svc(&["EC2", "EC 2"]))).expect_err("typo");
    assert_eq!(
        e,
        ParseError::UnknownService {
            service: "EC 2".to_owned(),
            present: "AMAZON, EC2, S3".to_owned()
        }
    );
    // An empty feed has no services to check against.
    let p = parse(
        r#"{"prefixes": [], "ipv6_prefixes": []}"#,
        None,
        Some(&svc(&["EC2"])),
    );
    assert!(p.expect("empty is valid").nets.is_empty());
}

#[test]
fn aws_filtered_out_entries_are_still_checked() {
    let bad = AWS.replace(
        "\"3.5.140.0/22\",\n      \"region\": \"ap-northeast-2\",\n      \"service\": \"S3\"",
        "\"3.5.140.0/38\",\n      \"region\": \"ap-northeast-2\",\n      \"service\": \"S3\"",
    );
    let e = parse(&bad, None, Some(&svc(&["EC2"]))).expect_err("bad S3 entry");
    assert!(
        matches!(
            &e,
            ParseError::JsonEntry {
                list: "prefixes",
                index: 2,
                line: Some(17),
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn aws_entry_errors() {
    let e = err(
        &AWS.replace(
            "\"ipv6_prefix\": \"2600:1f14::/35\"",
            "\"ipv6_prefix\": \"18.0.0.0/8\"",
        ),
        None,
    );
    assert!(
        matches!(&e, ParseError::JsonEntry { list: "ipv6_prefixes", index: 1, line: Some(37), problem } if problem.contains("holds an IPv4 prefix")),
        "{e:?}"
    );
    let e = err(
        &AWS.replace(
            "\"ip_prefix\": \"18.34.0.0/19\"",
            "\"ipv4_prefix\": \"18.34.0.0/19\"",
        ),
        None,
    );
    assert!(
        matches!(&e, ParseError::JsonEntry { index: 3, line: Some(23), problem, .. } if problem.ends_with("has no \"ip_prefix\"")),
        "{e:?}"
    );
    let no_service = r#"{"prefixes": [{"ip_prefix": "3.2.34.0/26"}]}"#;
    assert!(
        ok(no_service, None).nets.len() == 1,
        "service only needed to filter"
    );
    let e = parse(no_service, None, Some(&svc(&["EC2"]))).expect_err("filter needs service");
    assert!(e.to_string().contains("has no \"service\""), "{e}");
    let e = parse(
        r#"{"prefixes": [{"ip_prefix": "3.2.34.0/26", "service": 1}]}"#,
        None,
        Some(&svc(&["EC2"])),
    );
    assert!(
        e.expect_err("number")
            .to_string()
            .contains("\"service\" is not a string")
    );
    let e = err(
        r#"{"prefixes": [{"ip_prefix": "3.2.34.0/26"}], "ipv6_prefixes": null}"#,
        None,
    );
    assert!(
        matches!(&e, ParseError::JsonShape { line: 1, problem, .. } if problem.contains("\"ipv6_prefixes\" is not a list")),
        "{e:?}"
    );
}

#[test]
fn services_only_for_aws() {
    let ec2 = svc(&["EC2"]);
    for (text, format) in [
        (GOOGLEBOT, None),
        (SPAMHAUS_DROP, None),
        (AWS, Some(Format::Cidr)),
    ] {
        let e = parse(text, format, Some(&ec2)).expect_err("not aws");
        assert!(matches!(e, ParseError::ServicesNotAws { .. }), "{e:?}");
    }
}
