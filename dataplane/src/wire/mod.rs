//! Zero-copy header views and emitters for the protocols the dataplane
//! touches: Ethernet II with one IEEE 802.1Q tag, ARP, IPv4, IPv6 (with a
//! bounded extension-header walk), TCP, UDP, ICMPv4 and ICMPv6/NDP, plus the
//! RFC 1071 / RFC 1624 internet checksum.
//!
//! Each protocol has a view `Xxx<T: AsRef<[u8]>>` over a borrowed or owned
//! buffer, built by `new_checked` (one length/validity check, after which the
//! accessors do not panic) or `new_unchecked` (no check: for emitting into a
//! fresh buffer), and a small `Copy` `XxxRepr` with `parse`, `emit` and length
//! helpers. Nothing here allocates or logs.
//!
//! We write our own views rather than use etherparse or `smoltcp::wire`
//! because the dataplane rewrites received frames in place (a SYN-ACK is
//! synthesised in the SYN's own buffer, with RFC 1624 incremental checksum
//! updates), wants one length check followed by non-panicking accessors that
//! are generic over the buffer type, and turns every rejection into a flat
//! `Copy` [`WireError`] that indexes a drop-reason counter. etherparse's
//! zero-copy slices are read-only and rewriting goes through its owned header
//! structs; `smoltcp::wire` is close in shape, but its error is a single
//! reasonless unit struct and its reprs bring stack features (checksum
//! capabilities, its own address types) we do not need. etherparse is still
//! used here, as the test oracle for our parsers.

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, NdpOption, NdpOptionIter};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr, Ipv6Upper, MAX_EXT_HEADERS};
pub use tcp::{
    EncodedOptions, TcpFlags, TcpOption, TcpOptionIter, TcpOptionList, TcpPacket, TcpRepr,
};
pub use udp::{UdpPacket, UdpRepr};

/// IP protocol numbers (IPv4 "Protocol", IPv6 "Next Header"), shared by both IP versions.
pub mod protocol {
    /// IPv6 Hop-by-Hop Options extension header (RFC 8200).
    pub const HOP_BY_HOP: u8 = 0;
    /// Internet Control Message Protocol for IPv4 (RFC 792).
    pub const ICMP: u8 = 1;
    /// Transmission Control Protocol (RFC 9293).
    pub const TCP: u8 = 6;
    /// User Datagram Protocol (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 Routing extension header (RFC 8200).
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment extension header (RFC 8200).
    pub const IPV6_FRAG: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303); ends the extension walk.
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// Internet Control Message Protocol for IPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// IPv6 "No Next Header" (RFC 8200).
    pub const IPV6_NO_NXT: u8 = 59;
    /// IPv6 Destination Options extension header (RFC 8200).
    pub const IPV6_OPTS: u8 = 60;
}

/// Why a buffer was rejected by a checked constructor, a parser or an emitter.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer is shorter than the header (or fixed message) needs.
    Truncated,
    /// The IP version field does not match the view.
    BadVersion,
    /// IPv4 IHL < 5, or TCP data offset < 5 or past the end of the segment.
    BadHeaderLen,
    /// A length field lies: IPv4 total length, IPv6 payload length or UDP length.
    BadTotalLen,
    /// A malformed TCP or NDP option, or an option list that does not fit.
    BadOption,
    /// The IPv6 extension-header chain is too long, misordered or truncated.
    ExtHeaderChain,
    /// A well-formed header of a kind we do not handle (e.g. non-Ethernet/IPv4 ARP).
    Unsupported,
    /// A checksum did not verify.
    BadChecksum,
}

impl WireError {
    /// Every variant, in declaration order (index `i` is `ALL[i].index()`).
    pub const ALL: [WireError; 8] = [
        WireError::Truncated,
        WireError::BadVersion,
        WireError::BadHeaderLen,
        WireError::BadTotalLen,
        WireError::BadOption,
        WireError::ExtHeaderChain,
        WireError::Unsupported,
        WireError::BadChecksum,
    ];

    /// Number of variants, for sizing per-reason counter arrays.
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case name, suitable as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::BadVersion => "bad_version",
            WireError::BadHeaderLen => "bad_header_len",
            WireError::BadTotalLen => "bad_total_len",
            WireError::BadOption => "bad_option",
            WireError::ExtHeaderChain => "ext_header_chain",
            WireError::Unsupported => "unsupported",
            WireError::BadChecksum => "bad_checksum",
        }
    }

    /// Dense index in `0..COUNT`, for indexing a counter array without a lookup.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn all_lists_every_variant_once_in_index_order() {
        for (i, e) in WireError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        assert_eq!(WireError::COUNT, 8);
        let mut names: Vec<&str> = WireError::ALL.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WireError::COUNT);
    }

    #[test]
    fn names_are_stable_snake_case() {
        assert_eq!(WireError::Truncated.as_str(), "truncated");
        assert_eq!(WireError::BadVersion.as_str(), "bad_version");
        assert_eq!(WireError::BadHeaderLen.as_str(), "bad_header_len");
        assert_eq!(WireError::BadTotalLen.as_str(), "bad_total_len");
        assert_eq!(WireError::BadOption.as_str(), "bad_option");
        assert_eq!(WireError::ExtHeaderChain.as_str(), "ext_header_chain");
        assert_eq!(WireError::Unsupported.as_str(), "unsupported");
        assert_eq!(WireError::BadChecksum.as_str(), "bad_checksum");
        for e in WireError::ALL {
            assert_eq!(e.to_string(), e.as_str());
            assert!(
                e.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }
}
