//! A scenario's outcome: a per-client table (sent / passed / dropped, HTTP
//! results, reasons) and the checks, printed by the demo and on test failure.

use std::{fmt, time::Duration};

use anyhow::{Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

/// One client's line in the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub client: String,
    pub address: String,
    /// HTTP requests answered 200 / attempted ("-" when not counted).
    pub http: String,
    /// Packets to port 80 the client sent (nftables on the client).
    pub sent: u64,
    /// Packets that reached the edge's stack (nftables on the edge).
    pub passed: u64,
    /// Packets floodgate counted as dropped (or would-drop) for the client.
    pub dropped: u64,
    /// Ban reasons / drop reasons floodgate reported for the client.
    pub reasons: String,
}

/// One assertion of a scenario.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub scenario: String,
    pub rows: Vec<Row>,
    pub checks: Vec<Check>,
    /// Drops by reason over the scenario (from `floodgate stats --json`).
    pub reasons: Vec<(String, u64)>,
}

impl Outcome {
    pub fn new(scenario: &str) -> Outcome {
        Outcome {
            scenario: scenario.to_owned(),
            ..Outcome::default()
        }
    }

    /// Records a check; `detail` says what was measured.
    pub fn check(&mut self, ok: bool, what: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok,
            detail: detail.into(),
        });
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Ok when every check held; otherwise an error carrying the whole report.
    pub fn into_result(self) -> Result<Outcome> {
        if self.passed() {
            println!("{self}");
            Ok(self)
        } else {
            bail!("scenario {} failed:\n{self}", self.scenario)
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
            "client",
            "address",
            "HTTP ok/tried",
            "sent",
            "passed",
            "dropped",
            "reasons",
        ]);
        for r in &self.rows {
            t.add_row(vec![
                r.client.clone(),
                r.address.clone(),
                r.http.clone(),
                r.sent.to_string(),
                r.passed.to_string(),
                r.dropped.to_string(),
                r.reasons.clone(),
            ]);
        }
        writeln!(f, "── scenario: {} ──", self.scenario)?;
        writeln!(f, "{t}")?;
        if !self.reasons.is_empty() {
            let list: Vec<String> = self
                .reasons
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            writeln!(f, "floodgate drops by reason: {}", list.join(", "))?;
        }
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            writeln!(f, "  [{mark}] {} — {}", c.what, c.detail)?;
        }
        Ok(())
    }
}

/// The `q`-quantile (0..=1) of durations, in milliseconds.
pub fn quantile_ms(values: &[Duration], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_right_element() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert!((quantile_ms(&v, 0.5) - 51.0).abs() < 1e-9);
        assert!((quantile_ms(&v, 0.95) - 95.0).abs() < 1e-9);
        assert!((quantile_ms(&v, 1.0) - 100.0).abs() < 1e-9);
        assert!(quantile_ms(&[], 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_failed_check_fails_the_outcome_with_the_table() {
        let mut o = Outcome::new("x");
        o.rows.push(Row {
            client: "crawler".into(),
            ..Row::default()
        });
        o.check(true, "fine", "1");
        assert!(o.passed());
        o.check(false, "broken", "2");
        let err = o
            .into_result()
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.contains("crawler") && err.contains("[FAIL] broken"),
            "{err}"
        );
    }
}
