//! The daemon's state and its requests: `dispatch` answers each verb; the
//! plan (`plan`) is the one place changes reach the maps; `lifecycle` starts,
//! adopts and detaches; `bans` and `queries` hold what those verbs do.

mod bans;
mod crowdsec;
mod lifecycle;
mod plan;
pub mod queries;
mod remote;
mod rules;
mod sets;

pub use sets::{SetState, load_sets, nets_of};

pub use lifecycle::remove_pins;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use tracing::{info, warn};

use super::{
    DaemonError,
    loglimit::{Kind, LogLimiter},
    reader::Reader,
    remote::Remote,
    runtime::{Runtime, unix_now},
};
use crate::{
    config::{Config, CrowdsecConfig},
    control::proto::{CrowdsecStatus, InterfaceStatus, ListEntry, Mode, Reply, Request, Response},
    loader::Floodgate,
    policy::Compiled,
    stats::Stats,
};

const SECOND: u64 = 1_000_000_000;

/// What the set refresher follows: the live `[[set]]`s, and requests for a
/// refresh now (of one set, or of all: None).
pub type RefresherInputs = (
    tokio::sync::watch::Receiver<Vec<crate::config::SetSpec>>,
    tokio::sync::mpsc::Receiver<Option<String>>,
);

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        u64::try_from(ts.tv_sec()).unwrap_or(0) * SECOND + u64::try_from(ts.tv_nsec()).unwrap_or(0)
    })
}

/// What the main loop should do after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    /// Every interface was detached: exit.
    Exit,
}

pub struct Engine {
    pub fg: Floodgate,
    pin_dir: PathBuf,
    state_dir: PathBuf,
    config_path: Option<PathBuf>,
    config: Config,
    compiled: Compiled,
    runtime: Runtime,
    interfaces: Vec<InterfaceStatus>,
    started: Instant,
    /// First slot of the half of `POLICIES` the live rules point into (0 or
    /// `POLICY_HALF`); the next apply writes the other half.
    live_policies: u32,
    /// Rate limit on event log lines; shared with the logger of the program's
    /// own records (see `ProgramLog`).
    pub logs: Arc<Mutex<LogLimiter>>,
    /// `GlobalState::events_suppressed` when last read: its growth is ban log
    /// lines the program held back, counted into `logs`.
    kernel_suppressed_seen: u64,
    /// The maps' own descriptors, for the walks run off the loop.
    pub reader: Arc<Reader>,
    /// The CrowdSec decisions enforced (see `daemon::remote`).
    remote: Remote,
    /// The bouncer's state while `[crowdsec]` is configured.
    crowdsec: Option<CrowdsecStatus>,
    /// The live `[crowdsec]` section, watched by the bouncer task.
    crowdsec_config: tokio::sync::watch::Sender<Option<CrowdsecConfig>>,
    /// floodgate's own bans the watcher sent, with their end (Unix
    /// seconds): their decisions coming back through the stream are no-ops.
    own: std::collections::BTreeMap<ipnet::IpNet, u64>,
    /// Alerts the watcher's channel had no room for.
    alerts_handoff_dropped: u64,
    /// The `[[set]]`s' enforced copies.
    sets: std::collections::BTreeMap<String, SetState>,
    /// The live `[[set]]`s, watched by the refresher task.
    set_specs: tokio::sync::watch::Sender<Vec<crate::config::SetSpec>>,
    /// Asks the refresher for a refresh now (one set, or all).
    set_refresh: tokio::sync::mpsc::Sender<Option<String>>,
    set_refresh_rx: Option<tokio::sync::mpsc::Receiver<Option<String>>>,
}

impl Engine {
    /// The `[crowdsec]` section of the live config, as the bouncer task
    /// follows it (a reload that changes it restarts the bouncer).
    pub fn crowdsec_config(&self) -> tokio::sync::watch::Receiver<Option<CrowdsecConfig>> {
        self.crowdsec_config.subscribe()
    }

    /// The refresher's inputs: the live `[[set]]`s and the refresh requests
    /// (taken once, by the task that runs it).
    pub fn set_refresher_inputs(&mut self) -> Option<RefresherInputs> {
        Some((self.set_specs.subscribe(), self.set_refresh_rx.take()?))
    }

    /// True when a log line of `kind` may be written now (see `LogLimiter`).
    pub fn log_allowed(&self, kind: Kind) -> bool {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(kind, Instant::now())
    }

    /// Periodic work: ends temporary blocks, reports suppressed log lines.
    pub fn tick(&mut self) {
        self.report_suppressed();
        self.expire_remote();
        let before = self.runtime.clone();
        if self.runtime.expire(unix_now()) {
            if let Err(e) = self.runtime.save(&self.state_dir) {
                warn!(error = %e, "saving runtime state");
            }
            if let Err(e) = self.apply_runtime(&before) {
                warn!(error = %e, "removing expired blocks");
            }
        }
    }

    /// Counts the ban events the program held back since the last look, and
    /// logs the summary of suppressed lines when one is due.
    fn report_suppressed(&mut self) {
        let kernel = self.fg.global_state().map_or(0, |g| g.events_suppressed);
        let new = kernel.saturating_sub(self.kernel_suppressed_seen);
        self.kernel_suppressed_seen = self.kernel_suppressed_seen.max(kernel);
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.suppressed(Kind::Ban, new);
        if let Some(s) = logs.summary(Instant::now()) {
            warn!(
                event = "log_suppressed",
                suppressed = s.suppressed,
                kinds = s.to_string(),
                total = logs.total(),
                "suppressed {} log lines (over the [events] rate limit)",
                s.suppressed
            );
        }
    }

    /// Log lines suppressed since the daemon started, the program's held-back
    /// ban events included (also those since the last tick).
    fn log_lines_suppressed(&self, kernel_now: u64) -> u64 {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.total() + kernel_now.saturating_sub(self.kernel_suppressed_seen)
    }

    pub fn handle(&mut self, request: Request) -> (Response, After) {
        match self.dispatch(request) {
            Ok((reply, after)) => (Response::Ok(reply), after),
            Err(e) => (Response::Error(e.to_string()), After::Continue),
        }
    }

    fn done(message: impl Into<String>) -> Result<(Reply, After), DaemonError> {
        Ok((
            Reply::Done {
                message: message.into(),
            },
            After::Continue,
        ))
    }

    fn dispatch(&mut self, request: Request) -> Result<(Reply, After), DaemonError> {
        match request {
            walk @ (Request::Status | Request::Top { .. } | Request::BansList) => {
                Ok((self.query_now(&walk)?, After::Continue))
            }
            Request::Stats => {
                let counters = self.fg.counters()?;
                let names = self.fg.iface_names()?;
                Ok((
                    Reply::Stats(
                        Stats::from_counters(&counters, self.mode() == Mode::Monitor)
                            .with_interfaces(&counters, &names),
                    ),
                    After::Continue,
                ))
            }
            Request::AllowAdd { cidr } => {
                let before = self.runtime.clone();
                let cidr = cidr.trunc();
                self.runtime.allow_removed.remove(&cidr);
                if !self.compiled.allow.contains(&cidr) {
                    self.runtime.allow_added.insert(cidr);
                }
                self.commit(before)?;
                Self::done(format!("allowed {cidr}"))
            }
            Request::AllowRemove { cidr } => {
                let before = self.runtime.clone();
                let cidr = cidr.trunc();
                let known =
                    self.runtime.allow_added.remove(&cidr) | self.compiled.allow.contains(&cidr);
                if !known {
                    return Err(DaemonError::NotListed {
                        list: "allow",
                        cidr,
                    });
                }
                if self.compiled.allow.contains(&cidr) {
                    self.runtime.allow_removed.insert(cidr);
                }
                self.commit(before)?;
                Self::done(format!("removed {cidr} from the allow list"))
            }
            Request::AllowList => {
                let entries = self
                    .runtime
                    .allow(&self.compiled.allow)
                    .into_iter()
                    .map(|(cidr, origin)| ListEntry {
                        origin: match self.compiled.from_set.get(&cidr) {
                            Some(set) if origin == "config" => format!("set:{set}"),
                            _ => origin.to_owned(),
                        },
                        cidr,
                        expires_in_secs: None,
                        scenario: None,
                    })
                    .collect();
                Ok((Reply::List { entries }, After::Continue))
            }
            Request::BlockAdd { cidr, for_secs } => {
                let before = self.runtime.clone();
                let cidr = cidr.trunc();
                self.runtime.block_removed.remove(&cidr);
                // Saturating: `--for` of any length is at most "until the end of time".
                let until = for_secs.map(|s| unix_now().saturating_add(s));
                self.runtime.block_added.insert(cidr, until);
                self.commit(before)?;
                Self::done(match for_secs {
                    Some(s) => format!(
                        "blocked {cidr} for {}",
                        humantime::format_duration(std::time::Duration::from_secs(s))
                    ),
                    None => format!("blocked {cidr}"),
                })
            }
            Request::BlockRemove { cidr } => {
                let before = self.runtime.clone();
                let cidr = cidr.trunc();
                let known = self.runtime.block_added.remove(&cidr).is_some()
                    | self.compiled.block.contains(&cidr);
                if !known {
                    return Err(DaemonError::NotListed {
                        list: "block",
                        cidr,
                    });
                }
                if self.compiled.block.contains(&cidr) {
                    self.runtime.block_removed.insert(cidr);
                }
                self.commit(before)?;
                Self::done(format!("removed {cidr} from the block list"))
            }
            Request::BlockList => {
                let now = unix_now();
                let entries = self
                    .block_list()
                    .into_iter()
                    .map(|(cidr, origin, scenario, until)| ListEntry {
                        cidr,
                        origin,
                        expires_in_secs: until.map(|u| u.saturating_sub(now)),
                        scenario,
                    })
                    .collect();
                Ok((Reply::List { entries }, After::Continue))
            }
            Request::BansAdd { addr, for_secs } => {
                self.add_ban(addr, for_secs)?;
                Self::done(format!(
                    "banned {addr} for {}",
                    humantime::format_duration(std::time::Duration::from_secs(for_secs))
                ))
            }
            Request::BansClear { addr } => {
                let cleared = self.clear_bans(addr)?;
                Self::done(format!("cleared {cleared} ban(s)"))
            }
            Request::Mode { mode } => {
                let before = self.runtime.clone();
                self.runtime.mode = Some(mode);
                self.commit(before)?;
                if self.log_allowed(Kind::Mode) {
                    info!(event = "mode", mode = mode.name(), "mode changed");
                }
                Self::done(format!("mode is now {}", mode.name()))
            }
            Request::Reload => Self::done(self.reload()?),
            Request::Detach { iface } => self.detach(iface),
            Request::Crowdsec { update } => Self::done(self.crowdsec_update(update)?),
            Request::Set { update } => Self::done(self.set_update(update)?),
            Request::SetsList => Ok((
                Reply::Sets {
                    sets: self.set_rows(),
                },
                After::Continue,
            )),
            Request::SetsShow { name } => Ok((self.set_entries(&name)?, After::Continue)),
            Request::SetsRefresh { name } => Self::done(self.refresh_sets(name)?),
            Request::Rules => Ok((
                Reply::Rules {
                    rules: self.rule_rows()?,
                },
                After::Continue,
            )),
        }
    }
}
