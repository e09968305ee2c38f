//! Clients of the engines a fleet already runs (a CrowdSec Local API). Each
//! runs as a task of the daemon and talks to the engine the way the control
//! socket does: typed requests over the daemon's call channel, applied in
//! order by the one owner of the maps.

pub mod backoff;
pub mod crowdsec;
pub mod redis;
pub mod tls;
