//! The plan: the compiled config and the runtime state written into the maps
//! as one change (the spare half of `POLICIES` first, then the pointers), and
//! the transactions around it (a reload, a CLI change kept only when both
//! applied and saved).

use std::sync::PoisonError;

use floodgate_common::{BlockEntry, POLICY_HALF, SETTINGS_MONITOR, Settings};
use tracing::{error, info, warn};

use super::{Engine, SECOND, lifecycle::load_config, monotonic_ns};
use crate::{
    addr::lpm_key,
    control::proto::Mode,
    daemon::{
        DaemonError,
        loglimit::Kind,
        runtime::{Runtime, unix_now},
    },
    policy::compile_with_sets,
};

impl Engine {
    pub(super) fn mode(&self) -> Mode {
        self.runtime.mode.unwrap_or(if self.config.mode_monitor() {
            Mode::Monitor
        } else {
            Mode::Enforce
        })
    }

    pub(super) fn settings(&self) -> Settings {
        let mut s = self.compiled.settings;
        match self.mode() {
            Mode::Monitor => s.flags |= SETTINGS_MONITOR,
            Mode::Enforce => s.flags &= !SETTINGS_MONITOR,
        }
        s
    }

    /// Writes the compiled policy plus runtime changes into the half of
    /// `POLICIES` no rule points at, then re-points the rules and the default.
    pub(super) fn apply(&mut self) -> Result<(), DaemonError> {
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
    pub(super) fn apply_to(&mut self, base: u32) -> Result<(), DaemonError> {
        self.fg.sync_ports(&self.compiled.ports)?;
        let policies = self.compiled.policies.clone();
        // The shared budgets before the policies that charge them.
        self.fg.prepare_aggregates(&policies)?;
        self.fg.write_policies_at(base, &policies)?;
        let rules: Vec<_> = self
            .compiled
            .rules
            .iter()
            .map(|(n, slot)| (lpm_key(n), *slot + base))
            .collect();
        self.fg.sync_rules(&rules)?;
        let (now_mono, now_unix) = (monotonic_ns(), unix_now());
        self.sync_block(now_mono, now_unix)?;
        self.sync_allow()?;
        let mut settings = self.settings();
        settings.default_policy = base;
        self.fg.write_settings(&settings)?;
        self.live_policies = base;
        Ok(())
    }

    /// Makes the runtime change made since `before` a transaction: applied to
    /// the maps and persisted, or neither. On a failure the maps and the file
    /// keep `before`.
    pub(super) fn commit(&mut self, before: Runtime) -> Result<(), DaemonError> {
        let after = self.runtime.clone();
        let result = match self.apply_runtime(&before) {
            Ok(()) => self
                .runtime
                .save(&self.state_dir)
                .map_err(DaemonError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.runtime = before;
            if let Err(again) = self.apply_runtime(&after) {
                error!(error = %again, "restoring the maps after a failed change");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Writes what a CLI change made differ between `from` and the runtime
    /// state: the allow and block entries that changed, then the settings
    /// (mode). The policies and rules stay where they are: a change of one
    /// CIDR writes one trie entry, whatever the lists and rules hold. Falls
    /// back to syncing a whole list when what its trie holds is not known.
    pub(super) fn apply_runtime(&mut self, from: &Runtime) -> Result<(), DaemonError> {
        let (now_mono, now_unix) = (monotonic_ns(), unix_now());
        let remote_blocks = self.remote.blocks();
        let block: Vec<_> = from
            .block_changes(&self.runtime)
            .iter()
            .map(|net| {
                let entry = self
                    .block_until(net, &remote_blocks)
                    .map(|until| block_entry(until, now_mono, now_unix));
                (lpm_key(net), entry)
            })
            .collect();
        if !self.fg.patch_block(&block)? {
            self.sync_block(now_mono, now_unix)?;
        }
        let allow: Vec<_> = from
            .allow_changes(&self.runtime)
            .iter()
            .map(|net| (lpm_key(net), self.runtime.allows(&self.compiled.allow, net)))
            .collect();
        if !self.fg.patch_allow(&allow)? {
            self.sync_allow()?;
        }
        let mut settings = self.settings();
        settings.default_policy = self.live_policies;
        self.fg.write_settings(&settings)?;
        Ok(())
    }

    /// Writes the whole block list (config, runtime and remote decisions)
    /// into its trie.
    pub(super) fn sync_block(&mut self, now_mono: u64, now_unix: u64) -> Result<(), DaemonError> {
        let block: Vec<_> = self
            .block_list()
            .into_iter()
            .map(|(net, _, _, until)| (lpm_key(&net), block_entry(until, now_mono, now_unix)))
            .collect();
        self.fg.sync_block(&block)?;
        Ok(())
    }

    /// Writes the whole allow list (config and runtime) into its trie.
    fn sync_allow(&mut self) -> Result<(), DaemonError> {
        let allow: Vec<_> = self
            .runtime
            .allow(&self.compiled.allow)
            .into_iter()
            .map(|(net, _)| lpm_key(&net))
            .collect();
        self.fg.sync_allow(&allow)?;
        Ok(())
    }

    /// Re-reads and validates the config, then applies only what changed.
    /// An invalid config changes nothing.
    pub fn reload(&mut self) -> Result<String, DaemonError> {
        let config = load_config(self.config_path.as_deref())?;
        let old_sets = self.sets.clone();
        self.sync_set_states(&config);
        let compiled = compile_with_sets(&config, &super::nets_of(&self.sets));
        let c = compiled.capacity;
        if c != self.compiled.capacity {
            warn!(
                "map capacities changed in the config; they apply at the next restart, which moves the state into maps of the new sizes"
            );
        }
        let old = std::mem::replace(&mut self.compiled, compiled);
        let old_config = std::mem::replace(&mut self.config, config);
        if let Err(e) = self.apply() {
            // Put the old policy back: a half-applied reload is worse than none.
            // The live half still holds it; re-point what moved.
            self.compiled = old;
            self.config = old_config;
            self.sets = old_sets;
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
        if old_config.crowdsec != self.config.crowdsec {
            self.crowdsec_reconfigured();
        }
        if old_config.sets != self.config.sets {
            self.set_specs.send_replace(self.config.sets.clone());
        }
        Ok(message)
    }

    pub(super) fn config_source(&self) -> String {
        self.config_path.as_ref().map_or_else(
            || "the embedded default policy".to_owned(),
            |p| p.display().to_string(),
        )
    }
}

/// A block entry ending at `until` (Unix seconds; None: never), on the
/// program's monotonic clock.
pub(super) fn block_entry(until: Option<u64>, now_mono: u64, now_unix: u64) -> BlockEntry {
    let expires_ns = until.map_or(0, |u| {
        now_mono.saturating_add(u.saturating_sub(now_unix).saturating_mul(SECOND))
    });
    BlockEntry { expires_ns }
}
