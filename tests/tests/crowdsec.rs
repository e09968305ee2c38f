//! floodgate as a CrowdSec bouncer (issue "Fleet, part 1", item 1 and part of
//! 3), against a real LAPI (Debian's crowdsec 1.4.6) in the lab: `Ip`
//! decisions are source bans, `Range` decisions block the whole range, v4
//! and v6; a deleted decision is lifted; what is enforced stays enforced
//! while the daemon restarts and while the LAPI is down; a refused key is an
//! error in `status`, never a crash loop.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use floodgate_tests::{
    daemon::{DaemonLab, LIMITED},
    lab::{
        crowdsec::Lapi,
        traffic::{UdpSink, udp_send},
    },
};
use nix::sys::signal::Signal;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

/// The crawler's extra addresses: one each for an `Ip` and a `Range`
/// decision, v4 and v6, beside 198.18.1.2 and fd00:f100:1::2, which no
/// decision covers.
const BANNED_V4: &str = "198.18.1.3";
const RANGED_V4: &str = "198.18.1.130";
const RANGE_V4: &str = "198.18.1.128/25";
const BANNED_V6: &str = "fd00:f100:1::3";
const RANGED_V6: &str = "fd00:f100:1::1a0";
const RANGE_V6: &str = "fd00:f100:1::100/120";
const CLEAN_V4: &str = "198.18.1.2";
const CLEAN_V6: &str = "fd00:f100:1::2";

/// A daemon lab with a LAPI in a namespace of its own, linked to the edge on
/// 198.18.9.0/24 (floodgate does not filter that link), and a bouncer key.
struct CsLab {
    d: DaemonLab,
    lapi: Lapi,
    v4: UdpSink,
    v6: UdpSink,
}

fn config(lapi: &Lapi, key_file: &std::path::Path) -> String {
    // Limits off in effect (nothing here is over 200/s with its burst), so
    // every drop is a decision's.
    format!(
        "{LIMITED}\n[crowdsec]\nlapi_url = \"{}\"\nbouncer_key_file = \"{}\"\npoll = \"1s\"\n",
        lapi.url(),
        key_file.display()
    )
}

impl CsLab {
    fn new(tag: &str, key: Option<&str>) -> Result<CsLab> {
        let mut d = DaemonLab::new(tag, BIN, LIMITED)?;
        let lapi_ns = d.lab.add_ns("lapi")?;
        d.lab
            .link(&d.edge, &["198.18.9.1/24"], &lapi_ns, &["198.18.9.2/24"])?;
        let link = d.links[0].clone();
        d.crawler.add_addr(&link.b_if, &format!("{RANGED_V4}/24"))?;
        d.edge.add_addr(&link.a_if, "fd00:f100:1::1/64")?;
        for a in [CLEAN_V6, BANNED_V6, RANGED_V6] {
            d.crawler.add_addr(&link.b_if, &format!("{a}/64"))?;
        }
        // The crawler knows the edge's MAC: neighbour discovery from a
        // banned source would be dropped like the rest of its packets.
        d.crawler.ip(&[
            "-6",
            "neigh",
            "replace",
            "fd00:f100:1::1",
            "lladdr",
            &link.a_mac,
            "nud",
            "permanent",
            "dev",
            &link.b_if,
        ])?;
        let lapi = Lapi::start(&mut d.lab, &lapi_ns, "198.18.9.2".parse()?, 8080)?;
        let key = match key {
            Some(k) => k.to_owned(),
            None => lapi.add_bouncer("floodgate")?,
        };
        let key_file = d.state_dir().with_file_name("crowdsec.key");
        std::fs::write(&key_file, format!("{key}\n"))?;
        d.write_config(&config(&lapi, &key_file))?;
        let v4 = UdpSink::bind(&d.edge, "198.18.1.1:9000".parse()?)?;
        let v6 = UdpSink::bind(&d.edge, "[fd00:f100:1::1]:9000".parse()?)?;
        // IPv6 addresses are usable once duplicate address detection is done.
        wait_for(Duration::from_secs(5), "IPv6 addresses usable", || {
            Ok(d.crawler
                .run("ip", &["-6", "addr", "show", "tentative"])?
                .trim()
                .is_empty()
                && d.edge
                    .run("ip", &["-6", "addr", "show", "tentative"])?
                    .trim()
                    .is_empty())
        })?;
        Ok(CsLab { d, lapi, v4, v6 })
    }

    /// How many of `count` datagrams from `src` reach the edge.
    fn through(&self, src: &str, count: u64) -> Result<u64> {
        let ip: IpAddr = src.parse()?;
        let (sink, dst): (&UdpSink, SocketAddr) = if ip.is_ipv4() {
            (&self.v4, "198.18.1.1:9000".parse()?)
        } else {
            (&self.v6, "[fd00:f100:1::1]:9000".parse()?)
        };
        let before = sink.from(ip);
        udp_send(&self.d.crawler, ip, dst, count, 64, Some(20_000))?;
        sink.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
        Ok(sink.from(ip) - before)
    }

    fn crowdsec_status(&self) -> Result<Value> {
        Ok(self.d.json(&["status"])?["crowdsec"].clone())
    }

    /// Waits for the bouncer to hold `n` decisions after a successful pull.
    fn wait_held(&self, n: u64) -> Result<()> {
        wait_for(
            Duration::from_secs(15),
            &format!("{n} decisions held"),
            || {
                let s = self.crowdsec_status()?;
                let held: u64 = s["decisions"]
                    .as_object()
                    .map_or(0, |o| o.values().filter_map(Value::as_u64).sum());
                Ok(s["up"] == true && held == n)
            },
        )
    }
}

fn wait_for(max: Duration, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + max;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One scrape of the daemon's metrics, inside the edge namespace.
fn scrape(edge: &floodgate_tests::lab::Ns) -> Result<String> {
    use std::io::{Read as _, Write as _};
    edge.enter(|| -> Result<String> {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9470")?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?
}

fn listed<'a>(list: &'a Value, key: &str, target: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e[key] == target)
}

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
    let mut l = CsLab::new("csbnc", None)?;
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
    let mut l = CsLab::new("csrst", None)?;
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
    let mut l = CsLab::new("cskey", Some("not-a-key-of-this-lapi"))?;
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
