//! Benchmark companions of the floodgate program (`cargo xtask bench`), built
//! into their own object so the product never loads them:
//! - `xdp_drop`: the floor every figure is compared with;
//! - `parse_drop`: floodgate's own parser, then drop — the cost of parsing alone;
//! - `one_map`: the naive limiter floodgate is held against (issue #13): one
//!   LRU map from IPv4 source to a GCRA arrival time, plain loads and stores,
//!   one clock read; no prefixes, bans, quotas, lists or IPv6;
//! - `set_table`: `one_map`'s bucket in a set-associative ARRAY table
//!   (`bench_table.rs`) instead of the LRU hash;
//! - `xdp_gen`: a live-frames traffic generator (BPF_PROG_TEST_RUN with
//!   BPF_F_TEST_XDP_LIVE_FRAMES) that redirects each frame out of `GEN_IFINDEX`,
//!   rotating the IPv4 source over `GEN_NSRC` addresses from `GEN_SRC_BASE`;
//! - `fresh_source`: gives every BPF_PROG_TEST_RUN repetition a source not
//!   seen for millions of packets, then tail-calls the program in slot 0 of
//!   `FRESH_NEXT` (floodgate, or `xdp_drop` for this path's floor): what a
//!   first-seen source costs.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics, asm_experimental_arch))]
#![cfg_attr(
    target_arch = "bpf",
    expect(internal_features, reason = "BPF atomics need the core intrinsics")
)]

#[path = "atomic.rs"]
#[expect(
    dead_code,
    reason = "the benchmarks use only load and compare-and-swap"
)]
mod atomic;
mod bench_table;
#[path = "parse.rs"]
mod parse;

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray},
    programs::XdpContext,
};

#[unsafe(no_mangle)]
static GEN_IFINDEX: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static GEN_NSRC: Global<u32> = Global::new(1);
/// First source address, host byte order.
#[unsafe(no_mangle)]
static GEN_SRC_BASE: Global<u32> = Global::new(0);

/// Per-CPU frame sequence: the generator runs on one CPU per thread.
#[map]
static GEN_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Where `fresh_source` goes on: slot 0, set by the bench.
#[map]
static FRESH_NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// `fresh_source`'s sources: `BENCH_FRESH_SOURCES` addresses of 240.0.0.0/4
/// (reserved, never routed; these frames only ever reach
/// `BPF_PROG_TEST_RUN`) in turn, so no address comes round again while a case
/// is measured. With 4 194 304 they did, and 1–6 % of them were still
/// tracked, depending on how the table's ticks fell.
const FRESH_BASE: u32 = 0xf000_0000;
const FRESH_SPAN: u64 = floodgate_common::BENCH_FRESH_SOURCES;

/// `one_map`'s bucket: slot 0 the time one packet costs (ns), slot 1 how far
/// ahead of now the arrival time may run (burst × interval). Written by the bench.
#[map]
static ONE_MAP_LIMIT: Array<u64> = Array::with_max_entries(2, 0);

/// `one_map`'s state: IPv4 source (network order) → theoretical arrival time.
/// As large as the live bench's floodgate source map.
#[map]
static ONE_MAP: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1 << 20, 0);

/// Packets `one_map` dropped, per CPU (the bench checks it really limits).
#[map]
static ONE_MAP_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The IPv4 source (network order, as loaded) of an Ethernet + IPv4 frame.
#[inline(always)]
fn ipv4_source(ctx: &XdpContext) -> Option<u32> {
    const ETH: usize = 14;
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH + 20 > end {
        return None;
    }
    // SAFETY: the Ethernet header and 20 IPv4 header bytes were bounds-checked.
    let (ethertype, src) = unsafe {
        (
            *((start + 12) as *const [u8; 2]),
            *((start + ETH + 12) as *const u32),
        )
    };
    (ethertype == [0x08, 0x00]).then_some(src)
}

/// `one_map`'s bucket: (interval, tolerance).
#[inline(always)]
fn one_map_limit() -> Option<(u64, u64)> {
    Some((*ONE_MAP_LIMIT.get(0)?, *ONE_MAP_LIMIT.get(1)?))
}

fn count_one_map_drop() {
    if let Some(d) = ONE_MAP_DROPS.get_ptr_mut(0) {
        // SAFETY: this CPU's own counter.
        unsafe { *d += 1 };
    }
}

#[xdp]
pub fn one_map(ctx: XdpContext) -> u32 {
    let (Some(src), Some((interval, tolerance))) = (ipv4_source(&ctx), one_map_limit()) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: helper without memory arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    match ONE_MAP.get_ptr_mut(src) {
        Some(tat) => naive_bucket(tat, now, interval, tolerance),
        None => {
            let _ = ONE_MAP.insert(src, now + interval, 0);
            xdp_action::XDP_PASS
        }
    }
}

/// The baselines' bucket on the arrival time at `tat` (a live map value):
/// plain loads and stores, so racing CPUs may lose an update, which a naive
/// limiter accepts.
#[inline(always)]
fn naive_bucket(tat: *mut u64, now: u64, interval: u64, tolerance: u64) -> u32 {
    // SAFETY: the caller passes a live, aligned map value.
    let t = unsafe { *tat };
    let base = if t > now { t } else { now };
    if base - now > tolerance {
        count_one_map_drop();
        return xdp_action::XDP_DROP;
    }
    // SAFETY: as above.
    unsafe { *tat = base + interval };
    xdp_action::XDP_PASS
}

#[xdp]
pub fn set_table(ctx: XdpContext) -> u32 {
    let Some(src) = ipv4_source(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let Some((interval, tolerance)) = one_map_limit() else {
        return xdp_action::XDP_PASS;
    };
    bench_table::decide(src, interval, tolerance)
}

#[xdp]
pub fn xdp_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn parse_drop(ctx: XdpContext) -> u32 {
    let _ = parse::parse(&ctx);
    xdp_action::XDP_DROP
}

#[xdp]
pub fn xdp_gen(ctx: XdpContext) -> u32 {
    let nsrc = GEN_NSRC.load();
    if nsrc > 1 && rewrite_source(&ctx, nsrc).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: helper without memory arguments.
    unsafe { bpf_redirect(GEN_IFINDEX.load(), 0) as u32 }
}

#[xdp]
pub fn fresh_source(ctx: XdpContext) -> u32 {
    let Some(n) = next_seq() else {
        return xdp_action::XDP_ABORTED;
    };
    let src = FRESH_BASE.wrapping_add((n % FRESH_SPAN) as u32);
    if write_source(&ctx, src).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: `ctx` is this program's context; on success the call does not
    // return.
    unsafe { FRESH_NEXT.tail_call(&ctx, 0) };
    // Slot 0 empty: the bench would measure nothing, so say so.
    xdp_action::XDP_ABORTED
}

/// This CPU's next frame number.
#[inline(always)]
fn next_seq() -> Option<u64> {
    let seq = GEN_SEQ.get_ptr_mut(0)?;
    // SAFETY: a live per-CPU map value, only this CPU touches it.
    unsafe {
        let n = *seq;
        *seq = n + 1;
        Some(n)
    }
}

/// Sets the IPv4 source to base + (seq mod nsrc).
#[inline(always)]
fn rewrite_source(ctx: &XdpContext, nsrc: u32) -> Option<()> {
    let n = next_seq()?;
    let src = GEN_SRC_BASE
        .load()
        .wrapping_add((n % u64::from(nsrc)) as u32);
    write_source(ctx, src)
}

/// Writes `src` (host order) as the IPv4 source and recomputes the header
/// checksum.
#[inline(always)]
fn write_source(ctx: &XdpContext, src: u32) -> Option<()> {
    const IP: usize = 14;
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + IP + 20 > end {
        return None;
    }
    let ip = (start + IP) as *mut [u8; 20];
    // SAFETY: the 20 header bytes were bounds-checked above.
    let hdr = unsafe { &mut *ip };
    hdr[12..16].copy_from_slice(&src.to_be_bytes());
    hdr[10] = 0;
    hdr[11] = 0;
    let mut sum: u32 = 0;
    for i in 0..10 {
        sum += u32::from(u16::from_be_bytes([hdr[2 * i], hdr[2 * i + 1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let check = !(sum as u16);
    hdr[10..12].copy_from_slice(&check.to_be_bytes());
    Some(())
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
