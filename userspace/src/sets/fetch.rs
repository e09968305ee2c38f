//! Fetching a set: a file, or a URL with a conditional request (reqwest).

use std::time::Duration;

use reqwest::{StatusCode, header};

use super::cache::Cached;
use crate::config::{SetSource, SetSpec};

/// The most a set may weigh: the largest published feeds (AWS's
/// ip-ranges.json) are a few megabytes.
pub const MAX_BYTES: usize = 64 << 20;
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("fetching {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{from}: over {} MiB — is it the right URL?", MAX_BYTES >> 20)]
    TooBig { from: String },
    #[error("{from}: not UTF-8 text")]
    NotText { from: String },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The server said the copy held is current (304).
    Unchanged,
    Body {
        text: String,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

pub fn client() -> Result<reqwest::Client, FetchError> {
    crate::fleet::tls::init();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("floodgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(FetchError::Client)
}

/// Fetches `spec`; `held` is the copy held, whose validators make the
/// request conditional.
pub async fn fetch(
    http: &reqwest::Client,
    spec: &SetSpec,
    held: Option<&Cached>,
) -> Result<Fetched, FetchError> {
    match &spec.source {
        SetSource::File(p) => {
            let path = p.display().to_string();
            let read = {
                let p = p.clone();
                tokio::task::spawn_blocking(move || std::fs::read(p)).await
            };
            let bytes = read
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|source| FetchError::File {
                    path: path.clone(),
                    source,
                })?;
            if bytes.len() > MAX_BYTES {
                return Err(FetchError::TooBig { from: path });
            }
            let text = String::from_utf8(bytes).map_err(|_| FetchError::NotText { from: path })?;
            Ok(Fetched::Body {
                text,
                etag: None,
                last_modified: None,
            })
        }
        SetSource::Url(url) => {
            let err = |source| FetchError::Http {
                url: url.clone(),
                source,
            };
            let mut req = http.get(url);
            if let Some(c) = held {
                if let Some(e) = &c.etag {
                    req = req.header(header::IF_NONE_MATCH, e);
                }
                if let Some(m) = &c.last_modified {
                    req = req.header(header::IF_MODIFIED_SINCE, m);
                }
            }
            let mut reply = req.send().await.map_err(err)?;
            match reply.status() {
                StatusCode::NOT_MODIFIED if held.is_some() => return Ok(Fetched::Unchanged),
                s if s.is_success() => {}
                s => {
                    return Err(FetchError::Status {
                        url: url.clone(),
                        status: s.as_u16(),
                    });
                }
            }
            let header_of = |name| {
                reply
                    .headers()
                    .get(name)
                    .and_then(|v: &header::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (etag, last_modified) = (header_of(header::ETAG), header_of(header::LAST_MODIFIED));
            let mut body = Vec::new();
            while let Some(chunk) = reply.chunk().await.map_err(err)? {
                if body.len() + chunk.len() > MAX_BYTES {
                    return Err(FetchError::TooBig { from: url.clone() });
                }
                body.extend_from_slice(&chunk);
            }
            let text =
                String::from_utf8(body).map_err(|_| FetchError::NotText { from: url.clone() })?;
            Ok(Fetched::Body {
                text,
                etag,
                last_modified,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    /// reqwest is built without a crypto provider of its own: the client
    /// builds only with ours installed (an https source needs it).
    #[test]
    fn the_https_client_builds_with_ring() {
        assert!(super::client().is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
