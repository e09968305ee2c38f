//! The daemon's state and the one place changes are applied to the maps.

mod bans;
pub mod queries;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use floodgate_common::{BlockEntry, POLICY_HALF, SETTINGS_MONITOR, Settings};
use tracing::{error, info, warn};

use super::{
    DaemonError, Options, budget, links,
    loglimit::{Kind, LogLimiter},
    reader::Reader,
    runtime::{Runtime, unix_now},
};
use crate::{
    addr::lpm_key,
    config::Config,
    control::proto::{InterfaceStatus, ListEntry, Mode, Reply, Request, Response},
    loader::Floodgate,
    policy::{Compiled, compile},
    stats::Stats,
    tables::IfaceSlot,
};

const SECOND: u64 = 1_000_000_000;

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
}

fn load_config(path: Option<&Path>) -> Result<Config, DaemonError> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

impl Engine {
    /// Loads the config and the program (adopting pinned state), writes the
    /// policy, then attaches: the program never runs with an empty policy.
    pub fn start(opts: &Options) -> Result<Engine, DaemonError> {
        let config = load_config(opts.config.as_deref())?;
        let compiled = compile(&config);
        let (runtime, invalid) = Runtime::load(&opts.state_dir)?;
        if let Some(e) = invalid {
            error!("{e}");
        }
        // Everything checkable is checked before anything is loaded or pinned.
        for iface in &opts.ifaces {
            if interface_index(iface) == 0 {
                return Err(DaemonError::NoInterface(iface.clone()));
            }
        }
        super::bpffs::ensure(&opts.pin_dir)?;
        let capacity = compiled.capacity.into();
        let max_memory = config.capacity.max_memory;
        budget::check_at_start(&capacity, max_memory, &opts.pin_dir, opts.config.as_deref())?;
        let first_start = !crate::loader::map_pin_dir(&opts.pin_dir).exists();
        let started = Floodgate::load(capacity, Some(&opts.pin_dir)).map_err(DaemonError::from);
        let started = started.and_then(|fg| Self::start_with(fg, opts, config, compiled, runtime));
        if started.is_err() && first_start {
            // A first start that failed leaves no pins behind (and so none of
            // the kernel memory the maps hold).
            if let Err(e) = remove_pins(&opts.pin_dir) {
                warn!(error = %e, pin_dir = %opts.pin_dir.display(), "removing the pins of a failed start");
            }
        }
        started
    }

    fn start_with(
        fg: Floodgate,
        opts: &Options,
        config: Config,
        compiled: Compiled,
        runtime: Runtime,
    ) -> Result<Engine, DaemonError> {
        let adopted = fg.adopted();
        let pinned_default = if adopted {
            fg.settings()?.default_policy
        } else {
            0
        };
        if adopted {
            info!(pin_dir = %opts.pin_dir.display(), "adopted pinned maps: counters, bans and tracked sources carry over");
        }
        // Ban events the program suppressed before this daemon started were
        // reported (or not) by the daemon of their time.
        let kernel_suppressed_seen = fg.global_state()?.events_suppressed;
        let logs = Arc::new(Mutex::new(LogLimiter::new(config.event_rate)));
        let reader = Arc::new(Reader::new(&fg)?);
        let mut engine = Engine {
            fg,
            pin_dir: opts.pin_dir.clone(),
            state_dir: opts.state_dir.clone(),
            config_path: opts.config.clone(),
            config,
            compiled,
            runtime,
            interfaces: Vec::new(),
            started: Instant::now(),
            // Adopted: the half the last run's rules point into. Fresh: the
            // first apply writes half 0.
            live_policies: if adopted { pinned_default } else { POLICY_HALF },
            logs,
            kernel_suppressed_seen,
            reader,
        };
        engine.apply()?;
        for iface in &opts.ifaces {
            let slot = engine.count_iface(iface)?;
            let previous = engine.runtime.attached.get(iface).copied();
            let (mode, replaced) = links::attach_pinned(
                &mut engine.fg,
                iface,
                opts.xdp_mode,
                &opts.pin_dir,
                previous,
            )?;
            if engine.log_allowed(Kind::Attach) {
                if replaced {
                    info!(
                        event = "attach",
                        iface,
                        xdp_mode = mode.name(),
                        counter_slot = slot,
                        "replaced the program in the pinned XDP link (no unfiltered gap)"
                    );
                } else {
                    info!(
                        event = "attach",
                        iface,
                        xdp_mode = mode.name(),
                        counter_slot = slot,
                        "XDP program attached"
                    );
                }
            }
            engine.runtime.attached.insert(iface.clone(), mode);
            engine.interfaces.push(InterfaceStatus {
                name: iface.clone(),
                mode,
            });
        }
        engine.runtime.save(&engine.state_dir)?;
        Ok(engine)
    }

    /// True when a log line of `kind` may be written now (see `LogLimiter`).
    pub fn log_allowed(&self, kind: Kind) -> bool {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(kind, Instant::now())
    }

    /// Gives `iface` its own counters before the program is attached to it, so
    /// its first packets are already attributed. Returns the slot (0: "other").
    fn count_iface(&mut self, iface: &str) -> Result<u32, DaemonError> {
        let ifindex = interface_index(iface);
        if ifindex == 0 {
            // No such interface: attaching will fail with a clear error.
            return Ok(0);
        }
        Ok(match self.fg.assign_iface_slot(iface, ifindex)? {
            IfaceSlot::Slot(s) => s,
            IfaceSlot::Full => {
                warn!(
                    iface,
                    max = floodgate_common::MAX_IFACES,
                    "every per-interface counter slot is taken by interfaces seen earlier; \
                     this one's packets count under iface=\"other\" (`floodgate detach` resets the slots)"
                );
                0
            }
            IfaceSlot::IfindexTooLarge => {
                warn!(
                    iface,
                    ifindex,
                    max = floodgate_common::MAX_IFINDEX,
                    "the interface index is too large for a per-interface counter slot; \
                     its packets count under iface=\"other\""
                );
                0
            }
        })
    }

    fn mode(&self) -> Mode {
        self.runtime.mode.unwrap_or(if self.config.mode_monitor() {
            Mode::Monitor
        } else {
            Mode::Enforce
        })
    }

    fn settings(&self) -> Settings {
        let mut s = self.compiled.settings;
        match self.mode() {
            Mode::Monitor => s.flags |= SETTINGS_MONITOR,
            Mode::Enforce => s.flags &= !SETTINGS_MONITOR,
        }
        s
    }

    /// Writes the compiled policy plus runtime changes into the half of
    /// `POLICIES` no rule points at, then re-points the rules and the default.
    fn apply(&mut self) -> Result<(), DaemonError> {
        let spare = if self.live_policies == 0 {
            POLICY_HALF
        } else {
            0
        };
        self.apply_to(spare)
    }

    /// Writes the policy with its slots from `base`. Order matters so no packet
    /// sees a gap or a neighbour's policy: the policies before the rules that
    /// point at them (each CIDR is re-pointed at once: it reads its own rule's
    /// old or new policy), ports before the flag that scopes limits to them,
    /// the default slot last, with the settings. The other half keeps the
    /// previous policies, so a CIDR the new config drops reads its old policy
    /// until it is removed; no slot any rule points at is ever cleared.
    fn apply_to(&mut self, base: u32) -> Result<(), DaemonError> {
        let now_mono = monotonic_ns();
        let now_unix = unix_now();
        self.fg.sync_ports(&self.compiled.ports)?;
        let policies = self.compiled.policies.clone();
        self.fg.write_policies_at(base, &policies)?;
        let rules: Vec<_> = self
            .compiled
            .rules
            .iter()
            .map(|(n, slot)| (lpm_key(n), *slot + base))
            .collect();
        self.fg.sync_rules(&rules)?;
        let block: Vec<_> = self
            .runtime
            .block(&self.compiled.block)
            .into_iter()
            .map(|(net, _, until)| {
                let expires_ns = until.map_or(0, |u| {
                    now_mono.saturating_add(u.saturating_sub(now_unix).saturating_mul(SECOND))
                });
                (lpm_key(&net), BlockEntry { expires_ns })
            })
            .collect();
        self.fg.sync_block(&block)?;
        let allow: Vec<_> = self
            .runtime
            .allow(&self.compiled.allow)
            .into_iter()
            .map(|(net, _)| lpm_key(&net))
            .collect();
        self.fg.sync_allow(&allow)?;
        let mut settings = self.settings();
        settings.default_policy = base;
        self.fg.write_settings(&settings)?;
        self.live_policies = base;
        Ok(())
    }

    /// Re-reads and validates the config, then applies only what changed.
    /// An invalid config changes nothing.
    pub fn reload(&mut self) -> Result<String, DaemonError> {
        let config = load_config(self.config_path.as_deref())?;
        let compiled = compile(&config);
        let c = compiled.capacity;
        if c != self.compiled.capacity {
            warn!(
                "map capacities changed in the config; they apply after `floodgate detach` and a restart"
            );
        }
        let old = std::mem::replace(&mut self.compiled, compiled);
        let old_config = std::mem::replace(&mut self.config, config);
        if let Err(e) = self.apply() {
            // Put the old policy back: a half-applied reload is worse than none.
            // The live half still holds it; re-point what moved.
            self.compiled = old;
            self.config = old_config;
            if let Err(again) = self.apply_to(self.live_policies) {
                error!(error = %again, "restoring the previous policy after a failed reload");
            }
            return Err(e);
        }
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_rate(self.config.event_rate);
        let message = format!(
            "reloaded {}: {} rules, {} allow and {} block entries, mode {}",
            self.config_source(),
            self.compiled.rules.len(),
            self.compiled.allow.len(),
            self.compiled.block.len(),
            self.mode().name()
        );
        if self.log_allowed(Kind::Reload) {
            info!(
                event = "reload",
                config = %self.config_source(),
                rules = self.compiled.rules.len(),
                allow = self.compiled.allow.len(),
                block = self.compiled.block.len(),
                mode = self.mode().name(),
                "{message}"
            );
        }
        Ok(message)
    }

    fn config_source(&self) -> String {
        self.config_path.as_ref().map_or_else(
            || "the embedded default policy".to_owned(),
            |p| p.display().to_string(),
        )
    }

    /// Periodic work: ends temporary blocks, reports suppressed log lines.
    pub fn tick(&mut self) {
        self.report_suppressed();
        if self.runtime.expire(unix_now()) {
            if let Err(e) = self.runtime.save(&self.state_dir) {
                warn!(error = %e, "saving runtime state");
            }
            if let Err(e) = self.apply() {
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

    /// Makes the runtime change made since `before` a transaction: applied to
    /// the maps and persisted, or neither. On a failure the maps and the file
    /// keep `before`.
    fn commit(&mut self, before: Runtime) -> Result<(), DaemonError> {
        let live = self.live_policies;
        let result = match self.apply() {
            // Applied but not saved: put the old state in the other half.
            Ok(()) => self
                .runtime
                .save(&self.state_dir)
                .map_err(|e| (e.into(), false)),
            // Not applied: the live half still holds the old state; re-point
            // what moved.
            Err(e) => Err((e, true)),
        };
        if let Err((e, into_live)) = result {
            self.runtime = before;
            let restored = if into_live {
                self.apply_to(live)
            } else {
                self.apply()
            };
            if let Err(again) = restored {
                error!(error = %again, "restoring the maps after a failed change");
            }
            return Err(e);
        }
        Ok(())
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
                        cidr,
                        origin: origin.to_owned(),
                        expires_in_secs: None,
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
                    .runtime
                    .block(&self.compiled.block)
                    .into_iter()
                    .map(|(cidr, origin, until)| ListEntry {
                        cidr,
                        origin: origin.to_owned(),
                        expires_in_secs: until.map(|u| u.saturating_sub(now)),
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
        }
    }

    fn detach(&mut self, iface: Option<String>) -> Result<(Reply, After), DaemonError> {
        let io = |source| DaemonError::Io {
            path: self.pin_dir.clone(),
            source,
        };
        match iface {
            Some(name) => {
                if !links::detach(&self.pin_dir, &name).map_err(io)? {
                    return Err(DaemonError::NotAttached(name));
                }
                self.interfaces.retain(|i| i.name != name);
                self.runtime.attached.remove(&name);
                self.runtime.save(&self.state_dir)?;
                if self.log_allowed(Kind::Detach) {
                    info!(event = "detach", iface = name, "detached");
                }
                let after = if self.interfaces.is_empty() {
                    After::Exit
                } else {
                    After::Continue
                };
                Ok((
                    Reply::Done {
                        message: format!("detached from {name}"),
                    },
                    after,
                ))
            }
            None => {
                remove_pins(&self.pin_dir).map_err(io)?;
                self.runtime.attached.clear();
                self.runtime.save(&self.state_dir)?;
                if self.log_allowed(Kind::Detach) {
                    info!(
                        event = "detach",
                        iface = "*",
                        "detached from every interface and removed the pins"
                    );
                }
                Ok((
                    Reply::Done {
                        message: "detached from every interface; pins removed".into(),
                    },
                    After::Exit,
                ))
            }
        }
    }
}

/// The index of the interface `name`; 0 when there is none.
fn interface_index(name: &str) -> u32 {
    match std::ffi::CString::new(name) {
        // SAFETY: a NUL-terminated string that outlives the call.
        Ok(c) => unsafe { libc::if_nametoindex(c.as_ptr()) },
        Err(_) => 0,
    }
}

/// Removes every pin (links first: that detaches the program) and the pin dir.
pub fn remove_pins(pin_dir: &Path) -> std::io::Result<()> {
    for iface in links::pinned_interfaces(pin_dir) {
        links::detach(pin_dir, &iface)?;
    }
    for dir in [
        links::links_dir(pin_dir),
        crate::loader::map_pin_dir(pin_dir),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                std::fs::remove_file(e.path())?;
            }
        }
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_dir(pin_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
