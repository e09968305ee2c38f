//! The real daemon in a lab: `floodgate run` on the edge namespace, and the CLI
//! talking to it over its socket.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{ExitStatus, Output},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::Signal;

use crate::lab::{
    BpfFs, EdgeNet, Lab, Link, Ns,
    traffic::{UdpSink, udp_send},
};

/// One `floodgate run` process: its config, socket, pins and state in private
/// temporary directories, and the CLI talking to it. The process lives in a
/// [`Lab`] (which kills it if the test ends first); the pins go on drop.
pub struct Daemon {
    pub pins: BpfFs,
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub pid: Option<u32>,
    /// Extra `floodgate run` arguments.
    pub extra_args: Vec<String>,
    runs: u32,
}

impl Daemon {
    /// Writes `config` as the daemon's config file; `bin` is the floodgate binary.
    pub fn new(bin: impl Into<PathBuf>, config: &str) -> Result<Daemon> {
        let dir = tempfile::tempdir()?;
        // Traversable by others, so the socket's own mode decides who gets in.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )?;
        std::fs::write(dir.path().join("fg.toml"), config)?;
        Ok(Daemon {
            pins: BpfFs::new()?,
            dir,
            bin: bin.into(),
            pid: None,
            extra_args: Vec::new(),
            runs: 0,
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("fg.sock")
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.pins.path().join("floodgate")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("fg.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log(&self, run: u32) -> PathBuf {
        self.dir.path().join(format!("daemon-{run}.log"))
    }

    /// Starts `floodgate run` in `ns` on `ifaces` and waits for its socket.
    pub fn start_in(&mut self, lab: &mut Lab, ns: &Ns, ifaces: &[String]) -> Result<()> {
        self.runs += 1;
        let log = self.log(self.runs);
        let mut args = vec![
            "--socket".to_owned(),
            self.socket().display().to_string(),
            "run".to_owned(),
        ];
        for iface in ifaces {
            args.extend(["--iface".to_owned(), iface.clone()]);
        }
        args.extend([
            "--config".to_owned(),
            self.config_path().display().to_string(),
            "--pin-dir".to_owned(),
            self.pin_dir().display().to_string(),
            "--state-dir".to_owned(),
            self.state_dir().display().to_string(),
        ]);
        args.extend(self.extra_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = lab.spawn_logged(ns, &self.bin, &args, &log)?;
        self.pid = Some(pid);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.cli(&["status"]).is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if let Some(status) = lab.exited(pid)? {
                self.pid = None;
                bail!(
                    "the daemon exited ({status}) before it came up; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the daemon did not come up; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    /// Stops the daemon with `signal` (it leaves filtering in place).
    pub fn stop_in(&mut self, lab: &mut Lab, signal: Signal) -> Result<ExitStatus> {
        let pid = self.pid.take().context("the daemon is not running")?;
        lab.stop(pid, signal)
    }

    /// Runs the CLI against the daemon's socket.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let socket = self.socket();
        let mut full = vec!["--socket", socket.to_str().context("socket path")?];
        full.extend_from_slice(args);
        std::process::Command::new(&self.bin)
            .args(&full)
            .output()
            .context("running the CLI")
    }

    /// Runs the CLI, requires success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "`floodgate {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.daemon_log()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a `--json` command and parses it.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut full = args.to_vec();
        full.push("--json");
        Ok(serde_json::from_str(&self.ok(&full)?)?)
    }

    pub fn daemon_log(&self) -> String {
        format!(
            "\ndaemon log:\n{}",
            std::fs::read_to_string(self.log(self.runs)).unwrap_or_default()
        )
    }

    pub fn write_config(&self, text: &str) -> Result<()> {
        Ok(std::fs::write(self.config_path(), text)?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Pins hold the program on the links; remove them before the lab goes.
        let _ = floodgate::daemon::engine::remove_pins(&self.pin_dir());
    }
}

/// edge ⟷ crawler (198.18.1.0/24, crawler also .3) and edge ⟷ user
/// (198.18.2.0/24), the daemon filtering both edge ends. Derefs to its
/// [`Daemon`] for the CLI and paths.
pub struct DaemonLab {
    pub lab: Lab,
    pub edge: Ns,
    pub crawler: Ns,
    pub user: Ns,
    pub links: Vec<Link>,
    pub daemon: Daemon,
}

impl DaemonLab {
    /// Builds the lab and writes `config` as the daemon's config file.
    pub fn new(tag: &str, bin: &str, config: &str) -> Result<DaemonLab> {
        let mut lab = Lab::new(tag)?;
        let net = EdgeNet::build(&mut lab)?;
        Ok(DaemonLab {
            lab,
            edge: net.edge,
            crawler: net.crawler,
            user: net.user,
            links: vec![net.to_crawler, net.to_user],
            daemon: Daemon::new(bin, config)?,
        })
    }

    /// Starts `floodgate run` on both edge ends and waits for its socket.
    pub fn start(&mut self) -> Result<()> {
        let ifaces: Vec<String> = self.links.iter().map(|l| l.a_if.clone()).collect();
        self.daemon.start_in(&mut self.lab, &self.edge, &ifaces)
    }

    /// Gives the crawler `addrs` (v4 and v6) as sources on its link to the
    /// edge, and the edge's IPv4 address as a permanent neighbour: a flood
    /// from many sources then needs no ARP from any of them.
    pub fn add_crawler_sources(&self, addrs: &[std::net::IpAddr]) -> Result<()> {
        let link = &self.links[0];
        let cidrs: Vec<String> = addrs
            .iter()
            .map(|a| format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 }))
            .collect();
        self.crawler.add_addrs(&link.b_if, &cidrs)?;
        self.crawler.ip(&[
            "neigh",
            "replace",
            "198.18.1.1",
            "lladdr",
            &link.a_mac,
            "nud",
            "permanent",
            "dev",
            &link.b_if,
        ])?;
        Ok(())
    }

    /// Stops the daemon with `signal` (it leaves filtering in place).
    pub fn stop(&mut self, signal: Signal) -> Result<ExitStatus> {
        self.daemon.stop_in(&mut self.lab, signal)
    }
}

impl std::ops::Deref for DaemonLab {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for DaemonLab {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl Drop for DaemonLab {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon.pid.take() {
            let _ = self.lab.stop(pid, Signal::SIGTERM);
        }
    }
}

/// A policy for the daemon tests: every port and protocol counts, 200
/// packets/s per source with a burst of 50, nothing else limited, no bans.
pub const UDP_LIMITED: &str = r#"
[capacity]
sources = 4096
[limits]
ports = []
packets = "200/s"
packets_burst = 50
bytes = "off"
syn = "off"
quota = "off"
ban = "0s"
[prefix]
packets = "off"
syn = "off"
quota = "off"
"#;

/// The edge's UDP sink address on the crawler side and on the user side.
pub fn to_crawler_side() -> SocketAddr {
    SocketAddr::from(([198, 18, 1, 1], 9000))
}

pub fn to_user_side() -> SocketAddr {
    SocketAddr::from(([198, 18, 2, 1], 9000))
}

/// [`UDP_LIMITED`]: all traffic counts, no bans.
pub const LIMITED: &str = UDP_LIMITED;

/// [`LIMITED`] with source bans of `ban`.
pub fn with_ban(ban: &str) -> String {
    LIMITED.replace("ban = \"0s\"", &format!("ban = \"{ban}\""))
}

/// The number at `path` in a JSON reply (0 when missing).
pub fn n(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// Sends `count` datagrams from `src` (fast; 198.18.2.x from the user side,
/// others from the crawler side) and returns how many the edge got.
pub fn burst_through(d: &DaemonLab, sink: &UdpSink, src: &str, count: u64) -> Result<u64> {
    let src_ip: std::net::IpAddr = src.parse().context("a source address")?;
    let before = sink.from(src_ip);
    let (ns, dst) = if src.starts_with("198.18.2.") {
        (&d.user, to_user_side())
    } else {
        (&d.crawler, to_crawler_side())
    };
    udp_send(ns, src_ip, dst, count, 64, Some(20_000))?;
    sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
    Ok(sink.from(src_ip) - before)
}
