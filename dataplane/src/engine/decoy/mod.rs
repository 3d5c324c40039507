//! Marks: the replies a decoy sends, written in place into the buffer of the
//! probe they answer (no allocation, no per-probe state).
//!
//! Each reply is built from a [`Probe`] (what the incoming frame said, read
//! first) and the decoy's [`Persona`]: the Ethernet header swaps to the
//! prober's MAC and the decoy's own, the IP header is rewritten with the
//! persona's TTL, IP-ID and DF, and the transport layer comes from
//! [`tcp`], [`icmp`], [`udp`] or [`neighbor`]. Headers are rewritten whole
//! rather than patched: a SYN-ACK's options differ from the SYN's, so its
//! TCP checksum is computed afresh over a header of at most 60 bytes (a few
//! nanoseconds); replies that only swap fields (echo) use RFC 1624
//! incremental updates.

pub mod certs;
pub mod http;
pub mod icmp;
pub mod neighbor;
pub mod service;
pub mod smb;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::net::{Ipv4Addr, Ipv6Addr};

use super::classify::PacketInfo;
use crate::io::PacketBuf;
use crate::wire::{
    EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet,
    Ipv6Repr, WireError,
};

/// Ethernet's minimum frame length without the FCS; replies are padded to it.
pub const MIN_FRAME: usize = 60;

/// The addressing of a reply, read from the probe before it is overwritten.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReplyHead {
    /// The prober's MAC (the reply's destination).
    pub prober_mac: EthernetAddress,
    /// 802.1Q tag of the probe, kept on the reply.
    pub vlan_tci: Option<u16>,
    /// 4 or 6.
    pub ip_version: u8,
    /// The prober's address (IPv4-mapped for IPv4).
    pub prober: [u8; 16],
    /// The decoy's address.
    pub decoy: [u8; 16],
}

impl ReplyHead {
    /// The head of a reply to an IP probe.
    pub fn new(frame: &[u8], info: &PacketInfo) -> Option<ReplyHead> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        Some(ReplyHead {
            prober_mac: eth.src_addr(),
            vlan_tci: info.vlan_tci,
            ip_version: info.ip_version,
            prober: info.src,
            decoy: info.dst,
        })
    }

    fn l3_offset(&self) -> usize {
        if self.vlan_tci.is_some() { 18 } else { 14 }
    }

    fn ip_header_len(&self) -> usize {
        if self.ip_version == 4 { 20 } else { 40 }
    }

    /// Offset of the transport header in the reply.
    pub fn l4_offset(&self) -> usize {
        self.l3_offset() + self.ip_header_len()
    }

    /// The decoy's address as IPv4 (for IPv4 replies).
    pub fn decoy_v4(&self) -> Ipv4Addr {
        Ipv6Addr::from(self.decoy)
            .to_ipv4_mapped()
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// The prober's address as IPv4.
    pub fn prober_v4(&self) -> Ipv4Addr {
        Ipv6Addr::from(self.prober)
            .to_ipv4_mapped()
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}

/// Resizes `buf` to hold a reply of `len` bytes (padded to [`MIN_FRAME`]),
/// zeroing the padding, and returns the writable frame.
pub fn reply_frame<B: PacketBuf>(buf: &mut B, len: usize) -> Result<&mut [u8], WireError> {
    let total = len.max(MIN_FRAME);
    buf.set_len(total).map_err(|_| WireError::Truncated)?;
    let frame = buf.data_mut();
    if let Some(pad) = frame.get_mut(len..) {
        pad.fill(0);
    }
    Ok(frame)
}

/// The IP header fields a reply takes from its persona's stack.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IpFace {
    /// IPv4 TTL.
    pub ttl: u8,
    /// IPv6 hop limit.
    pub hop_limit: u8,
    /// IPv4 don't-fragment bit.
    pub dont_frag: bool,
    /// IPv4 identification.
    pub ident: u16,
}

/// Writes the Ethernet and IP headers of a reply from the decoy (whose MAC
/// is `mac`) to the prober carrying `l4_len` bytes of `protocol`; returns
/// the L4 offset.
pub fn write_l2_l3(
    frame: &mut [u8],
    head: &ReplyHead,
    mac: EthernetAddress,
    face: &IpFace,
    protocol: u8,
    l4_len: usize,
) -> Result<usize, WireError> {
    let ethertype = if head.ip_version == 4 {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: head.prober_mac,
        vlan_tci: head.vlan_tci,
        ethertype,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut *frame))?;
    let l3 = head.l3_offset();
    let ip_buf = frame.get_mut(l3..).ok_or(WireError::Truncated)?;
    if head.ip_version == 4 {
        let repr = Ipv4Repr {
            src_addr: head.decoy_v4(),
            dst_addr: head.prober_v4(),
            protocol,
            payload_len: l4_len,
            ttl: face.ttl,
            ident: face.ident,
            dont_frag: face.dont_frag,
            dscp_ecn: 0,
        };
        let end = 20 + l4_len;
        let ip = ip_buf.get_mut(..end).ok_or(WireError::Truncated)?;
        repr.emit(&mut Ipv4Packet::new_unchecked(ip))?;
    } else {
        let repr = Ipv6Repr {
            src_addr: Ipv6Addr::from(head.decoy),
            dst_addr: Ipv6Addr::from(head.prober),
            next_header: protocol,
            payload_len: l4_len,
            hop_limit: face.hop_limit,
        };
        let end = 40 + l4_len;
        let ip = ip_buf.get_mut(..end).ok_or(WireError::Truncated)?;
        repr.emit(&mut Ipv6Packet::new_unchecked(ip))?;
    }
    Ok(head.l4_offset())
}
