//! Step 3 of the decision: whether a ban of the source or of its prefix holds
//! the packet, and if so its counting. A subprogram of its own, so that the
//! prefix entry it reads for the prefix's ban horizon can also count a
//! banned packet: the entry is a pointer that may be null, into one of two
//! maps, and kept in the decision across the ban lookups it made Linux 6.1's
//! verifier follow the rest of the decision once for each kind, past its
//! million-instruction limit. Here the decision gets back a number.

use crate::{
    bans::{BAN_ENFORCED, BAN_WOULD_ONLY, ban_state, count_banned, prefix_may_be_banned},
    scratch::scratch,
    track::{Place, account, tracked},
};

/// [`check`]'s answer: no ban holds the packet.
pub(crate) const NOT_BANNED: u32 = 0;
/// [`check`]'s answer: a ban holds it (counted): drop (or would-drop).
pub(crate) const BANNED: u32 = 1;

/// Whether a ban holds the packet whose keys the decision wrote into this
/// CPU's scratch slot (the source's and prefix's `AddrKey`s and `BanKey`s),
/// IPv4 table keys `keys4` (the source's in the low half, the prefix's in the
/// high half; unused for `v6`), at `now`, of `len` bytes, under a monitored
/// policy with `monitor`. Called only while a ban may be live anywhere
/// (`bans::bans_possible`).
///
/// A tracked prefix whose ban horizon has passed holds no ban of its own or of
/// its sources: both lookups are skipped. The deciding ban is the source's
/// when it is at least the prefix's (an enforced ban of the source decides
/// alone, without the prefix lookup). A would-ban holds only a monitored
/// policy's packets: an enforced one goes on to its own limits (see
/// `BAN_WOULD`). A banned packet counts toward its source and its prefix
/// alike: on the deciding ban's entry and on the other key's tracked entry
/// (README "What the program decides") — the prefix's already at hand.
#[inline(never)]
pub(crate) fn check(keys4: u64, v6: bool, now: u64, len: u64, monitor: bool) -> u32 {
    let Some(sc) = scratch() else {
        return NOT_BANNED;
    };
    // SAFETY: this CPU's scratch slot, whose keys the decision just wrote;
    // only read here, within this decision.
    let (src_key, pfx_key, src_ban, pfx_ban) =
        unsafe { (&(*sc).src, &(*sc).pfx, &(*sc).src_ban, &(*sc).pfx_ban) };
    let src_place = Place {
        v6,
        key4: keys4 as u32,
        key6: src_key,
    };
    let pfx_place = Place {
        v6,
        key4: (keys4 >> 32) as u32,
        key6: pfx_key,
    };
    let pfx = tracked(true, pfx_place, now);
    if let Some(p) = pfx
        && !prefix_may_be_banned(p, now)
    {
        return NOT_BANNED;
    }
    let (a, pa) = ban_state(src_ban, now);
    let (bans, entry, source_ban) = if a == BAN_ENFORCED {
        (a, pa, true)
    } else {
        let (b, pb) = ban_state(pfx_ban, now);
        if a >= b {
            (a, pa, true)
        } else {
            (b, pb, false)
        }
    };
    if !(bans == BAN_ENFORCED || (bans == BAN_WOULD_ONLY && monitor)) {
        return NOT_BANNED;
    }
    count_banned(entry, len);
    let other = if source_ban {
        pfx
    } else {
        tracked(false, src_place, now)
    };
    if let Some(e) = other {
        account(e, len, true);
    }
    BANNED
}
