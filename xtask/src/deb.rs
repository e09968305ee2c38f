//! `cargo xtask deb`: a Debian package of the static binary, staged by
//! [`install::stage`] (the same tree as `install --root`) and built with
//! `dpkg-deb --build --root-owner-group`.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    build,
    install::{self, Layout},
    util,
};

/// Maintainer scripts (POSIX sh), installed as DEBIAN/<name>.
pub const SCRIPTS: [(&str, &str); 3] = [
    ("postinst", include_str!("../../contrib/debian/postinst")),
    ("prerm", include_str!("../../contrib/debian/prerm")),
    ("postrm", include_str!("../../contrib/debian/postrm")),
];

const MAINTAINER: &str = "floodgate maintainers <floodgate@example.invalid>";

/// The package version: the workspace version (xtask shares it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn run(target: &str) -> Result<()> {
    let target = build::Target::parse(target)?;
    let built = build::artifact(target, true)?;
    let runnable = build::runnable(target, &built)?;
    let deb = package(
        &built,
        &runnable,
        target.deb_arch,
        &util::target_dir().join("debian"),
    )?;
    println!("built: {}", deb.display());
    Ok(())
}

/// Stages `binary` as a package for `arch` in `out/floodgate_<version>_<arch>/`
/// and builds `out/floodgate_<version>_<arch>.deb`; returns the .deb's path.
/// `runnable` is `binary` or, for a cross build, a build of it for this host.
pub fn package(binary: &Path, runnable: &Path, arch: &str, out: &Path) -> Result<PathBuf> {
    let name = format!("floodgate_{VERSION}_{arch}");
    let root = out.join(&name);
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let layout = Layout::package(&root);
    install::stage(&layout, binary, runnable, false)?;
    strip_debug(&layout.bin)?;
    control_dir(&root, &layout, arch)?;
    let deb = out.join(format!("{name}.deb"));
    util::run(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&deb),
    )
    .context("dpkg-deb failed; it is in the `dpkg` package")?;
    Ok(deb)
}

/// Drops the DWARF sections (most of the file) as Debian's dh_strip does; the
/// symbol table stays, so backtraces still name functions. llvm-strip handles
/// every architecture (setup installs LLVM 22).
fn strip_debug(bin: &Path) -> Result<()> {
    let strip = Path::new(LLVM_STRIP);
    if !strip.exists() {
        bail!("{LLVM_STRIP} is missing; `cargo xtask setup` installs LLVM 22");
    }
    util::run(Command::new(strip).arg("--strip-debug").arg(bin))
}

const LLVM_STRIP: &str = "/usr/lib/llvm-22/bin/llvm-strip";

/// DEBIAN/: control, conffiles, md5sums and the maintainer scripts.
fn control_dir(root: &Path, layout: &Layout, arch: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let debian = root.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    let rel = |p: &Path| -> Result<String> {
        let r = p
            .strip_prefix(root)
            .with_context(|| format!("{} is outside the package root", p.display()))?;
        Ok(r.display().to_string())
    };

    let mut conffiles = String::new();
    for f in layout.config_files() {
        writeln!(conffiles, "/{}", rel(f)?)?;
    }

    // md5sums lists every file outside DEBIAN/ but the conffiles (dpkg keeps
    // their sums itself), as dh_md5sums does.
    let mut files = Vec::new();
    collect(root, &debian, &mut files)?;
    files.sort();
    let mut md5sums = String::new();
    let mut installed_kib = 0;
    for f in &files {
        installed_kib += std::fs::metadata(f)?.len().div_ceil(1024);
        if layout.config_files().contains(&f.as_path()) {
            continue;
        }
        let out = util::output(Command::new("md5sum").arg(f))
            .with_context(|| format!("md5sum {} failed (coreutils)", f.display()))?;
        let sum = out.split_whitespace().next().context("md5sum output")?;
        writeln!(md5sums, "{sum}  {}", rel(f)?)?;
    }

    let control = format!(
        "Package: floodgate\n\
         Version: {VERSION}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://example.invalid/floodgate\n\
         Description: XDP rate limiter for edge hosts\n \
         floodgate drops abusive traffic (floods, crawlers, SYN storms) in the\n \
         network driver with an eBPF XDP program: per-source and per-prefix\n \
         packet, byte and SYN rate limits, quotas, temporary bans, allow and\n \
         block lists, Prometheus metrics. One static binary with the XDP\n \
         program embedded; filtering survives daemon restarts and upgrades.\n"
    );
    // A static binary: no shared library dependencies.
    for (name, text, mode) in [
        ("control", control.as_str(), 0o644),
        ("conffiles", conffiles.as_str(), 0o644),
        ("md5sums", md5sums.as_str(), 0o644),
    ]
    .into_iter()
    .chain(SCRIPTS.iter().map(|(n, t)| (*n, *t, 0o755)))
    {
        let path = debian.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn collect(dir: &Path, skip: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path == skip {
            continue;
        }
        if path.is_dir() {
            collect(&path, skip, files)?;
        } else if path.is_file() {
            files.push(path);
        } else {
            bail!("{}: not a file or directory", path.display());
        }
    }
    Ok(())
}
