//! The large policy of the scale measurements: 100 000 allow and 100 000 block
//! /32s (11.0.0.0/8, 12.0.0.0/8) and 10 000 rule /24s (13.0.0.0/8), none
//! matching the measured source, so every trie is walked on every packet.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;
use floodgate::{addr::lpm_key, loader::Floodgate};
use floodgate_common::{BlockEntry, Policy};
use ipnet::IpNet;

pub fn load(fg: &mut Floodgate, policy: Policy) -> Result<()> {
    let host = |a: u32| lpm_key(&IpNet::from(IpAddr::V4(Ipv4Addr::from(a))));
    let allow: Vec<_> = (0..100_000).map(|i| host(0x0b00_0000 + i)).collect();
    let block: Vec<_> = (0..100_000)
        .map(|i| (host(0x0c00_0000 + i), BlockEntry { expires_ns: 0 }))
        .collect();
    // Slot 0 is the default; every rule gets its own slot with the same limits.
    fg.write_policies(&vec![policy; 10_001], 1)?;
    let rules: Vec<_> = (0..10_000u32)
        .map(|i| {
            let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0d00_0000 + (i << 8))), 24)
                .expect("a /24 is valid");
            (lpm_key(&net), i + 1)
        })
        .collect();
    fg.sync_allow(&allow)?;
    fg.sync_block(&block)?;
    fg.sync_rules(&rules)?;
    Ok(())
}
