//! The XDP program of the previous layout version, built from git history, so
//! the upgrade tests start from pins that program really made.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use anyhow::{Context as _, Result, bail, ensure};

/// The last commit whose program has the previous layout version, 6
/// (`floodgate_common::previous::PREVIOUS_LAYOUT_VERSION`).
pub const PREVIOUS_LAYOUT_COMMIT: &str = "db09cdbe58d43f88f0f2757a8439a9c85f52bf1a";

/// One build at a time within a test binary.
static BUILD: Mutex<()> = Mutex::new(());

include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../userspace/ebpf_build.rs"
));

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// The previous layout's program object (ELF): [`object_at`]
/// [`PREVIOUS_LAYOUT_COMMIT`].
pub fn object() -> Result<Vec<u8>> {
    object_at(PREVIOUS_LAYOUT_COMMIT)
}

/// The program object (ELF) of `commit`, built once per checkout into
/// `target/previous-layout/` (about a minute): the tree at `commit` by `git
/// archive`, then its eBPF crate the way its `userspace/build.rs` built it.
pub fn object_at(commit: &str) -> Result<Vec<u8>> {
    let _one = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = workspace();
    let out = root
        .join("target/previous-layout")
        .join(commit.get(..12).unwrap_or(commit));
    let object = out.join("floodgate.bpf.o");
    if !object.exists() {
        build(&root, commit, &out, &object)?;
    }
    std::fs::read(&object).with_context(|| format!("reading {}", object.display()))
}

fn build(root: &Path, commit: &str, out: &Path, object: &Path) -> Result<()> {
    let src = out.join("src");
    if src.exists() {
        std::fs::remove_dir_all(&src)?;
    }
    std::fs::create_dir_all(&src)?;
    // A shallow clone lacks the commit: fetch just it from the origin.
    let have = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let _ = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["fetch", "--depth=1", "origin", commit])
            .status();
    }
    let archive = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", commit])
        .output()
        .context("running git archive")?;
    ensure!(
        archive.status.success(),
        "git archive {commit} failed ({}); building an earlier program needs the \
         repository's history (a full clone, not a shallow one): {}",
        archive.status,
        String::from_utf8_lossy(&archive.stderr)
    );
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running tar")?;
    std::io::Write::write_all(tar.stdin.as_mut().context("tar's stdin")?, &archive.stdout)?;
    ensure!(tar.wait()?.success(), "unpacking the previous tree failed");

    // The recipe this tree builds its own program with (the flags have not
    // changed since these commits).
    let target_dir = out.join("target");
    let mut cmd = ebpf_build_command(
        &src,
        &target_dir,
        std::env::consts::ARCH,
        &["--bin", "floodgate-xdp"],
    );
    let status = cmd.status().context("running the nightly eBPF build")?;
    if !status.success() {
        bail!("building the previous layout's program failed ({status}); run `cargo xtask setup`");
    }
    let built = target_dir.join(EBPF_TARGET).join("release/floodgate-xdp");
    let partial = object.with_extension("partial");
    std::fs::copy(&built, &partial)?;
    std::fs::rename(&partial, object)?;
    std::fs::remove_dir_all(&src)?;
    Ok(())
}
