//! `cargo xtask`'s tasks, one module each; a library so the tests crate can
//! stage an install or a Debian package from an already built binary.

pub mod bench;
pub mod build;
pub mod deb;
pub mod demo;
pub mod install;
pub mod kernels;
pub mod setup;
pub mod test;
pub mod util;
