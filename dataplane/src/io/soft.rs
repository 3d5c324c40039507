//! A software NIC: a preallocated buffer pool, one receive and one transmit
//! ring per queue, and RSS spreading on the receive side.
//!
//! The `mem` and `pcap` backends feed it from one side (the "wire"), and the
//! workers see ordinary [`Queue`]s on the other. Rings are crossbeam
//! `ArrayQueue`s: bounded, lock-free, and allocated once. A buffer is always
//! in exactly one place (pool, a ring, a worker, the wire side), so the pool
//! being full again means every injected frame has been dealt with.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use super::{BUF_CAPACITY, BufTooSmall, Burst, MAX_BURST, PacketBuf, Queue, TxOutcome};
use crate::rss::Rss;

/// A heap buffer from the software pool.
#[derive(Debug)]
pub struct SoftBuf {
    data: Box<[u8]>,
    len: usize,
    timestamp_ns: u64,
}

impl SoftBuf {
    fn new() -> Self {
        SoftBuf {
            data: vec![0u8; BUF_CAPACITY].into_boxed_slice(),
            len: 0,
            timestamp_ns: 0,
        }
    }

    /// Copies `frame` in (cut to the capacity) and stamps it.
    pub fn fill(&mut self, frame: &[u8], timestamp_ns: u64) {
        let len = frame.len().min(self.data.len());
        if let (Some(dst), Some(src)) = (self.data.get_mut(..len), frame.get(..len)) {
            dst.copy_from_slice(src);
        }
        self.len = len;
        self.timestamp_ns = timestamp_ns;
    }
}

impl PacketBuf for SoftBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        self.data.get(..self.len).unwrap_or(&[])
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        self.data.get_mut(..self.len).unwrap_or(&mut [])
    }
    fn capacity(&self) -> usize {
        self.data.len()
    }
    fn set_len(&mut self, len: usize) -> Result<(), BufTooSmall> {
        if len > self.data.len() {
            return Err(BufTooSmall);
        }
        self.len = len;
        Ok(())
    }
    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
}

/// Sizes of a software NIC.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SoftNicConfig {
    /// Number of queues (workers).
    pub queues: u16,
    /// Buffers in the pool, shared by all queues.
    pub pool_size: usize,
    /// Slots in each receive ring (and each transmit ring unless `lossless_tx`).
    pub ring_size: usize,
    /// Size every transmit ring to hold the whole pool, so a transmit can
    /// never find its ring full: the replay and test ports lose nothing.
    /// Off, a full transmit ring drops and counts like a NIC's.
    pub lossless_tx: bool,
}

impl Default for SoftNicConfig {
    fn default() -> Self {
        SoftNicConfig {
            queues: 1,
            pool_size: 8192,
            ring_size: 1024,
            lossless_tx: true,
        }
    }
}

/// Why a frame could not be put on the wire side of the NIC.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// Every buffer is in use.
    PoolEmpty,
    /// The frame's receive ring is full.
    RingFull,
}

struct Shared {
    pool: ArrayQueue<SoftBuf>,
    pool_size: usize,
    rx: Vec<ArrayQueue<SoftBuf>>,
    tx: Vec<ArrayQueue<SoftBuf>>,
    rss: Rss,
}

/// The wire side of a software NIC: injects received frames, collects transmitted ones.
#[derive(Clone)]
pub struct SoftNic {
    shared: Arc<Shared>,
}

impl SoftNic {
    /// Allocates the pool and the rings; the only allocation the NIC ever makes.
    pub fn new(config: SoftNicConfig) -> Self {
        let queues = usize::from(config.queues.max(1));
        let pool_size = config.pool_size.max(1);
        let ring_size = config.ring_size.max(1);
        // A buffer is in one place at a time, so a ring as large as the pool never fills.
        let tx_ring_size = if config.lossless_tx {
            ring_size.max(pool_size)
        } else {
            ring_size
        };
        let pool = ArrayQueue::new(pool_size);
        for _ in 0..pool_size {
            // Capacity is exactly pool_size, so this cannot fail.
            let _ = pool.push(SoftBuf::new());
        }
        SoftNic {
            shared: Arc::new(Shared {
                pool,
                pool_size,
                rx: (0..queues).map(|_| ArrayQueue::new(ring_size)).collect(),
                tx: (0..queues).map(|_| ArrayQueue::new(tx_ring_size)).collect(),
                rss: Rss::symmetric(config.queues),
            }),
        }
    }

    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.shared.rx.len()
    }

    /// The queue RSS puts `frame` on.
    pub fn queue_of(&self, frame: &[u8]) -> usize {
        usize::from(self.shared.rss.queue_of_frame(frame))
    }

    /// Puts `frame` on the receive ring RSS selects; returns that queue.
    pub fn inject(&self, frame: &[u8], timestamp_ns: u64) -> Result<usize, InjectError> {
        let queue = self.queue_of(frame);
        self.inject_to(queue, frame, timestamp_ns).map(|()| queue)
    }

    /// Puts `frame` on receive ring `queue` (taken modulo the queue count).
    pub fn inject_to(
        &self,
        queue: usize,
        frame: &[u8],
        timestamp_ns: u64,
    ) -> Result<(), InjectError> {
        let shared = &self.shared;
        let ring = shared
            .rx
            .get(queue % shared.rx.len())
            .ok_or(InjectError::RingFull)?;
        if ring.is_full() {
            return Err(InjectError::RingFull);
        }
        let mut buf = shared.pool.pop().ok_or(InjectError::PoolEmpty)?;
        buf.fill(frame, timestamp_ns);
        // Only this wire side pushes to receive rings; a racing second injector
        // could still fill it, in which case the buffer goes back to the pool.
        ring.push(buf).map_err(|buf| {
            let _ = shared.pool.push(buf);
            InjectError::RingFull
        })
    }

    /// Takes every transmitted frame, queue by queue, calling `f(queue, frame, timestamp)`,
    /// and returns the buffers to the pool. Returns how many frames were taken.
    pub fn collect(&self, mut f: impl FnMut(usize, &[u8], u64)) -> usize {
        let mut n = 0;
        for (queue, ring) in self.shared.tx.iter().enumerate() {
            while let Some(buf) = ring.pop() {
                f(queue, buf.data(), buf.timestamp_ns());
                self.release(buf);
                n += 1;
            }
        }
        n
    }

    /// Buffers currently in the pool.
    pub fn pool_available(&self) -> usize {
        self.shared.pool.len()
    }

    /// True when every buffer is back in the pool: nothing is queued or in a worker.
    pub fn is_quiescent(&self) -> bool {
        self.shared.pool.len() == self.shared.pool_size
    }

    /// Frames waiting on receive rings.
    pub fn rx_pending(&self) -> usize {
        self.shared.rx.iter().map(ArrayQueue::len).sum()
    }

    fn release(&self, buf: SoftBuf) {
        // The pool has room for every buffer ever made, so this cannot fail.
        let _ = self.shared.pool.push(buf);
    }

    /// The worker-side handles, one per queue.
    pub fn queue_handles(&self) -> Vec<SoftQueue> {
        (0..self.queues())
            .map(|index| SoftQueue {
                nic: self.clone(),
                index,
            })
            .collect()
    }
}

/// The worker side of one software queue.
pub struct SoftQueue {
    nic: SoftNic,
    index: usize,
}

impl SoftQueue {
    /// This queue's index.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Queue for SoftQueue {
    type Buf = SoftBuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst<SoftBuf>, max: usize) -> usize {
        let Some(ring) = self.nic.shared.rx.get(self.index) else {
            return 0;
        };
        let room = max.min(MAX_BURST).saturating_sub(out.len());
        let mut n = 0;
        while n < room {
            match ring.pop() {
                Some(buf) => {
                    out.push(buf);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    #[inline]
    fn tx_burst(&mut self, bufs: &mut Burst<SoftBuf>) -> TxOutcome {
        let mut outcome = TxOutcome::default();
        let Some(ring) = self.nic.shared.tx.get(self.index) else {
            outcome.dropped = bufs.len();
            for buf in bufs.drain(..) {
                self.nic.release(buf);
            }
            return outcome;
        };
        for buf in bufs.drain(..) {
            match ring.push(buf) {
                Ok(()) => outcome.sent += 1,
                Err(buf) => {
                    self.nic.release(buf);
                    outcome.dropped += 1;
                }
            }
        }
        outcome
    }

    #[inline]
    fn recycle(&mut self, buf: SoftBuf) {
        self.nic.release(buf);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn nic(queues: u16, pool: usize, ring: usize) -> SoftNic {
        SoftNic::new(SoftNicConfig {
            queues,
            pool_size: pool,
            ring_size: ring,
            lossless_tx: false,
        })
    }

    #[test]
    fn frames_go_round_and_buffers_come_back() {
        let nic = nic(1, 4, 4);
        let mut q = nic.queue_handles().pop().unwrap();
        nic.inject_to(0, &[1, 2, 3], 7).unwrap();
        nic.inject_to(0, &[4, 5], 8).unwrap();
        assert_eq!(nic.pool_available(), 2);
        let mut burst = Burst::new();
        assert_eq!(q.rx_burst(&mut burst, 32), 2);
        assert_eq!(burst[0].data(), &[1, 2, 3]);
        assert_eq!(burst[1].timestamp_ns(), 8);
        let dropped = burst.pop().unwrap();
        q.recycle(dropped);
        assert_eq!(
            q.tx_burst(&mut burst),
            TxOutcome {
                sent: 1,
                dropped: 0,
                skipped: 0
            }
        );
        assert!(burst.is_empty());
        let mut seen = Vec::new();
        assert_eq!(nic.collect(|_, f, ts| seen.push((f.to_vec(), ts))), 1);
        assert_eq!(seen, vec![(vec![1, 2, 3], 7)]);
        assert!(nic.is_quiescent());
    }

    #[test]
    fn full_pool_and_full_ring_are_reported_not_lost() {
        let nic = nic(1, 2, 8);
        nic.inject_to(0, &[1], 0).unwrap();
        nic.inject_to(0, &[2], 0).unwrap();
        assert_eq!(nic.inject_to(0, &[3], 0), Err(InjectError::PoolEmpty));
        let nic = nic_small_ring();
        nic.inject_to(0, &[1], 0).unwrap();
        assert_eq!(nic.inject_to(0, &[2], 0), Err(InjectError::RingFull));
        assert_eq!(nic.pool_available(), 7);
    }

    fn nic_small_ring() -> SoftNic {
        nic(1, 8, 1)
    }

    #[test]
    fn tx_ring_overflow_recycles_and_counts() {
        let nic = nic(1, 8, 2);
        let mut q = nic.queue_handles().pop().unwrap();
        for i in 0..2 {
            nic.inject_to(0, &[i], 0).unwrap();
        }
        let mut burst = Burst::new();
        q.rx_burst(&mut burst, 8);
        nic.inject_to(0, &[9], 0).unwrap();
        q.rx_burst(&mut burst, 8);
        assert_eq!(burst.len(), 3);
        assert_eq!(
            q.tx_burst(&mut burst),
            TxOutcome {
                sent: 2,
                dropped: 1,
                skipped: 0
            }
        );
        nic.collect(|_, _, _| {});
        assert!(nic.is_quiescent());
    }

    #[test]
    fn lossless_tx_rings_hold_the_whole_pool() {
        let nic = SoftNic::new(SoftNicConfig {
            queues: 1,
            pool_size: 16,
            ring_size: 2,
            lossless_tx: true,
        });
        let mut q = nic.queue_handles().pop().unwrap();
        let mut burst = Burst::new();
        for round in 0..8u8 {
            nic.inject_to(0, &[round], 0).unwrap();
            nic.inject_to(0, &[round], 0).unwrap();
            q.rx_burst(&mut burst, 16);
        }
        assert_eq!(
            q.tx_burst(&mut burst),
            TxOutcome {
                sent: 16,
                dropped: 0,
                skipped: 0
            }
        );
    }

    #[test]
    fn set_len_is_bounded_by_capacity() {
        let mut buf = SoftBuf::new();
        assert!(buf.set_len(BUF_CAPACITY).is_ok());
        assert_eq!(buf.set_len(BUF_CAPACITY + 1), Err(BufTooSmall));
        assert_eq!(buf.data().len(), BUF_CAPACITY);
    }

    #[test]
    fn rx_burst_respects_max() {
        let nic = nic(1, 16, 16);
        let mut q = nic.queue_handles().pop().unwrap();
        for i in 0..10 {
            nic.inject_to(0, &[i], 0).unwrap();
        }
        let mut burst = Burst::new();
        assert_eq!(q.rx_burst(&mut burst, 4), 4);
        assert_eq!(
            q.rx_burst(&mut burst, 4),
            0,
            "max counts frames already in the burst"
        );
        assert_eq!(burst[3].data(), &[3]);
    }
}
