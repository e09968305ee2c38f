//! Benchmark companions of the floodgate program (`cargo xtask bench`), built
//! into their own object so the product never loads them:
//! - `xdp_drop`: the floor every figure is compared with;
//! - `parse_drop`: floodgate's own parser, then drop — the cost of parsing alone;
//! - `xdp_gen`: a live-frames traffic generator (BPF_PROG_TEST_RUN with
//!   BPF_F_TEST_XDP_LIVE_FRAMES) that redirects each frame out of `GEN_IFINDEX`,
//!   rotating the IPv4 source over `GEN_NSRC` addresses from `GEN_SRC_BASE`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[path = "parse.rs"]
mod parse;

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::PerCpuArray,
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

/// Sets the IPv4 source to base + (seq mod nsrc) and recomputes the header checksum.
#[inline(always)]
fn rewrite_source(ctx: &XdpContext, nsrc: u32) -> Option<()> {
    const IP: usize = 14;
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + IP + 20 > end {
        return None;
    }
    let seq = GEN_SEQ.get_ptr_mut(0)?;
    // SAFETY: a live per-CPU map value, only this CPU touches it.
    let n = unsafe {
        let n = *seq;
        *seq = n + 1;
        n
    };
    let src = GEN_SRC_BASE
        .load()
        .wrapping_add((n % u64::from(nsrc)) as u32);
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
