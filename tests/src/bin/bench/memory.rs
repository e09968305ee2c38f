//! Issue #13's memory rows: the kernel memory of every map at the default
//! capacities (what a default install pins), and how many of a million
//! distinct IPv4 sources the default-sized source map still tracks.

use anyhow::{Context as _, Result};
use floodgate::loader::{AttachMode, Capacity, Floodgate};
use floodgate_common::maps;
use floodgate_tests::{dut::settings, lab::Ns};
use serde_json::{Value, json};

/// Distinct sources of the residency flood.
pub const DISTINCT: u32 = 1_000_000;

/// Loads floodgate at the default capacities (pressure and its budget off,
/// every limit far away, so the LRU's own eviction is what is measured),
/// floods `DISTINCT` sources from `sender` through `gen_if` to `dut_if`, and
/// counts what `SOURCES` holds afterwards. Runs inside the receiver's namespace.
pub fn run(sender: &Ns, gen_if: &str, dut_if: &str, secs: f64) -> Result<Value> {
    let capacity = Capacity::default();
    let mut fg = Floodgate::load(capacity, None).context("loading at the default capacities")?;
    let per_map: std::collections::BTreeMap<String, u64> = fg.map_memory().into_iter().collect();
    let total: u64 = per_map.values().sum();
    fg.write_settings(&settings())?;
    fg.write_policies(&[crate::kernel::policies().0], 1)?;
    let (_, id) = fg.attach(dut_if, AttachMode::Native)?;
    // Long enough for the generator (about 0.5 M frames a second here, in
    // order over the sources) to go through every source at least once; each
    // call starts over at the first, so it is one call. The report shows how
    // many were sent.
    let (sent, seconds) = crate::live::generate(sender, gen_if, DISTINCT, secs.max(6.0))?;
    fg.detach(id)?;
    let inserts = fg.global_state()?.source_inserts;
    let tracked = fg.tracked_entries(maps::SOURCES)?.len() as u64;
    let distinct_seen = u64::from(DISTINCT).min(sent);
    Ok(json!({
        "capacity": {
            "sources": capacity.sources,
            "prefixes": capacity.prefixes,
            "bans": capacity.bans,
            "lists": capacity.lists,
        },
        "kernel_memory_bytes": total,
        "per_map_bytes": per_map,
        "distinct_sources": DISTINCT,
        "sent": sent,
        "seconds": seconds,
        "source_inserts": inserts,
        "tracked_after": tracked,
        "tracked_share": tracked as f64 / distinct_seen.max(1) as f64,
    }))
}
