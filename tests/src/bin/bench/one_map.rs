//! The one-map limiter of the bench object (`one_map`): the naive XDP
//! limiter issue #13 holds floodgate against; and `set_table`, the same
//! bucket in a set-associative ARRAY table, the layout #13 considers.

use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray},
    programs::Xdp,
};

use crate::limit::Limit;

pub const ONE_MAP: &str = "one_map";
pub const SET_TABLE: &str = "set_table";

/// Loads the bench object with `one_map` and `set_table` ready to attach or
/// test-run; `set_table`'s hash gets a fresh secret multiplier.
pub fn load() -> Result<Ebpf> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let mut ebpf = EbpfLoader::new()
        .override_global("SET_TABLE_SEED", &seed, true)
        .load(floodgate::object::BENCH_OBJECT)?;
    program(&mut ebpf, ONE_MAP)?.load()?;
    program(&mut ebpf, SET_TABLE)?.load()?;
    Ok(ebpf)
}

pub fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("{name} missing from the bench object"))?
        .try_into()?)
}

/// Sets the per-source bucket: `limit`'s rate and burst.
pub fn set_limit(ebpf: &mut Ebpf, limit: Limit) -> Result<()> {
    let interval = limit.interval_ns();
    let mut table: Array<_, u64> = ebpf
        .map_mut("ONE_MAP_LIMIT")
        .context("ONE_MAP_LIMIT")?
        .try_into()?;
    table.set(0, interval, 0)?;
    table.set(1, interval * limit.packets, 0)?;
    Ok(())
}

/// Packets the limiter has dropped, summed over CPUs.
pub fn dropped(ebpf: &Ebpf) -> Result<u64> {
    let drops: PerCpuArray<_, u64> = ebpf
        .map("ONE_MAP_DROPS")
        .context("ONE_MAP_DROPS")?
        .try_into()?;
    Ok(drops.get(&0, 0)?.iter().sum())
}
