//! The decision: block list → allow list → bans → limits → pass, with accounting.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use aya_log_ebpf::info;
use floodgate_common::{
    AddrKey, BAN_WOULD, Ban, BanKey, EVENT_BAN, EVENT_WOULD_BAN, Event, GlobalState,
    POLICY_MONITOR, Policy, PortKey, Reason, SETTINGS_DROP_MALFORMED, SETTINGS_HAS_ALLOW,
    SETTINGS_HAS_BLOCK, SETTINGS_HAS_RULES, SETTINGS_MONITOR, SETTINGS_PORTS_SCOPED,
    SETTINGS_READY, Settings, TrackState, Verdict, iface_counter_index,
    limit::{Escalation, PastBan, next_ban},
};

use crate::{
    atomic::Cell,
    bucket::{CAS_TRIES, Take, quota_refund, quota_take, refund, take},
    maps::{
        ALLOW, BANS, BLOCK, COUNTERS, EVENTS, GLOBAL_STATE, IFINDEX_SLOTS, POLICIES, PORTS,
        PREFIXES, RULES, SETTINGS, SOURCES,
    },
    parse::Packet,
    scratch::{fresh_entry, scratch},
};

/// The `COUNTERS` slot of the interface a packet came in on: 0 ("other") for an
/// interface the daemon did not give a slot, or an ifindex beyond the table.
#[inline(always)]
pub fn iface_slot(ctx: &XdpContext) -> u32 {
    // Lossless: xdp_md's ingress_ifindex is a u32 (usize is only aya's accessor
    // type). The lookup fails past the table's end; a stored slot out of range
    // is folded to 0 by `iface_counter_index`.
    let ifindex = ctx.ingress_ifindex() as u32;
    IFINDEX_SLOTS.get(ifindex).copied().unwrap_or(0)
}

/// Adds one packet to the per-CPU (interface, verdict, reason) counter. Per-CPU
/// slots are only touched by their own CPU with preemption off, so plain adds
/// are exact.
#[inline(always)]
pub fn count(iface_slot: u32, verdict: Verdict, reason: Reason, len: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(iface_counter_index(iface_slot, verdict, reason)) {
        // SAFETY: the pointer is a live per-CPU map value.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        }
    }
}

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
fn drop_verdict(monitor: bool) -> Verdict {
    if monitor {
        Verdict::WouldDrop
    } else {
        Verdict::Drop
    }
}

/// Masks a 16-byte address to its first `plen` bits (as two u64 halves: BPF has no
/// 128-bit shifts).
#[inline(always)]
fn mask(addr: &[u8; 16], plen: u32) -> [u8; 16] {
    let hi = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let keep = |bits: u32| -> u64 {
        if bits == 0 {
            0
        } else if bits >= 64 {
            u64::MAX
        } else {
            u64::MAX << (64 - bits)
        }
    };
    let plen = if plen > 128 { 128 } else { plen };
    let hi = hi & keep(if plen > 64 { 64 } else { plen });
    let lo = lo & keep(plen.saturating_sub(64));
    let h = hi.to_be_bytes();
    let l = lo.to_be_bytes();
    [
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5], l[6],
        l[7],
    ]
}

#[inline(always)]
fn global() -> Option<*mut GlobalState> {
    GLOBAL_STATE.get_ptr_mut(0)
}

/// Adds one to a GlobalState counter.
#[inline(always)]
fn bump(field: impl FnOnce(*mut GlobalState) -> *mut u64) {
    if let Some(g) = global() {
        // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
        unsafe { Cell::new(field(g)) }.add(1);
    }
}

/// The ban at `key` at `now`: [`BAN_NONE`], [`BAN_ENFORCED`] or [`BAN_WOULD_ONLY`].
/// Expired bans stay in the map (they remember offences for escalation) and
/// count as none.
#[inline(always)]
fn ban_state(key: &BanKey, now: u64) -> u32 {
    // SAFETY: the reference is only read within this call.
    match unsafe { BANS.get(key) } {
        Some(b) if b.until_ns > now && b.is_would_ban() => BAN_WOULD_ONLY,
        Some(b) if b.until_ns > now => BAN_ENFORCED,
        _ => BAN_NONE,
    }
}

const BAN_NONE: u32 = 0;
/// Enough that [`BAN_ENFORCED`] wins over a would-ban when both keys have one.
const BAN_WOULD_ONLY: u32 = 1;
const BAN_ENFORCED: u32 = 2;

/// False when no ban can be active: every ban ever made ends before `now`.
/// Spares the two ban lookups on the common path.
#[inline(always)]
fn bans_possible(settings: &Settings, now: u64) -> bool {
    if settings.user_ban_horizon_ns > now {
        return true;
    }
    match global() {
        // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
        Some(g) => unsafe { Cell::new(&raw mut (*g).ban_horizon_ns) }.load() > now,
        None => true,
    }
}

/// Raises the ban horizon to `until` (an atomic maximum with bounded retries).
#[inline(always)]
fn raise_ban_horizon(until: u64) {
    let Some(g) = global() else { return };
    // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
    let h = unsafe { Cell::new(&raw mut (*g).ban_horizon_ns) };
    let mut cur = h.load();
    for _ in 0..CAS_TRIES {
        if cur >= until {
            return;
        }
        match h.cas(cur, until) {
            Ok(_) => return,
            Err(seen) => cur = seen,
        }
    }
    // Still lower after CAS_TRIES lost races: push it far out so this ban is
    // never skipped (lookups resume until the horizon passes).
    h.store(u64::MAX);
}

/// Counts a packet into a source or prefix entry.
///
/// Plain (non-atomic) adds: these counters are for reporting, and a locked add
/// costs ~7 ns each here, three per entry per packet. They are exact while a
/// source's packets arrive on one CPU (the common case: RSS keeps a flow on one
/// queue); packets of one source on two CPUs at the same instant can lose an
/// increment. Limits never depend on them (the buckets use compare-and-swap).
#[inline(always)]
fn account(s: *mut TrackState, len: u64, now: u64, dropped: bool) {
    // SAFETY: `s` is a live, aligned map value; these plain u64 updates race
    // only with other CPUs updating the same counters (see above).
    unsafe {
        (*s).packets += 1;
        (*s).bytes += len;
        (*s).last_seen_ns = now;
        if dropped {
            (*s).drops += 1;
        }
    }
}

/// Draws one first-seen source from the global budget (GCRA shared by all CPUs).
#[inline(never)]
fn new_source_allowed(settings: &Settings, now: u64) -> bool {
    let Some(g) = global() else { return true };
    // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
    let tat = unsafe { Cell::new(&raw mut (*g).new_source_tat) };
    !matches!(take(tat, &settings.new_source_budget, 1, now), Take::Over)
}

/// Looks up the source's entry, inserting a fresh one for a first-seen source.
/// Under eviction pressure a first-seen source must first draw on the global
/// budget: `Err(())` when it is spent (the source is not inserted, so a spoofed
/// flood cannot churn the map).
#[inline(always)]
fn source_entry(
    key: &AddrKey,
    settings: &Settings,
    now: u64,
) -> Result<Option<*mut TrackState>, ()> {
    if let Some(p) = SOURCES.get_ptr_mut(key) {
        return Ok(Some(p));
    }
    let Some(g) = global() else { return Ok(None) };
    // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
    let inserts = unsafe { Cell::new(&raw mut (*g).source_inserts) };
    if settings.pressure_threshold != 0
        && inserts.load() >= settings.pressure_threshold
        && !new_source_allowed(settings, now)
    {
        return Err(());
    }
    insert_fresh(false, key, now);
    inserts.add(1);
    Ok(SOURCES.get_ptr_mut(key))
}

/// The prefix entry, inserted when missing. Prefix inserts follow admitted
/// sources, so the source budget bounds them too.
#[inline(always)]
fn prefix_entry(key: &AddrKey, now: u64) -> Option<*mut TrackState> {
    if let Some(p) = PREFIXES.get_ptr_mut(key) {
        return Some(p);
    }
    insert_fresh(true, key, now);
    bump(|g| {
        // SAFETY: only forms a field pointer inside the live map value.
        unsafe { &raw mut (*g).prefix_inserts }
    });
    PREFIXES.get_ptr_mut(key)
}

/// Inserts a zeroed entry first seen at `now` into `PREFIXES` or `SOURCES` (a
/// flag, not a map reference: subprogram arguments must be scalars or pointers the
/// verifier can type). BPF_NOEXIST: when another CPU
/// inserted the same key first, its entry (and its counts) win.
#[inline(never)]
fn insert_fresh(prefixes: bool, key: &AddrKey, now: u64) {
    let Some(sc) = scratch() else { return };
    // SAFETY: this CPU's scratch slot, filled just above and read by the helper.
    let fresh = unsafe { &*fresh_entry(sc, now) };
    let r = if prefixes {
        PREFIXES.insert(key, fresh, u64::from(BPF_NOEXIST))
    } else {
        SOURCES.insert(key, fresh, u64::from(BPF_NOEXIST))
    };
    // -EEXIST (-17) is the lost race above, not an error.
    if let Err(e) = r
        && e != -17
    {
        bump(|g| {
            // SAFETY: only forms a field pointer inside the live map value.
            unsafe { &raw mut (*g).map_update_errors }
        });
    }
}

/// Charges one bucket, remembering the charge for a refund.
macro_rules! charge {
    ($field:expr, $rate:expr, $cost:expr, $now:expr) => {{
        // SAFETY: a live, aligned u64 inside an LRU map value.
        let tat = unsafe { Cell::new($field) };
        match take(tat, $rate, $cost, $now) {
            Take::Ok { charged } => Some((tat, charged)),
            Take::Contended { charged } => {
                bump(|g| {
                    // SAFETY: only forms a field pointer inside the live map value.
                    unsafe { &raw mut (*g).cas_exhausted }
                });
                Some((tat, charged))
            }
            Take::Over => None,
        }
    }};
}

/// Runs every limit of `policy` for the packet. Returns the first limit exceeded;
/// charges made before it are refunded so a refused packet costs nothing.
#[inline(always)]
fn limits(
    policy: &Policy,
    src: *mut TrackState,
    pfx: *mut TrackState,
    pkt: &Packet,
    len: u64,
    now: u64,
) -> Option<Reason> {
    let syn = pkt.syn;
    // Per source: packets, bytes, new connections.
    let Some(p1) = charge!(&raw mut (*src).packets_tat, &policy.packets, 1, now) else {
        return Some(Reason::RatePackets);
    };
    let Some(p2) = charge!(&raw mut (*src).bytes_tat, &policy.bytes, len, now) else {
        refund(p1.0, p1.1);
        return Some(Reason::RateBytes);
    };
    let p3 = if syn {
        charge!(&raw mut (*src).syn_tat, &policy.syn, 1, now)
    } else {
        Some((p1.0, 0))
    };
    let Some(p3) = p3 else {
        refund(p1.0, p1.1);
        refund(p2.0, p2.1);
        return Some(Reason::RateSyn);
    };
    let refund_src = || {
        refund(p1.0, p1.1);
        refund(p2.0, p2.1);
        refund(p3.0, p3.1);
    };
    // Per prefix: packets, new connections.
    let Some(q1) = charge!(&raw mut (*pfx).packets_tat, &policy.prefix_packets, 1, now) else {
        refund_src();
        return Some(Reason::PrefixRate);
    };
    let q2 = if syn {
        charge!(&raw mut (*pfx).syn_tat, &policy.prefix_syn, 1, now)
    } else {
        Some((q1.0, 0))
    };
    let Some(q2) = q2 else {
        refund_src();
        refund(q1.0, q1.1);
        return Some(Reason::PrefixSyn);
    };
    // Long windows last: a packet refused by a rate limit does not spend quota.
    // SAFETY: live, aligned u64 fields inside LRU map values.
    let (s_start, s_used) = unsafe {
        (
            Cell::new(&raw mut (*src).quota_start_ns),
            Cell::new(&raw mut (*src).quota_used),
        )
    };
    if !quota_take(s_start, s_used, &policy.quota, now) {
        refund_src();
        refund(q1.0, q1.1);
        refund(q2.0, q2.1);
        return Some(Reason::Quota);
    }
    // SAFETY: as above.
    let (p_start, p_used) = unsafe {
        (
            Cell::new(&raw mut (*pfx).quota_start_ns),
            Cell::new(&raw mut (*pfx).quota_used),
        )
    };
    if !quota_take(p_start, p_used, &policy.prefix_quota, now) {
        refund_src();
        refund(q1.0, q1.1);
        refund(q2.0, q2.1);
        quota_refund(s_used, &policy.quota);
        return Some(Reason::PrefixQuota);
    }
    None
}

/// Bans `key` after it exceeded a limit: the first offence for `base_ns`, each
/// repeat (while remembered) `ban_factor` times longer, up to `ban_max_ns`
/// (`floodgate_common::limit::next_ban`). False when another CPU banned it a
/// moment ago (or settings are missing): no new ban was made.
#[inline(never)]
fn ban(key: &BanKey, base_ns: u64, reason: Reason, state: *const TrackState, would: bool) -> bool {
    // Re-read here rather than passed in: BPF subprograms take at most five
    // arguments.
    let Some(settings) = SETTINGS.get(0) else {
        return false;
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let prev = match BANS.get_ptr(key) {
        // SAFETY: a live map value, read once.
        Some(prev) => match unsafe { *prev } {
            // Another CPU banned it a moment ago — unless that was only a
            // would-ban and this ban is enforced: then it is replaced.
            b if b.until_ns > now && (would || !b.is_would_ban()) => return false,
            b => Some(PastBan {
                until_ns: b.until_ns,
                duration_ns: b.duration_ns,
                offenses: b.offenses,
            }),
        },
        None => None,
    };
    let escalation = Escalation {
        factor: settings.ban_factor,
        max_ns: settings.ban_max_ns,
        forget_ns: settings.ban_forget_ns,
    };
    let (offenses, duration) = next_ban(prev, now, base_ns, &escalation);
    let entry = Ban {
        until_ns: now.saturating_add(duration),
        duration_ns: duration,
        banned_at_ns: now,
        offenses,
        reason: reason as u32 | if would { BAN_WOULD } else { 0 },
    };
    raise_ban_horizon(entry.until_ns);
    if BANS.insert(key, entry, 0).is_err() {
        bump(|g| {
            // SAFETY: only forms a field pointer inside the live map value.
            unsafe { &raw mut (*g).map_update_errors }
        });
    }
    // SAFETY: a live map value; plain reads of u64 counters.
    let (packets, first) = unsafe { ((*state).packets, (*state).first_seen_ns) };
    let elapsed = now - first;
    let observed_pps = (packets.min(u64::MAX / 1_000_000_000) * 1_000_000_000)
        .checked_div(elapsed)
        .unwrap_or(packets);
    let kind = if would { EVENT_WOULD_BAN } else { EVENT_BAN };
    emit(kind, key, &entry, observed_pps, settings, now);
    true
}

/// Sends a ban event to userspace, rate-limited so a spoofed flood cannot flood
/// the log: events over `event_rate` are counted as suppressed instead.
#[inline(always)]
fn emit(kind: u32, key: &BanKey, ban: &Ban, observed_pps: u64, settings: &Settings, now: u64) {
    let Some(g) = global() else { return };
    // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
    let tat = unsafe { Cell::new(&raw mut (*g).event_tat) };
    if matches!(take(tat, &settings.event_rate, 1, now), Take::Over) {
        // SAFETY: as above.
        unsafe { Cell::new(&raw mut (*g).events_suppressed) }.add(1);
        return;
    }
    match EVENTS.reserve::<Event>(0) {
        Some(mut slot) => {
            slot.write(Event {
                kind,
                reason: ban.reason_code(),
                addr: key.addr,
                prefix_len: key.prefix_len,
                offenses: ban.offenses,
                duration_ns: ban.duration_ns,
                observed_pps,
                time_ns: now,
            });
            slot.submit(0);
        }
        None => {
            // SAFETY: as above.
            unsafe { Cell::new(&raw mut (*g).events_lost) }.add(1);
        }
    }
}

/// True when `[limits] ports` covers this protocol and destination port (or the
/// protocol on every port).
#[inline(always)]
fn in_scope(proto: u8, dport: u16) -> bool {
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

/// The full decision for an IP packet.
#[inline(always)]
pub fn decide(ctx: &XdpContext, pkt: &Packet, len: u64) -> (Verdict, Reason) {
    let Some(settings) = SETTINGS.get(0) else {
        return (Verdict::Pass, Reason::Ok);
    };
    // Until userspace has written a policy, zeroed limits must not be enforced.
    if settings.flags & SETTINGS_READY == 0 {
        return (Verdict::Pass, Reason::Ok);
    }
    // Expiry checks (block entries, bans) use the coarse clock: the same
    // CLOCK_MONOTONIC at the resolution of a tick (1–10 ms), and far cheaper —
    // reading the TSC for the fine clock was a fifth of the banned-drop path in
    // `cargo xtask bench`'s profile. The token buckets refill from the fine
    // clock (bpf_ktime_get_ns), read once the packet got past block list and bans.
    // SAFETY: helper without preconditions.
    let coarse = unsafe { bpf_ktime_get_coarse_ns() };
    // The keys live in per-CPU scratch, not on the stack (see scratch.rs).
    let Some(sc) = scratch() else {
        return (Verdict::Pass, Reason::Ok);
    };
    // SAFETY: this CPU's scratch slot; the references below are its fields and
    // are only used within this decision.
    let (lpm, src_key, pfx_key, src_ban, pfx_ban) = unsafe {
        (*sc).lpm = Key::new(128, pkt.src);
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
    if flags & SETTINGS_HAS_BLOCK != 0
        && let Some(b) = BLOCK.get(lpm)
        && (b.expires_ns == 0 || b.expires_ns > coarse)
    {
        return (Verdict::Drop, Reason::Blocklist);
    }
    // 2. Allow list: never limited.
    if flags & SETTINGS_HAS_ALLOW != 0 && ALLOW.get(lpm).is_some() {
        return (Verdict::Pass, Reason::Allowlist);
    }

    // The policy: a rule matching the source (most specific wins) or the default.
    let slot = if flags & SETTINGS_HAS_RULES != 0 {
        RULES.get(lpm).copied().unwrap_or(0)
    } else {
        0
    };
    let Some(policy) = POLICIES.get(slot) else {
        return (Verdict::Pass, Reason::Ok);
    };
    let monitor = settings.flags & SETTINGS_MONITOR != 0 || policy.flags & POLICY_MONITOR != 0;

    let plen = if pkt.is_v6 {
        settings.prefix_v6
    } else {
        96 + settings.prefix_v4
    };
    src_key.addr = pkt.src;
    pfx_key.addr = mask(&pkt.src, plen);

    // 3. Bans of the source or of its prefix.
    *src_ban = BanKey {
        addr: pkt.src,
        prefix_len: 128,
        _pad: 0,
    };
    *pfx_ban = BanKey {
        addr: pfx_key.addr,
        prefix_len: plen,
        _pad: 0,
    };
    let (src_key, pfx_key, src_ban, pfx_ban) = (&*src_key, &*pfx_key, &*src_ban, &*pfx_ban);
    let bans = if bans_possible(settings, coarse) {
        let (a, b) = (ban_state(src_ban, coarse), ban_state(pfx_ban, coarse));
        if a > b { a } else { b }
    } else {
        BAN_NONE
    };
    // A would-ban only counts for a monitored policy: an enforced one goes on
    // to its own limits (see `BAN_WOULD`).
    if bans == BAN_ENFORCED || (bans == BAN_WOULD_ONLY && monitor) {
        // Banned packets count toward their source and their prefix alike.
        if let Some(s) = SOURCES.get_ptr_mut(src_key) {
            account(s, len, coarse, true);
        }
        if let Some(p) = PREFIXES.get_ptr_mut(pfx_key) {
            account(p, len, coarse, true);
        }
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
        if let Some(s) = SOURCES.get_ptr_mut(src_key) {
            account(s, len, coarse, false);
        }
        return (Verdict::Pass, Reason::Unscoped);
    }

    // 5. Limits.
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let src = match source_entry(src_key, settings, now) {
        Ok(Some(p)) => p,
        // The map refused the entry (counted in map_update_errors): fail open.
        Ok(None) => return (Verdict::Pass, Reason::Ok),
        Err(()) => return (drop_verdict(monitor), Reason::NewSourceBudget),
    };
    let Some(pfx) = prefix_entry(pfx_key, now) else {
        account(src, len, now, false);
        return (Verdict::Pass, Reason::Ok);
    };

    match limits(policy, src, pfx, pkt, len, now) {
        None => {
            account(src, len, now, false);
            account(pfx, len, now, false);
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
            account(src, len, now, true);
            account(pfx, len, now, true);
            if reason.is_prefix() {
                if policy.prefix_ban_ns != 0 {
                    ban(pfx_ban, policy.prefix_ban_ns, reason, pfx, monitor);
                }
            } else if policy.ban_ns != 0
                && ban(src_ban, policy.ban_ns, reason, src, monitor)
                && !monitor
            {
                info!(ctx, "floodgate: banned a source for {}", reason as u32);
            }
            (drop_verdict(monitor), reason)
        }
    }
}
