//! TCP marks: the SYN-ACK with its cookie, RSTs for closed ports and stale
//! segments, and the segments of the stateless decoy services.

use std::net::Ipv6Addr;

use super::{IpFace, ReplyHead, reply_frame, write_l2_l3};
use crate::engine::classify::PacketInfo;
use crate::engine::persona::Persona;
use crate::engine::stack::{Offer, Opt, Stack};
use crate::io::PacketBuf;
use crate::wire::tcp::HEADER_LEN as TCP_HEADER_LEN;
use crate::wire::{EncodedOptions, TcpFlags, TcpOption, TcpPacket, WireError, protocol};

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
        probe.read_options(tcp.options());
        Some(probe)
    }

    /// Notes the options a reply depends on. A malformed option ends the
    /// walk; what came before still counts (as with `TcpOptionIter`, which
    /// a property test holds it to). A loop over the bytes rather than the
    /// iterator: it runs for every probe, and building and matching a
    /// `TcpOption` per option costs more than reading the bytes
    /// (docs/performance.md).
    #[inline]
    fn read_options(&mut self, options: &[u8]) {
        // A byte past the end reads as EOL, which ends the walk.
        let at = |i: usize| options.get(i).copied().unwrap_or(0);
        let n = options.len();
        let mut i = 0;
        while i < n {
            let kind = at(i);
            match kind {
                0 => return,
                1 => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(at(i + 1));
            if len < 2 || i + len > n {
                return;
            }
            match (kind, len) {
                (2, 4) => self.mss = Some(u16::from_be_bytes([at(i + 2), at(i + 3)])),
                (3, 3) => self.window_scale = Some(at(i + 2)),
                (4, 2) => self.sack_permitted = true,
                (5, 10 | 18 | 26 | 34) => {}
                (8, 10) => {
                    if let Some(&[a, b, c, d, e, f, g, h]) = options.get(i + 2..i + 10) {
                        self.timestamps = Some((
                            u32::from_be_bytes([a, b, c, d]),
                            u32::from_be_bytes([e, f, g, h]),
                        ));
                    }
                }
                (2..=5 | 8, _) => return,
                _ => {}
            }
            i += len;
        }
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

/// What `probe`, a SYN, offered that shapes `persona`'s SYN-ACK.
fn offer(probe: &TcpProbe, persona: &Persona) -> Offer {
    Offer {
        mss: probe.mss,
        sack: probe.sack_permitted,
        ws: probe.window_scale.is_some(),
        ts: probe.timestamps.is_some() && persona.stack.ts_hz != 0,
    }
}

/// A persona's SYN-ACK options and window for one offer, encoded, with the
/// timestamps option's place (its TSval and TSecr are written per reply).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SynAckPlan {
    options: EncodedOptions,
    ts_at: Option<u8>,
    window: u16,
}

impl SynAckPlan {
    /// Lays out `stack`'s options for `offer`.
    fn new(stack: &Stack, offer: &Offer) -> SynAckPlan {
        let mut plan = SynAckPlan {
            options: EncodedOptions::new(),
            ts_at: None,
            window: stack.window_for(offer),
        };
        for opt in stack.options_for(offer).into_iter().flatten() {
            let opt = match opt {
                Opt::Mss(mss) => TcpOption::MaxSegmentSize(mss),
                Opt::Nop => TcpOption::NoOperation,
                Opt::Ws(shift) => TcpOption::WindowScale(shift),
                Opt::Sack => TcpOption::SackPermitted,
                Opt::Eol => TcpOption::EndOfList,
                Opt::Ts => {
                    plan.ts_at = Some(plan.options.raw_len());
                    TcpOption::Timestamps { tsval: 0, tsecr: 0 }
                }
            };
            // The layouts fit in 40 bytes; a push that cannot fit would
            // only drop an option, never corrupt the header.
            if plan.options.push(opt).is_err() && matches!(opt, TcpOption::Timestamps { .. }) {
                plan.ts_at = None;
            }
        }
        plan
    }

    /// The options of one reply: the plan with its timestamps filled in.
    #[inline]
    fn options(
        &self,
        probe: &TcpProbe,
        persona: &Persona,
        ts_key: u64,
        now_ms: u64,
    ) -> EncodedOptions {
        let mut options = self.options;
        if let (Some(at), Some((their_tsval, _)), Some(tsval)) = (
            self.ts_at,
            probe.timestamps,
            persona.ts_clock().tsval(ts_key, now_ms),
        ) {
            options.set_timestamps(usize::from(at), tsval, their_tsval);
        }
        options
    }
}

/// SYN-ACK plans already laid out, per worker: a stack's layout is walked
/// once per (stack, offer), not per SYN-ACK (a SYN flood is almost all
/// SYN-ACKs). Direct-mapped; a collision only costs a new layout. Keyed by
/// the stack (a `'static`, named by its address), the offer's bits and the
/// MSS offered.
pub struct SynAckPlans {
    slots: Box<[PlanSlot]>,
}

#[derive(Copy, Clone)]
#[repr(align(64))]
struct PlanSlot {
    stack: usize,
    key: u32,
    plan: SynAckPlan,
}

impl SynAckPlans {
    const SLOTS: usize = 64;

    /// An empty cache (64 lines of 64 bytes).
    pub fn new() -> SynAckPlans {
        let empty = PlanSlot {
            stack: 0,
            key: u32::MAX,
            plan: SynAckPlan {
                options: EncodedOptions::new(),
                ts_at: None,
                window: 0,
            },
        };
        SynAckPlans {
            slots: vec![empty; Self::SLOTS].into_boxed_slice(),
        }
    }

    /// The plan of `persona`'s SYN-ACK to `probe`.
    #[inline]
    pub fn plan(&mut self, probe: &TcpProbe, persona: &Persona) -> SynAckPlan {
        let offer = offer(probe, persona);
        let stack = persona.stack as *const Stack as usize;
        let key = u32::from(offer.mss.unwrap_or(0)) << 16
            | u32::from(offer.mss.is_some()) << 3
            | u32::from(offer.ts) << 2
            | u32::from(offer.ws) << 1
            | u32::from(offer.sack);
        let i = (stack >> 4 ^ key as usize ^ (key as usize >> 13)) % Self::SLOTS;
        match self.slots.get_mut(i) {
            Some(slot) if slot.stack == stack && slot.key == key => slot.plan,
            Some(slot) => {
                *slot = PlanSlot {
                    stack,
                    key,
                    plan: SynAckPlan::new(persona.stack, &offer),
                };
                slot.plan
            }
            None => SynAckPlan::new(persona.stack, &offer),
        }
    }
}

impl Default for SynAckPlans {
    fn default() -> Self {
        SynAckPlans::new()
    }
}

fn ts_options(probe: &TcpProbe, persona: &Persona, stamp: &Stamp) -> EncodedOptions {
    let mut list = EncodedOptions::new();
    if let (Some((their_tsval, _)), Some(tsval)) = (
        probe.timestamps,
        persona.ts_clock().tsval(stamp.ts_key, stamp.now_ms),
    ) {
        // NOP, NOP, TS: 12 bytes, as every stack aligns it (RFC 7323 appendix A).
        let _ = list.push(TcpOption::NoOperation);
        let _ = list.push(TcpOption::NoOperation);
        let _ = list.push(TcpOption::Timestamps {
            tsval,
            tsecr: their_tsval,
        });
    }
    list
}

/// What a reply carries besides its segment: the key of its timestamp
/// offset (`Persona::ts_key`), the time, and its IPv4 identification.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The key of the decoy's timestamp offset towards this prober.
    pub ts_key: u64,
    /// Milliseconds on the engine clock.
    pub now_ms: u64,
    /// IPv4 identification (from the worker's `IpIds`).
    pub ip_id: u16,
}

/// Writes a segment from the decoy to the prober into `buf`, replacing the
/// probe.
pub fn write_segment<B: PacketBuf>(
    buf: &mut B,
    probe: &TcpProbe,
    persona: &Persona,
    seg: &Segment<'_>,
    stamp: &Stamp,
) -> Result<(), WireError> {
    let (options, window) = if seg.flags.contains(TcpFlags::SYN) {
        let plan = SynAckPlan::new(persona.stack, &offer(probe, persona));
        (
            plan.options(probe, persona, stamp.ts_key, stamp.now_ms),
            plan.window,
        )
    } else {
        (
            ts_options(probe, persona, stamp),
            persona.stack.data_window(),
        )
    };
    write_with_options(buf, probe, persona, seg, &options, window, stamp.ip_id)
}

/// Writes `seg` with `options` (already encoded) and `window` into `buf`.
fn write_with_options<B: PacketBuf>(
    buf: &mut B,
    probe: &TcpProbe,
    persona: &Persona,
    seg: &Segment<'_>,
    options: &EncodedOptions,
    window: u16,
    ip_id: u16,
) -> Result<(), WireError> {
    let header_len = TCP_HEADER_LEN + options.len();
    let l4_len = header_len + seg.payload.len();
    let head = probe.head;
    let l4 = head.l4_offset();
    let rst = seg.flags.contains(TcpFlags::RST);
    let stack = persona.stack;
    let face = IpFace {
        ttl: stack.ttl,
        hop_limit: stack.hop_limit,
        dont_frag: if rst { stack.rst_df } else { stack.df },
        ident: ip_id,
    };
    let frame = reply_frame(buf, l4 + l4_len)?;
    write_l2_l3(frame, &head, persona.mac, &face, protocol::TCP, l4_len)?;
    let segment = frame.get_mut(l4..l4 + l4_len).ok_or(WireError::Truncated)?;
    let (header, payload) = segment.split_at_mut(header_len);
    payload.copy_from_slice(seg.payload);
    header
        .get_mut(TCP_HEADER_LEN..)
        .ok_or(WireError::Truncated)?
        .copy_from_slice(options.as_bytes());
    let mut tcp = TcpPacket::new_unchecked(segment);
    tcp.set_src_port(probe.dst_port);
    tcp.set_dst_port(probe.src_port);
    tcp.set_seq_number(seg.seq);
    tcp.set_ack_number(seg.ack);
    tcp.set_header_len(header_len);
    tcp.set_flags(seg.flags);
    // After the handshake the window is sent unscaled: right for a client
    // that did not offer window scaling, merely generous for one that did
    // (a stateless decoy cannot remember which). An RST offers none.
    tcp.set_window_len(if rst { 0 } else { window });
    tcp.set_checksum(0);
    tcp.set_urgent_at(0);
    if head.ip_version == 4 {
        tcp.fill_checksum_v4(head.decoy_v4(), head.prober_v4());
    } else {
        tcp.fill_checksum_v6(&Ipv6Addr::from(head.decoy), &Ipv6Addr::from(head.prober));
    }
    Ok(())
}

/// The SYN-ACK mark for a SYN to an open port, with the cookie `isn`;
/// `plans` holds the worker's laid-out option orders. An ECN-setup SYN
/// (ECE and CWR, RFC 3168 section 6.1.1) gets ECE back from a stack that
/// does ECN.
pub fn syn_ack<B: PacketBuf>(
    buf: &mut B,
    probe: &TcpProbe,
    persona: &Persona,
    isn: u32,
    stamp: &Stamp,
    plans: &mut SynAckPlans,
) -> Result<(), WireError> {
    let ecn_setup = probe.flags.contains(TcpFlags::ECE | TcpFlags::CWR);
    let mut flags = TcpFlags::SYN | TcpFlags::ACK;
    if ecn_setup && persona.stack.ecn {
        flags |= TcpFlags::ECE;
    }
    let seg = Segment {
        seq: isn,
        ack: probe.seq.wrapping_add(1),
        flags,
        payload: &[],
    };
    let plan = plans.plan(probe, persona);
    let options = plan.options(probe, persona, stamp.ts_key, stamp.now_ms);
    write_with_options(
        buf,
        probe,
        persona,
        &seg,
        &options,
        plan.window,
        stamp.ip_id,
    )
}

/// The RST a host sends to a segment that belongs to no connection (RFC
/// 9293 section 3.10.7.1), as the persona's stack writes it: to a segment
/// with ACK, a bare `RST` whose seq is the segment's ack; to one without,
/// `RST|ACK` with seq 0 and ack past the segment. Cisco takes the seq from
/// the segment's ack field and does not count a FIN; Windows leaves the
/// segment's ack in a bare RST's ack field.
pub fn reset<B: PacketBuf>(
    buf: &mut B,
    probe: &TcpProbe,
    persona: &Persona,
    stamp: &Stamp,
) -> Result<(), WireError> {
    let stack = persona.stack;
    let seg = if probe.flags.contains(TcpFlags::ACK) {
        Segment {
            seq: probe.ack,
            ack: if stack.rst_keeps_ack { probe.ack } else { 0 },
            flags: TcpFlags::RST,
            payload: &[],
        }
    } else {
        let mut ack = probe.seq_end();
        if probe.flags.contains(TcpFlags::FIN) && !stack.rst_acks_fin {
            ack = ack.wrapping_sub(1);
        }
        Segment {
            seq: if stack.rst_seq_from_ack { probe.ack } else { 0 },
            ack,
            flags: TcpFlags::RST | TcpFlags::ACK,
            payload: &[],
        }
    };
    // An RST carries no options.
    write_with_options(
        buf,
        probe,
        persona,
        &seg,
        &EncodedOptions::new(),
        0,
        stamp.ip_id,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::persona::PersonaMaker;
    use crate::wire::{EthernetAddress, TcpOptionIter};
    use proptest::prelude::*;

    fn blank_probe() -> TcpProbe {
        TcpProbe {
            head: ReplyHead {
                prober_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                vlan_tci: None,
                ip_version: 4,
                prober: [0; 16],
                decoy: [0; 16],
            },
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: TcpFlags::SYN,
            payload_len: 0,
            mss: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
        }
    }

    proptest! {
        /// The byte loop reads what the option iterator decodes, up to the
        /// first malformed option.
        #[test]
        fn read_options_agrees_with_the_iterator(bytes in proptest::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(5), Just(8), Just(10), any::<u8>()],
            0..=40,
        )) {
            let mut probe = blank_probe();
            probe.read_options(&bytes);
            let mut want = blank_probe();
            for option in TcpOptionIter::new(&bytes).map_while(Result::ok) {
                match option {
                    TcpOption::MaxSegmentSize(v) => want.mss = Some(v),
                    TcpOption::WindowScale(v) => want.window_scale = Some(v),
                    TcpOption::SackPermitted => want.sack_permitted = true,
                    TcpOption::Timestamps { tsval, tsecr } => want.timestamps = Some((tsval, tsecr)),
                    _ => {}
                }
            }
            prop_assert_eq!(probe, want);
        }
    }

    /// The cached plans equal fresh ones, follow the stack's layout for
    /// the offer, and carry the TSval and the echo.
    #[test]
    fn plans_follow_the_stack_and_the_offer() {
        let maker = PersonaMaker::new(&[9; 32]);
        let mut plans = SynAckPlans::new();
        let mut kinds = std::collections::HashSet::new();
        for a in 0..128u8 {
            let persona =
                maker.persona(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, a]);
            kinds.insert(persona.kind);
            for bits in 0..16u8 {
                let mut probe = blank_probe();
                probe.sack_permitted = bits & 1 != 0;
                probe.window_scale = (bits & 2 != 0).then_some(7);
                probe.timestamps = (bits & 4 != 0).then_some((1234, 0));
                probe.mss = (bits & 8 != 0).then_some(536);
                let cached = plans.plan(&probe, &persona);
                let want = offer(&probe, &persona);
                assert_eq!(cached, SynAckPlan::new(persona.stack, &want));
                assert_eq!(cached.window, persona.stack.window_for(&want));
                let key = 0x1111_2222_3333_4444;
                let options = cached.options(&probe, &persona, key, 5_000);
                let sent: Vec<TcpOption> = TcpOptionIter::new(options.as_bytes())
                    .map_while(Result::ok)
                    .filter(|o| !matches!(o, TcpOption::EndOfList))
                    .collect();
                let layout: Vec<TcpOption> = persona
                    .stack
                    .options_for(&want)
                    .into_iter()
                    .flatten()
                    .filter_map(|o| match o {
                        Opt::Mss(m) => Some(TcpOption::MaxSegmentSize(m)),
                        Opt::Nop => Some(TcpOption::NoOperation),
                        Opt::Ws(w) => Some(TcpOption::WindowScale(w)),
                        Opt::Sack => Some(TcpOption::SackPermitted),
                        Opt::Eol => None,
                        Opt::Ts => Some(TcpOption::Timestamps {
                            tsval: persona.ts_clock().tsval(key, 5_000)?,
                            tsecr: 1234,
                        }),
                    })
                    .collect();
                assert_eq!(sent, layout, "{:?} offer {bits}", persona.kind);
            }
        }
        assert!(
            kinds.len() >= 6,
            "the sample covers the families: {kinds:?}"
        );
    }
}
