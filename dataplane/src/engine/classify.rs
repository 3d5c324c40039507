//! Classification: one pass over a frame's headers that yields what the rest
//! of the engine needs (addresses, ports, flags, offsets) or a drop reason.
//!
//! Frames that lie about their own lengths (IPv4 IHL < 5, total length past
//! the frame, a TCP data offset past the segment, a UDP length past the
//! datagram, an IPv6 extension chain that runs off the end) are dropped: no
//! host would accept them, and forwarding them would let a scanner probe the
//! protected hosts' stacks through us. Non-IP frames and IP protocols we do
//! not parse are classified without ports and forwarded.

use crate::wire::{
    ArpPacket, EtherType, EthernetFrame, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet,
    TcpFlags, TcpPacket, UdpPacket, WireError, protocol,
};

/// The network layer of a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP (Ethernet/IPv4, or another kind we only forward).
    Arp,
    /// Any other EtherType.
    Other(u16),
}

/// What classification learned about a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Network layer.
    pub l3: L3,
    /// The 802.1Q tag control information, if tagged.
    pub vlan_tci: Option<u16>,
    /// Offset of the network header in the frame.
    pub l3_offset: u16,
    /// Offset of the transport header (0 when there is none).
    pub l4_offset: u16,
    /// 4 or 6 for IP, else 0.
    pub ip_version: u8,
    /// IP protocol of the transport header (0 when not IP).
    pub protocol: u8,
    /// Source address, IPv4-mapped for IPv4 (zero when not IP).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port (ICMP echo: the identifier; else 0).
    pub src_port: u16,
    /// Destination port (ICMP echo: the identifier; else 0).
    pub dst_port: u16,
    /// TCP flags for TCP segments.
    pub tcp_flags: Option<TcpFlags>,
    /// True for a non-first IP fragment (no transport header to read).
    pub fragment: bool,
    /// Transport payload length in bytes (0 when not known).
    pub payload_len: u16,
}

impl PacketInfo {
    /// Nothing classified yet (a placeholder for arrays of a burst's frames).
    pub const EMPTY: PacketInfo = PacketInfo::new(L3::Other(0), None, 0);

    const fn new(l3: L3, vlan_tci: Option<u16>, l3_offset: usize) -> Self {
        PacketInfo {
            l3,
            vlan_tci,
            l3_offset: l3_offset as u16,
            l4_offset: 0,
            ip_version: 0,
            protocol: 0,
            src: [0; 16],
            dst: [0; 16],
            src_port: 0,
            dst_port: 0,
            tcp_flags: None,
            fragment: false,
            payload_len: 0,
        }
    }

    /// True for IPv4 or IPv6.
    pub fn is_ip(&self) -> bool {
        self.ip_version != 0
    }
}

/// Classifies an Ethernet frame.
#[inline]
pub fn classify(frame: &[u8]) -> Result<PacketInfo, WireError> {
    let mut info = PacketInfo::EMPTY;
    classify_into(frame, &mut info).map(|()| info)
}

/// Classifies an Ethernet frame into `info` (what it held is overwritten;
/// on an error it holds a partial classification).
///
/// The engine's path: the description is written where it stays for the
/// burst. Returning it by value, through the per-layer functions, copied
/// most of a cache line several times per frame with wide loads over
/// narrow stores just made, which the store buffer cannot forward: a
/// fifth of the forwarding path's time in the profile.
#[inline]
pub fn classify_into(frame: &[u8], info: &mut PacketInfo) -> Result<(), WireError> {
    let eth = EthernetFrame::new_checked(frame)?;
    let l3_offset = eth.header_len();
    let payload = eth.payload();
    let vlan = eth.vlan_tci();
    match eth.ethertype() {
        EtherType::IPV4 => {
            *info = PacketInfo::new(L3::Ipv4, vlan, l3_offset);
            classify_ipv4(payload, info)
        }
        EtherType::IPV6 => {
            *info = PacketInfo::new(L3::Ipv6, vlan, l3_offset);
            classify_ipv6(payload, info)
        }
        EtherType::ARP => match ArpPacket::new_checked(payload) {
            Ok(_) | Err(WireError::Unsupported) => {
                *info = PacketInfo::new(L3::Arp, vlan, l3_offset);
                Ok(())
            }
            Err(e) => Err(e),
        },
        other => {
            *info = PacketInfo::new(L3::Other(other.0), vlan, l3_offset);
            Ok(())
        }
    }
}

fn classify_ipv4(l3: &[u8], info: &mut PacketInfo) -> Result<(), WireError> {
    let ip = Ipv4Packet::new_checked(l3)?;
    info.ip_version = 4;
    info.protocol = ip.protocol();
    info.src = ip.src_addr().to_ipv6_mapped().octets();
    info.dst = ip.dst_addr().to_ipv6_mapped().octets();
    // Any fragment, the first one included (MF set, offset 0): its transport
    // header may be cut, and the rest of the datagram is elsewhere.
    info.fragment = ip.is_fragment();
    if info.fragment {
        return Ok(());
    }
    let header_len = ip.header_len();
    info.l4_offset = info.l3_offset + header_len as u16;
    // `payload` stops at the IPv4 total length, so Ethernet padding is not L4 data.
    classify_l4(ip.payload(), info)
}

fn classify_ipv6(l3: &[u8], info: &mut PacketInfo) -> Result<(), WireError> {
    let ip = Ipv6Packet::new_checked(l3)?;
    let upper = ip.upper_layer()?;
    info.ip_version = 6;
    info.protocol = upper.protocol;
    info.src = ip.src_addr().octets();
    info.dst = ip.dst_addr().octets();
    info.fragment = upper.is_fragment;
    if info.fragment {
        return Ok(());
    }
    info.l4_offset = info.l3_offset + upper.offset as u16;
    // The IPv6 payload ends at 40 + payload length; the upper layer starts at `offset`.
    let end = 40 + usize::from(ip.payload_len());
    let l4 = l3.get(upper.offset..end).ok_or(WireError::ExtHeaderChain)?;
    classify_l4(l4, info)
}

fn classify_l4(l4: &[u8], info: &mut PacketInfo) -> Result<(), WireError> {
    match info.protocol {
        protocol::TCP => {
            let tcp = TcpPacket::new_checked(l4)?;
            info.src_port = tcp.src_port();
            info.dst_port = tcp.dst_port();
            info.tcp_flags = Some(tcp.flags());
            info.payload_len = (l4.len() - tcp.header_len()) as u16;
        }
        protocol::UDP => {
            let udp = UdpPacket::new_checked(l4)?;
            info.src_port = udp.src_port();
            info.dst_port = udp.dst_port();
            info.payload_len = udp.len().saturating_sub(8);
        }
        protocol::ICMP if info.ip_version == 4 => {
            let icmp = Icmpv4Packet::new_checked(l4)?;
            // Echo request and reply share the identifier: it keys the pseudo-flow.
            if matches!(icmp.msg_type(), 0 | 8) {
                info.src_port = icmp.echo_ident();
                info.dst_port = icmp.echo_ident();
            }
            info.payload_len = (l4.len() - 8) as u16;
        }
        protocol::ICMPV6 if info.ip_version == 6 => {
            let icmp = Icmpv6Packet::new_checked(l4)?;
            if matches!(icmp.msg_type(), 128 | 129) && l4.len() >= 8 {
                info.src_port = icmp.echo_ident();
                info.dst_port = icmp.echo_ident();
            }
            info.payload_len = l4.len().saturating_sub(4) as u16;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::synth::{self, Endpoint, Flags, offsets};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn client() -> Endpoint {
        Endpoint::new(MAC_A, Ipv4Addr::new(203, 0, 113, 5), 40000)
    }
    fn server() -> Endpoint {
        Endpoint::new(MAC_B, Ipv4Addr::new(198, 51, 100, 10), 80)
    }
    fn client6() -> Endpoint {
        Endpoint::new(MAC_A, "2001:db8:ff::5".parse::<Ipv6Addr>().unwrap(), 40000)
    }
    fn server6() -> Endpoint {
        Endpoint::new(MAC_B, "2001:db8:100::10".parse::<Ipv6Addr>().unwrap(), 443)
    }

    fn syn() -> Vec<u8> {
        synth::tcp(&client(), &server(), Flags::SYN, 1, 0, &[])
    }

    /// Inserts an 802.1Q tag with VLAN id 42.
    fn tagged(mut f: Vec<u8>) -> Vec<u8> {
        f.splice(12..12, [0x81, 0x00, 0x00, 42]);
        f
    }

    /// Adds 4 bytes of IPv4 options (NOPs) and fixes IHL and total length.
    fn with_ipv4_options(mut f: Vec<u8>) -> Vec<u8> {
        f.splice(offsets::L4..offsets::L4, [1, 1, 1, 1]);
        f[offsets::IPV4_VERSION_IHL] = 0x46;
        let total = u16::from_be_bytes([f[16], f[17]]) + 4;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f
    }

    /// Puts `n` empty Hop-by-Hop/Destination-options headers in front of the
    /// upper layer of an untagged IPv6 frame.
    fn with_ext_headers(mut f: Vec<u8>, n: usize) -> Vec<u8> {
        let upper = f[20];
        let mut chain = Vec::new();
        for i in 0..n {
            let next = if i + 1 == n { upper } else { 60 };
            chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        f[20] = if n == 0 { upper } else { 0 };
        let len = u16::from_be_bytes([f[18], f[19]]) + chain.len() as u16;
        f[18..20].copy_from_slice(&len.to_be_bytes());
        f.splice(54..54, chain);
        f
    }

    fn set(mut f: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        Ipv4Addr::from(a).to_ipv6_mapped().octets()
    }

    /// The golden table: frame -> classification or drop reason.
    #[test]
    fn golden_classification_table() {
        type Check = fn(&PacketInfo);
        let ok_syn: Check = |i| {
            assert_eq!(i.l3, L3::Ipv4);
            assert_eq!((i.src_port, i.dst_port, i.protocol), (40000, 80, 6));
            assert_eq!(i.src, v4([203, 0, 113, 5]));
            assert_eq!(i.tcp_flags, Some(TcpFlags::SYN));
            assert_eq!((i.l3_offset, i.l4_offset), (14, 34));
        };
        let cases: Vec<(&str, Vec<u8>, Result<Check, WireError>)> = vec![
            ("IPv4 TCP SYN", syn(), Ok(ok_syn)),
            (
                "IPv4 TCP behind an 802.1Q tag",
                tagged(syn()),
                Ok(|i| {
                    assert_eq!(i.vlan_tci, Some(42));
                    assert_eq!((i.l3_offset, i.l4_offset), (18, 38));
                    assert_eq!(i.dst_port, 80);
                }),
            ),
            (
                "IPv4 options are skipped",
                with_ipv4_options(syn()),
                Ok(|i| {
                    assert_eq!(i.l4_offset, 38);
                    assert_eq!((i.src_port, i.dst_port), (40000, 80));
                }),
            ),
            (
                "UDP with Ethernet padding: the payload ends at the UDP length",
                synth::udp(&client(), &server().port(53), b"q"),
                Ok(|i| {
                    assert_eq!((i.protocol, i.dst_port, i.payload_len), (17, 53, 1));
                }),
            ),
            (
                "ICMP echo is keyed by its identifier",
                synth::echo(&client().port(0x4242), &server(), 1, false, b"ping"),
                Ok(|i| {
                    assert_eq!((i.protocol, i.src_port, i.dst_port), (1, 0x4242, 0x4242));
                }),
            ),
            (
                "IPv6 TCP",
                synth::tcp(&client6(), &server6(), Flags::PSH_ACK, 1, 1, b"hello"),
                Ok(|i| {
                    assert_eq!(
                        (i.ip_version, i.l4_offset, i.dst_port, i.payload_len),
                        (6, 54, 443, 5)
                    );
                }),
            ),
            (
                "IPv6 with two extension headers",
                with_ext_headers(synth::tcp(&client6(), &server6(), Flags::SYN, 1, 0, &[]), 2),
                Ok(|i| {
                    assert_eq!((i.protocol, i.l4_offset, i.dst_port), (6, 70, 443));
                }),
            ),
            (
                "ICMPv6 echo",
                synth::echo(&client6().port(7), &server6(), 1, false, b"x"),
                Ok(|i| assert_eq!((i.protocol, i.src_port), (58, 7))),
            ),
            (
                "ARP is classified, not parsed for ports",
                synth::arp(
                    MAC_A,
                    Ipv4Addr::new(1, 2, 3, 4),
                    [0; 6],
                    Ipv4Addr::new(1, 2, 3, 5),
                    false,
                ),
                Ok(|i| {
                    assert_eq!(i.l3, L3::Arp);
                    assert!(!i.is_ip());
                }),
            ),
            (
                "an unknown EtherType (LLDP) is classified as other",
                set(syn(), 12, &[0x88, 0xcc]),
                Ok(|i| assert_eq!(i.l3, L3::Other(0x88cc))),
            ),
            (
                "a first fragment (MF set, offset 0) is a fragment too",
                set(syn(), 20, &[0x20, 0x00]),
                Ok(|i| {
                    assert!(i.fragment);
                    assert_eq!((i.src_port, i.l4_offset), (0, 0));
                }),
            ),
            (
                "a non-first fragment has no ports",
                set(syn(), 20, &[0x00, 0x10]),
                Ok(|i| {
                    assert!(i.fragment);
                    assert_eq!((i.src_port, i.dst_port, i.l4_offset), (0, 0, 0));
                }),
            ),
            (
                "a runt shorter than an Ethernet header",
                vec![0u8; 13],
                Err(WireError::Truncated),
            ),
            (
                "IPv4 IHL 4 (< 5)",
                set(syn(), offsets::IPV4_VERSION_IHL, &[0x44]),
                Err(WireError::BadHeaderLen),
            ),
            (
                "IPv4 IHL 15 past the frame",
                set(syn(), offsets::IPV4_VERSION_IHL, &[0x4f]),
                Err(WireError::Truncated),
            ),
            (
                "IPv4 total length past the frame",
                set(syn(), offsets::IPV4_TOTAL_LEN, &1500u16.to_be_bytes()),
                Err(WireError::BadTotalLen),
            ),
            (
                "IPv4 total length below the header",
                set(syn(), offsets::IPV4_TOTAL_LEN, &10u16.to_be_bytes()),
                Err(WireError::BadTotalLen),
            ),
            (
                "EtherType IPv4 carrying version 6",
                set(syn(), offsets::IPV4_VERSION_IHL, &[0x65]),
                Err(WireError::BadVersion),
            ),
            (
                "TCP data offset 4 (< 5)",
                set(syn(), offsets::TCP_DATA_OFFSET, &[0x40]),
                Err(WireError::BadHeaderLen),
            ),
            (
                "TCP data offset past the segment",
                set(syn(), offsets::TCP_DATA_OFFSET, &[0xf0]),
                Err(WireError::BadHeaderLen),
            ),
            (
                "UDP length past the datagram",
                set(
                    synth::udp(&client(), &server().port(53), b"q"),
                    offsets::L4 + 4,
                    &200u16.to_be_bytes(),
                ),
                Err(WireError::BadTotalLen),
            ),
            (
                "IPv6 payload length past the frame",
                set(
                    synth::tcp(&client6(), &server6(), Flags::SYN, 1, 0, &[]),
                    18,
                    &900u16.to_be_bytes(),
                ),
                Err(WireError::BadTotalLen),
            ),
            (
                "IPv6 extension chain longer than the bound",
                with_ext_headers(synth::tcp(&client6(), &server6(), Flags::SYN, 1, 0, &[]), 9),
                Err(WireError::ExtHeaderChain),
            ),
            (
                "a truncated ICMP header",
                {
                    let mut f = synth::echo(&client(), &server(), 1, false, &[]);
                    f.truncate(14 + 20 + 4);
                    set(f, offsets::IPV4_TOTAL_LEN, &24u16.to_be_bytes())
                },
                Err(WireError::Truncated),
            ),
        ];
        for (what, frame, want) in cases {
            match (classify(&frame), want) {
                (Ok(info), Ok(check)) => check(&info),
                (Err(got), Err(want)) => assert_eq!(got, want, "{what}"),
                (got, want) => panic!("{what}: got {got:?}, want {:?}", want.map(|_| "Ok")),
            }
        }
    }

    #[test]
    fn every_prefix_of_a_valid_frame_classifies_without_panicking() {
        let frames = [
            syn(),
            tagged(syn()),
            with_ext_headers(synth::tcp(&client6(), &server6(), Flags::SYN, 1, 0, &[]), 3),
            synth::udp(&client6(), &server6(), b"data"),
        ];
        for f in frames {
            for len in 0..f.len() {
                let _ = classify(&f[..len]);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = classify(&data);
        }

        /// Valid frames with a few bytes overwritten anywhere: classification
        /// either succeeds with offsets inside the frame, or names a reason.
        #[test]
        fn mutated_frames_stay_in_bounds(
            which in 0usize..3,
            edits in proptest::collection::vec((0usize..120, proptest::num::u8::ANY), 1..6),
        ) {
            let mut f = match which {
                0 => syn(),
                1 => tagged(synth::udp(&client(), &server().port(53), b"query")),
                _ => with_ext_headers(synth::tcp(&client6(), &server6(), Flags::SYN, 1, 0, &[]), 2),
            };
            for (at, byte) in edits {
                if let Some(b) = f.get_mut(at) {
                    *b = byte;
                }
            }
            if let Ok(info) = classify(&f) {
                proptest::prop_assert!(usize::from(info.l4_offset) <= f.len());
                proptest::prop_assert!(usize::from(info.l3_offset) <= f.len());
            }
        }
    }
}
