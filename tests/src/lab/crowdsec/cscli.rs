//! The `cscli` wrappers: bouncers, machines, decisions and alerts, all through
//! this LAPI's config.

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::{CSCLI, Lapi};

impl Lapi {
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
}

/// `--range` for a CIDR, `--ip` otherwise.
fn scope_flag(value: &str) -> &'static str {
    if value.contains('/') {
        "--range"
    } else {
        "--ip"
    }
}
