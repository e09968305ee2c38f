//! `cargo xtask test`: formatting, lints, then every test, a check that the
//! tests left nothing behind on the host, and the kernel matrix.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{kernels, util};

pub fn run(extra: &[String]) -> Result<()> {
    util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))?;
    util::run(util::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Integration tests share the machine's two CPUs and measure rates: two at a time.
    let result = util::run_counting_tests(
        util::cargo()
            .args(["test", "--workspace", "--all-targets", "--"])
            .args(["--test-threads=2"])
            .args(extra),
    );
    // Namespaces of the last test may take a moment to go after it exits.
    let mut leaks = leftovers();
    for _ in 0..10 {
        if leaks.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        leaks = leftovers();
    }
    let (passed, failed) = result?;
    if !leaks.is_empty() {
        bail!("the tests left things behind: {}", leaks.join("; "));
    }
    // Only with every test of the host passed: a guest boot takes half a minute
    // and more.
    let (k_passed, k_failed) = if extra.is_empty() {
        kernels::run(None)?
    } else {
        println!("kernel matrix skipped: a test filter was given");
        (0, 0)
    };
    // The sum of every `test result:` line above and of the kernel matrix, so
    // the total is in one place.
    let (passed, failed) = (passed + k_passed, failed + k_failed);
    println!("cargo xtask test: {passed} passed, {failed} failed");
    if k_failed > 0 {
        bail!("{k_failed} kernel(s) of the matrix failed; see the lines above");
    }
    Ok(())
}

/// Lab namespaces still present, or XDP on the host's own interfaces.
fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    if let Some(list) = util::output(Command::new("ip").args(["netns", "list"])) {
        let labs: Vec<&str> = list
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("fg"))
            .collect();
        if !labs.is_empty() {
            found.push(format!("network namespaces {}", labs.join(" ")));
        }
    }
    for dev in ["eth0", "lo"] {
        if util::output(Command::new("ip").args(["link", "show", dev]))
            .is_some_and(|s| s.contains("xdp"))
        {
            found.push(format!(
                "an XDP program on the host's {dev} (remove it: ip link set dev {dev} xdp off)"
            ));
        }
    }
    found
}
