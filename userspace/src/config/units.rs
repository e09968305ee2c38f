//! Human units in the config: rates ("1000/s", "10MiB/s", "200000/24h"), byte
//! sizes ("20MiB") and durations ("5m").

use std::time::Duration;

/// `count` units per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub count: u64,
    pub per: Duration,
}

impl RateSpec {
    /// Units per second, as a float (for defaults and messages).
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.per.as_secs_f64()
    }
}

/// Parses a byte size: a number with an optional unit B, KB, MB, GB (×1000) or
/// KiB, MiB, GiB (×1024).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.replace('_', "").parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a percentage: "25%", "12.5 %". The sign is required, so a bare
/// number is never mistaken for a fraction or a count.
pub fn parse_percent(s: &str) -> Option<f64> {
    let n: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    n.is_finite().then_some(n)
}

/// Parses "5m", "24h", "100ms", "0s".
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// A value that is not a rate (the caller knows which key and how to say it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRate;

/// Parses "N/duration" (the duration may omit a leading 1: "1000/s"); with
/// `bytes`, N may carry a byte unit ("10MiB/s"). `Ok(None)` for "off".
pub fn parse_rate(s: &str, bytes: bool) -> Result<Option<RateSpec>, BadRate> {
    let s = s.trim();
    if s == "off" {
        return Ok(None);
    }
    let (n, per) = s.split_once('/').ok_or(BadRate)?;
    let count = if bytes {
        parse_bytes(n).ok_or(BadRate)?
    } else {
        n.trim()
            .replace('_', "")
            .parse::<u64>()
            .map_err(|_| BadRate)?
    };
    let per = per.trim();
    let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(per)
    } else {
        parse_duration(&format!("1{per}"))
    }
    .ok_or(BadRate)?;
    if per.is_zero() {
        return Err(BadRate);
    }
    Ok(Some(RateSpec { count, per }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_bytes_and_durations() {
        assert_eq!(
            parse_rate("1000/s", false),
            Ok(Some(RateSpec {
                count: 1000,
                per: Duration::from_secs(1)
            }))
        );
        assert_eq!(
            parse_rate("200_000/24h", false),
            Ok(Some(RateSpec {
                count: 200_000,
                per: Duration::from_secs(86_400)
            }))
        );
        assert_eq!(
            parse_rate("10MiB/s", true),
            Ok(Some(RateSpec {
                count: 10 << 20,
                per: Duration::from_secs(1)
            }))
        );
        assert_eq!(
            parse_rate("50/100ms", false),
            Ok(Some(RateSpec {
                count: 50,
                per: Duration::from_millis(100)
            }))
        );
        assert_eq!(parse_rate("off", false), Ok(None));
        assert!(parse_rate("1000/fortnight", false).is_err());
        assert!(parse_rate("1000", false).is_err());
        assert!(parse_rate("10MiB/s", false).is_err());
        assert!(parse_rate("5/0s", false).is_err());
        assert_eq!(parse_bytes("20MiB"), Some(20 << 20));
        assert_eq!(parse_bytes("1500"), Some(1500));
        assert_eq!(parse_bytes("2KB"), Some(2000));
        assert_eq!(parse_bytes("2 parsecs"), None);
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_percent("25%"), Some(25.0));
        assert_eq!(parse_percent(" 12.5 %"), Some(12.5));
        assert_eq!(parse_percent("25"), None);
        assert_eq!(parse_percent("NaN%"), None);
    }
}
