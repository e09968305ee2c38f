//! A set-associative table the program hashes itself: issue #13's candidate
//! for the source map, measured against the kernel's LRU hash in
//! `cargo xtask bench` before the product adopts it.
//!
//! An ARRAY map (mmapable, so userspace can read it by mmap) of [`Slot`]s in
//! sets of [`WAYS`]. A key lives in one set, chosen by a keyed hash
//! ([`set_of`]); within it, a slot's first word — the [`tag`]: the key and
//! when it was last seen — is claimed with one 64-bit compare-and-swap, and a
//! newcomer takes the first empty way or else the one seen longest ago
//! ([`victim`]). No global lock, no free list: a miss costs one CAS.
//!
//! IPv4 only so far (a 32-bit key fits the tag beside a 32-bit tick).

/// Ways per set.
pub const WAYS: u32 = 4;

/// A tick is 2^26 ns (about 67 ms): a way's tag is refreshed at most once a
/// tick, so a source seen every few milliseconds costs no compare-and-swap
/// on most packets (with a 1 ms tick, 10 000 live sources paid one on nearly
/// every packet: 0.61 against 0.70 of XDP_DROP in the bench). Eviction only
/// needs to tell a live source from one gone quiet; a 32-bit tick wraps
/// after about 9 years.
pub const TICK_SHIFT: u32 = 26;

/// One way of a set: 32 bytes, two per cache line.
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

/// The set of `key` among `2^set_bits` sets (`set_bits` 1 to 32):
/// multiply-shift hashing with a secret odd multiplier drawn at load, so a
/// sender cannot aim its addresses at one set without knowing it.
#[inline(always)]
pub const fn set_of(key: u32, seed: u64, set_bits: u32) -> u32 {
    ((key as u64).wrapping_mul(seed | 1) >> (64 - set_bits)) as u32
}

/// Sets for a table of `slots` (a power of two, at least [`WAYS`] × 2):
/// `log2(slots / WAYS)`.
pub const fn set_bits(slots: u32) -> u32 {
    (slots / WAYS).trailing_zeros()
}

/// The way a newcomer claims in a set whose tags are `tags`: the first empty
/// one, else the one seen longest before `now` (ages wrap with the tick).
#[inline(always)]
pub fn victim(tags: &[u64; WAYS as usize], now: u32) -> usize {
    let mut best = 0;
    let mut best_age = 0u32;
    let mut i = 0;
    while i < WAYS as usize {
        if tags[i] == 0 {
            return i;
        }
        let age = now.wrapping_sub(tag_tick(tags[i]));
        if age > best_age {
            best = i;
            best_age = age;
        }
        i += 1;
    }
    best
}

#[cfg(test)]
mod tests {
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
        fn a_tag_gives_back_its_key_and_tick(key: u32, now: u64) {
            let t = tick(now);
            prop_assert_eq!(tag_key(tag(key, t)), key);
            prop_assert_eq!(tag_tick(tag(key, t)), t);
            prop_assert!(holds(tag(key, t), key));
        }

        #[test]
        fn every_key_falls_in_a_set_of_the_table(key: u32, seed: u64, bits in 1u32..=32) {
            prop_assert!(u64::from(set_of(key, seed, bits)) < 1u64 << bits);
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
            per_set[set_of(key, 0x9e37_79b9_7f4a_7c15, bits) as usize] += 1;
        }
        let max = per_set.iter().max().copied().unwrap_or(0);
        assert!(max <= 128, "a set holds {max} of 65536 keys");
    }

    #[test]
    fn set_bits_counts_the_sets() {
        assert_eq!(set_bits(1 << 20), 18);
        assert_eq!(set_bits(8), 1);
    }
}
