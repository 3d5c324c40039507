//! Stateless TCP cookies: a decoy's initial sequence number proves, when it
//! comes back in an acknowledgement, that the sender received the decoy's
//! SYN-ACK. A forged source address never sees that SYN-ACK, so it can never
//! produce a valid acknowledgement: this is what makes a bite unspoofable.
//!
//! The ISN of a decoy's SYN-ACK for the 4-tuple `t` in epoch `e` is
//!
//! ```text
//! h   = SipHash-2-4(K_e; t)                       (64 bits)
//! isn = hi32(h) + ((e mod 4) << 30 | lo30(h))     (mod 2^32)
//! ```
//!
//! `lo30(h)` is the MAC. `hi32(h)` is added so that the top bits vary
//! between connections (a bare epoch field would stay constant across a
//! burst of probes, which nmap's ISN analysis would notice); both halves come
//! from one SipHash, so an ISN costs one hash. `K_e = SipHash(master; e)`,
//! and epochs are `now / rotation`: every worker derives the same key from
//! the same clock and secret with no coordination, and the previous epoch's
//! key is still accepted, so a cookie lives between one and two rotation
//! periods.
//!
//! An acknowledgement verifies when `ack - 1 - isn` lies in `0..=window`
//! for the current or the previous epoch's ISN: `window` is how many bytes
//! the decoy may have sent since its SYN-ACK (banners, responses), so the
//! same check serves the handshake ACK and every later segment. A blind
//! guess succeeds with probability `2 (window + 1) / 2^32`; callers that turn
//! a verified segment into a bite pass a window of zero (or check the exact
//! offset), keeping a bite 31 bits hard to forge. Linux's syncookies
//! (`net/ipv4/syncookies.c`) and masscan's (`src/syn-cookie.c`) follow the
//! same idea; unlike Linux's, ours does not depend on the client's sequence
//! number, so a segment sent after data still verifies.

use siphasher::sip::SipHasher24;
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

/// One worker's cookie state: the two live epoch keys.
#[derive(Clone, Debug)]
pub struct CookieJar {
    master: [u8; 32],
    rotation_ms: u64,
    epoch: u64,
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
            current: (0, 0),
            previous: (0, 0),
        };
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

    fn hash(key: (u64, u64), t: &CookieTuple) -> u64 {
        let mut h = SipHasher24::new_with_keys(key.0, key.1);
        h.write(&t.src);
        h.write(&t.dst);
        h.write_u32(u32::from(t.src_port) << 16 | u32::from(t.dst_port));
        h.finish()
    }

    fn isn_for(&self, t: &CookieTuple, epoch: u64, key: (u64, u64)) -> u32 {
        let h = Self::hash(key, t);
        let mac = (h as u32) & 0x3fff_ffff;
        ((h >> 32) as u32).wrapping_add(((epoch & 3) as u32) << 30 | mac)
    }

    /// The ISN of the decoy's SYN-ACK for `t`, in the current epoch.
    #[inline]
    pub fn isn(&self, t: &CookieTuple) -> u32 {
        self.isn_for(t, self.epoch, self.current)
    }

    /// Verifies an acknowledgement number `ack` from the prober of `t`:
    /// it must acknowledge the SYN-ACK plus at most `window` bytes.
    #[inline]
    pub fn verify(&self, t: &CookieTuple, ack: u32, window: u32) -> Option<CookieMatch> {
        let candidates = [
            (CookieAge::Current, self.epoch, self.current),
            (
                CookieAge::Previous,
                self.epoch.wrapping_sub(1),
                self.previous,
            ),
        ];
        candidates.into_iter().find_map(|(age, epoch, key)| {
            let isn = self.isn_for(t, epoch, key);
            let offset = ack.wrapping_sub(isn).wrapping_sub(1);
            (offset <= window).then_some(CookieMatch { age, isn, offset })
        })
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
