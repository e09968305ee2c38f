//! Copying pinned state, map by map, from old maps into a new program's maps.
//! Values whose layout changed are converted (`floodgate_common::previous`);
//! the rest are copied as they are. When the new maps are smaller, the most
//! recently seen sources and the latest-ending bans are the ones kept.

use std::{os::fd::AsFd as _, path::Path};

use aya::{
    Pod,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
};
use floodgate_common::{
    Ban, BanKey, Counter, GlobalState, IfaceName, Settings, TrackState, maps,
    previous::migrated_counter_index,
};

use crate::{
    kernel::walk,
    loader::{Floodgate, LoadError},
    tables::{self, Tracked},
};

/// How one layout version keeps what a migration reads differently.
pub trait Layout {
    /// Every tracked entry of the old `table` (`SOURCES` or `PREFIXES`) and
    /// of its IPv6 side.
    fn tracked(from: &Path, table: &'static str) -> Result<Vec<Tracked>, LoadError>;

    /// An old prefix entry as this layout keeps it, given the latest end of
    /// every ban the old maps hold.
    fn prefix(state: TrackState, latest_ban_ns: u64) -> TrackState;

    /// Where entry `old` of the old `COUNTERS` is in the new one (None:
    /// nowhere).
    fn counter(old: u32) -> Option<u32>;
}

/// This binary's layout (a resize).
pub struct Current;
/// The previous layout version (an upgrade): the same tables, but fewer
/// reasons in `COUNTERS` (`floodgate_common::previous`).
pub struct Previous;

impl Layout for Current {
    fn tracked(from: &Path, table: &'static str) -> Result<Vec<Tracked>, LoadError> {
        let t = old(from, table)?;
        let v6_name = tables::v6_of(table);
        let v6 = old(from, v6_name)?;
        let sets = tables::sets_of(table, &t)?;
        let mut all = Vec::new();
        tables::walk_fds(t.fd().as_fd(), sets, v6.fd().as_fd(), |e| all.push(e))
            .map_err(io_err(table, "mmap or bpf_map_lookup_batch"))?;
        Ok(all)
    }

    /// Its horizon already covers its bans.
    fn prefix(state: TrackState, _latest_ban_ns: u64) -> TrackState {
        state
    }

    fn counter(old: u32) -> Option<u32> {
        Some(old)
    }
}

impl Layout for Previous {
    fn tracked(from: &Path, table: &'static str) -> Result<Vec<Tracked>, LoadError> {
        Current::tracked(from, table)
    }

    /// Layout 6 kept the same horizons.
    fn prefix(state: TrackState, latest_ban_ns: u64) -> TrackState {
        Current::prefix(state, latest_ban_ns)
    }

    fn counter(old: u32) -> Option<u32> {
        migrated_counter_index(old)
    }
}

/// What a copy moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub sources: u64,
    pub prefixes: u64,
    pub bans: u64,
    /// The old counters as copied (old entry, new entry, per CPU): what the
    /// old program counts after this is added at the finish.
    pub counters: Vec<(u32, u32, Vec<Counter>)>,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

/// The old map `name`, pinned in `from`.
fn old(from: &Path, name: &'static str) -> Result<MapData, LoadError> {
    MapData::from_pin(from.join(name)).map_err(map_err(name))
}

/// What a failed walk of an old map names: batch lookups, or key-by-key
/// lookups where the kernel has no batch for the map type.
const WALK: &str = "bpf_map_lookup_batch or bpf_map_get_next_key";

/// An I/O error of `call` on the map `name`, named after the call that made it.
fn io_err(name: &'static str, call: &'static str) -> impl Fn(std::io::Error) -> LoadError {
    move |e| {
        map_err(name)(MapError::SyscallError(aya::sys::SyscallError {
            call,
            io_error: e,
        }))
    }
}

pub fn copy_all<L: Layout>(from: &Path, fg: &mut Floodgate) -> Result<Copied, LoadError> {
    let global: GlobalState = first(from, maps::GLOBAL_STATE)?;
    let settings: Settings = first(from, maps::SETTINGS)?;
    let (bans, latest) = copy_bans(from, fg)?;
    // Every ban the old maps hold ends by then (their global horizons cover
    // bans since forgotten by the LRU too).
    let latest_ban_ns = latest
        .max(global.ban_horizon_ns)
        .max(settings.user_ban_horizon_ns);
    let sources = copy_tracked::<L>(from, fg, maps::SOURCES, |s| s)?;
    let prefixes = copy_tracked::<L>(from, fg, maps::PREFIXES, |s| L::prefix(s, latest_ban_ns))?;
    let counters = copy_counters::<L>(from, fg)?;
    copy_array::<u32>(from, fg, maps::IFINDEX_SLOTS)?;
    copy_array::<IfaceName>(from, fg, maps::IFACE_NAMES)?;
    let mut m: Array<&mut MapData, GlobalState> = fg.typed_map(maps::GLOBAL_STATE)?;
    m.set(0, global, 0).map_err(map_err(maps::GLOBAL_STATE))?;
    // Bans made from userspace stay enforced from the first settings write on
    // (the program skips ban lookups past both horizons).
    fg.user_ban_horizon_ns = fg
        .user_ban_horizon_ns
        .max(settings.user_ban_horizon_ns)
        .max(latest);
    Ok(Copied {
        sources,
        prefixes,
        bans,
        counters,
    })
}

/// Slot 0 of the old array `name`.
fn first<T: Pod>(from: &Path, name: &'static str) -> Result<T, LoadError> {
    let m: Array<MapData, T> =
        Array::try_from(Map::Array(old(from, name)?)).map_err(map_err(name))?;
    m.get(&0, 0).map_err(map_err(name))
}

/// `SOURCES` or `PREFIXES` with their IPv6 sides, each state through `state`,
/// oldest activity first, so that when the new tables are smaller the most
/// recently seen are kept.
fn copy_tracked<L: Layout>(
    from: &Path,
    fg: &mut Floodgate,
    table: &'static str,
    state: impl Fn(TrackState) -> TrackState,
) -> Result<u64, LoadError> {
    let mut all = L::tracked(from, table)?;
    for e in &mut all {
        e.state = state(e.state);
    }
    all.sort_by_key(|e| e.last_seen_tick);
    fg.put_tracked(table, &all)?;
    Ok(all.len() as u64)
}

/// Every ban, active or remembered for its offences, those ending last
/// inserted last. Returns how many and the latest end.
fn copy_bans(from: &Path, fg: &mut Floodgate) -> Result<(u64, u64), LoadError> {
    let data = old(from, maps::BANS)?;
    let mut all: Vec<(BanKey, Ban)> = Vec::new();
    walk::for_each_entry::<BanKey, Ban>(data.fd().as_fd(), |k, b| all.push((*k, *b)))
        .map_err(io_err(maps::BANS, WALK))?;
    all.sort_by_key(|(_, b)| b.until_ns);
    let latest = all.last().map_or(0, |(_, b)| b.until_ns);
    let mut m: HashMap<&mut MapData, BanKey, Ban> = fg.typed_map(maps::BANS)?;
    for (k, b) in &all {
        m.insert(k, b, 0).map_err(map_err(maps::BANS))?;
    }
    Ok((all.len() as u64, latest))
}

/// Bans in the old map that the new one lacks or holds an earlier end for:
/// those the old program made after the copy. Inserted through
/// `insert_ban`, which raises the user ban horizon and the horizon of the
/// ban's prefix so the new program looks them up. Returns how many.
pub fn sweep_bans(from: &Path, fg: &mut Floodgate) -> Result<u64, LoadError> {
    let data = old(from, maps::BANS)?;
    let mut late: Vec<(BanKey, Ban)> = Vec::new();
    walk::for_each_entry::<BanKey, Ban>(data.fd().as_fd(), |k, b| late.push((*k, *b)))
        .map_err(io_err(maps::BANS, WALK))?;
    let mut n = 0;
    for (k, b) in late {
        if fg.ban(&k)?.is_none_or(|now| now.until_ns < b.until_ns) {
            fg.insert_ban(&k, &b)?;
            n += 1;
        }
    }
    Ok(n)
}

fn old_counters(from: &Path) -> Result<PerCpuArray<MapData, Counter>, LoadError> {
    let name = maps::COUNTERS;
    PerCpuArray::try_from(Map::PerCpuArray(old(from, name)?)).map_err(map_err(name))
}

/// The per-CPU verdict × reason counters, entry by entry, each to where
/// the layout `L` puts it; returns what was copied.
fn copy_counters<L: Layout>(
    from: &Path,
    fg: &mut Floodgate,
) -> Result<Vec<(u32, u32, Vec<Counter>)>, LoadError> {
    let name = maps::COUNTERS;
    let old = old_counters(from)?;
    let mut new: PerCpuArray<&mut MapData, Counter> = fg.typed_map(name)?;
    let mut copied = Vec::new();
    for i in 0..old.len() {
        let Some(to) = L::counter(i).filter(|to| *to < new.len()) else {
            continue;
        };
        let values = old.get(&i, 0).map_err(map_err(name))?;
        copied.push((i, to, values.iter().copied().collect()));
        new.set(to, values, 0).map_err(map_err(name))?;
    }
    Ok(copied)
}

/// Adds to the new counters what the old program counted after
/// [`copy_counters`], once it no longer runs. The new program counts into
/// the same entries meanwhile (plain per-CPU adds that userspace cannot
/// make atomic): a packet it counts between this read and write of an entry
/// is lost, a window of microseconds.
pub fn add_late_counters(
    from: &Path,
    fg: &mut Floodgate,
    copied: &[(u32, u32, Vec<Counter>)],
) -> Result<u64, LoadError> {
    let name = maps::COUNTERS;
    let old = old_counters(from)?;
    let mut new: PerCpuArray<&mut MapData, Counter> = fg.typed_map(name)?;
    let mut late = 0;
    for (i, to, before) in copied {
        let now = old.get(i, 0).map_err(map_err(name))?;
        let delta: Vec<Counter> = now
            .iter()
            .zip(before)
            .map(|(n, b)| Counter {
                packets: n.packets.saturating_sub(b.packets),
                bytes: n.bytes.saturating_sub(b.bytes),
            })
            .collect();
        if delta.iter().all(|d| d.packets == 0) {
            continue;
        }
        let current = new.get(to, 0).map_err(map_err(name))?;
        let sum: Vec<Counter> = current
            .iter()
            .zip(&delta)
            .map(|(c, d)| Counter {
                packets: c.packets + d.packets,
                bytes: c.bytes + d.bytes,
            })
            .collect();
        late += delta.iter().map(|d| d.packets).sum::<u64>();
        let values = aya::maps::PerCpuValues::try_from(sum)
            .map_err(io_err(name, "PerCpuValues::try_from"))?;
        new.set(*to, values, 0).map_err(map_err(name))?;
    }
    Ok(late)
}

/// A plain array, entry by entry.
fn copy_array<T: Pod>(
    from: &Path,
    fg: &mut Floodgate,
    name: &'static str,
) -> Result<(), LoadError> {
    let old: Array<MapData, T> =
        Array::try_from(Map::Array(old(from, name)?)).map_err(map_err(name))?;
    let mut new: Array<&mut MapData, T> = fg.typed_map(name)?;
    for i in 0..old.len().min(new.len()) {
        let v = old.get(&i, 0).map_err(map_err(name))?;
        new.set(i, v, 0).map_err(map_err(name))?;
    }
    Ok(())
}
