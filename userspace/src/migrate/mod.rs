//! What is pinned, and moving it to new maps when it cannot be adopted as it
//! is: pins of the previous layout version (an upgrade) or of other
//! capacities (a resize).
//!
//! A migration never leaves the interfaces unfiltered: the old program goes on
//! filtering with the old maps while new maps are created under
//! `maps-next/`, filled from the old ones ([`copy`]) and given the policy;
//! then the new program replaces the old one in each pinned link
//! (BPF_LINK_UPDATE), the bans the old program made meanwhile are copied once
//! more, and `maps-next/` takes the place of `maps/`.

mod copy;

pub use copy::Copied;

use std::path::{Path, PathBuf};

use std::os::fd::AsFd as _;

use aya::maps::MapData;
use floodgate_common::{
    LAYOUT_VERSION, Meta, maps, previous::PREVIOUS_LAYOUT_VERSION, set_table::WAYS,
};
use tracing::info;

use crate::loader::{Capacity, Floodgate, LoadError};

/// Where the maps of a migration are made, below the pin dir.
pub fn staging_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps-next")
}

/// Where the old maps go while the new ones move into place.
pub fn retired_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps-old")
}

/// What a pin directory's `maps/` holds, for a load asking for `wanted`.
#[derive(Debug)]
pub enum Pinned {
    /// Nothing: a first start.
    Nothing,
    /// Maps of this layout and these capacities: adopted as they are.
    Adopt,
    /// Maps to move into new ones.
    Migrate(Migration),
}

/// Pinned maps to move into new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The old maps' directory (`maps/`).
    pub from: PathBuf,
    /// Their layout version: [`LAYOUT_VERSION`] or [`PREVIOUS_LAYOUT_VERSION`].
    pub version: u32,
    /// Their capacities.
    pub capacity: Capacity,
}

/// Reads `dir`'s `META` (and capacities) against this binary's layout and
/// `wanted`.
pub fn inspect(dir: &Path, wanted: &Capacity) -> Result<Pinned, LoadError> {
    let Some(found) = pinned_layout(dir)? else {
        return Ok(Pinned::Nothing);
    };
    if found != LAYOUT_VERSION && found != PREVIOUS_LAYOUT_VERSION {
        return Err(LoadError::LayoutMismatch {
            // The pin dir, which `floodgate detach --pin-dir` takes.
            dir: dir.parent().unwrap_or(dir).to_owned(),
            found,
            expected: LAYOUT_VERSION,
        });
    }
    let capacity = pinned_capacity(dir)?;
    if found == LAYOUT_VERSION && capacity == *wanted {
        return Ok(Pinned::Adopt);
    }
    Ok(Pinned::Migrate(Migration {
        from: dir.to_owned(),
        version: found,
        capacity,
    }))
}

/// The layout version in `dir`'s pinned `META`; None when nothing is pinned.
fn pinned_layout(dir: &Path) -> Result<Option<u32>, LoadError> {
    Ok(pinned_meta(dir)?.map(|m| m.layout_version))
}

/// `dir`'s pinned `META`, read as this layout's (an older, shorter one reads
/// with zeroes past its end); None when nothing is pinned.
pub fn pinned_meta(dir: &Path) -> Result<Option<Meta>, LoadError> {
    let path = dir.join(maps::META);
    if !path.exists() {
        return Ok(None);
    }
    let map_err = |source| LoadError::Map {
        name: maps::META,
        source,
    };
    let data = MapData::from_pin(&path).map_err(map_err)?;
    crate::kernel::walk::lookup::<u32, Meta>(data.fd().as_fd(), &0).map_err(|io_error| {
        map_err(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_lookup_elem",
            io_error,
        }))
    })
}

/// The capacities the maps pinned in `dir` really have (the kernel's
/// `max_entries`; a table's in ways). Layout-4 pins have one LRU map for
/// sources and one for prefixes: their sizes are given as the IPv4 ones, and
/// the IPv6 ones as 0.
pub fn pinned_capacity(dir: &Path) -> Result<Capacity, LoadError> {
    let max = |name: &'static str| -> Result<Option<u32>, LoadError> {
        let path = dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let map_err = |source| LoadError::Map { name, source };
        let data = MapData::from_pin(path).map_err(map_err)?;
        Ok(Some(data.info().map_err(map_err)?.max_entries()))
    };
    let need = |name: &'static str| -> Result<u32, LoadError> {
        max(name)?.ok_or(LoadError::Map {
            name,
            source: aya::maps::MapError::InvalidName { name: name.into() },
        })
    };
    let sources6 = max(maps::SOURCES6)?;
    let ways = |n: u32| if sources6.is_some() { n * WAYS } else { n };
    Ok(Capacity {
        sources: ways(need(maps::SOURCES)?),
        prefixes: ways(need(maps::PREFIXES)?),
        sources6: sources6.unwrap_or(0),
        prefixes6: max(maps::PREFIXES6)?.unwrap_or(0),
        bans: need(maps::BANS)?,
        lists: need(maps::BLOCK)?,
    })
}

impl Migration {
    /// What the log says about it.
    pub fn describe(&self, to: &Capacity) -> String {
        let mut parts = Vec::new();
        if self.version != LAYOUT_VERSION {
            parts.push(format!(
                "layout version {} to {LAYOUT_VERSION}",
                self.version
            ));
        }
        for (name, from, to) in [
            ("sources", self.capacity.sources, to.sources),
            ("prefixes", self.capacity.prefixes, to.prefixes),
            ("IPv6 sources", self.capacity.sources6, to.sources6),
            ("IPv6 prefixes", self.capacity.prefixes6, to.prefixes6),
            ("bans", self.capacity.bans, to.bans),
            ("lists", self.capacity.lists, to.lists),
        ] {
            if from != to {
                parts.push(format!("{name} {from} to {to}"));
            }
        }
        parts.join(", ")
    }

    /// Copies the old maps' state into `fg`'s (new, not yet attached) maps:
    /// bans with their ends and offences, tracked sources and prefixes,
    /// counters, interface slots, the ban horizons. What the config and the
    /// runtime state hold (policies, lists, ports) is written by the daemon's
    /// apply, not copied.
    pub fn copy_into(&self, fg: &mut Floodgate) -> Result<Copied, LoadError> {
        let copied = if self.version == LAYOUT_VERSION {
            copy::copy_all::<copy::Current>(&self.from, fg)?
        } else {
            copy::copy_all::<copy::Previous>(&self.from, fg)?
        };
        fg.set_adopted();
        info!(
            sources = copied.sources,
            prefixes = copied.prefixes,
            bans = copied.bans,
            "copied the pinned state into the new maps"
        );
        Ok(copied)
    }

    /// After the new program replaced the old one in every pinned link: copies
    /// the bans the old program made since [`Migration::copy_into`], then puts
    /// the new maps in the old ones' place. The old maps are freed once the
    /// last reference (their pins, the old program) is gone.
    pub fn finish(
        &self,
        fg: &mut Floodgate,
        pin_dir: &Path,
        copied: &Copied,
    ) -> Result<Late, LoadError> {
        // A run of the old program that began before the swap may still be
        // finishing on another CPU: give it a moment.
        std::thread::sleep(SETTLE);
        let late = Late {
            bans: copy::sweep_bans(&self.from, fg)?,
            packets: copy::add_late_counters(&self.from, fg, &copied.counters)?,
        };
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LoadError::Io { path, source }
        };
        let retired = retired_dir(pin_dir);
        remove_dir(&retired).map_err(io(&retired))?;
        std::fs::rename(&self.from, &retired).map_err(io(&self.from))?;
        let staging = staging_dir(pin_dir);
        std::fs::rename(&staging, &self.from).map_err(io(&staging))?;
        remove_dir(&retired).map_err(io(&retired))?;
        Ok(late)
    }
}

/// How long [`Migration::finish`] waits after the swap for runs of the old
/// program in flight (they take microseconds).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(20);

/// What the old program did after the copy and [`Migration::finish`] carried
/// over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub bans: u64,
    pub packets: u64,
}

/// Removes a directory of pins (nothing when it does not exist).
pub fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                std::fs::remove_file(e?.path())?;
            }
            std::fs::remove_dir(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
