//! The memory check at start: the maps' cost (see [`crate::memory`]) against a
//! share of what the host has available, before anything is loaded. A second
//! daemon on a small VM was OOM-killed while its maps were being created; a
//! refusal that names the keys to lower is better than that.

use std::path::Path;

use floodgate_common::maps;
use tracing::{info, warn};

use crate::{
    loader::{Capacity, map_pin_dir},
    memory::{self, Estimate, human},
};

const MEMINFO: &str = "/proc/meminfo";

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "the maps need {} of kernel memory at these capacities, more than [capacity] \
         max_memory allows ({}% of the {} this host has available: {}); lower [capacity] \
         {keys} in {file}, or raise max_memory (\"off\" disables this check)",
        human(*.need), fmt_share(*.share), human(*.available), human(budget(*.available, *.share))
    )]
    OverBudget {
        need: u64,
        available: u64,
        share: f64,
        /// The capacity keys, costliest first, with their values.
        keys: String,
        /// Where to change them.
        file: String,
    },
}

/// The bytes `share` of `available` allows.
fn budget(available: u64, share: f64) -> u64 {
    (available as f64 * share) as u64
}

/// "25", "12.5": a share as the percentage it was written as.
fn fmt_share(share: f64) -> String {
    let pct = share * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{pct:.0}")
    } else {
        format!("{pct}")
    }
}

/// Whether maps needing `need` bytes fit in `share` of `available`; no share
/// ("off") always fits.
pub fn fits(need: u64, available: u64, share: Option<f64>) -> bool {
    share.is_none_or(|s| need <= budget(available, s))
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The capacity keys, costliest first: "sources (1000000), prefixes (1000000),
/// bans (1000000) or lists (262144)".
pub fn keys_to_lower(c: &Capacity, e: &Estimate) -> String {
    let mut keys = [
        ("sources", c.sources, e.of(&[maps::SOURCES, maps::SOURCES6])),
        (
            "prefixes",
            c.prefixes,
            e.of(&[maps::PREFIXES, maps::PREFIXES6]),
        ),
        ("bans", c.bans, e.of(&[maps::BANS])),
        (
            "lists",
            c.lists,
            e.of(&[maps::RULES, maps::BLOCK, maps::ALLOW]),
        ),
    ];
    keys.sort_by_key(|k| std::cmp::Reverse(k.2));
    let named: Vec<String> = keys.iter().map(|(k, v, _)| format!("{k} ({v})")).collect();
    match named.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => named.join(""),
    }
}

/// The check itself, given what the host has: an error when `estimate` does
/// not fit in `share` of `available`.
pub fn decide(
    c: &Capacity,
    estimate: &Estimate,
    available: u64,
    share: Option<f64>,
    file: &str,
) -> Result<(), BudgetError> {
    let need = estimate.total();
    match share {
        Some(share) if !fits(need, available, Some(share)) => Err(BudgetError::OverBudget {
            need,
            available,
            share,
            keys: keys_to_lower(c, estimate),
            file: file.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Logs what the maps will cost and, on a first load (no pinned maps to adopt
/// in `pin_dir`: adopted maps are already allocated), refuses when that is over
/// `share` of MemAvailable. `file` is the config file, for the message.
pub fn check_at_start(
    c: &Capacity,
    share: Option<f64>,
    pin_dir: &Path,
    file: Option<&Path>,
) -> Result<Estimate, BudgetError> {
    let estimate = memory::estimate(c, memory::possible_cpus());
    info!(
        kernel_memory = estimate.total(),
        preallocated = estimate.preallocated(),
        "the maps need {} of kernel memory at these capacities ({} allocated at load; the \
         allow, block and rule tries at their upper bound)",
        human(estimate.total()),
        human(estimate.preallocated())
    );
    // Adopted maps are already allocated; a migration makes new ones.
    let adopting = matches!(
        crate::migrate::inspect(&map_pin_dir(pin_dir), c),
        Ok(crate::migrate::Pinned::Adopt)
    );
    if adopting || share.is_none() {
        return Ok(estimate);
    }
    let available = match std::fs::read_to_string(MEMINFO) {
        Ok(text) => parse_mem_available(&text),
        Err(e) => {
            warn!(error = %e, "reading {MEMINFO}; the memory check is skipped");
            return Ok(estimate);
        }
    };
    let Some(available) = available else {
        warn!("{MEMINFO} has no MemAvailable line; the memory check is skipped");
        return Ok(estimate);
    };
    let file = file.map_or_else(
        || {
            "a config file (the embedded default policy is in use; pass one with --config)"
                .to_owned()
        },
        |p| p.display().to_string(),
    );
    decide(c, &estimate, available, share, &file)?;
    Ok(estimate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn mem_available_in_bytes() {
        let text =
            "MemTotal:       24551232 kB\nMemFree:         1000 kB\nMemAvailable:   24267732 kB\n";
        assert_eq!(parse_mem_available(text), Some(24_267_732 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn the_defaults_do_not_fit_a_small_vm() {
        let c = Capacity::default();
        let e = memory::estimate(&c, 2);
        // The 1 GiB VM of the issue: 412 MB left with one daemon running.
        let available = 412_000_000;
        let err = decide(
            &c,
            &e,
            available,
            Some(0.25),
            "/etc/floodgate/floodgate.toml",
        )
        .expect_err("refused");
        let msg = err.to_string();
        assert!(msg.starts_with("the maps need "), "{msg}");
        assert!(
            msg.contains("25% of the 393 MiB this host has available: 98 MiB"),
            "{msg}"
        );
        assert!(
            msg.contains(
                "lower [capacity] sources (1000000), lists (262144), prefixes (125000) or \
                 bans (62500) in /etc/floodgate/floodgate.toml"
            ),
            "{msg}"
        );
        assert!(msg.contains("raise max_memory"), "{msg}");
        // Off: never refused; a big host: fits.
        assert!(decide(&c, &e, available, None, "f").is_ok());
        assert!(decide(&c, &e, 24 * GIB, Some(0.25), "f").is_ok());
    }

    #[test]
    fn the_boundary_is_inclusive() {
        assert!(fits(100, 400, Some(0.25)));
        assert!(!fits(101, 400, Some(0.25)));
        assert!(fits(u64::MAX, 0, None));
    }

    #[test]
    fn costliest_keys_first() {
        let c = Capacity::new(1000, 1000, 1000, 1_000_000);
        let e = memory::estimate(&c, 1);
        assert_eq!(
            keys_to_lower(&c, &e),
            "lists (1000000), sources (1000), prefixes (1000) or bans (1000)"
        );
    }

    #[test]
    fn shares_print_as_written() {
        assert_eq!(fmt_share(0.25), "25");
        assert_eq!(fmt_share(0.125), "12.5");
    }
}
