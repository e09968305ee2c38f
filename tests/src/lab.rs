//! A private lab: network namespaces joined by veth pairs, with lab-only
//! addresses (IPv4 198.18.0.0/15, IPv6 fd00:f100::/32). Dropping a [`Lab`]
//! kills what it spawned and deletes its namespaces (their veths go with them),
//! on success, failure and panic alike. Nothing here touches the host's own
//! interfaces.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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

/// Fails loudly (never skips) when the lab cannot run here.
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("lab tests need root: run `cargo xtask test` as root");
    }
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
        let mac = crawler.mac(&to_crawler.b_if)?;
        edge.run(
            "ip",
            &[
                "neigh",
                "replace",
                "198.18.1.3",
                "lladdr",
                &mac,
                "nud",
                "permanent",
                "dev",
                &to_crawler.a_if,
            ],
        )?;
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
        .output()
        .with_context(|| format!("starting {program}"))?;
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

/// A network namespace of the lab.
#[derive(Clone, Debug)]
pub struct Ns {
    pub name: String,
}

/// A veth pair between two namespaces.
#[derive(Clone, Debug)]
pub struct Link {
    pub a_if: String,
    pub b_if: String,
}

impl Ns {
    /// Runs a command inside the namespace.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// A `Command` that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that entered this namespace, so its sockets and
    /// netlink calls belong here.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let handle = std::thread::spawn(move || -> Result<T> {
            let fd = File::open(&path).with_context(|| format!("opening {path}"))?;
            setns(&fd, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {path}"))?;
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| anyhow!("a thread inside {} panicked", self.name))?
    }

    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.run("ip", &args).map(drop)
    }

    /// Adds many addresses with one `ip -batch`.
    pub fn add_addrs(&self, ifname: &str, cidrs: &[String]) -> Result<()> {
        let batch: String = cidrs
            .iter()
            .map(|c| {
                let nodad = if c.contains(':') { " nodad" } else { "" };
                format!("addr add {c} dev {ifname}{nodad}\n")
            })
            .collect();
        let mut child = self
            .command("ip")
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ip -batch")?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("ip -batch stdin")?
            .write_all(batch.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("ip -batch failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    pub fn add_route(&self, dest: &str, ifname: &str) -> Result<()> {
        self.run("ip", &["route", "add", dest, "dev", ifname])
            .map(drop)
    }

    /// The MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> Result<String> {
        let path = format!("/sys/class/net/{ifname}/address");
        Ok(self.run("cat", &[&path])?.trim().to_owned())
    }
}

/// The lab: namespaces, links and processes, all removed on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<Ns>,
    links: u32,
    children: Vec<Child>,
}

/// Prefix shared by every lab namespace name; the creating PID follows it.
const NAME_PREFIX: &str = "fg";

impl Lab {
    /// `tag` (≤ 6 characters) makes names readable; they are unique per process and call.
    pub fn new(tag: &str) -> Result<Lab> {
        require_root()?;
        sweep_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(6)
            .collect();
        Ok(Lab {
            prefix: format!("{NAME_PREFIX}{}x{n}{tag}", std::process::id()),
            namespaces: Vec::new(),
            links: 0,
            children: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `<lab>-<role>` with `lo` up.
    pub fn add_ns(&mut self, role: &str) -> Result<Ns> {
        let name = format!("{}-{role}", self.prefix);
        sh("ip", &["netns", "add", &name])?;
        let ns = Ns { name };
        self.namespaces.push(ns.clone());
        ns.run("ip", &["link", "set", "lo", "up"])?;
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            ns.run("sysctl", &["-qw", key])?;
        }
        Ok(ns)
    }

    /// Joins `a` and `b` with a veth pair, assigns addresses, brings both ends up
    /// with GRO on, and adds permanent neighbour entries so no ARP/ND is needed.
    pub fn link(&mut self, a: &Ns, a_addrs: &[&str], b: &Ns, b_addrs: &[&str]) -> Result<Link> {
        self.links += 1;
        // Interface names are per namespace, so short fixed names are unique.
        let (a_if, b_if) = (format!("v{}a", self.links), format!("v{}b", self.links));
        sh(
            "ip",
            &[
                "link", "add", &a_if, "netns", &a.name, "type", "veth", "peer", "name", &b_if,
                "netns", &b.name,
            ],
        )?;
        for (ns, ifname, addrs) in [(a, &a_if, a_addrs), (b, &b_if, b_addrs)] {
            for cidr in addrs {
                ns.add_addr(ifname, cidr)?;
            }
            ns.run("ip", &["link", "set", ifname, "up"])?;
            // GRO lets redirected frames through when no XDP program is attached.
            let _ = ns.run("ethtool", &["-K", ifname, "gro", "on"]);
        }
        let (a_mac, b_mac) = (a.mac(&a_if)?, b.mac(&b_if)?);
        for (ns, ifname, peer_addrs, peer_mac) in
            [(a, &a_if, b_addrs, &b_mac), (b, &b_if, a_addrs, &a_mac)]
        {
            for cidr in peer_addrs {
                let addr = cidr.split('/').next().unwrap_or(cidr);
                ns.run(
                    "ip",
                    &[
                        "neigh",
                        "replace",
                        addr,
                        "lladdr",
                        peer_mac,
                        "nud",
                        "permanent",
                        "dev",
                        ifname,
                    ],
                )?;
            }
        }
        Ok(Link { a_if, b_if })
    }

    /// Spawns a long-running process in `ns`; it is killed when the lab drops.
    pub fn spawn(
        &mut self,
        ns: &Ns,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
    ) -> Result<u32> {
        let child = ns
            .command(program)
            .args(args)
            .spawn()
            .with_context(|| format!("spawning a process in {}", ns.name))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Spawns with stdout/stderr redirected to `log`.
    pub fn spawn_logged(
        &mut self,
        ns: &Ns,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        log: &Path,
    ) -> Result<u32> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = ns
            .command(program)
            .args(args)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning a process in {}", ns.name))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Sends `signal` to a spawned process and waits for it (SIGKILL after 5 s).
    pub fn stop(&mut self, pid: u32, signal: Signal) -> Result<std::process::ExitStatus> {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .context("no such process in this lab")?;
        let mut child = self.children.remove(i);
        terminate(&mut child, signal)
    }
}

/// Signals a child (`ip netns exec` execs the program, so the PID is the
/// program's) and reaps it.
fn terminate(child: &mut Child, signal: Signal) -> Result<std::process::ExitStatus> {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let _ = kill(pid, signal);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Ok(child.wait()?);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.children.drain(..) {
            if let Err(e) = terminate(&mut child, Signal::SIGTERM) {
                eprintln!("lab {}: stopping pid {}: {e:#}", self.prefix, child.id());
            }
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = sh("ip", &["netns", "del", &ns.name]) {
                eprintln!("lab {}: {e:#}", self.prefix);
            }
        }
    }
}

/// Deletes lab namespaces left by processes that no longer exist (a test run
/// killed with SIGKILL cannot clean up after itself).
pub fn sweep_stale() {
    let Ok(list) = sh("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sh("ip", &["netns", "del", name]);
        }
    }
}

/// A private bpffs on a fresh temporary directory, for per-test pins.
pub struct BpfFs {
    dir: PathBuf,
}

impl BpfFs {
    pub fn new() -> Result<BpfFs> {
        let dir = tempfile::Builder::new()
            .prefix("floodgate-bpffs-")
            .tempdir()?
            .keep();
        mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting a bpffs on {}", dir.display()))?;
        Ok(BpfFs { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.display());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Traffic from plain sockets inside a namespace.
pub mod traffic {
    use std::{
        collections::HashMap,
        net::{IpAddr, SocketAddr, UdpSocket},
        sync::{
            Arc, Mutex,
            atomic::{AtomicBool, Ordering},
        },
        thread::JoinHandle,
        time::{Duration, Instant},
    };

    use anyhow::{Context as _, Result};

    use super::Ns;

    /// Sends `count` UDP datagrams from `src` to `dst`, paced at `pps` if given.
    /// Returns how many the socket accepted.
    pub fn udp_send(
        ns: &Ns,
        src: IpAddr,
        dst: SocketAddr,
        count: u64,
        payload: usize,
        pps: Option<u64>,
    ) -> Result<u64> {
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

    /// Counts datagrams per source address until dropped.
    pub struct UdpSink {
        counts: Arc<Mutex<HashMap<IpAddr, u64>>>,
        last: Arc<Mutex<Instant>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl UdpSink {
        pub fn bind(ns: &Ns, addr: SocketAddr) -> Result<UdpSink> {
            let sock = ns.enter(move || UdpSocket::bind(addr))??;
            sock.set_read_timeout(Some(Duration::from_millis(50)))?;
            let counts = Arc::new(Mutex::new(HashMap::new()));
            let last = Arc::new(Mutex::new(Instant::now()));
            let stop = Arc::new(AtomicBool::new(false));
            let (c, l, s) = (counts.clone(), last.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !s.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        if let Ok(mut m) = c.lock() {
                            *m.entry(from.ip()).or_insert(0) += 1;
                        }
                        if let Ok(mut t) = l.lock() {
                            *t = Instant::now();
                        }
                    }
                }
            });
            Ok(UdpSink {
                counts,
                last,
                stop,
                thread: Some(thread),
            })
        }

        pub fn counts(&self) -> HashMap<IpAddr, u64> {
            self.counts.lock().map(|m| m.clone()).unwrap_or_default()
        }

        pub fn from(&self, src: IpAddr) -> u64 {
            self.counts().get(&src).copied().unwrap_or(0)
        }

        pub fn total(&self) -> u64 {
            self.counts().values().sum()
        }

        /// Waits until nothing arrived for `quiet`, or `max` passed.
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
                std::thread::sleep(Duration::from_millis(20));
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

    /// Pings `dst` from `ns`; returns the number of replies.
    pub fn ping(ns: &Ns, dst: IpAddr, count: u32) -> Result<u32> {
        let count_s = count.to_string();
        let dst_s = dst.to_string();
        let out = ns
            .command("ping")
            .args(["-c", &count_s, "-i", "0.01", "-W", "1", "-q", &dst_s])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "5 packets transmitted, 5 received, ..."
        let received = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(received)
    }
}
