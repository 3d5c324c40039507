//! What the rings carry: events going up and rules coming down, each
//! encoded into one 64-byte [`Record`] at fixed little-endian offsets (the
//! table is in `docs/control.md`). Decoding checks the kind and every field
//! that has a range, so a corrupt or foreign record becomes an error, never
//! a wrong block.

use crate::record::Record;

/// Record kinds. Up: 1..=99; down: 100..=199.
pub mod kind {
    /// A bite (up).
    pub const BITE: u16 = 1;
    /// A sweep (up).
    pub const SWEEP: u16 = 2;
    /// A learned service (up).
    pub const SERVICE: u16 = 3;
    /// A worker applied every rule up to a generation (up).
    pub const APPLIED: u16 = 4;
    /// A sampled mark (up): `bite` holds the mark kind, `decoys` the sampling rate.
    pub const MARK: u16 = 5;
    /// The answer to a [`QUERY`] (up): one decoy address and its persona.
    pub const PERSONA: u16 = 6;
    /// An inside host showed it is alive (up): at its first frame, then
    /// every few minutes while it keeps sending (`src` is the host).
    pub const LIVE: u16 = 7;
    /// Block a prefix until an expiry (down).
    pub const BLOCK: u16 = 100;
    /// Remove a block (down).
    pub const UNBLOCK: u16 = 101;
    /// Allow a prefix until an expiry (down).
    pub const ALLOW: u16 = 102;
    /// Remove an allow entry (down).
    pub const DISALLOW: u16 = 103;
    /// Describe a decoy address, or sample dark addresses (down).
    pub const QUERY: u16 = 104;
    /// A host known alive since a time (down): liveness learned before a
    /// restart, so no decoy claims it meanwhile.
    pub const LIVE_HOST: u16 = 105;
    /// Everything before this record belongs to a generation (down).
    pub const GENERATION: u16 = 110;
}

/// Numbers of bite kinds and actions in [`UpEvent`] records.
pub mod code {
    /// Handshake bite.
    pub const BITE_HANDSHAKE: u8 = 0;
    /// Data bite.
    pub const BITE_DATA: u8 = 1;
    /// Port bite.
    pub const BITE_PORT: u8 = 2;
    /// Sweep.
    pub const BITE_SWEEP: u8 = 3;
    /// Counted only.
    pub const ACTION_COUNT: u8 = 0;
    /// Reported.
    pub const ACTION_ALERT: u8 = 1;
    /// Latched.
    pub const ACTION_BLOCK: u8 = 2;

    /// The name of a bite kind.
    pub fn bite_name(code: u8) -> &'static str {
        match code {
            BITE_HANDSHAKE => "handshake",
            BITE_DATA => "data",
            BITE_PORT => "port",
            BITE_SWEEP => "sweep",
            _ => "unknown",
        }
    }

    /// The name of a mark kind (the dataplane's `MarkKind` as a number).
    pub fn mark_name(code: u8) -> &'static str {
        match code {
            0 => "syn_ack",
            1 => "rst",
            2 => "service",
            3 => "echo",
            4 => "unreachable",
            5 => "udp",
            6 => "arp",
            7 => "ndp",
            _ => "unknown",
        }
    }

    /// Persona family codes run from 0 to `PERSONAS - 1` (`persona_name`).
    pub const PERSONAS: u8 = 7;

    /// The name of a persona family (the dataplane's `PersonaKind` as a number).
    pub fn persona_name(code: u8) -> &'static str {
        match code {
            0 => "linux_web",
            1 => "linux_ssh",
            2 => "windows_server",
            3 => "printer",
            4 => "router",
            5 => "freebsd",
            6 => "camera",
            _ => "unknown",
        }
    }

    /// The name of an address's state (the dataplane's `Darkness` as a number).
    pub fn darkness_name(code: u8) -> &'static str {
        match code {
            0 => "dark",
            1 => "unprotected",
            2 => "excluded",
            3 => "static_live",
            4 => "learning",
            5 => "live",
            6 => "unclaimed",
            7 => "vacant",
            _ => "unknown",
        }
    }

    /// The name of an action.
    pub fn action_name(code: u8) -> &'static str {
        match code {
            ACTION_COUNT => "count",
            ACTION_ALERT => "alert",
            ACTION_BLOCK => "block",
            _ => "unknown",
        }
    }
}

/// A record that does not decode.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The kind is not one this direction carries.
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    /// A field is out of range.
    #[error("record kind {kind}: field {field} out of range")]
    BadField {
        /// The record kind.
        kind: u16,
        /// The field.
        field: &'static str,
    },
}

/// An event a worker sends up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UpEvent {
    /// [`kind::BITE`], [`kind::SWEEP`], [`kind::SERVICE`] or [`kind::APPLIED`].
    pub kind: u16,
    /// Bite kind (the dataplane's `BiteKind` as a number).
    pub bite: u8,
    /// Action taken (the dataplane's `Action` as a number).
    pub action: u8,
    /// Source allowlisted.
    pub allowlisted: bool,
    /// A bite's proof was strong (the decoy's timestamp echoed).
    pub strong: bool,
    /// A latched bite: the length of the prefix the worker blocked (128
    /// for IPv4, the dataplane's `block_ipv6_prefix` for IPv6), so control
    /// confirms or lifts exactly that; 0 for anything else.
    pub latched_len: u8,
    /// The worker.
    pub worker: u16,
    /// Event time, Unix nanoseconds (for `APPLIED`: the generation).
    pub time_ns: u64,
    /// Source address (16 bytes; IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Decoy / destination address.
    pub dst: [u8; 16],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sweep: distinct decoys; mark: the sampling rate.
    pub decoys: u32,
    /// The decoy's persona family (`code::persona_name`), [`NO_PERSONA`] when none.
    pub persona: u8,
}

/// [`UpEvent::persona`] of an event about no decoy.
pub const NO_PERSONA: u8 = 0xff;

impl UpEvent {
    /// Encodes into a record.
    pub fn encode(&self) -> Record {
        let mut r = Record::new(self.kind);
        r.put(
            2,
            &[
                self.bite,
                self.action,
                u8::from(self.allowlisted),
                self.persona,
            ],
        );
        r.put(6, &self.worker.to_le_bytes());
        r.put_u64(8, self.time_ns);
        r.put(16, &self.src);
        r.put(32, &self.dst);
        r.put(48, &self.src_port.to_le_bytes());
        r.put(50, &self.dst_port.to_le_bytes());
        r.put(52, &self.decoys.to_le_bytes());
        r.put(56, &[u8::from(self.strong), self.latched_len]);
        r
    }

    /// Decodes an up record.
    pub fn decode(r: &Record) -> Result<UpEvent, DecodeError> {
        let k = r.kind();
        if !(kind::BITE..=kind::MARK).contains(&k) && k != kind::LIVE {
            return Err(DecodeError::UnknownKind(k));
        }
        let flags = r.get::<4>(2);
        if flags[2] > 1 {
            return Err(DecodeError::BadField {
                kind: k,
                field: "allowlisted",
            });
        }
        let [strong, latched_len] = r.get::<2>(56);
        if latched_len > 128 {
            return Err(DecodeError::BadField {
                kind: k,
                field: "latched_len",
            });
        }
        if strong > 1 {
            return Err(DecodeError::BadField {
                kind: k,
                field: "strong",
            });
        }
        if flags[3] >= code::PERSONAS && flags[3] != NO_PERSONA {
            return Err(DecodeError::BadField {
                kind: k,
                field: "persona",
            });
        }
        Ok(UpEvent {
            kind: k,
            bite: flags[0],
            action: flags[1],
            allowlisted: flags[2] == 1,
            strong: strong == 1,
            latched_len,
            worker: u16::from_le_bytes(r.get(6)),
            time_ns: r.get_u64(8),
            src: r.get(16),
            dst: r.get(32),
            src_port: u16::from_le_bytes(r.get(48)),
            dst_port: u16::from_le_bytes(r.get(50)),
            decoys: u32::from_le_bytes(r.get(52)),
            persona: flags[3],
        })
    }
}

/// A rule control sends down.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Block `net/len` until `expiry` (Unix seconds; 0 = permanent).
    Block {
        /// Network (16 bytes; IPv4-mapped for IPv4, length counted from bit 0 of the 128).
        net: [u8; 16],
        /// Prefix length on the 128-bit space.
        len: u8,
        /// Expiry.
        expiry: u32,
    },
    /// Remove the block of `net/len`.
    Unblock {
        /// Network.
        net: [u8; 16],
        /// Prefix length.
        len: u8,
    },
    /// Allow `net/len` until `expiry`.
    Allow {
        /// Network.
        net: [u8; 16],
        /// Prefix length.
        len: u8,
        /// Expiry.
        expiry: u32,
    },
    /// Remove the allow entry of `net/len`.
    Disallow {
        /// Network.
        net: [u8; 16],
        /// Prefix length.
        len: u8,
    },
    /// Describe `addr` (`count` 0), or sample up to `count` dark addresses
    /// from `addr` on; answered with [`PersonaAnswer`]s carrying `id`.
    Query {
        /// Matches the answers to the question.
        id: u32,
        /// The address (IPv4-mapped for IPv4), or where a sample starts.
        addr: [u8; 16],
        /// 0: describe `addr`; otherwise the sample's size (at most 64).
        count: u8,
    },
    /// `addr` was seen alive at `seen` (Unix seconds): learned liveness,
    /// restored after a restart.
    Live {
        /// The host (IPv4-mapped for IPv4).
        addr: [u8; 16],
        /// When it was last seen.
        seen: u32,
    },
    /// Every rule sent before this one belongs to generation `.0` or earlier.
    Generation(u64),
}

impl Rule {
    /// Encodes into a record.
    pub fn encode(&self) -> Record {
        let (k, net, len, expiry, generation) = match *self {
            Rule::Block { net, len, expiry } => (kind::BLOCK, net, len, expiry, 0),
            Rule::Unblock { net, len } => (kind::UNBLOCK, net, len, 0, 0),
            Rule::Allow { net, len, expiry } => (kind::ALLOW, net, len, expiry, 0),
            Rule::Disallow { net, len } => (kind::DISALLOW, net, len, 0, 0),
            Rule::Query { id, addr, count } => (kind::QUERY, addr, count, id, 0),
            Rule::Live { addr, seen } => (kind::LIVE_HOST, addr, 128, seen, 0),
            Rule::Generation(g) => (kind::GENERATION, [0; 16], 0, 0, g),
        };
        let mut r = Record::new(k);
        r.put(2, &[len]);
        r.put(4, &expiry.to_le_bytes());
        r.put_u64(8, generation);
        r.put(16, &net);
        r
    }

    /// Decodes a down record.
    pub fn decode(r: &Record) -> Result<Rule, DecodeError> {
        let k = r.kind();
        let len = r.get::<1>(2)[0];
        let expiry = u32::from_le_bytes(r.get(4));
        let net: [u8; 16] = r.get(16);
        let prefix_kind = matches!(
            k,
            kind::BLOCK | kind::UNBLOCK | kind::ALLOW | kind::DISALLOW
        );
        if prefix_kind && len > 128 {
            return Err(DecodeError::BadField {
                kind: k,
                field: "len",
            });
        }
        Ok(match k {
            kind::BLOCK => Rule::Block { net, len, expiry },
            kind::UNBLOCK => Rule::Unblock { net, len },
            kind::ALLOW => Rule::Allow { net, len, expiry },
            kind::DISALLOW => Rule::Disallow { net, len },
            kind::GENERATION => Rule::Generation(r.get_u64(8)),
            kind::LIVE_HOST => Rule::Live {
                addr: net,
                seen: expiry,
            },
            kind::QUERY if len > MAX_SAMPLE => {
                return Err(DecodeError::BadField {
                    kind: k,
                    field: "count",
                });
            }
            kind::QUERY => Rule::Query {
                id: expiry,
                addr: net,
                count: len,
            },
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }
}

/// The largest sample a [`Rule::Query`] may ask for.
pub const MAX_SAMPLE: u8 = 64;

/// Open ports a [`PersonaAnswer`] carries.
pub const ANSWER_PORTS: usize = 14;

/// A worker's answer to a [`Rule::Query`]: one address, its state, and the
/// persona it shows when dark.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PersonaAnswer {
    /// The query's id.
    pub id: u32,
    /// True on the query's last answer.
    pub last: bool,
    /// The address (IPv4-mapped for IPv4); all zero with `found` false.
    pub addr: [u8; 16],
    /// False when a sample found nothing (an empty, last answer).
    pub found: bool,
    /// The address's state (`code::darkness_name`).
    pub darkness: u8,
    /// The persona family (`code::persona_name`).
    pub family: u8,
    /// Initial TTL.
    pub ttl: u8,
    /// Don't-fragment bit.
    pub dont_frag: bool,
    /// SYN-ACK window.
    pub window: u16,
    /// Advertised MSS.
    pub mss: u16,
    /// The decoy's MAC.
    pub mac: [u8; 6],
    /// Open TCP ports (0-terminated when fewer than [`ANSWER_PORTS`]).
    pub ports: [u16; ANSWER_PORTS],
}

impl PersonaAnswer {
    /// The last answer of query `id`, saying nothing was found (`addr`
    /// and its state `darkness`, when there is one to name).
    pub fn nothing(id: u32, addr: [u8; 16], darkness: u8) -> PersonaAnswer {
        PersonaAnswer {
            id,
            last: true,
            addr,
            found: false,
            darkness,
            family: 0,
            ttl: 0,
            dont_frag: false,
            window: 0,
            mss: 0,
            mac: [0; 6],
            ports: [0; ANSWER_PORTS],
        }
    }

    /// Encodes into a record.
    pub fn encode(&self) -> Record {
        let mut r = Record::new(kind::PERSONA);
        let flags = u8::from(self.last) | u8::from(self.dont_frag) << 1 | u8::from(self.found) << 2;
        r.put(2, &[self.darkness, self.family]);
        r.put(4, &self.id.to_le_bytes());
        r.put(8, &[self.ttl, flags]);
        r.put(10, &self.window.to_le_bytes());
        r.put(12, &self.mss.to_le_bytes());
        r.put(14, &self.mac);
        r.put(20, &self.addr);
        for (i, p) in self.ports.iter().enumerate() {
            r.put(36 + 2 * i, &p.to_le_bytes());
        }
        r
    }

    /// Decodes a [`kind::PERSONA`] record.
    pub fn decode(r: &Record) -> Result<PersonaAnswer, DecodeError> {
        if r.kind() != kind::PERSONA {
            return Err(DecodeError::UnknownKind(r.kind()));
        }
        let [darkness, family] = r.get::<2>(2);
        let [ttl, flags] = r.get::<2>(8);
        if flags > 7 {
            return Err(DecodeError::BadField {
                kind: kind::PERSONA,
                field: "flags",
            });
        }
        Ok(PersonaAnswer {
            id: u32::from_le_bytes(r.get(4)),
            last: flags & 1 != 0,
            dont_frag: flags & 2 != 0,
            found: flags & 4 != 0,
            addr: r.get(20),
            darkness,
            family,
            ttl,
            window: u16::from_le_bytes(r.get(10)),
            mss: u16::from_le_bytes(r.get(12)),
            mac: r.get(14),
            ports: std::array::from_fn(|i| u16::from_le_bytes(r.get(36 + 2 * i))),
        })
    }

    /// The open ports, without the padding.
    pub fn open_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().copied().take_while(|&p| p != 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn events_round_trip() {
        let e = UpEvent {
            kind: kind::BITE,
            bite: 2,
            action: 2,
            allowlisted: true,
            strong: false,
            latched_len: 56,
            worker: 3,
            time_ns: 1_767_225_600_000_000_123,
            src: [1; 16],
            dst: [2; 16],
            src_port: 40000,
            dst_port: 443,
            decoys: 0,
            persona: 2,
        };
        assert_eq!(UpEvent::decode(&e.encode()), Ok(e));
        // Every named persona decodes (a bite on a decoy of a family the
        // decoder refused would be an event, and a block, lost).
        for family in (0..code::PERSONAS).chain([NO_PERSONA]) {
            let e = UpEvent {
                persona: family,
                ..e
            };
            assert_eq!(UpEvent::decode(&e.encode()), Ok(e));
            assert!(family == NO_PERSONA || code::persona_name(family) != "unknown");
        }
        assert_eq!(code::persona_name(code::PERSONAS), "unknown");
        let mut unnamed = e.encode();
        unnamed.put(5, &[code::PERSONAS]);
        assert!(UpEvent::decode(&unnamed).is_err());
        // A latched prefix longer than an address is refused.
        let mut bad = e.encode();
        bad.put(57, &[129]);
        assert!(matches!(
            UpEvent::decode(&bad),
            Err(DecodeError::BadField {
                field: "latched_len",
                ..
            })
        ));
    }

    #[test]
    fn rules_round_trip() {
        let net = std::net::Ipv4Addr::new(192, 0, 2, 66)
            .to_ipv6_mapped()
            .octets();
        for rule in [
            Rule::Block {
                net,
                len: 128,
                expiry: 1_800_000_000,
            },
            Rule::Unblock { net, len: 120 },
            Rule::Allow {
                net,
                len: 128,
                expiry: 0,
            },
            Rule::Disallow { net, len: 96 },
            Rule::Generation(u64::MAX - 1),
            Rule::Query {
                id: 77,
                addr: net,
                count: 16,
            },
            Rule::Live {
                addr: net,
                seen: 1_800_000_000,
            },
        ] {
            assert_eq!(Rule::decode(&rule.encode()), Ok(rule));
        }
    }

    #[test]
    fn persona_answers_round_trip() {
        let mut ports = [0u16; ANSWER_PORTS];
        ports[..3].copy_from_slice(&[22, 80, 443]);
        let a = PersonaAnswer {
            id: 9,
            last: true,
            addr: [7; 16],
            found: true,
            darkness: 0,
            family: 3,
            ttl: 64,
            dont_frag: true,
            window: 29200,
            mss: 1460,
            mac: [2, 0, 0, 1, 2, 3],
            ports,
        };
        let back = PersonaAnswer::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.open_ports().collect::<Vec<_>>(), [22, 80, 443]);
        let mut bad = a.encode();
        bad.put(9, &[8]);
        assert!(PersonaAnswer::decode(&bad).is_err());
        let mut q = Rule::Query {
            id: 1,
            addr: [0; 16],
            count: 1,
        }
        .encode();
        q.put(2, &[MAX_SAMPLE + 1]);
        assert!(Rule::decode(&q).is_err());
    }

    #[test]
    fn foreign_and_corrupt_records_are_errors() {
        assert_eq!(
            Rule::decode(&Record::new(7)),
            Err(DecodeError::UnknownKind(7))
        );
        assert_eq!(
            UpEvent::decode(&Record::new(100)),
            Err(DecodeError::UnknownKind(100))
        );
        let mut r = Rule::Block {
            net: [0; 16],
            len: 8,
            expiry: 0,
        }
        .encode();
        r.put(2, &[129]);
        assert!(matches!(
            Rule::decode(&r),
            Err(DecodeError::BadField { field: "len", .. })
        ));
        let mut e = UpEvent::decode(&{
            let mut r = Record::new(kind::SWEEP);
            r.put(52, &17u32.to_le_bytes());
            r
        })
        .unwrap()
        .encode();
        e.put(4, &[2]);
        assert!(UpEvent::decode(&e).is_err());
    }
}
