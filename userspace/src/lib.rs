//! floodgate: an XDP rate limiter for edge hosts. This library holds the logic;
//! the `floodgate` binary is a thin daemon and CLI over it.

pub mod addr;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fleet;
pub mod kernel;
pub mod loader;
pub mod memory;
pub mod migrate;
pub mod object;
pub mod paths;
pub mod policy;
pub mod sets;
pub mod stats;
pub mod tables;
