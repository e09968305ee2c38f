//! The crawler lab: a real web shop (nginx) on an edge namespace filtered by
//! the real floodgate daemon, real crawlers and real people around it, each
//! network on its own veth (IPv4 198.18.N.0/24, IPv6 fd00:f100:N::/64, the
//! edge is .1 / ::1 on every one):
//!
//! | N | network | clients |
//! |---|---------|---------|
//! | 1 | crawl   | flood crawler (wrk) at .2 / ::2 |
//! | 2 | user    | people browsing (curl) at .2–.4 / ::2–::4 |
//! | 3 | dist    | distributed crawler: .10–.41 / ::1:10–::1:2f (32 each) |
//! | 4 | slow    | low-and-slow scraper at .2 / ::2 |
//! | 5 | syn     | SYN flood (hping3) at .2 / ::2 |
//! | 6 | vlan    | tagged flood (VLAN 100, raw frames) from .2 |
//!
//! nftables counters on both ends (client output, edge input) witness what
//! was sent and what floodgate let through, independently of floodgate.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Context as _, Result};

pub mod clients;
pub mod counters;
pub mod nginx;
pub mod raw;
pub mod report;
pub mod scenario;

use crate::{
    daemon::Daemon,
    lab::{Lab, Link, Ns},
};
use counters::{Counters, Hook, Watch};
use nginx::Nginx;

/// VLAN id of the tagged network.
pub const VLAN_ID: u16 = 100;

/// One client network and its namespace.
pub struct Net {
    pub name: &'static str,
    pub ns: Ns,
    pub link: Link,
    /// The edge interface floodgate filters (the veth itself, also for VLAN).
    pub edge_if: String,
    pub edge_v4: IpAddr,
    pub edge_v6: IpAddr,
    pub hosts_v4: Vec<IpAddr>,
    pub hosts_v6: Vec<IpAddr>,
    /// Counts what this network's hosts send to port 80.
    pub sent: Counters,
}

impl Net {
    /// The edge address on this network in the given family.
    pub fn edge(&self, v6: bool) -> IpAddr {
        if v6 { self.edge_v6 } else { self.edge_v4 }
    }

    /// The first host address in the given family.
    pub fn host(&self, v6: bool) -> IpAddr {
        if v6 {
            self.hosts_v6[0]
        } else {
            self.hosts_v4[0]
        }
    }

    /// CIDR of the network in the given family.
    pub fn cidr(&self, n: u8, v6: bool) -> String {
        if v6 {
            format!("fd00:f100:{n}::/64")
        } else {
            format!("198.18.{n}.0/24")
        }
    }
}

/// The whole lab with nginx and the daemon running.
pub struct CrawlLab {
    pub lab: Lab,
    pub edge: Ns,
    pub nets: Vec<Net>,
    pub nginx: Nginx,
    /// Counts what reached the edge's stack, per client network and host.
    pub passed: Counters,
    /// Counts tagged frames floodgate passed on the VLAN network's edge end.
    pub tagged: Counters,
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
}

/// (network number, name, IPv4 host octets, IPv6 host suffixes)
type Plan = (u8, &'static str, Vec<u8>, Vec<u16>);

fn plan() -> Vec<Plan> {
    vec![
        (1, "crawl", vec![2], vec![2]),
        (2, "user", vec![2, 3, 4], vec![2, 3, 4]),
        (3, "dist", (10..42).collect(), (0x10..0x30).collect()),
        (4, "slow", vec![2], vec![2]),
        (5, "syn", vec![2], vec![2]),
        (6, "vlan", vec![2], vec![2]),
    ]
}

impl CrawlLab {
    /// Builds the networks, starts nginx, installs the counters and starts the
    /// daemon (binary `bin`) with `config` on every edge interface.
    pub fn new(tag: &str, bin: &str, config: &str) -> Result<CrawlLab> {
        let mut lab = Lab::new(tag)?;
        let edge = lab.add_ns("edge")?;
        let dir = tempfile::tempdir()?;
        // nginx workers and the daemon's socket: traversable by others.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let mut nets = Vec::new();
        let mut watches = Vec::new();
        for (n, name, v4, v6) in plan() {
            let net = build_net(&mut lab, &edge, n, name, &v4, &v6)
                .with_context(|| format!("building network {name}"))?;
            for (family, hosts) in [("", &net.hosts_v4), ("6", &net.hosts_v6)] {
                let v6 = !family.is_empty();
                watches.push(Watch::http_from(
                    &format!("{name}{family}"),
                    &net.cidr(n, v6),
                ));
                if name == "syn" {
                    watches.push(Watch::syn_from(
                        &format!("{name}{family}_syn"),
                        &hosts[0].to_string(),
                    ));
                }
            }
            nets.push(net);
        }
        let passed = Counters::install(&edge, Hook::Input, &watches)?;
        let vlan = nets
            .iter()
            .find(|n| n.name == "vlan")
            .context("no vlan network")?;
        let tagged = Counters::install(
            &edge,
            Hook::Ingress(vlan.edge_if.clone()),
            &[Watch::vlan_syn_from("vlan_syn", VLAN_ID, "198.18.6.2")],
        )?;
        let probe = std::net::SocketAddr::new(nets[0].edge_v4, 80);
        let nginx = Nginx::start(&mut lab, &edge, &dir.path().join("nginx"), probe)?;
        let mut daemon = Daemon::new(bin, config)?;
        let ifaces: Vec<String> = nets.iter().map(|n| n.edge_if.clone()).collect();
        daemon.start_in(&mut lab, &edge, &ifaces)?;
        Ok(CrawlLab {
            lab,
            edge,
            nets,
            nginx,
            passed,
            tagged,
            daemon,
            dir,
        })
    }

    pub fn net(&self, name: &str) -> &Net {
        self.nets
            .iter()
            .find(|n| n.name == name)
            .unwrap_or(&self.nets[0])
    }

    /// Restarts the daemon (after a stop) on the same interfaces.
    pub fn start_daemon(&mut self) -> Result<()> {
        let ifaces: Vec<String> = self.nets.iter().map(|n| n.edge_if.clone()).collect();
        self.daemon.start_in(&mut self.lab, &self.edge, &ifaces)
    }

    /// A file in the lab's private directory (client logs).
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Waits `d` (used between phases; never as an assertion).
    pub fn settle(d: Duration) {
        std::thread::sleep(d);
    }
}

impl Drop for CrawlLab {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon.pid.take() {
            let _ = self.lab.stop(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

fn build_net(
    lab: &mut Lab,
    edge: &Ns,
    n: u8,
    name: &'static str,
    v4: &[u8],
    v6: &[u16],
) -> Result<Net> {
    let ns = lab.add_ns(name)?;
    let edge_v4 = IpAddr::V4(Ipv4Addr::new(198, 18, n, 1));
    let edge_v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0xf100, u16::from(n), 0, 0, 0, 0, 1));
    let hosts_v4: Vec<IpAddr> = v4
        .iter()
        .map(|&h| IpAddr::V4(Ipv4Addr::new(198, 18, n, h)))
        .collect();
    let hosts_v6: Vec<IpAddr> = v6
        .iter()
        .map(|&h| {
            // Many-host networks use ::1:h so they never collide with the edge.
            let hi = u16::from(v6.len() > 3);
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0xf100, u16::from(n), 0, 0, 0, hi, h))
        })
        .collect();
    let edge_cidrs = [format!("{edge_v4}/24"), format!("{edge_v6}/64")];
    let host_cidrs: Vec<String> = hosts_v4
        .iter()
        .map(|a| format!("{a}/24"))
        .chain(hosts_v6.iter().map(|a| format!("{a}/64")))
        .collect();
    // This kernel has no 802.1Q module (no VLAN interfaces): the tagged
    // network is a bare link its client sends raw tagged frames over.
    let link = if name == "vlan" {
        lab.link(edge, &[], &ns, &[])?
    } else {
        let e: Vec<&str> = edge_cidrs.iter().map(String::as_str).collect();
        let h: Vec<&str> = host_cidrs.iter().map(String::as_str).collect();
        lab.link(edge, &e, &ns, &h)?
    };
    let mut watches = Vec::new();
    for (family, cidr) in [
        ("", format!("198.18.{n}.0/24")),
        ("6", format!("fd00:f100:{n}::/64")),
    ] {
        watches.push(Watch::http_from(&format!("{name}{family}"), &cidr));
    }
    let sent = Counters::install(&ns, Hook::Output, &watches)?;
    Ok(Net {
        name,
        ns,
        edge_if: link.a_if.clone(),
        link,
        edge_v4,
        edge_v6,
        hosts_v4,
        hosts_v6,
        sent,
    })
}
