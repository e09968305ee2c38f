//! The `[[set]]`s in the engine: the copy of each that is enforced (loaded
//! from the state dir at start, replaced by the refresher's whole, valid
//! fetches), compiled into the lists and rules, and applied by difference
//! with the rest of the policy — a refresh is a reload of one list.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::Engine;
use crate::{
    config::Config,
    control::proto::{MAX_TOP_ROWS, Reply, SetRow, SetUpdate},
    daemon::DaemonError,
    policy::{SetNets, compile_with_sets},
    sets::cache::{self, Cached},
};

/// One set's state.
#[derive(Debug, Clone, Default)]
pub struct SetState {
    /// The copy enforced (None before the first good fetch).
    pub cached: Option<Cached>,
    pub last_error: Option<String>,
    pub errors: u64,
}

/// The saved copies of `config`'s sets, for a start: enforced before any
/// fetch, so a restart with no network keeps them.
pub fn load_sets(state_dir: &std::path::Path, config: &Config) -> BTreeMap<String, SetState> {
    config
        .sets
        .iter()
        .map(|spec| {
            let (cached, warning) = cache::load(state_dir, &spec.name, &spec.source.to_string());
            if let Some(w) = warning {
                warn!("{w}");
            }
            (
                spec.name.clone(),
                SetState {
                    cached,
                    ..SetState::default()
                },
            )
        })
        .collect()
}

/// The entries of each set with a copy.
pub fn nets_of(sets: &BTreeMap<String, SetState>) -> SetNets {
    sets.iter()
        .filter_map(|(n, s)| s.cached.as_ref().map(|c| (n.clone(), c.nets.clone())))
        .collect()
}

impl Engine {
    /// The refresher's report on one set.
    pub(super) fn set_update(&mut self, update: SetUpdate) -> Result<String, DaemonError> {
        match update {
            SetUpdate::Loaded { name, cached } => self.set_loaded(&name, cached),
            SetUpdate::Unchanged { name, fetched_unix } => {
                let s = self.set_state(&name)?;
                if let Some(c) = &mut s.cached {
                    c.fetched_unix = fetched_unix;
                }
                s.last_error = None;
                Ok(format!("set {name} is current"))
            }
            SetUpdate::Failed { name, error } => {
                let s = self.set_state(&name)?;
                s.errors += 1;
                s.last_error = Some(error.clone());
                let entries = s.cached.as_ref().map_or(0, |c| c.nets.len());
                warn!(event = "set_refresh_failed", set = %name, error = %error, entries, "set refresh failed; the last good copy stays");
                Ok(format!("set {name}: kept the last good copy"))
            }
        }
    }

    fn set_state(&mut self, name: &str) -> Result<&mut SetState, DaemonError> {
        self.sets
            .get_mut(name)
            .ok_or_else(|| DaemonError::NoSuchSet(name.to_owned()))
    }

    /// Applies a new copy of `name` with the rest of the policy; on a failure
    /// the maps keep the old one.
    fn set_loaded(&mut self, name: &str, cached: Cached) -> Result<String, DaemonError> {
        let started = std::time::Instant::now();
        let entries = cached.nets.len();
        let old = self.set_state(name)?.cached.replace(cached.clone());
        let before: usize = old.as_ref().map_or(0, |c| c.nets.len());
        let compiled = compile_with_sets(&self.config, &nets_of(&self.sets));
        let lists = compiled.capacity.lists as usize;
        let over = [
            ("allow", compiled.allow.len()),
            ("block", compiled.block.len() + self.remote_block_count()),
            ("rules", compiled.rules.len()),
        ]
        .into_iter()
        .find(|(_, n)| *n > lists);
        if let Some((list, n)) = over {
            self.set_state(name)?.cached = old;
            let e = DaemonError::SetTooBig {
                set: name.to_owned(),
                list,
                entries: n,
                capacity: lists,
            };
            let s = self.set_state(name)?;
            s.errors += 1;
            s.last_error = Some(e.to_string());
            return Err(e);
        }
        let previous = std::mem::replace(&mut self.compiled, compiled);
        if let Err(e) = self.apply() {
            self.set_state(name)?.cached = old;
            self.compiled = previous;
            if let Err(again) = self.apply_to(self.live_policies) {
                tracing::error!(error = %again, "restoring the policy after a failed set refresh");
            }
            return Err(e);
        }
        if let Err(e) = cache::save(&self.state_dir, name, &cached) {
            warn!(error = %e, set = %name, "saving the set's copy (enforced; a restart uses the older copy)");
        }
        let s = self.set_state(name)?;
        s.last_error = None;
        let apply_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        info!(event = "set_refresh", set = %name, entries, before, apply_ms, "set refreshed");
        Ok(format!("set {name}: {entries} entries"))
    }

    /// Follows a reloaded config: sets it no longer has go, new ones start
    /// from their saved copy.
    pub(super) fn sync_set_states(&mut self, config: &Config) {
        let mut loaded = load_sets(&self.state_dir, config);
        for (name, state) in &mut loaded {
            if let Some(held) = self.sets.remove(name)
                && held.cached.as_ref().map(|c| &c.source)
                    == state.cached.as_ref().map(|c| &c.source)
            {
                *state = held;
            }
        }
        self.sets = loaded;
    }

    pub(super) fn set_rows(&self) -> Vec<SetRow> {
        self.config
            .sets
            .iter()
            .map(|spec| {
                let state = self.sets.get(&spec.name);
                let cached = state.and_then(|s| s.cached.as_ref());
                let mut used_in = Vec::new();
                if self.config.allow_sets.contains(&spec.name) {
                    used_in.push("allow".to_owned());
                }
                if self.config.block_sets.contains(&spec.name) {
                    used_in.push("block".to_owned());
                }
                for r in &self.config.rules {
                    if r.match_sets.contains(&spec.name) {
                        used_in.push(format!("rule {}", r.name));
                    }
                }
                SetRow {
                    name: spec.name.clone(),
                    source: spec.source.to_string(),
                    format: spec.format.clone(),
                    refresh_secs: spec.refresh.as_secs(),
                    entries: cached.map_or(0, |c| c.nets.len() as u64),
                    last_refresh_unix: cached.map(|c| c.fetched_unix),
                    last_error: state.and_then(|s| s.last_error.clone()),
                    errors: state.map_or(0, |s| s.errors),
                    used_in,
                }
            })
            .collect()
    }

    pub(super) fn set_entries(&self, name: &str) -> Result<Reply, DaemonError> {
        let state = self
            .sets
            .get(name)
            .ok_or_else(|| DaemonError::NoSuchSet(name.to_owned()))?;
        let nets = state.cached.as_ref().map_or(&[][..], |c| c.nets.as_slice());
        Ok(Reply::SetEntries {
            name: name.to_owned(),
            nets: nets.iter().take(MAX_TOP_ROWS).copied().collect(),
            total: nets.len() as u64,
        })
    }

    pub(super) fn refresh_sets(&mut self, name: Option<String>) -> Result<String, DaemonError> {
        if let Some(n) = &name
            && !self.sets.contains_key(n)
        {
            return Err(DaemonError::NoSuchSet(n.clone()));
        }
        let message = match &name {
            Some(n) => format!("refreshing set {n}; see `floodgate sets list`"),
            None => "refreshing every set; see `floodgate sets list`".to_owned(),
        };
        // A full channel already holds a refresh that covers this one.
        let _ = self.set_refresh.try_send(name);
        Ok(message)
    }
}
