//! The Redis keys of the fleet's long-window counts: one per source or
//! prefix and window length, the same on every edge so their counts add up.

use std::{fmt, net::IpAddr};

use ipnet::IpNet;

/// What a count is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counted {
    /// A source address (IPv4-mapped IPv6 counts as the IPv4 host).
    Source(IpAddr),
    /// A source prefix (IPv4 /24, IPv6 /64 by default), host bits cleared.
    Prefix(IpNet),
}

/// One count: what, over windows of `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    pub counted: Counted,
    pub window_secs: u64,
}

impl WindowKey {
    pub fn source(addr: IpAddr, window_secs: u64) -> WindowKey {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        WindowKey {
            counted: Counted::Source(addr),
            window_secs,
        }
    }

    pub fn prefix(net: IpNet, window_secs: u64) -> WindowKey {
        WindowKey {
            counted: Counted::Prefix(net.trunc()),
            window_secs,
        }
    }

    /// The key's name under `namespace` (e.g. `floodgate`):
    /// `floodgate:q:86400:192.0.2.7` for a source,
    /// `floodgate:pq:86400:192.0.2.0/24` for a prefix.
    pub fn name(&self, namespace: &str) -> String {
        format!("{namespace}:{self}")
    }
}

impl fmt::Display for WindowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.counted {
            Counted::Source(a) => write!(f, "q:{}:{a}", self.window_secs),
            Counted::Prefix(n) => write!(f, "pq:{}:{n}", self.window_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edge_names_a_count_alike() {
        let v4: IpAddr = "192.0.2.7".parse().expect("an address");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("an address");
        assert_eq!(
            WindowKey::source(mapped, 60).name("fg"),
            WindowKey::source(v4, 60).name("fg")
        );
        assert_eq!(
            WindowKey::source(v4, 86_400).name("fg"),
            "fg:q:86400:192.0.2.7"
        );
        let net: IpNet = "192.0.2.77/24".parse().expect("a net");
        assert_eq!(
            WindowKey::prefix(net, 60).name("fg"),
            "fg:pq:60:192.0.2.0/24"
        );
        let v6: IpNet = "2001:db8:1:2:3::/64".parse().expect("a net");
        assert_eq!(
            WindowKey::prefix(v6, 60).name("fg"),
            "fg:pq:60:2001:db8:1:2::/64"
        );
    }
}
