//! The ban horizon of a prefix entry (`floodgate_common::horizon`), raised
//! from userspace when it inserts a ban: the program looks bans up for a
//! tracked prefix's packets only while its horizon is open.

use aya::maps::{HashMap, MapData, MapError};
use floodgate_common::{
    AddrKey, BanKey, Track6, horizon, maps,
    prefix::{is_v4_mapped, mapped_prefix_len, mask},
    set_table::v4_key,
};

use super::{
    map_err,
    set_view::SetView,
    tracked::{fds, io_err},
};
use crate::loader::{Floodgate, LoadError};

/// `BPF_EXIST`: update an entry only if it is still there.
const BPF_EXIST: u64 = 2;

impl Floodgate {
    /// Raises the horizon of the prefix entry the banned `key` (a source or
    /// a prefix) belongs to, when that prefix is tracked, to `until_ns`.
    ///
    /// IPv4 prefixes: an atomic maximum on the entry's word in the mapped
    /// table. IPv6 ones: the LRU map's value is read and written back whole,
    /// so a packet the program counts into that prefix in the microseconds
    /// between may be lost from its counters (or one packet pass its prefix
    /// bucket twice); the horizon itself is never lowered.
    pub(crate) fn raise_prefix_horizon(
        &mut self,
        key: &BanKey,
        until_ns: u64,
    ) -> Result<(), LoadError> {
        let s = self.settings()?;
        let v6 = !is_v4_mapped(&key.addr);
        let prefix = mask(&key.addr, mapped_prefix_len(v6, s.prefix_v4, s.prefix_v6));
        if !v6 {
            let seed = self.table_seed();
            if self.prefix_view.is_none() {
                let (t, sets, _) = fds(self, maps::PREFIXES)?;
                let view = SetView::map(t, sets, true).map_err(io_err(maps::PREFIXES, "mmap"))?;
                self.prefix_view = Some(view);
            }
            if let Some(view) = &self.prefix_view {
                view.raise_horizon(v4_key(&prefix), seed, until_ns)
                    .map_err(io_err(maps::PREFIXES, "mmap"))?;
            }
            return Ok(());
        }
        let mut m: HashMap<&mut MapData, AddrKey, Track6> = self.typed_map(maps::PREFIXES6)?;
        let k = AddrKey { addr: prefix };
        let mut v = match m.get(&k, 0) {
            Ok(v) => v,
            Err(MapError::KeyNotFound) => return Ok(()),
            Err(e) => return Err(map_err(maps::PREFIXES6)(e)),
        };
        if !horizon::open(horizon::prefix_horizon(&v.state), until_ns) {
            v.state = horizon::raise_prefix(v.state, until_ns);
            match m.insert(k, v, BPF_EXIST) {
                // Evicted meanwhile: its next entry starts with the user horizon.
                Err(MapError::SyscallError(e))
                    if e.io_error.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(map_err(maps::PREFIXES6))?,
            }
        }
        Ok(())
    }
}
