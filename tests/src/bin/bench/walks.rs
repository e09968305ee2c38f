//! The control plane over a million tracked sources: `top` and `status`
//! through the real daemon, and how long control requests wait while a storm
//! of metrics scrapes (each a walk of every map) runs. The sources and bans are
//! written straight into the daemon's pinned maps (fd00::/8, never routed).

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, MapData};
use floodgate::control::{
    client::call,
    proto::{Reply, Request, TopBy},
};
use floodgate::tables::{SetView, Way, tick_of};
use floodgate_common::{Ban, BanKey, TrackState, maps, set_table};
use floodgate_tests::lab::{BpfFs, Lab};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const METRICS: &str = "127.0.0.1:9471";
const BANS: u32 = 100_000;
/// The two claims README makes, checked here.
pub const TOP_MS_MAX: f64 = 300.0;
pub const DELAY_MS_MAX: f64 = 50.0;

fn config(sources: u32) -> String {
    format!(
        r#"
[capacity]
sources = {}
prefixes = 4096
bans = 262144
lists = 131072
max_memory = "off"
[limits]
ports = []
packets = "100/s"
bytes = "off"
syn = "off"
quota = "off"
ban = "0s"
[prefix]
packets = "off"
syn = "off"
quota = "off"
"#,
        sources + sources / 4
    )
}

/// The IPv4-mapped address of `a`.
fn v4(a: u32) -> [u8; 16] {
    floodgate::addr::mapped(std::net::IpAddr::V4(std::net::Ipv4Addr::from(a)))
}

fn addr(net: u8, i: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = net;
    a[12..].copy_from_slice(&i.to_be_bytes());
    a
}

/// Writes `sources` tracked sources and [`BANS`] active bans into the pins.
fn fill(pin_dir: &Path, sources: u32) -> Result<()> {
    let maps_dir = floodgate::loader::map_pin_dir(pin_dir);
    let seed = floodgate::migrate::pinned_meta(&maps_dir)?
        .context("no META pinned")?
        .table_seed;
    let table = MapData::from_pin(maps_dir.join(maps::SOURCES))?;
    let sets = table.info()?.max_entries();
    let mut view = SetView::map(std::os::fd::AsFd::as_fd(table.fd()), sets, true)?;
    let now = floodgate::daemon::engine::monotonic_ns();
    for i in 0..sources {
        let packets = u64::from(i.wrapping_mul(2_654_435_761) % 1_000_000);
        let state = TrackState {
            packets,
            bytes: packets * 60,
            first_seen_tick: tick_of(now),
            ..TrackState::default()
        };
        // Keys only written into the table, never sent: 10.0.0.0/8 holds
        // a million of them.
        let way = Way {
            key: set_table::v4_key(&v4(0x0a00_0000 + i)),
            last_seen_tick: tick_of(now),
            state,
        };
        view.put(&way, seed)?;
    }
    let mut bans: HashMap<MapData, BanKey, Ban> = HashMap::try_from(aya::maps::Map::LruHashMap(
        MapData::from_pin(maps_dir.join(maps::BANS))?,
    ))?;
    for i in 0..BANS {
        let key = BanKey::source(addr(1, i));
        let ban = Ban {
            until_ns: now + 3_600_000_000_000,
            duration_ns: 3_600_000_000_000,
            banned_at_ns: now,
            offenses: 1,
            reason: floodgate_common::Reason::Banned as u32,
            packets: 0,
            bytes: 0,
        };
        bans.insert(key, ban, 0)?;
    }
    Ok(())
}

/// Milliseconds each of `n` calls of `request` took.
fn timed(
    rt: &tokio::runtime::Runtime,
    socket: &Path,
    n: usize,
    request: &Request,
) -> Result<Vec<f64>> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            rt.block_on(call(socket, request.clone()))?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// Median and maximum.
fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "median": ms.get(ms.len() / 2).copied().unwrap_or(0.0),
        "p99": ms.get(ms.len() * 99 / 100).copied().unwrap_or(0.0),
        "max": ms.last().copied().unwrap_or(0.0),
        "n": ms.len(),
    })
}

/// Control requests served by the loop: a change (block add, then remove) and
/// `stats`; milliseconds each.
fn control_round(rt: &tokio::runtime::Runtime, socket: &Path, n: usize) -> Result<Vec<f64>> {
    let cidr = "fd02::1/128".parse()?;
    let mut ms = Vec::new();
    for _ in 0..n {
        ms.extend(timed(
            rt,
            socket,
            1,
            &Request::BlockAdd {
                cidr,
                for_secs: None,
            },
        )?);
        ms.extend(timed(rt, socket, 1, &Request::Stats)?);
        ms.extend(timed(rt, socket, 1, &Request::BlockRemove { cidr })?);
    }
    Ok(ms)
}

/// Control rounds, each followed by a 20 ms pause, for `length`.
fn paced_rounds(rt: &tokio::runtime::Runtime, socket: &Path, length: Duration) -> Result<Vec<f64>> {
    let start = Instant::now();
    let mut ms = Vec::new();
    while start.elapsed() < length {
        ms.extend(control_round(rt, socket, 1)?);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(ms)
}

fn scrape_once() -> Result<()> {
    let mut s = std::net::TcpStream::connect(METRICS)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    anyhow::ensure!(out.starts_with("HTTP/1.1 200"), "scrape: {out:.80}");
    Ok(())
}

pub fn run(quick: bool) -> Result<Value> {
    let sources: u32 = if quick { 250_000 } else { 1_000_000 };
    let bin: PathBuf = std::env::current_exe()?
        .parent()
        .context("no exe dir")?
        .join("floodgate-cli");
    let mut lab = Lab::new("walks")?;
    let dut = lab.add_ns("dut")?;
    let peer = lab.add_ns("peer")?;
    let link = lab.link(&dut, &["198.18.0.1/24"], &peer, &["198.18.0.2/24"])?;
    let pins = BpfFs::new()?;
    let dir = tempfile::tempdir()?;
    let (conf, socket) = (dir.path().join("fg.toml"), dir.path().join("fg.sock"));
    std::fs::write(&conf, config(sources))?;
    let pin_dir = pins.path().join("fg");
    let path = |p: &Path| p.to_str().map(str::to_owned).context("path");
    let args = [
        "--socket".to_owned(),
        path(&socket)?,
        "run".into(),
        "--iface".into(),
        link.a_if.clone(),
        "--config".into(),
        path(&conf)?,
        "--pin-dir".into(),
        path(&pin_dir)?,
        "--state-dir".into(),
        path(dir.path())?,
        "--metrics".into(),
        METRICS.into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = lab.spawn_logged(&dut, &bin, &args, &dir.path().join("daemon.log"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.block_on(call(&socket, Request::Stats)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let fill_start = Instant::now();
    fill(&pin_dir, sources)?;
    let fill_s = fill_start.elapsed().as_secs_f64();

    let Reply::Status(status) = rt.block_on(call(&socket, Request::Status))? else {
        anyhow::bail!("status: another reply");
    };
    let tracked = status
        .maps
        .iter()
        .find(|m| m.name == "sources")
        .map_or(0, |m| m.entries);
    let top = Request::Top {
        n: 20,
        by: TopBy::Packets,
        prefixes: false,
    };
    let top_ms = timed(&rt, &socket, 5, &top)?;
    let status_ms = timed(&rt, &socket, 5, &Request::Status)?;
    let rounds = if quick { 10 } else { 30 };
    let storm = Duration::from_secs(if quick { 3 } else { 6 });
    // At rest, the same rounds for as long as the storm below: the two tails
    // are then comparable (this shared host has outliers of its own).
    let baseline = paced_rounds(&rt, &socket, storm)?;

    // Two scrapers back to back: at least one walk runs all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scrapers: Vec<_> = (0..2)
        .map(|_| {
            let (ns, stop, scrapes) = (dut.clone(), Arc::clone(&stop), Arc::clone(&scrapes));
            std::thread::spawn(move || {
                ns.enter(move || -> Result<()> {
                    while !stop.load(Ordering::Relaxed) {
                        scrape_once()?;
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
        })
        .collect();
    // Both are scraping before the first timed request.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrapes.load(Ordering::Relaxed) < 2 {
        anyhow::ensure!(Instant::now() < deadline, "the scrapers got no answer");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Requests spread over several walks: a round, a pause, until the storm
    // has lasted long enough.
    let storm_start = Instant::now();
    let under = paced_rounds(&rt, &socket, storm)?;
    let storm_s = storm_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for scraper in scrapers {
        scraper
            .join()
            .map_err(|_| anyhow::anyhow!("a scraper panicked"))???;
    }

    // A change with 100 000 block CIDRs loaded writes what changed, not the
    // whole list again.
    let mut blocks = String::from("block = [\n");
    for i in 0..100_000u32 {
        blocks.push_str(&format!(
            "  \"fd03::{:x}:{:x}/128\",\n",
            i >> 16,
            i & 0xffff
        ));
    }
    blocks.push_str("]\n");
    std::fs::write(&conf, blocks + &config(sources))?;
    let reload_start = Instant::now();
    rt.block_on(call(&socket, Request::Reload))?;
    let reload_ms = reload_start.elapsed().as_secs_f64() * 1e3;
    let with_lists = control_round(&rt, &socket, rounds)?;
    let _ = lab.stop(pid, Signal::SIGTERM);

    let top = summary(top_ms);
    let base = summary(baseline);
    let under = summary(under);
    let delay = under["max"].as_f64().unwrap_or(0.0) - base["median"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "sources_written": sources,
        "sources_tracked": tracked,
        "bans": BANS,
        "fill_seconds": fill_s,
        "top_ms": top,
        "status_ms": summary(status_ms),
        "control_ms_at_rest": base,
        "control_ms_under_scrapes": under,
        "scrapes_during_storm": scrapes.load(Ordering::Relaxed),
        "reload_100k_block_cidrs_ms": reload_ms,
        "control_ms_with_100k_block_cidrs": summary(with_lists),
        "storm_seconds": storm_s,
        "scrape_delay_ms": delay,
        "top_within_claim": top["max"].as_f64().unwrap_or(f64::MAX) < TOP_MS_MAX,
        "delay_within_claim": delay < DELAY_MS_MAX,
    }))
}
