//! The LAPI's decisions, as `GET /v1/decisions/stream` returns them, and the
//! batch the bouncer hands the engine: every decision checked (scope, type,
//! origin, value, duration) before anything is applied.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::duration::parse_go_duration;
use crate::config::CrowdsecConfig;

/// One decision of a stream reply. Unknown fields are ignored (newer LAPIs
/// add some).
#[derive(Debug, Clone, Deserialize)]
pub struct Decision {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub scenario: String,
    pub scope: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub duration: String,
    #[serde(default)]
    pub simulated: bool,
}

/// A stream reply: 1.4.x writes `null` for an empty list, newer LAPIs `[]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamReply {
    #[serde(default, deserialize_with = "null_is_empty")]
    pub new: Vec<Decision>,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub deleted: Vec<Decision>,
}

fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Decision>, D::Error> {
    Ok(Option::<Vec<Decision>>::deserialize(d)?.unwrap_or_default())
}

/// A decision floodgate enforces: the whole network (a host is a /32 or
/// /128) until `until` (Unix seconds), with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub net: IpNet,
    pub until: u64,
    pub origin: String,
    pub scenario: String,
}

impl Held {
    /// Whether it is one address (a source ban), not a range (a block).
    pub fn is_host(&self) -> bool {
        self.net.prefix_len() == self.net.max_prefix_len()
    }
}

/// What one pull changes, for the engine to apply as one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// A `startup=true` pull: the decisions in `new` replace every one held.
    pub replace: bool,
    /// Decisions to hold, by network (the LAPI sends one per value; of
    /// two for one network, the one ending last).
    pub new: BTreeMap<IpNet, Held>,
    /// Networks whose decisions were deleted or expired at the LAPI (it
    /// deletes by value: the ids of a value's decisions are not all sent).
    pub deleted: Vec<IpNet>,
    /// Skipped on purpose: a type, scope or origin the config leaves out,
    /// or simulated (by kind, e.g. `type:captcha`, `scope:country`).
    pub ignored: BTreeMap<String, u64>,
    /// Skipped because a value or duration did not parse.
    pub invalid: u64,
}

/// Why a decision of `new` is not held.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Skip {
    Ignored(String),
    Invalid,
}

impl Batch {
    /// Sorts a reply into a batch at `now_unix`. A decision of `new` whose
    /// remaining time is not positive counts as deleted.
    pub fn from_reply(reply: StreamReply, replace: bool, cfg: &CrowdsecConfig, now: u64) -> Batch {
        let mut batch = Batch {
            replace,
            ..Batch::default()
        };
        for d in reply.new {
            match held(&d, cfg, now) {
                Ok(Some(h)) => match batch.new.get(&h.net) {
                    Some(e) if e.until >= h.until => {}
                    _ => {
                        batch.new.insert(h.net, h);
                    }
                },
                Ok(None) => batch.deleted.extend(network(&d)),
                Err(Skip::Ignored(why)) => *batch.ignored.entry(why).or_default() += 1,
                Err(Skip::Invalid) => batch.invalid += 1,
            }
        }
        // A deletion needs only its network; a value that does not parse
        // cannot be held, so there is nothing to delete.
        batch
            .deleted
            .extend(reply.deleted.iter().filter_map(network));
        batch
    }

    /// Decisions in the batch, for logs.
    pub fn len(&self) -> usize {
        self.new.len() + self.deleted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The network a decision covers: one address for `Ip`, the whole range for
/// `Range` (a value with host bits past its length is widened to its
/// network, never narrowed to one address).
fn network(d: &Decision) -> Option<IpNet> {
    let value = d.value.trim();
    match d.scope.to_ascii_lowercase().as_str() {
        "ip" => value.parse::<IpAddr>().map(IpNet::from).ok(),
        "range" => value.parse::<IpNet>().ok().map(|n| n.trunc()),
        _ => None,
    }
}

fn held(d: &Decision, cfg: &CrowdsecConfig, now: u64) -> Result<Option<Held>, Skip> {
    let kind = d.kind.to_ascii_lowercase();
    if !cfg.types.contains(&kind) {
        return Err(Skip::Ignored(format!("type:{kind}")));
    }
    let scope = d.scope.to_ascii_lowercase();
    if !cfg.scopes.contains(&scope) {
        return Err(Skip::Ignored(format!("scope:{scope}")));
    }
    if !cfg.origins.is_empty()
        && !cfg
            .origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&d.origin))
    {
        return Err(Skip::Ignored(format!("origin:{}", d.origin)));
    }
    if d.simulated {
        return Err(Skip::Ignored("simulated".to_owned()));
    }
    let net = network(d).ok_or(Skip::Invalid)?;
    let ns = parse_go_duration(d.duration.trim()).ok_or(Skip::Invalid)?;
    if ns <= 0 {
        return Ok(None);
    }
    // Rounded up: a decision is never enforced shorter than it says.
    let secs = u64::try_from(ns).unwrap_or(0).div_ceil(1_000_000_000);
    Ok(Some(Held {
        net,
        until: now.saturating_add(secs),
        origin: d.origin.clone(),
        scenario: d.scenario.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CrowdsecConfig {
        CrowdsecConfig::for_tests("http://198.18.0.1:8080/")
    }

    fn reply(json: &str) -> StreamReply {
        serde_json::from_str(json).expect("a stream reply")
    }

    #[test]
    fn a_1_4_reply_with_nulls_and_a_current_one_with_empty_lists() {
        for json in [
            r#"{"new":null,"deleted":null}"#,
            r#"{"new":[],"deleted":[]}"#,
            "{}",
        ] {
            let b = Batch::from_reply(reply(json), true, &cfg(), 1000);
            assert!(b.is_empty() && b.replace, "{json}");
        }
    }

    #[test]
    fn ips_ranges_and_deletions() {
        let json = r#"{"new":[
            {"id":1,"origin":"cscli","scenario":"manual","scope":"Ip","value":"198.18.0.9","type":"ban","duration":"3h59m58.9s"},
            {"id":2,"origin":"crowdsec","scenario":"crowdsecurity/http-crawl","scope":"Range","value":"198.19.7.77/24","type":"ban","duration":"10m"},
            {"id":3,"origin":"CAPI","scenario":"x","scope":"range","value":"fd00:9::/48","type":"ban","duration":"1s"},
            {"id":4,"origin":"cscli","scenario":"m","scope":"Ip","value":"fd00::5","type":"ban","duration":"-2s"}
          ],"deleted":[
            {"id":7,"origin":"cscli","scenario":"m","scope":"Ip","value":"not checked","type":"ban","duration":"-1h"}
          ]}"#;
        let b = Batch::from_reply(reply(json), false, &cfg(), 1000);
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        let ip = &b.new[&net("198.18.0.9/32")];
        assert_eq!(ip.until, 1000 + 14_399, "rounded up");
        assert!(ip.is_host());
        let range = &b.new[&net("198.19.7.0/24")];
        assert_eq!(
            range.scenario, "crowdsecurity/http-crawl",
            "the whole range"
        );
        assert!(!range.is_host());
        assert_eq!(b.new[&net("fd00:9::/48")].until, 1001);
        assert_eq!(
            b.deleted,
            vec![net("fd00::5/128")],
            "an expired new one counts as deleted; an unparsable deletion is nothing to delete"
        );
        assert_eq!((b.invalid, b.ignored.len()), (0, 0));
    }

    #[test]
    fn of_two_decisions_on_one_value_the_later_end_is_held() {
        let json = r#"{"new":[
            {"id":3,"origin":"cscli","scenario":"a","scope":"Ip","value":"198.18.0.9","type":"ban","duration":"2h"},
            {"id":4,"origin":"crowdsec","scenario":"b","scope":"Ip","value":"198.18.0.9","type":"ban","duration":"4h"},
            {"id":5,"origin":"cscli","scenario":"c","scope":"Ip","value":"198.18.0.9","type":"ban","duration":"1h"}
          ]}"#;
        let b = Batch::from_reply(reply(json), true, &cfg(), 0);
        assert_eq!(b.new.len(), 1);
        assert_eq!(
            b.new
                .values()
                .next()
                .map(|h| (h.until, h.scenario.as_str())),
            Some((4 * 3600, "b"))
        );
    }

    #[test]
    fn what_the_config_leaves_out_is_ignored_and_what_does_not_parse_is_invalid() {
        let json = r#"{"new":[
            {"id":1,"origin":"cscli","scenario":"m","scope":"Ip","value":"198.18.0.9","type":"captcha","duration":"1h"},
            {"id":2,"origin":"cscli","scenario":"m","scope":"Country","value":"FR","type":"ban","duration":"1h"},
            {"id":3,"origin":"cscli","scenario":"m","scope":"Ip","value":"198.18.0.300","type":"ban","duration":"1h"},
            {"id":4,"origin":"cscli","scenario":"m","scope":"Ip","value":"198.18.0.4","type":"ban","duration":"forever"},
            {"id":5,"origin":"cscli","scenario":"m","scope":"Ip","value":"198.18.0.5","type":"ban","duration":"1h","simulated":true},
            {"id":6,"origin":"lists","scenario":"m","scope":"Ip","value":"198.18.0.6","type":"ban","duration":"1h"}
          ],"deleted":null}"#;
        let mut c = cfg();
        c.origins = vec!["cscli".to_owned()];
        let b = Batch::from_reply(reply(json), false, &c, 1000);
        assert!(b.new.is_empty(), "{b:?}");
        assert_eq!(b.invalid, 2);
        let ignored: Vec<_> = b.ignored.keys().map(String::as_str).collect();
        assert_eq!(
            ignored,
            ["origin:lists", "scope:country", "simulated", "type:captcha"]
        );
    }
}
