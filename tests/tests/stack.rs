//! The program's stack as Debian 12's Linux 6.1 counts it, read from the
//! verifier itself: 6.1 rounds every frame up to 32 bytes (an empty frame counts
//! 32) and rejects a call chain over 512. floodgate keeps 64 bytes of headroom so
//! that growth shows up here, on any kernel, before it breaks a user's.
//! The instructions the verifier processes get a tripwire too (6.1 gives up at
//! a million), though not that guarantee: see `PROCESSED_BUDGET`.

use anyhow::Result;
use floodgate_tests::verifier::stack_report;

/// The most any call chain may use, as 6.1 counts it (the kernel's limit is 512).
const STACK_BUDGET_6_1: u32 = 448;

/// The most instructions this host's verifier may process. Linux 6.1 prunes
/// fewer states and walks more than twice as many for the same program, up to
/// its limit of a million: a program this host processed in 474 000 was
/// refused by 6.1, this one (379 000) is accepted. A tripwire for growth, not
/// a proof: how much more 6.1 walks depends on the change (a variant this host
/// processed in 378 000 was refused there, keeping a pointer that may be null
/// across the ban lookups), so only `cargo xtask kernels` proves a change.
const PROCESSED_BUDGET: u64 = 420_000;

#[test]
fn combined_stack_fits_linux_6_1_with_headroom() -> Result<()> {
    let report = stack_report(floodgate::object::OBJECT)?;
    let (combined, chain) = report.combined_6_1();
    println!(
        "verifier: {}; {}; deepest chain {chain:?} = {combined} bytes as 6.1 counts it",
        report.line, report.processed
    );
    assert!(
        combined <= STACK_BUDGET_6_1,
        "the call chain {chain:?} ({}) needs {combined} bytes of stack as Linux 6.1 \
         counts it (frames rounded up to 32, an empty one counted as 32); the budget is \
         {STACK_BUDGET_6_1} of the kernel's 512. Move large values off the stack (a \
         per-CPU scratch map) or inline the subprogram.",
        report.line
    );
    let processed = report.processed_insns();
    assert!(
        processed.is_some_and(|n| n <= PROCESSED_BUDGET),
        "the verifier processed {processed:?} instructions ({}); above {PROCESSED_BUDGET} \
         Linux 6.1, which walks more than twice as many, gives up at its million. Keep \
         pointers that differ by path (an entry of the IPv4 table or of the IPv6 map, \
         a pointer that may be null) from living across subprogram calls, and do work \
         after a subprogram inside it, before its exits.",
        report.processed
    );
    Ok(())
}
