//! ICMPv6 (RFC 4443) with the Neighbor Discovery messages the dataplane
//! answers (RFC 4861): the [`Icmpv6Packet`] view, type constants, NDP option
//! decoding ([`NdpOption`], [`NdpOptionIter`]) and [`Icmpv6Repr`].
//!
//! The checksum covers the whole message plus the IPv6 pseudo-header (RFC
//! 8200 section 8.1), so the view must be cut to the upper-layer payload.
//! The checked constructor requires the 4-byte common header, 8 bytes for
//! echo messages and 24 for Neighbor Solicitation/Advertisement; fields that
//! a shorter message of another type does not have read as zero (or the
//! unspecified address) rather than panicking.

use std::net::Ipv6Addr;

use super::ethernet::EthernetAddress;
use super::{WireError, checksum, protocol};

/// Destination Unreachable.
pub const DST_UNREACHABLE: u8 = 1;
/// Packet Too Big.
pub const PACKET_TOO_BIG: u8 = 2;
/// Time Exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Parameter Problem.
pub const PARAM_PROBLEM: u8 = 4;
/// Echo Request.
pub const ECHO_REQUEST: u8 = 128;
/// Echo Reply.
pub const ECHO_REPLY: u8 = 129;
/// Router Solicitation (RFC 4861).
pub const ROUTER_SOLICIT: u8 = 133;
/// Router Advertisement (RFC 4861).
pub const ROUTER_ADVERT: u8 = 134;
/// Neighbor Solicitation (RFC 4861).
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor Advertisement (RFC 4861).
pub const NEIGHBOR_ADVERT: u8 = 136;
/// Redirect (RFC 4861).
pub const REDIRECT: u8 = 137;

/// Destination Unreachable code: port unreachable.
pub const PORT_UNREACHABLE: u8 = 4;

/// NDP option type: Source Link-Layer Address.
pub const NDP_OPT_SOURCE_LLADDR: u8 = 1;
/// NDP option type: Target Link-Layer Address.
pub const NDP_OPT_TARGET_LLADDR: u8 = 2;

const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
}

/// Length of the common header (type, code, checksum).
pub const HEADER_LEN: usize = 4;
/// Length of an echo header.
pub const ECHO_HEADER_LEN: usize = 8;
/// Length of a Neighbor Solicitation/Advertisement without options.
pub const NDP_NEIGHBOR_LEN: usize = 24;
/// Length of an Ethernet link-layer address option.
const LLADDR_OPT_LEN: usize = 8;

/// Minimum length the checked constructor requires for a message type.
#[inline]
const fn min_len(msg_type: u8) -> usize {
    match msg_type {
        ECHO_REQUEST | ECHO_REPLY => ECHO_HEADER_LEN,
        NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => NDP_NEIGHBOR_LEN,
        _ => HEADER_LEN,
    }
}

/// One decoded NDP option.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NdpOption {
    /// Source Link-Layer Address (type 1) holding an Ethernet address.
    SourceLinkLayerAddr(EthernetAddress),
    /// Target Link-Layer Address (type 2) holding an Ethernet address.
    TargetLinkLayerAddr(EthernetAddress),
    /// Any other option, or a link-layer option that is not 8 bytes long.
    Unknown {
        /// Option type.
        kind: u8,
        /// Length in units of 8 octets.
        len: u8,
    },
}

/// Iterator over NDP options.
///
/// Yields `Err(BadOption)` once and stops if an option has length 0, its
/// length byte is missing, or it runs past the message.
#[derive(Clone, Debug)]
pub struct NdpOptionIter<'a> {
    data: &'a [u8],
}

impl<'a> NdpOptionIter<'a> {
    /// Iterates over raw option bytes.
    #[inline]
    pub const fn new(options: &'a [u8]) -> NdpOptionIter<'a> {
        NdpOptionIter { data: options }
    }
}

impl Iterator for NdpOptionIter<'_> {
    type Item = Result<NdpOption, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let parsed = match *self.data {
            [kind, units, ..] if units != 0 => {
                let len = usize::from(units) * 8;
                match self.data.split_at_checked(len) {
                    Some((opt, rest)) => {
                        self.data = rest;
                        match (kind, opt) {
                            (NDP_OPT_SOURCE_LLADDR, &[_, _, a, b, c, d, e, f]) => {
                                NdpOption::SourceLinkLayerAddr(EthernetAddress([a, b, c, d, e, f]))
                            }
                            (NDP_OPT_TARGET_LLADDR, &[_, _, a, b, c, d, e, f]) => {
                                NdpOption::TargetLinkLayerAddr(EthernetAddress([a, b, c, d, e, f]))
                            }
                            _ => NdpOption::Unknown { kind, len: units },
                        }
                    }
                    None => {
                        self.data = &[];
                        return Some(Err(WireError::BadOption));
                    }
                }
            }
            _ => {
                self.data = &[];
                return Some(Err(WireError::BadOption));
            }
        };
        Some(Ok(parsed))
    }
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after checking the per-type minimum length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check done by `new_checked`: `Truncated` below 4 bytes, below 8
    /// for echo, below 24 for Neighbor Solicitation/Advertisement.
    #[inline]
    pub fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        match data.first() {
            Some(&t) if data.len() >= HEADER_LEN && data.len() >= min_len(t) => Ok(()),
            _ => Err(WireError::Truncated),
        }
    }

    /// Unwraps the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        match self.buffer.as_ref().get(r) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Echo identifier (0 if the message is shorter than 6 bytes).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Echo sequence number (0 if the message is shorter than 8 bytes).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    #[inline]
    fn na_flags(&self) -> u8 {
        self.buffer
            .as_ref()
            .get(field::NA_FLAGS)
            .copied()
            .unwrap_or(0)
    }

    /// Neighbor Advertisement Router flag.
    #[inline]
    pub fn na_router(&self) -> bool {
        self.na_flags() & NA_ROUTER != 0
    }

    /// Neighbor Advertisement Solicited flag.
    #[inline]
    pub fn na_solicited(&self) -> bool {
        self.na_flags() & NA_SOLICITED != 0
    }

    /// Neighbor Advertisement Override flag.
    #[inline]
    pub fn na_override(&self) -> bool {
        self.na_flags() & NA_OVERRIDE != 0
    }

    /// NDP target address, bytes 8..24 (unspecified if the message is shorter).
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        match self.buffer.as_ref().get(field::TARGET) {
            Some(d) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(d);
                Ipv6Addr::from(a)
            }
            None => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// Everything after the checksum (bytes 4..).
    #[inline]
    pub fn body(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Bytes after the first 8 (echo data, or the invoking packet of an error).
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(ECHO_HEADER_LEN..).unwrap_or(&[])
    }

    /// Raw NDP option bytes for RS, RA, NS, NA and Redirect; empty otherwise.
    #[inline]
    pub fn ndp_options(&self) -> &[u8] {
        let start = match self.msg_type() {
            ROUTER_SOLICIT => 8,
            ROUTER_ADVERT => 16,
            NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => 24,
            REDIRECT => 40,
            _ => return &[],
        };
        self.buffer.as_ref().get(start..).unwrap_or(&[])
    }

    /// Iterates over the NDP options.
    #[inline]
    pub fn ndp_options_iter(&self) -> NdpOptionIter<'_> {
        NdpOptionIter::new(self.ndp_options())
    }

    /// True if the checksum verifies against the IPv6 pseudo-header.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_v6(src, dst, protocol::ICMPV6, len);
        checksum::fold(checksum::sum(data, ph)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        if let Some(d) = self.buffer.as_mut().get_mut(r) {
            d.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Stores a checksum value.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    /// Sets the echo identifier (no-op if the buffer is too short).
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number (no-op if the buffer is too short).
    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_SEQNO, v);
    }

    /// Sets the Neighbor Advertisement flags and clears the reserved bits and bytes 5..8.
    #[inline]
    pub fn set_na_flags(&mut self, router: bool, solicited: bool, override_: bool) {
        let mut flags = 0;
        if router {
            flags |= NA_ROUTER;
        }
        if solicited {
            flags |= NA_SOLICITED;
        }
        if override_ {
            flags |= NA_OVERRIDE;
        }
        if let Some(d) = self.buffer.as_mut().get_mut(4..8) {
            d.copy_from_slice(&[flags, 0, 0, 0]);
        }
    }

    /// Sets the NDP target address (no-op if the buffer is too short).
    #[inline]
    pub fn set_target_addr(&mut self, addr: &Ipv6Addr) {
        if let Some(d) = self.buffer.as_mut().get_mut(field::TARGET) {
            d.copy_from_slice(&addr.octets());
        }
    }

    /// Mutable bytes after the checksum.
    #[inline]
    pub fn body_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Mutable bytes after the first 8.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(ECHO_HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over the whole buffer with the IPv6 pseudo-header.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let ph = checksum::pseudo_header_v6(src, dst, protocol::ICMPV6, len);
        let c = !checksum::fold(checksum::sum(data, ph));
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv6Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A decoded ICMPv6 message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Icmpv6Repr {
    /// Echo Request (type 128, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data (after byte 8).
        data_len: usize,
    },
    /// Echo Reply (type 129, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data (after byte 8).
        data_len: usize,
    },
    /// Neighbor Solicitation (type 135, code 0).
    NeighborSolicit {
        /// The address being resolved.
        target_addr: Ipv6Addr,
        /// The first Source Link-Layer Address option, if any.
        source_lladdr: Option<EthernetAddress>,
    },
    /// Neighbor Advertisement (type 136, code 0).
    NeighborAdvert {
        /// Sender is a router.
        router: bool,
        /// Sent in response to a solicitation.
        solicited: bool,
        /// Should override an existing cache entry.
        override_: bool,
        /// The address being advertised.
        target_addr: Ipv6Addr,
        /// The first Target Link-Layer Address option, if any.
        target_lladdr: Option<EthernetAddress>,
    },
    /// Any other message, or one of the above with a non-zero code.
    Other {
        /// Message type.
        msg_type: u8,
        /// Message code.
        code: u8,
        /// Bytes after the checksum (from byte 4).
        data_len: usize,
    },
}

impl Icmpv6Repr {
    /// Decodes a message, checking it first. The checksum is not verified.
    ///
    /// NS/NA options are validated (`BadOption` if malformed); only the
    /// first link-layer address option of the relevant kind is kept.
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv6Packet<T>) -> Result<Icmpv6Repr, WireError> {
        packet.check()?;
        Ok(match (packet.msg_type(), packet.code()) {
            (ECHO_REQUEST, 0) => Icmpv6Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len: packet.data().len(),
            },
            (ECHO_REPLY, 0) => Icmpv6Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len: packet.data().len(),
            },
            (NEIGHBOR_SOLICIT, 0) => {
                let mut source_lladdr = None;
                for opt in packet.ndp_options_iter() {
                    if let NdpOption::SourceLinkLayerAddr(a) = opt? {
                        source_lladdr = source_lladdr.or(Some(a));
                    }
                }
                Icmpv6Repr::NeighborSolicit {
                    target_addr: packet.target_addr(),
                    source_lladdr,
                }
            }
            (NEIGHBOR_ADVERT, 0) => {
                let mut target_lladdr = None;
                for opt in packet.ndp_options_iter() {
                    if let NdpOption::TargetLinkLayerAddr(a) = opt? {
                        target_lladdr = target_lladdr.or(Some(a));
                    }
                }
                Icmpv6Repr::NeighborAdvert {
                    router: packet.na_router(),
                    solicited: packet.na_solicited(),
                    override_: packet.na_override(),
                    target_addr: packet.target_addr(),
                    target_lladdr,
                }
            }
            (msg_type, code) => Icmpv6Repr::Other {
                msg_type,
                code,
                data_len: packet.body().len(),
            },
        })
    }

    /// Length of the emitted message, data included.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        match *self {
            Icmpv6Repr::EchoRequest { data_len, .. } | Icmpv6Repr::EchoReply { data_len, .. } => {
                ECHO_HEADER_LEN.saturating_add(data_len)
            }
            Icmpv6Repr::NeighborSolicit {
                source_lladdr: lladdr,
                ..
            }
            | Icmpv6Repr::NeighborAdvert {
                target_lladdr: lladdr,
                ..
            } => {
                if lladdr.is_some() {
                    NDP_NEIGHBOR_LEN + LLADDR_OPT_LEN
                } else {
                    NDP_NEIGHBOR_LEN
                }
            }
            Icmpv6Repr::Other { data_len, .. } => HEADER_LEN.saturating_add(data_len),
        }
    }

    /// Writes the message with a zero checksum; fill it with
    /// [`Icmpv6Packet::fill_checksum`] once the data is in place.
    ///
    /// Echo and `Other` write only their header (8 and 4 bytes), leaving the
    /// data to the caller; NS/NA write the whole message, option included.
    /// `Truncated` if the buffer is shorter than what is written.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
    ) -> Result<(), WireError> {
        let need = match *self {
            Icmpv6Repr::EchoRequest { .. } | Icmpv6Repr::EchoReply { .. } => ECHO_HEADER_LEN,
            Icmpv6Repr::Other { .. } => HEADER_LEN,
            _ => self.buffer_len(),
        };
        if packet.buffer.as_ref().len() < need {
            return Err(WireError::Truncated);
        }
        match *self {
            Icmpv6Repr::EchoRequest { ident, seq_no, .. }
            | Icmpv6Repr::EchoReply { ident, seq_no, .. } => {
                let t = if matches!(self, Icmpv6Repr::EchoRequest { .. }) {
                    ECHO_REQUEST
                } else {
                    ECHO_REPLY
                };
                packet.set_msg_type(t);
                packet.set_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Icmpv6Repr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => {
                packet.set_msg_type(NEIGHBOR_SOLICIT);
                packet.set_code(0);
                packet.set_na_flags(false, false, false);
                packet.set_target_addr(&target_addr);
                emit_lladdr(packet, NDP_OPT_SOURCE_LLADDR, source_lladdr);
            }
            Icmpv6Repr::NeighborAdvert {
                router,
                solicited,
                override_,
                target_addr,
                target_lladdr,
            } => {
                packet.set_msg_type(NEIGHBOR_ADVERT);
                packet.set_code(0);
                packet.set_na_flags(router, solicited, override_);
                packet.set_target_addr(&target_addr);
                emit_lladdr(packet, NDP_OPT_TARGET_LLADDR, target_lladdr);
            }
            Icmpv6Repr::Other { msg_type, code, .. } => {
                packet.set_msg_type(msg_type);
                packet.set_code(code);
            }
        }
        packet.set_checksum(0);
        Ok(())
    }
}

/// Writes an Ethernet link-layer address option at byte 24, if there is one.
fn emit_lladdr<T: AsRef<[u8]> + AsMut<[u8]>>(
    packet: &mut Icmpv6Packet<T>,
    kind: u8,
    addr: Option<EthernetAddress>,
) {
    if let Some(a) = addr
        && let Some(d) = packet
            .buffer
            .as_mut()
            .get_mut(NDP_NEIGHBOR_LEN..NDP_NEIGHBOR_LEN + LLADDR_OPT_LEN)
    {
        let [b0, b1, b2, b3, b4, b5] = a.0;
        d.copy_from_slice(&[kind, 1, b0, b1, b2, b3, b4, b5]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn src() -> Ipv6Addr {
        "fe80::3efd:feff:fe12:3456".parse().unwrap()
    }

    fn solicited_node() -> Ipv6Addr {
        "ff02::1:ff00:1".parse().unwrap()
    }

    fn target() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    // Neighbor Solicitation for 2001:db8::1 with a source link-layer option.
    fn ns_bytes() -> Vec<u8> {
        let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&target().octets());
        b.extend_from_slice(&[1, 1, 0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56]);
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&src(), &solicited_node());
        b
    }

    #[test]
    fn parse_neighbor_solicit() {
        let b = ns_bytes();
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), NEIGHBOR_SOLICIT);
        assert!(p.verify_checksum(&src(), &solicited_node()));
        assert!(!p.verify_checksum(&target(), &solicited_node()));
        assert_eq!(p.target_addr(), target());
        assert_eq!(
            p.ndp_options_iter().collect::<Vec<_>>(),
            [Ok(NdpOption::SourceLinkLayerAddr(EthernetAddress([
                0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56
            ])))]
        );
        assert_eq!(
            Icmpv6Repr::parse(&p).unwrap(),
            Icmpv6Repr::NeighborSolicit {
                target_addr: target(),
                source_lladdr: Some(EthernetAddress([0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56]))
            }
        );
    }

    #[test]
    fn emit_neighbor_advert() {
        let r = Icmpv6Repr::NeighborAdvert {
            router: false,
            solicited: true,
            override_: true,
            target_addr: target(),
            target_lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 1])),
        };
        assert_eq!(r.buffer_len(), 32);
        let mut buf = [0xffu8; 32];
        let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p).unwrap();
        p.fill_checksum(&target(), &src());
        let mut expect = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
        expect.extend_from_slice(&target().octets());
        expect.extend_from_slice(&[2, 1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&buf[4..], &expect[4..]);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&target(), &src()));
        assert!(p.na_solicited() && p.na_override() && !p.na_router());
        assert_eq!(Icmpv6Repr::parse(&p).unwrap(), r);
        let mut short = [0u8; 31];
        assert_eq!(
            r.emit(&mut Icmpv6Packet::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn echo_request_and_reply() {
        let mut b = vec![128, 0, 0, 0, 0xbe, 0xef, 0, 7, 1, 2, 3];
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&src(), &target());
        assert_eq!(
            Icmpv6Repr::parse(&p).unwrap(),
            Icmpv6Repr::EchoRequest {
                ident: 0xbeef,
                seq_no: 7,
                data_len: 3
            }
        );
        // Answer in place: change the type, update the checksum incrementally.
        let c = p.checksum();
        p.set_msg_type(ECHO_REPLY);
        p.set_checksum(checksum::update16(c, 0x8000, 0x8100));
        assert!(p.verify_checksum(&target(), &src()));
        assert_eq!(p.data(), &[1, 2, 3]);
    }

    #[test]
    fn truncated_at_every_length() {
        let b = ns_bytes();
        for len in 0..24 {
            assert_eq!(
                Icmpv6Packet::new_checked(&b[..len]).err(),
                Some(WireError::Truncated),
                "len {len}"
            );
        }
        // 24..32 cuts into the option: a malformed option.
        for len in 25..32 {
            let p = Icmpv6Packet::new_checked(&b[..len]).unwrap();
            assert_eq!(
                Icmpv6Repr::parse(&p),
                Err(WireError::BadOption),
                "len {len}"
            );
        }
        let echo = [129u8, 0, 0, 0, 0, 1, 0, 2];
        for len in 0..8 {
            assert_eq!(
                Icmpv6Packet::new_checked(&echo[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        // Other types need only 4 bytes; their missing fields read as zero.
        let p = Icmpv6Packet::new_checked(&[1u8, 4, 0, 0][..]).unwrap();
        assert_eq!(p.echo_ident(), 0);
        assert_eq!(p.target_addr(), Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            Icmpv6Repr::parse(&p).unwrap(),
            Icmpv6Repr::Other {
                msg_type: DST_UNREACHABLE,
                code: PORT_UNREACHABLE,
                data_len: 0
            }
        );
    }

    #[test]
    fn ndp_option_errors() {
        let items: Vec<_> = NdpOptionIter::new(&[1, 0, 0, 0, 0, 0, 0, 0]).collect();
        assert_eq!(items, [Err(WireError::BadOption)]);
        let items: Vec<_> = NdpOptionIter::new(&[1]).collect();
        assert_eq!(items, [Err(WireError::BadOption)]);
        let items: Vec<_> = NdpOptionIter::new(&[5, 1, 0, 0, 0, 0, 5, 0xdc, 2, 2, 0, 0]).collect();
        assert_eq!(
            items,
            [
                Ok(NdpOption::Unknown { kind: 5, len: 1 }),
                Err(WireError::BadOption)
            ]
        );
        // A 16-byte link-layer option (not Ethernet) is reported as unknown.
        let items: Vec<_> =
            NdpOptionIter::new(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).collect();
        assert_eq!(items, [Ok(NdpOption::Unknown { kind: 1, len: 2 })]);
    }

    fn repr_strategy() -> impl Strategy<Value = Icmpv6Repr> {
        let addr = any::<[u8; 16]>().prop_map(Ipv6Addr::from);
        let mac = proptest::option::of(any::<[u8; 6]>().prop_map(EthernetAddress));
        prop_oneof![
            (any::<u16>(), any::<u16>(), 0usize..32).prop_map(|(ident, seq_no, data_len)| {
                Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no,
                    data_len,
                }
            }),
            (any::<u16>(), any::<u16>(), 0usize..32).prop_map(|(ident, seq_no, data_len)| {
                Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data_len,
                }
            }),
            (addr.clone(), mac.clone()).prop_map(|(target_addr, source_lladdr)| {
                Icmpv6Repr::NeighborSolicit {
                    target_addr,
                    source_lladdr,
                }
            }),
            (any::<(bool, bool, bool)>(), addr, mac).prop_map(
                |((router, solicited, override_), target_addr, target_lladdr)| {
                    Icmpv6Repr::NeighborAdvert {
                        router,
                        solicited,
                        override_,
                        target_addr,
                        target_lladdr,
                    }
                }
            ),
            (any::<u8>(), any::<u8>(), 20usize..40)
                .prop_filter("not a decoded message", |(t, c, _)| {
                    *c != 0
                        || !matches!(
                            *t,
                            ECHO_REQUEST | ECHO_REPLY | NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT
                        )
                })
                .prop_map(|(msg_type, code, data_len)| Icmpv6Repr::Other {
                    msg_type,
                    code,
                    data_len
                }),
        ]
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr_strategy(), fill in any::<u8>()) {
            let mut buf = vec![fill; r.buffer_len()];
            let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
            r.emit(&mut p).unwrap();
            p.fill_checksum(&src(), &target());
            let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(&src(), &target()));
            prop_assert_eq!(Icmpv6Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(
            mut data in proptest::collection::vec(any::<u8>(), 0..64),
            t in prop_oneof![Just(128u8), Just(129), Just(133), Just(134), Just(135), Just(136), Just(137), any::<u8>()],
        ) {
            if let Some(b) = data.first_mut() {
                *b = t;
            }
            if data.len() > 1 {
                data[1] = 0;
            }
            let p = Icmpv6Packet::new_unchecked(&data[..]);
            if let Ok(r) = Icmpv6Repr::parse(&p) {
                let _ = r.buffer_len();
                let _ = (p.target_addr(), p.echo_seq_no(), p.na_router(), p.data(), p.body());
                let _ = p.ndp_options_iter().count();
            }
        }

        #[test]
        fn agrees_with_etherparse(r in repr_strategy(), fill in any::<u8>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>()) {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let mut buf = vec![fill; r.buffer_len().max(8)];
            let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
            r.emit(&mut p).unwrap();
            p.fill_checksum(&s, &d);
            let ours = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            let theirs = etherparse::Icmpv6Slice::from_slice(&buf).unwrap();
            prop_assert_eq!(theirs.type_u8(), ours.msg_type());
            prop_assert_eq!(theirs.code_u8(), ours.code());
            prop_assert_eq!(theirs.checksum(), ours.checksum());
            prop_assert!(theirs.is_checksum_valid(s.octets(), d.octets()));
            prop_assert_eq!(theirs.payload(), ours.data());
            use etherparse::icmpv6::{Icmpv6PayloadSlice as P, NdpOptionSlice as O};
            match (theirs.icmp_type(), theirs.payload_slice()) {
                (etherparse::Icmpv6Type::EchoRequest(h), _) | (etherparse::Icmpv6Type::EchoReply(h), _) => {
                    prop_assert_eq!(h.id, ours.echo_ident());
                    prop_assert_eq!(h.seq, ours.echo_seq_no());
                }
                (etherparse::Icmpv6Type::NeighborAdvertisement(h), Ok(P::NeighborAdvertisement(na))) => {
                    prop_assert_eq!(h.router, ours.na_router());
                    prop_assert_eq!(h.solicited, ours.na_solicited());
                    prop_assert_eq!(h.r#override, ours.na_override());
                    prop_assert_eq!(na.target_address(), ours.target_addr());
                    let theirs_ll: Vec<Vec<u8>> = na.options_iterator().map(|o| match o.unwrap() {
                        O::TargetLinkLayerAddress(x) => x.link_layer_address().to_vec(),
                        _ => vec![],
                    }).collect();
                    let ours_ll: Vec<Vec<u8>> = ours.ndp_options_iter().map(|o| match o.unwrap() {
                        NdpOption::TargetLinkLayerAddr(a) => a.0.to_vec(),
                        _ => vec![],
                    }).collect();
                    prop_assert_eq!(theirs_ll, ours_ll);
                }
                (etherparse::Icmpv6Type::NeighborSolicitation, Ok(P::NeighborSolicitation(ns))) => {
                    prop_assert_eq!(ns.target_address(), ours.target_addr());
                    let theirs_ll: Vec<Vec<u8>> = ns.options_iterator().map(|o| match o.unwrap() {
                        O::SourceLinkLayerAddress(x) => x.link_layer_address().to_vec(),
                        _ => vec![],
                    }).collect();
                    let ours_ll: Vec<Vec<u8>> = ours.ndp_options_iter().map(|o| match o.unwrap() {
                        NdpOption::SourceLinkLayerAddr(a) => a.0.to_vec(),
                        _ => vec![],
                    }).collect();
                    prop_assert_eq!(theirs_ll, ours_ll);
                }
                _ => {}
            }
        }
    }
}
