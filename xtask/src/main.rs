//! `cargo xtask`: setup, build, test and demo for floodgate, one module each.

use clap::{Parser, Subcommand};
use xtask::{bench, build, deb, demo, install, kernels, setup, test};

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
    /// Build the workspace with the real XDP program embedded; with --release
    /// or --target, the static floodgate binary (musl: runs on any distribution).
    Build {
        /// Optimised static build (target/TRIPLE/release/floodgate).
        #[arg(long)]
        release: bool,
        /// x86_64-unknown-linux-musl (default with --release) or
        /// aarch64-unknown-linux-musl (cross-built for arm64).
        #[arg(long, value_name = "TRIPLE")]
        target: Option<String>,
    },
    /// Build the Debian package target/debian/floodgate_VERSION_ARCH.deb.
    Deb {
        #[arg(long, value_name = "TRIPLE", default_value = build::DEFAULT_TARGET)]
        target: String,
    },
    /// Format check, clippy, then every unit and integration test (as root).
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Boot Debian's kernels (stock 6.1, oldest 6.1, newest 6.12, arm64 6.1)
    /// under QEMU and run floodgate on each (also part of `test`).
    Kernels {
        /// Only the kernels whose label or package contains this, e.g. `6.12` or `arm64`.
        #[arg(long, value_name = "TEXT")]
        kernel: Option<String>,
    },
    /// Benchmark floodgate against a bare XDP_DROP, xdp-filter, nftables and iptables.
    Bench {
        /// A shorter run (under a minute).
        #[arg(long)]
        quick: bool,
        /// Only `top`, `status` and control requests under metrics scrapes
        /// over a million tracked sources, printed as JSON.
        #[arg(long)]
        walks: bool,
        /// Only each path against the program before the data-plane trust
        /// work (#11), alternately in one run, printed as JSON.
        #[arg(long)]
        before: bool,
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
        /// The static binary to build and install.
        #[arg(long, value_name = "TRIPLE", default_value = build::DEFAULT_TARGET)]
        target: String,
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
        Task::Build { release, target } => build::run(release, target.as_deref()),
        Task::Deb { target } => deb::run(&target),
        Task::Test { args } => test::run(&args),
        Task::Kernels { kernel } => {
            let (passed, failed) = kernels::run(kernel.as_deref())?;
            println!("cargo xtask kernels: {passed} passed, {failed} failed");
            if failed > 0 {
                anyhow::bail!("{failed} kernel(s) of the matrix failed");
            }
            Ok(())
        }
        Task::Demo { all } => demo::run(if all { &["--all"] } else { &[] }),
        Task::Bench {
            quick,
            walks,
            before,
        } => bench::run(quick, walks, before),
        Task::Install {
            prefix,
            root,
            dry_run,
            target,
        } => install::install(&prefix, &root, &target, dry_run),
        Task::Uninstall {
            prefix,
            root,
            dry_run,
        } => install::uninstall(&prefix, &root, dry_run),
    }
}
