//! Control's policy: what a bite reported by a worker becomes network-wide.
//!
//! The dataplane's own policy decides whether a bite may block at all (it
//! alone knows when a source is under cookie guessing, or allowlisted in the
//! dataplane) and latches it on the worker that saw it. Control's policy can
//! only make that lighter or say how long: it decides what is stored,
//! pushed to every worker and for how long:
//! an action and a duration per bite kind, escalation to a permanent block
//! for repeat offenders, an allowlist that is never blocked, and a cap on
//! the number of stored blocks (past it, new blocks are refused and
//! reported, never silently dropped). Its file is TOML, validated while read
//! like the dataplane's.

use std::path::Path;
use std::time::Duration;

use baitwall_channel::UpEvent;
use baitwall_channel::message::code;
use serde::{Deserialize, Serialize};

/// What control does with a kind of bite.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Store it in the history only.
    Record,
    /// Block the source everywhere for the kind's duration.
    Block,
}

/// The rule for one bite kind.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindRule {
    /// The action.
    pub action: Action,
    /// How long a block lasts after the last bite (`"0s"`: permanent).
    #[serde(default = "one_hour", with = "duration_text")]
    pub r#for: Duration,
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

/// Durations as text (`"1h"`, `"30m"`), as operators write them.
pub mod duration_text {
    use serde::Deserialize;
    use std::time::Duration;

    /// Writes a duration as text.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads a duration from text.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("{s:?} is not a duration like \"1h\": {e}"))
        })
    }
}

/// `[kinds]`: one rule per bite kind.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kinds {
    /// Handshake bites.
    #[serde(default = "record")]
    pub handshake: KindRule,
    /// Data bites.
    #[serde(default = "block_1h")]
    pub data: KindRule,
    /// Port bites.
    #[serde(default = "block_1h")]
    pub port: KindRule,
}

fn record() -> KindRule {
    KindRule {
        action: Action::Record,
        r#for: one_hour(),
    }
}
fn block_1h() -> KindRule {
    KindRule {
        action: Action::Block,
        r#for: one_hour(),
    }
}

impl Default for Kinds {
    fn default() -> Self {
        Kinds {
            handshake: record(),
            data: block_1h(),
            port: block_1h(),
        }
    }
}

/// The whole policy file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Per bite kind.
    #[serde(default)]
    pub kinds: Kinds,
    /// A source blocked this many times (refreshes included) is blocked for good.
    pub permanent_after: Option<u32>,
    /// Sources never blocked (addresses or prefixes).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Blocks stored at most.
    #[serde(default = "default_max_blocks")]
    pub max_blocks: u64,
    /// Moved to the dataplane (`[deception] block_ipv6_prefix`): control
    /// learns the length from each latch. Present only to refuse it with
    /// a message that says so.
    #[serde(default, skip_serializing)]
    pub ipv6_prefix: Option<u8>,
}

fn default_max_blocks() -> u64 {
    1_000_000
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            kinds: Kinds::default(),
            permanent_after: None,
            allow: Vec::new(),
            max_blocks: default_max_blocks(),
            ipv6_prefix: None,
        }
    }
}

/// A prefix on the 16-byte address space: network and length.
pub type Net = ([u8; 16], u8);

/// What control decides for a bite.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Record only.
    Record,
    /// The source is allowlisted: record, never block.
    Allowed,
    /// Block `net` for this long (zero: permanent).
    Block {
        /// The block.
        net: Net,
        /// Duration (zero: permanent).
        r#for: Duration,
    },
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// Parses and validates policy text; errors name the field and the line.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Policy> {
        let policy: Policy = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: {}", e.to_string().trim_end()))?;
        policy.validate(origin)?;
        Ok(policy)
    }

    /// Checks what the types alone do not: ranges and allowlist entries.
    pub fn validate(&self, origin: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.ipv6_prefix.is_none(),
            "{origin}: ipv6_prefix is set by the dataplane now ([deception] block_ipv6_prefix \
             in its configuration); control learns it from every latch: remove it here"
        );
        for a in &self.allow {
            parse_net(a).map_err(|e| anyhow::anyhow!("{origin}: allow: {e}"))?;
        }
        Ok(())
    }

    /// The allowlist as prefixes.
    pub fn allowlist(&self) -> Vec<Net> {
        self.allow
            .iter()
            .filter_map(|a| parse_net(a).ok())
            .collect()
    }

    /// The prefix a bite's worker latched (the event says its length; an
    /// IPv4 source alone, an IPv6 source by the dataplane's
    /// `block_ipv6_prefix`, 64 when an event does not say).
    pub fn latched_net(ev: &UpEvent) -> Net {
        let v4 = baitwall_channel::is_v4_mapped(&ev.src);
        let len = match (v4, ev.latched_len) {
            (true, _) => 128,
            (false, 0) => 64,
            (false, len) => len,
        };
        let mask = u128::MAX << (128 - u32::from(len.clamp(1, 128)));
        ((u128::from_be_bytes(ev.src) & mask).to_be_bytes(), len)
    }

    /// Decides a bite. `times_blocked` is how often the source's block was
    /// made or refreshed before.
    pub fn decide(&self, ev: &UpEvent, times_blocked: u32) -> Decision {
        if self.allowlist().iter().any(|n| covers(n, &ev.src)) {
            return Decision::Allowed;
        }
        let rule = match ev.bite {
            code::BITE_HANDSHAKE => self.kinds.handshake,
            code::BITE_DATA => self.kinds.data,
            code::BITE_PORT => self.kinds.port,
            _ => return Decision::Record,
        };
        // Only a bite the worker itself latched may become a stored block:
        // control never overrules the worker's refusal to block.
        if rule.action == Action::Record || ev.action != code::ACTION_BLOCK {
            return Decision::Record;
        }
        let permanent = self
            .permanent_after
            .is_some_and(|n| times_blocked.saturating_add(1) >= n);
        Decision::Block {
            net: Policy::latched_net(ev),
            r#for: if permanent {
                Duration::ZERO
            } else {
                rule.r#for
            },
        }
    }
}

/// True when `net` covers `addr`.
pub fn covers(net: &Net, addr: &[u8; 16]) -> bool {
    let mask = if net.1 == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(net.1.min(128)))
    };
    u128::from_be_bytes(*addr) & mask == u128::from_be_bytes(net.0)
}

/// True when two prefixes share an address (one contains the other).
pub fn overlap(a: &Net, b: &Net) -> bool {
    let (broad, narrow) = if a.1 <= b.1 { (a, b) } else { (b, a) };
    covers(broad, &narrow.0)
}

/// Parses `"192.0.2.0/24"`, `"2001:db8::/48"` or a bare address.
pub fn parse_net(s: &str) -> Result<Net, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (
            a,
            Some(
                l.parse::<u8>()
                    .map_err(|_| format!("{s:?}: bad prefix length"))?,
            ),
        ),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an address or prefix"))?;
    let (bytes, len) = match ip {
        std::net::IpAddr::V4(a) => {
            let l = len.unwrap_or(32);
            if l > 32 {
                return Err(format!("{s:?}: IPv4 prefix length over 32"));
            }
            (a.to_ipv6_mapped().octets(), 96 + l)
        }
        std::net::IpAddr::V6(a) => {
            let l = len.unwrap_or(128);
            if l > 128 {
                return Err(format!("{s:?}: IPv6 prefix length over 128"));
            }
            (a.octets(), l)
        }
    };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    let net = u128::from_be_bytes(bytes);
    if net & !mask != 0 {
        return Err(format!("{s:?} has host bits set"));
    }
    Ok((bytes, len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use baitwall_channel::message::kind;

    fn bite(src: std::net::IpAddr, bite: u8) -> UpEvent {
        UpEvent {
            kind: kind::BITE,
            bite,
            action: code::ACTION_BLOCK,
            allowlisted: false,
            strong: false,
            latched_len: if src.is_ipv4() { 128 } else { 64 },
            worker: 0,
            time_ns: 0,
            src: match src {
                std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                std::net::IpAddr::V6(a) => a.octets(),
            },
            dst: [0; 16],
            src_port: 1,
            dst_port: 80,
            decoys: 0,
            persona: baitwall_channel::message::NO_PERSONA,
        }
    }

    #[test]
    fn defaults_block_data_and_port_for_an_hour_and_record_handshakes() {
        let p = Policy::default();
        let worm = "192.0.2.66".parse().unwrap();
        assert_eq!(
            p.decide(&bite(worm, code::BITE_HANDSHAKE), 0),
            Decision::Record
        );
        match p.decide(&bite(worm, code::BITE_PORT), 0) {
            Decision::Block { net, r#for } => {
                assert_eq!(net.1, 128);
                assert_eq!(r#for, Duration::from_secs(3600));
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(p.decide(&bite(worm, code::BITE_SWEEP), 0), Decision::Record);
    }

    #[test]
    fn ipv6_sources_are_blocked_by_their_prefix() {
        let p = Policy::default();
        let d = p.decide(
            &bite("2001:db8:1:2:3::7".parse().unwrap(), code::BITE_DATA),
            0,
        );
        let Decision::Block { net, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(net.1, 64);
        assert_eq!(
            std::net::Ipv6Addr::from(net.0),
            "2001:db8:1:2::".parse::<std::net::Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_policy_file_sets_kinds_escalation_and_allowlist() {
        let p = Policy::parse(
            "permanent_after = 3\nallow = [\"203.0.113.0/24\", \"2001:db8::1\"]\n[kinds]\nhandshake = { action = \"block\", for = \"10m\" }\nport = { action = \"block\", for = \"0s\" }\n",
            "p.toml",
        )
        .unwrap();
        let src = "192.0.2.66".parse().unwrap();
        assert_eq!(
            p.decide(&bite(src, code::BITE_HANDSHAKE), 0),
            Decision::Block {
                net: Policy::latched_net(&bite(src, 0)),
                r#for: Duration::from_secs(600)
            }
        );
        assert!(
            matches!(p.decide(&bite(src, code::BITE_PORT), 0), Decision::Block { r#for, .. } if r#for.is_zero())
        );
        // The third block of a source is permanent.
        assert!(
            matches!(p.decide(&bite(src, code::BITE_DATA), 2), Decision::Block { r#for, .. } if r#for.is_zero())
        );
        assert!(
            matches!(p.decide(&bite(src, code::BITE_DATA), 1), Decision::Block { r#for, .. } if !r#for.is_zero())
        );
        assert_eq!(
            p.decide(&bite("203.0.113.9".parse().unwrap(), code::BITE_DATA), 0),
            Decision::Allowed
        );
        assert_eq!(
            p.decide(&bite("2001:db8::1".parse().unwrap(), code::BITE_DATA), 0),
            Decision::Allowed
        );
    }

    #[test]
    fn a_bite_the_worker_did_not_latch_never_becomes_a_block() {
        let p = Policy::parse("[kinds]\nhandshake = { action = \"block\" }\n", "p").unwrap();
        let mut ev = bite("192.0.2.66".parse().unwrap(), code::BITE_DATA);
        ev.action = code::ACTION_ALERT;
        assert_eq!(p.decide(&ev, 0), Decision::Record);
    }

    #[test]
    fn bad_policy_files_say_what_and_where() {
        for (text, needle) in [
            (
                "[kinds]\ndata = { action = \"ban\" }\n",
                "unknown variant `ban`",
            ),
            ("allow = [\"10.0.0.7/24\"]\n", "host bits set"),
            ("allow = [\"nope\"]\n", "not an address"),
            ("ipv6_prefix = 64\n", "set by the dataplane"),
            ("bogus = 1\n", "unknown field `bogus`"),
            (
                "[kinds]\ndata = { action = \"block\", for = \"soon\" }\n",
                "not a duration",
            ),
        ] {
            let e = Policy::parse(text, "p.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("p.toml"), "{e}");
        }
    }
}
