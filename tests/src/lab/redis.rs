//! Debian's `redis-server` in a lab namespace, on a lab address: the fleet
//! tests' Redis. No persistence (`--save ''`), protected mode off (it would
//! refuse the edges' non-loopback clients without a password), stopped by
//! the PID the lab spawned it with.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use nix::sys::signal::Signal;

use super::{Lab, Ns, crowdsec::is_lab_addr};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// How long [`RedisServer::start`] waits for `PING` to be answered.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) `redis-server` of the lab.
pub struct RedisServer {
    ns: Ns,
    listen: SocketAddr,
    password: Option<String>,
    /// Its log; removed on drop.
    dir: tempfile::TempDir,
    pid: Option<u32>,
}

impl RedisServer {
    /// Starts `redis-server` in `ns` on `listen` (a lab address already
    /// assigned there), requiring `password` when given, and waits until it
    /// answers `PING`.
    pub fn start(
        lab: &mut Lab,
        ns: &Ns,
        listen: SocketAddr,
        password: Option<&str>,
    ) -> Result<RedisServer> {
        ensure!(
            is_lab_addr(listen.ip()),
            "Redis listens on lab addresses only (198.18.0.0/15, fd00::/8), not {}",
            listen.ip()
        );
        ensure!(
            std::path::Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: install redis-server with `cargo xtask setup`"
        );
        let dir = tempfile::Builder::new()
            .prefix("fg-redis-")
            .tempdir()
            .context("creating Redis's temp dir")?;
        let mut r = RedisServer {
            ns: ns.clone(),
            listen,
            password: password.map(str::to_owned),
            dir,
            pid: None,
        };
        r.launch(lab)?;
        Ok(r)
    }

    /// `redis://[:PASSWORD@]ADDR:PORT/0`.
    pub fn url(&self) -> String {
        let auth = self
            .password
            .as_ref()
            .map_or_else(String::new, |p| format!(":{p}@"));
        format!("redis://{auth}{}/0", self.listen)
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Stops it (SIGTERM, then SIGKILL) and reaps it. What it held is gone
    /// (no persistence). A no-op when stopped.
    pub fn stop(&mut self, lab: &mut Lab) -> Result<()> {
        if let Some(pid) = self.pid.take() {
            lab.stop(pid, Signal::SIGTERM)
                .with_context(|| format!("stopping Redis at {}", self.listen))?;
        }
        Ok(())
    }

    /// Starts it again on the same address, empty.
    pub fn restart(&mut self, lab: &mut Lab) -> Result<()> {
        self.stop(lab)?;
        self.launch(lab)
    }

    fn launch(&mut self, lab: &mut Lab) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        let mut cmd = Command::new(REDIS_SERVER);
        cmd.args(["--bind", &self.listen.ip().to_string()])
            .args(["--port", &self.listen.port().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(["--dir", &self.dir.path().to_string_lossy()]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let pid = lab.spawn(&self.ns, &mut cmd)?;
        self.pid = Some(pid);
        let started = Instant::now();
        loop {
            if let Some(status) = lab.exited(pid)? {
                let _ = lab.wait(pid, Duration::ZERO);
                self.pid = None;
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                bail!("redis-server exited ({status}) before answering PING\n{log}");
            }
            let listen = self.listen;
            if self.ns.enter(move || ping(listen))? {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "Redis at {listen} in {} did not answer PING within {} s",
                    self.ns.name,
                    START_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether a server at `addr` answers `PING` (with `+PONG`, or `-NOAUTH`
/// when it wants a password: up either way).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The lab kills what it spawned when it is dropped; a server dropped
        // before its lab is stopped here, by the PID the lab gave it, if the
        // process is still this one (its command line names its address).
        if let Some(pid) = self.pid.take() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains("redis-server");
            if let (true, Ok(raw)) = (ours, i32::try_from(pid)) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
    }
}
