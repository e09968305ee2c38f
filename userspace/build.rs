//! Builds the XDP program (`ebpf/floodgate-ebpf`) for `bpfel-unknown-none` and
//! leaves it in `OUT_DIR/floodgate.bpf.o` for `include_bytes_aligned!`.
//!
//! The real object is built only when asked (`FLOODGATE_BUILD_EBPF=1`, which every
//! `cargo xtask` command sets); otherwise an empty stub is written so `cargo check`
//! and `cargo clippy` work on machines without bpf-linker, and the loader then
//! reports that the binary carries no program.
//!
//! The recipe itself is in `ebpf_build.rs`, shared with the tests that build
//! an earlier commit's program.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

const BUILD_ENV: &str = "FLOODGATE_BUILD_EBPF";
/// The program, and its benchmark companions (`cargo xtask bench`).
const BINS: [(&str, &str); 2] = [
    ("floodgate-xdp", "floodgate.bpf.o"),
    ("floodgate-bench", "bench.bpf.o"),
];

fn main() -> Result<()> {
    println!("cargo:rerun-if-env-changed={BUILD_ENV}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let asked = env::var(BUILD_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if !asked {
        println!(
            "cargo:warning=floodgate: {BUILD_ENV} is not set, embedding an empty eBPF stub; \
             use `cargo xtask build` for a binary that can filter"
        );
        for (_, object) in BINS {
            fs::write(out_dir.join(object), []).context("writing the eBPF stub")?;
        }
        return Ok(());
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let workspace = manifest_dir.parent().context("userspace/ has no parent")?;
    println!("cargo:rerun-if-changed=ebpf_build.rs");
    for dir in ["ebpf/floodgate-ebpf", "ebpf/floodgate-common"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    build(workspace, &out_dir)
}

include!("ebpf_build.rs");

fn build(workspace: &Path, out_dir: &Path) -> Result<()> {
    let target_dir = out_dir.join("ebpf-target");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let mut cmd = ebpf_build_command(workspace, &target_dir, &arch, &["--bins"]);
    let status = cmd.status().with_context(|| {
        format!("running {cmd:?}; install the toolchain with `cargo xtask setup`")
    })?;
    if !status.success() {
        bail!("building the eBPF program failed ({status}); run `cargo xtask setup` and retry");
    }
    for (bin, object) in BINS {
        let built = target_dir.join(EBPF_TARGET).join("release").join(bin);
        let object = out_dir.join(object);
        fs::copy(&built, &object)
            .with_context(|| format!("copying {} to {}", built.display(), object.display()))?;
    }
    Ok(())
}
