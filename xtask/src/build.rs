//! `cargo xtask build`: the workspace for development, or a static release
//! artifact (musl: one file that runs on any distribution, any libc).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// Release artifacts are built for this target unless `--target` says otherwise.
pub const DEFAULT_TARGET: &str = "x86_64-unknown-linux-musl";

/// Targets `--target` accepts: (triple, linker for cross builds, `file` arch, Debian arch).
const TARGETS: &[Target] = &[
    Target {
        triple: "x86_64-unknown-linux-musl",
        linker: None,
        file_arch: "x86-64",
        deb_arch: "amd64",
    },
    Target {
        triple: "aarch64-unknown-linux-musl",
        // Debian's cross gcc drives the link; Rust's self-contained musl crt and
        // libc are used, so no aarch64 musl sysroot is needed.
        linker: Some("aarch64-linux-gnu-gcc"),
        file_arch: "ARM aarch64",
        deb_arch: "arm64",
    },
];

#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub triple: &'static str,
    linker: Option<&'static str>,
    file_arch: &'static str,
    pub deb_arch: &'static str,
}

impl Target {
    pub fn parse(triple: &str) -> Result<Target> {
        TARGETS
            .iter()
            .find(|t| t.triple == triple)
            .copied()
            .with_context(|| {
                let known: Vec<&str> = TARGETS.iter().map(|t| t.triple).collect();
                format!(
                    "unsupported target {triple}; use one of: {}",
                    known.join(", ")
                )
            })
    }

    /// The static target of the machine xtask runs on.
    pub fn host() -> Result<Target> {
        Target::parse(&format!("{}-unknown-linux-musl", std::env::consts::ARCH))
    }

    /// Every target `setup` prepares.
    pub fn all() -> impl Iterator<Item = &'static str> {
        TARGETS.iter().map(|t| t.triple)
    }
}

pub fn run(release: bool, target: Option<&str>) -> Result<()> {
    if !release && target.is_none() {
        util::run(util::cargo().args(["build", "--workspace"]))?;
        println!("built: target/debug/floodgate");
        return Ok(());
    }
    let target = Target::parse(target.unwrap_or(DEFAULT_TARGET))?;
    let built = artifact(target, release)?;
    println!("built: {} (static, {})", built.display(), target.triple);
    Ok(())
}

/// Builds the `floodgate` binary for `target` and checks it is static and for
/// the right architecture; returns its path.
pub fn artifact(target: Target, release: bool) -> Result<PathBuf> {
    static_bin(target, release, "floodgate", "floodgate")
}

/// Builds binary `bin` of `package` for `target` (static, checked); returns its path.
pub fn static_bin(target: Target, release: bool, package: &str, bin: &str) -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.args(["build", "--package", package, "--bin", bin])
        .args(["--target", target.triple]);
    if release {
        cmd.arg("--release");
    }
    if let Some(linker) = target.linker {
        if util::output(Command::new("sh").args(["-c", &format!("command -v {linker}")])).is_none()
        {
            bail!("{linker} is missing; `cargo xtask setup` installs it (gcc-aarch64-linux-gnu)");
        }
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.triple.replace('-', "_").to_uppercase()
        );
        cmd.env(var, linker);
    }
    util::run(&mut cmd)?;
    let built = util::target_dir()
        .join(target.triple)
        .join(if release { "release" } else { "debug" })
        .join(bin);
    check_static(&built, target)?;
    Ok(built)
}

/// `file` must call it statically linked (or static-pie) and name the target's arch.
fn check_static(bin: &Path, target: Target) -> Result<()> {
    let out = util::output(Command::new("file").arg("--brief").arg(bin)).with_context(|| {
        format!(
            "`file {}` failed; install `file` (cargo xtask setup)",
            bin.display()
        )
    })?;
    println!("file: {}", out.trim());
    if !out.contains(target.file_arch) {
        bail!(
            "{} is not a {} binary: {}",
            bin.display(),
            target.file_arch,
            out.trim()
        );
    }
    if !(out.contains("statically linked") || out.contains("static-pie linked")) {
        bail!(
            "{} is not statically linked: {}; build it with `cargo xtask build --release --target {}`",
            bin.display(),
            out.trim(),
            target.triple
        );
    }
    Ok(())
}

/// A binary of the same sources that runs here, to print the man page,
/// completions and default config: `built` itself, or for a cross build the
/// host's static build.
pub fn runnable(target: Target, built: &Path) -> Result<PathBuf> {
    let host = Target::host()?;
    if host.triple == target.triple {
        Ok(built.to_owned())
    } else {
        artifact(host, true)
    }
}
