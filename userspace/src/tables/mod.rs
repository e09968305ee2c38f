//! Typed reads and writes of the program's maps.

mod aggregates;
mod horizon;
pub(crate) mod set_view;
mod tracked;
mod tries;

pub use set_view::{SetView, Way};
pub use tracked::{Tracked, count_fds, sets_of, tick_of, v6_of, walk_fds};

use std::collections::BTreeMap;

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use floodgate_common::{
    Ban, BanKey, BlockEntry, COUNTER_ENTRIES, Counter, GlobalState, IFACE_SLOTS, IfaceName,
    MAX_IFINDEX, Policy, PortKey, SETTINGS_HAS_ALLOW, SETTINGS_HAS_BLOCK, SETTINGS_HAS_RULES,
    Settings, maps,
};

use crate::loader::{Floodgate, LoadError};

/// A CIDR as the tries store it: mapped prefix length and masked 16 bytes.
pub type Cidr = (u32, [u8; 16]);

fn map_err(name: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

/// Ignores "not found" when deleting.
fn ignore_missing(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

/// Where an interface's packets are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfaceSlot {
    /// Its own block of `COUNTERS`.
    Slot(u32),
    /// Under "other": every slot is taken by an interface seen earlier.
    Full,
    /// Under "other": its ifindex is past the end of `IFINDEX_SLOTS`.
    IfindexTooLarge,
}

/// The name in an `IFACE_NAMES` entry; `None` for a free slot.
fn iface_name(v: &IfaceName) -> Option<String> {
    let end = v.name.iter().position(|b| *b == 0).unwrap_or(v.name.len());
    (end > 0).then(|| String::from_utf8_lossy(&v.name[..end]).into_owned())
}

/// What the allow, block and rule tries hold, as last written (see
/// `Floodgate::written`).
#[derive(Debug, Default)]
pub struct Written {
    pub(crate) allow: Option<BTreeMap<Cidr, u32>>,
    pub(crate) block: Option<BTreeMap<Cidr, BlockEntry>>,
    pub(crate) rules: Option<BTreeMap<Cidr, u32>>,
}

impl Floodgate {
    /// Writes the settings, adding the bits this handle maintains itself: which
    /// tries have entries, and the horizon of bans inserted from userspace.
    pub fn write_settings(&mut self, settings: &Settings) -> Result<(), LoadError> {
        self.settings = Some(*settings);
        self.refresh_settings()
    }

    fn refresh_settings(&mut self) -> Result<(), LoadError> {
        let Some(mut s) = self.settings else {
            return Ok(());
        };
        s.flags = (s.flags & !(SETTINGS_HAS_BLOCK | SETTINGS_HAS_ALLOW | SETTINGS_HAS_RULES))
            | self.list_flags;
        s.user_ban_horizon_ns = s.user_ban_horizon_ns.max(self.user_ban_horizon_ns);
        let mut m: Array<_, Settings> = self.typed_map(maps::SETTINGS)?;
        m.set(0, s, 0).map_err(map_err(maps::SETTINGS))
    }

    /// Marks whether a trie has entries. Set after entries are added and
    /// cleared before the last ones go, so a non-empty trie is never skipped.
    fn set_list_flag(&mut self, flag: u32, present: bool) -> Result<(), LoadError> {
        let before = self.list_flags;
        if present {
            self.list_flags |= flag;
        } else {
            self.list_flags &= !flag;
        }
        if before == self.list_flags {
            Ok(())
        } else {
            self.refresh_settings()
        }
    }

    pub fn settings(&self) -> Result<Settings, LoadError> {
        let m: Array<_, Settings> = self.typed_map_ref(maps::SETTINGS)?;
        m.get(&0, 0).map_err(map_err(maps::SETTINGS))
    }

    /// Writes `policies` into the slots from `base` (0 or `POLICY_HALF`: the
    /// half no rule points at; see `MAX_POLICIES`).
    pub fn write_policies_at(&mut self, base: u32, policies: &[Policy]) -> Result<(), LoadError> {
        let mut m: Array<_, Policy> = self.typed_map(maps::POLICIES)?;
        for (i, p) in policies.iter().enumerate() {
            let i = u32::try_from(i)
                .ok()
                .and_then(|i| i.checked_add(base))
                .filter(|i| *i < m.len())
                .ok_or(LoadError::Map {
                    name: maps::POLICIES,
                    source: MapError::OutOfBounds {
                        index: u32::MAX,
                        max_entries: m.len(),
                    },
                })?;
            m.set(i, p, 0).map_err(map_err(maps::POLICIES))?;
        }
        Ok(())
    }

    /// Writes `policies` from slot 0 and resets slots `policies.len()..previous_len`
    /// (tests and tools that drive the maps directly; the daemon double-buffers
    /// with [`Floodgate::write_policies_at`]).
    pub fn write_policies(
        &mut self,
        policies: &[Policy],
        previous_len: usize,
    ) -> Result<(), LoadError> {
        self.write_policies_at(0, policies)?;
        let stale = previous_len.saturating_sub(policies.len());
        let cleared = vec![Policy::default(); stale];
        let from = u32::try_from(policies.len()).unwrap_or(u32::MAX);
        self.write_policies_at(from, &cleared)
    }

    pub fn sync_ports(&mut self, ports: &[PortKey]) -> Result<(), LoadError> {
        let mut m: HashMap<_, PortKey, u32> = self.typed_map(maps::PORTS)?;
        let existing: Vec<PortKey> = m.keys().filter_map(Result::ok).collect();
        for p in ports {
            m.insert(p, 1, 0).map_err(map_err(maps::PORTS))?;
        }
        for p in existing.iter().filter(|p| !ports.contains(p)) {
            ignore_missing(m.remove(p)).map_err(map_err(maps::PORTS))?;
        }
        Ok(())
    }

    /// The counters summed over CPUs, indexed like `COUNTERS`: one block of
    /// `COUNTER_SLOTS` per interface slot (see `iface_counter_index`).
    pub fn counters(&self) -> Result<Vec<Counter>, LoadError> {
        let m: PerCpuArray<_, Counter> = self.typed_map_ref(maps::COUNTERS)?;
        let mut out = Vec::with_capacity(COUNTER_ENTRIES as usize);
        for slot in 0..COUNTER_ENTRIES {
            let per_cpu = m.get(&slot, 0).map_err(map_err(maps::COUNTERS))?;
            let mut sum = Counter::default();
            for c in per_cpu.iter() {
                sum.packets += c.packets;
                sum.bytes += c.bytes;
            }
            out.push(sum);
        }
        Ok(out)
    }

    /// Names of the interface slots that have one, by slot (slot 0 never does).
    pub fn iface_names(&self) -> Result<Vec<(u32, String)>, LoadError> {
        let m: Array<_, IfaceName> = self.typed_map_ref(maps::IFACE_NAMES)?;
        let mut out = Vec::new();
        for slot in 1..IFACE_SLOTS {
            let v = m.get(&slot, 0).map_err(map_err(maps::IFACE_NAMES))?;
            if let Some(name) = iface_name(&v) {
                out.push((slot, name));
            }
        }
        Ok(out)
    }

    /// Gives interface `name` (index `ifindex`) its own block of `COUNTERS`:
    /// the slot it had before (pinned maps remember it across restarts), or a
    /// free one. The name is written before the program is pointed at the
    /// slot, so every counted packet has a name to go with it.
    pub fn assign_iface_slot(&mut self, name: &str, ifindex: u32) -> Result<IfaceSlot, LoadError> {
        if ifindex == 0 || ifindex >= MAX_IFINDEX {
            return Ok(IfaceSlot::IfindexTooLarge);
        }
        let mut names: Array<_, IfaceName> = self.typed_map(maps::IFACE_NAMES)?;
        let mut mine = None;
        let mut free = None;
        for slot in 1..IFACE_SLOTS {
            let v = names.get(&slot, 0).map_err(map_err(maps::IFACE_NAMES))?;
            match iface_name(&v) {
                Some(n) if n == name => {
                    mine = Some((slot, v.ifindex));
                    break;
                }
                None if free.is_none() => free = Some(slot),
                _ => {}
            }
        }
        let (slot, stale_ifindex) = match (mine, free) {
            (Some((slot, old)), _) => (slot, (old != ifindex).then_some(old)),
            (None, Some(slot)) => (slot, None),
            (None, None) => return Ok(IfaceSlot::Full),
        };
        let mut entry = IfaceName {
            ifindex,
            ..IfaceName::default()
        };
        let bytes = name.as_bytes();
        let len = bytes.len().min(entry.name.len() - 1);
        entry.name[..len].copy_from_slice(&bytes[..len]);
        names
            .set(slot, entry, 0)
            .map_err(map_err(maps::IFACE_NAMES))?;
        let mut slots: Array<_, u32> = self.typed_map(maps::IFINDEX_SLOTS)?;
        // The interface was recreated under a new index: its old index may
        // come back as another interface, which must not count as this one.
        if let Some(old) = stale_ifindex
            && old != 0
            && old < MAX_IFINDEX
            && slots.get(&old, 0).ok() == Some(slot)
        {
            slots.set(old, 0, 0).map_err(map_err(maps::IFINDEX_SLOTS))?;
        }
        slots
            .set(ifindex, slot, 0)
            .map_err(map_err(maps::IFINDEX_SLOTS))?;
        Ok(IfaceSlot::Slot(slot))
    }

    pub fn global_state(&self) -> Result<GlobalState, LoadError> {
        let m: Array<_, GlobalState> = self.typed_map_ref(maps::GLOBAL_STATE)?;
        m.get(&0, 0).map_err(map_err(maps::GLOBAL_STATE))
    }

    /// Kernel memory charged to each map (`memlock` in its fdinfo), in bytes.
    pub fn map_memory(&self) -> Vec<(String, u64)> {
        use aya::maps::Map;
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let mut out = Vec::new();
        for (name, map) in self.ebpf_ref().maps() {
            let data = match map {
                Map::Array(d)
                | Map::PerCpuArray(d)
                | Map::HashMap(d)
                | Map::LruHashMap(d)
                | Map::LpmTrie(d)
                | Map::RingBuf(d) => d,
                _ => continue,
            };
            let fd = data.fd().as_fd().as_raw_fd();
            let memlock = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("memlock:"))
                        .and_then(|v| v.trim().parse().ok())
                })
                .unwrap_or(0);
            out.push((name.to_owned(), memlock));
        }
        out.sort();
        out
    }

    /// Every ban entry, active or remembered.
    pub fn bans(&self) -> Result<Vec<(BanKey, Ban)>, LoadError> {
        let m: HashMap<&MapData, BanKey, Ban> = self.typed_map_ref(maps::BANS)?;
        let mut out = Vec::new();
        for item in m.iter() {
            match item {
                Ok(kv) => out.push(kv),
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err(maps::BANS)(e)),
            }
        }
        Ok(out)
    }

    /// The ban entry of `key` (expired ones included: they keep the offences).
    pub fn ban(&self, key: &BanKey) -> Result<Option<Ban>, LoadError> {
        let m: HashMap<&MapData, BanKey, Ban> = self.typed_map_ref(maps::BANS)?;
        match m.get(key, 0) {
            Ok(b) => Ok(Some(b)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(maps::BANS)(e)),
        }
    }

    pub fn remove_ban(&mut self, key: &BanKey) -> Result<(), LoadError> {
        let mut m: HashMap<_, BanKey, Ban> = self.typed_map(maps::BANS)?;
        ignore_missing(m.remove(key)).map_err(map_err(maps::BANS))
    }

    /// Inserts a ban from userspace. The counters of an entry already there
    /// (what the key's earlier bans decided) are kept when higher.
    pub fn insert_ban(&mut self, key: &BanKey, ban: &Ban) -> Result<(), LoadError> {
        let mut ban = *ban;
        if let Some(held) = self.ban(key)? {
            ban.packets = ban.packets.max(held.packets);
            ban.bytes = ban.bytes.max(held.bytes);
        }
        let ban = &ban;
        if ban.until_ns > self.user_ban_horizon_ns {
            self.user_ban_horizon_ns = ban.until_ns;
            self.refresh_settings()?;
        }
        let mut m: HashMap<_, BanKey, Ban> = self.typed_map(maps::BANS)?;
        m.insert(key, ban, 0).map_err(map_err(maps::BANS))?;
        // After the settings: a prefix entry made from here on starts with
        // the user horizon, one made before is raised here.
        self.raise_prefix_horizon(key, ban.until_ns)
    }
}
