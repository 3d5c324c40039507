//! Address resolution for decoys: ARP replies (RFC 826) and IPv6 neighbour
//! advertisements (RFC 4861), each with the decoy's own MAC. A duplicate
//! address detection probe (from the unspecified address) is never answered:
//! someone is claiming that address, and it should have it (RFC 4862).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::reply_frame;
use crate::engine::persona::Persona;
use crate::io::PacketBuf;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv6Packet, Ipv6Packet, Ipv6Repr, NdpOption, WireError, protocol,
};

/// What an ARP request asks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ArpQuestion {
    /// Who asks.
    pub sender_mac: EthernetAddress,
    /// Its address.
    pub sender_ip: Ipv4Addr,
    /// The address asked about.
    pub target_ip: Ipv4Addr,
    /// 802.1Q tag.
    pub vlan_tci: Option<u16>,
}

/// Reads an ARP request (`who-has`); `None` for replies and anything else.
pub fn arp_question(frame: &[u8]) -> Option<ArpQuestion> {
    arp_message(frame).and_then(|(request, q)| request.then_some(q))
}

/// Reads an Ethernet/IPv4 ARP message: whether it is a request, and its
/// sender and target (for a reply, the target is the one who asked).
pub fn arp_message(frame: &[u8]) -> Option<(bool, ArpQuestion)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let arp = ArpPacket::new_checked(eth.payload()).ok()?;
    let repr = ArpRepr::parse(&arp).ok()?;
    let request = match repr.operation {
        ArpOperation::Request => true,
        ArpOperation::Reply => false,
        _ => return None,
    };
    Some((
        request,
        ArpQuestion {
            sender_mac: repr.sender_hw_addr,
            sender_ip: repr.sender_ip,
            target_ip: repr.target_ip,
            vlan_tci: eth.vlan_tci(),
        },
    ))
}

/// A neighbour discovery message that says something about an address's
/// owner (RFC 4861 section 4.3, 4.4; RFC 4862 section 5.4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NdpSign {
    /// A solicitation from the unspecified address: duplicate address
    /// detection, a host about to take the target.
    Dad(Ipv6Addr),
    /// An advertisement, solicited or not: the target's owner speaks.
    Advert(Ipv6Addr),
}

/// Reads a solicitation from `::` or an advertisement (hop limit 255, as
/// RFC 4861 requires of both); `None` for anything else.
pub fn ndp_sign(frame: &[u8], l3_offset: usize, l4_offset: usize) -> Option<NdpSign> {
    let ip = Ipv6Packet::new_checked(frame.get(l3_offset..)?).ok()?;
    if ip.hop_limit() != 255 {
        return None;
    }
    let end = l3_offset + 40 + usize::from(ip.payload_len());
    let icmp = Icmpv6Packet::new_checked(frame.get(l4_offset..end)?).ok()?;
    if icmp.code() != 0 {
        return None;
    }
    match icmp.msg_type() {
        135 if ip.src_addr().is_unspecified() => Some(NdpSign::Dad(icmp.target_addr())),
        136 => Some(NdpSign::Advert(icmp.target_addr())),
        _ => None,
    }
}

/// Answers `q` for the decoy, in place.
pub fn arp_reply<B: PacketBuf>(
    buf: &mut B,
    q: &ArpQuestion,
    persona: &Persona,
) -> Result<(), WireError> {
    let l3 = if q.vlan_tci.is_some() { 18 } else { 14 };
    let frame = reply_frame(buf, l3 + 28)?;
    EthernetRepr {
        src_addr: persona.mac,
        dst_addr: q.sender_mac,
        vlan_tci: q.vlan_tci,
        ethertype: EtherType::ARP,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut *frame))?;
    let arp = frame.get_mut(l3..l3 + 28).ok_or(WireError::Truncated)?;
    ArpRepr {
        operation: ArpOperation::Reply,
        sender_hw_addr: persona.mac,
        sender_ip: q.target_ip,
        target_hw_addr: q.sender_mac,
        target_ip: q.sender_ip,
    }
    .emit(&mut ArpPacket::new_unchecked(arp))
}

/// What a neighbour solicitation asks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NdpQuestion {
    /// Who asks (link layer).
    pub sender_mac: EthernetAddress,
    /// Its address.
    pub sender_ip: Ipv6Addr,
    /// The address asked about.
    pub target: Ipv6Addr,
    /// 802.1Q tag.
    pub vlan_tci: Option<u16>,
}

/// Reads a neighbour solicitation at `l4_offset`; `None` for DAD probes
/// (unspecified source), anything with a hop limit other than 255 (RFC 4861
/// section 7.1.1), and anything else.
pub fn ndp_question(frame: &[u8], l3_offset: usize, l4_offset: usize) -> Option<NdpQuestion> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv6Packet::new_checked(frame.get(l3_offset..)?).ok()?;
    if ip.hop_limit() != 255 || ip.src_addr().is_unspecified() {
        return None;
    }
    let end = l3_offset + 40 + usize::from(ip.payload_len());
    let icmp = Icmpv6Packet::new_checked(frame.get(l4_offset..end)?).ok()?;
    if icmp.msg_type() != 135 || icmp.code() != 0 {
        return None;
    }
    let sender_mac = icmp
        .ndp_options_iter()
        .map_while(Result::ok)
        .find_map(|o| match o {
            NdpOption::SourceLinkLayerAddr(mac) => Some(mac),
            _ => None,
        })
        .unwrap_or(eth.src_addr());
    Some(NdpQuestion {
        sender_mac,
        sender_ip: ip.src_addr(),
        target: icmp.target_addr(),
        vlan_tci: eth.vlan_tci(),
    })
}

/// Answers `q` with a solicited neighbour advertisement carrying the
/// decoy's MAC, in place. Without the override flag (RFC 4861 section
/// 7.2.5): a cache that already holds an owner's link-layer address keeps
/// it, so a decoy never takes an address back from a host that appeared.
pub fn neighbor_advert<B: PacketBuf>(
    buf: &mut B,
    q: &NdpQuestion,
    persona: &Persona,
) -> Result<(), WireError> {
    let l3 = if q.vlan_tci.is_some() { 18 } else { 14 };
    let icmp_len = 24 + 8;
    let frame = reply_frame(buf, l3 + 40 + icmp_len)?;
    EthernetRepr {
        src_addr: persona.mac,
        dst_addr: q.sender_mac,
        vlan_tci: q.vlan_tci,
        ethertype: EtherType::IPV6,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut *frame))?;
    Ipv6Repr {
        src_addr: q.target,
        dst_addr: q.sender_ip,
        next_header: protocol::ICMPV6,
        payload_len: icmp_len,
        // Neighbour discovery is only valid with hop limit 255.
        hop_limit: 255,
    }
    .emit(&mut Ipv6Packet::new_unchecked(
        frame
            .get_mut(l3..l3 + 40 + icmp_len)
            .ok_or(WireError::Truncated)?,
    ))?;
    let msg = frame
        .get_mut(l3 + 40..l3 + 40 + icmp_len)
        .ok_or(WireError::Truncated)?;
    msg.fill(0);
    msg[0] = 136;
    // Option: target link-layer address (type 2, length 1 x 8 octets).
    msg[24] = 2;
    msg[25] = 1;
    msg[26..32].copy_from_slice(&persona.mac.0);
    let mut icmp = Icmpv6Packet::new_unchecked(msg);
    icmp.set_na_flags(false, true, false);
    icmp.set_target_addr(&q.target);
    icmp.fill_checksum(&q.target, &q.sender_ip);
    Ok(())
}
