//! Source prefixes: addresses are 16 bytes with IPv4 mapped into IPv6
//! (`::ffff:a.b.c.d`), so an IPv4 `/24` is the mapped `/120`. The program and
//! userspace both build prefix keys with these.

/// The mapped prefix length of a source's prefix: `prefix_v6` for IPv6,
/// `96 + prefix_v4` for IPv4.
#[inline(always)]
pub fn mapped_prefix_len(is_v6: bool, prefix_v4: u32, prefix_v6: u32) -> u32 {
    if is_v6 { prefix_v6 } else { 96 + prefix_v4 }
}

/// True for an IPv4-mapped address (`::ffff:0:0/96`): such an IPv6 source is
/// the IPv4 host, with the IPv4 prefix (not one /64 every mapped address would
/// share).
pub fn is_v4_mapped(a: &[u8; 16]) -> bool {
    let head = u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let mid = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
    words_are_v4_mapped(head, mid)
}

/// [`is_v4_mapped`] on the address's first eight bytes and next four, as read
/// in memory order: the program keeps the source as words, so this is one
/// comparison and no stack (every branch is a path its verifier follows).
#[inline(always)]
pub fn words_are_v4_mapped(head: u64, mid: u32) -> bool {
    head | u64::from(mid ^ u32::from_ne_bytes([0, 0, 0xff, 0xff])) == 0
}

/// `addr` masked to its first `plen` bits (as two u64 halves: BPF has no
/// 128-bit shifts). `plen` over 128 counts as 128.
#[inline(always)]
pub fn mask(addr: &[u8; 16], plen: u32) -> [u8; 16] {
    let hi = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let plen = if plen > 128 { 128 } else { plen };
    let hi = hi & keep(if plen > 64 { 64 } else { plen });
    let lo = lo & keep(plen.saturating_sub(64));
    let h = hi.to_be_bytes();
    let l = lo.to_be_bytes();
    [
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5], l[6],
        l[7],
    ]
}

/// The top `bits` bits of a u64 set (0 to 64).
#[inline(always)]
fn keep(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else if bits >= 64 {
        u64::MAX
    } else {
        u64::MAX << (64 - bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
        ]
    }

    #[test]
    fn an_ipv4_slash_24_is_the_mapped_slash_120() {
        let plen = mapped_prefix_len(false, 24, 64);
        assert_eq!(plen, 120);
        assert_eq!(mask(&v4([198, 18, 3, 77]), plen), v4([198, 18, 3, 0]));
    }

    #[test]
    fn mapped_addresses_are_recognised() {
        assert!(is_v4_mapped(&v4([198, 18, 3, 77])));
        let mut a = v4([1, 2, 3, 4]);
        a[9] = 1;
        assert!(!is_v4_mapped(&a));
        assert!(!is_v4_mapped(&[0; 16]));
    }

    #[test]
    fn ipv6_masks_across_the_halves() {
        let a = [0xfd, 0, 0xf1, 0, 0, 3, 0xab, 0xcd, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(mask(&a, 64)[8..], [0; 8]);
        assert_eq!(mask(&a, 64)[..8], a[..8]);
        let m = mask(&a, 72);
        assert_eq!((m[8], m[9]), (1, 0));
        assert_eq!(mask(&a, 0), [0; 16]);
        assert_eq!(mask(&a, 128), a);
        assert_eq!(mask(&a, 200), a);
    }
}
