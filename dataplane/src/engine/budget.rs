//! Event budgets per source prefix: no source crowds another's events out.
//!
//! Every event a worker reports about a source, but a bite that latched,
//! spends a token of that source's budget for its kind: 10 a second, bursts
//! of 50, per IPv4 /24 or IPv6 /48 (the unit one party usually holds) and
//! per kind (bites, sweeps, marks, hosts). A party with its own /48 that
//! completes handshakes with decoys as fast as it can (strong proofs, so
//! real ones) gets 10 bite events a second on each worker, not the ring.
//! Latched bites are never budgeted: each source latches once, and each
//! must reach control (`worker::hand_over_events` retries them).
//!
//! The buckets live in a direct-mapped table keyed by a keyed hash drawn at
//! start: two prefixes that share a bucket share a budget (each gets
//! less), and nobody can choose to collide with a given prefix.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

/// Events a second, per prefix and kind, on one worker.
pub const RATE: u64 = 10;
/// Burst per prefix and kind.
pub const BURST: u64 = 50;

/// Kinds of event with budgets of their own.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    /// Bites that did not latch (alerts, counted handshakes).
    Bite = 1,
    /// Sweeps.
    Sweep,
    /// Sampled marks.
    Mark,
    /// Learned services and live hosts.
    Host,
}

#[derive(Copy, Clone, Debug, Default)]
struct Bucket {
    milli: u64,
    last_ms: u64,
    /// The (prefix, class) key the bucket last served, so a new owner
    /// starts full rather than with another's debt.
    key: u64,
}

/// One worker's budgets.
pub struct PrefixBudgets {
    buckets: Box<[Bucket]>,
    mask: usize,
    hasher: FixedState,
}

impl PrefixBudgets {
    /// A table of `slots` buckets (a power of two), keyed by `seed`.
    pub fn new(slots: usize, seed: u64) -> Self {
        let n = slots.max(1).next_power_of_two();
        PrefixBudgets {
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            mask: n - 1,
            hasher: FixedState::with_seed(seed),
        }
    }

    /// The source's unit: its IPv4 /24, its IPv6 /48.
    fn prefix(src: &[u8; 16]) -> u128 {
        let a = u128::from_be_bytes(*src);
        let v4 = baitwall_channel::is_v4_mapped(src);
        if v4 {
            a & !0xff
        } else {
            a & !((1u128 << 80) - 1)
        }
    }

    /// Takes a token for an event of `class` about `src` at `now_ms`.
    pub fn take(&mut self, src: &[u8; 16], class: Class, now_ms: u64) -> bool {
        let key = self.hasher.hash_one((Self::prefix(src), class as u8)) | 1;
        let Some(b) = self.buckets.get_mut(key as usize & self.mask) else {
            return false;
        };
        if b.key != key {
            *b = Bucket {
                milli: BURST * 1000,
                last_ms: now_ms,
                key,
            };
        }
        let elapsed = now_ms.saturating_sub(b.last_ms);
        b.milli = (b.milli + elapsed * RATE).min(BURST * 1000);
        b.last_ms = b.last_ms.max(now_ms);
        if b.milli >= 1000 {
            b.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn a(s: &str) -> [u8; 16] {
        match s.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v) => v.octets(),
        }
    }

    #[test]
    fn a_flooding_prefix_spends_its_own_budget_only() {
        let mut b = PrefixBudgets::new(1 << 12, 1);
        let flood = (0..1000)
            .filter(|i| b.take(&a(&format!("2001:db8:bad:{:x}::1", i % 60)), Class::Bite, 0));
        assert_eq!(flood.count() as u64, BURST, "one /48, one budget");
        assert!(b.take(&a("2001:db8:900::1"), Class::Bite, 0), "another /48");
        assert!(b.take(&a("192.0.2.66"), Class::Bite, 0));
        // Its own other kinds are budgeted apart.
        assert!(b.take(&a("2001:db8:bad::2"), Class::Sweep, 0));
        // And it refills at the rate.
        assert!(!b.take(&a("2001:db8:bad::2"), Class::Bite, 0));
        assert!(b.take(&a("2001:db8:bad::2"), Class::Bite, 1000 / RATE));
    }

    #[test]
    fn ipv4_sources_share_their_24() {
        let mut b = PrefixBudgets::new(1 << 12, 2);
        let n = (0..200u8)
            .filter(|i| b.take(&a(&format!("203.0.113.{i}")), Class::Mark, 5))
            .count();
        assert_eq!(n as u64, BURST);
        assert!(b.take(&a("203.0.114.1"), Class::Mark, 5));
    }
}
