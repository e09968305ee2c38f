//! The CLI as a Unix filter: a reader that goes away (`floodgate stats | head
//! -1`) ends it quietly, by SIGPIPE as for every other tool, never with a panic.

use std::{
    os::unix::process::ExitStatusExt as _,
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result};
use floodgate_tests::daemon::{DaemonLab, LIMITED};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

/// Runs `floodgate args` with stdout a pipe whose reading end is already
/// closed, so its first write fails with EPIPE.
fn into_closed_pipe(args: &[&str]) -> Result<(ExitStatus, String)> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = Command::new(BIN)
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .context("running the CLI")?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn assert_quiet_sigpipe(args: &[&str], (status, stderr): (ExitStatus, String)) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "`floodgate {}` into a closed pipe: {status}: {stderr}",
        args.join(" ")
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "`floodgate {}`: {status}: {stderr}",
        args.join(" ")
    );
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() -> Result<()> {
    let args = ["config", "default"];
    assert_quiet_sigpipe(&args, into_closed_pipe(&args)?);

    let mut d = DaemonLab::new("pipe", BIN, LIMITED)?;
    d.start()?;
    let socket = d.socket();
    let socket = socket.to_str().context("socket path")?;
    for verb in [&["status", "--json"][..], &["stats"], &["bans", "list"]] {
        let mut args = vec!["--socket", socket];
        args.extend_from_slice(verb);
        assert_quiet_sigpipe(&args, into_closed_pipe(&args)?);
    }
    // The daemon, which ignores SIGPIPE, is still there.
    d.ok(&["status"])?;
    Ok(())
}
