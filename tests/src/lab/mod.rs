//! A private lab: network namespaces joined by veth pairs, with lab-only
//! addresses (IPv4 198.18.0.0/15, IPv6 fd00:f100::/32). Dropping a [`Lab`]
//! kills what it spawned and deletes its namespaces (their veths go with them),
//! on success, failure and panic alike. Nothing here touches the host's own
//! interfaces: veth pairs are created directly inside their namespaces.
//!
//! Names: a lab is `fg{pid}x{n}{tag}` (the creating PID, a per-process counter
//! and a short tag), its namespaces `{lab}-{role}`. The PID lets
//! [`sweep_stale`] delete what a killed test run left behind.

use std::{
    ffi::OsStr,
    fs::File,
    io::Write as _,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

mod bpffs;
pub mod crowdsec;
mod edge;
mod ns;
pub mod redis;
pub mod traffic;

pub use bpffs::BpfFs;
pub use edge::EdgeNet;
use ns::enter_in_child;
pub use ns::{Link, Ns};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Prefix shared by every lab namespace name; the creating PID follows it.
const NAME_PREFIX: &str = "fg";

/// How long a spawned process gets after SIGTERM when the lab drops.
const DROP_GRACE: Duration = Duration::from_secs(2);

/// How long [`Lab::stop`] waits after its signal before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Fails loudly (never skips) when the lab cannot run here: not root, or no `ip`.
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("lab tests need root: run `cargo xtask test` as root");
    }
    sh("ip", &["-V"]).context(
        "lab tests need iproute2's `ip` on PATH (and root: run `cargo xtask test` as root)",
    )?;
    Ok(())
}

/// Runs a command, returning stdout; the error names the command and its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{program} {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip [global_args] -batch -` with `batch` on stdin.
fn ip_batch(global_args: &[&str], batch: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(global_args)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting `ip -batch -`")?;
    let written = child
        .stdin
        .take()
        .context("ip -batch has no stdin")?
        .write_all(batch.as_bytes());
    // stdin is closed here (the handle was moved out and dropped), so ip ends.
    let out = child.wait_with_output().context("waiting for ip -batch")?;
    if !out.status.success() {
        bail!(
            "`ip {} -batch -` failed ({}): {}\nbatch:\n{batch}",
            global_args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.context("writing to ip -batch")
}

/// The address part of a CIDR string ("198.18.1.1/24" → "198.18.1.1").
fn addr_of(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// `nodad` for IPv6 addresses, so they are usable at once (no tentative state).
fn dad_flag(cidr: &str) -> &'static str {
    if cidr.contains(':') { " nodad" } else { "" }
}

/// The lab: namespaces, links and processes, all removed on drop.
pub struct Lab {
    prefix: String,
    serial: u32,
    namespaces: Vec<Ns>,
    links: u32,
    children: Vec<Child>,
}

impl Lab {
    /// `tag` (≤ 6 alphanumeric characters are kept) makes names readable; names
    /// are unique per process and call. Also sweeps namespaces left by dead runs.
    pub fn new(tag: &str) -> Result<Lab> {
        require_root()?;
        sweep_stale();
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        // No leading digits, so "{serial}{tag}" cannot read as another serial.
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .skip_while(char::is_ascii_digit)
            .take(6)
            .collect();
        Ok(Lab {
            prefix: format!("{NAME_PREFIX}{}x{serial}{tag}", std::process::id()),
            serial,
            namespaces: Vec::new(),
            links: 0,
            children: Vec::new(),
        })
    }

    /// The name prefix of this lab's namespaces (for diagnostics).
    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `<lab>-<role>` with `lo` up, IPv6 DAD off (so addresses
    /// are usable at once) and IPv6 forwarding off.
    pub fn add_ns(&mut self, role: &str) -> Result<Ns> {
        let name = format!("{}-{role}", self.prefix);
        // Tracked before creation: if `ip netns add` half-fails, drop still tries.
        self.namespaces.push(Ns { name: name.clone() });
        sh("ip", &["netns", "add", &name])?;
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.enter(|| -> Result<()> {
            let conf = Path::new("/proc/sys/net/ipv6/conf");
            if !conf.exists() {
                return Ok(()); // IPv6 disabled: nothing to tune
            }
            for (key, value) in [
                ("all/accept_dad", "0"),
                ("default/accept_dad", "0"),
                ("all/forwarding", "0"),
            ] {
                let path = conf.join(key);
                std::fs::write(&path, value)
                    .with_context(|| format!("writing {value} to {}", path.display()))?;
            }
            Ok(())
        })??;
        Ok(ns)
    }

    /// Joins `a` and `b` with a veth pair created directly in both namespaces,
    /// assigns the addresses (CIDR, v4 and/or v6, `nodad` for v6), brings both
    /// ends up with GRO on (if ethtool is there), adds permanent neighbour
    /// entries for every peer address (no ARP/ND needed), and waits until both
    /// ends are up with no tentative address.
    pub fn link(&mut self, a: &Ns, a_addrs: &[&str], b: &Ns, b_addrs: &[&str]) -> Result<Link> {
        self.links += 1;
        let n = self.links;
        // Interface names are per namespace, so short fixed names are unique.
        let (a_if, b_if) = (format!("v{n}a"), format!("v{n}b"));
        // Locally administered MACs, distinct per lab and link within a process.
        let mac = |side: u8| {
            format!(
                "02:66:67:{:02x}:{:02x}:{side:02x}",
                self.serial & 0xff,
                n & 0xff
            )
        };
        let (a_mac, b_mac) = (mac(0x0a), mac(0x0b));
        sh(
            "ip",
            &[
                "link", "add", &a_if, "address", &a_mac, "netns", &a.name, "type", "veth", "peer",
                "name", &b_if, "address", &b_mac, "netns", &b.name,
            ],
        )?;
        for (ns, ifname, addrs, peer_addrs, peer_mac) in [
            (a, &a_if, a_addrs, b_addrs, &b_mac),
            (b, &b_if, b_addrs, a_addrs, &a_mac),
        ] {
            let mut batch = format!("link set {ifname} up\n");
            for cidr in addrs {
                batch += &format!("addr add {cidr} dev {ifname}{}\n", dad_flag(cidr));
            }
            for cidr in peer_addrs {
                let addr = addr_of(cidr);
                batch +=
                    &format!("neigh replace {addr} lladdr {peer_mac} nud permanent dev {ifname}\n");
            }
            ip_batch(&["-n", &ns.name], &batch)
                .with_context(|| format!("setting up {ifname} in {}", ns.name))?;
            // GRO lets redirected frames through when no XDP program is attached.
            let _ = ns.run("ethtool", &["-K", ifname, "gro", "on"]);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (ns, ifname) in [(a, &a_if), (b, &b_if)] {
            while !ns.ready(ifname)? {
                if Instant::now() > deadline {
                    bail!(
                        "{ifname} in {} is not up with settled addresses after 5 s",
                        ns.name
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Link {
            a_if,
            b_if,
            a_mac,
            b_mac,
        })
    }

    /// Spawns a long-running process inside `ns`, entering it like `ip netns
    /// exec` would (network namespace, private mount namespace with the
    /// namespace's /sys), with `cmd`'s own stdio, env and cwd. The lab tracks it:
    /// it is killed (SIGTERM, SIGKILL after 2 s) and reaped when the lab drops,
    /// unless [`Lab::stop`]ped earlier. Adds a pre-exec hook to `cmd`.
    pub fn spawn(&mut self, ns: &Ns, cmd: &mut Command) -> Result<u32> {
        enter_in_child(cmd, &ns.name)?;
        let child = cmd.spawn().with_context(|| {
            format!(
                "spawning {:?} in {}",
                cmd.get_program().to_string_lossy(),
                ns.name
            )
        })?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Spawns `program args` in `ns` with stdout and stderr appended to `log`.
    pub fn spawn_logged(
        &mut self,
        ns: &Ns,
        program: impl AsRef<OsStr>,
        args: &[&str],
        log: &Path,
    ) -> Result<u32> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        self.spawn(ns, &mut cmd)
    }

    /// Sends `signal` to a process spawned by this lab and reaps it (SIGKILL if
    /// it is still running 5 s later). Fails for PIDs the lab did not spawn.
    pub fn stop(&mut self, pid: u32, signal: Signal) -> Result<ExitStatus> {
        let mut child = self.take_child(pid)?;
        terminate(&mut child, signal, STOP_GRACE)
    }

    /// How a process spawned by this lab ended, if it has (it stays tracked).
    pub fn exited(&mut self, pid: u32) -> Result<Option<ExitStatus>> {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .with_context(|| format!("pid {pid} is not a process of lab {}", self.prefix))?;
        Ok(child.try_wait()?)
    }

    /// Removes a spawned process from the lab's list (the caller reaps it).
    fn take_child(&mut self, pid: u32) -> Result<Child> {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .with_context(|| {
                format!("pid {pid} is not a running process of lab {}", self.prefix)
            })?;
        Ok(self.children.remove(i))
    }

    /// Waits up to `max` for a process spawned by this lab to exit on its own
    /// and reaps it; after `max` it is stopped with SIGTERM (then SIGKILL).
    /// Fails for PIDs the lab did not spawn.
    pub fn wait(&mut self, pid: u32, max: Duration) -> Result<ExitStatus> {
        let mut child = self.take_child(pid)?;
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        terminate(&mut child, Signal::SIGTERM, STOP_GRACE)
    }
}

/// Signals a child (never reaped yet, so its PID cannot have been reused),
/// waits up to `grace`, then SIGKILLs and reaps it.
fn terminate(child: &mut Child, signal: Signal, grace: Duration) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    kill(pid, signal).with_context(|| format!("sending {signal} to {pid}"))?;
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill().with_context(|| format!("killing {pid}"))?;
            return Ok(child.wait()?);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The namespace names `ip netns list` shows.
fn netns_list() -> Result<Vec<String>> {
    Ok(sh("ip", &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.children.drain(..) {
            let pid = child.id();
            if let Err(e) = terminate(&mut child, Signal::SIGTERM, DROP_GRACE) {
                eprintln!("lab {}: stopping pid {pid}: {e:#}", self.prefix);
                // Last resort: make sure it is dead and reaped.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let existing = netns_list()
            .inspect_err(|e| eprintln!("lab {}: {e:#}", self.prefix))
            .ok();
        // Ours: the tracked ones, plus any with our prefix a half-failed step left.
        let mine = format!("{}-", self.prefix);
        let mut doomed: Vec<String> = Vec::new();
        for ns in self.namespaces.drain(..).rev() {
            if !doomed.contains(&ns.name) {
                doomed.push(ns.name);
            }
        }
        if let Some(existing) = existing {
            doomed.retain(|n| existing.contains(n));
            for name in existing {
                if name.starts_with(&mine) && !doomed.contains(&name) {
                    doomed.push(name);
                }
            }
        }
        for name in doomed {
            // A namespace can stay busy for a moment after its last process
            // exits (the kernel releases it asynchronously): retry briefly.
            let mut last = None;
            for _ in 0..25 {
                match sh("ip", &["netns", "del", &name]) {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        last = Some(e);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
            if let Some(e) = last {
                eprintln!("lab {}: {e:#}", self.prefix);
            }
        }
    }
}

/// Parses the creating PID out of a lab namespace name (`fg{pid}x{serial}...`).
fn lab_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, rest) = rest.split_once('x')?;
    let serial_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || serial_len == 0 {
        return None;
    }
    // A lab namespace is "{prefix}-{role}".
    if !rest.contains('-') {
        return None;
    }
    pid.parse().ok()
}

/// Deletes lab namespaces (`fg{pid}x{serial}{tag}-{role}`) whose creating
/// process no longer exists (a run killed with SIGKILL cannot clean up after
/// itself), and unmounts leftover [`BpfFs`] mounts of dead processes. Errors
/// are printed, never returned.
pub fn sweep_stale() {
    let names = match netns_list() {
        Ok(names) => names,
        Err(e) => {
            eprintln!("lab sweep: {e:#}");
            return;
        }
    };
    for name in names {
        let Some(pid) = lab_pid(&name) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Err(e) = sh("ip", &["netns", "del", &name]) {
            eprintln!("lab sweep: {e:#}");
        }
    }
}
