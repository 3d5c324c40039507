//! Per-worker counters and the snapshot that sums them.
//!
//! Each worker counts into a plain [`Counters`] it owns, and publishes it once
//! per burst into its own cache-line-padded slot of [`StatsBoard`] with relaxed
//! stores: one writer per slot, so no read-modify-write and no lock prefix on
//! the packet path, and no false sharing between workers. Readers (the CLI,
//! later the control process) take a [`StatsSnapshot`] at any time.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::utils::CachePadded;
use serde::Serialize;

use crate::engine::DropReason;
use crate::engine::bite::BiteKind;
use crate::engine::deceive::{DeceptionCounters, MarkKind};
use crate::engine::flow::{FlowCounters, FlowState, STATE_COUNT};

/// A worker's counters, owned by the worker.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames dropped, by [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
    /// Bursts that carried at least one frame.
    pub bursts: u64,
    /// Polls that found nothing.
    pub idle_polls: u64,
    /// Flow table counters.
    pub flows: FlowCounters,
    /// Control messages applied.
    pub control_messages: u64,
    /// Marks, bites and latches.
    pub deception: DeceptionCounters,
    /// Events the worker could not hand over (the channel was full).
    pub events_lost: u64,
    /// Rules from control applied.
    pub rules_applied: u64,
    /// Rules from control refused (table full, or undecodable).
    pub rules_refused: u64,
    /// The last generation of rules applied.
    pub generation: u64,
    /// Fail-closed starts that gave up waiting for control and opened.
    pub hold_timeouts: u64,
    /// Frames the port dropped before the worker saw them (a kernel ring
    /// full, no free buffer), as the backend last counted them.
    pub port_drops: u64,
    /// Tap mode: connections of blocked sources severed (two RSTs each).
    pub severed: u64,
    /// Latched bites waiting to be handed over (a full ring or channel).
    pub latch_events_waiting: u64,
    /// Latched bites given up on: the waiting queue was full too.
    pub latch_events_lost: u64,
}

impl Counters {
    /// Counts one dropped frame.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason as usize) {
            *c += 1;
        }
    }

    /// All drops, whatever the reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Number of `u64` cells in a published slot.
const CELLS: usize = 32 + DropReason::COUNT + MarkKind::COUNT + BiteKind::COUNT;

/// Names of the fixed cells, in [`Counters::as_cells`] order, as the region
/// publishes them: `"<type> <name>"`.
const FIXED_NAMES: [&str; 32] = [
    "counter rx_packets",
    "counter rx_bytes",
    "counter tx_packets",
    "counter tx_bytes",
    "counter bursts",
    "counter idle_polls",
    "counter flows_created",
    "counter flows_expired",
    "counter flows_evicted",
    "gauge flows_active",
    "counter control_messages",
    "counter events_lost",
    "counter latched",
    "counter latch_full",
    "counter bad_cookies",
    "counter events_dropped",
    "counter weak_denied",
    "counter events_suppressed",
    "counter rules_applied",
    "counter rules_refused",
    "gauge generation",
    "counter hold_timeouts",
    "counter captured",
    "counter capture_lost",
    "counter port_drops",
    "counter severed",
    "counter claims",
    "counter yields",
    "counter strong_bites",
    "counter bad_echoes",
    "gauge latch_events_waiting",
    "counter latch_events_lost",
];

/// The name of every cell, in order: what the control region's counter
/// page is labelled with (`"<type> <name>[ <label>=<value>]"`).
pub fn cell_names() -> Vec<String> {
    FIXED_NAMES
        .iter()
        .map(|s| (*s).to_string())
        .chain(
            DropReason::ALL
                .iter()
                .map(|r| format!("counter drops reason={}", r.as_str())),
        )
        .chain(
            MarkKind::ALL
                .iter()
                .map(|k| format!("counter marks kind={}", k.as_str())),
        )
        .chain(
            BiteKind::ALL
                .iter()
                .map(|k| format!("counter bites kind={}", k.as_str())),
        )
        .collect()
}

impl Counters {
    /// The counters as a flat array of cells, in a fixed order.
    pub fn as_cells(&self) -> [u64; CELLS] {
        let d = &self.deception;
        let fixed = [
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.bursts,
            self.idle_polls,
            self.flows.created,
            self.flows.expired,
            self.flows.evicted,
            self.flows.active,
            self.control_messages,
            self.events_lost,
            d.latched,
            d.latch_full,
            d.bad_cookies,
            d.events_dropped,
            d.weak_denied,
            d.events_suppressed,
            self.rules_applied,
            self.rules_refused,
            self.generation,
            self.hold_timeouts,
            d.captured,
            d.capture_lost,
            self.port_drops,
            self.severed,
            d.claims,
            d.yields,
            d.strong_bites,
            d.bad_echoes,
            self.latch_events_waiting,
            self.latch_events_lost,
        ];
        let mut cells = [0u64; CELLS];
        let values = fixed
            .iter()
            .chain(self.drops.iter())
            .chain(d.marks.iter())
            .chain(d.bites.iter());
        for (cell, v) in cells.iter_mut().zip(values) {
            *cell = *v;
        }
        cells
    }

    /// The inverse of [`Counters::as_cells`].
    fn from_cells(v: &[u64; CELLS]) -> Counters {
        let mut it = v.iter().copied();
        let mut next = || it.next().unwrap_or(0);
        let mut c = Counters {
            rx_packets: next(),
            rx_bytes: next(),
            tx_packets: next(),
            tx_bytes: next(),
            bursts: next(),
            idle_polls: next(),
            flows: FlowCounters {
                created: next(),
                expired: next(),
                evicted: next(),
                active: next(),
            },
            control_messages: next(),
            events_lost: next(),
            ..Counters::default()
        };
        c.deception.latched = next();
        c.deception.latch_full = next();
        c.deception.bad_cookies = next();
        c.deception.events_dropped = next();
        c.deception.weak_denied = next();
        c.deception.events_suppressed = next();
        c.rules_applied = next();
        c.rules_refused = next();
        c.generation = next();
        c.hold_timeouts = next();
        c.deception.captured = next();
        c.deception.capture_lost = next();
        c.port_drops = next();
        c.severed = next();
        c.deception.claims = next();
        c.deception.yields = next();
        c.deception.strong_bites = next();
        c.deception.bad_echoes = next();
        c.latch_events_waiting = next();
        c.latch_events_lost = next();
        for d in c.drops.iter_mut() {
            *d = next();
        }
        for m in c.deception.marks.iter_mut() {
            *m = next();
        }
        for b in c.deception.bites.iter_mut() {
            *b = next();
        }
        c
    }

    /// Adds `other` into `self`.
    fn add(&mut self, other: &Counters) {
        let mut sum = self.as_cells();
        for (s, o) in sum.iter_mut().zip(other.as_cells().iter()) {
            *s += o;
        }
        *self = Counters::from_cells(&sum);
    }
}

/// One worker's published counters.
struct Slot {
    cells: [AtomicU64; CELLS],
}

impl Slot {
    fn new() -> Self {
        Slot {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Where workers publish their counters; one padded slot per worker.
pub struct StatsBoard {
    slots: Box<[CachePadded<Slot>]>,
}

impl StatsBoard {
    /// A board for `workers` workers.
    pub fn new(workers: usize) -> Self {
        StatsBoard {
            slots: (0..workers)
                .map(|_| CachePadded::new(Slot::new()))
                .collect(),
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Publishes worker `id`'s counters (called by that worker only).
    #[inline]
    pub fn publish(&self, id: usize, c: &Counters) {
        let Some(slot) = self.slots.get(id) else {
            return;
        };
        for (cell, v) in slot.cells.iter().zip(c.as_cells().iter()) {
            cell.store(*v, Ordering::Relaxed);
        }
    }

    /// Reads worker `id`'s last published counters.
    pub fn read(&self, id: usize) -> Counters {
        let Some(slot) = self.slots.get(id) else {
            return Counters::default();
        };
        let v: [u64; CELLS] = std::array::from_fn(|i| slot.cells[i].load(Ordering::Relaxed));
        Counters::from_cells(&v)
    }

    /// A snapshot of every worker and their sum.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot::from_workers((0..self.workers()).map(|id| self.read(id)).collect())
    }
}

/// Counters as reported: per worker and summed, with drops by reason name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames dropped, in total.
    pub dropped: u64,
    /// Frames dropped, by reason (only reasons that occurred).
    pub drops: std::collections::BTreeMap<&'static str, u64>,
    /// Flow counters.
    pub flows: FlowCounters,
    /// Bursts with at least one frame.
    pub bursts: u64,
    /// Empty polls.
    pub idle_polls: u64,
    /// Marks sent, by kind (only kinds that occurred).
    pub marks: std::collections::BTreeMap<&'static str, u64>,
    /// Bites seen, by kind (only kinds that occurred).
    pub bites: std::collections::BTreeMap<&'static str, u64>,
    /// Sources latched.
    pub latched: u64,
    /// Latches refused for lack of room.
    pub latch_full: u64,
    /// Segments to decoys whose cookie did not verify (forged or stale).
    pub bad_cookies: u64,
    /// Events dropped (engine ring full, or worker channel full).
    pub events_lost: u64,
    /// Weak-proof blocking bites not latched: the source's weak ticket was spent.
    pub weak_denied: u64,
    /// Bites that echoed the decoy's timestamp (strong proofs).
    pub strong_bites: u64,
    /// Bites not taken: their timestamp echo was of nothing the decoy sent.
    pub bad_echoes: u64,
    /// Latched bites waiting to be handed over to control.
    pub latch_events_waiting: u64,
    /// Latched bites given up on (the waiting queue was full).
    pub latch_events_lost: u64,
    /// Service and sweep events over their budget, not reported.
    pub events_suppressed: u64,
    /// Rules from control applied.
    pub rules_applied: u64,
    /// Rules from control refused.
    pub rules_refused: u64,
    /// Generation of rules in force (per worker; the lowest in the total).
    pub generation: u64,
    /// Fail-closed starts that gave up waiting for control and opened.
    pub hold_timeouts: u64,
    /// Frames handed to the bite capture.
    pub captured: u64,
    /// Frames the bite capture lost (no free buffer).
    pub capture_lost: u64,
    /// Frames the port dropped before a worker saw them.
    pub port_drops: u64,
    /// Tap mode: connections of blocked sources severed.
    pub severed: u64,
    /// Frames dropped because their source came from the wrong side.
    pub spoofed: u64,
    /// Addresses claimed: a request for them went unanswered.
    pub claims: u64,
    /// Claimed addresses given back to an owner that showed itself.
    pub yields: u64,
}

fn named<const N: usize>(
    names: [&'static str; N],
    values: &[u64; N],
) -> std::collections::BTreeMap<&'static str, u64> {
    names
        .into_iter()
        .zip(values.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k, *n))
        .collect()
}

impl From<&Counters> for WorkerStats {
    fn from(c: &Counters) -> Self {
        WorkerStats {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            dropped: c.total_drops(),
            drops: DropReason::ALL
                .iter()
                .zip(c.drops.iter())
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| (r.as_str(), *n))
                .collect(),
            flows: c.flows,
            bursts: c.bursts,
            idle_polls: c.idle_polls,
            marks: named(MarkKind::ALL.map(MarkKind::as_str), &c.deception.marks),
            bites: named(BiteKind::ALL.map(BiteKind::as_str), &c.deception.bites),
            latched: c.deception.latched,
            latch_full: c.deception.latch_full,
            bad_cookies: c.deception.bad_cookies,
            events_lost: c.events_lost + c.deception.events_dropped,
            weak_denied: c.deception.weak_denied,
            strong_bites: c.deception.strong_bites,
            bad_echoes: c.deception.bad_echoes,
            latch_events_waiting: c.latch_events_waiting,
            latch_events_lost: c.latch_events_lost,
            events_suppressed: c.deception.events_suppressed,
            rules_applied: c.rules_applied,
            rules_refused: c.rules_refused,
            generation: c.generation,
            hold_timeouts: c.hold_timeouts,
            captured: c.deception.captured,
            capture_lost: c.deception.capture_lost,
            port_drops: c.port_drops,
            severed: c.severed,
            spoofed: c
                .drops
                .get(DropReason::Spoofed as usize)
                .copied()
                .unwrap_or(0),
            claims: c.deception.claims,
            yields: c.deception.yields,
        }
    }
}

/// Every worker's counters and their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// The sum over workers.
    pub total: WorkerStats,
    /// Per worker, by worker id.
    pub workers: Vec<WorkerStats>,
}

impl StatsSnapshot {
    /// Sums per-worker counters.
    pub fn from_workers(workers: Vec<Counters>) -> Self {
        let mut sum = Counters::default();
        for c in &workers {
            sum.add(c);
        }
        // Rules are in force everywhere up to the lowest generation.
        sum.generation = workers.iter().map(|c| c.generation).min().unwrap_or(0);
        StatsSnapshot {
            total: WorkerStats::from(&sum),
            workers: workers.iter().map(WorkerStats::from).collect(),
        }
    }
}

/// Live flows by state name, for reports.
pub fn states_by_name(hist: &[u64; STATE_COUNT]) -> Vec<(&'static str, u64)> {
    FlowState::ALL
        .iter()
        .filter_map(|s| {
            let n = hist.get(*s as usize).copied().unwrap_or(0);
            (n > 0).then_some((s.as_str(), n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn publish_and_read_round_trip() {
        let board = StatsBoard::new(2);
        let mut c = Counters {
            rx_packets: 10,
            rx_bytes: 600,
            tx_packets: 7,
            tx_bytes: 420,
            bursts: 2,
            ..Counters::default()
        };
        c.drop(DropReason::Truncated);
        c.drop(DropReason::Truncated);
        c.drop(DropReason::TxRingFull);
        c.flows.created = 5;
        c.flows.active = 4;
        board.publish(1, &c);
        assert_eq!(board.read(1), c);
        assert_eq!(board.read(0), Counters::default());
        assert_eq!(board.read(9), Counters::default());
    }

    #[test]
    fn snapshot_sums_workers() {
        let mut a = Counters {
            rx_packets: 3,
            tx_packets: 2,
            ..Counters::default()
        };
        a.drop(DropReason::BadHeaderLen);
        let mut b = Counters {
            rx_packets: 5,
            tx_packets: 4,
            ..Counters::default()
        };
        b.drop(DropReason::BadHeaderLen);
        let snap = StatsSnapshot::from_workers(vec![a, b]);
        assert_eq!(snap.total.rx_packets, 8);
        assert_eq!(snap.total.tx_packets, 6);
        assert_eq!(snap.total.dropped, 2);
        assert_eq!(snap.total.drops.get("bad_header_len"), Some(&2));
        assert_eq!(snap.workers.len(), 2);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["total"]["drops"]["bad_header_len"], 2);
    }

    #[test]
    fn slots_are_padded_apart() {
        assert!(std::mem::align_of::<CachePadded<Slot>>() >= 64);
    }
}
