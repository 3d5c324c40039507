//! Bite capture: the frames of a biting source, kept for forensics.
//!
//! Decoys are stateless, so nothing remembers a connection until it bites.
//! With capture on, each worker copies every frame bound for a decoy into a
//! small history ring (before the reply is written over it); when a source
//! bites, its frames still in the ring (its SYNs, handshake ACKs and the
//! data that bit) go out, followed by up to `follow` more frames from it
//! (now dropped by the block) for a minute. Frames travel to the writer
//! thread (`crate::capture`) through a pool of preallocated buffers and two
//! lock-free queues: no allocation, lock or syscall on the packet path; an
//! empty pool loses the frame and counts it. Off by default: the copy costs
//! a few nanoseconds per decoy-bound frame.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

/// Bytes of a frame kept (longer frames are cut, their length recorded).
pub const SNAP: usize = 2048;

/// A captured frame.
pub struct CapturedFrame {
    /// The biting source (IPv4-mapped for IPv4): which file it goes to.
    pub src: [u8; 16],
    /// When the worker saw it, Unix nanoseconds (capture time in replays).
    pub time_ns: u64,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Bytes kept in `data`.
    pub len: u16,
    /// The frame.
    pub data: [u8; SNAP],
}

impl CapturedFrame {
    fn empty() -> Box<CapturedFrame> {
        Box::new(CapturedFrame {
            src: [0; 16],
            time_ns: 0,
            orig_len: 0,
            len: 0,
            data: [0; SNAP],
        })
    }

    fn fill(&mut self, src: &[u8; 16], time_ns: u64, orig_len: u32, bytes: &[u8]) {
        let n = bytes.len().min(SNAP);
        self.src = *src;
        self.time_ns = time_ns;
        self.orig_len = orig_len;
        self.len = n as u16;
        self.data[..n].copy_from_slice(&bytes[..n]);
    }

    /// The bytes kept.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len).min(SNAP)]
    }
}

/// The buffers between the workers and the writer: a free pool and a queue
/// of filled frames, both fixed-size and lock-free.
pub struct CaptureQueues {
    free: ArrayQueue<Box<CapturedFrame>>,
    full: ArrayQueue<Box<CapturedFrame>>,
}

impl std::fmt::Debug for CaptureQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureQueues")
            .field("free", &self.free.len())
            .field("full", &self.full.len())
            .finish()
    }
}

impl CaptureQueues {
    /// `buffers` preallocated buffers (at least 1).
    pub fn new(buffers: usize) -> Arc<CaptureQueues> {
        let n = buffers.max(1);
        let q = CaptureQueues {
            free: ArrayQueue::new(n),
            full: ArrayQueue::new(n),
        };
        for _ in 0..n {
            let _ = q.free.push(CapturedFrame::empty());
        }
        Arc::new(q)
    }

    /// Hands one frame (`bytes` of its `orig_len`) to the writer; false
    /// when no buffer was free.
    fn send(&self, src: &[u8; 16], time_ns: u64, orig_len: u32, bytes: &[u8]) -> bool {
        let Some(mut buf) = self.free.pop() else {
            return false;
        };
        buf.fill(src, time_ns, orig_len, bytes);
        match self.full.push(buf) {
            Ok(()) => true,
            // Cannot happen (both queues hold every buffer); keep the
            // buffer in the pool rather than free it here.
            Err(buf) => {
                let _ = self.free.push(buf);
                false
            }
        }
    }

    /// The next frame for the writer.
    pub fn take(&self) -> Option<Box<CapturedFrame>> {
        self.full.pop()
    }

    /// Returns a written frame's buffer to the pool.
    pub fn give_back(&self, buf: Box<CapturedFrame>) {
        let _ = self.free.push(buf);
    }
}

/// Frames of the per-worker history ring.
const HISTORY: usize = 256;
/// Sources followed after their bite, per worker.
const FOLLOWED: usize = 16;
/// How long a source is followed after its bite.
const FOLLOW_NS: u64 = 60 * 1_000_000_000;

#[derive(Clone)]
struct Slot {
    src: [u8; 16],
    time_ns: u64,
    /// Already sent (a second bite does not send it again).
    sent: bool,
    orig_len: u32,
    len: u16,
    data: [u8; SNAP],
}

#[derive(Copy, Clone, Default)]
struct Follow {
    src: [u8; 16],
    remaining: u32,
    until_ns: u64,
}

/// A worker's capture state.
pub struct Evidence {
    sink: Arc<CaptureQueues>,
    history: Box<[Slot]>,
    next: usize,
    follow: [Follow; FOLLOWED],
    follow_packets: u32,
    /// Frames handed to the writer.
    pub captured: u64,
    /// Frames lost: no free buffer.
    pub lost: u64,
}

impl Evidence {
    /// A worker's capture state writing to `sink`, following each biter
    /// for up to `follow_packets` frames after its bite.
    pub fn new(sink: Arc<CaptureQueues>, follow_packets: u32) -> Evidence {
        let empty = Slot {
            src: [0; 16],
            time_ns: 0,
            sent: true,
            orig_len: 0,
            len: 0,
            data: [0; SNAP],
        };
        Evidence {
            sink,
            history: vec![empty; HISTORY].into_boxed_slice(),
            next: 0,
            follow: [Follow::default(); FOLLOWED],
            follow_packets,
            captured: 0,
            lost: 0,
        }
    }

    fn send(&mut self, src: &[u8; 16], time_ns: u64, frame: &[u8]) {
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if self.sink.send(src, time_ns, orig_len, frame) {
            self.captured += 1;
        } else {
            self.lost += 1;
        }
    }

    /// Takes one of `src`'s follow-up frames if it is being followed.
    fn followed(&mut self, src: &[u8; 16], now_ns: u64) -> bool {
        self.follow.iter_mut().any(|f| {
            let hit = f.remaining > 0 && f.src == *src && now_ns <= f.until_ns;
            if hit {
                f.remaining -= 1;
            }
            hit
        })
    }

    /// A frame bound for a decoy, before the reply is written over it.
    #[inline]
    pub fn note(&mut self, frame: &[u8], src: &[u8; 16], now_ns: u64) {
        let sent = self.followed(src, now_ns);
        if sent {
            self.send(src, now_ns, frame);
        }
        let i = self.next % HISTORY;
        self.next = (i + 1) % HISTORY;
        if let Some(slot) = self.history.get_mut(i) {
            let n = frame.len().min(SNAP);
            slot.src = *src;
            slot.time_ns = now_ns;
            slot.sent = sent;
            slot.orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            slot.len = n as u16;
            slot.data[..n].copy_from_slice(&frame[..n]);
        }
    }

    /// `src` bit: its frames in the history go out, oldest first, and it
    /// is followed from now on.
    pub fn on_bite(&mut self, src: &[u8; 16], now_ns: u64) {
        for k in 0..HISTORY {
            let i = (self.next + k) % HISTORY;
            let Some(slot) = self.history.get_mut(i) else {
                continue;
            };
            if slot.sent || slot.src != *src {
                continue;
            }
            slot.sent = true;
            let n = usize::from(slot.len).min(SNAP);
            if self
                .sink
                .send(src, slot.time_ns, slot.orig_len, &slot.data[..n])
            {
                self.captured += 1;
            } else {
                self.lost += 1;
            }
        }
        let followed = self
            .follow
            .iter()
            .any(|f| f.src == *src && f.remaining > 0 && now_ns <= f.until_ns);
        if self.follow_packets == 0 || followed {
            return;
        }
        // Replace the entry that ends first.
        if let Some(f) = self
            .follow
            .iter_mut()
            .min_by_key(|f| (f.remaining > 0, f.until_ns))
        {
            *f = Follow {
                src: *src,
                remaining: self.follow_packets,
                until_ns: now_ns.saturating_add(FOLLOW_NS),
            };
        }
    }

    /// A frame from a blocked source (dropped): kept while it is followed.
    #[inline]
    pub fn blocked(&mut self, frame: &[u8], src: &[u8; 16], now_ns: u64) {
        if self.followed(src, now_ns) {
            self.send(src, now_ns, frame);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn drain(q: &CaptureQueues) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(f) = q.take() {
            v.push((f.src[15], f.bytes().to_vec()));
            q.give_back(f);
        }
        v
    }

    #[test]
    fn a_bite_sends_the_biters_history_then_follows_it() {
        let q = CaptureQueues::new(64);
        let mut e = Evidence::new(q.clone(), 2);
        let (worm, other) = ([7; 16], [9; 16]);
        e.note(b"syn", &worm, 1);
        e.note(b"scan", &other, 2);
        e.note(b"ack+data", &worm, 3);
        assert!(drain(&q).is_empty(), "nothing leaves before a bite");
        e.on_bite(&worm, 3);
        assert_eq!(drain(&q), [(7, b"syn".to_vec()), (7, b"ack+data".to_vec())]);
        // A second bite sends nothing twice.
        e.on_bite(&worm, 4);
        assert!(drain(&q).is_empty());
        // Followed: two more frames, whether dropped or to a decoy.
        e.blocked(b"retry", &worm, 5);
        e.blocked(b"scan2", &other, 5);
        e.note(b"again", &worm, 6);
        e.blocked(b"too many", &worm, 7);
        assert_eq!(drain(&q), [(7, b"retry".to_vec()), (7, b"again".to_vec())]);
        assert_eq!((e.captured, e.lost), (4, 0));
    }

    #[test]
    fn following_ends_after_a_minute() {
        let q = CaptureQueues::new(8);
        let mut e = Evidence::new(q.clone(), 100);
        e.on_bite(&[1; 16], 0);
        e.blocked(b"late", &[1; 16], FOLLOW_NS + 1);
        assert!(drain(&q).is_empty());
    }

    #[test]
    fn an_empty_pool_loses_frames_and_counts_them() {
        let q = CaptureQueues::new(2);
        let mut e = Evidence::new(q.clone(), 0);
        for i in 0..5u8 {
            e.note(&[i], &[3; 16], u64::from(i));
        }
        e.on_bite(&[3; 16], 9);
        assert_eq!((e.captured, e.lost), (2, 3));
        assert_eq!(drain(&q).len(), 2);
    }

    #[test]
    fn long_frames_are_cut_at_the_snap_length() {
        let q = CaptureQueues::new(2);
        let mut e = Evidence::new(q.clone(), 0);
        e.note(&[0xab; SNAP + 100], &[3; 16], 1);
        e.on_bite(&[3; 16], 1);
        let f = q.take().unwrap();
        assert_eq!((f.len as usize, f.orig_len as usize), (SNAP, SNAP + 100));
    }
}
