//! The CrowdSec bench's inputs: 100 000 decisions on lab addresses, loaded
//! into a real LAPI with `cscli decisions import` (one per scope, each one
//! alert carrying all its decisions: seconds, where `cscli decisions add`
//! takes ~80 ms a decision), the LAPI's own startup stream as a bouncer sees
//! it, and the flood's sources — decided addresses, addresses inside decided
//! ranges and undecided ones next to both.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use floodgate_tests::lab::{Ns, crowdsec::Lapi};
use serde_json::{Value, json};

/// The mix: `Ip` v4 and v6, `Range` v4 (/29) and v6 (/120).
pub const IP_V4: u32 = 80_000;
pub const IP_V6: u32 = 10_000;
pub const RANGE_V4: u32 = 2_000;
pub const RANGE_V6: u32 = 8_000;
pub const TOTAL: u64 = (IP_V4 + IP_V6 + RANGE_V4 + RANGE_V6) as u64;

/// 198.18.128.0 up: the `Ip` v4 decisions (to 198.19.152.127).
const IP_V4_BASE: u32 = 0xc612_8000;
/// 198.18.64.0 up: the v4 ranges, /29 each (to 198.18.126.127).
const RANGE_V4_BASE: u32 = 0xc612_4000;
/// fd00:f100:1:0:1::/80 and fd00:f100:1:0:2::/80, inside the crawler's
/// link (fd00:f100:1::/64): `Ip` v6 decisions, and the v6 ranges (/120).
const IP_V6_BASE: u128 = 0xfd00_f100_0001_0000_0001_0000_0000_0000;
const RANGE_V6_BASE: u128 = 0xfd00_f100_0001_0000_0002_0000_0000_0000;
const CLEAN_V6_BASE: u128 = 0xfd00_f100_0001_0000_0003_0000_0000_0000;

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6(a: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

/// The decisions of one scope as `cscli decisions import` reads them
/// (JSON). 1.4.6 takes the scope from its `--scope` flag (default `Ip`) for
/// every line, whatever a line says: one file per scope.
fn decisions(range: bool) -> Value {
    let one = |value: String, reason: &str| json!({"duration": "4h", "type": "ban", "value": value, "reason": reason});
    let mut all = Vec::new();
    if range {
        all.extend(
            (0..RANGE_V4).map(|i| one(format!("{}/29", v4(RANGE_V4_BASE + i * 8)), "bench/range")),
        );
        all.extend((0..RANGE_V6).map(|i| {
            one(
                format!("{}/120", v6(RANGE_V6_BASE + u128::from(i) * 256)),
                "bench/range",
            )
        }));
    } else {
        all.extend((0..IP_V4).map(|i| one(v4(IP_V4_BASE + i).to_string(), "bench/ip")));
        all.extend((0..IP_V6).map(|i| one(v6(IP_V6_BASE + u128::from(i)).to_string(), "bench/ip")));
    }
    Value::Array(all)
}

/// The flood's sources.
pub struct Sources {
    /// Addresses with an `Ip` decision (224 v4 over the whole span, so both
    /// the ban and the block tier, and 32 v6).
    pub decided: Vec<IpAddr>,
    /// Addresses inside decided ranges (48 v4, 16 v6).
    pub ranged: Vec<IpAddr>,
    /// Addresses no decision covers, many right past the decided spans.
    pub clean: Vec<IpAddr>,
}

impl Sources {
    pub fn new() -> Sources {
        let decided = (0..224)
            .map(|k| v4(IP_V4_BASE + k * 357 + 7))
            .chain((0..32u128).map(|k| v6(IP_V6_BASE + k * 312 + 3)))
            .collect();
        let ranged = (0..48)
            .map(|k| v4(RANGE_V4_BASE + (k * 41 + 2) * 8 + 5))
            .chain((0..16u128).map(|k| v6(RANGE_V6_BASE + (k * 499 + 1) * 256 + 0x77)))
            .collect();
        let clean = (0..40)
            .map(|k| v4(IP_V4_BASE + IP_V4 + k * 5))
            .chain((0..16).map(|k| v4(0xc612_0a0a + k)))
            .chain((0..8).map(|k| v4(RANGE_V4_BASE + RANGE_V4 * 8 + k)))
            .chain((0..8u128).map(|k| v6(IP_V6_BASE + u128::from(IP_V6) + k)))
            .chain((1..9u128).map(|k| v6(CLEAN_V6_BASE + k)))
            .collect();
        Sources {
            decided,
            ranged,
            clean,
        }
    }

    /// Those a decision covers.
    pub fn covered(&self) -> impl Iterator<Item = &IpAddr> {
        self.decided.iter().chain(&self.ranged)
    }

    pub fn all(&self) -> Vec<IpAddr> {
        self.covered().chain(&self.clean).copied().collect()
    }
}

/// Writes the decisions to `dir` and imports them, one `cscli decisions
/// import` per scope (each sends one alert carrying all its decisions);
/// returns the seconds the imports took and the files' size.
pub fn import(lapi: &Lapi, dir: &Path) -> Result<(f64, u64)> {
    let (mut secs, mut bytes) = (0.0, 0);
    for (scope, range) in [("Ip", false), ("Range", true)] {
        let path = dir.join(format!("decisions-{scope}.json"));
        let text = serde_json::to_vec(&decisions(range))?;
        std::fs::write(&path, &text)?;
        let started = Instant::now();
        lapi.cscli(&[
            "decisions",
            "import",
            "--scope",
            scope,
            "-i",
            path.to_str().context("a UTF-8 path")?,
        ])?;
        secs += started.elapsed().as_secs_f64();
        bytes += text.len() as u64;
    }
    Ok((secs, bytes))
}

/// What the LAPI serves a fresh bouncer on `startup=true`.
pub struct Stream {
    pub seconds: f64,
    pub bytes: u64,
    pub by_scope: std::collections::BTreeMap<String, u64>,
}

impl Stream {
    pub fn total(&self) -> u64 {
        self.by_scope.values().sum()
    }
}

/// One `GET /v1/decisions/stream?startup=true` with `key`, from `ns`
/// (HTTP/1.0: the reply is the body up to the close, never chunked).
pub fn stream(ns: &Ns, lapi: SocketAddr, key: &str) -> Result<Stream> {
    let request = format!(
        "GET /v1/decisions/stream?startup=true HTTP/1.0\r\nHost: {lapi}\r\nX-Api-Key: {key}\r\n\r\n"
    );
    let (seconds, raw) = ns.enter(move || -> Result<(f64, Vec<u8>)> {
        let started = Instant::now();
        let mut s = TcpStream::connect_timeout(&lapi, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok((started.elapsed().as_secs_f64(), raw))
    })??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!(
            "the LAPI's stream answered: {}",
            head.lines().next().unwrap_or("")
        );
    }
    let body: Value = serde_json::from_slice(&raw[split + 4..]).context("the stream's JSON")?;
    let mut by_scope = std::collections::BTreeMap::new();
    for d in body["new"].as_array().into_iter().flatten() {
        let scope = d["scope"].as_str().unwrap_or("?").to_ascii_lowercase();
        *by_scope.entry(scope).or_default() += 1;
    }
    Ok(Stream {
        seconds,
        bytes: (raw.len() - split - 4) as u64,
        by_scope,
    })
}

/// Makes the LAPI hold the 100 000 decisions and checks, from `from` with a
/// bouncer of its own (never floodgate's key), that its startup stream
/// carries them all.
pub fn load(lapi: &Lapi, from: &Ns, dir: &Path) -> Result<Value> {
    let (import_secs, file_bytes) = import(lapi, dir)?;
    let probe = lapi.add_bouncer("bench-probe")?;
    let s = stream(from, lapi.listen(), &probe)?;
    ensure!(
        s.total() == TOTAL,
        "the LAPI's startup stream holds {} decisions ({:?}), not {TOTAL}",
        s.total(),
        s.by_scope
    );
    Ok(json!({
        "import_seconds": import_secs,
        "import_file_bytes": file_bytes,
        "stream_seconds": s.seconds,
        "stream_bytes": s.bytes,
        "stream_by_scope": s.by_scope,
    }))
}
