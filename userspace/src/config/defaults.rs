//! The built-in limits: what an empty file means.

use super::{
    Limit, PrefixLimits, QuotaSpec, SourceLimits,
    validate::{DAY, SECOND, rate},
};
use std::time::Duration;

/// Built-in defaults: the same values `default.toml` documents.
pub(super) fn source_limits() -> SourceLimits {
    SourceLimits {
        packets: Limit {
            rate: rate(1000, SECOND),
            burst: 2000,
        },
        bytes: Limit {
            rate: rate(10 << 20, SECOND),
            burst: 20 << 20,
        },
        syn: Limit {
            rate: rate(50, SECOND),
            burst: 100,
        },
        quota: Some(QuotaSpec {
            limit: 200_000,
            window: DAY,
        }),
        ban: Duration::from_secs(300),
    }
}

pub(super) fn prefix_limits() -> PrefixLimits {
    PrefixLimits {
        packets: Limit {
            rate: rate(20_000, SECOND),
            burst: 40_000,
        },
        syn: Limit {
            rate: rate(500, SECOND),
            burst: 1000,
        },
        quota: Some(QuotaSpec {
            limit: 2_000_000,
            window: DAY,
        }),
        ban: Duration::from_secs(300),
    }
}
