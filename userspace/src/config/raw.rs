//! The file as written: every value keeps its position (`Spanned`) so errors can
//! point at it. Unknown keys are errors. Missing keys take the defaults
//! documented in `default.toml`.

use serde::Deserialize;
use serde_spanned::Spanned;

/// A value that may be written as a number or as a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumOrStr {
    Num(i64),
    Str(String),
}

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub mode: S<String>,
    pub malformed: S<String>,
    pub allow: Vec<Spanned<String>>,
    pub block: Vec<Spanned<String>>,
    pub capacity: RawCapacity,
    pub limits: RawLimits,
    pub prefix: RawPrefix,
    pub events: RawEvents,
    pub rule: Vec<RawRule>,
    pub crowdsec: Option<Spanned<RawCrowdsec>>,
    pub set: Vec<RawSet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCapacity {
    pub sources: S<i64>,
    pub prefixes: S<i64>,
    pub bans: S<i64>,
    pub lists: S<i64>,
    pub pressure: S<f64>,
    pub pressure_window: S<String>,
    pub new_source_budget: S<String>,
    pub max_memory: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEscalation {
    pub factor: S<i64>,
    pub max: S<String>,
    pub forget: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub ports: Option<Vec<Spanned<String>>>,
    pub packets: S<String>,
    pub packets_burst: S<i64>,
    pub bytes: S<String>,
    pub bytes_burst: S<NumOrStr>,
    pub syn: S<String>,
    pub syn_burst: S<i64>,
    pub quota: S<String>,
    pub ban: S<String>,
    pub ban_escalation: Option<Spanned<RawEscalation>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPrefix {
    pub ipv4: S<i64>,
    pub ipv6: S<i64>,
    pub packets: S<String>,
    pub packets_burst: S<i64>,
    pub syn: S<String>,
    pub syn_burst: S<i64>,
    pub quota: S<String>,
    pub ban: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    pub rate: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRule {
    pub name: S<String>,
    #[serde(rename = "match")]
    pub matches: Option<Spanned<Vec<Spanned<String>>>>,
    pub mode: S<String>,
    pub packets: S<String>,
    pub packets_burst: S<i64>,
    pub bytes: S<String>,
    pub bytes_burst: S<NumOrStr>,
    pub syn: S<String>,
    pub syn_burst: S<i64>,
    pub quota: S<String>,
    pub ban: S<String>,
    pub prefix_packets: S<String>,
    pub prefix_syn: S<String>,
    pub prefix_quota: S<String>,
    pub prefix_ban: S<String>,
    pub aggregate: S<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCrowdsec {
    pub lapi_url: S<String>,
    pub bouncer_key: S<String>,
    pub bouncer_key_file: S<String>,
    pub poll: S<String>,
    pub scopes: Option<Spanned<Vec<Spanned<String>>>>,
    pub origins: Option<Spanned<Vec<Spanned<String>>>>,
    pub types: Option<Spanned<Vec<Spanned<String>>>>,
    pub machine_id: S<String>,
    pub password: S<String>,
    pub password_file: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSet {
    pub name: S<String>,
    pub source: S<String>,
    pub format: S<String>,
    pub refresh: S<String>,
    pub services: Option<Vec<Spanned<String>>>,
}
