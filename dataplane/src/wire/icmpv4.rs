//! ICMP for IPv4 (RFC 792): the [`Icmpv4Packet`] view, message type and
//! code constants, and [`Icmpv4Repr`] for echo and destination-unreachable
//! messages.
//!
//! Every ICMPv4 message has an 8-byte header (type, code, checksum and four
//! type-specific bytes); the checksum covers the whole message with no
//! pseudo-header, so the view must be cut to the IP payload.

use super::{WireError, checksum};

/// Echo Reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination Unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Destination Unreachable (same as [`DEST_UNREACHABLE`], under its ICMPv6 spelling).
pub const DST_UNREACHABLE: u8 = DEST_UNREACHABLE;
/// Echo Request.
pub const ECHO_REQUEST: u8 = 8;
/// Time Exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Destination Unreachable code: port unreachable.
pub const PORT_UNREACHABLE: u8 = 3;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const REST: Range<usize> = 4..8;
}

/// Length of the ICMPv4 header.
pub const HEADER_LEN: usize = 8;

/// A read/write view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check done by `new_checked`: `Truncated` below 8 bytes.
    #[inline]
    pub fn check(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
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

    /// Echo identifier (bytes 4..6).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6..8).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    /// The four type-specific header bytes (e.g. next-hop MTU for "fragmentation needed").
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Bytes after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// True if the checksum over the whole buffer verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref(), 0)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
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

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_SEQNO, v);
    }

    /// Sets the four type-specific header bytes.
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&v.to_be_bytes());
    }

    /// Mutable bytes after the header.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A decoded ICMPv4 message header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Icmpv4Repr {
    /// Echo Request (type 8, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data.
        data_len: usize,
    },
    /// Echo Reply (type 0, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data.
        data_len: usize,
    },
    /// Destination Unreachable (type 3); bytes 4..8 are emitted as zero.
    DstUnreachable {
        /// Reason code (e.g. [`PORT_UNREACHABLE`]).
        code: u8,
        /// Length of the quoted datagram.
        data_len: usize,
    },
    /// Any other type, or echo with a non-zero code; bytes 4..8 are emitted as zero.
    Other {
        /// Message type.
        msg_type: u8,
        /// Message code.
        code: u8,
        /// Bytes after the 8-byte header.
        data_len: usize,
    },
}

impl Icmpv4Repr {
    /// Decodes a message, checking it first. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv4Packet<T>) -> Result<Icmpv4Repr, WireError> {
        packet.check()?;
        let data_len = packet.data().len();
        Ok(match (packet.msg_type(), packet.code()) {
            (ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            },
            (ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            },
            (DEST_UNREACHABLE, code) => Icmpv4Repr::DstUnreachable { code, data_len },
            (msg_type, code) => Icmpv4Repr::Other {
                msg_type,
                code,
                data_len,
            },
        })
    }

    /// Length of the data after the header.
    #[inline]
    pub const fn data_len(&self) -> usize {
        match *self {
            Icmpv4Repr::EchoRequest { data_len, .. }
            | Icmpv4Repr::EchoReply { data_len, .. }
            | Icmpv4Repr::DstUnreachable { data_len, .. }
            | Icmpv4Repr::Other { data_len, .. } => data_len,
        }
    }

    /// Length of the header (8).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus data length.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.data_len())
    }

    /// Writes the 8-byte header with a zero checksum; the caller writes the
    /// data and then calls [`Icmpv4Packet::fill_checksum`].
    ///
    /// `Truncated` if the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
    ) -> Result<(), WireError> {
        packet.check()?;
        let (msg_type, code, rest) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => (
                ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => {
                (ECHO_REPLY, 0, (u32::from(ident) << 16) | u32::from(seq_no))
            }
            Icmpv4Repr::DstUnreachable { code, .. } => (DEST_UNREACHABLE, code, 0),
            Icmpv4Repr::Other { msg_type, code, .. } => (msg_type, code, 0),
        };
        packet.set_msg_type(msg_type);
        packet.set_code(code);
        packet.set_checksum(0);
        packet.set_rest_of_header(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    // `ping` echo request, id 0x1234, seq 1, 8 data bytes, valid checksum.
    fn echo_request() -> Vec<u8> {
        let mut b = vec![
            0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd', b'e', b'f',
            b'g', b'h',
        ];
        let c = checksum::checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn parse_echo_request() {
        let b = echo_request();
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.data(), b"abcdefgh");
        assert!(p.verify_checksum());
        assert_eq!(
            Icmpv4Repr::parse(&p).unwrap(),
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data_len: 8
            }
        );
    }

    #[test]
    fn echo_reply_in_place() {
        let mut b = echo_request();
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        let old = u16::from_be_bytes([ECHO_REQUEST, 0]);
        let new = u16::from_be_bytes([ECHO_REPLY, 0]);
        p.set_msg_type(ECHO_REPLY);
        let c = checksum::update16(p.checksum(), old, new);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
        assert!(matches!(
            Icmpv4Repr::parse(&p).unwrap(),
            Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 1,
                data_len: 8
            }
        ));
    }

    #[test]
    fn emit_port_unreachable() {
        // Quote a 28-byte IPv4+UDP header, as RFC 792 asks.
        let quoted = [0x45u8; 28];
        let r = Icmpv4Repr::DstUnreachable {
            code: PORT_UNREACHABLE,
            data_len: quoted.len(),
        };
        let mut buf = vec![0xaau8; r.buffer_len()];
        let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p).unwrap();
        p.data_mut().copy_from_slice(&quoted);
        p.fill_checksum();
        assert_eq!(&buf[..2], &[3, 3]);
        assert_eq!(&buf[4..8], &[0, 0, 0, 0]);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        let mut short = [0u8; 7];
        assert_eq!(
            r.emit(&mut Icmpv4Packet::new_unchecked(&mut short[..])),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn truncated_at_every_length() {
        let b = echo_request();
        for len in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&b[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        for len in 8..b.len() {
            let p = Icmpv4Packet::new_checked(&b[..len]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p).unwrap().data_len(), len - 8);
        }
    }

    #[test]
    fn other_types() {
        let mut b = [11u8, 0, 0, 0, 0, 0, 0, 0];
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&p).unwrap(),
            Icmpv4Repr::Other {
                msg_type: TIME_EXCEEDED,
                code: 0,
                data_len: 0
            }
        );
        b[0] = ECHO_REQUEST;
        b[1] = 1;
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert!(matches!(
            Icmpv4Repr::parse(&p).unwrap(),
            Icmpv4Repr::Other {
                msg_type: 8,
                code: 1,
                ..
            }
        ));
    }

    fn repr_strategy() -> impl Strategy<Value = Icmpv4Repr> {
        prop_oneof![
            (any::<u16>(), any::<u16>(), 0usize..32).prop_map(|(ident, seq_no, data_len)| {
                Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no,
                    data_len,
                }
            }),
            (any::<u16>(), any::<u16>(), 0usize..32).prop_map(|(ident, seq_no, data_len)| {
                Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data_len,
                }
            }),
            (any::<u8>(), 0usize..32)
                .prop_map(|(code, data_len)| Icmpv4Repr::DstUnreachable { code, data_len }),
            (any::<u8>(), any::<u8>(), 0usize..32)
                .prop_filter("not a decoded type", |(t, c, _)| {
                    *t != DEST_UNREACHABLE && !((*t == ECHO_REQUEST || *t == ECHO_REPLY) && *c == 0)
                })
                .prop_map(|(msg_type, code, data_len)| Icmpv4Repr::Other {
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
            let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
            r.emit(&mut p).unwrap();
            p.fill_checksum();
            let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let p = Icmpv4Packet::new_unchecked(&data[..]);
            if let Ok(r) = Icmpv4Repr::parse(&p) {
                prop_assert_eq!(r.buffer_len(), data.len());
                let _ = (p.verify_checksum(), p.data(), p.rest_of_header());
            }
        }

        #[test]
        fn agrees_with_etherparse(data in proptest::collection::vec(any::<u8>(), 8..48)) {
            let mut data = data;
            if data[0] == 13 || data[0] == 14 {
                data[1] |= 1; // timestamps are fixed-size in etherparse
            }
            Icmpv4Packet::new_checked(&mut data[..]).unwrap().fill_checksum();
            let ours = Icmpv4Packet::new_checked(&data[..]).unwrap();
            let theirs = etherparse::Icmpv4Slice::from_slice(&data).unwrap();
            prop_assert_eq!(theirs.type_u8(), ours.msg_type());
            prop_assert_eq!(theirs.code_u8(), ours.code());
            prop_assert_eq!(theirs.checksum(), ours.checksum());
            prop_assert_eq!(u32::from_be_bytes(theirs.bytes5to8()), ours.rest_of_header());
            // etherparse computes the checksum from its decoded header + payload.
            let hdr = theirs.header();
            let recomputed = etherparse::Icmpv4Header::with_checksum(hdr.icmp_type.clone(), theirs.payload());
            prop_assert_eq!(theirs.header_len(), 8);
            prop_assert_eq!(theirs.payload(), ours.data());
            // Some decoded types drop "unused" bytes 4..8; compare the
            // recomputed checksum where etherparse's header round-trips.
            if hdr.to_bytes()[..] == data[..8] {
                prop_assert_eq!(recomputed.checksum, ours.checksum());
            }
        }
    }
}
