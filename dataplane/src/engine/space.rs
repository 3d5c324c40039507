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

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// One address's slot of the [`LiveMap`]: when it last sent, and its claim.
#[derive(Default)]
#[repr(C, align(16))]
struct Slot {
    /// Last-seen second (0: never).
    seen: AtomicU32,
    /// When the slot's host was last reported alive (seconds; 0: never).
    reported: AtomicU32,
    /// The claim word (see [`ClaimWord`]); 0: none.
    claim: AtomicU64,
}

/// What a [`LiveMap::touch`] did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// A claim on the address was given back to it (a yield).
    pub yielded: bool,
    /// The host is due a liveness report (first seen, or
    /// [`LIVE_REPORT_S`] since the last).
    pub report: bool,
}

/// A live host is reported again after this long (seconds), so control's
/// record of it stays fresh enough to restore after a restart.
pub const LIVE_REPORT_S: u32 = 300;

/// A claim packed in one word, so no reader ever sees half of one:
/// 31 check bits of the address's hash (independent of the slot index,
/// so an address that merely shares the slot never reads another's
/// claim), the claimed flag, and the deciseconds of the first unanswered
/// request of the current run (wrapping; 13.6 years).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct ClaimWord {
    check: u32,
    claimed: bool,
    first_ds: u32,
}

impl ClaimWord {
    fn pack(self) -> u64 {
        (u64::from(self.check & 0x7fff_ffff) << 33)
            | (u64::from(self.claimed) << 32)
            | u64::from(self.first_ds)
    }

    fn unpack(w: u64) -> ClaimWord {
        ClaimWord {
            check: (w >> 33) as u32,
            claimed: w & (1 << 32) != 0,
            first_ds: w as u32,
        }
    }
}

/// What a request for an address did to its claim.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Unanswered, but not for long enough yet.
    Pending,
    /// This request made the claim: the address is a decoy from now on.
    New,
    /// Claimed already.
    Held,
}

/// A run of unanswered requests ends when its first is this much older
/// than `claim_after` (deciseconds): a requester that got its answer
/// (which a one-arm appliance may not see) asks again only when its cache
/// entry has gone, tens of seconds later, and must not look unanswered.
const CLAIM_RUN_SLACK_DS: u32 = 100;

/// Requests a requester spaces `claim_after` apart may be seen up to this
/// much closer (deciseconds): a worker reads its clock once a burst, so a
/// request's time can be late by a burst's length, and deciseconds round.
const CLAIM_GRAIN_DS: u32 = 2;

/// Four slots on one cache line: a claim lives in its address's slot or
/// the other of its pair, so both are one line.
#[derive(Default)]
#[repr(C, align(64))]
struct Line([Slot; 4]);

/// Learned liveness and claims, shared by every worker (see the module doc).
pub struct LiveMap {
    lines: Box<[Line]>,
    mask: usize,
    hasher: FixedState,
}

impl LiveMap {
    /// A map of at least `slots` slots (rounded up to a power of two, and
    /// to at least one line of four).
    pub fn new(slots: usize, seed: u64) -> Self {
        let n = slots.max(4).next_power_of_two();
        LiveMap {
            lines: (0..n / 4).map(|_| Line::default()).collect(),
            mask: n - 1,
            hasher: FixedState::with_seed(seed),
        }
    }

    #[inline]
    fn at(&self, i: usize) -> Option<&Slot> {
        let i = i & self.mask;
        self.lines.get(i >> 2).and_then(|l| l.0.get(i & 3))
    }

    /// The slot of `addr` and its check bits.
    #[inline]
    fn slot(&self, addr: &[u8; 16]) -> Option<(&Slot, u32)> {
        let h = self.hasher.hash_one(addr);
        let check = (h >> 33) as u32;
        self.at(h as usize).map(|s| (s, check))
    }

    /// The slot of `addr`'s claim: its primary slot or the other of the
    /// pair (same cache line), whichever holds its check bits.
    #[inline]
    fn claim_slot(&self, addr: &[u8; 16]) -> Option<(&Slot, u64, u32)> {
        let h = self.hasher.hash_one(addr);
        let check = (h >> 33) as u32 & 0x7fff_ffff;
        let i = h as usize;
        [i, i ^ 1]
            .into_iter()
            .filter_map(|j| self.at(j))
            .find_map(|s| {
                let w = s.claim.load(Ordering::Relaxed);
                (w != 0 && ClaimWord::unpack(w).check == check).then_some((s, w, check))
            })
    }

    /// Records that `addr` sent at `now_s` (seconds; 0 is reserved for
    /// "never", so callers pass at least 1). Writes only when the second
    /// changes; then a claim on the address is given up (its owner has
    /// shown itself), and a liveness report falls due now and then.
    #[inline]
    pub fn touch(&self, addr: &[u8; 16], now_s: u32) -> Touched {
        let Some((slot, _)) = self.slot(addr) else {
            return Touched::default();
        };
        if slot.seen.load(Ordering::Relaxed) == now_s {
            return Touched::default();
        }
        slot.seen.store(now_s, Ordering::Relaxed);
        let last = slot.reported.load(Ordering::Relaxed);
        // One worker wins the report; the others see it taken.
        let report = (last == 0 || now_s.wrapping_sub(last) >= LIVE_REPORT_S)
            && slot
                .reported
                .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        Touched {
            yielded: self.give_back(addr),
            report,
        }
    }

    /// Restores `addr` as seen at `seen_s` (a later time already there
    /// stays), as control pushes it after a restart; gives a claim back.
    pub fn remember(&self, addr: &[u8; 16], seen_s: u32) -> bool {
        let Some((slot, _)) = self.slot(addr) else {
            return false;
        };
        slot.seen.fetch_max(seen_s, Ordering::Relaxed);
        slot.reported.fetch_max(seen_s, Ordering::Relaxed);
        self.give_back(addr)
    }

    /// Clears `addr`'s own claim, if it has one; true when it was held.
    fn give_back(&self, addr: &[u8; 16]) -> bool {
        let Some((slot, word, _)) = self.claim_slot(addr) else {
            return false;
        };
        // Only this address's own claim; a lost race with a request
        // elsewhere at worst forgets a claim, never makes one.
        let _ = slot
            .claim
            .compare_exchange(word, 0, Ordering::Relaxed, Ordering::Relaxed);
        ClaimWord::unpack(word).claimed
    }

    /// Prefetches `addr`'s slot (a hint, made a burst ahead of the lookup).
    #[inline]
    pub fn prefetch(&self, addr: &[u8; 16]) {
        if let Some((slot, _)) = self.slot(addr) {
            baitwall_mem::prefetch(slot);
        }
    }

    /// When `addr` (or an address sharing its slot) last sent; 0 = never.
    #[inline]
    pub fn last_seen(&self, addr: &[u8; 16]) -> u32 {
        self.slot(addr)
            .map_or(0, |(s, _)| s.seen.load(Ordering::Relaxed))
    }

    /// True when `addr` itself is claimed (an address sharing its slots
    /// never is: the check bits differ but with odds of 2^-31).
    #[inline]
    pub fn claimed(&self, addr: &[u8; 16]) -> bool {
        self.claim_slot(addr)
            .is_some_and(|(_, w, _)| ClaimWord::unpack(w).claimed)
    }

    /// A request for `addr` went unanswered so far, at `now_ds`
    /// (deciseconds, wrapping): starts or continues its run, and claims it
    /// once the run spans `after_ds`. The caller has checked that nothing
    /// else keeps the address from being dark.
    pub fn ask(&self, addr: &[u8; 16], now_ds: u32, after_ds: u32) -> Claim {
        if let Some((slot, word, _)) = self.claim_slot(addr) {
            let mut c = ClaimWord::unpack(word);
            if c.claimed {
                return Claim::Held;
            }
            let waited = now_ds.wrapping_sub(c.first_ds);
            if waited.saturating_add(CLAIM_GRAIN_DS) < after_ds {
                return Claim::Pending;
            }
            if waited <= after_ds.saturating_add(CLAIM_RUN_SLACK_DS) {
                c.claimed = true;
                // Claimed by this request unless another worker changed
                // the word meanwhile (it then claimed, or started anew).
                return match slot.claim.compare_exchange(
                    word,
                    c.pack(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => Claim::New,
                    Err(_) => Claim::Pending,
                };
            }
            // The run ran out: a new one starts in the same place.
            return Self::start_run(slot, c.check, now_ds, after_ds);
        }
        // A new run: in an empty slot of the pair, else over a run that
        // has not claimed, else over the primary slot's claim (forgotten:
        // that address is claimed again when next asked for).
        let h = self.hasher.hash_one(addr);
        let check = (h >> 33) as u32 & 0x7fff_ffff;
        let i = h as usize;
        let pair = [self.at(i), self.at(i ^ 1)];
        let word = |s: &Slot| s.claim.load(Ordering::Relaxed);
        let slot = pair
            .into_iter()
            .flatten()
            .find(|s| word(s) == 0)
            .or_else(|| {
                pair.into_iter()
                    .flatten()
                    .find(|s| !ClaimWord::unpack(word(s)).claimed)
            })
            .or(pair[0]);
        match slot {
            Some(slot) => Self::start_run(slot, check, now_ds, after_ds),
            None => Claim::Pending,
        }
    }

    fn start_run(slot: &Slot, check: u32, now_ds: u32, after_ds: u32) -> Claim {
        let fresh = ClaimWord {
            check,
            claimed: after_ds == 0,
            first_ds: now_ds,
        };
        slot.claim.store(fresh.pack(), Ordering::Relaxed);
        if fresh.claimed {
            Claim::New
        } else {
            Claim::Pending
        }
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
    /// A request for an address must go unanswered this long before the
    /// address is claimed, in deciseconds (LaBrea's default: 3 s).
    pub claim_after_ds: u32,
}

impl Default for SpaceTiming {
    fn default() -> Self {
        SpaceTiming {
            learning_s: 60,
            hold_off_s: 300,
            live_idle_s: 3600,
            claim_after_ds: 30,
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
    /// Prefixes routed to the appliance as a whole (no host can live
    /// there): their addresses are decoys without a claim.
    pub dark_routes: PrefixSet,
    /// Learned liveness and claims.
    pub live: LiveMap,
    /// Timing.
    pub timing: SpaceTiming,
    /// Which dark addresses get a decoy.
    pub occupancy: Occupancy,
}

/// The share of dark addresses that get a decoy; the others stay silent,
/// as an unused address is. Which ones is a keyed choice, fixed per
/// deployment (docs/deception.md, "Occupancy").
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Occupancy {
    /// Decoys per thousand dark addresses (1000: every one).
    pub per_mille: u16,
    /// The deployment's key for the choice.
    pub key: u64,
}

impl Occupancy {
    /// Every dark address a decoy.
    pub const FULL: Occupancy = Occupancy {
        per_mille: 1000,
        key: 0,
    };

    /// True when `addr` gets a decoy. A keyed multiply-fold, not a
    /// cryptographic hash: which addresses answer is learnt by scanning
    /// them anyway; the key only keeps deployments from sharing a pattern.
    #[inline]
    pub fn holds(&self, addr: &[u8; 16]) -> bool {
        if self.per_mille >= 1000 {
            return true;
        }
        let v = u128::from_be_bytes(*addr);
        let x = ((v >> 64) as u64 ^ self.key).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (v as u64).wrapping_add(self.key.rotate_left(32));
        let h = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (h >> 32) % 1000 < u64::from(self.per_mille)
    }
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
    /// Quiet, but no request for it has gone unanswered yet: it may be a
    /// host that never speaks first.
    Unclaimed,
    /// Dark, but left without a decoy by the occupancy share: silent.
    Vacant,
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

    /// Learns from a packet the inside sent from `src` at `now_s` (Unix
    /// seconds, at least 1).
    #[inline]
    pub fn learn(&self, src: &[u8; 16], now_s: u32) -> Touched {
        if self.is_inside(src) {
            self.live.touch(src, now_s)
        } else {
            Touched::default()
        }
    }

    /// Restores liveness learned before a restart (control's push); true
    /// when that took a claim back.
    pub fn remember(&self, addr: &[u8; 16], seen_s: u32) -> bool {
        self.is_inside(addr) && seen_s > 0 && self.live.remember(addr, seen_s)
    }

    /// A request for `addr` (ARP who-has, neighbour solicitation) that
    /// nobody has answered yet, at `now_ds` (deciseconds).
    pub fn ask(&self, addr: &[u8; 16], now_ds: u32) -> Claim {
        self.live.ask(addr, now_ds, self.timing.claim_after_ds)
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
        if !quiet_enough {
            Darkness::Live
        } else if !self.occupancy.holds(addr) {
            Darkness::Vacant
        } else if self.dark_routes.contains(addr) || self.live.claimed(addr) {
            Darkness::Dark
        } else {
            Darkness::Unclaimed
        }
    }

    /// As [`AddressSpace::darkness`], with a claim taken for granted: what
    /// the address would be once a request for it went unanswered.
    pub fn claimable(&self, addr: &[u8; 16], now_s: u32, start_s: u32) -> bool {
        matches!(
            self.darkness(addr, now_s, start_s),
            Darkness::Dark | Darkness::Unclaimed
        )
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
            // The /24 is a LAN (claims), the /64 routed here as a whole.
            dark_routes: PrefixSet::new([p("2001:db8:100::/64")]),
            live: LiveMap::new(1 << 12, 1),
            timing: SpaceTiming {
                learning_s: 10,
                hold_off_s: 30,
                live_idle_s: 60,
                claim_after_ds: 30,
            },
            occupancy: Occupancy::FULL,
        }
    }

    #[test]
    fn occupancy_leaves_its_share_of_dark_addresses_vacant_by_key() {
        let mut s = space();
        s.occupancy = Occupancy {
            per_mille: 600,
            key: 7,
        };
        let addrs: Vec<[u8; 16]> = (0..10_000u32)
            .map(|i| {
                std::net::Ipv6Addr::from(
                    0x2001_0db8_0100_0000_0000_0000_0000_0000u128 | u128::from(i),
                )
                .octets()
            })
            .collect();
        let held: Vec<bool> = addrs.iter().map(|a| s.occupancy.holds(a)).collect();
        let n = held.iter().filter(|h| **h).count();
        assert!((5_800..=6_200).contains(&n), "{n} of 10000");
        // Vacant addresses are neither dark nor claimable.
        let (vacant, occupied) = (
            addrs[held.iter().position(|h| !h).unwrap()],
            addrs[held.iter().position(|h| *h).unwrap()],
        );
        assert_eq!(s.darkness(&vacant, 1000, 1), Darkness::Vacant);
        assert!(!s.claimable(&vacant, 1000, 1));
        assert_eq!(s.darkness(&occupied, 1000, 1), Darkness::Dark);
        // Another key, another set; the full share holds everything.
        let other = Occupancy {
            per_mille: 600,
            key: 8,
        };
        let same = addrs
            .iter()
            .zip(&held)
            .filter(|(a, h)| other.holds(a) == **h)
            .count();
        assert!(same < 6_000, "{same} agree");
        assert!(addrs.iter().all(|a| Occupancy::FULL.holds(a)));
        // A live address stays live whatever its draw.
        s.remember(&vacant, 995);
        assert_eq!(s.darkness(&vacant, 1000, 1), Darkness::Live);
    }

    /// Claims `addr` with two requests `claim_after` apart, at `at_s`.
    fn claim(s: &AddressSpace, addr: &[u8; 16], at_s: u32) {
        assert_eq!(s.ask(addr, at_s * 10), Claim::Pending);
        assert_eq!(s.ask(addr, at_s * 10 + 30), Claim::New);
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
        // Quiet long enough, but nobody asked for it unanswered yet.
        assert_eq!(s.darkness(&a("198.51.100.20"), 31, start), Unclaimed);
        claim(&s, &a("198.51.100.20"), 31);
        assert_eq!(s.darkness(&a("198.51.100.20"), 34, start), Dark);
        // A routed dark prefix needs no claim.
        assert_eq!(s.darkness(&a("2001:db8:100::20"), 31, start), Dark);
    }

    #[test]
    fn a_claim_needs_a_run_of_requests_spanning_claim_after() {
        let s = space();
        let t = a("198.51.100.30");
        // 0.0 s, 1.0 s, 2.0 s: a Linux router's three probes span 2 s.
        assert_eq!(s.ask(&t, 1000), Claim::Pending);
        assert_eq!(s.ask(&t, 1010), Claim::Pending);
        assert_eq!(s.ask(&t, 1020), Claim::Pending);
        assert_eq!(s.ask(&t, 1027), Claim::Pending, "2.7 s");
        assert!(!s.live.claimed(&t));
        // The next resolution, a second later: 3 s since the first.
        assert_eq!(s.ask(&t, 1030), Claim::New);
        assert_eq!(s.ask(&t, 1031), Claim::Held);
        assert!(s.live.claimed(&t));
        // A request long after an earlier one (the requester got its
        // answer meanwhile, unseen) starts a new run: no claim.
        let u = a("198.51.100.31");
        assert_eq!(s.ask(&u, 2000), Claim::Pending);
        assert_eq!(s.ask(&u, 2600), Claim::Pending, "60 s later: a new run");
        assert!(!s.live.claimed(&u));
        assert_eq!(s.ask(&u, 2630), Claim::New);
        // claim_after 0: the first request claims.
        let mut quick = space();
        quick.timing.claim_after_ds = 0;
        assert_eq!(quick.ask(&u, 5), Claim::New);
    }

    #[test]
    fn an_owner_that_shows_itself_takes_its_address_back() {
        let s = space();
        let t = a("198.51.100.40");
        claim(&s, &t, 100);
        assert_eq!(s.darkness(&t, 104, 1), Darkness::Dark);
        assert!(s.learn(&t, 105).yielded, "a yield");
        assert!(!s.live.claimed(&t));
        assert_eq!(s.darkness(&t, 106, 1), Darkness::Live);
        // Quiet again past live_idle: not a decoy until claimed anew.
        assert_eq!(s.darkness(&t, 200, 1), Darkness::Unclaimed);
        assert!(!s.learn(&t, 201).yielded, "nothing to yield");
    }

    #[test]
    fn an_address_sharing_a_slot_never_reads_anothers_claim() {
        // Four slots: every address shares its pair with many others.
        let mut s = space();
        s.live = LiveMap::new(4, 3);
        let t = a("198.51.100.50");
        claim(&s, &t, 100);
        // Runs that have not claimed never push a claim out.
        for i in (2..250u8).filter(|i| i % 2 == 1) {
            s.ask(&a(&format!("198.51.100.{i}")), 1040);
        }
        assert!(s.live.claimed(&t), "pending runs left the claim alone");
        // Claims of their own: at most four are held, an address never
        // asked for is never claimed, and a claim pushed out is forgotten
        // (no decoy), never handed to another address.
        let asked: Vec<[u8; 16]> = (2..250u8)
            .filter(|i| i % 2 == 0)
            .map(|i| a(&format!("198.51.100.{i}")))
            .collect();
        for addr in &asked {
            claim(&s, addr, 200);
        }
        let held = asked.iter().filter(|x| s.live.claimed(x)).count();
        assert!((1..=4).contains(&held), "{held} claims held");
        for i in (2..250u8).filter(|i| i % 2 == 1) {
            assert!(!s.live.claimed(&a(&format!("198.51.100.{i}"))), ".{i}");
        }
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
            Darkness::Unclaimed,
            "idle for live_idle: dark once claimed again"
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
                Darkness::Unclaimed => {}
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
