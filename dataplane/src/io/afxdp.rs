//! The AF_XDP port (cargo feature `afxdp`): the same three ways on the wire
//! as the AF_PACKET port (one-arm, inline, tap; see [`super::afpacket`]),
//! with an AF_XDP socket per worker and interface instead of a packet
//! socket. Worker `i` binds queue `i` of each interface, so an interface
//! needs as many queues as there are workers (the NIC's RSS spreads flows
//! over them; a veth has one queue unless created with more).
//!
//! Frames are copied out of the UMEM into the queue's buffers and back into
//! UMEM frames on transmit, as with AF_PACKET, but without a system call
//! per burst (only when the kernel asks for a wakeup), and in native mode
//! without the kernel's network stack at all.

use baitwall_afxdp::{XdpConfig, XdpError, XdpSocket};

use super::afpacket::{FrameSocket, KernelPort, KernelQueue, PortMode, RxFrame};

impl FrameSocket for XdpSocket {
    fn recv_frames(&mut self, max: usize, mut f: impl FnMut(RxFrame<'_>)) -> usize {
        self.recv(max, |data| {
            f(RxFrame {
                data,
                timestamp_ns: 0,
                vlan: None,
            })
        })
    }
    fn send_frame(&mut self, frame: &[u8]) -> bool {
        self.send(frame)
    }
    fn flush_frames(&mut self) {
        self.flush();
    }
    fn kernel_drops(&mut self) -> u64 {
        self.drops()
    }
}

/// What to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// The mode.
    pub mode: PortMode,
    /// Interfaces in the mode's order (as for AF_PACKET).
    pub interfaces: Vec<String>,
    /// UMEM size and attach mode.
    pub xdp: XdpConfig,
    /// Buffers each queue preallocates.
    pub buffers_per_queue: usize,
}

/// One worker's queue.
pub type AfXdpQueue = KernelQueue<XdpSocket>;

/// The AF_XDP port.
pub type AfXdpPort = KernelPort<XdpSocket>;

impl KernelPort<XdpSocket> {
    /// Opens `queues` queues: queue `i` of every interface for worker `i`.
    pub fn open(config: &AfXdpConfig, queues: usize) -> Result<AfXdpPort, XdpError> {
        let mut out = Vec::with_capacity(queues);
        for q in 0..queues {
            let sockets = config
                .interfaces
                .iter()
                .map(|iface| XdpSocket::open(iface, q as u32, &config.xdp))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(KernelQueue::new(
                config.mode,
                sockets,
                config.buffers_per_queue,
            ));
        }
        Ok(KernelPort::new(
            "afxdp",
            config.mode,
            &config.interfaces,
            out,
        ))
    }
}
