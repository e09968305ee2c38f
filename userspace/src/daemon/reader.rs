//! The read-only queries that walk whole maps (`status` fills, `top`, `bans
//! list`, every metrics scrape), run off the daemon's loop.
//!
//! A [`Reader`] holds its own descriptors of the maps, so a walk needs nothing
//! of the engine and runs on a blocking thread while the loop goes on serving
//! changes. The walks are batched (`kernel::walk`): a million tracked sources
//! cost a few dozen syscalls, not two million.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    io,
    net::IpAddr,
    os::fd::{AsFd as _, OwnedFd},
    sync::Arc,
};

use aya::maps::{Map, lpm_trie::Key as TrieKey};
use floodgate_common::{AddrKey, Ban, BanKey, BlockEntry, Reason, Track6, maps, set_table::Set};
use ipnet::IpNet;
use tokio::sync::{Semaphore, oneshot};

use super::engine::monotonic_ns;
use crate::{
    addr::{from_lpm_key, mapped, unmapped},
    control::proto::{BanRow, Response, TopBy, TopRow},
    kernel::walk,
    loader::{Floodgate, LoadError},
    tables::{self, SetView, Tracked},
};

/// Walks at once: a storm of scrapes queues here instead of taking every CPU.
const CONCURRENT_WALKS: usize = 1;
/// The nice value of a walking thread: the loop (nice 0) gets the CPU first
/// when both want it, so a walk does not delay a change.
const WALK_NICE: i32 = 10;

/// Descriptors of the maps the queries walk.
pub struct Reader {
    sources: OwnedFd,
    prefixes: OwnedFd,
    sources6: OwnedFd,
    prefixes6: OwnedFd,
    /// Sets of the `sources` and `prefixes` tables.
    sets: (u32, u32),
    bans: OwnedFd,
    allow: OwnedFd,
    block: OwnedFd,
    rules: OwnedFd,
    walks: Arc<Semaphore>,
}

/// A map's own descriptor, once aya checked its key and value sizes.
fn fd_of<'a, T>(fg: &'a Floodgate, name: &'static str) -> Result<OwnedFd, LoadError>
where
    T: TryFrom<&'a Map, Error = aya::maps::MapError>,
{
    fg.typed_map_ref::<T>(name)?;
    let data = match fg.ebpf_ref().map(name) {
        Some(Map::Array(d) | Map::HashMap(d) | Map::LruHashMap(d) | Map::LpmTrie(d)) => d,
        _ => {
            return Err(LoadError::Map {
                name,
                source: aya::maps::MapError::InvalidName { name: name.into() },
            });
        }
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| LoadError::Map {
            name,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "dup",
                io_error: e,
            }),
        })
}

impl Reader {
    pub fn new(fg: &Floodgate) -> Result<Reader, LoadError> {
        use aya::maps::{Array, HashMap, LpmTrie, MapData};
        type Table<'a> = Array<&'a MapData, Set>;
        type Track6Map<'a> = HashMap<&'a MapData, AddrKey, Track6>;
        let c = fg.capacity();
        Ok(Reader {
            sources: fd_of::<Table<'_>>(fg, maps::SOURCES)?,
            prefixes: fd_of::<Table<'_>>(fg, maps::PREFIXES)?,
            sources6: fd_of::<Track6Map<'_>>(fg, maps::SOURCES6)?,
            prefixes6: fd_of::<Track6Map<'_>>(fg, maps::PREFIXES6)?,
            sets: (c.source_sets(), c.prefix_sets()),
            bans: fd_of::<HashMap<&MapData, BanKey, Ban>>(fg, maps::BANS)?,
            allow: fd_of::<LpmTrie<&MapData, [u8; 16], u32>>(fg, maps::ALLOW)?,
            block: fd_of::<LpmTrie<&MapData, [u8; 16], BlockEntry>>(fg, maps::BLOCK)?,
            rules: fd_of::<LpmTrie<&MapData, [u8; 16], u32>>(fg, maps::RULES)?,
            walks: Arc::new(Semaphore::new(CONCURRENT_WALKS)),
        })
    }

    /// Runs `query` on a blocking thread (at most [`CONCURRENT_WALKS`] at
    /// once) and sends its answer to `reply`; returns at once.
    pub fn spawn(
        self: &Arc<Self>,
        reply: oneshot::Sender<Response>,
        query: impl FnOnce(&Reader) -> Response + Send + 'static,
    ) {
        let reader = Arc::clone(self);
        tokio::spawn(async move {
            let Ok(_permit) = Arc::clone(&reader.walks).acquire_owned().await else {
                return;
            };
            let answer = tokio::task::spawn_blocking(move || {
                lower_priority();
                query(&reader)
            })
            .await
            .unwrap_or_else(|e| Response::Error(format!("the query failed: {e}")));
            let _ = reply.send(answer);
        });
    }

    /// Entries of each walked map, by map name.
    pub fn fills(&self) -> io::Result<[(&'static str, u64); 8]> {
        type Trie = TrieKey<[u8; 16]>;
        let table = |fd: &OwnedFd, sets| SetView::map(fd.as_fd(), sets, false).map(|v| v.count());
        let v6 = |fd: &OwnedFd| walk::count_entries::<AddrKey, Track6>(fd.as_fd());
        Ok([
            (maps::SOURCES, table(&self.sources, self.sets.0)?),
            (maps::PREFIXES, table(&self.prefixes, self.sets.1)?),
            (maps::SOURCES6, v6(&self.sources6)?),
            (maps::PREFIXES6, v6(&self.prefixes6)?),
            (
                maps::BANS,
                walk::count_entries::<BanKey, Ban>(self.bans.as_fd())?,
            ),
            (maps::ALLOW, walk::count_keys::<Trie>(self.allow.as_fd())?),
            (maps::BLOCK, walk::count_keys::<Trie>(self.block.as_fd())?),
            (maps::RULES, walk::count_keys::<Trie>(self.rules.as_fd())?),
        ])
    }

    /// Active bans, at most `limit` of them (those ending last first), and how
    /// many there are in all.
    pub fn active_bans(&self, limit: usize) -> io::Result<(Vec<BanRow>, u64)> {
        let now = monotonic_ns();
        let mut all = Vec::new();
        walk::for_each_entry::<BanKey, Ban>(self.bans.as_fd(), |k, b| {
            if b.until_ns > now {
                all.push((*k, *b));
            }
        })?;
        let total = all.len() as u64;
        if all.len() > limit {
            all.select_nth_unstable_by_key(limit, |(_, b)| Reverse(b.until_ns));
            all.truncate(limit);
        }
        all.sort_by_key(|(_, b)| Reverse(b.until_ns));
        Ok((all.iter().map(|(k, b)| ban_row(k, b, now)).collect(), total))
    }

    /// The ban entries that decided packets, by address: source bans, or with
    /// `prefixes` prefix bans.
    fn ban_counts(&self, prefixes: bool) -> io::Result<std::collections::HashMap<[u8; 16], Ban>> {
        let mut out = std::collections::HashMap::new();
        walk::for_each_entry::<BanKey, Ban>(self.bans.as_fd(), |k, b| {
            if b.packets > 0 && (k.prefix_len < 128) == prefixes {
                out.insert(k.addr, *b);
            }
        })?;
        Ok(out)
    }

    /// Active bans in all (a walk of the map, keys and ends only).
    pub fn active_ban_count(&self) -> io::Result<u64> {
        let now = monotonic_ns();
        let mut n = 0;
        walk::for_each_entry::<BanKey, Ban>(self.bans.as_fd(), |_, b| {
            n += u64::from(b.until_ns > now);
        })?;
        Ok(n)
    }

    /// The `n` heaviest sources (or prefixes) by `by`, with their bans;
    /// `prefix_lens` are those the program masks sources to (IPv4, IPv6).
    pub fn top(
        &self,
        n: usize,
        by: TopBy,
        prefixes: bool,
        prefix_lens: (u32, u32),
    ) -> io::Result<Vec<TopRow>> {
        let (table, v6, sets) = if prefixes {
            (&self.prefixes, &self.prefixes6, self.sets.1)
        } else {
            (&self.sources, &self.sources6, self.sets.0)
        };
        let weight = |s: &Counts| match by {
            TopBy::Packets => s.packets,
            TopBy::Bytes => s.bytes,
            TopBy::Drops => s.drops,
        };
        // What bans decided is counted on the ban entries (one lookup fewer
        // per banned packet): added to the tracked entries here, and a
        // banned key whose tracked entry is gone still ranks on them.
        let mut banned = self.ban_counts(prefixes)?;
        // The n largest in one pass: a min-heap of n, not a sort of them all.
        let mut heap: BinaryHeap<Reverse<(u64, [u8; 16])>> = BinaryHeap::with_capacity(n + 1);
        let mut states = std::collections::HashMap::with_capacity(n + 1);
        let mut offer = |addr: [u8; 16], s: Counts| {
            let w = weight(&s);
            if heap.len() < n {
                heap.push(Reverse((w, addr)));
                states.insert(addr, s);
            } else if heap.peek().is_some_and(|Reverse((least, _))| w > *least) {
                if let Some(Reverse((_, gone))) = heap.pop() {
                    states.remove(&gone);
                }
                heap.push(Reverse((w, addr)));
                states.insert(addr, s);
            }
        };
        tables::walk_fds(table.as_fd(), sets, v6.as_fd(), |e| {
            let mut s = Counts::of(&e);
            if let Some(b) = banned.remove(&e.addr) {
                s.add_banned(&b);
            }
            offer(e.addr, s);
        })?;
        for (addr, b) in banned {
            let mut s = Counts {
                last_seen_ns: b.banned_at_ns,
                ..Counts::default()
            };
            s.add_banned(&b);
            offer(addr, s);
        }
        let now = monotonic_ns();
        let mut rows = heap.into_sorted_vec();
        rows.truncate(n);
        rows.into_iter()
            .filter_map(|Reverse((_, key))| states.get(&key).map(|s| (key, *s)))
            .map(|(key, s)| {
                let addr = unmapped(key);
                let (target, ban_key) = if prefixes {
                    let plen = prefix_len_of(addr, prefix_lens);
                    (
                        from_lpm_key(plen, key).to_string(),
                        BanKey::prefix(key, plen),
                    )
                } else {
                    (addr.to_string(), BanKey::source(key))
                };
                let ban = walk::lookup::<BanKey, Ban>(self.bans.as_fd(), &ban_key)?
                    .filter(|b| b.until_ns > now)
                    .map(|b| ban_row(&ban_key, &b, now));
                Ok(TopRow {
                    target,
                    packets: s.packets,
                    bytes: s.bytes,
                    drops: s.drops,
                    last_seen_secs_ago: now.saturating_sub(s.last_seen_ns) as f64 / 1e9,
                    ban,
                })
            })
            .collect()
    }
}

/// What `top` ranks and shows of a tracked entry.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    packets: u64,
    bytes: u64,
    drops: u64,
    last_seen_ns: u64,
}

impl Counts {
    fn of(e: &Tracked) -> Counts {
        Counts {
            packets: e.state.packets,
            bytes: e.state.bytes,
            drops: u64::from(e.state.drops),
            last_seen_ns: e.last_seen_ns(),
        }
    }

    /// Adds what the ban `b` decided (all drops: would-drops of a would-ban
    /// count as drops there too, as on the entry).
    fn add_banned(&mut self, b: &Ban) {
        self.packets += b.packets;
        self.bytes += b.bytes;
        self.drops += b.packets;
    }
}

/// The mapped length of `addr`'s prefix, as the program computes it (an
/// IPv4-mapped IPv6 address takes the IPv4 prefix).
pub fn prefix_len_of(addr: IpAddr, (v4, v6): (u32, u32)) -> u32 {
    let is_v6 = addr.is_ipv6() && !floodgate_common::prefix::is_v4_mapped(&mapped(addr));
    floodgate_common::prefix::mapped_prefix_len(is_v6, v4, v6)
}

/// Gives this thread (and only it: Linux keeps a nice value per thread) the
/// [`WALK_NICE`] priority. Tokio reuses blocking threads for walks alone.
fn lower_priority() {
    // SAFETY: plain syscalls on this thread's own id.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WALK_NICE)
    };
    if done != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "setpriority for a walk");
    }
}

/// A ban as `bans list` and `top` show it.
pub fn ban_row(k: &BanKey, b: &Ban, now: u64) -> BanRow {
    let target = if k.prefix_len >= 128 {
        IpNet::from(unmapped(k.addr))
    } else {
        from_lpm_key(k.prefix_len, k.addr)
    };
    BanRow {
        target,
        reason: Reason::from_u32(b.reason_code())
            .map_or("unknown", Reason::name)
            .to_owned(),
        would_ban: b.is_would_ban(),
        remaining_secs: b.until_ns.saturating_sub(now) as f64 / 1e9,
        duration_secs: b.duration_ns as f64 / 1e9,
        offenses: b.offenses,
        origin: None,
        scenario: None,
    }
}
