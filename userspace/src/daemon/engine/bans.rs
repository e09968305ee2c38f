//! Bans made and lifted from the control socket. Each touches the keys it
//! names (one lookup, not a walk of every ban), except `bans clear --all`.

use std::net::IpAddr;

use floodgate_common::{Ban, BanKey, Reason};
use ipnet::IpNet;
use tracing::info;

use super::{Engine, SECOND, monotonic_ns};
use crate::{
    addr::{lpm_key, mapped},
    daemon::{DaemonError, loglimit::Kind, reader::prefix_len_of},
};

impl Engine {
    /// Bans one address until `for_secs` from now (keeping its offence count).
    pub(super) fn add_ban(&mut self, addr: IpAddr, for_secs: u64) -> Result<(), DaemonError> {
        let key = BanKey::source(mapped(addr));
        let offenses = self.fg.ban(&key)?.map_or(0, |b| b.offenses);
        let now = monotonic_ns();
        let duration_ns = for_secs.max(1).saturating_mul(SECOND);
        self.fg.insert_ban(
            &key,
            &Ban {
                until_ns: now.saturating_add(duration_ns),
                duration_ns,
                banned_at_ns: now,
                offenses: offenses.saturating_add(1),
                reason: Reason::Banned as u32,
                // `insert_ban` keeps what the key's earlier bans decided.
                packets: 0,
                bytes: 0,
            },
        )?;
        info!(%addr, for_secs, "banned from the control socket");
        Ok(())
    }

    /// Lifts the ban of `addr` and of its prefix, or every ban; returns how
    /// many of them were active.
    pub(super) fn clear_bans(&mut self, addr: Option<IpAddr>) -> Result<usize, DaemonError> {
        let keys: Vec<(BanKey, Option<Ban>)> = match addr {
            None => self
                .fg
                .bans()?
                .into_iter()
                .map(|(k, b)| (k, Some(b)))
                .collect(),
            Some(a) => {
                let s = &self.compiled.settings;
                let plen = prefix_len_of(a, (s.prefix_v4, s.prefix_v6));
                let family_len = if a.is_ipv4() { plen - 96 } else { plen };
                let prefix = IpNet::new(a, u8::try_from(family_len).unwrap_or(128))
                    .map_or_else(|_| IpNet::from(a), |n| n.trunc());
                let (_, masked) = lpm_key(&prefix);
                let source = BanKey::source(mapped(a));
                let prefix = BanKey::prefix(masked, plen);
                vec![
                    (source, self.fg.ban(&source)?),
                    (prefix, self.fg.ban(&prefix)?),
                ]
            }
        };
        let now = monotonic_ns();
        let mut cleared = 0;
        for (k, ban) in &keys {
            if ban.is_some_and(|b| b.until_ns > now) {
                cleared += 1;
            }
            self.fg.remove_ban(k)?;
        }
        if self.log_allowed(Kind::Unban) {
            info!(
                event = "unban",
                target = %addr.map_or_else(|| "*".to_owned(), |a| a.to_string()),
                cleared,
                "bans cleared"
            );
        }
        Ok(cleared)
    }
}
