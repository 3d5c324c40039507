//! The per-core flow table: fixed capacity, 8-way set associative, one cache
//! line per entry, with a TCP state machine per flow.
//!
//! Layout. The table is an array of buckets; each bucket has a 64-byte
//! metadata line (eight 16-bit tags, eight last-seen times, eight states) and
//! eight 64-byte entries. A lookup hashes the key once (foldhash, seeded per
//! table: cheap, and not SipHash, which we keep for cookies), reads the
//! bucket's metadata line, and reads an entry line only on a tag match: two
//! cache lines per packet. Capacity is fixed at start, so nothing is ever
//! rehashed or allocated on the packet path.
//!
//! Bursts. A worker computes every frame's [`FlowSlot`] first and
//! prefetches its bucket's metadata line ([`FlowTable::prefetch_bucket`]),
//! then, a few frames ahead of the one it decides, the entry line the tag
//! points at ([`FlowTable::prefetch_entry`]): the cold misses of a burst
//! overlap instead of being paid one after the other. Both arrays sit in
//! huge pages ([`baitwall_mem::HugeSlice`]) so that a lookup in a table of
//! a hundred megabytes does not also miss the TLB.
//!
//! Expiry and eviction. Each state has a timeout; an entry whose idle time is
//! past its state's timeout is free. A sweep between bursts walks a few
//! buckets at a time and counts what it frees; an insert also reuses an
//! expired slot in its bucket. When a bucket's eight slots all hold live
//! flows, the insert evicts the one idle the longest: the oldest idle flow of
//! the eight it competes with (see docs/adr/0003-flow-table.md for why we
//! chose set-local LRU over a global list). The packet is never dropped for
//! lack of room.
//!
//! Time is a `u32` of milliseconds on the worker's clock; ages are computed
//! with wrapping arithmetic, which is exact while every timeout is below
//! [`MAX_TIMEOUT_MS`] and the sweep visits every bucket within that time.

use std::hash::BuildHasher;

use baitwall_mem::{HugeSlice, prefetch};
use foldhash::fast::FixedState;

use crate::wire::TcpFlags;

/// Entries per bucket.
pub const WAYS: usize = 8;

/// Largest timeout a state may have (about 24 days), so wrapping ages stay exact.
pub const MAX_TIMEOUT_MS: u32 = (1 << 31) - 1;

/// The key of a flow, with its two endpoints in canonical order (lower first)
/// so that both directions find the same entry. IPv4 addresses are stored
/// IPv4-mapped (`::ffff:a.b.c.d`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FlowKey {
    /// The lower endpoint's address.
    pub lo_addr: [u8; 16],
    /// The higher endpoint's address.
    pub hi_addr: [u8; 16],
    /// The lower endpoint's port (ICMP: the echo identifier; else 0).
    pub lo_port: u16,
    /// The higher endpoint's port.
    pub hi_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// 4 or 6.
    pub ip_version: u8,
    _pad: [u8; 2],
}

impl FlowKey {
    /// Builds the canonical key of a packet from `src` to `dst`; also returns
    /// whether the sender is the lower endpoint.
    #[inline]
    pub fn new(
        ip_version: u8,
        protocol: u8,
        src: [u8; 16],
        src_port: u16,
        dst: [u8; 16],
        dst_port: u16,
    ) -> (FlowKey, bool) {
        let from_lo = (src, src_port) <= (dst, dst_port);
        let (lo, lo_port, hi, hi_port) = if from_lo {
            (src, src_port, dst, dst_port)
        } else {
            (dst, dst_port, src, src_port)
        };
        (
            FlowKey {
                lo_addr: lo,
                hi_addr: hi,
                lo_port,
                hi_port,
                protocol,
                ip_version,
                _pad: [0; 2],
            },
            from_lo,
        )
    }
}

impl std::hash::Hash for FlowKey {
    /// Feeds the key to the hasher as five 64-bit words: one multiply-fold per
    /// word with foldhash, where the derived impl would hash seven fields
    /// (arrays with a length prefix) separately.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let word = |b: &[u8; 16], half: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b.get(half * 8..half * 8 + 8).unwrap_or(&[0; 8]));
            u64::from_ne_bytes(w)
        };
        state.write_u64(word(&self.lo_addr, 0));
        state.write_u64(word(&self.lo_addr, 1));
        state.write_u64(word(&self.hi_addr, 0));
        state.write_u64(word(&self.hi_addr, 1));
        state.write_u64(
            u64::from(self.lo_port)
                | u64::from(self.hi_port) << 16
                | u64::from(self.protocol) << 32
                | u64::from(self.ip_version) << 40,
        );
    }
}

/// The state of a flow. TCP states follow the segments seen in both
/// directions (RFC 9293 section 3.3.2, as a middlebox observes them).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FlowState {
    /// TCP: the originator's SYN seen.
    SynSent = 1,
    /// TCP: the responder's SYN-ACK seen.
    SynReceived = 2,
    /// TCP: the handshake completed (or the flow was picked up mid-stream).
    Established = 3,
    /// TCP: a FIN seen from one side.
    Closing = 4,
    /// TCP: FINs seen from both sides.
    Closed = 5,
    /// TCP: a RST seen.
    Reset = 6,
    /// UDP, one direction only so far.
    UdpUnreplied = 7,
    /// UDP, both directions seen.
    UdpReplied = 8,
    /// ICMP/ICMPv6 pseudo-flow.
    Icmp = 9,
    /// Any other IP protocol.
    Other = 10,
}

/// Number of states, for per-state arrays.
pub const STATE_COUNT: usize = 11;

impl FlowState {
    /// Every state, in order.
    pub const ALL: [FlowState; 10] = [
        FlowState::SynSent,
        FlowState::SynReceived,
        FlowState::Established,
        FlowState::Closing,
        FlowState::Closed,
        FlowState::Reset,
        FlowState::UdpUnreplied,
        FlowState::UdpReplied,
        FlowState::Icmp,
        FlowState::Other,
    ];

    fn from_u8(v: u8) -> Option<FlowState> {
        FlowState::ALL.get(usize::from(v).wrapping_sub(1)).copied()
    }

    /// Stable lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowState::SynSent => "syn_sent",
            FlowState::SynReceived => "syn_received",
            FlowState::Established => "established",
            FlowState::Closing => "closing",
            FlowState::Closed => "closed",
            FlowState::Reset => "reset",
            FlowState::UdpUnreplied => "udp_unreplied",
            FlowState::UdpReplied => "udp_replied",
            FlowState::Icmp => "icmp",
            FlowState::Other => "other",
        }
    }
}

/// Idle timeouts per state, in milliseconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    ms: [u32; STATE_COUNT],
}

impl Timeouts {
    /// Builds a table from `(state, milliseconds)`; values are capped at [`MAX_TIMEOUT_MS`].
    pub fn new(pairs: impl IntoIterator<Item = (FlowState, u32)>) -> Self {
        let mut t = Timeouts::default();
        for (state, ms) in pairs {
            t.set(state, ms);
        }
        t
    }

    /// Sets one state's timeout.
    pub fn set(&mut self, state: FlowState, ms: u32) {
        if let Some(slot) = self.ms.get_mut(state as usize) {
            *slot = ms.min(MAX_TIMEOUT_MS);
        }
    }

    /// One state's timeout.
    #[inline]
    pub fn get(&self, state: FlowState) -> u32 {
        self.ms.get(state as usize).copied().unwrap_or(0)
    }
}

impl Default for Timeouts {
    /// Defaults close to Linux conntrack's, shortened where a deception
    /// appliance sees mostly one-packet probes.
    fn default() -> Self {
        let mut ms = [0u32; STATE_COUNT];
        let s = 1000;
        for (state, t) in [
            (FlowState::SynSent, 30 * s),
            (FlowState::SynReceived, 30 * s),
            (FlowState::Established, 7200 * s),
            (FlowState::Closing, 120 * s),
            (FlowState::Closed, 10 * s),
            (FlowState::Reset, 10 * s),
            (FlowState::UdpUnreplied, 30 * s),
            (FlowState::UdpReplied, 180 * s),
            (FlowState::Icmp, 30 * s),
            (FlowState::Other, 60 * s),
        ] {
            ms[state as usize] = t;
        }
        Timeouts { ms }
    }
}

/// A bucket's metadata: what a lookup reads first. State 0 marks a free slot.
#[derive(Copy, Clone, Default)]
#[repr(C, align(64))]
struct BucketMeta {
    tags: [u16; WAYS],
    last_seen: [u32; WAYS],
    state: [u8; WAYS],
    _pad: [u8; 8],
}

/// Flags in [`FlowEntry::flags`].
mod entry_flags {
    /// The lower endpoint sent the first packet we saw.
    pub const ORIG_IS_LO: u8 = 1 << 0;
    /// A FIN was seen from the lower endpoint.
    pub const FIN_FROM_LO: u8 = 1 << 1;
    /// A FIN was seen from the higher endpoint.
    pub const FIN_FROM_HI: u8 = 1 << 2;
}

/// One flow: a cache line.
#[derive(Copy, Clone, Default)]
#[repr(C, align(64))]
struct FlowEntry {
    key: FlowKey,
    bytes: u64,
    first_seen: u32,
    packets: [u32; 2],
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<BucketMeta>() == 64);
const _: () = assert!(std::mem::size_of::<FlowEntry>() == 64);

/// Where a flow lives in its table: the bucket and the tag (from one hash
/// of the key, [`FlowTable::slot`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    bucket: usize,
    tag: u16,
}

/// What a packet did to the table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FlowUpdate {
    /// The flow's state after this packet (`None`: not tracked, e.g. a RST with no flow).
    pub state: Option<FlowState>,
    /// True when this packet created the flow.
    pub created: bool,
    /// True when the sender is the flow's originator.
    pub from_originator: bool,
}

/// Counters the table keeps.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowCounters {
    /// Flows created.
    pub created: u64,
    /// Flows freed after their state's timeout.
    pub expired: u64,
    /// Flows evicted from a full bucket to make room.
    pub evicted: u64,
    /// Flows in the table now.
    pub active: u64,
}

/// A read-only view of one flow, for tests and reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// The canonical key.
    pub key: FlowKey,
    /// Current state.
    pub state: FlowState,
    /// Packets from the originator and from the responder.
    pub packets: [u32; 2],
    /// Bytes in both directions.
    pub bytes: u64,
    /// Milliseconds of creation and of the last packet.
    pub first_seen_ms: u32,
    /// Last packet time.
    pub last_seen_ms: u32,
}

/// The flow table one worker owns.
///
/// ```
/// use baitwall_dataplane::engine::flow::{FlowKey, FlowState, FlowTable, Timeouts};
/// use baitwall_dataplane::wire::TcpFlags;
///
/// let mut flows = FlowTable::new(1024, Timeouts::default(), 42);
/// let a = std::net::Ipv4Addr::new(203, 0, 113, 5).to_ipv6_mapped().octets();
/// let b = std::net::Ipv4Addr::new(198, 51, 100, 10).to_ipv6_mapped().octets();
/// let (key, from_lo) = FlowKey::new(4, 6, a, 40000, b, 80);
/// let syn = flows.track(&key, from_lo, Some(TcpFlags::SYN), 60, 0);
/// assert_eq!(syn.state, Some(FlowState::SynSent));
/// // The reply finds the same flow from the other side.
/// let (reply_key, reply_from_lo) = FlowKey::new(4, 6, b, 80, a, 40000);
/// assert_eq!(reply_key, key);
/// let synack = flows.track(&key, reply_from_lo, Some(TcpFlags::SYN | TcpFlags::ACK), 60, 1);
/// assert_eq!(synack.state, Some(FlowState::SynReceived));
/// ```
pub struct FlowTable {
    meta: HugeSlice<BucketMeta>,
    entries: HugeSlice<FlowEntry>,
    mask: usize,
    hasher: FixedState,
    timeouts: Timeouts,
    sweep_cursor: usize,
    counters: FlowCounters,
}

impl FlowTable {
    /// A table for at least `capacity` flows (rounded up to a power-of-two
    /// number of 8-way buckets), hashing with `seed`.
    pub fn new(capacity: usize, timeouts: Timeouts, seed: u64) -> Self {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        FlowTable {
            meta: HugeSlice::new(buckets, BucketMeta::default()),
            entries: HugeSlice::new(buckets * WAYS, FlowEntry::default()),
            mask: buckets - 1,
            hasher: FixedState::with_seed(seed),
            timeouts,
            sweep_cursor: 0,
            counters: FlowCounters::default(),
        }
    }

    /// How many flows the table holds at most.
    pub fn capacity(&self) -> usize {
        self.meta.len() * WAYS
    }

    /// Flows in the table (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.counters.active as usize
    }

    /// True when the table holds no flow.
    pub fn is_empty(&self) -> bool {
        self.counters.active == 0
    }

    /// The table's counters.
    pub fn counters(&self) -> FlowCounters {
        self.counters
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Where `key`'s flow lives: hashed once per frame, then used to
    /// prefetch and to track.
    #[inline]
    pub fn slot(&self, key: &FlowKey) -> FlowSlot {
        let h = self.hasher.hash_one(key);
        // Low bits pick the bucket, high bits make the tag.
        FlowSlot {
            bucket: (h as usize) & self.mask,
            tag: (h >> 48) as u16,
        }
    }

    #[inline]
    fn locate(&self, key: &FlowKey) -> (usize, u16) {
        let slot = self.slot(key);
        (slot.bucket, slot.tag)
    }

    /// Prefetches the metadata line of `slot`'s bucket (a hint).
    #[inline]
    pub fn prefetch_bucket(&self, slot: FlowSlot) {
        if let Some(meta) = self.meta.get(slot.bucket) {
            prefetch(meta);
        }
    }

    /// Prefetches the entry line whose tag matches `slot`'s, reading the
    /// bucket's metadata (prefetched earlier, so by now in cache). A hint:
    /// a tag that matches another flow only wastes the prefetch.
    #[inline]
    pub fn prefetch_entry(&self, slot: FlowSlot) {
        let Some(meta) = self.meta.get(slot.bucket) else {
            return;
        };
        if let Some(way) = (0..WAYS).find(|&w| meta.state[w] != 0 && meta.tags[w] == slot.tag)
            && let Some(entry) = self.entries.get(slot.bucket * WAYS + way)
        {
            prefetch(entry);
        }
    }

    #[inline]
    fn is_expired(&self, state: u8, last_seen: u32, now: u32) -> bool {
        match FlowState::from_u8(state) {
            Some(s) => now.wrapping_sub(last_seen) > self.timeouts.get(s),
            None => false,
        }
    }

    #[inline]
    fn find(&self, bucket: usize, tag: u16, key: &FlowKey) -> Option<usize> {
        let meta = self.meta.get(bucket)?;
        (0..WAYS).find(|&way| {
            meta.state[way] != 0
                && meta.tags[way] == tag
                && self
                    .entries
                    .get(bucket * WAYS + way)
                    .is_some_and(|e| e.key == *key)
        })
    }

    /// Looks a flow up without changing anything; expired flows are not found.
    pub fn get(&self, key: &FlowKey, now_ms: u32) -> Option<FlowInfo> {
        let (bucket, tag) = self.locate(key);
        let way = self.find(bucket, tag, key)?;
        let meta = self.meta.get(bucket)?;
        if self.is_expired(meta.state[way], meta.last_seen[way], now_ms) {
            return None;
        }
        let entry = self.entries.get(bucket * WAYS + way)?;
        let state = FlowState::from_u8(meta.state[way])?;
        Some(FlowInfo {
            key: entry.key,
            state,
            packets: entry.packets,
            bytes: entry.bytes,
            first_seen_ms: entry.first_seen,
            last_seen_ms: meta.last_seen[way],
        })
    }

    /// Records a packet of `len` bytes on the flow `key` sent by the lower
    /// endpoint if `from_lo`; `tcp` holds the TCP flags for TCP segments.
    #[inline]
    pub fn track(
        &mut self,
        key: &FlowKey,
        from_lo: bool,
        tcp: Option<TcpFlags>,
        len: u32,
        now_ms: u32,
    ) -> FlowUpdate {
        let slot = self.slot(key);
        self.track_at(slot, key, from_lo, tcp, len, now_ms)
    }

    /// [`FlowTable::track`] with the key's slot computed already (it must be
    /// `self.slot(key)`).
    #[inline]
    pub fn track_at(
        &mut self,
        slot: FlowSlot,
        key: &FlowKey,
        from_lo: bool,
        tcp: Option<TcpFlags>,
        len: u32,
        now_ms: u32,
    ) -> FlowUpdate {
        let FlowSlot { bucket, tag } = slot;
        let found = self.find(bucket, tag, key);
        let live = found.filter(|&way| {
            self.meta
                .get(bucket)
                .is_some_and(|m| !self.is_expired(m.state[way], m.last_seen[way], now_ms))
        });
        match live {
            Some(way) => self.update(bucket, way, from_lo, tcp, len, now_ms),
            None => {
                if let Some(way) = found {
                    // The same flow, but idle past its timeout: it expired.
                    self.free(bucket, way);
                    self.counters.expired += 1;
                }
                self.create(bucket, tag, key, from_lo, tcp, len, now_ms)
            }
        }
    }

    fn update(
        &mut self,
        bucket: usize,
        way: usize,
        from_lo: bool,
        tcp: Option<TcpFlags>,
        len: u32,
        now_ms: u32,
    ) -> FlowUpdate {
        let idx = bucket * WAYS + way;
        let (Some(meta), Some(entry)) = (self.meta.get_mut(bucket), self.entries.get_mut(idx))
        else {
            return FlowUpdate {
                state: None,
                created: false,
                from_originator: true,
            };
        };
        let from_orig = (entry.flags & entry_flags::ORIG_IS_LO != 0) == from_lo;
        let old = FlowState::from_u8(meta.state[way]).unwrap_or(FlowState::Other);
        let fin_bit = if from_lo {
            entry_flags::FIN_FROM_LO
        } else {
            entry_flags::FIN_FROM_HI
        };
        let new = match tcp {
            Some(flags) => {
                if flags.contains(TcpFlags::FIN) {
                    entry.flags |= fin_bit;
                }
                let both_fins = entry.flags & (entry_flags::FIN_FROM_LO | entry_flags::FIN_FROM_HI)
                    == (entry_flags::FIN_FROM_LO | entry_flags::FIN_FROM_HI);
                let next = tcp_next(old, flags, from_orig, both_fins);
                if next == FlowState::SynSent && old != FlowState::SynSent {
                    // A new connection reusing the 4-tuple: the SYN's sender originates it.
                    entry.flags = if from_lo { entry_flags::ORIG_IS_LO } else { 0 };
                    entry.packets = [0; 2];
                    entry.first_seen = now_ms;
                }
                next
            }
            None => match old {
                FlowState::UdpUnreplied if !from_orig => FlowState::UdpReplied,
                other => other,
            },
        };
        let from_orig = (entry.flags & entry_flags::ORIG_IS_LO != 0) == from_lo;
        let dir = usize::from(!from_orig);
        if let Some(p) = entry.packets.get_mut(dir) {
            *p = p.saturating_add(1);
        }
        entry.bytes = entry.bytes.saturating_add(u64::from(len));
        meta.state[way] = new as u8;
        meta.last_seen[way] = now_ms;
        FlowUpdate {
            state: Some(new),
            created: false,
            from_originator: from_orig,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        bucket: usize,
        tag: u16,
        key: &FlowKey,
        from_lo: bool,
        tcp: Option<TcpFlags>,
        len: u32,
        now_ms: u32,
    ) -> FlowUpdate {
        let state = match (key.protocol, tcp) {
            (_, Some(flags)) => {
                if flags.contains(TcpFlags::RST) {
                    // A RST opens nothing; tracking it would let a RST flood fill the table.
                    return FlowUpdate {
                        state: None,
                        created: false,
                        from_originator: true,
                    };
                }
                if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
                    FlowState::SynSent
                } else if flags.contains(TcpFlags::SYN) {
                    FlowState::SynReceived
                } else {
                    // Picked up mid-stream (appliance restarted, or asymmetric routing).
                    FlowState::Established
                }
            }
            (crate::wire::protocol::UDP, None) => FlowState::UdpUnreplied,
            (crate::wire::protocol::ICMP | crate::wire::protocol::ICMPV6, None) => FlowState::Icmp,
            _ => FlowState::Other,
        };
        let way = self.claim(bucket, now_ms);
        let (Some(meta), Some(entry)) = (
            self.meta.get_mut(bucket),
            self.entries.get_mut(bucket * WAYS + way),
        ) else {
            return FlowUpdate {
                state: None,
                created: false,
                from_originator: true,
            };
        };
        *entry = FlowEntry {
            key: *key,
            bytes: u64::from(len),
            first_seen: now_ms,
            packets: [1, 0],
            flags: if from_lo { entry_flags::ORIG_IS_LO } else { 0 },
        };
        meta.tags[way] = tag;
        meta.last_seen[way] = now_ms;
        meta.state[way] = state as u8;
        self.counters.created += 1;
        self.counters.active += 1;
        FlowUpdate {
            state: Some(state),
            created: true,
            from_originator: true,
        }
    }

    /// Picks a slot in `bucket`: a free one, else an expired one, else the
    /// one idle longest (evicted).
    fn claim(&mut self, bucket: usize, now_ms: u32) -> usize {
        let Some(meta) = self.meta.get(bucket) else {
            return 0;
        };
        if let Some(way) = meta.state.iter().position(|&s| s == 0) {
            return way;
        }
        let mut oldest = 0;
        let mut oldest_age = 0;
        let mut expired = None;
        for way in 0..WAYS {
            let age = now_ms.wrapping_sub(meta.last_seen[way]);
            if expired.is_none() && self.is_expired(meta.state[way], meta.last_seen[way], now_ms) {
                expired = Some(way);
            }
            if age >= oldest_age {
                oldest_age = age;
                oldest = way;
            }
        }
        let way = match expired {
            Some(way) => {
                self.counters.expired += 1;
                way
            }
            None => {
                self.counters.evicted += 1;
                oldest
            }
        };
        self.free(bucket, way);
        way
    }

    fn free(&mut self, bucket: usize, way: usize) {
        if let Some(meta) = self.meta.get_mut(bucket)
            && let Some(state) = meta.state.get_mut(way)
            && *state != 0
        {
            *state = 0;
            self.counters.active = self.counters.active.saturating_sub(1);
        }
    }

    /// Frees expired flows in the next `buckets` buckets; returns how many.
    /// Workers call this between bursts so the whole table is swept often.
    pub fn sweep(&mut self, buckets: usize, now_ms: u32) -> usize {
        let mut freed = 0;
        for _ in 0..buckets.min(self.meta.len()) {
            let bucket = self.sweep_cursor;
            self.sweep_cursor = (self.sweep_cursor + 1) & self.mask;
            for way in 0..WAYS {
                let expired = self
                    .meta
                    .get(bucket)
                    .is_some_and(|m| self.is_expired(m.state[way], m.last_seen[way], now_ms));
                if expired {
                    self.free(bucket, way);
                    freed += 1;
                }
            }
        }
        self.counters.expired += freed as u64;
        freed
    }

    /// Removes every flow (a control request); returns how many were removed.
    pub fn clear(&mut self) -> usize {
        let n = self.counters.active as usize;
        for meta in self.meta.iter_mut() {
            meta.state = [0; WAYS];
        }
        self.counters.active = 0;
        n
    }

    /// Live flows per state (expired ones not yet swept are left out).
    pub fn state_histogram(&self, now_ms: u32) -> [u64; STATE_COUNT] {
        let mut hist = [0u64; STATE_COUNT];
        for meta in self.meta.iter() {
            for way in 0..WAYS {
                let s = meta.state[way];
                if s != 0
                    && !self.is_expired(s, meta.last_seen[way], now_ms)
                    && let Some(slot) = hist.get_mut(usize::from(s))
                {
                    *slot += 1;
                }
            }
        }
        hist
    }
}

/// The TCP state after a segment with `flags` from the originator (`from_orig`)
/// or the responder, given the state before it.
fn tcp_next(old: FlowState, flags: TcpFlags, from_orig: bool, both_fins: bool) -> FlowState {
    use FlowState::*;
    if flags.contains(TcpFlags::RST) {
        return Reset;
    }
    let syn = flags.contains(TcpFlags::SYN);
    let ack = flags.contains(TcpFlags::ACK);
    let fin = flags.contains(TcpFlags::FIN);
    if syn && !ack {
        return match old {
            // A new connection on a finished 4-tuple (the sender becomes the originator).
            Closed | Reset | Closing => SynSent,
            // Retransmitted SYN, or a simultaneous open: no change.
            other => other,
        };
    }
    match old {
        SynSent if syn && ack && !from_orig => SynReceived,
        SynReceived if ack && !syn && from_orig => {
            if fin {
                Closing
            } else {
                Established
            }
        }
        Established | SynReceived | SynSent if fin => Closing,
        Closing if both_fins => Closed,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::wire::protocol;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        std::net::Ipv4Addr::new(a, b, c, d)
            .to_ipv6_mapped()
            .octets()
    }

    fn tcp_key(n: u32) -> (FlowKey, bool) {
        let [a, b, c, d] = n.to_be_bytes();
        FlowKey::new(
            4,
            protocol::TCP,
            v4(10, b, c, d),
            40000 + u16::from(a),
            v4(192, 0, 2, 1),
            80,
        )
    }

    const SYN: TcpFlags = TcpFlags::SYN;
    fn synack() -> TcpFlags {
        TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0)
    }
    const ACK: TcpFlags = TcpFlags::ACK;
    fn finack() -> TcpFlags {
        TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0)
    }

    #[test]
    fn entries_are_one_cache_line() {
        assert_eq!(std::mem::size_of::<FlowEntry>(), 64);
        assert_eq!(std::mem::align_of::<FlowEntry>(), 64);
        assert_eq!(std::mem::size_of::<BucketMeta>(), 64);
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
    }

    #[test]
    fn both_directions_share_one_key() {
        let (k1, lo1) = FlowKey::new(4, 6, v4(10, 0, 0, 1), 1234, v4(10, 0, 0, 2), 80);
        let (k2, lo2) = FlowKey::new(4, 6, v4(10, 0, 0, 2), 80, v4(10, 0, 0, 1), 1234);
        assert_eq!(k1, k2);
        assert_ne!(lo1, lo2);
    }

    #[test]
    fn tcp_handshake_data_and_close() {
        let mut t = FlowTable::new(1024, Timeouts::default(), 1);
        let (key, lo) = tcp_key(1);
        let steps: [(bool, TcpFlags, FlowState); 7] = [
            (lo, SYN, FlowState::SynSent),
            (!lo, synack(), FlowState::SynReceived),
            (lo, ACK, FlowState::Established),
            (lo, ACK, FlowState::Established),
            (lo, finack(), FlowState::Closing),
            (!lo, finack(), FlowState::Closed),
            (lo, ACK, FlowState::Closed),
        ];
        for (i, (from_lo, flags, want)) in steps.into_iter().enumerate() {
            let u = t.track(&key, from_lo, Some(flags), 60, i as u32);
            assert_eq!(u.state, Some(want), "step {i}");
            assert_eq!(u.created, i == 0);
        }
        let info = t.get(&key, 10).unwrap();
        assert_eq!(info.packets, [5, 2]);
        assert_eq!(info.bytes, 7 * 60);
        assert_eq!(t.counters().created, 1);
    }

    #[test]
    fn rst_resets_and_does_not_create() {
        let mut t = FlowTable::new(64, Timeouts::default(), 1);
        let (key, lo) = tcp_key(2);
        let rst = TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0);
        assert_eq!(t.track(&key, lo, Some(rst), 60, 0).state, None);
        assert!(t.is_empty());
        t.track(&key, lo, Some(SYN), 60, 0);
        assert_eq!(
            t.track(&key, !lo, Some(rst), 60, 1).state,
            Some(FlowState::Reset)
        );
        // A new SYN on the reset 4-tuple starts over, from the new sender.
        let u = t.track(&key, !lo, Some(SYN), 60, 2);
        assert_eq!(u.state, Some(FlowState::SynSent));
        assert!(u.from_originator);
        assert_eq!(t.counters().created, 1);
    }

    #[test]
    fn mid_stream_pickup_is_established_and_udp_gets_replied() {
        let mut t = FlowTable::new(64, Timeouts::default(), 1);
        let (key, lo) = tcp_key(3);
        assert_eq!(
            t.track(&key, lo, Some(ACK), 60, 0).state,
            Some(FlowState::Established)
        );
        let (ukey, ulo) = FlowKey::new(
            4,
            protocol::UDP,
            v4(10, 0, 0, 9),
            5353,
            v4(10, 0, 0, 53),
            53,
        );
        assert_eq!(
            t.track(&ukey, ulo, None, 60, 0).state,
            Some(FlowState::UdpUnreplied)
        );
        assert_eq!(
            t.track(&ukey, ulo, None, 60, 0).state,
            Some(FlowState::UdpUnreplied)
        );
        assert_eq!(
            t.track(&ukey, !ulo, None, 60, 0).state,
            Some(FlowState::UdpReplied)
        );
        let (ikey, ilo) = FlowKey::new(4, protocol::ICMP, v4(10, 0, 0, 9), 7, v4(10, 0, 0, 53), 0);
        assert_eq!(
            t.track(&ikey, ilo, None, 60, 0).state,
            Some(FlowState::Icmp)
        );
    }

    #[test]
    fn expiry_follows_each_states_timeout() {
        let timeouts = Timeouts::new([
            (FlowState::SynSent, 100),
            (FlowState::Established, 1000),
            (FlowState::UdpUnreplied, 50),
        ]);
        let mut t = FlowTable::new(64, timeouts, 7);
        let (syn_key, lo) = tcp_key(4);
        t.track(&syn_key, lo, Some(SYN), 60, 0);
        let (est_key, lo2) = tcp_key(5);
        t.track(&est_key, lo2, Some(ACK), 60, 0);
        let (udp_key, lo3) = FlowKey::new(4, protocol::UDP, v4(1, 1, 1, 1), 1, v4(2, 2, 2, 2), 2);
        t.track(&udp_key, lo3, None, 60, 0);
        assert_eq!(t.len(), 3);
        // At 51 ms only UDP is past its timeout.
        assert!(t.get(&udp_key, 51).is_none());
        assert!(t.get(&syn_key, 51).is_some());
        assert_eq!(t.sweep(usize::MAX, 51), 1);
        assert_eq!(t.sweep(usize::MAX, 101), 1);
        assert!(t.get(&est_key, 1000).is_some());
        assert_eq!(t.sweep(usize::MAX, 1001), 1);
        assert!(t.is_empty());
        assert_eq!(t.counters().expired, 3);
        // Traffic keeps a flow alive: the timeout counts from the last packet.
        t.track(&est_key, lo2, Some(ACK), 60, 2000);
        t.track(&est_key, lo2, Some(ACK), 60, 2900);
        assert!(t.get(&est_key, 3800).is_some());
    }

    #[test]
    fn an_expired_flow_found_again_is_recreated_and_counted() {
        let mut t = FlowTable::new(64, Timeouts::new([(FlowState::SynSent, 10)]), 7);
        let (key, lo) = tcp_key(6);
        t.track(&key, lo, Some(SYN), 60, 0);
        let u = t.track(&key, lo, Some(SYN), 60, 100);
        assert!(u.created);
        assert_eq!(t.counters().expired, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_bucket_evicts_the_oldest_idle_flow() {
        // One bucket: eight ways, so the ninth flow must evict.
        let mut t = FlowTable::new(WAYS, Timeouts::default(), 3);
        assert_eq!(t.capacity(), WAYS);
        let keys: Vec<_> = (0..WAYS as u32 + 1).map(tcp_key).collect();
        for (i, (k, lo)) in keys.iter().take(WAYS).enumerate() {
            t.track(k, *lo, Some(ACK), 60, i as u32);
        }
        // Touch flow 0 so flow 1 becomes the oldest idle one.
        t.track(&keys[0].0, keys[0].1, Some(ACK), 60, 100);
        let u = t.track(&keys[WAYS].0, keys[WAYS].1, Some(ACK), 60, 101);
        assert!(u.created, "the packet is never dropped for lack of room");
        assert_eq!(t.counters().evicted, 1);
        assert!(
            t.get(&keys[1].0, 101).is_none(),
            "the oldest idle flow goes"
        );
        assert!(t.get(&keys[0].0, 101).is_some());
        assert!(t.get(&keys[WAYS].0, 101).is_some());
        assert_eq!(t.len(), WAYS);
    }

    #[test]
    fn ten_times_capacity_never_grows_and_counts_add_up() {
        let mut t = FlowTable::new(1024, Timeouts::default(), 11);
        let cap = t.capacity();
        let (hot, hot_lo) = tcp_key(u32::MAX);
        for i in 0..(10 * cap as u32) {
            let (k, lo) = tcp_key(i);
            let u = t.track(&k, lo, Some(SYN), 60, i);
            assert!(u.created);
            // A flow that keeps talking is always the freshest in its bucket.
            t.track(&hot, hot_lo, Some(ACK), 60, i);
            assert!(t.len() <= cap);
        }
        let c = t.counters();
        assert_eq!(c.created, 10 * cap as u64 + 1);
        assert_eq!(c.created - c.evicted - c.expired, c.active);
        assert!(c.evicted >= 9 * cap as u64);
        assert!(t.get(&hot, 10 * cap as u32).is_some());
        let live: u64 = t.state_histogram(10 * cap as u32).iter().sum();
        assert_eq!(live, c.active);
    }

    #[test]
    fn clear_empties_the_table() {
        let mut t = FlowTable::new(64, Timeouts::default(), 1);
        for i in 0..10 {
            let (k, lo) = tcp_key(i);
            t.track(&k, lo, Some(SYN), 60, 0);
        }
        assert_eq!(t.clear(), 10);
        assert!(t.is_empty());
        assert!(t.get(&tcp_key(1).0, 0).is_none());
    }

    #[test]
    fn ages_survive_clock_wraparound() {
        let mut t = FlowTable::new(64, Timeouts::new([(FlowState::SynSent, 100)]), 1);
        let (k, lo) = tcp_key(9);
        let start = u32::MAX - 10;
        t.track(&k, lo, Some(SYN), 60, start);
        assert!(t.get(&k, start.wrapping_add(50)).is_some());
        assert!(t.get(&k, start.wrapping_add(101)).is_none());
    }
}
