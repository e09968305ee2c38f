#[test]
fn a_burst_the_kernel_form_cannot_hold_is_refused_not_wrapped() {
    let second = 1_000_000_000;
    // 18446744074 × 1 s is just over 2^64 ns: it used to wrap to ~0.3 s.
    assert_eq!(Rate::checked_new(1, second, 18_446_744_074), None);
    assert_eq!(
        Rate::new(1, second, 18_446_744_074).tolerance_ns,
        MAX_TOLERANCE_NS
    );
    let fits = Rate::checked_new(1, second, 4_611_686_018).expect("fits");
    assert_eq!(fits.tolerance_ns, 4_611_686_018 * second);
    assert_eq!(Rate::checked_new(0, second, 5), Some(Rate::OFF));
}

use super::*;
use crate::aggregate::{AggState, AggregateLimits};
use core::mem::size_of;

#[test]
fn sizes_have_no_hidden_padding() {
    assert_eq!(size_of::<AddrKey>(), 16);
    assert_eq!(size_of::<BanKey>(), 24);
    assert_eq!(size_of::<PortKey>(), 4);
    assert_eq!(size_of::<Rate>(), 16);
    assert_eq!(size_of::<Quota>(), 16);
    assert_eq!(size_of::<AggregateLimits>(), 3 * 16);
    assert_eq!(size_of::<Policy>(), 7 * 16 + 8 + 8 + 48 + 8);
    assert_eq!(size_of::<AggState>(), 8 + 8 + 40 + 8 + 8 + 48);
    assert_eq!(size_of::<Settings>(), 16 + 24 + 32 + 8 + 16 + 8);
    assert_eq!(size_of::<QuotaState>(), 40);
    assert_eq!(size_of::<TrackState>(), 88);
    assert_eq!(size_of::<Track6>(), 96);
    assert_eq!(size_of::<crate::set_table::Set>(), 384);
    assert_eq!(size_of::<Ban>(), 48);
    assert_eq!(size_of::<Event>(), 8 + 16 + 8 + 24);
    assert_eq!(size_of::<Meta>(), 24);
    assert_eq!(size_of::<IfaceName>(), 24);
}

#[test]
fn rate_interval_and_tolerance() {
    // 1000 packets per second: 1 ms per packet, burst 2000 = 2 s ahead.
    let r = Rate::new(1000, 1_000_000_000, 2000);
    assert_eq!(r.interval_fp >> FP_SHIFT, 1_000_000);
    assert_eq!(r.tolerance_ns, 2_000_000_000);
    assert!(!Rate::new(0, 1, 1).is_on());
    // 1 GiB/s keeps sub-nanosecond precision per byte.
    let b = Rate::new(1 << 30, 1_000_000_000, 1 << 30);
    assert!(b.interval_fp > 0);
    let per_gib = ((1u128 << 30) * u128::from(b.interval_fp)) >> FP_SHIFT;
    assert!((per_gib as i128 - 1_000_000_000).abs() < 1_000_000);
}
