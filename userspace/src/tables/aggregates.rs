//! `AGGREGATES`: the shared state of each `aggregate = true` rule.

use aya::maps::Array;
use floodgate_common::{AggState, Policy, maps};

use super::map_err;
use crate::loader::{Floodgate, LoadError};

impl Floodgate {
    /// The shared state in `slot` (`Policy::aggregate_slot`).
    pub fn aggregate(&self, slot: u32) -> Result<AggState, LoadError> {
        let m: Array<_, AggState> = self.typed_map_ref(maps::AGGREGATES)?;
        m.get(&slot, 0).map_err(map_err(maps::AGGREGATES))
    }

    /// Gets the shared state of every aggregate policy in `policies` ready
    /// for it: a slot whose state was counted against another budget (or
    /// none) starts afresh with this one; a slot of the same budget keeps
    /// its state, so a reload that leaves a rule's budget alone never hands
    /// it a full one. Returns the slots started afresh.
    pub fn prepare_aggregates(&mut self, policies: &[Policy]) -> Result<Vec<u32>, LoadError> {
        let mut m: Array<_, AggState> = self.typed_map(maps::AGGREGATES)?;
        let mut fresh = Vec::new();
        for p in policies.iter().filter(|p| p.aggregate_slot != 0) {
            let slot = p.aggregate_slot;
            let held = m.get(&slot, 0).map_err(map_err(maps::AGGREGATES))?;
            if held.budget != p.aggregate {
                let state = AggState {
                    budget: p.aggregate,
                    ..AggState::default()
                };
                m.set(slot, state, 0).map_err(map_err(maps::AGGREGATES))?;
                fresh.push(slot);
            }
        }
        Ok(fresh)
    }
}
