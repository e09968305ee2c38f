//! floodgate as a CrowdSec bouncer: pulls the Local API's decision stream
//! and hands each pull to the engine as one batch (see `daemon::remote`).

pub mod bouncer;
pub mod client;
pub mod decision;
pub mod duration;
