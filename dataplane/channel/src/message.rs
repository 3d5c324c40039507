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
    /// Block a prefix until an expiry (down).
    pub const BLOCK: u16 = 100;
    /// Remove a block (down).
    pub const UNBLOCK: u16 = 101;
    /// Allow a prefix until an expiry (down).
    pub const ALLOW: u16 = 102;
    /// Remove an allow entry (down).
    pub const DISALLOW: u16 = 103;
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
    /// Sweep: distinct decoys.
    pub decoys: u32,
}

impl UpEvent {
    /// Encodes into a record.
    pub fn encode(&self) -> Record {
        let mut r = Record::new(self.kind);
        r.put(2, &[self.bite, self.action, u8::from(self.allowlisted), 0]);
        r.put(6, &self.worker.to_le_bytes());
        r.put_u64(8, self.time_ns);
        r.put(16, &self.src);
        r.put(32, &self.dst);
        r.put(48, &self.src_port.to_le_bytes());
        r.put(50, &self.dst_port.to_le_bytes());
        r.put(52, &self.decoys.to_le_bytes());
        r
    }

    /// Decodes an up record.
    pub fn decode(r: &Record) -> Result<UpEvent, DecodeError> {
        let k = r.kind();
        if !(kind::BITE..=kind::APPLIED).contains(&k) {
            return Err(DecodeError::UnknownKind(k));
        }
        let flags = r.get::<4>(2);
        if flags[2] > 1 {
            return Err(DecodeError::BadField {
                kind: k,
                field: "allowlisted",
            });
        }
        Ok(UpEvent {
            kind: k,
            bite: flags[0],
            action: flags[1],
            allowlisted: flags[2] == 1,
            worker: u16::from_le_bytes(r.get(6)),
            time_ns: r.get_u64(8),
            src: r.get(16),
            dst: r.get(32),
            src_port: u16::from_le_bytes(r.get(48)),
            dst_port: u16::from_le_bytes(r.get(50)),
            decoys: u32::from_le_bytes(r.get(52)),
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
            other => return Err(DecodeError::UnknownKind(other)),
        })
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
            worker: 3,
            time_ns: 1_767_225_600_000_000_123,
            src: [1; 16],
            dst: [2; 16],
            src_port: 40000,
            dst_port: 443,
            decoys: 0,
        };
        assert_eq!(UpEvent::decode(&e.encode()), Ok(e));
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
        ] {
            assert_eq!(Rule::decode(&rule.encode()), Ok(rule));
        }
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
