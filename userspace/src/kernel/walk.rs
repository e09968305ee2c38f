//! Reading whole maps without a syscall per entry.
//!
//! aya 0.14 walks a map with BPF_MAP_GET_NEXT_KEY and a lookup per key: two
//! syscalls an entry, about a second over a million tracked sources, and on an
//! LRU map a key evicted under the walk restarts it from the first key.
//! BPF_MAP_LOOKUP_BATCH (Linux 5.6) copies a chunk of buckets per call and
//! resumes from a bucket index, so churn cannot restart it. Tries have no batch
//! op: they are walked by key (their entries are the lists and rules, far
//! fewer).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

use super::sys::{BPF_MAP_GET_NEXT_KEY, BPF_MAP_LOOKUP_BATCH, BPF_MAP_LOOKUP_ELEM, bpf};

/// Entries asked for per batch; doubled when one bucket holds more (ENOSPC).
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct Batch {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The `map_elem` member of `union bpf_attr` (lookup, next key).
#[repr(C)]
#[derive(Default)]
struct Elem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next: u64,
    flags: u64,
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// A zeroed buffer of `n` Pods.
fn zeroed<T: Pod>(n: usize) -> Vec<T> {
    // SAFETY: `Pod` types are valid for every bit pattern, all-zero included.
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}

/// Calls `f` with every entry of the hash (or LRU hash) map `fd`, whose keys
/// are `K` and values `V` (not a per-CPU map). Entries inserted or removed
/// during the walk may or may not be seen; none is seen twice.
pub fn for_each_entry<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    mut f: impl FnMut(&K, &V),
) -> io::Result<()> {
    let mut chunk = CHUNK;
    let mut keys: Vec<K> = zeroed(chunk);
    let mut values: Vec<V> = zeroed(chunk);
    // Hash maps resume from a u32 bucket index; u64 leaves room.
    let mut token = 0u64;
    let mut next = 0u64;
    let mut first = true;
    loop {
        let mut attr = Batch {
            in_batch: if first {
                0
            } else {
                std::ptr::from_ref(&token) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(chunk).unwrap_or(u32::MAX),
            map_fd: fd_u32(fd),
            ..Batch::default()
        };
        // SAFETY: a BPF_MAP_LOOKUP_BATCH head; `keys` and `values` hold
        // `count` elements of the map's key and value sizes, the tokens are
        // 8 bytes, and all outlive the call.
        let result = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        let filled = (attr.count as usize).min(chunk);
        match result {
            Ok(_) => {}
            // The last batch: `filled` entries, then the end.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                keys.iter()
                    .zip(&values)
                    .take(filled)
                    .for_each(|(k, v)| f(k, v));
                return Ok(());
            }
            // One bucket holds more entries than the chunk: a bigger one.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && filled == 0 => {
                chunk *= 2;
                keys = zeroed(chunk);
                values = zeroed(chunk);
                continue;
            }
            Err(e) => return Err(e),
        }
        keys.iter()
            .zip(&values)
            .take(filled)
            .for_each(|(k, v)| f(k, v));
        token = next;
        first = false;
    }
}

/// How many entries the hash map `fd` holds.
pub fn count_entries<K: Pod, V: Pod>(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut n = 0u64;
    for_each_entry::<K, V>(fd, |_, _| n += 1)?;
    Ok(n)
}

/// How many keys the map `fd` (a trie: no batch op) holds, by
/// BPF_MAP_GET_NEXT_KEY.
pub fn count_keys<K: Pod>(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut key: K = zeroed(1).remove(0);
    let mut next: K = zeroed(1).remove(0);
    let mut n = 0u64;
    let mut first = true;
    loop {
        let mut attr = Elem {
            map_fd: fd_u32(fd),
            key: if first {
                0
            } else {
                std::ptr::from_ref(&key) as u64
            },
            value_or_next: std::ptr::from_mut(&mut next) as u64,
            ..Elem::default()
        };
        // SAFETY: a BPF_MAP_GET_NEXT_KEY head; both keys are K, the map's key
        // type, and outlive the call.
        match unsafe { bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) } {
            Ok(_) => {
                n += 1;
                key = next;
                first = false;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}

/// The value of `key` in the map `fd`, if present.
pub fn lookup<K: Pod, V: Pod>(fd: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let mut value: V = zeroed(1).remove(0);
    let mut attr = Elem {
        map_fd: fd_u32(fd),
        key: std::ptr::from_ref(key) as u64,
        value_or_next: std::ptr::from_mut(&mut value) as u64,
        ..Elem::default()
    };
    // SAFETY: a BPF_MAP_LOOKUP_ELEM head; the key and value are the map's
    // types and outlive the call.
    match unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}
