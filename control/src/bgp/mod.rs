//! The ExaBGP bridge's protocol core: what to tell ExaBGP for each local
//! block, and what each line ExaBGP writes means; no I/O (the runner in
//! [`run`] connects it to ExaBGP's pipes and control's socket).
//!
//! ExaBGP runs the bridge as a process of its API (`baitwallctl exabgp`):
//! the bridge's stdout is ExaBGP's command input, and ExaBGP writes JSON
//! (`encoder json`) with the routes it receives, session state changes and
//! an acknowledgement (`done` or `error`) per command.
//!
//! A local block is announced as a FlowSpec rule `match { source P; } then
//! { discard; }` (RFC 8955: the discard action is a traffic-rate of 0),
//! and optionally as an RTBH route to a discard next hop with the
//! BLACKHOLE community (RFC 7999) for source-based RTBH (RFC 5635). Both
//! carry one large community (RFC 8092) `ASN:APPLIANCE:EXPIRY`: who decided
//! the block and until when (Unix seconds; 0: permanent). Another
//! appliance learns the block from it; its own echo is recognised by the
//! appliance id and ignored. Learned blocks are never announced again,
//! so nothing loops.

pub mod run;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{BgpSection, community};
use crate::enforce::nft_plan::is_v4;
use crate::eve::net_text;
use crate::policy::{Net, parse_net};

/// The bridge's settings (from control's `[bgp]` section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// This appliance's id.
    pub appliance_id: u32,
    /// The large communities' global administrator.
    pub asn: u32,
    /// Announce and learn FlowSpec rules.
    pub flowspec: bool,
    /// Announce RTBH routes (and learn from them when FlowSpec is off).
    pub rtbh: bool,
    /// IPv4 RTBH next hop.
    pub next_hop4: Option<Ipv4Addr>,
    /// IPv6 RTBH next hop.
    pub next_hop6: Option<Ipv6Addr>,
    /// RTBH communities.
    pub communities: Vec<(u16, u16)>,
    /// Hand learned blocks to control.
    pub learn: bool,
    /// How long after a session comes back stale learned blocks are swept.
    pub sweep_after: Duration,
}

impl From<&BgpSection> for BridgeConfig {
    fn from(b: &BgpSection) -> Self {
        BridgeConfig {
            appliance_id: b.appliance_id,
            asn: b.asn,
            flowspec: b.flowspec,
            rtbh: b.rtbh,
            next_hop4: b.next_hop4,
            next_hop6: b.next_hop6,
            communities: b.communities.iter().filter_map(|c| community(c)).collect(),
            learn: b.learn,
            sweep_after: b.sweep_after,
        }
    }
}

/// What a line from ExaBGP means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Routes changed (one BGP update can carry both kinds).
    Routes {
        /// Blocks other appliances announced: (prefix, origin, expiry).
        learned: Vec<(Net, u32, u32)>,
        /// Learned blocks whose announcements were withdrawn, or replaced
        /// by a route that is not another appliance's block.
        withdrawn: Vec<Net>,
        /// This appliance's own blocks, come back (ignored).
        echoes: Vec<Net>,
    },
    /// A BGP session came up: announce everything again.
    Up,
    /// A BGP session went down.
    Down,
    /// ExaBGP accepted (`true`) or refused a command.
    Ack(bool),
    /// Nothing for us (end-of-RIB, someone else's routes, our own echo).
    Nothing,
}

/// The bridge's state: what it announced and what it learned.
#[derive(Debug)]
pub struct Bridge {
    config: BridgeConfig,
    /// Local blocks announced, with their expiry.
    announced: BTreeMap<Net, u32>,
    /// Blocks learned, with origin, expiry, and when last heard (Unix ms).
    learned: BTreeMap<Net, (u32, u32, u64)>,
    /// A sweep of stale learned blocks: due at, and the session's up time (Unix ms).
    sweep: Option<(u64, u64)>,
}

/// A prefix in ExaBGP's syntax (`192.0.2.66/32`, `2001:db8::/64`).
fn prefix_text(net: &Net) -> String {
    net_text(&net.0, net.1)
}

/// Reads a prefix as ExaBGP writes it; IPv6 FlowSpec prefixes carry an
/// offset (`2001:db8::/64/0`, RFC 8956), which must be 0 for us.
fn parse_prefix(text: &str) -> Option<Net> {
    let text = match text.matches('/').count() {
        2 => text.strip_suffix("/0")?,
        _ => text,
    };
    let net = parse_net(text).ok()?;
    text.contains('/').then_some(net)
}

impl Bridge {
    /// A bridge that has announced and learned nothing yet.
    pub fn new(config: BridgeConfig) -> Bridge {
        Bridge {
            config,
            announced: BTreeMap::new(),
            learned: BTreeMap::new(),
            sweep: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    fn large_community(&self, expires: u32) -> String {
        format!(
            "large-community [{}:{}:{}]",
            self.config.asn, self.config.appliance_id, expires
        )
    }

    fn next_hop(&self, net: &Net) -> Option<String> {
        if is_v4(net) {
            self.config.next_hop4.map(|a| a.to_string())
        } else {
            self.config.next_hop6.map(|a| a.to_string())
        }
    }

    /// The commands announcing a local block.
    pub fn announce(&self, net: &Net, expires: u32) -> Vec<String> {
        let p = prefix_text(net);
        let lc = self.large_community(expires);
        let mut v = Vec::new();
        if self.config.flowspec {
            v.push(format!(
                "announce flow route {{ match {{ source {p}; }} then {{ discard; {lc}; }} }}"
            ));
        }
        if self.config.rtbh
            && let Some(nh) = self.next_hop(net)
        {
            let communities: Vec<String> = self
                .config
                .communities
                .iter()
                .map(|(a, b)| format!("{a}:{b}"))
                .collect();
            v.push(format!(
                "announce route {p} next-hop {nh} community [{}] {lc}",
                communities.join(" ")
            ));
        }
        v
    }

    /// The commands withdrawing a local block.
    pub fn withdraw(&self, net: &Net) -> Vec<String> {
        let p = prefix_text(net);
        let mut v = Vec::new();
        if self.config.flowspec {
            v.push(format!("withdraw flow route {{ match {{ source {p}; }} }}"));
        }
        if self.config.rtbh
            && let Some(nh) = self.next_hop(net)
        {
            v.push(format!("withdraw route {p} next-hop {nh}"));
        }
        v
    }

    /// Makes the announcements equal to control's local blocks: announces
    /// the new and changed ones, withdraws the ones gone.
    pub fn sync(&mut self, local: &[(Net, u32)]) -> Vec<String> {
        let wanted: BTreeMap<Net, u32> = local.iter().copied().collect();
        let mut v = Vec::new();
        let gone: Vec<Net> = self
            .announced
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for net in gone {
            v.extend(self.withdraw(&net));
            self.announced.remove(&net);
        }
        for (net, expires) in wanted {
            if self.announced.get(&net) != Some(&expires) {
                v.extend(self.announce(&net, expires));
                self.announced.insert(net, expires);
            }
        }
        v
    }

    /// Every announcement again (a session came back).
    pub fn announce_all(&self) -> Vec<String> {
        self.announced
            .iter()
            .flat_map(|(net, expires)| self.announce(net, *expires))
            .collect()
    }

    /// What a `block` or `unblock` event from control calls for: commands
    /// for ExaBGP (only local blocks are announced), and requests for
    /// control (a local block that ended while another appliance still
    /// announces the prefix: control kept its own over the learned one, and
    /// now gets the learned one again).
    pub fn on_event(&mut self, event: &Value) -> (Vec<String>, Vec<Value>) {
        let b = &event["baitwall"];
        let Some(net) = b["prefix"].as_str().and_then(|p| parse_net(p).ok()) else {
            return (Vec::new(), Vec::new());
        };
        match event["event_type"].as_str() {
            Some("block") if b["origin"] == "local" => {
                let expires = b["expires_unix"].as_u64().map_or(0, |e| e as u32);
                if self.announced.get(&net) == Some(&expires) {
                    return (Vec::new(), Vec::new());
                }
                self.announced.insert(net, expires);
                (self.announce(&net, expires), Vec::new())
            }
            Some("unblock") => {
                let lines = if self.announced.remove(&net).is_some() {
                    self.withdraw(&net)
                } else {
                    Vec::new()
                };
                let again = self
                    .learned
                    .get(&net)
                    .map(|&(origin, expires, heard)| peer_block(&net, origin, expires, heard));
                (lines, again.into_iter().collect())
            }
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// The origin and expiry in a route's large communities, when it is a
    /// baitwall block of this fabric.
    fn origin(&self, attributes: &Value) -> Option<(u32, u32)> {
        attributes["large-community"]
            .as_array()?
            .iter()
            .filter_map(|c| {
                let c = c.as_array()?;
                let n = |i: usize| c.get(i)?.as_u64().and_then(|v| u32::try_from(v).ok());
                Some((n(0)?, n(1)?, n(2)?))
            })
            .find(|&(asn, _, _)| asn == self.config.asn)
            .map(|(_, origin, expires)| (origin, expires))
    }

    /// The families blocks are learned from: FlowSpec when it is on, else RTBH routes.
    fn learn_families(&self) -> [&'static str; 2] {
        if self.config.flowspec {
            ["ipv4 flow", "ipv6 flow"]
        } else {
            ["ipv4 unicast", "ipv6 unicast"]
        }
    }

    /// The source prefix of one announced or withdrawn NLRI, when it is a
    /// plain source block (a FlowSpec rule matching on anything else is
    /// not one of ours).
    fn nlri_prefix(&self, nlri: &Value) -> Option<Net> {
        if self.config.flowspec {
            let o = nlri.as_object()?;
            let key = o.keys().find(|k| k.starts_with("source-ipv"))?;
            let others = o.keys().any(|k| k != key && k != "string");
            let sources = o[key].as_array()?;
            if others || sources.len() != 1 {
                return None;
            }
            parse_prefix(sources[0].as_str()?)
        } else {
            parse_prefix(nlri["nlri"].as_str()?)
        }
    }

    /// What a line ExaBGP wrote means, at `now_ms` (Unix ms).
    pub fn hear(&mut self, line: &str, now_ms: u64) -> Result<Heard, String> {
        let line = line.trim();
        match line {
            "done" => return Ok(Heard::Ack(true)),
            "error" => return Ok(Heard::Ack(false)),
            "" | "shutdown" => return Ok(Heard::Nothing),
            _ => {}
        }
        let msg: Value = serde_json::from_str(line)
            .map_err(|e| format!("ExaBGP wrote a line that is not JSON ({e}): {line:.120}"))?;
        match msg["type"].as_str() {
            Some("state") => {
                return Ok(match msg["neighbor"]["state"].as_str() {
                    Some("up") => {
                        let after =
                            u64::try_from(self.config.sweep_after.as_millis()).unwrap_or(u64::MAX);
                        self.sweep = Some((now_ms.saturating_add(after), now_ms));
                        Heard::Up
                    }
                    Some("down") => Heard::Down,
                    _ => Heard::Nothing,
                });
            }
            Some("update") => {}
            _ => return Ok(Heard::Nothing),
        }
        if !self.config.learn {
            return Ok(Heard::Nothing);
        }
        let update = &msg["neighbor"]["message"]["update"];
        let families = self.learn_families();
        let mut learned = Vec::new();
        let mut withdrawn = Vec::new();
        let mut echoes = Vec::new();
        if let Some(announce) = update["announce"].as_object() {
            // Another appliance's block, or (our own echo, someone else's
            // rule) a route that replaces whatever we learned for it.
            let origin = self.origin(&update["attribute"]);
            let echo = origin.is_some_and(|(o, _)| o == self.config.appliance_id);
            let origin = origin.filter(|&(o, _)| o != self.config.appliance_id && o != 0);
            for family in families {
                // Routes are grouped by next hop (`no-nexthop` for FlowSpec).
                for routes in announce
                    .get(family)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.values())
                {
                    for nlri in routes.as_array().into_iter().flatten() {
                        let Some(net) = self.nlri_prefix(nlri) else {
                            continue;
                        };
                        match origin {
                            Some((origin, expires)) => {
                                self.learned.insert(net, (origin, expires, now_ms));
                                learned.push((net, origin, expires));
                            }
                            None => {
                                if self.learned.remove(&net).is_some() {
                                    withdrawn.push(net);
                                }
                                if echo {
                                    echoes.push(net);
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(withdraw) = update["withdraw"].as_object() {
            for family in families {
                for nlri in withdraw
                    .get(family)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    // Only what we learned: a withdrawal carries no
                    // attributes to say whose it was.
                    if let Some(net) = self.nlri_prefix(nlri)
                        && self.learned.remove(&net).is_some()
                    {
                        withdrawn.push(net);
                    }
                }
            }
        }
        Ok(
            if learned.is_empty() && withdrawn.is_empty() && echoes.is_empty() {
                Heard::Nothing
            } else {
                Heard::Routes {
                    learned,
                    withdrawn,
                    echoes,
                }
            },
        )
    }

    /// Everything learned, as `peer-block` requests (to replay to a control
    /// that restarted).
    pub fn learned_requests(&self) -> Vec<Value> {
        self.learned
            .iter()
            .map(|(net, &(origin, expires, heard))| peer_block(net, origin, expires, heard))
            .collect()
    }

    /// The sweep that is due at `now_ms`, as the Unix ms before which
    /// unannounced learned blocks are stale; the bridge forgets them too.
    pub fn due_sweep(&mut self, now_ms: u64) -> Option<u64> {
        let (due, since) = self.sweep?;
        if now_ms < due {
            return None;
        }
        self.sweep = None;
        self.learned.retain(|_, &mut (_, _, seen)| seen >= since);
        Some(since)
    }

    /// Local blocks announced now.
    pub fn announced(&self) -> usize {
        self.announced.len()
    }

    /// Blocks learned now.
    pub fn learned(&self) -> usize {
        self.learned.len()
    }
}

/// The fuzz target's entry point: one ExaBGP line through a bridge that
/// has announced and learned a little, then everything it would say.
pub fn fuzz_line(line: &str) {
    let mut b = Bridge::new(BridgeConfig {
        appliance_id: 7,
        asn: 65000,
        flowspec: true,
        rtbh: true,
        next_hop4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        next_hop6: Some(Ipv6Addr::LOCALHOST),
        communities: vec![(65535, 666)],
        learn: true,
        sweep_after: Duration::from_secs(1),
    });
    if let Ok(net) = parse_net("192.0.2.66") {
        b.sync(&[(net, 100)]);
    }
    let _ = b.hear(line, 1_000);
    let _ = b.learned_requests();
    let _ = b.announce_all();
    let _ = b.due_sweep(u64::MAX);
}

/// The `peer-block` request for a learned block, last heard at `heard_ms`
/// (Unix ms: what a later sweep compares with, even when the request is
/// replayed long after).
pub fn peer_block(net: &Net, origin: u32, expires: u32, heard_ms: u64) -> Value {
    json!({"command": "peer-block", "arguments": {
        "target": prefix_text(net), "origin": origin, "expires": expires, "heard_ms": heard_ms}})
}

/// The `peer-withdraw` request for a withdrawn one.
pub fn peer_withdraw(net: &Net) -> Value {
    json!({"command": "peer-withdraw", "arguments": {"target": prefix_text(net)}})
}

/// The `peer-sweep` request after a session came back at `since_ms` (Unix ms).
pub fn peer_sweep(since_ms: u64) -> Value {
    json!({"command": "peer-sweep", "arguments": {"before_ms": since_ms}})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn n(s: &str) -> Net {
        parse_net(s).unwrap()
    }

    fn config() -> BridgeConfig {
        BridgeConfig {
            appliance_id: 7,
            asn: 65000,
            flowspec: true,
            rtbh: false,
            next_hop4: Some(Ipv4Addr::new(192, 0, 2, 1)),
            next_hop6: None,
            communities: vec![(65535, 666), (65535, 65281)],
            learn: true,
            sweep_after: Duration::from_secs(60),
        }
    }

    // Lines ExaBGP 4.2.21 wrote to its API process in a lab with a BIRD
    // 2.0.12 route reflector (trimmed of the `exabgp`/`time`/`host` fields).
    const ANNOUNCE4: &str = r#"{ "type": "update", "neighbor": { "address": { "local": "10.66.2.2", "peer": "10.66.2.1" }, "asn": { "local": 65000, "peer": 65000 } , "direction": "receive", "message": { "update": { "attribute": { "origin": "igp", "local-preference": 100, "community": [ [ 65535, 666 ] ], "originator-id": "10.66.1.2", "cluster-list": [ "10.66.1.1" ], "extended-community": [ { "value": 9225060886715039744, "string": "rate-limit:0" } ], "large-community": [ [ 65000, 9 , 1790000000 ] ] }, "announce": { "ipv4 flow": { "no-nexthop": [ { "source-ipv4": [ "192.0.2.66/32" ], "string": "flow source-ipv4 192.0.2.66/32" } ] } } } } } }"#;
    const ANNOUNCE6: &str = r#"{ "type": "update", "neighbor": { "address": { "local": "10.66.2.2", "peer": "10.66.2.1" }, "asn": { "local": 65000, "peer": 65000 } , "direction": "receive", "message": { "update": { "attribute": { "origin": "igp", "local-preference": 100, "originator-id": "10.66.1.2", "cluster-list": [ "10.66.1.1" ], "extended-community": [ { "value": 9225060886715039744, "string": "rate-limit:0" } ], "large-community": [ [ 65000, 9 , 0 ] ] }, "announce": { "ipv6 flow": { "no-nexthop": [ { "source-ipv6": [ "2001:db8::/64/0" ], "string": "flow source-ipv6 2001:db8::/64/0" } ] } } } } } }"#;
    const WITHDRAW4: &str = r#"{ "type": "update", "neighbor": { "address": { "local": "10.66.2.2", "peer": "10.66.2.1" }, "asn": { "local": 65000, "peer": 65000 } , "direction": "receive", "message": { "update": { "withdraw": { "ipv4 flow": [ { "source-ipv4": [ "192.0.2.66/32" ], "string": "flow source-ipv4 192.0.2.66/32" } ] } } } } }"#;
    const RTBH4: &str = r#"{ "type": "update", "neighbor": { "address": { "local": "10.66.2.2", "peer": "10.66.2.1" }, "asn": { "local": 65000, "peer": 65000 } , "direction": "receive", "message": { "update": { "attribute": { "origin": "igp", "local-preference": 100, "community": [ [ 65535, 666 ] ], "originator-id": "10.66.1.2", "cluster-list": [ "10.66.1.1" ], "large-community": [ [ 65000, 9 , 1790000000 ] ] }, "announce": { "ipv4 unicast": { "10.66.1.2": [ { "nlri": "192.0.2.66/32" } ] } } } } } }"#;
    const EOR: &str = r#"{ "type": "update", "neighbor": { "address": { "local": "10.66.2.2", "peer": "10.66.2.1" }, "asn": { "local": 65000, "peer": 65000 } , "direction": "receive", "message": { "eor": { "afi" : "ipv4", "safi" : "flow" } } } }"#;
    const UP: &str = r#"{ "type": "state", "neighbor": { "address": { "local": "10.66.2.2", "peer": "10.66.2.1" }, "asn": { "local": 65000, "peer": 65000 } , "state": "up" } }"#;
    const DOWN: &str = r#"{ "type": "state", "neighbor": { "address": { "local": "10.66.2.2", "peer": "10.66.2.1" }, "asn": { "local": 65000, "peer": 65000 } , "state": "down", "reason": "peer reset, message (closing connection) error(Broken TCP connection)" } }"#;

    #[test]
    fn local_blocks_become_flowspec_and_rtbh_announcements() {
        let mut c = config();
        c.rtbh = true;
        let b = Bridge::new(c);
        assert_eq!(
            b.announce(&n("192.0.2.66"), 1_790_000_000),
            [
                "announce flow route { match { source 192.0.2.66/32; } then { discard; large-community [65000:7:1790000000]; } }",
                "announce route 192.0.2.66/32 next-hop 192.0.2.1 community [65535:666 65535:65281] large-community [65000:7:1790000000]",
            ]
        );
        assert_eq!(
            b.withdraw(&n("192.0.2.66")),
            [
                "withdraw flow route { match { source 192.0.2.66/32; } }",
                "withdraw route 192.0.2.66/32 next-hop 192.0.2.1",
            ]
        );
        // No IPv6 next hop: FlowSpec only.
        assert_eq!(
            b.announce(&n("2001:db8::/64"), 0),
            [
                "announce flow route { match { source 2001:db8::/64; } then { discard; large-community [65000:7:0]; } }"
            ]
        );
    }

    #[test]
    fn sync_and_events_announce_only_what_changed_and_only_local_blocks() {
        let mut b = Bridge::new(config());
        let v = b.sync(&[(n("192.0.2.66"), 100), (n("198.51.100.0/24"), 0)]);
        assert_eq!(v.len(), 2);
        assert!(
            b.sync(&[(n("192.0.2.66"), 100), (n("198.51.100.0/24"), 0)])
                .is_empty()
        );
        let v = b.sync(&[(n("192.0.2.66"), 200)]);
        assert_eq!(
            v,
            [
                "withdraw flow route { match { source 198.51.100.0/24; } }",
                "announce flow route { match { source 192.0.2.66/32; } then { discard; large-community [65000:7:200]; } }",
            ]
        );
        let block = |origin: &str, exp: u32| json!({"event_type": "block", "baitwall": {"prefix": "203.0.113.9/32", "origin": origin, "expires_unix": exp}});
        assert_eq!(
            b.on_event(&block("peer:9", 50)),
            (vec![], vec![]),
            "learned blocks are never announced"
        );
        assert_eq!(b.on_event(&block("local", 50)).0.len(), 1);
        assert_eq!(b.on_event(&block("local", 50)), (vec![], vec![]));
        let unblock = json!({"event_type": "unblock", "baitwall": {"prefix": "203.0.113.9/32", "origin": "local"}});
        assert_eq!(
            b.on_event(&unblock).0,
            ["withdraw flow route { match { source 203.0.113.9/32; } }"]
        );
        assert_eq!(b.on_event(&unblock), (vec![], vec![]));
        assert_eq!(b.announced(), 1);
        assert_eq!(b.announce_all().len(), 1);
    }

    #[test]
    fn routes_from_other_appliances_are_learned_and_withdrawn() {
        let mut b = Bridge::new(config());
        assert_eq!(
            b.hear(ANNOUNCE4, 10).unwrap(),
            learn(vec![(n("192.0.2.66"), 9, 1_790_000_000)])
        );
        assert_eq!(
            b.hear(ANNOUNCE6, 10).unwrap(),
            learn(vec![(n("2001:db8::/64"), 9, 0)])
        );
        assert_eq!(b.hear(EOR, 10).unwrap(), Heard::Nothing);
        assert_eq!(b.learned(), 2);
        assert_eq!(
            b.hear(WITHDRAW4, 11).unwrap(),
            Heard::Routes {
                learned: vec![],
                withdrawn: vec![n("192.0.2.66")],
                echoes: vec![],
            }
        );
        assert_eq!(
            b.hear(WITHDRAW4, 11).unwrap(),
            Heard::Nothing,
            "only what we learned"
        );
        assert_eq!(
            b.learned_requests(),
            vec![peer_block(&n("2001:db8::/64"), 9, 0, 10)]
        );
        // RTBH routes are learned only when FlowSpec is off.
        assert_eq!(b.hear(RTBH4, 12).unwrap(), Heard::Nothing);
        let mut c = config();
        c.flowspec = false;
        c.rtbh = true;
        let mut r = Bridge::new(c);
        assert_eq!(
            r.hear(RTBH4, 12).unwrap(),
            learn(vec![(n("192.0.2.66"), 9, 1_790_000_000)])
        );
    }

    fn learn(learned: Vec<(Net, u32, u32)>) -> Heard {
        Heard::Routes {
            learned,
            withdrawn: vec![],
            echoes: vec![],
        }
    }

    #[test]
    fn one_update_can_announce_and_withdraw() {
        // ExaBGP writes both when a BGP UPDATE carries both.
        let mut b = Bridge::new(config());
        b.hear(ANNOUNCE6, 10).unwrap();
        let both = ANNOUNCE4.replace(
            r#"} } } } } }"#,
            r#"} }, "withdraw": { "ipv6 flow": [ { "source-ipv6": [ "2001:db8::/64/0" ], "string": "flow source-ipv6 2001:db8::/64/0" } ] } } } } }"#,
        );
        assert_eq!(
            b.hear(&both, 11).unwrap(),
            Heard::Routes {
                learned: vec![(n("192.0.2.66"), 9, 1_790_000_000)],
                withdrawn: vec![n("2001:db8::/64")],
                echoes: vec![],
            }
        );
        assert_eq!(b.learned(), 1);
    }

    #[test]
    fn a_learned_block_replaced_by_an_echo_is_withdrawn_and_a_local_unblock_relearns() {
        let mut b = Bridge::new(config());
        b.hear(ANNOUNCE4, 10).unwrap();
        // Our own block now wins at the reflector: the learned one is gone.
        let own = ANNOUNCE4.replace("[ 65000, 9 ,", "[ 65000, 7 ,");
        assert_eq!(
            b.hear(&own, 11).unwrap(),
            Heard::Routes {
                learned: vec![],
                withdrawn: vec![n("192.0.2.66")],
                echoes: vec![n("192.0.2.66")],
            }
        );
        // A local block ends while another appliance announces the prefix:
        // control gets the learned one again.
        b.hear(ANNOUNCE4, 12).unwrap();
        let unblock = json!({"event_type": "unblock", "baitwall": {"prefix": "192.0.2.66/32", "origin": "local"}});
        assert_eq!(
            b.on_event(&unblock).1,
            vec![peer_block(&n("192.0.2.66"), 9, 1_790_000_000, 12)]
        );
    }

    #[test]
    fn echoes_strangers_and_noise_are_nothing() {
        let mut b = Bridge::new(config());
        let own = ANNOUNCE4.replace("[ 65000, 9 ,", "[ 65000, 7 ,");
        assert_eq!(
            b.hear(&own, 1).unwrap(),
            Heard::Routes {
                learned: vec![],
                withdrawn: vec![],
                echoes: vec![n("192.0.2.66")],
            },
            "our own block, echoed: nothing to learn"
        );
        let other_as = ANNOUNCE4.replace("[ 65000, 9 ,", "[ 64512, 9 ,");
        assert_eq!(b.hear(&other_as, 1).unwrap(), Heard::Nothing);
        let no_lc = ANNOUNCE4.replace(r#", "large-community": [ [ 65000, 9 , 1790000000 ] ]"#, "");
        assert_eq!(b.hear(&no_lc, 1).unwrap(), Heard::Nothing);
        let with_port = ANNOUNCE4.replace(
            r#""source-ipv4": [ "192.0.2.66/32" ],"#,
            r#""source-ipv4": [ "192.0.2.66/32" ], "destination-port": [ "=80" ],"#,
        );
        assert_eq!(
            b.hear(&with_port, 1).unwrap(),
            Heard::Nothing,
            "not a plain source block"
        );
        assert_eq!(b.hear("done", 1).unwrap(), Heard::Ack(true));
        assert_eq!(b.hear("error", 1).unwrap(), Heard::Ack(false));
        assert!(b.hear("{not json", 1).is_err());
        assert_eq!(
            b.hear(r#"{"type": "notification"}"#, 1).unwrap(),
            Heard::Nothing
        );
        let mut off = config();
        off.learn = false;
        assert_eq!(Bridge::new(off).hear(ANNOUNCE4, 1).unwrap(), Heard::Nothing);
    }

    #[test]
    fn a_session_coming_back_sweeps_what_was_not_announced_again() {
        let mut b = Bridge::new(config());
        b.hear(ANNOUNCE4, 10).unwrap();
        b.hear(ANNOUNCE6, 10).unwrap();
        assert_eq!(b.hear(DOWN, 20).unwrap(), Heard::Down);
        assert_eq!(b.hear(UP, 30).unwrap(), Heard::Up);
        b.hear(ANNOUNCE6, 31).unwrap();
        assert_eq!(b.due_sweep(60_029), None);
        assert_eq!(b.due_sweep(60_030), Some(30));
        assert_eq!(b.due_sweep(60_031), None, "once");
        assert_eq!(b.learned(), 1, "the IPv4 block was not announced again");
        assert_eq!(
            peer_sweep(30),
            json!({"command": "peer-sweep", "arguments": {"before_ms": 30}})
        );
    }

    #[test]
    fn the_fuzz_seed_corpus_runs() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/exabgp_line");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            fuzz_line(&std::fs::read_to_string(e.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 8);
    }

    proptest::proptest! {
        /// Whatever ExaBGP writes, the bridge answers without panicking.
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,300}") {
            let _ = Bridge::new(config()).hear(&line, 1);
        }
    }
}
