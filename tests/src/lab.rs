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
    ffi::{CString, OsStr},
    fs::File,
    io::Write as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Prefix shared by every lab namespace name; the creating PID follows it.
const NAME_PREFIX: &str = "fg";

/// Prefix of [`BpfFs`] mount points in the temp dir; the creating PID follows it.
const BPFFS_PREFIX: &str = "floodgate-bpffs-";

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

/// The topology the integration tests and the demo share: namespaces `edge`,
/// `crawl` and `user`; edge ⟷ crawler on 198.18.1.0/24 (the crawler has .2 and
/// .3), edge ⟷ user on 198.18.2.0/24 (user .2). floodgate goes on the edge ends.
pub struct EdgeNet {
    pub edge: Ns,
    pub crawler: Ns,
    pub user: Ns,
    pub to_crawler: Link,
    pub to_user: Link,
}

impl EdgeNet {
    pub fn build(lab: &mut Lab) -> Result<EdgeNet> {
        let edge = lab.add_ns("edge")?;
        let crawler = lab.add_ns("crawl")?;
        let user = lab.add_ns("user")?;
        let to_crawler = lab.link(&edge, &["198.18.1.1/24"], &crawler, &["198.18.1.2/24"])?;
        crawler.add_addr(&to_crawler.b_if, "198.18.1.3/24")?;
        edge.ip(&[
            "neigh",
            "replace",
            "198.18.1.3",
            "lladdr",
            &to_crawler.b_mac,
            "nud",
            "permanent",
            "dev",
            &to_crawler.a_if,
        ])?;
        let to_user = lab.link(&edge, &["198.18.2.1/24"], &user, &["198.18.2.2/24"])?;
        Ok(EdgeNet {
            edge,
            crawler,
            user,
            to_crawler,
            to_user,
        })
    }

    /// The edge-side interfaces floodgate attaches to.
    pub fn edge_ifaces(&self) -> [String; 2] {
        [self.to_crawler.a_if.clone(), self.to_user.a_if.clone()]
    }
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

    /// Whether `ifname` is operationally up with no tentative (or failed) address.
    fn ready(&self, ifname: &str) -> Result<bool> {
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
fn enter_in_child(cmd: &mut Command, ns_name: &str) -> Result<()> {
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
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .with_context(|| {
                format!("pid {pid} is not a running process of lab {}", self.prefix)
            })?;
        let mut child = self.children.remove(i);
        terminate(&mut child, signal, STOP_GRACE)
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
            if let Err(e) = sh("ip", &["netns", "del", &name]) {
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

/// Unmounts and removes `$TMPDIR/floodgate-bpffs-{pid}-*` of dead processes.
fn sweep_stale_bpffs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(BPFFS_PREFIX)) else {
            continue;
        };
        // "{pid}-{random}", and a directory: anything else is not ours.
        let Some(pid) = rest
            .split_once('-')
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let _ = umount2(&dir, MntFlags::MNT_DETACH);
        // remove_dir, not remove_dir_all: never delete through a mount.
        let _ = std::fs::remove_dir(&dir);
    }
}

/// A private bpffs mounted on a fresh temporary directory, for per-test pins.
/// Dropping it unmounts it (MNT_DETACH) and removes the directory.
pub struct BpfFs {
    dir: PathBuf,
}

impl BpfFs {
    pub fn new() -> Result<BpfFs> {
        sweep_stale_bpffs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{BPFFS_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("creating a directory for a bpffs")?
            .keep();
        if let Err(e) = mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e).with_context(|| format!("mounting a bpffs on {}", dir.display()));
        }
        Ok(BpfFs { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        match umount2(&self.dir, MntFlags::MNT_DETACH) {
            // Only an empty directory once unmounted; never delete through a mount.
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir(&self.dir) {
                    eprintln!("removing {}: {e}", self.dir.display());
                }
            }
            Err(e) => eprintln!("unmounting {}: {e}", self.dir.display()),
        }
    }
}

/// Traffic from plain sockets inside a namespace.
pub mod traffic {
    use std::{
        collections::HashMap,
        net::{IpAddr, SocketAddr, UdpSocket},
        os::fd::AsRawFd as _,
        sync::{
            Arc, Mutex,
            atomic::{AtomicBool, Ordering},
        },
        thread::JoinHandle,
        time::{Duration, Instant},
    };

    use anyhow::{Context as _, Result, bail};

    use super::Ns;

    /// Sends `count` UDP datagrams of `payload` bytes from `src` (bound, port 0)
    /// to `dst` inside `ns`, as fast as possible or paced at `pps`. Returns how
    /// many the socket accepted.
    pub fn udp_send(
        ns: &Ns,
        src: IpAddr,
        dst: SocketAddr,
        count: u64,
        payload: usize,
        pps: Option<u64>,
    ) -> Result<u64> {
        if pps == Some(0) {
            bail!("udp_send: pps must be positive");
        }
        ns.enter(move || -> Result<u64> {
            let sock = UdpSocket::bind(SocketAddr::new(src, 0))
                .with_context(|| format!("binding {src}"))?;
            let buf = vec![0x5au8; payload];
            let start = Instant::now();
            let mut sent = 0;
            for i in 0..count {
                if let Some(pps) = pps {
                    let due = start + Duration::from_secs_f64(i as f64 / pps as f64);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
                if sock.send_to(&buf, dst).is_ok() {
                    sent += 1;
                }
            }
            Ok(sent)
        })?
    }

    /// Counts datagrams per source address in a background thread until dropped.
    pub struct UdpSink {
        counts: Arc<Mutex<HashMap<IpAddr, u64>>>,
        last: Arc<Mutex<Instant>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl UdpSink {
        /// Binds `addr` inside `ns` (with an 8 MiB receive buffer, so bursts are
        /// not lost to the socket) and starts counting.
        pub fn bind(ns: &Ns, addr: SocketAddr) -> Result<UdpSink> {
            let sock = ns
                .enter(move || UdpSocket::bind(addr))?
                .with_context(|| format!("binding {addr} in {}", ns.name))?;
            let size: libc::c_int = 8 << 20;
            // SAFETY: a valid socket fd, and a pointer to a c_int with its size.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&raw const size).cast(),
                    libc::socklen_t::try_from(size_of::<libc::c_int>()).context("socklen_t")?,
                )
            };
            if rc != 0 {
                eprintln!(
                    "UdpSink: SO_RCVBUFFORCE: {}",
                    std::io::Error::last_os_error()
                );
            }
            sock.set_read_timeout(Some(Duration::from_millis(50)))?;
            let counts = Arc::new(Mutex::new(HashMap::new()));
            let last = Arc::new(Mutex::new(Instant::now()));
            let stop = Arc::new(AtomicBool::new(false));
            let (c, l, s) = (counts.clone(), last.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("sink-{addr}"))
                .spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while !s.load(Ordering::Relaxed) {
                        if let Ok((_, from)) = sock.recv_from(&mut buf) {
                            // A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d.
                            let from = from.ip().to_canonical();
                            if let Ok(mut m) = c.lock() {
                                *m.entry(from).or_insert(0) += 1;
                            }
                            if let Ok(mut t) = l.lock() {
                                *t = Instant::now();
                            }
                        }
                    }
                })
                .context("starting the sink thread")?;
            Ok(UdpSink {
                counts,
                last,
                stop,
                thread: Some(thread),
            })
        }

        /// A snapshot of the datagrams received per source address.
        pub fn counts(&self) -> HashMap<IpAddr, u64> {
            self.counts.lock().map(|m| m.clone()).unwrap_or_default()
        }

        /// Datagrams received from `src`.
        pub fn from(&self, src: IpAddr) -> u64 {
            self.counts
                .lock()
                .map(|m| m.get(&src.to_canonical()).copied().unwrap_or(0))
                .unwrap_or(0)
        }

        /// Datagrams received in all.
        pub fn total(&self) -> u64 {
            self.counts.lock().map(|m| m.values().sum()).unwrap_or(0)
        }

        /// Waits until no datagram arrived for `quiet`, or `max` passed.
        pub fn wait_quiet(&self, quiet: Duration, max: Duration) {
            let start = Instant::now();
            while start.elapsed() < max {
                let last = self
                    .last
                    .lock()
                    .map(|t| *t)
                    .unwrap_or_else(|_| Instant::now());
                if last.elapsed() >= quiet {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    impl Drop for UdpSink {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Pings `dst` `count` times from `ns`; returns the number of replies.
    pub fn ping(ns: &Ns, dst: IpAddr, count: u32) -> Result<u32> {
        ping_from(ns, None, dst, count)
    }

    /// Pings `dst` `count` times from `ns` (`ping -c COUNT -i 0.01 -W 1 [-I SRC]`),
    /// optionally from source address `src`; returns the number of replies.
    /// Fails when ping printed no summary (e.g. no route to `dst`).
    pub fn ping_from(ns: &Ns, src: Option<IpAddr>, dst: IpAddr, count: u32) -> Result<u32> {
        let count_s = count.to_string();
        let dst_s = dst.to_string();
        let family = if dst.is_ipv4() { "-4" } else { "-6" };
        let mut args = vec![family, "-n", "-q", "-c", &count_s, "-i", "0.01", "-W", "1"];
        let src_s = src.map(|s| s.to_string());
        if let Some(src) = &src_s {
            args.extend(["-I", src.as_str()]);
        }
        args.push(&dst_s);
        let out = ns
            .command("ping")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .context("starting ping")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "5 packets transmitted, 5 received, ..."
        text.lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| {
                format!(
                    "`ping {}` in {} gave no summary ({}): {}{}",
                    args.join(" "),
                    ns.name,
                    out.status,
                    text.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })
    }
}
