//! No header layout gets a block-listed source past the program to a real
//! socket (issue "Data plane: no way around the limiter", item 1): frames sent
//! through a veth into a namespace with UDP sockets. First without the program,
//! to show Linux delivers each kind (so a frame the program let through would
//! arrive); then with the program and the sources block-listed: none arrives.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::Result;
use floodgate::{
    addr::lpm_key,
    loader::{AttachMode, Capacity, Floodgate},
};
use floodgate_common::{BlockEntry, Policy, Reason, Verdict};
use floodgate_tests::{
    crawl::raw::{mac_bytes, send_frames},
    dut::settings,
    lab::{Lab, traffic::UdpSink},
    packets::{ipv4_udp_with_options, ipv6_udp_behind},
};

const DSTOPTS: u8 = 60;
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const PORT: u16 = 9053;

/// Each frame with its own source inside the blocked ranges, so the sockets
/// tell which kinds arrived.
fn frames() -> Vec<(String, IpAddr, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, n) in [0usize, 7, 8, 12, 16, 32].into_iter().enumerate() {
        let src = Ipv6Addr::new(0xfd00, 0xf100, 0x66, 0, 0, 0, 0, 0x10 + i as u16);
        let chain = vec![DSTOPTS; n];
        out.push((
            format!("{n} destination options"),
            src.into(),
            ipv6_udp_behind(src, &chain, PORT),
        ));
    }
    let src = Ipv6Addr::new(0xfd00, 0xf100, 0x66, 0, 0, 0, 0, 0x20);
    out.push((
        "hop-by-hop, routing, fragment".into(),
        src.into(),
        ipv6_udp_behind(src, &[HOPOPTS, ROUTING, FRAGMENT], PORT),
    ));
    for (i, words) in [1u8, 5, 10].into_iter().enumerate() {
        let src = Ipv4Addr::new(198, 18, 66, 10 + i as u8);
        out.push((
            format!("{words} words of IPv4 options"),
            src.into(),
            ipv4_udp_with_options(src, words, PORT),
        ));
    }
    out
}

/// How many copies of each frame are sent per phase.
const COPIES: usize = 5;

#[test]
fn no_header_chain_carries_a_blocked_source_to_a_socket() -> Result<()> {
    let mut lab = Lab::new("bypass")?;
    let edge = lab.add_ns("edge")?;
    let peer = lab.add_ns("peer")?;
    let link = lab.link(
        &edge,
        &["198.18.0.1/24", "fd00:f100::1/64"],
        &peer,
        &["198.18.0.2/24", "fd00:f100::2/64"],
    )?;
    // One dual-stack socket: IPv4 peers arrive as ::ffff:a.b.c.d, which the
    // sink counts under the IPv4 address.
    let sink = UdpSink::bind(&edge, format!("[::]:{PORT}").parse()?)?;
    let count = |src: IpAddr| sink.from(src);
    let edge_mac = mac_bytes(&link.a_mac)?;
    let send = || -> Result<()> {
        let mut all = Vec::new();
        for _ in 0..COPIES {
            all.extend(frames().into_iter().map(|f| f.2));
        }
        send_frames(&peer, &link.b_if, edge_mac, all)?;
        sink.wait_quiet(Duration::from_millis(300), Duration::from_secs(3));
        Ok(())
    };

    // 1. No program: what Linux delivers.
    send()?;
    let delivered: Vec<(String, IpAddr)> = frames()
        .into_iter()
        .filter(|(_, src, _)| count(*src) > 0)
        .map(|(what, src, _)| (what, src))
        .collect();
    let names: Vec<&str> = delivered.iter().map(|d| d.0.as_str()).collect();
    eprintln!("Linux delivers UDP behind: {names:?}");
    // The finding: UDP behind 8 and 12 destination-options headers
    // reaches the socket; and so do IPv4 options.
    for needed in [
        "8 destination options",
        "12 destination options",
        "5 words of IPv4 options",
    ] {
        assert!(
            names.contains(&needed),
            "Linux did not deliver {needed:?}: {names:?}"
        );
    }

    // 2. The program on the edge side, every frame's source block-listed.
    let ifname = link.a_if.clone();
    let fg = edge.enter(move || -> Result<Floodgate> {
        let mut fg = Floodgate::load(Capacity::new(1024, 1024, 1024, 64), None)?;
        fg.write_settings(&settings())?;
        fg.write_policies(&[Policy::default()], 0)?;
        fg.sync_block(&[
            (
                lpm_key(&"198.18.66.0/24".parse()?),
                BlockEntry { expires_ns: 0 },
            ),
            (
                lpm_key(&"fd00:f100:66::/48".parse()?),
                BlockEntry { expires_ns: 0 },
            ),
        ])?;
        fg.attach(&ifname, AttachMode::Auto)?;
        Ok(fg)
    })??;
    let before: Vec<u64> = delivered.iter().map(|d| count(d.1)).collect();
    send()?;
    for ((what, src), was) in delivered.iter().zip(before) {
        assert_eq!(
            count(*src),
            was,
            "a block-listed source behind {what} reached the socket"
        );
    }
    let stats = floodgate::stats::Stats::from_counters(&fg.counters()?, false);
    assert_eq!(
        stats.packets(Reason::Blocklist, Verdict::Drop),
        (COPIES * frames().len()) as u64,
        "every frame of the second round is a block-list drop"
    );
    drop(fg);
    Ok(())
}
