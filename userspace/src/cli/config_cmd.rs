//! `config default` and `config check`.

use super::stdout::{out, outln};
use std::path::PathBuf;

use clap::Subcommand;

use super::Failure;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the embedded default policy (a documented starting point).
    Default,
    /// Validate a configuration file without a daemon (exit 0 valid, 1 invalid).
    Check { file: PathBuf },
}

pub fn run(cmd: &ConfigCmd) -> Result<(), Failure> {
    match cmd {
        ConfigCmd::Default => {
            out!("{}", Config::default_toml());
            Ok(())
        }
        ConfigCmd::Check { file } => {
            Config::load(file).map_err(|e| Failure::new(1, e))?;
            outln!("{}: ok", file.display());
            Ok(())
        }
    }
}
