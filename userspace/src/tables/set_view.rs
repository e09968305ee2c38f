//! A set table (`floodgate_common::set_table`) mapped into this process: the
//! kernel's array memory itself (BPF_F_MMAPABLE), read set by set in order —
//! no syscall per entry, so a walk of a million sources is a sequential read
//! of its memory, not a million lookups.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use floodgate_common::{
    TrackState,
    set_table::{Set, WAYS, choose, holds, second_set_of, set_of, tag, tag_key, tag_tick},
};

/// One claimed way: its key, the tick it was last seen at, its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Way {
    pub key: u32,
    pub last_seen_tick: u32,
    pub state: TrackState,
}

/// A table's sets, mapped shared.
pub struct SetView {
    sets: NonNull<Set>,
    count: usize,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory owned by this value; every
// access is a volatile copy of a whole set.
unsafe impl Send for SetView {}
// SAFETY: as above; `&self` methods only read.
unsafe impl Sync for SetView {}

impl SetView {
    /// Maps the `sets` sets of the table `fd`; `writable` for [`SetView::put`].
    pub fn map(fd: BorrowedFd<'_>, sets: u32, writable: bool) -> io::Result<SetView> {
        let count = sets as usize;
        let len = count * size_of::<Set>();
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks
        // the length against the map's size.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let sets = NonNull::new(p.cast::<Set>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(SetView {
            sets,
            count,
            writable,
        })
    }

    /// Sets in the table.
    pub fn sets(&self) -> u32 {
        self.count as u32
    }

    /// A copy of set `i` (the program may change it meanwhile: a way
    /// claimed or refreshed during the copy reads as either).
    fn set(&self, i: usize) -> Set {
        // SAFETY: `i < count`, inside the mapping; Set is Pod.
        unsafe { std::ptr::read_volatile(self.sets.as_ptr().add(i)) }
    }

    /// Calls `f` with every claimed way.
    pub fn for_each(&self, mut f: impl FnMut(Way)) {
        for i in 0..self.count {
            let set = self.set(i);
            for (t, state) in set.tags.iter().zip(set.ways) {
                if *t != 0 {
                    f(Way {
                        key: tag_key(*t),
                        last_seen_tick: tag_tick(*t),
                        state,
                    });
                }
            }
        }
    }

    /// Claimed ways.
    pub fn count(&self) -> u64 {
        let mut n = 0;
        for i in 0..self.count {
            n += self.set(i).tags.iter().filter(|t| **t != 0).count() as u64;
        }
        n
    }

    /// The two sets `key` may live in, in a table hashed with `seed`.
    fn sets_of(&self, key: u32, seed: u64) -> [usize; 2] {
        [
            set_of(key, seed, self.sets()) as usize,
            second_set_of(key, seed, self.sets()) as usize,
        ]
    }

    /// The way holding `key` in a table hashed with `seed`.
    pub fn get(&self, key: u32, seed: u64) -> Option<Way> {
        self.sets_of(key, seed).into_iter().find_map(|i| {
            let set = self.set(i);
            set.tags
                .iter()
                .zip(set.ways)
                .find(|(t, _)| holds(**t, key))
                .map(|(t, state)| Way {
                    key,
                    last_seen_tick: tag_tick(*t),
                    state,
                })
        })
    }

    /// Writes `way` into the table hashed with `seed` as the program would
    /// insert it: over the way already holding its key, else where
    /// `set_table::choose` puts a newcomer. Plain stores: for tables no
    /// program runs on yet (a migration's new maps, a test's).
    pub fn put(&mut self, way: &Way, seed: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let [a, b] = self.sets_of(way.key, seed);
        let (sa, sb) = (self.set(a), self.set(b));
        let holding = |s: &Set| s.tags.iter().position(|t| holds(*t, way.key));
        let (i, mut set, w) = match (holding(&sa), holding(&sb)) {
            (Some(w), _) => (a, sa, w),
            (None, Some(w)) => (b, sb, w),
            (None, None) => match choose(&sa.tags, &sb.tags, way.last_seen_tick) {
                (false, w) => (a, sa, w),
                (true, w) => (b, sb, w),
            },
        };
        set.tags[w] = tag(way.key, way.last_seen_tick | 1);
        set.ways[w] = way.state;
        // SAFETY: `i < count`, inside a writable mapping (checked above).
        unsafe { std::ptr::write_volatile(self.sets.as_ptr().add(i), set) };
        Ok(())
    }
}

impl SetView {
    /// Raises the horizon (`floodgate_common::horizon::prefix_horizon`) of the
    /// prefix entry holding `key` to at least `until_ns`, in a table hashed
    /// with `seed` that the program may be using: an atomic maximum on the
    /// one word, nothing else written. False when no way holds `key`.
    pub fn raise_horizon(&self, key: u32, seed: u64, until_ns: u64) -> io::Result<bool> {
        if !self.writable {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        for i in self.sets_of(key, seed) {
            // SAFETY: `i < count`, inside a writable shared mapping; the
            // words are aligned u64s of a `Set` the program updates only
            // with atomics or plain stores of whole words.
            unsafe {
                let set = self.sets.as_ptr().add(i);
                for w in 0..WAYS as usize {
                    let tag = AtomicU64::from_ptr((&raw mut (*set).tags).cast::<u64>().add(w));
                    if holds(tag.load(Ordering::SeqCst), key) {
                        let state = (&raw mut (*set).ways).cast::<TrackState>().add(w);
                        AtomicU64::from_ptr(&raw mut (*state).bytes_tat)
                            .fetch_max(until_ns, Ordering::SeqCst);
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

impl Drop for SetView {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe {
            libc::munmap(self.sets.as_ptr().cast(), self.count * size_of::<Set>());
        }
    }
}
