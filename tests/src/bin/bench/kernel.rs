//! In-kernel cost per packet of each floodgate path, next to a bare XDP_DROP
//! and a parse-and-drop program (BPF_PROG_TEST_RUN with repeat).

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use floodgate::addr::{lpm_key, mapped};
use floodgate_common::{Ban, BanKey, BlockEntry, Policy, Quota, Rate};
use floodgate_tests::{
    dut::{Dut, XDP_DROP, XDP_PASS, per_sec, settings},
    packets::{Frame, arp, ip},
};
use serde_json::{Value, json};

use crate::Plan;

/// Median average ns/packet of `runs` test runs of `repeat` packets, and the
/// verdict of the last packet.
pub fn once(prog: &Xdp, frame: &[u8], plan: &Plan) -> Result<(f64, u32)> {
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat: plan.repeat,
        ..TestRunOptions::default()
    })?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns/packet of `prog`, and the median of its distance to the bare
/// XDP_DROP `floor` measured right before it in the same run: the host's speed
/// drifts, so only same-moment differences are comparable.
fn measure(floor: &Xdp, prog: &Xdp, frame: &[u8], plan: &Plan) -> Result<(f64, f64, u32)> {
    let (mut own, mut above, mut verdict) = (Vec::new(), Vec::new(), 0);
    for _ in 0..plan.runs {
        let (f, _) = once(floor, frame, plan)?;
        let (ns, v) = once(prog, frame, plan)?;
        own.push(ns);
        above.push(ns - f);
        verdict = v;
    }
    Ok((median(own), median(above), verdict))
}

fn bench_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .context("program missing")?
        .try_into()?;
    prog.load()?;
    Ok(prog)
}

pub const SECOND: u64 = 1_000_000_000;

pub fn run(plan: &Plan) -> Result<Value> {
    let frame = Frame::udp(ip("198.18.7.7"), 80).build();
    let mut bench =
        Ebpf::load(floodgate::object::BENCH_OBJECT).context("loading the benchmark programs")?;
    bench_program(&mut bench, "xdp_drop")?;
    bench_program(&mut bench, "parse_drop")?;
    let floor_prog: &Xdp = bench.program("xdp_drop").context("xdp_drop")?.try_into()?;
    let parse_prog: &Xdp = bench
        .program("parse_drop")
        .context("parse_drop")?
        .try_into()?;
    let (floor, _, _) = measure(floor_prog, floor_prog, &frame, plan)?;
    let (parse, parse_above, _) = measure(floor_prog, parse_prog, &frame, plan)?;

    let mut rows = vec![
        json!({"path": "bare XDP_DROP", "ns": floor, "above_floor_ns": 0.0, "verdict": "drop"}),
        json!({"path": "parse + drop", "ns": parse, "above_floor_ns": parse_above, "verdict": "drop"}),
    ];
    let (open, limited) = policies();
    type Setup = fn(&mut Dut, &Policy, &Policy) -> Result<Vec<u8>>;
    let paths: [(&str, u32, Setup); 11] = [
        ("allow-listed pass", XDP_PASS, |d, open, _| {
            d.configure(&settings(), &[*open])?;
            d.fg.sync_allow(&[lpm_key(&ip("198.18.7.7").into())])?;
            Ok(Frame::udp(ip("198.18.7.7"), 80).build())
        }),
        (
            "under-limit pass (all limits on)",
            XDP_PASS,
            |d, open, _| {
                d.configure(&settings(), &[*open])?;
                Ok(Frame::udp(ip("198.18.7.7"), 80).build())
            },
        ),
        ("rate-limited drop", XDP_DROP, |d, _, limited| {
            d.configure(&settings(), &[*limited])?;
            Ok(Frame::udp(ip("198.18.7.7"), 80).build())
        }),
        ("banned drop", XDP_DROP, |d, open, _| {
            d.configure(&settings(), &[*open])?;
            ban(d, ip("198.18.7.7"))?;
            Ok(Frame::udp(ip("198.18.7.7"), 80).build())
        }),
        // 1 000 bans of other prefixes, made before the bench's source is
        // first seen: its prefix entry starts with the global horizon (it
        // cannot know that none of them is its own), so each packet still
        // looks up its source's and its prefix's ban. A prefix tracked before
        // the bans skips both lookups (`tests/tests/ban_horizon.rs`).
        (
            "under-limit pass, other bans live",
            XDP_PASS,
            |d, open, _| {
                d.configure(&settings(), &[*open])?;
                other_bans(d)?;
                Ok(Frame::udp(ip("198.18.7.7"), 80).build())
            },
        ),
        (
            "rate-limited drop, other bans live",
            XDP_DROP,
            |d, _, limited| {
                d.configure(&settings(), &[*limited])?;
                other_bans(d)?;
                Ok(Frame::udp(ip("198.18.7.7"), 80).build())
            },
        ),
        // The same bans made after the source's prefix was tracked (the
        // common case under attack): its horizon stays closed.
        (
            "under-limit pass, other bans live, prefix tracked first",
            XDP_PASS,
            |d, open, _| {
                d.configure(&settings(), &[*open])?;
                let frame = Frame::udp(ip("198.18.7.7"), 80).build();
                d.run(&frame)?;
                other_bans(d)?;
                Ok(frame)
            },
        ),
        (
            "rate-limited drop, other bans live, prefix tracked first",
            XDP_DROP,
            |d, _, limited| {
                d.configure(&settings(), &[*limited])?;
                let frame = Frame::udp(ip("198.18.7.7"), 80).build();
                d.run(&frame)?;
                other_bans(d)?;
                Ok(frame)
            },
        ),
        ("banned drop, other bans live", XDP_DROP, |d, open, _| {
            d.configure(&settings(), &[*open])?;
            other_bans(d)?;
            ban(d, ip("198.18.7.7"))?;
            Ok(Frame::udp(ip("198.18.7.7"), 80).build())
        }),
        ("block-list drop", XDP_DROP, |d, open, _| {
            d.configure(&settings(), &[*open])?;
            d.fg.sync_block(&[(
                lpm_key(&ip("198.18.7.7").into()),
                BlockEntry { expires_ns: 0 },
            )])?;
            Ok(Frame::udp(ip("198.18.7.7"), 80).build())
        }),
        ("non-IP pass", XDP_PASS, |d, open, _| {
            d.configure(&settings(), &[*open])?;
            Ok(arp())
        }),
    ];
    for (name, expected, setup) in paths {
        let mut dut = Dut::load()?;
        let frame = setup(&mut dut, &open, &limited)?;
        let (ns, above, verdict) = measure(floor_prog, dut.fg.program()?, &frame, plan)?;
        anyhow::ensure!(
            verdict == expected,
            "{name}: verdict {verdict}, expected {expected}"
        );
        // Profile the paths with targets: where do their nanoseconds go?
        let profile = if matches!(
            name,
            "rate-limited drop" | "banned drop" | "rate-limited drop, other bans live"
        ) {
            crate::profile::sample(dut.fg.program()?, &frame, 1.5)?
        } else {
            Value::Null
        };
        rows.push(json!({
            "path": name,
            "ns": ns,
            "above_floor_ns": above,
            "profile": profile,
            "verdict": if expected == XDP_DROP { "drop" } else { "pass" },
        }));
    }
    rows.push(scale(plan, &limited, floor_prog)?);
    rows.extend(crate::fresh::run(plan)?);
    for (name, path) in [
        (
            crate::one_map::ONE_MAP,
            "one-map limiter, rate-limited drop",
        ),
        (
            crate::one_map::SET_TABLE,
            "set-table limiter, rate-limited drop",
        ),
    ] {
        rows.push(baseline(plan, floor_prog, name, path)?);
    }
    Ok(Value::Array(rows))
}

/// Bans `addr` for an hour, as `bans add` does.
fn ban(d: &mut Dut, addr: std::net::IpAddr) -> Result<()> {
    d.fg.insert_ban(
        &BanKey::source(mapped(addr)),
        &Ban {
            until_ns: u64::MAX,
            duration_ns: 3600 * SECOND,
            banned_at_ns: 0,
            offenses: 1,
            reason: 6,
            packets: 0,
            bytes: 0,
        },
    )?;
    Ok(())
}

/// 1 000 live bans of other sources (198.19.0.0/22), none of the bench's.
fn other_bans(d: &mut Dut) -> Result<()> {
    for i in 0..1000u32 {
        let [_, _, a, b] = i.to_be_bytes();
        ban(d, std::net::IpAddr::from([198, 19, a, b]))?;
    }
    Ok(())
}

/// A baseline limiter's rate-limited drop: the same frame over its bucket.
fn baseline(plan: &Plan, floor: &Xdp, name: &str, path: &str) -> Result<Value> {
    let mut ebpf = crate::one_map::load()?;
    crate::one_map::set_limit(&mut ebpf, crate::limit::Limit::per_second(1))?;
    let frame = Frame::udp(ip("198.18.7.7"), 80).build();
    let prog: &Xdp = ebpf.program(name).context("baseline program")?.try_into()?;
    let (ns, above, verdict) = measure(floor, prog, &frame, plan)?;
    anyhow::ensure!(verdict == XDP_DROP, "{path}: verdict {verdict}");
    Ok(json!({
        "path": path,
        "ns": ns,
        "above_floor_ns": above,
        "verdict": "drop",
    }))
}

/// The bench's two policies: every limit on and far away (`open`), and a
/// packet rate of 1/s (`limited`).
pub fn policies() -> (Policy, Policy) {
    let open = Policy {
        packets: per_sec(1_000_000_000, 1_000_000_000),
        bytes: Rate::new(1 << 40, SECOND, 1 << 40),
        syn: per_sec(1_000_000_000, 1_000_000_000),
        quota: Quota::new(floodgate_common::quota::MAX_QUOTA, 86_400 * SECOND),
        prefix_packets: per_sec(1_000_000_000, 1_000_000_000),
        prefix_syn: per_sec(1_000_000_000, 1_000_000_000),
        prefix_quota: Quota::new(floodgate_common::quota::MAX_QUOTA, 86_400 * SECOND),
        ..Policy::default()
    };
    let limited = Policy {
        packets: per_sec(1, 1),
        ..open
    };
    (open, limited)
}

/// Issue #11's comparison with the program before it (`before.rs`).
pub fn before(plan: &Plan) -> Result<Value> {
    let mut bench =
        Ebpf::load(floodgate::object::BENCH_OBJECT).context("loading the benchmark programs")?;
    bench_program(&mut bench, "xdp_drop")?;
    let floor: &Xdp = bench.program("xdp_drop").context("xdp_drop")?.try_into()?;
    let (open, limited) = policies();
    crate::before::run(plan, floor, &open, &limited)
}

/// The rate-limited drop path with 100 000 allow and 100 000 block CIDRs and
/// 10 000 rules loaded (none matching the source: every trie is walked).
fn scale(plan: &Plan, limited: &Policy, floor: &Xdp) -> Result<Value> {
    let mut dut = Dut::load_with(floodgate::loader::Capacity::new(4096, 4096, 4096, 131_072))?;
    dut.configure(&settings(), &[*limited])?;
    crate::lists::load(&mut dut.fg, *limited)?;
    let frame = Frame::udp(ip("198.18.7.7"), 80).build();
    let (ns, above, verdict) = measure(floor, dut.fg.program()?, &frame, plan)?;
    anyhow::ensure!(verdict == XDP_DROP, "scale: verdict {verdict}");
    Ok(json!({
        "path": "rate-limited drop, 100k allow + 100k block CIDRs + 10k rules",
        "ns": ns,
        "above_floor_ns": above,
        "verdict": "drop",
    }))
}
