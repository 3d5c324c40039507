//! The deception half of the engine: for each packet to a dark address,
//! the mark (or the decoy service's answer), the bite it may carry, and the
//! latch. Pure logic over a buffer: no I/O, no locks, no allocation (the
//! tables are sized at start).

use std::hash::BuildHasher;
use std::sync::Arc;

use super::bite::{Action, BiteKind, Policy, ProofTable};
use super::blocklist::{Blocklist, Standing};
use super::budget;
use super::classify::{L3, PacketInfo};
use super::cookie::CookieJar;
use super::decoy::service::{self, MAX_RESPONSE};
use super::decoy::tcp::{Segment, Stamp, SynAckPlans, TcpProbe, reset, syn_ack, write_segment};
use super::decoy::{icmp, neighbor, udp};
use super::event::{Event, EventKind, EventRing};
use super::evidence::{CaptureQueues, Evidence};
use super::limit::{RateConfig, RateLimiter, SweepConfig, SweepTable};
use super::persona::{Persona, PersonaMaker};
use super::side::{SideRules, of_family, unicast_host};
use super::space::{AddressSpace, Claim, Darkness, Prefix, PrefixSet};
use super::stack::{IpId, IpIds, SynFin};
use super::ticket::WeakTickets;
use super::tsproof;
use super::{DropReason, Verdict};
use crate::io::{PacketBuf, Side};
use crate::wire::{TcpFlags, protocol};

/// The kinds of mark, for counters.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum MarkKind {
    /// SYN-ACK with a cookie.
    SynAck = 0,
    /// RST from a closed port of a decoy, or for a stale or forged segment.
    Rst,
    /// A decoy service's data (banner, response) or its ACK/FIN.
    Service,
    /// ICMP/ICMPv6 echo reply.
    Echo,
    /// ICMP port unreachable.
    Unreachable,
    /// A UDP service reply.
    Udp,
    /// ARP reply.
    Arp,
    /// Neighbour advertisement.
    Ndp,
}

impl MarkKind {
    /// Every kind, in counter order.
    pub const ALL: [MarkKind; 8] = [
        MarkKind::SynAck,
        MarkKind::Rst,
        MarkKind::Service,
        MarkKind::Echo,
        MarkKind::Unreachable,
        MarkKind::Udp,
        MarkKind::Arp,
        MarkKind::Ndp,
    ];
    /// Number of kinds.
    pub const COUNT: usize = 8;

    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MarkKind::SynAck => "syn_ack",
            MarkKind::Rst => "rst",
            MarkKind::Service => "service",
            MarkKind::Echo => "echo",
            MarkKind::Unreachable => "unreachable",
            MarkKind::Udp => "udp",
            MarkKind::Arp => "arp",
            MarkKind::Ndp => "ndp",
        }
    }
}

/// Deception counters of one worker.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DeceptionCounters {
    /// Marks sent, by [`MarkKind`].
    pub marks: [u64; MarkKind::COUNT],
    /// Bites seen, by [`BiteKind`].
    pub bites: [u64; BiteKind::COUNT],
    /// Sources latched by this worker.
    pub latched: u64,
    /// Latches refused because the table was full.
    pub latch_full: u64,
    /// Segments to decoys whose cookie did not verify (forged or stale).
    pub bad_cookies: u64,
    /// Weak-proof blocking bites not latched: the source's weak ticket for
    /// the day was spent (a wrong cookie in its name, or an earlier weak
    /// bite).
    pub weak_denied: u64,
    /// Bites that echoed the decoy's timestamp (strong proofs).
    pub strong_bites: u64,
    /// Bites not taken because their timestamp echo was of nothing the
    /// decoy sent (forged).
    pub bad_echoes: u64,
    /// Service and sweep events not reported (over their budget).
    pub events_suppressed: u64,
    /// Events dropped because the ring was full.
    pub events_dropped: u64,
    /// Frames handed to the bite capture.
    pub captured: u64,
    /// Frames the bite capture lost (no free buffer).
    pub capture_lost: u64,
    /// Addresses this worker claimed: a request for them went unanswered
    /// for `claim_after`.
    pub claims: u64,
    /// Claimed addresses given back because their owner showed itself.
    pub yields: u64,
}

/// Everything the workers share: built once from configuration.
pub struct DeceptionShared {
    /// The address-space model (with the shared live map).
    pub space: AddressSpace,
    /// Which side a frame is from, and what each side may say.
    pub sides: SideRules,
    /// Sources that are never blocked, only reported.
    pub allow: PrefixSet,
    /// Bite kind -> action.
    pub policy: Policy,
    /// Persona derivation.
    pub personas: PersonaMaker,
    /// The deployment secret (cookies and personas derive from it).
    pub secret: [u8; 32],
    /// Cookie key rotation period.
    pub cookie_rotation_ms: u64,
    /// Shared proofs of receipt, for port bites.
    pub proofs: ProofTable,
    /// One weak-proof try per source a day, shared by every worker.
    pub tickets: WeakTickets,
    /// How long a proof counts towards a port bite, in minutes.
    pub proof_ttl_min: u16,
    /// UDP ports decoys answer with a service reply (others: port unreachable).
    pub udp_services: Vec<u16>,
    /// The decoys' TLS certificates (`engine::decoy::tls`).
    pub tls: Arc<super::decoy::tls::TlsStore>,
    /// Reply rate limits (per worker).
    pub rates: RateConfig,
    /// Sweep detection.
    pub sweep: SweepConfig,
    /// One mark in this many is reported as an event (0: none).
    pub mark_sample: u32,
    /// Bite capture (`None`: off) and the frames followed after a bite.
    pub capture: Option<(Arc<CaptureQueues>, u32)>,
}

/// The per-worker deception state.
pub struct Deceiver {
    shared: Arc<DeceptionShared>,
    cookies: CookieJar,
    start_s: Option<u32>,
    limiter: RateLimiter,
    sweeps: SweepTable,
    events: EventRing,
    counters: DeceptionCounters,
    services: foldhash::fast::FixedState,
    service_seen: Box<[u64]>,
    event_budget: EventBudget,
    prefix_budgets: budget::PrefixBudgets,
    /// Marks since the last sampled one.
    mark_seq: u32,
    /// The mark of the frame in hand, when it is the sampled one.
    sampled: Option<MarkKind>,
    /// Bite capture, when on.
    evidence: Option<Evidence>,
    /// SYN-ACK option layouts, per persona stack and offer.
    plans: SynAckPlans,
    /// The decoys' IP-ID counters.
    ids: IpIds,
    /// What a latch blocks, and for how long.
    latch: LatchRule,
    /// Wall time minus the worker clock (latch expiries are Unix times).
    wall_offset_ns: i64,
}

/// What a worker's own latch blocks, and for how long.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LatchRule {
    /// An IPv6 source is latched by its prefix of this length.
    pub ipv6_len: u8,
    /// Seconds the latch lasts (0: until restart): provisional, until
    /// control confirms or lifts it, when there is a control process.
    pub for_s: u32,
}

impl LatchRule {
    /// The prefix `src` is latched by.
    pub fn prefix(&self, src: &[u8; 16]) -> Prefix {
        let v4_mapped = baitwall_channel::is_v4_mapped(src);
        let len = if v4_mapped { 128 } else { self.ipv6_len };
        Prefix::from_parts(u128::from_be_bytes(*src), len)
    }

    /// The expiry of a latch made at Unix second `now_s`.
    pub fn expiry(&self, now_s: u32) -> u32 {
        match self.for_s {
            0 => 0,
            s => now_s.saturating_add(s),
        }
    }
}

/// A token bucket for non-bite events: 200 a second, bursts of 1,000.
struct EventBudget {
    tokens: u64,
    last_ms: u64,
}

impl Default for EventBudget {
    fn default() -> Self {
        EventBudget {
            tokens: 1000,
            last_ms: 0,
        }
    }
}

impl EventBudget {
    fn take(&mut self, now_ns: u64) -> bool {
        let now_ms = now_ns / 1_000_000;
        let refill = now_ms.saturating_sub(self.last_ms) / 5;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(1000);
            self.last_ms = now_ms;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// Slots of the per-worker cache of reported services.
const SERVICE_SLOTS: usize = 4096;

/// Bytes a decoy may have sent after its SYN-ACK that an ACK can cover:
/// a banner or one response, and a FIN.
const COOKIE_WINDOW: u32 = MAX_RESPONSE as u32 + 1;

/// Seconds on the engine clock: Unix seconds, never 0 (0 means "never" in the live map).
#[inline]
fn seconds(now_ns: u64) -> u32 {
    ((now_ns / 1_000_000_000) as u32).max(1)
}

impl Deceiver {
    /// A worker's state over the shared configuration; `seed` keys its local
    /// hash tables.
    pub fn new(shared: Arc<DeceptionShared>, seed: u64, now_ns: u64, latch: LatchRule) -> Self {
        let cookies = CookieJar::new(
            &shared.secret,
            shared.cookie_rotation_ms,
            now_ns / 1_000_000,
        );
        Deceiver {
            cookies,
            start_s: None,
            limiter: RateLimiter::new(shared.rates, 1 << 14, seed),
            sweeps: SweepTable::new(shared.sweep, 1 << 14, seed ^ 0x5a5a),
            events: EventRing::new(4096),
            counters: DeceptionCounters::default(),
            services: foldhash::fast::FixedState::with_seed(seed ^ 0x5e5e),
            service_seen: vec![0; SERVICE_SLOTS].into_boxed_slice(),
            event_budget: EventBudget::default(),
            prefix_budgets: budget::PrefixBudgets::new(1 << 14, seed ^ 0x6275),
            mark_seq: 0,
            sampled: None,
            evidence: shared
                .capture
                .as_ref()
                .map(|(queues, follow)| Evidence::new(queues.clone(), *follow)),
            plans: SynAckPlans::new(),
            ids: IpIds::new(),
            latch,
            wall_offset_ns: 0,
            shared,
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> DeceptionCounters {
        DeceptionCounters {
            events_dropped: self.events.dropped(),
            captured: self.evidence.as_ref().map_or(0, |e| e.captured),
            capture_lost: self.evidence.as_ref().map_or(0, |e| e.lost),
            ..self.counters
        }
    }

    /// A frame from a blocked source, dropped: kept if bite capture follows it.
    #[inline]
    pub fn blocked_frame(&mut self, frame: &[u8], src: &[u8; 16], now_ns: u64) {
        if let Some(e) = self.evidence.as_mut() {
            e.blocked(frame, src, now_ns);
        }
    }

    /// An address's state at `now_ns` and the persona it shows when dark.
    pub fn describe(&self, addr: &[u8; 16], now_ns: u64) -> (Darkness, Persona) {
        let now_s = seconds(now_ns);
        let start_s = self.start_s.unwrap_or(now_s);
        (
            self.shared.space.darkness(addr, now_s, start_s),
            self.shared.personas.persona(addr),
        )
    }

    /// `[deception] allow`: sources never blocked.
    pub fn allowlist(&self) -> &PrefixSet {
        &self.shared.allow
    }

    /// The protected prefixes.
    pub fn protected(&self) -> &PrefixSet {
        &self.shared.space.protected
    }

    /// Takes the events reported since the last drain.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain()
    }

    /// Prefetches what deciding `info`'s frame will read first (a burst
    /// ahead; see [`crate::engine::Engine::prepare`]).
    #[inline]
    pub fn prefetch(&self, info: &PacketInfo) {
        self.shared.space.prefetch(&info.src, &info.dst);
    }

    /// Handles one classified frame. `None`: not the deceiver's business
    /// (forward it); `Some(verdict)`: a mark was written in place, or the
    /// frame is dropped.
    #[inline]
    pub fn handle<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        info: &PacketInfo,
        now_ns: u64,
        blocks: &mut Blocklist,
    ) -> Option<Verdict> {
        let arrival = buf.side();
        let verdict = self.decide(buf, arrival, info, now_ns, blocks);
        if let Some(kind) = self.sampled.take() {
            let one_in = self.shared.mark_sample;
            self.report(info, now_ns, EventKind::Mark { kind, one_in });
        }
        verdict
    }

    #[inline]
    fn decide<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        arrival: Option<Side>,
        info: &PacketInfo,
        now_ns: u64,
        blocks: &mut Blocklist,
    ) -> Option<Verdict> {
        let now_s = seconds(now_ns);
        let start_s = *self.start_s.get_or_insert(now_s);
        let now_ms = now_ns / 1_000_000;
        self.cookies.advance(now_ms);
        if !info.is_ip() {
            return match info.l3 {
                L3::Arp => self.arp(buf, arrival, now_ns, start_s),
                _ => None,
            };
        }
        // Each side speaks only for itself (invariant 3; side.rs).
        let side = {
            let shared = &*self.shared;
            let protected = &shared.space.protected;
            let side = shared
                .sides
                .side_of(arrival, buf.data(), &info.src, protected);
            if shared.sides.check(side, &info.src, protected).is_err() {
                return Some(Verdict::Drop(DropReason::Spoofed));
            }
            side
        };
        let host = unicast_host(info);
        // Liveness is learned from the inside only: an outside frame can
        // never silence a decoy, nor keep a claim from being taken.
        if side == Side::Inside && host {
            self.learn(&info.src, now_ns);
            if info.tcp_flags == Some(TcpFlags::SYN | TcpFlags::ACK)
                && self.shared.space.is_inside(&info.src)
            {
                self.learn_service(info, now_ns);
            }
        }
        if info.protocol == protocol::ICMPV6 && info.ip_version == 6 {
            // Neighbour solicitations go to a multicast group, not to the
            // address they ask about, so they are matched on their target.
            if let Some(v) = self.ndp(buf, side, info, now_ns, start_s) {
                return Some(v);
            }
        }
        if !of_family(&info.dst, info.ip_version)
            || self.shared.space.darkness(&info.dst, now_s, start_s) != Darkness::Dark
        {
            return None;
        }
        if let Some(e) = self.evidence.as_mut() {
            // Before the reply is written over the frame.
            e.note(buf.data(), &info.src, now_ns);
        }
        if !host {
            // Broadcast, multicast, unspecified, loopback, link-local or
            // IPv4-mapped sources are not hosts (RFC 1122 3.2.2, RFC 4443
            // 2.4, RFC 4291 2.5.5): answering them would reflect at a whole
            // segment, or speak for another family's host.
            return Some(Verdict::Drop(DropReason::ToDecoy));
        }
        if info.fragment {
            return Some(Verdict::Drop(DropReason::ToDecoy));
        }
        // A real stack drops what fails its checksums (RFC 1122 3.2.1.2,
        // 3.2.2, 4.1.3.4, 4.2.2.7), and a probe with a bad checksum
        // (`nmap --badsum`) tells a host from a middlebox that answers
        // anything: a decoy stays silent, and such a segment bites nobody.
        if !checksums_ok(buf.data(), info) {
            return Some(Verdict::Drop(DropReason::BadChecksum));
        }
        let verdict = match info.protocol {
            protocol::TCP => self.tcp(buf, info, now_ns, blocks),
            protocol::UDP => self.udp(buf, info, now_ms),
            protocol::ICMP | protocol::ICMPV6 => self.echo(buf, info, now_ms),
            _ => Verdict::Drop(DropReason::ToDecoy),
        };
        Some(verdict)
    }

    /// `addr`, on the inside, showed it is alive: learned, its claim given
    /// back (a yield), and reported to control now and then.
    fn learn(&mut self, addr: &[u8; 16], now_ns: u64) {
        let touched = self.shared.space.learn(addr, seconds(now_ns));
        if touched.yielded {
            self.counters.yields += 1;
        }
        if touched.report {
            let ok = self
                .prefix_budgets
                .take(addr, budget::Class::Host, now_ns / 1_000_000)
                && self.event_budget.take(now_ns);
            if ok {
                self.events.push(Event {
                    kind: EventKind::Live,
                    src: *addr,
                    dst: [0; 16],
                    src_port: 0,
                    dst_port: 0,
                    time_ns: now_ns,
                    persona: None,
                });
            } else {
                self.counters.events_suppressed += 1;
            }
        }
    }

    /// Restores liveness control learned before a restart.
    pub fn remember(&mut self, addr: &[u8; 16], seen_s: u32) {
        if self.shared.space.remember(addr, seen_s) {
            self.counters.yields += 1;
        }
    }

    /// Whether a request for `target` from `side` finds a decoy: yes when
    /// the address is claimed (or routed dark); an unanswered request from
    /// the outside (whose answer would have crossed the appliance) starts
    /// or continues the claim (LaBrea's rule). Requests from the inside
    /// never claim: their answers need not cross the appliance.
    fn resolves(&mut self, target: &[u8; 16], side: Side, now_ns: u64, start_s: u32) -> bool {
        let space = &self.shared.space;
        match space.darkness(target, seconds(now_ns), start_s) {
            Darkness::Dark => true,
            Darkness::Unclaimed if side == Side::Outside => {
                let now_ds = (now_ns / 100_000_000) as u32;
                match space.ask(target, now_ds) {
                    Claim::New => {
                        self.counters.claims += 1;
                        true
                    }
                    Claim::Held => true,
                    Claim::Pending => false,
                }
            }
            _ => false,
        }
    }

    /// Reports an inside host's open port the first time this worker sees it
    /// (a small direct-mapped cache of what was reported keeps repeats quiet).
    fn learn_service(&mut self, info: &PacketInfo, now_ns: u64) {
        let key = self.services.hash_one((info.src, info.src_port));
        let slot = (key as usize) & (SERVICE_SLOTS - 1);
        if let Some(seen) = self.service_seen.get_mut(slot)
            && *seen != key
        {
            *seen = key;
            self.report(info, now_ns, EventKind::Service);
        }
    }

    /// Notes that `info.src` is being marked by `info.dst`; reports a sweep
    /// the first time a source crosses the threshold in a window.
    fn note_sweep(&mut self, info: &PacketInfo, now_ns: u64) {
        if let Some(decoys) = self.sweeps.note(&info.src, &info.dst, seconds(now_ns)) {
            self.report(info, now_ns, EventKind::Sweep { decoys });
            if let Some(c) = self.counters.bites.get_mut(BiteKind::Sweep as usize) {
                *c += 1;
            }
        }
    }

    fn mark(&mut self, kind: MarkKind) -> Verdict {
        if let Some(c) = self.counters.marks.get_mut(kind as usize) {
            *c += 1;
        }
        if self.shared.mark_sample != 0 {
            self.mark_seq += 1;
            if self.mark_seq >= self.shared.mark_sample {
                self.mark_seq = 0;
                self.sampled = Some(kind);
            }
        }
        Verdict::Reply
    }

    /// Takes a reply token for `decoy` answering `prober`, or says why not.
    fn limited(&mut self, decoy: &[u8; 16], prober: &[u8; 16], now_ms: u64) -> Option<Verdict> {
        (!self.limiter.allow(decoy, prober, now_ms))
            .then_some(Verdict::Drop(DropReason::RateLimited))
    }

    fn arp<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        arrival: Option<Side>,
        now_ns: u64,
        start_s: u32,
    ) -> Option<Verdict> {
        let (request, q) = neighbor::arp_message(buf.data())?;
        let sender = q.sender_ip.to_ipv6_mapped().octets();
        let target = q.target_ip.to_ipv6_mapped().octets();
        let side = {
            let shared = &*self.shared;
            let protected = &shared.space.protected;
            let side = shared
                .sides
                .side_of(arrival, buf.data(), &sender, protected);
            if shared.sides.check(side, &sender, protected).is_err() {
                return Some(Verdict::Drop(DropReason::Spoofed));
            }
            side
        };
        // An ARP probe (sender 0.0.0.0, RFC 5227) or an announcement
        // (sender = target) means a host is taking the address.
        let claiming = q.sender_ip.is_unspecified() || q.sender_ip == q.target_ip;
        if side == Side::Inside {
            // Any ARP from the inside shows its sender alive: replies,
            // requests, gratuitous ARP; a probe shows its target's owner.
            if !q.sender_ip.is_unspecified() {
                self.learn(&sender, now_ns);
            }
            if claiming {
                self.learn(&target, now_ns);
            }
        }
        if !request || claiming {
            return None;
        }
        if !self.resolves(&target, side, now_ns, start_s) {
            return None;
        }
        if let Some(v) = self.limited(&target, &sender, now_ns / 1_000_000) {
            return Some(v);
        }
        let persona = self.shared.personas.persona(&target);
        Some(match neighbor::arp_reply(buf, &q, &persona) {
            Ok(()) => self.mark(MarkKind::Arp),
            Err(e) => Verdict::Drop(e.into()),
        })
    }

    fn ndp<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        side: Side,
        info: &PacketInfo,
        now_ns: u64,
        start_s: u32,
    ) -> Option<Verdict> {
        let (l3, l4) = (usize::from(info.l3_offset), usize::from(info.l4_offset));
        if side == Side::Inside {
            // Duplicate address detection and advertisements are an owner
            // showing itself: its address is live, and a decoy yields.
            let owner = match neighbor::ndp_sign(buf.data(), l3, l4) {
                Some(neighbor::NdpSign::Dad(t) | neighbor::NdpSign::Advert(t)) => Some(t),
                None => None,
            };
            if let Some(t) = owner {
                self.learn(&t.octets(), now_ns);
                return None;
            }
        }
        let q = neighbor::ndp_question(buf.data(), l3, l4)?;
        let target = q.target.octets();
        if !self.resolves(&target, side, now_ns, start_s) {
            return None;
        }
        if let Some(v) = self.limited(&target, &q.sender_ip.octets(), now_ns / 1_000_000) {
            return Some(v);
        }
        let persona = self.shared.personas.persona(&target);
        Some(match neighbor::neighbor_advert(buf, &q, &persona) {
            Ok(()) => self.mark(MarkKind::Ndp),
            Err(e) => Verdict::Drop(e.into()),
        })
    }

    /// The IPv4 identification of a non-TCP reply from `persona` to the
    /// prober of `info` under `mode`.
    fn ip_id(&mut self, persona: &Persona, mode: IpId, info: &PacketInfo, now_ms: u64) -> u16 {
        let peer = match mode {
            IpId::PerDestination => (self.cookies.pair(&info.src, &info.dst) >> 16) as u32,
            _ => 0,
        };
        let salt = u32::from(info.src_port) << 16 | u32::from(info.payload_len);
        self.ids.next(
            mode,
            persona.clock_offset,
            peer,
            now_ms,
            salt ^ now_ms as u32,
        )
    }

    fn echo<B: PacketBuf>(&mut self, buf: &mut B, info: &PacketInfo, now_ms: u64) -> Verdict {
        let l4 = usize::from(info.l4_offset);
        let is_request = matches!(
            (info.ip_version, buf.data().get(l4)),
            (4, Some(8)) | (6, Some(128))
        );
        if !is_request {
            return Verdict::Drop(DropReason::ToDecoy);
        }
        if let Some(v) = self.limited(&info.dst, &info.src, now_ms) {
            return v;
        }
        self.note_sweep(info, now_ms * 1_000_000);
        let persona = self.shared.personas.persona(&info.dst);
        let ip_id = self.ip_id(&persona, persona.stack.icmp_id, info, now_ms);
        match icmp::echo_reply(buf, info, &persona, ip_id) {
            Ok(()) => self.mark(MarkKind::Echo),
            Err(e) => Verdict::Drop(e.into()),
        }
    }

    fn udp<B: PacketBuf>(&mut self, buf: &mut B, info: &PacketInfo, now_ms: u64) -> Verdict {
        if let Some(v) = self.limited(&info.dst, &info.src, now_ms) {
            return v;
        }
        self.note_sweep(info, now_ms * 1_000_000);
        let persona = self.shared.personas.persona(&info.dst);
        if self.shared.udp_services.contains(&info.dst_port)
            && persona.kind.udp_ports().contains(&info.dst_port)
        {
            let ip_id = self.ip_id(&persona, persona.stack.tcp_id, info, now_ms);
            match udp::service_reply(buf, info, &persona, now_ms, ip_id) {
                Ok(true) => return self.mark(MarkKind::Udp),
                Ok(false) => {}
                Err(e) => return Verdict::Drop(e.into()),
            }
        }
        let ip_id = self.ip_id(&persona, persona.stack.icmp_id, info, now_ms);
        match icmp::port_unreachable(buf, info, &persona, ip_id) {
            Ok(()) => self.mark(MarkKind::Unreachable),
            Err(e) => Verdict::Drop(e.into()),
        }
    }

    fn tcp<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        info: &PacketInfo,
        now_ns: u64,
        blocks: &mut Blocklist,
    ) -> Verdict {
        let now_ms = now_ns / 1_000_000;
        let Some(probe) = TcpProbe::parse(buf.data(), info) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        let flags = probe.flags;
        if flags.contains(TcpFlags::RST) {
            // Nothing answers a RST.
            return Verdict::Drop(DropReason::ToDecoy);
        }
        let persona = self.shared.personas.persona(&info.dst);
        let stack = persona.stack;
        let open = persona.is_open(probe.dst_port);
        // One keyed hash of (prober, decoy) serves the cookie and keys the
        // decoy's timestamps (engine::cookie, engine::tsproof).
        let pair = self.cookies.pair(&info.src, &info.dst);
        let ports = u32::from(probe.src_port) << 16 | u32::from(probe.dst_port);
        let ts_key = persona.ts_key(pair, ports);
        // RSTs of closed ports count on their own IP-ID sequence (nmap's CI).
        let rst_mode = if open { stack.tcp_id } else { stack.rst_id };
        let stamp = |ids: &mut IpIds, mode: IpId| Stamp {
            ts_key,
            now_ms,
            ip_id: ids.next(
                mode,
                persona.clock_offset,
                (pair >> 16) as u32,
                now_ms,
                probe.seq,
            ),
        };
        if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
            if let Some(v) = self.limited(&info.dst, &info.src, now_ms) {
                return v;
            }
            self.note_sweep(info, now_ns);
            // SYN|FIN to a listening port: what the claimed stack does
            // with it (nmap's T3).
            let refuse = open
                && flags.contains(TcpFlags::FIN)
                && match stack.syn_fin {
                    SynFin::Drop => return Verdict::Drop(DropReason::ToDecoy),
                    SynFin::Reset => true,
                    SynFin::SynAck => false,
                };
            if !open || refuse {
                let s = stamp(&mut self.ids, rst_mode);
                return match reset(buf, &probe, &persona, &s) {
                    Ok(()) => self.mark(MarkKind::Rst),
                    Err(e) => Verdict::Drop(e.into()),
                };
            }
            let isn = self.cookies.isn_of_pair(pair, ports);
            let s = stamp(&mut self.ids, stack.tcp_id);
            return match syn_ack(buf, &probe, &persona, isn, &s, &mut self.plans) {
                Ok(()) => self.mark(MarkKind::SynAck),
                Err(e) => Verdict::Drop(e.into()),
            };
        }
        if !flags.contains(TcpFlags::ACK) {
            // FIN, NULL or Xmas probes (RFC 9293 section 3.10.7.1): a
            // closed port answers RST|ACK, a listening one stays silent;
            // where the claimed stack differs (Windows refuses them on
            // open ports, Linux and JetDirect ignore Xmas on closed ones:
            // nmap's T2 and T7), it does as that stack does.
            let xmas = flags.contains(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG);
            let answered = if open {
                stack.bare_to_open_reset
            } else {
                !xmas || stack.xmas_to_closed
            };
            if !answered {
                return Verdict::Drop(DropReason::ToDecoy);
            }
            if let Some(v) = self.limited(&info.dst, &info.src, now_ms) {
                return v;
            }
            let s = stamp(&mut self.ids, rst_mode);
            return match reset(buf, &probe, &persona, &s) {
                Ok(()) => self.mark(MarkKind::Rst),
                Err(e) => Verdict::Drop(e.into()),
            };
        }
        let verified = if open {
            self.cookies
                .verify_pair(pair, ports, probe.ack, COOKIE_WINDOW)
        } else {
            None
        };
        let Some(cookie) = verified else {
            // A segment of no connection: forged, stale, or to a closed
            // port. A wrong cookie in a source's name spends its weak
            // ticket for the day (engine::ticket).
            if open {
                self.counters.bad_cookies += 1;
                self.shared.tickets.spend(&info.src, seconds(now_ns));
            }
            if let Some(v) = self.limited(&info.dst, &info.src, now_ms) {
                return v;
            }
            let s = stamp(&mut self.ids, rst_mode);
            return match reset(buf, &probe, &persona, &s) {
                Ok(()) => self.mark(MarkKind::Rst),
                Err(e) => Verdict::Drop(e.into()),
            };
        };
        // The sender received our SYN-ACK. The segment that completes the
        // handshake (nothing sent by the decoy acknowledged yet, no FIN) and
        // every segment carrying data are bites; acknowledgements of our own
        // data and FINs are not new ones.
        let opening = cookie.offset == 0 && !flags.contains(TcpFlags::FIN);
        // Bare ACKs after the opening (acknowledging our data) are not new
        // bites. A bite must acknowledge exactly the SYN-ACK, or the SYN-ACK
        // and the banner: the verification window is for answering later
        // segments, and would make a bite ~2^10 times easier to guess.
        let exact = cookie.offset == 0
            || service::banner(&persona, probe.dst_port)
                .is_some_and(|b| b.payload().len() as u32 == cookie.offset);
        let mut is_bite = exact && (opening || probe.payload_len > 0);
        // Strong: the segment also echoes, as TSecr, a timestamp the decoy
        // sent this prober within the proof window, and its cookie is
        // exactly the one of the epoch that timestamp names (2^-60 to
        // guess; engine::tsproof). An echo of something older is the
        // cookie alone: weak. An echo of nothing the decoy sent is forged
        // (a real stack echoes what it received): no bite, and the
        // source's weak ticket is spent.
        let mut strong = false;
        let echo = probe
            .timestamps
            .filter(|_| is_bite && stack.ts_hz != 0)
            .map(|(_, tsecr)| tsecr);
        if let Some(tsecr) = echo {
            let clock = persona.ts_clock();
            let lifetime = 2 * self.cookies.rotation_ms() + tsproof::QUANTUM_MS;
            match clock.echo_age_ms(tsecr, ts_key, now_ms, lifetime) {
                None => {
                    is_bite = false;
                    self.counters.bad_echoes += 1;
                    self.shared.tickets.spend(&info.src, seconds(now_ns));
                }
                Some(age) if age <= tsproof::WINDOW_QUANTA * tsproof::QUANTUM_MS => {
                    let sent = now_ms - now_ms % tsproof::QUANTUM_MS - age;
                    strong = self
                        .cookies
                        .age_at(sent)
                        .and_then(|epoch| {
                            self.cookies
                                .verify_in(pair, ports, probe.ack, epoch, cookie.offset)
                        })
                        .is_some_and(|m| m.offset == cookie.offset);
                }
                Some(_) => {}
            }
        }
        let mut kind = if probe.payload_len > 0 {
            BiteKind::Data
        } else {
            BiteKind::Handshake
        };
        let mut proof_strong = strong;
        // A weak handshake counts towards a port bite only while the
        // source's weak ticket is unspent: a spoofer's lucky guess must be
        // its first weak try of the day (engine::ticket).
        if opening && (strong || self.shared.tickets.unspent(&info.src, seconds(now_ns))) {
            let minute = (now_ms / 60_000) as u16;
            let ttl = self.shared.proof_ttl_min;
            if let Some((_, other_strong)) =
                self.shared
                    .proofs
                    .prove(&info.src, &info.dst, probe.dst_port, minute, ttl, strong)
            {
                kind = BiteKind::Port;
                // As strong as the weaker of its two proofs.
                proof_strong = strong && other_strong;
            }
        }
        if is_bite && self.bite(info, kind, proof_strong, now_ns, blocks) {
            return Verdict::Drop(DropReason::Blocked);
        }
        if let Some(v) = self.limited(&info.dst, &info.src, now_ms) {
            return v;
        }
        // The decoy's answer, computed from this segment alone.
        let seq = probe.ack;
        let ack = probe.seq_end();
        let payload_at = usize::from(info.l4_offset) + tcp_header_len(buf.data(), info);
        let data = buf
            .data()
            .get(payload_at..payload_at + probe.payload_len as usize)
            .unwrap_or(&[]);
        let response = if probe.payload_len > 0 {
            service::answer(
                &persona,
                probe.dst_port,
                data,
                cookie.offset,
                now_ms / 1000,
                &self.shared.tls,
            )
        } else if opening {
            service::banner(&persona, probe.dst_port)
        } else {
            None
        };
        let fin = flags.contains(TcpFlags::FIN);
        let seg = match &response {
            Some(r) if r.reset => Segment {
                seq,
                ack: 0,
                flags: TcpFlags::RST,
                payload: &[],
            },
            Some(r) => Segment {
                seq,
                ack,
                flags: if r.fin || fin {
                    TcpFlags::PSH | TcpFlags::ACK | TcpFlags::FIN
                } else {
                    TcpFlags::PSH | TcpFlags::ACK
                },
                payload: r.payload(),
            },
            // The client closes: the server closes too.
            None if fin => Segment {
                seq,
                ack,
                flags: TcpFlags::FIN | TcpFlags::ACK,
                payload: &[],
            },
            // Data with nothing to say: acknowledge it, window open.
            None if probe.payload_len > 0 => Segment {
                seq,
                ack,
                flags: TcpFlags::ACK,
                payload: &[],
            },
            // A bare ACK needs no answer.
            None => return Verdict::Drop(DropReason::ToDecoy),
        };
        let s = stamp(&mut self.ids, stack.tcp_id);
        match write_segment(buf, &probe, &persona, &seg, &s) {
            Ok(()) => self.mark(MarkKind::Service),
            Err(e) => Verdict::Drop(e.into()),
        }
    }

    /// Counts and reports a bite and applies the policy; true when the
    /// source is now latched. `strong`: the bite echoed the decoy's
    /// timestamp (engine::tsproof); a weak one blocks only with the
    /// source's unspent weak ticket (engine::ticket).
    fn bite(
        &mut self,
        info: &PacketInfo,
        kind: BiteKind,
        strong: bool,
        now_ns: u64,
        blocks: &mut Blocklist,
    ) -> bool {
        if let Some(c) = self.counters.bites.get_mut(kind as usize) {
            *c += 1;
        }
        if strong {
            self.counters.strong_bites += 1;
        }
        let allowlisted = self.shared.allow.contains(&info.src);
        let mut action = self.shared.policy.action(kind);
        if allowlisted && action == Action::Block {
            action = Action::Alert;
        }
        // A weak proof is one blind guess in 2^31: it blocks only as the
        // source's one weak try of the day, so a spoofer's guesses (each
        // wrong one spends the ticket) never get a chosen innocent
        // latched; a strong proof is never held back.
        if action == Action::Block
            && !strong
            && !self.shared.tickets.spend(&info.src, seconds(now_ns))
        {
            action = Action::Alert;
            self.counters.weak_denied += 1;
        }
        let latched = action == Action::Block && self.latch(info.src, now_ns, blocks);
        if action != Action::Count {
            self.report(
                info,
                now_ns,
                EventKind::Bite {
                    kind,
                    action: if action == Action::Block && !latched {
                        Action::Alert
                    } else {
                        action
                    },
                    allowlisted,
                    strong,
                },
            );
        }
        latched
    }

    /// Sets wall time minus the worker clock.
    pub fn set_wall_offset(&mut self, ns: i64) {
        self.wall_offset_ns = ns;
    }

    /// Latches `src` into `blocks` at the worker reading `now_ns`; true
    /// when it is blocked now.
    pub fn latch(&mut self, src: [u8; 16], now_ns: u64, blocks: &mut Blocklist) -> bool {
        let now_s = wall_seconds(now_ns, self.wall_offset_ns);
        match latch_source(src, self.latch, now_s, blocks) {
            Latch::Already => true,
            Latch::New => {
                self.counters.latched += 1;
                true
            }
            Latch::Full => {
                self.counters.latch_full += 1;
                false
            }
        }
    }

    fn report(&mut self, info: &PacketInfo, now_ns: u64, kind: EventKind) {
        if let (EventKind::Bite { .. }, Some(e)) = (&kind, self.evidence.as_mut()) {
            e.on_bite(&info.src, now_ns);
        }
        // A bite that latched always goes out (and is never dropped on its
        // way: the ring keeps room for it, the worker retries it). Every
        // other event spends its source prefix's budget for its kind
        // (engine::budget), so no party crowds another's out; the kinds
        // forged traffic can produce in bulk (services, sweeps, marks) also
        // share a worker-wide budget.
        let latched = matches!(
            kind,
            EventKind::Bite {
                action: Action::Block,
                ..
            }
        );
        if !latched {
            let class = match kind {
                EventKind::Bite { .. } => budget::Class::Bite,
                EventKind::Sweep { .. } => budget::Class::Sweep,
                EventKind::Mark { .. } => budget::Class::Mark,
                EventKind::Service | EventKind::Live => budget::Class::Host,
            };
            let bulk = !matches!(kind, EventKind::Bite { .. });
            if !self
                .prefix_budgets
                .take(&info.src, class, now_ns / 1_000_000)
                || (bulk && !self.event_budget.take(now_ns))
            {
                self.counters.events_suppressed += 1;
                return;
            }
        }
        // Events about a decoy say which persona it showed (a cached
        // lookup; events are rare next to packets).
        let persona = match kind {
            EventKind::Service | EventKind::Live => None,
            _ => Some(self.shared.personas.persona(&info.dst).kind),
        };
        let event = Event {
            kind,
            src: info.src,
            dst: info.dst,
            src_port: info.src_port,
            dst_port: info.dst_port,
            time_ns: now_ns,
            persona,
        };
        if latched {
            self.events.push_reserved(event);
        } else {
            self.events.push(event);
        }
    }
}

/// The outcome of a latch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Latch {
    /// The source was blocked already.
    Already,
    /// The source is blocked now.
    New,
    /// The block table is full: not blocked.
    Full,
}

/// Blocks `src` in `blocks` at Unix second `now_s`, as `rule` says: IPv4
/// sources alone, an IPv6 source by its prefix (its /64 by default, since
/// one host can rotate through a whole /64), for `rule.for_s`. A source
/// blocked already keeps its block (a latch never shortens one). Below
/// capacity an insert never reallocates; at capacity it is refused.
pub fn latch_source(src: [u8; 16], rule: LatchRule, now_s: u32, blocks: &mut Blocklist) -> Latch {
    if blocks.standing(&src, now_s) == Standing::Blocked {
        return Latch::Already;
    }
    match blocks.block(rule.prefix(&src), rule.expiry(now_s)) {
        Ok(()) => Latch::New,
        Err(_) => Latch::Full,
    }
}

/// Unix seconds by the wall clock at the worker reading `now_ns`.
pub fn wall_seconds(now_ns: u64, wall_offset_ns: i64) -> u32 {
    let wall = i128::from(now_ns) + i128::from(wall_offset_ns);
    (wall.max(0) / 1_000_000_000).min(i128::from(u32::MAX)) as u32
}

/// True when a classified IP frame's checksums verify: the IPv4 header's,
/// and the TCP, UDP, ICMP or ICMPv6 checksum over the length the IP header
/// gives (frames may carry Ethernet padding past it). A UDP checksum of
/// zero over IPv4 means none was computed (RFC 768).
fn checksums_ok(frame: &[u8], info: &PacketInfo) -> bool {
    use crate::wire::{Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};
    let (l3, l4) = (usize::from(info.l3_offset), usize::from(info.l4_offset));
    let Some(ip) = frame.get(l3..) else {
        return false;
    };
    let end = if info.ip_version == 4 {
        let Ok(v4) = Ipv4Packet::new_checked(ip) else {
            return false;
        };
        if !v4.verify_checksum() {
            return false;
        }
        l3 + usize::from(v4.total_len())
    } else {
        let Ok(v6) = Ipv6Packet::new_checked(ip) else {
            return false;
        };
        l3 + 40 + usize::from(v6.payload_len())
    };
    let Some(segment) = frame.get(l4..end) else {
        return false;
    };
    let v4 = |a: &[u8; 16]| std::net::Ipv4Addr::new(a[12], a[13], a[14], a[15]);
    let v6 = |a: &[u8; 16]| std::net::Ipv6Addr::from(*a);
    let (src, dst) = (&info.src, &info.dst);
    match (info.protocol, info.ip_version) {
        (protocol::TCP, 4) => {
            TcpPacket::new_unchecked(segment).verify_checksum_v4(v4(src), v4(dst))
        }
        (protocol::TCP, _) => {
            TcpPacket::new_unchecked(segment).verify_checksum_v6(&v6(src), &v6(dst))
        }
        (protocol::UDP, 4) => {
            UdpPacket::new_checked(segment).is_ok_and(|u| u.verify_checksum_v4(v4(src), v4(dst)))
        }
        (protocol::UDP, _) => {
            UdpPacket::new_checked(segment).is_ok_and(|u| u.verify_checksum_v6(&v6(src), &v6(dst)))
        }
        (protocol::ICMP, 4) => {
            Icmpv4Packet::new_checked(segment).is_ok_and(|i| i.verify_checksum())
        }
        (protocol::ICMPV6, 6) => {
            Icmpv6Packet::new_checked(segment).is_ok_and(|i| i.verify_checksum(&v6(src), &v6(dst)))
        }
        _ => true,
    }
}

/// The TCP header length of a classified segment (20 when unreadable).
fn tcp_header_len(frame: &[u8], info: &PacketInfo) -> usize {
    frame
        .get(usize::from(info.l4_offset) + 12)
        .map_or(20, |b| usize::from(b >> 4) * 4)
}
