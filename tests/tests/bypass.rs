//! No way around the block list, bans and limits (issue "Data plane: no way
//! around the limiter"): every packet whose source address was read is decided
//! by that source, whatever follows the IP header. Each frame here comes from a
//! block-listed source and must be dropped; on the program before this change,
//! a chain of 8 or more destination-options headers was `malformed` and passed
//! before the block list was consulted.

use anyhow::Result;
use floodgate_common::{BlockEntry, PortKey, Reason, SETTINGS_PORTS_SCOPED, Verdict};
use floodgate_tests::{
    dut::{Dut, XDP_DROP, XDP_PASS, settings},
    packets::{ipv4_fragment, ipv4_udp_with_options, ipv6_fragment, ipv6_udp_behind},
};

const DSTOPTS: u8 = 60;
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const MOBILITY: u8 = 135;

/// The program with 198.18.66.0/24 and fd00:f100:66::/48 block-listed and the
/// limits scoped to udp/53 (so out-of-scope traffic would otherwise pass).
fn blocking_dut() -> Result<Dut> {
    let mut dut = Dut::load()?;
    let mut s = settings();
    s.flags |= SETTINGS_PORTS_SCOPED;
    dut.configure(&s, &[floodgate_common::Policy::default()])?;
    dut.fg.sync_ports(&[PortKey {
        proto: 17,
        port: 53,
    }])?;
    let cidr = |c: &str| floodgate::addr::lpm_key(&c.parse().expect("a CIDR literal"));
    dut.fg.sync_block(&[
        (cidr("198.18.66.0/24"), BlockEntry { expires_ns: 0 }),
        (cidr("fd00:f100:66::/48"), BlockEntry { expires_ns: 0 }),
    ])?;
    Ok(dut)
}

fn blocked_v6() -> std::net::Ipv6Addr {
    "fd00:f100:66::9".parse().expect("literal")
}

#[test]
fn destination_options_chains_of_any_length_are_blocked() -> Result<()> {
    let dut = blocking_dut()?;
    for n in [0, 7, 8, 12, 16, 32] {
        let frame = ipv6_udp_behind(blocked_v6(), &vec![DSTOPTS; n], 53);
        assert_eq!(
            dut.run(&frame)?,
            XDP_DROP,
            "a block-listed source behind {n} destination-options headers"
        );
    }
    assert_eq!(dut.count(Verdict::Drop, Reason::Blocklist)?, 6);
    Ok(())
}

#[test]
fn mobility_and_mixed_chains_are_blocked() -> Result<()> {
    let dut = blocking_dut()?;
    for chain in [
        vec![MOBILITY],
        vec![HOPOPTS, ROUTING, FRAGMENT],
        vec![HOPOPTS, DSTOPTS, ROUTING, FRAGMENT, DSTOPTS, MOBILITY],
    ] {
        let frame = ipv6_udp_behind(blocked_v6(), &chain, 53);
        assert_eq!(dut.run(&frame)?, XDP_DROP, "block-listed behind {chain:?}");
    }
    assert_eq!(dut.run(&ipv6_fragment(blocked_v6()))?, XDP_DROP);
    Ok(())
}

#[test]
fn ipv4_options_and_fragments_are_blocked() -> Result<()> {
    let dut = blocking_dut()?;
    let src = "198.18.66.9".parse().expect("literal");
    for words in [1, 5, 10] {
        assert_eq!(
            dut.run(&ipv4_udp_with_options(src, words, 53))?,
            XDP_DROP,
            "{words} words of IPv4 options"
        );
    }
    assert_eq!(dut.run(&ipv4_fragment(src))?, XDP_DROP);
    Ok(())
}

/// Past the headers the program walks, a packet is still limited by its source
/// (here: one packet, then the bucket is spent) and counted as malformed.
#[test]
fn a_chain_too_long_to_walk_is_still_limited_by_its_source() -> Result<()> {
    let mut dut = Dut::load()?;
    let policy = floodgate_common::Policy {
        packets: floodgate_tests::dut::per_sec(1, 1),
        ..floodgate_common::Policy::default()
    };
    dut.configure(&settings(), &[policy])?;
    let src: std::net::Ipv6Addr = "fd00:f100:67::9".parse().expect("literal");
    let frame = ipv6_udp_behind(src, &[DSTOPTS; 32], 53);
    assert_eq!(dut.run(&frame)?, XDP_PASS);
    assert_eq!(dut.count(Verdict::Pass, Reason::Malformed)?, 1);
    assert_eq!(dut.run(&frame)?, XDP_DROP);
    assert_eq!(dut.count(Verdict::Drop, Reason::RatePackets)?, 1);
    // Walked headers reach the port: 16 destination options, then UDP.
    let walked = ipv6_udp_behind("fd00:f100:67::10".parse()?, &[DSTOPTS; 16], 53);
    assert_eq!(dut.run(&walked)?, XDP_PASS);
    assert_eq!(dut.count(Verdict::Pass, Reason::Ok)?, 1);
    Ok(())
}
