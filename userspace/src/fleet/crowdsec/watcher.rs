//! The watcher: floodgate's own bans go to the LAPI as alerts, each with
//! its decision, so every other bouncer of the fleet drops the offender
//! too. Alerts are batched (1 s or 100), sent with a JWT from
//! `/v1/watchers/login` (logged in again on 401 and before it expires), and
//! queued while the LAPI is unreachable: bounded, saved in the state dir,
//! replayed with their own times.

use std::{path::PathBuf, time::Duration};

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{info, warn};

use super::alert::{LocalBan, Queue};
use crate::{
    config::{CrowdsecConfig, KeySource, WatcherConfig},
    control::{
        proto::{CrowdsecUpdate, Request},
        server::{Call, forward},
    },
    fleet::backoff::Backoff,
};

/// An alert waits at most this long for others to share its request.
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// Alerts per request.
const BATCH_MAX: usize = 100;
/// A JWT lives an hour; a new one is fetched before that.
const TOKEN_LIFE: Duration = Duration::from_secs(50 * 60);
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error(
        "the LAPI at {url} refused the watcher login of machine {machine} (HTTP {status}) — check crowdsec.machine_id and password(_file) against `cscli machines list`, or add it with `cscli machines add {machine} --password …`"
    )]
    Login {
        url: String,
        machine: String,
        status: u16,
    },
    #[error("the LAPI at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("reaching the LAPI at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("reading crowdsec.password_file {path}: {source}")]
    PasswordFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("crowdsec.lapi_url {0}: not a base URL")]
    Url(String),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

#[derive(Deserialize)]
struct LoginReply {
    token: String,
}

/// One LAPI's watcher endpoints and the current token.
struct Client {
    http: reqwest::Client,
    login: Url,
    alerts: Url,
    watcher: WatcherConfig,
    token: Option<(String, Instant)>,
}

impl Client {
    fn new(cfg: &CrowdsecConfig, watcher: &WatcherConfig) -> Result<Client, WatcherError> {
        let url_err = |_| WatcherError::Url(cfg.lapi_url.clone());
        let base = Url::parse(&cfg.lapi_url).map_err(url_err)?;
        crate::fleet::tls::init();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("floodgate-watcher/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WatcherError::Client)?;
        Ok(Client {
            http,
            login: base.join("v1/watchers/login").map_err(url_err)?,
            alerts: base.join("v1/alerts").map_err(url_err)?,
            watcher: watcher.clone(),
            token: None,
        })
    }

    fn transport(url: &Url) -> impl Fn(reqwest::Error) -> WatcherError + '_ {
        move |source| WatcherError::Transport {
            url: url.to_string(),
            source,
        }
    }

    async fn token(&mut self) -> Result<String, WatcherError> {
        if let Some((t, at)) = &self.token
            && at.elapsed() < TOKEN_LIFE
        {
            return Ok(t.clone());
        }
        let password = match &self.watcher.password {
            KeySource::Inline(p) => p.clone(),
            KeySource::File(p) => std::fs::read_to_string(p)
                .map_err(|source| WatcherError::PasswordFile {
                    path: p.display().to_string(),
                    source,
                })?
                .trim()
                .to_owned(),
        };
        let body = json!({
            "machine_id": self.watcher.machine_id,
            "password": password,
            "scenarios": ["floodgate/*"],
        });
        let reply = self
            .http
            .post(self.login.clone())
            .json(&body)
            .send()
            .await
            .map_err(Self::transport(&self.login))?;
        let status = reply.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(WatcherError::Login {
                url: self.login.to_string(),
                machine: self.watcher.machine_id.clone(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(WatcherError::Status {
                url: self.login.to_string(),
                status: status.as_u16(),
                body: reply.text().await.unwrap_or_default(),
            });
        }
        let t: LoginReply = reply.json().await.map_err(Self::transport(&self.login))?;
        self.token = Some((t.token.clone(), Instant::now()));
        Ok(t.token)
    }

    /// Sends `alerts`; a 401 (an expired or revoked token) logs in again once.
    async fn send(&mut self, alerts: &[Value]) -> Result<(), WatcherError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let reply = self
                .http
                .post(self.alerts.clone())
                .bearer_auth(token)
                .json(alerts)
                .send()
                .await
                .map_err(Self::transport(&self.alerts))?;
            let status = reply.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.token = None;
                continue;
            }
            if status.is_success() {
                return Ok(());
            }
            return Err(WatcherError::Status {
                url: self.alerts.to_string(),
                status: status.as_u16(),
                body: reply.text().await.unwrap_or_default(),
            });
        }
        Err(WatcherError::Login {
            url: self.login.to_string(),
            machine: self.watcher.machine_id.clone(),
            status: 401,
        })
    }
}

/// The host's name, for the alerts' message and metadata.
fn edge_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "floodgate".to_owned())
}

/// Runs until the daemon's loop goes away, sending what `bans` brings.
pub async fn run(
    mut config: watch::Receiver<Option<CrowdsecConfig>>,
    mut bans: mpsc::Receiver<LocalBan>,
    state_dir: PathBuf,
    calls: mpsc::Sender<Call>,
) {
    let (mut queue, invalid) = Queue::load(&state_dir);
    if let Some(w) = invalid {
        warn!("{w}");
    }
    let edge = edge_name();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    let mut client: Option<Client> = None;
    let mut due: Option<Instant> = (!queue.alerts.is_empty()).then(Instant::now);
    let mut sent: u64 = 0;
    let mut last_error: Option<String> = None;
    loop {
        let cfg = config.borrow().clone();
        let watcher = cfg
            .as_ref()
            .and_then(|c| c.watcher.clone().map(|w| (c.clone(), w)));
        let send_at = due.filter(|_| watcher.is_some());
        tokio::select! {
            ban = bans.recv() => {
                let Some(ban) = ban else { return };
                queue.push(ban);
                // While retrying, the retry's time stands; else a full
                // batch goes now and a first alert waits for company.
                if last_error.is_none() {
                    if queue.alerts.len() >= BATCH_MAX {
                        due = Some(Instant::now());
                    } else if due.is_none() {
                        due = Some(Instant::now() + BATCH_WAIT);
                    }
                }
            }
            () = async {
                match send_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let Some((cfg, w)) = watcher else { continue };
                let result = match client.as_mut() {
                    Some(c) => send_batch(c, &queue, &edge).await,
                    None => match Client::new(&cfg, &w) {
                        Ok(c) => send_batch(client.insert(c), &queue, &edge).await,
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok(n) => {
                        queue.alerts.drain(..n);
                        sent += n as u64;
                        backoff.reset();
                        if last_error.take().is_some() {
                            info!(event = "crowdsec", "alerts reach the CrowdSec LAPI again");
                        }
                        due = (!queue.alerts.is_empty()).then(Instant::now);
                        save(&queue, &state_dir);
                    }
                    Err(e) => {
                        let error = e.to_string();
                        if last_error.as_deref() != Some(error.as_str()) {
                            warn!(event = "crowdsec", error = %error, queued = queue.alerts.len(), "sending alerts to the CrowdSec LAPI failed; queued, retrying");
                        }
                        last_error = Some(error);
                        client = None;
                        due = Some(Instant::now() + backoff.next_wait());
                        save(&queue, &state_dir);
                    }
                }
                let update = CrowdsecUpdate::Watcher {
                    up: last_error.is_none(),
                    sent,
                    queued: queue.alerts.len() as u64,
                    dropped: queue.dropped,
                    error: last_error.clone(),
                };
                if calls.is_closed() {
                    return;
                }
                let _ = forward(&calls, Request::Crowdsec { update }).await;
            }
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                client = None;
                if !queue.alerts.is_empty() {
                    due = Some(Instant::now());
                }
            }
        }
    }
}

/// Sends the oldest alerts (at most a batch); returns how many went.
async fn send_batch(c: &mut Client, queue: &Queue, edge: &str) -> Result<usize, WatcherError> {
    let alerts: Vec<Value> = queue
        .alerts
        .iter()
        .take(BATCH_MAX)
        .map(|b| b.to_alert(edge))
        .collect();
    c.send(&alerts).await?;
    Ok(alerts.len())
}

fn save(queue: &Queue, state_dir: &std::path::Path) {
    if let Err(e) = queue.save(state_dir) {
        warn!(error = %e, "saving the queue of CrowdSec alerts");
    }
}
