//! The fleet's ban stream: an edge that bans a source for its fleet total
//! adds the ban (`XADD` with an approximate length cap, so the stream stays
//! bounded); every edge reads what was added after the last entry it read
//! (`XREAD` from that id), so a reconnect misses nothing the cap kept.

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;
use redis::{Value, aio::ConnectionManager, streams::StreamReadReply};

use super::RedisError;

/// A ban one edge made for a fleet total, for the others to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetBan {
    /// The edge that made it (`[fleet] edge_id`), so it skips its own.
    pub edge: String,
    /// A source (`/32`, `/128`) or a prefix.
    pub target: IpNet,
    /// The reason, e.g. `fleet_quota`.
    pub reason: String,
    /// When it ends (Unix seconds) and how long it was made for.
    pub until_unix: u64,
    pub duration_secs: u64,
}

impl FleetBan {
    fn fields(&self) -> [(&'static str, String); 5] {
        [
            ("edge", self.edge.clone()),
            ("target", self.target.to_string()),
            ("reason", self.reason.clone()),
            ("until", self.until_unix.to_string()),
            ("duration", self.duration_secs.to_string()),
        ]
    }

    /// An entry's fields as a ban; `None` when one is missing or does not
    /// parse (the reader skips and counts it).
    fn from_fields(map: &HashMap<String, Value>) -> Option<FleetBan> {
        let text = |k: &str| -> Option<String> {
            match map.get(k)? {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        };
        let target = text("target")?;
        let target = target
            .parse::<IpNet>()
            .ok()
            .or_else(|| target.parse::<IpAddr>().ok().map(IpNet::from))?;
        Some(FleetBan {
            edge: text("edge")?,
            target,
            reason: text("reason")?,
            until_unix: text("until")?.parse().ok()?,
            duration_secs: text("duration")?.parse().ok()?,
        })
    }
}

/// Adds `ban` to `stream`, keeping about its last `max_len` entries; returns
/// the entry's id.
pub async fn publish(
    conn: &mut ConnectionManager,
    stream: &str,
    max_len: usize,
    ban: &FleetBan,
) -> Result<String, RedisError> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("MAXLEN").arg("~").arg(max_len).arg("*");
    for (k, v) in ban.fields() {
        cmd.arg(k).arg(v);
    }
    cmd.query_async(conn)
        .await
        .map_err(|source| RedisError::Command {
            what: "XADD",
            source,
        })
}

/// What [`read_after`] read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Read {
    /// The bans, oldest first, each with its entry id.
    pub bans: Vec<(String, FleetBan)>,
    /// Entries that were not a ban floodgate can read (skipped).
    pub skipped: u64,
    /// The id to read after next time (`after` when nothing was new).
    pub last_id: String,
}

/// Up to `count` entries of `stream` after the id `after` (`"0"`: from the
/// start; `"$"` is not accepted here: keep the last id read instead).
pub async fn read_after(
    conn: &mut ConnectionManager,
    stream: &str,
    after: &str,
    count: usize,
) -> Result<Read, RedisError> {
    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(stream)
        .arg(after)
        .query_async(conn)
        .await
        .map_err(|source| RedisError::Command {
            what: "XREAD",
            source,
        })?;
    let mut read = Read {
        last_id: after.to_owned(),
        ..Read::default()
    };
    for key in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in key.ids {
            match FleetBan::from_fields(&entry.map) {
                Some(ban) => read.bans.push((entry.id.clone(), ban)),
                None => read.skipped += 1,
            }
            read.last_id = entry.id;
        }
    }
    Ok(read)
}
