//! The filters compared on the receiving veth, installed one at a time.

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{
        Xdp,
        xdp::{XdpLinkId, XdpMode},
    },
};
use floodgate::loader::{AttachMode, Floodgate};
use floodgate_tests::lab::{Ns, sh};

use crate::limit::Limit;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    XdpDrop,
    Floodgate,
    /// floodgate with the embedded default policy (every limit, bans of 5 min),
    /// the per-source packet rate set to the bench's limit and `ports = []`.
    FloodgateDefaults,
    /// The naive one-LRU-map limiter of the bench object.
    OneMap,
    /// The same bucket in a set-associative ARRAY table.
    SetTable,
    XdpFilterTool,
    NftMeter,
    IptHashlimit,
    Unfiltered,
}

impl Filter {
    pub const fn name(self) -> &'static str {
        match self {
            Filter::XdpDrop => "bare XDP_DROP",
            Filter::Floodgate => "floodgate",
            Filter::FloodgateDefaults => "floodgate, default limits",
            Filter::OneMap => "one-map limiter (one LRU map, per-source bucket)",
            Filter::SetTable => "set-table limiter (the same bucket, 4-way set-associative array)",
            Filter::XdpFilterTool => "xdp-filter (block the source)",
            Filter::NftMeter => "nftables meter (limit rate over)",
            Filter::IptHashlimit => "iptables hashlimit",
            Filter::Unfiltered => "no filter (socket sink)",
        }
    }

    /// Whether the filter is expected to drop most of the flood.
    pub const fn limits(self) -> bool {
        !matches!(self, Filter::Unfiltered)
    }

    /// Whether its per-source state outlives a detach, so a warm-up round
    /// leaves every source of the next rounds already tracked. nft and
    /// hashlimit build their tables afresh on every install.
    pub const fn keeps_state(self) -> bool {
        matches!(
            self,
            Filter::Floodgate | Filter::FloodgateDefaults | Filter::OneMap | Filter::SetTable
        )
    }
}

/// What is attached right now.
pub enum Installed {
    Xdp(XdpLinkId),
    Floodgate(XdpLinkId),
    FloodgateDefaults(XdpLinkId),
    Baseline(&'static str, XdpLinkId),
    Shell,
    Nothing,
}

/// The receiving side. Must be used from a thread inside the receiver's
/// namespace (XDP attach resolves the interface there).
pub struct Receiver {
    pub ns: Ns,
    pub iface: String,
    pub bpffs: std::path::PathBuf,
    pub drop_prog: Ebpf,
    pub one_map: Ebpf,
    pub fg: Floodgate,
    pub fg_defaults: Floodgate,
}

fn xdp_drop(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut("xdp_drop")
        .context("xdp_drop missing")?
        .try_into()?)
}

impl Receiver {
    pub fn install(&mut self, filter: Filter, limit: Limit, src: &str) -> Result<Installed> {
        let ns = self.ns.name.clone();
        Ok(match filter {
            Filter::XdpDrop => {
                Installed::Xdp(xdp_drop(&mut self.drop_prog)?.attach(&self.iface, XdpMode::Driver)?)
            }
            Filter::Floodgate => {
                let (_, id) = self.fg.attach(&self.iface, AttachMode::Native)?;
                Installed::Floodgate(id)
            }
            Filter::FloodgateDefaults => {
                let (_, id) = self.fg_defaults.attach(&self.iface, AttachMode::Native)?;
                Installed::FloodgateDefaults(id)
            }
            Filter::OneMap | Filter::SetTable => {
                let name = if filter == Filter::OneMap {
                    crate::one_map::ONE_MAP
                } else {
                    crate::one_map::SET_TABLE
                };
                crate::one_map::set_limit(&mut self.one_map, limit)?;
                let prog = crate::one_map::program(&mut self.one_map, name)?;
                Installed::Baseline(name, prog.attach(&self.iface, XdpMode::Driver)?)
            }
            Filter::XdpFilterTool => {
                let script = format!(
                    "mount --bind {} /sys/fs/bpf && xdp-filter load -m native -f ipv4 {} && xdp-filter ip {src} -m src",
                    self.bpffs.display(),
                    self.iface
                );
                sh("ip", &["netns", "exec", &ns, "sh", "-c", &script])?;
                Installed::Shell
            }
            Filter::NftMeter => {
                let rules = format!(
                    "table ip rl {{\n set m4 {{ type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s; }}\n \
                     chain pre {{ type filter hook prerouting priority raw; policy accept;\n  \
                     add @m4 {{ ip saddr limit rate over {} burst {} packets }} counter drop\n }}\n}}\n",
                    limit.nft(),
                    limit.packets
                );
                let file = self.bpffs.with_extension("nft");
                std::fs::write(&file, rules)?;
                let loaded = sh(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &ns,
                        "nft",
                        "-f",
                        &file.display().to_string(),
                    ],
                );
                // The rules live in the kernel now; the file was only nft's input.
                let _ = std::fs::remove_file(&file);
                loaded?;
                Installed::Shell
            }
            Filter::IptHashlimit => {
                let r = limit.hashlimit();
                let b = limit.packets.to_string();
                sh(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &ns,
                        "iptables-nft",
                        "-t",
                        "raw",
                        "-A",
                        "PREROUTING",
                        "-m",
                        "hashlimit",
                        "--hashlimit-above",
                        &r,
                        "--hashlimit-burst",
                        &b,
                        "--hashlimit-mode",
                        "srcip",
                        "--hashlimit-name",
                        "rl",
                        "-j",
                        "DROP",
                    ],
                )?;
                Installed::Shell
            }
            Filter::Unfiltered => Installed::Nothing,
        })
    }

    /// Packets the filter has dropped so far (its own counters), where it keeps any.
    pub fn dropped(&self, filter: Filter) -> Result<Option<u64>> {
        let ns = &self.ns.name;
        Ok(match filter {
            Filter::Floodgate => Some(
                floodgate::stats::Stats::from_counters(&self.fg.counters()?, false)
                    .dropped
                    .packets,
            ),
            Filter::FloodgateDefaults => Some(
                floodgate::stats::Stats::from_counters(&self.fg_defaults.counters()?, false)
                    .dropped
                    .packets,
            ),
            Filter::OneMap | Filter::SetTable => Some(crate::one_map::dropped(&self.one_map)?),
            Filter::NftMeter => {
                let out = sh("ip", &["netns", "exec", ns, "nft", "-j", "list", "ruleset"])?;
                let v: serde_json::Value = serde_json::from_str(&out)?;
                let packets = v["nftables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item["rule"]["expr"].as_array())
                    .flatten()
                    .filter_map(|e| e["counter"]["packets"].as_u64())
                    .sum();
                Some(packets)
            }
            Filter::IptHashlimit => {
                let out = sh(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        ns,
                        "iptables-nft",
                        "-t",
                        "raw",
                        "-L",
                        "PREROUTING",
                        "-v",
                        "-x",
                        "-n",
                    ],
                )?;
                // Header lines, then "pkts bytes target …" per rule.
                out.lines()
                    .skip(2)
                    .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                    .next()
            }
            _ => None,
        })
    }

    pub fn remove(&mut self, filter: Filter, installed: Installed) -> Result<()> {
        let ns = self.ns.name.clone();
        match installed {
            Installed::Xdp(id) => xdp_drop(&mut self.drop_prog)?.detach(id)?,
            Installed::Floodgate(id) => self.fg.detach(id)?,
            Installed::FloodgateDefaults(id) => self.fg_defaults.detach(id)?,
            Installed::Baseline(name, id) => {
                crate::one_map::program(&mut self.one_map, name)?.detach(id)?;
            }
            Installed::Shell => match filter {
                Filter::XdpFilterTool => {
                    let script = format!(
                        "mount --bind {} /sys/fs/bpf && xdp-filter unload {}",
                        self.bpffs.display(),
                        self.iface
                    );
                    sh("ip", &["netns", "exec", &ns, "sh", "-c", &script])?;
                }
                Filter::NftMeter => {
                    sh("ip", &["netns", "exec", &ns, "nft", "flush", "ruleset"])?;
                }
                Filter::IptHashlimit => {
                    sh(
                        "ip",
                        &["netns", "exec", &ns, "iptables-nft", "-t", "raw", "-F"],
                    )?;
                    sh("ip", &["netns", "exec", &ns, "nft", "flush", "ruleset"])?;
                }
                _ => {}
            },
            Installed::Nothing => {}
        }
        Ok(())
    }
}
