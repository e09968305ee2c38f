//! Test support for floodgate: a lab of network namespaces, synthetic frames and the
//! program loaded for BPF_PROG_TEST_RUN.

pub mod accounts;
pub mod crawl;
pub mod daemon;
pub mod dut;
pub mod fleet;
mod handmade;
pub mod lab;
pub mod packets;
pub mod previous;
pub mod verifier;
