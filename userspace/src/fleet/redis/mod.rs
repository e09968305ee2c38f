//! Fleet-wide quotas on Redis (issue #15), the client side: the long-window
//! counts every edge adds to and reads back in one round trip ([`counts`]),
//! which sources an edge sends when it has too many ([`select`]), and the
//! stream that fans a fleet ban out to the other edges ([`stream`]).
//!
//! Not wired into the daemon yet: the program does not yet tell userspace
//! which sources had traffic since the last sync, and walking the whole
//! source map every second is what the issue rules out.

pub mod counts;
pub mod keys;
pub mod select;
pub mod stream;

pub use counts::{Delta, add_and_read};
pub use keys::{Counted, WindowKey};
pub use stream::{FleetBan, publish, read_after};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// A Redis error, with what was being done and what to check.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error(
        "[fleet] redis: {url:?} is not a Redis URL ({source}) — write it like \"redis://HOST:PORT/DB\" or \"rediss://…\" for TLS"
    )]
    Url {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error(
        "connecting to Redis at {at}: {source} — check [fleet] redis, that the server listens there, and its password"
    )]
    Connect {
        at: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis {what} failed: {source}")]
    Command {
        what: &'static str,
        #[source]
        source: redis::RedisError,
    },
}

/// How long one round trip may take before it counts as failed (the sync
/// then falls back to local quotas until Redis answers again).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to `url` that reconnects by itself after a failure (each
/// command on a dead connection fails, then triggers the reconnect). The
/// password, if any, is in the URL (`redis://:PASSWORD@HOST:PORT/DB`).
pub async fn connect(url: &str) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(url).map_err(|source| RedisError::Url {
        url: redacted(url),
        source,
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|source| RedisError::Connect {
            at: redacted(url),
            source,
        })
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            redacted("redis://:s3cret@198.18.9.1:6379/0"),
            "redis://…@198.18.9.1:6379/0"
        );
        assert_eq!(
            redacted("redis://198.18.9.1:6379/0"),
            "redis://198.18.9.1:6379/0"
        );
    }
}
