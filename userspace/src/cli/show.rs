//! `status`, `stats` and `top`.

use super::stdout::{out, outln};
use std::time::Duration;

use super::{Cli, Failure, call, print_json, render, unexpected};
use crate::{
    control::proto::{MAX_TOP_ROWS, Reply, Request, TopBy},
    memory,
    stats::Stats,
};

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print JSON (stable schema, see README) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every interval with per-second rates, until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval for --watch.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// `top -n`: 1 to [`MAX_TOP_ROWS`].
fn top_rows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_TOP_ROWS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a row count — use 1 to {MAX_TOP_ROWS}"
        )),
    }
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// How many rows.
    #[arg(short = 'n', default_value_t = 20, value_parser = top_rows)]
    pub n: usize,
    /// Sort key.
    #[arg(long, value_enum, default_value_t = TopBy::Packets)]
    pub by: TopBy,
    /// List prefixes (IPv4 /24, IPv6 /64 by default) instead of sources.
    #[arg(long, conflicts_with = "rules")]
    pub prefixes: bool,
    /// List the rules instead, with an aggregate rule's use of its shared
    /// budget.
    #[arg(long, conflicts_with = "watch")]
    pub rules: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A full-screen view refreshed every interval, with keys to sort, switch
    /// views, and ban or unban the selected source (see README).
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval for --watch.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long `b` bans the selected source for, with --watch.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ban_for: Duration,
}

pub async fn status(cli: &Cli, json: bool) -> Result<(), Failure> {
    let Reply::Status(s) = call(cli, Request::Status).await? else {
        return Err(Failure::new(3, "unexpected reply to status"));
    };
    if json {
        return print_json(&s);
    }
    outln!(
        "floodgate {} — mode {}, up {}",
        s.version,
        s.mode.name(),
        render::secs(s.uptime_secs as f64)
    );
    outln!("program id {}, config {}", s.program_id, s.config_source);
    outln!(
        "pins {}{}",
        s.pin_dir,
        if s.adopted_pinned_state {
            " (adopted from an earlier run)"
        } else {
            ""
        }
    );
    let mut t = render::table(&["interface", "XDP mode"]);
    for i in &s.interfaces {
        t.add_row(vec![i.name.clone(), i.mode.name().to_owned()]);
    }
    outln!("{t}");
    let mut t = render::table(&["map", "entries", "capacity", "fill", "memory at capacity"]);
    for m in &s.maps {
        let fill = if m.capacity == 0 {
            0.0
        } else {
            m.entries as f64 * 100.0 / m.capacity as f64
        };
        t.add_row(vec![
            comfy_table::Cell::new(&m.name),
            render::num(m.entries),
            render::num(m.capacity),
            comfy_table::Cell::new(format!("{fill:.1}%")),
            comfy_table::Cell::new(memory::human(m.kernel_memory_bytes))
                .set_alignment(comfy_table::CellAlignment::Right),
        ]);
    }
    outln!("{t}");
    if let Some(k) = s.kernel_memory {
        outln!(
            "kernel memory: {} (maps at capacity; {} allocated at load, the allow, block and \
             rule tries at most the rest as they fill)",
            memory::human(k.at_capacity_bytes),
            memory::human(k.preallocated_bytes)
        );
    }
    outln!(
        "eviction pressure: {} (sources inserted {}); ban events suppressed {}, lost {}; \
         log lines suppressed {}",
        if s.eviction_pressure {
            "YES — first-seen sources draw on the new-source budget"
        } else {
            "no"
        },
        render::count(s.source_inserts),
        render::count(s.events_suppressed),
        render::count(s.events_lost),
        render::count(s.log_lines_suppressed)
    );
    if let Some(c) = &s.crowdsec {
        crowdsec_status(c);
    }
    Ok(())
}

fn crowdsec_status(c: &crate::control::proto::CrowdsecStatus) {
    let now = crate::daemon::runtime::unix_now();
    let last = c.last_pull_unix.map_or_else(
        || "never".to_owned(),
        |t| format!("{} ago", render::secs(now.saturating_sub(t) as f64)),
    );
    let state = match (&c.last_error, c.up) {
        (_, true) => "up".to_owned(),
        (Some(e), false) if c.auth_failed => format!("DOWN: key refused — {e}"),
        (Some(e), false) => format!("DOWN — {e}"),
        (None, false) => "connecting".to_owned(),
    };
    outln!(
        "crowdsec {}: {state}; last pull {last}, failed pulls {}",
        c.lapi_url,
        render::count(c.failures)
    );
    let held: Vec<String> = c
        .decisions
        .iter()
        .map(|(o, n)| format!("{o} {}", render::count(*n)))
        .collect();
    let ignored: u64 = c.ignored.values().sum();
    outln!(
        "  decisions held: {} ({} as source bans, {} as block entries); ignored {}, invalid {}",
        if held.is_empty() {
            "none".to_owned()
        } else {
            held.join(", ")
        },
        render::count(c.bans),
        render::count(c.blocks),
        render::count(ignored),
        render::count(c.invalid)
    );
    if let Some(up) = c.watcher_up {
        outln!(
            "  watcher: {}; alerts sent {}, queued {}, dropped {}",
            match (&c.watcher_error, up) {
                (Some(e), false) => format!("DOWN — {e}"),
                _ => "up".to_owned(),
            },
            render::count(c.alerts_sent),
            render::count(c.alerts_queued),
            render::count(c.alerts_dropped)
        );
    }
}

async fn fetch_stats(cli: &Cli) -> Result<Stats, Failure> {
    match call(cli, Request::Stats).await? {
        Reply::Stats(s) => Ok(s),
        other => Err(unexpected(&other)),
    }
}

fn print_stats(s: &Stats, previous: Option<(&Stats, f64)>) {
    let rate = |now: u64, before: u64, secs: f64| {
        format!("{:.0}/s", now.saturating_sub(before) as f64 / secs)
    };
    outln!(
        "mode {} — passed {} packets ({}), dropped {} packets ({}), would drop {}",
        s.mode,
        render::count(s.passed.packets),
        render::bytes(s.passed.bytes),
        render::count(s.dropped.packets),
        render::bytes(s.dropped.bytes),
        render::count(s.would_drop.packets),
    );
    let mut header = vec!["reason", "verdict", "packets", "bytes"];
    if previous.is_some() {
        header.push("rate");
    }
    let mut t = render::table(&header);
    for (reason, r) in &s.by_reason {
        let mut row = vec![
            comfy_table::Cell::new(reason),
            comfy_table::Cell::new(&r.verdict),
            render::num(r.packets),
            comfy_table::Cell::new(render::bytes(r.bytes)),
        ];
        if let Some((prev, secs)) = previous {
            let before = prev.by_reason.get(reason).map_or(0, |p| p.packets);
            row.push(comfy_table::Cell::new(rate(r.packets, before, secs)));
        }
        t.add_row(row);
    }
    outln!("{t}");
    if !s.by_interface.is_empty() {
        let mut t = render::table(&["interface", "passed", "dropped", "would drop"]);
        for (name, i) in &s.by_interface {
            t.add_row(vec![
                comfy_table::Cell::new(name),
                render::num(i.passed.packets),
                render::num(i.dropped.packets),
                render::num(i.would_drop.packets),
            ]);
        }
        outln!("{t}");
    }
}

pub async fn stats(cli: &Cli, args: &StatsArgs) -> Result<(), Failure> {
    let mut previous = fetch_stats(cli).await?;
    if !args.watch {
        return if args.json {
            print_json(&previous)
        } else {
            print_stats(&previous, None);
            Ok(())
        };
    }
    loop {
        tokio::time::sleep(args.interval).await;
        let now = fetch_stats(cli).await?;
        if args.json {
            print_json(&now)?;
        } else {
            out!("\x1b[2J\x1b[H");
            print_stats(&now, Some((&previous, args.interval.as_secs_f64())));
        }
        previous = now;
    }
}

pub async fn top(cli: &Cli, args: &TopArgs) -> Result<(), Failure> {
    if args.watch {
        if args.json {
            return Err(Failure::new(
                2,
                "--watch draws a terminal UI and cannot print JSON: drop --json, \
                 or run `floodgate top --json` repeatedly for a machine-readable feed",
            ));
        }
        return super::top_watch::run(cli, args).await;
    }
    if args.rules {
        return super::rules::print(cli, args.json).await;
    }
    let request = Request::Top {
        n: args.n,
        by: args.by,
        prefixes: args.prefixes,
    };
    let Reply::Top { rows } = call(cli, request).await? else {
        return Err(Failure::new(3, "unexpected reply to top"));
    };
    if args.json {
        return print_json(&rows);
    }
    let first = if args.prefixes { "prefix" } else { "source" };
    let mut t = render::table(&[
        first,
        "packets",
        "bytes",
        "drops",
        "drop %",
        "last seen",
        "ban",
    ]);
    for r in rows {
        let share = if r.packets == 0 {
            0.0
        } else {
            r.drops as f64 * 100.0 / r.packets as f64
        };
        let ban = r.ban.map_or_else(String::new, |b| {
            format!("{} ({} left)", b.reason, render::secs(b.remaining_secs))
        });
        t.add_row(vec![
            comfy_table::Cell::new(r.target),
            render::num(r.packets),
            comfy_table::Cell::new(render::bytes(r.bytes)),
            render::num(r.drops),
            comfy_table::Cell::new(format!("{share:.1}%")),
            comfy_table::Cell::new(format!("{} ago", render::secs(r.last_seen_secs_ago))),
            comfy_table::Cell::new(ban),
        ]);
    }
    outln!("{t}");
    Ok(())
}
