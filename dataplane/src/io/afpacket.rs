//! The AF_PACKET port: live traffic through the kernel's TPACKET_V3 rings
//! (`baitwall-afpacket`), one socket per worker and interface, spread over
//! the workers by a fanout group per interface (the kernel's symmetric flow
//! hash, so both directions of a flow meet on one worker).
//!
//! Three ways to sit on the wire ([`PortMode`]):
//! - **one-arm**: one interface that receives the dark space (a router's
//!   route for it, or a switch port that floods its ARP requests); only
//!   frames the appliance made (decoy replies) leave, by the same interface:
//!   nothing received is ever sent again;
//! - **inline**: a bump in the wire between `outside` and `inside`:
//!   forwarded frames cross to the other side, decoy replies go back where
//!   the probe came from, frames the engine drops (a blocked source) never
//!   cross;
//! - **tap**: a SPAN or TAP feeds `monitor` (copies: nothing is forwarded),
//!   decoy replies leave by `inject`. Blocks cannot drop mirrored traffic:
//!   a blocked source's TCP segments are answered with RSTs to both ends
//!   (`engine::sever`), and the firewall integrations do the rest.
//!
//! Frames are copied out of the RX ring into the queue's own preallocated
//! buffers (the reply is written in place there) and copied into TX slots
//! on the way out: two copies of 64-2,048 bytes, and one `send(2)` per
//! burst per interface, the price of a kernel backend (AF_XDP and DPDK
//! avoid both).

use baitwall_afpacket::{Fanout, RingConfig, Socket};

use super::{
    BUF_CAPACITY, BufTooSmall, Burst, Egress, PacketBuf, Port, Queue, QueueStats, Side, TxOutcome,
};

/// How the port sits on the wire.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortMode {
    /// One interface: everything leaves where it came in.
    OneArm,
    /// Two interfaces bridged: outside and inside.
    Inline,
    /// A monitor interface (copies in) and an injection interface (replies out).
    Tap,
}

impl PortMode {
    /// The mode's name, as in the configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            PortMode::OneArm => "one-arm",
            PortMode::Inline => "inline",
            PortMode::Tap => "tap",
        }
    }
}

/// What to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// The mode.
    pub mode: PortMode,
    /// one-arm: `[iface]`; inline: `[outside, inside]`; tap: `[monitor, inject]`.
    pub interfaces: Vec<String>,
    /// Ring sizes (the fanout group is chosen here).
    pub ring: RingConfig,
    /// Buffers each queue preallocates.
    pub buffers_per_queue: usize,
}

/// A buffer of the AF_PACKET port.
pub struct AfBuf {
    data: Box<[u8; BUF_CAPACITY]>,
    len: usize,
    timestamp_ns: u64,
    /// The interface index in the port's list it arrived on.
    side: u8,
    /// The side of the wire that index is (inline only).
    arrival: Option<Side>,
    egress: Egress,
}

impl AfBuf {
    fn new() -> AfBuf {
        AfBuf {
            data: Box::new([0; BUF_CAPACITY]),
            len: 0,
            timestamp_ns: 0,
            side: 0,
            arrival: None,
            egress: Egress::Forward,
        }
    }
}

impl PacketBuf for AfBuf {
    fn data(&self) -> &[u8] {
        &self.data[..self.len]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
    fn capacity(&self) -> usize {
        BUF_CAPACITY
    }
    fn set_len(&mut self, len: usize) -> Result<(), BufTooSmall> {
        if len > BUF_CAPACITY {
            return Err(BufTooSmall);
        }
        self.len = len;
        Ok(())
    }
    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
    fn set_egress(&mut self, egress: Egress) {
        self.egress = egress;
    }
    fn side(&self) -> Option<Side> {
        self.arrival
    }
}

/// What the kernel backends' sockets (AF_PACKET, AF_XDP) offer a queue.
pub trait FrameSocket: Send {
    /// Calls `f` for up to `max` received frames.
    fn recv_frames(&mut self, max: usize, f: impl FnMut(RxFrame<'_>)) -> usize;
    /// Queues a frame for transmit; false when there is no room.
    fn send_frame(&mut self, frame: &[u8]) -> bool;
    /// Hands queued frames to the kernel.
    fn flush_frames(&mut self);
    /// Frames the kernel dropped before we saw them (a system call: call rarely).
    fn kernel_drops(&mut self) -> u64;
}

/// A received frame, borrowed from the socket's ring.
pub struct RxFrame<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// Receive time, Unix nanoseconds (0: unknown).
    pub timestamp_ns: u64,
    /// A VLAN tag the driver took off: (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
}

impl FrameSocket for Socket {
    fn recv_frames(&mut self, max: usize, mut f: impl FnMut(RxFrame<'_>)) -> usize {
        self.recv(max, |frame| {
            f(RxFrame {
                data: frame.data,
                timestamp_ns: frame.timestamp_ns,
                vlan: frame.vlan,
            })
        })
    }
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        self.send(frame)
    }
    fn flush_frames(&mut self) {
        // A failed flush leaves the frames queued for the next one.
        let _ = self.flush();
    }
    fn kernel_drops(&mut self) -> u64 {
        self.statistics().map_or(0, |s| s.drops)
    }
}

/// One worker's queue: a socket per interface and a buffer pool.
pub type AfPacketQueue = KernelQueue<Socket>;

/// One worker's queue on a kernel backend: a socket per interface and a
/// buffer pool.
pub struct KernelQueue<S> {
    mode: PortMode,
    sockets: Vec<S>,
    pool: Vec<AfBuf>,
    /// Which interface `rx_burst` reads first (alternates, for fairness).
    first: usize,
    /// Frames dropped because no buffer was free.
    no_buffer: u64,
    /// Frames longer than a buffer, dropped.
    oversize: u64,
    /// Kernel drops as last read.
    kernel_drops: u64,
    /// Empty polls since the kernel counters were last read.
    idle_polls: u32,
}

/// Read the kernel's counters (one system call) after this many empty
/// polls (a burst counts as 16): rarely, idle or busy.
const STATS_EVERY_IDLE: u32 = 65536;

impl<S: FrameSocket> KernelQueue<S> {
    /// A queue over `sockets` (in the mode's interface order) with
    /// `buffers` preallocated buffers.
    pub fn new(mode: PortMode, sockets: Vec<S>, buffers: usize) -> Self {
        KernelQueue {
            mode,
            sockets,
            pool: (0..buffers).map(|_| AfBuf::new()).collect(),
            first: 0,
            no_buffer: 0,
            oversize: 0,
            kernel_drops: 0,
            idle_polls: 0,
        }
    }

    fn refresh_kernel_stats(&mut self) {
        self.kernel_drops = self.sockets.iter_mut().map(|s| s.kernel_drops()).sum();
    }
}

/// Copies a received frame into `buf`, putting back an 802.1Q tag the
/// driver took off (so a forwarded frame leaves as it came).
fn fill(buf: &mut AfBuf, frame: &RxFrame<'_>) -> bool {
    let data = frame.data;
    let tag = frame.vlan.filter(|_| data.len() >= 12);
    let need = data.len() + if tag.is_some() { 4 } else { 0 };
    if need > BUF_CAPACITY {
        return false;
    }
    match tag {
        Some((tpid, tci)) => {
            buf.data[..12].copy_from_slice(&data[..12]);
            buf.data[12..14].copy_from_slice(&tpid.to_be_bytes());
            buf.data[14..16].copy_from_slice(&tci.to_be_bytes());
            buf.data[16..need].copy_from_slice(&data[12..]);
        }
        None => buf.data[..need].copy_from_slice(data),
    }
    buf.len = need;
    buf.timestamp_ns = frame.timestamp_ns;
    true
}

impl<S: FrameSocket> Queue for KernelQueue<S> {
    type Buf = AfBuf;

    fn rx_burst(&mut self, out: &mut Burst<AfBuf>, max: usize) -> usize {
        let max = max.min(super::MAX_BURST);
        let before = out.len();
        let mut n = 0;
        let sides = self.sockets.len();
        for k in 0..sides {
            let side = (self.first + k) % sides;
            let Some(socket) = self.sockets.get_mut(side) else {
                continue;
            };
            // Tap mode: the injection interface only sends; what arrives
            // there is read and let go, so its ring never fills.
            let discard = self.mode == PortMode::Tap && side == 1;
            let mode = self.mode;
            let (pool, no_buffer, oversize) =
                (&mut self.pool, &mut self.no_buffer, &mut self.oversize);
            n += socket.recv_frames(max - n, |frame| {
                if discard {
                    return;
                }
                let Some(mut buf) = pool.pop() else {
                    *no_buffer += 1;
                    return;
                };
                if fill(&mut buf, &frame) {
                    buf.side = side as u8;
                    buf.arrival = match (mode, side) {
                        (PortMode::Inline, 0) => Some(Side::Outside),
                        (PortMode::Inline, _) => Some(Side::Inside),
                        _ => None,
                    };
                    buf.egress = Egress::Forward;
                    out.push(buf);
                } else {
                    *oversize += 1;
                    pool.push(buf);
                }
            });
            if n >= max {
                break;
            }
        }
        self.first = (self.first + 1) % sides.max(1);
        // The kernel's counters: after many empty polls, or many bursts
        // under load (a system call, never per burst).
        self.idle_polls += if out.len() == before { 1 } else { 16 };
        if self.idle_polls >= STATS_EVERY_IDLE {
            self.idle_polls = 0;
            self.refresh_kernel_stats();
        }
        if out.len() == before {
            // Frames a busy kernel left queued go now, not with the next burst.
            for s in &mut self.sockets {
                s.flush_frames();
            }
        }
        out.len() - before
    }

    fn tx_burst(&mut self, bufs: &mut Burst<AfBuf>) -> TxOutcome {
        let mut outcome = TxOutcome::default();
        for buf in bufs.drain(..) {
            let side = usize::from(buf.side);
            let to = match (self.mode, buf.egress) {
                // One-arm sends only what the appliance made: what it
                // received is a copy of traffic already on its way (the
                // switch flooded it, or a router sent the dark space here)
                // and sending it back would duplicate it and teach the
                // switch a wrong place for its source.
                (PortMode::OneArm, Egress::Reply) => Some(0),
                (PortMode::OneArm, Egress::Forward) => None,
                (PortMode::Inline, Egress::Reply) => Some(side),
                (PortMode::Inline, Egress::Forward) => Some(1 - side.min(1)),
                (PortMode::Tap, Egress::Reply) => Some(1),
                // A copy from the monitor port: the original went its way.
                (PortMode::Tap, Egress::Forward) => None,
            };
            match to.map(|i| {
                self.sockets
                    .get_mut(i)
                    .map(|s| s.send_frame(&buf.data[..buf.len]))
            }) {
                Some(Some(true)) => outcome.sent += 1,
                Some(_) => outcome.dropped += 1,
                None => outcome.skipped += 1,
            }
            self.pool.push(buf);
        }
        for s in &mut self.sockets {
            s.flush_frames();
        }
        outcome
    }

    fn recycle(&mut self, buf: AfBuf) {
        self.pool.push(buf);
    }

    fn alloc(&mut self) -> Option<AfBuf> {
        let mut buf = self.pool.pop()?;
        buf.len = 0;
        buf.side = 0;
        buf.arrival = None;
        Some(buf)
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            rx_dropped: self.kernel_drops + self.no_buffer + self.oversize,
        }
    }
}

/// A kernel backend's port: one queue per worker, a socket per interface
/// in each, and a name for `status`.
pub struct KernelPort<S> {
    name: String,
    queues: Vec<KernelQueue<S>>,
}

impl<S> KernelPort<S> {
    /// The port `backend:mode:interfaces` over `queues`.
    pub fn new(
        backend: &str,
        mode: PortMode,
        interfaces: &[String],
        queues: Vec<KernelQueue<S>>,
    ) -> Self {
        KernelPort {
            name: format!("{backend}:{}:{}", mode.as_str(), interfaces.join(",")),
            queues,
        }
    }
}

impl<S: FrameSocket + 'static> Port for KernelPort<S> {
    type Queue = KernelQueue<S>;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn take_queues(&mut self) -> Vec<KernelQueue<S>> {
        std::mem::take(&mut self.queues)
    }
}

/// The AF_PACKET port.
pub type AfPacketPort = KernelPort<Socket>;
impl KernelPort<Socket> {
    /// Opens `queues` queues on the configured interfaces.
    pub fn open(
        config: &AfPacketConfig,
        queues: usize,
    ) -> Result<AfPacketPort, baitwall_afpacket::OpenError> {
        let mut out = Vec::with_capacity(queues);
        // One fanout group per interface: the first queue's socket makes it
        // (the kernel picks an id no other group in the namespace has), the
        // others join it.
        let mut groups: Vec<Option<u16>> = vec![None; config.interfaces.len()];
        for _ in 0..queues {
            let mut sockets = Vec::with_capacity(config.interfaces.len());
            for (i, iface) in config.interfaces.iter().enumerate() {
                let fanout = match groups.get(i).copied().flatten() {
                    Some(id) => Fanout::Join(id),
                    None => Fanout::New,
                };
                let ring = RingConfig {
                    fanout: (queues > 1).then_some(fanout),
                    ..config.ring
                };
                let socket = Socket::open(iface, &ring)?;
                if queues > 1
                    && let Some(slot) = groups.get_mut(i)
                    && slot.is_none()
                {
                    *slot = Some(socket.fanout_group().map_err(|source| {
                        baitwall_afpacket::OpenError::Sys {
                            what: "reading the fanout group",
                            name: iface.clone(),
                            source,
                        }
                    })?);
                }
                sockets.push(socket);
            }
            out.push(KernelQueue::new(
                config.mode,
                sockets,
                config.buffers_per_queue,
            ));
        }
        Ok(KernelPort::new(
            "afpacket",
            config.mode,
            &config.interfaces,
            out,
        ))
    }
}
