//! CLI changes are transactions and client values are bounded (issue "Control
//! plane: every change atomic, durable, and checked", items 5 and 7). On the
//! daemon before this change:
//! - a `block add` whose save failed reported an error, yet the next reload
//!   enforced it (the runtime state was changed first);
//! - a torn `runtime.json` kept the daemon from starting at all;
//! - `block add --for` 2^40 s overflowed (a panic in a debug build).

use anyhow::Result;
use floodgate_tests::{
    daemon::{DaemonLab, LIMITED, burst_through},
    lab::traffic::UdpSink,
};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

#[test]
fn a_change_that_cannot_be_saved_is_not_applied_then_or_later() -> Result<()> {
    let mut d = DaemonLab::new("txn", BIN, LIMITED)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // The temp file's name taken by a directory: every save fails (as root,
    // permissions would not stop it).
    let blocker = d.state_dir().join("runtime.json.tmp");
    std::fs::create_dir_all(&blocker)?;
    let out = d.cli(&["block", "add", "198.18.1.3"])?;
    assert!(
        !out.status.success(),
        "the failed save was reported as done"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runtime.json"),
        "the error names the file: {err}"
    );
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 10)?,
        10,
        "applied anyway"
    );
    std::fs::remove_dir(&blocker)?;
    d.ok(&["reload"])?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 10)?,
        10,
        "a refused change came back with the next reload"
    );
    let blocks = d.json(&["block", "list"])?;
    assert!(
        blocks.as_array().is_none_or(Vec::is_empty),
        "the refused block is listed: {blocks}"
    );
    // And a change that can be saved is both applied and saved.
    d.ok(&["block", "add", "198.18.1.3"])?;
    assert_eq!(burst_through(&d, &sink, "198.18.1.3", 10)?, 0);
    let saved = std::fs::read_to_string(d.state_dir().join("runtime.json"))?;
    assert!(saved.contains("198.18.1.3/32"), "{saved}");
    Ok(())
}

#[test]
fn a_torn_runtime_file_is_set_aside_and_the_daemon_starts() -> Result<()> {
    let mut d = DaemonLab::new("torn", BIN, LIMITED)?;
    std::fs::create_dir_all(d.state_dir())?;
    std::fs::write(
        d.state_dir().join("runtime.json"),
        b"{\"allow_added\": [\"198.18",
    )?;
    d.start()?;
    assert_eq!(d.json(&["status"])?["mode"], "enforce");
    let log = d.daemon_log();
    assert!(
        log.contains("runtime.json") && log.contains("runtime.json.invalid"),
        "the log names the file and where it went: {log}"
    );
    assert!(d.state_dir().join("runtime.json.invalid").exists());
    Ok(())
}

#[test]
fn huge_durations_and_row_counts_are_bounded() -> Result<()> {
    let mut d = DaemonLab::new("bounds", BIN, LIMITED)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // 2^40 s: saturates to "as long as the clock goes", never wraps or panics.
    d.ok(&["block", "add", "198.18.1.3", "--for", "1099511627776s"])?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.3", 10)?,
        0,
        "the long block holds"
    );
    d.ok(&["bans", "add", "198.18.1.2", "--for", "1099511627776s"])?;
    assert_eq!(
        burst_through(&d, &sink, "198.18.1.2", 10)?,
        0,
        "the long ban holds"
    );
    assert_eq!(
        d.json(&["status"])?["mode"],
        "enforce",
        "the daemon is alive"
    );
    let out = d.cli(&["top", "-n", "100000000"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use 1 to 10000"), "{err}");
    Ok(())
}

#[test]
fn a_start_on_a_missing_interface_leaves_nothing_behind() -> Result<()> {
    let d = DaemonLab::new("typo", BIN, LIMITED)?;
    let out = d
        .edge
        .command(BIN)
        .args([
            "--socket",
            &d.socket().display().to_string(),
            "run",
            "--iface",
            "typo0",
        ])
        .args(["--config", &d.config_path().display().to_string()])
        .args(["--pin-dir", &d.pin_dir().display().to_string()])
        .args(["--state-dir", &d.state_dir().display().to_string()])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo0") && err.contains("no such network interface"),
        "{err}"
    );
    // On the daemon before this change: every map pinned (the kernel memory
    // of the default capacity held) before the attach failed.
    assert!(
        !d.pin_dir().join("maps").exists(),
        "a failed start left pinned maps behind"
    );
    Ok(())
}

/// Item 6: a kernel error that still reaches the user carries its errno and a
/// hint (on the daemon before this change: "`bpf_map_update_elem` failed").
#[test]
fn a_full_list_says_its_errno_and_what_to_raise() -> Result<()> {
    let cfg = LIMITED.replace("sources = 4096", "sources = 4096\nlists = 16");
    assert_ne!(cfg, LIMITED);
    let mut d = DaemonLab::new("full", BIN, &cfg)?;
    d.start()?;
    let mut refusal = None;
    for i in 0..20 {
        let out = d.cli(&["block", "add", &format!("198.51.100.{i}")])?;
        if !out.status.success() {
            refusal = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = refusal.expect("a 16-entry list refused a 17th entry");
    assert!(
        err.contains("os error 28") && err.contains("raise [capacity] lists"),
        "{err}"
    );
    // The refused entry is not kept: 16 listed, and the daemon serves on.
    let blocks = d.json(&["block", "list"])?;
    assert_eq!(blocks.as_array().map(Vec::len), Some(16), "{blocks}");
    Ok(())
}
