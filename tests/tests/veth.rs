//! Real packets through veth in a lab: the program attached to the edge side
//! counts every source and drops what the policy says.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};
use floodgate::{
    addr::lpm_key,
    loader::{AttachMode, Capacity, Floodgate},
};
use floodgate_common::{BlockEntry, Policy, Reason, Verdict};
use floodgate_tests::{
    dut::{per_sec, settings},
    lab::{EdgeNet, Lab, Ns, traffic},
    packets::ip,
};

/// edge ⟷ crawler (198.18.1.0/24) and edge ⟷ user (198.18.2.0/24), the
/// program attached to both edge ends. Fields drop in order: the program
/// detaches before the lab goes.
struct Edge {
    fg: Floodgate,
    edge: Ns,
    crawler: Ns,
    user: Ns,
    _lab: Lab,
}

fn edge_lab(tag: &str, policy: Policy) -> Result<Edge> {
    let mut lab = Lab::new(tag)?;
    let net = EdgeNet::build(&mut lab)?;
    let ifaces = net.edge_ifaces();
    let EdgeNet {
        edge,
        crawler,
        user,
        ..
    } = net;
    let fg = edge.enter(move || -> Result<Floodgate> {
        let mut fg = Floodgate::load(Capacity::new(4096, 4096, 4096, 1024), None)?;
        fg.write_settings(&settings())?;
        fg.write_policies(&[policy], 0)?;
        for iface in &ifaces {
            fg.attach(iface, AttachMode::Auto)?;
        }
        Ok(fg)
    })??;
    Ok(Edge {
        fg,
        edge,
        crawler,
        user,
        _lab: lab,
    })
}

#[test]
fn counts_every_source_and_drops_blocked_ones() -> Result<()> {
    let mut e = edge_lab("found", Policy::default())?;
    let blocked = ip("198.18.1.3");
    e.fg.sync_block(&[(lpm_key(&blocked.into()), BlockEntry { expires_ns: 0 })])?;
    let sink = traffic::UdpSink::bind(&e.edge, "0.0.0.0:9000".parse()?)?;
    let to_c: SocketAddr = "198.18.1.1:9000".parse()?;
    let to_u: SocketAddr = "198.18.2.1:9000".parse()?;

    let sent_ok = traffic::udp_send(&e.crawler, ip("198.18.1.2"), to_c, 300, 100, Some(20_000))?;
    let sent_blocked = traffic::udp_send(&e.crawler, blocked, to_c, 300, 100, Some(20_000))?;
    let sent_user = traffic::udp_send(&e.user, ip("198.18.2.2"), to_u, 100, 100, None)?;
    let pings = traffic::ping(&e.user, ip("198.18.2.1"), 5)?;
    sink.wait_quiet(Duration::from_millis(300), Duration::from_secs(5));

    assert_eq!(
        sink.from(ip("198.18.1.2")),
        sent_ok,
        "the normal source loses nothing"
    );
    assert_eq!(sink.from(blocked), 0, "the blocked source reaches nothing");
    assert_eq!(sink.from(ip("198.18.2.2")), sent_user);
    assert_eq!(pings, 5, "ICMP passes");

    let src =
        e.fg.source(ip("198.18.1.2"))?
            .context("crawler source tracked")?;
    assert_eq!(
        src.packets, sent_ok,
        "per-source counter equals packets sent"
    );
    assert_eq!(src.bytes, sent_ok * (14 + 20 + 8 + 100));
    let user = e.fg.source(ip("198.18.2.2"))?.context("user tracked")?;
    assert_eq!(user.packets, sent_user + 5, "UDP and ICMP of the user");
    let stats = floodgate::stats::Stats::from_counters(&e.fg.counters()?, false);
    assert_eq!(
        stats.packets(Reason::Blocklist, Verdict::Drop),
        sent_blocked
    );
    Ok(())
}

#[test]
fn an_over_limit_source_is_cut_to_its_limit_and_others_lose_nothing() -> Result<()> {
    const RATE: u64 = 1000;
    const BURST: u64 = 100;
    let e = edge_lab(
        "limit",
        Policy {
            packets: per_sec(RATE, BURST),
            ..Policy::default()
        },
    )?;
    let sink = traffic::UdpSink::bind(&e.edge, "0.0.0.0:9000".parse()?)?;
    let (flood_ns, user_ns) = (e.crawler.clone(), e.user.clone());
    // The flood's span, timed around its sends: the tables keep when a
    // source was seen to a tick (67 ms), too coarse for this bound.
    let flood = std::thread::spawn(move || {
        let start = floodgate_tests::dut::monotonic_ns();
        let sent = traffic::udp_send(
            &flood_ns,
            ip("198.18.1.2"),
            "198.18.1.1:9000".parse().expect("literal"),
            8000,
            64,
            Some(8000),
        )?;
        anyhow::Ok((sent, floodgate_tests::dut::monotonic_ns() - start))
    });
    let normal = traffic::udp_send(
        &user_ns,
        ip("198.18.2.2"),
        "198.18.2.1:9000".parse()?,
        400,
        64,
        Some(400),
    )?;
    let (flooded, span_ns) = flood
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
    sink.wait_quiet(Duration::from_millis(300), Duration::from_secs(5));

    e.fg.source(ip("198.18.1.2"))?
        .context("flood source tracked")?;
    let secs = span_ns as f64 / 1e9;
    let allowed = BURST as f64 + RATE as f64 * secs;
    let got = sink.from(ip("198.18.1.2")) as f64;
    println!("flood: sent {flooded} over {secs:.2}s, received {got}, limit allows {allowed:.0}");
    assert!(
        flooded as f64 > 3.0 * allowed,
        "the flood must be well over its limit"
    );
    assert!(
        (got - allowed).abs() <= allowed * 0.05 + 5.0,
        "received {got}, limit allows {allowed:.0}"
    );
    assert_eq!(
        sink.from(ip("198.18.2.2")),
        normal,
        "the user under the limit loses nothing"
    );
    Ok(())
}
