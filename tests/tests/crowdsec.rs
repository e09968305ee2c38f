//! floodgate as a CrowdSec bouncer (issue "Fleet, part 1", item 1 and part of
//! 3), against a real LAPI (Debian's crowdsec 1.4.6) in the lab: `Ip`
//! decisions are source bans, `Range` decisions block the whole range, v4
//! and v6; a deleted decision is lifted; what is enforced stays enforced
//! while the daemon restarts and while the LAPI is down; a refused key is an
//! error in `status`, never a crash loop.

use std::time::Duration;

use anyhow::{Context as _, Result};
use floodgate_tests::{
    daemon::LIMITED,
    fleet::{
        BANNED_V4, BANNED_V6, CLEAN_V4, CLEAN_V6, CsLab, RANGE_V4, RANGE_V6, RANGED_V4, RANGED_V6,
        listed, scrape, wait_for,
    },
    lab::crowdsec::Lapi,
};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

fn decisions(lapi: &Lapi) -> Result<()> {
    lapi.add_decision(BANNED_V4, "1h", "lab scraper")?;
    // A second decision on one value: the stream sends the one ending last,
    // and a delete of the value names the other one's id only (1.4.6).
    lapi.add_decision(BANNED_V4, "30m", "lab scraper again")?;
    lapi.add_decision(BANNED_V6, "1h", "lab scraper v6")?;
    lapi.add_decision(RANGE_V4, "2h", "lab range")?;
    lapi.add_decision(RANGE_V6, "2h", "lab range v6")?;
    Ok(())
}

#[test]
fn ip_and_range_decisions_are_enforced_listed_and_lifted() -> Result<()> {
    let mut l = CsLab::new("csbnc", BIN, LIMITED, None, false)?;
    decisions(&l.lapi)?;
    l.d.extra_args = vec!["--metrics".into(), "127.0.0.1:9470".into()];
    l.d.start()?;
    l.wait_held(4)?;
    let metrics = scrape(&l.d.edge)?;
    for line in [
        "floodgate_crowdsec_up 1",
        "floodgate_crowdsec_decisions{origin=\"cscli\"} 4",
        "floodgate_crowdsec_enforced{as=\"ban\"} 2",
        "floodgate_crowdsec_enforced{as=\"block\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    for src in [BANNED_V4, RANGED_V4, BANNED_V6, RANGED_V6] {
        assert_eq!(l.through(src, 30)?, 0, "{src} has a decision");
    }
    for src in [CLEAN_V4, CLEAN_V6] {
        assert_eq!(l.through(src, 30)?, 30, "{src} has none");
    }
    // Listed with their origin: addresses as bans, ranges as blocks.
    let bans = l.d.json(&["bans", "list"])?;
    for target in ["198.18.1.3/32", "fd00:f100:1::3/128"] {
        let b = listed(&bans, "target", target).with_context(|| format!("{target} in {bans}"))?;
        assert_eq!(b["origin"], "crowdsec:cscli", "{b}");
        assert!(
            b["scenario"]
                .as_str()
                .is_some_and(|s| s.starts_with("lab scraper")),
            "{b}"
        );
        assert_eq!(
            b["offenses"], 0,
            "a remote decision is no offence of floodgate's: {b}"
        );
        let left = b["remaining_secs"].as_f64().unwrap_or(0.0);
        assert!((3500.0..=3600.0).contains(&left), "its remaining time: {b}");
    }
    let blocks = l.d.json(&["block", "list"])?;
    for cidr in [RANGE_V4, RANGE_V6] {
        let e = listed(&blocks, "cidr", cidr).with_context(|| format!("{cidr} in {blocks}"))?;
        assert_eq!(e["origin"], "crowdsec:cscli", "{e}");
        assert!(
            e["scenario"]
                .as_str()
                .is_some_and(|s| s.starts_with("lab range")),
            "{e}"
        );
        let left = e["expires_in_secs"].as_u64().unwrap_or(0);
        assert!((7100..=7200).contains(&left), "its remaining time: {e}");
    }
    // Deleted at the LAPI: lifted at the next pull, the others stay.
    l.lapi.delete_decisions(BANNED_V4)?;
    l.lapi.delete_decisions(RANGE_V6)?;
    l.wait_held(2)?;
    assert_eq!(l.through(BANNED_V4, 30)?, 30, "lifted");
    assert_eq!(l.through(RANGED_V6, 30)?, 30, "lifted");
    assert_eq!(l.through(BANNED_V6, 30)?, 0, "still banned");
    assert_eq!(l.through(RANGED_V4, 30)?, 0, "still blocked");
    assert!(listed(&l.d.json(&["bans", "list"])?, "target", "198.18.1.3/32").is_none());
    assert!(listed(&l.d.json(&["block", "list"])?, "cidr", RANGE_V6).is_none());
    Ok(())
}

#[test]
fn decisions_hold_across_a_restart_and_an_outage_then_resync() -> Result<()> {
    let mut l = CsLab::new("csrst", BIN, LIMITED, None, false)?;
    decisions(&l.lapi)?;
    l.d.start()?;
    l.wait_held(4)?;
    // The daemon stops; the kernel goes on enforcing.
    l.d.stop(Signal::SIGTERM)?;
    for src in [BANNED_V4, RANGED_V6] {
        assert_eq!(l.through(src, 30)?, 0, "{src} while the daemon is down");
    }
    // It starts with the LAPI down: the saved decisions stay enforced (the
    // start rewrites the block list), and status says the LAPI is down.
    l.lapi.stop(&mut l.d.lab)?;
    l.d.start()?;
    wait_for(
        Duration::from_secs(10),
        "the bouncer to report the LAPI down",
        || {
            let s = l.crowdsec_status()?;
            Ok(s["up"] == false && s["last_error"].is_string())
        },
    )?;
    for src in [BANNED_V4, RANGED_V4, BANNED_V6, RANGED_V6] {
        assert_eq!(l.through(src, 30)?, 0, "{src} while the LAPI is down");
    }
    // Meanwhile one decision went at the LAPI, one came: the first pull
    // after the outage replaces the whole copy.
    l.lapi.restart(&mut l.d.lab)?;
    l.lapi.delete_decisions(RANGE_V4)?;
    l.lapi.add_decision(CLEAN_V4, "1h", "late")?;
    l.wait_held(4)?;
    assert_eq!(l.through(RANGED_V4, 30)?, 30, "deleted during the outage");
    assert_eq!(l.through(CLEAN_V4, 30)?, 0, "added during the outage");
    assert_eq!(l.through(CLEAN_V6, 30)?, 30);
    Ok(())
}

#[test]
fn a_refused_key_is_an_error_in_status_and_filtering_goes_on() -> Result<()> {
    let mut l = CsLab::new("cskey", BIN, LIMITED, Some("not-a-key-of-this-lapi"), false)?;
    l.d.start()?;
    wait_for(Duration::from_secs(10), "the refusal in status", || {
        let s = l.crowdsec_status()?;
        Ok(s["auth_failed"] == true)
    })?;
    let s = l.crowdsec_status()?;
    let error = s["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("403") && error.contains("cscli bouncers add"),
        "{s}"
    );
    // Still running, still filtering: a block added now is enforced.
    l.d.ok(&["block", "add", CLEAN_V4])?;
    assert_eq!(l.through(CLEAN_V4, 20)?, 0);
    assert!(l.d.daemon_log().contains("refused the bouncer key"));
    Ok(())
}

/// A remote decision is no offence of floodgate's: after one on a source,
/// the source's first own ban is the base ban, not an escalated one.
#[test]
fn a_remote_ban_never_escalates_floodgate_s_own() -> Result<()> {
    let policy = floodgate_tests::daemon::with_ban("10m");
    let mut l = CsLab::new("csesc", BIN, &policy, None, false)?;
    l.lapi.add_decision(CLEAN_V4, "4h", "remote")?;
    l.d.start()?;
    l.wait_held(1)?;
    assert_eq!(l.through(CLEAN_V4, 30)?, 0, "banned by the decision");
    l.lapi.delete_decisions(CLEAN_V4)?;
    l.wait_held(0)?;
    assert_eq!(l.through(CLEAN_V4, 30)?, 30, "lifted");
    // Over its limit (200/s, burst 50): floodgate's own first ban.
    l.through(CLEAN_V4, 500)?;
    std::thread::sleep(Duration::from_millis(300));
    let bans = l.d.json(&["bans", "list"])?;
    let b = listed(&bans, "target", "198.18.1.2/32").with_context(|| format!("{bans}"))?;
    assert_eq!(b["offenses"], 1, "{b}");
    assert_eq!(
        b["duration_secs"].as_f64(),
        Some(600.0),
        "the base ban, not 4 h × 2: {b}"
    );
    assert!(b.get("origin").is_none(), "{b}");
    Ok(())
}
