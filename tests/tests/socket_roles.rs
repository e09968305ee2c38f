//! Who the control socket admits, tried with real unprivileged users: root and
//! `--admin-group` members may do everything, `--socket-group` members only
//! read, everyone else is refused (by the file's mode and by the daemon's
//! SO_PEERCRED check).

use std::{os::unix::fs::MetadataExt as _, path::Path, process::Output};

use anyhow::Result;
use floodgate_tests::{
    accounts::Accounts,
    daemon::{DaemonLab, LIMITED},
};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

fn as_user(d: &DaemonLab, user: &str, args: &[&str]) -> Result<Output> {
    let socket = d.socket();
    let mut full = vec!["--socket", socket.to_str().unwrap_or_default()];
    full.extend_from_slice(args);
    Accounts::run_as(user, Path::new(BIN), &full)
}

fn mode_of(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.mode() & 0o777)
}

/// `args` run as `user` fail, and say permission was denied.
fn refused(d: &DaemonLab, user: &str, args: &[&str]) -> Result<String> {
    let out = as_user(d, user, args)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "`{}` as {user} was let through: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(stderr)
}

fn allowed(d: &DaemonLab, user: &str, args: &[&str]) -> Result<String> {
    let out = as_user(d, user, args)?;
    assert!(
        out.status.success(),
        "`{}` as {user}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const READS: &[&[&str]] = &[
    &["status", "--json"],
    &["stats", "--json"],
    &["top", "--json"],
    &["allow", "list"],
    &["block", "list"],
    &["bans", "list"],
];

const CHANGES: &[&[&str]] = &[
    &["allow", "add", "0.0.0.0/0"],
    &["block", "add", "198.18.9.0/24"],
    &["bans", "add", "198.18.1.2", "--for", "1h"],
    &["bans", "clear", "--all"],
    &["mode", "monitor"],
    &["reload"],
    &["detach"],
];

#[test]
fn socket_group_members_read_and_only_admins_change() -> Result<()> {
    let mut accounts = Accounts::new("roles");
    let readers = accounts.group("read")?;
    let admins = accounts.group("admin")?;
    let reader = accounts.user("r", &[&readers])?;
    let admin = accounts.user("a", &[&admins])?;
    let stranger = accounts.user("x", &[])?;

    let mut d = DaemonLab::new("roles", BIN, LIMITED)?;
    d.extra_args = vec![
        "--socket-group".into(),
        readers.clone(),
        "--admin-group".into(),
        admins.clone(),
    ];
    d.start()?;
    // Two groups cannot share one file group: the file is open and the
    // daemon's peer check is the gate.
    assert_eq!(mode_of(&d.socket())?, 0o666);

    for args in READS {
        allowed(&d, &reader, args)?;
    }
    for args in CHANGES {
        let err = refused(&d, &reader, args)?;
        assert!(
            err.contains("permission denied") && err.contains(&admins),
            "`{}`: {err}",
            args.join(" ")
        );
    }
    for args in READS {
        let err = refused(&d, &stranger, args)?;
        assert!(err.contains("permission denied"), "{err}");
    }
    // Nothing a refused caller asked for happened.
    let status = d.json(&["status"])?;
    assert_eq!(status["mode"], "enforce", "{status}");
    assert!(!d.ok(&["block", "list"])?.contains("198.18.9.0/24"));
    assert!(!d.ok(&["allow", "list"])?.contains("0.0.0.0/0"));
    assert!(!d.ok(&["bans", "list"])?.contains("198.18.1.2"));
    assert!(
        d.json(&["status"])?["interfaces"]
            .as_array()
            .is_some_and(|i| i.len() == 2),
        "{status}"
    );

    // An admin-group member changes policy like root.
    allowed(&d, &admin, &["block", "add", "198.18.9.0/24"])?;
    assert!(d.ok(&["block", "list"])?.contains("198.18.9.0/24"));
    allowed(&d, &admin, &["block", "remove", "198.18.9.0/24"])?;
    Ok(())
}

#[test]
fn the_socket_file_admits_only_its_group() -> Result<()> {
    let mut accounts = Accounts::new("file");
    let readers = accounts.group("read")?;
    let reader = accounts.user("r", &[&readers])?;
    let stranger = accounts.user("x", &[])?;

    let mut d = DaemonLab::new("sockfile", BIN, LIMITED)?;
    d.extra_args = vec!["--socket-group".into(), readers.clone()];
    d.start()?;
    let meta = std::fs::metadata(d.socket())?;
    assert_eq!(meta.mode() & 0o777, 0o660);
    let gid = nix::unistd::Group::from_name(&readers)?.map(|g| g.gid.as_raw());
    assert_eq!(Some(meta.gid()), gid);

    allowed(&d, &reader, &["status"])?;
    let err = refused(&d, &reader, &["detach"])?;
    assert!(
        err.contains("permission denied") && err.contains("--admin-group"),
        "{err}"
    );
    refused(&d, &stranger, &["status"])?;
    assert_eq!(
        d.json(&["status"])?["interfaces"].as_array().map(Vec::len),
        Some(2)
    );
    Ok(())
}

#[test]
fn without_groups_only_root_gets_in() -> Result<()> {
    let mut accounts = Accounts::new("root");
    let someone = accounts.user("x", &[])?;
    let mut d = DaemonLab::new("rootonly", BIN, LIMITED)?;
    d.start()?;
    assert_eq!(mode_of(&d.socket())?, 0o600);
    refused(&d, &someone, &["status"])?;
    d.ok(&["status"])?;
    Ok(())
}

#[test]
fn a_missing_group_is_refused_before_anything_loads() -> Result<()> {
    let mut d = DaemonLab::new("nogroup", BIN, LIMITED)?;
    d.extra_args = vec!["--admin-group".into(), "fg-no-such-group".into()];
    let err = d.start().expect_err("started with a missing group");
    let text = format!("{err:#}");
    assert!(
        text.contains("fg-no-such-group") && text.contains("--admin-group"),
        "{text}"
    );
    assert!(!d.daemon.pin_dir().join("maps").exists(), "pins were left");
    Ok(())
}
