//! Decisions of remote engines (a CrowdSec LAPI) that floodgate enforces:
//! held by id as the LAPI names them, persisted in the state dir so a
//! restarted daemon keeps enforcing them (the kernel holds them meanwhile)
//! until its first pull replaces them.
//!
//! One address held by any decision is a source ban, while the ban map has
//! room (a share of it, so remote bans never evict floodgate's own); past
//! that, and for every range, a block entry with an expiry.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::runtime::{StateError, write_durably};
use crate::fleet::crowdsec::decision::{Batch, Held};

/// The decisions held, and where each address went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Remote {
    /// By network: the LAPI's stream gives one decision per value (the one
    /// ending last) and deletes by value, whatever the ids.
    pub decisions: BTreeMap<IpNet, Held>,
    /// Addresses enforced as source bans, with the `until_ns` their ban
    /// entry had before a remote decision raised it (0: none), put back
    /// when the last decision of the address goes.
    pub banned: BTreeMap<IpNet, u64>,
}

/// Where one network is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Ban,
    Block,
}

/// How far apart two pulls may put one decision's end (see [`Remote::after`]).
pub const UNTIL_SLACK_SECS: u64 = 2;

/// Each network held, with its decision.
pub type Effective<'a> = BTreeMap<IpNet, &'a Held>;

impl Remote {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("crowdsec.json")
    }

    /// The saved decisions; a file that does not parse is set aside and
    /// named in the returned warning (the next pull replaces it all anyway).
    pub fn load(state_dir: &Path) -> Result<(Remote, Option<String>), StateError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => Ok((r, None)),
                Err(e) => {
                    let aside = path.with_extension("json.invalid");
                    let _ = std::fs::rename(&path, &aside);
                    Ok((
                        Remote::default(),
                        Some(format!(
                            "{} is not valid ({e}); set aside as crowdsec.json.invalid, the next pull from the LAPI restores its decisions",
                            path.display()
                        )),
                    ))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Remote::default(), None)),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        let path = Self::path(state_dir);
        let bytes = serde_json::to_vec(self).map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_durably(state_dir, &path, &bytes)
    }

    /// Each network held, with its decision.
    pub fn effective(&self) -> Effective<'_> {
        self.decisions.iter().map(|(n, h)| (*n, h)).collect()
    }

    /// The state after `batch` at `now` (Unix seconds): a replacing batch
    /// keeps nothing it does not name; ended decisions go.
    pub fn after(&self, batch: &Batch, now: u64) -> Remote {
        let mut next = self.clone();
        if batch.replace {
            next.decisions.clear();
        }
        // Deletions first: a reply that deletes a value's old decision and
        // brings its new one keeps the new one.
        for net in &batch.deleted {
            next.decisions.remove(net);
        }
        for (net, h) in &batch.new {
            // A decision's end is now + its remaining time, rounded up to a
            // second: two pulls of one decision may differ by a second.
            // Keeping the end held then saves rewriting every entry of a
            // full pull; a real change (a longer ban, another decision) is
            // more than that.
            let same = |old: &Held| {
                old.until.abs_diff(h.until) <= UNTIL_SLACK_SECS
                    && old.origin == h.origin
                    && old.scenario == h.scenario
            };
            if let Some(old) = self.decisions.get(net).filter(|o| same(o)) {
                next.decisions.insert(*net, old.clone());
            } else {
                next.decisions.insert(*net, h.clone());
            }
        }
        next.decisions.retain(|_, h| h.until > now);
        next
    }

    /// Drops decisions that ended by `now`; true if any did.
    pub fn expire(&mut self, now: u64) -> bool {
        let before = self.decisions.len();
        self.decisions.retain(|_, h| h.until > now);
        before != self.decisions.len()
    }

    /// The networks whose end differs between `self` and `other`.
    pub fn changes(&self, other: &Remote) -> BTreeSet<IpNet> {
        let (a, b) = (self.effective(), other.effective());
        let differs = |x: &Effective<'_>, y: &Effective<'_>, n: &IpNet| {
            x.get(n).map(|h| h.until) != y.get(n).map(|h| h.until)
        };
        a.keys()
            .chain(b.keys())
            .filter(|n| differs(&a, &b, n))
            .copied()
            .collect()
    }

    /// Where `net` is enforced, `ban_room` being how many addresses may be
    /// source bans: an address already banned stays so; a new one is banned
    /// while there is room.
    pub fn tier(&self, net: &IpNet, ban_room: usize) -> Tier {
        let host = net.prefix_len() == net.max_prefix_len();
        if host && (self.banned.contains_key(net) || self.banned.len() < ban_room) {
            Tier::Ban
        } else {
            Tier::Block
        }
    }

    /// The block entries: every network held but those enforced as bans,
    /// with their end.
    pub fn blocks(&self) -> BTreeMap<IpNet, u64> {
        self.effective()
            .into_iter()
            .filter(|(n, _)| !self.banned.contains_key(n))
            .map(|(n, h)| (n, h.until))
            .collect()
    }

    /// Decisions held, by origin.
    pub fn by_origin(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for h in self.decisions.values() {
            *out.entry(h.origin.clone()).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("literal")
    }

    fn held(n: &str, until: u64) -> Held {
        Held {
            net: net(n),
            until,
            origin: "cscli".to_owned(),
            scenario: "manual".to_owned(),
        }
    }

    fn batch(replace: bool, new: &[Held], deleted: &[&str]) -> Batch {
        Batch {
            replace,
            new: new.iter().map(|h| (h.net, h.clone())).collect(),
            deleted: deleted.iter().map(|d| net(d)).collect(),
            ..Batch::default()
        }
    }

    #[test]
    fn deltas_are_by_value_and_idempotent() {
        let b1 = batch(false, &[held("198.18.0.1/32", 300)], &[]);
        let b = Remote::default().after(&b1, 10);
        assert_eq!(b.effective()[&net("198.18.0.1/32")].until, 300);
        // The LAPI overlaps deltas and repeats them: the same batch again changes nothing.
        assert_eq!(b.after(&b1, 10), b);
        assert!(b.after(&b1, 10).changes(&b).is_empty());
        // A deletion repeated, or of a value never held, changes nothing either.
        let gone = batch(false, &[], &["198.18.0.1/32"]);
        let c = b.after(&gone, 10);
        assert!(c.effective().is_empty());
        assert_eq!(c.after(&gone, 10), c);
        assert_eq!(c.after(&batch(false, &[], &["198.18.9.9/32"]), 10), c);
        // A reply deleting a value's old decision and bringing a new one keeps the new.
        let d = b.after(
            &batch(false, &[held("198.18.0.1/32", 900)], &["198.18.0.1/32"]),
            10,
        );
        assert_eq!(d.effective()[&net("198.18.0.1/32")].until, 900);
        assert_eq!(b.changes(&d).len(), 1);
    }

    #[test]
    fn a_second_of_rounding_is_no_change_and_a_longer_ban_is() {
        let a = Remote::default().after(&batch(true, &[held("198.18.0.1/32", 1000)], &[]), 10);
        let b = a.after(&batch(true, &[held("198.18.0.1/32", 1001)], &[]), 10);
        assert!(a.changes(&b).is_empty(), "a full pull one second later");
        assert_eq!(b.effective()[&net("198.18.0.1/32")].until, 1000);
        let c = a.after(&batch(true, &[held("198.18.0.1/32", 1900)], &[]), 10);
        assert_eq!(a.changes(&c).len(), 1, "extended");
    }

    #[test]
    fn a_startup_pull_replaces_everything_and_ended_decisions_go() {
        let a = Remote::default().after(
            &batch(
                false,
                &[held("198.18.0.1/32", 100), held("198.19.0.0/24", 100)],
                &[],
            ),
            10,
        );
        let b = a.after(&batch(true, &[held("198.19.0.0/24", 100)], &[]), 10);
        assert_eq!(
            b.decisions.keys().copied().collect::<Vec<_>>(),
            [net("198.19.0.0/24")]
        );
        assert_eq!(
            a.changes(&b).len(),
            1,
            "only the address changed; the range keeps its end"
        );
        let mut c = b.clone();
        assert!(c.expire(100));
        assert!(c.decisions.is_empty());
    }

    #[test]
    fn addresses_are_bans_while_there_is_room_and_ranges_are_blocks() {
        let mut r = Remote::default().after(
            &batch(
                false,
                &[
                    held("198.18.0.1/32", 100),
                    held("198.18.0.2/32", 100),
                    held("fd00::/64", 100),
                ],
                &[],
            ),
            10,
        );
        let (a1, a2, range) = (net("198.18.0.1/32"), net("198.18.0.2/32"), net("fd00::/64"));
        assert_eq!(r.tier(&a1, 1), Tier::Ban);
        r.banned.insert(a1, 0);
        assert_eq!(r.tier(&a1, 1), Tier::Ban, "a banned address stays banned");
        assert_eq!(r.tier(&a2, 1), Tier::Block, "no room: a block entry");
        assert_eq!(r.tier(&range, 10), Tier::Block);
        let blocks = r.blocks();
        assert!(
            blocks.contains_key(&a2) && blocks.contains_key(&range) && !blocks.contains_key(&a1)
        );
    }

    #[test]
    fn it_persists_and_a_torn_file_is_set_aside() {
        let dir = std::env::temp_dir().join(format!("fg-remote-{}", std::process::id()));
        let mut r = Remote::default().after(&batch(false, &[held("198.18.0.1/32", 100)], &[]), 10);
        r.banned.insert(net("198.18.0.1/32"), 7);
        r.save(&dir).expect("save");
        assert_eq!(Remote::load(&dir).expect("load"), (r, None));
        std::fs::write(dir.join("crowdsec.json"), b"{\"decisions\": {").expect("write");
        let (back, warning) = Remote::load(&dir).expect("a torn file is no failure");
        assert_eq!(back, Remote::default());
        assert!(warning.is_some_and(|w| w.contains("crowdsec.json.invalid")));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
