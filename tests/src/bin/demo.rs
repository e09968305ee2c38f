//! `cargo xtask demo`: the crawler lab, as the tests run it. A real shop (nginx)
//! behind the real floodgate daemon, real crawlers (wrk, a low-and-slow
//! scraper, a crawler spread over a /24 and a /64, hping3) and people browsing
//! with curl. Prints each scenario's per-client table and checks, then a
//! summary. Every lab is torn down when its scenario ends; Ctrl-C stops after
//! the running scenario (its lab goes too).
//!
//! Usage: demo --floodgate PATH [--all]

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use floodgate_tests::crawl::{
    report::Outcome,
    scenario::{self, Flood},
};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

type Scenario = (&'static str, fn(&str) -> Result<Outcome>);

fn main() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGINT, &action) }.context("installing the Ctrl-C handler")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = args
        .iter()
        .position(|a| a == "--floodgate")
        .and_then(|i| args.get(i + 1))
        .context("usage: demo --floodgate PATH [--all] (`cargo xtask demo` passes it)")?;
    let all = args.iter().any(|a| a == "--all");
    let mut scenarios: Vec<Scenario> = vec![
        ("flood crawler", |b| scenario::flood(b, Flood::V4)),
        ("low-and-slow scraper", scenario::low_and_slow),
        ("distributed crawler", scenario::distributed),
        ("SYN flood, monitor mode", scenario::syn_flood_and_monitor),
    ];
    if all {
        scenarios.extend([
            (
                "IPv6 flood crawler",
                (|b| scenario::flood(b, Flood::V6)) as fn(&str) -> Result<Outcome>,
            ),
            ("VLAN flood", scenario::vlan_flood),
            ("reload under flood", scenario::reload_under_flood),
            ("restart under flood", scenario::restart_under_flood),
        ]);
    }
    println!(
        "floodgate crawler lab: nginx on an edge namespace, floodgate attached to its veths,\n\
         crawlers and people in their own namespaces (lab-only addresses 198.18.0.0/15, fd00:f100::/32)\n"
    );
    let mut summary = Table::new();
    summary
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["scenario", "checks", "result"]);
    let mut failed = 0;
    for (name, run) in scenarios {
        if INTERRUPTED.load(Ordering::SeqCst) {
            println!("interrupted: the remaining scenarios were skipped; every lab was torn down");
            break;
        }
        println!("running: {name} …");
        match run(bin) {
            Ok(outcome) => {
                println!("{outcome}");
                let ok = outcome.checks.iter().filter(|c| c.ok).count();
                let verdict = if outcome.passed() {
                    "as expected"
                } else {
                    "FAILED"
                };
                failed += usize::from(!outcome.passed());
                summary.add_row(vec![
                    name.to_owned(),
                    format!("{ok}/{}", outcome.checks.len()),
                    verdict.to_owned(),
                ]);
            }
            Err(e) => {
                println!("{name}: {e:#}\n");
                failed += 1;
                summary.add_row(vec![name.to_owned(), "-".to_owned(), format!("error: {e}")]);
            }
        }
    }
    println!("{summary}");
    if failed > 0 {
        bail!("{failed} scenario(s) did not behave as expected");
    }
    Ok(())
}
