//! UDP (RFC 768): the [`UdpPacket`] view and [`UdpRepr`].
//!
//! The datagram is bounded by its own length field, which must be at least 8
//! and fit in the buffer; anything past it is ignored. Over IPv4 a checksum
//! of zero means "not computed" and a computed zero is sent as 0xFFFF
//! (RFC 768); over IPv6 the checksum is mandatory (RFC 8200 section 8.1), so
//! a zero never verifies. IPv6 jumbograms (length 0, RFC 2675) are rejected.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{WireError, checksum, protocol};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after validating the length field.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check done by `new_checked`: `Truncated` below 8 bytes,
    /// `BadTotalLen` if the length field is below 8 or beyond the buffer.
    pub fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN || len > data.len() {
            return Err(WireError::BadTotalLen);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[r];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Length field: header plus payload.
    #[inline]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// True if the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum as stored (0 = not computed, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The payload, 8..length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The datagram bytes covered by the checksum (0..length field), if present.
    #[inline]
    fn datagram(&self) -> Option<&[u8]> {
        self.buffer.as_ref().get(..usize::from(self.len()))
    }

    /// True if the checksum is zero (not computed) or verifies against the IPv4 pseudo-header.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let Some(d) = self.datagram() else {
            return false;
        };
        let ph = checksum::pseudo_header_v4(src, dst, protocol::UDP, self.len());
        checksum::fold(checksum::sum(d, ph)) == 0xffff
    }

    /// True if the checksum is non-zero and verifies against the IPv6 pseudo-header.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let Some(d) = self.datagram() else {
            return false;
        };
        let ph = checksum::pseudo_header_v6(src, dst, protocol::UDP, u32::from(self.len()));
        checksum::fold(checksum::sum(d, ph)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16_at(field::SRC_PORT, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16_at(field::DST_PORT, v);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        self.set_u16_at(field::LENGTH, v);
    }

    /// Stores a checksum value.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    /// Swaps the ports; the checksum stays valid (the sum is order-independent).
    #[inline]
    pub fn swap_ports(&mut self) {
        let s = self.src_port();
        let d = self.dst_port();
        self.set_src_port(d);
        self.set_dst_port(s);
    }

    /// Mutable payload (8..length field).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }

    fn fill_with(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let Some(d) = self.datagram() else {
            return;
        };
        let c = !checksum::fold(checksum::sum(d, pseudo));
        // RFC 768: a computed zero is sent as all ones, zero meaning "none".
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Computes and stores the checksum over 0..length with the IPv4 pseudo-header.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let ph = checksum::pseudo_header_v4(src, dst, protocol::UDP, self.len());
        self.fill_with(ph);
    }

    /// Computes and stores the checksum over 0..length with the IPv6 pseudo-header.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let ph = checksum::pseudo_header_v6(src, dst, protocol::UDP, u32::from(self.len()));
        self.fill_with(ph);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A decoded UDP header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Decodes a datagram, checking it first. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr, WireError> {
        packet.check()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// Length of the header (8).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload length.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Writes the header with a zero checksum (fill it after the payload).
    ///
    /// `Truncated` if the buffer is shorter than 8 bytes, `BadTotalLen` if
    /// the length does not fit in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
    ) -> Result<(), WireError> {
        let len = u16::try_from(self.buffer_len()).map_err(|_| WireError::BadTotalLen)?;
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    // A DNS query 53124 -> 53 with a 12-byte payload and 3 trailing bytes.
    const DNS: [u8; 23] = [
        0xcf, 0x84, 0x00, 0x35, // ports
        0x00, 0x14, 0x00, 0x00, // length 20, checksum (none)
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DNS header
        0xee, 0xee, 0xee, // trailing bytes past the length
    ];

    #[test]
    fn parse_dns_query() {
        let p = UdpPacket::new_checked(&DNS[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (53124, 53));
        assert_eq!(p.len(), 20);
        assert_eq!(p.payload().len(), 12);
        assert_eq!(p.payload()[0], 0x12);
        assert!(!p.is_empty());
        let a = Ipv4Addr::new(10, 1, 1, 1);
        assert!(p.verify_checksum_v4(a, a), "zero = not computed");
        let a6 = Ipv6Addr::LOCALHOST;
        assert!(!p.verify_checksum_v6(&a6, &a6), "mandatory over IPv6");
        assert_eq!(
            UdpRepr::parse(&p).unwrap(),
            UdpRepr {
                src_port: 53124,
                dst_port: 53,
                payload_len: 12
            }
        );
    }

    #[test]
    fn checksums_fill_and_verify() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(192, 0, 2, 53);
        let mut b = DNS;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum_v4(src, dst);
        assert!(p.verify_checksum_v4(src, dst));
        assert!(!p.verify_checksum_v4(src, Ipv4Addr::new(192, 0, 2, 54)));
        p.swap_ports();
        assert!(p.verify_checksum_v4(dst, src));
        p.payload_mut()[0] ^= 1;
        assert!(!p.verify_checksum_v4(dst, src));
        let s6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8::35".parse().unwrap();
        p.fill_checksum_v6(&s6, &d6);
        assert!(p.verify_checksum_v6(&s6, &d6));
        // Trailing bytes are outside the checksum.
        b[22] = 0;
        assert!(
            UdpPacket::new_checked(&b[..])
                .unwrap()
                .verify_checksum_v6(&s6, &d6)
        );
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Search payloads for one whose checksum computes to zero.
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut b = [0u8; 10];
        b[0..8].copy_from_slice(&[0, 1, 0, 2, 0, 10, 0, 0]);
        let ph = checksum::pseudo_header_v4(src, dst, 17, 10);
        let partial = checksum::fold(checksum::sum(&b, ph));
        // Choose the payload word so the sum is 0xFFFF, making ~sum == 0.
        let word = 0xffff - partial;
        b[8..10].copy_from_slice(&word.to_be_bytes());
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum_v4(src, dst);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(src, dst));
    }

    #[test]
    fn truncated_and_lying_lengths() {
        for len in 0..20 {
            let e = UdpPacket::new_checked(&DNS[..len]).err();
            let want = if len < 8 {
                WireError::Truncated
            } else {
                WireError::BadTotalLen
            };
            assert_eq!(e, Some(want), "len {len}");
        }
        let mut b = DNS;
        b[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
        b[5] = 0; // jumbogram marker
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
    }

    #[test]
    fn emit_matches_fixture() {
        let r = UdpRepr {
            src_port: 53124,
            dst_port: 53,
            payload_len: 12,
        };
        let mut buf = [0xffu8; 20];
        r.emit(&mut UdpPacket::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf[..8], DNS[..8]);
        let mut short = [0u8; 7];
        assert_eq!(
            r.emit(&mut UdpPacket::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
        let big = UdpRepr {
            payload_len: 65_528,
            ..r
        };
        assert_eq!(
            big.emit(&mut UdpPacket::new_unchecked(&mut buf[..])),
            Err(WireError::BadTotalLen)
        );
    }

    fn repr_strategy() -> impl Strategy<Value = UdpRepr> {
        (any::<u16>(), any::<u16>(), 0usize..64).prop_map(|(s, d, n)| UdpRepr {
            src_port: s,
            dst_port: d,
            payload_len: n,
        })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr_strategy(), extra in 0usize..4) {
            let mut buf = vec![0u8; r.buffer_len() + extra];
            r.emit(&mut UdpPacket::new_unchecked(&mut buf[..])).unwrap();
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(UdpRepr::parse(&p).unwrap(), r);
            prop_assert_eq!(p.payload().len(), r.payload_len);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let p = UdpPacket::new_unchecked(&data[..]);
            if UdpRepr::parse(&p).is_ok() {
                let a = Ipv4Addr::LOCALHOST;
                let _ = (p.payload(), p.verify_checksum_v4(a, a));
                let _ = p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST);
            }
        }

        #[test]
        fn agrees_with_etherparse(
            r in repr_strategy(),
            payload_seed in any::<u8>(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            src6 in any::<[u8; 16]>(),
            dst6 in any::<[u8; 16]>(),
        ) {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut UdpPacket::new_unchecked(&mut buf[..])).unwrap();
            for (i, b) in buf.iter_mut().enumerate().skip(8) {
                *b = payload_seed.wrapping_mul(i as u8);
            }
            let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
            p.fill_checksum_v4(Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let ours = UdpPacket::new_checked(&buf[..]).unwrap();
            let theirs = etherparse::UdpSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(theirs.source_port(), ours.src_port());
            prop_assert_eq!(theirs.destination_port(), ours.dst_port());
            prop_assert_eq!(theirs.length(), ours.len());
            prop_assert_eq!(theirs.payload(), ours.payload());
            let hdr = theirs.to_header();
            prop_assert_eq!(
                hdr.calc_checksum_ipv4_raw(src, dst, ours.payload()).unwrap(),
                ours.checksum()
            );
            let mut buf6 = buf.clone();
            let mut p6 = UdpPacket::new_checked(&mut buf6[..]).unwrap();
            p6.fill_checksum_v6(&Ipv6Addr::from(src6), &Ipv6Addr::from(dst6));
            prop_assert_eq!(
                hdr.calc_checksum_ipv6_raw(src6, dst6, ours.payload()).unwrap(),
                p6.checksum()
            );
        }
    }
}
