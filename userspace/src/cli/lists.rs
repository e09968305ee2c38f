//! `allow`, `block` and `bans`.

use super::stdout::outln;
use std::{net::IpAddr, time::Duration};

use clap::Subcommand;
use ipnet::IpNet;

use super::{Cli, Failure, call, print_done, print_json, render, unexpected};
use crate::control::proto::{ListEntry, Reply, Request};

/// Parses "203.0.113.0/24" or a bare address (a /32 or /128).
fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("{s:?} is not an address or CIDR (e.g. 203.0.113.0/24 or 2001:db8::/32)")
        })
}

#[derive(Debug, Subcommand)]
pub enum AllowCmd {
    /// Never limit this CIDR.
    Add {
        #[arg(value_parser = cidr)]
        cidr: IpNet,
    },
    /// Remove a CIDR from the allow list.
    Remove {
        #[arg(value_parser = cidr)]
        cidr: IpNet,
    },
    /// Show the allow list.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// Always drop this CIDR, optionally for a while ("--for 2h").
    Add {
        #[arg(value_parser = cidr)]
        cidr: IpNet,
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<Duration>,
    },
    /// Remove a CIDR from the block list.
    Remove {
        #[arg(value_parser = cidr)]
        cidr: IpNet,
    },
    /// Show the block list.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BansCmd {
    /// Show active bans.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ban one address for a while ("--for 1h"), as if it had exceeded a limit.
    Add {
        addr: IpAddr,
        #[arg(long = "for", default_value = "1h", value_parser = humantime::parse_duration)]
        for_: Duration,
    },
    /// Lift the ban of an address (and of its prefix), or every ban with --all.
    Clear {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        addr: Option<IpAddr>,
        #[arg(long)]
        all: bool,
    },
}

fn print_list(reply: Reply, json: bool) -> Result<(), Failure> {
    let Reply::List { entries } = reply else {
        return Err(unexpected(&reply));
    };
    if json {
        return print_json(&entries);
    }
    let mut t = render::table(&["cidr", "from", "expires in"]);
    for ListEntry {
        cidr,
        origin,
        expires_in_secs,
        scenario,
    } in entries
    {
        t.add_row(vec![
            cidr.to_string(),
            match scenario {
                Some(s) if !s.is_empty() => format!("{origin} ({s})"),
                _ => origin,
            },
            expires_in_secs.map_or_else(|| "never".into(), |s| render::secs(s as f64)),
        ]);
    }
    outln!("{t}");
    Ok(())
}

pub async fn allow(cli: &Cli, cmd: &AllowCmd) -> Result<(), Failure> {
    match cmd {
        AllowCmd::Add { cidr } => print_done(call(cli, Request::AllowAdd { cidr: *cidr }).await?),
        AllowCmd::Remove { cidr } => {
            print_done(call(cli, Request::AllowRemove { cidr: *cidr }).await?)
        }
        AllowCmd::List { json } => print_list(call(cli, Request::AllowList).await?, *json),
    }
}

pub async fn block(cli: &Cli, cmd: &BlockCmd) -> Result<(), Failure> {
    match cmd {
        BlockCmd::Add { cidr, for_ } => {
            let for_secs = for_.map(|d| d.as_secs().max(1));
            print_done(
                call(
                    cli,
                    Request::BlockAdd {
                        cidr: *cidr,
                        for_secs,
                    },
                )
                .await?,
            )
        }
        BlockCmd::Remove { cidr } => {
            print_done(call(cli, Request::BlockRemove { cidr: *cidr }).await?)
        }
        BlockCmd::List { json } => print_list(call(cli, Request::BlockList).await?, *json),
    }
}

pub async fn bans(cli: &Cli, cmd: &BansCmd) -> Result<(), Failure> {
    match cmd {
        BansCmd::List { json } => {
            let reply = call(cli, Request::BansList).await?;
            let Reply::Bans { mut bans, total } = reply else {
                return Err(unexpected(&reply));
            };
            if total > bans.len() as u64 {
                eprintln!(
                    "floodgate: {} of {total} active bans shown (those ending last)",
                    bans.len()
                );
            }
            bans.sort_by(|a, b| b.remaining_secs.total_cmp(&a.remaining_secs));
            if *json {
                return print_json(&bans);
            }
            let mut t = render::table(&[
                "banned",
                "reason",
                "remaining",
                "duration",
                "offenses",
                "enforced",
                "origin",
            ]);
            for b in bans {
                let enforced = if b.would_ban {
                    "no (monitor: would-ban)"
                } else {
                    "yes"
                };
                t.add_row(vec![
                    b.target.to_string(),
                    b.reason,
                    render::secs(b.remaining_secs),
                    render::secs(b.duration_secs),
                    b.offenses.to_string(),
                    enforced.to_owned(),
                    match (&b.origin, &b.scenario) {
                        (Some(o), Some(s)) if !s.is_empty() => format!("{o} ({s})"),
                        (Some(o), _) => o.clone(),
                        (None, _) => "floodgate".to_owned(),
                    },
                ]);
            }
            outln!("{t}");
            Ok(())
        }
        BansCmd::Add { addr, for_ } => print_done(
            call(
                cli,
                Request::BansAdd {
                    addr: *addr,
                    for_secs: for_.as_secs().max(1),
                },
            )
            .await?,
        ),
        BansCmd::Clear { addr, .. } => {
            print_done(call(cli, Request::BansClear { addr: *addr }).await?)
        }
    }
}
