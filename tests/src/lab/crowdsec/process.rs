//! The `crowdsec` process: launching it through the lab, waiting until it
//! listens, stopping and restarting it.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::Signal;

use super::{CROWDSEC, Lapi};
use crate::lab::Lab;

/// How long [`Lapi::start`] and [`Lapi::restart`] wait for the API to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines of the log shown in errors.
const LOG_TAIL: usize = 40;

impl Lapi {
    /// Stops `crowdsec` (SIGTERM, SIGKILL after 5 s) and reaps it; the temp
    /// dir and database stay for [`Lapi::restart`]. A no-op when stopped.
    pub fn stop(&mut self, lab: &mut Lab) -> Result<()> {
        if let Some(pid) = self.pid.take() {
            lab.stop(pid, Signal::SIGTERM)
                .with_context(|| format!("stopping the LAPI at {}", self.url()))?;
        }
        Ok(())
    }

    /// Starts `crowdsec` again on the same address with the same database,
    /// bouncers and decisions (stopping it first if it runs).
    pub fn restart(&mut self, lab: &mut Lab) -> Result<()> {
        self.stop(lab)?;
        self.launch(lab)
    }

    /// Spawns `crowdsec -no-cs` through the lab and waits until it listens.
    pub(super) fn launch(&mut self, lab: &mut Lab) -> Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        writeln!(log, "--- floodgate lab: start {} ---", self.starts)?;
        let mut cmd = Command::new(CROWDSEC);
        cmd.arg("-c")
            .arg(&self.config)
            .arg("-no-cs")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let pid = lab.spawn(&self.ns, &mut cmd)?;
        self.pid = Some(pid);
        let started = Instant::now();
        let listen = self.listen;
        loop {
            if let Some(status) = lab.exited(pid)? {
                // Reap it; the lab no longer needs to track it.
                let _ = lab.wait(pid, Duration::ZERO);
                self.pid = None;
                bail!(
                    "crowdsec exited ({status}) before listening on {listen} in {}\n{}",
                    self.ns.name,
                    self.log_tail()
                );
            }
            let up = self.ns.enter(move || {
                TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the LAPI at {listen} in {} did not accept connections within {} s\n{}",
                    self.ns.name,
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Err(e) = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text)) {
            return format!("(no log at {}: {e})", self.log.display());
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.log.display())
    }
}
