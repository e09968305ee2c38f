//! The program's stack as Debian 12's Linux 6.1 counts it, read from the
//! verifier itself: 6.1 rounds every frame up to 32 bytes (an empty frame counts
//! 32) and rejects a call chain over 512. floodgate keeps 64 bytes of headroom so
//! that growth shows up here, on any kernel, before it breaks a user's.

use anyhow::Result;
use floodgate_tests::verifier::stack_report;

/// The most any call chain may use, as 6.1 counts it (the kernel's limit is 512).
const STACK_BUDGET_6_1: u32 = 448;

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
    Ok(())
}
