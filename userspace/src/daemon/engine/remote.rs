//! Remote decisions (a CrowdSec LAPI's) applied to the maps: each pull is
//! one transaction — written, then saved, or neither — and touches only the
//! networks whose end changed. Addresses become source bans while the ban
//! map has room for them, and block entries past that; ranges are block
//! entries, merged with the block list (the later end wins, a permanent
//! entry over any).

use std::collections::{BTreeMap, BTreeSet};

use floodgate_common::{Ban, BanKey, Reason};
use ipnet::IpNet;
use tracing::{error, warn};

use super::{Engine, SECOND, monotonic_ns};
use crate::{
    addr::{lpm_key, mapped},
    daemon::{
        DaemonError,
        remote::{Remote, Tier},
        runtime::unix_now,
    },
    fleet::crowdsec::decision::Batch,
};

/// The share of the ban map remote addresses may take: the rest stays for
/// floodgate's own bans, which remote ones must never evict.
const BAN_SHARE_DIVISOR: u32 = 2;

/// A block entry's end: None permanent, else Unix seconds.
type Until = Option<u64>;

/// The later of two block entries of one network.
fn later(a: Option<Until>, b: Option<Until>) -> Option<Until> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(None), _) | (_, Some(None)) => Some(None),
        (Some(Some(x)), Some(Some(y))) => Some(Some(x.max(y))),
    }
}

impl Engine {
    pub(super) fn apply_batch(&mut self, batch: &Batch) -> Result<usize, DaemonError> {
        let next = self.remote.after(batch, unix_now());
        self.apply_remote(next)
    }

    /// Drops remote decisions that ended (their kernel entries expired on
    /// their own; this clears them from the maps and the bookkeeping).
    pub(super) fn expire_remote(&mut self) {
        let now = unix_now();
        // Every tick: a scan, and a copy only when something ended.
        if !self.remote.decisions.values().any(|h| h.until <= now) {
            return;
        }
        let mut next = self.remote.clone();
        next.expire(now);
        if let Err(e) = self.apply_remote(next) {
            warn!(error = %e, "removing ended CrowdSec decisions");
        }
    }

    /// Makes the maps and the state file hold `next`; on a failure both keep
    /// what they held. Returns how many networks changed.
    pub(super) fn apply_remote(&mut self, mut next: Remote) -> Result<usize, DaemonError> {
        let changed = self.remote.changes(&next);
        if changed.is_empty() {
            return Ok(0);
        }
        self.assign_tiers(&changed, &mut next)?;
        let before = std::mem::replace(&mut self.remote, next);
        let result = self
            .enforce(&changed, &before)
            .and_then(|()| self.remote.save(&self.state_dir).map_err(DaemonError::from));
        if let Err(e) = result {
            let failed = std::mem::replace(&mut self.remote, before);
            if let Err(again) = self.enforce(&changed, &failed) {
                error!(error = %again, "restoring the maps after a failed CrowdSec update");
            }
            return Err(e);
        }
        Ok(changed.len())
    }

    /// Decides where each changed network of `next` goes: an address with
    /// no decision left leaves the bans; a new one is banned while the ban
    /// map has room, remembering the end its ban entry had.
    fn assign_tiers(
        &self,
        changed: &BTreeSet<IpNet>,
        next: &mut Remote,
    ) -> Result<(), DaemonError> {
        let room = (self.fg.capacity().bans / BAN_SHARE_DIVISOR) as usize;
        let held: BTreeSet<IpNet> = next.effective().keys().copied().collect();
        let now = monotonic_ns();
        for net in changed {
            if !held.contains(net) {
                next.banned.remove(net);
            } else if next.tier(net, room) == Tier::Ban && !next.banned.contains_key(net) {
                let prior = self
                    .fg
                    .ban(&BanKey::source(mapped(net.addr())))?
                    .map_or(0, |b| if b.until_ns > now { b.until_ns } else { 0 });
                next.banned.insert(*net, prior);
            }
        }
        Ok(())
    }

    /// Writes `self.remote` for the networks `nets` into the maps, `was`
    /// being what they held: bans set or lifted, then the block entries.
    fn enforce(&mut self, nets: &BTreeSet<IpNet>, was: &Remote) -> Result<(), DaemonError> {
        let (now_mono, now_unix) = (monotonic_ns(), unix_now());
        let to_mono = |until: u64| {
            now_mono.saturating_add(until.saturating_sub(now_unix).saturating_mul(SECOND))
        };
        let effective: BTreeMap<IpNet, u64> = self
            .remote
            .effective()
            .into_iter()
            .map(|(n, h)| (n, h.until))
            .collect();
        let remote_blocks = self.remote.blocks();
        let mut block = Vec::new();
        for net in nets {
            let key = BanKey::source(mapped(net.addr()));
            match (self.remote.banned.get(net), effective.get(net)) {
                (Some(prior), Some(until)) => {
                    let until_ns = to_mono(*until).max(*prior);
                    self.remote_ban(&key, until_ns, now_mono)?;
                }
                _ => {
                    if let Some(prior) = was.banned.get(net) {
                        self.lift_remote_ban(&key, *prior)?;
                    }
                }
            }
            let entry = self
                .block_until(net, &remote_blocks)
                .map(|until| super::plan::block_entry(until, now_mono, now_unix));
            block.push((lpm_key(net), entry));
        }
        if !self.fg.patch_block(&block)? {
            self.sync_block(now_mono, now_unix)?;
        }
        Ok(())
    }

    /// Bans `key` until `until_ns` without touching its escalation: the
    /// offences and the last duration of floodgate's own bans stay as they
    /// were, so a remote decision never lengthens a later local ban.
    fn remote_ban(&mut self, key: &BanKey, until_ns: u64, now: u64) -> Result<(), DaemonError> {
        let ban = match self.fg.ban(key)? {
            Some(b) => Ban {
                until_ns,
                // Enforced, even where a monitor-mode would-ban was.
                reason: b.reason_code(),
                ..b
            },
            None => Ban {
                until_ns,
                duration_ns: 0,
                banned_at_ns: now,
                offenses: 0,
                reason: Reason::Banned as u32,
                packets: 0,
                bytes: 0,
            },
        };
        Ok(self.fg.insert_ban(key, &ban)?)
    }

    /// Puts `key`'s ban back to the end it had before remote decisions
    /// (`prior`, 0: none); an entry that only ever held remote bans goes.
    fn lift_remote_ban(&mut self, key: &BanKey, prior: u64) -> Result<(), DaemonError> {
        match self.fg.ban(key)? {
            None => Ok(()),
            Some(b) if b.offenses == 0 => Ok(self.fg.remove_ban(key)?),
            Some(b) => Ok(self.fg.insert_ban(
                key,
                &Ban {
                    until_ns: prior,
                    ..b
                },
            )?),
        }
    }

    /// `net`'s block entry from the block list and the remote decisions.
    pub(super) fn block_until(
        &self,
        net: &IpNet,
        remote_blocks: &BTreeMap<IpNet, u64>,
    ) -> Option<Until> {
        later(
            self.runtime.blocks(&self.compiled.block, net),
            remote_blocks.get(net).map(|u| Some(*u)),
        )
    }

    /// The whole block list, remote decisions included: (network, origin,
    /// the remote decision's scenario, end).
    pub(super) fn block_list(&self) -> Vec<(IpNet, String, Option<String>, Until)> {
        let mut out: BTreeMap<IpNet, (String, Option<String>, Until)> = self
            .runtime
            .block(&self.compiled.block)
            .into_iter()
            .map(|(n, origin, until)| {
                let origin = match self.compiled.from_set.get(&n) {
                    Some(set) if origin == "config" => format!("set:{set}"),
                    _ => origin.to_owned(),
                };
                (n, (origin, None, until))
            })
            .collect();
        let effective = self.remote.effective();
        for (net, until) in self.remote.blocks() {
            let (origin, scenario) = effective.get(&net).map_or_else(
                || ("crowdsec".to_owned(), None),
                |h| (format!("crowdsec:{}", h.origin), Some(h.scenario.clone())),
            );
            match out.get_mut(&net) {
                Some(e) if later(Some(e.2), Some(Some(until))) != Some(e.2) => {
                    *e = (origin, scenario, Some(until));
                }
                Some(_) => {}
                None => {
                    out.insert(net, (origin, scenario, Some(until)));
                }
            }
        }
        out.into_iter().map(|(n, (o, s, u))| (n, o, s, u)).collect()
    }

    /// Block entries of remote decisions.
    pub(super) fn remote_block_count(&self) -> usize {
        self.remote.blocks().len()
    }

    /// Who decided each remotely banned address, for `bans list`.
    pub(super) fn remote_ban_origins(&self) -> BTreeMap<IpNet, (String, String)> {
        let effective = self.remote.effective();
        self.remote
            .banned
            .keys()
            .filter_map(|n| {
                effective
                    .get(n)
                    .map(|h| (*n, (format!("crowdsec:{}", h.origin), h.scenario.clone())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::later;

    #[test]
    fn the_later_block_entry_wins_and_a_permanent_one_over_any() {
        assert_eq!(later(None, None), None);
        assert_eq!(later(Some(Some(5)), None), Some(Some(5)));
        assert_eq!(later(None, Some(Some(5))), Some(Some(5)));
        assert_eq!(later(Some(Some(5)), Some(Some(9))), Some(Some(9)));
        assert_eq!(later(Some(None), Some(Some(9))), Some(None));
        assert_eq!(later(Some(Some(9)), Some(None)), Some(None));
    }
}
