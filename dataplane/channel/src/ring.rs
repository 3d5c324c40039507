//! A single-producer single-consumer ring of [`Record`]s, over memory that
//! may be shared between processes.
//!
//! The producer owns `tail` and the slots in `[tail, head + capacity)`; the
//! consumer owns `head` and the slots in `[head, tail)`. A producer writes
//! slots, then publishes them all with one `Release` store of `tail`; the
//! consumer reads `tail` with `Acquire`, reads the slots, and frees them all
//! with one `Release` store of `head`, which the producer reads with
//! `Acquire` before reusing a slot (a long drain also frees as it goes,
//! every [`RELEASE_EVERY`] records). Indexes are 64-bit and only grow, so
//! wraparound of the slot array is `index & mask` and the counters never
//! wrap in practice. Head, tail and the drop counter sit on separate cache
//! lines. Nothing here blocks, allocates or makes a system call: a full ring
//! makes `push` return false, and the producer counts the drop.
//!
//! The peer's index is never trusted: it lives in memory another process
//! can write, so each end checks what it reads (a head may only move
//! forward, up to what was published; a tail only forward, by at most the
//! capacity). A value that breaks those rules is ignored, the ring then
//! looks full (or empty) to this end, and [`Producer::faulted`] /
//! [`Consumer::faulted`] say so, so the owner can end the session rather
//! than read or overwrite slots it does not own.
//!
//! The same code runs over a shared-memory mapping ([`crate::region`]) and,
//! under `--cfg loom`, over loom's model-checked atomics and cells
//! (`tests/loom.rs`), which explores every interleaving of a producer and a
//! consumer.

// This module reads and writes ring slots through raw pointers into memory
// another process shares; the accesses are justified block by block.
#![allow(unsafe_code)]

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::{RECORD_SIZE, Record};

/// The control block of one ring: three counters on their own cache lines.
#[repr(C)]
pub struct RingControl {
    /// Next index the consumer will read (written by the consumer).
    pub head: Padded,
    /// Next index the producer will write (written by the producer).
    pub tail: Padded,
    /// Records the producer dropped because the ring was full.
    pub dropped: Padded,
    /// A value the consumer publishes for the producer (on a rules ring:
    /// the last rule generation the worker has in force).
    pub applied: Padded,
}

/// An atomic counter alone on a 64-byte cache line.
#[repr(C, align(64))]
pub struct Padded {
    /// The counter.
    pub value: AtomicU64,
}

impl Padded {
    /// A counter at zero.
    pub fn new() -> Self {
        Padded {
            value: AtomicU64::new(0),
        }
    }
}

impl Default for Padded {
    fn default() -> Self {
        Padded::new()
    }
}

/// Bytes of a ring's control block.
pub const CONTROL_SIZE: usize = 4 * 64;

/// Where a ring's slots live.
pub trait Slots: Send {
    /// Number of slots (a power of two).
    fn capacity(&self) -> u64;
    /// Writes slot `index & mask`.
    ///
    /// # Safety
    /// Only the producer may call this, for an index it owns (see the module doc).
    unsafe fn write(&self, index: u64, record: &Record);
    /// Reads slot `index & mask`.
    ///
    /// # Safety
    /// Only the consumer may call this, for an index it owns (see the module doc).
    unsafe fn read(&self, index: u64) -> Record;
}

/// Slots in raw memory (a shared mapping).
pub struct RawSlots {
    base: *mut u8,
    mask: u64,
}

// SAFETY: a RawSlots points into a mapping that outlives it (the region
// handle that created it keeps the mapping alive), and the SPSC protocol
// gives each slot to one side at a time, so moving it to another thread is
// sound.
unsafe impl Send for RawSlots {}

impl RawSlots {
    /// Slots at `base`, `capacity` (a power of two) records long.
    ///
    /// # Safety
    /// `base` must be 64-byte aligned, valid for `capacity * 64` bytes of
    /// reads and writes for as long as the `RawSlots` lives, and used by one
    /// producer and one consumer following the protocol.
    pub unsafe fn new(base: *mut u8, capacity: u64) -> Self {
        RawSlots {
            base,
            mask: capacity.saturating_sub(1),
        }
    }
}

impl Slots for RawSlots {
    #[inline]
    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    unsafe fn write(&self, index: u64, record: &Record) {
        let offset = ((index & self.mask) as usize) * RECORD_SIZE;
        // SAFETY: `offset + 64` is within the `capacity * 64` bytes the
        // constructor's contract makes valid, and the caller owns this slot,
        // so no one else reads or writes it now.
        unsafe {
            std::ptr::copy_nonoverlapping(record.0.as_ptr(), self.base.add(offset), RECORD_SIZE);
        }
    }

    #[inline]
    unsafe fn read(&self, index: u64) -> Record {
        let offset = ((index & self.mask) as usize) * RECORD_SIZE;
        let mut out = Record::default();
        // SAFETY: as in `write`: in bounds, and owned by the caller (the
        // producer published it with a Release store the caller acquired).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(offset), out.0.as_mut_ptr(), RECORD_SIZE);
        }
        out
    }
}

/// The producing end of a ring.
pub struct Producer<S: Slots> {
    control: *const RingControl,
    slots: S,
    tail: u64,
    cached_head: u64,
    published: u64,
    faulted: bool,
    keep: KeepAlive,
}

/// The consuming end of a ring.
pub struct Consumer<S: Slots> {
    control: *const RingControl,
    slots: S,
    head: u64,
    cached_tail: u64,
    released: u64,
    release_every: u64,
    faulted: bool,
    keep: KeepAlive,
}

/// How many records [`Consumer::pop`] reads before it frees them on its own.
pub const RELEASE_EVERY: u64 = 256;

/// Whatever keeps a ring's memory alive (the mapping, or a test's heap block).
pub type KeepAlive = std::sync::Arc<dyn Send + Sync>;

// SAFETY: the control block lives in memory kept alive by `keep`, its
// fields are atomics, and each end touches only what the protocol gives it;
// an end can move to another thread (a worker, the control loop).
unsafe impl<S: Slots> Send for Producer<S> {}
// SAFETY: as for `Producer`.
unsafe impl<S: Slots> Send for Consumer<S> {}

impl<S: Slots> Producer<S> {
    /// The producer of the ring at `control` with `slots`.
    ///
    /// # Safety
    /// `control` must point to a `RingControl` valid while `keep` lives, and
    /// there must be exactly one producer for this ring.
    pub unsafe fn new(control: *const RingControl, slots: S, keep: KeepAlive) -> Self {
        // SAFETY: valid per the contract.
        let ctl = unsafe { &*control };
        let tail = ctl.tail.value.load(Ordering::Acquire);
        let head = ctl.head.value.load(Ordering::Acquire);
        // Both indexes come from shared memory: a pair that cannot be
        // (more published than the ring holds, or a head past the tail)
        // starts the end faulted, and it never writes.
        let faulted = head > tail || tail - head > slots.capacity();
        Producer {
            control,
            slots,
            tail,
            cached_head: head.min(tail),
            published: tail,
            faulted,
            keep,
        }
    }

    fn ctl(&self) -> &RingControl {
        // SAFETY: `control` is valid while `keep` lives (constructor contract),
        // and `keep` lives as long as `self`.
        unsafe { &*self.control }
    }

    /// Writes `record` into the next slot, not yet visible to the consumer;
    /// false when the ring is full (the caller decides whether to count a drop).
    #[inline]
    pub fn push(&mut self, record: &Record) -> bool {
        let cap = self.slots.capacity();
        if self.faulted {
            return false;
        }
        if self.tail - self.cached_head >= cap {
            let head = self.ctl().head.value.load(Ordering::Acquire);
            // The consumer's head only moves forward, and never past what
            // was published: anything else is a corrupt or foreign peer.
            if head < self.cached_head || head > self.published {
                self.faulted = true;
                return false;
            }
            self.cached_head = head;
            if self.tail - self.cached_head >= cap {
                return false;
            }
        }
        // SAFETY: `tail` is in `[head, head + capacity)`, which the protocol
        // gives to the producer, and this is the ring's only producer.
        unsafe { self.slots.write(self.tail, record) };
        self.tail += 1;
        true
    }

    /// Counts one record the producer could not push and gave up on.
    pub fn count_dropped(&mut self) {
        let dropped = &self.ctl().dropped.value;
        dropped.store(dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Pushes `record`, or counts it as dropped when the ring is full.
    #[inline]
    pub fn push_or_drop(&mut self, record: &Record) -> bool {
        let ok = self.push(record);
        if !ok {
            let dropped = &self.ctl().dropped.value;
            dropped.store(dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        ok
    }

    /// Makes every pushed record visible to the consumer (one store).
    #[inline]
    pub fn publish(&mut self) {
        if self.tail != self.published {
            self.ctl().tail.value.store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
    }

    /// Records dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.ctl().dropped.value.load(Ordering::Relaxed)
    }

    /// What the consumer last published with [`Consumer::set_applied`].
    pub fn applied(&self) -> u64 {
        self.ctl().applied.value.load(Ordering::Acquire)
    }

    /// Free slots as last seen (a lower bound).
    pub fn free(&self) -> u64 {
        self.slots
            .capacity()
            .saturating_sub(self.tail.wrapping_sub(self.cached_head))
    }

    /// True once the consumer's index broke the protocol: the ring takes
    /// nothing more from this end.
    pub fn faulted(&self) -> bool {
        self.faulted
    }

    /// The memory keeping this ring alive.
    pub fn keep_alive(&self) -> &KeepAlive {
        &self.keep
    }
}

impl<S: Slots> Consumer<S> {
    /// The consumer of the ring at `control` with `slots`.
    ///
    /// # Safety
    /// As for [`Producer::new`], with exactly one consumer for this ring.
    pub unsafe fn new(control: *const RingControl, slots: S, keep: KeepAlive) -> Self {
        // SAFETY: valid per the contract.
        let ctl = unsafe { &*control };
        let head = ctl.head.value.load(Ordering::Acquire);
        let tail = ctl.tail.value.load(Ordering::Acquire);
        let release_every = (slots.capacity() / 4).clamp(1, RELEASE_EVERY);
        Consumer {
            control,
            head,
            cached_tail: head,
            released: head,
            release_every,
            faulted: head > tail || tail - head > slots.capacity(),
            slots,
            keep,
        }
    }

    fn ctl(&self) -> &RingControl {
        // SAFETY: as for `Producer::ctl`.
        unsafe { &*self.control }
    }

    /// Takes the next published record, if any; its slot is freed at the next
    /// [`Consumer::release`], or sooner: `pop` frees what it has read every
    /// [`RELEASE_EVERY`] records (or quarter ring, if smaller).
    #[inline]
    pub fn pop(&mut self) -> Option<Record> {
        if self.head == self.cached_tail {
            if self.faulted {
                return None;
            }
            let tail = self.ctl().tail.value.load(Ordering::Acquire);
            // The producer's tail only moves forward, and never more than a
            // ring ahead of what was freed: anything else is corrupt.
            if tail < self.cached_tail || tail - self.released > self.slots.capacity() {
                self.faulted = true;
                return None;
            }
            self.cached_tail = tail;
            if self.head == self.cached_tail {
                return None;
            }
        }
        // SAFETY: `head < tail` as published with Release by the producer and
        // acquired above, so the slot is written and owned by the consumer.
        let record = unsafe { self.slots.read(self.head) };
        self.head += 1;
        // A consumer that drains a full ring before releasing holds the
        // producer stalled for the whole drain (and a 64 Ki-slot ring is
        // 4 MiB, more than a core's L2): the two then take turns instead of
        // running side by side. Freeing every few records keeps both going,
        // at one store per `release_every` records.
        if self.head - self.released >= self.release_every {
            self.release();
        }
        Some(record)
    }

    /// Frees every slot read so far (one store).
    #[inline]
    pub fn release(&mut self) {
        if self.head != self.released {
            self.ctl().head.value.store(self.head, Ordering::Release);
            self.released = self.head;
        }
    }

    /// Records the producer dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.ctl().dropped.value.load(Ordering::Relaxed)
    }

    /// True once the producer's index broke the protocol: nothing more is
    /// read from this ring.
    pub fn faulted(&self) -> bool {
        self.faulted
    }

    /// Publishes a value for the producer (a rules ring's consumer: the
    /// generation now in force), after everything it covers.
    pub fn set_applied(&self, value: u64) {
        self.ctl().applied.value.store(value, Ordering::Release);
    }

    /// The memory keeping this ring alive.
    pub fn keep_alive(&self) -> &KeepAlive {
        &self.keep
    }
}

/// Slots in heap memory, for a ring inside one process.
#[cfg(not(loom))]
pub type HeapSlots = RawSlots;

/// Under the model checker, heap slots are loom cells, so that loom also
/// checks that no slot is ever read and written at the same time.
#[cfg(loom)]
pub struct HeapSlots {
    cells: std::sync::Arc<[loom::cell::UnsafeCell<Record>]>,
    mask: u64,
}

// SAFETY: the cells are shared by exactly one producer and one consumer,
// which the protocol keeps off the same slot; loom verifies exactly that.
#[cfg(loom)]
unsafe impl Send for HeapSlots {}

#[cfg(loom)]
impl Slots for HeapSlots {
    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    unsafe fn write(&self, index: u64, record: &Record) {
        let cell = &self.cells[(index & self.mask) as usize];
        // SAFETY: the caller owns the slot (trait contract); loom checks it.
        cell.with_mut(|p| unsafe { *p = *record });
    }

    unsafe fn read(&self, index: u64) -> Record {
        let cell = &self.cells[(index & self.mask) as usize];
        // SAFETY: the caller owns the slot (trait contract); loom checks it.
        cell.with(|p| unsafe { *p })
    }
}

/// A ring in heap memory (one process): tests, benchmarks, and the model
/// checker use it; the region uses the same ends over shared memory.
pub fn heap_ring(capacity: u64) -> (Producer<HeapSlots>, Consumer<HeapSlots>) {
    let capacity = capacity.max(1).next_power_of_two();
    let control = std::sync::Arc::new(RingControl {
        head: Padded::new(),
        tail: Padded::new(),
        dropped: Padded::new(),
        applied: Padded::new(),
    });
    let (slots_p, slots_c, slots_keep) = heap_slots(capacity);
    let ctl: *const RingControl = &*control;
    let keep: KeepAlive = std::sync::Arc::new((control, slots_keep));
    // SAFETY: `ctl` points into `control`, kept alive by `keep`; the ring
    // has exactly one producer and one consumer, made here.
    unsafe {
        (
            Producer::new(ctl, slots_p, keep.clone()),
            Consumer::new(ctl, slots_c, keep),
        )
    }
}

#[cfg(not(loom))]
fn heap_slots(capacity: u64) -> (HeapSlots, HeapSlots, KeepAlive) {
    /// Slot memory written through raw pointers by the ring's two ends.
    struct Cells(Box<[std::cell::UnsafeCell<Record>]>);
    // SAFETY: the cells are only touched through the ring's ends, which the
    // SPSC protocol keeps from ever accessing one slot at the same time.
    unsafe impl Sync for Cells {}
    let cells = Cells(
        (0..capacity)
            .map(|_| std::cell::UnsafeCell::new(Record::default()))
            .collect(),
    );
    // The cells go to their final home first and the pointer is derived
    // from there: moving the Box after taking a pointer into it would
    // retag it as unique and invalidate the pointer (Miri finds that).
    let cells = std::sync::Arc::new(cells);
    let base = std::cell::UnsafeCell::raw_get(cells.0.as_ptr()).cast::<u8>();
    // SAFETY: `base` addresses `capacity` 64-byte-aligned records, valid
    // while `cells` lives (kept by the returned handle), derived through
    // `UnsafeCell`s, which allow writes through shared access, and each
    // end accesses a slot only while the protocol gives it that slot.
    let (a, b) = unsafe { (RawSlots::new(base, capacity), RawSlots::new(base, capacity)) };
    (a, b, cells)
}

#[cfg(loom)]
fn heap_slots(capacity: u64) -> (HeapSlots, HeapSlots, KeepAlive) {
    let cells: std::sync::Arc<[loom::cell::UnsafeCell<Record>]> = (0..capacity)
        .map(|_| loom::cell::UnsafeCell::new(Record::default()))
        .collect();
    let mask = capacity - 1;
    (
        HeapSlots {
            cells: cells.clone(),
            mask,
        },
        HeapSlots {
            cells: cells.clone(),
            mask,
        },
        std::sync::Arc::new(()),
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn rec(n: u64) -> Record {
        let mut r = Record::new(1);
        r.put_u64(8, n);
        r
    }

    #[test]
    fn records_come_out_in_order_only_after_publish() {
        let (mut p, mut c) = heap_ring(8);
        assert!(p.push(&rec(1)));
        assert!(p.push(&rec(2)));
        assert_eq!(c.pop(), None, "nothing before publish");
        p.publish();
        assert_eq!(c.pop().unwrap().get_u64(8), 1);
        assert_eq!(c.pop().unwrap().get_u64(8), 2);
        assert_eq!(c.pop(), None);
    }

    #[test]
    fn a_full_ring_refuses_and_counts_until_released() {
        let (mut p, mut c) = heap_ring(16);
        for i in 0..16 {
            assert!(p.push(&rec(i)));
        }
        assert!(!p.push_or_drop(&rec(99)));
        assert_eq!(p.dropped(), 1);
        p.publish();
        assert_eq!(c.pop().unwrap().get_u64(8), 0);
        assert!(!p.push(&rec(16)), "popped but not released: still full");
        c.release();
        assert!(p.push(&rec(16)));
        p.publish();
        let rest: Vec<u64> = std::iter::from_fn(|| c.pop())
            .map(|r| r.get_u64(8))
            .collect();
        assert_eq!(rest, (1..=16).collect::<Vec<_>>());
        assert_eq!(c.dropped(), 1);
    }

    #[test]
    fn a_long_drain_frees_slots_without_waiting_for_release() {
        // 16 slots: pop frees on its own every 4 records.
        let (mut p, mut c) = heap_ring(16);
        for i in 0..16 {
            assert!(p.push(&rec(i)));
        }
        p.publish();
        for i in 0..3 {
            assert_eq!(c.pop().unwrap().get_u64(8), i);
        }
        assert!(!p.push(&rec(16)), "three read: not freed yet");
        assert_eq!(c.pop().unwrap().get_u64(8), 3);
        for i in 16..20 {
            assert!(p.push(&rec(i)), "the fourth read frees four slots");
        }
        assert!(!p.push(&rec(20)));
        p.publish();
        let rest: Vec<u64> = std::iter::from_fn(|| c.pop())
            .map(|r| r.get_u64(8))
            .collect();
        assert_eq!(rest, (4..20).collect::<Vec<_>>());
    }

    #[test]
    fn each_counter_has_a_cache_line_of_its_own() {
        // The producer writes tail, the consumer head: on one line they
        // would bounce between the cores at every publish and release.
        assert_eq!(std::mem::size_of::<Padded>(), 64);
        assert_eq!(std::mem::align_of::<RingControl>(), 64);
        assert_eq!(std::mem::offset_of!(RingControl, head), 0);
        assert_eq!(std::mem::offset_of!(RingControl, tail), 64);
        assert_eq!(std::mem::offset_of!(RingControl, dropped), 128);
        assert_eq!(std::mem::offset_of!(RingControl, applied), 192);
    }

    #[test]
    fn wraparound_many_times() {
        let (mut p, mut c) = heap_ring(8);
        let mut next = 0u64;
        for round in 0..1000u64 {
            let n = round % 8 + 1;
            for i in 0..n {
                assert!(p.push(&rec(round * 10 + i)));
            }
            p.publish();
            for i in 0..n {
                let r = c.pop().unwrap();
                assert_eq!(r.get_u64(8), round * 10 + i);
                next += 1;
            }
            c.release();
        }
        assert_eq!(next, (0..1000u64).map(|r| r % 8 + 1).sum::<u64>());
    }

    #[test]
    fn two_threads_move_a_million_records_in_order() {
        let (mut p, mut c) = heap_ring(1024);
        // Under Miri (which runs this module's tests in CI, checking every
        // access against Stacked Borrows), a few thousand records are
        // enough to cross the ring many times.
        const N: u64 = if cfg!(miri) { 5_000 } else { 1_000_000 };
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                while i < N && p.push(&rec(i)) {
                    i += 1;
                }
                p.publish();
                std::hint::spin_loop();
            }
        });
        let mut expect = 0;
        while expect < N {
            while let Some(r) = c.pop() {
                assert_eq!(r.get_u64(8), expect);
                expect += 1;
            }
            c.release();
        }
        producer.join().unwrap();
        assert_eq!(c.pop(), None);
    }

    /// A ring whose control block the test can scribble on, as a corrupt
    /// or foreign peer process could.
    fn exposed_ring(
        capacity: u64,
    ) -> (
        Producer<HeapSlots>,
        Consumer<HeapSlots>,
        std::sync::Arc<RingControl>,
    ) {
        let control = std::sync::Arc::new(RingControl {
            head: Padded::new(),
            tail: Padded::new(),
            dropped: Padded::new(),
            applied: Padded::new(),
        });
        let (sp, sc, slots_keep) = heap_slots(capacity);
        let ctl: *const RingControl = &*control;
        let keep: KeepAlive = std::sync::Arc::new((control.clone(), slots_keep));
        // SAFETY: as in `heap_ring`.
        let (p, c) = unsafe {
            (
                Producer::new(ctl, sp, keep.clone()),
                Consumer::new(ctl, sc, keep),
            )
        };
        (p, c, control)
    }

    #[test]
    fn a_peer_that_writes_impossible_indexes_faults_the_end_and_nothing_panics() {
        // The consumer's head jumps past anything published: the producer
        // stops (never overwrites slots it does not own) and says why.
        let (mut p, _c, control) = exposed_ring(8);
        for i in 0..8 {
            assert!(p.push(&rec(i)));
        }
        p.publish();
        control.head.value.store(100, Ordering::Release);
        assert!(!p.push(&rec(9)));
        assert!(p.faulted());
        control.head.value.store(8, Ordering::Release);
        assert!(!p.push(&rec(9)), "a faulted end stays stopped");
        assert_eq!(p.free(), 0);

        // The producer's tail runs more than a ring ahead, then backwards:
        // the consumer reads nothing it was not given.
        let (_p, mut c, control) = exposed_ring(8);
        control.tail.value.store(1_000, Ordering::Release);
        assert_eq!(c.pop(), None);
        assert!(c.faulted());
        let (mut p, mut c, control) = exposed_ring(8);
        assert!(p.push(&rec(1)) && p.push(&rec(2)));
        p.publish();
        assert_eq!(c.pop(), Some(rec(1)));
        assert_eq!(c.pop(), Some(rec(2)));
        control.tail.value.store(1, Ordering::Release);
        assert_eq!(c.pop(), None);
        assert!(c.faulted());

        // An end made over indexes that cannot be starts faulted.
        let (p, c, control) = exposed_ring(8);
        drop((p, c));
        control.head.value.store(50, Ordering::Release);
        control.tail.value.store(10, Ordering::Release);
        let keep: KeepAlive = std::sync::Arc::new(control.clone());
        let (sp, sc, slots_keep) = heap_slots(8);
        let keep2: KeepAlive = std::sync::Arc::new((keep, slots_keep));
        let ctl: *const RingControl = &*control;
        // SAFETY: `ctl` is kept alive by `keep2`; one producer, one consumer.
        let (mut p, mut c) = unsafe {
            (
                Producer::new(ctl, sp, keep2.clone()),
                Consumer::new(ctl, sc, keep2),
            )
        };
        assert!(p.faulted() && c.faulted());
        assert!(!p.push(&rec(1)));
        assert_eq!(c.pop(), None);
    }
}
