//! `cargo xtask demo`.

use anyhow::Result;

use crate::util;

pub fn run() -> Result<()> {
    util::run(util::cargo().args([
        "run",
        "--release",
        "--package",
        "floodgate-tests",
        "--bin",
        "demo",
    ]))
}
