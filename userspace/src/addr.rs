//! The 16-byte address form the maps use: IPv4 mapped into IPv6.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// 16-byte mapped form of an address (IPv4 → `::ffff:a.b.c.d`).
pub fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Back from the mapped form (`::ffff:a.b.c.d` → IPv4).
pub fn unmapped(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// LPM trie key of a CIDR: IPv4 prefix lengths grow by 96 in the mapped form;
/// the address is masked to the prefix.
pub fn lpm_key(net: &IpNet) -> (u32, [u8; 16]) {
    match net.trunc() {
        IpNet::V4(n) => (
            96 + u32::from(n.prefix_len()),
            mapped(IpAddr::V4(n.network())),
        ),
        IpNet::V6(n) => (u32::from(n.prefix_len()), mapped(IpAddr::V6(n.network()))),
    }
}

/// A CIDR back from its trie key.
pub fn from_lpm_key(prefix_len: u32, bytes: [u8; 16]) -> IpNet {
    let addr = unmapped(bytes);
    let len = match addr {
        IpAddr::V4(_) => prefix_len.saturating_sub(96),
        IpAddr::V6(_) => prefix_len,
    };
    let len = u8::try_from(len).unwrap_or(128);
    IpNet::new(addr, len).unwrap_or_else(|_| IpNet::from(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_round_trip_and_keys() {
        let v4: IpAddr = "203.0.113.7".parse().expect("literal");
        assert_eq!(unmapped(mapped(v4)), v4);
        let v6: IpAddr = "2001:db8::1".parse().expect("literal");
        assert_eq!(unmapped(mapped(v6)), v6);
        let net: IpNet = "203.0.113.9/24".parse().expect("literal");
        let (plen, bytes) = lpm_key(&net);
        assert_eq!(plen, 120);
        assert_eq!(
            unmapped(bytes),
            "203.0.113.0".parse::<IpAddr>().expect("literal")
        );
        assert_eq!(
            from_lpm_key(plen, bytes),
            "203.0.113.0/24".parse::<IpNet>().expect("literal")
        );
        let net6: IpNet = "2001:db8:1::/48".parse().expect("literal");
        assert_eq!(from_lpm_key(lpm_key(&net6).0, lpm_key(&net6).1), net6);
    }
}
