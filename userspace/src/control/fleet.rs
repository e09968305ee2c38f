//! What the daemon's own tasks (the CrowdSec bouncer and watcher, the set
//! refresher) tell the engine, and what `status` and `sets list` say of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fleet::crowdsec::decision::Batch;

/// What the set refresher tells the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SetUpdate {
    /// A new, whole and valid copy: apply it, then keep it.
    Loaded {
        name: String,
        cached: crate::sets::cache::Cached,
    },
    /// The server said the copy held is current.
    Unchanged { name: String, fetched_unix: u64 },
    /// Fetching or parsing failed: the copy held stays.
    Failed { name: String, error: String },
}

/// A set as `sets list` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SetRow {
    pub name: String,
    pub source: String,
    /// As configured (None: told from the content).
    pub format: Option<String>,
    pub refresh_secs: u64,
    /// Entries of the copy enforced (0 before the first good fetch).
    pub entries: u64,
    /// Unix time of the last successful fetch (a change or a 304).
    pub last_refresh_unix: Option<u64>,
    /// Why the last fetch failed, when it did.
    pub last_error: Option<String>,
    /// Failed fetches since the daemon started.
    pub errors: u64,
    /// Where it is used: `allow`, `block`, `rule NAME`.
    pub used_in: Vec<String>,
}

/// What the bouncer tells the engine after each pull.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CrowdsecUpdate {
    /// A pull's decisions, to apply as one transaction.
    Pulled { batch: Batch },
    /// A pull failed; `auth`: the key was refused or unreadable.
    Failed { error: String, auth: bool },
    /// The watcher's state after a send: alerts sent since the start,
    /// waiting, dropped from a full queue; why the last send failed.
    Watcher {
        up: bool,
        sent: u64,
        queued: u64,
        dropped: u64,
        error: Option<String>,
    },
}

/// The bouncer's state, for `status` and the metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CrowdsecStatus {
    pub lapi_url: String,
    /// The last pull succeeded.
    pub up: bool,
    /// Unix time of the last successful pull.
    pub last_pull_unix: Option<u64>,
    /// Why the last pull failed, while down.
    pub last_error: Option<String>,
    /// The key was refused (or unreadable): retrying will not fix it.
    pub auth_failed: bool,
    /// Failed pulls since the daemon started.
    pub failures: u64,
    /// Decisions held, by their origin (`crowdsec`, `cscli`, `CAPI`, …).
    pub decisions: BTreeMap<String, u64>,
    /// Addresses enforced as source bans, and networks as block entries.
    pub bans: u64,
    pub blocks: u64,
    /// Decisions skipped on purpose since the start, by why (`type:captcha`).
    pub ignored: BTreeMap<String, u64>,
    /// Decisions skipped because a value or duration did not parse.
    pub invalid: u64,
    /// The watcher (with `machine_id`): its last send succeeded (None:
    /// off, or nothing sent yet).
    #[serde(default)]
    pub watcher_up: Option<bool>,
    #[serde(default)]
    pub watcher_error: Option<String>,
    /// floodgate's bans sent as alerts since the start, waiting to be sent,
    /// and dropped (a full queue, or more at once than the daemon could hand
    /// over).
    #[serde(default)]
    pub alerts_sent: u64,
    #[serde(default)]
    pub alerts_queued: u64,
    #[serde(default)]
    pub alerts_dropped: u64,
}
