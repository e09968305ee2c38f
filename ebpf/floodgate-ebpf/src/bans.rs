//! Bans: whether one is in force for a packet, and making one (with
//! escalation, the ban horizon and the event for userspace).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use floodgate_common::{
    BAN_WOULD, Ban, BanKey, EVENT_BAN, EVENT_WOULD_BAN, Event, Settings, TrackState, horizon,
    limit::{Escalation, PastBan, next_ban},
};

use crate::{
    atomic::Cell,
    bucket::{Take, take},
    counters::{bump, global},
    maps::{BANS, EVENTS, SETTINGS},
    track::{Place, tracked},
};

/// The ban at `key` at `now`: [`BAN_NONE`], [`BAN_ENFORCED`] or
/// [`BAN_WOULD_ONLY`], and the entry (null for none), whose counters the
/// packet goes to when this ban decides it. Expired bans stay in the map (they
/// remember offences for escalation) and count as none.
#[inline(always)]
pub(crate) fn ban_state(key: &BanKey, now: u64) -> (u32, *mut Ban) {
    match BANS.get_ptr_mut(key) {
        // SAFETY: a live map value, read within this call.
        Some(b) => match unsafe { (*b).until_ns > now } {
            // SAFETY: as above.
            true if unsafe { (*b).is_would_ban() } => (BAN_WOULD_ONLY, b),
            true => (BAN_ENFORCED, b),
            false => (BAN_NONE, core::ptr::null_mut()),
        },
        None => (BAN_NONE, core::ptr::null_mut()),
    }
}

/// Counts a packet the ban `b` decided (plain adds, like `track::account`:
/// exact while one source's packets arrive on one CPU).
#[inline(always)]
pub(crate) fn count_banned(b: *mut Ban, len: u64) {
    // Never null when a ban decided; the check keeps the verifier sure of it.
    if b.is_null() {
        return;
    }
    // SAFETY: `b` is a live, aligned map value from `ban_state`.
    unsafe {
        (*b).packets += 1;
        (*b).bytes += len;
    }
}

pub(crate) const BAN_NONE: u32 = 0;
/// Enough that [`BAN_ENFORCED`] wins over a would-ban when both keys have one.
pub(crate) const BAN_WOULD_ONLY: u32 = 1;
pub(crate) const BAN_ENFORCED: u32 = 2;

/// False when no ban can be active: every ban ever made ends before `now`.
/// Spares the two ban lookups on the common path.
#[inline(always)]
pub(crate) fn bans_possible(settings: &Settings, now: u64) -> bool {
    if settings.user_ban_horizon_ns > now {
        return true;
    }
    match global() {
        // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
        Some(g) => unsafe { Cell::new(&raw mut (*g).ban_horizon_ns) }.load() > now,
        None => true,
    }
}

/// Raises the ban horizon to `until`.
#[inline(always)]
pub(crate) fn raise_ban_horizon(until: u64) {
    let Some(g) = global() else { return };
    // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
    raise(unsafe { Cell::new(&raw mut (*g).ban_horizon_ns) }, until);
}

/// The horizon a new prefix entry starts with
/// (`floodgate_common::horizon::fresh_prefix`).
#[inline(always)]
pub(crate) fn fresh_prefix_horizon(settings: &Settings) -> u64 {
    let global_ns = match global() {
        // SAFETY: a live, aligned u64 inside the GLOBAL_STATE map value.
        Some(g) => unsafe { Cell::new(&raw mut (*g).ban_horizon_ns) }.load(),
        // No global state: no horizon can be trusted.
        None => u64::MAX,
    };
    horizon::fresh_prefix(global_ns, settings.user_ban_horizon_ns)
}

/// Whether the packets of the prefix entry `p` may be banned at `now`: its
/// horizon (`floodgate_common::horizon`) is still open.
#[inline(always)]
pub(crate) fn prefix_may_be_banned(p: *mut TrackState, now: u64) -> bool {
    horizon::open(prefix_horizon_cell(p).load(), now)
}

/// Raises the horizon of the prefix entry at `place`, when tracked, to
/// `until`.
#[inline(always)]
fn raise_prefix_horizon(place: Place<'_>, until: u64, now: u64) {
    if let Some(p) = tracked(true, place, now) {
        raise(prefix_horizon_cell(p), until);
    }
}

/// A prefix entry's horizon word (`floodgate_common::horizon::prefix_horizon`).
#[inline(always)]
fn prefix_horizon_cell(p: *mut TrackState) -> Cell {
    // SAFETY: `p` is a live, aligned map value; the word is a field of it.
    unsafe { Cell::new(&raw mut (*p).bytes_tat) }
}

/// Raises `h` to at least `until`, never lowering it, with no loop: one CAS,
/// and when another CPU moved the word meanwhile, an atomic OR (a value OR
/// `until` is at least both). The OR may push the horizon past the latest
/// ban's end (lookups go on until then: cost, never a skipped ban); a retry
/// loop instead made Linux 6.1's verifier walk each try for every state
/// reaching a ban, past its million-instruction limit.
#[inline(always)]
fn raise(h: Cell, until: u64) {
    let cur = h.load();
    if cur < until && h.cas(cur, until).is_err() {
        h.or(until);
    }
}

/// The packet rate of an entry since it was first seen, for a ban event.
/// Computed by the caller: a pointer into one of two maps (the IPv4 table or
/// the IPv6 map) as an argument made the verifier check `ban` once for each.
#[inline(always)]
pub(crate) fn observed_pps(state: *const TrackState, now: u64) -> u64 {
    // SAFETY: a live map value; plain reads of counters.
    let (packets, first) = unsafe { ((*state).packets, (*state).first_seen_tick) };
    let elapsed = now.saturating_sub(floodgate_common::set_table::tick_ns(first));
    (packets.min(u64::MAX / 1_000_000_000) * 1_000_000_000)
        .checked_div(elapsed)
        .unwrap_or(packets)
}

/// Bans `key` after it exceeded a limit: the first offence for `base_ns`, each
/// repeat (while remembered) `ban_factor` times longer, up to `ban_max_ns`
/// (`floodgate_common::limit::next_ban`). `cause` is the `Reason` as u32,
/// with [`BAN_WOULD`] for a would-ban (monitor mode). The ban raises the global
/// horizon and that of its prefix's entry, at `prefix`: here, before the
/// function's many exits, since a raise after the call was walked by Linux
/// 6.1's verifier once for each (past its million-instruction limit). True
/// when a ban was made; false when another CPU banned the key a moment ago
/// (that CPU raised the horizons) or settings are missing.
#[inline(never)]
pub(crate) fn ban(
    key: &BanKey,
    base_ns: u64,
    cause: u32,
    observed_pps: u64,
    prefix: &Place<'_>,
) -> bool {
    let would = cause & BAN_WOULD != 0;
    // Re-read here rather than passed in: BPF subprograms take at most five
    // arguments.
    let Some(settings) = SETTINGS.get(0) else {
        return false;
    };
    // The decision's clock (coarse: see `decide`).
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // The counters of an earlier ban of the key carry over.
    let (mut packets, mut bytes) = (0, 0);
    let prev = match BANS.get_ptr(key) {
        // SAFETY: a live map value, read once.
        Some(prev) => match unsafe { *prev } {
            // Another CPU banned it a moment ago — unless that was only a
            // would-ban and this ban is enforced: then it is replaced.
            b if b.until_ns > now && (would || !b.is_would_ban()) => return false,
            b => {
                (packets, bytes) = (b.packets, b.bytes);
                Some(PastBan {
                    until_ns: b.until_ns,
                    duration_ns: b.duration_ns,
                    offenses: b.offenses,
                })
            }
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
        reason: cause,
        packets,
        bytes,
    };
    raise_ban_horizon(entry.until_ns);
    raise_prefix_horizon(*prefix, entry.until_ns, now);
    if BANS.insert(key, entry, 0).is_err() {
        bump(|g| {
            // SAFETY: only forms a field pointer inside the live map value.
            unsafe { &raw mut (*g).map_update_errors }
        });
    }
    let kind = if would { EVENT_WOULD_BAN } else { EVENT_BAN };
    emit(kind, key, &entry, observed_pps, settings, now);
    true
}

/// Sends a ban event to userspace, rate-limited so a spoofed flood cannot flood
/// the log: events over `event_rate` are counted as suppressed instead.
#[inline(always)]
pub(crate) fn emit(
    kind: u32,
    key: &BanKey,
    ban: &Ban,
    observed_pps: u64,
    settings: &Settings,
    now: u64,
) {
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
