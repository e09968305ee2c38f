//! The control socket: protocol, client (the CLI) and server (the daemon).

pub mod access;
pub mod client;
pub mod fleet;
pub mod proto;
pub mod server;
