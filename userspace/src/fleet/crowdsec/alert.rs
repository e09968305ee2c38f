//! floodgate's own bans as CrowdSec alerts, and the queue of those not sent
//! yet: bounded (the oldest go first, counted), saved in the state dir while
//! the LAPI is unreachable so a restart replays them with their own times.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::daemon::runtime::{StateError, write_durably};

/// Alerts kept while the LAPI cannot take them.
pub const MAX_QUEUED: usize = 10_000;

/// A ban floodgate made itself, as the watcher reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalBan {
    /// A source (`/32`, `/128`) or a prefix.
    pub target: IpNet,
    /// The reason's name (`rate_packets`, `prefix_quota`, …).
    pub reason: String,
    /// The escalated ban's length.
    pub duration_secs: u64,
    /// When the ban started, Unix milliseconds.
    pub started_unix_ms: u64,
    /// Made in monitor mode: nothing was dropped.
    pub simulated: bool,
    pub offenses: u32,
}

fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

impl LocalBan {
    pub fn scenario(&self) -> String {
        format!("floodgate/{}", self.reason)
    }

    /// Where the LAPI will say the decision ends: `stop_at` + duration.
    pub fn until_unix(&self) -> u64 {
        (self.started_unix_ms / 1000).saturating_add(self.duration_secs)
    }

    /// The alert, with one decision. `stop_at` is the ban's start: the LAPI
    /// ends a decision at the alert's `stop_at` plus its duration. The
    /// decision's origin is `crowdsec`, as an agent's: `cscli decisions
    /// list` shows other origins only with `-a`; the scenario says floodgate.
    pub fn to_alert(&self, edge: &str) -> Value {
        let host = self.target.prefix_len() == self.target.max_prefix_len();
        let (scope, value) = if host {
            ("Ip", self.target.addr().to_string())
        } else {
            ("Range", self.target.to_string())
        };
        let mut source = json!({ "scope": scope, "value": value });
        source[if host { "ip" } else { "range" }] = json!(value);
        let at = rfc3339(self.started_unix_ms);
        let scenario = self.scenario();
        json!({
            "scenario": scenario,
            "scenario_hash": "",
            "scenario_version": env!("CARGO_PKG_VERSION"),
            "message": format!(
                "floodgate on {edge}: {value} banned for {} ({}, offence {})",
                humantime::format_duration(Duration::from_secs(self.duration_secs)),
                self.reason,
                self.offenses
            ),
            "events_count": 1,
            "start_at": at,
            "stop_at": at,
            "capacity": 0,
            "leakspeed": "0s",
            "simulated": self.simulated,
            "remediation": true,
            "events": [{
                "timestamp": at,
                "meta": [
                    { "key": "edge", "value": edge },
                    { "key": "reason", "value": self.reason },
                ],
            }],
            "source": source,
            "decisions": [{
                "origin": "crowdsec",
                "type": "ban",
                "scope": scope,
                "value": value,
                "duration": format!("{}s", self.duration_secs),
                "scenario": scenario,
                "simulated": self.simulated,
            }],
        })
    }
}

/// Alerts waiting to be sent, oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Queue {
    pub alerts: VecDeque<LocalBan>,
    /// Alerts dropped because the queue was full, since the daemon started.
    #[serde(skip)]
    pub dropped: u64,
}

impl Queue {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("crowdsec-alerts.json")
    }

    /// The alerts a previous run could not send (none when the file is
    /// missing or does not parse: it is set aside then).
    pub fn load(state_dir: &Path) -> (Queue, Option<String>) {
        let path = Self::path(state_dir);
        let Ok(bytes) = std::fs::read(&path) else {
            return (Queue::default(), None);
        };
        match serde_json::from_slice::<Queue>(&bytes) {
            Ok(mut q) => {
                q.trim();
                (q, None)
            }
            Err(e) => {
                let _ = std::fs::rename(&path, path.with_extension("json.invalid"));
                (
                    Queue::default(),
                    Some(format!(
                        "{} is not valid ({e}); its alerts are lost, set aside as crowdsec-alerts.json.invalid",
                        path.display()
                    )),
                )
            }
        }
    }

    /// Saves the queue, or removes the file when it is empty.
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        let path = Self::path(state_dir);
        if self.alerts.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(StateError::Write { path, source: e })
                }
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec(self).map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_durably(state_dir, &path, &bytes)
    }

    pub fn push(&mut self, ban: LocalBan) {
        self.alerts.push_back(ban);
        self.trim();
    }

    fn trim(&mut self) {
        while self.alerts.len() > MAX_QUEUED {
            self.alerts.pop_front();
            self.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(target: &str) -> LocalBan {
        LocalBan {
            target: target.parse().expect("literal"),
            reason: "rate_packets".to_owned(),
            duration_secs: 300,
            started_unix_ms: 1_764_806_400_250,
            simulated: false,
            offenses: 2,
        }
    }

    #[test]
    fn a_source_ban_is_an_ip_alert_and_a_prefix_ban_a_range() {
        let a = ban("198.18.1.3/32").to_alert("edge-1");
        assert_eq!(
            a["source"],
            json!({"scope": "Ip", "value": "198.18.1.3", "ip": "198.18.1.3"})
        );
        assert_eq!(a["scenario"], "floodgate/rate_packets");
        assert_eq!(a["start_at"], "2025-12-04T00:00:00.250Z");
        assert_eq!(
            a["stop_at"], a["start_at"],
            "the LAPI ends the decision at stop_at + duration"
        );
        assert_eq!(a["decisions"][0]["duration"], "300s");
        assert_eq!(a["decisions"][0]["value"], "198.18.1.3");
        let r = ban("fd00:7::/64").to_alert("edge-1");
        assert_eq!(r["source"]["scope"], "Range");
        assert_eq!(r["source"]["range"], "fd00:7::/64");
        assert_eq!(r["decisions"][0]["scope"], "Range");
        assert_eq!(ban("198.18.1.3/32").until_unix(), 1_764_806_400 + 300);
    }

    #[test]
    fn the_queue_is_bounded_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("fg-alerts-{}", std::process::id()));
        let mut q = Queue::default();
        for i in 0..(MAX_QUEUED + 5) {
            let mut b = ban("198.18.1.3/32");
            b.started_unix_ms += i as u64;
            q.push(b);
        }
        assert_eq!((q.alerts.len(), q.dropped), (MAX_QUEUED, 5));
        assert_eq!(
            q.alerts[0].started_unix_ms, 1_764_806_400_255,
            "the oldest went"
        );
        q.save(&dir).expect("save");
        let (back, warning) = Queue::load(&dir);
        assert!(warning.is_none());
        assert_eq!(back.alerts, q.alerts, "replayed with their own times");
        Queue::default()
            .save(&dir)
            .expect("an empty queue removes the file");
        assert!(!dir.join("crowdsec-alerts.json").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
