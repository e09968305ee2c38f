//! `floodgate detach`: through the daemon when it runs, else straight on the pins.

use super::stdout::outln;
use std::path::PathBuf;

use super::{Cli, Failure, print_done};
use crate::{
    control::{
        client::{self, ClientError},
        proto::Request,
    },
    daemon::{engine::remove_pins, links},
    paths,
};

#[derive(Debug, clap::Args)]
pub struct DetachArgs {
    /// Only this interface (default: every interface, and the pins are removed).
    #[arg(long)]
    pub iface: Option<String>,
    /// Pin dir used when no daemon runs.
    #[arg(long, default_value = paths::PIN_DIR)]
    pub pin_dir: PathBuf,
}

pub fn run(cli: &Cli, args: &DetachArgs) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("starting the async runtime: {e}")))?;
    let request = Request::Detach {
        iface: args.iface.clone(),
    };
    match rt.block_on(client::call(&cli.socket, request)) {
        Ok(reply) => print_done(reply),
        Err(ClientError::NotRunning { .. }) => offline(args),
        Err(e) => Err(e.into()),
    }
}

/// No daemon: remove the pins directly (the kernel detaches the program when
/// its last link reference goes).
fn offline(args: &DetachArgs) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::new(1, format!("{}: {e}", args.pin_dir.display()));
    match &args.iface {
        Some(iface) => {
            if links::detach(&args.pin_dir, iface).map_err(io)? {
                outln!("detached from {iface}");
                Ok(())
            } else {
                Err(Failure::new(
                    1,
                    format!(
                        "no floodgate link for {iface} under {}",
                        args.pin_dir.display()
                    ),
                ))
            }
        }
        None => {
            remove_pins(&args.pin_dir).map_err(io)?;
            outln!(
                "detached from every interface; pins under {} removed",
                args.pin_dir.display()
            );
            Ok(())
        }
    }
}
