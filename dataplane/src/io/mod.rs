//! Burst I/O: the [`Queue`] trait every backend implements, and the backends.
//!
//! A port has one or more queues; each worker owns one queue outright and
//! moves frames through it in bursts, as DPDK's `rte_eth_rx_burst` /
//! `rte_eth_tx_burst` do. Frames live in buffers taken from a pool that the
//! backend preallocates (mbufs, UMEM frames, ring slots, or the
//! [`soft`] pool), so nothing is allocated per packet: a buffer received is
//! either handed back through `tx_burst` or returned with `recycle`.
//!
//! Backends: [`mem`] (in-memory rings, for tests and benchmarks) and
//! [`pcap`] (a capture file in, a capture file out), both built on [`soft`],
//! a software NIC that spreads frames over queues with the same symmetric
//! Toeplitz hash a real NIC would be programmed with ([`crate::rss`]); and
//! [`afpacket`], live traffic through the kernel's packet rings.

pub mod afpacket;
#[cfg(feature = "afxdp")]
pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod mem;
pub mod pcap;
pub mod soft;

use smallvec::SmallVec;

/// The most frames one burst can hold.
pub const MAX_BURST: usize = 64;

/// Burst size used when the configuration does not say.
pub const DEFAULT_BURST: usize = 32;

/// Data room of a buffer, like an mbuf's: a full Ethernet frame plus headroom for growth.
pub const BUF_CAPACITY: usize = 2048;

/// A burst of frames; it lives inline (never spills to the heap) because
/// bursts are capped at [`MAX_BURST`].
pub type Burst<B> = SmallVec<[B; MAX_BURST]>;

/// One frame in a backend's buffer.
pub trait PacketBuf {
    /// The frame's bytes.
    fn data(&self) -> &[u8];
    /// The frame's bytes, writable in place.
    fn data_mut(&mut self) -> &mut [u8];
    /// How long the frame can grow.
    fn capacity(&self) -> usize;
    /// Sets the frame length; fails (and changes nothing) past `capacity`.
    fn set_len(&mut self, len: usize) -> Result<(), BufTooSmall>;
    /// Receive time in nanoseconds on the port's clock (0 when unknown).
    fn timestamp_ns(&self) -> u64;
    /// Says where the frame goes (ports with one side ignore it).
    #[inline]
    fn set_egress(&mut self, _egress: Egress) {}
    /// The side of the wire the frame arrived on, where the port knows it
    /// (inline: the interface it came in by); `None` where one port sees
    /// both sides (one-arm, tap, capture files), and the engine tells them
    /// apart by the gateways' MACs.
    #[inline]
    fn side(&self) -> Option<Side> {
        None
    }
}

/// A side of the wire, as the protected network sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// Beyond the router: the internet, or the rest of the network.
    Outside = 0,
    /// The protected network's own segment.
    Inside = 1,
}

impl Side {
    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Outside => "outside",
            Side::Inside => "inside",
        }
    }
}

/// Where a frame leaves, as the worker decided: a port with two sides
/// (inline) sends a forwarded frame to the other side and a reply back to
/// the side it came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Egress {
    /// Forwarded on its way.
    Forward,
    /// A decoy's reply, written over the probe.
    Reply,
}

/// A frame length beyond a buffer's capacity.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BufTooSmall;

/// What a `tx_burst` did with the frames it was given.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Frames handed to the wire.
    pub sent: usize,
    /// Frames the ring had no room for; they were recycled.
    pub dropped: usize,
    /// Frames that needed no sending (a tap port's copies of traffic that
    /// went its way without us); recycled, neither sent nor dropped.
    pub skipped: usize,
}

/// Counters a backend keeps below the workers (ring overruns, kernel drops).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Frames the backend dropped before a worker saw them.
    pub rx_dropped: u64,
}

/// One queue of a port, owned by exactly one worker.
pub trait Queue: Send {
    /// The backend's buffer type.
    type Buf: PacketBuf + Send;

    /// Receives up to `max` frames (at most [`MAX_BURST`]), appending them to `out`.
    fn rx_burst(&mut self, out: &mut Burst<Self::Buf>, max: usize) -> usize;

    /// Transmits every frame in `bufs`, in order, and empties it. Frames the
    /// transmit ring has no room for are recycled and counted in the outcome.
    fn tx_burst(&mut self, bufs: &mut Burst<Self::Buf>) -> TxOutcome;

    /// Returns a frame to the pool without sending it.
    fn recycle(&mut self, buf: Self::Buf);

    /// An empty buffer from the pool, for a frame the worker writes itself
    /// (tap mode's second RST); `None` when the backend has none to give.
    fn alloc(&mut self) -> Option<Self::Buf> {
        None
    }

    /// Backend counters for this queue.
    fn stats(&self) -> QueueStats {
        QueueStats::default()
    }
}

/// A port: opened from configuration, split into one queue per worker.
pub trait Port {
    /// The queue type.
    type Queue: Queue + 'static;

    /// A short name for logs and `status` (`pcap:in.pcap`, `mem`).
    fn name(&self) -> String;

    /// Hands out the queues, one per worker; called once.
    fn take_queues(&mut self) -> Vec<Self::Queue>;
}

/// A plain vector as a packet buffer, for tests, fuzzing and benchmarks: it
/// may grow to [`BUF_CAPACITY`], like a pool buffer.
impl PacketBuf for Vec<u8> {
    fn data(&self) -> &[u8] {
        self
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self
    }
    fn capacity(&self) -> usize {
        BUF_CAPACITY
    }
    fn set_len(&mut self, len: usize) -> Result<(), BufTooSmall> {
        if len > BUF_CAPACITY {
            return Err(BufTooSmall);
        }
        self.resize(len, 0);
        Ok(())
    }
    fn timestamp_ns(&self) -> u64 {
        0
    }
}
