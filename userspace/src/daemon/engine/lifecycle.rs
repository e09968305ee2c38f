//! The engine's lifecycle: a start (load, adopt the pins, apply, attach),
//! detaching, and what a failed start or a full detach removes.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use floodgate_common::POLICY_HALF;
use tracing::{error, info, warn};

use super::{After, Engine};
use crate::{
    config::Config,
    control::proto::{CrowdsecStatus, InterfaceStatus, Reply},
    daemon::{
        DaemonError, Options, bpffs, budget, links,
        loglimit::{Kind, LogLimiter},
        reader::Reader,
        remote::Remote,
        runtime::Runtime,
    },
    loader::Floodgate,
    policy::{Compiled, compile_with_sets},
    tables::IfaceSlot,
};

impl Engine {
    /// Loads the config and the program (adopting pinned state), writes the
    /// policy, then attaches: the program never runs with an empty policy.
    pub fn start(opts: &Options) -> Result<Engine, DaemonError> {
        let config = load_config(opts.config.as_deref())?;
        // The sets' saved copies are enforced from the first apply on.
        let sets = super::load_sets(&opts.state_dir, &config);
        let compiled = compile_with_sets(&config, &super::nets_of(&sets));
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
        bpffs::ensure(&opts.pin_dir)?;
        let capacity = compiled.capacity.into();
        let max_memory = config.capacity.max_memory;
        budget::check_at_start(&capacity, max_memory, &opts.pin_dir, opts.config.as_deref())?;
        let first_start = !crate::loader::map_pin_dir(&opts.pin_dir).exists();
        let started = Floodgate::load(capacity, Some(&opts.pin_dir)).map_err(DaemonError::from);
        let started =
            started.and_then(|fg| Self::start_with(fg, opts, config, compiled, runtime, sets));
        if started.is_err() && first_start {
            // A first start that failed leaves no pins behind (and so none of
            // the kernel memory the maps hold).
            if let Err(e) = remove_pins(&opts.pin_dir) {
                warn!(error = %e, pin_dir = %opts.pin_dir.display(), "removing the pins of a failed start");
            }
        } else if started.is_err() {
            discard_staging(&opts.pin_dir);
        }
        started
    }

    pub(super) fn start_with(
        mut fg: Floodgate,
        opts: &Options,
        config: Config,
        compiled: Compiled,
        runtime: Runtime,
        sets: std::collections::BTreeMap<String, super::SetState>,
    ) -> Result<Engine, DaemonError> {
        let adopted = fg.adopted();
        let migration = fg.take_migration();
        let mut copied = None;
        if let Some(m) = &migration {
            info!(
                pin_dir = %opts.pin_dir.display(),
                "migrating the pinned state ({}); the old program filters until the new one replaces it",
                m.describe(&fg.capacity())
            );
            copied = Some(m.copy_into(&mut fg)?);
        }
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
        let (remote, invalid) = Remote::load(&opts.state_dir)?;
        if let Some(warning) = invalid {
            warn!("{warning}");
        }
        let crowdsec = config.crowdsec.as_ref().map(|c| CrowdsecStatus {
            lapi_url: c.lapi_url.clone(),
            ..CrowdsecStatus::default()
        });
        let (crowdsec_config, _) = tokio::sync::watch::channel(config.crowdsec.clone());
        let (set_specs, _) = tokio::sync::watch::channel(config.sets.clone());
        let (set_refresh, set_refresh_rx) = tokio::sync::mpsc::channel(8);
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
            remote,
            crowdsec,
            crowdsec_config,
            own: std::collections::BTreeMap::new(),
            alerts_handoff_dropped: 0,
            sets,
            set_specs,
            set_refresh,
            set_refresh_rx: Some(set_refresh_rx),
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
        if let (Some(m), Some(copied)) = (migration, copied) {
            // Every pinned link runs the new program now: the old maps only
            // hold what the old one did since the copy.
            let late = m.finish(&mut engine.fg, &engine.pin_dir, &copied)?;
            info!(
                late_bans = late.bans,
                late_packets = late.packets,
                "migration done: the new maps are pinned in place of the old"
            );
        }
        engine.runtime.save(&engine.state_dir)?;
        Ok(engine)
    }

    /// Gives `iface` its own counters before the program is attached to it, so
    /// its first packets are already attributed. Returns the slot (0: "other").
    pub(super) fn count_iface(&mut self, iface: &str) -> Result<u32, DaemonError> {
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

    pub(super) fn detach(&mut self, iface: Option<String>) -> Result<(Reply, After), DaemonError> {
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

/// Removes the new maps of a migration that failed before the program was
/// swapped: the old program and maps go on as they were.
fn discard_staging(pin_dir: &Path) {
    let staging = crate::migrate::staging_dir(pin_dir);
    if let Err(e) = crate::migrate::remove_dir(&staging) {
        warn!(error = %e, dir = %staging.display(), "removing the maps of a failed migration");
    }
}

pub(super) fn load_config(path: Option<&Path>) -> Result<Config, DaemonError> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
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
        // What an interrupted migration left.
        crate::migrate::staging_dir(pin_dir),
        crate::migrate::retired_dir(pin_dir),
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
