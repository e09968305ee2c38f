//! The `cidr` format.

use super::*;

// ---- cidr ----

#[test]
fn spamhaus_drop() {
    let p = ok(SPAMHAUS_DROP, None);
    assert_eq!(p.format, Format::Cidr);
    assert_eq!(
        p.nets,
        nets(&[
            "1.10.16.0/20",
            "1.19.0.0/16",
            "1.32.128.0/18",
            "2.56.192.0/22",
            "5.134.128.0/19"
        ])
    );
    assert_eq!((p.entries, p.filtered), (5, 0));
    let p = ok(SPAMHAUS_DROP_V6, Some(Format::Cidr));
    assert_eq!(
        p.nets,
        nets(&["2001:678:738::/48", "2a06:e480::/29", "2a07:9b80::/29"])
    );
}

#[test]
fn firehol_netset_with_bare_address() {
    let p = ok(FIREHOL_NETSET, None);
    assert_eq!(p.entries, 7);
    assert!(p.nets.contains(&n("31.184.253.37/32")));
    assert_eq!(p.nets.first(), Some(&n("0.0.0.0/8")));
    assert_eq!(p.nets.last(), Some(&n("224.0.0.0/3")));
}

#[test]
fn bare_addresses_are_hosts() {
    let p = ok("192.0.2.7\n2001:db8::1\n::ffff:192.0.2.1\n", None);
    assert_eq!(
        p.nets,
        nets(&["192.0.2.7/32", "::ffff:192.0.2.1/128", "2001:db8::1/128"])
    );
}

#[test]
fn host_bits_widen_to_the_network() {
    let p = ok(
        "198.51.100.7/24\n2001:db8::1/32\n10.1.2.3/0\n192.0.2.9/32\n",
        None,
    );
    assert_eq!(
        p.nets,
        nets(&[
            "0.0.0.0/0",
            "192.0.2.9/32",
            "198.51.100.0/24",
            "2001:db8::/32"
        ])
    );
}

#[test]
fn sorted_and_deduplicated_ipv4_first() {
    let p = ok(
        "2001:db8::/32\n192.0.2.9/24\n10.0.0.0/8\n192.0.2.0/24\n10.0.0.0/8\n",
        None,
    );
    assert_eq!(
        p.nets,
        nets(&["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"])
    );
    assert_eq!(p.entries, 5);
}

#[test]
fn comments_whitespace_crlf_and_bom() {
    let text = "\u{feff}# header\r\n\r\n  192.0.2.0/24  \r\n\t198.51.100.0/24\t; SBL1\r\n203.0.113.0/24#no space\r\n2001:db8::/32;x # y ; z\r\n   ; indented\r\n \t \r\n";
    let p = ok(text, None);
    assert_eq!(
        p.nets,
        nets(&[
            "192.0.2.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "2001:db8::/32"
        ])
    );
    // No final newline, a lone `\r` before it.
    assert_eq!(ok("192.0.2.1\r", None).nets, nets(&["192.0.2.1/32"]));
}

#[test]
fn empty_feeds_are_valid_and_empty() {
    for text in ["", "\n\n", "# nothing\n; at all\n", "\u{feff}", "   \r\n"] {
        let p = ok(text, None);
        assert_eq!(
            (p.format, p.nets.is_empty(), p.entries),
            (Format::Cidr, true, 0),
            "{text:?}"
        );
    }
    let p = ok(r#"{"prefixes": []}"#, Some(Format::GoogleJson));
    assert!(p.nets.is_empty());
    let p = ok(r#"{"prefixes": [], "ipv6_prefixes": []}"#, None);
    assert_eq!((p.format, p.nets.len()), (Format::AwsJson, 0));
}

#[test]
fn not_a_net_names_line_column_and_fix() {
    let text = "# 1\n; 2\n\n10.0.0.0/8\n   1.2.3.4/33 ; SBL\n999.0.0.0/8\n";
    let e = err(text, None);
    let want = ParseError::NotANet {
        line: 5,
        column: 4,
        text: "1.2.3.4/33".to_owned(),
        reason: Reason::PrefixTooLong { len: 33, max: 32 },
    };
    assert_eq!(e, want, "the first error wins");
    assert_eq!(
        e.to_string(),
        "line 5, column 4: \"1.2.3.4/33\" is not a CIDR or an address \
         (prefix length 33 is over 32) — fix or remove the line"
    );
}

#[test]
fn every_reason() {
    let cases = [
        ("999.0.0.0/8", Reason::Address),
        ("example.com", Reason::Address),
        ("/24", Reason::Address),
        ("fe80::1%eth0", Reason::Address),
        ("010.0.0.1", Reason::Address),
        ("10.0.0.0/", Reason::PrefixLen),
        ("10.0.0.0/x", Reason::PrefixLen),
        ("10.0.0.0/+8", Reason::PrefixLen),
        ("10.0.0.0/8/9", Reason::PrefixLen),
        ("10.0.0.0/1000", Reason::PrefixLen),
        (
            "2001:db8::/129",
            Reason::PrefixTooLong { len: 129, max: 128 },
        ),
        ("10.0.0.0/999", Reason::PrefixTooLong { len: 999, max: 32 }),
        ("192.0.2.0-192.0.2.255", Reason::Range),
        ("{\"prefixes\":", Reason::Json),
        ("<!DOCTYPE", Reason::Html),
    ];
    for (text, reason) in cases {
        let line = format!("192.0.2.0/24\r\n{text}\r\n");
        match err(&line, Some(Format::Cidr)) {
            ParseError::NotANet {
                line: 2,
                column: 1,
                text: t,
                reason: r,
            } => {
                assert_eq!((t.as_str(), r), (text, reason));
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let e = err("<html><body>502 Bad Gateway</body></html>\n", None);
    assert!(
        e.to_string()
            .ends_with("(this looks like an HTML page, not a feed) — check the URL and `format`"),
        "{e}"
    );
}

#[test]
fn cidr_format_on_json_hints_at_format() {
    let e = err(GOOGLEBOT, Some(Format::Cidr));
    assert!(
        matches!(
            e,
            ParseError::NotANet {
                line: 1,
                reason: Reason::Json,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn trailing_text() {
    let e = err("192.0.2.0/24\n  198.51.100.0/24   SBL123 ; x\n", None);
    let want = ParseError::Trailing {
        line: 2,
        column: 21,
        entry: "198.51.100.0/24".to_owned(),
        text: "SBL123".to_owned(),
    };
    assert_eq!(e, want);
    assert!(
        e.to_string().contains("start comments with `#` or `;`"),
        "{e}"
    );
}

#[test]
fn columns_count_characters() {
    let e = err("\u{a0}é 1", None);
    assert!(matches!(e, ParseError::NotANet { column: 2, .. }), "{e:?}");
}

#[test]
fn long_texts_are_cut() {
    let long = "x".repeat(200);
    let ParseError::NotANet { text, .. } = err(&long, None) else {
        panic!()
    };
    assert_eq!(text.chars().count(), 61);
    assert!(text.ends_with('…'));
    assert!(err(&long, None).to_string().len() < 200);
}
