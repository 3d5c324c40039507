//! The clock the workers read once per burst, injectable for tests and replay.
//!
//! Time on the packet path is a `u64` of nanoseconds since an arbitrary epoch.
//! It never goes backwards, so timers (flows, rate limits, cookie epochs,
//! timestamps) are immune to wall-clock steps. Block expiries are different:
//! they are absolute Unix times set by control from its wall clock, so a
//! worker compares them against wall time, which it gets by adding
//! [`Clock::wall_offset_ns`] (re-read once a second) to its reading. An NTP
//! step then moves every expiry check with it, as it moves control's.
//! [`Clock::Monotonic`] reads the system's monotonic clock; [`Clock::Manual`]
//! is advanced by whoever holds it (tests stepping time); [`Clock::Trace`]
//! takes time from the frames themselves: a worker's "now" is the receive
//! timestamp of the newest frame it has seen, so a capture replayed at any
//! speed ages flows by its own clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of nanosecond timestamps; cheap to clone, one per worker.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system monotonic clock, anchored to the Unix time at `start`
    /// (`base_ns`), so readings are Unix nanoseconds that never go backwards.
    Monotonic {
        /// When the clock was made.
        start: Instant,
        /// Unix time at `start`, in nanoseconds.
        base_ns: u64,
    },
    /// Time set by hand (tests).
    Manual(ManualClock),
    /// Time read from frame timestamps (capture replay); `now_ns` reads 0.
    Trace,
}

impl Clock {
    /// Wall time minus this clock's reading, in nanoseconds: what to add to
    /// a reading to compare it with absolute (Unix) expiries. For the
    /// monotonic clock it is read from `CLOCK_REALTIME` (a vDSO read, no
    /// system call) and follows wall-clock steps; a manual clock's is set
    /// by its holder; a trace's is 0 (its frames carry Unix time).
    pub fn wall_offset_ns(&self) -> i64 {
        match self {
            Clock::Monotonic { .. } => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                wall.saturating_sub(i64::try_from(self.now_ns()).unwrap_or(i64::MAX))
            }
            Clock::Manual(manual) => manual.wall_offset_ns(),
            Clock::Trace => 0,
        }
    }

    /// A monotonic clock reading Unix time now. Anchoring to Unix time
    /// keeps time-derived state (cookie epochs) meaningful across restarts.
    pub fn monotonic() -> Self {
        let base_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Clock::Monotonic {
            start: Instant::now(),
            base_ns,
        }
    }

    /// Nanoseconds since the clock's epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self {
            // u64 nanoseconds of Unix time last until the year 2554.
            Clock::Monotonic { start, base_ns } => {
                base_ns.saturating_add(start.elapsed().as_nanos() as u64)
            }
            Clock::Manual(manual) => manual.now_ns(),
            Clock::Trace => 0,
        }
    }

    /// True when time comes from frame timestamps.
    #[inline]
    pub fn is_trace(&self) -> bool {
        matches!(self, Clock::Trace)
    }
}

/// A shared, manually advanced clock, with a wall clock that can be
/// stepped apart from it (as NTP steps the system's).
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
    wall_offset: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock reading `start_ns`, its wall clock the same.
    pub fn new(start_ns: u64) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(start_ns)),
            wall_offset: Arc::default(),
        }
    }

    /// Current reading.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    /// Sets the reading (time may be set backwards by tests; flows use wrapping ages).
    pub fn set_ns(&self, ns: u64) {
        self.now.store(ns, Ordering::Release);
    }

    /// Moves the reading forward by `ns`.
    pub fn advance_ns(&self, ns: u64) {
        self.now.fetch_add(ns, Ordering::AcqRel);
    }

    /// Moves the reading forward to `ns` if it is later than the current one.
    pub fn advance_to_ns(&self, ns: u64) {
        self.now.fetch_max(ns, Ordering::AcqRel);
    }

    /// Steps the wall clock by `ns` (negative: backwards), leaving the
    /// reading alone, as an NTP step leaves the monotonic clock.
    pub fn step_wall_ns(&self, ns: i64) {
        self.wall_offset.fetch_add(ns, Ordering::AcqRel);
    }

    /// Wall time minus the reading.
    pub fn wall_offset_ns(&self) -> i64 {
        self.wall_offset.load(Ordering::Acquire)
    }

    /// This clock as a [`Clock`].
    pub fn clock(&self) -> Clock {
        Clock::Manual(self.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let manual = ManualClock::new(5);
        let clock = manual.clock();
        manual.advance_ns(10);
        assert_eq!(clock.now_ns(), 15);
        manual.advance_to_ns(12);
        assert_eq!(clock.now_ns(), 15);
        manual.advance_to_ns(20);
        assert_eq!(clock.now_ns(), 20);
    }

    #[test]
    fn wall_offsets_follow_the_wall_clock() {
        // The monotonic clock's offset is wall minus reading: near zero
        // right after it is made (it is anchored to Unix time).
        let clock = Clock::monotonic();
        assert!(clock.wall_offset_ns().abs() < 1_000_000_000);
        // A manual clock's wall clock steps apart from its reading.
        let manual = ManualClock::new(1_000);
        let clock = manual.clock();
        manual.step_wall_ns(-3_600_000_000_000);
        assert_eq!(clock.now_ns(), 1_000);
        assert_eq!(clock.wall_offset_ns(), -3_600_000_000_000);
        assert_eq!(Clock::Trace.wall_offset_ns(), 0);
    }

    #[test]
    fn monotonic_clock_reads_unix_time_and_moves_with_it() {
        let clock = Clock::monotonic();
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let before = unix(SystemTime::now());
        let a = clock.now_ns();
        // A sleep lasts at least its duration on the monotonic clock, so a
        // clock that stood still (or ran on anything but time) fails here.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = clock.now_ns();
        assert!(b >= a + 20_000_000, "{a} then {b}");
        // Anchored to Unix time: within a minute of the wall clock (which
        // could only differ by a step made during the test).
        assert!(a.abs_diff(before) < 60_000_000_000, "{a} against {before}");
    }
}
