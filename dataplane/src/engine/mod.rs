//! The per-packet engine: no I/O, no locks, no allocation. A worker hands it
//! each received frame and gets back a [`Verdict`].
//!
//! This is the skeleton later issues grow (blocklist, dark space, marks,
//! bites): today it classifies the frame, drops frames whose headers lie,
//! tracks the flow, and forwards.

pub mod bite;
pub mod classify;
pub mod cookie;
pub mod decoy;
pub mod event;
pub mod flow;
pub mod limit;
pub mod persona;
pub mod space;

use crate::wire::WireError;
use classify::{PacketInfo, classify};
use flow::{FlowKey, FlowTable, FlowUpdate, Timeouts};

/// Why a frame was dropped. Each reason is a counter; names are stable
/// (they become metric labels and JSON keys).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// A header is shorter than it must be.
    Truncated = 0,
    /// The IP version field does not match the EtherType.
    BadVersion,
    /// IPv4 IHL < 5, or a TCP data offset below 5 or past the segment.
    BadHeaderLen,
    /// An IPv4 total length, IPv6 payload length or UDP length that lies.
    BadTotalLen,
    /// A malformed option the engine had to read.
    BadOption,
    /// An IPv6 extension-header chain too long or cut short.
    ExtHeaderChain,
    /// A header kind the engine refuses.
    Unsupported,
    /// A checksum the engine had to verify did not.
    BadChecksum,
    /// The transmit ring had no room.
    TxRingFull,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 9] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::BadHeaderLen,
        DropReason::BadTotalLen,
        DropReason::BadOption,
        DropReason::ExtHeaderChain,
        DropReason::Unsupported,
        DropReason::BadChecksum,
        DropReason::TxRingFull,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLen => "bad_header_len",
            DropReason::BadTotalLen => "bad_total_len",
            DropReason::BadOption => "bad_option",
            DropReason::ExtHeaderChain => "ext_header_chain",
            DropReason::Unsupported => "unsupported",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::TxRingFull => "tx_ring_full",
        }
    }
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::BadVersion => DropReason::BadVersion,
            WireError::BadHeaderLen => DropReason::BadHeaderLen,
            WireError::BadTotalLen => DropReason::BadTotalLen,
            WireError::BadOption => DropReason::BadOption,
            WireError::ExtHeaderChain => DropReason::ExtHeaderChain,
            WireError::BadChecksum => DropReason::BadChecksum,
            _ => DropReason::Unsupported,
        }
    }
}

/// What the worker does with a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the frame as it is now (forwarded, or rewritten in place).
    Forward,
    /// Drop the frame and count the reason.
    Drop(DropReason),
}

/// The engine's settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Flow table capacity.
    pub flow_capacity: usize,
    /// Flow timeouts.
    pub timeouts: Timeouts,
    /// Seed of the flow hash.
    pub flow_seed: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            flow_capacity: 1 << 20,
            timeouts: Timeouts::default(),
            flow_seed: 0x6261_6974_7761_6c6c,
        }
    }
}

/// One worker's engine and everything it owns.
pub struct Engine {
    flows: FlowTable,
}

impl Engine {
    /// Builds the engine, allocating its tables once.
    pub fn new(config: &EngineConfig) -> Self {
        Engine {
            flows: FlowTable::new(config.flow_capacity, config.timeouts, config.flow_seed),
        }
    }

    /// Decides one frame. `now_ms` is the worker clock in milliseconds.
    #[inline]
    pub fn process(&mut self, frame: &mut [u8], now_ms: u32) -> Verdict {
        let info = match classify(frame) {
            Ok(info) => info,
            Err(e) => return Verdict::Drop(e.into()),
        };
        self.track(&info, frame.len(), now_ms);
        Verdict::Forward
    }

    /// Updates the flow table for a classified IP packet.
    #[inline]
    fn track(&mut self, info: &PacketInfo, len: usize, now_ms: u32) -> Option<FlowUpdate> {
        if !info.is_ip() {
            return None;
        }
        let (key, from_lo) = FlowKey::new(
            info.ip_version,
            info.protocol,
            info.src,
            info.src_port,
            info.dst,
            info.dst_port,
        );
        Some(
            self.flows
                .track(&key, from_lo, info.tcp_flags, len as u32, now_ms),
        )
    }

    /// Periodic work between bursts: sweep `buckets` flow buckets for expired flows.
    pub fn maintain(&mut self, buckets: usize, now_ms: u32) -> usize {
        self.flows.sweep(buckets, now_ms)
    }

    /// The flow table (read-only).
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Removes every flow.
    pub fn clear_flows(&mut self) -> usize {
        self.flows.clear()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reasons_are_dense_and_named_uniquely() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn every_wire_error_maps_to_the_reason_of_the_same_name() {
        for e in WireError::ALL {
            assert_eq!(DropReason::from(e).as_str(), e.as_str());
        }
    }
}
