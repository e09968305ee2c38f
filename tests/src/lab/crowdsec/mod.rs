//! A real CrowdSec Local API (LAPI) inside a lab namespace: Debian's
//! `crowdsec -no-cs` (the API alone, no log-parsing agent) on a lab address,
//! with its own config, sqlite database, credentials and log in a private
//! temp dir. Nothing of the host's /etc/crowdsec is written or used as state:
//! every `cscli` call gets `-c` this LAPI's config. The package's hub,
//! profiles and simulation files are read as they are.
//!
//! One [`Lapi`] per test, each on its own namespace (or address/port), so
//! tests run in parallel. The process belongs to the [`Lab`] (its drop kills
//! it); dropping the [`Lapi`] kills it too and removes the temp dir.
//!
//! ```no_run
//! # use floodgate_tests::lab::{Lab, crowdsec::Lapi};
//! # fn f(lab: &mut Lab, ns: &floodgate_tests::lab::Ns) -> anyhow::Result<()> {
//! let mut lapi = Lapi::start(lab, ns, "198.18.40.1".parse()?, 8080)?;
//! let key = lapi.add_bouncer("floodgate")?; // for the X-Api-Key header
//! lapi.add_decision("198.18.1.3", "1h", "test ban")?;
//! lapi.stop(lab)?; // the LAPI goes down ...
//! lapi.restart(lab)?; // ... and comes back with the same database
//! # Ok(()) }
//! ```

use std::{
    fmt::Write as _,
    fs::File,
    io::Read as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Lab, Ns};
use config::lab_config;

mod config;
mod cscli;
mod process;
mod yaml;

/// The package's config, the base of every lab LAPI's config.
const PACKAGE_CONFIG: &str = "/etc/crowdsec/config.yaml";
const CROWDSEC: &str = "/usr/bin/crowdsec";
const CSCLI: &str = "/usr/bin/cscli";

/// The watcher (machine) the lab's own `cscli` logs in with.
const CSCLI_MACHINE: &str = "floodgate-lab";

/// A CrowdSec Local API running in a lab namespace.
pub struct Lapi {
    ns: Ns,
    listen: SocketAddr,
    /// Config, credentials, database (`data/`) and log; removed on drop.
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    /// The running `crowdsec` (a process of the lab), if any.
    pid: Option<u32>,
    starts: u32,
}

impl Lapi {
    /// Writes a config for `addr:port` (a lab address already assigned in
    /// `ns`), registers the lab's cscli watcher, starts `crowdsec -no-cs` in
    /// `ns` through the lab and waits (≤ 10 s) until it accepts connections.
    pub fn start(lab: &mut Lab, ns: &Ns, addr: IpAddr, port: u16) -> Result<Lapi> {
        ensure!(
            is_lab_addr(addr),
            "the LAPI listens on lab addresses only (198.18.0.0/15, fd00::/8), not {addr}"
        );
        ensure!(port != 0, "the LAPI needs a fixed port");
        for bin in [CROWDSEC, CSCLI] {
            ensure!(
                Path::new(bin).exists(),
                "{bin} is missing: install crowdsec with `cargo xtask setup`"
            );
        }
        let package = std::fs::read_to_string(PACKAGE_CONFIG)
            .with_context(|| format!("reading {PACKAGE_CONFIG} (is crowdsec installed?)"))?;
        let dir = tempfile::Builder::new()
            .prefix("fg-lapi-")
            .tempdir()
            .context("creating the LAPI's temp dir")?;
        let listen = SocketAddr::new(addr, port);
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        std::fs::create_dir(&data).with_context(|| format!("creating {}", data.display()))?;
        let config = root.join("config.yaml");
        let credentials = root.join("local_api_credentials.yaml");
        let db = data.join("crowdsec.db");
        std::fs::write(
            &config,
            lab_config(&package, &root, &data, &db, &credentials, listen)?,
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let mut lapi = Lapi {
            ns: ns.clone(),
            listen,
            config,
            log: root.join("crowdsec.log"),
            dir,
            pid: None,
            starts: 0,
        };
        lapi.check_config(&db, &credentials)?;
        // The lab's cscli is a watcher of this LAPI (decisions and alerts go
        // through the API); machines are written straight to the database.
        let password = random_hex(16)?;
        lapi.add_machine(CSCLI_MACHINE, &password)?;
        std::fs::write(
            &credentials,
            format!("url: http://{listen}\nlogin: {CSCLI_MACHINE}\npassword: {password}\n"),
        )
        .with_context(|| format!("writing {}", credentials.display()))?;
        lapi.launch(lab)?;
        Ok(lapi)
    }

    /// The base URL bouncers use: `http://ADDR:PORT/` (`[ADDR]` for IPv6).
    pub fn url(&self) -> String {
        format!("http://{}/", self.listen)
    }

    /// The address and port the API listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The `crowdsec` log (stdout and stderr, all starts appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The PID of the running `crowdsec`, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        // Still tracked (and not reaped) by the lab, so the PID is ours unless
        // the lab already reaped it: then the command line tells.
        if let Some(pid) = self.pid.take() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let config = self.config.to_string_lossy();
            let ours = String::from_utf8_lossy(&cmdline).contains(config.as_ref());
            if let (true, Ok(raw)) = (ours, i32::try_from(pid)) {
                let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
        // The TempDir field removes the directory after this.
    }
}

/// 198.18.0.0/15 or fd00::/8.
pub(crate) fn is_lab_addr(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 198 && (b & 0xfe) == 18
        }
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_addresses_only() {
        for ok in ["198.18.0.1", "198.19.255.1", "fd00::1", "fd00:f100:4::1"] {
            assert!(is_lab_addr(ok.parse().expect("literal")), "{ok}");
        }
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "198.20.0.1",
            "10.0.0.1",
            "::",
            "::1",
        ] {
            assert!(!is_lab_addr(bad.parse().expect("literal")), "{bad}");
        }
    }
}
