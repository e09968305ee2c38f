//! floodgate as a CrowdSec watcher (issue "Fleet, part 1", item 2): its own
//! bans reach the LAPI as alerts carrying their decision, so every bouncer
//! of the fleet gets them; the decision coming back through floodgate's own
//! stream is a no-op; monitor mode sends them simulated; alerts the LAPI
//! cannot take are queued in the state dir and sent after the outage — and
//! after a daemon restart — with their own times.

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use floodgate_tests::{
    daemon::with_ban,
    fleet::{BANNED_V4, CLEAN_V4, CsLab, listed, wait_for},
};
use nix::sys::signal::Signal;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

/// The LAPI's alert about `value`, if it has one.
fn alert_on(l: &CsLab, value: &str) -> Result<Option<Value>> {
    // As `cscli alerts list` shows them by default (it leaves out origins
    // other than crowdsec and cscli).
    let alerts = l.lapi.alerts()?;
    Ok(alerts
        .as_array()
        .and_then(|a| a.iter().find(|x| x["source"]["value"] == value).cloned()))
}

/// Waits for the LAPI to hold an alert about `value`.
fn wait_alert(l: &CsLab, value: &str, max: Duration) -> Result<Value> {
    wait_for(max, &format!("an alert about {value} at the LAPI"), || {
        Ok(alert_on(l, value)?.is_some())
    })
    .with_context(|| {
        format!(
            "status: {}\nalerts: {}{}",
            l.crowdsec_status().unwrap_or_default(),
            l.lapi.alerts().unwrap_or_default(),
            l.d.daemon_log()
        )
    })?;
    alert_on(l, value)?.context("the alert")
}

fn start_time(alert: &Value) -> Result<SystemTime> {
    let at = alert["start_at"].as_str().context("start_at")?;
    humantime::parse_rfc3339_weak(at.trim_end_matches('Z').split('.').next().unwrap_or(at))
        .with_context(|| format!("start_at {at:?}"))
}

#[test]
fn own_bans_become_alerts_and_their_decisions_come_back_as_no_ops() -> Result<()> {
    let mut l = CsLab::new("cswat", BIN, &with_ban("1h"), None, true)?;
    l.d.start()?;
    // 200/s with a burst of 50: the flood is banned for an hour.
    let passed = l.through(CLEAN_V4, 500)?;
    assert!(passed < 500, "the flood was banned: {passed} of 500 passed");
    let alert = wait_alert(&l, CLEAN_V4, Duration::from_secs(10))?;
    assert_eq!(alert["scenario"], "floodgate/rate_packets", "{alert}");
    assert_eq!(alert["simulated"], false, "{alert}");
    // Its decision is what every bouncer of the LAPI pulls: an hour's ban.
    let d = &alert["decisions"][0];
    assert_eq!(
        (d["type"].as_str(), d["scope"].as_str()),
        (Some("ban"), Some("Ip")),
        "{d}"
    );
    let left = d["duration"].as_str().unwrap_or_default();
    assert!(
        left.starts_with("59m") || left.starts_with("1h"),
        "an hour's ban: {d}"
    );
    // Back through floodgate's own stream it is floodgate's ban still.
    wait_for(
        Duration::from_secs(10),
        "the own decision to come back",
        || {
            let s = l.crowdsec_status()?;
            Ok(s["ignored"]["own"].as_u64().unwrap_or(0) >= 1)
        },
    )?;
    let bans = l.d.json(&["bans", "list"])?;
    let b = listed(&bans, "target", "198.18.1.2/32").with_context(|| format!("{bans}"))?;
    assert!(b.get("origin").is_none(), "still floodgate's own ban: {b}");
    assert_eq!(b["offenses"], 1, "{b}");
    let s = l.crowdsec_status()?;
    assert_eq!(
        (s["watcher_up"].as_bool(), s["alerts_dropped"].as_u64()),
        (Some(true), Some(0)),
        "{s}"
    );
    assert!(s["alerts_sent"].as_u64().unwrap_or(0) >= 1, "{s}");
    // Monitor mode: a would-ban is sent simulated.
    l.d.ok(&["mode", "monitor"])?;
    assert_eq!(
        l.through(BANNED_V4, 500)?,
        500,
        "monitor mode drops nothing"
    );
    let alert = wait_alert(&l, BANNED_V4, Duration::from_secs(10))?;
    assert_eq!(alert["simulated"], true, "{alert}");
    Ok(())
}

#[test]
fn alerts_wait_out_an_outage_and_a_restart_and_keep_their_times() -> Result<()> {
    let mut l = CsLab::new("cswq", BIN, &with_ban("1h"), None, true)?;
    l.d.start()?;
    l.lapi.stop(&mut l.d.lab)?;
    let before = SystemTime::now();
    l.through(CLEAN_V4, 500)?;
    wait_for(Duration::from_secs(10), "the alert to be queued", || {
        let s = l.crowdsec_status()?;
        Ok(s["alerts_queued"].as_u64() == Some(1) && s["watcher_up"] == false)
    })?;
    assert!(
        l.d.state_dir().join("crowdsec-alerts.json").exists(),
        "an unsent alert is kept in the state dir"
    );
    // The daemon restarts during the outage; the LAPI comes back later.
    l.d.stop(Signal::SIGTERM)?;
    l.d.start()?;
    std::thread::sleep(Duration::from_secs(2));
    let back = SystemTime::now();
    l.lapi.restart(&mut l.d.lab)?;
    let alert = wait_alert(&l, CLEAN_V4, Duration::from_secs(30))?;
    let at = start_time(&alert)?;
    assert!(
        at + Duration::from_secs(1) >= before && at < back,
        "sent with the ban's own time ({:?}), not the time it was sent: {alert}",
        alert["start_at"]
    );
    wait_for(Duration::from_secs(10), "the queue to empty", || {
        Ok(l.crowdsec_status()?["alerts_queued"].as_u64() == Some(0))
    })?;
    assert!(!l.d.state_dir().join("crowdsec-alerts.json").exists());
    Ok(())
}
