//! The configuration file (TOML, human units). Validation is complete before
//! anything is applied: every problem is reported at once as
//! `FILE:LINE:COL: what is wrong — how to fix it`.

mod aggregate;
mod crowdsec;
mod defaults;
mod fields;
mod fit;
mod raw;
mod sets;
pub mod units;
mod validate;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;

pub use crowdsec::{CrowdsecConfig, KeySource, WatcherConfig};
use raw::RawConfig;
pub use sets::{SetSource, SetSpec};
pub use units::RateSpec;
use validate::Validator;

const DEFAULT_TOML: &str = include_str!("default.toml");
/// The smallest byte burst: one maximum-size IP packet must always fit.
pub const MIN_BYTES_BURST: u64 = 65_536;

/// One rate limit: a rate (None = off) and its burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate: Option<RateSpec>,
    pub burst: u64,
}

/// A long-window quota: `limit` packets per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSpec {
    pub limit: u64,
    pub window: Duration,
}

/// Per-source limits (the `[limits]` table, or a rule's overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLimits {
    pub packets: Limit,
    pub bytes: Limit,
    pub syn: Limit,
    pub quota: Option<QuotaSpec>,
    /// Zero: drop only the excess.
    pub ban: Duration,
}

/// Per-prefix limits (the `[prefix]` table, or a rule's `prefix_*` overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixLimits {
    pub packets: Limit,
    pub syn: Limit,
    pub quota: Option<QuotaSpec>,
    pub ban: Duration,
}

/// A port/protocol the limits apply to; `port` None = every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// IP protocol number.
    pub proto: u8,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    pub factor: u32,
    pub max: Duration,
    pub forget: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub sources: u32,
    pub prefixes: u32,
    pub bans: u32,
    pub lists: u32,
    pub pressure: f64,
    /// Eviction pressure: `pressure × sources` first-seen sources within this.
    pub pressure_window: Duration,
    pub new_source_budget: Option<RateSpec>,
    /// Largest share (0 to 1) of the host's available memory the maps may need
    /// at these capacities; None ("off"): no check.
    pub max_memory: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matches: Vec<IpNet>,
    /// Sets (`"@name"` in `match`) whose entries the rule matches too.
    pub match_sets: Vec<String>,
    /// The rule's own mode; global monitor mode still applies to every rule.
    pub monitor: bool,
    /// Each address's own limits (for an aggregate rule, `[limits]` with the
    /// rule's `bytes` and `ban`).
    pub limits: SourceLimits,
    pub prefix: PrefixLimits,
    /// `aggregate = true`: the budget everything the rule matches shares.
    pub aggregate: Option<AggregateLimits>,
}

/// An aggregate rule's shared budget (each kind off when unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateLimits {
    pub packets: Limit,
    pub syn: Limit,
    pub quota: Option<QuotaSpec>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub monitor: bool,
    pub drop_malformed: bool,
    pub allow: Vec<IpNet>,
    pub block: Vec<IpNet>,
    pub capacity: Capacity,
    pub ports: Vec<PortSpec>,
    pub limits: SourceLimits,
    pub escalation: Escalation,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub prefix: PrefixLimits,
    pub event_rate: Option<RateSpec>,
    pub rules: Vec<Rule>,
    /// `[crowdsec]`: the bouncer of a CrowdSec Local API (None: off).
    pub crowdsec: Option<CrowdsecConfig>,
    /// `[[set]]`s, in file order.
    pub sets: Vec<SetSpec>,
    /// Sets named in `allow` and `block` (`"@name"`).
    pub allow_sets: Vec<String>,
    pub block_sets: Vec<String>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}; check the path given to --config")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { issues: Vec<ConfigIssue> },
}

impl Default for Config {
    /// The embedded default policy.
    fn default() -> Config {
        // Tested to parse (see tests); an empty file means the same defaults.
        Config::from_toml(DEFAULT_TOML, "default.toml")
            .unwrap_or_else(|_| Config::from_raw_defaults())
    }
}

impl Config {
    /// The embedded default policy, documented, as printed by `floodgate config default`.
    pub fn default_toml() -> &'static str {
        DEFAULT_TOML
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        let mut v = Validator {
            file: source.to_owned(),
            text,
            issues: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let fix = if e.message().contains("unknown field") {
                    " — remove it or fix its spelling (see `floodgate config default`)"
                } else {
                    " — fix the TOML syntax"
                };
                v.issue(span, format!("{}{fix}", e.message().trim_end()));
                return Err(ConfigError::Invalid { issues: v.issues });
            }
        };
        let config = v.config(&raw);
        // In file order, whatever order the checks ran in.
        v.issues.sort_by_key(|i| (i.line, i.col));
        if v.issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { issues: v.issues })
        }
    }

    fn from_raw_defaults() -> Config {
        let mut v = Validator {
            file: String::new(),
            text: "",
            issues: Vec::new(),
        };
        v.config(&RawConfig::default())
    }

    pub fn mode_monitor(&self) -> bool {
        self.monitor
    }

    pub fn allow(&self) -> &[IpNet] {
        &self.allow
    }

    pub fn block(&self) -> &[IpNet] {
        &self.block
    }
}

#[cfg(test)]
mod tests;
