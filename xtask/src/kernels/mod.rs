//! `cargo xtask kernels`: the kernel matrix. Debian's own kernel packages (the
//! unsigned images, downloaded from the package registry and extracted, never
//! installed on the host) boot under QEMU with an initramfs holding busybox,
//! `veth.ko` of the same package, the static floodgate binary and
//! `tests/kernels/init.sh`; the script loads floodgate, attaches it native and
//! generic, limits real UDP across a veth pair, restarts and adopts, reloads and
//! detaches. A kernel passes only on the script's explicit result line.
//!
//! Which kernels: what `linux-image-amd64` depends on today (Debian 12's stock
//! 6.1), the oldest 6.1 still in the archive, the newest 6.12 Debian 12 ships,
//! and the stock arm64 6.1 with the arm64 static binary. They are picked from
//! the archive at run time, so the matrix follows Debian's updates.

mod apt;
mod image;
mod qemu;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{build, util};
use apt::Apt;
use qemu::Machine;

struct Arch {
    deb: &'static str,
    triple: &'static str,
    machine: Machine,
}

const AMD64: Arch = Arch {
    deb: "amd64",
    triple: "x86_64-unknown-linux-musl",
    machine: Machine {
        qemu: "qemu-system-x86_64",
        args: &[],
        console: "ttyS0",
        kvm_flags: &["vmx", "svm"],
    },
};

const ARM64: Arch = Arch {
    deb: "arm64",
    triple: "aarch64-unknown-linux-musl",
    machine: Machine {
        qemu: "qemu-system-aarch64",
        args: &["-M", "virt", "-cpu", "max"],
        console: "ttyAMA0",
        // Emulated on any x86_64 host.
        kvm_flags: &[],
    },
};

/// How a matrix entry picks its kernel package.
enum Pick {
    /// What `linux-image-ARCH` depends on.
    Stock,
    /// The lowest ABI of a series still in the archive.
    Oldest(&'static str),
    /// The highest of a series.
    Newest(&'static str),
}

struct Entry {
    label: &'static str,
    arch: &'static Arch,
    pick: Pick,
}

const MATRIX: &[Entry] = &[
    Entry {
        label: "Debian 12 stock 6.1 (amd64)",
        arch: &AMD64,
        pick: Pick::Stock,
    },
    Entry {
        label: "oldest 6.1 in the archive (amd64)",
        arch: &AMD64,
        pick: Pick::Oldest("6.1"),
    },
    Entry {
        label: "Debian 12's newest 6.12 (amd64)",
        arch: &AMD64,
        pick: Pick::Newest("6.12"),
    },
    Entry {
        label: "Debian 12 stock 6.1 (arm64)",
        arch: &ARM64,
        pick: Pick::Stock,
    },
];

/// One kernel's result.
struct Row {
    label: &'static str,
    package: String,
    result: Result<qemu::Outcome>,
}

/// Runs the entries whose label or package contains `only` (all without it);
/// returns (passed, failed).
pub fn run(only: Option<&str>) -> Result<(u64, u64)> {
    let state = util::target_dir().join("kernels");
    let mut apts: HashMap<&str, Apt> = HashMap::new();
    let mut chosen = Vec::new();
    for entry in MATRIX {
        if !apts.contains_key(entry.arch.deb) {
            let apt = Apt::new(entry.arch.deb, &state)?;
            apt.update()?;
            apts.insert(entry.arch.deb, apt);
        }
        let apt = &apts[entry.arch.deb];
        let package = pick(apt, entry)?;
        if only.is_none_or(|o| entry.label.contains(o) || package.contains(o)) {
            chosen.push((entry, package));
        }
    }
    if chosen.is_empty() {
        bail!("no kernel of the matrix matches {only:?}");
    }
    println!("kernel matrix:");
    for (entry, package) in &chosen {
        println!("  {:<36} {package}", entry.label);
    }

    // One static build per architecture: floodgate and the UDP probe.
    let mut bins: HashMap<&str, (PathBuf, PathBuf)> = HashMap::new();
    let mut rows = Vec::new();
    for (entry, package) in chosen {
        let arch = entry.arch;
        if !bins.contains_key(arch.deb) {
            let target = build::Target::parse(arch.triple)?;
            let fg = build::artifact(target, true)?;
            let probe = build::static_bin(target, true, "floodgate-tests", "vmprobe")?;
            bins.insert(arch.deb, (fg, probe));
        }
        let (fg, probe) = &bins[arch.deb];
        let result = boot_one(&apts[arch.deb], arch, &package, fg, probe, &state);
        if let Ok(outcome) = &result {
            for line in &outcome.lines {
                println!("[{}] {line}", entry.label);
            }
        }
        rows.push(Row {
            label: entry.label,
            package,
            result,
        });
    }
    Ok(summary(&rows))
}

fn boot_one(
    apt: &Apt,
    arch: &Arch,
    package: &str,
    floodgate: &std::path::Path,
    vmprobe: &std::path::Path,
    state: &std::path::Path,
) -> Result<qemu::Outcome> {
    let debs = state.join("debs");
    let kernel_deb = apt.download(package, &debs)?;
    let busybox_deb = apt.download("busybox-static", &debs)?;
    let dir = state.join(package);
    let payload = image::Payload {
        busybox_deb: &busybox_deb,
        floodgate,
        vmprobe,
    };
    let boot = image::prepare(&kernel_deb, &payload, &dir)?;
    println!("booting {package} under {} …", arch.machine.qemu);
    let serial = dir.join("serial.log");
    let first = qemu::boot(&arch.machine, &boot, &serial)?;
    if first.passed || !first.panicked_before_script {
        return Ok(first);
    }
    // Only a boot that never ran the script is tried again, once: whatever
    // floodgate did, it did after the script started, and fails as it is.
    for line in &first.lines {
        println!("{line}");
    }
    println!(
        "{package}: the guest kernel panicked before the test script started (above); booting it once more"
    );
    let mut second = qemu::boot(&arch.machine, &boot, &serial)?;
    second.lines.insert(
        0,
        "fgvm: note: the first boot panicked before the script started; this is the second"
            .to_owned(),
    );
    Ok(second)
}

/// The unsigned image package of `entry`.
fn pick(apt: &Apt, entry: &Entry) -> Result<String> {
    let arch = entry.arch.deb;
    let suffix = format!("-{arch}-unsigned");
    match entry.pick {
        Pick::Stock => Ok(format!("{}-unsigned", apt.stock_kernel()?)),
        Pick::Oldest(series) | Pick::Newest(series) => {
            let prefix = format!("linux-image-{series}.");
            let mut found: Vec<(Vec<u64>, String)> = apt
                .names(&prefix)?
                .into_iter()
                .filter_map(|name| {
                    let version = name.strip_prefix("linux-image-")?.strip_suffix(&suffix)?;
                    // Flavours (cloud, rt) have letters before the arch; the
                    // plain image's version is digits, dots, dashes and "+debNN".
                    let plain = version
                        .trim_end_matches(|c: char| c.is_ascii_digit())
                        .trim_end_matches("+deb")
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
                    plain.then(|| (version_key(version), name.clone()))
                })
                .collect();
            found.sort();
            let one = if matches!(entry.pick, Pick::Oldest(_)) {
                found.first()
            } else {
                found.last()
            };
            one.map(|(_, n)| n.clone())
                .with_context(|| format!("the archive has no linux-image-{series}.*{suffix}"))
        }
    }
}

/// "6.12.117+deb12" → [6, 12, 117, 12]: numeric order of a kernel ABI name.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn summary(rows: &[Row]) -> (u64, u64) {
    println!("\nkernel matrix results:");
    let (mut passed, mut failed) = (0, 0);
    for row in rows {
        let verdict = match &row.result {
            Ok(o) if o.passed => {
                passed += 1;
                format!("PASS in {} s ({})", secs(o.took), o.accel)
            }
            Ok(o) => {
                failed += 1;
                let why = o
                    .lines
                    .iter()
                    .find(|l| l.starts_with("fgvm: FAIL"))
                    .cloned()
                    .unwrap_or_else(|| "no result line".to_owned());
                format!("FAIL in {} s ({}): {why}", secs(o.took), o.accel)
            }
            Err(e) => {
                failed += 1;
                format!("FAIL: {e:#}")
            }
        };
        println!("  {:<36} {:<40} {verdict}", row.label, row.package);
    }
    (passed, failed)
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

#[cfg(test)]
mod tests {
    use super::version_key;

    #[test]
    fn kernel_versions_sort_numerically() {
        assert!(version_key("6.1.0-9") < version_key("6.1.0-47"));
        assert!(version_key("6.12.9+deb12") < version_key("6.12.117+deb12"));
    }
}
