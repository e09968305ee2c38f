//! `[crowdsec]`: floodgate as a bouncer of a CrowdSec Local API.

use std::{path::PathBuf, time::Duration};

use serde_spanned::Spanned;

use super::{
    raw::{RawCrowdsec, S},
    validate::Validator,
};

/// Where the bouncer's API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Inline(String),
    /// Read when the bouncer starts (and again on every reconnect), so a
    /// rotated key is picked up without a reload.
    File(PathBuf),
}

/// A validated `[crowdsec]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrowdsecConfig {
    /// The LAPI's base URL, ending in `/`.
    pub lapi_url: String,
    pub key: KeySource,
    /// How often deltas are pulled.
    pub poll: Duration,
    /// Lowercase decision scopes to apply (`ip`, `range`).
    pub scopes: Vec<String>,
    /// Origins to apply (`crowdsec`, `cscli`, `CAPI`, `lists`, …); empty:
    /// every origin.
    pub origins: Vec<String>,
    /// Lowercase decision types to apply; the others are ignored and counted.
    pub types: Vec<String>,
    /// floodgate's own bans go to the LAPI as alerts (None: they don't).
    pub watcher: Option<WatcherConfig>,
}

/// The watcher's login: a machine added with `cscli machines add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherConfig {
    pub machine_id: String,
    pub password: KeySource,
}

const SCOPES: &[&str] = &["ip", "range"];
const POLL_DEFAULT: Duration = Duration::from_secs(10);

impl CrowdsecConfig {
    /// A config with the defaults and an inline key, for tests.
    pub fn for_tests(lapi_url: &str) -> CrowdsecConfig {
        CrowdsecConfig {
            lapi_url: lapi_url.to_owned(),
            key: KeySource::Inline("test".to_owned()),
            poll: POLL_DEFAULT,
            scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            origins: Vec::new(),
            types: vec!["ban".to_owned()],
            watcher: None,
        }
    }
}

impl Validator<'_> {
    pub(super) fn crowdsec(&mut self, raw: &Spanned<RawCrowdsec>) -> Option<CrowdsecConfig> {
        let section = raw.span();
        let raw = raw.get_ref();
        let lapi_url = self.lapi_url(&raw.lapi_url, section.clone());
        let key = match (&raw.bouncer_key, &raw.bouncer_key_file) {
            (Some(k), None) if !k.get_ref().trim().is_empty() => {
                Some(KeySource::Inline(k.get_ref().trim().to_owned()))
            }
            (None, Some(f)) if f.get_ref().starts_with('/') => {
                Some(KeySource::File(PathBuf::from(f.get_ref())))
            }
            (None, Some(f)) => {
                self.issue(f.span(), format!("crowdsec.bouncer_key_file: {:?} is not an absolute path — write the full path of the file `cscli bouncers add` wrote the key to", f.get_ref()));
                None
            }
            (Some(k), Some(_)) => {
                self.issue(
                    k.span(),
                    "crowdsec: both bouncer_key and bouncer_key_file are set — keep one".to_owned(),
                );
                None
            }
            (Some(k), None) => {
                self.issue(k.span(), "crowdsec.bouncer_key: empty — paste the key `cscli bouncers add floodgate` printed".to_owned());
                None
            }
            (None, None) => {
                self.issue(section.clone(), "crowdsec: no bouncer key — set bouncer_key_file (or bouncer_key) to the key `cscli bouncers add floodgate` printed".to_owned());
                None
            }
        };
        let poll = self.duration("crowdsec.poll", &raw.poll, POLL_DEFAULT);
        if let Some(p) = &raw.poll
            && !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&poll)
        {
            self.issue(
                p.span(),
                format!(
                    "crowdsec.poll: {:?} is out of range — use 1s to 1h (e.g. \"10s\")",
                    p.get_ref()
                ),
            );
        }
        let scopes = match &raw.scopes {
            None => SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            Some(list) => self.words("crowdsec.scopes", list, Some(SCOPES)),
        };
        let types = match &raw.types {
            None => vec!["ban".to_owned()],
            Some(list) => self.words("crowdsec.types", list, None),
        };
        let origins = raw.origins.as_ref().map_or_else(Vec::new, |list| {
            list.get_ref()
                .iter()
                .map(|o| o.get_ref().trim().to_owned())
                .collect()
        });
        let watcher = self.watcher(raw, section);
        Some(CrowdsecConfig {
            lapi_url: lapi_url?,
            key: key?,
            poll,
            scopes,
            origins,
            types,
            watcher: watcher?,
        })
    }

    /// `machine_id` with `password` or `password_file`: Some(None) when the
    /// watcher is off, None when the keys are wrong.
    fn watcher(
        &mut self,
        raw: &RawCrowdsec,
        section: std::ops::Range<usize>,
    ) -> Option<Option<WatcherConfig>> {
        let Some(id) = &raw.machine_id else {
            if let Some(p) = raw.password.as_ref().or(raw.password_file.as_ref()) {
                self.issue(p.span(), "crowdsec: a watcher password without machine_id — add the machine_id `cscli machines add` was given".to_owned());
                return None;
            }
            return Some(None);
        };
        if id.get_ref().trim().is_empty() {
            self.issue(
                id.span(),
                "crowdsec.machine_id: empty — write the name given to `cscli machines add`"
                    .to_owned(),
            );
            return None;
        }
        let password = match (&raw.password, &raw.password_file) {
            (Some(p), None) if !p.get_ref().is_empty() => KeySource::Inline(p.get_ref().clone()),
            (None, Some(f)) if f.get_ref().starts_with('/') => {
                KeySource::File(PathBuf::from(f.get_ref()))
            }
            (None, Some(f)) => {
                self.issue(f.span(), format!("crowdsec.password_file: {:?} is not an absolute path — write the file's full path", f.get_ref()));
                return None;
            }
            (Some(p), Some(_)) => {
                self.issue(
                    p.span(),
                    "crowdsec: both password and password_file are set — keep one".to_owned(),
                );
                return None;
            }
            _ => {
                self.issue(section, "crowdsec: machine_id without a password — set password_file (or password) to the machine's password".to_owned());
                return None;
            }
        };
        Some(Some(WatcherConfig {
            machine_id: id.get_ref().trim().to_owned(),
            password,
        }))
    }

    fn lapi_url(&mut self, v: &S<String>, section: std::ops::Range<usize>) -> Option<String> {
        let Some(v) = v else {
            self.issue(section, "crowdsec: no lapi_url — set it to the Local API's address, e.g. \"http://127.0.0.1:8080/\"".to_owned());
            return None;
        };
        match reqwest::Url::parse(v.get_ref().trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                let mut s = u.to_string();
                if !s.ends_with('/') {
                    s.push('/');
                }
                Some(s)
            }
            _ => {
                self.issue(v.span(), format!("crowdsec.lapi_url: {:?} is not an http:// or https:// URL — write it like \"http://127.0.0.1:8080/\"", v.get_ref()));
                None
            }
        }
    }

    /// A non-empty list of lowercase words, each one of `known` when given.
    fn words(
        &mut self,
        key: &str,
        list: &Spanned<Vec<Spanned<String>>>,
        known: Option<&[&str]>,
    ) -> Vec<String> {
        if list.get_ref().is_empty() {
            self.issue(
                list.span(),
                format!("{key}: empty — leave it out for the default"),
            );
        }
        let mut out = Vec::new();
        for w in list.get_ref() {
            let word = w.get_ref().trim().to_ascii_lowercase();
            match known {
                Some(k) if !k.contains(&word.as_str()) => self.issue(
                    w.span(),
                    format!(
                        "{key}: {:?} is not supported — use {}",
                        w.get_ref(),
                        k.join(" or ")
                    ),
                ),
                _ if word.is_empty() => {
                    self.issue(w.span(), format!("{key}: an empty entry — remove it"));
                }
                _ => out.push(word),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, CrowdsecConfig, KeySource};

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
    fn a_section_with_defaults() {
        let c = parse("[crowdsec]\nlapi_url = \"http://198.18.0.1:8080\"\nbouncer_key_file = \"/etc/floodgate/cs.key\"\n")
            .expect("valid");
        let cs = c.crowdsec.expect("configured");
        assert_eq!(
            cs,
            CrowdsecConfig {
                lapi_url: "http://198.18.0.1:8080/".to_owned(),
                key: KeySource::File("/etc/floodgate/cs.key".into()),
                ..CrowdsecConfig::for_tests("x")
            }
        );
        assert!(parse("").expect("valid").crowdsec.is_none());
        let w = parse("[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\nmachine_id = \"edge-1\"\npassword_file = \"/etc/p\"\n")
            .expect("valid");
        assert_eq!(
            w.crowdsec.and_then(|c| c.watcher),
            Some(crate::config::WatcherConfig {
                machine_id: "edge-1".to_owned(),
                password: KeySource::File("/etc/p".into()),
            })
        );
    }

    #[test]
    fn each_mistake_names_its_line_and_the_fix() {
        let cases = [
            (
                "[crowdsec]\nlapi_url = \"ftp://x\"\nbouncer_key = \"k\"\n",
                "t.toml:2:12: crowdsec.lapi_url",
            ),
            ("[crowdsec]\nlapi_url = \"http://x/\"\n", "no bouncer key"),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\nbouncer_key_file = \"/k\"\n",
                "t.toml:3:15: crowdsec: both",
            ),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key_file = \"k\"\n",
                "not an absolute path",
            ),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\nscopes = [\"ip\", \"country\"]\n",
                "t.toml:4:17: crowdsec.scopes: \"country\" is not supported — use ip or range",
            ),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\npoll = \"0s\"\n",
                "t.toml:4:8: crowdsec.poll",
            ),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\ntypes = []\n",
                "crowdsec.types: empty",
            ),
            ("[crowdsec]\nlapi = \"http://x/\"\n", "unknown field `lapi`"),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\nmachine_id = \"e\"\n",
                "machine_id without a password",
            ),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\npassword = \"p\"\n",
                "t.toml:4:12: crowdsec: a watcher password without machine_id",
            ),
            (
                "[crowdsec]\nlapi_url = \"http://x/\"\nbouncer_key = \"k\"\nmachine_id = \"e\"\npassword_file = \"p\"\n",
                "crowdsec.password_file: \"p\" is not an absolute path",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text}\n→ {e}");
        }
    }
}
