//! floodgate and a CrowdSec Local API: the bouncer pulls its decision
//! stream and hands each pull to the engine as one batch (see
//! `daemon::remote`); the watcher sends floodgate's own bans as alerts.

pub mod alert;
pub mod bouncer;
pub mod client;
pub mod decision;
pub mod duration;
pub mod watcher;
