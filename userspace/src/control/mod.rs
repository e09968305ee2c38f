//! The control socket: protocol, client (the CLI) and server (the daemon).

pub mod access;
pub mod client;
pub mod proto;
pub mod server;
