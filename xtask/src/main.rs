//! `cargo xtask`: setup, build, test and demo for floodgate, one module each.

mod bench;
mod build;
mod demo;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

/// Developer tasks for floodgate. Every task runs `setup` first.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent) and check the kernel.
    Setup,
    /// Build the workspace with the real XDP program embedded.
    Build {
        /// Optimised build (target/release/floodgate).
        #[arg(long)]
        release: bool,
    },
    /// Format check, clippy, then every unit and integration test (as root).
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Benchmark floodgate against a bare XDP_DROP, xdp-filter, nftables and iptables.
    Bench {
        /// A shorter run (under a minute).
        #[arg(long)]
        quick: bool,
    },
    /// Run the lab demo: a crawler flood and a normal client through floodgate.
    Demo,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    setup::run()?;
    match cli.task {
        Task::Setup => Ok(()),
        Task::Build { release } => build::run(release),
        Task::Test { args } => test::run(&args),
        Task::Demo => demo::run(),
        Task::Bench { quick } => bench::run(quick),
    }
}
