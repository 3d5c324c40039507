//! Weak proofs and their guard: one weak ticket per source a day.
//!
//! A bite without a timestamp echo (a client stack without RFC 7323
//! timestamps, or a decoy whose persona has no TCP clock) proves receipt
//! with the cookie alone: a blind guess verifies with probability 2^-31
//! (two epochs' keys). A spoofer at line rate makes 2^40 guesses a day, so
//! weak proofs need a guard; this is it.
//!
//! Every source (an IPv4 address; an IPv6 /64, the unit a block takes) has
//! one **weak ticket** per day. A wrong cookie in its name, and a weak
//! blocking bite, each spend it; a weak bite latches only if it spent a
//! ticket that was still unspent, and a weak handshake counts towards a
//! port bite only while the ticket is unspent. The ticket is one byte in a
//! table shared by every worker, spent with one atomic swap, so exactly one
//! event a day, on whichever worker, finds it unspent.
//!
//! **The bound.** To get a chosen innocent latched on a weak proof, a
//! spoofer's guess must be the first weak event in the innocent's name that
//! day and be right: any earlier guess, being wrong, spends the ticket.
//!
//! ```text
//! P(innocent latched by weak proofs, per day) <= 1 x 2^-31 (two epochs' keys) <= 2^-30
//! ```
//!
//! ([`daily_odds_log2`], checked in a unit test.) The race between workers
//! cannot add tries: the swap is atomic, and a guess evaluated on another
//! worker at the same instant either spent the ticket first (the bite is
//! then not honoured) or came after.
//!
//! **What it never does.** It never touches a strong proof (`engine::tsproof`):
//! no traffic in a source's name, or in its neighbours', keeps a biter whose
//! stack echoes timestamps from being latched. It is per source, not per
//! /24, so it cannot shield a neighbour. It cannot be evicted: a slot
//! shared by two sources (a keyed hash with a key drawn at start, which no
//! configuration sets) only spends both their tickets, which can make a
//! weak biter escape, never an innocent blocked. Under a flood of random
//! sources every ticket is spent and weak bites are reported, not latched,
//! until the day turns: the safe way to degrade. Tags cycle through 255
//! days; a slot untouched for exactly a multiple of that reads as spent.
//!
//! The price, written down: a worm without timestamps that sends a wrong
//! cookie first (`nmap -sA`), or whose address someone spoofs, is reported
//! rather than latched that day (`weak_denied`).

use std::hash::Hasher;
use std::sync::atomic::{AtomicU8, Ordering};

use siphasher::sip::SipHasher13;

/// Slots in the table (one byte each: 16 MiB, shared by every worker).
pub const SLOTS: usize = 1 << 24;

/// One ticket per source a day, shared by every worker.
pub struct WeakTickets {
    slots: Box<[AtomicU8]>,
    mask: usize,
    key: (u64, u64),
}

/// log2 of the daily chance that weak proofs get a chosen innocent latched:
/// `tries` weak events that can find the ticket unspent, each a guess of one
/// of `keys` epochs' 32-bit cookies.
pub fn daily_odds_log2(tries: u64, keys: u64) -> f64 {
    ((tries * keys) as f64).log2() - 32.0
}

impl WeakTickets {
    /// A table of `slots` (a power of two at least 1) keyed by `key`.
    pub fn new(slots: usize, key: (u64, u64)) -> Self {
        let n = slots.max(1).next_power_of_two();
        WeakTickets {
            slots: (0..n).map(|_| AtomicU8::new(0)).collect(),
            mask: n - 1,
            key,
        }
    }

    /// A table keyed at random (from the OS), the way the dataplane makes it.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
        if read.is_err() {
            let seed = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                1u8,
            );
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
        }
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&bytes[..8]);
        b.copy_from_slice(&bytes[8..]);
        Self::new(SLOTS, (u64::from_le_bytes(a), u64::from_le_bytes(b)))
    }

    /// The source's unit: an IPv4 address, an IPv6 /64.
    fn unit(src: &[u8; 16]) -> u128 {
        let a = u128::from_be_bytes(*src);
        let v4 = baitwall_channel::is_v4_mapped(src);
        if v4 { a } else { a & !((1u128 << 64) - 1) }
    }

    #[inline]
    fn slot(&self, src: &[u8; 16]) -> Option<&AtomicU8> {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u128(Self::unit(src));
        self.slots.get(h.finish() as usize & self.mask)
    }

    /// Today's tag, 1..=255 (0: a slot never used).
    #[inline]
    fn tag(now_s: u32) -> u8 {
        ((now_s / 86_400) % 255) as u8 + 1
    }

    /// Spends `src`'s ticket for the day of `now_s`; true when it was
    /// still unspent (this event is the day's one weak try).
    #[inline]
    pub fn spend(&self, src: &[u8; 16], now_s: u32) -> bool {
        let tag = Self::tag(now_s);
        self.slot(src)
            .is_some_and(|s| s.swap(tag, Ordering::Relaxed) != tag)
    }

    /// True while `src`'s ticket for the day of `now_s` is unspent.
    #[inline]
    pub fn unspent(&self, src: &[u8; 16], now_s: u32) -> bool {
        let tag = Self::tag(now_s);
        self.slot(src)
            .is_some_and(|s| s.load(Ordering::Relaxed) != tag)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn v4(last: u8) -> [u8; 16] {
        std::net::Ipv4Addr::new(203, 0, 113, last)
            .to_ipv6_mapped()
            .octets()
    }

    const DAY: u32 = 86_400;
    const T: u32 = 20_000 * DAY + 3_600;

    #[test]
    fn the_daily_odds_of_an_innocent_latched_by_weak_proofs_are_at_most_two_to_the_minus_thirty() {
        // One try a day (the first weak event), two epochs' keys.
        assert!(daily_odds_log2(1, 2) <= -30.0);
        assert_eq!(daily_odds_log2(1, 2), -31.0);
        // Without the guard: 14.88 Mpps for a day is 2^40 tries.
        let line_rate_day = 14_880_000u64 * 86_400;
        assert!(
            daily_odds_log2(line_rate_day, 2) > 9.0,
            "the guard is needed"
        );
    }

    #[test]
    fn one_ticket_a_day_per_source_whatever_its_neighbours_do() {
        let t = WeakTickets::new(1 << 16, (1, 2));
        assert!(t.unspent(&v4(66), T));
        assert!(t.spend(&v4(66), T), "the first weak event gets the ticket");
        assert!(!t.spend(&v4(66), T + 60));
        assert!(!t.unspent(&v4(66), T + 60));
        // A neighbour in the same /24 keeps its own.
        assert!(t.unspent(&v4(67), T));
        // The next day, a new ticket.
        assert!(t.unspent(&v4(66), T + DAY));
        assert!(t.spend(&v4(66), T + DAY));
    }

    #[test]
    fn an_ipv6_source_spends_its_64s_ticket() {
        let t = WeakTickets::new(1 << 16, (3, 4));
        let a: std::net::Ipv6Addr = "2001:db8:66::66".parse().unwrap();
        let b: std::net::Ipv6Addr = "2001:db8:66::77".parse().unwrap();
        let c: std::net::Ipv6Addr = "2001:db8:67::66".parse().unwrap();
        assert!(t.spend(&a.octets(), T));
        assert!(!t.unspent(&b.octets(), T), "same /64: the block's unit");
        assert!(t.unspent(&c.octets(), T));
    }

    #[test]
    fn racing_workers_find_the_ticket_unspent_exactly_once() {
        let t = std::sync::Arc::new(WeakTickets::new(1 << 10, (5, 6)));
        let wins: usize = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..1000).filter(|_| t.spend(&v4(9), T)).count())
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, 1);
    }

    #[test]
    fn a_shared_slot_only_ever_spends_tickets() {
        // One slot: every source shares it.
        let t = WeakTickets::new(1, (7, 8));
        assert!(t.spend(&v4(1), T));
        assert!(
            !t.unspent(&v4(2), T),
            "spent for all: no latch, never one more"
        );
        assert!(!t.spend(&v4(2), T));
    }
}
