//! An AF_PACKET socket with TPACKET_V3 memory-mapped rings: the dataplane's
//! default live backend, which needs nothing but the kernel.
//!
//! Receiving walks the blocks the kernel hands over in the RX ring (one
//! atomic load per block, no system call while frames are waiting);
//! sending writes frames into TX ring slots and hands the batch to the
//! kernel with one `send(2)` ([`Socket::flush`]). Every queue of a port is
//! one socket; sockets of one interface join a fanout group (hash mode), so
//! the kernel spreads flows over the workers the way RSS does on a NIC, with
//! a symmetric flow hash (both directions of a flow reach the same worker).
//! `PACKET_QDISC_BYPASS` skips the qdisc on transmit,
//! `PACKET_IGNORE_OUTGOING` keeps the socket from reading back what it (or
//! the host) sends, and `PACKET_STATISTICS` counts what the kernel dropped
//! because a ring was full.
//!
//! Why our own: the crates on offer wrap TPACKET_V1/V2 or the plain
//! socket API; the burst model (walk a block, copy out, release; fill slots,
//! one send) is a few hundred lines over libc, and this is one of the few
//! crates allowed `unsafe`: it maps the kernel's ring and reads headers the
//! kernel writes. Layouts are the kernel's `linux/if_packet.h` (stable ABI);
//! see the kernel's Documentation/networking/packet_mmap.rst.

// The whole crate is the socket: it maps the kernel's rings and calls into
// libc; the accesses are justified block by block.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Sizes and options of one socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per RX block (a power of two, at least a page).
    pub block_size: u32,
    /// RX blocks.
    pub block_count: u32,
    /// A block is handed over after this many milliseconds even when not
    /// full (the latency bound at low rates).
    pub retire_ms: u32,
    /// Bytes per TX slot (a multiple of 16 that divides `block_size`).
    pub frame_size: u32,
    /// TX slots.
    pub tx_frames: u32,
    /// Fanout group to join (hash mode), if any: `Some(Fanout::New)` makes
    /// a group with an id the kernel picks, unique in the namespace (read
    /// it with [`Socket::fanout_group`] for the other members).
    pub fanout: Option<Fanout>,
    /// Put the interface in promiscuous mode while the socket is open.
    pub promiscuous: bool,
    /// Transmit straight to the driver, past the qdisc.
    pub qdisc_bypass: bool,
}

impl Default for RingConfig {
    /// 4 MiB of RX ring in 64 KiB blocks retired after 1 ms, 1,024 TX slots
    /// of 2 KiB, promiscuous, qdisc bypass, no fanout.
    fn default() -> Self {
        RingConfig {
            block_size: 1 << 16,
            block_count: 64,
            retire_ms: 1,
            frame_size: 2048,
            tx_frames: 1024,
            fanout: None,
            promiscuous: true,
            qdisc_bypass: true,
        }
    }
}

/// Which fanout group a socket joins.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fanout {
    /// A new group, its id chosen by the kernel (no clash with another
    /// process's group in the same network namespace).
    New,
    /// The group of that id (made by a first socket with `New`).
    Join(u16),
}

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such interface.
    #[error("interface {name:?}: {source}")]
    Interface {
        /// The name asked for.
        name: String,
        /// The cause.
        source: io::Error,
    },
    /// A system call failed.
    #[error("{what} on {name:?}: {source}")]
    Sys {
        /// The step.
        what: &'static str,
        /// The interface.
        name: String,
        /// The cause.
        source: io::Error,
    },
    /// The ring sizes are not ones the kernel takes.
    #[error("ring sizes: {0}")]
    Sizes(String),
}

/// One received frame, borrowed from the ring until the callback returns.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The frame as captured (an 802.1Q tag the driver stripped is in `vlan`).
    pub data: &'a [u8],
    /// Its length on the wire (`data` may be shorter).
    pub wire_len: u32,
    /// Kernel receive time, Unix nanoseconds.
    pub timestamp_ns: u64,
    /// A VLAN tag the driver took off: (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
}

/// Kernel counters of a socket, cumulative since it opened.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames the kernel delivered to the ring (drops included).
    pub packets: u64,
    /// Frames the kernel dropped because the ring was full.
    pub drops: u64,
    /// Times the ring froze (every block in user hands).
    pub freezes: u64,
}

// Offsets in the kernel's structures (linux/if_packet.h).
/// `tpacket_block_desc.hdr.bh1.block_status`.
const BLOCK_STATUS: usize = 8;
/// `.num_pkts`.
const BLOCK_NUM_PKTS: usize = 12;
/// `.offset_to_first_pkt`.
const BLOCK_FIRST: usize = 16;
/// `tpacket3_hdr` fields.
const H_NEXT: usize = 0;
const H_SEC: usize = 4;
const H_NSEC: usize = 8;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where TX data starts.
const TX_DATA: usize = 48;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;

/// An open socket and its mapped rings.
pub struct Socket {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    block_size: usize,
    blocks: usize,
    /// The RX block being read.
    block: usize,
    /// Within it: offset of the next frame and frames left.
    cursor: Option<(usize, u32)>,
    tx_base: usize,
    frame_size: usize,
    tx_frames: usize,
    tx_next: usize,
    tx_pending: usize,
    /// TX slots the kernel refused (malformed frame), reset and counted.
    pub tx_rejected: u64,
    /// RX blocks whose headers did not add up, skipped and counted.
    pub rx_corrupt: u64,
    totals: Stats,
}

// SAFETY: the socket owns its fd and its mapping outright; nothing else in
// this process refers to them, so moving it to the worker thread that will
// own it is sound (it is not Sync: one thread at a time uses it).
unsafe impl Send for Socket {}

fn sys<'a>(what: &'static str, name: &'a str) -> impl FnOnce(io::Error) -> OpenError + 'a {
    move |source| OpenError::Sys {
        what,
        name: name.to_owned(),
        source,
    }
}

/// `setsockopt(SOL_PACKET, opt, value)`.
fn set_opt<T>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of `size_of::<T>()` bytes for the
    // duration of the call, and the fd is open; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Socket {
    /// Opens a socket on `iface` with `config`'s rings.
    pub fn open(iface: &str, config: &RingConfig) -> Result<Socket, OpenError> {
        let page = 4096u32;
        let c = config;
        if !c.block_size.is_power_of_two()
            || c.block_size < page
            || c.block_count == 0
            || c.frame_size < 128
            || !c.frame_size.is_multiple_of(16)
            || !c.block_size.is_multiple_of(c.frame_size)
            || c.tx_frames == 0
        {
            return Err(OpenError::Sizes(format!(
                "block_size {} (a power of two >= 4096), block_count {}, frame_size {} (a multiple of 16 dividing block_size), tx_frames {}",
                c.block_size, c.block_count, c.frame_size, c.tx_frames
            )));
        }
        let name = CString::new(iface).map_err(|_| OpenError::Interface {
            name: iface.into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"),
        })?;
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(OpenError::Interface {
                name: iface.into(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            // Protocol 0: the socket receives nothing until `bind` below
            // names the interface (and ETH_P_ALL), after the rings exist.
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
        };
        if raw < 0 {
            return Err(sys("socket(AF_PACKET)", iface)(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_opt(
            &fd,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as libc::c_int),
        )
        .map_err(sys("PACKET_VERSION", iface))?;
        set_opt(&fd, libc::PACKET_IGNORE_OUTGOING, &1 as &libc::c_int)
            .map_err(sys("PACKET_IGNORE_OUTGOING", iface))?;
        // A frame the kernel refuses (too long for the device) is skipped
        // instead of stopping the TX ring at it until we come round again.
        set_opt(&fd, libc::PACKET_LOSS, &1 as &libc::c_int).map_err(sys("PACKET_LOSS", iface))?;
        if c.qdisc_bypass {
            set_opt(&fd, libc::PACKET_QDISC_BYPASS, &1 as &libc::c_int)
                .map_err(sys("PACKET_QDISC_BYPASS", iface))?;
        }
        let rx = libc::tpacket_req3 {
            tp_block_size: c.block_size,
            tp_block_nr: c.block_count,
            tp_frame_size: c.frame_size,
            tp_frame_nr: c.block_size / c.frame_size * c.block_count,
            tp_retire_blk_tov: c.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_opt(&fd, libc::PACKET_RX_RING, &rx).map_err(sys("PACKET_RX_RING", iface))?;
        let per_block = c.block_size / c.frame_size;
        let tx_blocks = c.tx_frames.div_ceil(per_block);
        let tx = libc::tpacket_req3 {
            tp_block_size: c.block_size,
            tp_block_nr: tx_blocks,
            tp_frame_size: c.frame_size,
            tp_frame_nr: tx_blocks * per_block,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_opt(&fd, libc::PACKET_TX_RING, &tx).map_err(sys("PACKET_TX_RING", iface))?;
        let rx_len = c.block_size as usize * c.block_count as usize;
        let tx_len = c.block_size as usize * tx_blocks as usize;
        // SAFETY: a fresh shared mapping of the socket's rings (RX then TX,
        // as the kernel lays them out), checked for failure before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                rx_len + tx_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(sys("mmap of the rings", iface)(io::Error::last_os_error()));
        }
        let socket = Socket {
            fd,
            map: map.cast(),
            map_len: rx_len + tx_len,
            block_size: c.block_size as usize,
            blocks: c.block_count as usize,
            block: 0,
            cursor: None,
            tx_base: rx_len,
            frame_size: c.frame_size as usize,
            tx_frames: (tx_blocks * per_block) as usize,
            tx_next: 0,
            tx_pending: 0,
            tx_rejected: 0,
            rx_corrupt: 0,
            totals: Stats::default(),
        };
        // SAFETY: `sockaddr_ll` is plain data; all zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(sys("bind", iface)(io::Error::last_os_error()));
        }
        if c.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            set_opt(&socket.fd, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(sys("PACKET_ADD_MEMBERSHIP (promiscuous)", iface))?;
        }
        if let Some(fanout) = c.fanout {
            let (group, flags) = match fanout {
                Fanout::New => (0, libc::PACKET_FANOUT_FLAG_UNIQUEID),
                Fanout::Join(id) => (id, 0),
            };
            let kind = (libc::PACKET_FANOUT_HASH | flags) as libc::c_int;
            let arg: libc::c_int = libc::c_int::from(group) | (kind << 16);
            set_opt(&socket.fd, libc::PACKET_FANOUT, &arg).map_err(sys("PACKET_FANOUT", iface))?;
        }
        Ok(socket)
    }

    /// The fanout group this socket is in (its id, for other members).
    pub fn fanout_group(&self) -> io::Result<u16> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((v & 0xffff) as u16)
    }

    /// A `u32` the kernel and we both write, at `offset` in the mapping.
    fn atomic_at(&self, offset: usize) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) || offset + 4 > self.map_len {
            return None;
        }
        // SAFETY: in bounds and 4-byte aligned (checked above; the mapping
        // is page-aligned); the kernel accesses this status word atomically
        // too, and the reference lives no longer than `self`, which keeps
        // the mapping.
        Some(unsafe { &*(self.map.add(offset) as *const AtomicU32) })
    }

    /// A plain `u32` the kernel wrote before handing the block over.
    fn u32_at(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.bytes(offset, 4));
        u32::from_ne_bytes(b)
    }

    fn u16_at(&self, offset: usize) -> u16 {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.bytes(offset, 2));
        u16::from_ne_bytes(b)
    }

    /// `len` bytes at `offset` of the mapping (empty when out of bounds).
    fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        if offset.checked_add(len).is_none_or(|end| end > self.map_len) {
            return &[];
        }
        // SAFETY: in bounds (checked); the bytes belong to a block (or slot)
        // the kernel has handed to us and does not write until we give it
        // back; the slice borrows `self`, which keeps the mapping.
        unsafe { std::slice::from_raw_parts(self.map.add(offset), len) }
    }

    /// Hands the current RX block back to the kernel and moves on.
    fn release_block(&mut self) {
        let desc = self.block * self.block_size;
        if let Some(status) = self.atomic_at(desc + BLOCK_STATUS) {
            status.store(TP_STATUS_KERNEL, Ordering::Release);
        }
        self.block = (self.block + 1) % self.blocks;
        self.cursor = None;
    }

    /// Calls `f` for up to `max` waiting frames, oldest first; returns how
    /// many. No system call: frames are read from blocks the kernel has
    /// retired; 0 means none is waiting now.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(Frame<'_>)) -> usize {
        let mut n = 0;
        while n < max {
            let desc = self.block * self.block_size;
            let (offset, left) = match self.cursor {
                Some(c) => c,
                None => {
                    let ready = self
                        .atomic_at(desc + BLOCK_STATUS)
                        .is_some_and(|s| s.load(Ordering::Acquire) & TP_STATUS_USER != 0);
                    if !ready {
                        break;
                    }
                    let count = self.u32_at(desc + BLOCK_NUM_PKTS);
                    let first = self.u32_at(desc + BLOCK_FIRST) as usize;
                    if count == 0 {
                        self.release_block();
                        continue;
                    }
                    (first, count)
                }
            };
            let hdr = desc + offset;
            let in_block = |at: usize, len: usize| offset + at + len <= self.block_size;
            if !in_block(0, TX_DATA) {
                self.rx_corrupt += 1;
                self.release_block();
                continue;
            }
            let snaplen = self.u32_at(hdr + H_SNAPLEN) as usize;
            let mac = usize::from(self.u16_at(hdr + H_MAC));
            if !in_block(mac, snaplen) {
                self.rx_corrupt += 1;
                self.release_block();
                continue;
            }
            let status = self.u32_at(hdr + H_STATUS);
            let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
                let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    self.u16_at(hdr + H_VLAN_TPID)
                } else {
                    0x8100
                };
                (tpid, self.u32_at(hdr + H_VLAN_TCI) as u16)
            });
            let next = self.u32_at(hdr + H_NEXT) as usize;
            f(Frame {
                data: self.bytes(hdr + mac, snaplen),
                wire_len: self.u32_at(hdr + H_LEN),
                timestamp_ns: u64::from(self.u32_at(hdr + H_SEC)) * 1_000_000_000
                    + u64::from(self.u32_at(hdr + H_NSEC)),
                vlan,
            });
            n += 1;
            if left <= 1 || next == 0 {
                self.release_block();
            } else {
                self.cursor = Some((offset + next, left - 1));
            }
        }
        n
    }

    /// Queues one frame in the TX ring; false when the ring is full or the
    /// frame does not fit a slot. Nothing is sent before [`Socket::flush`].
    pub fn send(&mut self, frame: &[u8]) -> bool {
        if frame.len() > self.frame_size - TX_DATA {
            return false;
        }
        let slot = self.tx_base + self.tx_next * self.frame_size;
        let Some(now) = self
            .atomic_at(slot + H_STATUS)
            .map(|s| s.load(Ordering::Acquire))
        else {
            return false;
        };
        match now {
            TP_STATUS_AVAILABLE => {}
            TP_STATUS_WRONG_FORMAT => {
                // The kernel refused what was here: count it, reuse the slot.
                self.tx_rejected += 1;
            }
            _ => return false,
        }
        let len = frame.len() as u32;
        // SAFETY: the slot is ours (status AVAILABLE: the kernel is done
        // with it) and `slot + TX_DATA + len` is inside the mapping (the
        // slot lies inside the TX ring and `len` fits the slot); header
        // fields are 4-byte aligned in a 16-byte aligned slot.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.map.add(slot + TX_DATA),
                frame.len(),
            );
            std::ptr::write(self.map.add(slot + H_NEXT).cast::<u32>(), 0);
            std::ptr::write(self.map.add(slot + H_LEN).cast::<u32>(), len);
            std::ptr::write(self.map.add(slot + H_SNAPLEN).cast::<u32>(), len);
        }
        // Release: the frame and its length are visible before the request.
        if let Some(status) = self.atomic_at(slot + H_STATUS) {
            status.store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        }
        self.tx_next = (self.tx_next + 1) % self.tx_frames;
        self.tx_pending += 1;
        true
    }

    /// Asks the kernel to send every queued frame (one system call, not
    /// waiting); nothing happens when none is queued.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.tx_pending == 0 {
            return Ok(());
        }
        // SAFETY: send(2) with no buffer: the kernel reads the TX ring.
        let rc =
            unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // Busy: the frames stay queued and go with the next flush
            // (the queue flushes again when it finds nothing to receive).
            if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) {
                return Ok(());
            }
            return Err(e);
        }
        self.tx_pending = 0;
        Ok(())
    }

    /// The kernel's counters, cumulative (one system call; not per packet).
    pub fn statistics(&mut self) -> io::Result<Stats> {
        let mut s = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `s` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut s as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel resets its counters at every read: keep the sums here.
        self.totals.packets += u64::from(s.tp_packets);
        self.totals.drops += u64::from(s.tp_drops);
        self.totals.freezes += u64::from(s.tp_freeze_q_cnt);
        Ok(self.totals)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; nothing refers
        // to it any more (every borrow of `self` has ended).
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}
