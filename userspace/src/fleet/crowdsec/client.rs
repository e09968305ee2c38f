//! The HTTP side of the bouncer: `GET /v1/decisions/stream` with the
//! bouncer's key, on reqwest (rustls).

use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::decision::StreamReply;
use crate::config::{CrowdsecConfig, KeySource};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one pull may take, reply included (a startup pull of 100 000
/// decisions is a few megabytes).
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LapiError {
    #[error(
        "the LAPI at {url} refused the bouncer key (HTTP 403) — check crowdsec.bouncer_key or bouncer_key_file against `cscli bouncers list`, or add one with `cscli bouncers add floodgate`"
    )]
    Forbidden { url: String },
    #[error("the LAPI at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("reaching the LAPI at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the LAPI's stream reply is not what a LAPI sends ({source}); the decisions held stay")]
    Body {
        #[source]
        source: serde_json::Error,
    },
    #[error("reading crowdsec.bouncer_key_file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "crowdsec.bouncer_key_file {path} is empty — write the key `cscli bouncers add floodgate` printed into it"
    )]
    EmptyKey { path: String },
    #[error("crowdsec.lapi_url {url}: {why}")]
    Url { url: String, why: String },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl LapiError {
    /// A refusal that retrying with the same key cannot fix.
    pub const fn is_auth(&self) -> bool {
        matches!(
            self,
            LapiError::Forbidden { .. } | LapiError::KeyFile { .. } | LapiError::EmptyKey { .. }
        )
    }
}

/// One connection's worth of client: the key is read when it is made.
pub struct Lapi {
    http: reqwest::Client,
    stream: Url,
    key: String,
}

impl Lapi {
    pub fn new(cfg: &CrowdsecConfig) -> Result<Lapi, LapiError> {
        let key = match &cfg.key {
            KeySource::Inline(k) => k.clone(),
            KeySource::File(p) => {
                let path = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| LapiError::KeyFile {
                    path: path.clone(),
                    source,
                })?;
                let key = text.trim().to_owned();
                if key.is_empty() {
                    return Err(LapiError::EmptyKey { path });
                }
                key
            }
        };
        let url_err = |why: String| LapiError::Url {
            url: cfg.lapi_url.clone(),
            why,
        };
        let base = Url::parse(&cfg.lapi_url).map_err(|e| url_err(e.to_string()))?;
        let stream = base
            .join("v1/decisions/stream")
            .map_err(|e| url_err(e.to_string()))?;
        crate::fleet::tls::init();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(PULL_TIMEOUT)
            .user_agent(concat!("floodgate-bouncer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(LapiError::Client)?;
        Ok(Lapi { http, stream, key })
    }

    /// One pull: every decision (`startup`) or what changed since the last.
    pub async fn pull(&self, startup: bool) -> Result<StreamReply, LapiError> {
        let mut target = self.stream.clone();
        target
            .query_pairs_mut()
            .append_pair("startup", if startup { "true" } else { "false" });
        let url = self.stream.to_string();
        let transport = |source| LapiError::Transport {
            url: url.clone(),
            source,
        };
        let reply = self
            .http
            .get(target)
            .header("X-Api-Key", &self.key)
            .send()
            .await
            .map_err(transport)?;
        match reply.status() {
            StatusCode::OK => {}
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                return Err(LapiError::Forbidden { url });
            }
            s => {
                return Err(LapiError::Status {
                    url,
                    status: s.as_u16(),
                });
            }
        }
        let body = reply.bytes().await.map_err(transport)?;
        // 1.4.x answers a stream with nothing to say with a bare `null`.
        if body.trim_ascii() == b"null" {
            return Ok(StreamReply::default());
        }
        serde_json::from_slice(&body).map_err(|source| LapiError::Body { source })
    }
}
