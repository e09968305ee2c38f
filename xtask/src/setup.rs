//! `cargo xtask setup`: idempotent; quick when everything is present.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// Debian packages and why they are needed.
const PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "bpf-linker links the XDP program with LLVM 22 (rustc's LLVM)",
    ),
    ("libpolly-22-dev", "bpf-linker's LLVM 22 build"),
    ("libzstd-dev", "bpf-linker's LLVM 22 build"),
    ("zlib1g-dev", "bpf-linker's LLVM 22 build"),
    (
        "iproute2",
        "the test lab: network namespaces and veth pairs",
    ),
    ("iputils-ping", "the test lab: reachability checks"),
    ("ethtool", "the test lab: GRO on veth"),
    ("bpftool", "inspecting programs and maps"),
    ("nftables", "benchmark peer: nft meters"),
    ("iptables", "benchmark peer: hashlimit"),
    ("xdp-tools", "benchmark peer: xdp-filter"),
    ("nginx-light", "crawler lab: the web server"),
    ("wrk", "crawler lab: the flood crawler"),
    ("hping3", "crawler lab: the SYN flood"),
    ("curl", "crawler lab: normal users"),
    ("tmux", "terminal UI tests"),
    (
        "linux-perf",
        "benchmark: where a path's time goes (perf cpu-clock samples)",
    ),
    (
        "musl-tools",
        "static builds: musl-gcc for any C code in a musl build",
    ),
    (
        "gcc-aarch64-linux-gnu",
        "arm64 static builds: the linker for aarch64-unknown-linux-musl",
    ),
    (
        "libc6-dev-arm64-cross",
        "arm64 static builds: C headers for ring's few C files (rustls' crypto)",
    ),
    (
        "file",
        "static builds: checking the artifact is static and for its arch",
    ),
    (
        "qemu-system-x86",
        "kernel matrix: boots Debian's x86_64 kernels",
    ),
    (
        "qemu-system-arm",
        "kernel matrix: boots Debian's arm64 kernel",
    ),
    ("cpio", "kernel matrix: packs the initramfs"),
    (
        "xz-utils",
        "kernel matrix: unpacks compressed kernel modules",
    ),
    (
        "systemd",
        "install tests: systemd-analyze verify on the unit",
    ),
    ("crowdsec", "fleet tests: the CrowdSec Local API"),
    ("redis-server", "fleet tests: fleet-wide quotas on Redis"),
];

/// Read by crowdsec's postinst: a file with content there (even a comment)
/// means "do not register to the Central API", so the install works offline.
const CROWDSEC_CAPI_CREDENTIALS: &str = "/etc/crowdsec/online_api_credentials.yaml";

pub fn run() -> Result<()> {
    check_root()?;
    install_packages()?;
    rust_src()?;
    musl_targets()?;
    bpf_linker()?;
    kernel()?;
    Ok(())
}

fn check_root() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("");
    if uid != "0" {
        bail!("setup: run as root (XDP, BPF maps and network namespaces need it)");
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn install_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!("setup: ok: Debian packages");
        return Ok(());
    }
    for (p, why) in PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
        println!("setup: installing {p} ({why})");
    }
    if missing.contains(&"crowdsec") {
        crowdsec_offline()?;
    }
    util::run(Command::new("apt-get").args(["update", "-q"]))?;
    util::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
    .context("setup: apt-get could not install the packages above; check the apt sources")
}

/// Before crowdsec is installed (or configured): without this file its
/// postinst registers to the Central API over the network and fails offline.
/// Never overwrites an existing file (the admin's choice, or real credentials).
fn crowdsec_offline() -> Result<()> {
    let path = Path::new(CROWDSEC_CAPI_CREDENTIALS);
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.len() == 0 {
            println!(
                "setup: note: {} is empty, so crowdsec's postinst will register to the \
                 Central API (needs the network); put a comment line in it to stay offline",
                path.display()
            );
        }
        return Ok(());
    }
    let dir = path.parent().context("the credentials path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("setup: creating {}", dir.display()))?;
    println!(
        "setup: writing {} (offline: no Central API)",
        path.display()
    );
    // create_new: if something created it meanwhile, keep theirs.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut file) => {
            use std::io::Write as _;
            file.write_all(b"# offline: no central API (written by cargo xtask setup)\n")
                .with_context(|| format!("setup: writing {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("setup: creating {}", path.display())),
    }
}

fn rust_src() -> Result<()> {
    let Some(list) = util::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ])) else {
        bail!(
            "setup: the `nightly` Rust toolchain is missing; the XDP program is built with it (-Z build-std)"
        );
    };
    if list.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: ok: rust-src for nightly");
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    util::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// The standard libraries of the static release targets (`cargo xtask build --target`).
fn musl_targets() -> Result<()> {
    let installed = util::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("setup: `rustup target list --installed` failed; is rustup installed?")?;
    let missing: Vec<&str> = crate::build::Target::all()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        println!("setup: ok: Rust targets for static builds");
        return Ok(());
    }
    util::run(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )
    .context("setup: adding the musl Rust targets failed; see the rustup output above")
}

/// bpf-linker must link against LLVM 22, the LLVM of the nightly rustc.
fn bpf_linker() -> Result<()> {
    let path = util::output(Command::new("sh").args(["-c", "command -v bpf-linker"]));
    let llvm22 = path.as_deref().map(str::trim).is_some_and(|p| {
        util::output(Command::new("ldd").arg(p)).is_some_and(|l| l.contains("libLLVM.so.22"))
    });
    if llvm22 {
        println!("setup: ok: bpf-linker (LLVM 22)");
        return Ok(());
    }
    println!("setup: building bpf-linker against LLVM 22 (about 2 minutes)");
    let llvm_bin = Path::new("/usr/lib/llvm-22/bin");
    if !llvm_bin.exists() {
        bail!(
            "setup: {} is missing although llvm-22-dev is installed",
            llvm_bin.display()
        );
    }
    let path_env = format!(
        "{}:{}",
        llvm_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("cargo");
    cmd.env("PATH", path_env).args([
        "install",
        "bpf-linker",
        "--locked",
        "--no-default-features",
        "--features",
        "llvm-22",
    ]);
    if path.is_some() {
        cmd.arg("--force");
    }
    util::run(&mut cmd).context("setup: installing bpf-linker failed; see the cargo output above")
}

fn kernel() -> Result<()> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "setup: the kernel has no BTF (/sys/kernel/btf/vmlinux); floodgate needs CONFIG_DEBUG_INFO_BTF=y"
        );
    }
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let bpffs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        matches!(
            (f.next(), f.next(), f.next()),
            (Some(_), Some("/sys/fs/bpf"), Some("bpf"))
        )
    });
    if bpffs {
        println!("setup: ok: kernel (BTF, bpffs at /sys/fs/bpf)");
    } else {
        println!("setup: mounting bpffs at /sys/fs/bpf");
        util::run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    Ok(())
}
