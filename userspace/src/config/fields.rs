//! One value of the file at a time: rates, bursts, durations, quotas, CIDRs,
//! capacities, ports. Each reads what was written, records an issue with its
//! position when it is wrong, and returns what the config will hold.

use std::{net::IpAddr, ops::Range, time::Duration};

use ipnet::IpNet;
use serde_spanned::Spanned;

use super::{
    Limit, MIN_BYTES_BURST, PortSpec, QuotaSpec, RateSpec,
    raw::{NumOrStr, S},
    units,
    validate::{DAY, SECOND, Validator, most_burst},
};

impl Validator<'_> {
    /// A rate such as "1000/s", or "off". `bytes` allows byte units.
    pub(super) fn rate(
        &mut self,
        key: &str,
        v: &S<String>,
        default: Option<RateSpec>,
        bytes: bool,
    ) -> Option<RateSpec> {
        let Some(v) = v else { return default };
        let example = if bytes {
            "\"10MiB/s\""
        } else {
            "\"1000/s\", \"60/m\""
        };
        match units::parse_rate(v.get_ref(), bytes) {
            Ok(None) => None,
            Ok(Some(r)) if r.count == 0 => {
                self.issue(v.span(), format!("{key}: a rate of 0 drops everything — write \"off\" to disable the limit, or a positive rate"));
                None
            }
            Ok(Some(r)) if r.per > DAY => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} spans more than a day — use `quota` for long windows",
                        v.get_ref()
                    ),
                );
                None
            }
            Ok(Some(r)) if r.per_second() > 1e9 => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is above 10^9 per second — write a smaller rate",
                        v.get_ref()
                    ),
                );
                None
            }
            Ok(Some(r)) if bytes && r.per_second() < 1.0 => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is below 1 byte per second — write a larger rate or \"off\"",
                        v.get_ref()
                    ),
                );
                None
            }
            Ok(Some(r)) => Some(r),
            Err(units::BadRate) => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a rate — write it like {example} or \"off\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A burst; at least [`TICKS_MS`] of the rate (`least_burst`); default one second's worth of the rate (at least 1, or
    /// `MIN_BYTES_BURST` for bytes).
    pub(super) fn burst(
        &mut self,
        key: &str,
        v: Option<(u64, Range<usize>)>,
        rate: Option<RateSpec>,
        min: u64,
    ) -> u64 {
        let default = rate.map_or(min, |r| (r.per_second().ceil() as u64).max(min));
        let Some((n, span)) = v else { return default };
        if n < min.max(1) {
            let what = if min > 1 {
                format!("{key}: {n} bytes cannot hold one full-size IP packet — use at least {min}")
            } else {
                format!("{key}: a burst of {n} admits nothing — use at least 1")
            };
            self.issue(span, what);
            return default;
        }
        if n > 1_000_000_000_000 {
            self.issue(
                span,
                format!("{key}: {n} is larger than any real burst — use at most 10^12"),
            );
            return default;
        }
        if let Some(r) = rate
            && let Some(least) = least_burst(r)
            && n < least
        {
            self.issue(
                span,
                format!(
                    "{key}: a burst of {n} is under {TICKS_MS} ms of {}/{}; the program's clock \
                     moves in kernel ticks of up to 10 ms, and a bucket holding less than two \
                     of them passes less than its rate — use at least {least}",
                    r.count,
                    humantime::format_duration(r.per)
                ),
            );
            return default;
        }
        if let Some(r) = rate
            && let Some(most) = most_burst(r, n)
        {
            self.issue(
                span,
                format!(
                    "{key}: a burst of {n} at {}/{} is more than a bucket holds (over 146 years \
                     of the rate) — use at most {most}, or a faster rate",
                    r.count,
                    humantime::format_duration(r.per)
                ),
            );
            return default;
        }
        n
    }

    pub(super) fn int_burst(&mut self, key: &str, v: &S<i64>, rate: Option<RateSpec>) -> u64 {
        let v = v
            .as_ref()
            .map(|s| (u64::try_from(*s.get_ref()).unwrap_or(0), s.span()));
        self.burst(key, v, rate, 1)
    }

    pub(super) fn bytes_burst(
        &mut self,
        key: &str,
        v: &S<NumOrStr>,
        rate: Option<RateSpec>,
    ) -> u64 {
        let parsed = match v {
            None => None,
            Some(s) => {
                match s.get_ref() {
                    NumOrStr::Num(n) => Some((u64::try_from(*n).unwrap_or(0), s.span())),
                    NumOrStr::Str(text) => match units::parse_bytes(text) {
                        Some(n) => Some((n, s.span())),
                        None => {
                            self.issue(s.span(), format!("{key}: {text:?} is not a size — write it like \"20MiB\" or 65536"));
                            None
                        }
                    },
                }
            }
        };
        self.burst(key, parsed, rate, MIN_BYTES_BURST)
    }

    /// `capacity.pressure_window`: 1 s to 1 h (default 60 s).
    pub(super) fn pressure_window(&mut self, v: &S<String>) -> Duration {
        const DEFAULT: Duration = Duration::from_secs(60);
        let d = self.duration("capacity.pressure_window", v, DEFAULT);
        if let Some(v) = v
            && !(SECOND..=Duration::from_secs(3600)).contains(&d)
        {
            self.issue(
                v.span(),
                format!(
                    "capacity.pressure_window: {:?} is out of range — use 1s to 1h (e.g. \"60s\")",
                    v.get_ref()
                ),
            );
            return DEFAULT;
        }
        d
    }

    pub(super) fn duration(&mut self, key: &str, v: &S<String>, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match units::parse_duration(v.get_ref()) {
            Some(d) => d,
            None => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a duration — write it like \"5m\", \"24h\" or \"0s\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    pub(super) fn quota(
        &mut self,
        key: &str,
        v: &S<String>,
        default: Option<QuotaSpec>,
    ) -> Option<QuotaSpec> {
        let Some(v) = v else { return default };
        match units::parse_rate(v.get_ref(), false) {
            Ok(None) => None,
            Ok(Some(r)) if r.per < SECOND || r.per > 30 * DAY => {
                self.issue(v.span(), format!("{key}: the window of {:?} must be between 1s and 30d — write it like \"200000/24h\"", v.get_ref()));
                None
            }
            Ok(Some(r)) if r.count == 0 => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: a quota of 0 drops everything — write \"off\" or a positive count"
                    ),
                );
                None
            }
            Ok(Some(r)) if r.count > floodgate_common::quota::MAX_QUOTA => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {} packets is more than a quota can count (at most {} per window) — use a shorter window or \"off\"",
                        r.count,
                        floodgate_common::quota::MAX_QUOTA
                    ),
                );
                None
            }
            Ok(Some(r)) => Some(QuotaSpec {
                limit: r.count,
                window: r.per,
            }),
            Err(units::BadRate) => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a quota — write it like \"200000/24h\" or \"off\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn cidr(&mut self, key: &str, v: &Spanned<String>) -> Option<IpNet> {
        let s = v.get_ref().trim();
        match s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(n) => Some(n.trunc()),
            Err(_) => {
                self.issue(v.span(), format!("{key}: {s:?} is not a CIDR — write it like \"203.0.113.0/24\" or \"2001:db8::/32\""));
                None
            }
        }
    }

    pub(super) fn capacity(&mut self, key: &str, v: &S<i64>, default: u32) -> u32 {
        let Some(v) = v else { return default };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if (16..=100_000_000).contains(&n) => n,
            _ => {
                self.issue(
                    v.span(),
                    format!(
                        "capacity.{key}: {} is out of range — use 16 to 100000000 entries",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A share of something written as a percentage ("25%"), or "off" (None).
    pub(super) fn share(&mut self, key: &str, v: &S<String>, default: Option<f64>) -> Option<f64> {
        let Some(v) = v else { return default };
        let text = v.get_ref().trim();
        if text == "off" {
            return None;
        }
        match units::parse_percent(text) {
            Some(pct) if pct > 0.0 && pct <= 100.0 => Some(pct / 100.0),
            _ => {
                self.issue(
                    v.span(),
                    format!(
                        "{key}: {:?} is not a share of the available memory — write a \
                         percentage above 0 and at most 100, like \"25%\", or \"off\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    pub(super) fn mode(&mut self, key: &str, v: &S<String>) -> Option<bool> {
        let v = v.as_ref()?;
        match v.get_ref().as_str() {
            "enforce" => Some(false),
            "monitor" => Some(true),
            other => {
                self.issue(
                    v.span(),
                    format!("{key}: {other:?} is not a mode — write \"enforce\" or \"monitor\""),
                );
                None
            }
        }
    }

    pub(super) fn port(&mut self, v: &Spanned<String>) -> Option<PortSpec> {
        let s = v.get_ref().trim().to_ascii_lowercase();
        let (proto, port) = s
            .split_once('/')
            .map_or((s.as_str(), None), |(p, n)| (p, Some(n)));
        let proto = match proto {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmpv6" => 58,
            _ => {
                self.issue(v.span(), format!("limits.ports: {:?} is not a port — write it like \"tcp/443\", \"udp/53\", \"tcp\" or \"icmp\"", v.get_ref()));
                return None;
            }
        };
        let port = match port {
            None => None,
            Some(_) if proto == 1 || proto == 58 => {
                self.issue(
                    v.span(),
                    format!(
                        "limits.ports: {:?}: ICMP has no ports — write \"icmp\" or \"icmpv6\"",
                        v.get_ref()
                    ),
                );
                return None;
            }
            Some(n) => match n.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    self.issue(
                        v.span(),
                        format!(
                            "limits.ports: {:?} has no valid port — use 1 to 65535",
                            v.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        Some(PortSpec { proto, port })
    }

    pub(super) fn prefix_len(&mut self, key: &str, v: &S<i64>, default: u8, max: u8) -> u8 {
        let Some(v) = v else { return default };
        match u8::try_from(*v.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                self.issue(
                    v.span(),
                    format!(
                        "prefix.{key}: /{} is not a prefix length — use 1 to {max}",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A packet-like limit: its rate and burst keys under `at`. With neither key
    /// set it inherits `base` whole (a rule keeps the [limits] burst too).
    pub(super) fn count_limit(
        &mut self,
        at: &str,
        name: &str,
        rate: &S<String>,
        burst: &S<i64>,
        base: Limit,
    ) -> Limit {
        let r = self.rate(&format!("{at}{name}"), rate, base.rate, false);
        Limit {
            rate: r,
            burst: if rate.is_none() && burst.is_none() {
                base.burst
            } else {
                self.int_burst(&format!("{at}{name}_burst"), burst, r)
            },
        }
    }
}

/// The shortest burst, in ms of its rate: two kernel ticks at the coarsest
/// tick Linux has (HZ=100). The program reads the kernel's coarse clock, which
/// moves a tick at a time: a bucket that holds less than a tick refills less
/// than its rate.
pub(super) const TICKS_MS: u64 = 20;

/// The least burst rate `r` may have ([`TICKS_MS`] of it, at least 1); None
/// for an off rate.
pub(super) fn least_burst(r: RateSpec) -> Option<u64> {
    let per_ns = r.per.as_nanos();
    if r.count == 0 || per_ns == 0 {
        return None;
    }
    let least = (u128::from(r.count) * u128::from(TICKS_MS) * 1_000_000).div_ceil(per_ns);
    Some(u64::try_from(least).unwrap_or(u64::MAX).max(1))
}
