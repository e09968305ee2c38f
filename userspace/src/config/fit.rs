//! What the maps hold: a file whose lists, rules or ports would not fit is
//! refused by `config check`, never at apply.

use serde_spanned::Spanned;

use super::{Capacity, PortSpec, Rule, raw::RawConfig, validate::Validator};

impl Validator<'_> {
    /// Lists, rules and ports within what the maps hold, so no file that passes
    /// `config check` fails when it is applied.
    pub(super) fn fits_the_maps(
        &mut self,
        raw: &RawConfig,
        capacity: &Capacity,
        ports: &[PortSpec],
        rules: &[Rule],
    ) {
        let lists = capacity.lists as usize;
        for (key, list) in [("allow", &raw.allow), ("block", &raw.block)] {
            if let Some(over) = list.get(lists) {
                self.issue(
                    over.span(),
                    format!(
                        "{key}: {} entries, more than capacity.lists ({lists}) holds — raise [capacity] lists or shorten the list",
                        list.len()
                    ),
                );
            }
        }
        let cidrs: usize = rules.iter().map(|r| r.matches.len()).sum();
        if cidrs > lists {
            let span = raw
                .rule
                .iter()
                .find_map(|r| r.matches.as_ref().map(Spanned::span))
                .unwrap_or(0..0);
            self.issue(
                span,
                format!("rule: {cidrs} CIDRs in all, more than capacity.lists ({lists}) holds — raise [capacity] lists"),
            );
        }
        if ports.len() > floodgate_common::MAX_PORTS as usize
            && let Some(p) = raw
                .limits
                .ports
                .as_ref()
                .and_then(|l| l.get(floodgate_common::MAX_PORTS as usize))
        {
            self.issue(
                p.span(),
                format!(
                    "limits.ports: {} entries, more than the {} the program holds — list protocols without a port to cover them whole",
                    ports.len(),
                    floodgate_common::MAX_PORTS
                ),
            );
        }
    }
}
