//! Severing a blocked source's connections where the appliance cannot drop
//! its traffic: on a tap port (a SPAN or TAP copy in, an injection port
//! out) the original frames reach their destination whatever we decide, so
//! a frame from a blocked source is answered with two RSTs instead, one to
//! each end of its connection (RFC 9293 section 3.10.7: a RST is accepted
//! when its sequence number is the one the receiver expects next):
//!
//! - to the source, from the destination: `seq` = the segment's `ack`;
//! - to the destination, from the source: `seq` = just past the segment.
//!
//! Both are written with the existing RST writer ([`super::decoy::tcp::reset`])
//! from a probe read off the frame, with the real hosts' MAC addresses; no
//! per-connection state. A token bucket bounds them, so a blocked source
//! that floods cannot turn the appliance into a RST cannon.

use super::classify::PacketInfo;
use super::decoy::ReplyHead;
use super::decoy::tcp::{Stamp, TcpProbe, reset};
use super::persona::Persona;
use crate::io::PacketBuf;
use crate::wire::{EthernetAddress, EthernetFrame, TcpFlags, WireError, protocol};

/// Connections severed per second, per worker, and the burst.
const RESETS_PER_SECOND: u64 = 1000;

/// What a sever needs from the frame, read before anything overwrites it.
#[derive(Copy, Clone, Debug)]
pub struct SeverPlan {
    probe: TcpProbe,
    /// The destination's MAC (the frame's destination address).
    dst_mac: EthernetAddress,
}

/// A worker's severing state: the token bucket.
#[derive(Debug, Default)]
pub struct Severer {
    tokens: u64,
    last_ms: u64,
}

impl Severer {
    /// The plan for severing the connection of `frame`, when it is a TCP
    /// segment that is not itself a RST and the budget allows.
    pub fn plan(&mut self, frame: &[u8], info: &PacketInfo, now_ns: u64) -> Option<SeverPlan> {
        if info.protocol != protocol::TCP
            || info.tcp_flags.is_none_or(|f| f.contains(TcpFlags::RST))
        {
            return None;
        }
        let now_ms = now_ns / 1_000_000;
        let refill = now_ms.saturating_sub(self.last_ms) * RESETS_PER_SECOND / 1000;
        if refill > 0 || self.last_ms == 0 {
            self.tokens = (self.tokens + refill.max(1)).min(RESETS_PER_SECOND);
            self.last_ms = now_ms;
        }
        if self.tokens == 0 {
            return None;
        }
        let probe = TcpProbe::parse(frame, info)?;
        let dst_mac = EthernetFrame::new_checked(frame).ok()?.dst_addr();
        self.tokens -= 1;
        Some(SeverPlan { probe, dst_mac })
    }
}

/// Writes the RST to the source into `to_source` and the RST to the
/// destination into `to_destination` (both buffers are overwritten whole).
pub fn write<B: PacketBuf>(
    plan: &SeverPlan,
    to_source: &mut B,
    to_destination: &mut B,
    now_ms: u64,
) -> Result<(), WireError> {
    let p = &plan.probe;
    // To the source: the destination answers the segment as a host with no
    // such connection would.
    // (A host persona has no TCP clock, and writes IP-ID 0 with DF.)
    let stamp = Stamp {
        ts_key: 0,
        now_ms,
        ip_id: 0,
    };
    reset(to_source, p, &Persona::for_host(plan.dst_mac), &stamp)?;
    // To the destination: the source "answers" a segment the destination
    // would send next (its seq is the source's ack, its ack is just past
    // the source's segment), which makes `reset` write seq = that ack.
    let reverse = TcpProbe {
        head: ReplyHead {
            prober_mac: plan.dst_mac,
            vlan_tci: p.head.vlan_tci,
            ip_version: p.head.ip_version,
            prober: p.head.decoy,
            decoy: p.head.prober,
        },
        src_port: p.dst_port,
        dst_port: p.src_port,
        seq: p.ack,
        ack: p.seq_end(),
        flags: TcpFlags::ACK,
        payload_len: 0,
        mss: None,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
    };
    reset(
        to_destination,
        &reverse,
        &Persona::for_host(p.head.prober_mac),
        &stamp,
    )
}
