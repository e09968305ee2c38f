//! The JSON formats: google-json and aws-json, and telling them apart.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::{Format, ParseError, clip, net};

pub(super) fn guess_json(text: &str, v: &Value) -> Result<Format, ParseError> {
    let entries = v
        .get("prefixes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let has = |key: &str| entries.iter().any(|e| e.get(key).is_some());
    if v.get("ipv6_prefixes").is_some() || has("ip_prefix") {
        Ok(Format::AwsJson)
    } else if has("ipv4Prefix") || has("ipv6Prefix") {
        Ok(Format::GoogleJson)
    } else {
        Err(ParseError::UnknownJson {
            line: first_line(text),
        })
    }
}

pub(super) fn json(text: &str) -> Result<Value, ParseError> {
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        ParseError::JsonSyntax {
            line: e.line().max(1),
            column: e.column().max(1),
            message: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
        }
    })
}

fn top<'a>(text: &str, v: &'a Value, format: Format) -> Result<&'a Map<String, Value>, ParseError> {
    v.as_object().ok_or_else(|| ParseError::JsonShape {
        format,
        line: first_line(text),
        problem: "the top level is not an object".to_owned(),
    })
}

/// The list under `key`, if there is one.
fn list<'a>(
    text: &str,
    obj: &'a Map<String, Value>,
    key: &str,
    format: Format,
) -> Result<Option<&'a [Value]>, ParseError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(ParseError::JsonShape {
            format,
            line: locate(text, key, None).unwrap_or(1),
            problem: format!("{key:?} is not a list"),
        }),
    }
}

fn entry_error(text: &str, list: &'static str, index: usize, problem: String) -> ParseError {
    let line = locate(text, list, Some(index));
    ParseError::JsonEntry {
        list,
        index,
        line,
        problem,
    }
}

/// The net under `key` of an entry that is an IPv6 one or not.
fn prefix(v: &Value, key: &str, v6: bool) -> Result<IpNet, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{key:?} is not a string"))?;
    let n = net(s).map_err(|r| format!("{key:?}: {:?} is not a CIDR ({r})", clip(s)))?;
    if matches!(n, IpNet::V6(_)) != v6 {
        let family = if v6 { "an IPv4" } else { "an IPv6" };
        return Err(format!("{key:?} holds {family} prefix, {:?}", clip(s)));
    }
    Ok(n)
}

pub(super) fn google(text: &str, v: &Value) -> Result<Vec<IpNet>, ParseError> {
    let format = Format::GoogleJson;
    let Some(entries) = list(text, top(text, v, format)?, "prefixes", format)? else {
        let problem = "there is no \"prefixes\" list".to_owned();
        return Err(ParseError::JsonShape {
            format,
            line: first_line(text),
            problem,
        });
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let shown = || clip(&e.to_string());
            let r = match (e.get("ipv4Prefix"), e.get("ipv6Prefix")) {
                _ if !e.is_object() => Err(format!("{} is not an object", shown())),
                (Some(p), None) => prefix(p, "ipv4Prefix", false),
                (None, Some(p)) => prefix(p, "ipv6Prefix", true),
                (None, None) => Err(format!(
                    "{} has neither \"ipv4Prefix\" nor \"ipv6Prefix\"",
                    shown()
                )),
                (Some(_), Some(_)) => Err(format!(
                    "{} has both \"ipv4Prefix\" and \"ipv6Prefix\"",
                    shown()
                )),
            };
            r.map_err(|p| entry_error(text, "prefixes", i, p))
        })
        .collect()
}

pub(super) fn aws(
    text: &str,
    v: &Value,
    services: Option<&[String]>,
) -> Result<(Vec<IpNet>, usize), ParseError> {
    let format = Format::AwsJson;
    let obj = top(text, v, format)?;
    let v4 = list(text, obj, "prefixes", format)?;
    let v6 = list(text, obj, "ipv6_prefixes", format)?;
    if v4.is_none() && v6.is_none() {
        let problem = "there is neither a \"prefixes\" nor an \"ipv6_prefixes\" list".to_owned();
        return Err(ParseError::JsonShape {
            format,
            line: first_line(text),
            problem,
        });
    }
    let (mut nets, mut filtered, mut present) = (Vec::new(), 0, BTreeSet::new());
    let lists = [
        ("prefixes", "ip_prefix", false, v4),
        ("ipv6_prefixes", "ipv6_prefix", true, v6),
    ];
    for (name, key, is_v6, entries) in lists {
        for (i, e) in entries.unwrap_or_default().iter().enumerate() {
            let fail = |p: String| entry_error(text, name, i, p);
            if !e.is_object() {
                return Err(fail(format!("{} is not an object", clip(&e.to_string()))));
            }
            let p = e
                .get(key)
                .ok_or_else(|| fail(format!("{} has no {key:?}", clip(&e.to_string()))))?;
            let n = prefix(p, key, is_v6).map_err(fail)?;
            let Some(wanted) = services else {
                nets.push(n);
                continue;
            };
            let service = match e.get("service") {
                Some(Value::String(s)) => s,
                Some(_) => return Err(fail("\"service\" is not a string".to_owned())),
                None => return Err(fail(format!("{} has no \"service\"", clip(&e.to_string())))),
            };
            present.insert(service.as_str());
            if wanted
                .iter()
                .any(|w| w.trim().eq_ignore_ascii_case(service))
            {
                nets.push(n);
            } else {
                filtered += 1;
            }
        }
    }
    if let Some(wanted) = services.filter(|_| !present.is_empty()) {
        let known = |w: &String| present.iter().any(|p| p.eq_ignore_ascii_case(w.trim()));
        if let Some(w) = wanted.iter().find(|w| !known(w)) {
            let present = present.into_iter().collect::<Vec<_>>().join(", ");
            return Err(ParseError::UnknownService {
                service: w.clone(),
                present,
            });
        }
    }
    Ok((nets, filtered))
}

/// The line of the first character that is not whitespace.
fn first_line(text: &str) -> usize {
    line_of(text, text.len() - text.trim_start().len())
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// In JSON that serde_json accepted: the line of the top-level key `key`
/// (`index` None) or of the `index`-th element of its list. The last such key
/// counts, as in serde_json. Keys are compared unescaped.
pub(super) fn locate(text: &str, key: &str, index: Option<usize>) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut depth, mut found) = (0, 0usize, None);
    let (mut last_key, mut inside, mut want, mut count) = ("", false, false, 0);
    while i < b.len() {
        let c = b[i];
        if inside && want && depth == 2 && !c.is_ascii_whitespace() && c != b']' {
            if index == Some(count) {
                found = Some(i);
            }
            (want, count) = (false, count + 1);
        }
        match c {
            b'"' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                let s = text.get(start..i).unwrap_or_default();
                let rest = text.get(i + 1..).unwrap_or_default();
                if depth == 1 && rest.trim_start().starts_with(':') {
                    last_key = s;
                    if index.is_none() && s == key {
                        found = Some(start);
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 2 && c == b'[' && last_key == key {
                    (inside, want, count) = (true, true, 0);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                inside &= depth >= 2;
            }
            b',' if inside && depth == 2 => want = true,
            _ => {}
        }
        i += 1;
    }
    found.map(|at| line_of(text, at))
}
