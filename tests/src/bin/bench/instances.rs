//! The floodgate instances the live rounds measure: the bench's light policy
//! and the embedded default limits, each loaded as the rounds need it.

use std::time::Duration;

use anyhow::{Context as _, Result};
use floodgate::loader::{Capacity, Floodgate};
use floodgate_common::{Policy, Rate, Settings};
use floodgate_tests::dut::settings;

use crate::limit::{Limit, ONE_SOURCE, OVER_CAPACITY};

/// The bench's light policy: only a per-source packet rate at `limit`.
pub(crate) fn limited_policy(limit: Limit) -> Policy {
    Policy {
        packets: limit.rate(),
        ..Policy::default()
    }
}

pub(crate) fn load_floodgate(sources: u32, budget: Option<u64>) -> Result<Floodgate> {
    let mut fg = Floodgate::load(Capacity::new(sources, sources, 1024, 131_072), None)?;
    let mut s = settings();
    if let Some(b) = budget {
        // The default: 90 % of the map's capacity first seen within 60 s.
        floodgate_tests::dut::pressure(
            &mut s,
            u64::from(sources) * 9 / 10,
            Duration::from_secs(60),
        );
        s.new_source_budget = Rate::new(b, 1_000_000_000, b);
    }
    fg.write_settings(&s)?;
    let limit = if budget.is_some() {
        OVER_CAPACITY
    } else {
        ONE_SOURCE
    };
    fg.write_policies(&[limited_policy(limit)], 0)?;
    Ok(fg)
}

/// floodgate sized as a default install (`Capacity::default()`: a million
/// sources, an eighth as many prefixes, a sixteenth as many bans), for the
/// default-limits rows: with the bench's 1 024 bans, 10 000 banned sources
/// churned the ban map and every frame made a new ban.
pub(crate) fn load_default_install() -> Result<Floodgate> {
    let mut fg = Floodgate::load(Capacity::default(), None)?;
    fg.write_settings(&settings())?;
    fg.write_policies(&[limited_policy(ONE_SOURCE)], 0)?;
    Ok(fg)
}

/// The embedded default policy, compiled as the daemon compiles it, with the
/// per-source packet rate (and burst) at `limit` and every protocol and port
/// limited (the flood is UDP).
pub(crate) fn default_limits(limit: Limit) -> Result<(Settings, Policy)> {
    let text = format!(
        "[limits]\nports = []\npackets = \"{}\"\npackets_burst = {}\n",
        limit.config(),
        limit.packets
    );
    let config = floodgate::config::Config::from_toml(&text, "bench")?;
    let compiled = floodgate::policy::compile(&config);
    let policy = *compiled.policies.first().context("no default policy")?;
    Ok((compiled.settings, policy))
}
