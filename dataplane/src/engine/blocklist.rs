//! The worker's copy of the block state: exact sources and CIDR prefixes
//! (IPv4 and IPv6) with absolute expiry times, and an allowlist that wins
//! over every block, including an allowed address inside a blocked range.
//!
//! Exact addresses live in one hash set, prefixes in one hash map keyed by
//! (length, network) plus the sorted list of lengths in use, so a lookup is
//! one probe for the exact set and one per prefix length present (operators
//! use a handful: /32, /24, /64, /48). Capacity is fixed at start and the
//! maps are allocated for it then, so an insert never reallocates; when a
//! table is full the insert is refused and the caller counts it. Expired
//! entries stop matching at once and are swept out between bursts.
//!
//! Times are Unix seconds; 0 means "never expires".

use hashbrown::HashMap;

use super::space::Prefix;

/// An entry's expiry (Unix seconds; 0 = permanent).
pub type Expiry = u32;

/// Why an insert was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BlocklistError {
    /// The exact-address table is full.
    ExactFull,
    /// The prefix table is full.
    PrefixFull,
}

/// What the block state says about a source.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not blocked.
    Clear,
    /// Blocked (and not allowlisted).
    Blocked,
    /// Covered by a block, but allowlisted: allowed.
    Allowed,
}

/// One set of addresses and prefixes with expiries.
struct Table {
    exact: HashMap<[u8; 16], Expiry>,
    prefixes: HashMap<(u8, u128), Expiry>,
    /// Prefix lengths in use, longest first, with how many prefixes have each.
    lengths: Vec<(u8, u32)>,
    exact_capacity: usize,
    prefix_capacity: usize,
}

fn live(expiry: Expiry, now_s: u32) -> bool {
    expiry == 0 || now_s < expiry
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

impl Table {
    fn new(exact_capacity: usize, prefix_capacity: usize) -> Self {
        Table {
            exact: HashMap::with_capacity(exact_capacity),
            prefixes: HashMap::with_capacity(prefix_capacity),
            lengths: Vec::with_capacity(129),
            exact_capacity,
            prefix_capacity,
        }
    }

    fn insert(&mut self, prefix: Prefix, expiry: Expiry) -> Result<(), BlocklistError> {
        let (net, len) = (prefix.network(), prefix.len());
        if len == 128 {
            let key = net.to_be_bytes();
            if !self.exact.contains_key(&key) && self.exact.len() >= self.exact_capacity {
                return Err(BlocklistError::ExactFull);
            }
            self.exact.insert(key, expiry);
            return Ok(());
        }
        if !self.prefixes.contains_key(&(len, net)) {
            if self.prefixes.len() >= self.prefix_capacity {
                return Err(BlocklistError::PrefixFull);
            }
            match self.lengths.iter_mut().find(|(l, _)| *l == len) {
                Some((_, n)) => *n += 1,
                None => {
                    self.lengths.push((len, 1));
                    self.lengths
                        .sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
                }
            }
        }
        self.prefixes.insert((len, net), expiry);
        Ok(())
    }

    fn remove(&mut self, prefix: Prefix) -> bool {
        let (net, len) = (prefix.network(), prefix.len());
        if len == 128 {
            return self.exact.remove(&net.to_be_bytes()).is_some();
        }
        if self.prefixes.remove(&(len, net)).is_none() {
            return false;
        }
        if let Some(i) = self.lengths.iter().position(|(l, _)| *l == len)
            && let Some(entry) = self.lengths.get_mut(i)
        {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.lengths.remove(i);
            }
        }
        true
    }

    #[inline]
    fn matches(&self, addr: &[u8; 16], now_s: u32) -> bool {
        if self.exact.get(addr).is_some_and(|e| live(*e, now_s)) {
            return true;
        }
        if self.lengths.is_empty() {
            return false;
        }
        let a = u128::from_be_bytes(*addr);
        self.lengths.iter().any(|(len, _)| {
            self.prefixes
                .get(&(*len, a & mask(*len)))
                .is_some_and(|e| live(*e, now_s))
        })
    }

    /// Drops expired entries; returns how many. Allocates nothing: the
    /// per-length counts are rebuilt on the stack.
    fn sweep(&mut self, now_s: u32) -> usize {
        let before = self.len();
        self.exact.retain(|_, e| live(*e, now_s));
        self.prefixes.retain(|_, e| live(*e, now_s));
        let mut counts = [0u32; 129];
        for (len, _) in self.prefixes.keys() {
            if let Some(c) = counts.get_mut(usize::from(*len)) {
                *c += 1;
            }
        }
        self.lengths.clear();
        for len in (0..=128u8).rev() {
            if let Some(&n) = counts.get(usize::from(len))
                && n > 0
            {
                self.lengths.push((len, n));
            }
        }
        before - self.len()
    }

    fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }
}

/// The block state a worker enforces.
pub struct Blocklist {
    blocks: Table,
    allows: Table,
}

impl Blocklist {
    /// Tables for `exact` addresses and `prefixes` prefixes (the allowlist
    /// gets the same capacity), allocated now.
    pub fn new(exact: usize, prefixes: usize) -> Self {
        Blocklist {
            blocks: Table::new(exact, prefixes),
            allows: Table::new(exact.min(1 << 16), prefixes.min(1 << 16)),
        }
    }

    /// Blocks `prefix` until `expiry` (replacing an earlier expiry: a
    /// refresh can extend or shorten it).
    pub fn block(&mut self, prefix: Prefix, expiry: Expiry) -> Result<(), BlocklistError> {
        self.blocks.insert(prefix, expiry)
    }

    /// Removes a block; false if there was none.
    pub fn unblock(&mut self, prefix: Prefix) -> bool {
        self.blocks.remove(prefix)
    }

    /// Allows `prefix` until `expiry`.
    pub fn allow(&mut self, prefix: Prefix, expiry: Expiry) -> Result<(), BlocklistError> {
        self.allows.insert(prefix, expiry)
    }

    /// Removes an allow entry.
    pub fn disallow(&mut self, prefix: Prefix) -> bool {
        self.allows.remove(prefix)
    }

    /// The standing of `addr` at `now_s`. The allowlist is only consulted for
    /// addresses a block covers.
    #[inline]
    pub fn standing(&self, addr: &[u8; 16], now_s: u32) -> Standing {
        if self.blocks.len() == 0 || !self.blocks.matches(addr, now_s) {
            return Standing::Clear;
        }
        if self.allows.matches(addr, now_s) {
            Standing::Allowed
        } else {
            Standing::Blocked
        }
    }

    /// True when `addr` is allowlisted.
    pub fn is_allowed(&self, addr: &[u8; 16], now_s: u32) -> bool {
        self.allows.matches(addr, now_s)
    }

    /// Drops expired blocks and allows; returns how many.
    pub fn sweep(&mut self, now_s: u32) -> usize {
        self.blocks.sweep(now_s) + self.allows.sweep(now_s)
    }

    /// Blocks held (exact + prefixes, including expired ones not yet swept).
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Exact blocked addresses (for reports).
    pub fn exact_blocks(&self) -> impl Iterator<Item = &[u8; 16]> {
        self.blocks.exact.keys()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::net::IpAddr;

    fn a(s: &str) -> [u8; 16] {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            IpAddr::V6(v) => v.octets(),
        }
    }
    fn p(s: &str) -> Prefix {
        Prefix::from_net(s.parse().unwrap())
    }

    #[test]
    fn exact_and_cidr_blocks_match_what_they_cover() {
        let mut b = Blocklist::new(16, 16);
        b.block(Prefix::host(a("192.0.2.66")), 0).unwrap();
        b.block(p("203.0.113.0/24"), 0).unwrap();
        b.block(p("2001:db8:bad::/48"), 0).unwrap();
        assert_eq!(b.standing(&a("192.0.2.66"), 10), Standing::Blocked);
        assert_eq!(b.standing(&a("192.0.2.67"), 10), Standing::Clear);
        assert_eq!(b.standing(&a("203.0.113.200"), 10), Standing::Blocked);
        assert_eq!(b.standing(&a("203.0.114.1"), 10), Standing::Clear);
        assert_eq!(b.standing(&a("2001:db8:bad:1::7"), 10), Standing::Blocked);
        assert_eq!(b.standing(&a("2001:db8:bae::7"), 10), Standing::Clear);
        // An IPv4 /24 never matches IPv6 space and vice versa.
        assert_eq!(b.standing(&a("::cb00:7105"), 10), Standing::Clear);
    }

    #[test]
    fn ipv6_sources_blocked_by_their_64() {
        let mut b = Blocklist::new(16, 16);
        b.block(p("2001:db8:1:2::/64"), 0).unwrap();
        assert_eq!(
            b.standing(&a("2001:db8:1:2:dead:beef::1"), 1),
            Standing::Blocked
        );
        assert_eq!(b.standing(&a("2001:db8:1:3::1"), 1), Standing::Clear);
    }

    #[test]
    fn an_allowed_address_inside_a_blocked_range_is_allowed() {
        let mut b = Blocklist::new(16, 16);
        b.block(p("198.51.100.0/24"), 0).unwrap();
        b.allow(Prefix::host(a("198.51.100.7")), 0).unwrap();
        assert_eq!(b.standing(&a("198.51.100.7"), 1), Standing::Allowed);
        assert_eq!(b.standing(&a("198.51.100.8"), 1), Standing::Blocked);
        b.allow(p("198.51.100.128/25"), 0).unwrap();
        assert_eq!(b.standing(&a("198.51.100.200"), 1), Standing::Allowed);
        assert!(b.disallow(p("198.51.100.128/25")));
        assert_eq!(b.standing(&a("198.51.100.200"), 1), Standing::Blocked);
    }

    #[test]
    fn expiry_and_refresh_on_an_injected_clock() {
        let mut b = Blocklist::new(16, 16);
        let worm = a("192.0.2.66");
        b.block(Prefix::host(worm), 100).unwrap();
        assert_eq!(b.standing(&worm, 99), Standing::Blocked);
        assert_eq!(
            b.standing(&worm, 100),
            Standing::Clear,
            "expired at its absolute time"
        );
        // A refresh (the worm bit again) extends it.
        b.block(Prefix::host(worm), 500).unwrap();
        assert_eq!(b.standing(&worm, 400), Standing::Blocked);
        b.block(p("203.0.113.0/24"), 50).unwrap();
        assert_eq!(b.sweep(60), 1);
        assert_eq!(b.blocks(), 1);
        assert_eq!(b.sweep(600), 1);
        assert_eq!(b.blocks(), 0);
        // Permanent blocks never expire.
        b.block(Prefix::host(worm), 0).unwrap();
        assert_eq!(b.standing(&worm, u32::MAX), Standing::Blocked);
    }

    #[test]
    fn a_full_table_refuses_without_losing_what_it_holds() {
        let mut b = Blocklist::new(2, 1);
        b.block(Prefix::host(a("192.0.2.1")), 0).unwrap();
        b.block(Prefix::host(a("192.0.2.2")), 0).unwrap();
        assert_eq!(
            b.block(Prefix::host(a("192.0.2.3")), 0),
            Err(BlocklistError::ExactFull)
        );
        // Refreshing an entry already held is not an insert.
        b.block(Prefix::host(a("192.0.2.2")), 77).unwrap();
        b.block(p("10.0.0.0/8"), 0).unwrap();
        assert_eq!(
            b.block(p("10.1.0.0/16"), 0),
            Err(BlocklistError::PrefixFull)
        );
        assert_eq!(b.standing(&a("192.0.2.1"), 1), Standing::Blocked);
        assert_eq!(b.standing(&a("192.0.2.3"), 1), Standing::Clear);
        assert_eq!(b.standing(&a("10.200.0.1"), 1), Standing::Blocked);
    }

    #[test]
    fn unblock_removes_exact_and_prefix_and_their_lengths() {
        let mut b = Blocklist::new(16, 16);
        b.block(p("203.0.113.0/24"), 0).unwrap();
        b.block(p("198.51.100.0/24"), 0).unwrap();
        assert!(b.unblock(p("203.0.113.0/24")));
        assert!(!b.unblock(p("203.0.113.0/24")));
        assert_eq!(b.standing(&a("203.0.113.1"), 1), Standing::Clear);
        assert_eq!(b.standing(&a("198.51.100.1"), 1), Standing::Blocked);
        assert!(b.unblock(p("198.51.100.0/24")));
        assert!(b.blocks.lengths.is_empty());
    }
}
