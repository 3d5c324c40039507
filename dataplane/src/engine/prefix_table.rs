//! A fixed-capacity hash table of prefixes (a 128-bit network and a length)
//! to expiry times, one cache line per bucket: the blocklist's storage.
//!
//! Why not hashbrown, which the rest of the engine uses: a worker looks a
//! whole burst's sources up *ahead* of deciding them, by prefetching the
//! line each lookup will read, and hashbrown exposes neither where a key's
//! probe starts nor a way to prefetch it. It also reads two lines per hit
//! (the control bytes, then the slot); a bucket here holds three keys with
//! their expiries in one line, so a lookup that is not displaced reads one.
//!
//! Layout: `n` buckets of three slots, `n` chosen for a load of at most one
//! half at full capacity (a displaced key is rare: a home bucket holds more
//! than three keys about 7% of the time at that load). The home bucket is
//! picked by multiplying the hash into `0..n` (Lemire's range reduction),
//! so `n` need not be a power of two and the memory stays near what the
//! capacity needs. A full home bucket sends an insert on to the next
//! bucket, which sets the home's *overflowed* bit; a lookup goes on past a
//! bucket only while that bit is set. Removing leaves the bits (a lookup may
//! walk one bucket too far, never miss a key) and [`PrefixTable::retain`]
//! recomputes them.

use std::hash::BuildHasher;

use baitwall_mem::{HugeSlice, prefetch};
use foldhash::fast::FixedState;

/// Slots per bucket.
const SLOTS: usize = 3;
/// Bit of [`Bucket::used`]: some key homed here lives in a later bucket.
const OVERFLOWED: u8 = 1 << 7;

/// Three prefixes and their expiries: one cache line.
#[derive(Copy, Clone, Default)]
#[repr(C, align(64))]
struct Bucket {
    nets: [u128; SLOTS],
    expiry: [u32; SLOTS],
    lens: [u8; SLOTS],
    /// Bits 0..3: slot in use; bit 7: [`OVERFLOWED`].
    used: u8,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

impl Bucket {
    #[inline]
    fn find(&self, net: u128, len: u8) -> Option<usize> {
        (0..SLOTS).find(|&s| {
            self.used & (1 << s) != 0
                && self.lens.get(s) == Some(&len)
                && self.nets.get(s) == Some(&net)
        })
    }

    /// Slot `s`'s key and expiry: `(net, len, expiry)`.
    fn entry(&self, s: usize) -> (u128, u8, u32) {
        (
            self.nets.get(s).copied().unwrap_or(0),
            self.lens.get(s).copied().unwrap_or(0),
            self.expiry.get(s).copied().unwrap_or(0),
        )
    }

    fn free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|&s| self.used & (1 << s) == 0)
    }
}

/// Prefixes to expiries, fixed capacity (see the module doc).
pub struct PrefixTable {
    buckets: HugeSlice<Bucket>,
    hasher: FixedState,
    len: usize,
    capacity: usize,
}

/// Why an insert was refused: the table holds `capacity` keys.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Full;

impl PrefixTable {
    /// A table for `capacity` prefixes, allocated (and faulted in) now.
    pub fn new(capacity: usize, seed: u64) -> Self {
        // At most half the slots in use when full.
        let n = (capacity * 2).div_ceil(SLOTS).max(1);
        PrefixTable {
            buckets: HugeSlice::new(n, Bucket::default()),
            hasher: FixedState::with_seed(seed),
            len: 0,
            capacity,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory the table holds.
    pub fn memory(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// The bucket `(net, len)`'s probe starts at.
    #[inline]
    fn home(&self, net: u128, len: u8) -> usize {
        let h = self.hasher.hash_one((net, len));
        // Lemire's multiply-shift: a uniform index in 0..n without a division.
        ((u128::from(h) * self.buckets.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }

    /// Where `(net, len)` is held: bucket and slot.
    #[inline]
    fn locate(&self, net: u128, len: u8) -> Option<(usize, usize)> {
        let mut i = self.home(net, len);
        for _ in 0..self.buckets.len() {
            let b = self.buckets.get(i)?;
            if let Some(s) = b.find(net, len) {
                return Some((i, s));
            }
            if b.used & OVERFLOWED == 0 {
                return None;
            }
            i = self.next(i);
        }
        None
    }

    /// The expiry of `(net, len)`, if held.
    #[inline]
    pub fn get(&self, net: u128, len: u8) -> Option<u32> {
        let (i, s) = self.locate(net, len)?;
        self.buckets.get(i)?.expiry.get(s).copied()
    }

    /// Prefetches the line a lookup of `(net, len)` starts with (a hint).
    #[inline]
    pub fn prefetch(&self, net: u128, len: u8) {
        if let Some(b) = self.buckets.get(self.home(net, len)) {
            prefetch(b);
        }
    }

    /// Sets `(net, len)`'s expiry, adding it if new (true). Refused when the
    /// table is full and the key is new.
    pub fn insert(&mut self, net: u128, len: u8, expiry: u32) -> Result<bool, Full> {
        if let Some((i, s)) = self.locate(net, len) {
            if let Some(e) = self.buckets.get_mut(i).and_then(|b| b.expiry.get_mut(s)) {
                *e = expiry;
            }
            return Ok(false);
        }
        if self.len >= self.capacity {
            return Err(Full);
        }
        // Below capacity at most half the slots are used: a free one exists.
        let mut i = self.home(net, len);
        for _ in 0..self.buckets.len() {
            let Some(b) = self.buckets.get_mut(i) else {
                break;
            };
            if let Some(s) = b.free_slot()
                && let (Some(n), Some(e), Some(l)) =
                    (b.nets.get_mut(s), b.expiry.get_mut(s), b.lens.get_mut(s))
            {
                (*n, *e, *l) = (net, expiry, len);
                b.used |= 1 << s;
                self.len += 1;
                return Ok(true);
            }
            b.used |= OVERFLOWED;
            i = self.next(i);
        }
        Err(Full)
    }

    /// Removes `(net, len)`; false if it was not held.
    pub fn remove(&mut self, net: u128, len: u8) -> bool {
        let Some((i, s)) = self.locate(net, len) else {
            return false;
        };
        if let Some(b) = self.buckets.get_mut(i) {
            b.used &= !(1 << s);
            self.len -= 1;
        }
        true
    }

    /// Every key held: `(net, len, expiry)`.
    pub fn iter(&self) -> impl Iterator<Item = (u128, u8, u32)> + '_ {
        self.buckets.iter().flat_map(|b| {
            (0..SLOTS)
                .filter(move |&s| b.used & (1 << s) != 0)
                .map(move |s| b.entry(s))
        })
    }

    /// Buckets in the table (for sweeping it a range at a time).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Keeps the keys of buckets `range` (cut at the table's end) that `keep` accepts; returns how
    /// many it removed. A step of an incremental sweep: the overflowed bits
    /// stay as they are (a lookup may walk a bucket too far, never miss).
    pub fn retain_range(
        &mut self,
        range: std::ops::Range<usize>,
        mut keep: impl FnMut(u128, u8, u32) -> bool,
    ) -> usize {
        let mut removed = 0;
        let end = range.end.min(self.buckets.len());
        let start = range.start.min(end);
        for b in self.buckets.get_mut(start..end).into_iter().flatten() {
            for s in 0..SLOTS {
                if b.used & (1 << s) != 0 {
                    let (net, len, e) = b.entry(s);
                    if !keep(net, len, e) {
                        b.used &= !(1 << s);
                        removed += 1;
                    }
                }
            }
        }
        self.len -= removed;
        removed
    }

    /// Keeps the keys `keep` accepts and recomputes the overflowed bits, so
    /// removals stop lengthening probes. Walks the whole table: between
    /// bursts, rarely.
    pub fn retain(&mut self, keep: impl FnMut(u128, u8, u32) -> bool) {
        self.retain_range(0..self.buckets.len(), keep);
        for b in self.buckets.iter_mut() {
            b.used &= !OVERFLOWED;
        }
        // Every key sits in its home or past a run of full buckets from it:
        // mark that run again.
        for i in 0..self.buckets.len() {
            for s in 0..SLOTS {
                let Some(b) = self.buckets.get(i) else { break };
                if b.used & (1 << s) == 0 {
                    continue;
                }
                let (net, len, _) = b.entry(s);
                let mut j = self.home(net, len);
                while j != i {
                    if let Some(passed) = self.buckets.get_mut(j) {
                        passed.used |= OVERFLOWED;
                    }
                    j = self.next(j);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn insert_get_refresh_remove() {
        let mut t = PrefixTable::new(8, 1);
        assert_eq!(t.insert(7, 128, 100), Ok(true));
        assert_eq!(
            t.insert(7, 120, 200),
            Ok(true),
            "another length is another key"
        );
        assert_eq!(t.insert(7, 128, 300), Ok(false), "a refresh");
        assert_eq!(t.get(7, 128), Some(300));
        assert_eq!(t.get(7, 120), Some(200));
        assert_eq!(t.get(8, 128), None);
        assert_eq!(t.len(), 2);
        assert!(t.remove(7, 128));
        assert!(!t.remove(7, 128));
        assert_eq!(t.get(7, 128), None);
        assert_eq!(t.get(7, 120), Some(200));
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_keeps_refreshing_old_ones() {
        let mut t = PrefixTable::new(3, 1);
        for k in 0..3 {
            t.insert(k, 128, 1).unwrap();
        }
        assert_eq!(t.insert(99, 128, 1), Err(Full));
        assert_eq!(t.insert(2, 128, 5), Ok(false));
        assert_eq!(t.get(2, 128), Some(5));
        assert!((0..3).all(|k| t.get(k, 128).is_some()));
    }

    #[test]
    fn a_bucket_line_is_64_bytes_and_memory_stays_small_at_full_size() {
        let t = PrefixTable::new(1_100_000, 1);
        assert!(t.memory() <= 48 << 20, "{} bytes", t.memory());
    }

    #[test]
    fn a_range_sweep_removes_only_in_its_range_and_keeps_lookups_whole() {
        let mut t = PrefixTable::new(30, 5);
        for k in 0..30u128 {
            t.insert(k, 128, k as u32).unwrap();
        }
        let half = t.buckets() / 2;
        let removed = t.retain_range(0..half, |_, _, e| e % 2 == 1)
            + t.retain_range(half..t.buckets() + 7, |_, _, e| e % 2 == 1);
        assert_eq!(removed, 15);
        assert_eq!(t.len(), 15);
        for k in 0..30u128 {
            assert_eq!(t.get(k, 128).is_some(), k % 2 == 1, "key {k}");
        }
    }

    #[test]
    fn displaced_keys_survive_removals_before_them_and_a_retain() {
        // One bucket's worth of keys and more, in a tiny table: most are displaced.
        let mut t = PrefixTable::new(12, 3);
        for k in 0..12u128 {
            t.insert(k << 64, 64, k as u32).unwrap();
        }
        for k in (0..12u128).step_by(2) {
            assert!(t.remove(k << 64, 64));
        }
        for k in (1..12u128).step_by(2) {
            assert_eq!(t.get(k << 64, 64), Some(k as u32));
        }
        t.retain(|_, _, e| e % 3 != 0);
        for k in 0..12u128 {
            let expect = (k % 2 == 1 && k % 3 != 0).then_some(k as u32);
            assert_eq!(t.get(k << 64, 64), expect, "key {k}");
        }
    }

    proptest! {
        /// Any sequence of inserts, removes and retains agrees with a HashMap.
        #[test]
        fn agrees_with_a_hashmap(ops in proptest::collection::vec((0u8..4, 0u128..40, 0u8..3, any::<u32>()), 0..400)) {
            let mut t = PrefixTable::new(24, 9);
            let mut m: HashMap<(u128, u8), u32> = HashMap::new();
            for (op, net, len, e) in ops {
                let len = 126 + len;
                match op {
                    0 | 1 => {
                        let r = t.insert(net, len, e);
                        if m.contains_key(&(net, len)) || m.len() < 24 {
                            prop_assert_eq!(r.is_ok(), true);
                            m.insert((net, len), e);
                        } else {
                            prop_assert_eq!(r, Err(Full));
                        }
                    }
                    2 => prop_assert_eq!(t.remove(net, len), m.remove(&(net, len)).is_some()),
                    _ => {
                        t.retain(|_, _, x| x % 2 == 0);
                        m.retain(|_, x| *x % 2 == 0);
                    }
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for net in 0..40u128 {
                for len in 126..129u8 {
                    prop_assert_eq!(t.get(net, len), m.get(&(net, len)).copied());
                }
            }
            let mut all: Vec<_> = t.iter().map(|(n, l, e)| ((n, l), e)).collect();
            all.sort_unstable();
            let mut want: Vec<_> = m.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }
}
