//! The decision: block list → allow list → bans → port scope → limits → pass.
//! Each step's mechanics live in their own module (`bans`, `track`, `limits`,
//! `counters`); this file is the order.

use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, maps::lpm_trie::Key, programs::XdpContext};
use aya_log_ebpf::info;
use floodgate_common::{
    BAN_WOULD, BanKey, POLICY_MONITOR, PortKey, Reason, SETTINGS_DROP_MALFORMED,
    SETTINGS_HAS_ALLOW, SETTINGS_HAS_BLOCK, SETTINGS_HAS_RULES, SETTINGS_MONITOR,
    SETTINGS_PORTS_SCOPED, SETTINGS_READY, Verdict,
    prefix::{mapped_prefix_len, mask, words_are_v4_mapped},
    set_table::{v4_key_of_word, v4_prefix_key},
};

use crate::{
    aggregate, ban_check,
    bans::{ban, bans_possible, observed_pps},
    limits::limits,
    maps::{ALLOW, BLOCK, POLICIES, PORTS, RULES, SETTINGS},
    parse::Packet,
    scratch::Scratch,
    track::{Place, account, prefix_entry, source_entry, tracked},
};

/// Verdict for malformed IP packets: pass (fail-open) unless configured to drop.
#[inline(always)]
pub fn malformed_verdict() -> Verdict {
    match SETTINGS.get(0) {
        Some(s) if s.flags & SETTINGS_DROP_MALFORMED != 0 => {
            drop_verdict(s.flags & SETTINGS_MONITOR != 0)
        }
        _ => Verdict::Pass,
    }
}

#[inline(always)]
pub(crate) fn drop_verdict(monitor: bool) -> Verdict {
    if monitor {
        Verdict::WouldDrop
    } else {
        Verdict::Drop
    }
}

/// True when `[limits] ports` covers this protocol and destination port (or the
/// protocol on every port).
#[inline(always)]
pub(crate) fn in_scope(proto: u8, dport: u16) -> bool {
    let exact = PortKey {
        proto: u16::from(proto),
        port: dport,
    };
    let any = PortKey {
        proto: u16::from(proto),
        port: 0,
    };
    // SAFETY: the references are only tested for presence.
    unsafe { PORTS.get(exact).is_some() || PORTS.get(any).is_some() }
}

/// The source address's 16 bytes.
#[inline(always)]
fn src_bytes(pkt: &Packet) -> [u8; 16] {
    // SAFETY: two u64s are 16 plain bytes; the words hold them in memory order.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(pkt.src) }
}

/// Whether the source is IPv4-mapped (`::ffff:a.b.c.d`), from the two words
/// the parser keeps it in: no memory read.
#[inline(always)]
fn src_is_v4_mapped(pkt: &Packet) -> bool {
    let b = pkt.src[1].to_ne_bytes();
    words_are_v4_mapped(pkt.src[0], u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The full decision for an IP packet.
/// `sc` is this CPU's scratch slot (from `scratch::settle`).
#[inline(always)]
pub fn decide(ctx: &XdpContext, sc: *mut Scratch, pkt: &Packet, len: u64) -> (Verdict, Reason) {
    let Some(settings) = SETTINGS.get(0) else {
        return (Verdict::Pass, Reason::Ok);
    };
    // Until userspace has written a policy, zeroed limits must not be enforced.
    if settings.flags & SETTINGS_READY == 0 {
        return (Verdict::Pass, Reason::Ok);
    }
    // The keys live in per-CPU scratch, not on the stack (see scratch.rs).
    // SAFETY: this CPU's scratch slot; the references below are its fields and
    // are only used within this decision.
    let (lpm, src_key, pfx_key, src_ban, pfx_ban) = unsafe {
        (*sc).lpm = Key::new(128, src_bytes(pkt));
        (
            &(*sc).lpm,
            &mut (*sc).src,
            &mut (*sc).pfx,
            &mut (*sc).src_ban,
            &mut (*sc).pfx_ban,
        )
    };

    let flags = settings.flags;

    // 1. Block list. (Empty tries are not looked up: each lookup costs ~25 ns.)
    // The clock is read only for an entry that expires: most never do, and the
    // block and allow paths then read no clock at all.
    if flags & SETTINGS_HAS_BLOCK != 0
        && let Some(b) = BLOCK.get(lpm)
        // SAFETY: helper without preconditions.
        && (b.expires_ns == 0 || b.expires_ns > unsafe { bpf_ktime_get_coarse_ns() })
    {
        return (Verdict::Drop, Reason::Blocklist);
    }
    // 2. Allow list: never limited.
    if flags & SETTINGS_HAS_ALLOW != 0 && ALLOW.get(lpm).is_some() {
        return (Verdict::Pass, Reason::Allowlist);
    }

    // One clock read for the rest of the decision, of the coarse clock:
    // CLOCK_MONOTONIC at the resolution of a kernel tick (1–10 ms), and far
    // cheaper than the fine clock, whose TSC read was a fifth of the
    // rate-limited path in `cargo xtask bench`'s profile. Ban expiry, the
    // buckets and the quotas all read it; a bucket refills a tick at a time,
    // which is why a burst must hold at least two ticks of its rate
    // (`config check` says so).
    // SAFETY: helper without preconditions.
    let coarse = unsafe { bpf_ktime_get_coarse_ns() };

    // The policy: a rule matching the source (most specific wins) or the
    // default, in the half of POLICIES the live configuration uses.
    let default = settings.default_policy;
    let slot = if flags & SETTINGS_HAS_RULES != 0 {
        RULES.get(lpm).copied().unwrap_or(default)
    } else {
        default
    };
    let Some(policy) = POLICIES.get(slot) else {
        return (Verdict::Pass, Reason::Ok);
    };
    // Monitor mode, global or the policy's, read back from memory: as a
    // constant (the two tests of `||`) it split every later path in two
    // for the verifier.
    let monitor = crate::scratch::opaque_flag(
        u32::from(settings.flags & SETTINGS_MONITOR != 0)
            | u32::from(policy.flags & POLICY_MONITOR != 0),
    );

    src_key.addr = src_bytes(pkt);
    // An IPv4-mapped IPv6 source is the IPv4 host (README "What the program decides").
    let v6 = pkt.is_v6 && !src_is_v4_mapped(pkt);
    let plen = mapped_prefix_len(v6, settings.prefix_v4, settings.prefix_v6);
    pfx_key.addr = mask(&src_bytes(pkt), plen);

    // 3. Bans of the source or of its prefix.
    *src_ban = BanKey::source(src_bytes(pkt));
    *pfx_ban = BanKey::prefix(pfx_key.addr, plen);
    let (src_key, pfx_key, src_ban, pfx_ban) = (&*src_key, &*pfx_key, &*src_ban, &*pfx_ban);
    // Where the source and its prefix are tracked: IPv4 in the set tables, by
    // a u32 key read from the parser's words (no memory read).
    let key4 = v4_key_of_word(pkt.src[1]);
    let src_place = Place {
        v6,
        key4,
        key6: src_key,
    };
    let pfx_place = Place {
        v6,
        key4: v4_prefix_key(key4, plen.saturating_sub(96)),
        key6: pfx_key,
    };
    // Whether a ban holds the packet (`ban_check`), looked at only while one
    // may be live anywhere (`bans_possible`); past that, only for a prefix
    // whose own horizon is open. Once bans are live somewhere (normal under
    // attack), the packets of prefixes with none skip both ban lookups.
    if bans_possible(settings, coarse)
        && ban_check::check(
            u64::from(pfx_place.key4) << 32 | u64::from(src_place.key4),
            v6,
            coarse,
            len,
            monitor,
        ) == ban_check::BANNED
    {
        return (drop_verdict(monitor), Reason::Banned);
    }

    // 4. Port scope, before anything is inserted or drawn from the new-source
    // budget: traffic the limits do not cover (udp/53 replies, ICMP "packet too
    // big") is never dropped by a limit and never fills SOURCES. Fragments and
    // opaque packets have no port to read and stay in scope.
    if flags & SETTINGS_PORTS_SCOPED != 0
        && !pkt.fragment
        && !pkt.opaque
        && !in_scope(pkt.proto, pkt.dport)
    {
        if let Some(s) = tracked(false, src_place, coarse) {
            account(s, len, false);
        }
        return (Verdict::Pass, Reason::Unscoped);
    }

    // 5. Limits.
    let now = coarse;
    let src = match source_entry(src_place, settings, now) {
        Ok(Some(p)) => p,
        // The map refused the entry (counted in map_update_errors): fail open.
        Ok(None) => return (Verdict::Pass, Reason::Ok),
        Err(()) => return (drop_verdict(monitor), Reason::NewSourceBudget),
    };
    let Some(pfx) = prefix_entry(pfx_place, settings, now) else {
        account(src, len, false);
        return (Verdict::Pass, Reason::Ok);
    };

    let mut over = limits(policy, src, pfx, pkt, len, now);
    // An aggregate rule's shared budget last (see `aggregate`).
    if over.is_none() && policy.aggregate_slot != 0 {
        over = match aggregate::charge(slot, pkt.syn, now) {
            aggregate::ADMITTED => None,
            r if r == Reason::AggregateSyn as u32 => Some(Reason::AggregateSyn),
            r if r == Reason::AggregateQuota as u32 => Some(Reason::AggregateQuota),
            _ => Some(Reason::AggregatePackets),
        };
    }
    match over {
        None => {
            account(src, len, false);
            account(pfx, len, false);
            if pkt.opaque {
                // Within every limit, but its transport header could not be
                // read: `malformed`, with that setting's verdict.
                let verdict = if flags & SETTINGS_DROP_MALFORMED != 0 {
                    drop_verdict(monitor)
                } else {
                    Verdict::Pass
                };
                return (verdict, Reason::Malformed);
            }
            let reason = if pkt.fragment {
                Reason::Fragment
            } else {
                Reason::Ok
            };
            (Verdict::Pass, reason)
        }
        Some(reason) => {
            account(src, len, true);
            account(pfx, len, true);
            // A ban made here raises its prefix's horizon (in `ban`), so
            // the prefix's packets look bans up until it ends.
            let cause = reason as u32 | if monitor { BAN_WOULD } else { 0 };
            if reason.is_aggregate() {
                // The shared budget drops the excess and bans no one: the
                // source is within its own limits.
            } else if reason.is_prefix() {
                if policy.prefix_ban_ns != 0 {
                    let pps = observed_pps(pfx, now);
                    ban(pfx_ban, policy.prefix_ban_ns, cause, pps, &pfx_place);
                }
            } else if policy.ban_ns != 0
                && ban(
                    src_ban,
                    policy.ban_ns,
                    cause,
                    observed_pps(src, now),
                    &pfx_place,
                )
                && !monitor
            {
                info!(ctx, "floodgate: banned a source for {}", reason as u32);
            }
            (drop_verdict(monitor), reason)
        }
    }
}
