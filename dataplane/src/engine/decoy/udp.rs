//! UDP marks: the services a persona runs (an IOS router's DNS and NTP:
//! `PersonaKind::udp_ports`), answered plausibly; other ports get what the
//! persona's stack answers a closed port (ICMP port unreachable, or
//! nothing: `engine::stack`).

use std::net::Ipv6Addr;

use super::{IpFace, ReplyHead, reply_frame, write_l2_l3};
use crate::engine::classify::PacketInfo;
use crate::engine::persona::Persona;
use crate::io::PacketBuf;
use crate::wire::{UdpPacket, WireError, protocol};

/// Largest UDP reply payload.
const MAX_REPLY: usize = 512;

/// Builds the reply payload for `port` from the request, or `None` when the
/// request is not one this service would answer.
/// NTP's 64-bit timestamp (RFC 5905 6: seconds since 1900, 32.32) of Unix
/// milliseconds.
fn ntp_time(unix_ms: u64) -> u64 {
    let secs = unix_ms / 1000 + 2_208_988_800;
    let frac = ((unix_ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

fn reply_payload(
    port: u16,
    request: &[u8],
    persona: &Persona,
    upstream: [u8; 4],
    now_ms: u64,
    out: &mut [u8; MAX_REPLY],
) -> Option<usize> {
    match port {
        53 => {
            // DNS (RFC 1035): a query (QR = 0) with one question gets the same
            // message back as a response, recursion refused (RCODE 5).
            if request.len() < 12 || request.get(2)? & 0x80 != 0 || request.get(4..6)? != [0, 1] {
                return None;
            }
            // The question: a name of labels, then QTYPE and QCLASS. The
            // reply ends there (additional records such as EDNS are dropped
            // with ARCOUNT set to 0).
            let mut at = 12;
            loop {
                let label = usize::from(*request.get(at)?);
                if label == 0 {
                    at += 1;
                    break;
                }
                if label > 63 {
                    return None;
                }
                at += 1 + label;
            }
            let len = at + 4;
            if len > request.len() || len > MAX_REPLY {
                return None;
            }
            let request = request.get(..len)?;
            out.get_mut(..len)?.copy_from_slice(request);
            let rd = out.get(2)? & 0x01;
            *out.get_mut(2)? = 0x80 | (request.get(2)? & 0x78) | rd;
            *out.get_mut(3)? = 0x05;
            // No answer, authority or additional records.
            out.get_mut(6..12)?.fill(0);
            Some(len)
        }
        123 => {
            // NTPv4 (RFC 5905 7.3): a client request (mode 3) gets a server
            // reply (mode 4) from a router synchronised to an upstream
            // stratum-2 server: stratum 3, the upstream's address as the
            // reference id, and timestamps that move with the clock.
            if request.len() < 48 || request.first()? & 0x07 != 3 {
                return None;
            }
            let reply = out.get_mut(..48)?;
            reply.fill(0);
            reply[0] = (request[0] & 0x38) | 0x04;
            reply[1] = 3;
            reply[2] = request[2].clamp(6, 10);
            reply[3] = 0xe8; // precision 2^-24
            // Root delay and dispersion (16.16 seconds): tens of
            // milliseconds, fixed per decoy give or take its polls.
            let id = persona.identity();
            let delay = 0x0000_0400 + (id & 0x7ff) as u32;
            let dispersion =
                0x0000_0800 + ((id >> 11) & 0xfff) as u32 + (now_ms / 1000 % 64) as u32;
            reply[4..8].copy_from_slice(&delay.to_be_bytes());
            reply[8..12].copy_from_slice(&dispersion.to_be_bytes());
            reply[12..16].copy_from_slice(&upstream);
            // Last synchronised up to 17 minutes ago (the 1024 s poll).
            let reference = now_ms.saturating_sub((id >> 24) % 1_024_000);
            reply[16..24].copy_from_slice(&ntp_time(reference).to_be_bytes());
            reply[24..32].copy_from_slice(&request[40..48]);
            reply[32..40].copy_from_slice(&ntp_time(now_ms).to_be_bytes());
            // Transmitted some tens of microseconds after receipt.
            reply[40..48].copy_from_slice(
                &ntp_time(now_ms)
                    .wrapping_add(0x0020_0000 + (id & 0xfffff))
                    .to_be_bytes(),
            );
            Some(48)
        }
        _ => None,
    }
}

/// Answers a datagram to a configured UDP service port, in place. Returns
/// `Ok(false)` when the service would not answer this request.
pub fn service_reply<B: PacketBuf>(
    buf: &mut B,
    info: &PacketInfo,
    persona: &Persona,
    now_ms: u64,
    ip_id: u16,
) -> Result<bool, WireError> {
    let head = ReplyHead::new(buf.data(), info).ok_or(WireError::Truncated)?;
    let payload_at = usize::from(info.l4_offset) + 8;
    let request = buf
        .data()
        .get(payload_at..payload_at + usize::from(info.payload_len))
        .ok_or(WireError::Truncated)?;
    let mut out = [0u8; MAX_REPLY];
    // The router's own upstream: the first address of its /24. An IPv6
    // upstream's refid is the first four bytes of a hash of its address
    // (RFC 5905 7.3); the decoy's identity bits stand in for that hash.
    let upstream = match head.ip_version {
        4 => {
            let [a, b, c, _] = head.decoy_v4().octets();
            [a, b, c, 1]
        }
        _ => ((persona.identity() >> 8) as u32).to_be_bytes(),
    };
    let Some(len) = reply_payload(info.dst_port, request, persona, upstream, now_ms, &mut out)
    else {
        return Ok(false);
    };
    let l4 = head.l4_offset();
    let frame = reply_frame(buf, l4 + 8 + len)?;
    let stack = persona.stack;
    let face = IpFace {
        ttl: stack.ttl,
        hop_limit: stack.hop_limit,
        dont_frag: stack.df,
        ident: ip_id,
    };
    write_l2_l3(frame, &head, persona.mac, &face, protocol::UDP, 8 + len)?;
    let dgram = frame
        .get_mut(l4..l4 + 8 + len)
        .ok_or(WireError::Truncated)?;
    dgram
        .get_mut(8..)
        .ok_or(WireError::Truncated)?
        .copy_from_slice(out.get(..len).ok_or(WireError::Truncated)?);
    let mut udp = UdpPacket::new_unchecked(dgram);
    udp.set_src_port(info.dst_port);
    udp.set_dst_port(info.src_port);
    udp.set_len((8 + len) as u16);
    udp.set_checksum(0);
    if head.ip_version == 4 {
        udp.fill_checksum_v4(head.decoy_v4(), head.prober_v4());
    } else {
        udp.fill_checksum_v6(&Ipv6Addr::from(head.decoy), &Ipv6Addr::from(head.prober));
    }
    Ok(true)
}
