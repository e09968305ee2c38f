//! The command line: one module per group of subcommands. Exit codes scripts
//! can trust: 0 success, 1 the operation failed (the daemon refused it, a config
//! is invalid), 2 bad usage, 3 the daemon cannot be reached.

mod config_cmd;
mod detach;
mod lists;
mod render;
mod rules;
mod run;
mod sets;
mod show;
mod stdout;
mod top_watch;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use stdout::outln;

use crate::{
    control::{
        client::{self, ClientError},
        proto::{Mode, Reply, Request},
    },
    paths,
};

/// floodgate: stops crawler floods at the NIC with an XDP rate limiter.
///
/// Run the daemon with `floodgate run --iface IFACE`; every other command talks to
/// it over its control socket.
#[derive(Debug, Parser)]
#[command(
    name = "floodgate",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, env = paths::SOCKET_ENV, default_value = paths::SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: load the program, attach it, apply the policy.
    Run(run::RunArgs),
    /// Interfaces, XDP mode, program id, mode, uptime, config and map fill levels.
    Status(JsonArg),
    /// Passed and dropped packets and bytes, in total and per reason.
    Stats(show::StatsArgs),
    /// The heaviest sources (or prefixes), with drops and ban state.
    Top(show::TopArgs),
    /// Sources that are never limited.
    #[command(subcommand)]
    Allow(lists::AllowCmd),
    /// Sources that are always dropped.
    #[command(subcommand)]
    Block(lists::BlockCmd),
    /// Sources and prefixes banned for exceeding a limit.
    #[command(subcommand)]
    Bans(lists::BansCmd),
    /// IP sets kept current from files and URLs ([[set]] in the config).
    #[command(subcommand)]
    Sets(sets::SetsCmd),
    /// Switch between enforcing and only counting what would be dropped.
    Mode {
        #[arg(value_enum)]
        mode: Mode,
    },
    /// Re-read the configuration file and apply what changed.
    Reload,
    /// Remove the program from one interface, or from all and delete its pins.
    Detach(detach::DetachArgs),
    /// Print the embedded default policy or check a configuration file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), for packaging.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, clap::Args)]
pub struct JsonArg {
    /// Print JSON (stable schema, see README) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match e {
            ClientError::Daemon(_) => 1,
            _ => 3,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl Failure {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

/// Sends one request to the daemon.
pub(crate) async fn call(cli: &Cli, request: Request) -> Result<Reply, Failure> {
    Ok(client::call(&cli.socket, request).await?)
}

/// Prints a `Done` reply's message.
pub(crate) fn print_done(reply: Reply) -> Result<(), Failure> {
    match reply {
        Reply::Done { message } => {
            outln!("{message}");
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn unexpected(reply: &Reply) -> Failure {
    Failure::new(
        3,
        format!("unexpected reply from the daemon: {reply:?}; use the CLI of the daemon's release"),
    )
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::new(1, e))?;
    outln!("{text}");
    Ok(())
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run::run(args, &cli.socket),
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "floodgate",
                &mut script,
            );
            stdout::write_bytes(&script);
            Ok(())
        }
        Command::Detach(args) => detach::run(&cli, args),
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .map(|()| stdout::write_bytes(&page))
                .map_err(|e| Failure::new(1, e))
        }
        _ => client_command(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("floodgate: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn client_command(cli: &Cli) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("starting the async runtime: {e}")))?;
    rt.block_on(async {
        match &cli.command {
            Command::Status(a) => show::status(cli, a.json).await,
            Command::Stats(a) => show::stats(cli, a).await,
            Command::Top(a) => show::top(cli, a).await,
            Command::Allow(c) => lists::allow(cli, c).await,
            Command::Block(c) => lists::block(cli, c).await,
            Command::Bans(c) => lists::bans(cli, c).await,
            Command::Sets(c) => sets::sets(cli, c).await,
            Command::Mode { mode } => print_done(call(cli, Request::Mode { mode: *mode }).await?),
            Command::Reload => print_done(call(cli, Request::Reload).await?),
            Command::Run(_)
            | Command::Config(_)
            | Command::Completions { .. }
            | Command::Detach(_)
            | Command::Man => Ok(()),
        }
    })
}
