//! Packet parsing: one small function per header, each advancing a cursor with an
//! explicit bounds check the verifier can follow. Loops have named, constant bounds.

use aya_ebpf::programs::XdpContext;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// VLAN tags followed: 802.1Q inside 802.1ad (QinQ) is the deepest we expect.
pub const MAX_VLAN_DEPTH: usize = 2;
/// IPv6 extension headers walked to find the transport header. RFC 8200 expects
/// at most one of each plus a second destination options header, but Linux
/// delivers UDP behind longer chains (8 and 12 destination options were seen to
/// reach a socket): a longer chain is not malformed, its packet is decided by
/// its source alone (`Packet::opaque`).
pub const MAX_IPV6_EXT: usize = 16;

/// The transport header must start within this many bytes of the frame (a mask:
/// 2^14 − 1, beyond any MTU XDP sees); a longer IPv6 header chain is decided by
/// its source alone.
const MAX_L4_OFFSET: usize = 0x3fff;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_AH: u8 = 51;
/// Mobility (RFC 6275), HIP (RFC 7401) and Shim6 (RFC 5533): extension headers
/// with the same next-header / length-in-8-octets layout as destination options.
const IPPROTO_MH: u8 = 135;
const IPPROTO_HIP: u8 = 139;
const IPPROTO_SHIM6: u8 = 140;

/// What the decision needs to know about an IP packet.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Packet {
    /// Source address, IPv4 mapped into IPv6: its 16 bytes in network order,
    /// held as two words (the decision's `src_bytes`). As a byte array LLVM
    /// kept each byte in a register of its own across the parser's paths and
    /// spilled them: ~40 ns on every packet.
    pub src: [u64; 2],
    pub is_v6: bool,
    pub proto: u8,
    /// Destination port (host order), 0 where the protocol has none.
    pub dport: u16,
    /// TCP SYN without ACK: a new connection.
    pub syn: bool,
    /// Non-first fragment: no L4 header to read.
    pub fragment: bool,
    /// The source was read but not the transport header (a truncated one, an
    /// extension chain longer than [`MAX_IPV6_EXT`]): the packet is still
    /// decided by its source — block list, bans, limits — and counted as
    /// malformed; it is never passed for free.
    pub opaque: bool,
    /// Set by the IP parsers once `src` holds the source address.
    pub src_read: bool,
}

/// The second word of `::ffff:a.b.c.d` for the IPv4 address `v4` as read
/// from the packet (its bytes in memory order).
#[inline(always)]
const fn mapped_tail(v4: u32) -> u64 {
    let a = v4.to_ne_bytes();
    u64::from_ne_bytes([0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]])
}

/// Parse outcome for frames that are not a well-formed IP packet.
pub enum ParseError {
    /// Not IPv4/IPv6 (ARP, LLDP, …): passes, counted as `non_ip`.
    NonIp,
    /// Truncated or malformed IP: counted as `malformed`, verdict per settings.
    Malformed,
}

/// The one bounds-checked accessor: a pointer to a `T` at `offset`, or an error
/// if the packet is too short.
///
/// It reads the context's packet pointers afresh each time (volatile, so LLVM
/// does not keep one load for the whole parser). A packet pointer carried from
/// one header to the next brings the length the verifier proved on that path;
/// that differs on every path through VLAN tags and extension headers and keeps
/// the verifier from merging them, so a 16-header walk passed its
/// million-instruction limit. A fresh pointer has proven nothing yet: every path
/// reaches the next header in the same state. Two loads per header.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ParseError> {
    // SAFETY: `ctx.ctx` is the program's live xdp_md.
    let (start, end) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&raw const (*ctx.ctx).data_end) as usize,
        )
    };
    if start + offset + size_of::<T>() > end {
        return Err(ParseError::Malformed);
    }
    Ok((start + offset) as *const T)
}

/// Reads a big-endian u16 at `offset`.
#[inline(always)]
fn be16_at(ctx: &XdpContext, offset: usize) -> Result<u16, ParseError> {
    let p: *const [u8; 2] = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked that two bytes at `p` lie inside the packet.
    Ok(u16::from_be_bytes(unsafe { *p }))
}

/// Ethernet and up to [`MAX_VLAN_DEPTH`] VLAN tags. Returns the inner EtherType
/// and the offset of the network header.
#[inline(always)]
fn parse_eth(ctx: &XdpContext) -> Result<(u16, usize), ParseError> {
    // A frame shorter than an Ethernet header is not IP at all.
    let mut proto = be16_at(ctx, 12).map_err(|_| ParseError::NonIp)?;
    let mut off = EthHdr::LEN;
    for _ in 0..MAX_VLAN_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        // The tag's inner EtherType sits after its 2-byte TCI.
        proto = be16_at(ctx, off + 2)?;
        off += VlanHdr::LEN;
    }
    Ok((proto, off))
}

/// IPv4: validates version and IHL ≥ 5, skips options, notes non-first fragments.
#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<usize, ParseError> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked the whole fixed header is inside the packet.
    let vihl = unsafe { (*ip).vihl };
    let ihl = (vihl & 0x0f) as usize;
    if vihl >> 4 != 4 || ihl < 5 {
        return Err(ParseError::Malformed);
    }
    // SAFETY: as above; an unaligned 4-byte read of the packet.
    let src = unsafe { core::ptr::read_unaligned((&raw const (*ip).src_addr).cast::<u32>()) };
    // `::ffff:a.b.c.d`: bytes 10 and 11 0xff, then the address (memory order).
    pkt.src = [0, mapped_tail(src)];
    pkt.src_read = true;
    // SAFETY: as above.
    pkt.proto = unsafe { (*ip).proto };
    // SAFETY: as above.
    let frags = u16::from_be_bytes(unsafe { (*ip).frags });
    pkt.fragment = frags & 0x1fff != 0;
    let l4 = off + ihl * 4;
    // Options must be inside the packet, or the header is truncated.
    if ctx.data() + l4 > ctx.data_end() {
        return Err(ParseError::Malformed);
    }
    Ok(l4)
}

/// `off & MAX_L4_OFFSET` for an `off` already checked to be at most that: a
/// no-op for the value, but the verifier then sees the offset in the same range
/// on every path through the extension chain and prunes them into one per
/// header, instead of following each combination of header kinds (which passes
/// its million-instruction limit at 16 headers). Inline assembly, because LLVM
/// would drop an `&` it can prove changes nothing.
#[inline(always)]
fn verifier_bound(off: usize) -> usize {
    #[cfg(target_arch = "bpf")]
    {
        let mut v = off as u64;
        // SAFETY: one ALU instruction on a register, no memory access.
        unsafe { core::arch::asm!("{0} &= 0x3fff", inout(reg) v, options(pure, nomem, nostack)) };
        v as usize
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        off & MAX_L4_OFFSET
    }
}

/// IPv6 and a bounded chain of extension headers. Returns the L4 offset.
#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<usize, ParseError> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked the fixed header is inside the packet.
    let vcf0 = unsafe { (*ip).vcf[0] };
    if vcf0 >> 4 != 6 {
        return Err(ParseError::Malformed);
    }
    // SAFETY: as above; unaligned 8-byte reads of the packet.
    pkt.src = unsafe {
        let a = (&raw const (*ip).src_addr).cast::<u64>();
        [
            core::ptr::read_unaligned(a),
            core::ptr::read_unaligned(a.add(1)),
        ]
    };
    pkt.src_read = true;
    pkt.is_v6 = true;
    // SAFETY: as above.
    let mut next = unsafe { (*ip).next_hdr };
    let mut cur = off + Ipv6Hdr::LEN;
    for _ in 0..MAX_IPV6_EXT {
        let step = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MH | IPPROTO_HIP
            | IPPROTO_SHIM6 => {
                let h: *const [u8; 2] = ptr_at(ctx, cur)?;
                // SAFETY: ptr_at checked both bytes.
                let [nh, len] = unsafe { *h };
                next = nh;
                (len as usize + 1) * 8
            }
            IPPROTO_AH => {
                // The authentication header counts its length in 4-byte units, minus 2.
                let h: *const [u8; 2] = ptr_at(ctx, cur)?;
                // SAFETY: ptr_at checked both bytes.
                let [nh, len] = unsafe { *h };
                next = nh;
                (len as usize + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let h: *const [u8; 4] = ptr_at(ctx, cur)?;
                // SAFETY: ptr_at checked the four bytes.
                let [nh, _, off_hi, off_lo] = unsafe { *h };
                next = nh;
                if u16::from_be_bytes([off_hi, off_lo]) & 0xfff8 != 0 {
                    pkt.fragment = true;
                }
                8
            }
            _ => {
                pkt.proto = next;
                return Ok(cur);
            }
        };
        let end = cur + step;
        if end > MAX_L4_OFFSET {
            return Err(ParseError::Malformed);
        }
        cur = verifier_bound(end);
    }
    // The last header walked may be followed by the transport header itself.
    if !matches!(
        next,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_DSTOPTS
            | IPPROTO_MH
            | IPPROTO_HIP
            | IPPROTO_SHIM6
            | IPPROTO_AH
            | IPPROTO_FRAGMENT
    ) {
        pkt.proto = next;
        return Ok(cur);
    }
    // A longer chain than we walk: the caller decides it by its source.
    Err(ParseError::Malformed)
}

/// L4: destination port and the SYN-without-ACK flag.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<(), ParseError> {
    if pkt.fragment {
        return Ok(());
    }
    match pkt.proto {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, off)?;
            // SAFETY: ptr_at checked the whole TCP header.
            pkt.dport = u16::from_be_bytes(unsafe { (*tcp).dest });
            // Flags are byte 13 of the TCP header: SYN 0x02, ACK 0x10. Read through
            // the checked header pointer: a second bounds check at a variable
            // offset is one the verifier cannot always follow.
            // SAFETY: ptr_at checked all 20 bytes of the header, byte 13 included.
            let flags = unsafe { *tcp.cast::<u8>().add(13) };
            pkt.syn = flags & 0x12 == 0x02;
        }
        IPPROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, off)?;
            // SAFETY: ptr_at checked the whole UDP header.
            pkt.dport = u16::from_be_bytes(unsafe { (*udp).dst });
        }
        _ => {}
    }
    Ok(())
}

/// Parses the frame down to what the limiter needs.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, ParseError> {
    let (ether_type, off) = parse_eth(ctx)?;
    let mut pkt = Packet {
        src: [0; 2],
        is_v6: false,
        proto: 0,
        dport: 0,
        syn: false,
        fragment: false,
        opaque: false,
        src_read: false,
    };
    let l4 = match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, off, &mut pkt),
        ETH_P_IPV6 => parse_ipv6(ctx, off, &mut pkt),
        _ => return Err(ParseError::NonIp),
    };
    // `Malformed` is only for frames whose source could not be read: once it
    // was, every later problem still leaves the packet to be decided by it.
    if !pkt.src_read {
        return Err(ParseError::Malformed);
    }
    match l4 {
        Ok(l4) => {
            if parse_l4(ctx, l4, &mut pkt).is_err() {
                pkt.opaque = true;
            }
        }
        Err(_) => pkt.opaque = true,
    }
    Ok(pkt)
}
