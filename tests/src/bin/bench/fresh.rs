//! What a first-seen source costs in the kernel (issue #13: ≤ 150 ns above
//! the floor). BPF_PROG_TEST_RUN repeats one frame, so the bench object's
//! `fresh_source` gives each repetition a source not seen before in the
//! case (33 554 432 in turn) and tail-calls floodgate; its floor is the same program
//! tail-calling a bare XDP_DROP, so the rewrite and the tail call cancel out.

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::ProgramArray,
    programs::{ProgramFd, Xdp},
};
use floodgate::loader::Capacity;
use floodgate_tests::{
    dut::{Dut, XDP_PASS, settings},
    packets::{Frame, ip},
};
use serde_json::{Value, json};

use crate::{
    Plan,
    kernel::{median, policies},
};

use floodgate_common::{BENCH_FRESH_SOURCES, DEFAULT_SOURCE_CAPACITY as DEFAULT_SOURCES};

/// The two tables a newcomer is measured against: one that stays in the
/// CPU's caches (the other paths' 4096 sources) and the default capacity,
/// 92 MiB of sets that a newcomer reads at random, from memory.
const CASES: [(&str, Capacity); 2] = [
    (
        "first-seen source (an under-limit pass), 4096 sources",
        Capacity::new(4096, 4096, 4096, 4096),
    ),
    (
        "first-seen source (an under-limit pass), default capacity",
        Capacity::new(
            DEFAULT_SOURCES,
            floodgate_common::default_prefix_capacity(DEFAULT_SOURCES),
            floodgate_common::default_ban_capacity(DEFAULT_SOURCES),
            16_384,
        ),
    ),
];

/// Points `FRESH_NEXT` at `next` and runs `fresh_source` once; ns/packet and
/// the verdict of the last packet.
fn run_into(bench: &mut Ebpf, next: &ProgramFd, frame: &[u8], plan: &Plan) -> Result<(f64, u32)> {
    let fd = next.try_clone()?;
    let mut slots: ProgramArray<_> = bench
        .map_mut("FRESH_NEXT")
        .context("FRESH_NEXT")?
        .try_into()?;
    slots.set(0, &fd, 0)?;
    let prog: &Xdp = bench
        .program("fresh_source")
        .context("fresh_source")?
        .try_into()?;
    crate::kernel::once(prog, frame, plan)
}

/// Both cases' rows, with their profiles.
pub fn run(plan: &Plan) -> Result<Vec<Value>> {
    CASES
        .iter()
        .map(|(path, capacity)| case(plan, path, *capacity))
        .collect()
}

fn case(plan: &Plan, path: &str, capacity: Capacity) -> Result<Value> {
    let mut bench =
        Ebpf::load(floodgate::object::BENCH_OBJECT).context("loading the benchmark programs")?;
    for name in ["xdp_drop", "fresh_source"] {
        let p: &mut Xdp = bench
            .program_mut(name)
            .with_context(|| format!("{name} missing"))?
            .try_into()?;
        p.load()?;
    }
    // Every limit on and far away, no eviction pressure: each newcomer is
    // admitted, claims a way (evicting once the table is full) and passes.
    let mut dut = Dut::load_with(capacity)?;
    let (open, _) = policies();
    dut.configure(&settings(), &[open])?;
    let frame = Frame::udp(ip("240.0.0.1"), 80).build();
    let drop_fd = bench
        .program("xdp_drop")
        .context("xdp_drop")?
        .fd()?
        .try_clone()?;
    let fg_fd = dut.fg.program()?.fd()?.try_clone()?;
    let before = dut.fg.global_state()?.source_inserts;
    // The floor's packets and floodgate's draw from one sequence of
    // `BENCH_FRESH_SOURCES` addresses: all of them must be distinct.
    let sent = 2 * u64::try_from(plan.runs)? * u64::from(plan.repeat);
    anyhow::ensure!(
        sent <= BENCH_FRESH_SOURCES,
        "{path}: {sent} packets would repeat fresh_source's {BENCH_FRESH_SOURCES} addresses"
    );
    let (mut own, mut above, mut verdict) = (Vec::new(), Vec::new(), 0);
    for _ in 0..plan.runs {
        let (f, _) = run_into(&mut bench, &drop_fd, &frame, plan)?;
        let (ns, v) = run_into(&mut bench, &fg_fd, &frame, plan)?;
        own.push(ns);
        above.push(ns - f);
        verdict = v;
    }
    anyhow::ensure!(verdict == XDP_PASS, "{path}: verdict {verdict}");
    let runs = u64::try_from(plan.runs)?;
    let admitted = dut.fg.global_state()?.source_inserts - before;
    // Nearly every repetition must have been a newcomer, or this is not the
    // path: no address repeats within a case (`BENCH_FRESH_SOURCES`), so
    // only the new-source budget could turn one away.
    let packets = runs * u64::from(plan.repeat);
    let share = admitted as f64 / packets as f64;
    anyhow::ensure!(
        share >= 0.99,
        "{path}: only {admitted} of {packets} packets were first-seen sources"
    );
    let prog: &Xdp = bench
        .program("fresh_source")
        .context("fresh_source")?
        .try_into()?;
    let profile = crate::profile::sample(prog, &frame, 1.5)?;
    Ok(json!({
        "path": path,
        "profile": profile,
        "ns": median(own),
        "above_floor_ns": median(above),
        "verdict": "pass",
        "first_seen_share": share,
    }))
}
