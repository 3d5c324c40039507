//! Stateless TCP cookies: a decoy's initial sequence number proves, when it
//! comes back in an acknowledgement, that the sender received the decoy's
//! SYN-ACK. A forged source address never sees that SYN-ACK, so it can never
//! produce a valid acknowledgement: this is what makes a bite unspoofable.
//!
//! For the 4-tuple `t = (src, dst, sport, dport)` in epoch `e`:
//!
//! ```text
//! pair = SipHash-1-3(K_pair; src, dst)                 (64 bits, no ports)
//! h    = SipHash-2-4(K_e; pair, sport, dport)          (64 bits)
//! isn  = hi32(h) + ((e mod 4) << 30 | lo30(h))         (mod 2^32)
//! ```
//!
//! `lo30(h)` is the MAC. `hi32(h)` is added so that the top bits vary
//! between connections (a bare epoch field would stay constant across a
//! burst of probes, which nmap's ISN analysis would notice). The pair hash
//! is computed once per segment and serves twice: its top 32 bits are the
//! keyed per-(source, decoy) offset of the decoy's TCP timestamps
//! (`engine::tsproof`), and it stands for both addresses in the cookie's
//! MAC, whose input is then 12 bytes instead of 36: two hashes of 7 and 8
//! SipHash rounds cost what the single 14-round hash of the 4-tuple did.
//! `K_e = SipHash(master; e)`, and epochs are `now / rotation`: every
//! worker derives the same key from the same clock and secret with no
//! coordination, and the previous epoch's key is still accepted, so a
//! cookie lives between one and two rotation periods.
//!
//! An acknowledgement verifies when `ack - 1 - isn` lies in `0..=window`
//! for the current or the previous epoch's ISN: `window` is how many bytes
//! the decoy may have sent since its SYN-ACK (banners, responses), so the
//! same check serves the handshake ACK and every later segment. A blind
//! guess succeeds with probability `2 (window + 1) / 2^32`; callers that turn
//! a verified segment into a bite check the exact offset, keeping a bite 31
//! bits hard to forge on its own ([`CookieJar::verify_in`] checks one
//! epoch only: 32 bits, which the timestamp proof pins). Linux's syncookies
//! (`net/ipv4/syncookies.c`) and masscan's (`src/syn-cookie.c`) follow the
//! same idea; unlike Linux's, ours does not depend on the client's sequence
//! number, so a segment sent after data still verifies.

use siphasher::sip::{SipHasher13, SipHasher24};
use std::hash::Hasher;

/// The 4-tuple a cookie is bound to, as seen from the prober: its address
/// and port, then the decoy's. Addresses are 16 bytes (IPv4-mapped for IPv4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CookieTuple {
    /// The prober's address.
    pub src: [u8; 16],
    /// The decoy's address.
    pub dst: [u8; 16],
    /// The prober's port.
    pub src_port: u16,
    /// The decoy's port.
    pub dst_port: u16,
}

/// Which key verified a cookie.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CookieAge {
    /// The current epoch's key.
    Current,
    /// The previous epoch's key (still accepted).
    Previous,
}

/// A verified acknowledgement.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CookieMatch {
    /// Which epoch's key matched.
    pub age: CookieAge,
    /// The decoy's ISN for this 4-tuple in that epoch.
    pub isn: u32,
    /// Bytes the acknowledgement covers beyond the SYN (`ack - isn - 1`).
    pub offset: u32,
}

/// One worker's cookie state: the pair key and the two live epoch keys.
#[derive(Clone, Debug)]
pub struct CookieJar {
    master: [u8; 32],
    rotation_ms: u64,
    epoch: u64,
    pair_key: (u64, u64),
    current: (u64, u64),
    previous: (u64, u64),
}

fn key_halves(bytes: &[u8; 32], from: usize) -> (u64, u64) {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        if let Some(src) = bytes.get(at..at + 8) {
            w.copy_from_slice(src);
        }
        u64::from_le_bytes(w)
    };
    (word(from), word(from + 8))
}

impl CookieJar {
    /// A jar for the secret `master`, rotating keys every `rotation_ms`
    /// (at least 1), positioned at time `now_ms`.
    pub fn new(master: &[u8; 32], rotation_ms: u64, now_ms: u64) -> Self {
        let rotation_ms = rotation_ms.max(1);
        let epoch = now_ms / rotation_ms;
        let mut jar = CookieJar {
            master: *master,
            rotation_ms,
            epoch,
            pair_key: (0, 0),
            current: (0, 0),
            previous: (0, 0),
        };
        // A key no epoch number reaches (epochs count from 1970 in units of
        // at least a second).
        jar.pair_key = jar.epoch_key(u64::MAX);
        jar.current = jar.epoch_key(epoch);
        jar.previous = jar.epoch_key(epoch.wrapping_sub(1));
        jar
    }

    /// `K_e`: derived from the second half of the secret and the epoch (the
    /// first half keys the personas).
    fn epoch_key(&self, epoch: u64) -> (u64, u64) {
        let (a, b) = key_halves(&self.master, 16);
        let mut h = SipHasher24::new_with_keys(a, b);
        h.write_u64(epoch);
        let k_lo = h.finish();
        h.write_u8(1);
        (k_lo, h.finish())
    }

    /// Moves to the epoch of `now_ms`; cheap when the epoch has not changed.
    /// Workers call it once per burst.
    #[inline]
    pub fn advance(&mut self, now_ms: u64) {
        let epoch = now_ms / self.rotation_ms;
        if epoch == self.epoch {
            return;
        }
        self.previous = if epoch == self.epoch.wrapping_add(1) {
            self.current
        } else {
            self.epoch_key(epoch.wrapping_sub(1))
        };
        self.current = self.epoch_key(epoch);
        self.epoch = epoch;
    }

    /// The current epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The rotation period, in milliseconds.
    pub fn rotation_ms(&self) -> u64 {
        self.rotation_ms
    }

    /// The keyed hash of a (source, decoy) pair: the cookie's stand-in for
    /// both addresses, and (its top half) the timestamp offset.
    #[inline]
    pub fn pair(&self, src: &[u8; 16], dst: &[u8; 16]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.pair_key.0, self.pair_key.1);
        h.write(src);
        h.write(dst);
        h.finish()
    }

    #[inline]
    fn isn_for(pair: u64, ports: u32, epoch: u64, key: (u64, u64)) -> u32 {
        let mut h = SipHasher24::new_with_keys(key.0, key.1);
        h.write_u64(pair);
        h.write_u32(ports);
        let h = h.finish();
        let mac = (h as u32) & 0x3fff_ffff;
        ((h >> 32) as u32).wrapping_add(((epoch & 3) as u32) << 30 | mac)
    }

    /// The ISN of the decoy's SYN-ACK for `t`, in the current epoch.
    #[inline]
    pub fn isn(&self, t: &CookieTuple) -> u32 {
        self.isn_of_pair(self.pair(&t.src, &t.dst), t.ports())
    }

    /// [`CookieJar::isn`] for a pair already hashed.
    #[inline]
    pub fn isn_of_pair(&self, pair: u64, ports: u32) -> u32 {
        Self::isn_for(pair, ports, self.epoch, self.current)
    }

    /// Verifies an acknowledgement number `ack` from the prober of `t`:
    /// it must acknowledge the SYN-ACK plus at most `window` bytes.
    #[inline]
    pub fn verify(&self, t: &CookieTuple, ack: u32, window: u32) -> Option<CookieMatch> {
        self.verify_pair(self.pair(&t.src, &t.dst), t.ports(), ack, window)
    }

    /// [`CookieJar::verify`] for a pair already hashed.
    #[inline]
    pub fn verify_pair(&self, pair: u64, ports: u32, ack: u32, window: u32) -> Option<CookieMatch> {
        [CookieAge::Current, CookieAge::Previous]
            .into_iter()
            .find_map(|age| self.verify_in(pair, ports, ack, age, window))
    }

    /// Verifies `ack` against one epoch's key only.
    #[inline]
    pub fn verify_in(
        &self,
        pair: u64,
        ports: u32,
        ack: u32,
        age: CookieAge,
        window: u32,
    ) -> Option<CookieMatch> {
        let (epoch, key) = match age {
            CookieAge::Current => (self.epoch, self.current),
            CookieAge::Previous => (self.epoch.wrapping_sub(1), self.previous),
        };
        let isn = Self::isn_for(pair, ports, epoch, key);
        let offset = ack.wrapping_sub(isn).wrapping_sub(1);
        (offset <= window).then_some(CookieMatch { age, isn, offset })
    }

    /// Which live epoch the time `at_ms` falls in, if either.
    #[inline]
    pub fn age_at(&self, at_ms: u64) -> Option<CookieAge> {
        let e = at_ms / self.rotation_ms;
        if e == self.epoch {
            Some(CookieAge::Current)
        } else if e == self.epoch.wrapping_sub(1) {
            Some(CookieAge::Previous)
        } else {
            None
        }
    }
}

impl CookieTuple {
    /// Both ports in one word: the prober's high, the decoy's low.
    #[inline]
    pub fn ports(&self) -> u32 {
        u32::from(self.src_port) << 16 | u32::from(self.dst_port)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const MIN: u64 = 60_000;

    fn tuple(port: u16) -> CookieTuple {
        CookieTuple {
            src: std::net::Ipv4Addr::new(192, 0, 2, 66)
                .to_ipv6_mapped()
                .octets(),
            dst: std::net::Ipv4Addr::new(198, 51, 100, 20)
                .to_ipv6_mapped()
                .octets(),
            src_port: port,
            dst_port: 80,
        }
    }

    #[test]
    fn the_handshake_ack_verifies() {
        let jar = CookieJar::new(&SECRET, MIN, 10 * MIN);
        let t = tuple(40000);
        let isn = jar.isn(&t);
        let m = jar.verify(&t, isn.wrapping_add(1), 0).unwrap();
        assert_eq!((m.age, m.isn, m.offset), (CookieAge::Current, isn, 0));
    }

    #[test]
    fn later_segments_verify_within_the_window_only() {
        let jar = CookieJar::new(&SECRET, MIN, 10 * MIN);
        let t = tuple(40001);
        let isn = jar.isn(&t);
        assert_eq!(
            jar.verify(&t, isn.wrapping_add(1 + 300), 1500)
                .unwrap()
                .offset,
            300
        );
        assert!(jar.verify(&t, isn.wrapping_add(1 + 1501), 1500).is_none());
        assert!(
            jar.verify(&t, isn, 1500).is_none(),
            "an ack of the SYN-ACK minus one"
        );
    }

    #[test]
    fn a_cookie_is_bound_to_its_4_tuple_and_secret() {
        let jar = CookieJar::new(&SECRET, MIN, 10 * MIN);
        let isn = jar.isn(&tuple(40000));
        assert!(jar.verify(&tuple(40002), isn.wrapping_add(1), 0).is_none());
        let mut other = tuple(40000);
        other.src[15] ^= 1;
        assert!(jar.verify(&other, isn.wrapping_add(1), 0).is_none());
        let other_jar = CookieJar::new(&[8; 32], MIN, 10 * MIN);
        assert!(
            other_jar
                .verify(&tuple(40000), isn.wrapping_add(1), 0)
                .is_none()
        );
    }

    #[test]
    fn previous_epoch_is_accepted_older_is_rejected() {
        let mut jar = CookieJar::new(&SECRET, MIN, 10 * MIN);
        let t = tuple(40003);
        let isn = jar.isn(&t);
        jar.advance(11 * MIN);
        let m = jar.verify(&t, isn.wrapping_add(1), 0).unwrap();
        assert_eq!(m.age, CookieAge::Previous);
        jar.advance(12 * MIN);
        assert!(
            jar.verify(&t, isn.wrapping_add(1), 0).is_none(),
            "two epochs old"
        );
    }

    #[test]
    fn every_worker_derives_the_same_cookies() {
        let a = CookieJar::new(&SECRET, MIN, 10 * MIN + 5);
        let mut b = CookieJar::new(&SECRET, MIN, 3 * MIN);
        b.advance(10 * MIN + 59_000);
        assert_eq!(a.isn(&tuple(1)), b.isn(&tuple(1)));
        // Jumping several epochs derives both keys afresh.
        let mut c = CookieJar::new(&SECRET, MIN, 0);
        c.advance(10 * MIN);
        assert_eq!(c.isn(&tuple(1)), a.isn(&tuple(1)));
        let prev = CookieJar::new(&SECRET, MIN, 9 * MIN);
        let isn = prev.isn(&tuple(1));
        assert_eq!(
            c.verify(&tuple(1), isn.wrapping_add(1), 0).unwrap().age,
            CookieAge::Previous
        );
    }

    #[test]
    fn isns_are_spread_over_the_whole_space() {
        // Consecutive source ports (nmap's probes) give unrelated ISNs, with
        // the top bits varying: no constant epoch field shows.
        let jar = CookieJar::new(&SECRET, MIN, 10 * MIN);
        let tops: std::collections::HashSet<u32> =
            (0..64).map(|p| jar.isn(&tuple(50000 + p)) >> 30).collect();
        assert_eq!(tops.len(), 4);
    }

    proptest::proptest! {
        #[test]
        fn random_acks_almost_never_verify(port in 1u16.., ack in proptest::num::u32::ANY) {
            let jar = CookieJar::new(&SECRET, MIN, 10 * MIN);
            let t = tuple(port);
            let isn = jar.isn(&t);
            let prev_isn = CookieJar::new(&SECRET, MIN, 9 * MIN).isn(&t);
            let ours = ack.wrapping_sub(isn).wrapping_sub(1) <= 2048
                || ack.wrapping_sub(prev_isn).wrapping_sub(1) <= 2048;
            proptest::prop_assert_eq!(jar.verify(&t, ack, 2048).is_some(), ours);
        }
    }
}
