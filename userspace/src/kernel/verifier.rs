//! A rejected load's verifier log, told in one line. The log runs to thousands
//! of lines of instructions and register states; what the user needs is the
//! reason at its end, in the kernel's own words when nothing better is known.

use aya::programs::ProgramError;

use super::{NEEDS, helper};
use crate::loader::LoadError;

/// The verifier's stack limit per call chain (MAX_BPF_STACK).
const MAX_STACK: u32 = 512;
/// Where the full log is.
const VERBOSE: &str = "`floodgate run --verbose` prints the verifier's log";

/// A failed program load, told in one line when the verifier refused it (the
/// log stays in the error's source, for `--verbose`).
pub(crate) fn rejected(e: ProgramError, release: &str) -> LoadError {
    match &e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => LoadError::Rejected {
            summary: summarize(&verifier_log.to_string(), release, &io_error.to_string()),
            source: e,
        },
        _ => LoadError::Program(e),
    }
}

/// One line saying why this kernel (`release`) rejected the program, from the
/// verifier's `log` (`io_error`, the syscall's error, when the log says nothing).
pub fn summarize(log: &str, release: &str, io_error: &str) -> String {
    let kernel = format!("this kernel ({release})");
    let tail = format!("floodgate needs {NEEDS} ({VERBOSE})");
    if let Some((calls, bytes)) = combined_stack(log) {
        return format!(
            "{kernel} counts the program's stack as {bytes} bytes over {calls} nested calls, \
             over its limit of {MAX_STACK}; {tail}"
        );
    }
    if let Some(name) = missing_helper(log) {
        return format!("{kernel} lacks the helper {name}; {tail}");
    }
    if let Some(name) = find_after(log, "program of this type cannot use helper ") {
        return format!(
            "{kernel} does not let XDP programs call the helper {}; {tail}",
            helper_name(name)
        );
    }
    if log.contains("BPF_XADD uses reserved fields") || log.contains("invalid atomic") {
        return format!(
            "{kernel} lacks BPF atomics (compare-and-swap, fetch-and-add: Linux 5.12); {tail}"
        );
    }
    if log.contains("BPF_CALL uses reserved fields") {
        return format!("{kernel} lacks BPF-to-BPF function calls (Linux 4.16); {tail}");
    }
    if log.contains("back-edge from insn") {
        return format!("{kernel} lacks bounded loops (Linux 5.3); {tail}");
    }
    if let Some(n) = find_after(log, "BPF program is too large. Processed ") {
        return format!(
            "{kernel} gave up verifying the program after {} instructions, its \
             complexity limit; {tail}",
            n.trim_end_matches(|c: char| !c.is_ascii_digit())
        );
    }
    match last_meaningful_line(log) {
        Some(line) => format!("{kernel} rejected the program: {line}; {tail}"),
        None => format!(
            "{kernel} refused to load the program ({io_error}) without a verifier log; \
             run floodgate as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON) on \
             {NEEDS}"
        ),
    }
}

/// The word that follows `marker` in `log`.
fn find_after<'a>(log: &'a str, marker: &str) -> Option<&'a str> {
    let at = log.find(marker)? + marker.len();
    log[at..].split_whitespace().next()
}

/// "combined stack size of 3 calls is 544. Too large" → (3, 544).
fn combined_stack(log: &str) -> Option<(u32, u32)> {
    let calls = find_after(log, "combined stack size of ")?.parse().ok()?;
    let bytes = find_after(log, "calls is ")?
        .trim_end_matches('.')
        .parse()
        .ok()?;
    Some((calls, bytes))
}

/// The helper the log says is unknown: "unknown func bpf_x#N" (a helper this
/// kernel has but not for this program type) or "invalid func unknown#N" (one
/// it has never heard of, named here from its number).
fn missing_helper(log: &str) -> Option<String> {
    ["unknown func ", "invalid func "]
        .iter()
        .find_map(|marker| find_after(log, marker))
        .map(helper_name)
}

/// "bpf_ringbuf_reserve#131" → "bpf_ringbuf_reserve"; "unknown#160" →
/// "bpf_ktime_get_coarse_ns (Linux 5.11)"; an unlisted number → "#N".
fn helper_name(word: &str) -> String {
    let (name, id) = word.split_once('#').unwrap_or((word, ""));
    let known = id.parse().ok().and_then(helper);
    match known {
        Some(h) if name == "unknown" || name.is_empty() => {
            format!("{} (Linux {})", h.name, h.since)
        }
        Some(h) => format!("{name} (Linux {})", h.since),
        None if name == "unknown" || name.is_empty() => format!("#{id}"),
        None => name.to_owned(),
    }
}

/// The last line before the verifier's closing statistics: where it says what
/// it refused.
fn last_meaningful_line(log: &str) -> Option<&str> {
    const STATS: [&str; 5] = [
        "processed ",
        "verification time",
        "stack depth",
        "max_states_per_insn",
        "-- END",
    ];
    log.lines()
        .map(str::trim)
        .rev()
        .find(|l| !l.is_empty() && !STATS.iter().any(|s| l.starts_with(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_line(log: &str, release: &str) -> String {
        let s = summarize(log, release, "Invalid argument (os error 22)");
        assert!(!s.contains('\n'), "{s}");
        s
    }

    /// Debian 12's 6.1 on the program before its stack was cut (a real log's end).
    const STACK_6_1: &str = "\
func#0 @0
func#1 @1612
0: R1=ctx(off=0,imm=0) R10=fp0
0: (bf) r6 = r1                       ; R1=ctx(off=0,imm=0) R6_w=ctx(off=0,imm=0)
...
2411: (95) exit
combined stack size of 3 calls is 544. Too large
verification time 1030121 usec
stack depth 408+88+0+8+72
processed 81813 insns (limit 1000000) max_states_per_insn 27 total_states 4598 peak_states 1606 mark_read 330
";

    #[test]
    fn stack_over_the_limit() {
        assert_eq!(
            one_line(STACK_6_1, "6.1.0-18-amd64"),
            "this kernel (6.1.0-18-amd64) counts the program's stack as 544 bytes over 3 \
             nested calls, over its limit of 512; floodgate needs Linux ≥ 6.1 with BTF \
             (`floodgate run --verbose` prints the verifier's log)"
        );
        // The shorter form, statistics right after.
        let log = "combined stack size of 3 calls is 544. Too large\nstack depth \
                   408+88+0+8+72\nprocessed 81813 insns (limit 1000000) max_states_per_insn 4";
        assert!(one_line(log, "6.1.0").contains("stack as 544 bytes"));
    }

    #[test]
    fn helpers_the_kernel_lacks() {
        let log = "100: (85) call bpf_ktime_get_coarse_ns#160\nunknown func \
                   bpf_ktime_get_coarse_ns#160\nprocessed 90 insns (limit 1000000)\n";
        assert_eq!(
            one_line(log, "5.10.0"),
            "this kernel (5.10.0) lacks the helper bpf_ktime_get_coarse_ns (Linux 5.11); \
             floodgate needs Linux ≥ 6.1 with BTF (`floodgate run --verbose` prints the \
             verifier's log)"
        );
        // Kernels older than the helper call it "unknown".
        let log = "100: (85) call unknown#160\ninvalid func unknown#160\nprocessed 90 insns\n";
        assert!(
            one_line(log, "5.4.0").starts_with(
                "this kernel (5.4.0) lacks the helper bpf_ktime_get_coarse_ns (Linux 5.11);"
            ),
            "{}",
            one_line(log, "5.4.0")
        );
        let log = "invalid func unknown#999\n";
        assert!(one_line(log, "5.4.0").contains("lacks the helper #999;"));
        let log = "program of this type cannot use helper bpf_ringbuf_reserve#131\n";
        assert!(one_line(log, "5.8.0").contains(
            "does not let XDP programs call the helper bpf_ringbuf_reserve (Linux 5.8);"
        ));
    }

    #[test]
    fn old_instruction_sets() {
        let log = "12: (db) lock *(u64 *)(r10 -8) += r1\nBPF_XADD uses reserved fields\n";
        assert!(one_line(log, "5.4.0").contains("lacks BPF atomics"));
        let log = "back-edge from insn 70 to 12\n";
        assert!(one_line(log, "4.19.0").contains("lacks bounded loops (Linux 5.3)"));
        let log = "BPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns\n";
        assert!(
            one_line(log, "5.15.0")
                .contains("gave up verifying the program after 1000001 instructions")
        );
    }

    #[test]
    fn the_error_is_one_line_and_the_log_stays_available() {
        let e = rejected(
            ProgramError::LoadError {
                io_error: std::io::Error::from_raw_os_error(13),
                verifier_log: aya_obj::VerifierLog::new(STACK_6_1.to_owned()),
            },
            "6.1.0-18-amd64",
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with("this kernel (6.1.0-18-amd64) counts"),
            "{shown}"
        );
        assert!(
            !shown.contains('\n') && !shown.contains("processed"),
            "{shown}"
        );
        assert_eq!(e.verifier_log().as_deref(), Some(STACK_6_1));
    }

    #[test]
    fn otherwise_the_kernels_own_last_line() {
        let log = "0: (b7) r0 = 2\n1: (95) exit\nR0 invalid mem access 'scalar'\n\nverification \
                   time 20 usec\nstack depth 0\nprocessed 2 insns (limit 1000000) \
                   max_states_per_insn 0\n";
        assert_eq!(
            one_line(log, "6.6.0"),
            "this kernel (6.6.0) rejected the program: R0 invalid mem access 'scalar'; \
             floodgate needs Linux ≥ 6.1 with BTF (`floodgate run --verbose` prints the \
             verifier's log)"
        );
        let empty = one_line("", "6.6.0");
        assert!(
            empty.contains("refused to load the program (Invalid argument (os error 22))"),
            "{empty}"
        );
    }
}
