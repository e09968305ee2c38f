//! Running commands: printed first, stdio inherited, failures name the command.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// The env var that makes userspace/build.rs build the real XDP program.
pub const BUILD_EBPF: (&str, &str) = ("FLOODGATE_BUILD_EBPF", "1");

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio; errors if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cargo test`, echoing its output and adding up its `test result:`
/// lines; errors if it fails.
pub fn run_counting_tests(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::{BufRead as _, BufReader};
    let line = describe(cmd);
    println!("$ {line}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("cargo test stdout")?;
    for l in BufReader::new(stdout).lines() {
        let l = l?;
        println!("{l}");
        if let Some(rest) = l.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{line}` failed ({status}): {failed} test(s) failed");
    }
    Ok((passed, failed))
}

/// The number before `what` in "ok. 3 passed; 0 failed; …".
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(';')
        .find(|part| part.ends_with(what))
        .and_then(|part| part.trim_end_matches(what).rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs `cmd` quietly and returns its stdout, or None if it failed to run or exited non-zero.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The workspace's `target` directory (xtask lives in `<root>/xtask`).
pub fn target_dir() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(std::path::Path::new("."));
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
}

/// The workspace's `target/release` directory.
pub fn release_dir() -> std::path::PathBuf {
    target_dir().join("release")
}

/// A `cargo` command with the real XDP program enabled.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env(BUILD_EBPF.0, BUILD_EBPF.1);
    cmd
}
