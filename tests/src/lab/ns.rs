//! A namespace of the lab and the veth links between them.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    os::unix::process::CommandExt as _,
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

use super::{dad_flag, ip_batch, sh};

/// A network namespace of the lab.
#[derive(Clone, Debug)]
pub struct Ns {
    pub name: String,
}

/// A veth pair between two namespaces: `a_if` lives in the first namespace
/// given to [`Lab::link`], `b_if` in the second.
#[derive(Clone, Debug)]
pub struct Link {
    pub a_if: String,
    pub b_if: String,
    pub a_mac: String,
    pub b_mac: String,
}

impl Ns {
    /// Runs a command inside the namespace (`ip netns exec NAME ...`), returning
    /// stdout; the error carries the command line and stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// Runs `ip -n NAME ARGS...` (cheaper than `run("ip", ...)`).
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// A `Command` that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a fresh thread that entered this namespace, so its sockets and
    /// netlink calls belong here. A panic in `f` comes back as an error.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let handle = std::thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || -> Result<T> {
                let fd = File::open(&path).with_context(|| format!("opening {path}"))?;
                setns(&fd, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {path}"))?;
                drop(fd);
                Ok(f())
            })
            .context("starting a thread")?;
        match handle.join() {
            Ok(result) => result,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".to_owned());
                Err(anyhow!("a thread inside {} panicked: {msg}", self.name))
            }
        }
    }

    /// Adds an address (CIDR) to `ifname`; IPv6 addresses get `nodad`.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// Adds many addresses with one `ip -batch` (IPv6 ones with `nodad`).
    pub fn add_addrs(&self, ifname: &str, cidrs: &[String]) -> Result<()> {
        if cidrs.is_empty() {
            return Ok(());
        }
        let batch: String = cidrs
            .iter()
            .map(|c| format!("addr add {c} dev {ifname}{}\n", dad_flag(c)))
            .collect();
        ip_batch(&["-n", &self.name], &batch)
    }

    /// Adds a route `DEST dev IFNAME` (IPv4 or IPv6).
    pub fn add_route(&self, dest: &str, ifname: &str) -> Result<()> {
        self.ip(&["route", "add", dest, "dev", ifname]).map(drop)
    }

    /// The MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> Result<String> {
        let out = self.ip(&["-j", "link", "show", "dev", ifname])?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("parsing `ip -j link show dev {ifname}`"))?;
        v.get(0)
            .and_then(|l| l.get("address"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no MAC address for {ifname} in {}", self.name))
    }

    /// Whether an XDP program is attached to `ifname` right now.
    pub fn has_xdp(&self, ifname: &str) -> Result<bool> {
        let out = self.ip(&["-j", "link", "show", "dev", ifname])?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("parsing `ip -j link show dev {ifname}`"))?;
        Ok(v.get(0).and_then(|l| l.get("xdp")).is_some())
    }

    /// Whether `ifname` is operationally up with no tentative (or failed) address.
    pub(super) fn ready(&self, ifname: &str) -> Result<bool> {
        let out = self.ip(&["-j", "addr", "show", "dev", ifname])?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("parsing `ip -j addr show dev {ifname}`"))?;
        let Some(link) = v.get(0) else {
            bail!("{ifname} is missing from {}", self.name);
        };
        let up = link.get("operstate").and_then(serde_json::Value::as_str) == Some("UP");
        let settled = link
            .get("addr_info")
            .and_then(serde_json::Value::as_array)
            .is_none_or(|addrs| {
                addrs
                    .iter()
                    .all(|a| a.get("tentative").is_none() && a.get("dadfailed").is_none())
            });
        Ok(up && settled)
    }
}

/// Makes `cmd` enter the namespace `ns_name` in the child, as `ip netns exec`
/// does: the network namespace, plus a private mount namespace with a fresh
/// /sys so /sys/class/net shows the namespace's interfaces.
pub(super) fn enter_in_child(cmd: &mut Command, ns_name: &str) -> Result<()> {
    let path = CString::new(format!("/run/netns/{ns_name}")).context("namespace path")?;
    let source = CString::new(ns_name).context("namespace name")?;
    let hook = move || -> std::io::Result<()> {
        // Only async-signal-safe system calls below: this runs between fork and exec.
        // SAFETY: `path` is a valid NUL-terminated string owned by the closure.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is the namespace file opened just above.
        let entered = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
        let err = std::io::Error::last_os_error();
        // SAFETY: `fd` is ours and closed exactly once.
        unsafe { libc::close(fd) };
        if entered != 0 {
            return Err(err);
        }
        // SAFETY: plain system call without pointers.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Keep the host's later mounts visible, but send none of ours back.
        // SAFETY: the strings are NUL-terminated literals; null fstype/data are allowed.
        let slave = unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if slave != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Like ip netns exec: no sysfs mounted there is fine.
        // SAFETY: NUL-terminated literal.
        unsafe { libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH) };
        for flags in [0, libc::MS_RDONLY] {
            // SAFETY: NUL-terminated strings owned by the closure or literals.
            let sysfs = unsafe {
                libc::mount(
                    source.as_ptr(),
                    c"/sys".as_ptr(),
                    c"sysfs".as_ptr(),
                    flags,
                    std::ptr::null(),
                )
            };
            if sysfs == 0 {
                return Ok(());
            }
        }
        Err(std::io::Error::last_os_error())
    };
    // SAFETY: the hook makes only async-signal-safe system calls (open, setns,
    // close, unshare, mount, umount2) on data prepared before the fork, and
    // allocates nothing.
    unsafe { cmd.pre_exec(hook) };
    Ok(())
}
