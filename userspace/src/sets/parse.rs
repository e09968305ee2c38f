//! Parses IP-set feeds: plain CIDR lists (Spamhaus DROP, FireHOL netsets) and
//! the JSON range files of Google, Bing and AWS. Pure: text in, nets out.
//!
//! The whole feed is checked before anything is returned: the first problem
//! found is the error, and a feed with any problem yields no nets at all.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use json::{aws, google, guess_json, json};

mod json;
#[cfg(test)]
mod tests;

/// The shape of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One CIDR or address a line; comments start with `#` or `;`.
    Cidr,
    /// `{"prefixes": [{"ipv4Prefix": …}, {"ipv6Prefix": …}]}`: googlebot.json,
    /// bingbot.json and the like.
    GoogleJson,
    /// AWS's ip-ranges.json: `prefixes[].ip_prefix`, `ipv6_prefixes[].ipv6_prefix`.
    AwsJson,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Cidr, Format::GoogleJson, Format::AwsJson];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cidr => "cidr",
            Format::GoogleJson => "google-json",
            Format::AwsJson => "aws-json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is none of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a feed format — use cidr, google-json or aws-json")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Case-insensitive; surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// A parsed feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The format given, or the one told from the content.
    pub format: Format,
    /// Sorted (IPv4 first), without duplicates, host bits cleared. Empty when
    /// the feed lists nothing: valid, but worth a warning.
    pub nets: Vec<IpNet>,
    /// Entries read and kept, before duplicates were merged.
    pub entries: usize,
    /// aws-json entries left out by the service filter.
    pub filtered: usize,
}

/// Why a text is not a CIDR or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not an IPv4 or IPv6 address.
    Address,
    /// What follows `/` is not a number.
    PrefixLen,
    /// Over 32 for IPv4, over 128 for IPv6.
    PrefixTooLong { len: u16, max: u8 },
    /// `first-last`.
    Range,
    /// Starts with `{`: a JSON feed read as `cidr`.
    Json,
    /// Starts with `<`: an HTML page (an error page, a login portal).
    Html,
}

impl Reason {
    fn fix(self) -> &'static str {
        match self {
            Reason::Json | Reason::Html => "check the URL and `format`",
            _ => "fix or remove the line",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Address => f.write_str("not an IPv4 or IPv6 address"),
            Reason::PrefixLen => f.write_str("the prefix length after `/` is not a number"),
            Reason::PrefixTooLong { len, max } => write!(f, "prefix length {len} is over {max}"),
            Reason::Range => f.write_str("a range: write it as CIDRs"),
            Reason::Json => {
                f.write_str("this looks like JSON, set `format` to google-json or aws-json")
            }
            Reason::Html => f.write_str("this looks like an HTML page, not a feed"),
        }
    }
}

/// A feed that cannot be used. Quoted texts are cut to 60 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `cidr`: a line that is not a CIDR or an address.
    #[error("line {line}, column {column}: {text:?} is not a CIDR or an address ({reason}) — {}", .reason.fix())]
    NotANet {
        line: usize,
        column: usize,
        text: String,
        reason: Reason,
    },
    /// `cidr`: more text after the entry.
    #[error(
        "line {line}, column {column}: {text:?} follows {entry:?} — put one entry a line, and start comments with `#` or `;`"
    )]
    Trailing {
        line: usize,
        column: usize,
        entry: String,
        text: String,
    },
    /// Not JSON (serde_json's message, line and column).
    #[error(
        "line {line}, column {column}: broken JSON ({message}) — the feed is damaged or cut short; check the URL and fetch it again"
    )]
    JsonSyntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// JSON without the lists the format has.
    #[error("line {line}: {problem} — is this a {format} feed? check the URL and `format`")]
    JsonShape {
        format: Format,
        line: usize,
        problem: String,
    },
    /// One entry of a list (`prefixes[3]`); `line` where it starts.
    #[error("{}{list}[{index}]: {problem} — the feed is malformed; check the URL and `format`", at(.line))]
    JsonEntry {
        list: &'static str,
        index: usize,
        line: Option<usize>,
        problem: String,
    },
    /// JSON, no format given, and neither AWS's nor Google's keys.
    #[error(
        "line {line}: could not tell the format of this JSON (no \"ip_prefix\" or \"ipv6_prefixes\" as in AWS's ip-ranges.json, no \"ipv4Prefix\" or \"ipv6Prefix\" as in googlebot.json) — set `format`"
    )]
    UnknownJson { line: usize },
    /// A service filter for a feed that is not aws-json.
    #[error(
        "services: only an aws-json feed has services, and this is a {format} feed — remove `services` or set format = \"aws-json\""
    )]
    ServicesNotAws { format: Format },
    /// A filtered service that no entry has (checked when the feed has entries).
    #[error(
        "services: no entry of the feed has service {service:?} (it has {present}) — fix `services`"
    )]
    UnknownService { service: String, present: String },
}

fn at(line: &Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// Parses `text` as `format`, or as the format told from the content (see
/// [`guess`]). A UTF-8 BOM is skipped. `aws_services` keeps only the aws-json
/// entries of those services (ASCII case ignored); `Some(&[])` keeps none.
pub fn parse(
    text: &str,
    format: Option<Format>,
    aws_services: Option<&[String]>,
) -> Result<Parsed, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut value = None;
    let format = match format {
        Some(f) => f,
        None if looks_json(text) => {
            let v = json(text)?;
            let f = guess_json(text, &v)?;
            value = Some(v);
            f
        }
        None => Format::Cidr,
    };
    if format != Format::AwsJson && aws_services.is_some() {
        return Err(ParseError::ServicesNotAws { format });
    }
    let mut parsed_json = || value.take().map_or_else(|| json(text), Ok);
    let (mut nets, filtered) = match format {
        Format::Cidr => (cidr(text)?, 0),
        Format::GoogleJson => (google(text, &parsed_json()?)?, 0),
        Format::AwsJson => aws(text, &parsed_json()?, aws_services)?,
    };
    let entries = nets.len();
    nets.sort_unstable();
    nets.dedup();
    Ok(Parsed {
        format,
        nets,
        entries,
        filtered,
    })
}

/// The format of `text` when none is given: JSON (starting with `{`) with
/// `ipv6_prefixes` or an `ip_prefix` is aws-json, with `ipv4Prefix` or
/// `ipv6Prefix` google-json, else an error; anything else is cidr.
pub fn guess(text: &str) -> Result<Format, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if looks_json(text) {
        guess_json(text, &json(text)?)
    } else {
        Ok(Format::Cidr)
    }
}

fn looks_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

fn cidr(text: &str) -> Result<Vec<IpNet>, ParseError> {
    let mut nets = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let body = raw.find(['#', ';']).map_or(raw, |c| &raw[..c]);
        let lead = body.len() - body.trim_start().len();
        let Some(word) = body[lead..].split_whitespace().next() else {
            continue;
        };
        let column = |byte: usize| raw[..byte].chars().count() + 1;
        let net = net(word).map_err(|reason| ParseError::NotANet {
            line: i + 1,
            column: column(lead),
            text: clip(word),
            reason,
        })?;
        let after = lead + word.len();
        let rest = body[after..].trim_start();
        if let Some(extra) = rest.split_whitespace().next() {
            return Err(ParseError::Trailing {
                line: i + 1,
                column: column(body.len() - rest.len()),
                entry: clip(word),
                text: clip(extra),
            });
        }
        nets.push(net);
    }
    Ok(nets)
}

/// A CIDR (host bits cleared) or a bare address (/32, /128).
fn net(s: &str) -> Result<IpNet, Reason> {
    let (addr, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Err(if s.starts_with('<') {
            Reason::Html
        } else if s.starts_with('{') {
            Reason::Json
        } else if s
            .split_once('-')
            .is_some_and(|(a, b)| a.parse::<IpAddr>().is_ok() && b.parse::<IpAddr>().is_ok())
        {
            Reason::Range
        } else {
            Reason::Address
        });
    };
    let host = IpNet::from(ip);
    let Some(len) = len else { return Ok(host) };
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reason::PrefixLen);
    }
    let len: u16 = len.parse().map_err(|_| Reason::PrefixLen)?;
    let max = host.max_prefix_len();
    u8::try_from(len)
        .ok()
        .and_then(|l| IpNet::new(ip, l).ok())
        .map(|n| n.trunc())
        .ok_or(Reason::PrefixTooLong { len, max })
}

/// At most 60 characters of `s`, with `…` when cut.
fn clip(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}
