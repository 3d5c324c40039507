//! Frame synthesis for the demo scenario, tests and benchmarks.
//!
//! Frames are built with etherparse's `PacketBuilder`, a well-kept crate that
//! shares no code with our `wire` module, so tests that feed these frames to
//! our parsers check them against an independent writer. Frames shorter than
//! Ethernet's 60-byte minimum are zero-padded as a NIC would pad them, which
//! also exercises the rule that IP lengths, not frame lengths, bound payloads.
//! Nothing here is on the packet path.

use std::net::{IpAddr, Ipv4Addr};

use etherparse::PacketBuilder;

/// Ethernet's minimum frame length without the FCS.
pub const MIN_FRAME: usize = 60;

/// One end of a conversation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// MAC address.
    pub mac: [u8; 6],
    /// IP address (both ends of a frame must be the same family).
    pub ip: IpAddr,
    /// Port (TCP/UDP) or echo identifier (ICMP).
    pub port: u16,
}

impl Endpoint {
    /// An endpoint.
    pub fn new(mac: [u8; 6], ip: impl Into<IpAddr>, port: u16) -> Self {
        Endpoint {
            mac,
            ip: ip.into(),
            port,
        }
    }

    /// The same host on another port.
    pub fn port(self, port: u16) -> Self {
        Endpoint { port, ..self }
    }
}

/// TCP flags for [`tcp`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// SYN.
    pub syn: bool,
    /// ACK (with the acknowledgement number given to [`tcp`]).
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// PSH.
    pub psh: bool,
}

impl Flags {
    /// SYN.
    pub const SYN: Flags = Flags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
    };
    /// SYN+ACK.
    pub const SYN_ACK: Flags = Flags {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
        psh: false,
    };
    /// ACK.
    pub const ACK: Flags = Flags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
        psh: false,
    };
    /// PSH+ACK (data).
    pub const PSH_ACK: Flags = Flags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
        psh: true,
    };
    /// FIN+ACK.
    pub const FIN_ACK: Flags = Flags {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
        psh: false,
    };
    /// RST+ACK.
    pub const RST_ACK: Flags = Flags {
        syn: false,
        ack: true,
        fin: false,
        rst: true,
        psh: false,
    };
}

fn ip_step(
    src: &Endpoint,
    dst: &Endpoint,
    ttl: u8,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(src.mac, dst.mac);
    match (src.ip, dst.ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), ttl),
        (s, d) => eth.ipv6(v6(s), v6(d), ttl),
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

fn finish<S>(size: usize, write: impl FnOnce(&mut Vec<u8>) -> Result<(), S>) -> Vec<u8> {
    let mut frame = Vec::with_capacity(size.max(MIN_FRAME));
    // Writing to a Vec only fails on a payload too large for the IP length
    // field; callers pass small payloads, and an empty frame is the fallback.
    if write(&mut frame).is_err() {
        frame.clear();
    }
    pad(frame)
}

/// A TCP segment from `src` to `dst` (TTL 64).
pub fn tcp(
    src: &Endpoint,
    dst: &Endpoint,
    flags: Flags,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    tcp_ttl(src, dst, flags, seq, ack, payload, 64)
}

/// A TCP segment with a given TTL / hop limit.
pub fn tcp_ttl(
    src: &Endpoint,
    dst: &Endpoint,
    flags: Flags,
    seq: u32,
    ack: u32,
    payload: &[u8],
    ttl: u8,
) -> Vec<u8> {
    // A SYN carries MSS like every real stack's.
    let mss = [etherparse::TcpOptionElement::MaximumSegmentSize(1460)];
    let options: &[etherparse::TcpOptionElement] = if flags.syn { &mss } else { &[] };
    tcp_with(src, dst, flags, seq, ack, payload, ttl, options)
}

/// A TCP segment carrying the timestamps option (RFC 7323) `(tsval,
/// tsecr)`, as a stack that negotiated timestamps sends it (a SYN also
/// offers MSS).
pub fn tcp_ts(
    src: &Endpoint,
    dst: &Endpoint,
    flags: Flags,
    seq: u32,
    ack: u32,
    payload: &[u8],
    ts: (u32, u32),
) -> Vec<u8> {
    use etherparse::TcpOptionElement::{MaximumSegmentSize, Noop, Timestamp};
    let with_mss = [MaximumSegmentSize(1460), Noop, Noop, Timestamp(ts.0, ts.1)];
    let options: &[etherparse::TcpOptionElement] =
        if flags.syn { &with_mss } else { &with_mss[1..] };
    tcp_with(src, dst, flags, seq, ack, payload, 64, options)
}

/// A SYN laid out as Linux 5/6 sends it: MSS 1460, SACK permitted,
/// timestamps `(tsval, 0)`, NOP, window scale 7 when `tsval` is given
/// (`net.ipv4.tcp_timestamps = 1`, the default); MSS, NOP, NOP, SACK
/// permitted, NOP, window scale 7 without.
pub fn linux_syn(src: &Endpoint, dst: &Endpoint, seq: u32, tsval: Option<u32>) -> Vec<u8> {
    use etherparse::TcpOptionElement::{
        MaximumSegmentSize as Mss, Noop, SelectiveAcknowledgementPermitted as Sack, Timestamp,
        WindowScale,
    };
    let with_ts;
    let options: &[etherparse::TcpOptionElement] = match tsval {
        Some(t) => {
            with_ts = [Mss(1460), Sack, Timestamp(t, 0), Noop, WindowScale(7)];
            &with_ts
        }
        None => &[Mss(1460), Noop, Noop, Sack, Noop, WindowScale(7)],
    };
    tcp_with(src, dst, Flags::SYN, seq, 0, &[], 64, options)
}

/// A TCP segment with these options.
#[allow(clippy::too_many_arguments)]
fn tcp_with(
    src: &Endpoint,
    dst: &Endpoint,
    flags: Flags,
    seq: u32,
    ack: u32,
    payload: &[u8],
    ttl: u8,
    options: &[etherparse::TcpOptionElement],
) -> Vec<u8> {
    let mut b = ip_step(src, dst, ttl).tcp(src.port, dst.port, seq, 64240);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(ack);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    if flags.psh {
        b = b.psh();
    }
    if !options.is_empty() {
        b = match b.options(options) {
            Ok(b) => b,
            Err(_) => return Vec::new(),
        };
    }
    let size = b.size(payload.len());
    finish(size, |v| b.write(v, payload))
}

/// A UDP datagram from `src` to `dst`.
pub fn udp(src: &Endpoint, dst: &Endpoint, payload: &[u8]) -> Vec<u8> {
    let b = ip_step(src, dst, 64).udp(src.port, dst.port);
    let size = b.size(payload.len());
    finish(size, |v| b.write(v, payload))
}

/// An ICMP (v4) or ICMPv6 echo request (or reply) using `src.port` as identifier.
pub fn echo(src: &Endpoint, dst: &Endpoint, seq: u16, reply: bool, payload: &[u8]) -> Vec<u8> {
    let step = ip_step(src, dst, 64);
    match (src.ip, reply) {
        (IpAddr::V4(_), false) => {
            let b = step.icmpv4_echo_request(src.port, seq);
            finish(b.size(payload.len()), |v| b.write(v, payload))
        }
        (IpAddr::V4(_), true) => {
            let b = step.icmpv4_echo_reply(src.port, seq);
            finish(b.size(payload.len()), |v| b.write(v, payload))
        }
        (IpAddr::V6(_), false) => {
            let b = step.icmpv6_echo_request(src.port, seq);
            finish(b.size(payload.len()), |v| b.write(v, payload))
        }
        (IpAddr::V6(_), true) => {
            let b = step.icmpv6_echo_reply(src.port, seq);
            finish(b.size(payload.len()), |v| b.write(v, payload))
        }
    }
}

/// An ARP request (`who-has target tell sender`) or reply, Ethernet/IPv4 (RFC 826).
pub fn arp(
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
    reply: bool,
) -> Vec<u8> {
    let dst = if reply { target_mac } else { [0xff; 6] };
    let mut f = Vec::with_capacity(MIN_FRAME);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&(if reply { 2u16 } else { 1 }).to_be_bytes());
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&if reply { target_mac } else { [0; 6] });
    f.extend_from_slice(&target_ip.octets());
    pad(f)
}

/// Byte offsets into an untagged IPv4 frame, for tests that corrupt headers on purpose.
pub mod offsets {
    /// IPv4 version/IHL byte.
    pub const IPV4_VERSION_IHL: usize = 14;
    /// IPv4 total length.
    pub const IPV4_TOTAL_LEN: usize = 16;
    /// Start of the transport header when the IPv4 header has no options.
    pub const L4: usize = 34;
    /// TCP data offset byte (no IPv4 options).
    pub const TCP_DATA_OFFSET: usize = L4 + 12;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::net::Ipv6Addr;

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    #[test]
    fn frames_are_padded_and_parse_back() {
        let c = Endpoint::new(A, Ipv4Addr::new(203, 0, 113, 5), 40000);
        let s = Endpoint::new(B, Ipv4Addr::new(198, 51, 100, 10), 80);
        let syn = tcp(&c, &s, Flags::SYN, 1, 0, &[]);
        // 14 + 20 + 24 (MSS option) = 58 bytes, padded to Ethernet's 60.
        assert_eq!(syn.len(), MIN_FRAME);
        let parsed = etherparse::SlicedPacket::from_ethernet(&syn).unwrap();
        match parsed.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => {
                assert!(t.syn());
                assert_eq!(t.destination_port(), 80);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(udp(&c, &s.port(53), b"q").len(), MIN_FRAME);
        assert_eq!(
            arp(
                A,
                Ipv4Addr::new(1, 2, 3, 4),
                B,
                Ipv4Addr::new(1, 2, 3, 5),
                false
            )
            .len(),
            MIN_FRAME
        );
        let c6 = Endpoint::new(A, Ipv6Addr::LOCALHOST, 7);
        let s6 = Endpoint::new(B, Ipv6Addr::UNSPECIFIED, 7);
        assert!(echo(&c6, &s6, 1, false, b"ping").len() >= 14 + 40 + 8 + 4);
    }
}
