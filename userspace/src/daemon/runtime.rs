//! Changes made from the CLI (allow/block entries, mode) persist in the state dir
//! and are re-applied on every start, after a reboot too, on top of the config.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{control::proto::Mode, loader::AttachedMode};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {source}; fix or remove the file (it only holds CLI changes)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not valid ({source}); set aside as runtime.json.invalid, starting from the config alone (it only held CLI changes: allow, block, mode)"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}; is the state dir writable?")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Everything the CLI changed at runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Runtime {
    pub allow_added: BTreeSet<IpNet>,
    pub allow_removed: BTreeSet<IpNet>,
    /// Blocks added with the CLI; the value is the Unix time (seconds) a
    /// temporary block ends, `None` for a permanent one.
    pub block_added: BTreeMap<IpNet, Option<u64>>,
    pub block_removed: BTreeSet<IpNet>,
    /// Mode set with `floodgate mode`, overriding the config.
    pub mode: Option<Mode>,
    /// How each interface was attached (bpffs cannot hold this next to the link).
    pub attached: BTreeMap<String, AttachedMode>,
}

/// Writes `bytes` to `path` in `state_dir` durably: a temp file, fsync,
/// rename over the old file, fsync of the directory. A crash leaves the old
/// file or the new one, whole.
pub fn write_durably(state_dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write as _;
    let write_err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(write_err)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(write_err)?;
    f.write_all(bytes).map_err(write_err)?;
    f.sync_all().map_err(write_err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(write_err)?;
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Runtime {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("runtime.json")
    }

    /// The saved CLI changes. A file that is not valid (torn, empty, edited
    /// by hand) is not a reason to stay down under systemd: it is set aside as
    /// `runtime.json.invalid`, the error is returned with the state to start
    /// from (the config alone), and the caller logs it.
    pub fn load(state_dir: &Path) -> Result<(Runtime, Option<StateError>), StateError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => Ok((r, None)),
                Err(source) => {
                    let aside = path.with_extension("json.invalid");
                    // Best effort: the error below names the file either way.
                    let _ = std::fs::rename(&path, &aside);
                    Ok((Runtime::default(), Some(StateError::Parse { path, source })))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Runtime::default(), None)),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Writes durably (see [`write_durably`]).
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        let path = Self::path(state_dir);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_durably(state_dir, &path, &bytes)
    }

    /// Drops temporary blocks that have ended; true if any did.
    pub fn expire(&mut self, now_unix: u64) -> bool {
        let before = self.block_added.len();
        self.block_added
            .retain(|_, until| until.is_none_or(|t| t > now_unix));
        before != self.block_added.len()
    }

    /// The allow list: config entries plus CLI additions minus CLI removals.
    pub fn allow(&self, config: &[IpNet]) -> Vec<(IpNet, &'static str)> {
        let mut out: BTreeMap<IpNet, &'static str> = config
            .iter()
            .filter(|c| !self.allow_removed.contains(c))
            .map(|c| (*c, "config"))
            .collect();
        for c in &self.allow_added {
            out.entry(*c).or_insert("runtime");
        }
        out.into_iter().collect()
    }

    /// Whether `net` is on the allow list, the config's entries being
    /// `config` (what [`Runtime::allow`] lists, for one entry).
    pub fn allows(&self, config: &[IpNet], net: &IpNet) -> bool {
        self.allow_added.contains(net)
            || (!self.allow_removed.contains(net) && config.contains(net))
    }

    /// `net`'s block entry (its end, if temporary), or None when it is not
    /// blocked (what [`Runtime::block`] lists, for one entry).
    pub fn blocks(&self, config: &[IpNet], net: &IpNet) -> Option<Option<u64>> {
        match self.block_added.get(net) {
            Some(until) => Some(*until),
            None if !self.block_removed.contains(net) && config.contains(net) => Some(None),
            None => None,
        }
    }

    /// The CIDRs whose allow entry may differ between `self` and `other`.
    pub fn allow_changes(&self, other: &Runtime) -> BTreeSet<IpNet> {
        let added = self.allow_added.symmetric_difference(&other.allow_added);
        let removed = self
            .allow_removed
            .symmetric_difference(&other.allow_removed);
        added.chain(removed).copied().collect()
    }

    /// The CIDRs whose block entry may differ between `self` and `other`.
    pub fn block_changes(&self, other: &Runtime) -> BTreeSet<IpNet> {
        let added = self
            .block_added
            .iter()
            .filter(|(c, u)| other.block_added.get(c) != Some(u))
            .chain(
                other
                    .block_added
                    .iter()
                    .filter(|(c, _)| !self.block_added.contains_key(c)),
            )
            .map(|(c, _)| *c);
        let removed = self
            .block_removed
            .symmetric_difference(&other.block_removed)
            .copied();
        added.chain(removed).collect()
    }

    /// The block list with each entry's end (Unix seconds) if temporary.
    pub fn block(&self, config: &[IpNet]) -> Vec<(IpNet, &'static str, Option<u64>)> {
        let mut out: BTreeMap<IpNet, (&'static str, Option<u64>)> = config
            .iter()
            .filter(|c| !self.block_removed.contains(c))
            .map(|c| (*c, ("config", None)))
            .collect();
        for (c, until) in &self.block_added {
            out.insert(*c, ("runtime", *until));
        }
        out.into_iter().map(|(c, (o, u))| (c, o, u)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("literal")
    }

    #[test]
    fn runtime_changes_layer_over_config_and_persist() {
        let dir = std::env::temp_dir().join(format!("fg-runtime-{}", std::process::id()));
        let mut rt = Runtime::default();
        rt.allow_added.insert(net("198.18.0.0/24"));
        rt.allow_removed.insert(net("10.0.0.0/8"));
        rt.block_added.insert(net("198.19.0.0/16"), Some(100));
        rt.block_added.insert(net("198.19.1.0/24"), None);
        rt.mode = Some(Mode::Monitor);
        rt.save(&dir).expect("save");
        let (back, invalid) = Runtime::load(&dir).expect("load");
        assert!(invalid.is_none());
        assert_eq!(back, rt);
        let allow = back.allow(&[net("10.0.0.0/8"), net("192.0.2.0/24")]);
        assert_eq!(
            allow,
            vec![
                (net("192.0.2.0/24"), "config"),
                (net("198.18.0.0/24"), "runtime")
            ]
        );
        let mut back = back;
        assert!(back.expire(100));
        assert_eq!(
            back.block(&[]),
            vec![(net("198.19.1.0/24"), "runtime", None)]
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Runtime states over a few CIDRs, two of them in the config.
    fn states() -> Vec<Runtime> {
        let nets = [
            net("198.18.0.0/24"),
            net("198.18.1.0/24"),
            net("198.18.2.0/24"),
        ];
        let mut out = Vec::new();
        // Each CIDR: absent, added, removed (allow); absent, added, added
        // until 100, removed (block).
        for code in 0..(3u32.pow(3) * 4u32.pow(3)) {
            let (mut a, mut b) = (code % 27, code / 27);
            let mut rt = Runtime::default();
            for n in nets {
                match a % 3 {
                    1 => drop(rt.allow_added.insert(n)),
                    2 => drop(rt.allow_removed.insert(n)),
                    _ => {}
                }
                match b % 4 {
                    1 => drop(rt.block_added.insert(n, None)),
                    2 => drop(rt.block_added.insert(n, Some(100))),
                    3 => drop(rt.block_removed.insert(n)),
                    _ => {}
                }
                (a, b) = (a / 3, b / 4);
            }
            out.push(rt);
        }
        out
    }

    /// What a CLI change patches is what the whole lists say: every CIDR
    /// whose entry differs between two states is among the changes, and its
    /// entry is the one the whole list holds.
    #[test]
    fn the_changed_entries_are_exactly_where_the_lists_differ() {
        let config = [net("198.18.0.0/24"), net("198.18.1.0/24")];
        let universe = [
            net("198.18.0.0/24"),
            net("198.18.1.0/24"),
            net("198.18.2.0/24"),
        ];
        let states = states();
        for (i, a) in states.iter().enumerate().step_by(7) {
            for b in states.iter().skip(i % 5).step_by(11) {
                let (allow_a, allow_b) = (a.allow(&config), b.allow(&config));
                let (block_a, block_b) = (a.block(&config), b.block(&config));
                for n in universe {
                    let on = |l: &[(IpNet, &str)]| l.iter().any(|(c, _)| *c == n);
                    assert_eq!(b.allows(&config, &n), on(&allow_b), "{b:?} {n}");
                    if on(&allow_a) != on(&allow_b) {
                        assert!(a.allow_changes(b).contains(&n), "{a:?} → {b:?} {n}");
                    }
                    let entry = |l: &[(IpNet, &str, Option<u64>)]| {
                        l.iter().find(|(c, _, _)| *c == n).map(|(_, _, u)| *u)
                    };
                    assert_eq!(b.blocks(&config, &n), entry(&block_b), "{b:?} {n}");
                    if entry(&block_a) != entry(&block_b) {
                        assert!(a.block_changes(b).contains(&n), "{a:?} → {b:?} {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_torn_file_is_set_aside_and_named() {
        let dir = std::env::temp_dir().join(format!("fg-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("runtime.json"), b"{\"mode\": \"mon").expect("write");
        let (rt, invalid) = Runtime::load(&dir).expect("a torn file is no failure");
        assert_eq!(rt, Runtime::default());
        let e = invalid.expect("reported").to_string();
        assert!(
            e.contains("runtime.json is not valid") && e.contains("runtime.json.invalid"),
            "{e}"
        );
        assert!(dir.join("runtime.json.invalid").exists());
        assert!(!dir.join("runtime.json").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
