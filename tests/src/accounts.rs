//! Real unprivileged users and groups for a test (useradd, groupadd), removed
//! on drop, and commands run as them (setpriv with their groups).

use std::{
    path::Path,
    process::{Command, Output},
};

use anyhow::{Context as _, Result, bail};

/// Users and groups this test created, all named `fg<pid><tag>…` (at most 32
/// characters, as useradd allows); userdel and groupdel on drop.
pub struct Accounts {
    stem: String,
    users: Vec<String>,
    groups: Vec<String>,
}

/// useradd and friends lock /etc/passwd and fail, not wait, when another holds it.
static SHADOW_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let _lock = SHADOW_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Accounts {
    pub fn new(tag: &str) -> Accounts {
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_lowercase)
            .take(6)
            .collect();
        Accounts {
            stem: format!("fg{}{tag}", std::process::id()),
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Creates group `<stem>g<name>`; returns its name.
    pub fn group(&mut self, name: &str) -> Result<String> {
        let group = format!("{}g{name}", self.stem);
        run("groupadd", &["--system", &group])?;
        self.groups.push(group.clone());
        Ok(group)
    }

    /// Creates system user `<stem>u<name>` (its own group, no home, no shell)
    /// with `groups` as its supplementary groups; returns its name.
    pub fn user(&mut self, name: &str, groups: &[&str]) -> Result<String> {
        let user = format!("{}u{name}", self.stem);
        let mut args = vec![
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ];
        let list = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &list]);
        }
        args.push(&user);
        run("useradd", &args)?;
        self.users.push(user.clone());
        Ok(user)
    }

    /// Runs `bin args` as `user` with the user's groups (and no others).
    pub fn run_as(user: &str, bin: &Path, args: &[&str]) -> Result<Output> {
        Command::new("setpriv")
            .args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--init-groups",
                "--",
            ])
            .arg(bin)
            .args(args)
            .output()
            .context("running setpriv")
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = run("userdel", &[user]);
        }
        for group in &self.groups {
            let _ = run("groupdel", &[group]);
        }
    }
}
