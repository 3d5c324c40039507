//! IPv4 (RFC 791): the [`Ipv4Packet`] view and [`Ipv4Repr`].
//!
//! The checked constructor validates version, IHL and total length against
//! the buffer, so [`Ipv4Packet::payload`] is exactly the datagram's payload
//! (Ethernet padding past the total length is excluded). Options are skipped,
//! never interpreted. Fragments are reported, not reassembled. The header
//! checksum is not verified on parse (a NIC may have done it): call
//! [`Ipv4Packet::verify_checksum`] where it matters.

use std::net::Ipv4Addr;

use super::WireError;
use super::checksum;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after validating version, IHL and total length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check done by `new_checked`.
    ///
    /// `Truncated` if shorter than 20 bytes or than IHL*4, `BadVersion` if the
    /// version is not 4, `BadHeaderLen` if IHL < 5, and `BadTotalLen` if the
    /// total length is below the header length or beyond the buffer.
    pub fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > data.len() {
            return Err(WireError::Truncated);
        }
        let total = usize::from(self.total_len());
        if total < header_len || total > data.len() {
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

    /// IP version (4 after a successful check).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte (former TOS).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of the datagram, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True if this datagram is a fragment (MF set or non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Time to live, under its IPv6 name.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.ttl()
    }

    /// Protocol number of the payload (see [`super::protocol`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Protocol number of the payload, under its IPv6 name.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.protocol()
    }

    /// Header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Option bytes (20..header_len), uninterpreted.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.header_len();
        self.buffer.as_ref().get(HEADER_LEN..hl).unwrap_or(&[])
    }

    /// The payload: header_len..total_len (empty if a setter broke the checked invariant).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_ref().get(range).unwrap_or(&[])
    }

    /// True if the stored header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let hl = self.header_len();
        match self.buffer.as_ref().get(..hl) {
            Some(h) => checksum::fold(checksum::sum(h, 0)) == 0xffff,
            None => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets version 4 and the header length in bytes (rounded down to 4, at most 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ihl;
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        self.set_u16_at(field::LENGTH, value);
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        self.set_u16_at(field::IDENT, value);
    }

    /// Sets flags and fragment offset: DF, MF, and the offset in bytes (a multiple of 8).
    #[inline]
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        self.set_u16_at(field::FLG_OFF, v);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the time to live, under its IPv6 name.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.set_ttl(value);
    }

    /// Sets the protocol number.
    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Stores a checksum value (e.g. one from [`checksum::update32`]).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Swaps source and destination addresses.
    ///
    /// The header checksum (and any transport pseudo-header sum) stays valid:
    /// the ones'-complement sum does not depend on word order.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let src = self.src_addr();
        let dst = self.dst_addr();
        self.set_src_addr(dst);
        self.set_dst_addr(src);
    }

    /// Recomputes the header checksum over header_len bytes.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = match self.buffer.as_ref().get(..hl) {
            Some(h) => checksum::checksum(h),
            None => return,
        };
        self.set_checksum(c);
    }

    /// Mutable option bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..hl)
            .unwrap_or(&mut [])
    }

    /// Mutable payload (header_len..total_len).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A decoded IPv4 header (options and fragmentation state are not represented).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol number of the payload.
    pub protocol: u8,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification field.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_frag: bool,
    /// DSCP/ECN byte.
    pub dscp_ecn: u8,
}

impl Ipv4Repr {
    /// Decodes a packet, checking it first. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, WireError> {
        packet.check()?;
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            dscp_ecn: packet.dscp_ecn(),
        })
    }

    /// Length of the emitted header (20: no options are emitted).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload length.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Writes a 20-byte header, MF clear and offset 0, and fills its checksum.
    ///
    /// `Truncated` if the buffer is shorter than 20 bytes, `BadTotalLen` if
    /// the total length does not fit in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
    ) -> Result<(), WireError> {
        let total = u16::try_from(self.buffer_len()).map_err(|_| WireError::BadTotalLen)?;
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_frag(self.dont_frag, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    // A TCP SYN's IPv4 header (DF, TTL 64, checksum computed below),
    // 4 payload bytes, then 2 bytes of Ethernet padding.
    fn syn_packet() -> Vec<u8> {
        let mut b = vec![
            0x45, 0x00, 0x00, 0x18, // v4, IHL 5, total 24
            0x1c, 0x46, 0x40, 0x00, // ident, DF
            0x40, 0x06, 0x00, 0x00, // TTL 64, TCP, checksum
            0xc0, 0xa8, 0x00, 0x68, // 192.168.0.104
            0xc0, 0xa8, 0x00, 0x01, // 192.168.0.1
            0xde, 0xad, 0xbe, 0xef, // payload
            0x00, 0x00, // padding
        ];
        let c = checksum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    // A header with 4 bytes of options (NOP NOP NOP EOL), MF set, offset 1480.
    const WITH_OPTIONS: [u8; 28] = [
        0x46, 0x00, 0x00, 0x1c, 0xab, 0xcd, 0x20, 0xb9, 0x01, 0x11, 0x00, 0x00, 10, 0, 0, 1, 10, 0,
        0, 2, 0x01, 0x01, 0x01, 0x00, 1, 2, 3, 4,
    ];

    #[test]
    fn parse_syn_header() {
        let b = syn_packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), super::super::protocol::TCP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 104));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.options().is_empty());
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 4);
        assert_eq!(r.buffer_len(), 24);
    }

    #[test]
    fn parse_options_and_fragment() {
        let p = Ipv4Packet::new_checked(&WITH_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 185 * 8);
    }

    #[test]
    fn emit_matches_fixture() {
        let b = syn_packet();
        let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap();
        let mut out = [0u8; 20];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, b[..20]);
        let mut short = [0u8; 19];
        assert_eq!(
            r.emit(&mut Ipv4Packet::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
        for payload_len in [65_516, usize::MAX] {
            let big = Ipv4Repr { payload_len, ..r };
            assert_eq!(
                big.emit(&mut Ipv4Packet::new_unchecked(&mut out[..])),
                Err(WireError::BadTotalLen)
            );
        }
    }

    #[test]
    fn truncated_at_every_length() {
        let b = syn_packet();
        for len in 0..24 {
            let e = Ipv4Packet::new_checked(&b[..len]).err();
            if len < 20 {
                assert_eq!(e, Some(WireError::Truncated), "len {len}");
            } else {
                assert_eq!(e, Some(WireError::BadTotalLen), "len {len}");
            }
        }
        for len in 0..WITH_OPTIONS.len() {
            assert!(Ipv4Packet::new_checked(&WITH_OPTIONS[..len]).is_err());
        }
        assert_eq!(
            Ipv4Packet::new_checked(&WITH_OPTIONS[..22]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn lying_fields_are_rejected() {
        let good = syn_packet();
        let mut b = good.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadVersion)
        );
        let mut b = good.clone();
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen)
        );
        let mut b = good.clone();
        b[3] = 19; // total < header
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
        let mut b = good.clone();
        b[3] = 27; // total > frame
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
        let mut b = good;
        b[0] = 0x4f; // IHL 15 = 60 bytes > frame
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn setters_and_swap_keep_checksum_semantics() {
        let mut b = syn_packet();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.swap_addrs();
        assert!(p.verify_checksum(), "swap keeps the sum");
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        let old = p.checksum();
        p.set_ttl(63);
        assert!(!p.verify_checksum());
        p.set_checksum(checksum::update16(old, 0x4006, 0x3f06));
        assert!(p.verify_checksum());
        p.set_ident(7);
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.payload_mut()[0] = 0;
        p.set_total_len(200); // breaks the checked invariant: no panic
        assert!(p.payload().is_empty());
        assert_eq!(b[20], 0);
    }

    fn repr_strategy() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0usize..64,
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
            any::<u8>(),
        )
            .prop_map(
                |(s, d, protocol, payload_len, ttl, ident, df, dscp_ecn)| Ipv4Repr {
                    src_addr: Ipv4Addr::from(s),
                    dst_addr: Ipv4Addr::from(d),
                    protocol,
                    payload_len,
                    ttl,
                    ident,
                    dont_frag: df,
                    dscp_ecn,
                },
            )
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr_strategy(), pad in 0usize..8) {
            let mut buf = vec![0u8; r.buffer_len() + pad];
            r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..])).unwrap();
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
            prop_assert_eq!(p.payload().len(), r.payload_len);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let p = Ipv4Packet::new_unchecked(&data[..]);
            if let Ok(r) = Ipv4Repr::parse(&p) {
                prop_assert!(r.buffer_len() <= data.len() + 40);
                let _ = (p.options(), p.payload(), p.verify_checksum(), p.frag_offset());
            }
        }

        #[test]
        fn random_header_like_bytes_never_panic(
            mut data in proptest::collection::vec(any::<u8>(), 20..80),
            ihl in 0u8..16,
        ) {
            data[0] = 0x40 | ihl;
            let _ = Ipv4Packet::new_checked(&data[..]).map(|p| (p.options().len(), p.payload().len()));
        }

        #[test]
        fn agrees_with_etherparse(
            r in repr_strategy().prop_filter("AH is parsed by etherparse", |r| r.protocol != 51),
            opts in proptest::collection::vec(any::<[u8; 4]>(), 0..10),
            frag in any::<u16>(),
            pad in 0usize..4,
        ) {
            // Build a header with options and arbitrary flags/offset.
            let hl = 20 + opts.len() * 4;
            let mut buf = vec![0u8; hl + r.payload_len + pad];
            r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..])).unwrap();
            buf[0] = 0x40 | (hl / 4) as u8;
            buf[2..4].copy_from_slice(&((hl + r.payload_len) as u16).to_be_bytes());
            buf[6..8].copy_from_slice(&(frag & 0x7fff).to_be_bytes());
            for (i, o) in opts.iter().enumerate() {
                buf[20 + i * 4..24 + i * 4].copy_from_slice(o);
            }
            let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            p.fill_checksum();
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            let theirs = etherparse::Ipv4Slice::from_slice(&buf).unwrap();
            let h = theirs.header();
            prop_assert_eq!(usize::from(h.ihl()) * 4, p.header_len());
            prop_assert_eq!(h.total_len(), p.total_len());
            prop_assert_eq!(h.identification(), p.ident());
            prop_assert_eq!(h.dont_fragment(), p.dont_frag());
            prop_assert_eq!(h.more_fragments(), p.more_frags());
            prop_assert_eq!(h.fragments_offset().value() * 8, p.frag_offset());
            prop_assert_eq!(h.is_fragmenting_payload(), p.is_fragment());
            prop_assert_eq!(h.ttl(), p.ttl());
            prop_assert_eq!(h.protocol().0, p.protocol());
            prop_assert_eq!(h.header_checksum(), p.checksum());
            prop_assert_eq!(h.source_addr(), p.src_addr());
            prop_assert_eq!(h.destination_addr(), p.dst_addr());
            prop_assert_eq!(h.options(), p.options());
            prop_assert_eq!(theirs.payload().payload, p.payload());
            prop_assert_eq!(h.to_header().calc_header_checksum(), p.checksum());
        }

        #[test]
        fn accept_reject_agrees_with_etherparse(
            mut data in proptest::collection::vec(any::<u8>(), 0..64),
            ver_ihl in 0x40u8..0x50,
        ) {
            // Where we accept, etherparse must accept (it is laxer only for
            // total_len 0); it also walks AH, which we leave to the caller.
            if let Some(b) = data.first_mut() {
                *b = ver_ihl;
            }
            if data.get(9) == Some(&51) {
                data[9] = 6;
            }
            let ours = Ipv4Packet::new_checked(&data[..]).is_ok();
            let theirs = etherparse::Ipv4Slice::from_slice(&data).is_ok();
            let zero_total = data.len() >= 4 && data[2] == 0 && data[3] == 0;
            if !zero_total {
                prop_assert_eq!(ours, theirs);
            } else {
                prop_assert!(!ours);
            }
        }
    }
}
