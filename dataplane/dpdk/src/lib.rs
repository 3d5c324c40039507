//! A thin, safe binding of the DPDK the dataplane uses: the EAL (once per
//! process), packet mempools, Ethernet ports configured with the
//! dataplane's symmetric Toeplitz RSS key, and rx/tx bursts of owned mbufs.
//!
//! Why our own, and why a shim: capsule (the one Rust DPDK framework) is
//! pinned to DPDK 19.11 and does not build against Debian's 22.11; and
//! DPDK's burst and mbuf calls are static inline, absent from its shared
//! libraries. So `shim/shim.c`, compiled against the system's headers,
//! turns the dozen calls we need into plain functions with plain
//! arguments, and this crate declares exactly those: no DPDK structure
//! layout crosses the boundary, so a DPDK update cannot silently break it
//! (ADR 0008).
//!
//! Without DPDK at build time the crate still builds and every call
//! returns [`DpdkError::NotBuilt`].

// The FFI is the crate; each block says why it is sound.
#![allow(unsafe_code)]
// Built without DPDK, the plumbing for the calls is left unused.
#![cfg_attr(bw_no_dpdk, allow(dead_code, unused_imports))]

use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// This build has no DPDK (libdpdk was not found when it was built).
    #[error("this build has no DPDK (install libdpdk-dev and rebuild)")]
    NotBuilt,
    /// The EAL refused to start.
    #[error("EAL init with {args:?}: {message}")]
    Eal {
        /// The arguments.
        args: Vec<String>,
        /// DPDK's reason.
        message: String,
    },
    /// The EAL is initialised already, with other arguments.
    #[error("the EAL is initialised already (with {0:?}); a process has one")]
    AlreadyInitialised(Vec<String>),
    /// A call failed.
    #[error("{what}: {message}")]
    Call {
        /// The call.
        what: String,
        /// DPDK's reason.
        message: String,
    },
}

#[cfg(not(bw_no_dpdk))]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    unsafe extern "C" {
        pub fn bw_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
        pub fn bw_strerror(err: c_int) -> *const c_char;
        pub fn bw_thread_register() -> c_int;
        pub fn bw_pool_create(name: *const c_char, n: u32, cache: u32) -> *mut c_void;
        pub fn bw_port_by_name(name: *const c_char, port: *mut u16) -> c_int;
        pub fn bw_port_setup(
            port: u16,
            queues: u16,
            rx_desc: u16,
            tx_desc: u16,
            pool: *mut c_void,
            key: *const u8,
            key_len: u8,
        ) -> c_int;
        pub fn bw_port_stop(port: u16) -> c_int;
        pub fn bw_port_stats(port: u16, out: *mut u64) -> c_int;
        pub fn bw_rx_burst(port: u16, queue: u16, pkts: *mut *mut c_void, n: u16) -> u16;
        pub fn bw_tx_burst(port: u16, queue: u16, pkts: *mut *mut c_void, n: u16) -> u16;
        pub fn bw_mbuf_alloc(pool: *mut c_void) -> *mut c_void;
        pub fn bw_mbuf_free(m: *mut c_void);
        pub fn bw_mbuf_data(m: *mut c_void, len: *mut u16, room: *mut u16) -> *mut u8;
        pub fn bw_mbufs_data(
            m: *mut *mut c_void,
            n: u16,
            data: *mut *mut u8,
            len: *mut u16,
            room: *mut u16,
        );
        pub fn bw_mbuf_set_len(m: *mut c_void, len: u16) -> c_int;
    }
}

/// DPDK's text for an errno-style code (negative or positive).
#[cfg(not(bw_no_dpdk))]
fn strerror(code: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string, valid until the next call on this thread; it
    // is copied at once.
    unsafe {
        let p = ffi::bw_strerror(code.abs());
        if p.is_null() {
            return format!("error {code}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn call_err(what: impl Into<String>, code: c_int) -> DpdkError {
    #[cfg(not(bw_no_dpdk))]
    let message = strerror(code);
    #[cfg(bw_no_dpdk)]
    let message = format!("error {code}");
    DpdkError::Call {
        what: what.into(),
        message,
    }
}

/// The initialised EAL (one per process).
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

static EAL: OnceLock<Result<Eal, DpdkError>> = OnceLock::new();

impl Eal {
    /// Starts the EAL with `args` (as on DPDK's command line, without the
    /// program name), or returns the one started before if the arguments
    /// are the same.
    pub fn init(args: &[String]) -> Result<&'static Eal, DpdkError> {
        let eal = EAL.get_or_init(|| start(args));
        match eal {
            Ok(e) if e.args == args => Ok(e),
            Ok(e) => Err(DpdkError::AlreadyInitialised(e.args.clone())),
            Err(e) => Err(e.clone()),
        }
    }

    /// Registers the calling thread with the EAL (a worker thread that is
    /// not an EAL lcore gets an lcore id, and with it mempool caches).
    pub fn register_thread(&self) -> Result<(), DpdkError> {
        #[cfg(not(bw_no_dpdk))]
        {
            // SAFETY: the EAL is initialised (`self` exists only then).
            let rc = unsafe { ffi::bw_thread_register() };
            if rc < 0 {
                return Err(call_err("rte_thread_register", rc));
            }
            Ok(())
        }
        #[cfg(bw_no_dpdk)]
        Err(DpdkError::NotBuilt)
    }
}

#[cfg(not(bw_no_dpdk))]
fn start(args: &[String]) -> Result<Eal, DpdkError> {
    let fail = |message: String| DpdkError::Eal {
        args: args.to_vec(),
        message,
    };
    let owned: Vec<CString> = std::iter::once("baitwall".to_string())
        .chain(args.iter().cloned())
        .map(|a| CString::new(a).map_err(|_| fail("an argument holds a NUL".into())))
        .collect::<Result<_, _>>()?;
    // rte_eal_init may reorder argv; it gets its own array of pointers
    // into `owned`, which outlives the call (and is then leaked on purpose:
    // DPDK may keep pointers into argv for the life of the process).
    let mut argv: Vec<*mut c_char> = owned.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    // SAFETY: argv holds argc valid NUL-terminated strings; both stay
    // alive for the process (leaked below).
    let rc = unsafe { ffi::bw_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
    std::mem::forget(owned);
    std::mem::forget(argv);
    if rc < 0 {
        return Err(fail(strerror(rc)));
    }
    Ok(Eal {
        args: args.to_vec(),
    })
}

#[cfg(bw_no_dpdk)]
fn start(_args: &[String]) -> Result<Eal, DpdkError> {
    Err(DpdkError::NotBuilt)
}

/// A pool of packet buffers (mbufs).
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<c_void>,
}

// SAFETY: an rte_mempool is designed for concurrent use from many threads
// (lock-free ring plus per-lcore caches); the handle is only a pointer.
unsafe impl Send for Mempool {}
// SAFETY: as above: every operation on it is thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// A pool of `n` mbufs of DPDK's default size (2 KiB of data room),
    /// with per-lcore caches of `cache`.
    pub fn new(_eal: &Eal, name: &str, n: u32, cache: u32) -> Result<Mempool, DpdkError> {
        #[cfg(not(bw_no_dpdk))]
        {
            let cname = CString::new(name).map_err(|_| call_err("mempool name", 22))?;
            // SAFETY: the EAL is up (`_eal`); `cname` outlives the call.
            let p = unsafe { ffi::bw_pool_create(cname.as_ptr(), n, cache) };
            NonNull::new(p)
                .map(|ptr| Mempool { ptr })
                .ok_or_else(|| DpdkError::Call {
                    what: format!("rte_pktmbuf_pool_create({name}, {n})"),
                    message: "no memory (raise -m, or fewer mbufs)".into(),
                })
        }
        #[cfg(bw_no_dpdk)]
        {
            let _ = (name, n, cache);
            Err(DpdkError::NotBuilt)
        }
    }

    /// One mbuf from the pool, empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        #[cfg(not(bw_no_dpdk))]
        {
            // SAFETY: the pool is valid for the life of `self`.
            NonNull::new(unsafe { ffi::bw_mbuf_alloc(self.ptr.as_ptr()) }).map(Mbuf::own)
        }
        #[cfg(bw_no_dpdk)]
        None
    }
}

/// An owned mbuf (one segment); freed back to its pool on drop.
///
/// Where its data starts, its length and its room are read once, when it
/// is taken (one call into the shim), and kept here: the engine asks for
/// the frame's bytes several times per frame, and a call across the FFI
/// each time showed in the profile. Nothing else moves them while we own
/// the mbuf; [`Mbuf::set_len`] updates both sides.
#[derive(Debug)]
pub struct Mbuf {
    ptr: NonNull<c_void>,
    data: *mut u8,
    len: u16,
    room: u16,
}

// SAFETY: an mbuf is owned by one holder at a time (this value), and its
// cached data pointer points into that mbuf; using or freeing it from any
// thread is allowed by DPDK.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of the mbuf at `ptr` (one we were handed by the
    /// pool or the device) and reads where its data is.
    fn own(ptr: NonNull<c_void>) -> Mbuf {
        #[cfg(not(bw_no_dpdk))]
        {
            let (mut len, mut room) = (0u16, 0u16);
            // SAFETY: `ptr` is a live mbuf now ours; the shim writes the two lengths.
            let data = unsafe { ffi::bw_mbuf_data(ptr.as_ptr(), &mut len, &mut room) };
            Mbuf {
                ptr,
                data,
                len,
                room,
            }
        }
        #[cfg(bw_no_dpdk)]
        Mbuf {
            ptr,
            data: std::ptr::null_mut(),
            len: 0,
            room: 0,
        }
    }

    /// The frame's bytes (the first segment's).
    #[inline]
    pub fn data(&self) -> &[u8] {
        if self.data.is_null() {
            return &[];
        }
        // SAFETY: `len` bytes from the mbuf's data pointer are its frame
        // (read from the mbuf when we took it, kept by `set_len`); we own
        // the mbuf and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.data, usize::from(self.len)) }
    }

    /// The frame's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        if self.data.is_null() {
            return &mut [];
        }
        // SAFETY: as in `data`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.data, usize::from(self.len)) }
    }

    /// How long the frame may grow in this mbuf.
    pub fn capacity(&self) -> usize {
        usize::from(self.room)
    }

    /// Sets the frame's length; false past the capacity (nothing changes).
    pub fn set_len(&mut self, len: usize) -> bool {
        #[cfg(not(bw_no_dpdk))]
        {
            let Ok(len) = u16::try_from(len) else {
                return false;
            };
            // SAFETY: a live mbuf we own; the shim checks the bound.
            let ok = unsafe { ffi::bw_mbuf_set_len(self.ptr.as_ptr(), len) == 0 };
            if ok {
                self.len = len;
            }
            ok
        }
        #[cfg(bw_no_dpdk)]
        {
            let _ = len;
            false
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        #[cfg(not(bw_no_dpdk))]
        // SAFETY: we own the mbuf and nobody uses it after this.
        unsafe {
            ffi::bw_mbuf_free(self.ptr.as_ptr());
        }
    }
}

/// The most mbufs one burst moves.
pub const MAX_BURST: usize = 64;

/// Counters of a port, from the device.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Frames the device dropped: no room in an RX ring.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Frames dropped for want of an mbuf.
    pub rx_nombuf: u64,
}

/// A started Ethernet port; stopped and closed when its last handle (the
/// port or one of its queues) is dropped.
#[derive(Debug)]
pub struct EthPort {
    id: u16,
    queues: u16,
    /// The queues are handed out once (one thread per queue).
    taken: std::sync::atomic::AtomicBool,
}

impl EthPort {
    /// Finds a port by its device name (`net_ring0`, `0000:03:00.0`).
    pub fn find(_eal: &Eal, name: &str) -> Result<u16, DpdkError> {
        #[cfg(not(bw_no_dpdk))]
        {
            let cname = CString::new(name).map_err(|_| call_err("port name", 22))?;
            let mut id = 0u16;
            // SAFETY: the EAL is up; both pointers are valid for the call.
            let rc = unsafe { ffi::bw_port_by_name(cname.as_ptr(), &mut id) };
            if rc != 0 {
                return Err(call_err(format!("no DPDK port named {name:?}"), rc));
            }
            Ok(id)
        }
        #[cfg(bw_no_dpdk)]
        {
            let _ = name;
            Err(DpdkError::NotBuilt)
        }
    }

    /// Configures port `id` with `queues` queue pairs (RSS with `key` when
    /// there are several and the device can), receive buffers from `pool`,
    /// and starts it.
    pub fn start(
        _eal: &Eal,
        id: u16,
        queues: u16,
        descriptors: u16,
        pool: &Mempool,
        key: &[u8; 40],
    ) -> Result<std::sync::Arc<EthPort>, DpdkError> {
        #[cfg(not(bw_no_dpdk))]
        {
            // SAFETY: the EAL is up; the pool outlives the port (the caller
            // keeps it: DPDK holds the pointer for its RX queues); the key
            // is read during the call only.
            let rc = unsafe {
                ffi::bw_port_setup(
                    id,
                    queues,
                    descriptors,
                    descriptors,
                    pool.ptr.as_ptr(),
                    key.as_ptr(),
                    40,
                )
            };
            if rc != 0 {
                return Err(call_err(
                    format!("setting up port {id} with {queues} queues"),
                    rc,
                ));
            }
            Ok(std::sync::Arc::new(EthPort {
                id,
                queues,
                taken: std::sync::atomic::AtomicBool::new(false),
            }))
        }
        #[cfg(bw_no_dpdk)]
        {
            let _ = (id, queues, descriptors, pool, key);
            Err(DpdkError::NotBuilt)
        }
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Every queue pair, each usable by one thread; handed out once (a
    /// second call gets none), and each keeps the port open.
    pub fn take_queues(self: &std::sync::Arc<Self>) -> Vec<PortQueue> {
        if self.taken.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Vec::new();
        }
        (0..self.queues)
            .map(|queue| PortQueue {
                port: self.clone(),
                queue,
            })
            .collect()
    }

    /// The device's counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        #[cfg(not(bw_no_dpdk))]
        {
            let mut v = [0u64; 6];
            // SAFETY: `v` has room for the six counters the shim writes.
            let rc = unsafe { ffi::bw_port_stats(self.id, v.as_mut_ptr()) };
            if rc != 0 {
                return Err(call_err("rte_eth_stats_get", rc));
            }
            Ok(PortStats {
                ipackets: v[0],
                opackets: v[1],
                imissed: v[2],
                ierrors: v[3],
                oerrors: v[4],
                rx_nombuf: v[5],
            })
        }
        #[cfg(bw_no_dpdk)]
        Err(DpdkError::NotBuilt)
    }
}

impl Drop for EthPort {
    fn drop(&mut self) {
        #[cfg(not(bw_no_dpdk))]
        // SAFETY: the port was started by us, and this is its last handle:
        // every PortQueue holds an Arc of it, so no queue can be used after
        // the port stops.
        unsafe {
            ffi::bw_port_stop(self.id);
        }
    }
}

/// One queue pair of a port, owned by one thread; it keeps the port open.
#[derive(Debug)]
pub struct PortQueue {
    port: std::sync::Arc<EthPort>,
    queue: u16,
}

impl PortQueue {
    /// Receives up to `max` frames (at most [`MAX_BURST`]), handing each to `out`.
    pub fn rx_burst(&mut self, max: usize, mut out: impl FnMut(Mbuf)) -> usize {
        #[cfg(not(bw_no_dpdk))]
        {
            let mut raw = [std::ptr::null_mut::<c_void>(); MAX_BURST];
            let n = max.min(MAX_BURST) as u16;
            // SAFETY: `raw` has room for `n` pointers; this queue is used by
            // one thread (we hold `&mut self`).
            let got = unsafe { ffi::bw_rx_burst(self.port.id, self.queue, raw.as_mut_ptr(), n) };
            let mut data = [std::ptr::null_mut::<u8>(); MAX_BURST];
            let (mut len, mut room) = ([0u16; MAX_BURST], [0u16; MAX_BURST]);
            // SAFETY: the first `got` entries of `raw` are live mbufs the
            // device just handed us; the three arrays have room for them.
            unsafe {
                ffi::bw_mbufs_data(
                    raw.as_mut_ptr(),
                    got,
                    data.as_mut_ptr(),
                    len.as_mut_ptr(),
                    room.as_mut_ptr(),
                )
            };
            for i in 0..usize::from(got) {
                if let (Some(ptr), Some(&data), Some(&len), Some(&room)) = (
                    raw.get(i).and_then(|p| NonNull::new(*p)),
                    data.get(i),
                    len.get(i),
                    room.get(i),
                ) {
                    out(Mbuf {
                        ptr,
                        data,
                        len,
                        room,
                    });
                }
            }
            usize::from(got)
        }
        #[cfg(bw_no_dpdk)]
        {
            let _ = (max, &mut out);
            0
        }
    }

    /// Sends the mbufs of `bufs` (at most [`MAX_BURST`] at a time); those
    /// sent leave `bufs`, those the device had no room for stay in it.
    pub fn tx_burst(&mut self, bufs: &mut Vec<Mbuf>) -> usize {
        #[cfg(not(bw_no_dpdk))]
        {
            let n = bufs.len().min(MAX_BURST);
            let mut raw = [std::ptr::null_mut::<c_void>(); MAX_BURST];
            for (r, b) in raw.iter_mut().zip(bufs.iter()) {
                *r = b.ptr.as_ptr();
            }
            // SAFETY: the first `n` entries are mbufs we own; the device
            // takes ownership of the first `sent` of them.
            let sent = usize::from(unsafe {
                ffi::bw_tx_burst(self.port.id, self.queue, raw.as_mut_ptr(), n as u16)
            });
            // Those are the device's now: drop our handles without freeing.
            for b in bufs.drain(..sent) {
                std::mem::forget(b);
            }
            sent
        }
        #[cfg(bw_no_dpdk)]
        {
            let _ = bufs;
            0
        }
    }
}
