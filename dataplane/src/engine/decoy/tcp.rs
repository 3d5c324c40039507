//! TCP marks: the SYN-ACK with its cookie, RSTs for closed ports and stale
//! segments, and the segments of the stateless decoy services.

use std::net::Ipv6Addr;

use super::{ReplyHead, reply_frame, write_l2_l3};
use crate::engine::classify::PacketInfo;
use crate::engine::persona::{Persona, SynAckOption};
use crate::io::PacketBuf;
use crate::wire::{TcpFlags, TcpOption, TcpOptionList, TcpPacket, TcpRepr, WireError, protocol};

/// What a TCP probe said, read before its buffer is overwritten.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TcpProbe {
    /// Addressing of the reply.
    pub head: ReplyHead,
    /// The prober's port.
    pub src_port: u16,
    /// The decoy's port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Payload bytes.
    pub payload_len: u32,
    /// MSS offered.
    pub mss: Option<u16>,
    /// Window scale offered.
    pub window_scale: Option<u8>,
    /// SACK permitted offered.
    pub sack_permitted: bool,
    /// Timestamps (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

impl TcpProbe {
    /// Reads a classified TCP segment; `None` for anything else.
    pub fn parse(frame: &[u8], info: &PacketInfo) -> Option<TcpProbe> {
        let head = ReplyHead::new(frame, info)?;
        let l4 = frame.get(usize::from(info.l4_offset)..)?;
        let tcp =
            TcpPacket::new_checked(l4.get(..l4.len().min(usize::from(info.payload_len) + 60))?)
                .ok()?;
        let mut probe = TcpProbe {
            head,
            src_port: tcp.src_port(),
            dst_port: tcp.dst_port(),
            seq: tcp.seq_number(),
            ack: tcp.ack_number(),
            flags: tcp.flags(),
            payload_len: u32::from(info.payload_len),
            mss: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
        };
        // A malformed option ends the walk; what came before still counts.
        for option in tcp.options_iter().map_while(Result::ok) {
            match option {
                TcpOption::MaxSegmentSize(v) => probe.mss = Some(v),
                TcpOption::WindowScale(v) => probe.window_scale = Some(v),
                TcpOption::SackPermitted => probe.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => probe.timestamps = Some((tsval, tsecr)),
                _ => {}
            }
        }
        Some(probe)
    }

    /// The sequence number just past this segment (SYN and FIN count one).
    pub fn seq_end(&self) -> u32 {
        let mut end = self.seq.wrapping_add(self.payload_len);
        if self.flags.contains(TcpFlags::SYN) {
            end = end.wrapping_add(1);
        }
        if self.flags.contains(TcpFlags::FIN) {
            end = end.wrapping_add(1);
        }
        end
    }
}

/// One segment of a decoy's reply.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (sent with ACK set).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Payload.
    pub payload: &'a [u8],
}

fn syn_ack_options(probe: &TcpProbe, persona: &Persona, pair: u64, now_ms: u64) -> TcpOptionList {
    let resolve = |option: &SynAckOption| match option {
        SynAckOption::Mss => Some(TcpOption::MaxSegmentSize(persona.mss)),
        SynAckOption::SackPermitted => probe.sack_permitted.then_some(TcpOption::SackPermitted),
        SynAckOption::WindowScale => probe
            .window_scale
            .map(|_| TcpOption::WindowScale(persona.window_scale)),
        SynAckOption::Timestamps => {
            match (probe.timestamps, persona.ts_clock().tsval(pair, now_ms)) {
                (Some((their_tsval, _)), Some(tsval)) => Some(TcpOption::Timestamps {
                    tsval,
                    tsecr: their_tsval,
                }),
                _ => None,
            }
        }
        SynAckOption::Nop => Some(TcpOption::NoOperation),
    };
    let mut list = TcpOptionList::new();
    for (i, option) in persona.options.iter().enumerate() {
        if *option == SynAckOption::Nop {
            // A NOP pads the option after it: keep it only if that option is sent.
            let padded = persona
                .options
                .get(i + 1..)
                .and_then(|rest| rest.iter().find(|o| **o != SynAckOption::Nop))
                .and_then(resolve);
            if padded.is_none() {
                continue;
            }
        }
        if let Some(opt) = resolve(option) {
            // The persona lists fit in 40 bytes and 10 entries; a push that
            // cannot fit would only drop an option, never corrupt the header.
            let _ = list.push(opt);
        }
    }
    list
}

fn ts_options(probe: &TcpProbe, persona: &Persona, pair: u64, now_ms: u64) -> TcpOptionList {
    let mut list = TcpOptionList::default();
    if let (Some((their_tsval, _)), Some(tsval)) =
        (probe.timestamps, persona.ts_clock().tsval(pair, now_ms))
    {
        let _ = list.push(TcpOption::NoOperation);
        let _ = list.push(TcpOption::NoOperation);
        let _ = list.push(TcpOption::Timestamps {
            tsval,
            tsecr: their_tsval,
        });
    }
    list
}

/// Writes a segment from the decoy to the prober into `buf`, replacing the
/// probe; `pair` is the cookie's hash of (prober, decoy), which keys the
/// timestamp (`engine::tsproof`).
pub fn write_segment<B: PacketBuf>(
    buf: &mut B,
    probe: &TcpProbe,
    persona: &Persona,
    seg: &Segment<'_>,
    pair: u64,
    now_ms: u64,
) -> Result<(), WireError> {
    let syn = seg.flags.contains(TcpFlags::SYN);
    let options = if syn {
        syn_ack_options(probe, persona, pair, now_ms)
    } else {
        ts_options(probe, persona, pair, now_ms)
    };
    // After the handshake the window is sent unscaled: right for a client
    // that did not offer window scaling, merely generous for one that did
    // (a stateless decoy cannot remember which).
    let window = persona.window;
    let repr = TcpRepr {
        src_port: probe.dst_port,
        dst_port: probe.src_port,
        seq_number: seg.seq,
        ack_number: if seg.flags.contains(TcpFlags::ACK) {
            seg.ack
        } else {
            0
        },
        flags: seg.flags,
        window_len: if seg.flags.contains(TcpFlags::RST) {
            0
        } else {
            window
        },
        urgent_at: 0,
        options,
        payload_len: seg.payload.len(),
    };
    let l4_len = repr.header_len() + seg.payload.len();
    let head = probe.head;
    let l4 = head.l4_offset();
    let ip_id = persona.ip_id(now_ms, seg.seq ^ u32::from(probe.src_port));
    let frame = reply_frame(buf, l4 + l4_len)?;
    write_l2_l3(frame, &head, persona, protocol::TCP, l4_len, ip_id)?;
    let segment = frame.get_mut(l4..l4 + l4_len).ok_or(WireError::Truncated)?;
    let header_len = repr.header_len();
    segment
        .get_mut(header_len..)
        .ok_or(WireError::Truncated)?
        .copy_from_slice(seg.payload);
    let mut tcp = TcpPacket::new_unchecked(segment);
    repr.emit(&mut tcp)?;
    if head.ip_version == 4 {
        tcp.fill_checksum_v4(head.decoy_v4(), head.prober_v4());
    } else {
        tcp.fill_checksum_v6(&Ipv6Addr::from(head.decoy), &Ipv6Addr::from(head.prober));
    }
    Ok(())
}

/// The SYN-ACK mark for a SYN to an open port, with the cookie `isn`.
pub fn syn_ack<B: PacketBuf>(
    buf: &mut B,
    probe: &TcpProbe,
    persona: &Persona,
    isn: u32,
    pair: u64,
    now_ms: u64,
) -> Result<(), WireError> {
    let seg = Segment {
        seq: isn,
        ack: probe.seq.wrapping_add(1),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        payload: &[],
    };
    write_segment(buf, probe, persona, &seg, pair, now_ms)
}

/// The RST a real host sends to a segment that belongs to no connection
/// (RFC 9293 section 3.10.7.1): to a SYN or other segment without ACK,
/// `RST|ACK` with seq 0 and ack past the segment; to a segment with ACK,
/// a bare `RST` whose seq is the segment's ack.
pub fn reset<B: PacketBuf>(
    buf: &mut B,
    probe: &TcpProbe,
    persona: &Persona,
    pair: u64,
    now_ms: u64,
) -> Result<(), WireError> {
    let seg = if probe.flags.contains(TcpFlags::ACK) {
        Segment {
            seq: probe.ack,
            ack: 0,
            flags: TcpFlags::RST,
            payload: &[],
        }
    } else {
        Segment {
            seq: 0,
            ack: probe.seq_end(),
            flags: TcpFlags::RST | TcpFlags::ACK,
            payload: &[],
        }
    };
    // An RST carries no options.
    let bare = TcpProbe {
        timestamps: None,
        ..*probe
    };
    write_segment(buf, &bare, persona, &seg, pair, now_ms)
}
