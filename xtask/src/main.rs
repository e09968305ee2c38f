//! `cargo xtask`: setup, build, test and demo for floodgate, one module each.

mod bench;
mod build;
mod demo;
mod install;
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
    /// Install the release binary, systemd unit, default config, completions and man page.
    Install {
        /// Installation prefix for the binary, completions and man page.
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
        /// Install below this directory instead of / (staging, packaging).
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
        /// Print what would be installed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Detach floodgate and remove what `install` put in place (the config stays).
    Uninstall {
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the crawler lab demo: nginx behind floodgate, crawlers and people,
    /// with a per-scenario report.
    Demo {
        /// Also run the IPv6, VLAN, reload and restart scenarios.
        #[arg(long)]
        all: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    setup::run()?;
    match cli.task {
        Task::Setup => Ok(()),
        Task::Build { release } => build::run(release),
        Task::Test { args } => test::run(&args),
        Task::Demo { all } => demo::run(if all { &["--all"] } else { &[] }),
        Task::Bench { quick } => bench::run(quick),
        Task::Install {
            prefix,
            root,
            dry_run,
        } => install::install(&prefix, &root, dry_run),
        Task::Uninstall {
            prefix,
            root,
            dry_run,
        } => install::uninstall(&prefix, &root, dry_run),
    }
}
