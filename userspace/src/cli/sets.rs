//! `floodgate sets list|show NAME|refresh [NAME]`.

use clap::Subcommand;

use super::{Cli, Failure, call, print_done, print_json, render, stdout::outln, unexpected};
use crate::control::proto::{Reply, Request};

#[derive(Debug, Subcommand)]
pub enum SetsCmd {
    /// Each [[set]]: source, entries, last refresh, errors, where it is used.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The entries of one set.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Fetch one set (or every set) now instead of at its next refresh.
    Refresh { name: Option<String> },
}

pub async fn sets(cli: &Cli, cmd: &SetsCmd) -> Result<(), Failure> {
    match cmd {
        SetsCmd::List { json } => {
            let reply = call(cli, Request::SetsList).await?;
            let Reply::Sets { sets } = reply else {
                return Err(unexpected(&reply));
            };
            if *json {
                return print_json(&sets);
            }
            let now = crate::daemon::runtime::unix_now();
            let mut t = render::table(&[
                "set",
                "entries",
                "refreshed",
                "every",
                "errors",
                "used in",
                "source",
            ]);
            for s in sets {
                let refreshed = s.last_refresh_unix.map_or_else(
                    || "never".to_owned(),
                    |u| format!("{} ago", render::secs(now.saturating_sub(u) as f64)),
                );
                let errors = match &s.last_error {
                    Some(e) => format!("{} (last: {e})", s.errors),
                    None => s.errors.to_string(),
                };
                t.add_row(vec![
                    s.name,
                    render::count(s.entries),
                    refreshed,
                    render::secs(s.refresh_secs as f64),
                    errors,
                    if s.used_in.is_empty() {
                        "nowhere".to_owned()
                    } else {
                        s.used_in.join(", ")
                    },
                    s.source,
                ]);
            }
            outln!("{t}");
            Ok(())
        }
        SetsCmd::Show { name, json } => {
            let reply = call(cli, Request::SetsShow { name: name.clone() }).await?;
            let Reply::SetEntries { nets, total, .. } = reply else {
                return Err(unexpected(&reply));
            };
            if *json {
                return print_json(&nets);
            }
            for n in &nets {
                outln!("{n}");
            }
            if total > nets.len() as u64 {
                eprintln!("floodgate: {} of {total} entries shown", nets.len());
            }
            Ok(())
        }
        SetsCmd::Refresh { name } => {
            print_done(call(cli, Request::SetsRefresh { name: name.clone() }).await?)
        }
    }
}
