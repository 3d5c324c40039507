//! The address-space model: which destinations are dark, and so decoyable.
//!
//! An address is dark when it is inside a protected prefix, is not
//! excluded, is not a configured live host, the start-up learning period is
//! over, and it has been silent for the hold-off (a host that was seen
//! sending stays live until it has been idle for `live_idle`). LaBrea's
//! lesson: never claim a host that is merely quiet.
//!
//! Liveness is learned passively from traffic: an inside address that sends
//! is live. Every worker must see every other worker's learning (a host's
//! flows are spread over the workers), so the learned state is one
//! [`LiveMap`] shared by all: a fixed array of relaxed atomic "last seen"
//! seconds indexed by a hash of the address, written only when the second
//! changes. It takes no lock and allocates nothing after start. Two
//! addresses that share a slot share a last-seen time, so a collision can
//! only make a dark address look live, never a live one dark: the error is
//! always on the side of not answering.

use std::sync::atomic::{AtomicU32, Ordering};

use foldhash::fast::FixedState;
use std::hash::BuildHasher;

/// An IPv4 or IPv6 prefix on the 16-byte address space (IPv4 as ::ffff:a.b.c.d/96+n).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    net: u128,
    mask: u128,
    len: u8,
}

impl Prefix {
    /// The prefix of an `ipnet` network (host bits are cleared).
    pub fn from_net(net: ipnet::IpNet) -> Prefix {
        let (addr, len) = match net {
            ipnet::IpNet::V4(n) => (n.network().to_ipv6_mapped(), 96 + n.prefix_len()),
            ipnet::IpNet::V6(n) => (n.network(), n.prefix_len()),
        };
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        Prefix {
            net: u128::from(addr) & mask,
            mask,
            len,
        }
    }

    /// The prefix holding exactly `addr`.
    pub fn host(addr: [u8; 16]) -> Prefix {
        Prefix {
            net: u128::from_be_bytes(addr),
            mask: u128::MAX,
            len: 128,
        }
    }

    /// A prefix from its network (host bits are cleared) and length (capped at 128).
    pub fn from_parts(net: u128, len: u8) -> Prefix {
        let len = len.min(128);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        Prefix {
            net: net & mask,
            mask,
            len,
        }
    }

    /// The network address (on the 128-bit space).
    pub fn network(&self) -> u128 {
        self.net
    }

    /// True when `addr` lies inside.
    #[inline]
    pub fn contains(&self, addr: &[u8; 16]) -> bool {
        u128::from_be_bytes(*addr) & self.mask == self.net
    }

    /// Prefix length on the 128-bit space.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for the zero-length prefix (everything).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A short list of prefixes, matched linearly (protected space and exclusions
/// are a handful of prefixes; the blocklist's LPM structure is elsewhere).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSet {
    prefixes: Vec<Prefix>,
}

impl PrefixSet {
    /// A set of prefixes.
    pub fn new(prefixes: impl IntoIterator<Item = Prefix>) -> Self {
        PrefixSet {
            prefixes: prefixes.into_iter().collect(),
        }
    }

    /// True when some prefix holds `addr`.
    #[inline]
    pub fn contains(&self, addr: &[u8; 16]) -> bool {
        self.prefixes.iter().any(|p| p.contains(addr))
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
    /// The prefixes, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Prefix> {
        self.prefixes.iter()
    }
}

/// Learned liveness shared by every worker (see the module doc).
pub struct LiveMap {
    slots: Box<[AtomicU32]>,
    mask: usize,
    hasher: FixedState,
}

impl LiveMap {
    /// A map of at least `slots` slots (rounded up to a power of two).
    pub fn new(slots: usize, seed: u64) -> Self {
        let n = slots.max(1).next_power_of_two();
        LiveMap {
            slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
            mask: n - 1,
            hasher: FixedState::with_seed(seed),
        }
    }

    #[inline]
    fn slot(&self, addr: &[u8; 16]) -> Option<&AtomicU32> {
        let i = self.hasher.hash_one(addr) as usize & self.mask;
        self.slots.get(i)
    }

    /// Records that `addr` sent at `now_s` (seconds; 0 is reserved for
    /// "never", so callers pass at least 1). Writes only when the second changes.
    #[inline]
    pub fn touch(&self, addr: &[u8; 16], now_s: u32) {
        if let Some(slot) = self.slot(addr)
            && slot.load(Ordering::Relaxed) != now_s
        {
            slot.store(now_s, Ordering::Relaxed);
        }
    }

    /// Prefetches `addr`'s slot (a hint, made a burst ahead of the lookup).
    #[inline]
    pub fn prefetch(&self, addr: &[u8; 16]) {
        if let Some(slot) = self.slot(addr) {
            baitwall_mem::prefetch(slot);
        }
    }

    /// When `addr` (or an address sharing its slot) last sent; 0 = never.
    #[inline]
    pub fn last_seen(&self, addr: &[u8; 16]) -> u32 {
        self.slot(addr).map_or(0, |s| s.load(Ordering::Relaxed))
    }
}

/// Timing of the model, in seconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SpaceTiming {
    /// After start, answer nothing for this long (learn only).
    pub learning_s: u32,
    /// An address never seen is dark once this long has passed since start.
    pub hold_off_s: u32,
    /// A host seen sending stays live until idle this long (>= hold-off).
    pub live_idle_s: u32,
}

impl Default for SpaceTiming {
    fn default() -> Self {
        SpaceTiming {
            learning_s: 60,
            hold_off_s: 300,
            live_idle_s: 3600,
        }
    }
}

/// The protected space, what is excluded or known live, and learned liveness.
pub struct AddressSpace {
    /// Prefixes the appliance defends.
    pub protected: PrefixSet,
    /// Never decoyed (gateways, broadcast, reserved addresses).
    pub excluded: PrefixSet,
    /// Hosts configured as live.
    pub static_live: PrefixSet,
    /// Learned liveness.
    pub live: LiveMap,
    /// Timing.
    pub timing: SpaceTiming,
}

/// Why a protected address is not dark (for tests and the `decoys` report).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Darkness {
    /// Dark: decoyable.
    Dark,
    /// Outside every protected prefix.
    Unprotected,
    /// Excluded by configuration.
    Excluded,
    /// Configured live.
    StaticLive,
    /// Still in the start-up learning period.
    Learning,
    /// Seen sending within the hold-off / live-idle time.
    Live,
}

impl AddressSpace {
    /// True when `addr` is inside the protected space (and not excluded).
    #[inline]
    pub fn is_inside(&self, addr: &[u8; 16]) -> bool {
        self.protected.contains(addr) && !self.excluded.contains(addr)
    }

    /// Prefetches the liveness slots a frame from `src` to `dst` will touch:
    /// the destination's when it is protected (is it dark?), the source's
    /// when it is inside (it is learned live).
    #[inline]
    pub fn prefetch(&self, src: &[u8; 16], dst: &[u8; 16]) {
        if self.protected.contains(dst) {
            self.live.prefetch(dst);
        }
        if self.protected.contains(src) {
            self.live.prefetch(src);
        }
    }

    /// Learns from a packet sent by `src` at `now_s` (seconds since start + 1).
    #[inline]
    pub fn learn(&self, src: &[u8; 16], now_s: u32) {
        if self.is_inside(src) {
            self.live.touch(src, now_s);
        }
    }

    /// Classifies a destination at `now_s`, counting time from `start_s`.
    #[inline]
    pub fn darkness(&self, addr: &[u8; 16], now_s: u32, start_s: u32) -> Darkness {
        if !self.protected.contains(addr) {
            return Darkness::Unprotected;
        }
        if self.excluded.contains(addr) {
            return Darkness::Excluded;
        }
        if self.static_live.contains(addr) {
            return Darkness::StaticLive;
        }
        let since_start = now_s.saturating_sub(start_s);
        if since_start < self.timing.learning_s {
            return Darkness::Learning;
        }
        let last = self.live.last_seen(addr);
        let quiet_enough = if last == 0 {
            since_start >= self.timing.hold_off_s
        } else {
            now_s.saturating_sub(last) >= self.timing.live_idle_s.max(self.timing.hold_off_s)
        };
        if quiet_enough {
            Darkness::Dark
        } else {
            Darkness::Live
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::net::IpAddr;

    fn a(s: &str) -> [u8; 16] {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }
    fn p(s: &str) -> Prefix {
        Prefix::from_net(s.parse().unwrap())
    }

    fn space() -> AddressSpace {
        AddressSpace {
            protected: PrefixSet::new([p("198.51.100.0/24"), p("2001:db8:100::/64")]),
            excluded: PrefixSet::new([p("198.51.100.1/32"), p("198.51.100.255/32")]),
            static_live: PrefixSet::new([Prefix::host(a("198.51.100.10"))]),
            live: LiveMap::new(1 << 12, 1),
            timing: SpaceTiming {
                learning_s: 10,
                hold_off_s: 30,
                live_idle_s: 60,
            },
        }
    }

    #[test]
    fn prefixes_match_v4_and_v6_without_mixing_them() {
        let v4 = p("198.51.100.0/24");
        assert!(v4.contains(&a("198.51.100.7")));
        assert!(!v4.contains(&a("198.51.101.7")));
        assert!(
            !v4.contains(&a("::c633:6407")),
            "an IPv4-compatible v6 address is not IPv4"
        );
        let v6 = p("2001:db8:100::/64");
        assert!(v6.contains(&a("2001:db8:100::42")));
        assert!(!v6.contains(&a("2001:db8:101::42")));
        assert_eq!(p("198.51.100.77/24"), v4, "host bits are cleared");
        assert!(p("0.0.0.0/0").contains(&a("8.8.8.8")));
        assert!(!p("0.0.0.0/0").contains(&a("2001:db8::1")));
        assert!(p("::/0").is_empty());
    }

    #[test]
    fn darkness_follows_the_rules_in_order() {
        let s = space();
        let start = 1;
        use Darkness::*;
        assert_eq!(s.darkness(&a("203.0.113.5"), 100, start), Unprotected);
        assert_eq!(s.darkness(&a("198.51.100.1"), 100, start), Excluded);
        assert_eq!(s.darkness(&a("198.51.100.10"), 100, start), StaticLive);
        assert_eq!(s.darkness(&a("198.51.100.20"), 5, start), Learning);
        // Past learning but inside the hold-off since start: not yet dark.
        assert_eq!(s.darkness(&a("198.51.100.20"), 20, start), Live);
        assert_eq!(s.darkness(&a("198.51.100.20"), 31, start), Dark);
        assert_eq!(s.darkness(&a("2001:db8:100::20"), 31, start), Dark);
    }

    #[test]
    fn a_host_that_sends_stays_live_until_idle() {
        let s = space();
        let host = a("198.51.100.20");
        s.learn(&host, 40);
        assert_eq!(s.darkness(&host, 41, 1), Darkness::Live);
        assert_eq!(s.darkness(&host, 99, 1), Darkness::Live);
        assert_eq!(
            s.darkness(&host, 100, 1),
            Darkness::Dark,
            "idle for live_idle"
        );
        // Outside addresses are never learned.
        let outside = a("203.0.113.9");
        s.learn(&outside, 40);
        assert_eq!(s.live.last_seen(&outside), 0);
    }

    #[test]
    fn collisions_only_make_dark_addresses_look_live() {
        // Two slots: half of all addresses share a slot with the live host.
        let mut s = space();
        s.live = LiveMap::new(2, 9);
        let live_host = a("198.51.100.20");
        s.learn(&live_host, 50);
        let mut shadowed = 0;
        for i in 2..250u8 {
            let other = a(&format!("198.51.100.{i}"));
            if other == live_host || i == 10 {
                continue;
            }
            match s.darkness(&other, 60, 1) {
                Darkness::Live => shadowed += 1,
                Darkness::Dark => {}
                d => panic!("{i}: {d:?}"),
            }
        }
        assert!(shadowed > 0, "some dark addresses look live");
        assert_eq!(
            s.darkness(&live_host, 60, 1),
            Darkness::Live,
            "the live host never looks dark"
        );
    }
}
