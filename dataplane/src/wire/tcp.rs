//! TCP (RFC 9293): the [`TcpPacket`] segment view, [`TcpFlags`], option
//! decoding ([`TcpOption`], [`TcpOptionIter`]), a fixed-capacity
//! [`TcpOptionList`] for emission, and [`TcpRepr`].
//!
//! Options follow RFC 9293 section 3.1 (EOL, NOP, MSS), RFC 7323 (window
//! scale, timestamps) and RFC 2018 (SACK). A view covers exactly one
//! segment: cut the buffer to the IP payload before wrapping it, because
//! the payload, and the length in the checksum pseudo-header, run to the end
//! of the buffer. A data offset that points past the end of the segment is
//! reported as [`WireError::BadHeaderLen`] (the header lies about its own
//! length), not as `Truncated`.

use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{WireError, checksum, protocol};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Most option bytes a header can carry (data offset 15).
pub const MAX_OPTIONS_LEN: usize = 40;

/// The eight TCP control bits of byte 13.
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    const NAMES: [(TcpFlags, &'static str); 8] = [
        (TcpFlags::FIN, "FIN"),
        (TcpFlags::SYN, "SYN"),
        (TcpFlags::RST, "RST"),
        (TcpFlags::PSH, "PSH"),
        (TcpFlags::ACK, "ACK"),
        (TcpFlags::URG, "URG"),
        (TcpFlags::ECE, "ECE"),
        (TcpFlags::CWR, "CWR"),
    ];

    /// No flags.
    #[inline]
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True if every flag in `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any flag in `other` is set in `self`.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Sets the flags in `other`.
    #[inline]
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags in `other`.
    #[inline]
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl BitAndAssign for TcpFlags {
    #[inline]
    fn bitand_assign(&mut self, rhs: TcpFlags) {
        self.0 &= rhs.0;
    }
}

impl Not for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TcpFlags(")?;
        if self.is_empty() {
            f.write_str("empty")?;
        }
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// One decoded TCP option.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TcpOption {
    /// End of Option List (kind 0); ends the option area.
    EndOfList,
    /// No-Operation (kind 1), used for alignment.
    NoOperation,
    /// Maximum Segment Size (kind 2).
    MaxSegmentSize(u16),
    /// Window Scale shift count (kind 3), as sent (not clamped to 14).
    WindowScale(u8),
    /// SACK Permitted (kind 4).
    SackPermitted,
    /// SACK (kind 5): blocks are not decoded; `len` is the option length byte.
    Sack {
        /// Option length in bytes (10, 18, 26 or 34).
        len: u8,
    },
    /// Timestamps (kind 8).
    Timestamps {
        /// TSval: the sender's timestamp clock.
        tsval: u32,
        /// TSecr: the echoed timestamp.
        tsecr: u32,
    },
    /// Any other kind, with its length byte; the body is not kept.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option length in bytes, kind and length included.
        len: u8,
    },
}

impl TcpOption {
    /// Encoded length in bytes.
    #[inline]
    pub const fn wire_len(&self) -> usize {
        match *self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack { len } | TcpOption::Unknown { len, .. } => len as usize,
            TcpOption::Timestamps { .. } => 10,
        }
    }

    /// Writes the option at the start of `buf`; returns its length.
    ///
    /// `Unsupported` for `Sack` and `Unknown`, whose bodies are not kept;
    /// `BadOption` if `buf` is too short.
    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.wire_len();
        let out = buf.get_mut(..len).ok_or(WireError::BadOption)?;
        match (*self, out) {
            (TcpOption::EndOfList, [k]) => *k = 0,
            (TcpOption::NoOperation, [k]) => *k = 1,
            (TcpOption::MaxSegmentSize(mss), [k, l, a, b]) => {
                [*k, *l] = [2, 4];
                [*a, *b] = mss.to_be_bytes();
            }
            (TcpOption::WindowScale(shift), [k, l, s]) => [*k, *l, *s] = [3, 3, shift],
            (TcpOption::SackPermitted, [k, l]) => [*k, *l] = [4, 2],
            (TcpOption::Timestamps { tsval, tsecr }, out) => {
                let mut b = [8u8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
                b[2..6].copy_from_slice(&tsval.to_be_bytes());
                b[6..10].copy_from_slice(&tsecr.to_be_bytes());
                out.copy_from_slice(&b);
            }
            _ => return Err(WireError::Unsupported),
        }
        Ok(len)
    }
}

/// Iterator over the options of a TCP header.
///
/// Yields `Err(BadOption)` once and stops if an option's length byte is
/// missing, below 2, runs past the option area, or is wrong for a known
/// kind; stops after yielding `EndOfList`.
#[derive(Clone, Debug)]
pub struct TcpOptionIter<'a> {
    data: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    /// Iterates over raw option bytes (the header bytes after the first 20).
    #[inline]
    pub const fn new(options: &'a [u8]) -> TcpOptionIter<'a> {
        TcpOptionIter { data: options }
    }

    #[inline]
    fn fail(&mut self) -> Option<Result<TcpOption, WireError>> {
        self.data = &[];
        Some(Err(WireError::BadOption))
    }
}

impl Iterator for TcpOptionIter<'_> {
    type Item = Result<TcpOption, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.data.split_first()?;
        match kind {
            0 => {
                self.data = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            1 => {
                self.data = rest;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let Some(&len) = rest.first() else {
            return self.fail();
        };
        if len < 2 {
            return self.fail();
        }
        let Some((opt, after)) = self.data.split_at_checked(usize::from(len)) else {
            return self.fail();
        };
        let body = opt.get(2..).unwrap_or(&[]);
        let parsed = match (kind, body) {
            (2, &[a, b]) => TcpOption::MaxSegmentSize(u16::from_be_bytes([a, b])),
            (3, &[shift]) => TcpOption::WindowScale(shift),
            (4, &[]) => TcpOption::SackPermitted,
            // One to four blocks of two 32-bit edges.
            (5, _) if matches!(len, 10 | 18 | 26 | 34) => TcpOption::Sack { len },
            (8, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamps {
                tsval: u32::from_be_bytes([a, b, c, d]),
                tsecr: u32::from_be_bytes([e, f, g, h]),
            },
            (2..=5 | 8, _) => return self.fail(),
            _ => TcpOption::Unknown { kind, len },
        };
        self.data = after;
        Some(Ok(parsed))
    }
}

/// Options already in wire form, padded with zeros (EOL, RFC 9293 section
/// 3.2) to a multiple of four: what an emitter that knows its options
/// writes with one copy, instead of matching each option again at emit time
/// (the decoys' replies, `engine::decoy::tcp`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EncodedOptions {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl Default for EncodedOptions {
    fn default() -> Self {
        EncodedOptions::new()
    }
}

impl EncodedOptions {
    /// No options.
    #[inline]
    pub const fn new() -> EncodedOptions {
        EncodedOptions {
            bytes: [0; MAX_OPTIONS_LEN],
            len: 0,
        }
    }

    /// Appends an option; `BadOption` if it does not fit in 40 bytes,
    /// `Unsupported` for `Sack` and `Unknown` (their bodies are not kept).
    #[inline]
    pub fn push(&mut self, option: TcpOption) -> Result<(), WireError> {
        let at = usize::from(self.len);
        let area = self.bytes.get_mut(at..).ok_or(WireError::BadOption)?;
        let n = option.emit(area)?;
        // n <= 40 - at, so the sum fits the u8.
        self.len = (at + n) as u8;
        Ok(())
    }

    /// Length on the wire, padding included (a multiple of four).
    #[inline]
    pub const fn len(&self) -> usize {
        (self.len as usize).next_multiple_of(4)
    }

    /// Length of the options written, before padding.
    #[inline]
    pub const fn raw_len(&self) -> u8 {
        self.len
    }

    /// True if there are no options.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rewrites the values of the timestamps option written at `at` (an
    /// offset [`raw_len`](Self::raw_len) gave before it was pushed); no
    /// change if no timestamps option is there.
    #[inline]
    pub fn set_timestamps(&mut self, at: usize, tsval: u32, tsecr: u32) {
        if let Some([8, 10, a, b, c, d, e, f, g, h]) = self.bytes.get_mut(at..at + 10) {
            [*a, *b, *c, *d] = tsval.to_be_bytes();
            [*e, *f, *g, *h] = tsecr.to_be_bytes();
        }
    }

    /// The padded option bytes (the bytes past `len` were never written,
    /// so the padding is EOL).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len()).unwrap_or(&self.bytes)
    }
}

/// An ordered list of up to [`TcpOptionList::CAPACITY`] options, stored inline.
#[derive(Copy, Clone)]
pub struct TcpOptionList {
    items: [TcpOption; TcpOptionList::CAPACITY],
    len: u8,
}

impl TcpOptionList {
    /// Maximum number of options held.
    pub const CAPACITY: usize = 10;

    /// An empty list.
    #[inline]
    pub const fn new() -> TcpOptionList {
        TcpOptionList {
            items: [TcpOption::EndOfList; TcpOptionList::CAPACITY],
            len: 0,
        }
    }

    /// Builds a list from a slice; `BadOption` if it has more than `CAPACITY` entries.
    pub fn from_slice(options: &[TcpOption]) -> Result<TcpOptionList, WireError> {
        let mut list = TcpOptionList::new();
        for o in options {
            list.push(*o)?;
        }
        Ok(list)
    }

    /// Appends an option; `BadOption` if the list is full.
    #[inline]
    pub fn push(&mut self, option: TcpOption) -> Result<(), WireError> {
        let slot = self
            .items
            .get_mut(usize::from(self.len))
            .ok_or(WireError::BadOption)?;
        *slot = option;
        self.len += 1;
        Ok(())
    }

    /// Removes every option.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Number of options.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// True if the list is empty.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The options, in order.
    #[inline]
    pub fn as_slice(&self) -> &[TcpOption] {
        self.items.get(..self.len()).unwrap_or(&[])
    }

    /// Iterates over the options, in order.
    #[inline]
    pub fn iter(&self) -> core::slice::Iter<'_, TcpOption> {
        self.as_slice().iter()
    }

    /// Encoded length of the options, before padding.
    #[inline]
    pub fn wire_len(&self) -> usize {
        self.iter().map(TcpOption::wire_len).sum()
    }

    /// The first MSS option's value.
    pub fn mss(&self) -> Option<u16> {
        self.iter().find_map(|o| match *o {
            TcpOption::MaxSegmentSize(v) => Some(v),
            _ => None,
        })
    }

    /// The first window scale option's shift count.
    pub fn window_scale(&self) -> Option<u8> {
        self.iter().find_map(|o| match *o {
            TcpOption::WindowScale(v) => Some(v),
            _ => None,
        })
    }

    /// True if SACK Permitted is present.
    pub fn sack_permitted(&self) -> bool {
        self.iter().any(|o| *o == TcpOption::SackPermitted)
    }

    /// The first timestamps option as `(tsval, tsecr)`.
    pub fn timestamps(&self) -> Option<(u32, u32)> {
        self.iter().find_map(|o| match *o {
            TcpOption::Timestamps { tsval, tsecr } => Some((tsval, tsecr)),
            _ => None,
        })
    }
}

impl Default for TcpOptionList {
    fn default() -> Self {
        TcpOptionList::new()
    }
}

impl PartialEq for TcpOptionList {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for TcpOptionList {}

impl fmt::Debug for TcpOptionList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a TcpOptionList {
    type Item = &'a TcpOption;
    type IntoIter = core::slice::Iter<'a, TcpOption>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A read/write view of one TCP segment (header, options and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is too short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a segment after validating its data offset.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check done by `new_checked`: `Truncated` below 20 bytes,
    /// `BadHeaderLen` if the data offset is below 5 or past the segment.
    pub fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > data.len() {
            return Err(WireError::BadHeaderLen);
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
    fn u32_at(&self, r: core::ops::Range<usize>) -> u32 {
        let d = &self.buffer.as_ref()[r];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.u32_at(field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.u32_at(field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Control bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Receive window (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }

    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// Raw option bytes (20..header_len).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.header_len();
        self.buffer.as_ref().get(HEADER_LEN..hl).unwrap_or(&[])
    }

    /// Iterates over the decoded options.
    #[inline]
    pub fn options_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }

    /// The payload: header_len to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_len();
        self.buffer.as_ref().get(hl..).unwrap_or(&[])
    }

    /// Segment length (the whole buffer), as used in the pseudo-header.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// True if the checksum verifies against the IPv4 pseudo-header; the view
    /// must cover exactly the segment (its length is the pseudo-header length).
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u16::try_from(data.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_v4(src, dst, protocol::TCP, len);
        checksum::fold(checksum::sum(data, ph)) == 0xffff
    }

    /// True if the checksum verifies against the IPv6 pseudo-header; the view
    /// must cover exactly the segment.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_v6(src, dst, protocol::TCP, len);
        checksum::fold(checksum::sum(data, ph)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    fn set_u32_at(&mut self, r: core::ops::Range<usize>, v: u32) {
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

    /// Swaps the ports; the checksum stays valid (the sum is order-independent).
    #[inline]
    pub fn swap_ports(&mut self) {
        let s = self.src_port();
        let d = self.dst_port();
        self.set_src_port(d);
        self.set_dst_port(s);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        self.set_u32_at(field::SEQ_NUM, v);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        self.set_u32_at(field::ACK_NUM, v);
    }

    /// Sets the header length in bytes (stored as len/4; reserved bits cleared).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = (((len / 4) & 0x0f) as u8) << 4;
    }

    /// Sets the control bits.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the receive window.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        self.set_u16_at(field::WIN_SIZE, v);
    }

    /// Stores a checksum value (e.g. one from [`checksum::update16`]).
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        self.set_u16_at(field::URGENT, v);
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

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer.as_mut().get_mut(hl..).unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over the whole buffer with the IPv4
    /// pseudo-header; the view must cover exactly the segment (its length,
    /// saturated at 65535, goes into the pseudo-header).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
        let ph = checksum::pseudo_header_v4(src, dst, protocol::TCP, len);
        let c = !checksum::fold(checksum::sum(data, ph));
        self.set_checksum(c);
    }

    /// Computes and stores the checksum over the whole buffer with the IPv6
    /// pseudo-header; the view must cover exactly the segment.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let ph = checksum::pseudo_header_v6(src, dst, protocol::TCP, len);
        let c = !checksum::fold(checksum::sum(data, ph));
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A decoded TCP header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Receive window (unscaled).
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// Options in order. Parsing leaves out NOP and EOL; emission writes the
    /// list as given.
    pub options: TcpOptionList,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl TcpRepr {
    /// Decodes a segment, checking it first.
    ///
    /// Options are kept in wire order without NOPs, up to the first EOL.
    /// `BadOption` if an option is malformed or there are more than
    /// [`TcpOptionList::CAPACITY`] of them. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<TcpRepr, WireError> {
        packet.check()?;
        let mut options = TcpOptionList::new();
        for opt in packet.options_iter() {
            match opt? {
                TcpOption::NoOperation => {}
                TcpOption::EndOfList => break,
                other => options.push(other)?,
            }
        }
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options,
            payload_len: packet.segment_len() - packet.header_len(),
        })
    }

    /// Header length: 20 plus the options, zero-padded to a multiple of 4.
    ///
    /// May exceed 60 for an over-long option list, which `emit` rejects.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.wire_len().next_multiple_of(4)
    }

    /// Header plus payload length.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len().saturating_add(self.payload_len)
    }

    /// Writes the header and options (not the payload, not the checksum,
    /// which is left zero for `fill_checksum_v4`/`_v6` or an offload).
    ///
    /// Options go out in list order, followed by zero bytes up to a 4-byte
    /// boundary (the first of which reads as EOL). `BadOption` if they need
    /// more than 40 bytes, `Unsupported` for a `Sack` or `Unknown` option
    /// (their bodies are not kept), `Truncated` if the buffer is shorter than
    /// `header_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
    ) -> Result<(), WireError> {
        let opt_len = self.options.wire_len();
        if opt_len > MAX_OPTIONS_LEN {
            return Err(WireError::BadOption);
        }
        if self
            .options
            .iter()
            .any(|o| matches!(o, TcpOption::Sack { .. } | TcpOption::Unknown { .. }))
        {
            return Err(WireError::Unsupported);
        }
        let hl = HEADER_LEN + opt_len.next_multiple_of(4);
        if packet.buffer.as_ref().len() < hl {
            return Err(WireError::Truncated);
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(hl);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent_at);
        let mut area = packet.options_mut();
        for opt in self.options.iter() {
            let n = opt.emit(area)?;
            area = area.get_mut(n..).unwrap_or(&mut []);
        }
        area.fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    // A Linux SYN 40000 -> 22: MSS 1460, SACK-permitted, timestamps, NOP, WS 7.
    const SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x16, // ports
        0x6e, 0x2f, 0x1a, 0x01, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // doff 10, SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, // TS 123456, 0
        0x01, // NOP
        0x03, 0x03, 0x07, // WS 7
    ];

    fn syn_options() -> TcpOptionList {
        TcpOptionList::from_slice(&[
            TcpOption::MaxSegmentSize(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamps {
                tsval: 123_456,
                tsecr: 0,
            },
            TcpOption::WindowScale(7),
        ])
        .unwrap()
    }

    #[test]
    fn parse_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 22));
        assert_eq!(p.seq_number(), 0x6e2f_1a01);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.options().len(), 20);
        assert!(p.payload().is_empty());
        let opts: Vec<_> = p.options_iter().map(Result::unwrap).collect();
        assert_eq!(
            opts,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    tsval: 123_456,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        let r = TcpRepr::parse(&p).unwrap();
        assert_eq!(r.options, syn_options());
        assert_eq!(r.options.mss(), Some(1460));
        assert_eq!(r.options.window_scale(), Some(7));
        assert!(r.options.sack_permitted());
        assert_eq!(r.options.timestamps(), Some((123_456, 0)));
        assert_eq!(r.payload_len, 0);
        // Without the NOP the options take 19 bytes, padded to 20.
        assert_eq!(r.header_len(), 40);
    }

    proptest! {
        /// Options encoded ahead are the bytes `TcpRepr::emit` writes for
        /// the same list, padding included.
        #[test]
        fn encoded_options_match_the_emitter(picks in proptest::collection::vec(0u8..5, 0..10), v in any::<u32>()) {
            let options: Vec<TcpOption> = picks.iter().map(|p| match p {
                0 => TcpOption::NoOperation,
                1 => TcpOption::MaxSegmentSize(v as u16),
                2 => TcpOption::WindowScale(v as u8 & 15),
                3 => TcpOption::SackPermitted,
                _ => TcpOption::Timestamps { tsval: v, tsecr: !v },
            }).collect();
            let list = TcpOptionList::from_slice(&options).unwrap();
            let mut encoded = EncodedOptions::new();
            let fits = options.iter().all(|o| encoded.push(*o).is_ok());
            prop_assert_eq!(fits, list.wire_len() <= MAX_OPTIONS_LEN);
            if fits {
                let repr = TcpRepr {
                    src_port: 1,
                    dst_port: 2,
                    seq_number: 3,
                    ack_number: 4,
                    flags: TcpFlags::SYN,
                    window_len: 5,
                    urgent_at: 0,
                    options: list,
                    payload_len: 0,
                };
                let mut buf = vec![0xaa; repr.header_len()];
                repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..])).unwrap();
                prop_assert_eq!(&buf[HEADER_LEN..], encoded.as_bytes());
            }
        }
    }

    #[test]
    fn timestamps_are_rewritten_in_place() {
        let mut encoded = EncodedOptions::new();
        encoded.push(TcpOption::MaxSegmentSize(1460)).unwrap();
        let at = usize::from(encoded.raw_len());
        encoded
            .push(TcpOption::Timestamps { tsval: 0, tsecr: 0 })
            .unwrap();
        encoded.set_timestamps(at, 0x0102_0304, 0x0506_0708);
        assert_eq!(
            encoded.as_bytes(),
            &[2, 4, 0x05, 0xb4, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0]
        );
        // Anywhere else it changes nothing.
        let before = encoded;
        encoded.set_timestamps(0, 9, 9);
        encoded.set_timestamps(39, 9, 9);
        assert_eq!(encoded, before);
    }

    #[test]
    fn emit_syn_ack_in_place() {
        // Turn the SYN into a SYN-ACK in its own buffer, as the engine does.
        let mut buf = SYN;
        let src = Ipv4Addr::new(192, 0, 2, 10);
        let dst = Ipv4Addr::new(198, 51, 100, 20);
        let syn = TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).unwrap()).unwrap();
        let mut options = TcpOptionList::new();
        for o in [
            TcpOption::MaxSegmentSize(1400),
            TcpOption::NoOperation,
            TcpOption::WindowScale(8),
            TcpOption::SackPermitted,
            TcpOption::Timestamps {
                tsval: 1,
                tsecr: 123_456,
            },
        ] {
            options.push(o).unwrap();
        }
        let reply = TcpRepr {
            src_port: syn.dst_port,
            dst_port: syn.src_port,
            seq_number: 0xdead_beef,
            ack_number: syn.seq_number.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window_len: 65535,
            urgent_at: 0,
            options,
            payload_len: 0,
        };
        assert_eq!(reply.header_len(), 40);
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        reply.emit(&mut p).unwrap();
        p.fill_checksum_v4(dst, src);
        assert!(p.verify_checksum_v4(dst, src));
        assert!(!p.verify_checksum_v4(src, Ipv4Addr::new(198, 51, 100, 21)));
        assert_eq!(
            &buf[20..40],
            &[
                2, 4, 0x05, 0x78, 1, 3, 3, 8, 4, 2, 8, 10, 0, 0, 0, 1, 0, 1, 0xe2, 0x40
            ]
        );
        assert_eq!(buf[12], 0xa0);
        assert_eq!(buf[13], 0x12);
        let back = TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(back.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(back.ack_number, 0x6e2f_1a02);
    }

    #[test]
    fn padding_uses_zero_bytes() {
        let r = TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq_number: 3,
            ack_number: 4,
            flags: TcpFlags::ACK,
            window_len: 5,
            urgent_at: 0,
            options: TcpOptionList::from_slice(&[TcpOption::WindowScale(2)]).unwrap(),
            payload_len: 3,
        };
        assert_eq!(r.header_len(), 24);
        let mut buf = [0xffu8; 27];
        r.emit(&mut TcpPacket::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(&buf[20..24], &[3, 3, 2, 0]);
        assert_eq!(&buf[24..], &[0xff; 3], "payload untouched");
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn emit_errors() {
        let mut r = TcpRepr::parse(&TcpPacket::new_checked(&SYN[..]).unwrap()).unwrap();
        let mut small = [0u8; 39];
        assert_eq!(
            r.emit(&mut TcpPacket::new_unchecked(&mut small[..])),
            Err(WireError::Truncated)
        );
        let mut buf = [0u8; 80];
        for _ in 0..3 {
            r.options
                .push(TcpOption::Timestamps { tsval: 0, tsecr: 0 })
                .unwrap();
        }
        assert_eq!(r.options.wire_len(), 49);
        assert_eq!(
            r.emit(&mut TcpPacket::new_unchecked(&mut buf[..])),
            Err(WireError::BadOption)
        );
        r.options = TcpOptionList::from_slice(&[TcpOption::Sack { len: 10 }]).unwrap();
        assert_eq!(
            r.emit(&mut TcpPacket::new_unchecked(&mut buf[..])),
            Err(WireError::Unsupported)
        );
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..SYN.len() {
            let e = TcpPacket::new_checked(&SYN[..len]).err();
            let want = if len < 20 {
                WireError::Truncated
            } else {
                WireError::BadHeaderLen
            };
            assert_eq!(e, Some(want), "len {len}");
        }
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen)
        );
    }

    #[test]
    fn malformed_options() {
        let cases: [(&[u8], usize); 8] = [
            (&[2, 4, 5], 0),       // MSS runs past the area
            (&[1, 2], 1),          // length byte missing
            (&[1, 1, 9, 0], 2),    // length 0
            (&[9, 1], 0),          // length 1
            (&[2, 3, 5, 1], 0),    // MSS with the wrong length
            (&[5, 12, 0, 0], 0),   // SACK with a bad length
            (&[8, 10, 0, 0], 0),   // timestamps past the end
            (&[3, 4, 1, 1, 1], 0), // WS with the wrong length
        ];
        for (bytes, oks) in cases {
            let items: Vec<_> = TcpOptionIter::new(bytes).collect();
            assert_eq!(items.len(), oks + 1, "{bytes:?}");
            assert_eq!(items.last(), Some(&Err(WireError::BadOption)), "{bytes:?}");
        }
        // EOL stops after yielding; what follows is padding.
        let items: Vec<_> = TcpOptionIter::new(&[1, 0, 2, 4, 5]).collect();
        assert_eq!(
            items,
            [Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]
        );
        // Unknown kinds are skipped by their length.
        let items: Vec<_> = TcpOptionIter::new(&[30, 4, 1, 2, 4, 2]).collect();
        assert_eq!(
            items,
            [
                Ok(TcpOption::Unknown { kind: 30, len: 4 }),
                Ok(TcpOption::SackPermitted)
            ]
        );
        // A bad option makes the repr parse fail.
        let mut b = SYN;
        b[21] = 1;
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p), Err(WireError::BadOption));
    }

    #[test]
    fn option_list_capacity() {
        let mut l = TcpOptionList::new();
        for _ in 0..TcpOptionList::CAPACITY {
            l.push(TcpOption::SackPermitted).unwrap();
        }
        assert_eq!(l.push(TcpOption::SackPermitted), Err(WireError::BadOption));
        assert_eq!(l.len(), 10);
        assert_eq!(l.wire_len(), 20);
        // Twenty SACK-permitted options parse into more than the list holds.
        let mut b = [0u8; 60];
        b[12] = 0xf0;
        for i in 0..20 {
            b[20 + 2 * i] = 4;
            b[21 + 2 * i] = 2;
        }
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p), Err(WireError::BadOption));
        l.clear();
        assert!(l.is_empty());
        assert_eq!(format!("{l:?}"), "[]");
    }

    #[test]
    fn flags_ops_and_debug() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN) && f.contains(TcpFlags::ACK));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert_eq!(f & TcpFlags::ACK, TcpFlags::ACK);
        assert_eq!((f & !TcpFlags::ACK), TcpFlags::SYN);
        let mut g = TcpFlags::empty();
        g |= TcpFlags::RST;
        g.insert(TcpFlags::ACK);
        g.remove(TcpFlags::RST);
        g &= TcpFlags::ACK | TcpFlags::PSH;
        assert_eq!(g, TcpFlags::ACK);
        assert_eq!(format!("{f:?}"), "TcpFlags(SYN | ACK)");
        assert_eq!(format!("{:?}", TcpFlags::empty()), "TcpFlags(empty)");
        assert_eq!(
            format!("{:?}", TcpFlags(0xff)),
            "TcpFlags(FIN | SYN | RST | PSH | ACK | URG | ECE | CWR)"
        );
    }

    #[test]
    fn checksum_v6_and_incremental_updates() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut buf = SYN.to_vec();
        buf.extend_from_slice(b"hello");
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum_v6(&src, &dst);
        assert!(p.verify_checksum_v6(&src, &dst));
        // Swapping ports and (in the pseudo-header) addresses keeps it valid.
        p.swap_ports();
        assert!(p.verify_checksum_v6(&dst, &src));
        assert_eq!((p.src_port(), p.dst_port()), (22, 40000));
        // RFC 1624 update after rewriting the ack number.
        let old = p.ack_number();
        let c = p.checksum();
        p.set_ack_number(0x0102_0304);
        p.set_checksum(checksum::update32(c, old, 0x0102_0304));
        assert!(p.verify_checksum_v6(&dst, &src));
        let c = p.checksum();
        p.fill_checksum_v6(&dst, &src);
        assert_eq!(p.checksum(), c);
        p.payload_mut()[0] = b'j';
        assert!(!p.verify_checksum_v6(&dst, &src));
        // Setters that break the checked invariant do not make slices panic.
        p.set_header_len(60);
        assert!(p.payload().is_empty());
        assert!(p.options().is_empty());
    }

    fn emittable_option() -> impl Strategy<Value = TcpOption> {
        prop_oneof![
            any::<u16>().prop_map(TcpOption::MaxSegmentSize),
            any::<u8>().prop_map(TcpOption::WindowScale),
            Just(TcpOption::SackPermitted),
            (any::<u32>(), any::<u32>())
                .prop_map(|(tsval, tsecr)| TcpOption::Timestamps { tsval, tsecr }),
        ]
    }

    fn repr_strategy() -> impl Strategy<Value = TcpRepr> {
        (
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
            (any::<u8>(), any::<u16>(), any::<u16>()),
            proptest::collection::vec(emittable_option(), 0..=5)
                .prop_filter("fits in 40 bytes", |v| {
                    v.iter().map(TcpOption::wire_len).sum::<usize>() <= 40
                }),
            0usize..32,
        )
            .prop_map(
                |((sp, dp, seq, ack), (flags, win, urg), opts, payload_len)| TcpRepr {
                    src_port: sp,
                    dst_port: dp,
                    seq_number: seq,
                    ack_number: ack,
                    flags: TcpFlags(flags),
                    window_len: win,
                    urgent_at: urg,
                    options: TcpOptionList::from_slice(&opts).unwrap(),
                    payload_len,
                },
            )
    }

    fn to_etherparse(o: &etherparse::TcpOptionElement) -> TcpOption {
        use etherparse::TcpOptionElement as E;
        match *o {
            E::Noop => TcpOption::NoOperation,
            E::MaximumSegmentSize(v) => TcpOption::MaxSegmentSize(v),
            E::WindowScale(v) => TcpOption::WindowScale(v),
            E::SelectiveAcknowledgementPermitted => TcpOption::SackPermitted,
            E::SelectiveAcknowledgement(_, rest) => TcpOption::Sack {
                len: 10 + 8 * rest.iter().flatten().count() as u8,
            },
            E::Timestamp(tsval, tsecr) => TcpOption::Timestamps { tsval, tsecr },
        }
    }

    /// Raw bytes of options etherparse knows, including NOPs and SACK blocks.
    fn raw_known_options() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(vec![1u8]),
                any::<u16>().prop_map(|v| {
                    let [a, b] = v.to_be_bytes();
                    vec![2, 4, a, b]
                }),
                any::<u8>().prop_map(|s| vec![3, 3, s]),
                Just(vec![4u8, 2]),
                (1usize..=4, any::<u8>()).prop_map(|(n, fill)| {
                    let mut v = vec![fill; 2 + 8 * n];
                    v[0] = 5;
                    v[1] = (2 + 8 * n) as u8;
                    v
                }),
                any::<[u8; 8]>().prop_map(|t| {
                    let mut v = vec![8u8, 10];
                    v.extend_from_slice(&t);
                    v
                }),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat())
        .prop_filter("fits in 40 bytes", |v| v.len() <= 40)
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(r in repr_strategy()) {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut TcpPacket::new_unchecked(&mut buf[..])).unwrap();
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(TcpRepr::parse(&p).unwrap(), r);
            prop_assert_eq!(p.header_len(), r.header_len());
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let p = TcpPacket::new_unchecked(&data[..]);
            if let Ok(r) = TcpRepr::parse(&p) {
                prop_assert!(r.payload_len <= data.len());
            }
            if let Ok(p) = TcpPacket::new_checked(&data[..]) {
                for o in p.options_iter() {
                    let _ = o;
                }
                let _ = (p.payload(), p.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST));
            }
        }

        #[test]
        fn random_options_never_panic(data in proptest::collection::vec(any::<u8>(), 0..48)) {
            let n = TcpOptionIter::new(&data).count();
            prop_assert!(n <= data.len());
        }

        #[test]
        fn agrees_with_etherparse(
            r in repr_strategy(),
            raw in raw_known_options(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
        ) {
            let hl = 20 + raw.len().next_multiple_of(4);
            let r = TcpRepr { options: TcpOptionList::new(), ..r };
            let mut buf = vec![0u8; hl + r.payload_len];
            r.emit(&mut TcpPacket::new_unchecked(&mut buf[..])).unwrap();
            buf[12] = ((hl / 4) as u8) << 4;
            buf[20..20 + raw.len()].copy_from_slice(&raw);
            for (i, b) in buf.iter_mut().enumerate().skip(hl) {
                *b = i as u8;
            }
            let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
            p.fill_checksum_v4(Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            let h = etherparse::TcpHeaderSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(h.source_port(), p.src_port());
            prop_assert_eq!(h.destination_port(), p.dst_port());
            prop_assert_eq!(h.sequence_number(), p.seq_number());
            prop_assert_eq!(h.acknowledgment_number(), p.ack_number());
            prop_assert_eq!(usize::from(h.data_offset()) * 4, p.header_len());
            let f = p.flags();
            prop_assert_eq!(h.fin(), f.contains(TcpFlags::FIN));
            prop_assert_eq!(h.syn(), f.contains(TcpFlags::SYN));
            prop_assert_eq!(h.rst(), f.contains(TcpFlags::RST));
            prop_assert_eq!(h.psh(), f.contains(TcpFlags::PSH));
            prop_assert_eq!(h.ack(), f.contains(TcpFlags::ACK));
            prop_assert_eq!(h.urg(), f.contains(TcpFlags::URG));
            prop_assert_eq!(h.ece(), f.contains(TcpFlags::ECE));
            prop_assert_eq!(h.cwr(), f.contains(TcpFlags::CWR));
            prop_assert_eq!(h.window_size(), p.window_len());
            prop_assert_eq!(h.urgent_pointer(), p.urgent_at());
            prop_assert_eq!(h.options(), p.options());
            let theirs: Vec<TcpOption> =
                h.options_iterator().map(|o| to_etherparse(&o.unwrap())).collect();
            let ours: Vec<TcpOption> = p
                .options_iter()
                .map(Result::unwrap)
                .filter(|o| *o != TcpOption::EndOfList)
                .collect();
            prop_assert_eq!(ours, theirs);
            let expect = h.calc_checksum_ipv4_raw(src, dst, p.payload()).unwrap();
            prop_assert_eq!(expect, p.checksum());
            prop_assert!(p.verify_checksum_v4(Ipv4Addr::from(src), Ipv4Addr::from(dst)));
            let src6 = Ipv6Addr::from([src[0]; 16]);
            let dst6 = Ipv6Addr::from([dst[1]; 16]);
            let mut buf6 = buf.clone();
            let mut p6 = TcpPacket::new_checked(&mut buf6[..]).unwrap();
            p6.fill_checksum_v6(&src6, &dst6);
            let h6 = etherparse::TcpHeaderSlice::from_slice(&buf6).unwrap();
            let expect6 = h6
                .calc_checksum_ipv6_raw(src6.octets(), dst6.octets(), &buf6[hl..])
                .unwrap();
            prop_assert_eq!(expect6, u16::from_be_bytes([buf6[16], buf6[17]]));
        }
    }
}
