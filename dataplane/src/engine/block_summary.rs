//! A summary of where blocks are, small enough to stay in cache: a bitmap
//! of hashed IPv4 /24s and one of hashed IPv6 /48s, about 16 bits per entry
//! the table can hold (at most 2 MiB and 512 KiB: 1.1M entries fill about
//! 6% of the bits). A clear bit says no summarised block covers any address
//! of that /24 (/48), so most benign sources are cleared by one cached read
//! instead of the two cold lines of the blocklist's table (its exact probe
//! and its prefix probe).
//!
//! What it does not cover: IPv4 prefixes shorter than /16 and IPv6 ones
//! shorter than /48 (including those of at most 96 bits, such as `::/0`,
//! which cover IPv4 addresses); the blocklist probes those lengths whatever
//! the summary says. IPv4 prefixes from /16 to /23 set the bit of every /24
//! they cover (at most 256).
//!
//! A bit is set when a block is added and never cleared by a removal (that
//! would need a count per bit): a stale bit costs a probe, never a miss.
//! Stale bits are shed by rebuilding: the blocklist's incremental sweep
//! marks every live entry it visits in a second pair of bitmaps ([`note`]),
//! additions mark both pairs, and when the sweep has visited the whole
//! table ([`finish_cycle`]) the second pair becomes the summary and the
//! first is cleared for the next cycle (one 2.5 MiB clear per sweep cycle,
//! between bursts). A removed block's bit is gone after at most two cycles.
//!
//! [`note`]: BlockSummary::note
//! [`finish_cycle`]: BlockSummary::finish_cycle

use baitwall_mem::{HugeSlice, prefetch};

/// Most bits of the IPv4 map (2 MiB).
const V4_BITS_MAX: usize = 1 << 24;
/// Most bits of the IPv6 map (512 KiB).
const V6_BITS_MAX: usize = 1 << 22;
/// Bits per entry the table holds: about 6% of them set when it is full.
const BITS_PER_ENTRY: usize = 16;
/// The shortest IPv4 prefix summarised (on the 128-bit space: /16).
const V4_SHORTEST: u8 = 96 + 16;
/// The shortest IPv6 prefix summarised.
const V6_SHORTEST: u8 = 48;

/// Which /24s and /48s may hold a block.
pub struct BlockSummary {
    /// `[summary in force, summary being rebuilt]`, IPv4 then IPv6.
    v4: [HugeSlice<u64>; 2],
    v6: [HugeSlice<u64>; 2],
    /// Which of each pair is in force (0 or 1).
    current: usize,
    /// log2 of each map's bits.
    v4_shift: u32,
    v6_shift: u32,
}

/// Fibonacci hashing of `key` to `bits_log2` bits: one multiply, and it
/// spreads consecutive /24s and /48s.
#[inline]
fn fib(key: u64, bits_log2: u32) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits_log2)) as usize
}

#[inline]
fn get(map: &[u64], bit: usize) -> bool {
    map.get(bit / 64)
        .is_some_and(|w| w & (1 << (bit % 64)) != 0)
}

#[inline]
fn set(map: &mut [u64], bit: usize) {
    if let Some(w) = map.get_mut(bit / 64) {
        *w |= 1 << (bit % 64);
    }
}

impl BlockSummary {
    /// A summary for a table of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        let bits = |max: usize| {
            capacity
                .saturating_mul(BITS_PER_ENTRY)
                .next_power_of_two()
                .clamp(1 << 10, max)
        };
        let (v4_bits, v6_bits) = (bits(V4_BITS_MAX), bits(V6_BITS_MAX));
        BlockSummary {
            v4: [
                HugeSlice::new(v4_bits / 64, 0),
                HugeSlice::new(v4_bits / 64, 0),
            ],
            v6: [
                HugeSlice::new(v6_bits / 64, 0),
                HugeSlice::new(v6_bits / 64, 0),
            ],
            current: 0,
            v4_shift: v4_bits.trailing_zeros(),
            v6_shift: v6_bits.trailing_zeros(),
        }
    }

    /// Bytes the summary holds (both pairs of maps).
    pub fn memory(&self) -> usize {
        2 * ((1usize << self.v4_shift) + (1usize << self.v6_shift)) / 8
    }

    /// True when the summary covers prefixes of `len` bits (`v4`: inside
    /// the IPv4-mapped space).
    pub fn covers(v4: bool, len: u8) -> bool {
        if v4 {
            len >= V4_SHORTEST
        } else {
            len >= V6_SHORTEST
        }
    }

    /// The IPv4 /24 of an IPv4-mapped address (or network), as a bit index.
    #[inline]
    fn v4_index(&self, a: u128) -> usize {
        fib(u64::from((a as u32) >> 8), self.v4_shift)
    }

    /// The /48 of an IPv6 address (or network), as a bit index.
    #[inline]
    fn v6_index(&self, a: u128) -> usize {
        fib((a >> 80) as u64, self.v6_shift)
    }

    /// Records a block on `net/len` (IPv4 as `::ffff:a.b.c.d/96+n`), in
    /// the summary in force and in the one being rebuilt.
    pub fn add(&mut self, v4: bool, net: u128, len: u8) {
        for which in 0..2 {
            self.mark(which, v4, net, len);
        }
    }

    /// A sweep saw the live block `net/len`: it goes into the summary
    /// being rebuilt.
    pub fn note(&mut self, v4: bool, net: u128, len: u8) {
        self.mark(1 - self.current, v4, net, len);
    }

    fn mark(&mut self, which: usize, v4: bool, net: u128, len: u8) {
        if !Self::covers(v4, len) {
            return;
        }
        if v4 {
            // Every /24 the prefix covers: one, or up to 256 for a /16.
            let first = (net as u32) >> 8;
            let count = 1u32 << (24 - u32::from(len.saturating_sub(96)).min(24));
            for k in 0..count {
                let bit = fib(u64::from(first.wrapping_add(k)), self.v4_shift);
                if let Some(map) = self.v4.get_mut(which) {
                    set(map, bit);
                }
            }
        } else {
            let bit = self.v6_index(net);
            if let Some(map) = self.v6.get_mut(which) {
                set(map, bit);
            }
        }
    }

    /// The sweep has visited every entry since the last cycle: the rebuilt
    /// summary goes into force, and the old one is cleared to be rebuilt.
    pub fn finish_cycle(&mut self) {
        let old = self.current;
        self.current = 1 - old;
        for map in [self.v4.get_mut(old), self.v6.get_mut(old)]
            .into_iter()
            .flatten()
        {
            map.fill(0);
        }
    }

    /// False when no block the summary covers can hold address `a`.
    #[inline]
    pub fn may_hold(&self, v4: bool, a: u128) -> bool {
        if v4 {
            self.v4
                .get(self.current)
                .is_none_or(|m| get(m, self.v4_index(a)))
        } else {
            self.v6
                .get(self.current)
                .is_none_or(|m| get(m, self.v6_index(a)))
        }
    }

    /// Prefetches the word [`BlockSummary::may_hold`] of `a` reads.
    #[inline]
    pub fn prefetch(&self, v4: bool, a: u128) {
        let (map, bit) = if v4 {
            (self.v4.get(self.current), self.v4_index(a))
        } else {
            (self.v6.get(self.current), self.v6_index(a))
        };
        if let Some(w) = map.and_then(|m| m.get(bit / 64)) {
            prefetch(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> u128 {
        u128::from_be_bytes(std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets())
    }

    #[test]
    fn an_exact_block_marks_its_24_and_a_short_prefix_every_24_it_covers() {
        let mut s = BlockSummary::new(1 << 16);
        assert!(!s.may_hold(true, v4([192, 0, 2, 66])));
        s.add(true, v4([192, 0, 2, 66]), 128);
        assert!(s.may_hold(true, v4([192, 0, 2, 1])), "same /24");
        s.add(true, v4([10, 20, 0, 0]), 96 + 16);
        assert!(s.may_hold(true, v4([10, 20, 255, 7])));
        assert!(s.may_hold(true, v4([10, 20, 0, 7])));
        // Other /24s are clear (but for the odd hash collision: count them).
        let set = (0..=255u8)
            .filter(|&c| s.may_hold(true, v4([172, 16, c, 1])))
            .count();
        assert!(set < 16, "{set} of 256 unrelated /24s look blocked");
        assert!(
            !BlockSummary::covers(true, 96 + 15),
            "a /15 is not summarised"
        );
    }

    #[test]
    fn ipv6_blocks_of_48_or_longer_mark_their_48() {
        let mut s = BlockSummary::new(1 << 16);
        let a: u128 = 0x2001_0db8_0bad_0001_0000_0000_0000_0001;
        s.add(false, a, 128);
        assert!(s.may_hold(false, a ^ 0xffff));
        assert!(!s.may_hold(false, a ^ (1 << 90)));
        assert!(BlockSummary::covers(false, 48) && !BlockSummary::covers(false, 47));
    }

    #[test]
    fn a_rebuild_keeps_what_was_noted_or_added_and_sheds_the_rest() {
        let mut s = BlockSummary::new(1 << 16);
        let (kept, gone, late) = (v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), v4([3, 3, 3, 3]));
        s.add(true, kept, 128);
        s.add(true, gone, 128);
        // Added during a cycle, a block is in the rebuilt summary whatever
        // that cycle's sweep saw.
        s.finish_cycle();
        assert!(s.may_hold(true, kept) && s.may_hold(true, gone));
        // The next cycle sees only `kept` (`gone` expired); `late` is added meanwhile.
        s.note(true, kept, 128);
        s.add(true, late, 128);
        assert!(s.may_hold(true, gone), "stale until the cycle ends");
        s.finish_cycle();
        assert!(s.may_hold(true, kept) && s.may_hold(true, late));
        assert!(!s.may_hold(true, gone));
        // The next cycle starts from a cleared map: `late` expired unseen.
        s.note(true, kept, 128);
        s.finish_cycle();
        assert!(s.may_hold(true, kept) && !s.may_hold(true, late));
    }
}
