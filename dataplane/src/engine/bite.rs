//! Bites: uses of a mark, the evidence that latches a block.
//!
//! Only a bite that carries proof of receipt (a verified cookie) may block:
//! a forged source never receives the decoy's SYN-ACK and cannot produce one.
//!
//! - *handshake*: an ACK whose acknowledgement verifies against the cookie;
//! - *data*: payload on a verified connection to a decoy;
//! - *port*: a source that proved receipt on decoy D opens a verified
//!   connection to another port of D (Slapper: port 80, then 443);
//! - *sweep*: marks sent to more than N distinct decoys for one source in a
//!   window; recon evidence only, spoofable, so it never blocks alone.
//!
//! Port bites need to know which ports of which decoy a source has proven;
//! the connections to port 80 and 443 have different 4-tuples, so RSS may
//! put them on different workers. The [`ProofTable`] is therefore shared by
//! every worker: relaxed atomics, written only on a verified handshake, so it
//! costs nothing on the common path, and only a verified ACK can create an
//! entry, so forged traffic cannot fill it.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::FixedState;

/// The kinds of bite.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum BiteKind {
    /// A verified handshake with a decoy.
    Handshake = 0,
    /// Data sent to a decoy on a verified connection.
    Data,
    /// A second port of a decoy after a proven first one.
    Port,
    /// Marks received from many decoys (spoofable; never blocks alone).
    Sweep,
}

impl BiteKind {
    /// Every kind, in counter order.
    pub const ALL: [BiteKind; 4] = [
        BiteKind::Handshake,
        BiteKind::Data,
        BiteKind::Port,
        BiteKind::Sweep,
    ];

    /// Number of kinds.
    pub const COUNT: usize = 4;

    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BiteKind::Handshake => "handshake",
            BiteKind::Data => "data",
            BiteKind::Port => "port",
            BiteKind::Sweep => "sweep",
        }
    }
}

/// What the policy does about a bite.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Count it.
    Count,
    /// Count it and report it as an event.
    Alert,
    /// Latch a block on the source (and report it).
    Block,
}

/// Bite kind -> action.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// For handshake bites.
    pub handshake: Action,
    /// For data bites.
    pub data: Action,
    /// For port bites.
    pub port: Action,
}

impl Default for Policy {
    /// Data and port bites block; handshake bites alert (one completed
    /// handshake, a curious person's or a single connect probe's, uses
    /// nothing it learned). A connect scan of two open ports of one decoy
    /// is a port bite, and blocks: it is exactly the use of recon the
    /// latch exists for.
    fn default() -> Self {
        Policy {
            handshake: Action::Alert,
            data: Action::Block,
            port: Action::Block,
        }
    }
}

impl Policy {
    /// The action for `kind`; sweeps are only ever counted.
    pub fn action(&self, kind: BiteKind) -> Action {
        match kind {
            BiteKind::Handshake => self.handshake,
            BiteKind::Data => self.data,
            BiteKind::Port => self.port,
            BiteKind::Sweep => Action::Count,
        }
    }
}

/// Entries per proof-table bucket.
const PROOF_WAYS: usize = 4;

/// Which (source, decoy, port) triples have proven receipt of a mark,
/// shared by all workers (see the module doc). An entry packs a 32-bit tag
/// of (source, decoy), the port, and the minute it was proven.
pub struct ProofTable {
    slots: Box<[AtomicU64]>,
    mask: usize,
    hasher: FixedState,
}

impl ProofTable {
    /// A table of at least `entries` entries.
    pub fn new(entries: usize, seed: u64) -> Self {
        let buckets = entries.div_ceil(PROOF_WAYS).max(1).next_power_of_two();
        ProofTable {
            slots: (0..buckets * PROOF_WAYS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            mask: buckets - 1,
            hasher: FixedState::with_seed(seed),
        }
    }

    fn locate(&self, src: &[u8; 16], decoy: &[u8; 16]) -> (usize, u32) {
        let mut h = self.hasher.build_hasher();
        h.write(src);
        h.write(decoy);
        let h = h.finish();
        // Tag 0 marks an empty slot, so tags are never 0; 31 bits, the top
        // bit of the word says whether the proof was strong.
        (
            (h as usize) & self.mask,
            ((h >> 32) as u32 & 0x7fff_ffff).max(1),
        )
    }

    fn pack(tag: u32, port: u16, minute: u16, strong: bool) -> u64 {
        u64::from(strong) << 63
            | u64::from(tag & 0x7fff_ffff) << 32
            | u64::from(port) << 16
            | u64::from(minute)
    }

    fn unpack(v: u64) -> (u32, u16, u16, bool) {
        (
            (v >> 32) as u32 & 0x7fff_ffff,
            (v >> 16) as u16,
            v as u16,
            v >> 63 == 1,
        )
    }

    /// Records that `src` proved receipt on `decoy:port` at `minute`
    /// (`strong`: with a timestamp echo, `engine::tsproof`), and returns
    /// another port of the same decoy that `src` proved within
    /// `ttl_minutes`, if any, and whether that proof was strong: that is a
    /// port bite.
    pub fn prove(
        &self,
        src: &[u8; 16],
        decoy: &[u8; 16],
        port: u16,
        minute: u16,
        ttl_minutes: u16,
        strong: bool,
    ) -> Option<(u16, bool)> {
        let (bucket, tag) = self.locate(src, decoy);
        let base = bucket * PROOF_WAYS;
        let bucket = self.slots.get(base..base + PROOF_WAYS)?;
        let mut other_port: Option<(u16, bool)> = None;
        let mut own = None;
        let mut own_strong = false;
        let mut free = None;
        let (mut oldest, mut oldest_age) = (0, 0u16);
        for (i, slot) in bucket.iter().enumerate() {
            let (t, p, m, st) = Self::unpack(slot.load(Ordering::Relaxed));
            let age = minute.wrapping_sub(m);
            if t == 0 || age > ttl_minutes {
                free.get_or_insert(i);
                continue;
            }
            if t == tag {
                if p == port {
                    own = Some(i);
                    own_strong = st;
                } else if other_port.is_none_or(|(_, s)| !s) {
                    // A strong proof of another port wins over a weak one.
                    other_port = Some((p, st));
                }
            }
            if age >= oldest_age {
                (oldest, oldest_age) = (i, age);
            }
        }
        // Refresh our own entry, else take a free or stale slot, else the oldest.
        let target = own.or(free).unwrap_or(oldest);
        if let Some(slot) = bucket.get(target) {
            slot.store(
                Self::pack(tag, port, minute, strong || own_strong),
                Ordering::Relaxed,
            );
        }
        other_port
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn addr(last: u8) -> [u8; 16] {
        std::net::Ipv4Addr::new(198, 51, 100, last)
            .to_ipv6_mapped()
            .octets()
    }

    #[test]
    fn a_second_port_of_the_same_decoy_is_a_port_bite() {
        let t = ProofTable::new(1024, 1);
        let worm = addr(250);
        let decoy = addr(20);
        assert_eq!(t.prove(&worm, &decoy, 80, 100, 10, false), None);
        assert_eq!(
            t.prove(&worm, &decoy, 80, 101, 10, true),
            None,
            "the same port again is no port bite"
        );
        assert_eq!(
            t.prove(&worm, &decoy, 443, 102, 10, false),
            Some((80, true)),
            "the port's proof was strengthened by its second handshake"
        );
        assert_eq!(t.prove(&worm, &addr(30), 22, 102, 10, false), None);
        assert_eq!(
            t.prove(&worm, &addr(30), 23, 102, 10, true),
            Some((22, false)),
            "a weak proof stays weak"
        );
    }

    #[test]
    fn other_decoys_other_sources_and_old_proofs_do_not_count() {
        let t = ProofTable::new(1024, 1);
        let worm = addr(250);
        t.prove(&worm, &addr(20), 80, 100, 10, false);
        assert_eq!(
            t.prove(&worm, &addr(21), 443, 100, 10, false),
            None,
            "another decoy"
        );
        assert_eq!(
            t.prove(&addr(251), &addr(20), 443, 100, 10, false),
            None,
            "another source"
        );
        assert_eq!(
            t.prove(&worm, &addr(20), 443, 111, 10, false),
            None,
            "proof older than the ttl"
        );
    }

    #[test]
    fn default_policy_blocks_data_and_port_bites_only() {
        let p = Policy::default();
        assert_eq!(p.action(BiteKind::Handshake), Action::Alert);
        assert_eq!(p.action(BiteKind::Data), Action::Block);
        assert_eq!(p.action(BiteKind::Port), Action::Block);
        assert_eq!(p.action(BiteKind::Sweep), Action::Count);
        let all_block = Policy {
            handshake: Action::Block,
            data: Action::Block,
            port: Action::Block,
        };
        assert_eq!(
            all_block.action(BiteKind::Sweep),
            Action::Count,
            "sweeps never block"
        );
    }

    #[test]
    fn a_full_bucket_keeps_working() {
        // One bucket: more triples than ways still never loses the newest.
        let t = ProofTable::new(PROOF_WAYS, 1);
        for i in 0..20u8 {
            t.prove(&addr(i), &addr(100), 80, 5, 10, false);
        }
        assert_eq!(
            t.prove(&addr(19), &addr(100), 443, 5, 10, false),
            Some((80, false))
        );
    }
}
