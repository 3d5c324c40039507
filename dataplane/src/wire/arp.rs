//! ARP (RFC 826) for Ethernet/IPv4 only: the 28-byte [`ArpPacket`] view,
//! [`ArpOperation`] and [`ArpRepr`].
//!
//! A packet whose hardware type is not Ethernet (1), whose protocol type is
//! not IPv4 (0x0800), or whose address lengths are not 6 and 4 is rejected as
//! [`WireError::Unsupported`]: the dataplane only answers for IPv4 addresses
//! on Ethernet.

use std::net::Ipv4Addr;

use super::WireError;
use super::ethernet::{EtherType, EthernetAddress};

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// ARP hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// The ARP opcode.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Who has `target_ip`? (1)
    Request,
    /// `sender_ip` is at `sender_hw_addr` (2)
    Reply,
    /// Any other opcode (e.g. RARP).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    #[inline]
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    #[inline]
    fn from(v: ArpOperation) -> Self {
        match v {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking the address types/sizes and the 28-byte length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check done by `new_checked`: `Truncated` or `Unsupported`.
    pub fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        match *data {
            [h0, h1, p0, p1, hlen, plen, ..] => {
                if u16::from_be_bytes([h0, h1]) != HTYPE_ETHERNET
                    || u16::from_be_bytes([p0, p1]) != EtherType::IPV4.0
                    || hlen != 6
                    || plen != 4
                {
                    return Err(WireError::Unsupported);
                }
            }
            _ => return Err(WireError::Truncated),
        }
        if data.len() < PACKET_LEN {
            return Err(WireError::Truncated);
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

    #[inline]
    fn mac_at(&self, r: core::ops::Range<usize>) -> EthernetAddress {
        let d = &self.buffer.as_ref()[r];
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    #[inline]
    fn ip_at(&self, r: core::ops::Range<usize>) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[r];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(self.u16_at(field::PTYPE))
    }

    /// Hardware address length (6).
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4).
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The opcode.
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.u16_at(field::OPER))
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_hw_addr(&self) -> EthernetAddress {
        self.mac_at(field::SHA)
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    /// Target hardware address (ignored in requests).
    #[inline]
    pub fn target_hw_addr(&self) -> EthernetAddress {
        self.mac_at(field::THA)
    }

    /// Target protocol address.
    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 address-type fields (htype, ptype, hlen, plen).
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let d = self.buffer.as_mut();
        d[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        d[field::PTYPE].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        d[field::HLEN] = 6;
        d[field::PLEN] = 4;
    }

    /// Sets the opcode.
    #[inline]
    pub fn set_operation(&mut self, op: ArpOperation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(op).to_be_bytes());
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hw_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hw_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A decoded Ethernet/IPv4 ARP packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request, reply or other.
    pub operation: ArpOperation,
    /// Sender MAC address.
    pub sender_hw_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// Target MAC address.
    pub target_hw_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Decodes a packet, checking it first.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr, WireError> {
        packet.check()?;
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_hw_addr: packet.sender_hw_addr(),
            sender_ip: packet.sender_ip(),
            target_hw_addr: packet.target_hw_addr(),
            target_ip: packet.target_ip(),
        })
    }

    /// Length of the emitted packet (28).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes all 28 bytes; `Truncated` if the buffer is shorter.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut ArpPacket<T>,
    ) -> Result<(), WireError> {
        if packet.buffer.as_ref().len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_sender_hw_addr(self.sender_hw_addr);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_hw_addr(self.target_hw_addr);
        packet.set_target_ip(self.target_ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    // "Who has 192.168.1.1? Tell 192.168.1.100" from 3c:fd:fe:12:34:56.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, // Ethernet
        0x08, 0x00, // IPv4
        0x06, 0x04, // sizes
        0x00, 0x01, // request
        0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56, // sha
        192, 168, 1, 100, // spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
        192, 168, 1, 1, // tpa
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_hw_addr: EthernetAddress([0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56]),
            sender_ip: Ipv4Addr::new(192, 168, 1, 100),
            target_hw_addr: EthernetAddress([0; 6]),
            target_ip: Ipv4Addr::new(192, 168, 1, 1),
        }
    }

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::IPV4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(ArpRepr::parse(&p).unwrap(), request_repr());
    }

    #[test]
    fn emit_request_matches_fixture() {
        let mut buf = [0xaau8; 28];
        request_repr()
            .emit(&mut ArpPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, REQUEST);
        let mut short = [0u8; 27];
        assert_eq!(
            request_repr().emit(&mut ArpPacket::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut b = REQUEST.to_vec();
        b.extend_from_slice(&[0; 18]);
        let p = ArpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p).unwrap(), request_repr());
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..REQUEST.len() {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]).err(),
                Some(WireError::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn non_ethernet_ipv4_is_unsupported() {
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[at] = v;
            assert_eq!(
                ArpPacket::new_checked(&b[..]).err(),
                Some(WireError::Unsupported)
            );
        }
    }

    #[test]
    fn operations_convert() {
        assert_eq!(ArpOperation::from(2), ArpOperation::Reply);
        assert_eq!(ArpOperation::from(3), ArpOperation::Unknown(3));
        assert_eq!(u16::from(ArpOperation::Unknown(4)), 4);
        assert_eq!(u16::from(ArpOperation::Request), 1);
    }

    fn repr_strategy() -> impl Strategy<Value = ArpRepr> {
        (
            any::<u16>(),
            any::<[u8; 6]>(),
            any::<[u8; 4]>(),
            any::<[u8; 6]>(),
            any::<[u8; 4]>(),
        )
            .prop_map(|(op, sha, spa, tha, tpa)| ArpRepr {
                operation: ArpOperation::from(op),
                sender_hw_addr: EthernetAddress(sha),
                sender_ip: Ipv4Addr::from(spa),
                target_hw_addr: EthernetAddress(tha),
                target_ip: Ipv4Addr::from(tpa),
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr_strategy()) {
            let mut buf = [0u8; 28];
            r.emit(&mut ArpPacket::new_unchecked(&mut buf[..])).unwrap();
            let p = ArpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(ArpRepr::parse(&p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&data[..]));
        }

        #[test]
        fn agrees_with_etherparse(r in repr_strategy()) {
            let mut buf = [0u8; 28];
            r.emit(&mut ArpPacket::new_unchecked(&mut buf[..])).unwrap();
            let theirs = etherparse::ArpPacketSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(theirs.hw_addr_type().0, 1);
            prop_assert_eq!(theirs.proto_addr_type().0, 0x0800);
            prop_assert_eq!(theirs.operation().0, u16::from(r.operation));
            prop_assert_eq!(theirs.sender_hw_addr(), &r.sender_hw_addr.0[..]);
            prop_assert_eq!(theirs.sender_protocol_addr(), &r.sender_ip.octets()[..]);
            prop_assert_eq!(theirs.target_hw_addr(), &r.target_hw_addr.0[..]);
            prop_assert_eq!(theirs.target_protocol_addr(), &r.target_ip.octets()[..]);
        }
    }
}
