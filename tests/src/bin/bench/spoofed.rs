//! The spoofed flood beyond capacity: a million distinct sources into a
//! source table of 65 536 with a small new-source budget. floodgate must not
//! fail open: sources admitted once the table is under pressure stay within
//! the budget.

use anyhow::Result;
use floodgate_common::{Reason, Verdict};
use floodgate_tests::lab::Ns;
use serde_json::{Value, json};

use crate::{Plan, instances::load_floodgate, live::generate};

/// Runs the flood from `sender`'s `gen_if` into floodgate on `dut_if` (this
/// thread is in the receiving namespace).
pub fn run(sender: &Ns, gen_if: &str, dut_if: &str, plan: &Plan) -> Result<Value> {
    let capacity = 65_536u32;
    let budget = 1_000u64;
    let mut fg = load_floodgate(capacity, Some(budget))?;
    let (_, id) = fg.attach(dut_if, floodgate::loader::AttachMode::Native)?;
    let (sent, secs) = generate(sender, gen_if, 1_000_000, plan.secs.max(1.0))?;
    fg.detach(id)?;
    let stats = floodgate::stats::Stats::from_counters(&fg.counters()?, false);
    let passed = stats.passed.packets;
    let seen = passed + stats.dropped.packets;
    // Sources admitted once the map was under pressure must stay within the
    // budget (its burst plus its rate over the run); packets of admitted
    // sources then pass within their own per-source limit.
    let threshold = u64::from(capacity) * 9 / 10;
    let inserts = fg.global_state()?.source_inserts;
    let admitted_under_pressure = inserts.saturating_sub(threshold);
    let bound = budget + (budget as f64 * secs).ceil() as u64;
    Ok(json!({
        "distinct_sources": 1_000_000,
        "source_capacity": capacity,
        "new_source_budget_pps": budget,
        "seconds": secs,
        "sent": sent,
        "seen": seen,
        "passed": passed,
        "passed_share": passed as f64 / seen.max(1) as f64,
        "dropped_new_source_budget": stats.packets(Reason::NewSourceBudget, Verdict::Drop),
        "sources_admitted": inserts,
        "admitted_under_pressure": admitted_under_pressure,
        "budget_bound": bound,
        "within_bound": admitted_under_pressure <= bound,
    }))
}
