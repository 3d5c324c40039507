//! Strong proofs: the decoy's TCP timestamp, echoed back.
//!
//! A decoy whose persona has a TCP clock sends, in its SYN-ACK and every
//! later segment, the timestamp (RFC 7323)
//!
//! ```text
//! TSval = clock_offset(persona) + hi32(pair) + ticks(q)
//! q     = now_ms - now_ms mod 50                        (the 50 ms quantum)
//! ```
//!
//! where `pair` is the keyed hash of (source, decoy) that the cookie uses
//! (`engine::cookie`). That is Linux's scheme since 4.10 (a clock plus a
//! keyed per-(source, destination) offset), so nmap, probing from one
//! address, sees the persona's clock: 100 ms apart, its SEQ probes see
//! exactly 100 ticks at 1 kHz (`TS=A`) and 10 at 100 Hz (`TS=7`). A blind
//! spoofer naming a victim knows neither the victim's offset (32 keyed
//! bits) nor, so, the TSval its SYN-ACK carried; a client echoes it as
//! TSecr in every segment.
//!
//! A segment is a **strong proof** when its TSecr is the TSval of one of
//! the last [`WINDOW_QUANTA`] + 1 quanta (350 ms: the client's round trip
//! and think time; a slower client's bite is a weak proof) and its
//! acknowledgement is exactly the cookie of the epoch that quantum lies in.
//! Quanta never straddle epochs (a rotation is whole seconds), so the
//! timestamp names the one key to check. A blind guess must hit one of 8
//! TSecr values out of 2^32 and, with it, one of at most 2 exact
//! acknowledgements (the SYN-ACK, or the SYN-ACK and a banner) out of 2^32:
//!
//! ```text
//! P(strong forgery per packet) <= 8 x 2 / 2^64 = 2^-60
//! ```
//!
//! ([`forgery_odds_log2`], checked in a unit test). Clients without
//! timestamps, and personas without a TCP clock, give weak proofs: the
//! cookie alone, 31 bits, guarded by `engine::ticket`.

/// The timestamp clock's quantum, in milliseconds (divides every rotation).
pub const QUANTUM_MS: u64 = 50;

/// Quanta before the current one whose TSval still proves receipt.
pub const WINDOW_QUANTA: u64 = 7;

/// The lowest persona clock rate (Hz) whose quanta all have distinct
/// timestamps (20 Hz: one tick per quantum).
pub const MIN_HZ: u32 = 20;

/// A persona's TCP clock: its offset and rate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TsClock {
    /// The persona's own offset (its "boot time").
    pub offset: u32,
    /// Ticks per second (0: no clock, no timestamps).
    pub hz: u32,
    /// The clock's own skew in parts per million (a real crystal's error,
    /// which remote clock fingerprinting measures: Kohno et al. 2005).
    pub skew_ppm: i32,
}

impl TsClock {
    /// Ticks of the clock at `ms` (wrapping, as TCP timestamps do).
    #[inline]
    fn ticks(&self, ms: u64) -> u32 {
        let ticks = ms.wrapping_mul(u64::from(self.hz)) / 1000;
        // ticks x skew stays far inside i64 for any wall-clock time.
        let drift = (ticks as i64).wrapping_mul(i64::from(self.skew_ppm)) / 1_000_000;
        (ticks as i64).wrapping_add(drift) as u32
    }

    /// The TSval the decoy sends at `now_ms` to the prober of `pair`.
    #[inline]
    pub fn tsval(&self, pair: u64, now_ms: u64) -> Option<u32> {
        (self.hz != 0).then(|| self.tsval_at(pair, now_ms - now_ms % QUANTUM_MS))
    }

    #[inline]
    fn tsval_at(&self, pair: u64, quantum_ms: u64) -> u32 {
        self.offset
            .wrapping_add((pair >> 32) as u32)
            .wrapping_add(self.ticks(quantum_ms))
    }

    /// How long ago (ms, a whole number of quanta) the decoy sent the
    /// TSval `tsecr` to the prober of `pair`, if at most `max_ms` ago;
    /// `None` for an echo of nothing the decoy sent in that time (or a
    /// clock too slow to tell quanta apart).
    #[inline]
    pub fn echo_age_ms(&self, tsecr: u32, pair: u64, now_ms: u64, max_ms: u64) -> Option<u64> {
        if self.hz < MIN_HZ {
            return None;
        }
        let now_q = now_ms - now_ms % QUANTUM_MS;
        let back = u64::from(self.tsval_at(pair, now_q).wrapping_sub(tsecr));
        let approx = back * 1000 / u64::from(self.hz);
        if approx > max_ms + QUANTUM_MS {
            return None;
        }
        // Ticks round down: the quantum is the estimate's or a neighbour.
        let k = approx / QUANTUM_MS;
        [k, k + 1, k.saturating_sub(1)]
            .into_iter()
            .map(|k| k * QUANTUM_MS)
            .filter(|age| *age <= max_ms && *age <= now_q)
            .find(|age| self.tsval_at(pair, now_q - age) == tsecr)
    }

    /// When the decoy sent the TSval `tsecr` to the prober of `pair`: the
    /// start of its quantum, if that is one of the last [`WINDOW_QUANTA`] + 1
    /// at `now_ms` (a strong proof's window).
    #[inline]
    pub fn sent_at(&self, tsecr: u32, pair: u64, now_ms: u64) -> Option<u64> {
        let now_q = now_ms - now_ms % QUANTUM_MS;
        self.echo_age_ms(tsecr, pair, now_ms, WINDOW_QUANTA * QUANTUM_MS)
            .map(|age| now_q - age)
    }
}

/// log2 of the chance that one forged segment is a strong proof: `tsecrs`
/// valid echoes and `acks` valid exact acknowledgements for each, out of
/// 2^32 each.
pub fn forgery_odds_log2(tsecrs: u64, acks: u64) -> f64 {
    ((tsecrs * acks) as f64).log2() - 64.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const LINUX: TsClock = TsClock {
        offset: 0x1234_5678,
        hz: 1000,
        skew_ppm: 37,
    };
    const PRINTER: TsClock = TsClock {
        offset: 77,
        hz: 100,
        skew_ppm: -60,
    };
    const T: u64 = 1_767_226_200_000;

    #[test]
    fn a_strong_forgery_is_at_most_two_to_the_minus_sixty() {
        let tsecrs = WINDOW_QUANTA + 1;
        // The SYN-ACK, or the SYN-ACK and a banner: two exact acks at most.
        assert!(forgery_odds_log2(tsecrs, 2) <= -60.0);
        assert!(forgery_odds_log2(tsecrs, 1) <= -61.0);
        // Quanta divide every rotation (whole seconds): one key per quantum.
        assert_eq!(1000 % QUANTUM_MS, 0);
        // Distinct TSvals for every quantum of the window at the slowest
        // clock we prove with.
        let slow = TsClock {
            offset: 0,
            hz: MIN_HZ,
            skew_ppm: 0,
        };
        let vals: std::collections::HashSet<u32> = (0..=WINDOW_QUANTA)
            .map(|k| slow.tsval(9, T - k * QUANTUM_MS).unwrap())
            .collect();
        assert_eq!(vals.len() as u64, WINDOW_QUANTA + 1);
    }

    #[test]
    fn nmap_sees_the_personas_rate_from_one_address() {
        // SEQ probes 100 ms apart from one scanner: one pair, one offset;
        // the skew (tens of ppm) moves a step by one tick at most.
        for (clock, per_100ms) in [(LINUX, 100), (PRINTER, 10)] {
            let ts: Vec<u32> = (0..6)
                .map(|i| clock.tsval(42 << 32, T + i * 100).unwrap())
                .collect();
            assert!(
                ts.windows(2)
                    .all(|w| w[1].wrapping_sub(w[0]).abs_diff(per_100ms) <= 1)
            );
        }
        // Another prober sees another offset.
        assert_ne!(LINUX.tsval(1 << 32, T), LINUX.tsval(2 << 32, T));
        assert_eq!(
            TsClock {
                offset: 1,
                hz: 0,
                skew_ppm: 0
            }
            .tsval(1, T),
            None
        );
    }

    #[test]
    fn an_echo_proves_receipt_within_the_window_only() {
        let pair = 0xdead_beef_0000_0001;
        let sent = LINUX.tsval(pair, T).unwrap();
        let quantum = T - T % QUANTUM_MS;
        for later in [0, 49, 120, 349] {
            assert_eq!(
                LINUX.sent_at(sent, pair, T + later),
                Some(quantum),
                "{later} ms"
            );
        }
        assert_eq!(LINUX.sent_at(sent, pair, T + 400), None, "too old");
        assert_eq!(LINUX.sent_at(sent, pair ^ 1 << 40, T), None, "another pair");
        assert_eq!(LINUX.sent_at(sent.wrapping_add(1), pair, T), None);
        assert_eq!(
            TsClock {
                offset: 0,
                hz: 2,
                skew_ppm: 0
            }
            .sent_at(0, pair, T),
            None
        );
        // Older echoes are told apart from wrong ones.
        for (clock, ms) in [(LINUX, 90_000u64), (PRINTER, 61_250)] {
            let old = clock.tsval(pair, T).unwrap();
            let later = T + ms;
            let age = clock.echo_age_ms(old, pair, later, 120_000).unwrap();
            assert_eq!(age, (later - later % QUANTUM_MS) - (T - T % QUANTUM_MS));
            assert_eq!(
                clock.echo_age_ms(old ^ 0x8000_0000, pair, later, 120_000),
                None
            );
            assert_eq!(
                clock.echo_age_ms(old, pair, later, 30_000),
                None,
                "past max"
            );
        }
    }

    proptest::proptest! {
        /// A random echo is a proof only when it is one of the window's values.
        #[test]
        fn random_echoes_almost_never_prove(tsecr in proptest::num::u32::ANY, pair in proptest::num::u64::ANY) {
            let valid: Vec<u32> = (0..=WINDOW_QUANTA)
                .map(|k| LINUX.tsval(pair, T - k * QUANTUM_MS).unwrap())
                .collect();
            proptest::prop_assert_eq!(LINUX.sent_at(tsecr, pair, T).is_some(), valid.contains(&tsecr));
        }

        /// Whatever the time and pair, the TSval sent now proves receipt now.
        #[test]
        fn what_we_send_we_accept(now in 1_000_000u64..u64::MAX / 2000, pair in proptest::num::u64::ANY) {
            let sent = LINUX.tsval(pair, now).unwrap();
            proptest::prop_assert_eq!(LINUX.sent_at(sent, pair, now), Some(now - now % QUANTUM_MS));
        }
    }
}
