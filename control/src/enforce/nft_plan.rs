//! What the nftables sets should hold, what they hold, and the batch that
//! makes one into the other; no I/O (the runner in [`super::nft`] runs
//! `nft`).
//!
//! The sets have `flags interval, timeout`, so a block becomes one element
//! whose value is its address or prefix (a CIDR element really matches the
//! range) and whose timeout is the block's remaining time; a permanent
//! block has no timeout. With host sets configured, single addresses go to
//! those instead: hash sets (`flags timeout`), which nft changes without
//! first rereading the whole set, as it must for an interval set (a change
//! to 247k hosts: 84 ms in a hash set, 10 s in an interval set; see
//! docs/performance.md). Three facts of nftables (checked with nft 1.0.6,
//! docs/enforcement.md) shape the plan:
//! - an element's timeout cannot be changed in place, so an extended block
//!   is refreshed by a delete and an add in one batch (atomic);
//! - an element inside an existing interval is refused ("interval
//!   overlaps"), so a block covered by a broader block is left out while
//!   the broader one holds, and comes back when it goes;
//! - deleting a missing element fails the whole batch (nft 1.0.6 has no
//!   `destroy`), and the kernel removes timed-out elements by itself at any
//!   moment, so every delete is preceded by an add of the same value in
//!   the same batch: present or not before, the element is absent after,
//!   and the batch cannot fail on a race with a timeout. Any failure still
//!   makes the next run a full reconcile (list, then diff).
//!
//! JSON is written with serde_json: the shapes are few, and the `nftables`
//! crate's helper runs one fixed program, while we need an argv prefix
//! (`ip netns exec`, `ssh`) and a timeout on a stalled firewall.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::policy::{Net, covers};

/// Where the sets are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sets {
    /// Table family (`inet`, ...).
    pub family: String,
    /// Table name.
    pub table: String,
    /// The IPv4 set.
    pub set4: String,
    /// The IPv6 set.
    pub set6: String,
    /// The IPv4 host set (`""`: none; single addresses go to `set4`).
    pub hosts4: String,
    /// The IPv6 host set (`""`: none).
    pub hosts6: String,
    /// The allowlist's IPv4 set (`""`: none): sources the drop chain lets
    /// through before it drops.
    pub allow4: String,
    /// The allowlist's IPv6 set (`""`: none).
    pub allow6: String,
}

/// How many sets a plan can address: IPv4, IPv6, then their host sets.
pub const SETS: usize = 4;

/// The index of the IPv4 host set (the IPv6 one follows it).
const HOSTS: usize = 2;

impl Sets {
    /// The block sets' names by index (`""`: not configured).
    pub fn names(&self) -> [&str; SETS] {
        [&self.set4, &self.set6, &self.hosts4, &self.hosts6]
    }

    /// The allow sets as a pair of sets of their own (for a second
    /// [`Planner`], whose entries never time out), when configured.
    pub fn allow_sets(&self) -> Option<Sets> {
        (!self.allow4.is_empty() && !self.allow6.is_empty()).then(|| Sets {
            family: self.family.clone(),
            table: self.table.clone(),
            set4: self.allow4.clone(),
            set6: self.allow6.clone(),
            hosts4: String::new(),
            hosts6: String::new(),
            allow4: String::new(),
            allow6: String::new(),
        })
    }
}

/// True when `net/len` is an IPv4 prefix (IPv4-mapped, /96 or longer).
pub fn is_v4(net: &Net) -> bool {
    net.1 >= 96 && net.0[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}

/// An element's value: a bare address for a host, else `{"prefix": ...}`.
pub fn value(net: &Net) -> Value {
    let (addr, len, host) = if is_v4(net) {
        let a = std::net::Ipv4Addr::new(net.0[12], net.0[13], net.0[14], net.0[15]);
        (a.to_string(), net.1 - 96, net.1 == 128)
    } else {
        (
            std::net::Ipv6Addr::from(net.0).to_string(),
            net.1,
            net.1 == 128,
        )
    };
    if host {
        json!(addr)
    } else {
        json!({"prefix": {"addr": addr, "len": len}})
    }
}

/// Reads an element's value back (`"1.2.3.4"` or `{"prefix": ...}`).
pub fn parse_value(v: &Value) -> Option<Net> {
    let (addr, len) = match v {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => {
            let p = o.get("prefix")?;
            (p.get("addr")?.as_str()?, Some(p.get("len")?.as_u64()?))
        }
        _ => return None,
    };
    match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            (len <= 32).then(|| (a.to_ipv6_mapped().octets(), 96 + len as u8))
        }
        std::net::IpAddr::V6(a) => {
            let len = len.unwrap_or(128);
            (len <= 128).then(|| (a.octets(), len as u8))
        }
    }
}

/// One element listed in a set: its value (raw, to delete it with even
/// when it is not ours to parse), what it is, and its seconds left.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    /// The value as nft wrote it.
    pub raw: Value,
    /// The prefix, when it is one.
    pub net: Option<Net>,
    /// Seconds until it times out; `None`: permanent.
    pub expires_in: Option<u64>,
}

/// Reads the elements out of `nft -j list set` output.
pub fn parse_listing(text: &str) -> Result<Vec<Listed>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("nft printed no JSON: {e}"))?;
    let items = doc["nftables"]
        .as_array()
        .ok_or("nft's JSON has no \"nftables\" array")?;
    let set = items
        .iter()
        .find_map(|i| i.get("set"))
        .ok_or("nft listed no set")?;
    let Some(elems) = set.get("elem") else {
        return Ok(Vec::new());
    };
    let elems = elems
        .as_array()
        .ok_or("the set's \"elem\" is not an array")?;
    Ok(elems
        .iter()
        .map(|e| match e.get("elem") {
            Some(inner) => Listed {
                raw: inner["val"].clone(),
                net: parse_value(&inner["val"]),
                expires_in: inner
                    .get("expires")
                    .or_else(|| inner.get("timeout"))
                    .and_then(Value::as_u64),
            },
            None => Listed {
                raw: e.clone(),
                net: parse_value(e),
                expires_in: None,
            },
        })
        .collect())
}

/// The fuzz target's entry point: a listing read and reconciled against a
/// few blocks.
pub fn fuzz_listing(text: &str) {
    let Ok(listed) = parse_listing(text) else {
        return;
    };
    for split in [false, true] {
        let mut p = Planner::new(split);
        for (i, e) in listed.iter().enumerate().take(64) {
            if let Some(net) = e.net {
                p.set(net, if i % 2 == 0 { 0 } else { 2_000 });
            }
        }
        let b = p.reconcile([&listed, &listed, &listed, &listed], 990, 1_000);
        let _ = b.commands(&Sets {
            family: "inet".into(),
            table: "t".into(),
            set4: "a".into(),
            set6: "b".into(),
            hosts4: if split { "c".into() } else { String::new() },
            hosts6: if split { "d".into() } else { String::new() },
            allow4: String::new(),
            allow6: String::new(),
        });
        let _ = p.plan_changes(1_000);
    }
}

/// The commands that create the table, the sets and (optionally) a chain
/// dropping their sources, after letting the allow sets' sources through.
/// `add` is idempotent; the chain is flushed and its rules (one per set)
/// added again, so running this twice leaves one copy.
pub fn create(sets: &Sets, chain: Option<(&str, &str, i32)>) -> Vec<Value> {
    let (f, t) = (&sets.family, &sets.table);
    let mut v = vec![json!({"add": {"table": {"family": f, "name": t}}})];
    let mut allowed = Vec::new();
    for (i, name) in [&sets.allow4, &sets.allow6].into_iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        let (kind, proto) = if i == 0 {
            ("ipv4_addr", "ip")
        } else {
            ("ipv6_addr", "ip6")
        };
        v.push(
            json!({"add": {"set": {"family": f, "table": t, "name": name,
            "type": kind, "flags": ["interval"]}}}),
        );
        allowed.push((proto, name));
    }
    let mut matched = Vec::new();
    for (i, name) in sets.names().into_iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        let (kind, proto) = if i % 2 == 0 {
            ("ipv4_addr", "ip")
        } else {
            ("ipv6_addr", "ip6")
        };
        let flags = if i < HOSTS {
            json!(["interval", "timeout"])
        } else {
            json!(["timeout"])
        };
        v.push(
            json!({"add": {"set": {"family": f, "table": t, "name": name,
            "type": kind, "flags": flags}}}),
        );
        matched.push((proto, name));
    }
    if let Some((name, hook, prio)) = chain {
        v.push(
            json!({"add": {"chain": {"family": f, "table": t, "name": name,
            "type": "filter", "hook": hook, "prio": prio, "policy": "accept"}}}),
        );
        v.push(json!({"flush": {"chain": {"family": f, "table": t, "name": name}}}));
        // `return` from a base chain applies its policy (accept): an
        // allowed source skips the drops below, and the rest of the
        // firewall still sees it.
        // `SOURCE in @set`, then the statements.
        let rule = |proto: &str, set: &str, then: &[Value]| {
            let mut expr = vec![json!({"match": {"op": "==",
                "left": {"payload": {"protocol": proto, "field": "saddr"}},
                "right": format!("@{set}")}})];
            expr.extend_from_slice(then);
            json!({"add": {"rule": {"family": f, "table": t, "chain": name, "expr": expr}}})
        };
        for (proto, set) in allowed {
            v.push(rule(proto, set, &[json!({"return": null})]));
        }
        for (proto, set) in matched {
            v.push(rule(
                proto,
                set,
                &[json!({"counter": null}), json!({"drop": null})],
            ));
        }
    }
    v
}

/// A batch of changes to the sets, per set (v4, v6, v4 hosts, v6 hosts; see
/// [`Sets::names`]). Removals run first
/// (a broader prefix can only go in once what it covers is out), then
/// refreshes, then additions; a refresh's removal and addition always run
/// in the same transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Values to take out.
    pub remove: [Vec<Value>; SETS],
    /// Refreshes: the value to take out and the element to put back.
    pub refresh: [Vec<(Value, Value)>; SETS],
    /// Elements to add.
    pub add: [Vec<Value>; SETS],
}

impl Batch {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements changed.
    pub fn len(&self) -> usize {
        (0..SETS)
            .map(|i| self.remove[i].len() + self.refresh[i].len() + self.add[i].len())
            .sum()
    }

    /// The nft JSON commands, in order. A value taken out is first added
    /// (a no-op when present) and then deleted: the delete cannot fail on
    /// an element the kernel timed out meanwhile.
    pub fn commands(&self, sets: &Sets) -> Vec<Value> {
        let mut v = Vec::new();
        let names = sets.names();
        let mut push = |verb: &str, set: usize, elems: Vec<Value>| {
            // A planner only fills a host set's slot when it has one.
            if !elems.is_empty() && !names[set].is_empty() {
                v.push(json!({verb: {"element": {"family": sets.family,
                    "table": sets.table, "name": names[set], "elem": elems}}}));
            }
        };
        for set in 0..SETS {
            let out: Vec<Value> = self.remove[set]
                .iter()
                .chain(self.refresh[set].iter().map(|(old, _)| old))
                .cloned()
                .collect();
            push("add", set, out.clone());
            push("delete", set, out);
        }
        for set in 0..SETS {
            let back = self.refresh[set].iter().map(|(_, new)| new);
            push("add", set, back.chain(&self.add[set]).cloned().collect());
        }
        v
    }

    /// The batch in runs of at most `max` elements: additions to the host
    /// sets, then every removal, every refresh, and the other additions;
    /// each refresh whole in one run. A hash set refuses no overlap, so its
    /// additions can go first, and an address moving into its host set
    /// (host sets turned on) is never in neither set between two runs.
    pub fn chunks(&self, max: usize) -> Vec<Batch> {
        let max = max.max(1);
        if self.len() <= max {
            return vec![self.clone()];
        }
        let mut out = Vec::new();
        for set in HOSTS..SETS {
            runs(&mut out, &self.add[set], max, |b, part| b.add[set] = part);
        }
        for set in 0..SETS {
            runs(&mut out, &self.remove[set], max, |b, part| {
                b.remove[set] = part
            });
        }
        for set in 0..SETS {
            runs(&mut out, &self.refresh[set], max, |b, part| {
                b.refresh[set] = part
            });
        }
        for set in 0..HOSTS {
            runs(&mut out, &self.add[set], max, |b, part| b.add[set] = part);
        }
        out
    }
}

/// Appends to `out` one batch per run of at most `max` of `elems`, each
/// holding its run where `put` places it.
fn runs<T: Clone>(out: &mut Vec<Batch>, elems: &[T], max: usize, put: impl Fn(&mut Batch, Vec<T>)) {
    for part in elems.chunks(max) {
        let mut b = Batch::default();
        put(&mut b, part.to_vec());
        out.push(b);
    }
}

/// An element that is or should be in a set: its absolute expiry (Unix
/// seconds; 0: permanent).
type Expiry = u32;

/// A reconcile refreshes a listed element whose expiry is further than this
/// from its block's, beyond the time the listing took (timeouts are whole
/// seconds, and each element's time left is read at a different moment).
const EXPIRY_SLACK: u64 = 5;

/// The desired and installed state of the sets.
#[derive(Debug)]
pub struct Planner {
    /// Blocks in force: prefix to expiry.
    desired: BTreeMap<Net, Expiry>,
    /// How many desired prefixes of each length (to find covering ones).
    lengths: [u32; 129],
    /// What the sets hold, as far as we know; `None`: unknown (a reconcile lists them).
    installed: Option<HashMap<Net, Expiry>>,
    /// Prefixes whose element may need a change.
    dirty: Vec<Net>,
    /// Single addresses go to the host sets.
    split_hosts: bool,
}

impl Default for Planner {
    fn default() -> Self {
        Planner {
            desired: BTreeMap::new(),
            lengths: [0; 129],
            installed: None,
            dirty: Vec::new(),
            split_hosts: false,
        }
    }
}

impl Planner {
    /// An empty plan whose installed state is unknown; with `split_hosts`,
    /// single addresses go to the host sets (`hosts4`, `hosts6` of [`Sets`]).
    pub fn new(split_hosts: bool) -> Planner {
        Planner {
            split_hosts,
            ..Planner::default()
        }
    }

    /// The set (an index into [`Sets::names`]) whose element `net` is.
    fn slot(&self, net: &Net) -> usize {
        let family = usize::from(!is_v4(net));
        if self.split_hosts && net.1 == 128 {
            HOSTS + family
        } else {
            family
        }
    }

    /// A block is in force until `expires`.
    pub fn set(&mut self, net: Net, expires: Expiry) {
        if self.desired.insert(net, expires).is_none() {
            self.lengths[usize::from(net.1.min(128))] += 1;
        }
        self.dirty.push(net);
    }

    /// A block ended.
    pub fn remove(&mut self, net: Net) {
        if self.desired.remove(&net).is_some() {
            let n = &mut self.lengths[usize::from(net.1.min(128))];
            *n = n.saturating_sub(1);
        }
        self.dirty.push(net);
    }

    /// Blocks in force.
    pub fn desired_len(&self) -> usize {
        self.desired.len()
    }

    /// Elements installed, when known.
    pub fn installed_len(&self) -> Option<usize> {
        self.installed.as_ref().map(HashMap::len)
    }

    /// True when the installed state is known (no reconcile is needed).
    pub fn knows_installed(&self) -> bool {
        self.installed.is_some()
    }

    /// True when some element may need a change.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The sets may not hold what we think (a batch failed).
    pub fn forget_installed(&mut self) {
        self.installed = None;
    }

    /// The broader block covering `net`, if one is in force.
    fn covered(&self, net: &Net) -> bool {
        (0..net.1).any(|len| {
            if self.lengths[usize::from(len)] == 0 {
                return false;
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            let masked = (u128::from_be_bytes(net.0) & mask).to_be_bytes();
            // IPv4 and IPv6 live in different sets: an IPv6 prefix shorter
            // than /96 never covers an IPv4 one there.
            is_v4(&(masked, len)) == is_v4(net) && self.desired.contains_key(&(masked, len))
        })
    }

    /// What the element for `net` should be at `now_s`: its expiry, or
    /// `None` when it should not be in the set.
    fn wanted(&self, net: &Net, now_s: u32) -> Option<Expiry> {
        let &expires = self.desired.get(net)?;
        let live = expires == 0 || expires > now_s;
        // Only an interval set refuses an element inside another.
        let held_back = self.slot(net) < HOSTS && self.covered(net);
        (live && !held_back).then_some(expires)
    }

    /// Plans one prefix into `batch` and records the result as installed.
    fn plan_one(
        &self,
        net: &Net,
        now_s: u32,
        have: Option<Expiry>,
        batch: &mut Batch,
    ) -> Option<Expiry> {
        let want = self.wanted(net, now_s);
        let set = self.slot(net);
        match (want, have) {
            (None, None) => None,
            (Some(w), None) => {
                batch.add[set].push(element(net, w, now_s));
                Some(w)
            }
            (None, Some(_)) => {
                batch.remove[set].push(value(net));
                None
            }
            (Some(w), Some(h)) if w == h => Some(h),
            (Some(w), Some(_)) => {
                // A timeout cannot be changed in place: out and back in.
                batch.refresh[set].push((value(net), element(net, w, now_s)));
                Some(w)
            }
        }
    }

    /// The batch for the prefixes changed since the last plan (and the
    /// ones a changed broader prefix covers); `None` when the installed
    /// state is unknown (call [`Planner::reconcile`]). The installed state
    /// is updated as if the batch succeeds; if it fails, call
    /// [`Planner::forget_installed`].
    pub fn plan_changes(&mut self, now_s: u32) -> Option<Batch> {
        let mut installed = self.installed.take()?;
        let mut work: Vec<Net> = std::mem::take(&mut self.dirty);
        // A prefix that came or went changes what it covers (one level is
        // enough: what a covered prefix covers, the changed one covers too).
        // Installed elements are all desired, or dirty themselves: a
        // removal marks its prefix dirty.
        let changed = work.len();
        for i in 0..changed {
            let net = work[i];
            if net.1 < 128 {
                let last =
                    (u128::from_be_bytes(net.0) | (u128::MAX >> net.1.min(127))).to_be_bytes();
                work.extend(
                    self.desired
                        .range((net.0, net.1 + 1)..=(last, 128))
                        .map(|(k, _)| *k)
                        .filter(|k| k.1 > net.1 && covers(&net, &k.0)),
                );
            }
        }
        work.sort_unstable();
        work.dedup();
        let mut batch = Batch::default();
        for net in &work {
            let have = installed.get(net).copied();
            match self.plan_one(net, now_s, have, &mut batch) {
                Some(e) => {
                    installed.insert(*net, e);
                }
                None => {
                    installed.remove(net);
                }
            }
        }
        self.installed = Some(installed);
        Some(batch)
    }

    /// The batch that makes the listed sets (in [`Sets::names`]' order; an
    /// empty listing for a set not configured) equal to the blocks;
    /// afterwards the installed state is known (as if the batch succeeds).
    /// The listing started at `listed_at` and the plan is made at `now_s`
    /// (Unix seconds): each element's time left was read somewhere between.
    pub fn reconcile(&mut self, listed: [&[Listed]; SETS], listed_at: u32, now_s: u32) -> Batch {
        self.dirty.clear();
        let slack = EXPIRY_SLACK + u64::from(now_s.saturating_sub(listed_at));
        let mut batch = Batch::default();
        let mut installed = HashMap::new();
        for (set, elems) in listed.iter().enumerate() {
            for e in elems.iter() {
                let ours = e.net.filter(|n| self.slot(n) == set);
                let Some(net) = ours else {
                    // Not a prefix of this set's kind: not ours (or a host
                    // from before host sets were configured), out it goes.
                    batch.remove[set].push(e.raw.clone());
                    continue;
                };
                match self.wanted(&net, now_s) {
                    None => batch.remove[set].push(e.raw.clone()),
                    Some(w) => {
                        // Absolute expiries: the listed one as of the
                        // listing's start (early by at most its duration).
                        let listed_until = e.expires_in.map(|left| u64::from(listed_at) + left);
                        let close = match ((w != 0).then_some(u64::from(w)), listed_until) {
                            (None, None) => true,
                            (Some(a), Some(b)) => a.abs_diff(b) <= slack,
                            _ => false,
                        };
                        if !close {
                            batch.refresh[set].push((e.raw.clone(), element(&net, w, now_s)));
                        }
                        installed.insert(net, w);
                    }
                }
            }
        }
        for (net, _) in self.desired.iter() {
            if installed.contains_key(net) {
                continue;
            }
            if let Some(w) = self.wanted(net, now_s) {
                batch.add[self.slot(net)].push(element(net, w, now_s));
                installed.insert(*net, w);
            }
        }
        self.installed = Some(installed);
        batch
    }
}

/// An element to add: the value, with the remaining time as its timeout
/// unless the block is permanent.
fn element(net: &Net, expires: Expiry, now_s: u32) -> Value {
    if expires == 0 {
        value(net)
    } else {
        json!({"elem": {"val": value(net), "timeout": expires.saturating_sub(now_s).max(1)}})
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::policy::parse_net;

    fn n(s: &str) -> Net {
        parse_net(s).unwrap()
    }

    fn sets() -> Sets {
        Sets {
            family: "inet".into(),
            table: "baitwall".into(),
            set4: "blocked4".into(),
            set6: "blocked6".into(),
            hosts4: String::new(),
            hosts6: String::new(),
            allow4: String::new(),
            allow6: String::new(),
        }
    }

    fn split_sets() -> Sets {
        Sets {
            hosts4: "hosts4".into(),
            hosts6: "hosts6".into(),
            ..sets()
        }
    }

    #[test]
    fn values_are_addresses_or_prefixes_and_read_back() {
        for (text, want) in [
            ("192.0.2.66", json!("192.0.2.66")),
            (
                "10.1.0.0/16",
                json!({"prefix": {"addr": "10.1.0.0", "len": 16}}),
            ),
            (
                "2001:db8::/64",
                json!({"prefix": {"addr": "2001:db8::", "len": 64}}),
            ),
            ("2001:db8::1", json!("2001:db8::1")),
        ] {
            assert_eq!(value(&n(text)), want, "{text}");
            assert_eq!(parse_value(&want), Some(n(text)));
        }
        assert!(is_v4(&n("10.0.0.0/8")) && !is_v4(&n("2001:db8::/32")));
        assert_eq!(
            parse_value(&json!({"range": ["10.0.0.1", "10.0.0.9"]})),
            None
        );
    }

    /// `nft -j list set inet baitwall blocked4` from nft 1.0.6.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "blocked4", "table": "baitwall", "type": "ipv4_addr", "handle": 2, "flags": ["interval", "timeout"], "elem": [{"elem": {"val": "192.0.2.66", "timeout": 3600, "expires": 3597}}, {"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 16}}, "timeout": 600, "expires": 590}}, "198.51.100.7", {"range": ["203.0.113.1", "203.0.113.9"]}]}}]}"#;

    #[test]
    fn a_listing_reads_into_elements() {
        let l = parse_listing(LISTING).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].net, Some(n("192.0.2.66")));
        assert_eq!(l[0].expires_in, Some(3597));
        assert_eq!(l[1].net, Some(n("10.1.0.0/16")));
        assert_eq!(l[2].expires_in, None, "no timeout: permanent");
        assert_eq!(l[3].net, None);
        let empty = r#"{"nftables": [{"metainfo": {}}, {"set": {"family": "inet", "name": "blocked4", "table": "baitwall", "type": "ipv4_addr", "handle": 2, "flags": ["interval", "timeout"]}}]}"#;
        assert_eq!(parse_listing(empty).unwrap(), vec![]);
        assert!(parse_listing("Error: No such file").is_err());
        assert!(parse_listing(r#"{"nftables": []}"#).is_err());
    }

    #[test]
    fn reconcile_adds_refreshes_and_removes_what_differs() {
        let mut p = Planner::new(false);
        let now = 1_000_000;
        p.set(n("192.0.2.66"), now + 3597); // as listed: kept
        p.set(n("10.1.0.0/16"), now + 7200); // extended: refreshed
        p.set(n("2001:db8::/64"), 0); // missing: added
        let listed = parse_listing(LISTING).unwrap();
        let b = p.reconcile([&listed, &[], &[], &[]], now, now);
        assert_eq!(
            b.remove[0],
            vec![
                json!("198.51.100.7"),
                json!({"range": ["203.0.113.1", "203.0.113.9"]}),
            ]
        );
        assert_eq!(
            b.refresh[0],
            vec![(
                json!({"prefix": {"addr": "10.1.0.0", "len": 16}}),
                json!({"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 16}}, "timeout": 7200}})
            )]
        );
        assert_eq!(
            b.add[1],
            vec![json!({"prefix": {"addr": "2001:db8::", "len": 64}})]
        );
        assert_eq!(p.installed_len(), Some(3));
        // Out (add then delete, so a timed-out element cannot fail the
        // batch), then back in and the new ones.
        let cmds = b.commands(&sets());
        let verbs: Vec<&str> = cmds
            .iter()
            .map(|c| c.as_object().unwrap().keys().next().unwrap().as_str())
            .collect();
        assert_eq!(verbs, ["add", "delete", "add", "add"]);
        assert_eq!(
            cmds[0]["add"]["element"]["elem"],
            cmds[1]["delete"]["element"]["elem"]
        );
        assert_eq!(
            cmds[1]["delete"]["element"]["elem"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(cmds[3]["add"]["element"]["name"], "blocked6");
    }

    #[test]
    fn a_slow_listing_does_not_refresh_every_element() {
        // Listed 20 s before the plan: the element's time left was read
        // early, and it is the block's all the same.
        let mut p = Planner::new(false);
        let listed_at = 1_000_000;
        p.set(n("192.0.2.66"), listed_at + 3600);
        let listed = [Listed {
            raw: json!("192.0.2.66"),
            net: Some(n("192.0.2.66")),
            expires_in: Some(3590),
        }];
        assert!(
            p.reconcile([&listed, &[], &[], &[]], listed_at, listed_at + 20)
                .is_empty()
        );
        // Far off: refreshed.
        p.set(n("192.0.2.66"), listed_at + 7200);
        assert_eq!(
            p.reconcile([&listed, &[], &[], &[]], listed_at, listed_at + 20)
                .refresh[0]
                .len(),
            1
        );
    }

    #[test]
    fn changes_add_refresh_and_remove_one_element_each() {
        let mut p = Planner::new(false);
        let now = 5000;
        assert!(
            p.plan_changes(now).is_none(),
            "unknown sets need a reconcile first"
        );
        assert!(p.reconcile([&[], &[], &[], &[]], now, now).is_empty());
        p.set(n("192.0.2.66"), now + 60);
        let b = p.plan_changes(now).unwrap();
        assert_eq!(
            b.add[0],
            vec![json!({"elem": {"val": "192.0.2.66", "timeout": 60}})]
        );
        assert_eq!(b.len(), 1);
        // Extended: out and back in.
        p.set(n("192.0.2.66"), now + 600);
        let b = p.plan_changes(now + 10).unwrap();
        assert_eq!(
            b.refresh[0],
            vec![(
                json!("192.0.2.66"),
                json!({"elem": {"val": "192.0.2.66", "timeout": 590}})
            )]
        );
        assert_eq!(b.len(), 1);
        // The same again: nothing.
        p.set(n("192.0.2.66"), now + 600);
        assert!(p.plan_changes(now + 11).unwrap().is_empty());
        // Unblocked, even a second before its timeout: the add-then-delete
        // makes the race with the kernel harmless.
        p.remove(n("192.0.2.66"));
        let b = p.plan_changes(now + 599).unwrap();
        assert_eq!(b.remove[0], vec![json!("192.0.2.66")]);
        assert_eq!(p.installed_len(), Some(0));
    }

    #[test]
    fn a_covered_block_waits_while_the_broader_one_holds() {
        let mut p = Planner::new(false);
        p.reconcile([&[], &[], &[], &[]], 0, 0);
        p.set(n("10.1.2.3"), 0);
        assert_eq!(p.plan_changes(0).unwrap().add[0], vec![json!("10.1.2.3")]);
        // The /16 goes in and the address inside it comes out, in one batch
        // whose removal runs first.
        p.set(n("10.1.0.0/16"), 0);
        let b = p.plan_changes(0).unwrap();
        assert_eq!(b.remove[0], vec![json!("10.1.2.3")]);
        assert_eq!(
            b.add[0],
            vec![json!({"prefix": {"addr": "10.1.0.0", "len": 16}})]
        );
        let cmds = b.commands(&sets());
        assert!(cmds[1].get("delete").is_some() && cmds[2].get("add").is_some());
        // A /24 inside it is not added either...
        p.set(n("10.1.9.0/24"), 0);
        assert!(p.plan_changes(0).unwrap().is_empty());
        // ...until the /16 ends: then both come back.
        p.remove(n("10.1.0.0/16"));
        let b = p.plan_changes(0).unwrap();
        assert_eq!(
            b.remove[0],
            vec![json!({"prefix": {"addr": "10.1.0.0", "len": 16}})]
        );
        assert_eq!(
            b.add[0],
            vec![
                json!("10.1.2.3"),
                json!({"prefix": {"addr": "10.1.9.0", "len": 24}})
            ]
        );
        // An IPv6 block of ::/0 never covers an IPv4 one.
        p.set(n("::/0"), 0);
        let b = p.plan_changes(0).unwrap();
        assert!(b.remove[0].is_empty());
        assert_eq!(b.add[1], vec![json!({"prefix": {"addr": "::", "len": 0}})]);
    }

    #[test]
    fn with_host_sets_addresses_go_there_and_never_wait_for_a_prefix() {
        let mut p = Planner::new(true);
        p.reconcile([&[], &[], &[], &[]], 0, 0);
        p.set(n("10.1.0.0/16"), 0);
        p.set(n("10.1.2.3"), 0);
        p.set(n("2001:db8::1"), 60);
        let b = p.plan_changes(0).unwrap();
        assert_eq!(
            b.add,
            [
                vec![json!({"prefix": {"addr": "10.1.0.0", "len": 16}})],
                vec![],
                vec![json!("10.1.2.3")],
                vec![json!({"elem": {"val": "2001:db8::1", "timeout": 60}})],
            ],
            "the address inside the /16 goes in too: a hash set takes it"
        );
        let cmds = b.commands(&split_sets());
        let names: Vec<&str> = cmds
            .iter()
            .map(|c| c["add"]["element"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["blocked4", "hosts4", "hosts6"]);
        // The /16 goes: the address stays.
        p.remove(n("10.1.0.0/16"));
        let b = p.plan_changes(0).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b.remove[0].len(), 1);
    }

    #[test]
    fn turning_host_sets_on_moves_the_addresses_across() {
        // An interval set listed as an unsplit control left it.
        let listed = vec![
            Listed {
                raw: json!("192.0.2.66"),
                net: Some(n("192.0.2.66")),
                expires_in: None,
            },
            Listed {
                raw: json!({"prefix": {"addr": "10.1.0.0", "len": 16}}),
                net: Some(n("10.1.0.0/16")),
                expires_in: None,
            },
        ];
        let mut p = Planner::new(true);
        p.set(n("192.0.2.66"), 0);
        p.set(n("10.1.0.0/16"), 0);
        let b = p.reconcile([&listed, &[], &[], &[]], 0, 0);
        assert_eq!(b.remove[0], vec![json!("192.0.2.66")]);
        assert_eq!(b.add[HOSTS], vec![json!("192.0.2.66")]);
        assert_eq!(b.len(), 2, "the /16 stays as it is");
        // Removals run first, so the batch never holds the address twice.
        let cmds = b.commands(&split_sets());
        assert_eq!(cmds[1]["delete"]["element"]["name"], "blocked4");
        assert_eq!(cmds[2]["add"]["element"]["name"], "hosts4");
        // And an unsplit plan never writes to a host set that is not there.
        let mut p = Planner::new(false);
        p.set(n("192.0.2.66"), 0);
        let b = p.reconcile([&[], &[], &[], &[]], 0, 0);
        assert_eq!(b.add[0], vec![json!("192.0.2.66")]);
        assert_eq!(b.commands(&sets()).len(), 1);
    }

    #[test]
    fn big_batches_split_with_removals_first_and_refreshes_whole() {
        let mut b = Batch::default();
        b.remove[0] = (0..5).map(|i| json!(i)).collect();
        b.refresh[1] = (0..5).map(|i| (json!(i), json!(i + 100))).collect();
        b.add[0] = (0..5).map(|i| json!(i)).collect();
        let parts = b.chunks(4);
        assert_eq!(parts.iter().map(Batch::len).sum::<usize>(), 15);
        assert!(parts.iter().all(|p| p.len() <= 4));
        let kind = |p: &Batch| {
            if !p.remove.iter().all(Vec::is_empty) {
                0
            } else if !p.refresh.iter().all(Vec::is_empty) {
                1
            } else {
                2
            }
        };
        let kinds: Vec<u8> = parts.iter().map(kind).collect();
        assert!(kinds.windows(2).all(|w| w[0] <= w[1]), "{kinds:?}");
        // Each refresh run takes its elements out and puts them back.
        let cmds = parts[2].commands(&sets());
        assert_eq!(cmds.len(), 3);
        assert_eq!(b.chunks(100), vec![b.clone()]);
        // Host sets turned on with many addresses: they are in their host
        // set before they leave the interval set.
        let mut moved = Batch::default();
        moved.remove[0] = (0..5).map(|i| json!(i)).collect();
        moved.add[HOSTS] = (0..5).map(|i| json!(i)).collect();
        let parts = moved.chunks(4);
        assert_eq!(parts[0].add[HOSTS].len(), 4);
        assert_eq!(parts[1].add[HOSTS].len(), 1);
        assert!(parts[2..].iter().all(|p| p.add[HOSTS].is_empty()));
    }

    #[test]
    fn create_is_idempotent_and_names_the_sets() {
        let c = create(&sets(), Some(("drop", "prerouting", -300)));
        assert_eq!(c.len(), 7);
        assert_eq!(c[1]["add"]["set"]["flags"], json!(["interval", "timeout"]));
        assert_eq!(
            c[4],
            json!({"flush": {"chain": {"family": "inet", "table": "baitwall", "name": "drop"}}})
        );
        assert_eq!(
            c[6]["add"]["rule"]["expr"][0]["match"]["right"],
            "@blocked6"
        );
        assert_eq!(create(&sets(), None).len(), 3);
        // Allow sets come first, their rules before the drops.
        let with_allow = Sets {
            allow4: "allowed4".into(),
            allow6: "allowed6".into(),
            ..sets()
        };
        let c = create(&with_allow, Some(("drop", "prerouting", -300)));
        assert_eq!(c.len(), 11);
        assert_eq!(c[1]["add"]["set"]["name"], "allowed4");
        assert_eq!(c[1]["add"]["set"]["flags"], json!(["interval"]));
        assert_eq!(c[2]["add"]["set"]["type"], "ipv6_addr");
        assert_eq!(
            c[7]["add"]["rule"]["expr"],
            json!([{"match": {"op": "==",
                "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": "@allowed4"}}, {"return": null}])
        );
        assert_eq!(
            c[8]["add"]["rule"]["expr"][0]["match"]["right"],
            "@allowed6"
        );
        assert_eq!(c[9]["add"]["rule"]["expr"][2], json!({"drop": null}));
        let allow = with_allow.allow_sets().unwrap();
        assert_eq!(
            (allow.set4.as_str(), allow.set6.as_str()),
            ("allowed4", "allowed6")
        );
        assert_eq!(allow.names()[2..], ["", ""]);
        assert_eq!(sets().allow_sets(), None);
        // Host sets are hash sets, each with its rule in the chain.
        let c = create(&split_sets(), Some(("drop", "prerouting", -300)));
        assert_eq!(c.len(), 11);
        assert_eq!(c[3]["add"]["set"]["name"], "hosts4");
        assert_eq!(c[3]["add"]["set"]["flags"], json!(["timeout"]));
        assert_eq!(c[4]["add"]["set"]["type"], "ipv6_addr");
        assert_eq!(c[10]["add"]["rule"]["expr"][0]["match"]["right"], "@hosts6");
    }

    #[test]
    fn the_fuzz_seed_corpus_runs() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/nft_listing");
        for e in std::fs::read_dir(dir).unwrap() {
            fuzz_listing(&std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
        fuzz_listing("");
    }

    proptest::proptest! {
        /// Whatever the order of sets and removals, a reconcile from an
        /// empty set after incremental plans agrees with them: the
        /// incremental installed state equals what a full plan would install.
        #[test]
        fn incremental_plans_agree_with_a_full_reconcile(
            ops in proptest::collection::vec((0u8..6, 0u8..3, proptest::bool::ANY), 1..40),
            split in proptest::bool::ANY,
        ) {
            let prefixes = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "2001:db8::/32", "2001:db8::1"];
            let mut p = Planner::new(split);
            p.reconcile([&[], &[], &[], &[]], 0, 0);
            for (i, e, add) in ops {
                let net = n(prefixes[usize::from(i)]);
                if add { p.set(net, [0, 500, 900][usize::from(e)]) } else { p.remove(net) }
                p.plan_changes(0).unwrap();
            }
            let incremental = p.installed.clone().unwrap();
            let mut full = Planner { desired: p.desired.clone(), lengths: p.lengths, ..Planner::new(split) };
            full.reconcile([&[], &[], &[], &[]], 0, 0);
            proptest::prop_assert_eq!(incremental, full.installed.unwrap());
        }
    }
}
