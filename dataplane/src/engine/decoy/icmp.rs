//! ICMP marks: echo replies from decoys, and the port-unreachable a real
//! host sends for a closed UDP port (RFC 792, RFC 4443 section 3.1).

use std::net::Ipv6Addr;

use super::{IpFace, ReplyHead, reply_frame, write_l2_l3};
use crate::engine::classify::PacketInfo;
use crate::engine::persona::Persona;
use crate::io::PacketBuf;
use crate::wire::{Icmpv4Packet, Icmpv6Packet, WireError, checksum, protocol};

/// How much of the offending packet an IPv4 error quotes: as Linux does,
/// enough to keep the error within 576 bytes (RFC 1812 section 4.3.2.3).
const QUOTE_V4: usize = 576 - 20 - 8;
/// IPv6 errors fit within the minimum MTU, 1280 bytes (RFC 4443 section 2.4).
const QUOTE_V6: usize = 1280 - 40 - 8;

/// Turns an echo request into the decoy's echo reply, in place: the ICMP
/// message is kept (moved if the request had IPv4 options), its type changed
/// (and its code zeroed, on stacks that do) and its checksum updated
/// incrementally (RFC 1624). DF is copied from the request on stacks that
/// copy it, else clear; `ip_id` is the reply's identification.
pub fn echo_reply<B: PacketBuf>(
    buf: &mut B,
    info: &PacketInfo,
    persona: &Persona,
    ip_id: u16,
) -> Result<(), WireError> {
    let head = ReplyHead::new(buf.data(), info).ok_or(WireError::Truncated)?;
    let from = usize::from(info.l4_offset);
    let icmp_len = usize::from(info.payload_len) + if info.ip_version == 4 { 8 } else { 4 };
    let to = head.l4_offset();
    let stack = persona.stack;
    // Flags and fragment offset: DF is 0x4000 (RFC 791).
    let l3 = usize::from(info.l3_offset);
    let request_df = info.ip_version == 4
        && buf
            .data()
            .get(l3 + 6)
            .is_some_and(|flags| flags & 0x40 != 0);
    let face = IpFace {
        ttl: stack.icmp_ttl,
        hop_limit: stack.hop_limit,
        dont_frag: stack.echo_copies_df && request_df,
        ident: ip_id,
    };
    let frame = buf.data_mut();
    if from != to {
        if from + icmp_len > frame.len() {
            return Err(WireError::Truncated);
        }
        frame.copy_within(from..from + icmp_len, to);
    }
    let frame = reply_frame(buf, to + icmp_len)?;
    let proto = if head.ip_version == 4 {
        protocol::ICMP
    } else {
        protocol::ICMPV6
    };
    write_l2_l3(frame, &head, persona.mac, &face, proto, icmp_len)?;
    let msg = frame
        .get_mut(to..to + icmp_len)
        .ok_or(WireError::Truncated)?;
    if head.ip_version == 4 {
        let mut icmp = Icmpv4Packet::new_checked(msg)?;
        let old = u16::from_be_bytes([icmp.msg_type(), icmp.code()]);
        let code = if stack.echo_keeps_code {
            icmp.code()
        } else {
            0
        };
        icmp.set_msg_type(0);
        icmp.set_code(code);
        let new = u16::from_be_bytes([0, code]);
        icmp.set_checksum(checksum::update16(icmp.checksum(), old, new));
    } else {
        // The ICMPv6 checksum covers the pseudo-header, whose addresses swap
        // places (the sum is unchanged); recomputing is as cheap and simpler.
        let mut icmp = Icmpv6Packet::new_checked(msg)?;
        icmp.set_msg_type(129);
        icmp.fill_checksum(&Ipv6Addr::from(head.decoy), &Ipv6Addr::from(head.prober));
    }
    Ok(())
}

/// Turns a UDP datagram to a closed port into the decoy's port-unreachable
/// error quoting it: whole, or (IPv4, on stacks that do) its IP header and
/// first 8 bytes, RFC 792's minimum.
pub fn port_unreachable<B: PacketBuf>(
    buf: &mut B,
    info: &PacketInfo,
    persona: &Persona,
    ip_id: u16,
) -> Result<(), WireError> {
    let head = ReplyHead::new(buf.data(), info).ok_or(WireError::Truncated)?;
    let l3 = usize::from(info.l3_offset);
    let (quote_max, proto) = if head.ip_version == 4 {
        (QUOTE_V4, protocol::ICMP)
    } else {
        (QUOTE_V6, protocol::ICMPV6)
    };
    // Quote the IP packet, not the Ethernet padding after it.
    let header_len = usize::from(info.l4_offset) - l3;
    let ip_len = header_len + 8 + usize::from(info.payload_len);
    let stack = persona.stack;
    let quote_max = if stack.quote_whole || head.ip_version != 4 {
        quote_max
    } else {
        header_len + 8
    };
    let quote_len = ip_len
        .min(buf.data().len().saturating_sub(l3))
        .min(quote_max);
    let l4 = head.l4_offset();
    let icmp_len = 8 + quote_len;
    // Grow first, then move the quoted packet up past the new headers.
    let frame = reply_frame(buf, l4 + icmp_len)?;
    frame.copy_within(l3..l3 + quote_len, l4 + 8);
    let face = IpFace {
        ttl: stack.icmp_ttl,
        hop_limit: stack.hop_limit,
        dont_frag: false,
        ident: ip_id,
    };
    write_l2_l3(frame, &head, persona.mac, &face, proto, icmp_len)?;
    let msg = frame
        .get_mut(l4..l4 + icmp_len)
        .ok_or(WireError::Truncated)?;
    if let Some(h) = msg.get_mut(..8) {
        // Type, code, checksum, then 4 unused bytes.
        let (t, c) = if head.ip_version == 4 { (3, 3) } else { (1, 4) };
        h.copy_from_slice(&[t, c, 0, 0, 0, 0, 0, 0]);
    }
    if head.ip_version == 4 {
        Icmpv4Packet::new_checked(msg)?.fill_checksum();
    } else {
        Icmpv6Packet::new_checked(msg)?
            .fill_checksum(&Ipv6Addr::from(head.decoy), &Ipv6Addr::from(head.prober));
    }
    Ok(())
}
