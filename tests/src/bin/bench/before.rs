//! Issue #11's rule: no drop path more than 10 ns slower than before the
//! data-plane trust work. The program of [`BEFORE`] (built from git history)
//! and this one run each path alternately in one run — floor, before, floor,
//! now — so both see the same host; the figure is the median of the paired
//! differences of their distances to the floor.

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key as LpmKey},
    programs::Xdp,
};
use floodgate::addr::{lpm_key, mapped};
use floodgate_common::{
    Ban, BanKey, BlockEntry, PROGRAM_NAME, Policy, SETTINGS_HAS_ALLOW, SETTINGS_HAS_BLOCK,
    SETTINGS_READY, maps,
};
use floodgate_tests::{
    dut::{Dut, XDP_DROP, XDP_PASS, settings},
    packets::{Frame, arp, ip},
};
use serde_json::{Value, json};

use crate::{
    Plan,
    kernel::{SECOND, median, once},
};

/// The last commit before the data-plane trust work (#11).
pub const BEFORE: &str = "bdc3954dbd9c622c1cde30258f35e7edf7fca11c";
/// `Ban` of layouts 2 and 3, [`BEFORE`]'s: no counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct BanV3 {
    until_ns: u64,
    duration_ns: u64,
    banned_at_ns: u64,
    offenses: u32,
    reason: u32,
}

// SAFETY: `repr(C)`, `Copy`, only u64/u32 fields with no hidden padding.
unsafe impl aya::Pod for BanV3 {}

impl From<BanV3> for Ban {
    fn from(b: BanV3) -> Ban {
        Ban {
            until_ns: b.until_ns,
            duration_ns: b.duration_ns,
            banned_at_ns: b.banned_at_ns,
            offenses: b.offenses,
            reason: b.reason,
            packets: 0,
            bytes: 0,
        }
    }
}

/// `Settings` of layout 2, [`BEFORE`]'s (the fields up to the ban horizon).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SettingsV2 {
    flags: u32,
    prefix_v4: u32,
    prefix_v6: u32,
    ban_factor: u32,
    ban_max_ns: u64,
    ban_forget_ns: u64,
    pressure_threshold: u64,
    new_source_budget: floodgate_common::Rate,
    event_rate: floodgate_common::Rate,
    user_ban_horizon_ns: u64,
}

// SAFETY: `repr(C)`, `Copy`, u32/u64 fields and `Rate` (Pod) with no hidden
// padding: every bit pattern is valid.
unsafe impl aya::Pod for SettingsV2 {}

/// The flooding source of every path.
const SRC: &str = "198.18.7.7";

/// The paths compared, and their verdict.
#[derive(Clone, Copy, Debug)]
enum Path {
    AllowPass,
    UnderLimitPass,
    RateLimitedDrop,
    BannedDrop,
    BlockDrop,
    NonIpPass,
}

impl Path {
    const ALL: [Path; 6] = [
        Path::AllowPass,
        Path::UnderLimitPass,
        Path::RateLimitedDrop,
        Path::BannedDrop,
        Path::BlockDrop,
        Path::NonIpPass,
    ];

    fn name(self) -> &'static str {
        match self {
            Path::AllowPass => "allow-listed pass",
            Path::UnderLimitPass => "under-limit pass (all limits on)",
            Path::RateLimitedDrop => "rate-limited drop",
            Path::BannedDrop => "banned drop",
            Path::BlockDrop => "block-list drop",
            Path::NonIpPass => "non-IP pass",
        }
    }

    fn verdict(self) -> u32 {
        match self {
            Path::RateLimitedDrop | Path::BannedDrop | Path::BlockDrop => XDP_DROP,
            _ => XDP_PASS,
        }
    }

    fn frame(self) -> Vec<u8> {
        match self {
            Path::NonIpPass => arp(),
            _ => Frame::udp(ip(SRC), 80).build(),
        }
    }

    fn policy(self, open: &Policy, limited: &Policy) -> Policy {
        match self {
            Path::RateLimitedDrop => *limited,
            _ => *open,
        }
    }
}

fn ban() -> (BanKey, BanV3) {
    (
        BanKey::source(mapped(ip(SRC))),
        BanV3 {
            until_ns: u64::MAX,
            duration_ns: 3600 * SECOND,
            banned_at_ns: 0,
            offenses: 1,
            reason: 6,
        },
    )
}

fn src_key() -> LpmKey<[u8; 16]> {
    let (plen, addr) = lpm_key(&ip(SRC).into());
    LpmKey::new(plen, addr)
}

/// This tree's program set up for `path`.
fn now_program(path: Path, policy: &Policy) -> Result<Dut> {
    let mut d = Dut::load()?;
    d.configure(&settings(), &[*policy])?;
    match path {
        Path::AllowPass => d.fg.sync_allow(&[lpm_key(&ip(SRC).into())])?,
        Path::BlockDrop => {
            d.fg.sync_block(&[(lpm_key(&ip(SRC).into()), BlockEntry { expires_ns: 0 })])?
        }
        Path::BannedDrop => {
            let (k, b) = ban();
            d.fg.insert_ban(&k, &Ban::from(b))?;
        }
        _ => {}
    }
    Ok(d)
}

/// [`BEFORE`]'s program set up for `path` the way its daemon did (layout 2:
/// the default policy in slot 0, `SettingsV2`).
fn before_program(object: &[u8], path: Path, policy: &Policy) -> Result<Ebpf> {
    let capacity = floodgate::loader::Capacity::new(4096, 4096, 4096, 4096);
    let globals = floodgate::loader::Globals::new(&capacity, 1);
    let mut loader = floodgate::loader::sized_loader(&capacity, &globals);
    let mut ebpf = loader.load(object)?;
    let mut flags = SETTINGS_READY;
    let mut horizon = 0;
    match path {
        Path::AllowPass => {
            let mut t: LpmTrie<&mut MapData, [u8; 16], u32> =
                LpmTrie::try_from(ebpf.map_mut(maps::ALLOW).context("ALLOW")?)?;
            t.insert(&src_key(), 1, 0)?;
            flags |= SETTINGS_HAS_ALLOW;
        }
        Path::BlockDrop => {
            let mut t: LpmTrie<&mut MapData, [u8; 16], BlockEntry> =
                LpmTrie::try_from(ebpf.map_mut(maps::BLOCK).context("BLOCK")?)?;
            t.insert(&src_key(), BlockEntry { expires_ns: 0 }, 0)?;
            flags |= SETTINGS_HAS_BLOCK;
        }
        Path::BannedDrop => {
            let mut m: HashMap<&mut MapData, BanKey, BanV3> =
                HashMap::try_from(ebpf.map_mut(maps::BANS).context("BANS")?)?;
            let (k, b) = ban();
            m.insert(k, b, 0)?;
            horizon = b.until_ns;
        }
        _ => {}
    }
    let mut p: Array<&mut MapData, Policy> =
        Array::try_from(ebpf.map_mut(maps::POLICIES).context("POLICIES")?)?;
    p.set(0, *policy, 0)?;
    let now = settings();
    let mut s: Array<&mut MapData, SettingsV2> =
        Array::try_from(ebpf.map_mut(maps::SETTINGS).context("SETTINGS")?)?;
    s.set(
        0,
        SettingsV2 {
            flags,
            prefix_v4: now.prefix_v4,
            prefix_v6: now.prefix_v6,
            ban_factor: now.ban_factor,
            ban_max_ns: now.ban_max_ns,
            ban_forget_ns: now.ban_forget_ns,
            pressure_threshold: 0,
            new_source_budget: now.new_source_budget,
            event_rate: now.event_rate,
            user_ban_horizon_ns: horizon,
        },
        0,
    )?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .context("the earlier program")?
        .try_into()?;
    prog.load()?;
    Ok(ebpf)
}

pub fn run(plan: &Plan, floor: &Xdp, open: &Policy, limited: &Policy) -> Result<Value> {
    let object = floodgate_tests::previous::object_at(BEFORE)?;
    // Shorter runs, more of them: the paired differences are what counts.
    let plan = Plan {
        repeat: plan.repeat / 2,
        runs: plan.runs * 3,
        ..*plan
    };
    let mut rows = Vec::new();
    for path in Path::ALL {
        let policy = path.policy(open, limited);
        let frame = path.frame();
        let now = now_program(path, &policy)?;
        let before = before_program(&object, path, &policy)?;
        let before: &Xdp = before
            .program(PROGRAM_NAME)
            .context("the earlier program")?
            .try_into()?;
        let now = now.fg.program()?;
        let (mut above_before, mut above_now, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.runs {
            let (f1, _) = once(floor, &frame, &plan)?;
            let (b, vb) = once(before, &frame, &plan)?;
            let (f2, _) = once(floor, &frame, &plan)?;
            let (n, vn) = once(now, &frame, &plan)?;
            anyhow::ensure!(
                vb == path.verdict() && vn == path.verdict(),
                "{}: verdicts {vb} (before) and {vn} (now), expected {}",
                path.name(),
                path.verdict()
            );
            above_before.push(b - f1);
            above_now.push(n - f2);
            diffs.push((n - f2) - (b - f1));
        }
        rows.push(json!({
            "path": path.name(),
            "drop": path.verdict() == XDP_DROP,
            "before_above_floor_ns": median(above_before),
            "now_above_floor_ns": median(above_now),
            "change_ns": median(diffs),
            "runs": plan.runs,
        }));
    }
    Ok(json!({ "before": BEFORE, "paths": rows }))
}
