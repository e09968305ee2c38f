//! floodgate: an XDP rate limiter for edge hosts. This library holds the logic;
//! the `floodgate` binary is a thin daemon and CLI over it.

pub mod addr;
pub mod loader;
pub mod object;
pub mod paths;
pub mod stats;
pub mod tables;
