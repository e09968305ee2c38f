//! The CrowdSec lab the fleet tests share: a daemon lab whose edge reaches
//! a real LAPI in a namespace of its own, and the crawler's addresses the
//! decisions are about.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::Value;

pub mod two_edges;

use crate::{
    daemon::DaemonLab,
    lab::{
        crowdsec::Lapi,
        traffic::{UdpSink, udp_send},
    },
};

/// The watcher's machine id at the LAPI.
pub const WATCHER: &str = "floodgate-edge";

/// The crawler's extra addresses: one each for an `Ip` and a `Range`
/// decision, v4 and v6, beside 198.18.1.2 and fd00:f100:1::2, which no
/// decision covers.
pub const BANNED_V4: &str = "198.18.1.3";
pub const RANGED_V4: &str = "198.18.1.130";
pub const RANGE_V4: &str = "198.18.1.128/25";
pub const BANNED_V6: &str = "fd00:f100:1::3";
pub const RANGED_V6: &str = "fd00:f100:1::1a0";
pub const RANGE_V6: &str = "fd00:f100:1::100/120";
pub const CLEAN_V4: &str = "198.18.1.2";
pub const CLEAN_V6: &str = "fd00:f100:1::2";

/// A daemon lab with a LAPI in a namespace of its own, linked to the edge on
/// 198.18.9.0/24 (floodgate does not filter that link), and a bouncer key.
pub struct CsLab {
    pub d: DaemonLab,
    pub lapi: Lapi,
    pub v4: UdpSink,
    pub v6: UdpSink,
}

fn config(
    policy: &str,
    lapi: &Lapi,
    key_file: &std::path::Path,
    watcher: Option<&std::path::Path>,
) -> String {
    // Limits off in effect (nothing here is over 200/s with its burst), so
    // every drop is a decision's.
    let mut text = format!(
        "{policy}\n[crowdsec]\nlapi_url = \"{}\"\nbouncer_key_file = \"{}\"\npoll = \"1s\"\n",
        lapi.url(),
        key_file.display()
    );
    if let Some(p) = watcher {
        text.push_str(&format!(
            "machine_id = \"{WATCHER}\"\npassword_file = \"{}\"\n",
            p.display()
        ));
    }
    text
}

impl CsLab {
    /// A lab whose daemon (`bin`) runs `policy` with a `[crowdsec]` section:
    /// a bouncer key of the LAPI's (or `key`), and a watcher login when
    /// `watcher`.
    pub fn new(
        tag: &str,
        bin: &str,
        policy: &str,
        key: Option<&str>,
        watcher: bool,
    ) -> Result<CsLab> {
        let mut d = DaemonLab::new(tag, bin, policy)?;
        let lapi_ns = d.lab.add_ns("lapi")?;
        d.lab
            .link(&d.edge, &["198.18.9.1/24"], &lapi_ns, &["198.18.9.2/24"])?;
        let link = d.links[0].clone();
        d.crawler.add_addr(&link.b_if, &format!("{RANGED_V4}/24"))?;
        for a in [CLEAN_V6, BANNED_V6, RANGED_V6] {
            d.crawler.add_addr(&link.b_if, &format!("{a}/64"))?;
        }
        let [v4, v6] = dual_stack_sinks(&d)?;
        let lapi = Lapi::start(&mut d.lab, &lapi_ns, "198.18.9.2".parse()?, 8080)?;
        let key = match key {
            Some(k) => k.to_owned(),
            None => lapi.add_bouncer("floodgate")?,
        };
        let key_file = d.state_dir().with_file_name("crowdsec.key");
        std::fs::write(&key_file, format!("{key}\n"))?;
        let password_file = if watcher {
            let p = d.state_dir().with_file_name("crowdsec.password");
            let password = format!("pw-{tag}-{}", std::process::id());
            lapi.add_machine(WATCHER, &password)?;
            std::fs::write(&p, format!("{password}\n"))?;
            Some(p)
        } else {
            None
        };
        d.write_config(&config(policy, &lapi, &key_file, password_file.as_deref()))?;
        Ok(CsLab { d, lapi, v4, v6 })
    }

    /// How many of `count` datagrams from `src` reach the edge.
    pub fn through(&self, src: &str, count: u64) -> Result<u64> {
        let ip: IpAddr = src.parse()?;
        let (sink, dst): (&UdpSink, SocketAddr) = if ip.is_ipv4() {
            (&self.v4, "198.18.1.1:9000".parse()?)
        } else {
            (&self.v6, "[fd00:f100:1::1]:9000".parse()?)
        };
        let before = sink.from(ip);
        udp_send(&self.d.crawler, ip, dst, count, 64, Some(20_000))?;
        sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
        Ok(sink.from(ip) - before)
    }

    pub fn crowdsec_status(&self) -> Result<Value> {
        Ok(self.d.json(&["status"])?["crowdsec"].clone())
    }

    /// Waits for the bouncer to hold `n` decisions after a successful pull.
    pub fn wait_held(&self, n: u64) -> Result<()> {
        wait_for(
            Duration::from_secs(15),
            &format!("{n} decisions held"),
            || {
                let s = self.crowdsec_status()?;
                let held: u64 = s["decisions"]
                    .as_object()
                    .map_or(0, |o| o.values().filter_map(Value::as_u64).sum());
                Ok(s["up"] == true && held == n)
            },
        )
    }
}

/// The edge's UDP sinks on 198.18.1.1:9000 and [fd00:f100:1::1]:9000 (the
/// edge gets the v6 address; the crawler's v6 addresses are added before),
/// once IPv6 addresses are usable. The crawler knows the edge's v6 MAC:
/// neighbour discovery from a dropped source would be dropped like the rest
/// of its packets.
pub fn dual_stack_sinks(d: &DaemonLab) -> Result<[UdpSink; 2]> {
    let link = &d.links[0];
    d.edge.add_addr(&link.a_if, "fd00:f100:1::1/64")?;
    d.crawler.ip(&[
        "-6",
        "neigh",
        "replace",
        "fd00:f100:1::1",
        "lladdr",
        &link.a_mac,
        "nud",
        "permanent",
        "dev",
        &link.b_if,
    ])?;
    let v4 = UdpSink::bind(&d.edge, "198.18.1.1:9000".parse()?)?;
    let v6 = UdpSink::bind(&d.edge, "[fd00:f100:1::1]:9000".parse()?)?;
    // IPv6 addresses are usable once duplicate address detection is done.
    wait_for(Duration::from_secs(5), "IPv6 addresses usable", || {
        Ok(d.crawler
            .run("ip", &["-6", "addr", "show", "tentative"])?
            .trim()
            .is_empty()
            && d.edge
                .run("ip", &["-6", "addr", "show", "tentative"])?
                .trim()
                .is_empty())
    })?;
    Ok([v4, v6])
}

pub fn wait_for(max: Duration, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + max;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One scrape of the daemon's metrics, inside the edge namespace.
pub fn scrape(edge: &crate::lab::Ns) -> Result<String> {
    use std::io::{Read as _, Write as _};
    edge.enter(|| -> Result<String> {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9470")?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?
}

pub fn listed<'a>(list: &'a Value, key: &str, target: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e[key] == target)
}
