//! The worker's copy of the block state: exact sources and CIDR prefixes
//! (IPv4 and IPv6) with absolute expiry times, and an allowlist that wins
//! over every block, including an allowed address inside a blocked range.
//!
//! Exact addresses and prefixes live in one [`PrefixTable`] (a cache line
//! per bucket, prefetchable), keyed by network and length, with the lists
//! of prefix lengths in use beside it: a lookup is one probe for the exact
//! address and one per prefix length that can cover it. IPv4 and IPv6
//! lengths are kept apart, so an IPv4 source never probes an IPv6 length
//! (operators use a handful of each: /32, /24, /64, /48). Before any probe,
//! a [`BlockSummary`] (a bit per IPv4 /24 and per hashed IPv6 /48, small
//! enough to stay in cache) clears most sources that no block covers.
//! Capacity is fixed at start and allocated then, so an insert never
//! allocates; when a table is full the insert is refused and the caller
//! counts it. Expired entries stop matching at once and are swept out
//! between bursts, a few buckets at a time ([`Blocklist::maintain`]), which
//! also sheds the summary's stale bits once per pass over the table.
//!
//! Times are Unix seconds; 0 means "never expires".

use super::block_summary::BlockSummary;
use super::prefix_table::PrefixTable;
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

/// The IPv4-mapped space `::ffff:0:0/96`, where IPv4 addresses live.
const V4_MAPPED: u128 = 0xffff << 32;

/// True when `net/len` lies inside the IPv4-mapped space.
fn is_v4(net: u128, len: u8) -> bool {
    len >= 96 && net >> 32 == V4_MAPPED >> 32
}

/// Prefix lengths in use, longest first, with how many prefixes have each.
#[derive(Default)]
struct Lengths(Vec<(u8, u32)>);

impl Lengths {
    fn add(&mut self, len: u8) {
        match self.0.iter_mut().find(|(l, _)| *l == len) {
            Some((_, n)) => *n += 1,
            None => {
                self.0.push((len, 1));
                self.0.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
            }
        }
    }

    fn remove(&mut self, len: u8) {
        if let Some(i) = self.0.iter().position(|(l, _)| *l == len)
            && let Some(entry) = self.0.get_mut(i)
        {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.0.remove(i);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.iter().map(|(l, _)| *l)
    }
}

/// One set of addresses and prefixes with expiries.
struct Table {
    entries: PrefixTable,
    /// Lengths of IPv4 prefixes (inside `::ffff:0:0/96`).
    v4_lengths: Lengths,
    /// Lengths of every other prefix (IPv6, and the few that cover the
    /// IPv4-mapped space from outside it, such as `::/0`).
    v6_lengths: Lengths,
    exact: usize,
    exact_capacity: usize,
    prefix_capacity: usize,
    /// Where blocks may be (the block table only: allows are consulted
    /// only for a source a block covers).
    summary: Option<BlockSummary>,
    /// The next bucket the incremental sweep visits.
    cursor: usize,
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

/// How many prefix lengths a burst's prefetch covers per source: beyond
/// these, a lookup's further probes are paid when it runs.
const PREFETCH_LENGTHS: usize = 4;

impl Table {
    fn new(exact_capacity: usize, prefix_capacity: usize, seed: u64, summarised: bool) -> Self {
        Table {
            entries: PrefixTable::new(exact_capacity + prefix_capacity, seed),
            v4_lengths: Lengths::default(),
            v6_lengths: Lengths::default(),
            exact: 0,
            exact_capacity,
            prefix_capacity,
            summary: summarised.then(|| BlockSummary::new(exact_capacity + prefix_capacity)),
            cursor: 0,
        }
    }

    fn lengths_mut(&mut self, net: u128, len: u8) -> &mut Lengths {
        if is_v4(net, len) {
            &mut self.v4_lengths
        } else {
            &mut self.v6_lengths
        }
    }

    /// The prefix lengths that can cover `a`: an IPv4 address can only be
    /// inside an IPv4 prefix or an IPv6 one of at most 96 bits; an IPv6
    /// address never inside an IPv4 prefix.
    #[inline]
    fn lengths_for(&self, a: u128) -> impl Iterator<Item = u8> + '_ {
        let v4 = a >> 32 == V4_MAPPED >> 32;
        let v4_lengths = v4.then(|| self.v4_lengths.iter()).into_iter().flatten();
        let v6_lengths = self.v6_lengths.iter().filter(move |&l| !v4 || l <= 96);
        v4_lengths.chain(v6_lengths)
    }

    /// The prefix lengths that can cover `a` and that the summary does not
    /// cover: for an IPv4 address, IPv4 prefixes shorter than /16 and IPv6
    /// ones of at most 96 bits; for an IPv6 one, IPv6 prefixes shorter
    /// than /48.
    #[inline]
    fn unsummarised_lengths_for(&self, v4: bool) -> impl Iterator<Item = u8> + '_ {
        let v4_lengths = v4
            .then(|| self.v4_lengths.iter())
            .into_iter()
            .flatten()
            .filter(|&l| !BlockSummary::covers(true, l));
        let v6_lengths = self.v6_lengths.iter().filter(move |&l| {
            if v4 {
                l <= 96
            } else {
                !BlockSummary::covers(false, l)
            }
        });
        v4_lengths.chain(v6_lengths)
    }

    /// False when the summary rules every summarised block out for `a`.
    #[inline]
    fn may_hold(&self, v4: bool, a: u128) -> bool {
        self.summary.as_ref().is_none_or(|s| s.may_hold(v4, a))
    }

    fn insert(&mut self, prefix: Prefix, expiry: Expiry) -> Result<(), BlocklistError> {
        let (net, len) = (prefix.network(), prefix.len());
        let held = self.entries.get(net, len).is_some();
        if !held {
            if len == 128 && self.exact >= self.exact_capacity {
                return Err(BlocklistError::ExactFull);
            }
            if len < 128 && self.entries.len() - self.exact >= self.prefix_capacity {
                return Err(BlocklistError::PrefixFull);
            }
        }
        let full = if len == 128 {
            BlocklistError::ExactFull
        } else {
            BlocklistError::PrefixFull
        };
        // The table is sized for both capacities, so this only refuses
        // what the checks above already would.
        if self.entries.insert(net, len, expiry).map_err(|_| full)? {
            if len == 128 {
                self.exact += 1;
            } else {
                self.lengths_mut(net, len).add(len);
            }
            if let Some(s) = self.summary.as_mut() {
                s.add(is_v4(net, len), net, len);
            }
        }
        Ok(())
    }

    fn remove(&mut self, prefix: Prefix) -> bool {
        let (net, len) = (prefix.network(), prefix.len());
        if !self.entries.remove(net, len) {
            return false;
        }
        if len == 128 {
            self.exact -= 1;
        } else {
            self.lengths_mut(net, len).remove(len);
        }
        true
    }

    #[inline]
    fn matches(&self, addr: &[u8; 16], now_s: u32) -> bool {
        let a = u128::from_be_bytes(*addr);
        let v4 = a >> 32 == V4_MAPPED >> 32;
        let probe = |len: u8| {
            self.entries
                .get(a & mask(len), len)
                .is_some_and(|e| live(e, now_s))
        };
        if !self.may_hold(v4, a) {
            return self.unsummarised_lengths_for(v4).any(probe);
        }
        probe(128) || self.lengths_for(a).any(probe)
    }

    /// First step of a lookup ahead: prefetches the summary's word for
    /// `addr` (without a summary, the table's lines at once).
    #[inline]
    fn prefetch(&self, addr: &[u8; 16]) {
        let a = u128::from_be_bytes(*addr);
        let v4 = a >> 32 == V4_MAPPED >> 32;
        match &self.summary {
            Some(s) => s.prefetch(v4, a),
            None => self.prefetch_entries(addr),
        }
    }

    /// Second step: prefetches the table lines the lookup will read, the
    /// summary's word being in cache by now: none when it rules every
    /// summarised block out (the common case), but for the lengths it
    /// does not cover.
    #[inline]
    fn prefetch_entries(&self, addr: &[u8; 16]) {
        let a = u128::from_be_bytes(*addr);
        let v4 = a >> 32 == V4_MAPPED >> 32;
        if self.may_hold(v4, a) {
            self.entries.prefetch(a, 128);
            for len in self.lengths_for(a).take(PREFETCH_LENGTHS) {
                self.entries.prefetch(a & mask(len), len);
            }
        } else {
            for len in self.unsummarised_lengths_for(v4).take(PREFETCH_LENGTHS) {
                self.entries.prefetch(a & mask(len), len);
            }
        }
    }

    /// One step of the incremental sweep: drops the expired entries of the
    /// next `buckets` buckets and notes the live ones in the summary being
    /// rebuilt; at the end of the table the rebuilt summary goes into
    /// force. Returns how many entries it dropped.
    fn maintain(&mut self, buckets: usize, now_s: u32) -> usize {
        let Table {
            entries,
            v4_lengths,
            v6_lengths,
            exact,
            summary,
            cursor,
            ..
        } = self;
        let end = cursor.saturating_add(buckets).min(entries.buckets());
        let removed = entries.retain_range(*cursor..end, |net, len, e| {
            let keep = live(e, now_s);
            let v4 = is_v4(net, len);
            if keep {
                if let Some(s) = summary.as_mut() {
                    s.note(v4, net, len);
                }
            } else if len == 128 {
                *exact -= 1;
            } else if v4 {
                v4_lengths.remove(len);
            } else {
                v6_lengths.remove(len);
            }
            keep
        });
        *cursor = end;
        if *cursor >= entries.buckets() {
            *cursor = 0;
            if let Some(s) = summary.as_mut() {
                s.finish_cycle();
            }
        }
        removed
    }

    /// Drops every expired entry at once and rebuilds the summary; returns
    /// how many. Allocates nothing: the per-length counts are rebuilt on
    /// the stack. Walks the whole table: for tools and tests; workers use
    /// [`Table::maintain`].
    fn sweep(&mut self, now_s: u32) -> usize {
        let before = self.len();
        // Finish the summary's cycle in progress from the top, so that the
        // rebuilt summary holds exactly what is live now.
        self.cursor = 0;
        self.maintain(usize::MAX, now_s);
        let mut counts = [[0u32; 129]; 2];
        let mut exact = 0;
        self.entries.retain(|net, len, e| {
            let keep = live(e, now_s);
            if keep && len == 128 {
                exact += 1;
            } else if keep
                && let Some(c) = counts
                    .get_mut(usize::from(is_v4(net, len)))
                    .and_then(|c| c.get_mut(usize::from(len)))
            {
                *c += 1;
            }
            keep
        });
        self.exact = exact;
        for (family, lengths) in [&mut self.v6_lengths, &mut self.v4_lengths]
            .into_iter()
            .enumerate()
        {
            lengths.0.clear();
            for len in (0..=128u8).rev() {
                if let Some(&n) = counts.get(family).and_then(|c| c.get(usize::from(len)))
                    && n > 0
                {
                    lengths.0.push((len, n));
                }
            }
        }
        before - self.len()
    }

    fn len(&self) -> usize {
        self.entries.len()
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
            blocks: Table::new(exact, prefixes, 0x626c_6f63, true),
            allows: Table::new(
                exact.min(1 << 16),
                prefixes.min(1 << 16),
                0x616c_6c6f,
                false,
            ),
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

    /// Prefetches what a [`Blocklist::standing`] of `addr` reads first:
    /// the summary (a hint, made a burst ahead; nothing when nothing is
    /// blocked). Then [`Blocklist::prefetch_entries`].
    #[inline]
    pub fn prefetch(&self, addr: &[u8; 16]) {
        if self.blocks.len() != 0 {
            self.blocks.prefetch(addr);
        }
    }

    /// Prefetches the table lines a [`Blocklist::standing`] of `addr` will
    /// read, when the summary (prefetched by [`Blocklist::prefetch`]) says
    /// there may be a block.
    #[inline]
    pub fn prefetch_entries(&self, addr: &[u8; 16]) {
        if self.blocks.len() != 0 {
            self.blocks.prefetch_entries(addr);
        }
    }

    /// Between bursts: sweeps the next `buckets` buckets of the block and
    /// allow tables for expired entries (see [`Table::maintain`]); returns
    /// how many it dropped.
    pub fn maintain(&mut self, buckets: usize, now_s: u32) -> usize {
        self.blocks.maintain(buckets, now_s) + self.allows.maintain(buckets, now_s)
    }

    /// Bytes of memory the block and allow tables hold.
    pub fn memory(&self) -> usize {
        let summary = self.blocks.summary.as_ref().map_or(0, BlockSummary::memory);
        self.blocks.entries.memory() + self.allows.entries.memory() + summary
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
    pub fn exact_blocks(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        self.blocks
            .entries
            .iter()
            .filter(|&(_, len, _)| len == 128)
            .map(|(net, _, _)| net.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

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
    fn short_ipv6_prefixes_cover_ipv4_sources_and_long_ones_never_do() {
        let mut b = Blocklist::new(16, 16);
        b.block(p("2001:db8::/32"), 0).unwrap();
        assert_eq!(b.standing(&a("192.0.2.1"), 1), Standing::Clear);
        b.block(p("::ffff:0:0/96"), 0).unwrap();
        assert_eq!(b.standing(&a("192.0.2.1"), 1), Standing::Blocked);
        assert!(b.unblock(p("::ffff:0:0/96")));
        b.block(p("::/0"), 0).unwrap();
        assert_eq!(b.standing(&a("192.0.2.1"), 1), Standing::Blocked);
        assert_eq!(b.standing(&a("2001:db9::1"), 1), Standing::Blocked);
        // The sweep rebuilds both length lists from what it keeps.
        b.block(p("198.51.100.0/24"), 5).unwrap();
        assert_eq!(b.sweep(10), 1);
        assert_eq!(b.standing(&a("198.51.100.1"), 11), Standing::Blocked);
        assert!(b.unblock(p("::/0")));
        assert_eq!(b.standing(&a("198.51.100.1"), 11), Standing::Clear);
        assert_eq!(b.standing(&a("2001:db8::1"), 11), Standing::Blocked);
    }

    #[test]
    fn the_incremental_sweep_drops_expired_blocks_a_few_buckets_at_a_time() {
        let mut b = Blocklist::new(64, 16);
        for i in 0..40u8 {
            b.block(Prefix::host(a(&format!("192.0.2.{i}"))), 50)
                .unwrap();
        }
        b.block(p("203.0.113.0/24"), 50).unwrap();
        b.block(Prefix::host(a("198.51.100.7")), 0).unwrap();
        let mut dropped = 0;
        for _ in 0..1000 {
            dropped += b.maintain(3, 60);
        }
        assert_eq!(dropped, 41);
        assert_eq!(b.blocks(), 1);
        assert!(b.blocks.v4_lengths.0.is_empty());
        assert_eq!(b.standing(&a("198.51.100.7"), 60), Standing::Blocked);
        assert_eq!(b.standing(&a("192.0.2.7"), 60), Standing::Clear);
        // A new block in a /24 the summary has shed is found at once.
        b.block(Prefix::host(a("192.0.2.9")), 0).unwrap();
        assert_eq!(b.standing(&a("192.0.2.9"), 60), Standing::Blocked);
    }

    proptest::proptest! {
        /// Whatever is blocked, allowed, removed and swept, the standing of
        /// an address is what a linear scan of the live entries says.
        #[test]
        fn standing_agrees_with_a_linear_scan(
            ops in proptest::collection::vec((0u8..6, 0u8..4, 0u32..64, 0u8..4, 0u32..3), 1..200),
            probes in proptest::collection::vec((0u8..4, 0u32..64), 1..64),
        ) {
            // Addresses from a few /24s and /48s so that blocks overlap.
            let addr = |fam: u8, x: u32| -> u128 {
                match fam {
                    0 | 1 => u128::from_be_bytes(Ipv4Addr::new(10, (x >> 4) as u8, 0, (x & 15) as u8).to_ipv6_mapped().octets()),
                    _ => (0x2001_0db8u128 << 96) | (u128::from(x >> 4) << 80) | u128::from(x & 15),
                }
            };
            let lens = |fam: u8, l: u8| -> u8 {
                match (fam, l) {
                    (0 | 1, 0) => 128, (0 | 1, 1) => 120, (0 | 1, 2) => 112, (0 | 1, _) => 96,
                    (_, 0) => 128, (_, 1) => 64, (_, 2) => 48, _ => 32,
                }
            };
            let mut b = Blocklist::new(32, 16);
            // Every entry ever made (the sweep may or may not have dropped
            // an expired one: it no longer matters to a lookup), and the
            // clock, which never goes back.
            let mut model: Vec<(bool, Prefix, u32)> = Vec::new();
            let mut latest = 0;
            for (op, fam, x, l, e) in ops {
                let prefix = Prefix::from_parts(addr(fam, x), lens(fam, l));
                let expiry = [0, 20, 40][e as usize];
                let allow = op == 2;
                match op {
                    0..=2 => {
                        let r = if allow { b.allow(prefix, expiry) } else { b.block(prefix, expiry) };
                        if r.is_ok() {
                            model.retain(|(al, q, _)| !(*al == allow && *q == prefix));
                            model.push((allow, prefix, expiry));
                        }
                    }
                    3 => {
                        let held = model.iter().find(|(al, q, _)| !*al && *q == prefix);
                        let removed = b.unblock(prefix);
                        // An expired entry may have been swept already.
                        if held.is_none_or(|(_, _, ex)| live(*ex, latest)) {
                            proptest::prop_assert_eq!(removed, held.is_some());
                        }
                        model.retain(|(al, q, _)| *al || *q != prefix);
                    }
                    _ => {
                        latest = latest.max([10, 30, 50][e as usize]);
                        b.maintain(1 + x as usize % 8, latest);
                    }
                }
            }
            for (fam, x) in probes {
                let a = addr(fam, x).to_be_bytes();
                for now in [10, 30, 50].into_iter().filter(|&t| t >= latest) {
                    let covers = |allow: bool| model.iter().any(|(al, q, ex)| *al == allow && q.contains(&a) && live(*ex, now));
                    let want = match (covers(false), covers(true)) {
                        (false, _) => Standing::Clear,
                        (true, true) => Standing::Allowed,
                        (true, false) => Standing::Blocked,
                    };
                    proptest::prop_assert_eq!(b.standing(&a, now), want);
                }
            }
        }
    }

    #[test]
    fn the_default_sizes_fit_in_64_mib() {
        let b = Blocklist::new(1_000_000, 100_000);
        assert!(b.memory() <= 64 << 20, "{} bytes", b.memory());
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
        assert!(b.blocks.v4_lengths.0.is_empty() && b.blocks.v6_lengths.0.is_empty());
    }
}
