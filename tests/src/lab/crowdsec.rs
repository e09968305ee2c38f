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
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::{Lab, Ns, sh};

/// The package's config, the base of every lab LAPI's config.
const PACKAGE_CONFIG: &str = "/etc/crowdsec/config.yaml";
const CROWDSEC: &str = "/usr/bin/crowdsec";
const CSCLI: &str = "/usr/bin/cscli";

/// How long [`Lapi::start`] and [`Lapi::restart`] wait for the API to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The watcher (machine) the lab's own `cscli` logs in with.
const CSCLI_MACHINE: &str = "floodgate-lab";

/// Lines of the log shown in errors.
const LOG_TAIL: usize = 40;

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

    /// Runs `cscli -c CONFIG ARGS...` in the namespace, returning stdout.
    pub fn cscli(&self, args: &[&str]) -> Result<String> {
        let config = self.config.to_string_lossy();
        let mut full = vec!["-c", &config];
        full.extend_from_slice(args);
        self.ns
            .run(CSCLI, &full)
            .with_context(|| format!("cscli for the LAPI at {}", self.url()))
    }

    /// Adds a bouncer; returns its API key (the `X-Api-Key` header).
    pub fn add_bouncer(&self, name: &str) -> Result<String> {
        let key = self.cscli(&["bouncers", "add", name, "-o", "raw"])?;
        let key = key.trim();
        ensure!(
            !key.is_empty() && !key.contains(char::is_whitespace),
            "`cscli bouncers add {name} -o raw` printed no API key: {key:?}"
        );
        Ok(key.to_owned())
    }

    /// Adds a watcher (machine) `id` with `password`; machines added with
    /// cscli are validated. Its credentials file goes to the temp dir, never
    /// over this LAPI's own or the package's credentials.
    pub fn add_machine(&self, id: &str, password: &str) -> Result<()> {
        let safe: String = id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let file = self.dir.path().join(format!("machine-{safe}.yaml"));
        let file = file.to_string_lossy();
        self.cscli(&[
            "machines",
            "add",
            id,
            "--password",
            password,
            "-f",
            &file,
            "--force",
        ])
        .map(drop)
    }

    /// Adds a `ban` decision for an IP (`198.18.1.3`) or a range (`198.18.1.0/24`)
    /// lasting `duration` (Go syntax: `90s`, `4h`, `1h30m`).
    pub fn add_decision(&self, value: &str, duration: &str, reason: &str) -> Result<()> {
        self.cscli(&[
            "decisions",
            "add",
            scope_flag(value),
            value,
            "--duration",
            duration,
            "--reason",
            reason,
            "--type",
            "ban",
        ])
        .map(drop)
    }

    /// Deletes the decisions on exactly `value`, as it was added
    /// (`cscli decisions delete -v VALUE`). Not `--ip`/`--range`: in 1.4.6
    /// those also delete every range that covers the value (`--ip 198.18.1.3`
    /// deletes a `198.18.1.0/24` ban too); call [`Lapi::cscli`] for that.
    pub fn delete_decisions(&self, value: &str) -> Result<()> {
        self.cscli(&["decisions", "delete", "-v", value]).map(drop)
    }

    /// The active decisions, flattened out of `cscli decisions list -o json`
    /// (which lists alerts, each with its `decisions`): an array of objects
    /// with `id`, `value`, `scope` (`Ip`/`Range`), `type`, `duration` (time
    /// left, Go syntax), `origin`, `scenario` (the reason), `simulated`.
    pub fn decisions(&self) -> Result<Value> {
        let alerts = self.alerts_with(&["decisions", "list", "-o", "json", "-l", "0"])?;
        let decisions = alerts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|alert| alert.get("decisions").and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect();
        Ok(Value::Array(decisions))
    }

    /// The alerts as `cscli alerts list -o json` prints them (an empty array
    /// for none); each has its `decisions`, `source`, `scenario`, `machine_id`.
    pub fn alerts(&self) -> Result<Value> {
        self.alerts_with(&["alerts", "list", "-o", "json", "-l", "0"])
    }

    fn alerts_with(&self, args: &[&str]) -> Result<Value> {
        let out = self.cscli(args)?;
        let v: Value = serde_json::from_str(&out)
            .with_context(|| format!("parsing `cscli {}`: {out}", args.join(" ")))?;
        // 1.4.6 prints `null` for an empty list.
        Ok(if v.is_null() { Value::Array(vec![]) } else { v })
    }

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
    fn launch(&mut self, lab: &mut Lab) -> Result<()> {
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

    /// Makes sure the written config says what it must (the line editing of
    /// the package's config worked): `cscli config show -o json`.
    fn check_config(&self, db: &Path, credentials: &Path) -> Result<()> {
        let config = self.config.to_string_lossy();
        let out = sh(CSCLI, &["-c", &config, "config", "show", "-o", "json"])?;
        let v: Value = serde_json::from_str(&out).context("parsing `cscli config show`")?;
        let listen = self.listen.to_string();
        let checks: [(&str, Value); 5] = [
            ("/DbConfig/DbPath", db.to_string_lossy().into()),
            ("/API/Server/ListenURI", listen.into()),
            ("/API/Server/OnlineClient", Value::Null),
            (
                "/API/Client/CredentialsFilePath",
                credentials.to_string_lossy().into(),
            ),
            ("/Prometheus/Enabled", false.into()),
        ];
        for (pointer, want) in checks {
            let got = v.pointer(pointer).unwrap_or(&Value::Null);
            if *got != want {
                let text = std::fs::read_to_string(&self.config).unwrap_or_default();
                bail!(
                    "the lab's crowdsec config has {pointer} = {got}, not {want}; \
                     {PACKAGE_CONFIG} may have a layout this editor does not know\n{text}"
                );
            }
        }
        Ok(())
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
fn is_lab_addr(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 198 && (b & 0xfe) == 18
        }
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

/// `--range` for a CIDR, `--ip` otherwise.
fn scope_flag(value: &str) -> &'static str {
    if value.contains('/') {
        "--range"
    } else {
        "--ip"
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

/// The package's config with the lab's paths, address and settings.
fn lab_config(
    package: &str,
    root: &Path,
    data: &Path,
    db: &Path,
    credentials: &Path,
    listen: SocketAddr,
) -> Result<String> {
    let path = |p: &Path| quote(&format!("{}", p.display()));
    let dir_path = |p: &Path| quote(&format!("{}/", p.display()));
    let sets = [
        ("common.daemonize", "false".to_owned()),
        // stdout and stderr go to the log file (so do early fatal errors).
        ("common.log_media", quote("stdout")),
        ("common.log_dir", dir_path(root)),
        ("common.working_dir", path(root)),
        ("config_paths.data_dir", dir_path(data)),
        ("db_config.type", quote("sqlite")),
        ("db_config.db_path", path(db)),
        ("db_config.use_wal", "true".to_owned()),
        ("api.client.credentials_path", path(credentials)),
        ("api.server.listen_uri", quote(&listen.to_string())),
        // Several LAPIs may share a namespace: no fixed metrics port.
        ("prometheus.enabled", "false".to_owned()),
    ];
    let mut text = yaml_remove(package, "api.server.online_client");
    for (key, value) in sets {
        text = yaml_set(&text, key, &value);
    }
    Ok(text)
}

/// A double-quoted YAML scalar.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The key of a `key: value` or `key:` line (without its indentation).
fn yaml_key(body: &str) -> Option<&str> {
    let (key, rest) = body.split_once(':')?;
    let key = key.trim();
    let plain = !key.is_empty() && !key.contains(char::is_whitespace);
    (plain && (rest.is_empty() || rest.starts_with([' ', '\t']))).then_some(key)
}

/// For each line of a block-style YAML document: its dotted key path and
/// indentation, if it is a mapping key line. Enough for crowdsec's
/// config.yaml: nested mappings, scalars, lists of scalars, comments.
fn yaml_keys(lines: &[String]) -> Vec<Option<(String, usize)>> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    lines
        .iter()
        .map(|line| {
            let body = line.trim_start();
            let indent = line.len() - body.len();
            if body.is_empty() || body.starts_with(['#', '-']) {
                return None;
            }
            let key = yaml_key(body)?;
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, key.to_owned()));
            let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            Some((path.join("."), indent))
        })
        .collect()
}

fn yaml_lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn yaml_join(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn yaml_find(keys: &[Option<(String, usize)>], path: &str) -> Option<(usize, usize)> {
    keys.iter().enumerate().find_map(|(i, k)| match k {
        Some((p, indent)) if p == path => Some((i, *indent)),
        _ => None,
    })
}

/// Sets `path` (dotted) to the scalar `value`, replacing its line or adding
/// it (and missing parents) under its deepest existing parent.
fn yaml_set(text: &str, path: &str, value: &str) -> String {
    let mut lines = yaml_lines(text);
    let keys = yaml_keys(&lines);
    let parts: Vec<&str> = path.split('.').collect();
    let leaf = parts.last().copied().unwrap_or(path);
    if let Some((i, indent)) = yaml_find(&keys, path) {
        lines[i] = format!("{}{leaf}: {value}", " ".repeat(indent));
        return yaml_join(&lines);
    }
    // The deepest parent that exists: insert right below its line.
    let (mut at, mut indent, mut depth) = (lines.len(), 0, 0);
    for d in (1..parts.len()).rev() {
        if let Some((i, parent_indent)) = yaml_find(&keys, &parts[..d].join(".")) {
            // The indentation of its first child, if it has one.
            let child_indent = lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(|l| l.len() - l.trim_start().len())
                .filter(|c| *c > parent_indent)
                .unwrap_or(parent_indent + 2);
            (at, indent, depth) = (i + 1, child_indent, d);
            break;
        }
    }
    let new: Vec<String> = parts[depth..]
        .iter()
        .enumerate()
        .map(|(n, part)| {
            let pad = " ".repeat(indent + 2 * n);
            if depth + n + 1 == parts.len() {
                format!("{pad}{part}: {value}")
            } else {
                format!("{pad}{part}:")
            }
        })
        .collect();
    lines.splice(at..at, new);
    yaml_join(&lines)
}

/// Removes `path` (dotted) and everything nested under it.
fn yaml_remove(text: &str, path: &str) -> String {
    let mut lines = yaml_lines(text);
    let keys = yaml_keys(&lines);
    let Some((i, indent)) = yaml_find(&keys, path) else {
        return yaml_join(&lines);
    };
    let mut end = i + 1;
    while let Some(line) = lines.get(end) {
        let body = line.trim_start();
        let inner = line.len() - body.len();
        let nested = body.is_empty()
            || body.starts_with('#')
            || inner > indent
            || (inner == indent && body.starts_with('-'));
        if !nested {
            break;
        }
        end += 1;
    }
    lines.drain(i..end);
    yaml_join(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
common:
  daemonize: true
  log_dir: /var/log/
db_config:
  type: sqlite
  flush:
    max_age: 7d
api:
  client:
    credentials_path: /etc/crowdsec/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:8080
    online_client: # Central API credentials
      credentials_path: /etc/crowdsec/online_api_credentials.yaml
    trusted_ips: # IP ranges
      - 127.0.0.1
      - ::1
prometheus:
  enabled: true
";

    #[test]
    fn sets_replaces_and_adds_keys() {
        let t = yaml_set(SAMPLE, "api.server.listen_uri", "\"[fd00::1]:8080\"");
        assert!(t.contains("    listen_uri: \"[fd00::1]:8080\"\n"), "{t}");
        assert!(!t.contains("127.0.0.1:8080"));
        let t = yaml_set(&t, "db_config.use_wal", "true");
        assert!(
            t.contains("db_config:\n  use_wal: true\n  type: sqlite\n"),
            "{t}"
        );
        let t = yaml_set(&t, "new.deep.key", "1");
        assert!(t.ends_with("new:\n  deep:\n    key: 1\n"), "{t}");
        // Same leaf names elsewhere are not touched.
        let t = yaml_set(
            &t,
            "api.client.credentials_path",
            "\"/tmp/x/local_api_credentials.yaml\"",
        );
        assert!(t.contains("      credentials_path: /etc/crowdsec/online_api_credentials.yaml"));
        assert!(t.contains("    credentials_path: \"/tmp/x/local_api_credentials.yaml\""));
    }

    #[test]
    fn removes_a_subtree_only() {
        let t = yaml_remove(SAMPLE, "api.server.online_client");
        assert!(!t.contains("online"), "{t}");
        assert!(t.contains("    trusted_ips: # IP ranges\n      - 127.0.0.1\n      - ::1\n"));
        let t = yaml_remove(&t, "api.server.trusted_ips");
        assert!(
            t.contains("    listen_uri: 127.0.0.1:8080\nprometheus:\n"),
            "{t}"
        );
    }

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
