//! The per-source limit the live rows give every limiter, written in each
//! one's own syntax.

use floodgate_common::Rate;

use crate::kernel::SECOND;

/// `packets` every `per_secs` seconds, with a burst of `packets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub packets: u64,
    pub per_secs: u64,
}

/// One flooding source: 100 pps, far below what the generator sends.
pub const ONE_SOURCE: Limit = Limit {
    packets: 100,
    per_secs: 1,
};

/// 10 000 and 1 000 000 sources: one packet a source an hour. The generator
/// gives each of 10 000 sources a few hundred packets a second and each of a
/// million one or two: any limit of whole packets a second would pass most of
/// them into the stack, and the ratio would measure the stack, not the
/// limiter (at 10 pps, 22–29 % of the frames passed at 10 000 sources and
/// all of them at a million). With this one each source's first packet
/// passes and every later one is dropped, so after a limiter's first round
/// the row is its drop path over that many sources.
pub const MANY_SOURCES: Limit = Limit {
    packets: 1,
    per_secs: 3600,
};

/// The spoofed flood beyond capacity: its admitted sources pass within it.
pub const OVER_CAPACITY: Limit = Limit::per_second(10);

impl Limit {
    /// `packets` a second, a burst of `packets`.
    pub const fn per_second(packets: u64) -> Limit {
        Limit {
            packets,
            per_secs: 1,
        }
    }

    /// floodgate's rate.
    pub fn rate(self) -> Rate {
        Rate::new(self.packets, self.per_secs * SECOND, self.packets)
    }

    /// The configuration file's syntax (`"100/s"`, `"1/h"`).
    pub fn config(self) -> String {
        format!("{}/{}", self.packets, self.unit(["s", "m", "h"]))
    }

    /// nftables' `limit rate over` syntax.
    pub fn nft(self) -> String {
        format!(
            "{}/{}",
            self.packets,
            self.unit(["second", "minute", "hour"])
        )
    }

    /// iptables hashlimit's `--hashlimit-above` syntax.
    pub fn hashlimit(self) -> String {
        format!("{}/{}", self.packets, self.unit(["sec", "min", "hour"]))
    }

    /// The one-map limiter's emission interval in ns.
    pub fn interval_ns(self) -> u64 {
        self.per_secs * SECOND / self.packets.max(1)
    }

    /// Packets a second, for the report (fractional below one).
    pub fn pps(self) -> f64 {
        self.packets as f64 / self.per_secs as f64
    }

    /// The unit of `per_secs` in the given spellings of second, minute, hour.
    fn unit(self, names: [&'static str; 3]) -> &'static str {
        match self.per_secs {
            1 => names[0],
            60 => names[1],
            3600 => names[2],
            other => panic!("a bench limit per {other} s has no unit in every tool"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_reads_the_same_limit() {
        assert_eq!(ONE_SOURCE.config(), "100/s");
        assert_eq!(ONE_SOURCE.nft(), "100/second");
        assert_eq!(ONE_SOURCE.hashlimit(), "100/sec");
        assert_eq!(ONE_SOURCE.interval_ns(), 10_000_000);
        assert_eq!(MANY_SOURCES.config(), "1/h");
        assert_eq!(MANY_SOURCES.nft(), "1/hour");
        assert_eq!(MANY_SOURCES.hashlimit(), "1/hour");
        assert_eq!(MANY_SOURCES.interval_ns(), 3600 * SECOND);
        assert_eq!(MANY_SOURCES.rate(), Rate::new(1, 3600 * SECOND, 1));
    }
}
