//! Which sources a sync sends when more had traffic than it may send.
//!
//! Below `max_keys`, every source with traffic is sent. Above it, only
//! those whose own count on this edge is at least `quota / (4 × edges)`:
//! a source the fleet is about to hold to its quota has sent more than that
//! to at least one edge. The undercount this allows: each of `edges` edges
//! may leave out less than `quota / (4 × edges)` of a source, so the fleet's
//! total misses less than a quarter of the quota, and a source is held to at
//! most 1.25 × quota (plus the sync bound README states).

/// A source's count on this edge, in the window, and what it added since
/// the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub window_count: u64,
    pub since_sync: u64,
}

/// The least local count a source needs to be sent when there are too many.
pub const fn threshold(quota: u64, edges: u64) -> u64 {
    let parts = 4 * if edges == 0 { 1 } else { edges };
    quota.div_ceil(parts)
}

/// The indexes of `sources` to send: those with traffic since the last
/// sync, and, past `max_keys` of them, only those at the threshold; never
/// more than `max_keys` (the busiest first). Returns them with how many
/// with traffic were left out.
pub fn select(sources: &[Local], max_keys: usize, quota: u64, edges: u64) -> (Vec<usize>, usize) {
    let active: Vec<usize> = (0..sources.len())
        .filter(|&i| sources[i].since_sync > 0)
        .collect();
    if active.len() <= max_keys {
        return (active, 0);
    }
    let least = threshold(quota, edges);
    let mut heavy: Vec<usize> = active
        .iter()
        .copied()
        .filter(|&i| sources[i].window_count >= least)
        .collect();
    heavy.sort_by_key(|&i| std::cmp::Reverse(sources[i].window_count));
    heavy.truncate(max_keys);
    let left_out = active.len() - heavy.len();
    (heavy, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(window_count: u64, since_sync: u64) -> Local {
        Local {
            window_count,
            since_sync,
        }
    }

    #[test]
    fn under_the_cap_every_source_with_traffic_is_sent() {
        let s = [local(5, 5), local(9, 0), local(1, 1)];
        assert_eq!(select(&s, 10, 1000, 4), (vec![0, 2], 0));
    }

    #[test]
    fn over_the_cap_only_sources_at_a_quarter_share_of_the_quota_go() {
        // Quota 1000 over 5 edges: 50 on this edge is the threshold.
        assert_eq!(threshold(1000, 5), 50);
        let s = [local(49, 1), local(50, 1), local(400, 3), local(10, 10)];
        assert_eq!(select(&s, 2, 1000, 5), (vec![2, 1], 2));
        // Never more than the cap, the busiest first.
        let many = [local(60, 1), local(90, 1), local(70, 1)];
        assert_eq!(select(&many, 2, 1000, 5), (vec![1, 2], 1));
    }

    #[test]
    fn what_is_left_out_stays_under_a_quarter_of_the_quota() {
        // Every edge leaves out at most threshold - 1 of a source.
        for (quota, edges) in [(1000u64, 1u64), (1000, 3), (7, 2), (200_000, 16)] {
            let missed = edges * (threshold(quota, edges) - 1);
            assert!(4 * missed < quota, "quota {quota}, {edges} edges");
        }
    }
}
