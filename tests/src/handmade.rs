//! Frames built byte by byte, for header chains no builder allows. Checksums
//! are real, so Linux delivers them to a socket when no program is in the way
//! (the program itself never checks them).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::packets::{DST_MAC, SRC_MAC};

/// Where the hand-built frames go: the edge address of a lab link.
pub const DST_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const DST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xf100, 0, 0, 0, 0, 0, 1);

/// The one's-complement sum of `bytes` (16-bit words, network order).
fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        acc += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// A UDP header and 16 bytes of payload from port 40000 to `dport`, with its
/// checksum over `pseudo` (the pseudo-header's sum).
fn udp(dport: u16, pseudo: u32) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&24u16.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0x5a; 16]);
    let c = fold(sum(pseudo + 17 + 24, &udp));
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    udp
}

/// An IPv6 UDP datagram to `dport` behind the extension headers `chain`
/// (protocol numbers, in order; 44 is an 8-byte first fragment, every other
/// one an 8-byte header of the destination-options layout, six Pad1 options),
/// built by hand so chains longer than any builder allows can be sent.
pub fn ipv6_udp_behind(src: Ipv6Addr, chain: &[u8], dport: u16) -> Vec<u8> {
    let mut ext = Vec::new();
    for (i, _) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(17);
        // [next header, length in 8 octets − 1 (fragment: reserved), 0…]: for a
        // fragment the offset bytes stay 0, a first fragment.
        ext.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
    }
    let udp = udp(dport, sum(sum(0, &src.octets()), &DST_V6.octets()));
    let payload_len = u16::try_from(ext.len() + udp.len()).expect("a small datagram");
    let mut out = Vec::new();
    out.extend_from_slice(&DST_MAC);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&0x86ddu16.to_be_bytes());
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&payload_len.to_be_bytes());
    out.push(chain.first().copied().unwrap_or(17));
    out.push(64);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&DST_V6.octets());
    out.extend_from_slice(&ext);
    out.extend_from_slice(&udp);
    out
}

/// An IPv4 UDP datagram to `dport` with `options_words` × 4 bytes of IP options
/// (NOPs, ending in end-of-list).
pub fn ipv4_udp_with_options(src: Ipv4Addr, options_words: u8, dport: u16) -> Vec<u8> {
    let mut options = vec![1u8; usize::from(options_words) * 4];
    if let Some(last) = options.last_mut() {
        *last = 0;
    }
    let ihl = 5 + options_words;
    let total = u16::from(ihl) * 4 + 8 + 16;
    let mut ip = Vec::new();
    ip.extend_from_slice(&[0x40 | ihl, 0]);
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&DST_V4.octets());
    ip.extend_from_slice(&options);
    let c = fold(sum(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::new();
    out.extend_from_slice(&DST_MAC);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    out.extend_from_slice(&ip);
    out.extend_from_slice(&udp(dport, sum(sum(0, &src.octets()), &DST_V4.octets())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let f = ipv4_udp_with_options(Ipv4Addr::new(198, 18, 66, 9), 5, 53);
        let ip = &f[14..14 + 40];
        assert_eq!(fold(sum(0, ip)), 0, "IPv4 header checksum");
        let udp = &f[14 + 40..];
        let pseudo = sum(sum(0, &[198, 18, 66, 9]), &DST_V4.octets()) + 17 + 24;
        assert_eq!(fold(sum(pseudo, udp)), 0, "UDP checksum");
        let src: Ipv6Addr = "fd00:f100:66::9".parse().expect("literal");
        let f = ipv6_udp_behind(src, &[60; 3], 53);
        let udp = &f[14 + 40 + 24..];
        let pseudo = sum(sum(0, &src.octets()), &DST_V6.octets()) + 17 + 24;
        assert_eq!(fold(sum(pseudo, udp)), 0, "UDP checksum over IPv6");
    }
}
