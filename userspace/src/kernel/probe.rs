//! Feature probes, run before the program is loaded: each one creates a tiny
//! map or loads a tiny program, so a kernel without a feature says so here in
//! one line instead of failing somewhere inside the load. A probe that cannot
//! tell (not root, an unexpected error) counts as passed: the load itself then
//! has the last word.

use std::{io, os::fd::FromRawFd as _, path::Path};

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_helper_supported, is_map_supported, is_program_supported},
};
use tracing::debug;

use super::{HELPERS, Helper, NEEDS, lacks};

/// What the probes found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One "this kernel (R) lacks X; floodgate needs …" line per missing feature.
    pub missing: Vec<String>,
    /// Things floodgate is not tested without but does not depend on.
    pub warnings: Vec<String>,
}

/// The map types of ebpf/floodgate-ebpf/src/maps.rs.
const MAPS: [(MapType, &str); 6] = [
    (MapType::Hash, "hash maps (BPF_MAP_TYPE_HASH)"),
    (MapType::Array, "array maps (BPF_MAP_TYPE_ARRAY)"),
    (
        MapType::PerCpuArray,
        "per-CPU arrays (BPF_MAP_TYPE_PERCPU_ARRAY, Linux 4.6)",
    ),
    (
        MapType::LruHash,
        "LRU hash maps (BPF_MAP_TYPE_LRU_HASH, Linux 4.10)",
    ),
    (
        MapType::LpmTrie,
        "LPM tries (BPF_MAP_TYPE_LPM_TRIE, Linux 4.11)",
    ),
    (
        MapType::RingBuf,
        "BPF ring buffers (BPF_MAP_TYPE_RINGBUF, Linux 5.8)",
    ),
];

/// One thing a probe asks the kernel.
#[derive(Clone, Copy, Debug)]
pub enum Feature {
    Xdp,
    Map(MapType),
    Helper(Helper),
    Atomics,
}

/// Probes everything the program needs on this kernel (`release`).
pub fn check(release: &str) -> Report {
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    report(release, btf, |f| match f {
        Feature::Xdp => passes("XDP", is_program_supported(ProgramType::Xdp)),
        Feature::Map(m) => passes(&format!("{m:?}"), is_map_supported(m)),
        Feature::Helper(h) => passes(h.name, is_helper_supported(ProgramType::Xdp, h.id)),
        Feature::Atomics => passes("atomics", atomics()),
    })
}

/// The report from the answers of `supported` (and whether the kernel has BTF).
fn report(release: &str, btf: bool, supported: impl Fn(Feature) -> bool) -> Report {
    let mut report = Report::default();
    let mut lack = |what: &str| report.missing.push(lacks(release, what));
    if !supported(Feature::Xdp) {
        lack("XDP programs (BPF_PROG_TYPE_XDP)");
        // Without XDP the program probes below cannot load either.
        return report;
    }
    let mut ringbuf = true;
    for (map, what) in MAPS {
        if !supported(Feature::Map(map)) {
            lack(what);
            ringbuf &= map != MapType::RingBuf;
        }
    }
    for h in HELPERS {
        // A kernel without ring buffers lacks their helpers too: one line is enough.
        if h.name.starts_with("bpf_ringbuf") && !ringbuf {
            continue;
        }
        if !supported(Feature::Helper(h)) {
            lack(&format!("the BPF helper {} (Linux {})", h.name, h.since));
        }
    }
    if !supported(Feature::Atomics) {
        lack("BPF atomics (compare-and-swap, fetch-and-add from -mcpu=v3: Linux 5.12)");
    }
    if !btf {
        // The program has no CO-RE relocations, so it loads without the
        // kernel's BTF; the requirement is what floodgate is tested on.
        report.warnings.push(format!(
            "this kernel ({release}) has no BTF (/sys/kernel/btf/vmlinux is missing, \
             CONFIG_DEBUG_INFO_BTF); floodgate is tested on {NEEDS} and goes on without it"
        ));
    }
    report
}

/// A probe's answer; one that could not tell passes.
fn passes<E: std::fmt::Display>(what: &str, probed: Result<bool, E>) -> bool {
    probed.unwrap_or_else(|e| {
        debug!(feature = what, error = %e, "feature probe could not tell; the load will");
        true
    })
}

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The head of `union bpf_attr` for BPF_PROG_LOAD; the kernel zero-fills the
/// fields after it.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
}

const BPF_PROG_TYPE_XDP: u32 = 6;
/// BPF_ALU64 | BPF_MOV | BPF_K.
const MOV_IMM: u8 = 0xb7;
/// BPF_STX | BPF_MEM | BPF_DW.
const STORE_DW: u8 = 0x7b;
/// BPF_STX | BPF_ATOMIC | BPF_DW.
const ATOMIC_DW: u8 = 0xdb;
/// BPF_ADD | BPF_FETCH, BPF_CMPXCHG (which always fetches).
const FETCH_ADD: i32 = 0x01;
const CMPXCHG: i32 = 0xf1;
/// BPF_JMP | BPF_EXIT.
const EXIT: u8 = 0x95;

/// Whether the verifier takes the atomics the program is compiled to
/// (`-Ctarget-cpu=v3`: fetch-add and compare-and-swap, Linux 5.12), which aya
/// has no probe for: a fetch-add and a cmpxchg on a stack slot, then XDP_PASS.
/// Older kernels read the same opcode as BPF_XADD and refuse its fetch flag.
fn atomics() -> io::Result<bool> {
    let insns = [
        insn(MOV_IMM, 1, 0, 0, 0),
        insn(STORE_DW, 10, 1, -8, 0),
        insn(MOV_IMM, 1, 0, 0, 1),
        insn(ATOMIC_DW, 10, 1, -8, FETCH_ADD),
        insn(MOV_IMM, 0, 0, 0, 1),
        insn(ATOMIC_DW, 10, 1, -8, CMPXCHG),
        insn(MOV_IMM, 0, 0, 0, 2),
        insn(EXIT, 0, 0, 0, 0),
    ];
    let license = c"GPL";
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
    };
    // SAFETY: `attr` is a valid BPF_PROG_LOAD head, and the instructions and
    // license it points to outlive the call.
    match unsafe { super::sys::bpf(super::sys::BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => {
            // SAFETY: the syscall returned a new program fd that nothing else owns.
            drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
            Ok(true)
        }
        // The verifier's refusals; EPERM and the like say nothing about atomics.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_5_4_kernel_is_told_what_it_lacks() {
        // 5.4: XDP and every map but the ring buffer; no coarse clock, no
        // fetching atomics.
        let r = report("5.4.0-150-generic", false, |f| match f {
            Feature::Map(m) => m != MapType::RingBuf,
            Feature::Helper(h) => h.name == "bpf_ktime_get_ns",
            Feature::Atomics => false,
            Feature::Xdp => true,
        });
        assert_eq!(
            r.missing,
            [
                "this kernel (5.4.0-150-generic) lacks BPF ring buffers (BPF_MAP_TYPE_RINGBUF, \
                 Linux 5.8); floodgate needs Linux ≥ 6.1 with BTF",
                "this kernel (5.4.0-150-generic) lacks the BPF helper bpf_ktime_get_coarse_ns \
                 (Linux 5.11); floodgate needs Linux ≥ 6.1 with BTF",
                "this kernel (5.4.0-150-generic) lacks BPF atomics (compare-and-swap, \
                 fetch-and-add from -mcpu=v3: Linux 5.12); floodgate needs Linux ≥ 6.1 with BTF",
            ],
            "the ring buffer's helpers are not listed again"
        );
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("has no BTF"), "{r:?}");
    }

    #[test]
    fn a_kernel_with_everything_passes() {
        assert_eq!(report("6.1.0", true, |_| true), Report::default());
        let no_xdp = report("3.10.0", true, |_| false);
        assert_eq!(no_xdp.missing.len(), 1, "{no_xdp:?}");
    }

    #[test]
    fn instructions_pack_like_the_kernel() {
        assert_eq!(size_of::<Insn>(), 8);
        let i = insn(STORE_DW, 10, 1, -8, 0);
        assert_eq!(i.regs, 0x1a, "src r1, dst r10");
        assert_eq!(size_of::<ProgLoad>(), 40);
    }
}
