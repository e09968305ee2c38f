//! The bouncer's loop: a `startup=true` pull on start and after every
//! failure (it replaces the local copy), then deltas every `poll`, and a
//! full pull again every ten minutes. A failed
//! pull changes nothing in the kernel: what is enforced stays enforced, and
//! the bouncer retries with capped exponential backoff and jitter. A key
//! the LAPI refuses is reported in `status` and the log, and retried at the
//! slowest pace, never fatal.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{
    client::{Lapi, LapiError},
    decision::Batch,
};
use crate::{
    config::CrowdsecConfig,
    control::{
        proto::{CrowdsecUpdate, Request, Response},
        server::{Call, forward},
    },
    daemon::runtime::unix_now,
    fleet::backoff::Backoff,
};

/// The first retry after a failure, and the longest wait between retries.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(300);
/// How often a full pull replaces the local copy even when every delta
/// applied: the stream deletes by value, and a LAPI may leave out the
/// deletion of one of two decisions on a value (or repeat one of them), so
/// the copy is never off for longer than this.
const RESYNC: Duration = Duration::from_secs(600);

/// Runs until the daemon's loop goes away. `config` carries the `[crowdsec]`
/// section of the live config: a reload that changes it restarts the
/// bouncer with a full pull; one that removes it idles it.
pub async fn run(mut config: watch::Receiver<Option<CrowdsecConfig>>, calls: mpsc::Sender<Call>) {
    loop {
        let Some(cfg) = config.borrow_and_update().clone() else {
            if config.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            () = bounce(&cfg, &calls) => return,
            changed = config.changed() => if changed.is_err() { return },
        }
        info!(
            event = "crowdsec",
            "[crowdsec] changed: restarting the bouncer"
        );
    }
}

/// Pulls and applies until the engine is gone.
async fn bounce(cfg: &CrowdsecConfig, calls: &mpsc::Sender<Call>) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP);
    // None: the next pull is a startup pull on a fresh client.
    let mut lapi: Option<Lapi> = None;
    let mut last_error: Option<String> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        let startup = lapi.is_none() || last_full.elapsed() >= RESYNC;
        if startup {
            last_full = tokio::time::Instant::now();
        }
        match pull(cfg, &mut lapi, startup).await {
            Ok(batch) => {
                let n = batch.len();
                let update = CrowdsecUpdate::Pulled { batch };
                match forward(calls, Request::Crowdsec { update }).await {
                    Response::Ok(_) => {
                        if last_error.take().is_some() || startup {
                            info!(event = "crowdsec", url = %cfg.lapi_url, decisions = n, startup, "pulled the CrowdSec decisions");
                        }
                        backoff.reset();
                        tokio::time::sleep(cfg.poll).await;
                    }
                    Response::Error(e) if calls.is_closed() => {
                        let _ = e;
                        return;
                    }
                    Response::Error(e) => {
                        // Nothing of the batch was kept: start over with a
                        // full pull once the engine can take it.
                        warn!(event = "crowdsec", error = %e, "applying CrowdSec decisions failed; retrying with a full pull");
                        lapi = None;
                        tokio::time::sleep(backoff.next_wait()).await;
                    }
                }
            }
            Err(e) => {
                lapi = None;
                let error = e.to_string();
                if last_error.as_deref() != Some(error.as_str()) {
                    warn!(event = "crowdsec", error = %error, "CrowdSec LAPI pull failed; enforcing the decisions held, retrying");
                }
                let update = CrowdsecUpdate::Failed {
                    error: error.clone(),
                    auth: e.is_auth(),
                };
                if calls.is_closed() {
                    return;
                }
                let _ = forward(calls, Request::Crowdsec { update }).await;
                last_error = Some(error);
                let mut wait = backoff.next_wait();
                if e.is_auth() {
                    // Retrying soon will not fix a key; a fixed one is
                    // picked up at the next try.
                    wait = wait.max(RETRY_CAP / 2);
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn pull(
    cfg: &CrowdsecConfig,
    lapi: &mut Option<Lapi>,
    startup: bool,
) -> Result<Batch, LapiError> {
    let client = match lapi {
        Some(c) => c,
        None => lapi.insert(Lapi::new(cfg)?),
    };
    let reply = client.pull(startup).await?;
    Ok(Batch::from_reply(reply, startup, cfg, unix_now()))
}
