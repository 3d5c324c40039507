//! The poll-mode worker: one thread pinned to one core, owning one queue, one
//! engine and its counters outright.
//!
//! Each turn of the loop applies pending control messages, receives a burst,
//! runs every frame through the engine, transmits the burst, and publishes its
//! counters. Control messages arrive on a channel the worker only ever polls
//! with `try_recv` between bursts, so the packet path never waits on anyone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam::channel::{Receiver, Sender};
use crossbeam::utils::CachePadded;

use crate::clock::Clock;
use baitwall_channel::message::{self, Rule, UpEvent, code};
use baitwall_channel::region::WorkerEnds;

use crate::engine::bite::{Action, BiteKind};
use crate::engine::event::{Event, EventKind};
use crate::engine::flow::STATE_COUNT;
use crate::engine::{DropReason, Engine, Prepared, Verdict};
use crate::io::{Burst, Egress, MAX_BURST, PacketBuf, Queue, QueueStats};
use crate::stats::{Counters, StatsBoard};

/// A message from the control side, applied between bursts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// Acknowledge everything sent before this marker by publishing its generation.
    Barrier(u64),
    /// Forget every tracked flow.
    ClearFlows,
    /// Latch a block on this source (another worker saw it bite).
    Latch([u8; 16]),
    /// This worker leaves its loop (the others carry on).
    Stop,
}

/// What a worker does when a poll finds nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdlePolicy {
    /// Poll without pause: lowest latency, one core at 100% (isolated cores).
    Spin,
    /// Spin briefly, then yield, then sleep in short naps: for shared cores.
    Adaptive,
}

/// Buckets of the flow table (and of the blocklist) swept per burst, and
/// per idle-time maintenance step.
const SWEEP_PER_BURST: usize = 8;
const SWEEP_PER_IDLE: usize = 256;
/// How often a worker re-reads the wall clock's offset (one second).
const WALL_READ_NS: u64 = 1_000_000_000;

/// Empty polls per idle-time maintenance step (sweep, counters published).
/// Every empty poll was one: at half a million frames a second on a veth,
/// where most polls of a fast worker find nothing, the sweep alone took 13
/// to 18% of the worker's CPU (benches/veth, `perf`).
const IDLE_POLLS_PER_STEP: u64 = 16;

/// A worker's fixed settings.
#[derive(Copy, Clone, Debug)]
pub struct WorkerConfig {
    /// Worker index, also its queue index.
    pub id: usize,
    /// The core to pin to, if any.
    pub core: Option<usize>,
    /// Frames per burst (1..=[`MAX_BURST`]).
    pub burst: usize,
    /// Idle behaviour.
    pub idle: IdlePolicy,
    /// Fail-closed start: drop every frame until control's first resync is
    /// in force, or until this long has passed (then fail open, counted).
    pub hold: Option<std::time::Duration>,
}

/// Shared handles a worker reads or writes without locks.
#[derive(Clone)]
pub struct WorkerLinks {
    /// Counters board (one padded slot per worker).
    pub board: Arc<StatsBoard>,
    /// Barrier generations applied, one padded cell per worker.
    pub applied: Arc<[CachePadded<AtomicU64>]>,
    /// Set to stop every worker.
    pub stop: Arc<AtomicBool>,
    /// Where the worker sends the engine's events (bites, sweeps).
    pub events: Sender<WorkerEvent>,
}

/// An engine event and the worker that saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkerEvent {
    /// The worker.
    pub worker: usize,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// What a worker reports when it ends.
#[derive(Clone, Debug)]
pub struct WorkerReport {
    /// Worker index.
    pub id: usize,
    /// The core it ran on, if pinning succeeded.
    pub pinned: Option<usize>,
    /// Final counters.
    pub counters: Counters,
    /// Live flows per state at the end.
    pub flow_states: [u64; STATE_COUNT],
    /// Backend counters.
    pub queue: QueueStats,
    /// Sources this worker latched.
    pub latched: Vec<[u8; 16]>,
}

/// Runs a worker on the current thread until stopped; pins it first.
pub fn run<Q: Queue>(
    config: WorkerConfig,
    mut queue: Q,
    mut engine: Engine,
    control: Receiver<ControlMsg>,
    links: WorkerLinks,
    clock: Clock,
    mut ring: Option<WorkerEnds>,
) -> WorkerReport {
    let pinned = config
        .core
        .filter(|&core| core_affinity::set_for_current(core_affinity::CoreId { id: core }));
    let burst_size = config.burst.clamp(1, MAX_BURST);
    let mut counters = Counters::default();
    let mut rx: Burst<Q::Buf> = Burst::new();
    let mut tx: Burst<Q::Buf> = Burst::new();
    let mut prepared = [Prepared::EMPTY; MAX_BURST];
    let mut idle = IdleState::default();
    let mut undelivered = Undelivered::default();
    let mut now_ns = clock.now_ns();
    engine.set_wall_offset(clock.wall_offset_ns());
    let mut wall_read_ns = now_ns;
    let mut stopped = false;
    // A fail-closed start holds traffic until the first resync (only with a
    // control region: without one there is nothing to wait for).
    let mut holding_until = config
        .hold
        .filter(|_| ring.is_some())
        .map(|d| Instant::now() + d);
    loop {
        while let Ok(msg) = control.try_recv() {
            counters.control_messages += 1;
            match msg {
                ControlMsg::Barrier(generation) => {
                    if let Some(cell) = links.applied.get(config.id) {
                        cell.store(generation, Ordering::Release);
                    }
                }
                ControlMsg::ClearFlows => {
                    engine.clear_flows();
                }
                ControlMsg::Latch(src) => engine.latch(src, now_ns),
                ControlMsg::Stop => stopped = true,
            }
        }
        if now_ns.wrapping_sub(wall_read_ns) >= WALL_READ_NS {
            // Once a second: expiries follow wall-clock steps (NTP).
            engine.set_wall_offset(clock.wall_offset_ns());
            wall_read_ns = now_ns;
        }
        if let Some(ends) = ring.as_mut() {
            apply_rules(ends, &mut engine, config.id, &mut counters, now_ns);
        }
        if stopped || links.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = queue.rx_burst(&mut rx, burst_size);
        // Time never goes backwards for a worker, whatever the source.
        now_ns = match (clock.is_trace(), rx.last()) {
            (true, Some(newest)) => now_ns.max(newest.timestamp_ns()),
            (true, None) => now_ns,
            (false, _) => now_ns.max(clock.now_ns()),
        };
        if n == 0 {
            counters.idle_polls += 1;
            if counters.idle_polls % IDLE_POLLS_PER_STEP == 0 {
                engine.maintain(SWEEP_PER_IDLE, now_ns);
                if !undelivered.pending.is_empty() {
                    // Latched bites waiting for room are retried idle too.
                    hand_over_events(
                        &mut engine,
                        &links,
                        config.id,
                        &mut counters,
                        ring.as_mut(),
                        &mut undelivered,
                    );
                }
                counters.flows = engine.flows().counters();
                counters.port_drops = queue.stats().rx_dropped;
                publish(&links, config.id, &counters, ring.as_ref());
            }
            idle.wait(config.idle);
            continue;
        }
        idle.reset();
        counters.bursts += 1;
        if let Some(until) = holding_until
            && (counters.generation > 0 || Instant::now() >= until)
        {
            if counters.generation == 0 {
                counters.hold_timeouts += 1;
            }
            holding_until = None;
        }
        // Look every frame's tables up ahead (see `engine`'s module doc),
        // then decide the frames in order.
        engine.prepare_burst(rx.iter().map(PacketBuf::data), &mut prepared);
        for (mut buf, p) in rx.drain(..).zip(prepared.iter()) {
            let len = buf.data().len() as u64;
            counters.rx_packets += 1;
            counters.rx_bytes += len;
            let verdict = if holding_until.is_some() {
                Verdict::Drop(DropReason::Holding)
            } else {
                engine.decide(&mut buf, p, now_ns)
            };
            match verdict {
                Verdict::Forward => {
                    buf.set_egress(Egress::Forward);
                    tx.push(buf);
                }
                Verdict::Reply => {
                    buf.set_egress(Egress::Reply);
                    tx.push(buf);
                }
                Verdict::Sever => {
                    // Two RSTs for one frame: room in this burst, and a
                    // second buffer, or the frame is just dropped.
                    let mut second = (tx.len() + 2 <= MAX_BURST).then(|| queue.alloc()).flatten();
                    let written = second
                        .as_mut()
                        .is_some_and(|other| engine.write_severance(&mut buf, other, now_ns));
                    match second {
                        Some(mut other) if written => {
                            counters.severed += 1;
                            buf.set_egress(Egress::Reply);
                            other.set_egress(Egress::Reply);
                            tx.push(buf);
                            tx.push(other);
                        }
                        other => {
                            if let Some(o) = other {
                                queue.recycle(o);
                            }
                            counters.drop(DropReason::Blocked);
                            queue.recycle(buf);
                        }
                    }
                }
                Verdict::Drop(reason) => {
                    counters.drop(reason);
                    queue.recycle(buf);
                }
            }
        }
        let tx_bytes: u64 = tx.iter().map(|b| b.data().len() as u64).sum();
        let outcome = queue.tx_burst(&mut tx);
        counters.tx_packets += outcome.sent as u64;
        if outcome.dropped == 0 && outcome.skipped == 0 {
            counters.tx_bytes += tx_bytes;
        } else {
            // The ring was full, or a tap's copies needed no sending. Bytes
            // of the frames that did go are not known individually here, so
            // count them at the average.
            let sent = outcome.sent as u64;
            let total = (outcome.sent + outcome.dropped + outcome.skipped) as u64;
            counters.tx_bytes += tx_bytes * sent / total.max(1);
            for _ in 0..outcome.dropped {
                counters.drop(DropReason::TxRingFull);
            }
        }
        engine.maintain(SWEEP_PER_BURST, now_ns);
        hand_over_events(
            &mut engine,
            &links,
            config.id,
            &mut counters,
            ring.as_mut(),
            &mut undelivered,
        );
        counters.flows = engine.flows().counters();
        counters.deception = engine.deception_counters();
        counters.port_drops = queue.stats().rx_dropped;
        publish(&links, config.id, &counters, ring.as_ref());
    }
    // A last full sweep, so the final counters say what has expired by now.
    let now_ms = millis(now_ns);
    engine.maintain(usize::MAX, now_ns);
    hand_over_events(
        &mut engine,
        &links,
        config.id,
        &mut counters,
        ring.as_mut(),
        &mut undelivered,
    );
    counters.flows = engine.flows().counters();
    counters.deception = engine.deception_counters();
    counters.port_drops = queue.stats().rx_dropped;
    publish(&links, config.id, &counters, ring.as_ref());
    WorkerReport {
        id: config.id,
        pinned,
        counters,
        flow_states: engine.flows().state_histogram(now_ms),
        queue: queue.stats(),
        latched: engine.latched(),
    }
}

/// Publishes the counters on the in-process board and, when a control
/// region is attached, in this worker's counter cells there.
#[inline]
fn publish(links: &WorkerLinks, id: usize, counters: &Counters, ring: Option<&WorkerEnds>) {
    links.board.publish(id, counters);
    if let Some(ends) = ring {
        ends.stats.publish(&counters.as_cells());
    }
}

/// Latched bites a worker could not hand over yet (a full events ring or
/// channel), retried first at every turn, oldest first.
struct Undelivered {
    pending: Vec<Pending>,
}

/// A latched bite and where it has still to go.
struct Pending {
    event: Event,
    region: bool,
    channel: bool,
}

/// Latched bites a worker keeps while control's ring (65,536 records by
/// default) and the in-process channel are full; past that they are
/// counted as lost (`latch_events_lost`), their blocks still in force.
const UNDELIVERED_MAX: usize = 4096;

impl Default for Undelivered {
    fn default() -> Self {
        Undelivered {
            pending: Vec::with_capacity(UNDELIVERED_MAX),
        }
    }
}

/// Sends the engine's events to the in-process collector and, when a
/// control region is attached, up this worker's events ring (published
/// once). A full channel or ring loses an event, counted, never waits;
/// but a bite that latched is kept and retried until both have it.
fn hand_over_events(
    engine: &mut Engine,
    links: &WorkerLinks,
    worker: usize,
    counters: &mut Counters,
    mut ring: Option<&mut WorkerEnds>,
    undelivered: &mut Undelivered,
) {
    let latch = engine.latch_rule();
    let to_region = |event: &Event, ring: &mut Option<&mut WorkerEnds>| {
        ring.as_deref_mut()
            .is_none_or(|ends| ends.events.push(&up_record(worker, event, latch)))
    };
    undelivered.pending.retain_mut(|p| {
        if p.region {
            p.region = !to_region(&p.event, &mut ring);
        }
        if p.channel {
            p.channel = links
                .events
                .try_send(WorkerEvent {
                    worker,
                    event: p.event,
                })
                .is_err();
        }
        p.region || p.channel
    });
    engine.drain_events(|event| {
        let latched = matches!(
            event.kind,
            EventKind::Bite {
                action: Action::Block,
                ..
            }
        );
        let region_ok = to_region(&event, &mut ring);
        let channel_ok = links.events.try_send(WorkerEvent { worker, event }).is_ok();
        if region_ok && channel_ok {
            return;
        }
        if !latched {
            counters.events_lost += 1;
            if !region_ok && let Some(ends) = ring.as_deref_mut() {
                ends.events.count_dropped();
            }
        } else if undelivered.pending.len() < UNDELIVERED_MAX {
            undelivered.pending.push(Pending {
                event,
                region: !region_ok,
                channel: !channel_ok,
            });
        } else {
            counters.latch_events_lost += 1;
        }
    });
    counters.latch_events_waiting = undelivered.pending.len() as u64;
    if let Some(ends) = ring {
        ends.events.publish();
    }
}

/// Rules a worker applies per turn of its loop, so a flood of rules cannot
/// hold its packets back for long.
const RULES_PER_TURN: usize = 256;

/// Applies the rules waiting on this worker's rules ring; a generation
/// marker is acknowledged up the events ring once everything before it is
/// in force.
fn apply_rules(
    ends: &mut WorkerEnds,
    engine: &mut Engine,
    worker: usize,
    counters: &mut Counters,
    now_ns: u64,
) {
    for _ in 0..RULES_PER_TURN {
        let Some(record) = ends.rules.pop() else {
            break;
        };
        match Rule::decode(&record) {
            Ok(Rule::Generation(generation)) => {
                let ack = UpEvent {
                    kind: message::kind::APPLIED,
                    bite: 0,
                    action: 0,
                    allowlisted: false,
                    strong: false,
                    latched_len: 0,
                    worker: worker as u16,
                    time_ns: generation,
                    src: [0; 16],
                    dst: [0; 16],
                    src_port: 0,
                    dst_port: 0,
                    decoys: 0,
                    persona: message::NO_PERSONA,
                };
                // A lost acknowledgement is made good by the next marker.
                ends.events.push_or_drop(&ack.encode());
                ends.events.publish();
                // Also where control can read it at its next attach, to
                // resend only what changed since.
                ends.rules.set_applied(generation);
                counters.generation = generation;
            }
            Ok(Rule::Query { id, addr, count }) => {
                // An operator's question: answered at once; an answer lost
                // to a full ring times out at control (asked again).
                engine.answer_query(id, addr, count, now_ns, |answer| {
                    ends.events.push_or_drop(&answer.encode());
                });
                ends.events.publish();
            }
            Ok(rule) => match engine.apply(&rule) {
                Ok(()) => counters.rules_applied += 1,
                Err(_) => counters.rules_refused += 1,
            },
            Err(_) => counters.rules_refused += 1,
        }
    }
    ends.rules.release();
}

/// A bite kind's number on the wire.
fn bite_code(kind: BiteKind) -> u8 {
    match kind {
        BiteKind::Handshake => code::BITE_HANDSHAKE,
        BiteKind::Data => code::BITE_DATA,
        BiteKind::Port => code::BITE_PORT,
        BiteKind::Sweep => code::BITE_SWEEP,
    }
}

/// An action's number on the wire.
fn action_code(action: Action) -> u8 {
    match action {
        Action::Count => code::ACTION_COUNT,
        Action::Alert => code::ACTION_ALERT,
        Action::Block => code::ACTION_BLOCK,
    }
}

/// An engine event as a ring record; a latched bite says the length of the
/// prefix `latch` blocked, so control learns it.
fn up_record(
    worker: usize,
    event: &Event,
    latch: crate::engine::deceive::LatchRule,
) -> baitwall_channel::Record {
    let strong = matches!(event.kind, EventKind::Bite { strong: true, .. });
    let (kind, bite, action, allowlisted, decoys) = match event.kind {
        EventKind::Bite {
            kind,
            action,
            allowlisted,
            ..
        } => (
            message::kind::BITE,
            bite_code(kind),
            action_code(action),
            allowlisted,
            0,
        ),
        EventKind::Sweep { decoys } => (message::kind::SWEEP, 0, 0, false, decoys),
        EventKind::Service => (message::kind::SERVICE, 0, 0, false, 0),
        EventKind::Live => (message::kind::LIVE, 0, 0, false, 0),
        EventKind::Mark { kind, one_in } => (message::kind::MARK, kind as u8, 0, false, one_in),
    };
    let latched = action == code::ACTION_BLOCK && kind == message::kind::BITE;
    let latched_len = if latched {
        latch.prefix(&event.src).len()
    } else {
        0
    };
    UpEvent {
        kind,
        bite,
        action,
        allowlisted,
        strong,
        latched_len,
        worker: worker as u16,
        time_ns: event.time_ns,
        src: event.src,
        dst: event.dst,
        src_port: event.src_port,
        dst_port: event.dst_port,
        decoys,
        persona: event
            .persona
            .map_or(message::NO_PERSONA, crate::engine::query::family_code),
    }
    .encode()
}

#[inline]
fn millis(ns: u64) -> u32 {
    // Wrapping by design: the flow table works on wrapping u32 milliseconds.
    (ns / 1_000_000) as u32
}

/// Counts empty polls to pick between spinning, yielding and napping.
#[derive(Default)]
struct IdleState {
    empty: u32,
}

impl IdleState {
    const SPINS: u32 = 64;
    const YIELDS: u32 = 1024;

    fn reset(&mut self) {
        self.empty = 0;
    }

    fn wait(&mut self, policy: IdlePolicy) {
        self.empty = self.empty.saturating_add(1);
        match policy {
            IdlePolicy::Spin => std::hint::spin_loop(),
            IdlePolicy::Adaptive if self.empty < Self::SPINS => std::hint::spin_loop(),
            IdlePolicy::Adaptive if self.empty < Self::YIELDS => std::thread::yield_now(),
            IdlePolicy::Adaptive => std::thread::sleep(std::time::Duration::from_micros(50)),
        }
    }
}
