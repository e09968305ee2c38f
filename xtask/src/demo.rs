//! `cargo xtask demo [--all]`: builds the floodgate binary and the demo, then
//! runs the crawler lab's scenarios with their per-client reports.

use anyhow::Result;

use crate::util;

pub fn run(extra: &[&str]) -> Result<()> {
    util::run(util::cargo().args([
        "build",
        "--release",
        "--package",
        "floodgate",
        "--bin",
        "floodgate",
        "--package",
        "floodgate-tests",
        "--bin",
        "demo",
    ]))?;
    let dir = util::release_dir();
    let floodgate = dir.join("floodgate");
    let mut demo = std::process::Command::new(dir.join("demo"));
    demo.arg("--floodgate").arg(&floodgate).args(extra);
    util::run(&mut demo)
}
