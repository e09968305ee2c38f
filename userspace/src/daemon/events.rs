//! Ban events from the kernel's ring buffer, turned into log lines.

use floodgate_common::{EVENT_BAN, EVENT_WOULD_BAN, Event, Reason};
use ipnet::IpNet;

use crate::addr::{from_lpm_key, unmapped};

/// A decoded ring-buffer record.
#[derive(Debug, Clone, PartialEq)]
pub struct BanEvent {
    pub target: IpNet,
    pub reason: &'static str,
    pub offenses: u32,
    pub duration: std::time::Duration,
    pub observed_pps: u64,
    /// A monitor-mode would-ban: nothing is dropped.
    pub would: bool,
}

/// Decodes one record; `None` for a record of another size or kind.
pub fn decode(bytes: &[u8]) -> Option<BanEvent> {
    if bytes.len() != size_of::<Event>() {
        return None;
    }
    // SAFETY: the length matches and `Event` is plain old data; read unaligned
    // because ring-buffer records are only 8-byte aligned by convention.
    let e = unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() };
    if e.kind != EVENT_BAN && e.kind != EVENT_WOULD_BAN {
        return None;
    }
    let target = if e.prefix_len >= 128 {
        IpNet::from(unmapped(e.addr))
    } else {
        from_lpm_key(e.prefix_len, e.addr)
    };
    Some(BanEvent {
        target,
        reason: Reason::from_u32(e.reason).map_or("unknown", Reason::name),
        offenses: e.offenses,
        duration: std::time::Duration::from_nanos(e.duration_ns),
        observed_pps: e.observed_pps,
        would: e.kind == EVENT_WOULD_BAN,
    })
}
