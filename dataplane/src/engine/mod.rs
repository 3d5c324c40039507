//! The per-packet engine: no I/O, no locks, no allocation. A worker hands it
//! each received frame and gets back a [`Verdict`].
//!
//! Per frame: classify it (frames whose headers lie are dropped with their
//! reason); if deception is configured, let the [`deceive::Deceiver`] drop a
//! latched source or answer for a dark address in place; otherwise track
//! the flow and forward.
//!
//! Per burst, in three passes, so that the cold misses of the burst's
//! table lookups overlap instead of queueing (every big table is far larger
//! than the caches): [`Engine::prefetch_frame`] asks for every frame's
//! headers, [`Engine::prepare`] classifies every frame, hashes its flow key
//! and prefetches the flow bucket, the blocklist's summary and the liveness
//! slots it will need; [`Engine::prefetch_entries`] then prefetches each
//! flow's entry line and the blocklist lines its source needs (none, for
//! most sources: the summary rules them out); [`Engine::decide`] finally
//! decides each frame in order. Only the lookups are done ahead: every
//! decision still sees the state the frames before it left (a bite early
//! in a burst blocks its source's later frames in the same burst).

pub mod bite;
pub mod block_summary;
pub mod blocklist;
pub mod budget;
pub mod classify;
pub mod cookie;
pub mod deceive;
pub mod decoy;
pub mod event;
pub mod evidence;
pub mod flow;
#[cfg(test)]
mod golden;
pub mod limit;
pub mod persona;
pub mod prefix_table;
pub mod query;
pub mod sever;
pub mod side;
pub mod space;
pub mod stack;
pub mod ticket;
pub mod tsproof;

use std::sync::Arc;

use crate::io::PacketBuf;
use crate::wire::WireError;
use blocklist::{Blocklist, BlocklistError, Standing};
use classify::{PacketInfo, classify_into};
use deceive::{Deceiver, DeceptionCounters, DeceptionShared};
use event::Event;
use flow::{FlowKey, FlowSlot, FlowTable, Timeouts};
use space::Prefix;

/// Why a frame was dropped. Each reason is a counter; names are stable
/// (they become metric labels and JSON keys).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// A header is shorter than it must be.
    Truncated = 0,
    /// The IP version field does not match the EtherType.
    BadVersion,
    /// IPv4 IHL < 5, or a TCP data offset below 5 or past the segment.
    BadHeaderLen,
    /// An IPv4 total length, IPv6 payload length or UDP length that lies.
    BadTotalLen,
    /// A malformed option the engine had to read.
    BadOption,
    /// An IPv6 extension-header chain too long or cut short.
    ExtHeaderChain,
    /// A header kind the engine refuses.
    Unsupported,
    /// A checksum the engine had to verify did not.
    BadChecksum,
    /// The transmit ring had no room.
    TxRingFull,
    /// The source is latched (blocked).
    Blocked,
    /// A decoy's reply was over its rate limit.
    RateLimited,
    /// Sent to a decoy, which had nothing to answer (a RST, a bare ACK).
    ToDecoy,
    /// Held: a fail-closed start waiting for control's first resync.
    Holding,
    /// A source from the wrong side: an inside address arriving from the
    /// outside, or an outside one from the inside (`engine::side`).
    Spoofed,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 14] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::BadHeaderLen,
        DropReason::BadTotalLen,
        DropReason::BadOption,
        DropReason::ExtHeaderChain,
        DropReason::Unsupported,
        DropReason::BadChecksum,
        DropReason::TxRingFull,
        DropReason::Blocked,
        DropReason::RateLimited,
        DropReason::ToDecoy,
        DropReason::Holding,
        DropReason::Spoofed,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLen => "bad_header_len",
            DropReason::BadTotalLen => "bad_total_len",
            DropReason::BadOption => "bad_option",
            DropReason::ExtHeaderChain => "ext_header_chain",
            DropReason::Unsupported => "unsupported",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::Blocked => "blocked",
            DropReason::RateLimited => "rate_limited",
            DropReason::ToDecoy => "to_decoy",
            DropReason::Holding => "holding",
            DropReason::Spoofed => "spoofed",
        }
    }
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::BadVersion => DropReason::BadVersion,
            WireError::BadHeaderLen => DropReason::BadHeaderLen,
            WireError::BadTotalLen => DropReason::BadTotalLen,
            WireError::BadOption => DropReason::BadOption,
            WireError::ExtHeaderChain => DropReason::ExtHeaderChain,
            WireError::BadChecksum => DropReason::BadChecksum,
            _ => DropReason::Unsupported,
        }
    }
}

/// What the worker does with a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the frame unchanged towards its destination.
    Forward,
    /// Transmit the frame, rewritten in place into a decoy's reply, back
    /// towards its sender.
    Reply,
    /// Drop the frame and count the reason.
    Drop(DropReason),
    /// Tap mode: the frame comes from a blocked source and cannot be
    /// dropped; sever its connection with RSTs to both ends
    /// ([`Engine::write_severance`]).
    Sever,
}

/// A frame looked at ahead of its turn: its classification and where its
/// flow lives (see [`Engine::prepare`]). Valid for the frame's contents as
/// they were when it was made.
#[derive(Copy, Clone, Debug)]
pub struct Prepared {
    info: PacketInfo,
    /// Why classification refused the frame (then `info` is partial).
    refused: Option<DropReason>,
    /// The flow key, whether the sender is its lower end, and its slot.
    flow: Option<(FlowKey, bool, FlowSlot)>,
}

impl Prepared {
    /// A placeholder for arrays of a burst's frames.
    pub const EMPTY: Prepared = Prepared {
        info: PacketInfo::EMPTY,
        refused: Some(DropReason::Truncated),
        flow: None,
    };
}

/// Frames [`Engine::process_burst`] prepares at a time.
const PREPARE_AHEAD: usize = 32;

/// The engine's settings.
#[derive(Clone)]
pub struct EngineConfig {
    /// Flow table capacity.
    pub flow_capacity: usize,
    /// Flow timeouts.
    pub timeouts: Timeouts,
    /// Seed of the flow hash.
    pub flow_seed: u64,
    /// Deception (dark space, marks, bites, latch); `None`: forward only.
    pub deception: Option<Arc<DeceptionShared>>,
    /// Sizes of the block state.
    pub blocks: BlockConfig,
    /// Tap mode: answer a blocked source's TCP segments by severing its
    /// connection (RSTs to both ends) instead of dropping them.
    pub sever_blocked: bool,
}

/// Sizes of a worker's block state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BlockConfig {
    /// Exact sources.
    pub exact: usize,
    /// CIDR prefixes.
    pub prefixes: usize,
    /// An IPv6 source is latched by its prefix of this length.
    pub ipv6_len: u8,
    /// How long (s) a worker's own latch lasts without a control process
    /// (0: until restart).
    pub latch_s: u32,
    /// How long (s) it lasts with one, until control confirms or lifts it
    /// (the runtime uses this when a control region exists).
    pub provisional_s: u32,
}

impl BlockConfig {
    /// What a worker's own latch blocks, and for how long.
    pub fn latch_rule(&self) -> deceive::LatchRule {
        deceive::LatchRule {
            ipv6_len: self.ipv6_len,
            for_s: self.latch_s,
        }
    }

    /// This configuration for workers that have a control process: their
    /// latches are provisional.
    pub fn controlled(self) -> BlockConfig {
        BlockConfig {
            latch_s: self.provisional_s,
            ..self
        }
    }
}

impl Default for BlockConfig {
    /// Small enough for tests and tools; the configuration file's defaults
    /// are larger (1,000,000 and 100,000).
    fn default() -> Self {
        BlockConfig {
            exact: 1 << 16,
            prefixes: 1 << 12,
            ipv6_len: 64,
            latch_s: 0,
            provisional_s: 60,
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("flow_capacity", &self.flow_capacity)
            .field("timeouts", &self.timeouts)
            .field("deception", &self.deception.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            flow_capacity: 1 << 20,
            timeouts: Timeouts::default(),
            flow_seed: 0x6261_6974_7761_6c6c,
            deception: None,
            blocks: BlockConfig::default(),
            sever_blocked: false,
        }
    }
}

/// One worker's engine and everything it owns.
pub struct Engine {
    flows: FlowTable,
    blocks: Blocklist,
    latch: deceive::LatchRule,
    /// Wall time minus the worker clock (`Clock::wall_offset_ns`): block
    /// expiries are Unix times from control's wall clock.
    wall_offset_ns: i64,
    deceiver: Option<Deceiver>,
    /// Tap mode: sever blocked sources' connections (`None`: drop).
    severer: Option<sever::Severer>,
    /// The connection the last [`Verdict::Sever`] asked to sever.
    sever_plan: Option<sever::SeverPlan>,
}

impl Engine {
    /// Builds the engine, allocating its tables once.
    pub fn new(config: &EngineConfig) -> Self {
        Engine {
            flows: FlowTable::new(config.flow_capacity, config.timeouts, config.flow_seed),
            blocks: Blocklist::new(config.blocks.exact, config.blocks.prefixes),
            latch: config.blocks.latch_rule(),
            wall_offset_ns: 0,
            deceiver: config.deception.as_ref().map(|shared| {
                Deceiver::new(
                    shared.clone(),
                    config.flow_seed,
                    0,
                    config.blocks.latch_rule(),
                )
            }),
            severer: config.sever_blocked.then(sever::Severer::default),
            sever_plan: None,
        }
    }

    /// Writes the two RSTs a [`Verdict::Sever`] asked for: to the source
    /// into `to_source` (the frame's buffer) and to the destination into
    /// `to_destination`. False when there is nothing to write.
    pub fn write_severance<B: PacketBuf>(
        &mut self,
        to_source: &mut B,
        to_destination: &mut B,
        now_ns: u64,
    ) -> bool {
        self.sever_plan.take().is_some_and(|plan| {
            sever::write(&plan, to_source, to_destination, now_ns / 1_000_000).is_ok()
        })
    }

    /// Decides one frame; a reply is written into `buf` in place. `now_ns`
    /// is the worker clock. ([`Engine::prepare`] then [`Engine::decide`].)
    #[inline]
    pub fn process<B: PacketBuf>(&mut self, buf: &mut B, now_ns: u64) -> Verdict {
        let mut prepared = Prepared::EMPTY;
        self.prepare(buf.data(), &mut prepared);
        self.decide(buf, &prepared, now_ns)
    }

    /// Decides a burst of frames, `verdicts[i]` for `bufs[i]`, prefetching
    /// ahead. Only for frames that need no [`Verdict::Sever`] follow-up
    /// (the worker, which writes severances, runs the passes itself).
    pub fn process_burst<B: PacketBuf>(
        &mut self,
        bufs: &mut [B],
        now_ns: u64,
        verdicts: &mut [Verdict],
    ) {
        let mut prepared = [Prepared::EMPTY; PREPARE_AHEAD];
        for (bufs, verdicts) in bufs
            .chunks_mut(PREPARE_AHEAD)
            .zip(verdicts.chunks_mut(PREPARE_AHEAD))
        {
            self.prepare_burst(bufs.iter().map(PacketBuf::data), &mut prepared);
            for ((buf, verdict), p) in bufs.iter_mut().zip(verdicts.iter_mut()).zip(&prepared) {
                *verdict = self.decide(buf, p, now_ns);
            }
        }
    }

    /// The passes before the decisions (see the module doc), over a burst:
    /// `prepared[i]` is made for `frames[i]` (as many as both hold).
    #[inline]
    pub fn prepare_burst<'a>(
        &self,
        frames: impl Iterator<Item = &'a [u8]> + Clone,
        prepared: &mut [Prepared],
    ) {
        for frame in frames.clone() {
            Self::prefetch_frame(frame);
        }
        let mut n = 0;
        for (p, frame) in prepared.iter_mut().zip(frames) {
            self.prepare(frame, p);
            n += 1;
        }
        for p in prepared.iter().take(n) {
            self.prefetch_entries(p);
        }
    }

    /// Before the first pass: prefetches a frame's headers (a NIC writes
    /// frames into memory the core has not touched yet).
    #[inline]
    pub fn prefetch_frame(frame: &[u8]) {
        if let Some(first) = frame.first() {
            baitwall_mem::prefetch(first);
        }
    }

    /// First pass over a burst: classifies `frame` into `out`, hashes its
    /// flow key and prefetches the flow bucket's metadata, the blocklist's
    /// summary for its source and the liveness slots deception will read.
    /// Changes nothing else.
    #[inline]
    pub fn prepare(&self, frame: &[u8], out: &mut Prepared) {
        out.flow = None;
        out.refused = classify_into(frame, &mut out.info)
            .err()
            .map(DropReason::from);
        let info = &out.info;
        if out.refused.is_some() || !info.is_ip() {
            return;
        }
        self.blocks.prefetch(&info.src);
        if let Some(d) = &self.deceiver {
            d.prefetch(info);
        }
        let (key, from_lo) = FlowKey::new(
            info.ip_version,
            info.protocol,
            info.src,
            info.src_port,
            info.dst,
            info.dst_port,
        );
        let slot = self.flows.slot(&key);
        self.flows.prefetch_bucket(slot);
        out.flow = Some((key, from_lo, slot));
    }

    /// Second pass: prefetches the flow entry `prepared`'s tag points at
    /// and the blocklist lines its source needs, reading what
    /// [`Engine::prepare`] prefetched (the flow bucket's metadata, the
    /// blocklist's summary), in cache by now.
    #[inline]
    pub fn prefetch_entries(&self, prepared: &Prepared) {
        if let Some((_, _, slot)) = prepared.flow {
            self.flows.prefetch_entry(slot);
            self.blocks.prefetch_entries(&prepared.info.src);
        }
    }

    /// Last pass: decides the frame `prepared` was made from, which must
    /// not have changed since; a reply is written into `buf` in place.
    #[inline]
    pub fn decide<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        prepared: &Prepared,
        now_ns: u64,
    ) -> Verdict {
        // By reference: a PacketInfo is most of a cache line, and copying
        // it per frame showed in the profile.
        if let Some(reason) = prepared.refused {
            return Verdict::Drop(reason);
        }
        let info = &prepared.info;
        // Unix seconds by the wall clock: block expiries are absolute.
        let now_s = self.wall_s(now_ns);
        if info.is_ip()
            && self.blocks.standing(&info.src, now_s) == Standing::Blocked
            && !self.allowlisted(&info.src)
        {
            if let Some(d) = self.deceiver.as_mut() {
                d.blocked_frame(buf.data(), &info.src, now_ns);
            }
            if let Some(plan) = self
                .severer
                .as_mut()
                .and_then(|s| s.plan(buf.data(), info, now_ns))
            {
                self.sever_plan = Some(plan);
                return Verdict::Sever;
            }
            return Verdict::Drop(DropReason::Blocked);
        }
        if let Some(deceiver) = self.deceiver.as_mut()
            && let Some(verdict) = deceiver.handle(buf, info, now_ns, &mut self.blocks)
        {
            return verdict;
        }
        // Wrapping by design: the flow table works on wrapping u32 milliseconds.
        let now_ms = (now_ns / 1_000_000) as u32;
        if let Some((key, from_lo, slot)) = &prepared.flow {
            let len = buf.data().len() as u32;
            self.flows
                .track_at(*slot, key, *from_lo, info.tcp_flags, len, now_ms);
        }
        Verdict::Forward
    }

    /// True when `[deception] allow` holds `src`: a block never covers it,
    /// whatever control pushed or a worker latched (a latched /64 around
    /// an allowlisted host). Read only for blocked sources.
    #[inline]
    fn allowlisted(&self, src: &[u8; 16]) -> bool {
        self.deceiver
            .as_ref()
            .is_some_and(|d| d.allowlist().contains(src))
    }

    /// Deception counters (zero when deception is off).
    pub fn deception_counters(&self) -> DeceptionCounters {
        self.deceiver
            .as_ref()
            .map(Deceiver::counters)
            .unwrap_or_default()
    }

    /// Moves the events reported since the last call into `out`.
    pub fn drain_events(&mut self, mut out: impl FnMut(Event)) {
        if let Some(d) = self.deceiver.as_mut() {
            for e in d.drain_events() {
                out(e);
            }
        }
    }

    /// Latches a block on `src` (a bite seen by another worker: no event).
    pub fn latch(&mut self, src: [u8; 16], now_ns: u64) {
        match self.deceiver.as_mut() {
            // Through the deceiver, so the latch is counted like its own.
            Some(d) => {
                d.latch(src, now_ns, &mut self.blocks);
            }
            None => {
                let now_s = self.wall_s(now_ns);
                let _ = deceive::latch_source(src, self.latch, now_s, &mut self.blocks);
            }
        }
    }

    /// What this engine's latches block, and for how long.
    pub fn latch_rule(&self) -> deceive::LatchRule {
        self.latch
    }

    /// Applies a rule from the control process.
    pub fn apply(&mut self, rule: &baitwall_channel::Rule) -> Result<(), BlocklistError> {
        use baitwall_channel::Rule;
        let prefix = |net: &[u8; 16], len: u8| Prefix::from_parts(u128::from_be_bytes(*net), len);
        match rule {
            Rule::Block { net, len, expiry } => self.blocks.block(prefix(net, *len), *expiry),
            Rule::Unblock { net, len } => {
                self.blocks.unblock(prefix(net, *len));
                Ok(())
            }
            Rule::Allow { net, len, expiry } => self.blocks.allow(prefix(net, *len), *expiry),
            Rule::Disallow { net, len } => {
                self.blocks.disallow(prefix(net, *len));
                Ok(())
            }
            Rule::Live { addr, seen } => {
                if let Some(d) = self.deceiver.as_mut() {
                    d.remember(addr, *seen);
                }
                Ok(())
            }
            // Questions are answered by the worker (`answer_query`).
            Rule::Generation(_) | Rule::Query { .. } => Ok(()),
        }
    }

    /// Answers a `decoys` question (see [`query`]); without deception,
    /// nothing is dark: one empty answer.
    pub fn answer_query(
        &self,
        id: u32,
        addr: [u8; 16],
        count: u8,
        now_ns: u64,
        mut out: impl FnMut(baitwall_channel::PersonaAnswer),
    ) {
        match &self.deceiver {
            Some(d) => query::answer(d, id, addr, count, now_ns, out),
            // Without deception nothing is protected, so nothing is dark.
            None => out(baitwall_channel::PersonaAnswer::nothing(id, addr, 1)),
        }
    }

    /// Exact sources blocked here (latched, or pushed by control).
    pub fn latched(&self) -> Vec<[u8; 16]> {
        self.blocks.exact_blocks().collect()
    }

    /// The block state (read-only).
    pub fn blocklist(&self) -> &Blocklist {
        &self.blocks
    }

    /// Periodic work between bursts: sweeps `buckets` flow buckets for
    /// expired flows, and as many blocklist buckets for expired blocks and
    /// allows (`now_ns`: the worker clock). Returns the flows freed.
    pub fn maintain(&mut self, buckets: usize, now_ns: u64) -> usize {
        // Wrapping by design, as in `decide`.
        let now_ms = (now_ns / 1_000_000) as u32;
        self.blocks.maintain(buckets, self.wall_s(now_ns));
        self.flows.sweep(buckets, now_ms)
    }

    /// Sets wall time minus the worker clock (the worker re-reads it once
    /// a second, so expiries follow wall-clock steps).
    pub fn set_wall_offset(&mut self, ns: i64) {
        self.wall_offset_ns = ns;
        if let Some(d) = self.deceiver.as_mut() {
            d.set_wall_offset(ns);
        }
    }

    /// Unix seconds by the wall clock at the worker reading `now_ns`.
    #[inline]
    pub fn wall_s(&self, now_ns: u64) -> u32 {
        deceive::wall_seconds(now_ns, self.wall_offset_ns)
    }

    /// The flow table (read-only).
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Removes every flow.
    pub fn clear_flows(&mut self) -> usize {
        self.flows.clear()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reasons_are_dense_and_named_uniquely() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn every_wire_error_maps_to_the_reason_of_the_same_name() {
        for e in WireError::ALL {
            assert_eq!(DropReason::from(e).as_str(), e.as_str());
        }
    }
}
