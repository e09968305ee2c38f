//! `floodgate run`.

use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
};

use tracing_subscriber::{EnvFilter, fmt};

use super::Failure;
use crate::{
    daemon::{self, Options},
    loader::AttachMode,
    paths,
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Interface to filter (repeat for several).
    #[arg(long = "iface", required = true, value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Policy file (TOML). Without it the embedded default policy applies
    /// (`floodgate config default` prints it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where maps and links are pinned; must be on a bpffs (mounted if missing).
    #[arg(long, default_value = paths::PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Where CLI changes are kept across restarts and reboots.
    #[arg(long, default_value = paths::STATE_DIR)]
    pub state_dir: PathBuf,
    /// XDP attach mode: auto tries native and falls back to generic.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,
    /// Let members of this group use the control socket read-only (status,
    /// stats, top, the lists); without it and --admin-group only root can.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Let members of this group use every verb of the control socket, changes
    /// and detach included, as root can.
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9470).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// When the kernel's verifier rejects the program, log its full account
    /// (thousands of lines) after the one-line reason.
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: &RunArgs, socket: &Path) -> Result<(), Failure> {
    let filter =
        EnvFilter::try_from_env("FLOODGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let init = match args.log_format {
        // Colours only on a terminal: journald and log files get plain key=value.
        LogFormat::Text => fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => fmt().json().with_env_filter(filter).try_init(),
    };
    init.map_err(|e| Failure::new(1, format!("setting up logging: {e}")))?;
    let options = Options {
        ifaces: args.ifaces.clone(),
        config: args.config.clone(),
        socket: socket.to_owned(),
        pin_dir: args.pin_dir.clone(),
        state_dir: args.state_dir.clone(),
        xdp_mode: args.xdp_mode,
        socket_group: args.socket_group.clone(),
        admin_group: args.admin_group.clone(),
        metrics: args.metrics,
        verbose: args.verbose,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("starting the async runtime: {e}")))?;
    // daemon::run has logged the error.
    rt.block_on(daemon::run(options))
        .map_err(|e| Failure::new(1, e))
}
