//! Ethernet II frames with at most one IEEE 802.1Q VLAN tag: the MAC address
//! and EtherType newtypes, the [`EthernetFrame`] view and [`EthernetRepr`].
//!
//! Only a single 802.1Q tag (TPID 0x8100) is walked. An 802.1ad S-tag
//! (0x88A8, Q-in-Q) is reported as the frame's EtherType and left for the
//! caller to drop as unsupported. The frame check sequence is assumed to have
//! been stripped by the NIC; the payload runs to the end of the buffer and may
//! include Ethernet padding, which the IP layer cuts off by its own length.

use core::fmt;

use super::WireError;

/// A 48-bit IEEE 802 MAC address.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Builds an address from the first six bytes of `data`, or `None` if shorter.
    #[inline]
    pub fn from_bytes(data: &[u8]) -> Option<EthernetAddress> {
        match *data {
            [a, b, c, d, e, f, ..] => Some(EthernetAddress([a, b, c, d, e, f])),
            _ => None,
        }
    }

    /// The address as bytes.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    #[inline]
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// True if the I/G bit (least significant bit of the first octet) is set; includes broadcast.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True if the I/G bit is clear.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// True if the U/L bit (second least significant bit of the first octet) is set.
    #[inline]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An EtherType (or 802.1Q TPID) value.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol (RFC 826).
    pub const ARP: EtherType = EtherType(0x0806);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86DD);
    /// IEEE 802.1Q customer VLAN tag; the only tag that is walked.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service tag (Q-in-Q); not walked, reported as the EtherType.
    pub const QINQ: EtherType = EtherType(0x88A8);
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(v: EtherType) -> Self {
        v.0
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of an Ethernet II header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;

/// A read/write view of an Ethernet II frame (without FCS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds the whole header (14, or 18 if tagged).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check()?;
        Ok(frame)
    }

    /// The check done by `new_checked`.
    #[inline]
    pub fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        match data.get(field::ETHERTYPE) {
            Some(&[a, b]) => {
                if EtherType(u16::from_be_bytes([a, b])) == EtherType::VLAN
                    && data.len() < VLAN_HEADER_LEN
                {
                    Err(WireError::Truncated)
                } else {
                    Ok(())
                }
            }
            _ => Err(WireError::Truncated),
        }
    }

    /// Unwraps the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        let d = &self.buffer.as_ref()[field::DST];
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        let d = &self.buffer.as_ref()[field::SRC];
        EthernetAddress([d[0], d[1], d[2], d[3], d[4], d[5]])
    }

    /// The EtherType/TPID at bytes 12..14 (0x8100 for a tagged frame).
    #[inline]
    pub fn outer_ethertype(&self) -> EtherType {
        let d = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType(u16::from_be_bytes([d[0], d[1]]))
    }

    /// True if the frame carries an 802.1Q tag.
    #[inline]
    pub fn is_tagged(&self) -> bool {
        self.outer_ethertype() == EtherType::VLAN
    }

    /// The 802.1Q tag control information (PCP, DEI, VID), or `None` if untagged.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        if self.is_tagged() {
            let d = &self.buffer.as_ref()[field::TCI];
            Some(u16::from_be_bytes([d[0], d[1]]))
        } else {
            None
        }
    }

    /// The 12-bit VLAN identifier, or `None` if untagged.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The EtherType of the payload: the inner one if tagged.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        if self.is_tagged() {
            let d = &self.buffer.as_ref()[field::INNER_ETHERTYPE];
            EtherType(u16::from_be_bytes([d[0], d[1]]))
        } else {
            self.outer_ethertype()
        }
    }

    /// Header length: 14, or 18 with a VLAN tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Bytes after the header, to the end of the buffer (may include padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_len();
        self.buffer.as_ref().get(hl..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets bytes 12..14 (0x8100 makes the frame tagged).
    #[inline]
    pub fn set_outer_ethertype(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.0.to_be_bytes());
    }

    /// Sets the tag control information; the frame must already be tagged.
    #[inline]
    pub fn set_vlan_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the payload EtherType: the inner one if the frame is tagged.
    #[inline]
    pub fn set_ethertype(&mut self, value: EtherType) {
        let range = if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        self.buffer.as_mut()[range].copy_from_slice(&value.0.to_be_bytes());
    }

    /// Swaps source and destination MAC addresses, to reflect the frame in place.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let dst = self.dst_addr();
        let src = self.src_addr();
        self.set_dst_addr(src);
        self.set_src_addr(dst);
    }

    /// Mutable bytes after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer.as_mut().get_mut(hl..).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AsMut<[u8]> for EthernetFrame<T> {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// A decoded Ethernet II header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC address.
    pub src_addr: EthernetAddress,
    /// Destination MAC address.
    pub dst_addr: EthernetAddress,
    /// 802.1Q tag control information, if tagged.
    pub vlan_tci: Option<u16>,
    /// Payload EtherType (the inner one if tagged).
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Decodes a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr, WireError> {
        frame.check()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan_tci: frame.vlan_tci(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the emitted header: 14, or 18 with a tag.
    #[inline]
    pub const fn header_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header; `Truncated` if the buffer is shorter than `header_len()`,
    /// `Unsupported` for an untagged repr whose EtherType is 0x8100.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut EthernetFrame<T>,
    ) -> Result<(), WireError> {
        if self.vlan_tci.is_none() && self.ethertype == EtherType::VLAN {
            // Would read back as a tagged frame: not representable untagged.
            return Err(WireError::Unsupported);
        }
        if frame.buffer.as_ref().len() < self.header_len() {
            return Err(WireError::Truncated);
        }
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        let data = frame.buffer.as_mut();
        match self.vlan_tci {
            Some(tci) => {
                data[field::ETHERTYPE].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
                data[field::TCI].copy_from_slice(&tci.to_be_bytes());
                data[field::INNER_ETHERTYPE].copy_from_slice(&self.ethertype.0.to_be_bytes());
            }
            None => data[field::ETHERTYPE].copy_from_slice(&self.ethertype.0.to_be_bytes()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    // An untagged IPv4 frame header followed by 4 payload bytes.
    const UNTAGGED: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst (locally administered)
        0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56, // src
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x14, // payload
    ];

    // A VLAN 100 (PCP 5) tagged IPv6 frame header followed by 2 payload bytes.
    const TAGGED: [u8; 20] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // dst (IPv6 multicast)
        0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56, // src
        0x81, 0x00, // 802.1Q
        0xa0, 0x64, // PCP 5, VID 100
        0x86, 0xdd, // IPv6
        0x60, 0x00,
    ];

    #[test]
    fn parse_untagged() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            f.src_addr(),
            EthernetAddress([0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56])
        );
        assert_eq!(f.outer_ethertype(), EtherType::IPV4);
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.vlan_tci(), None);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &[0x45, 0x00, 0x00, 0x14]);
        let r = EthernetRepr::parse(&f).unwrap();
        assert_eq!(r.header_len(), 14);
        assert_eq!(r.vlan_tci, None);
    }

    #[test]
    fn parse_tagged() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.outer_ethertype(), EtherType::VLAN);
        assert_eq!(f.vlan_tci(), Some(0xa064));
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.ethertype(), EtherType::IPV6);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0x60, 0x00]);
        assert!(f.dst_addr().is_multicast());
    }

    #[test]
    fn qinq_is_not_walked() {
        let mut b = TAGGED;
        b[12] = 0x88;
        b[13] = 0xa8;
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::QINQ);
        assert_eq!(f.vlan_tci(), None);
        assert_eq!(f.header_len(), 14);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&UNTAGGED[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        assert!(EthernetFrame::new_checked(&UNTAGGED[..14]).is_ok());
        for len in 0..18 {
            assert_eq!(
                EthernetFrame::new_checked(&TAGGED[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        assert!(EthernetFrame::new_checked(&TAGGED[..18]).is_ok());
    }

    #[test]
    fn emit_matches_fixtures() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        let mut buf = [0u8; 18];
        r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, TAGGED[..18]);

        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        let mut buf = [0u8; 14];
        r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, UNTAGGED[..14]);
        let mut short = [0u8; 13];
        assert_eq!(
            r.emit(&mut EthernetFrame::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
        let lying = EthernetRepr {
            ethertype: EtherType::VLAN,
            ..r
        };
        assert_eq!(
            lying.emit(&mut EthernetFrame::new_unchecked(&mut buf[..])),
            Err(WireError::Unsupported)
        );
    }

    #[test]
    fn swap_addrs_reflects() {
        let mut b = UNTAGGED;
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.swap_addrs();
        assert_eq!(
            f.dst_addr(),
            EthernetAddress([0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56])
        );
        assert_eq!(f.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        f.payload_mut()[0] = 0x46;
        assert_eq!(b[14], 0x46);
    }

    #[test]
    fn address_classes_and_display() {
        let b = EthernetAddress::BROADCAST;
        assert!(b.is_broadcast() && b.is_multicast() && !b.is_unicast());
        let u = EthernetAddress([0x3c, 0xfd, 0xfe, 0x12, 0x34, 0x56]);
        assert!(u.is_unicast() && !u.is_local() && !u.is_broadcast());
        assert!(EthernetAddress([0x02, 0, 0, 0, 0, 1]).is_local());
        assert_eq!(u.to_string(), "3c:fd:fe:12:34:56");
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Some(EthernetAddress([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(EtherType::ARP.to_string(), "0x0806");
    }

    fn repr_strategy() -> impl Strategy<Value = EthernetRepr> {
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            proptest::option::of(any::<u16>()),
            any::<u16>(),
        )
            .prop_map(|(s, d, tci, et)| EthernetRepr {
                src_addr: EthernetAddress(s),
                dst_addr: EthernetAddress(d),
                vlan_tci: tci,
                ethertype: EtherType(et),
            })
            // An untagged frame whose type is 0x8100 is a tagged frame.
            .prop_filter("untagged 0x8100", |r| {
                r.vlan_tci.is_some() || r.ethertype != EtherType::VLAN
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr_strategy(), extra in 0usize..8) {
            let mut buf = vec![0u8; r.header_len() + extra];
            r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..])).unwrap();
            let f = EthernetFrame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
            prop_assert_eq!(f.payload().len(), extra);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = EthernetFrame::new_checked(&data[..]) {
                let _ = EthernetRepr::parse(&f).unwrap();
                let _ = (f.dst_addr(), f.src_addr(), f.vlan_tci(), f.ethertype());
                prop_assert!(f.header_len() + f.payload().len() == data.len());
            }
        }

        #[test]
        fn agrees_with_etherparse(
            r in repr_strategy(),
            payload in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut buf = vec![0u8; r.header_len()];
            r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..])).unwrap();
            buf.extend_from_slice(&payload);
            let ours = EthernetFrame::new_checked(&buf[..]).unwrap();
            let eth = etherparse::Ethernet2HeaderSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(eth.destination(), ours.dst_addr().0);
            prop_assert_eq!(eth.source(), ours.src_addr().0);
            prop_assert_eq!(eth.ether_type().0, ours.outer_ethertype().0);
            if let Some(tci) = ours.vlan_tci() {
                let vlan = etherparse::SingleVlanHeaderSlice::from_slice(&buf[14..]).unwrap();
                prop_assert_eq!(vlan.vlan_identifier().value(), tci & 0x0fff);
                prop_assert_eq!(vlan.priority_code_point().value(), (tci >> 13) as u8);
                prop_assert_eq!(vlan.ether_type().0, ours.ethertype().0);
            }
        }
    }
}
