//! The crawler lab: nginx behind the real daemon, real crawlers (wrk, hping3, a
//! paced scraper over many addresses) and people browsing with curl. Each
//! scenario prints its per-client table; a failed check fails the test with it.

use anyhow::Result;
use floodgate_tests::crawl::scenario::{self, Flood};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

#[test]
fn a_flood_crawler_is_held_to_its_limit_and_people_browse_on() -> Result<()> {
    scenario::flood(BIN, Flood::V4)?.into_result().map(drop)
}

#[test]
fn an_ipv6_flood_crawler_is_held_to_its_limit() -> Result<()> {
    scenario::flood(BIN, Flood::V6)?.into_result().map(drop)
}

#[test]
fn a_vlan_tagged_flood_crawler_is_held_to_its_limit() -> Result<()> {
    scenario::vlan_flood(BIN)?.into_result().map(drop)
}

#[test]
fn a_low_and_slow_scraper_is_cut_off_by_its_quota() -> Result<()> {
    scenario::low_and_slow(BIN)?.into_result().map(drop)
}

#[test]
fn a_distributed_crawler_is_caught_by_its_prefix() -> Result<()> {
    scenario::distributed(BIN)?.into_result().map(drop)
}

#[test]
fn a_syn_flood_is_limited_and_monitor_mode_only_counts() -> Result<()> {
    scenario::syn_flood_and_monitor(BIN)?
        .into_result()
        .map(drop)
}

#[test]
fn a_reload_under_flood_takes_effect_within_a_second() -> Result<()> {
    scenario::reload_under_flood(BIN)?.into_result().map(drop)
}

#[test]
fn a_restart_under_flood_never_stops_filtering() -> Result<()> {
    scenario::restart_under_flood(BIN)?.into_result().map(drop)
}
