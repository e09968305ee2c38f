//! One sync's round trip: every edge adds what it counted since its last
//! sync and reads the fleet's totals back, in one pipeline. Each key gets
//! `INCRBY key DELTA` then `EXPIRE key WINDOW NX`: the first edge to count
//! a source starts its window (the fleet's first sight of it), later adds
//! leave the expiry alone, and the key disappears when the window ends
//! (a fixed window; envoyproxy/ratelimit keeps its windows the same way).

use redis::aio::ConnectionManager;

use super::{RedisError, WindowKey};

/// What one edge counted for a key since its last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub key: WindowKey,
    pub add: u64,
}

/// Adds every delta under `namespace` and returns the fleet's totals, in the
/// order of `deltas`, from one round trip.
pub async fn add_and_read(
    conn: &mut ConnectionManager,
    namespace: &str,
    deltas: &[Delta],
) -> Result<Vec<u64>, RedisError> {
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for d in deltas {
        let name = d.key.name(namespace);
        pipe.cmd("INCRBY").arg(&name).arg(d.add);
        pipe.cmd("EXPIRE")
            .arg(&name)
            .arg(d.key.window_secs.max(1))
            .arg("NX")
            .ignore();
    }
    let totals: Vec<i64> = pipe
        .query_async(conn)
        .await
        .map_err(|source| RedisError::Command {
            what: "INCRBY/EXPIRE pipeline",
            source,
        })?;
    Ok(totals
        .into_iter()
        .map(|t| u64::try_from(t).unwrap_or(0))
        .collect())
}
