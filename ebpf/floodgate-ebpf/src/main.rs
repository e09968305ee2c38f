//! floodgate XDP program: counts packets per source and per source prefix and
//! drops crawler floods. Decision order (README "Decision order"):
//! block list → allow list → bans → per-source and per-prefix limits → pass.
//!
//! The crate is only meaningful for `bpfel-unknown-none`. On the host (where
//! `cargo clippy --workspace` checks it) it builds as an empty std binary, so
//! lints run over the same code without a second panic handler.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics, asm_experimental_arch))]
#![cfg_attr(
    target_arch = "bpf",
    expect(internal_features, reason = "BPF atomics need the core intrinsics")
)]

mod aggregate;
mod atomic;
mod ban_check;
mod bans;
mod bucket;
mod counters;
mod decide;
mod limits;
mod maps;
mod parse;
mod quota;
mod scratch;
mod table;
mod track;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use floodgate_common::{Reason, Verdict};

#[xdp]
pub fn floodgate(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (verdict, reason) = match parse::parse(&ctx) {
        Ok(pkt) => match scratch::settle(pkt) {
            Some((sc, pkt)) => decide::decide(&ctx, sc, &pkt, len),
            // No scratch map: the program was loaded without its maps.
            None => (Verdict::Pass, Reason::Ok),
        },
        Err(parse::ParseError::NonIp) => (Verdict::Pass, Reason::NonIp),
        Err(parse::ParseError::Malformed) => (decide::malformed_verdict(), Reason::Malformed),
    };
    counters::count(counters::iface_slot(&ctx), verdict, reason, len);
    match verdict {
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Pass | Verdict::WouldDrop => xdp_action::XDP_PASS,
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never called.
    loop {}
}

/// License: GPL-compatible so the program may use GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
