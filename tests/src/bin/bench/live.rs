//! Live drop rate through a veth pair: a live-frames generator in one namespace,
//! each filter in turn on the receiving end, rounds interleaved and rotated.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};
use floodgate_tests::{
    lab::{BpfFs, Lab, Ns, traffic::UdpSink},
    packets::{Frame, ip},
};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};
use serde_json::{Value, json};

use crate::{
    Plan,
    filters::{Filter, Receiver},
    instances::{default_limits, limited_policy, load_default_install, load_floodgate},
    limit::{MANY_SOURCES, ONE_SOURCE},
};

/// The per-source limit every limiter gets with one flooding source
/// (`limit::ONE_SOURCE`, in packets a second).
pub const LIMIT_PPS: u64 = ONE_SOURCE.packets;
/// Spoofed sources start here (RFC 6598 space, only ever inside the lab).
const MANY_BASE: u32 = 0x6440_0000;
pub const GEN_MAC_IF: &str = "02:00:00:00:00:01";
pub const DUT_MAC_IF: &str = "02:00:00:00:00:02";

pub struct Live {
    pub rows: Value,
    pub over_capacity: Value,
    pub map_memory: Value,
    /// `memory::run`: the default capacities' memory and residency.
    pub defaults: Value,
}

fn frame() -> Vec<u8> {
    let mut f = Frame::udp(ip("198.18.0.1"), 9).with_payload(18);
    f.dst = ip("198.18.0.2");
    f.build()
}

/// Floods `frame` out of `iface` in `gen` for `secs`, rotating over `nsrc`
/// sources; returns (frames sent, seconds).
pub fn generate(sender: &Ns, iface: &str, nsrc: u32, secs: f64) -> Result<(u64, f64)> {
    let iface = iface.to_owned();
    sender.enter(move || -> Result<(u64, f64)> {
        let mut set = CpuSet::new();
        set.set(0)?;
        sched_setaffinity(Pid::from_raw(0), &set)?;
        let name = std::ffi::CString::new(iface.clone())?;
        // SAFETY: a valid NUL-terminated interface name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        anyhow::ensure!(
            ifindex != 0,
            "no interface {iface} in the generator namespace"
        );
        let base = if nsrc > 1 {
            MANY_BASE
        } else {
            u32::from_be_bytes([198, 18, 0, 1])
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("GEN_IFINDEX", &ifindex, true)
            .override_global("GEN_NSRC", &nsrc, true)
            .override_global("GEN_SRC_BASE", &base, true)
            .load(floodgate::object::BENCH_OBJECT)?;
        let prog: &mut Xdp = ebpf
            .program_mut("xdp_gen")
            .context("xdp_gen missing")?
            .try_into()?;
        prog.load()?;
        let data = frame();
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&u32::try_from(data.len())?.to_ne_bytes());
        let repeat = 1 << 16;
        let (start, mut sent) = (Instant::now(), 0u64);
        while start.elapsed().as_secs_f64() < secs {
            prog.test_run(TestRunOptions {
                data_in: Some(&data),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::default()
            })?;
            sent += u64::from(repeat);
        }
        Ok((sent, start.elapsed().as_secs_f64()))
    })?
}

fn rx_packets(ns: &Ns, iface: &str) -> Result<u64> {
    let out = ns.run("ip", &["-s", "-j", "link", "show", iface])?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .context("no rx counter")
}

/// One measurement of one filter.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rate: f64,
    sent: u64,
    received: u64,
    delivered: u64,
    /// From the filter's own counters, where it has any.
    dropped: Option<u64>,
}

pub fn run(plan: &Plan) -> Result<Live> {
    let mut lab = Lab::new("bench")?;
    let sender = lab.add_ns("gen")?;
    let dut = lab.add_ns("dut")?;
    let link = lab.link(&sender, &["198.18.0.1/24"], &dut, &["198.18.0.2/24"])?;
    sender.run("ip", &["link", "set", &link.a_if, "address", GEN_MAC_IF])?;
    dut.run("ip", &["link", "set", &link.b_if, "address", DUT_MAC_IF])?;
    let bpffs = BpfFs::new()?;
    let sink = UdpSink::bind(&dut, "198.18.0.2:9".parse()?)?;
    let plan = *plan;
    let (gen_if, dut_if) = (link.a_if.clone(), link.b_if.clone());
    let (dut2, bpffs_path) = (dut.clone(), bpffs.path().to_owned());
    let sink = std::sync::Arc::new(sink);
    let sink2 = sink.clone();
    let out = dut.enter(move || -> Result<Live> {
        let mut drop_prog = aya::Ebpf::load(floodgate::object::BENCH_OBJECT)?;
        let p: &mut Xdp = drop_prog
            .program_mut("xdp_drop")
            .context("xdp_drop")?
            .try_into()?;
        p.load()?;
        let mut rx = Receiver {
            ns: dut2.clone(),
            iface: dut_if.clone(),
            bpffs: bpffs_path,
            drop_prog,
            one_map: crate::one_map::load()?,
            fg: load_floodgate(1 << 20, None)?,
            fg_defaults: load_default_install()?,
        };
        let mut rows = Vec::new();
        for (nsrc, rounds) in [
            (1u32, plan.rounds_one),
            (10_000, plan.rounds_many),
            (1_000_000, plan.rounds_many),
        ] {
            let filters: Vec<Filter> = if nsrc == 1 {
                vec![
                    Filter::XdpDrop,
                    Filter::Floodgate,
                    Filter::FloodgateDefaults,
                    Filter::OneMap,
                    Filter::SetTable,
                    Filter::XdpFilterTool,
                    Filter::NftMeter,
                    Filter::IptHashlimit,
                    Filter::Unfiltered,
                ]
            } else {
                vec![
                    Filter::XdpDrop,
                    Filter::Floodgate,
                    Filter::FloodgateDefaults,
                    Filter::OneMap,
                    Filter::SetTable,
                    Filter::NftMeter,
                    Filter::IptHashlimit,
                    Filter::Unfiltered,
                ]
            };
            let limit = if nsrc == 1 { ONE_SOURCE } else { MANY_SOURCES };
            rx.fg.write_policies(&[limited_policy(limit)], 1)?;
            let (settings, policy) = default_limits(limit)?;
            rx.fg_defaults.write_settings(&settings)?;
            rx.fg_defaults.write_policies(&[policy], 1)?;
            // Many sources: one unmeasured round per stateful filter first, so
            // the measured rounds see tracked sources over their limit rather
            // than first sightings (at 1M sources a round sends each ~3 frames).
            if nsrc > 1 {
                for filter in filters.iter().filter(|f| f.keeps_state()) {
                    eprintln!("bench: {nsrc} sources, warm-up, {}", filter.name());
                    let installed = rx.install(*filter, limit, "198.18.0.1")?;
                    generate(&sender, &gen_if, nsrc, plan.secs)?;
                    rx.remove(*filter, installed)?;
                }
            }
            let mut samples: BTreeMap<&str, Vec<(usize, Sample)>> = BTreeMap::new();
            for round in 0..rounds {
                for k in 0..filters.len() {
                    let filter = filters[(k + round) % filters.len()];
                    eprintln!(
                        "bench: {nsrc} source(s), round {}, {}",
                        round + 1,
                        filter.name()
                    );
                    let installed = rx.install(filter, limit, "198.18.0.1")?;
                    let (before, sink_before) = (rx_packets(&dut2, &dut_if)?, sink2.total());
                    let dropped_before = rx.dropped(filter)?;
                    let (sent, secs) = generate(&sender, &gen_if, nsrc, plan.secs)?;
                    std::thread::sleep(Duration::from_millis(100));
                    let (after, sink_after) = (rx_packets(&dut2, &dut_if)?, sink2.total());
                    let dropped = match (dropped_before, rx.dropped(filter)?) {
                        (Some(a), Some(b)) => Some(b - a),
                        _ => None,
                    };
                    rx.remove(filter, installed)?;
                    let received = after - before;
                    samples.entry(filter.name()).or_default().push((
                        round,
                        Sample {
                            rate: received as f64 / secs,
                            sent,
                            received,
                            delivered: sink_after - sink_before,
                            dropped,
                        },
                    ));
                }
            }
            // Where a many-source round's time goes, for floodgate's two
            // policies: one more (unmeasured) round under perf.
            let mut profiles: BTreeMap<&str, Value> = BTreeMap::new();
            for filter in [Filter::Floodgate, Filter::FloodgateDefaults] {
                if nsrc == 1 {
                    break;
                }
                let installed = rx.install(filter, limit, "198.18.0.1")?;
                let flood = || generate(&sender, &gen_if, nsrc, plan.secs).map(drop);
                profiles.insert(filter.name(), crate::profile::record(0, plan.secs, flood)?);
                rx.remove(filter, installed)?;
            }
            let floor: BTreeMap<usize, f64> = samples[Filter::XdpDrop.name()]
                .iter()
                .map(|(r, s)| (*r, s.rate))
                .collect();
            for filter in &filters {
                let list = &samples[filter.name()];
                let mut ratios: Vec<f64> = list.iter().map(|(r, s)| s.rate / floor[r]).collect();
                let mut above: Vec<f64> = list
                    .iter()
                    .map(|(r, s)| 1e9 / s.rate - 1e9 / floor[r])
                    .collect();
                ratios.sort_by(f64::total_cmp);
                above.sort_by(f64::total_cmp);
                let (sent, received, delivered) = list.iter().fold((0, 0, 0), |a, (_, s)| {
                    (a.0 + s.sent, a.1 + s.received, a.2 + s.delivered)
                });
                let mut flags = Vec::new();
                if (received as f64) < 0.99 * sent as f64 {
                    flags.push(format!(
                        "only {:.1}% of sent frames received",
                        100.0 * received as f64 / sent as f64
                    ));
                }
                let dropped: Option<u64> = list.iter().map(|(_, s)| s.dropped).sum();
                match dropped {
                    Some(d) if (d as f64) < 0.9 * received as f64 => {
                        flags.push(format!(
                            "dropped only {:.0}% (its counters)",
                            100.0 * d as f64 / received as f64
                        ));
                    }
                    None if filter.limits()
                        && *filter != Filter::XdpDrop
                        && delivered as f64 > 0.1 * received as f64 =>
                    {
                        flags.push(format!(
                            "did not drop: {:.0}% reached the socket",
                            100.0 * delivered as f64 / received as f64
                        ));
                    }
                    _ => {}
                }
                rows.push(json!({
                    "sources": nsrc,
                    "filter": filter.name(),
                    "ratio_to_xdp_drop": ratios[ratios.len() / 2],
                    "ratio_min": ratios[0],
                    "ratio_max": ratios[ratios.len() - 1],
                    "ns_above_xdp_drop": above[above.len() / 2],
                    "sent": sent,
                    "received": received,
                    "delivered_to_socket": delivered,
                    "dropped_by_filter": dropped,
                    "limit_pps_per_source": limit.pps(),
                    "flags": flags,
                    "profile": profiles.get(filter.name()),
                }));
            }
        }
        let map_memory: BTreeMap<String, u64> = rx.fg.map_memory().into_iter().collect();

        // Scale: the one-source flood again with 100 000 allow and 100 000 block
        // CIDRs and 10 000 rules loaded (none matching the source, so every trie
        // is walked), against a bare XDP_DROP in the same rounds.
        rx.fg = load_floodgate(1 << 20, None)?;
        crate::lists::load(&mut rx.fg, limited_policy(ONE_SOURCE))?;
        let mut ratios = Vec::new();
        let mut above = Vec::new();
        for round in 0..plan.rounds_many {
            let mut rate = BTreeMap::new();
            for k in 0..2 {
                let filter = [Filter::XdpDrop, Filter::Floodgate][(k + round) % 2];
                eprintln!(
                    "bench: 1 source, 100k CIDRs + 10k rules loaded, round {}, {}",
                    round + 1,
                    filter.name()
                );
                let installed = rx.install(filter, ONE_SOURCE, "198.18.0.1")?;
                let before = rx_packets(&dut2, &dut_if)?;
                let (_, secs) = generate(&sender, &gen_if, 1, plan.secs)?;
                std::thread::sleep(Duration::from_millis(100));
                let received = rx_packets(&dut2, &dut_if)? - before;
                rx.remove(filter, installed)?;
                rate.insert(filter.name(), received as f64 / secs);
            }
            let (fg, floor) = (rate[Filter::Floodgate.name()], rate[Filter::XdpDrop.name()]);
            ratios.push(fg / floor);
            above.push(1e9 / fg - 1e9 / floor);
        }
        ratios.sort_by(f64::total_cmp);
        above.sort_by(f64::total_cmp);
        rows.push(json!({
            "sources": 1,
            "filter": "floodgate, 100k allow + 100k block CIDRs + 10k rules loaded",
            "ratio_to_xdp_drop": ratios[ratios.len() / 2],
            "ratio_min": ratios[0],
            "ratio_max": ratios[ratios.len() - 1],
            "ns_above_xdp_drop": above[above.len() / 2],
            "flags": [],
        }));

        let over_capacity = crate::spoofed::run(&sender, &gen_if, &dut_if, &plan)?;
        // Free the bench's own maps first: the default capacities need half a GiB.
        drop(rx);
        let defaults = crate::memory::run(&sender, &gen_if, &dut_if, plan.secs)?;
        Ok(Live {
            rows: Value::Array(rows),
            over_capacity,
            map_memory: json!(map_memory),
            defaults,
        })
    })??;
    drop(sink);
    drop(bpffs);
    drop(lab);
    Ok(out)
}
