//! IPv6 (RFC 8200): the [`Ipv6Packet`] view, a bounded extension-header
//! walk to the upper-layer header ([`Ipv6Packet::upper_layer`]) and
//! [`Ipv6Repr`].
//!
//! The walk follows Hop-by-Hop (only as the first header, RFC 8200 section
//! 4.1), Routing, Fragment, Destination Options and AH (RFC 4302, whose
//! length is in 4-octet units) for at most [`MAX_EXT_HEADERS`] headers, so a
//! hostile chain costs bounded work. It stops at the first non-extension
//! protocol, at ESP or No Next Header, and at a non-first fragment, whose
//! following bytes are fragment data rather than headers. Jumbograms
//! (payload length 0 with a Jumbo option) are not supported: a zero payload
//! length means an empty payload.

use std::net::Ipv6Addr;

use super::{WireError, protocol};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers [`Ipv6Packet::upper_layer`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// Where the upper-layer header of an IPv6 packet is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Upper {
    /// Upper-layer protocol number (59 for No Next Header).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// True if a Fragment header with a non-zero offset or M set was seen.
    pub is_fragment: bool,
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after validating length, version and payload length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check done by `new_checked`: `Truncated` below 40 bytes,
    /// `BadVersion` unless version 6, `BadTotalLen` if 40 + payload length
    /// exceeds the buffer.
    pub fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::BadVersion);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > data.len() {
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
    fn first_word(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// IP version (6 after a successful check).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// Traffic class (DSCP and ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Next Header of the fixed header (the first extension header, if any).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Ipv6Addr::from(a)
    }

    /// The payload, 40..40 + payload length (extension headers included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// Walks the extension headers to the upper-layer header.
    ///
    /// `ExtHeaderChain` if more than [`MAX_EXT_HEADERS`] extension headers
    /// precede it, if one runs past the payload, if Hop-by-Hop is not first,
    /// or if an AH is shorter than its fixed part.
    pub fn upper_layer(&self) -> Result<Ipv6Upper, WireError> {
        let payload = self.payload();
        let mut next = self.next_header();
        let mut at = 0usize; // offset within the payload
        let mut is_fragment = false;
        let mut seen = 0usize;
        loop {
            let hdr = payload.get(at..).unwrap_or(&[]);
            let len = match next {
                protocol::HOP_BY_HOP | protocol::IPV6_ROUTE | protocol::IPV6_OPTS => {
                    if next == protocol::HOP_BY_HOP && seen != 0 {
                        return Err(WireError::ExtHeaderChain);
                    }
                    match *hdr {
                        [_, n, ..] => (usize::from(n) + 1) * 8,
                        _ => return Err(WireError::ExtHeaderChain),
                    }
                }
                protocol::IPV6_FRAG => 8,
                protocol::AH => match *hdr {
                    // AH has 12 bytes of fixed fields: a length byte of 0 lies.
                    [_, 0, ..] => return Err(WireError::ExtHeaderChain),
                    [_, n, ..] => (usize::from(n) + 2) * 4,
                    _ => return Err(WireError::ExtHeaderChain),
                },
                _ => break,
            };
            seen += 1;
            if seen > MAX_EXT_HEADERS {
                return Err(WireError::ExtHeaderChain);
            }
            let kind = next;
            match hdr.get(..len) {
                Some([nh, _, o0, o1, ..]) => {
                    next = *nh;
                    at += len;
                    if kind == protocol::IPV6_FRAG {
                        let off_m = u16::from_be_bytes([*o0, *o1]);
                        if off_m & 0xfff9 != 0 {
                            is_fragment = true;
                        }
                        if off_m >> 3 != 0 {
                            // A non-first fragment: what follows is fragment
                            // data, not headers.
                            break;
                        }
                    }
                }
                _ => return Err(WireError::ExtHeaderChain),
            }
        }
        Ok(Ipv6Upper {
            protocol: next,
            offset: HEADER_LEN + at,
            is_fragment,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn set_first_word(&mut self, v: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the version nibble (6 for a valid packet).
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let w = self.first_word();
        self.set_first_word((w & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28));
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = self.first_word();
        self.set_first_word((w & 0xf00f_ffff) | (u32::from(tc) << 20));
    }

    /// Sets the 20-bit flow label (higher bits ignored).
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let w = self.first_word();
        self.set_first_word((w & 0xfff0_0000) | (label & 0x000f_ffff));
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the Next Header of the fixed header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Swaps source and destination; upper-layer pseudo-header sums are unchanged.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let src = self.src_addr();
        let dst = self.dst_addr();
        self.set_src_addr(&dst);
        self.set_dst_addr(&src);
    }

    /// Mutable payload (40..40 + payload length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A decoded IPv6 fixed header (traffic class and flow label are emitted as 0).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next Header of the fixed header.
    pub next_header: u8,
    /// Payload length (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Decodes the fixed header of a packet, checking it first.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr, WireError> {
        packet.check()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Length of the emitted header (40: no extension headers are emitted).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload length.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Writes the 40-byte fixed header.
    ///
    /// `Truncated` if the buffer is shorter than 40 bytes, `BadTotalLen` if
    /// the payload length does not fit in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv6Packet<T>,
    ) -> Result<(), WireError> {
        let len = u16::try_from(self.payload_len).map_err(|_| WireError::BadTotalLen)?;
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        packet.set_first_word(0x6000_0000);
        packet.set_payload_len(len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn header(next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![
            0x6b,
            0x81,
            0x23,
            0x45, // v6, TC 0xb8, flow 0x12345
            0x00,
            0x00,
            next_header,
            0x40, // length (below), NH, hop limit 64
            0x20,
            0x01,
            0x0d,
            0xb8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            1, // 2001:db8::1
            0x20,
            0x01,
            0x0d,
            0xb8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            2, // 2001:db8::2
        ];
        b[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    // A TCP SYN header (20 bytes, ports 40000 -> 22) as an upper-layer stand-in.
    const TCP: [u8; 20] = [
        0x9c, 0x40, 0x00, 0x16, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    fn chain_fixture() -> Vec<u8> {
        let mut p = Vec::new();
        // Hop-by-Hop: NH=60, len 0 (8 bytes), PadN.
        p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        // Destination Options: NH=43, len 1 (16 bytes).
        p.extend_from_slice(&[43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Routing (type 4, segments left 0): NH=44, len 0.
        p.extend_from_slice(&[44, 0, 4, 0, 0, 0, 0, 0]);
        // Fragment: NH=51, offset 0, M=1 (first fragment).
        p.extend_from_slice(&[51, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        // AH: NH=6, payload len 4 -> (4+2)*4 = 24 bytes.
        let mut ah = vec![6, 4, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 7];
        ah.extend_from_slice(&[0xaa; 12]);
        p.extend_from_slice(&ah);
        p.extend_from_slice(&TCP);
        header(protocol::HOP_BY_HOP, &p)
    }

    #[test]
    fn parse_fixed_header() {
        let b = header(protocol::TCP, &TCP);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 20);
        assert_eq!(p.next_header(), protocol::TCP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &TCP);
        assert_eq!(
            p.upper_layer().unwrap(),
            Ipv6Upper {
                protocol: protocol::TCP,
                offset: 40,
                is_fragment: false
            }
        );
    }

    #[test]
    fn walks_extension_chain() {
        let b = chain_fixture();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let up = p.upper_layer().unwrap();
        assert_eq!(up.protocol, protocol::TCP);
        assert_eq!(up.offset, 40 + 8 + 16 + 8 + 8 + 24);
        assert!(up.is_fragment);
        assert_eq!(&b[up.offset..], &TCP);
    }

    #[test]
    fn non_first_fragment_stops_the_walk() {
        // Fragment at offset 1480 whose next header claims Destination Options:
        // the bytes after it are fragment data and must not be walked.
        let mut p = vec![60, 0, 0x05, 0xc8, 0, 0, 0, 1];
        p.extend_from_slice(&[0xff; 16]);
        let b = header(protocol::IPV6_FRAG, &p);
        let up = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(
            up,
            Ipv6Upper {
                protocol: protocol::IPV6_OPTS,
                offset: 48,
                is_fragment: true
            }
        );
    }

    #[test]
    fn no_next_header_and_esp_end_the_walk() {
        let b = header(protocol::IPV6_OPTS, &[59, 0, 1, 4, 0, 0, 0, 0]);
        let up = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((up.protocol, up.offset), (59, 48));
        let b = header(protocol::ESP, &[0, 0, 1, 0, 0, 0, 0, 1]);
        let up = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((up.protocol, up.offset), (protocol::ESP, 40));
    }

    #[test]
    fn chain_bounds() {
        // Exactly MAX_EXT_HEADERS destination options: fine.
        let mut p = Vec::new();
        for i in 0..MAX_EXT_HEADERS {
            let nh = if i + 1 == MAX_EXT_HEADERS { 17 } else { 60 };
            p.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
        }
        let b = header(protocol::IPV6_OPTS, &p);
        let up = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((up.protocol, up.offset), (17, 40 + 8 * MAX_EXT_HEADERS));
        // One more: rejected.
        let mut p = Vec::new();
        for i in 0..=MAX_EXT_HEADERS {
            let nh = if i == MAX_EXT_HEADERS { 17 } else { 60 };
            p.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
        }
        let b = header(protocol::IPV6_OPTS, &p);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(WireError::ExtHeaderChain)
        );
        // Hop-by-Hop after another header: rejected.
        let b = header(
            protocol::IPV6_OPTS,
            &[0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0],
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(WireError::ExtHeaderChain)
        );
        // AH with a zero length byte: rejected.
        let b = header(protocol::AH, &[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(WireError::ExtHeaderChain)
        );
    }

    #[test]
    fn truncated_chain_at_every_payload_length() {
        let full = chain_fixture();
        let payload = &full[40..];
        let ext_len = payload.len() - TCP.len();
        for cut in 0..ext_len {
            let b = header(protocol::HOP_BY_HOP, &payload[..cut]);
            assert_eq!(
                Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(),
                Err(WireError::ExtHeaderChain),
                "cut {cut}"
            );
        }
        let b = header(protocol::HOP_BY_HOP, &payload[..ext_len]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..])
                .unwrap()
                .upper_layer()
                .unwrap()
                .offset,
            40 + ext_len
        );
    }

    #[test]
    fn truncated_at_every_length() {
        let b = header(protocol::TCP, &TCP);
        for len in 0..b.len() {
            let e = Ipv6Packet::new_checked(&b[..len]).err();
            if len < 40 {
                assert_eq!(e, Some(WireError::Truncated));
            } else {
                assert_eq!(e, Some(WireError::BadTotalLen));
            }
        }
        let mut v4 = b.clone();
        v4[0] = 0x4b;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).err(),
            Some(WireError::BadVersion)
        );
    }

    #[test]
    fn emit_and_setters() {
        let b = header(protocol::TCP, &TCP);
        let r = Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap()).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out[0..4], [0x60, 0, 0, 0]);
        assert_eq!(out[4..40], b[4..40]);
        let mut p = Ipv6Packet::new_checked(&mut out[..]).unwrap();
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        assert_eq!(p.as_ref()[..40], b[..40]);
        p.swap_addrs();
        p.set_hop_limit(255);
        assert_eq!(p.src_addr(), r.dst_addr);
        assert_eq!(p.hop_limit(), 255);
        p.payload_mut()[0] = 1;
        assert_eq!(p.version(), 6);
        let mut short = [0u8; 39];
        assert_eq!(
            r.emit(&mut Ipv6Packet::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
        let big = Ipv6Repr {
            payload_len: 65_536,
            ..r
        };
        assert_eq!(
            big.emit(&mut Ipv6Packet::new_unchecked(&mut out[..])),
            Err(WireError::BadTotalLen)
        );
    }

    fn repr_strategy() -> impl Strategy<Value = Ipv6Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0usize..64,
            any::<u8>(),
        )
            .prop_map(|(s, d, next_header, payload_len, hop_limit)| Ipv6Repr {
                src_addr: Ipv6Addr::from(s),
                dst_addr: Ipv6Addr::from(d),
                next_header,
                payload_len,
                hop_limit,
            })
    }

    /// One extension header: (kind, body bytes after NH/len, fragment word).
    #[derive(Debug, Clone)]
    enum Ext {
        Opts(u8, u8),
        Route(u8),
        Frag(u16),
        Ah(u8),
    }

    fn ext_strategy() -> impl Strategy<Value = Ext> {
        prop_oneof![
            (prop_oneof![Just(60u8), Just(0u8)], 0u8..3).prop_map(|(k, l)| Ext::Opts(k, l)),
            (0u8..3).prop_map(Ext::Route),
            any::<u16>().prop_map(Ext::Frag),
            (1u8..6).prop_map(Ext::Ah),
        ]
    }

    fn build_chain(exts: &[Ext], upper: u8) -> (u8, Vec<u8>) {
        let kinds: Vec<u8> = exts
            .iter()
            .map(|e| match e {
                Ext::Opts(k, _) => *k,
                Ext::Route(_) => 43,
                Ext::Frag(_) => 44,
                Ext::Ah(_) => 51,
            })
            .collect();
        let mut out = Vec::new();
        for (i, e) in exts.iter().enumerate() {
            let nh = kinds.get(i + 1).copied().unwrap_or(upper);
            match e {
                Ext::Opts(_, l) | Ext::Route(l) => {
                    let len = (usize::from(*l) + 1) * 8;
                    let mut h = vec![0u8; len];
                    h[0] = nh;
                    h[1] = *l;
                    // PadN over the rest keeps it a valid options header.
                    h[2] = 1;
                    h[3] = (len - 4) as u8;
                    out.extend_from_slice(&h);
                }
                Ext::Frag(w) => {
                    let mut h = [nh, 0, 0, 0, 1, 2, 3, 4];
                    h[2..4].copy_from_slice(&(w & 0xfff9).to_be_bytes());
                    out.extend_from_slice(&h);
                }
                Ext::Ah(l) => {
                    let len = (usize::from(*l) + 2) * 4;
                    let mut h = vec![0x5a; len];
                    h[0] = nh;
                    h[1] = *l;
                    out.extend_from_slice(&h);
                }
            }
        }
        (kinds.first().copied().unwrap_or(upper), out)
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr_strategy()) {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..])).unwrap();
            let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(
            mut data in proptest::collection::vec(any::<u8>(), 0..160),
            nh in prop_oneof![Just(0u8), Just(43), Just(44), Just(51), Just(60), any::<u8>()],
        ) {
            if data.len() >= 40 {
                data[0] = 0x60;
                data[6] = nh;
                let pl = (data.len() - 40) as u16;
                data[4..6].copy_from_slice(&pl.to_be_bytes());
            }
            if let Ok(p) = Ipv6Packet::new_checked(&data[..])
                && let Ok(up) = p.upper_layer()
            {
                prop_assert!(up.offset <= data.len());
            }
            let _ = Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&data[..]));
        }

        #[test]
        fn agrees_with_etherparse(
            r in repr_strategy(),
            exts in proptest::collection::vec(ext_strategy(), 0..=MAX_EXT_HEADERS),
            upper in prop_oneof![Just(6u8), Just(17), Just(58), Just(59)],
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let (first, mut payload) = build_chain(&exts, upper);
            payload.extend_from_slice(&tail);
            let r = Ipv6Repr { next_header: first, payload_len: payload.len(), ..r };
            let mut buf = vec![0u8; 40];
            r.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..])).unwrap();
            buf.extend_from_slice(&payload);

            let ours = Ipv6Packet::new_checked(&buf[..]).unwrap();
            let h = etherparse::Ipv6HeaderSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(h.source_addr(), ours.src_addr());
            prop_assert_eq!(h.destination_addr(), ours.dst_addr());
            prop_assert_eq!(h.payload_length(), ours.payload_len());
            prop_assert_eq!(h.next_header().0, ours.next_header());
            prop_assert_eq!(h.hop_limit(), ours.hop_limit());

            // etherparse keeps walking past a non-first fragment; compare
            // only chains where that cannot differ.
            let non_first_frag_inside = exts.iter().enumerate().any(|(i, e)| {
                matches!(e, Ext::Frag(w) if w >> 3 != 0) && i + 1 < exts.len()
            });
            let hbh_not_first = exts.iter().skip(1).any(|e| matches!(e, Ext::Opts(0, _)));
            let theirs = etherparse::Ipv6ExtensionsSlice::from_slice(
                etherparse::IpNumber(first),
                ours.payload(),
            );
            match ours.upper_layer() {
                Ok(up) => {
                    if !non_first_frag_inside {
                        prop_assert!(!hbh_not_first);
                        let (e, ip, rest) = theirs.unwrap();
                        prop_assert_eq!(ip.0, up.protocol);
                        prop_assert_eq!(40 + payload.len() - rest.len(), up.offset);
                        prop_assert_eq!(e.is_fragmenting_payload(), up.is_fragment);
                        prop_assert_eq!(up.protocol, upper);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, WireError::ExtHeaderChain);
                    prop_assert!(hbh_not_first);
                    prop_assert!(theirs.is_err());
                }
            }
        }
    }
}
