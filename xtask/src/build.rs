//! `cargo xtask build`.

use anyhow::Result;

use crate::util;

pub fn run(release: bool) -> Result<()> {
    let mut cmd = util::cargo();
    cmd.args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    println!(
        "built: target/{}/floodgate",
        if release { "release" } else { "debug" }
    );
    Ok(())
}
