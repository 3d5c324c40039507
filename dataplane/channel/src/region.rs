//! The shared-memory region: a versioned header and, per worker, a ring of
//! events going up (worker produces, control consumes) and a ring of rules
//! coming down (control produces, worker consumes).
//!
//! The dataplane creates the region at start (a file, normally under
//! /dev/shm, replaced atomically so control never maps a half-written one)
//! with a fresh instance id; control attaches, checks the header, and sees
//! from the instance id whether the dataplane restarted. The byte layout is
//! in `docs/control.md`.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "BWCHAN01"
//! 8       4     layout version (2)
//! 12      4     header size (4096)
//! 16      4     workers
//! 20      4     slots per ring (power of two)
//! 24      4     record size (64)
//! 28      4     ready (0 while the creator initialises, 1 while its
//!               dataplane runs, 2 once it has stopped: closed)
//! 32      8     instance id (random, new at every dataplane start)
//! 40      8     created (Unix nanoseconds)
//! 48      4     counter cells per worker (256)
//! 64      128   the dataplane's port, UTF-8, NUL-padded (for `status`)
//! 256     4     allow entries (at most 200): the dataplane's own
//!               `[deception] allow`, so control's exports never cover them
//! 260     17 x n  each: network (16 bytes, IPv4-mapped) and prefix length
//! 4096    4096  counter names: UTF-8 lines "<type> <name>[ <label>=<value>]",
//!               one per cell in cell order, NUL-padded
//! 8192    ...   counters: worker w's cells (256 x u64) at 8192 + w x 2048,
//!               written by the worker with relaxed stores, read by control
//! then    ...   rings: worker w's events ring, then its rules ring, each a
//!               256-byte control block (head, tail, dropped, applied on
//!               their own cache lines) followed by slots x 64 bytes
//! ```

// This module maps a file shared with another process and hands out
// pointers into it; the accesses are justified block by block.
//
// Every access goes through one raw pointer to the region's first byte,
// taken once when the memory is mapped (`MmapRaw`) or allocated (the heap
// region of tests and Miri): no `&[u8]` or `&mut [u8]` over the shared
// bytes is ever made, since another thread or process writes them while
// this one runs (a reference would promise that nobody does). Headers are
// copied in and out with `ptr::copy_nonoverlapping`; counters and ring
// indexes are atomics made from pointers into that memory.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::record::RECORD_SIZE;
use crate::ring::{CONTROL_SIZE, Consumer, KeepAlive, Producer, RawSlots, RingControl};

/// The region's magic bytes.
pub const MAGIC: [u8; 8] = *b"BWCHAN01";
/// The layout version this build reads and writes.
pub const LAYOUT_VERSION: u32 = 4;
/// Bytes reserved for the header.
pub const HEADER_SIZE: usize = 4096;
/// Bytes reserved for the counter names.
pub const NAMES_SIZE: usize = 4096;
/// Counter cells per worker.
pub const STATS_CELLS: usize = 256;
/// Where the port's description lives in the header, and its size.
const PORT_AT: usize = 64;
const PORT_SIZE: usize = 128;
/// Where the dataplane's allowlist lives in the header.
const ALLOW_AT: usize = 256;
/// Allow entries the header holds.
pub const ALLOW_MAX: usize = 200;
const ALLOW_ENTRY: usize = 17;
/// Bytes of one worker's counters.
const STATS_BYTES: usize = STATS_CELLS * 8;

/// Errors creating or attaching a region.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// The file could not be created, opened, sized or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The region file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a baitwall region, or of another layout.
    #[error("{path}: {what}")]
    Layout {
        /// The region file.
        path: PathBuf,
        /// What does not match.
        what: String,
    },
    /// The creator has not finished initialising the region.
    #[error("{0}: the region is not ready yet")]
    NotReady(PathBuf),
    /// Sizes out of range.
    #[error("invalid region sizes: {0}")]
    Sizes(String),
}

/// What a region holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Workers (each has an events ring and a rules ring).
    pub workers: u32,
    /// Slots per ring (a power of two).
    pub slots: u32,
}

impl Geometry {
    fn ring_bytes(&self) -> usize {
        CONTROL_SIZE + self.slots as usize * RECORD_SIZE
    }

    fn stats_offset(&self) -> usize {
        HEADER_SIZE + NAMES_SIZE
    }

    fn rings_offset(&self) -> usize {
        self.stats_offset() + self.workers as usize * STATS_BYTES
    }

    fn total_bytes(&self) -> usize {
        self.rings_offset() + 2 * self.workers as usize * self.ring_bytes()
    }

    fn check(&self) -> Result<(), RegionError> {
        if self.workers == 0 || self.workers > 1024 {
            return Err(RegionError::Sizes(format!(
                "{} workers (1..=1024)",
                self.workers
            )));
        }
        if !self.slots.is_power_of_two() || !(16..=1 << 24).contains(&self.slots) {
            return Err(RegionError::Sizes(format!(
                "{} slots per ring (a power of two in 16..=16777216)",
                self.slots
            )));
        }
        Ok(())
    }
}

/// A mapped region; the rings' ends keep it alive.
pub struct Region {
    memory: Memory,
    /// The region's first byte: the one pointer every access derives from.
    base: *mut u8,
    len: usize,
    path: PathBuf,
    geometry: Geometry,
    instance_id: u64,
    /// Per worker: its dataplane ends were handed out, its control ends
    /// were (each at most once per `Region` handle).
    taken: Box<[[AtomicBool; 2]]>,
}

/// What keeps a region's bytes alive.
enum Memory {
    /// A shared mapping of the region file.
    Mapped(MmapRaw),
    /// Zeroed, page-aligned heap memory (one process: tests, Miri); held
    /// for its `Drop`, which frees it.
    Heap(#[allow(dead_code)] HeapBlock),
}

/// Zeroed pages on the heap, owned through a raw pointer (so that no
/// `Box` retag ever invalidates the pointers made from it).
struct HeapBlock {
    pages: *mut [Page],
}

#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; 4096]);

impl HeapBlock {
    fn zeroed(bytes: usize) -> HeapBlock {
        let pages = vec![Page([0; 4096]); bytes.div_ceil(4096)].into_boxed_slice();
        HeapBlock {
            pages: Box::into_raw(pages),
        }
    }

    fn base(&self) -> *mut u8 {
        self.pages.cast::<u8>()
    }
}

impl Drop for HeapBlock {
    fn drop(&mut self) {
        // SAFETY: `pages` came from `Box::into_raw` in `zeroed` and is
        // turned back into a Box exactly once, here; every pointer into it
        // belongs to a ring end or atomic that holds the region (and so
        // this block) alive, so none outlives it.
        drop(unsafe { Box::from_raw(self.pages) });
    }
}

// SAFETY: the region's memory is only accessed through atomics (header
// `ready`, counters, ring indexes), through header bytes written before the
// handle is shared and read by copying, and through ring slots under the
// SPSC protocol; sharing the handle between threads adds nothing that
// sharing between processes does not already require.
unsafe impl Sync for Region {}
// SAFETY: as above; the raw pointers point into memory the handle owns
// (or keeps mapped), which does not depend on the thread.
unsafe impl Send for Region {}

/// The ends of one worker's rings, as the dataplane holds them.
pub struct WorkerEnds {
    /// Events up: this worker produces.
    pub events: Producer<RawSlots>,
    /// Rules down: this worker consumes.
    pub rules: Consumer<RawSlots>,
    /// This worker's counters, for control to read.
    pub stats: StatsCells,
}

/// One worker's counter cells in the region.
pub struct StatsCells {
    region: Arc<Region>,
    worker: u32,
}

impl StatsCells {
    /// The cells (relaxed stores by the worker; loads by anyone).
    pub fn cells(&self) -> &[AtomicU64] {
        self.region.stats_cells(self.worker)
    }

    /// Publishes `values` into the first cells (the rest keep their value).
    #[inline]
    pub fn publish(&self, values: &[u64]) {
        for (cell, v) in self.cells().iter().zip(values) {
            cell.store(*v, Ordering::Relaxed);
        }
    }
}

/// The ends of one worker's rings, as control holds them.
pub struct ControlEnds {
    /// Events up: control consumes.
    pub events: Consumer<RawSlots>,
    /// Rules down: control produces.
    pub rules: Producer<RawSlots>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RegionError + '_ {
    move |source| RegionError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Region {
    /// Creates (or replaces) the region at `path` with `geometry` and a new
    /// `instance_id`. The file is written under a temporary name and renamed
    /// into place, so an attaching process sees the old region or the new
    /// one, never a partial one.
    pub fn create(
        path: &Path,
        geometry: Geometry,
        instance_id: u64,
    ) -> Result<Arc<Region>, RegionError> {
        Self::create_with_stats(path, geometry, instance_id, &[], "")
    }

    /// [`Region::create`], naming the workers' counter cells: one line
    /// `"<type> <name>[ <label>=<value>]"` per cell (type `counter` or
    /// `gauge`), at most [`STATS_CELLS`] of them; `port` says what the
    /// workers serve (cut at 127 bytes).
    pub fn create_with_stats(
        path: &Path,
        geometry: Geometry,
        instance_id: u64,
        stat_names: &[String],
        port: &str,
    ) -> Result<Arc<Region>, RegionError> {
        Self::create_described(path, geometry, instance_id, stat_names, port, &[])
    }

    /// [`Region::create_with_stats`], with the dataplane's own allowlist
    /// (network, prefix length on the 128-bit space), at most
    /// [`ALLOW_MAX`] entries.
    pub fn create_described(
        path: &Path,
        geometry: Geometry,
        instance_id: u64,
        stat_names: &[String],
        port: &str,
        allow: &[([u8; 16], u8)],
    ) -> Result<Arc<Region>, RegionError> {
        geometry.check()?;
        if allow.len() > ALLOW_MAX {
            return Err(RegionError::Sizes(format!(
                "{} allow entries (at most {ALLOW_MAX})",
                allow.len()
            )));
        }
        let names = stat_names.join("\n");
        if stat_names.len() > STATS_CELLS || names.len() >= NAMES_SIZE {
            return Err(RegionError::Sizes(format!(
                "{} counter names in {} bytes (at most {STATS_CELLS} in {NAMES_SIZE})",
                stat_names.len(),
                names.len()
            )));
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.set_len(geometry.total_bytes() as u64)
            .map_err(io(&tmp))?;
        let region = Region::over(map(&file, &tmp)?, path, geometry, instance_id);
        region.write_header(stat_names, port, allow);
        region.ready().store(1, Ordering::Release);
        region.flush().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(Arc::new(region))
    }

    /// A region in this process's heap, not in a file: what [`create`]
    /// makes, for tests (and Miri, which cannot map files) that drive both
    /// ends in one process. Its path is empty; nothing can attach to it.
    ///
    /// [`create`]: Region::create
    pub fn in_memory(geometry: Geometry, instance_id: u64) -> Result<Arc<Region>, RegionError> {
        geometry.check()?;
        let block = HeapBlock::zeroed(geometry.total_bytes());
        let base = block.base();
        let region = Region {
            memory: Memory::Heap(block),
            base,
            len: geometry.total_bytes(),
            path: PathBuf::new(),
            geometry,
            instance_id,
            taken: (0..geometry.workers).map(|_| Default::default()).collect(),
        };
        region.write_header(&[], "memory", &[]);
        region.ready().store(1, Ordering::Release);
        Ok(Arc::new(region))
    }

    /// A handle over `map`, its base pointer taken here, once.
    fn over(map: MmapRaw, path: &Path, geometry: Geometry, instance_id: u64) -> Region {
        let base = map.as_mut_ptr();
        let len = map.len();
        Region {
            memory: Memory::Mapped(map),
            base,
            len,
            path: path.to_owned(),
            geometry,
            instance_id,
            taken: (0..geometry.workers).map(|_| Default::default()).collect(),
        }
    }

    /// Writes the header and the counter names (before the region is
    /// shared: `ready` is still 0).
    fn write_header(&self, stat_names: &[String], port: &str, allow: &[([u8; 16], u8)]) {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let g = self.geometry;
        self.put(0, &MAGIC);
        self.put(8, &LAYOUT_VERSION.to_le_bytes());
        self.put(12, &(HEADER_SIZE as u32).to_le_bytes());
        self.put(16, &g.workers.to_le_bytes());
        self.put(20, &g.slots.to_le_bytes());
        self.put(24, &(RECORD_SIZE as u32).to_le_bytes());
        self.put(32, &self.instance_id.to_le_bytes());
        self.put(40, &created.to_le_bytes());
        self.put(48, &(STATS_CELLS as u32).to_le_bytes());
        let port = &port.as_bytes()[..port.floor_char_boundary(PORT_SIZE - 1)];
        self.put(PORT_AT, port);
        self.put(ALLOW_AT, &(allow.len().min(ALLOW_MAX) as u32).to_le_bytes());
        for (i, (net, len)) in allow.iter().take(ALLOW_MAX).enumerate() {
            let at = ALLOW_AT + 4 + i * ALLOW_ENTRY;
            self.put(at, net);
            self.put(at + 16, &[*len]);
        }
        let names = stat_names.join("\n");
        self.put(
            HEADER_SIZE,
            &names.as_bytes()[..names.len().min(NAMES_SIZE - 1)],
        );
    }

    /// Copies `bytes` into the region at `offset` (cut to the region).
    fn put(&self, offset: usize, bytes: &[u8]) {
        let n = bytes.len().min(self.len.saturating_sub(offset));
        // SAFETY: `offset + n <= len`, the region's size, so the bytes are
        // in the allocation `base` points to; they are header bytes only
        // the creator writes, before `ready` publishes the region.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(offset), n) };
    }

    /// Copies `N` bytes out of the region at `offset` (zeros past its end).
    fn get<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.len.saturating_sub(offset));
        // SAFETY: `offset + n <= len`, inside the allocation; a copy, so no
        // reference to bytes another process may write is ever made.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(offset), out.as_mut_ptr(), n) };
        out
    }

    fn flush(&self) -> std::io::Result<()> {
        match &self.memory {
            Memory::Mapped(map) => map.flush(),
            Memory::Heap(_) => Ok(()),
        }
    }

    /// Attaches to an existing region, checking its header.
    pub fn attach(path: &Path) -> Result<Arc<Region>, RegionError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len() as usize;
        if len < HEADER_SIZE {
            return Err(RegionError::Layout {
                path: path.to_owned(),
                what: format!("{len} bytes is shorter than the {HEADER_SIZE}-byte header"),
            });
        }
        // The geometry is read from the header before it is known: a
        // provisional handle over the mapping, replaced below.
        let probe = Region::over(
            map(&file, path)?,
            path,
            Geometry {
                workers: 0,
                slots: 0,
            },
            0,
        );
        let layout = |what: String| RegionError::Layout {
            path: path.to_owned(),
            what,
        };
        let u32_at = |o: usize| u32::from_le_bytes(probe.get::<4>(o));
        if probe.get::<8>(0) != MAGIC {
            return Err(layout("not a baitwall channel region (bad magic)".into()));
        }
        let version = u32_at(8);
        if version != LAYOUT_VERSION {
            return Err(layout(format!(
                "layout version {version}, this build reads {LAYOUT_VERSION}"
            )));
        }
        if u32_at(12) as usize != HEADER_SIZE
            || u32_at(24) as usize != RECORD_SIZE
            || u32_at(48) as usize != STATS_CELLS
        {
            return Err(layout(
                "header or record size differs from this build's".into(),
            ));
        }
        let geometry = Geometry {
            workers: u32_at(16),
            slots: u32_at(20),
        };
        geometry.check().map_err(|e| layout(e.to_string()))?;
        if len < geometry.total_bytes() || probe.len < geometry.total_bytes() {
            return Err(layout(format!(
                "{len} bytes, but {} workers x {} slots need {}",
                geometry.workers,
                geometry.slots,
                geometry.total_bytes()
            )));
        }
        let instance_id = u64::from_le_bytes(probe.get::<8>(32));
        let Memory::Mapped(map) = probe.memory else {
            unreachable!("attach maps the file")
        };
        let region = Region::over(map, path, geometry, instance_id);
        if region.ready().load(Ordering::Acquire) != 1 {
            return Err(RegionError::NotReady(path.to_owned()));
        }
        Ok(Arc::new(region))
    }

    /// Marks the region closed: its dataplane has stopped. [`Region::attach`]
    /// refuses it from then on, and a control process attached to it ends
    /// its session and waits for the next dataplane.
    pub fn close(&self) {
        self.ready().store(2, Ordering::Release);
    }

    /// True while the dataplane that made the region runs: ready, and not
    /// closed. (A dataplane killed outright cannot close its region: the
    /// next one replaces it with a new instance id.)
    pub fn is_open(&self) -> bool {
        self.ready().load(Ordering::Acquire) == 1
    }

    fn ready(&self) -> &AtomicU32 {
        // SAFETY: offset 28 is 4-byte aligned inside the page-aligned
        // mapping, which lives as long as `self`; the field is only ever
        // accessed as an atomic.
        unsafe { &*(self.base.add(28) as *const AtomicU32) }
    }

    /// Worker `worker`'s counter cells (empty for a worker out of range).
    pub fn stats_cells(&self, worker: u32) -> &[AtomicU64] {
        if worker >= self.geometry.workers {
            return &[];
        }
        let offset = self.geometry.stats_offset() + worker as usize * STATS_BYTES;
        // SAFETY: `worker < workers`, so the STATS_CELLS cells at `offset`
        // lie inside the mapping (its length was checked against the
        // geometry) and are 8-byte aligned (offsets are multiples of 2048 in
        // a page-aligned mapping); they are only accessed as atomics, and
        // the slice borrows `self`, which keeps the mapping alive.
        unsafe {
            std::slice::from_raw_parts(self.base.add(offset) as *const AtomicU64, STATS_CELLS)
        }
    }

    /// Worker `worker`'s counters now (relaxed loads; empty out of range).
    pub fn read_stats(&self, worker: u32) -> Vec<u64> {
        self.stats_cells(worker)
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// The port the dataplane serves, as it described it.
    pub fn port(&self) -> String {
        let field = self.get::<PORT_SIZE>(PORT_AT);
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).into_owned()
    }

    /// The dataplane's own allowlist, as its creator wrote it (entries a
    /// damaged header would put past the limit are left out).
    pub fn allowlist(&self) -> Vec<([u8; 16], u8)> {
        let h = self.get::<HEADER_SIZE>(0);
        let count = h
            .get(ALLOW_AT..ALLOW_AT + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .min(ALLOW_MAX);
        (0..count)
            .filter_map(|i| {
                let at = ALLOW_AT + 4 + i * ALLOW_ENTRY;
                let entry = h.get(at..at + ALLOW_ENTRY)?;
                let mut net = [0u8; 16];
                net.copy_from_slice(&entry[..16]);
                (entry[16] <= 128).then_some((net, entry[16]))
            })
            .collect()
    }

    /// The counter names the creator wrote, one per cell in use.
    pub fn stat_names(&self) -> Vec<String> {
        let page = self.get::<NAMES_SIZE>(HEADER_SIZE);
        let end = page.iter().position(|&b| b == 0).unwrap_or(page.len());
        String::from_utf8_lossy(&page[..end])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The region's sizes.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The dataplane instance that created the region.
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pointers to ring `index` (2w: worker w's events; 2w+1: its rules).
    fn ring(&self, index: usize) -> (*const RingControl, *mut u8) {
        let offset = self.geometry.rings_offset() + index * self.geometry.ring_bytes();
        // SAFETY: `index < 2 * workers` (callers check), so the control
        // block and its slots lie inside the mapping, whose length was
        // checked against the geometry; offsets are multiples of 64 in a
        // page-aligned mapping, so the atomics are aligned.
        unsafe {
            let base = self.base.add(offset);
            (base as *const RingControl, base.add(CONTROL_SIZE))
        }
    }

    fn ends(
        self: &Arc<Region>,
        worker: u32,
        events_produced_here: bool,
    ) -> Option<(Producer<RawSlots>, Consumer<RawSlots>)> {
        let side = usize::from(!events_produced_here);
        let taken = self.taken.get(worker as usize)?.get(side)?;
        // Each end of a ring has one owner: a second call for the same
        // worker and side gets nothing (the SPSC protocol has no room for
        // a second producer or consumer).
        if taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        let slots = u64::from(self.geometry.slots);
        let (ev_ctl, ev_slots) = self.ring(2 * worker as usize);
        let (ru_ctl, ru_slots) = self.ring(2 * worker as usize + 1);
        let keep: KeepAlive = self.clone();
        let (prod, cons) = if events_produced_here {
            ((ev_ctl, ev_slots), (ru_ctl, ru_slots))
        } else {
            ((ru_ctl, ru_slots), (ev_ctl, ev_slots))
        };
        // SAFETY: each ring has one producer and one consumer: `taken` hands
        // each worker's dataplane ends out once and its control ends once
        // per handle (the dataplane and control are one handle each; two
        // control processes attached at once are the operator's error, see
        // docs/control.md), and the memory stays alive through `keep`.
        // Slot memory is 64-byte aligned and in bounds.
        unsafe {
            Some((
                Producer::new(prod.0, RawSlots::new(prod.1, slots), keep.clone()),
                Consumer::new(cons.0, RawSlots::new(cons.1, slots), keep),
            ))
        }
    }

    /// The dataplane's ends for `worker`: `None` out of range, or when
    /// this handle gave them out already.
    pub fn worker_ends(self: &Arc<Region>, worker: u32) -> Option<WorkerEnds> {
        self.ends(worker, true).map(|(events, rules)| WorkerEnds {
            events,
            rules,
            stats: StatsCells {
                region: self.clone(),
                worker,
            },
        })
    }

    /// Control's ends for `worker`: `None` out of range, or when this
    /// handle gave them out already (attach again for a new session).
    pub fn control_ends(self: &Arc<Region>, worker: u32) -> Option<ControlEnds> {
        self.ends(worker, false)
            .map(|(rules, events)| ControlEnds { events, rules })
    }
}

fn map(file: &File, path: &Path) -> Result<MmapRaw, RegionError> {
    // `MmapRaw` hands out raw pointers only: the region's bytes are never
    // borrowed as a slice. Nothing truncates the file while it is mapped (a
    // new dataplane renames a new file over the path, leaving old mappings
    // valid).
    MmapRaw::map_raw(file).map_err(io(path))
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::record::Record;

    const G: Geometry = Geometry {
        workers: 2,
        slots: 64,
    };

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn create_attach_and_talk_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bw.region");
        let dp = Region::create(&path, G, 0xfeed).unwrap();
        let ctl = Region::attach(&path).unwrap();
        assert_eq!(ctl.instance_id(), 0xfeed);
        assert_eq!(ctl.geometry(), G);
        let mut w1 = dp.worker_ends(1).unwrap();
        let mut c1 = ctl.control_ends(1).unwrap();
        let mut ev = Record::new(3);
        ev.put_u64(8, 42);
        assert!(w1.events.push(&ev));
        w1.events.publish();
        assert_eq!(c1.events.pop().unwrap().get_u64(8), 42);
        c1.events.release();
        assert!(c1.rules.push(&Record::new(9)));
        c1.rules.publish();
        assert_eq!(w1.rules.pop().unwrap().kind(), 9);
        // Worker 0's rings are separate.
        assert!(ctl.control_ends(0).unwrap().events.pop().is_none());
        assert!(dp.worker_ends(2).is_none());
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn a_closed_region_is_refused_and_seen_closed_by_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bw.region");
        let dp = Region::create(&path, G, 7).unwrap();
        let ctl = Region::attach(&path).unwrap();
        assert!(dp.is_open() && ctl.is_open());
        dp.close();
        assert!(!ctl.is_open(), "control sees its dataplane stopped");
        assert!(matches!(
            Region::attach(&path),
            Err(RegionError::NotReady(_))
        ));
        // The next dataplane replaces it.
        let next = Region::create(&path, G, 8).unwrap();
        assert!(next.is_open());
        assert_eq!(Region::attach(&path).unwrap().instance_id(), 8);
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn counters_and_their_names_cross_the_region() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bw.region");
        let names = vec![
            "counter rx_packets".to_string(),
            "counter drops reason=ttl".to_string(),
        ];
        let allow = [([0u8; 16], 0u8), ([7u8; 16], 128)];
        let dp = Region::create_described(&path, G, 7, &names, "pcap:in.pcap", &allow).unwrap();
        let ctl = Region::attach(&path).unwrap();
        assert_eq!(ctl.stat_names(), names);
        assert_eq!(ctl.port(), "pcap:in.pcap");
        assert_eq!(ctl.allowlist(), allow);
        assert!(Region::attach(&dir.path().join("bw.region")).is_ok());
        let too_many_allows = vec![([1u8; 16], 128u8); ALLOW_MAX + 1];
        assert!(matches!(
            Region::create_described(
                &dir.path().join("x.region"),
                G,
                9,
                &[],
                "",
                &too_many_allows
            ),
            Err(RegionError::Sizes(_))
        ));
        dp.worker_ends(1).unwrap().stats.publish(&[5, 6]);
        assert_eq!(&ctl.read_stats(1)[..3], &[5, 6, 0]);
        assert_eq!(ctl.read_stats(0)[..2], [0, 0]);
        assert!(ctl.read_stats(2).is_empty());
        let too_many = vec!["counter x".to_string(); STATS_CELLS + 1];
        assert!(matches!(
            Region::create_with_stats(&path, G, 8, &too_many, ""),
            Err(RegionError::Sizes(_))
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn a_restart_replaces_the_region_and_changes_the_instance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bw.region");
        let first = Region::create(&path, G, 1).unwrap();
        let old_view = Region::attach(&path).unwrap();
        let mut w = first.worker_ends(0).unwrap();
        w.events.push(&Record::new(1));
        w.events.publish();
        let second = Region::create(&path, G, 2).unwrap();
        let new_view = Region::attach(&path).unwrap();
        assert_eq!(old_view.instance_id(), 1);
        assert_eq!(new_view.instance_id(), 2);
        assert!(
            new_view.control_ends(0).unwrap().events.pop().is_none(),
            "new rings start empty"
        );
        assert_eq!(
            old_view
                .control_ends(0)
                .unwrap()
                .events
                .pop()
                .unwrap()
                .kind(),
            1
        );
        drop(second);
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn bad_files_are_refused_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.region");
        std::fs::write(&path, b"short").unwrap();
        assert!(
            Region::attach(&path)
                .err()
                .unwrap()
                .to_string()
                .contains("shorter than")
        );
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        assert!(
            Region::attach(&path)
                .err()
                .unwrap()
                .to_string()
                .contains("bad magic")
        );
        let mut bytes = vec![0u8; 8192];
        bytes[0..8].copy_from_slice(&MAGIC);
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            Region::attach(&path)
                .err()
                .unwrap()
                .to_string()
                .contains("layout version 7")
        );
        assert!(matches!(
            Region::attach(&dir.path().join("missing")),
            Err(RegionError::Io { .. })
        ));
        assert!(matches!(
            Region::create(
                &path,
                Geometry {
                    workers: 1,
                    slots: 100
                },
                1
            ),
            Err(RegionError::Sizes(_))
        ));
    }

    /// Both sides of every worker's two rings, in one process's heap: the
    /// test Miri runs (with the ring's own), checking each access the ends
    /// make through the region's one base pointer.
    #[test]
    fn an_in_memory_region_carries_records_both_ways_on_every_ring() {
        let region = Region::in_memory(
            Geometry {
                workers: 2,
                slots: 16,
            },
            9,
        )
        .unwrap();
        assert!(region.is_open());
        assert_eq!(region.port(), "memory");
        for w in 0..2 {
            let mut dp = region.worker_ends(w).unwrap();
            let mut ctl = region.control_ends(w).unwrap();
            for round in 0..3u64 {
                for i in 0..16 {
                    let mut ev = Record::new(3);
                    ev.put_u64(8, round * 100 + i);
                    assert!(dp.events.push(&ev));
                }
                assert!(!dp.events.push(&Record::new(3)), "16 slots");
                dp.events.publish();
                for i in 0..16 {
                    assert_eq!(ctl.events.pop().unwrap().get_u64(8), round * 100 + i);
                }
                ctl.events.release();
                assert!(ctl.rules.push(&Record::new(9)));
                ctl.rules.publish();
                assert_eq!(dp.rules.pop().unwrap().kind(), 9);
                dp.rules.release();
            }
            dp.stats.publish(&[w as u64 + 5]);
            assert_eq!(region.read_stats(w)[0], w as u64 + 5);
        }
        region.close();
        assert!(!region.is_open());
    }

    #[test]
    fn each_end_is_handed_out_once() {
        let region = Region::in_memory(G, 1).unwrap();
        let first = region.worker_ends(0);
        assert!(first.is_some());
        assert!(
            region.worker_ends(0).is_none(),
            "a second producer of worker 0's events"
        );
        assert!(region.control_ends(0).is_some());
        assert!(
            region.control_ends(0).is_none(),
            "a second producer of worker 0's rules"
        );
        assert!(region.worker_ends(1).is_some() && region.control_ends(1).is_some());
        assert!(region.worker_ends(2).is_none() && region.control_ends(2).is_none());
        // Dropping an end does not make room for another: the ring's
        // indexes live in the shared memory, and a new end is a new attach.
        drop(first);
        assert!(region.worker_ends(0).is_none());
    }
}
