//! Go's duration strings (`time.Duration.String()`), as the LAPI writes a
//! decision's remaining time: `"3h59m58.9s"`, `"-1m2.5s"` (a deleted or
//! expired decision), `"412.3ms"`, `"0s"`.

/// Nanoseconds per unit, the units Go's `time.ParseDuration` accepts.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go caps a duration at `i64::MAX` nanoseconds (about 292 years).
const MAX_NS: u128 = i64::MAX as u128;

/// The signed length of `s` in nanoseconds, or None when it is not a Go
/// duration (empty, no unit, an unknown unit, over 292 years).
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (negative, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (value, after) = number(rest)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let per = UNITS.iter().find(|(u, _)| *u == unit).map(|(_, n)| *n)?;
        let (whole, frac, frac_div) = value;
        total = total
            .checked_add(whole.checked_mul(per)?)?
            .checked_add(frac.checked_mul(per)? / frac_div)?;
        if total > MAX_NS {
            return None;
        }
        rest = tail;
    }
    let ns = i64::try_from(total).ok()?;
    Some(if negative { -ns } else { ns })
}

/// A decimal number at the start of `s`: (whole, fraction digits as an
/// integer, 10^digits) and the rest. At least one digit, on either side of
/// the point.
fn number(s: &str) -> Option<((u128, u128, u128), &str)> {
    let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, after) = s.split_at(int_len);
    let (frac, rest) = match after.strip_prefix('.') {
        Some(f) => {
            let len = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            f.split_at(len)
        }
        None => ("", after),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let whole = if int.is_empty() {
        0
    } else {
        int.parse::<u128>().ok()?
    };
    // Digits past nanosecond precision of an hour (13) change nothing.
    let frac = &frac[..frac.len().min(18)];
    let (f, div) = if frac.is_empty() {
        (0, 1)
    } else {
        (
            frac.parse::<u128>().ok()?,
            10u128.pow(u32::try_from(frac.len()).ok()?),
        )
    };
    Some(((whole, f, div), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn what_the_lapi_writes() {
        assert_eq!(
            parse_go_duration("3h59m58.9s"),
            Some(14_398 * S + 900_000_000)
        );
        assert_eq!(parse_go_duration("4h0m0s"), Some(4 * 3600 * S));
        assert_eq!(parse_go_duration("-1m2.5s"), Some(-(62 * S + S / 2)));
        assert_eq!(parse_go_duration("412.3ms"), Some(412_300_000));
        assert_eq!(parse_go_duration("0s"), Some(0));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("1.5h"), Some(5400 * S));
        assert_eq!(parse_go_duration("2\u{b5}s"), Some(2_000));
        assert_eq!(parse_go_duration("+7ns"), Some(7));
        assert_eq!(parse_go_duration(".5s"), Some(S / 2));
        assert_eq!(
            parse_go_duration("2562047h47m16.854775807s"),
            Some(i64::MAX),
            "Go's largest duration"
        );
    }

    #[test]
    fn what_go_refuses_is_refused() {
        for bad in [
            "",
            "-",
            "5",
            "5x",
            "h",
            "1h-2m",
            "1.2.3s",
            ".s",
            "3 h",
            "1hh",
            "2562047h47m16.854775808s",
            "99999999999999999999999h",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever Go's `Duration.String()` writes for a duration parses
        /// back to it (the format: h, m, then s with up to 9 decimals).
        #[test]
        fn go_strings_round_trip(ns in -(1i64 << 62)..(1i64 << 62)) {
            let a = ns.unsigned_abs();
            let (h, m) = (a / 3_600_000_000_000, a / 60_000_000_000 % 60);
            let (s, frac) = (a / 1_000_000_000 % 60, a % 1_000_000_000);
            let mut text = String::from(if ns < 0 { "-" } else { "" });
            if h > 0 { text.push_str(&format!("{h}h")); }
            if h > 0 || m > 0 { text.push_str(&format!("{m}m")); }
            let frac = format!("{frac:09}");
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() { text.push_str(&format!("{s}s")); }
            else { text.push_str(&format!("{s}.{frac}s")); }
            proptest::prop_assert_eq!(parse_go_duration(&text), Some(ns), "{}", text);
        }
    }
}
