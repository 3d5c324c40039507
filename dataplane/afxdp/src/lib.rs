//! An AF_XDP socket for the dataplane: one UMEM per socket, its frames
//! split between the fill ring (for the kernel to receive into) and a free
//! list for transmit, over xsk-rs (libxdp loads the default XDP program
//! that redirects the bound queue's frames to the socket).
//!
//! The API is the one the dataplane's kernel backends share: receive up to
//! a burst of frames (each borrowed until the callback returns, then its
//! UMEM frame goes straight back to the fill ring), queue frames for
//! transmit, flush (a wakeup system call only when the kernel asks for
//! one). Native (driver) mode where the driver supports it, which veth
//! does; copy (SKB) mode otherwise.
//!
//! Why a wrapper: xsk-rs's calls are `unsafe` because the caller must only
//! touch descriptors the kernel has handed back; this crate owns every
//! descriptor and keeps that bookkeeping in one place.

#![allow(unsafe_code)]

use std::io::Write;
use std::num::NonZeroU32;

use xsk_rs::config::{BindFlags, Interface, QueueSize, SocketConfig, UmemConfig, XdpFlags};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// How the XDP program attaches.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Let the kernel choose (native where it can).
    Auto,
    /// The driver's own XDP hook (veth, most 10G+ NICs).
    Native,
    /// The generic hook after the driver (any interface; slower).
    Skb,
}

/// Sizes and mode of one socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// UMEM frames (2 KiB each): half receive, half transmit.
    pub frames: u32,
    /// The attach mode.
    pub mode: XdpMode,
}

impl Default for XdpConfig {
    /// 4,096 frames, automatic mode.
    fn default() -> Self {
        XdpConfig {
            frames: 4096,
            mode: XdpMode::Auto,
        }
    }
}

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// A bad interface name or size.
    #[error("{0}")]
    Config(String),
    /// The UMEM could not be created.
    #[error("UMEM for {iface}: {reason}")]
    Umem {
        /// The interface.
        iface: String,
        /// libxdp's reason.
        reason: String,
    },
    /// The socket could not be created or bound.
    #[error("AF_XDP socket on {iface} queue {queue}: {reason}")]
    Socket {
        /// The interface.
        iface: String,
        /// The queue.
        queue: u32,
        /// libxdp's reason.
        reason: String,
    },
}

/// The most frames one receive call takes.
pub const MAX_BURST: usize = 64;

/// An open socket.
pub struct XdpSocket {
    umem: Umem,
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    /// Scratch descriptors for receive and completion (allocated once).
    scratch: Vec<FrameDesc>,
    /// Frames free for transmit (ours, not the kernel's).
    free: Vec<FrameDesc>,
    pending: usize,
}

// SAFETY: the socket, its rings and its UMEM are used by the one thread
// that owns this value; xsk-rs's handles are plain pointers to mappings
// that stay valid wherever the owner moves.
unsafe impl Send for XdpSocket {}

impl XdpSocket {
    /// Opens a socket on `iface` queue `queue`.
    pub fn open(iface: &str, queue: u32, config: &XdpConfig) -> Result<XdpSocket, XdpError> {
        let frames = NonZeroU32::new(config.frames.max(64))
            .ok_or_else(|| XdpError::Config("frames must be positive".into()))?;
        // Every ring holds what half the UMEM can put in it: the fill ring
        // must take the whole receive half at once, and libxdp's default
        // (2,048) would refuse a larger UMEM.
        let ring = QueueSize::new((frames.get() / 2).next_power_of_two().max(2048))
            .map_err(|e| XdpError::Config(format!("ring size: {e}")))?;
        let umem_config = UmemConfig::builder()
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| XdpError::Config(format!("UMEM: {e}")))?;
        let (umem, mut descs) =
            Umem::new(umem_config, frames, false).map_err(|e| XdpError::Umem {
                iface: iface.into(),
                reason: e.to_string(),
            })?;
        let xdp_flags = match config.mode {
            XdpMode::Auto => XdpFlags::empty(),
            XdpMode::Native => XdpFlags::XDP_FLAGS_DRV_MODE,
            XdpMode::Skb => XdpFlags::XDP_FLAGS_SKB_MODE,
        };
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .xdp_flags(xdp_flags)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let name: Interface = iface
            .parse()
            .map_err(|_| XdpError::Config(format!("{iface:?} is not an interface name")))?;
        let fail = |reason: String| XdpError::Socket {
            iface: iface.into(),
            queue,
            reason,
        };
        // SAFETY: this UMEM is not shared: it is fresh, and this is the
        // only socket made from it, so the INHIBIT_PROG_LOAD requirement
        // for shared UMEMs does not apply.
        let (tx, rx, rings) = unsafe { xsk_rs::Socket::new(socket_config, &umem, &name, queue) }
            .map_err(|e| fail(e.to_string()))?;
        let (mut fill, comp) = rings.ok_or_else(|| fail("no fill and completion rings".into()))?;
        let half = descs.len() / 2;
        let free = descs.split_off(half);
        // SAFETY: these descriptors are fresh from this socket's UMEM and
        // handed to the kernel once; we touch them again only after the RX
        // ring returns them.
        let filled = unsafe { fill.produce(&descs) };
        if filled != descs.len() {
            return Err(fail(format!(
                "the fill ring took {filled} of {} frames",
                descs.len()
            )));
        }
        // Descriptors only ever overwritten by the rings' consume calls:
        // copies of fill-ring entries serve as room, never as frames.
        let scratch = descs.into_iter().take(MAX_BURST).collect();
        Ok(XdpSocket {
            umem,
            rx,
            tx,
            fill,
            comp,
            scratch,
            free,
            pending: 0,
        })
    }

    /// Calls `f` for up to `max` received frames; each UMEM frame goes back
    /// to the fill ring when `f` returns. No system call unless the fill
    /// ring needs a wakeup.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let n = max.min(self.scratch.len());
        // SAFETY: `scratch` holds descriptors of this socket's UMEM that we
        // own; the RX ring fills in the ones the kernel hands back.
        let got = unsafe { self.rx.consume(&mut self.scratch[..n]) };
        for desc in self.scratch.iter().take(got) {
            // SAFETY: the kernel handed this frame to us (consumed above)
            // and gets it back only below, after the borrow ends.
            let data = unsafe { self.umem.data(desc) };
            f(data.contents());
        }
        if got > 0 {
            // SAFETY: these frames are ours (just consumed) and nothing
            // refers to them any more; the kernel may receive into them.
            unsafe {
                self.fill.produce(&self.scratch[..got]);
            }
            if self.fill.needs_wakeup() {
                let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
            }
        }
        got
    }

    /// Queues `frame` for transmit; false when every TX frame is in flight
    /// or the frame does not fit one.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        self.reclaim();
        let Some(mut desc) = self.free.pop() else {
            return false;
        };
        let written = {
            // SAFETY: `desc` is a free frame of this UMEM (in no ring).
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cursor = data.cursor();
            cursor.write_all(frame).is_ok()
        };
        // SAFETY: the frame is written and ours; the TX ring hands it to
        // the kernel, which returns it through the completion ring.
        if !written || unsafe { self.tx.produce_one(&desc) } == 0 {
            self.free.push(desc);
            return false;
        }
        self.pending += 1;
        true
    }

    /// Takes transmitted frames back from the completion ring.
    fn reclaim(&mut self) {
        let room = MAX_BURST.min(self.scratch.len());
        // SAFETY: the completion ring returns frames the kernel has sent;
        // they are ours again. `scratch` is free between receive calls.
        let done = unsafe { self.comp.consume(&mut self.scratch[..room]) };
        self.free.extend_from_slice(&self.scratch[..done]);
    }

    /// Kicks the kernel to send what is queued (a system call only when it
    /// asks for one).
    pub fn flush(&mut self) {
        if self.pending > 0 {
            self.pending = 0;
            if self.tx.needs_wakeup() {
                let _ = self.tx.wakeup();
            }
        }
    }

    /// Frames the kernel dropped: RX ring full, no fill frame, invalid.
    pub fn drops(&mut self) -> u64 {
        self.rx
            .fd()
            .xdp_statistics()
            .map(|s| s.rx_dropped() + s.rx_ring_full() + s.rx_invalid_descs())
            .unwrap_or(0)
    }
}
