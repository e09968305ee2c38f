//! Packet counters kept by nftables, independent of floodgate: on a client's
//! output path they count what it sent; on the edge's input path what reached
//! the edge's IP stack, i.e. what floodgate let through (XDP runs before
//! netfilter).

use std::{
    collections::HashMap,
    io::Write as _,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::lab::Ns;

/// nftables table that holds the lab's counters (inside the edge namespace).
const TABLE: &str = "fglab";

/// Prefix of every counter's nft name, so names like `vlan` or `syn` never
/// read as nft keywords (this nft takes no quoted object names).
const PREFIX: &str = "n_";

/// Named packet counters in one namespace.
pub struct Counters {
    ns: Ns,
    family: &'static str,
}

/// Where the counters sit.
#[derive(Clone, Debug)]
pub enum Hook {
    /// Packets delivered to this namespace's stack.
    Input,
    /// Packets this namespace's own sockets send.
    Output,
    /// Frames arriving on a device, before the protocol handlers (after XDP).
    Ingress(String),
}

/// A counter: its name and the nft match expression it counts.
pub struct Watch {
    pub name: String,
    pub expr: String,
}

impl Watch {
    /// TCP port 80 packets from `src` (an address or a CIDR, v4 or v6).
    pub fn http_from(name: &str, src: &str) -> Watch {
        let family = if src.contains(':') { "ip6" } else { "ip" };
        Watch {
            name: name.to_owned(),
            expr: format!("{family} saddr {src} tcp dport 80"),
        }
    }

    /// Frames of VLAN `id` carrying TCP SYNs to port 80 from IPv4 `src`.
    pub fn vlan_syn_from(name: &str, id: u16, src: &str) -> Watch {
        Watch {
            name: name.to_owned(),
            expr: format!("vlan id {id} ip saddr {src} tcp dport 80"),
        }
    }

    /// TCP SYNs (without ACK) to port 80 from `src`.
    pub fn syn_from(name: &str, src: &str) -> Watch {
        let mut w = Watch::http_from(name, src);
        w.expr += " tcp flags & (syn | ack) == syn";
        w
    }
}

/// A reading of every counter, with the moment it was taken: the kernel's
/// snapshot falls between `from` (nft started) and `at` (nft returned).
#[derive(Debug, Clone)]
pub struct Reading {
    pub from: Instant,
    pub at: Instant,
    pub packets: HashMap<String, u64>,
}

impl Reading {
    pub fn get(&self, name: &str) -> u64 {
        self.packets.get(name).copied().unwrap_or(0)
    }
}

/// The shortest and the longest the time between two readings' snapshots
/// can have been, in seconds: a slow nft (a stalled host) makes a window's
/// length uncertain by as long as it took.
pub fn window_bounds(a: &Reading, b: &Reading) -> (f64, f64) {
    let shortest = b.from.saturating_duration_since(a.at).as_secs_f64();
    let longest = b.at.duration_since(a.from).as_secs_f64();
    (shortest.max(1e-3), longest.max(1e-3))
}

/// Packets per second of counter `name` between two readings.
pub fn rate(a: &Reading, b: &Reading, name: &str) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    b.get(name).saturating_sub(a.get(name)) as f64 / secs
}

impl Counters {
    /// Installs one named counter per watch in `ns`, on `hook`.
    pub fn install(ns: &Ns, hook: Hook, watches: &[Watch]) -> Result<Counters> {
        let (family, hook, device) = match hook {
            Hook::Input => ("inet", "input", String::new()),
            Hook::Output => ("inet", "output", String::new()),
            Hook::Ingress(dev) => ("netdev", "ingress", format!(" device {dev}")),
        };
        let mut rules = format!(
            "table {family} {TABLE} {{\n  chain {hook} {{ type filter hook {hook}{device} priority 0; policy accept; }}\n}}\n"
        );
        for w in watches {
            rules += &format!("add counter {family} {TABLE} {PREFIX}{}\n", w.name);
            rules += &format!(
                "add rule {family} {TABLE} {hook} {} counter name {PREFIX}{}\n",
                w.expr, w.name
            );
        }
        let mut child = ns
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nft (installed by `cargo xtask setup`)")?;
        let written = child
            .stdin
            .take()
            .context("nft has no stdin")?
            .write_all(rules.as_bytes());
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft -f failed: {}\nrules:\n{rules}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        written?;
        Ok(Counters {
            ns: ns.clone(),
            family,
        })
    }

    /// Reads every counter.
    pub fn read(&self) -> Result<Reading> {
        let from = Instant::now();
        let text = self.ns.run(
            "nft",
            &["-j", "list", "counters", "table", self.family, TABLE],
        )?;
        let at = Instant::now();
        let v: serde_json::Value = serde_json::from_str(&text).context("parsing nft -j")?;
        let mut packets = HashMap::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            let c = &item["counter"];
            let name = c["name"].as_str().and_then(|n| n.strip_prefix(PREFIX));
            if let (Some(name), Some(n)) = (name, c["packets"].as_u64()) {
                packets.insert(name.to_owned(), n);
            }
        }
        Ok(Reading { from, at, packets })
    }

    /// Reads, sleeps `window`, reads again.
    pub fn window(&self, window: Duration) -> Result<(Reading, Reading)> {
        let a = self.read()?;
        std::thread::sleep(window);
        Ok((a, self.read()?))
    }
}
