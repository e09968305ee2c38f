//! Two floodgate edges sharing one LAPI, as a fleet runs: a crawler
//! namespace reaches each edge over a link of its own and sends from
//! addresses on its `lo` (so a whole /24 and a /64 are available as
//! sources); the LAPI listens on an address of its own `lo`, routed from
//! both edges over links floodgate does not filter.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::Result;
use serde_json::Value;

use super::{WATCHER, wait_for};
use crate::{
    daemon::Daemon,
    lab::{
        Lab, Ns,
        crowdsec::Lapi,
        traffic::{UdpSink, udp_send},
    },
};

/// The LAPI's address, on its namespace's `lo`.
pub const LAPI_ADDR: &str = "198.18.99.1";

/// One edge: its namespace, daemon and sinks, and the addresses the crawler
/// sends to.
pub struct Edge {
    pub ns: Ns,
    pub daemon: Daemon,
    pub iface: String,
    pub v4: UdpSink,
    pub v6: UdpSink,
    pub dst4: SocketAddr,
    pub dst6: SocketAddr,
}

/// The lab: fields drop in order, so the lab's processes (the daemons, the
/// LAPI) are killed before the daemons' pins go.
pub struct Fleet {
    pub lab: Lab,
    pub crawler: Ns,
    pub lapi: Lapi,
    pub edges: Vec<Edge>,
}

fn config(policy: &str, key_file: &std::path::Path, password_file: &std::path::Path) -> String {
    format!(
        "{policy}\n[crowdsec]\nlapi_url = \"http://{LAPI_ADDR}:8080/\"\nbouncer_key_file = \"{}\"\npoll = \"1s\"\nmachine_id = \"{WATCHER}\"\npassword_file = \"{}\"\n",
        key_file.display(),
        password_file.display()
    )
}

impl Fleet {
    /// Two edges running `bin` with `policy` and a `[crowdsec]` section each
    /// (a bouncer key and a watcher login of their own), the crawler's `lo`
    /// holding `sources`.
    pub fn new(tag: &str, bin: &str, policy: &str, sources: &[&str]) -> Result<Fleet> {
        let mut lab = Lab::new(tag)?;
        let crawler = lab.add_ns("crawl")?;
        let lapi_ns = lab.add_ns("lapi")?;
        lapi_ns.ip(&["addr", "add", &format!("{LAPI_ADDR}/32"), "dev", "lo"])?;
        for src in sources {
            let plen = if src.contains(':') { 128 } else { 32 };
            let mut args = vec!["addr", "add"];
            let cidr = format!("{src}/{plen}");
            args.extend([cidr.as_str(), "dev", "lo"]);
            if plen == 128 {
                args.push("nodad");
            }
            crawler.ip(&args)?;
        }
        let mut edges = Vec::new();
        let mut namespaces = Vec::new();
        for n in 1..=2u8 {
            let ns = lab.add_ns(&format!("edge{n}"))?;
            let net = 10 + n;
            let to_crawler = lab.link(
                &ns,
                &[
                    &format!("198.18.{net}.1/24"),
                    &format!("fd00:f100:{net}::1/64"),
                ],
                &crawler,
                &[
                    &format!("198.18.{net}.2/24"),
                    &format!("fd00:f100:{net}::2/64"),
                ],
            )?;
            let lapi_net = 20 + n;
            lab.link(
                &ns,
                &[&format!("198.18.{lapi_net}.1/24")],
                &lapi_ns,
                &[&format!("198.18.{lapi_net}.2/24")],
            )?;
            ns.ip(&[
                "route",
                "add",
                &format!("{LAPI_ADDR}/32"),
                "via",
                &format!("198.18.{lapi_net}.2"),
            ])?;
            namespaces.push((ns, to_crawler.a_if, net));
        }
        let lapi = Lapi::start(&mut lab, &lapi_ns, LAPI_ADDR.parse()?, 8080)?;
        for (n, (ns, iface, net)) in namespaces.into_iter().enumerate() {
            let daemon = Daemon::new(bin, policy)?;
            let key_file = daemon.state_dir().with_file_name("crowdsec.key");
            std::fs::write(&key_file, lapi.add_bouncer(&format!("edge{n}"))? + "\n")?;
            let password_file = daemon.state_dir().with_file_name("crowdsec.password");
            // Each edge a machine of its own, as the LAPI expects.
            let id = format!("{WATCHER}-{n}");
            let password = format!("pw-{tag}-{n}-{}", std::process::id());
            lapi.add_machine(&id, &password)?;
            std::fs::write(&password_file, format!("{password}\n"))?;
            daemon.write_config(
                &config(policy, &key_file, &password_file)
                    .replace(&format!("\"{WATCHER}\""), &format!("\"{id}\"")),
            )?;
            let dst4: SocketAddr = format!("198.18.{net}.1:9000").parse()?;
            let dst6: SocketAddr = format!("[fd00:f100:{net}::1]:9001").parse()?;
            let v4 = UdpSink::bind(&ns, dst4)?;
            let v6 = UdpSink::bind(&ns, dst6)?;
            edges.push(Edge {
                ns,
                daemon,
                iface,
                v4,
                v6,
                dst4,
                dst6,
            });
        }
        Ok(Fleet {
            lab,
            crawler,
            lapi,
            edges,
        })
    }

    pub fn start(&mut self, edge: usize) -> Result<()> {
        let e = &mut self.edges[edge];
        e.daemon
            .start_in(&mut self.lab, &e.ns, std::slice::from_ref(&e.iface))
    }

    pub fn stop(&mut self, edge: usize) -> Result<()> {
        self.edges[edge]
            .daemon
            .stop_in(&mut self.lab, nix::sys::signal::Signal::SIGTERM)?;
        Ok(())
    }

    /// How many of `count` datagrams from `src` reach `edge`.
    pub fn through(&self, edge: usize, src: &str, count: u64) -> Result<u64> {
        let e = &self.edges[edge];
        let ip: IpAddr = src.parse()?;
        let (sink, dst) = if ip.is_ipv4() {
            (&e.v4, e.dst4)
        } else {
            (&e.v6, e.dst6)
        };
        let before = sink.from(ip);
        udp_send(&self.crawler, ip, dst, count, 64, Some(20_000))?;
        sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
        Ok(sink.from(ip) - before)
    }

    pub fn status(&self, edge: usize) -> Result<Value> {
        Ok(self.edges[edge].daemon.json(&["status"])?["crowdsec"].clone())
    }

    /// Decisions `edge` holds from the LAPI (after a successful pull).
    pub fn held(&self, edge: usize) -> Result<Option<u64>> {
        let s = self.status(edge)?;
        Ok((s["up"] == true).then(|| {
            s["decisions"]
                .as_object()
                .map_or(0, |o| o.values().filter_map(Value::as_u64).sum())
        }))
    }

    /// Waits up to `max` for every edge to hold `n` decisions.
    pub fn wait_held(&self, n: u64, max: Duration) -> Result<()> {
        wait_for(max, &format!("both edges to hold {n} decisions"), || {
            Ok((0..self.edges.len()).all(|e| self.held(e).ok().flatten() == Some(n)))
        })
    }

    pub fn state_dir(&self, edge: usize) -> PathBuf {
        self.edges[edge].daemon.state_dir()
    }
}
