//! `cargo xtask bench`.

use anyhow::Result;

use crate::util;

pub fn run(quick: bool, walks: bool, before: bool) -> Result<()> {
    // The bench drives the real daemon too (`floodgate-cli`): build every binary
    // of the crate, then run the bench itself.
    util::run(util::cargo().args([
        "build",
        "--release",
        "--package",
        "floodgate-tests",
        "--bins",
    ]))?;
    let mut cmd = std::process::Command::new(util::release_dir().join("bench"));
    if quick {
        cmd.arg("--quick");
    }
    if walks {
        cmd.arg("--walks");
    }
    if before {
        cmd.arg("--before");
    }
    util::run(&mut cmd)
}
