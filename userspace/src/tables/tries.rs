//! The allow, block and rule tries: written as a whole (a reload, a start)
//! against what they held after the last write, or patched entry by entry (a
//! CLI change), so a list of 100 000 CIDRs is neither walked nor rebuilt for
//! one `block add`.

use std::collections::BTreeMap;

use aya::maps::{LpmTrie, MapData, lpm_trie::Key as LpmKey};
use floodgate_common::{
    BlockEntry, SETTINGS_HAS_ALLOW, SETTINGS_HAS_BLOCK, SETTINGS_HAS_RULES, maps,
};

use super::{Cidr, ignore_missing, map_err};
use crate::loader::{Floodgate, LoadError};

impl Floodgate {
    /// Makes the trie `name` hold exactly `wanted`, adding new entries before
    /// removing stale ones so a CIDR moving between values is never absent.
    /// Only the difference from `shadow` (what the trie held after the last
    /// sync) is written; without one the trie is read once to learn it.
    /// Returns what the trie holds now; on an error the caller forgets it.
    fn sync_trie<V: aya::Pod + PartialEq>(
        &mut self,
        name: &'static str,
        wanted: &[(Cidr, V)],
        shadow: Option<BTreeMap<Cidr, V>>,
    ) -> Result<BTreeMap<Cidr, V>, LoadError> {
        let held = match shadow {
            Some(held) => held,
            None => self.trie_entries::<V>(name)?.into_iter().collect(),
        };
        let mut trie: LpmTrie<_, [u8; 16], V> = self.typed_map(name)?;
        let now: BTreeMap<Cidr, V> = wanted.iter().copied().collect();
        for ((plen, addr), value) in &now {
            if held.get(&(*plen, *addr)) != Some(value) {
                let key = LpmKey::new(*plen, *addr);
                trie.insert(&key, value, 0).map_err(map_err(name))?;
            }
        }
        for stale in held.keys().filter(|k| !now.contains_key(*k)) {
            ignore_missing(trie.remove(&LpmKey::new(stale.0, stale.1))).map_err(map_err(name))?;
        }
        Ok(now)
    }

    pub fn sync_rules(&mut self, rules: &[(Cidr, u32)]) -> Result<(), LoadError> {
        let shadow = self.written.rules.take();
        self.written.rules =
            Some(self.sync_flagged(maps::RULES, SETTINGS_HAS_RULES, rules, shadow)?);
        Ok(())
    }

    pub fn sync_allow(&mut self, allow: &[Cidr]) -> Result<(), LoadError> {
        let wanted: Vec<_> = allow.iter().map(|c| (*c, 1u32)).collect();
        let shadow = self.written.allow.take();
        self.written.allow =
            Some(self.sync_flagged(maps::ALLOW, SETTINGS_HAS_ALLOW, &wanted, shadow)?);
        Ok(())
    }

    pub fn sync_block(&mut self, block: &[(Cidr, BlockEntry)]) -> Result<(), LoadError> {
        let shadow = self.written.block.take();
        self.written.block =
            Some(self.sync_flagged(maps::BLOCK, SETTINGS_HAS_BLOCK, block, shadow)?);
        Ok(())
    }

    fn sync_flagged<V: aya::Pod + PartialEq>(
        &mut self,
        name: &'static str,
        flag: u32,
        wanted: &[(Cidr, V)],
        shadow: Option<BTreeMap<Cidr, V>>,
    ) -> Result<BTreeMap<Cidr, V>, LoadError> {
        if wanted.is_empty() {
            self.set_list_flag(flag, false)?;
        }
        let held = self.sync_trie(name, wanted, shadow)?;
        if !wanted.is_empty() {
            self.set_list_flag(flag, true)?;
        }
        Ok(held)
    }

    /// Entries of a trie as (mapped prefix length, address bytes, value).
    pub fn trie_entries<V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<Vec<(Cidr, V)>, LoadError> {
        let trie: LpmTrie<&MapData, [u8; 16], V> = self.typed_map_ref(name)?;
        let mut out = Vec::new();
        for item in trie.iter() {
            let (k, v) = item.map_err(map_err(name))?;
            out.push(((k.prefix_len(), k.data()), v));
        }
        Ok(out)
    }

    /// Sets or removes (None) the allow entry of each CIDR in `changes`.
    /// False, changing nothing, when what the trie holds is not known (a
    /// write failed since the last full sync): the caller syncs the whole list.
    pub fn patch_allow(&mut self, changes: &[(Cidr, bool)]) -> Result<bool, LoadError> {
        let changes: Vec<_> = changes
            .iter()
            .map(|(c, on)| (*c, on.then_some(1u32)))
            .collect();
        let Some(held) = self.written.allow.take() else {
            return Ok(false);
        };
        self.written.allow =
            Some(self.patch_flagged(maps::ALLOW, SETTINGS_HAS_ALLOW, &changes, held)?);
        Ok(true)
    }

    /// As [`Floodgate::patch_allow`], for block entries.
    pub fn patch_block(
        &mut self,
        changes: &[(Cidr, Option<BlockEntry>)],
    ) -> Result<bool, LoadError> {
        let Some(held) = self.written.block.take() else {
            return Ok(false);
        };
        self.written.block =
            Some(self.patch_flagged(maps::BLOCK, SETTINGS_HAS_BLOCK, changes, held)?);
        Ok(true)
    }

    /// Writes `changes` into the trie `name` that holds `held`: entries set
    /// before the list's flag goes on, the flag off before the last entry
    /// goes. Returns what the trie holds now; on an error the caller forgets
    /// it (the next write syncs the whole list).
    fn patch_flagged<V: aya::Pod + PartialEq>(
        &mut self,
        name: &'static str,
        flag: u32,
        changes: &[(Cidr, Option<V>)],
        mut held: BTreeMap<Cidr, V>,
    ) -> Result<BTreeMap<Cidr, V>, LoadError> {
        let empty_after = final_len(&held, changes) == 0;
        if empty_after {
            self.set_list_flag(flag, false)?;
        }
        let mut trie: LpmTrie<&mut MapData, [u8; 16], V> = self.typed_map(name)?;
        for (cidr, value) in changes {
            let key = LpmKey::new(cidr.0, cidr.1);
            match value {
                Some(v) if held.get(cidr) != Some(v) => {
                    trie.insert(&key, v, 0).map_err(map_err(name))?;
                    held.insert(*cidr, *v);
                }
                None if held.contains_key(cidr) => {
                    ignore_missing(trie.remove(&key)).map_err(map_err(name))?;
                    held.remove(cidr);
                }
                _ => {}
            }
        }
        if !empty_after {
            self.set_list_flag(flag, true)?;
        }
        Ok(held)
    }
}

/// How many entries `held` has once `changes` are applied, the last change
/// of a CIDR winning; costs the changes, not the list (which may be 100 000).
fn final_len<V>(held: &BTreeMap<Cidr, V>, changes: &[(Cidr, Option<V>)]) -> usize {
    let last: BTreeMap<&Cidr, bool> = changes
        .iter()
        .map(|(cidr, value)| (cidr, value.is_some()))
        .collect();
    last.iter().fold(held.len(), |len, (cidr, present)| {
        match (held.contains_key(*cidr), *present) {
            (false, true) => len + 1,
            (true, false) => len - 1,
            _ => len,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_length_counts_each_cidrs_last_change_against_the_list() {
        let a: Cidr = (128, [1; 16]);
        let b: Cidr = (128, [2; 16]);
        let c: Cidr = (128, [3; 16]);
        let held: BTreeMap<Cidr, u8> = [(a, 1), (b, 1)].into();
        assert_eq!(final_len(&held, &[]), 2);
        assert_eq!(final_len(&held, &[(a, None), (b, None)]), 0);
        assert_eq!(final_len(&held, &[(a, None), (a, Some(2))]), 2);
        assert_eq!(final_len(&held, &[(c, Some(1)), (c, None)]), 2);
        assert_eq!(final_len(&held, &[(c, Some(1)), (a, Some(9))]), 3);
        assert_eq!(final_len(&held, &[(c, None)]), 2);
    }
}
