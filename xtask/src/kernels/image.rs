//! What one boot needs: the kernel image and `veth.ko` out of Debian's kernel
//! package (extracted, never installed), and an initramfs of busybox, the
//! static floodgate binary, the UDP probe, the policy and the test script.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// The test script (`/init`) and its policy, from tests/kernels/.
const INIT: &str = include_str!("../../../tests/kernels/init.sh");
const POLICY: &str = include_str!("../../../tests/kernels/floodgate.toml");

/// A kernel ready to boot.
pub struct Boot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Files that go into the initramfs next to the script.
pub struct Payload<'a> {
    pub busybox_deb: &'a Path,
    pub floodgate: &'a Path,
    pub vmprobe: &'a Path,
}

/// Extracts `deb`'s kernel and veth module into `dir` and packs the initramfs.
pub fn prepare(deb: &Path, payload: &Payload<'_>, dir: &Path) -> Result<Boot> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let unpacked = dir.join("deb");
    extract(
        deb,
        &unpacked,
        &[
            "./boot/vmlinuz-*",
            "./lib/modules/*/kernel/drivers/net/veth.ko*",
        ],
    )?;
    let kernel = only_file(&unpacked.join("boot"), "vmlinuz-")?;
    let veth = find_module(&unpacked.join("lib/modules"))?;

    let root = dir.join("root");
    for sub in ["bin", "lib", "etc", "proc", "sys", "dev", "run", "tmp"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    let bb = dir.join("busybox");
    extract(payload.busybox_deb, &bb, &["./bin/busybox"])?;
    copy(&bb.join("bin/busybox"), &root.join("bin/busybox"))?;
    copy(payload.floodgate, &root.join("bin/floodgate"))?;
    copy(payload.vmprobe, &root.join("bin/vmprobe"))?;
    install_module(&veth, &root.join("lib/veth.ko"))?;
    std::fs::write(root.join("init"), INIT)?;
    std::fs::write(root.join("etc/floodgate.toml"), POLICY)?;
    for exe in ["init", "bin/busybox", "bin/floodgate", "bin/vmprobe"] {
        chmod_x(&root.join(exe))?;
    }
    let initrd = dir.join("initrd.cpio");
    // newc is the format the kernel unpacks; an uncompressed archive needs no
    // decompressor built into the kernel.
    let pack = format!(
        "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
        root.display(),
        initrd.display()
    );
    util::run(Command::new("sh").args(["-c", &pack])).context("packing the initramfs (cpio)")?;
    Ok(Boot { kernel, initrd })
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x` of the members matching `patterns`.
fn extract(deb: &Path, dir: &Path, patterns: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards",
        deb.display(),
        dir.display()
    );
    for p in patterns {
        script.push_str(&format!(" '{p}'"));
    }
    util::run(Command::new("sh").args(["-c", &script]))
        .with_context(|| format!("extracting {patterns:?} from {}", deb.display()))
}

/// The one file in `dir` whose name starts with `prefix`.
fn only_file(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
        {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one {prefix}* in {}, found {found:?}",
            dir.display()
        ),
    }
}

/// `veth.ko` (or `.ko.xz`) below `lib/modules/RELEASE/`.
fn find_module(modules: &Path) -> Result<PathBuf> {
    let release = only_file(modules, "")?;
    let net = release.join("kernel/drivers/net");
    only_file(&net, "veth.ko")
}

/// Copies the module, decompressing `.ko.xz` (busybox insmod takes a plain .ko).
fn install_module(module: &Path, to: &Path) -> Result<()> {
    if module.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .args(["-d", "-c"])
            .arg(module)
            .output()
            .context("running xz")?;
        if !out.status.success() {
            bail!("xz -d {} failed", module.display());
        }
        std::fs::write(to, out.stdout)?;
        Ok(())
    } else {
        copy(module, to)
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn chmod_x(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}
