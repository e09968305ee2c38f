//! Boots one kernel under QEMU and reads the test script's result from the
//! serial console.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::image::Boot;

/// How one architecture boots.
pub struct Machine {
    pub qemu: &'static str,
    /// Machine and CPU arguments.
    pub args: &'static [&'static str],
    /// The serial console's device name for `console=`.
    pub console: &'static str,
    /// `/proc/cpuinfo` flags that mean this host can run it under KVM.
    pub kvm_flags: &'static [&'static str],
}

/// Guest memory: what a small edge VM has (the default capacities would not fit).
const MEMORY_MIB: &str = "1024";
/// A boot under TCG takes about 40 s on x86_64; arm64 emulation is slower.
const TIMEOUT: Duration = Duration::from_secs(600);
/// The script's last line on success.
const PASS: &str = "fgvm: RESULT PASS";

/// The outcome of one boot.
pub struct Outcome {
    pub passed: bool,
    pub took: Duration,
    pub accel: &'static str,
    /// The `fgvm:` lines of the console.
    pub lines: Vec<String>,
    /// The guest kernel panicked before the test script printed anything: a
    /// boot that never reached floodgate (seen once with Debian's 6.12.118
    /// under TCG: an int3 oops while the kernel patched its own text).
    pub panicked_before_script: bool,
}

/// KVM only where the host has hardware virtualisation for this guest
/// architecture; this machine kind's `/dev/kvm` is a PVM variant without
/// vmx/svm that hangs booting Debian's kernels, so it gets TCG.
fn accel(machine: &Machine) -> &'static str {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags") || l.starts_with("Features"))
        .any(|l| l.split_whitespace().any(|f| machine.kvm_flags.contains(&f)));
    if hw && Path::new("/dev/kvm").exists() {
        "kvm"
    } else {
        "tcg"
    }
}

/// Boots `boot` and waits for the guest to power off (or the timeout).
pub fn boot(machine: &Machine, boot: &Boot, serial: &Path) -> Result<Outcome> {
    let accel = accel(machine);
    let mut cmd = Command::new(machine.qemu);
    cmd.args(["-accel", accel, "-m", MEMORY_MIB, "-smp", "2"])
        .args(machine.args)
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&boot.kernel)
        .arg("-initrd")
        .arg(&boot.initrd)
        .args([
            "-append",
            &format!("console={} panic=-1 quiet", machine.console),
        ])
        .args(["-serial", &format!("file:{}", serial.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}; `cargo xtask setup` installs it", machine.qemu))?;
    let timed_out = loop {
        if child.try_wait()?.is_some() {
            break false;
        }
        if start.elapsed() > TIMEOUT {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let took = start.elapsed();
    let console = std::fs::read(serial).unwrap_or_default();
    let console = String::from_utf8_lossy(&console);
    let mut lines: Vec<String> = console
        .lines()
        .filter_map(|l| l.find("fgvm:").map(|i| l[i..].trim_end().to_owned()))
        .collect();
    if timed_out {
        lines.push(format!(
            "fgvm: FAIL no result within {} s",
            TIMEOUT.as_secs()
        ));
    }
    let panicked_before_script = !timed_out && lines.is_empty() && console.contains("Kernel panic");
    if lines.is_empty() {
        // Nothing of ours: show the end of what the kernel printed.
        let tail: Vec<&str> = console.lines().rev().take(30).collect();
        lines.extend(tail.into_iter().rev().map(|l| format!("console: {l}")));
    }
    let passed = !timed_out && lines.iter().any(|l| l.starts_with(PASS));
    Ok(Outcome {
        passed,
        took,
        accel,
        lines,
        panicked_before_script,
    })
}
