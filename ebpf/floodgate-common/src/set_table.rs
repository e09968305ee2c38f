//! The set-associative tables IPv4 sources and prefixes live in (`SOURCES`,
//! `PREFIXES`): hashed by the program itself instead of the kernel's LRU hash,
//! which costs a 48-byte header an entry, a jhash of a 16-byte key and a
//! global lock on every miss.
//!
//! A table is an ARRAY map (mmapable, so userspace reads it by mmap) of
//! [`Set`]s: [`WAYS`] tags in the set's first cache line, then the ways'
//! [`TrackState`]s. A key lives in one of two sets, chosen by keyed hashes
//! ([`set_of`], [`second_set_of`]); a way's tag — the key and when it was
//! last seen — is claimed with one 64-bit compare-and-swap, and a newcomer
//! takes an empty way of the emptier set or else the way of the eight seen
//! longest ago ([`choose`]). No global lock, no free list: a miss costs one
//! CAS, a hit reads one or two cache lines of tags.
//!
//! Keys are IPv4 addresses as a u32 in memory order ([`v4_key`]); IPv6 keeps
//! the kernel's LRU hash (`SOURCES6`, `PREFIXES6`), which has room for its
//! 16-byte keys.

use crate::TrackState;

/// Ways per set.
pub const WAYS: u32 = 4;

/// A tick is 2^26 ns (about 67 ms): a way's tag is refreshed at most once a
/// tick, so a source seen every few milliseconds costs no compare-and-swap
/// on most packets (with a 1 ms tick, 10 000 live sources paid one on nearly
/// every packet: 0.61 against 0.70 of XDP_DROP in the bench). Eviction only
/// needs to tell a live source from one gone quiet; a 32-bit tick wraps
/// after about 9 years.
pub const TICK_SHIFT: u32 = 26;

/// One way of the bench's prototype table (`cargo xtask bench`'s `set_table`
/// limiter): 32 bytes, two per cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// [`tag`]: key and last-seen tick; 0 is an empty way.
    pub tag: u64,
    /// GCRA arrival time of the packet bucket.
    pub tat: u64,
    /// Room the product's entry needs (its other buckets); the bench's
    /// limiter leaves it unused.
    pub _spare: [u64; 2],
}

/// One set of a table: the tags first (one cache line holds all four, so a
/// lookup reads one line before it finds its way), then the ways' state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Set {
    /// [`tag`]s; 0 is an empty way.
    pub tags: [u64; WAYS as usize],
    pub ways: [TrackState; WAYS as usize],
}

/// Sets of a table holding `entries` (at least one set).
pub const fn sets_for(entries: u32) -> u32 {
    let sets = entries.div_ceil(WAYS);
    if sets == 0 { 1 } else { sets }
}

/// The table key of an IPv4-mapped address: its last four bytes as a
/// little-endian u32, which is what the program reads from the high half of
/// the address's second 64-bit word ([`v4_key_of_word`]).
#[inline(always)]
pub const fn v4_key(addr: &[u8; 16]) -> u32 {
    u32::from_le_bytes([addr[12], addr[13], addr[14], addr[15]])
}

/// [`v4_key`] of the address whose bytes 8 to 15 are `word` (a little-endian
/// load, as on every target the program runs on).
#[inline(always)]
pub const fn v4_key_of_word(word: u64) -> u32 {
    (word >> 32) as u32
}

/// The key of the IPv4 prefix of `v4_len` bits (0 to 32) holding `key`: the
/// address's first bits in network order, kept in the key's memory order.
#[inline(always)]
pub const fn v4_prefix_key(key: u32, v4_len: u32) -> u32 {
    if v4_len == 0 {
        return 0;
    }
    let len = if v4_len > 32 { 32 } else { v4_len };
    key & (u32::MAX << (32 - len)).swap_bytes()
}

/// The IPv4-mapped address of a table key.
pub const fn v4_addr(key: u32) -> [u8; 16] {
    let b = key.to_le_bytes();
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ]
}

/// The tick of `now_ns`, never 0 (so no claimed tag is 0, the empty way, even
/// for key 0.0.0.0).
#[inline(always)]
pub const fn tick(now_ns: u64) -> u32 {
    ((now_ns >> TICK_SHIFT) as u32) | 1
}

/// The tag word of `key` last seen at `tick`.
#[inline(always)]
pub const fn tag(key: u32, tick: u32) -> u64 {
    ((key as u64) << 32) | tick as u64
}

/// The key of a claimed tag.
#[inline(always)]
pub const fn tag_key(tag: u64) -> u32 {
    (tag >> 32) as u32
}

/// The last-seen tick of a tag.
#[inline(always)]
pub const fn tag_tick(tag: u64) -> u32 {
    tag as u32
}

/// Whether `tag` holds `key` (an empty way holds nothing).
#[inline(always)]
pub const fn holds(tag: u64, key: u32) -> bool {
    tag != 0 && tag_key(tag) == key
}

/// The set of `key` among `sets`: a keyed multiply-xorshift mix (the secret
/// `seed` is drawn when the table is made, so a sender cannot aim its
/// addresses at one set without knowing it), scaled to `sets` by a multiply
/// rather than a modulo (the table need not be a power of two). A bare
/// multiply-shift spread sequential keys well but left sets of a strided pool
/// empty beside sets holding nine times their share.
#[inline(always)]
pub const fn set_of(key: u32, seed: u64, sets: u32) -> u32 {
    let mut h = (key as u64 ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 31;
    h = h.wrapping_mul(seed | 1);
    h ^= h >> 29;
    (((h >> 32) * sets as u64) >> 32) as u32
}

/// The second set `key` may live in ("two choices": a newcomer goes to the
/// emptier of its two sets, which keeps about 92 % of a full table's ways
/// filled against 80 % with one set a key). Hashed with a seed derived from
/// the table's, so it is as unknown to senders; it may equal the first.
#[inline(always)]
pub const fn second_set_of(key: u32, seed: u64, sets: u32) -> u32 {
    set_of(key, seed.rotate_left(32) ^ 0x6a09_e667_f3bc_c909, sets)
}

/// Where a newcomer goes, given its two sets' tags `a` and `b`: `(in_b,
/// way)`. The emptier set (the first on a tie) and its first empty way; when
/// both are full, the way seen longest before `now` of the eight. Ways are
/// only ever claimed, never emptied, so a set's first empty way is also how
/// many it holds: comparing the two [`victim`]s is comparing the fills,
/// without counting (the verifier walks every branch of a count).
#[inline(always)]
pub fn choose(a: &[u64; WAYS as usize], b: &[u64; WAYS as usize], now: u32) -> (bool, usize) {
    let (va, vb) = (victim(a, now), victim(b, now));
    let (ta, tb) = (a[va & 3], b[vb & 3]);
    let in_b = if ta == 0 && tb == 0 {
        vb < va
    } else if ta == 0 || tb == 0 {
        tb == 0
    } else {
        now.wrapping_sub(tag_tick(tb)) > now.wrapping_sub(tag_tick(ta))
    };
    if in_b { (true, vb) } else { (false, va) }
}

/// The tick a tick-based time stands for, in ns: the start of the tick.
pub const fn tick_ns(tick: u32) -> u64 {
    (tick as u64) << TICK_SHIFT
}

/// The way a newcomer claims in a set whose tags are `tags`: the first empty
/// one, else the one seen longest before `now` (ages wrap with the tick; of
/// equally stale ones, the last). The stalest is kept as one number, its age
/// and way packed together, not as a way index: the verifier then follows
/// the comparisons as one state each, where four constant indices doubled
/// its paths at every way.
#[inline(always)]
pub fn victim(tags: &[u64; WAYS as usize], now: u32) -> usize {
    let mut best = 0u64;
    let mut i = 0;
    while i < WAYS as usize {
        if tags[i] == 0 {
            return i;
        }
        let age = u64::from(now.wrapping_sub(tag_tick(tags[i])));
        let candidate = (age << 2) | i as u64;
        if candidate > best {
            best = candidate;
        }
        i += 1;
    }
    (best & u64::from(WAYS - 1)) as usize
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_empty_way_is_taken_before_any_claimed_one() {
        let t = tick(5 << TICK_SHIFT);
        assert_eq!(victim(&[tag(1, t), 0, tag(2, 1), 0], t + 9), 1);
        assert_eq!(victim(&[0; 4], t), 0);
    }

    #[test]
    fn the_stalest_way_goes_across_the_ticks_wrap() {
        // Ticks 0xffff_fff1 and 0xffff_ffff were before the wrap, 3 after it.
        let tags = [
            tag(1, 3),
            tag(2, 0xffff_fff1),
            tag(3, 0xffff_ffff),
            tag(4, 5),
        ];
        assert_eq!(victim(&tags, 7), 1);
    }

    #[test]
    fn key_zero_is_never_an_empty_way() {
        let t = tick(0);
        assert_ne!(tag(0, t), 0);
        assert!(holds(tag(0, t), 0));
        assert!(!holds(0, 0));
    }

    proptest! {
        #[test]
        fn a_newcomer_takes_an_empty_way_of_the_emptier_set_else_the_stalest_of_eight(
            a: [u64; 4],
            b: [u64; 4],
            fa in 0usize..=4,
            fb in 0usize..=4,
            now: u32,
        ) {
            // Sets as the table has them: claimed ways first, then empty ones.
            let packed = |t: [u64; 4], n: usize| {
                let mut p = [0u64; 4];
                p[..n].copy_from_slice(&t.map(|x| x | 1)[..n]);
                p
            };
            let (a, b) = (packed(a, fa), packed(b, fb));
            let (in_b, w) = choose(&a, &b, now);
            let (chosen, other) = if in_b { (&b, &a) } else { (&a, &b) };
            let empty = |t: &[u64; 4]| t.iter().filter(|x| **x == 0).count();
            if a.contains(&0) || b.contains(&0) {
                prop_assert_eq!(chosen[w], 0);
                prop_assert!(empty(chosen) >= empty(other));
            } else {
                let age = |t: u64| now.wrapping_sub(tag_tick(t));
                prop_assert!(a.iter().chain(&b).all(|t| age(*t) <= age(chosen[w])));
            }
        }

        #[test]
        fn a_tag_gives_back_its_key_and_tick(key: u32, now: u64) {
            let t = tick(now);
            prop_assert_eq!(tag_key(tag(key, t)), key);
            prop_assert_eq!(tag_tick(tag(key, t)), t);
            prop_assert!(holds(tag(key, t), key));
        }

        #[test]
        fn every_key_falls_in_a_set_of_the_table(key: u32, seed: u64, sets in 1u32..) {
            prop_assert!(set_of(key, seed, sets) < sets);
        }

        #[test]
        fn a_prefix_key_is_the_masked_address(addr: [u8; 4], len in 0u32..=32) {
            let mapped = v4_addr(u32::from_le_bytes(addr));
            let masked = crate::prefix::mask(&mapped, 96 + len);
            prop_assert_eq!(v4_prefix_key(v4_key(&mapped), len), v4_key(&masked));
        }

        #[test]
        fn a_key_and_its_address_agree(addr: [u8; 4]) {
            let mut mapped = [0u8; 16];
            mapped[10] = 0xff;
            mapped[11] = 0xff;
            mapped[12..].copy_from_slice(&addr);
            let key = v4_key(&mapped);
            prop_assert_eq!(v4_addr(key), mapped);
            let word = u64::from_le_bytes(mapped[8..].try_into().unwrap_or([0; 8]));
            prop_assert_eq!(v4_key_of_word(word), key);
        }

        #[test]
        fn the_victim_is_empty_or_at_least_as_stale_as_every_way(
            tags: [u64; 4],
            now: u32,
        ) {
            let v = victim(&tags, now);
            if tags.contains(&0) {
                prop_assert_eq!(tags[v], 0);
            } else {
                let age = |t: u64| now.wrapping_sub(tag_tick(t));
                prop_assert!(tags.iter().all(|t| age(*t) <= age(tags[v])));
            }
        }
    }

    #[test]
    fn sequential_addresses_spread_evenly_over_the_sets() {
        // A /16 of neighbours (what a scraper's pool often is) over 1024 sets:
        // 64 a set on average; no set may hold twice that.
        let bits = 10;
        let mut per_set = [0u32; 1 << 10];
        for key in 0xc612_0000u32..0xc613_0000 {
            per_set[set_of(key, 0x9e37_79b9_7f4a_7c15, 1 << bits) as usize] += 1;
        }
        let max = per_set.iter().max().copied().unwrap_or(0);
        assert!(max <= 128, "a set holds {max} of 65536 keys");
    }

    #[test]
    fn two_choices_fill_more_of_a_full_table_than_one() {
        // 100 000 keys into 100 000 ways: each goes to the emptier of its two
        // sets, as the program puts them (a full pair loses a way).
        let sets = 25_000u32;
        let seed = 0x0123_4567_89ab_cdef;
        let mut one = std::vec![0u8; sets as usize];
        let mut two = std::vec![0u8; sets as usize];
        for key in 0..100_000u32 {
            let k = key.wrapping_mul(2_654_435_761) ^ 0xc612_0000;
            let a = set_of(k, seed, sets) as usize;
            let b = second_set_of(k, seed, sets) as usize;
            if one[a] < 4 {
                one[a] += 1;
            }
            let t = if two[b] < two[a] { b } else { a };
            if two[t] < 4 {
                two[t] += 1;
            }
        }
        let filled = |f: &[u8]| f.iter().map(|n| u32::from(*n)).sum::<u32>();
        let (one, two) = (filled(&one), filled(&two));
        assert!((78_000..83_000).contains(&one), "one choice fills {one}");
        assert!(two >= 90_000, "two choices fill {two}");
    }

    #[test]
    fn a_table_has_a_way_for_every_entry_asked_for() {
        assert_eq!(sets_for(1_000_000), 250_000);
        assert_eq!(sets_for(1_000_001), 250_001);
        assert_eq!(sets_for(0), 1);
    }

    #[test]
    fn sets_of_any_count_fill_evenly() {
        // 1000 sets, not a power of two: every set gets its share of 200k
        // keys, within a factor of two.
        let mut per_set = [0u32; 1000];
        for key in 0..200_000u32 {
            per_set
                [set_of(key.wrapping_mul(2_654_435_761), 0x1234_5678_9abc_def1, 1000) as usize] +=
                1;
        }
        let (min, max) = (per_set.iter().min(), per_set.iter().max());
        assert!(
            min.is_some_and(|m| *m >= 100) && max.is_some_and(|m| *m <= 400),
            "{min:?} {max:?}"
        );
    }
}
