//! The engine's side of the CrowdSec clients: the bouncer's and the
//! watcher's reports, floodgate's own bans (sent as alerts, and known again
//! when their decisions come back), and a reload that changes `[crowdsec]`.

use tracing::{info, warn};

use super::Engine;
use crate::{
    control::proto::{CrowdsecStatus, CrowdsecUpdate},
    daemon::{DaemonError, events::BanEvent, remote::Remote, runtime::unix_now},
    fleet::crowdsec::{alert::LocalBan, decision::Batch},
};

/// How much later than floodgate's own ban the LAPI may end the decision
/// the watcher made of it and still be that decision (its times are whole
/// seconds, and the alert reaches it after the ban started).
const OWN_SLACK_SECS: u64 = 5;

impl Engine {
    /// The bouncer's report of a pull.
    pub(super) fn crowdsec_update(
        &mut self,
        update: CrowdsecUpdate,
    ) -> Result<String, DaemonError> {
        let status = self.crowdsec.get_or_insert_with(CrowdsecStatus::default);
        match update {
            CrowdsecUpdate::Failed { error, auth } => {
                status.up = false;
                status.last_error = Some(error);
                status.auth_failed = auth;
                status.failures += 1;
                Ok("noted".to_owned())
            }
            CrowdsecUpdate::Watcher {
                up,
                sent,
                queued,
                dropped,
                error,
            } => {
                status.watcher_up = Some(up);
                status.watcher_error = error;
                status.alerts_sent = sent;
                status.alerts_queued = queued;
                status.alerts_dropped = dropped + self.alerts_handoff_dropped;
                Ok("noted".to_owned())
            }
            CrowdsecUpdate::Pulled { mut batch } => {
                let started = std::time::Instant::now();
                let own = self.drop_own(&mut batch);
                let applied = self.apply_batch(&batch);
                let status = self.crowdsec.get_or_insert_with(CrowdsecStatus::default);
                for (why, n) in &batch.ignored {
                    *status.ignored.entry(why.clone()).or_default() += n;
                }
                if own > 0 {
                    *status.ignored.entry("own".to_owned()).or_default() += own;
                }
                status.invalid += batch.invalid;
                match applied {
                    Ok(changed) => {
                        status.up = true;
                        status.auth_failed = false;
                        status.last_error = None;
                        status.last_pull_unix = Some(unix_now());
                        self.refresh_crowdsec_counts();
                        if batch.replace {
                            let apply_ms =
                                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                            info!(
                                event = "crowdsec",
                                decisions = batch.len(),
                                changed,
                                apply_ms,
                                "applied a full CrowdSec pull"
                            );
                        }
                        Ok(format!(
                            "applied {} decisions ({changed} networks changed)",
                            batch.len()
                        ))
                    }
                    Err(e) => {
                        status.up = false;
                        status.last_error = Some(format!("applying decisions: {e}"));
                        Err(e)
                    }
                }
            }
        }
    }

    /// A ban the program made, as the watcher sends it (None without a
    /// watcher). Remembered, so the decision coming back through the stream
    /// is known for floodgate's own.
    pub fn local_ban(&mut self, e: &BanEvent) -> Option<LocalBan> {
        self.config.crowdsec.as_ref()?.watcher.as_ref()?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let ban = LocalBan {
            target: e.target,
            reason: e.reason.to_owned(),
            // Whole seconds, rounded up: the decision never ends first.
            duration_secs: e.duration.as_nanos().div_ceil(1_000_000_000) as u64,
            started_unix_ms: now_ms,
            simulated: e.would,
            offenses: e.offenses,
        };
        let until = ban.until_unix();
        let held = self.own.entry(ban.target).or_insert(until);
        *held = (*held).max(until);
        Some(ban)
    }

    /// An alert the daemon could not hand to the watcher (its channel full).
    pub fn alert_dropped(&mut self) {
        self.alerts_handoff_dropped += 1;
    }

    /// Takes floodgate's own decisions out of `batch` (they are its own
    /// bans, already enforced); returns how many.
    fn drop_own(&mut self, batch: &mut Batch) -> u64 {
        let now = unix_now();
        self.own.retain(|_, until| *until > now);
        let own = &self.own;
        let before = batch.new.len();
        batch.new.retain(|net, h| {
            !(h.scenario.starts_with("floodgate/")
                && own
                    .get(net)
                    .is_some_and(|u| u.saturating_add(OWN_SLACK_SECS) >= h.until))
        });
        (before - batch.new.len()) as u64
    }

    /// A reload changed `[crowdsec]`: the bouncer restarts with a full pull
    /// (which replaces the decisions held); without the section, the
    /// decisions it brought are lifted.
    pub(super) fn crowdsec_reconfigured(&mut self) {
        let cfg = self.config.crowdsec.clone();
        self.crowdsec = cfg.as_ref().map(|c| CrowdsecStatus {
            lapi_url: c.lapi_url.clone(),
            ..CrowdsecStatus::default()
        });
        if cfg.is_none()
            && let Err(e) = self.apply_remote(Remote::default())
        {
            warn!(error = %e, "lifting the CrowdSec decisions after [crowdsec] was removed");
        }
        self.refresh_crowdsec_counts();
        self.crowdsec_config.send_replace(cfg);
    }

    fn refresh_crowdsec_counts(&mut self) {
        let (decisions, bans, blocks) = (
            self.remote.by_origin(),
            self.remote.banned.len() as u64,
            self.remote.blocks().len() as u64,
        );
        if let Some(s) = &mut self.crowdsec {
            (s.decisions, s.bans, s.blocks) = (decisions, bans, blocks);
        }
    }
}
