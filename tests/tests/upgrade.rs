//! Upgrades across a layout version keep filtering (issue "Control plane:
//! every change atomic, durable, and checked", item 4). The pins here are made
//! by the previous layout's real program (built from git history,
//! `floodgate_tests::previous`); the daemon of this tree migrates them while a
//! banned source floods. On the daemon before this change the start was
//! refused ("pinned maps … have layout version N, this binary uses N+1; run
//! `floodgate detach`"): an unfiltered gap on every such release.

use std::{
    net::IpAddr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use aya::{
    maps::{Array, HashMap, MapData},
    programs::{Xdp, links::FdLink, xdp::XdpMode},
};
use floodgate::{
    addr::mapped,
    loader::{Capacity, Globals},
    tables::{SetView, Way},
};
use floodgate_common::{
    Ban, BanKey, LAYOUT_VERSION, Meta, PROGRAM_NAME, Reason, SETTINGS_READY, Settings, TrackState,
    maps,
    previous::PREVIOUS_LAYOUT_VERSION,
    set_table::{tick, v4_key},
};
use floodgate_tests::{
    daemon::{DaemonLab, LIMITED, burst_through, n, to_crawler_side},
    dut::monotonic_ns,
    lab::{
        sh,
        traffic::{UdpSink, udp_send},
    },
    previous,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");
const HOUR_NS: u64 = 3_600_000_000_000;
/// Banned in the old maps; floods through the upgrade.
const BANNED: &str = "198.18.1.2";
/// Sends at a tenth of its limit through the upgrade: the path stays up.
const STEADY: &str = "198.18.1.3";
/// Tracked in the old maps only, with a count no traffic here makes.
const QUIET: &str = "198.18.1.9";
const QUIET_PACKETS: u64 = 987_654;

/// The set tables' seed the old maps were made with.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The capacities the daemon asks for with `config`.
fn capacity_of(config: &Path) -> Result<Capacity> {
    let c = floodgate::config::Config::load(config)?;
    Ok(floodgate::policy::compile(&c).capacity.into())
}

/// What the previous release's daemon left: its program in a pinned link on
/// each of `ifaces`, its maps pinned under `pin_dir/maps` with a ban of
/// [`BANNED`] (third offence, an hour) and [`QUIET`] tracked. The traffic the
/// test sends through it before the upgrade has that program track the
/// prefix of both (198.18.1.0/24) as layout 5 did: with no ban horizon.
fn pin_previous_layout(d: &DaemonLab, cap: Capacity) -> Result<()> {
    let object = previous::object()?;
    let pin_dir = d.pin_dir();
    let ifaces: Vec<String> = d.links.iter().map(|l| l.a_if.clone()).collect();
    d.edge.enter(move || -> Result<()> {
        let maps_dir = pin_dir.join("maps");
        std::fs::create_dir_all(&maps_dir)?;
        std::fs::create_dir_all(pin_dir.join("links"))?;
        let globals = Globals::new(&cap, SEED);
        let mut loader = floodgate::loader::sized_loader(&cap, &globals);
        for name in maps::ALL {
            loader.map_pin_path(name, maps_dir.join(name));
        }
        let mut ebpf = loader.load(&object)?;
        let now = monotonic_ns();
        let mut meta: Array<&mut MapData, Meta> =
            Array::try_from(ebpf.map_mut(maps::META).context("META")?)?;
        meta.set(
            0,
            Meta {
                layout_version: PREVIOUS_LAYOUT_VERSION,
                _pad: 0,
                source_capacity: u64::from(cap.sources),
                table_seed: SEED,
            },
            0,
        )?;
        let mut bans: HashMap<&mut MapData, BanKey, Ban> =
            HashMap::try_from(ebpf.map_mut(maps::BANS).context("BANS")?)?;
        let ban = Ban {
            until_ns: now + HOUR_NS,
            duration_ns: HOUR_NS,
            banned_at_ns: now,
            offenses: 3,
            reason: Reason::RatePackets as u32,
            packets: 0,
            bytes: 0,
        };
        bans.insert(BanKey::source(mapped(BANNED.parse()?)), ban, 0)?;
        let sources = ebpf.map(maps::SOURCES).context("SOURCES")?;
        let aya::maps::Map::Array(data) = sources else {
            anyhow::bail!("SOURCES is not an array");
        };
        let mut view = SetView::map(data.fd().as_fd(), cap.source_sets(), true)?;
        let quiet = TrackState {
            packets: QUIET_PACKETS,
            bytes: 64 * QUIET_PACKETS,
            first_seen_tick: tick(now - 1),
            ..TrackState::default()
        };
        let way = Way {
            key: v4_key(&mapped(QUIET.parse()?)),
            last_seen_tick: tick(now),
            state: quiet,
        };
        view.put(&way, SEED)?;
        drop(view);
        // Written last, as the old daemon did: READY turns enforcement on.
        let mut settings: Array<&mut MapData, Settings> =
            Array::try_from(ebpf.map_mut(maps::SETTINGS).context("SETTINGS")?)?;
        let s = Settings {
            flags: SETTINGS_READY,
            prefix_v4: 24,
            prefix_v6: 48,
            ban_factor: 2,
            user_ban_horizon_ns: now + HOUR_NS,
            ..Settings::default()
        };
        settings.set(0, s, 0)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .context("the previous program")?
            .try_into()?;
        program.load()?;
        for iface in &ifaces {
            let id = program.attach(iface, XdpMode::Driver)?;
            let link: FdLink = program.take_link(id)?.try_into()?;
            link.pin(pin_dir.join("links").join(iface))?;
        }
        Ok(())
    })?
}

/// `(link id, program id)` of the link pinned at `path`.
fn link_ids(path: &Path) -> Result<(u64, u64)> {
    let out = sh(
        "bpftool",
        &["-j", "link", "show", "pinned", &path.display().to_string()],
    )?;
    let v: Value = serde_json::from_str(&out)?;
    Ok((n(&v, &["id"]), n(&v, &["prog_id"])))
}

fn meta_version(pin_dir: &Path) -> Result<u32> {
    let data = MapData::from_pin(pin_dir.join("maps").join(maps::META))?;
    let meta: Array<MapData, Meta> = Array::try_from(aya::maps::Map::Array(data))?;
    Ok(meta.get(&0, 0)?.layout_version)
}

#[test]
fn an_upgrade_from_the_previous_layout_keeps_filtering_and_every_ban() -> Result<()> {
    let mut d = DaemonLab::new("upgr", BIN, LIMITED)?;
    let cap = capacity_of(&d.config_path())?;
    pin_previous_layout(&d, cap)?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // The previous release filters: its ban drops, the rest passes.
    assert_eq!(
        burst_through(&d, &sink, BANNED, 20)?,
        0,
        "the old program's ban"
    );
    assert_eq!(burst_through(&d, &sink, STEADY, 20)?, 20);
    let link_path: PathBuf = d.pin_dir().join("links").join(&d.links[0].a_if);
    let (link_before, prog_before) = link_ids(&link_path)?;

    // The upgrade, while the banned source floods and another sends steadily.
    let (banned, steady): (IpAddr, IpAddr) = (BANNED.parse()?, STEADY.parse()?);
    let crawler = d.crawler.clone();
    let (flood, paced) = std::thread::scope(|s| -> Result<(u64, u64)> {
        let flood = s.spawn(|| {
            udp_send(
                &crawler,
                banned,
                to_crawler_side(),
                60_000,
                64,
                Some(15_000),
            )
        });
        let paced = s.spawn(|| udp_send(&crawler, steady, to_crawler_side(), 80, 64, Some(20)));
        std::thread::sleep(Duration::from_millis(500));
        d.start()?;
        let flood = flood
            .join()
            .map_err(|_| anyhow::anyhow!("the flood panicked"))??;
        let paced = paced
            .join()
            .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        Ok((flood, paced))
    })?;
    sink.wait_quiet(Duration::from_millis(300), Duration::from_secs(5));
    ensure!(flood > 50_000, "the flood sent {flood}");
    assert_eq!(
        sink.from(banned),
        0,
        "banned packets got through during the upgrade"
    );
    assert_eq!(
        sink.from(steady),
        20 + paced,
        "the path went down during the upgrade"
    );

    // The same link, a new program, the new layout's maps in place.
    let (link_after, prog_after) = link_ids(&link_path)?;
    assert_eq!(
        link_after, link_before,
        "the link was replaced, not updated"
    );
    assert_ne!(prog_after, prog_before, "the old program still runs");
    assert_eq!(meta_version(&d.pin_dir())?, LAYOUT_VERSION);
    assert!(!d.pin_dir().join("maps-next").exists());
    assert!(!d.pin_dir().join("maps-old").exists());
    let log = d.daemon_log();
    assert!(
        log.contains(&format!(
            "layout version {PREVIOUS_LAYOUT_VERSION} to {LAYOUT_VERSION}"
        )),
        "{log}"
    );

    // The ban, with its end and offences; enforced by the new program.
    let bans = d.json(&["bans", "list"])?;
    let ban = bans
        .as_array()
        .and_then(|b| b.iter().find(|b| b["target"] == "198.18.1.2/32"))
        .context("the ban is listed")?;
    assert!(
        ban["remaining_secs"].as_f64().unwrap_or(0.0) > 3500.0,
        "{ban}"
    );
    assert_eq!(ban["offenses"], 3, "{ban}");
    assert_eq!(burst_through(&d, &sink, BANNED, 20)?, 0);
    // Counters: every banned packet, before and after the swap. The merge of
    // what the old program counted after the copy races the new program's
    // per-CPU adds for microseconds (README "Upgrades"): at most a packet or
    // two. Counters left behind would miss the first 20 and the flood's
    // first half second (thousands).
    let stats = d.json(&["stats"])?;
    let banned_drops = n(&stats, &["by_reason", "banned", "packets"]);
    let sent = 20 + flood + 20;
    assert!(
        banned_drops <= sent && sent - banned_drops <= 2,
        "{banned_drops} banned drops counted of {sent} sent: {stats}"
    );
    // The tracked source, converted.
    let top = d.json(&["top", "-n", "5"])?;
    let quiet = top
        .as_array()
        .and_then(|t| t.iter().find(|r| r["target"] == QUIET))
        .with_context(|| format!("{QUIET} is tracked: {top}"))?;
    assert_eq!(quiet["packets"], QUIET_PACKETS, "{quiet}");

    // A restart adopts the migrated pins as they are.
    d.stop(nix::sys::signal::Signal::SIGTERM)?;
    d.start()?;
    assert_eq!(d.json(&["status"])?["adopted_pinned_state"], true);
    assert!(!d.daemon_log().contains("migrating"), "{}", d.daemon_log());
    assert_eq!(burst_through(&d, &sink, BANNED, 20)?, 0);
    Ok(())
}
