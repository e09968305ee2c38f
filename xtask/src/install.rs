//! `cargo xtask install` / `uninstall`: the release binary, a systemd unit, the
//! default config (never overwritten), shell completions and a man page.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util;

const UNIT: &str = include_str!("../../contrib/floodgate.service");

/// Where everything goes, below `root` (a staging directory, or `/`).
pub struct Layout {
    pub bin: PathBuf,
    pub unit: PathBuf,
    pub config: PathBuf,
    pub man: PathBuf,
    pub bash: PathBuf,
    pub zsh: PathBuf,
    pub fish: PathBuf,
    bindir: PathBuf,
}

fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

impl Layout {
    pub fn new(prefix: &Path, root: &Path) -> Layout {
        let p = |rel: &str| under(root, &prefix.join(rel));
        Layout {
            bin: p("bin/floodgate"),
            unit: under(root, Path::new("/etc/systemd/system/floodgate.service")),
            config: under(root, Path::new("/etc/floodgate/floodgate.toml")),
            man: p("share/man/man1/floodgate.1"),
            bash: p("share/bash-completion/completions/floodgate"),
            zsh: p("share/zsh/site-functions/_floodgate"),
            fish: p("share/fish/vendor_completions.d/floodgate.fish"),
            bindir: prefix.join("bin"),
        }
    }

    /// Installed files, config last (it is kept by `uninstall`).
    fn files(&self) -> [&Path; 6] {
        [
            &self.bin, &self.unit, &self.man, &self.bash, &self.zsh, &self.fish,
        ]
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32, dry_run: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    println!(
        "install: {} ({} bytes, {mode:o})",
        path.display(),
        bytes.len()
    );
    if dry_run {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Write beside and rename: a running binary is replaced, not overwritten.
    let tmp = path.with_extension("xtask-new");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))
}

fn output_of(bin: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

pub fn install(prefix: &Path, root: &Path, dry_run: bool) -> Result<()> {
    let built = util::release_dir().join("floodgate");
    if dry_run {
        println!(
            "install: would build {} (cargo build --release -p floodgate)",
            built.display()
        );
    } else {
        util::run(util::cargo().args(["build", "--release", "--package", "floodgate"]))?;
    }
    let l = Layout::new(prefix, root);
    if dry_run && !built.exists() {
        for f in l.files() {
            println!("install: {}", f.display());
        }
        println!("install: {} (unless it exists)", l.config.display());
        return Ok(());
    }
    write(
        &l.bin,
        &std::fs::read(&built).context("reading the built binary")?,
        0o755,
        dry_run,
    )?;
    let unit = UNIT.replace("@BINDIR@", &l.bindir.display().to_string());
    write(&l.unit, unit.as_bytes(), 0o644, dry_run)?;
    write(&l.man, &output_of(&built, &["man"])?, 0o644, dry_run)?;
    write(
        &l.bash,
        &output_of(&built, &["completions", "bash"])?,
        0o644,
        dry_run,
    )?;
    write(
        &l.zsh,
        &output_of(&built, &["completions", "zsh"])?,
        0o644,
        dry_run,
    )?;
    write(
        &l.fish,
        &output_of(&built, &["completions", "fish"])?,
        0o644,
        dry_run,
    )?;
    if l.config.exists() {
        println!("install: keeping the existing {}", l.config.display());
    } else {
        write(
            &l.config,
            &output_of(&built, &["config", "default"])?,
            0o644,
            dry_run,
        )?;
    }
    if root == Path::new("/") && !dry_run {
        println!(
            "install: done; set the interfaces in /etc/default/floodgate (FLOODGATE_ARGS=\"--iface eth1\"), then `systemctl daemon-reload && systemctl enable --now floodgate`"
        );
    }
    Ok(())
}

pub fn uninstall(prefix: &Path, root: &Path, dry_run: bool) -> Result<()> {
    let l = Layout::new(prefix, root);
    if root == Path::new("/") && l.bin.exists() {
        println!("uninstall: detaching floodgate first");
        if !dry_run {
            // Not running or nothing attached is fine: the pins are removed either way.
            let _ = Command::new(&l.bin).arg("detach").status();
        }
    }
    for f in l.files() {
        if f.exists() {
            println!("uninstall: removing {}", f.display());
            if !dry_run {
                std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
            }
        }
    }
    if l.config.exists() {
        println!("uninstall: keeping {} (your policy)", l.config.display());
    }
    Ok(())
}
