//! The engine's read-only answers that walk whole maps: `status` (map fills,
//! active bans), `top` and `bans list`. The loop takes what only the engine
//! knows (mode, interfaces, settings) in a moment, and hands the walk to the
//! [`Reader`] off the loop, so a scrape over a million sources never holds up
//! a change.

use floodgate_common::maps;

use super::{Engine, monotonic_ns};
use crate::{
    control::proto::{KernelMemory, MAX_TOP_ROWS, MapFill, Reply, Request, Status},
    daemon::{DaemonError, reader::Reader},
};

/// A walk to run off the loop.
pub type Query = Box<dyn FnOnce(&Reader) -> Result<Reply, DaemonError> + Send>;

/// Whether `request` walks whole maps (and so runs off the loop).
pub fn walks(request: &Request) -> bool {
    matches!(
        request,
        Request::Status | Request::Top { .. } | Request::BansList
    )
}

fn walk_err(what: &'static str) -> impl Fn(std::io::Error) -> DaemonError {
    move |source| DaemonError::Walk { what, source }
}

impl Engine {
    /// The walk answering `request` (one that [`walks`]).
    pub fn query(&self, request: &Request) -> Result<Query, DaemonError> {
        match *request {
            Request::Status => {
                let mut status = self.status_head()?;
                Ok(Box::new(move |reader: &Reader| {
                    let fills = reader.fills().map_err(walk_err("the map fills"))?;
                    for fill in &mut status.maps {
                        if let Some((_, n)) = fills
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(&fill.name))
                        {
                            fill.entries = *n;
                        }
                    }
                    status.active_bans =
                        Some(reader.active_ban_count().map_err(walk_err("the bans"))?);
                    Ok(Reply::Status(Box::new(status)))
                }))
            }
            Request::Top { n, by, prefixes } => {
                let s = &self.compiled.settings;
                let lens = (s.prefix_v4, s.prefix_v6);
                Ok(Box::new(move |reader: &Reader| {
                    // Capped so the reply always fits one frame.
                    let rows = reader
                        .top(n.clamp(1, MAX_TOP_ROWS), by, prefixes, lens)
                        .map_err(walk_err("the tracked sources"))?;
                    Ok(Reply::Top { rows })
                }))
            }
            Request::BansList => {
                let remote = self.remote_ban_origins();
                Ok(Box::new(move |reader: &Reader| {
                    let (mut bans, total) = reader
                        .active_bans(MAX_TOP_ROWS)
                        .map_err(walk_err("the bans"))?;
                    for b in &mut bans {
                        if let Some((origin, scenario)) = remote.get(&b.target) {
                            b.origin = Some(origin.clone());
                            b.scenario = Some(scenario.clone());
                        }
                    }
                    Ok(Reply::Bans { bans, total })
                }))
            }
            _ => Err(DaemonError::NotAWalk(request.verb())),
        }
    }

    /// Runs the walk answering `request` here, on the loop (for callers
    /// without a runtime to hand it to).
    pub(super) fn query_now(&self, request: &Request) -> Result<Reply, DaemonError> {
        self.query(request)?(&self.reader)
    }

    /// Everything `status` says but the map fills and the active bans, which
    /// the walk adds.
    fn status_head(&self) -> Result<Status, DaemonError> {
        let program_id = self.fg.program()?.info().map(|i| i.id()).unwrap_or(0);
        let g = self.fg.global_state()?;
        let settings = self.settings();
        // The kernel's capacities: a reload asking for others applies them
        // only after a detach and a restart.
        let c = self.fg.capacity();
        let memory = crate::memory::estimate(&c, crate::memory::possible_cpus());
        let maps = [
            (maps::SOURCES, c.sources),
            (maps::PREFIXES, c.prefixes),
            (maps::SOURCES6, c.sources6),
            (maps::PREFIXES6, c.prefixes6),
            (maps::BANS, c.bans),
            (maps::ALLOW, c.lists),
            (maps::BLOCK, c.lists),
            (maps::RULES, c.lists),
        ]
        .into_iter()
        .map(|(name, cap)| MapFill {
            name: name.to_lowercase(),
            entries: 0,
            capacity: u64::from(cap),
            kernel_memory_bytes: memory.of(&[name]),
        })
        .collect();
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: self.mode(),
            interfaces: self.interfaces.clone(),
            program_id,
            uptime_secs: self.started.elapsed().as_secs(),
            config_source: self.config_source(),
            adopted_pinned_state: self.fg.adopted(),
            pin_dir: self.pin_dir.display().to_string(),
            maps,
            source_inserts: g.source_inserts,
            eviction_pressure: settings.pressure_threshold != 0
                && floodgate_common::pressure::under_pressure(
                    g.pressure_meter,
                    monotonic_ns(),
                    settings.pressure_window_ns,
                ),
            events_suppressed: g.events_suppressed,
            events_lost: g.events_lost,
            log_lines_suppressed: self.log_lines_suppressed(g.events_suppressed),
            kernel_memory: Some(KernelMemory::from(&memory)),
            active_bans: None,
            crowdsec: self.crowdsec.clone().map(Box::new),
            sets: self.set_rows(),
            aggregates: self
                .rule_rows()?
                .into_iter()
                .filter(|r| r.aggregate.is_some())
                .collect(),
        })
    }
}
