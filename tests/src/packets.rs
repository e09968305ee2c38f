//! Synthetic frames for BPF_PROG_TEST_RUN, built with etherparse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpAuthHeader, IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv6Extensions,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
    PacketBuilderStep, VlanId,
};

pub(crate) const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub(crate) const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

pub use crate::handmade::{ipv4_udp_with_options, ipv6_udp_behind};

/// The L4 part of a frame.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Udp {
        dport: u16,
    },
    /// A TCP segment; `syn` without ACK is a new connection.
    Tcp {
        dport: u16,
        syn: bool,
        ack: bool,
    },
    Icmp,
}

/// VLAN tagging of a frame.
#[derive(Clone, Copy, Debug)]
pub enum Vlan {
    None,
    /// One 802.1Q tag.
    Single(u16),
    /// 802.1ad outer, 802.1Q inner (QinQ).
    Double(u16, u16),
}

/// Describes a frame; `build()` serialises it.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub payload: usize,
    pub vlan: Vlan,
    /// IPv6 only: add hop-by-hop, routing (+ final destination options),
    /// destination options, fragment (first fragment) and authentication headers.
    pub ipv6_ext: bool,
}

impl Frame {
    pub fn udp(src: IpAddr, dport: u16) -> Frame {
        Frame {
            dst: default_dst(src),
            src,
            l4: L4::Udp { dport },
            payload: 32,
            vlan: Vlan::None,
            ipv6_ext: false,
        }
    }

    pub fn syn(src: IpAddr, dport: u16) -> Frame {
        Frame {
            l4: L4::Tcp {
                dport,
                syn: true,
                ack: false,
            },
            payload: 0,
            ..Frame::udp(src, dport)
        }
    }

    pub fn tcp_ack(src: IpAddr, dport: u16) -> Frame {
        Frame {
            l4: L4::Tcp {
                dport,
                syn: false,
                ack: true,
            },
            ..Frame::udp(src, dport)
        }
    }

    pub fn icmp(src: IpAddr) -> Frame {
        Frame {
            l4: L4::Icmp,
            ..Frame::udp(src, 0)
        }
    }

    pub fn with_payload(mut self, payload: usize) -> Frame {
        self.payload = payload;
        self
    }

    pub fn with_vlan(mut self, vlan: Vlan) -> Frame {
        self.vlan = vlan;
        self
    }

    pub fn with_ipv6_ext(mut self) -> Frame {
        self.ipv6_ext = true;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(
                Ipv4Header::new(0, 64, IpNumber::UDP, s.octets(), d.octets())
                    .expect("a fixed, valid IPv4 header"),
                Ipv4Extensions::default(),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: 0,
                    flow_label: Default::default(),
                    payload_length: 0,
                    next_header: IpNumber::UDP,
                    hop_limit: 64,
                    source: s.octets(),
                    destination: d.octets(),
                },
                if self.ipv6_ext {
                    ipv6_extensions()
                } else {
                    Ipv6Extensions::default()
                },
            ),
            _ => panic!("source and destination must be of one family"),
        };
        let step = match self.vlan {
            Vlan::None => eth.ip(ip),
            Vlan::Single(id) => eth.single_vlan(vlan_id(id)).ip(ip),
            Vlan::Double(outer, inner) => eth.double_vlan(vlan_id(outer), vlan_id(inner)).ip(ip),
        };
        finish(step, self.l4, self.src.is_ipv6(), &vec![0x5a; self.payload])
    }
}

fn vlan_id(id: u16) -> VlanId {
    VlanId::try_new(id).expect("VLAN id below 4096")
}

fn finish(step: PacketBuilderStep<IpHeaders>, l4: L4, v6: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match l4 {
        L4::Udp { dport } => step.udp(40000, dport).write(&mut out, payload),
        L4::Tcp { dport, syn, ack } => {
            let mut t = step.tcp(40000, dport, 1, 65535);
            if syn {
                t = t.syn();
            }
            if ack {
                t = t.ack(1);
            }
            t.write(&mut out, payload)
        }
        L4::Icmp if v6 => step.icmpv6_echo_request(1, 1).write(&mut out, payload),
        L4::Icmp => step.icmpv4_echo_request(1, 1).write(&mut out, payload),
    }
    .expect("writing to a Vec cannot fail");
    out
}

/// Hop-by-hop, destination options, routing with final destination options,
/// an atomic fragment header and an authentication header: six extension headers.
fn ipv6_extensions() -> Ipv6Extensions {
    let raw = |n: IpNumber| Ipv6RawExtHeader::new_raw(n, &[0; 6]).expect("6-byte payload is valid");
    Ipv6Extensions {
        hop_by_hop_options: Some(raw(IpNumber::UDP)),
        destination_options: Some(raw(IpNumber::UDP)),
        routing: Some(Ipv6RoutingExtensions {
            routing: raw(IpNumber::UDP),
            final_destination_options: Some(raw(IpNumber::UDP)),
        }),
        // An atomic fragment (offset 0, no more fragments): the L4 header follows.
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::UDP,
            IpFragOffset::ZERO,
            false,
            7,
        )),
        auth: Some(IpAuthHeader::new(IpNumber::UDP, 1, 1, &[0; 4]).expect("valid auth header")),
    }
}

/// A non-first IPv4 fragment (offset 185 × 8 bytes): no L4 header inside.
pub fn ipv4_fragment(src: Ipv4Addr) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, src.octets(), [198, 18, 0, 1])
        .expect("a fixed, valid IPv4 header");
    ip.fragment_offset = IpFragOffset::try_new(185).expect("offset below 8192");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ip(IpHeaders::Ipv4(ip, Ipv4Extensions::default()))
        .write(&mut out, IpNumber::UDP, &[0x5a; 64])
        .expect("writing to a Vec cannot fail");
    out
}

/// A non-first IPv6 fragment.
pub fn ipv6_fragment(src: Ipv6Addr) -> Vec<u8> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: 0,
        next_header: IpNumber::UDP,
        hop_limit: 64,
        source: src.octets(),
        destination: "fd00:f100::1"
            .parse::<Ipv6Addr>()
            .expect("literal")
            .octets(),
    };
    let ext = Ipv6Extensions {
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::UDP,
            IpFragOffset::try_new(100).expect("offset below 8192"),
            true,
            9,
        )),
        ..Ipv6Extensions::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ip(IpHeaders::Ipv6(ip, ext))
        .write(&mut out, IpNumber::UDP, &[0x5a; 64])
        .expect("writing to a Vec cannot fail");
    out
}

/// An ARP request (not IP).
pub fn arp() -> Vec<u8> {
    let mut out = Vec::with_capacity(42);
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&0x0806u16.to_be_bytes());
    // htype 1, ptype IPv4, hlen 6, plen 4, op request, sender/target.
    out.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&[198, 18, 0, 2]);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[198, 18, 0, 1]);
    out
}

fn default_dst(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        IpAddr::V6(_) => "fd00:f100::1".parse().expect("literal"),
    }
}

/// Parses an address literal (test convenience).
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid address literal")
}
