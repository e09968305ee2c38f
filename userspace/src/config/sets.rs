//! `[[set]]`: IP sets kept current from a file or a URL, used by name
//! (`"@name"`) in `allow`, `block` and a rule's `match`.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde_spanned::Spanned;

use super::{
    raw::{RawSet, S},
    validate::Validator,
};

/// Where a set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetSource {
    File(PathBuf),
    /// `http://` or `https://`.
    Url(String),
}

impl std::fmt::Display for SetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetSource::File(p) => write!(f, "file://{}", p.display()),
            SetSource::Url(u) => f.write_str(u),
        }
    }
}

/// A validated `[[set]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub source: SetSource,
    /// `cidr`, `google-json` or `aws-json`; None: told from the content.
    pub format: Option<String>,
    pub refresh: Duration,
    /// `aws-json` only: keep the prefixes of these services (None: all).
    pub services: Option<Vec<String>>,
}

/// An entry of `allow`, `block` or `match`: a CIDR or a set's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Net(IpNet),
    Set(String),
}

const FORMATS: &[&str] = &["cidr", "google-json", "aws-json"];
const REFRESH_DEFAULT: Duration = Duration::from_secs(6 * 3600);
const REFRESH_MIN: Duration = Duration::from_secs(10);

impl Validator<'_> {
    pub(super) fn sets(&mut self, raw: &[RawSet]) -> Vec<SetSpec> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let Some(name) = self.set_name(i, &s.name) else {
                continue;
            };
            if !names.insert(name.clone()) {
                if let Some(n) = &s.name {
                    self.issue(n.span(), format!("set.name: {name:?} is used by an earlier set — give every set its own name"));
                }
                continue;
            }
            let at = format!("set {name:?}: ");
            let source = self.set_source(&at, &s.source, i);
            let format = s.format.as_ref().and_then(|f| {
                let v = f.get_ref().trim().to_ascii_lowercase();
                if FORMATS.contains(&v.as_str()) {
                    Some(v)
                } else {
                    self.issue(f.span(), format!("{at}format: {:?} is not a format — use {}, or leave it out to tell from the content", f.get_ref(), FORMATS.join(", ")));
                    None
                }
            });
            let refresh = self.duration(&format!("{at}refresh"), &s.refresh, REFRESH_DEFAULT);
            if let Some(r) = &s.refresh
                && refresh < REFRESH_MIN
            {
                self.issue(
                    r.span(),
                    format!(
                        "{at}refresh: {:?} is too short — use 10s or more (e.g. \"6h\")",
                        r.get_ref()
                    ),
                );
            }
            let services = s.services.as_ref().map(|l| {
                l.iter()
                    .map(|x| x.get_ref().trim().to_owned())
                    .collect::<Vec<_>>()
            });
            if let (Some(l), Some(f)) = (&s.services, &format)
                && f != "aws-json"
                && let Some(first) = l.first()
            {
                self.issue(first.span(), format!("{at}services: only an aws-json set has services — remove it or set format = \"aws-json\""));
            }
            if let Some(source) = source {
                out.push(SetSpec {
                    name,
                    source,
                    format,
                    refresh,
                    services,
                });
            }
        }
        out
    }

    fn set_name(&mut self, i: usize, v: &S<String>) -> Option<String> {
        let Some(v) = v else {
            self.issue(
                0..0,
                format!("set #{}: has no name — add name = \"…\"", i + 1),
            );
            return None;
        };
        let n = v.get_ref().trim();
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Some(n.to_owned())
        } else {
            self.issue(v.span(), format!("set.name: {n:?} is not a set name — use letters, digits, '-', '_' and '.', at most 64"));
            None
        }
    }

    fn set_source(&mut self, at: &str, v: &S<String>, i: usize) -> Option<SetSource> {
        let Some(v) = v else {
            self.issue(
                0..0,
                format!(
                    "set #{}: has no source — add source = \"https://…\" or \"file:///…\"",
                    i + 1
                ),
            );
            return None;
        };
        let text = v.get_ref().trim();
        if let Some(path) = text.strip_prefix("file://") {
            if path.starts_with('/') {
                return Some(SetSource::File(PathBuf::from(path)));
            }
        } else if let Ok(u) = reqwest::Url::parse(text)
            && matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
        {
            return Some(SetSource::Url(u.to_string()));
        }
        self.issue(v.span(), format!("{at}source: {text:?} is not a source — write \"https://host/list.txt\", \"http://…\" or \"file:///absolute/path\""));
        None
    }

    /// An entry of `key`: a CIDR, or `@name` of a set in `sets`.
    pub(super) fn entry(
        &mut self,
        key: &str,
        v: &Spanned<String>,
        sets: &[SetSpec],
    ) -> Option<Entry> {
        let Some(name) = v.get_ref().trim().strip_prefix('@') else {
            return self.cidr(key, v).map(Entry::Net);
        };
        if sets.iter().any(|s| s.name == name) {
            Some(Entry::Set(name.to_owned()))
        } else {
            let known: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
            self.issue(
                v.span(),
                format!(
                    "{key}: no set named {name:?} — define it with [[set]] name = {name:?}{}",
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (sets: {})", known.join(", "))
                    }
                ),
            );
            None
        }
    }
}

/// Splits entries into CIDRs and set names.
pub(super) fn split(entries: Vec<Entry>) -> (Vec<IpNet>, Vec<String>) {
    let mut nets = Vec::new();
    let mut sets = Vec::new();
    for e in entries {
        match e {
            Entry::Net(n) => nets.push(n),
            Entry::Set(s) if !sets.contains(&s) => sets.push(s),
            Entry::Set(_) => {}
        }
    }
    (nets, sets)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, SetSource};

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, "t.toml").map_err(|e| match e {
            ConfigError::Invalid { issues } => issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        })
    }

    #[test]
    fn sets_are_named_where_they_are_used() {
        let c = parse("allow = [\"@bots\", \"10.0.0.0/8\"]\nblock = [\"@drop\"]\n[[set]]\nname = \"bots\"\nsource = \"https://example.net/googlebot.json\"\n[[set]]\nname = \"drop\"\nsource = \"file:///etc/floodgate/drop.txt\"\nformat = \"cidr\"\nrefresh = \"1h\"\n[[rule]]\nname = \"r\"\nmatch = [\"@drop\"]\npackets = \"5/s\"\n")
            .expect("valid");
        assert_eq!(c.allow_sets, ["bots"]);
        assert_eq!(c.allow.len(), 1);
        assert_eq!(c.block_sets, ["drop"]);
        assert_eq!(c.rules[0].match_sets, ["drop"]);
        assert!(c.rules[0].matches.is_empty());
        assert_eq!(c.sets[0].refresh.as_secs(), 6 * 3600, "the default");
        assert_eq!(
            c.sets[1].source,
            SetSource::File("/etc/floodgate/drop.txt".into())
        );
        assert_eq!(c.sets[1].format.as_deref(), Some("cidr"));
    }

    #[test]
    fn each_mistake_names_its_line_and_the_fix() {
        let cases = [
            (
                "allow = [\"@nope\"]\n",
                "t.toml:1:10: allow: no set named \"nope\" — define it with [[set]]",
            ),
            (
                "[[set]]\nname = \"a\"\nsource = \"ftp://x/y\"\n",
                "t.toml:3:10: set \"a\": source",
            ),
            (
                "[[set]]\nname = \"a b\"\nsource = \"file:///x\"\n",
                "t.toml:2:8: set.name: \"a b\" is not a set name",
            ),
            (
                "[[set]]\nname = \"a\"\nsource = \"file:///x\"\n[[set]]\nname = \"a\"\nsource = \"file:///y\"\n",
                "t.toml:5:8: set.name: \"a\" is used by an earlier set",
            ),
            (
                "[[set]]\nname = \"a\"\nsource = \"file:///x\"\nformat = \"xml\"\n",
                "t.toml:4:10: set \"a\": format: \"xml\" is not a format",
            ),
            (
                "[[set]]\nname = \"a\"\nsource = \"file:///x\"\nrefresh = \"1s\"\n",
                "t.toml:4:11: set \"a\": refresh: \"1s\" is too short",
            ),
            (
                "[[set]]\nname = \"a\"\nsource = \"file:///x\"\nformat = \"cidr\"\nservices = [\"EC2\"]\n",
                "only an aws-json set has services",
            ),
            (
                "[[set]]\nname = \"a\"\nsource = \"file://relative\"\n",
                "is not a source",
            ),
            (
                "[[set]]\nname = \"a\"\nsource = \"file:///x\"\nurl = \"y\"\n",
                "unknown field `url`",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text}\n→ {e}");
        }
    }
}
