//! `cargo xtask install` / `uninstall`: the static release binary, a systemd
//! unit, the default config and `/etc/default/floodgate` (neither ever
//! overwritten), shell completions and a man page.
//!
//! [`stage`] writes that tree below any root; `cargo xtask deb` stages the
//! Debian package with it too, so the file list lives here only.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{build, util};

/// The unit; `@BINDIR@` becomes the directory of the installed binary.
pub const UNIT: &str = include_str!("../../contrib/floodgate.service");
/// `/etc/default/floodgate`: the interfaces and other `floodgate run` options.
pub const DEFAULTS: &str = include_str!("../../contrib/floodgate.default");

/// Where everything goes, below `root` (a staging directory, or `/`).
#[derive(Debug, Clone)]
pub struct Layout {
    pub bin: PathBuf,
    pub unit: PathBuf,
    pub config: PathBuf,
    pub defaults: PathBuf,
    pub man: PathBuf,
    pub bash: PathBuf,
    pub zsh: PathBuf,
    pub fish: PathBuf,
    /// The binary's directory as the running system sees it (no root).
    pub bindir: PathBuf,
    /// Debian wants man pages gzipped (`gzip -9n`).
    gzip_man: bool,
}

fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

impl Layout {
    /// A local install (`cargo xtask install`): the unit in /etc/systemd/system,
    /// everything else below `prefix`.
    pub fn new(prefix: &Path, root: &Path) -> Layout {
        let p = |rel: &str| under(root, &prefix.join(rel));
        Layout {
            bin: p("bin/floodgate"),
            unit: under(root, Path::new("/etc/systemd/system/floodgate.service")),
            config: under(root, Path::new("/etc/floodgate/floodgate.toml")),
            defaults: under(root, Path::new("/etc/default/floodgate")),
            man: p("share/man/man1/floodgate.1"),
            bash: p("share/bash-completion/completions/floodgate"),
            zsh: p("share/zsh/site-functions/_floodgate"),
            fish: p("share/fish/vendor_completions.d/floodgate.fish"),
            bindir: prefix.join("bin"),
            gzip_man: false,
        }
    }

    /// The Debian package: /usr, the unit in /lib/systemd/system, zsh's
    /// vendor-completions, a gzipped man page.
    pub fn package(root: &Path) -> Layout {
        let usr = |rel: &str| under(root, &Path::new("/usr").join(rel));
        Layout {
            unit: under(root, Path::new("/lib/systemd/system/floodgate.service")),
            man: usr("share/man/man1/floodgate.1.gz"),
            zsh: usr("share/zsh/vendor-completions/_floodgate"),
            gzip_man: true,
            ..Layout::new(Path::new("/usr"), root)
        }
    }

    /// Installed files that `uninstall` removes.
    pub fn files(&self) -> [&Path; 6] {
        [
            &self.bin, &self.unit, &self.man, &self.bash, &self.zsh, &self.fish,
        ]
    }

    /// The administrator's files: written only when missing, never removed.
    pub fn config_files(&self) -> [&Path; 2] {
        [&self.config, &self.defaults]
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

/// `gzip -9n`: reproducible (no name, no timestamp), as Debian policy asks.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip (install it: apt-get install gzip)")?;
    child.stdin.take().context("gzip stdin")?.write_all(bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed ({})", out.status);
    }
    Ok(out.stdout)
}

/// Writes the whole tree of `l` with the binary `built`: the binary, the unit
/// (`ExecStart` in `l.bindir`), man page, completions, and the config and
/// defaults files unless they exist. The texts come from running `runnable`:
/// `built` itself, or for a cross build the same sources built for this host.
pub fn stage(l: &Layout, built: &Path, runnable: &Path, dry_run: bool) -> Result<()> {
    write(
        &l.bin,
        &std::fs::read(built).with_context(|| format!("reading {}", built.display()))?,
        0o755,
        dry_run,
    )?;
    let built = runnable;
    let unit = UNIT.replace("@BINDIR@", &l.bindir.display().to_string());
    write(&l.unit, unit.as_bytes(), 0o644, dry_run)?;
    let man = output_of(built, &["man"])?;
    let man = if l.gzip_man { gzip(&man)? } else { man };
    write(&l.man, &man, 0o644, dry_run)?;
    for (path, shell) in [(&l.bash, "bash"), (&l.zsh, "zsh"), (&l.fish, "fish")] {
        write(
            path,
            &output_of(built, &["completions", shell])?,
            0o644,
            dry_run,
        )?;
    }
    if l.config.exists() {
        println!("install: keeping the existing {}", l.config.display());
    } else {
        write(
            &l.config,
            &output_of(built, &["config", "default"])?,
            0o644,
            dry_run,
        )?;
    }
    if l.defaults.exists() {
        println!("install: keeping the existing {}", l.defaults.display());
    } else {
        write(&l.defaults, DEFAULTS.as_bytes(), 0o644, dry_run)?;
    }
    Ok(())
}

pub fn install(prefix: &Path, root: &Path, target: &str, dry_run: bool) -> Result<()> {
    let target = build::Target::parse(target)?;
    let l = Layout::new(prefix, root);
    let (built, runnable) = if dry_run {
        let release = |t: build::Target| {
            util::target_dir()
                .join(t.triple)
                .join("release")
                .join("floodgate")
        };
        let (built, runnable) = (release(target), release(build::Target::host()?));
        println!(
            "install: would build {} (cargo xtask build --release --target {})",
            built.display(),
            target.triple
        );
        // Without builds to read and run, list the paths only.
        if !built.exists() || !runnable.exists() {
            for f in l.files() {
                println!("install: {}", f.display());
            }
            for f in l.config_files() {
                println!("install: {} (unless it exists)", f.display());
            }
            return Ok(());
        }
        (built, runnable)
    } else {
        let built = build::artifact(target, true)?;
        let runnable = build::runnable(target, &built)?;
        (built, runnable)
    };
    stage(&l, &built, &runnable, dry_run)?;
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
    for f in l.config_files() {
        if f.exists() {
            println!("uninstall: keeping {} (your settings)", f.display());
        }
    }
    Ok(())
}
