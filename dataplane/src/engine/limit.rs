//! Reply rate limits and sweep detection: small fixed tables a worker owns.
//!
//! Decoy replies are limited per decoy and in total (token buckets), so the
//! appliance cannot be used as a reflector or an amplifier: a flood of
//! spoofed SYNs to one decoy gets at most that decoy's rate of SYN-ACKs.
//! Per-decoy buckets live in a direct-mapped table; decoys that collide
//! share a bucket, which only ever limits more, never less.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

/// A token bucket in milli-tokens, refilled by elapsed milliseconds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
struct Bucket {
    milli_tokens: u64,
    last_ms: u64,
}

impl Bucket {
    #[inline]
    fn take(&mut self, now_ms: u64, rate_per_s: u64, burst: u64) -> bool {
        let cap = burst.max(1) * 1000;
        let elapsed = now_ms.saturating_sub(self.last_ms);
        // One token a second is one milli-token a millisecond.
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(rate_per_s))
            .min(cap);
        self.last_ms = now_ms.max(self.last_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Rates of the limiter.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Replies per second from one decoy.
    pub per_decoy: u64,
    /// Burst allowed per decoy.
    pub per_decoy_burst: u64,
    /// Replies per second to one prober (/24 or /64).
    pub per_prober: u64,
    /// Burst allowed per prober.
    pub per_prober_burst: u64,
    /// Replies per second from this worker in total.
    pub total: u64,
    /// Burst allowed in total.
    pub total_burst: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            per_decoy: 100,
            per_decoy_burst: 200,
            per_prober: 1000,
            per_prober_burst: 2000,
            total: 200_000,
            total_burst: 20_000,
        }
    }
}

impl RateConfig {
    /// One worker's share of the appliance's budgets when `workers` share
    /// them: each rate and burst divided (rounded down, at least 1), so the
    /// sum over workers never exceeds the configured figure. A decoy's or a
    /// prober's probes reach every worker (RSS spreads their flows), and
    /// each worker holds it to its share.
    pub fn split(self, workers: usize) -> RateConfig {
        let n = workers.max(1) as u64;
        let share = |v: u64| (v / n).max(1);
        RateConfig {
            per_decoy: share(self.per_decoy),
            per_decoy_burst: share(self.per_decoy_burst),
            per_prober: share(self.per_prober),
            per_prober_burst: share(self.per_prober_burst),
            total: share(self.total),
            total_burst: share(self.total_burst),
        }
    }
}

/// One worker's reply limiter.
pub struct RateLimiter {
    config: RateConfig,
    total: Bucket,
    per_decoy: Box<[Bucket]>,
    per_prober: Box<[Bucket]>,
    mask: usize,
    hasher: FixedState,
}

impl RateLimiter {
    /// A limiter with `slots` per-decoy buckets, all full.
    pub fn new(config: RateConfig, slots: usize, seed: u64) -> Self {
        let n = slots.max(1).next_power_of_two();
        let full = |burst: u64| Bucket {
            milli_tokens: burst.max(1) * 1000,
            last_ms: 0,
        };
        RateLimiter {
            config,
            total: full(config.total_burst),
            per_decoy: vec![full(config.per_decoy_burst); n].into_boxed_slice(),
            per_prober: vec![full(config.per_prober_burst); n].into_boxed_slice(),
            mask: n - 1,
            hasher: FixedState::with_seed(seed),
        }
    }

    /// Takes a token for a reply from `decoy` to `prober`; false means: do
    /// not send. The prober is counted by its /24 (IPv4) or /64 (IPv6), so a
    /// spoofed victim gets at most its own rate however many decoys are hit.
    #[inline]
    pub fn allow(&mut self, decoy: &[u8; 16], prober: &[u8; 16], now_ms: u64) -> bool {
        let c = self.config;
        let i = self.hasher.hash_one(decoy) as usize & self.mask;
        let v4 = baitwall_channel::is_v4_mapped(prober);
        let p = u128::from_be_bytes(*prober) & if v4 { !0xff } else { !((1u128 << 64) - 1) };
        let j = self.hasher.hash_one(p ^ 0x7072_6f62) as usize & self.mask;
        let (Some(decoy_bucket), Some(prober_bucket)) =
            (self.per_decoy.get_mut(i), self.per_prober.get_mut(j))
        else {
            return false;
        };
        // Narrowest first: a flood aimed at one decoy or from one prober
        // must not drain the total.
        decoy_bucket.take(now_ms, c.per_decoy, c.per_decoy_burst)
            && prober_bucket.take(now_ms, c.per_prober, c.per_prober_burst)
            && self.total.take(now_ms, c.total, c.total_burst)
    }
}

/// When a source counts as sweeping.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SweepConfig {
    /// Distinct decoys (at most 64) that make a sweep, as estimated from the sketch.
    pub decoys: u32,
    /// Within this many seconds.
    pub window_s: u32,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            decoys: 16,
            window_s: 60,
        }
    }
}

#[derive(Copy, Clone, Default)]
struct SweepSlot {
    src: [u8; 16],
    window_start_s: u32,
    decoys: u64,
    reported: bool,
}

/// Per-worker sweep detection: a direct-mapped table of sources, each with a
/// 64-bit sketch of the decoys it was marked by. A colliding source takes the
/// slot over (the evidence is lossy by design: sweeps never block).
pub struct SweepTable {
    config: SweepConfig,
    /// Bits set in a sketch at which its estimate reaches `config.decoys`.
    bits_needed: u32,
    slots: Box<[SweepSlot]>,
    mask: usize,
    hasher: FixedState,
}

impl SweepTable {
    /// A table of `slots` sources.
    pub fn new(config: SweepConfig, slots: usize, seed: u64) -> Self {
        let n = slots.max(1).next_power_of_two();
        let goal = config.decoys.min(64);
        let bits_needed = (0..=64u32)
            .find(|&bits| {
                let sketch = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                linear_count(sketch) >= goal
            })
            .unwrap_or(64);
        SweepTable {
            config,
            bits_needed,
            slots: vec![SweepSlot::default(); n].into_boxed_slice(),
            mask: n - 1,
            hasher: FixedState::with_seed(seed),
        }
    }

    /// Notes a mark sent to `src` from `decoy`; returns the distinct-decoy
    /// count the first time `src` crosses the threshold in a window.
    #[inline]
    pub fn note(&mut self, src: &[u8; 16], decoy: &[u8; 16], now_s: u32) -> Option<u32> {
        let i = self.hasher.hash_one(src) as usize & self.mask;
        let bit = 1u64 << (self.hasher.hash_one(decoy) & 63);
        let c = self.config;
        let slot = self.slots.get_mut(i)?;
        if slot.src != *src || now_s.saturating_sub(slot.window_start_s) >= c.window_s {
            *slot = SweepSlot {
                src: *src,
                window_start_s: now_s,
                decoys: 0,
                reported: false,
            };
        }
        slot.decoys |= bit;
        // The estimate needs a logarithm; compare bit counts on the way.
        if slot.decoys.count_ones() >= self.bits_needed && !slot.reported {
            slot.reported = true;
            return Some(linear_count(slot.decoys));
        }
        None
    }
}

/// Distinct decoys behind a 64-bit sketch, by linear counting (Whang et
/// al., 1990): n = -m ln(empty / m). A plain popcount undercounts once
/// decoys share bits; with every bit set the estimate is capped at 256.
fn linear_count(sketch: u64) -> u32 {
    let empty = 64 - sketch.count_ones();
    if empty == 0 {
        return 256;
    }
    let n = -64.0 * (f64::from(empty) / 64.0).ln();
    n.round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u32) -> [u8; 16] {
        std::net::Ipv4Addr::from(n).to_ipv6_mapped().octets()
    }

    #[test]
    fn one_decoy_is_limited_without_starving_the_others() {
        let cfg = RateConfig {
            per_decoy: 10,
            per_decoy_burst: 5,
            per_prober: 1000,
            per_prober_burst: 1000,
            total: 1000,
            total_burst: 1000,
        };
        let mut l = RateLimiter::new(cfg, 1024, 1);
        let sent = (0..100).filter(|_| l.allow(&a(1), &a(9), 1000)).count();
        assert_eq!(sent, 5, "the burst, then nothing in the same millisecond");
        assert!(l.allow(&a(2), &a(9), 1000), "another decoy still answers");
        // 10 per second: after 500 ms, five more.
        let later = (0..100).filter(|_| l.allow(&a(1), &a(9), 1500)).count();
        assert_eq!(later, 5);
    }

    #[test]
    fn the_total_caps_all_decoys_together() {
        let cfg = RateConfig {
            per_decoy: 1000,
            per_decoy_burst: 1000,
            per_prober: 1_000_000,
            per_prober_burst: 1_000_000,
            total: 10,
            total_burst: 20,
        };
        let mut l = RateLimiter::new(cfg, 1024, 1);
        let sent = (0..1000).filter(|&i| l.allow(&a(i), &a(9), 5)).count();
        assert_eq!(sent, 20);
    }

    #[test]
    fn linear_counting_estimates_distinct_decoys() {
        assert_eq!(linear_count(0), 0);
        assert_eq!(linear_count(1), 1);
        assert_eq!(linear_count(u64::MAX), 256);
        // 17 of 64 bits set is about 20 distinct items.
        assert_eq!(linear_count((1u64 << 17) - 1), 20);
    }

    #[test]
    fn a_sweep_is_reported_once_per_window() {
        let mut s = SweepTable::new(
            SweepConfig {
                decoys: 8,
                window_s: 60,
            },
            64,
            3,
        );
        let worm = a(0xc000_0242);
        let hits: Vec<_> = (0..200).filter_map(|i| s.note(&worm, &a(i), 10)).collect();
        assert_eq!(hits.len(), 1);
        assert!(hits[0] >= 8);
        // The same decoy again and again is no sweep.
        let mut s = SweepTable::new(
            SweepConfig {
                decoys: 8,
                window_s: 60,
            },
            64,
            3,
        );
        assert!((0..200).all(|_| s.note(&worm, &a(7), 10).is_none()));
        // A new window reports again.
        let mut s = SweepTable::new(
            SweepConfig {
                decoys: 4,
                window_s: 60,
            },
            64,
            3,
        );
        let first = (0..50).filter_map(|i| s.note(&worm, &a(i), 10)).count();
        let second = (0..50).filter_map(|i| s.note(&worm, &a(i), 80)).count();
        assert_eq!((first, second), (1, 1));
    }
}
