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
    fn new(l3: L3, vlan_tci: Option<u16>, l3_offset: usize) -> Self {
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
    let eth = EthernetFrame::new_checked(frame)?;
    let l3_offset = eth.header_len();
    let payload = eth.payload();
    let vlan = eth.vlan_tci();
    match eth.ethertype() {
        EtherType::IPV4 => classify_ipv4(payload, PacketInfo::new(L3::Ipv4, vlan, l3_offset)),
        EtherType::IPV6 => classify_ipv6(payload, PacketInfo::new(L3::Ipv6, vlan, l3_offset)),
        EtherType::ARP => match ArpPacket::new_checked(payload) {
            Ok(_) | Err(WireError::Unsupported) => Ok(PacketInfo::new(L3::Arp, vlan, l3_offset)),
            Err(e) => Err(e),
        },
        other => Ok(PacketInfo::new(L3::Other(other.0), vlan, l3_offset)),
    }
}

fn classify_ipv4(l3: &[u8], mut info: PacketInfo) -> Result<PacketInfo, WireError> {
    let ip = Ipv4Packet::new_checked(l3)?;
    info.ip_version = 4;
    info.protocol = ip.protocol();
    info.src = ip.src_addr().to_ipv6_mapped().octets();
    info.dst = ip.dst_addr().to_ipv6_mapped().octets();
    info.fragment = ip.frag_offset() != 0;
    if info.fragment {
        return Ok(info);
    }
    let header_len = ip.header_len();
    info.l4_offset = info.l3_offset + header_len as u16;
    // `payload` stops at the IPv4 total length, so Ethernet padding is not L4 data.
    classify_l4(ip.payload(), info)
}

fn classify_ipv6(l3: &[u8], mut info: PacketInfo) -> Result<PacketInfo, WireError> {
    let ip = Ipv6Packet::new_checked(l3)?;
    let upper = ip.upper_layer()?;
    info.ip_version = 6;
    info.protocol = upper.protocol;
    info.src = ip.src_addr().octets();
    info.dst = ip.dst_addr().octets();
    info.fragment = upper.is_fragment;
    if info.fragment {
        return Ok(info);
    }
    info.l4_offset = info.l3_offset + upper.offset as u16;
    // The IPv6 payload ends at 40 + payload length; the upper layer starts at `offset`.
    let end = 40 + usize::from(ip.payload_len());
    let l4 = l3.get(upper.offset..end).ok_or(WireError::ExtHeaderChain)?;
    classify_l4(l4, info)
}

fn classify_l4(l4: &[u8], mut info: PacketInfo) -> Result<PacketInfo, WireError> {
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
    Ok(info)
}
