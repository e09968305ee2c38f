//! `cargo xtask bench`.

use anyhow::Result;

use crate::util;

pub fn run(quick: bool) -> Result<()> {
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "--release",
        "--package",
        "floodgate-tests",
        "--bin",
        "bench",
    ]);
    if quick {
        cmd.args(["--", "--quick"]);
    }
    util::run(&mut cmd)
}
