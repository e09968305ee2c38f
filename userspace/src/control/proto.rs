//! The control protocol between the CLI and the daemon: length-delimited frames
//! (4-byte big-endian length) over the Unix socket, each a JSON envelope carrying
//! one typed request or its response. A new verb is one `Request` variant and one
//! handler arm.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use super::fleet::{CrowdsecStatus, CrowdsecUpdate, SetRow, SetUpdate};
use crate::{loader::AttachedMode, stats::Stats};

/// Bumped on incompatible changes; the daemon refuses other versions with a
/// message saying which binary to use.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts; larger ones are answered with an error.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Most rows one `top` or `bans list` reply carries (about 250 bytes each:
/// well inside a frame).
pub const MAX_TOP_ROWS: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u32,
    pub request: Request,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub version: u32,
    #[serde(flatten)]
    pub body: Response,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Error(String),
}

/// What the `top` listing is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    #[default]
    Packets,
    Bytes,
    Drops,
}

/// The global mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enforce,
    Monitor,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Request {
    Status,
    Stats,
    Top {
        n: usize,
        by: TopBy,
        prefixes: bool,
    },
    AllowAdd {
        cidr: IpNet,
    },
    AllowRemove {
        cidr: IpNet,
    },
    AllowList,
    BlockAdd {
        cidr: IpNet,
        /// Seconds; None = permanent.
        for_secs: Option<u64>,
    },
    BlockRemove {
        cidr: IpNet,
    },
    BlockList,
    BansList,
    /// Bans one address (a /32 or /128) for `for_secs` seconds, as if it had
    /// exceeded a limit: it shows in `bans list` and `bans clear` lifts it.
    BansAdd {
        addr: IpAddr,
        for_secs: u64,
    },
    /// Clears the ban of an address (and of its prefix); `None` clears all.
    BansClear {
        addr: Option<IpAddr>,
    },
    Mode {
        mode: Mode,
    },
    Reload,
    /// Removes the program from `iface` (or from every interface, then exits).
    Detach {
        iface: Option<String>,
    },
    /// From the daemon's own CrowdSec bouncer, never from the socket (see
    /// [`Request::internal`]).
    Crowdsec {
        update: CrowdsecUpdate,
    },
    /// From the daemon's own set refresher, never from the socket.
    Set {
        update: SetUpdate,
    },
    /// The `[[set]]`s: source, entries, last refresh, errors.
    SetsList,
    /// The entries of one set.
    SetsShow {
        name: String,
    },
    /// Fetches one set (or all) now.
    SetsRefresh {
        name: Option<String>,
    },
    /// Each rule, and an aggregate rule's use of its shared budget.
    Rules,
}

impl Request {
    /// Whether the request changes filtering (lists, bans, mode, policy,
    /// attachment): only admins may make it.
    pub const fn changes_state(&self) -> bool {
        !matches!(
            self,
            Request::Status
                | Request::Stats
                | Request::Top { .. }
                | Request::AllowList
                | Request::BlockList
                | Request::BansList
                | Request::SetsList
                | Request::SetsShow { .. }
                | Request::Rules
        )
    }

    /// Sent by the daemon's own tasks only: the socket refuses it.
    pub const fn internal(&self) -> bool {
        matches!(self, Request::Crowdsec { .. } | Request::Set { .. })
    }

    /// The CLI command that sends it, for messages.
    pub const fn verb(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Stats => "stats",
            Request::Top { .. } => "top",
            Request::AllowAdd { .. } => "allow add",
            Request::AllowRemove { .. } => "allow remove",
            Request::AllowList => "allow list",
            Request::BlockAdd { .. } => "block add",
            Request::BlockRemove { .. } => "block remove",
            Request::BlockList => "block list",
            Request::BansList => "bans list",
            Request::BansAdd { .. } => "bans add",
            Request::BansClear { .. } => "bans clear",
            Request::Mode { .. } => "mode",
            Request::Reload => "reload",
            Request::Detach { .. } => "detach",
            Request::Crowdsec { .. } => "crowdsec (internal)",
            Request::Set { .. } => "set (internal)",
            Request::SetsList => "sets list",
            Request::SetsShow { .. } => "sets show",
            Request::SetsRefresh { .. } => "sets refresh",
            Request::Rules => "top --rules",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Done {
        message: String,
    },
    Status(Box<Status>),
    Stats(Stats),
    Top {
        rows: Vec<TopRow>,
    },
    Rules {
        rules: Vec<RuleRow>,
    },
    List {
        entries: Vec<ListEntry>,
    },
    Bans {
        /// At most [`MAX_TOP_ROWS`], those ending last first.
        bans: Vec<BanRow>,
        /// Active bans in all (absent from older daemons' replies).
        #[serde(default)]
        total: u64,
    },
    Sets {
        sets: Vec<SetRow>,
    },
    SetEntries {
        name: String,
        /// At most [`MAX_TOP_ROWS`].
        nets: Vec<IpNet>,
        total: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub mode: Mode,
    pub interfaces: Vec<InterfaceStatus>,
    pub program_id: u32,
    pub uptime_secs: u64,
    pub config_source: String,
    pub adopted_pinned_state: bool,
    pub pin_dir: String,
    pub maps: Vec<MapFill>,
    pub source_inserts: u64,
    pub eviction_pressure: bool,
    pub events_suppressed: u64,
    pub events_lost: u64,
    /// Event log lines this daemon did not write because of the `[events] rate`
    /// limit (ban events the program held back included). Absent from older
    /// daemons' replies.
    #[serde(default)]
    pub log_lines_suppressed: u64,
    /// What the maps cost in kernel memory at their capacities. Absent from
    /// older daemons' replies.
    #[serde(default)]
    pub kernel_memory: Option<KernelMemory>,
    /// Sources and prefixes banned right now. Absent from older daemons'
    /// replies.
    #[serde(default)]
    pub active_bans: Option<u64>,
    /// The CrowdSec bouncer, when `[crowdsec]` is configured.
    #[serde(default)]
    pub crowdsec: Option<Box<CrowdsecStatus>>,
    /// The `[[set]]`s (absent from older daemons' replies).
    #[serde(default)]
    pub sets: Vec<SetRow>,
    /// The `aggregate = true` rules and their budgets' use (absent from
    /// older daemons' replies).
    #[serde(default)]
    pub aggregates: Vec<RuleRow>,
}

/// Kernel memory of the maps at their capacities (see `memory`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelMemory {
    /// Every map full, the allow, block and rule tries at their upper bound.
    pub at_capacity_bytes: u64,
    /// Allocated when the maps were created (hash maps, arrays, ring buffers).
    pub preallocated_bytes: u64,
}

impl From<&crate::memory::Estimate> for KernelMemory {
    fn from(e: &crate::memory::Estimate) -> Self {
        KernelMemory {
            at_capacity_bytes: e.total(),
            preallocated_bytes: e.preallocated(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub mode: AttachedMode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapFill {
    pub name: String,
    pub entries: u64,
    pub capacity: u64,
    /// Kernel memory of the map at capacity (an upper bound for the tries,
    /// which allocate as they fill). Absent from older daemons' replies.
    #[serde(default)]
    pub kernel_memory_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopRow {
    /// A source address, or a prefix in CIDR form with `--prefixes`.
    pub target: String,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub last_seen_secs_ago: f64,
    /// The active ban, if any.
    pub ban: Option<BanRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListEntry {
    pub cidr: IpNet,
    /// "config" (from the file), "runtime" (added with the CLI) or
    /// "crowdsec:ORIGIN" (a CrowdSec decision).
    pub origin: String,
    /// Seconds until a temporary block ends.
    pub expires_in_secs: Option<u64>,
    /// A remote decision's scenario (absent otherwise, and from older
    /// daemons' replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BanRow {
    /// The banned source (`/32`, `/128`) or prefix.
    pub target: IpNet,
    pub reason: String,
    /// Recorded in monitor mode: it drops nothing, then or later (absent from
    /// older daemons' replies).
    #[serde(default)]
    pub would_ban: bool,
    pub remaining_secs: f64,
    pub duration_secs: f64,
    pub offenses: u32,
    /// Who decided it: absent for floodgate's own bans, `crowdsec:ORIGIN`
    /// for a CrowdSec decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The remote decision's scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

/// A rule as `top --rules` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleRow {
    pub name: String,
    /// CIDRs it matches, those of its sets included.
    pub cidrs: u64,
    /// The sets in its `match` (by name, without the `@`).
    pub sets: Vec<String>,
    pub monitor: bool,
    /// An `aggregate = true` rule's shared budget and its use.
    pub aggregate: Option<AggregateUse>,
}

/// One shared budget, and how much of it is in use now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AggregateUse {
    /// Packets/s, its burst and how many of the burst are left now.
    pub packets: Option<BucketUse>,
    /// New connections/s, likewise.
    pub syn: Option<BucketUse>,
    pub quota: Option<QuotaUse>,
    /// Packets the budget admitted and refused (or would have, in monitor
    /// mode) since the budget was set.
    pub passed: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BucketUse {
    pub per_second: f64,
    pub burst: u64,
    pub left: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuotaUse {
    pub limit: u64,
    pub window_secs: u64,
    pub used: u64,
}
