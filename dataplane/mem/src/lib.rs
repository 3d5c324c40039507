//! Memory for the packet path: cache prefetch hints and tables backed by
//! huge pages.
//!
//! The dataplane's big tables (flows, blocks, liveness) are far larger than
//! the caches, so every lookup is a cold miss, and with 4 KiB pages a TLB
//! miss too. Two levers cut that cost: look the keys of a whole burst up
//! *ahead* (a prefetch per key, so the misses overlap instead of queueing),
//! and back the tables with 2 MiB pages (one TLB entry covers 512 times as
//! much). Both need `unsafe` (an intrinsic, a pointer cast over a mapping),
//! which the dataplane crate forbids; this crate holds the two blocks.
//!
//! ```
//! use baitwall_mem::{HugeSlice, prefetch};
//!
//! let mut table = HugeSlice::new(1 << 16, 0u64);
//! table[7] = 42;
//! prefetch(&table[7]); // a hint: never faults, changes nothing
//! assert_eq!(table[7], 42);
//! assert_eq!(table.len(), 1 << 16);
//! ```

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// Asks the CPU to bring the cache line holding `item` into every cache
/// level. A hint only: it never faults, blocks or changes memory, and a
/// no-op on targets without a prefetch instruction.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let p: *const T = item;
        // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it
        // is in the x86_64 baseline, so the target feature is always on).
        // A prefetch does not access memory architecturally: it cannot
        // fault even on a bad address, and here the address comes from a
        // live reference anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = item;
    }
}

/// A fixed-length slice of `T` in an anonymous mapping the kernel is asked
/// to back with transparent huge pages (`MADV_HUGEPAGE`). Every element is
/// written at creation, so the pages are faulted in then and not on the
/// packet path. When the mapping cannot be made (or `T`'s alignment exceeds
/// a page) it falls back to an ordinary heap slice: slower, never wrong.
pub struct HugeSlice<T: Copy> {
    storage: Storage<T>,
}

enum Storage<T: Copy> {
    Mapped {
        map: memmap2::MmapMut,
        len: usize,
        huge: bool,
        _t: PhantomData<T>,
    },
    Heap(Box<[T]>),
}

/// True when transparent huge pages back advised regions (mode `always` or
/// `madvise`), read from sysfs; false without THP.
pub fn thp_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.contains("[always]") || mode.contains("[madvise]"))
}

/// The size of a page, which an anonymous mapping is aligned to at least.
const PAGE: usize = 4096;

#[allow(unsafe_code)]
impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> Self {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        let mappable = bytes > 0 && std::mem::align_of::<T>() <= PAGE && len < isize::MAX as usize;
        let storage = match mappable.then(|| memmap2::MmapMut::map_anon(bytes)) {
            Some(Ok(mut map)) => {
                // Transparent huge pages in `madvise` mode (Debian's default)
                // back only the regions that ask. In `never` mode the kernel
                // still accepts the advice but ignores it, so the mode is
                // read too: `huge_pages` reports what the slice can get.
                let huge = map.advise(memmap2::Advice::HugePage).is_ok() && thp_enabled();
                let base = map.as_mut_ptr().cast::<T>();
                for i in 0..len {
                    // SAFETY: the mapping is `len * size_of::<T>()` bytes,
                    // writable, and aligned to a page, which is at least
                    // `T`'s alignment (checked above), so `base.add(i)` for
                    // `i < len` is in bounds and aligned. `write` does not
                    // read or drop the old bytes, and `T: Copy` has no drop.
                    unsafe { base.add(i).write(fill) };
                }
                Storage::Mapped {
                    map,
                    len,
                    huge,
                    _t: PhantomData,
                }
            }
            _ => Storage::Heap(vec![fill; len].into_boxed_slice()),
        };
        HugeSlice { storage }
    }

    /// True when the kernel accepted the huge-page advice for this slice.
    pub fn huge_pages(&self) -> bool {
        matches!(self.storage, Storage::Mapped { huge: true, .. })
    }
}

#[allow(unsafe_code)]
impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Mapped { map, len, .. } => {
                // SAFETY: the mapping holds `len` initialised `T`s, aligned
                // (see `new`); it lives as long as `self`, and the shared
                // borrow of `self` keeps it from being written meanwhile.
                unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<T>(), *len) }
            }
            Storage::Heap(b) => b,
        }
    }
}

#[allow(unsafe_code)]
impl<T: Copy> DerefMut for HugeSlice<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.storage {
            Storage::Mapped { map, len, .. } => {
                // SAFETY: as in `deref`; the exclusive borrow of `self` makes
                // this the only reference into the mapping.
                unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr().cast::<T>(), *len) }
            }
            Storage::Heap(b) => b,
        }
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeSlice")
            .field("len", &self.len())
            .field("huge_pages", &self.huge_pages())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Copy, Clone, Debug, PartialEq)]
    #[repr(C, align(64))]
    struct Line([u32; 16]);

    #[test]
    fn every_element_holds_the_fill_and_keeps_what_is_written() {
        let mut s = HugeSlice::new(100_000, Line([7; 16]));
        assert!(s.iter().all(|l| *l == Line([7; 16])));
        s[99_999].0[3] = 9;
        assert_eq!(s[99_999].0[3], 9);
        assert_eq!(s.as_ptr() as usize % 64, 0);
    }

    #[test]
    fn empty_and_overaligned_fall_back_to_the_heap() {
        let e = HugeSlice::new(0, 1u8);
        assert!(e.is_empty() && !e.huge_pages());
        #[derive(Copy, Clone)]
        #[repr(align(8192))]
        struct Big(u8);
        let b = HugeSlice::new(3, Big(5));
        assert!(b.iter().all(|x| x.0 == 5) && !b.huge_pages());
    }

    #[test]
    fn a_large_table_asks_for_huge_pages() {
        let s = HugeSlice::new(8 << 20, 0u8);
        // Debian's THP mode is `madvise`: the advice is taken.
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        let asked = mode.contains("[madvise]") || mode.contains("[always]");
        // Where THP is off (`[never]`, or no THP at all) the slice must not
        // claim huge pages: the kernel accepts the advice and ignores it.
        assert_eq!(s.huge_pages(), asked, "THP mode {mode:?}");
        assert_eq!(s.len(), 8 << 20);
        assert!(s.iter().all(|b| *b == 0));
    }
}
