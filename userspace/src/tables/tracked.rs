//! Tracked sources and prefixes as one: an IPv4 set table (read by mmap) and
//! an IPv6 LRU map (read by batch walk) for each.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsFd as _, BorrowedFd},
};

use aya::maps::{HashMap, MapData};
use floodgate_common::{
    AddrKey, Track6, TrackState, maps,
    set_table::{self, tick_ns, v4_addr, v4_key},
};

use super::{
    map_err,
    set_view::{SetView, Way},
};
use crate::{
    addr::{mapped, unmapped},
    kernel::walk,
    loader::{Floodgate, LoadError},
};

/// One tracked source or prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// The (IPv4-mapped) address: a source, or a prefix's masked address.
    pub addr: [u8; 16],
    pub state: TrackState,
    /// The tick ([`set_table::tick`]) it was last seen at.
    pub last_seen_tick: u32,
}

impl Tracked {
    /// When it was last seen (to the tick, about 67 ms).
    pub fn last_seen_ns(&self) -> u64 {
        tick_ns(self.last_seen_tick)
    }
}

/// The IPv6 map beside an IPv4 table (`SOURCES6` for `SOURCES`, `PREFIXES6`
/// for `PREFIXES`).
pub fn v6_of(table: &'static str) -> &'static str {
    if table == maps::PREFIXES {
        maps::PREFIXES6
    } else {
        maps::SOURCES6
    }
}

/// Calls `f` with every entry of the table `table` (`sets` sets) and of the
/// IPv6 map `v6`.
pub fn walk_fds(
    table: BorrowedFd<'_>,
    sets: u32,
    v6: BorrowedFd<'_>,
    mut f: impl FnMut(Tracked),
) -> io::Result<()> {
    SetView::map(table, sets, false)?.for_each(|w| {
        f(Tracked {
            addr: v4_addr(w.key),
            state: w.state,
            last_seen_tick: w.last_seen_tick,
        });
    });
    walk::for_each_entry::<AddrKey, Track6>(v6, |k, v| {
        f(Tracked {
            addr: k.addr,
            state: v.state,
            last_seen_tick: v.last_seen_tick as u32,
        });
    })
}

/// Entries of a table and its IPv6 map.
pub fn count_fds(table: BorrowedFd<'_>, sets: u32, v6: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(SetView::map(table, sets, false)?.count() + walk::count_entries::<AddrKey, Track6>(v6)?)
}

/// The number of sets of a table map (its `max_entries`).
pub fn sets_of(name: &'static str, data: &MapData) -> Result<u32, LoadError> {
    Ok(data.info().map_err(map_err(name))?.max_entries())
}

/// A walk or mmap error of `name`.
pub(super) fn io_err(name: &'static str, call: &'static str) -> impl Fn(io::Error) -> LoadError {
    move |io_error| {
        map_err(name)(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call,
            io_error,
        }))
    }
}

/// The table's fd and sets, and its IPv6 map's fd.
pub(super) fn fds<'a>(
    fg: &'a Floodgate,
    table: &'static str,
) -> Result<(BorrowedFd<'a>, u32, BorrowedFd<'a>), LoadError> {
    let t: &MapData = map_data(fg, table)?;
    let v6: &MapData = map_data(fg, v6_of(table))?;
    Ok((t.fd().as_fd(), sets_of(table, t)?, v6.fd().as_fd()))
}

fn map_data<'a>(fg: &'a Floodgate, name: &'static str) -> Result<&'a MapData, LoadError> {
    use aya::maps::Map;
    match fg.ebpf_ref().map(name) {
        Some(Map::Array(d) | Map::LruHashMap(d) | Map::HashMap(d)) => Ok(d),
        _ => Err(map_err(name)(aya::maps::MapError::InvalidName {
            name: name.into(),
        })),
    }
}

impl Floodgate {
    /// Every tracked source (or prefix, with `maps::PREFIXES`), IPv4 and IPv6.
    pub fn tracked(&self, table: &'static str) -> Result<Vec<(IpAddr, TrackState)>, LoadError> {
        Ok(self
            .tracked_entries(table)?
            .into_iter()
            .map(|t| (unmapped(t.addr), t.state))
            .collect())
    }

    /// Every tracked source (or prefix), with when it was last seen.
    pub fn tracked_entries(&self, table: &'static str) -> Result<Vec<Tracked>, LoadError> {
        let (t, sets, v6) = fds(self, table)?;
        let mut out = Vec::new();
        walk_fds(t, sets, v6, |e| out.push(e)).map_err(io_err(table, "mmap or batch walk"))?;
        Ok(out)
    }

    /// One source's state, if tracked.
    pub fn source(&self, addr: IpAddr) -> Result<Option<TrackState>, LoadError> {
        let key = mapped(addr);
        if floodgate_common::prefix::is_v4_mapped(&key) {
            let (t, sets, _) = fds(self, maps::SOURCES)?;
            let view = SetView::map(t, sets, false).map_err(io_err(maps::SOURCES, "mmap"))?;
            return Ok(view.get(v4_key(&key), self.table_seed()).map(|w| w.state));
        }
        let m: HashMap<&MapData, AddrKey, Track6> = self.typed_map_ref(maps::SOURCES6)?;
        match m.get(&AddrKey { addr: key }, 0) {
            Ok(v) => Ok(Some(v.state)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(maps::SOURCES6)(e)),
        }
    }

    /// Writes tracked entries into `table` (or its IPv6 map) as the program
    /// would have made them, in order (so when a set overflows, the last
    /// written stay). For maps no program filters with yet: a migration's
    /// new maps, a test's.
    pub fn put_tracked(
        &mut self,
        table: &'static str,
        entries: &[Tracked],
    ) -> Result<(), LoadError> {
        let seed = self.table_seed();
        {
            let (t, sets, _) = fds(self, table)?;
            let mut view = SetView::map(t, sets, true).map_err(io_err(table, "mmap"))?;
            for e in entries
                .iter()
                .filter(|e| floodgate_common::prefix::is_v4_mapped(&e.addr))
            {
                let way = Way {
                    key: v4_key(&e.addr),
                    last_seen_tick: e.last_seen_tick,
                    state: e.state,
                };
                view.put(&way, seed).map_err(io_err(table, "mmap"))?;
            }
        }
        let name = v6_of(table);
        let mut m: HashMap<&mut MapData, AddrKey, Track6> = self.typed_map(name)?;
        for e in entries
            .iter()
            .filter(|e| !floodgate_common::prefix::is_v4_mapped(&e.addr))
        {
            let v = Track6 {
                state: e.state,
                last_seen_tick: u64::from(e.last_seen_tick | 1),
            };
            m.insert(AddrKey { addr: e.addr }, v, 0)
                .map_err(map_err(name))?;
        }
        Ok(())
    }
}

/// The tick of a time in ns, for entries made from userspace.
pub fn tick_of(ns: u64) -> u32 {
    set_table::tick(ns)
}
