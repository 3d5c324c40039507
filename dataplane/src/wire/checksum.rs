//! The internet checksum: the RFC 1071 ones'-complement sum, the IPv4
//! (RFC 791 / RFC 9293 / RFC 768) and IPv6 (RFC 8200 section 8.1)
//! pseudo-headers, and RFC 1624 incremental updates for rewriting a field
//! without re-summing the whole packet.
//!
//! Partial sums are carried as `u32` values that are congruent, modulo
//! 0xFFFF, to the ones'-complement sum of the 16-bit big-endian words seen so
//! far; [`fold`] reduces one to 16 bits and [`checksum`] negates it. Because
//! ones'-complement addition is commutative and word-size independent, the
//! inner loop can add 32-bit words into a 64-bit accumulator and fold once.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a 64-bit accumulator into a 32-bit partial sum (end-around carry).
#[inline]
fn fold64(acc: u64) -> u32 {
    // 2^32 ≡ 1 (mod 2^32 - 1), and 0xFFFF divides 2^32 - 1, so this keeps the
    // value modulo 0xFFFF. Two rounds always fit in 32 bits.
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    s as u32
}

/// Adds `data`, as big-endian 16-bit words, to the partial sum `initial`.
///
/// An odd trailing byte is padded with a zero on the right, as RFC 1071
/// requires at the end of the checksummed data; when summing a message in
/// pieces, every piece but the last must have even length.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        acc += u64::from(u32::from_be_bytes([q[0], q[1], q[2], q[3]]));
    }
    let mut pairs = quads.remainder().chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [b] = pairs.remainder() {
        acc += u64::from(*b) << 8;
    }
    fold64(acc)
}

/// Folds the carries of a partial sum into 16 bits: the ones'-complement sum, not negated.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The internet checksum of `data`: the negated ones'-complement sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Partial sum of the IPv4 pseudo-header used by TCP and UDP.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(protocol)
        + u32::from(length)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1) for TCP, UDP and ICMPv6.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, protocol: u8, length: u32) -> u32 {
    let initial = u32::from(protocol) + (length >> 16) + (length & 0xffff);
    sum(&dst.octets(), sum(&src.octets(), initial))
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changes from `old` to `new`.
///
/// Unlike eqn. 2 this never produces 0xFFFF from a header whose true
/// checksum is 0x0000.
#[inline]
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!checksum) + u32::from(!old) + u32::from(new))
}

/// RFC 1624 update for a 32-bit field (e.g. an IPv4 address or a sequence number)
/// that starts at an even offset.
#[inline]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!checksum)
        + u32::from(!((old >> 16) as u16))
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

/// RFC 1624 update for a run of bytes that starts at an even offset.
///
/// `old` and `new` must have the same, even length; only their common prefix
/// is accounted for, and an odd final byte is treated as the last byte of the
/// checksummed data (padded with a zero).
#[inline]
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    let word = |c: &[u8]| match *c {
        [a, b] => u16::from_be_bytes([a, b]),
        [a] => u16::from_be_bytes([a, 0]),
        _ => 0,
    };
    let mut acc = u64::from(!checksum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        acc += u64::from(!word(o)) + u64::from(word(n));
    }
    !fold(fold64(acc))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    /// Plain 16-bit reference implementation, straight from RFC 1071 section 4.1.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            s += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            s += u32::from(data[i]) << 8;
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A textbook header (Wikipedia "IPv4 header checksum") whose checksum is 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&hdr), 0);
    }

    #[test]
    fn odd_length_and_empty() {
        assert_eq!(fold(sum(&[], 0)), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn fold_carries() {
        assert_eq!(fold(0x0001_ffff), 0x0001);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0x0000_ffff), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_manual_sums() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(198, 51, 100, 7);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 6, 0x01, 0x2c]);
        assert_eq!(
            fold(pseudo_header_v4(src, dst, 6, 300)),
            fold(sum(&bytes, 0))
        );

        let src6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst6: Ipv6Addr = "fe80::ffff:1:2".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src6.octets());
        bytes.extend_from_slice(&dst6.octets());
        bytes.extend_from_slice(&0x0001_0203u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(
            fold(pseudo_header_v6(&src6, &dst6, 58, 0x0001_0203)),
            fold(sum(&bytes, 0))
        );
    }

    #[test]
    fn rfc1624_zero_corner_case() {
        // RFC 1624 section 4: other octets sum to 0xCD7A, a field goes from
        // 0x5555 to 0x3285; the correct new checksum is 0x0000, not 0xFFFF.
        let hc = !fold(0xcd7a + 0x5555);
        assert_eq!(hc, 0xdd2f);
        assert_eq!(update16(hc, 0x5555, 0x3285), 0x0000);
        // Full recomputation agrees.
        assert_eq!(!fold(0xcd7a + 0x3285), 0x0000);
        // And the reverse change brings the original back.
        assert_eq!(update16(0x0000, 0x3285, 0x5555), 0xdd2f);
    }

    #[test]
    fn update_helpers_agree_with_each_other() {
        let c = 0x1234;
        assert_eq!(
            update32(c, 0xdead_beef, 0x0102_0304),
            update16(update16(c, 0xdead, 0x0102), 0xbeef, 0x0304)
        );
        assert_eq!(
            update_bytes(c, &[0xde, 0xad, 0xbe, 0xef], &[1, 2, 3, 4]),
            update32(c, 0xdead_beef, 0x0102_0304)
        );
    }

    fn ipv4_header_strategy() -> impl Strategy<Value = [u8; 20]> {
        any::<[u8; 20]>().prop_map(|mut h| {
            // A real header never sums to zero: version/IHL is 0x45.
            h[0] = 0x45;
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        })
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data, 0)), reference_sum(&data));
        }

        #[test]
        fn sum_is_chainable_on_even_splits(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            split in 0usize..150,
        ) {
            let split = (split * 2).min(data.len() & !1);
            let (a, b) = data.split_at(split);
            prop_assert_eq!(fold(sum(b, sum(a, 0))), fold(sum(&data, 0)));
        }

        #[test]
        fn incremental_update16_equals_recompute(
            hdr in ipv4_header_strategy(),
            // Any header word but the checksum itself (word 5).
            word in proptest::sample::select(vec![0usize, 1, 2, 3, 4, 6, 7, 8, 9]),
            new in any::<u16>(),
        ) {
            let at = word * 2;
            let old = u16::from_be_bytes([hdr[at], hdr[at + 1]]);
            let hc = u16::from_be_bytes([hdr[10], hdr[11]]);
            let mut changed = hdr;
            changed[at..at + 2].copy_from_slice(&new.to_be_bytes());
            changed[10] = 0;
            changed[11] = 0;
            prop_assert_eq!(update16(hc, old, new), checksum(&changed));
        }

        #[test]
        fn incremental_update32_equals_recompute(
            hdr in ipv4_header_strategy(),
            new_src in any::<u32>(),
            new_dst in any::<u32>(),
        ) {
            let hc = u16::from_be_bytes([hdr[10], hdr[11]]);
            let old_src = u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
            let old_dst = u32::from_be_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]);
            let mut changed = hdr;
            changed[12..16].copy_from_slice(&new_src.to_be_bytes());
            changed[16..20].copy_from_slice(&new_dst.to_be_bytes());
            changed[10] = 0;
            changed[11] = 0;
            let inc = update32(update32(hc, old_src, new_src), old_dst, new_dst);
            prop_assert_eq!(inc, checksum(&changed));
            let inc_bytes = update_bytes(hc, &hdr[12..20], &changed[12..20]);
            prop_assert_eq!(inc_bytes, checksum(&changed));
        }

        #[test]
        fn incremental_update_on_a_segment_with_pseudo_header(
            payload in proptest::collection::vec(any::<u8>(), 20..80),
            new_port in any::<u16>(),
            new_seq in any::<u32>(),
        ) {
            // A TCP-like segment whose checksum covers a pseudo-header
            // (protocol 6 is never zero, so the sum is never +0).
            let src = Ipv4Addr::new(10, 0, 0, 1);
            let dst = Ipv4Addr::new(10, 0, 0, 2);
            let mut seg = payload.clone();
            seg[16] = 0;
            seg[17] = 0;
            let ph = pseudo_header_v4(src, dst, 6, seg.len() as u16);
            let hc = !fold(sum(&seg, ph));
            let old_port = u16::from_be_bytes([seg[0], seg[1]]);
            let old_seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
            seg[0..2].copy_from_slice(&new_port.to_be_bytes());
            seg[4..8].copy_from_slice(&new_seq.to_be_bytes());
            let inc = update32(update16(hc, old_port, new_port), old_seq, new_seq);
            prop_assert_eq!(inc, !fold(sum(&seg, ph)));
        }

        #[test]
        fn agrees_with_etherparse(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let theirs = etherparse::checksum::Sum16BitWords::new()
                .add_slice(&data)
                .ones_complement();
            prop_assert_eq!(checksum(&data), theirs.to_be());
        }
    }
}
