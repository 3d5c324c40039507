//! Events the engine reports (bites, sweeps), kept in a fixed per-worker
//! ring that the worker drains between bursts. A full ring drops the newest
//! event and counts it: the packet path never waits and never allocates.

use super::bite::{Action, BiteKind};

/// What happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A bite, and what the policy did about it.
    Bite {
        /// Which kind.
        kind: BiteKind,
        /// The action taken.
        action: Action,
        /// True when the source is allowlisted (reported, never blocked).
        allowlisted: bool,
        /// True for a strong proof: the bite echoed the decoy's timestamp
        /// (`engine::tsproof`); false for the cookie alone.
        strong: bool,
    },
    /// An inside host answered a SYN: it offers a service on `dst_port`'s
    /// counterpart (the event's `src` and `src_port` are the host and port).
    Service,
    /// An inside host is alive (`src`): reported when first seen, then
    /// every few minutes while it sends, so control can restore it after
    /// a restart.
    Live,
    /// A sampled mark: one in `one_in` marks is reported.
    Mark {
        /// Which kind.
        kind: super::deceive::MarkKind,
        /// The sampling rate.
        one_in: u32,
    },
    /// A source received marks from many decoys (recon evidence only).
    Sweep {
        /// Distinct decoys seen by this worker in the window (an estimate).
        decoys: u32,
    },
}

/// One event, with the packet that caused it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The source (prober) address, IPv4-mapped for IPv4.
    pub src: [u8; 16],
    /// The decoy's address.
    pub dst: [u8; 16],
    /// Source port.
    pub src_port: u16,
    /// Decoy port.
    pub dst_port: u16,
    /// Time, nanoseconds (Unix time on the system clock; capture time in replays).
    pub time_ns: u64,
    /// The decoy's persona family, for events about a decoy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persona: Option<super::persona::PersonaKind>,
}

/// Room a ring keeps for latched bites: other events stop a quarter short
/// of its capacity (a worker drains it every burst, and a burst holds at
/// most 64 frames, so latched bites never find it full).
const RESERVED_DIVISOR: usize = 4;

/// A fixed-capacity ring of events.
pub struct EventRing {
    events: Vec<Event>,
    capacity: usize,
    dropped: u64,
}

impl EventRing {
    /// A ring holding up to `capacity` events between drains (allocated now).
    pub fn new(capacity: usize) -> Self {
        EventRing {
            events: Vec::with_capacity(capacity),
            capacity,
            dropped: 0,
        }
    }

    /// Adds an event, or counts it as dropped when the ring is full but
    /// for the room kept for latched bites.
    #[inline]
    pub fn push(&mut self, event: Event) {
        if self.events.len() < self.capacity - self.capacity / RESERVED_DIVISOR {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }

    /// Adds a latched bite, into the room kept for them.
    #[inline]
    pub fn push_reserved(&mut self, event: Event) {
        if self.events.len() < self.capacity {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }

    /// Takes every event out, in order (the ring keeps its allocation).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when no event waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u8) -> Event {
        Event {
            kind: EventKind::Sweep {
                decoys: u32::from(n),
            },
            src: [n; 16],
            dst: [0; 16],
            src_port: 0,
            dst_port: 0,
            time_ns: 0,
            persona: None,
        }
    }

    #[test]
    fn a_full_ring_drops_the_newest_and_counts_and_keeps_room_for_latches() {
        let mut r = EventRing::new(8);
        for i in 0..8 {
            r.push(ev(i));
        }
        assert_eq!((r.len(), r.dropped()), (6, 2), "a quarter kept back");
        r.push_reserved(ev(10));
        r.push_reserved(ev(11));
        r.push_reserved(ev(12));
        assert_eq!((r.len(), r.dropped()), (8, 3));
        let got: Vec<_> = r.drain().map(|e| e.src[0]).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5, 10, 11]);
        assert!(r.is_empty());
        r.push(ev(4));
        assert_eq!(r.len(), 1);
    }
}
