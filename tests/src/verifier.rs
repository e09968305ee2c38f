//! The verifier's own account of the program's stack.
//!
//! aya returns the verifier log only when a load fails, so this loads the same
//! object a second time through the `bpf()` syscall with a `BPF_LOG_STATS` log:
//! aya-obj parses and relocates it against the maps of a real load (pinned on a
//! private bpffs to get their file descriptors), and the kernel prints the
//! `stack depth A+B+…` line, one number per subprogram in instruction order.
//! The call graph comes from the same relocated instructions, so the combined
//! stack of every call chain can be computed the way Debian 12's 6.1 counts it.

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::maps::MapData;
use aya_obj::generated::{BPF_PSEUDO_CALL, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type};
use floodgate::loader::{Capacity, Floodgate};
use floodgate_common::PROGRAM_NAME;

use crate::lab::BpfFs;

/// BPF_LOG_STATS: only the closing statistics (time, stack depth, insns).
const BPF_LOG_STATS: u32 = 4;
/// BPF_JMP | BPF_CALL.
const CALL: u8 = 0x85;
/// Linux 6.1's frame rule (`check_max_stack_depth`): every frame rounded up to
/// 32 bytes, an empty one counted as 32; the chain must fit in 512.
const FRAME_ROUND_6_1: u32 = 32;

/// Per-subprogram stack depths and who calls whom.
#[derive(Debug)]
pub struct StackReport {
    /// The verifier's line, e.g. `stack depth 408+88+0+8+72`.
    pub line: String,
    /// Depth of each subprogram, in instruction order (0 is the program).
    pub depths: Vec<u32>,
    /// Subprograms each subprogram calls.
    pub calls: Vec<Vec<usize>>,
    /// The verifier's `processed N insns …` line (its limit is a million).
    pub processed: String,
}

impl StackReport {
    /// The instructions the verifier processed, from its `processed` line.
    pub fn processed_insns(&self) -> Option<u64> {
        self.processed
            .strip_prefix("processed ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The deepest call chain's stack as Linux 6.1 counts it, with the chain.
    pub fn combined_6_1(&self) -> (u32, Vec<usize>) {
        self.deepest(0, &mut Vec::new())
    }

    fn deepest(&self, sub: usize, seen: &mut Vec<usize>) -> (u32, Vec<usize>) {
        let frame = self.depths[sub].max(1).next_multiple_of(FRAME_ROUND_6_1);
        seen.push(sub);
        let mut best = (0, Vec::new());
        for &callee in &self.calls[sub] {
            // The verifier rejects recursion; never loop on it here either.
            if seen.contains(&callee) {
                continue;
            }
            let below = self.deepest(callee, seen);
            if below.0 > best.0 {
                best = below;
            }
        }
        seen.pop();
        let mut chain = vec![sub];
        chain.extend(best.1);
        (frame + best.0, chain)
    }
}

/// Loads `object` (the floodgate program) and returns the verifier's stack report.
pub fn stack_report(object: &[u8]) -> Result<StackReport> {
    let capacity = Capacity::new(1024, 1024, 1024, 1024);
    let fg = Floodgate::load(capacity, None).context("loading the program through aya")?;
    let fs = BpfFs::new()?;
    let mut fds: HashMap<String, MapData> = HashMap::new();
    for (name, map) in fg.ebpf_ref().maps() {
        let path = fs.path().join(name.replace('.', "_"));
        map.pin(&path)
            .with_context(|| format!("pinning map {name}"))?;
        let data = MapData::from_pin(&path).with_context(|| format!("reopening map {name}"))?;
        std::fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
        fds.insert(name.to_owned(), data);
    }

    let mut obj = aya_obj::Object::parse(object).context("parsing the eBPF object")?;
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    let maps = obj.maps.clone();
    let mut relocs = Vec::new();
    for (name, map) in &maps {
        let data = fds
            .get(name)
            .with_context(|| format!("aya created no map {name}"))?;
        relocs.push((name.as_str(), data.fd().as_fd().as_raw_fd(), map));
    }
    obj.relocate_maps(relocs.into_iter(), &text_sections)
        .context("relocating map references")?;
    obj.relocate_calls(&text_sections)
        .context("relocating calls")?;
    let program = obj
        .programs
        .get(PROGRAM_NAME)
        .with_context(|| format!("the object has no program {PROGRAM_NAME}"))?;
    let license = program.license.clone();
    let insns = obj.functions[&program.function_key()].instructions.clone();

    let log = load_with_stats(&insns, &license)?;
    let line = log
        .lines()
        .find(|l| l.starts_with("stack depth "))
        .with_context(|| format!("the verifier log has no `stack depth` line:\n{log}"))?
        .to_owned();
    let depths = line
        .trim_start_matches("stack depth ")
        .split('+')
        .map(|d| d.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {line:?}"))?;
    let calls = call_graph(&insns);
    ensure!(
        calls.len() == depths.len(),
        "{} subprograms in the instructions, {} in {line:?}",
        calls.len(),
        depths.len()
    );
    let processed = log
        .lines()
        .find(|l| l.starts_with("processed "))
        .unwrap_or("no `processed` line")
        .to_owned();
    Ok(StackReport {
        line,
        depths,
        calls,
        processed,
    })
}

/// BPF_PROG_LOAD of `insns` as XDP with a statistics log; returns the log.
fn load_with_stats(insns: &[bpf_insn], license: &std::ffi::CStr) -> Result<String> {
    // FLOODGATE_VERIFIER_LOG=FILE: the whole instruction-level log instead (level
    // 1), written to FILE, for finding where verification time goes.
    let full = std::env::var_os("FLOODGATE_VERIFIER_LOG");
    let mut log = vec![0u8; if full.is_some() { 1 << 29 } else { 1 << 20 }];
    // SAFETY: bpf_attr is a plain C union; all-zero is its documented default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_PROG_LOAD member of the zeroed union.
    let u = unsafe { &mut attr.__bindgen_anon_3 };
    u.prog_type = bpf_prog_type::BPF_PROG_TYPE_XDP as u32;
    u.insns = insns.as_ptr() as u64;
    u.insn_cnt = u32::try_from(insns.len()).context("too many instructions")?;
    u.license = license.as_ptr() as u64;
    u.log_level = if full.is_some() {
        2 | BPF_LOG_STATS
    } else {
        BPF_LOG_STATS
    };
    u.log_buf = log.as_mut_ptr() as u64;
    u.log_size = u32::try_from(log.len()).context("log size")?;
    // SAFETY: attr points at valid instructions, license and log buffer, all of
    // which outlive the call; the size passed is the struct's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_LOAD as libc::c_long,
            &raw const attr,
            size_of::<bpf_attr>(),
        )
    };
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).into_owned();
    if let Some(path) = full {
        std::fs::write(&path, &text).context("writing the verifier log")?;
    }
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        bail!("BPF_PROG_LOAD failed: {err}\n{text}");
    }
    // SAFETY: a file descriptor the kernel just returned to us, closed once.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(text)
}

/// Subprogram boundaries (the program's start and every bpf-to-bpf call target,
/// sorted as the verifier numbers them) and the calls each one makes.
fn call_graph(insns: &[bpf_insn]) -> Vec<Vec<usize>> {
    let is_call = |i: &bpf_insn| i.code == CALL && u32::from(i.src_reg()) == BPF_PSEUDO_CALL;
    let target = |pc: usize, i: &bpf_insn| pc as i64 + 1 + i64::from(i.imm);
    let mut starts: Vec<i64> = vec![0];
    for (pc, i) in insns.iter().enumerate() {
        if is_call(i) {
            starts.push(target(pc, i));
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let sub_of = |pc: i64| starts.partition_point(|&s| s <= pc) - 1;
    let mut calls = vec![Vec::new(); starts.len()];
    for (pc, i) in insns.iter().enumerate() {
        if is_call(i) {
            let (from, to) = (sub_of(pc as i64), sub_of(target(pc, i)));
            if !calls[from].contains(&to) {
                calls[from].push(to);
            }
        }
    }
    calls
}
