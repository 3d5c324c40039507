//! The dataplane's configuration file (TOML), validated as it is read.
//!
//! Every field is documented in `docs/configuration.md`. Unknown fields are
//! rejected, and so are invalid values; either way the error names the field
//! and the line (values are checked while they are deserialized, so the TOML
//! parser knows where they stand). A file that fails changes nothing: callers
//! get an error, never a half-applied configuration.

use crate::engine::evidence::CaptureQueues;
use crate::io::afpacket::{AfPacketConfig, PortMode};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use std::sync::Arc;

use crate::engine::bite::{Action, Policy, ProofTable};
use crate::engine::deceive::DeceptionShared;
use crate::engine::flow::{FlowState, MAX_TIMEOUT_MS, Timeouts};
use crate::engine::limit::{RateConfig, SweepConfig};
use crate::engine::persona::PersonaMaker;
use crate::engine::side::SideRules;
use crate::engine::space::{AddressSpace, LiveMap, Occupancy, Prefix, PrefixSet, SpaceTiming};
use crate::engine::ticket::WeakTickets;
use crate::engine::{BlockConfig, EngineConfig};
use crate::io::MAX_BURST;
use crate::io::pcap::Replay;
use crate::io::soft::SoftNicConfig;
use crate::runtime::{RegionConfig, RuntimeConfig};
use crate::worker::IdlePolicy;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown field, or a bad value.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file name, or `<embedded>`.
        origin: String,
        /// What is wrong, with the field and the line.
        message: String,
    },
}

/// A validated configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The poll-mode workers.
    #[serde(default)]
    pub workers: WorkersSection,
    /// The port the workers serve.
    pub port: Spanned<PortSection>,
    /// The per-worker flow tables.
    #[serde(default)]
    pub flows: FlowsSection,
    /// Dark space, decoys, bites and the latch (absent: forward only).
    pub deception: Option<DeceptionSection>,
    /// The shared-memory channel to the control process (absent: no control).
    pub control: Option<ControlSection>,
    /// Bite capture to per-source pcap files (absent: off).
    pub capture: Option<CaptureSection>,
}

/// `[capture]`: the frames of each biting source, to a pcap file per source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    /// The folder of the files (relative paths: from the config file's folder).
    pub dir: PathBuf,
    /// A source's file stops growing at this many bytes.
    #[serde(default = "default_capture_per_source")]
    pub max_bytes_per_source: Count<4096, { 1 << 40 }>,
    /// All the files together stop growing at this many bytes.
    #[serde(default = "default_capture_total")]
    pub max_bytes: Count<4096, { 1 << 44 }>,
    /// Frames kept from a source after its bite (within a minute).
    #[serde(default = "default_follow")]
    pub follow_packets: Count<0, 100_000>,
    /// Buffers between the workers and the writer.
    #[serde(default = "default_capture_buffers")]
    pub buffers: Count<16, { 1 << 20 }>,
}

fn default_capture_per_source() -> Count<4096, { 1 << 40 }> {
    Count(1 << 20)
}
fn default_capture_total() -> Count<4096, { 1 << 44 }> {
    Count(1 << 30)
}
fn default_follow() -> Count<0, 100_000> {
    Count(64)
}
fn default_capture_buffers() -> Count<16, { 1 << 20 }> {
    Count(1024)
}

impl CaptureSection {
    /// The writer's settings.
    pub fn settings(&self) -> crate::capture::CaptureConfig {
        crate::capture::CaptureConfig {
            dir: self.dir.clone(),
            max_bytes_per_source: self.max_bytes_per_source.0 as u64,
            max_bytes: self.max_bytes.0 as u64,
            follow_packets: self.follow_packets.0 as u32,
            buffers: self.buffers.0,
        }
    }
}

/// `[control]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// The region file the dataplane creates for control to attach to.
    #[serde(default = "default_region")]
    pub region: PathBuf,
    /// Slots per ring (a power of two, 16..=16777216).
    #[serde(default = "default_ring_slots")]
    pub ring_slots: RingSlots,
    /// `"open"`: forward from the first frame; `"closed"`: drop everything
    /// until control's first resync is in force (at most `hold_for`).
    #[serde(default = "default_start")]
    pub start: StartMode,
    /// How long a fail-closed start waits for control before opening.
    #[serde(default = "default_hold_for")]
    pub hold_for: Span,
}

/// How the dataplane starts when it has a control region.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    /// Forward at once; blocks arrive with control's resync.
    Open,
    /// Drop everything until control's resync is in force.
    Closed,
}

fn default_start() -> StartMode {
    StartMode::Open
}
fn default_hold_for() -> Span {
    Span(Duration::from_secs(5))
}

fn default_region() -> PathBuf {
    PathBuf::from("/dev/shm/baitwall.region")
}
fn default_ring_slots() -> RingSlots {
    RingSlots(65_536)
}

/// A ring size: a power of two in 16..=16777216.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct RingSlots(pub u32);

impl TryFrom<i64> for RingSlots {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match u32::try_from(v) {
            Ok(n) if n.is_power_of_two() && (16..=1 << 24).contains(&n) => Ok(RingSlots(n)),
            _ => Err(format!(
                "ring_slots {v} is not a power of two in 16..=16777216"
            )),
        }
    }
}

/// `[workers]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    /// One worker per listed core, pinned there.
    #[serde(default = "default_cores")]
    pub cores: CoreList,
    /// Pin each worker to its core (turn off only on shared test machines).
    #[serde(default = "yes")]
    pub pin: bool,
    /// Frames per burst.
    #[serde(default)]
    pub burst: BurstSize,
    /// What a worker does when a poll finds nothing.
    #[serde(default = "default_idle")]
    pub idle: IdlePolicy,
}

impl Default for WorkersSection {
    fn default() -> Self {
        WorkersSection {
            cores: default_cores(),
            pin: true,
            burst: BurstSize::default(),
            idle: default_idle(),
        }
    }
}

fn default_cores() -> CoreList {
    CoreList(vec![0])
}
fn yes() -> bool {
    true
}
fn default_idle() -> IdlePolicy {
    IdlePolicy::Adaptive
}

/// A non-empty list of distinct core ids.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<usize>")]
pub struct CoreList(pub Vec<usize>);

impl TryFrom<Vec<usize>> for CoreList {
    type Error = String;
    fn try_from(cores: Vec<usize>) -> Result<Self, String> {
        if cores.is_empty() {
            return Err("the core list is empty: list at least one core".into());
        }
        if cores.len() > 256 {
            return Err(format!("{} cores listed; at most 256 workers", cores.len()));
        }
        let mut sorted = cores.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("core {} is listed twice", w[0]));
        }
        Ok(CoreList(cores))
    }
}

/// Frames per burst, 1..=64.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct BurstSize(pub usize);

impl Default for BurstSize {
    fn default() -> Self {
        BurstSize(crate::io::DEFAULT_BURST)
    }
}

impl TryFrom<i64> for BurstSize {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match usize::try_from(v) {
            Ok(n) if (1..=MAX_BURST).contains(&n) => Ok(BurstSize(n)),
            _ => Err(format!("burst {v} is out of range 1..={MAX_BURST}")),
        }
    }
}

/// Which backend a port uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Replay a capture file, write transmitted frames to a capture file.
    Pcap,
    /// Live traffic through AF_PACKET (TPACKET_V3) sockets.
    Afpacket,
    /// A DPDK device (cargo feature `dpdk`).
    Dpdk,
    /// Live traffic through AF_XDP sockets (cargo feature `afxdp`).
    Afxdp,
}

/// How replayed frames are paced.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// As fast as the workers take them.
    Fast,
    /// At the recorded timing, divided by `speed`.
    Timed,
}

/// Which clock the workers age flows by.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// The capture's own timestamps (pcap backend).
    Trace,
    /// The system's monotonic clock.
    System,
}

/// `[port]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    /// The backend.
    pub backend: Backend,
    /// pcap: the capture to replay (relative paths are from the config file's folder).
    pub rx: Option<PathBuf>,
    /// pcap: where transmitted frames go (omit to discard them).
    pub tx: Option<PathBuf>,
    /// pcap: pacing.
    #[serde(default = "default_replay")]
    pub replay: ReplayMode,
    /// pcap: speed-up factor for timed replay.
    #[serde(default)]
    pub speed: Speed,
    /// The clock flows age by.
    pub clock: Option<ClockSource>,
    /// Buffers in the port's pool.
    #[serde(default = "default_pool")]
    pub pool_size: Count<64, { 1 << 24 }>,
    /// Slots per receive and per transmit ring.
    #[serde(default = "default_ring")]
    pub ring_size: Count<64, { 1 << 20 }>,
    /// afpacket: how the port sits on the wire.
    pub mode: Option<PortMode>,
    /// afpacket one-arm: the interface.
    pub interface: Option<String>,
    /// afpacket inline: the interface towards the outside (the scanners).
    pub outside: Option<String>,
    /// afpacket inline: the interface towards the protected network.
    pub inside: Option<String>,
    /// afpacket tap: the interface a SPAN port or TAP feeds.
    pub monitor: Option<String>,
    /// afpacket tap: the interface decoy replies leave by.
    pub inject: Option<String>,
    /// afpacket: bytes per RX ring block (a power of two).
    #[serde(default = "default_block_size")]
    pub block_size: Count<4096, { 1 << 26 }>,
    /// afpacket: RX ring blocks per socket.
    #[serde(default = "default_block_count")]
    pub block_count: Count<2, 65536>,
    /// afpacket: TX ring slots per socket.
    #[serde(default = "default_tx_frames")]
    pub tx_frames: Count<16, { 1 << 20 }>,
    /// dpdk: the EAL's arguments, as on DPDK's command line.
    pub eal: Option<Vec<String>>,
    /// dpdk: the device (a PCI address, or a virtual device's name); with
    /// `mode = "inline"`, the outside one.
    pub device: Option<String>,
    /// dpdk inline: the device towards the protected network.
    pub inside_device: Option<String>,
    /// dpdk: descriptors per RX and TX ring.
    #[serde(default = "default_descriptors")]
    pub descriptors: Count<64, 32768>,
    /// afxdp: how the XDP program attaches.
    pub xdp_mode: Option<XdpModeSetting>,
    /// afxdp: UMEM frames per socket (half receive, half transmit).
    #[serde(default = "default_umem_frames")]
    pub umem_frames: Count<128, { 1 << 20 }>,
}

fn default_umem_frames() -> Count<128, { 1 << 20 }> {
    Count(4096)
}

/// `[port] xdp_mode`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpModeSetting {
    /// The kernel chooses (native where the driver can).
    Auto,
    /// The driver's hook.
    Native,
    /// The generic hook (any interface).
    Skb,
}

/// An AF_XDP port, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpPlan {
    /// Mode and interfaces, as for AF_PACKET.
    pub mode: PortMode,
    /// Interfaces in the mode's order.
    pub interfaces: Vec<String>,
    /// Attach mode.
    pub xdp_mode: XdpModeSetting,
    /// UMEM frames per socket.
    pub umem_frames: u32,
    /// Buffers per queue.
    pub buffers_per_queue: usize,
}

fn default_descriptors() -> Count<64, 32768> {
    Count(1024)
}

/// A DPDK port, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkPlan {
    /// The EAL's arguments.
    pub eal: Vec<String>,
    /// The device's name (inline: the outside one).
    pub device: String,
    /// Inline: the device towards the protected network.
    pub inside: Option<String>,
    /// Mbufs in the pool (`pool_size`).
    pub mbufs: u32,
    /// Descriptors per RX and TX ring.
    pub descriptors: u16,
}

fn default_block_size() -> Count<4096, { 1 << 26 }> {
    Count(1 << 16)
}
fn default_block_count() -> Count<2, 65536> {
    Count(64)
}
fn default_tx_frames() -> Count<16, { 1 << 20 }> {
    Count(1024)
}

fn default_replay() -> ReplayMode {
    ReplayMode::Fast
}
fn default_pool() -> Count<64, { 1 << 24 }> {
    Count(8192)
}
fn default_ring() -> Count<64, { 1 << 20 }> {
    Count(1024)
}

/// A speed-up factor, finite and in (0, 1000].
#[derive(Copy, Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Speed(pub f64);

impl Default for Speed {
    fn default() -> Self {
        Speed(1.0)
    }
}

impl TryFrom<f64> for Speed {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && v > 0.0 && v <= 1000.0 {
            Ok(Speed(v))
        } else {
            Err(format!("speed {v} is out of range (0, 1000]"))
        }
    }
}

/// An integer in `MIN..=MAX`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Count<const MIN: usize, const MAX: usize>(pub usize);

/// A share between 0.001 and 1 (`[deception] occupancy`).
#[derive(Copy, Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Share(f64);

impl Default for Share {
    fn default() -> Self {
        Share(1.0)
    }
}

impl TryFrom<f64> for Share {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.001..=1.0).contains(&v) {
            Ok(Share(v))
        } else {
            Err(format!(
                "a share must be between 0.001 and 1 (1: every dark address a decoy), not {v}"
            ))
        }
    }
}

impl Share {
    /// The share in thousandths, rounded.
    pub fn per_mille(self) -> u16 {
        (self.0 * 1000.0).round() as u16
    }
}

impl<const MIN: usize, const MAX: usize> TryFrom<i64> for Count<MIN, MAX> {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match usize::try_from(v) {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Count(n)),
            _ => Err(format!("{v} is out of range {MIN}..={MAX}")),
        }
    }
}

/// `[flows]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsSection {
    /// Flows each worker tracks at most (rounded up to a power of two times 8).
    #[serde(default = "default_capacity")]
    pub capacity: Count<8, { 1 << 28 }>,
    /// Seed of the flow hash (default: a fresh random seed per start).
    pub seed: Option<u64>,
    /// Idle timeouts per state.
    #[serde(default)]
    pub timeouts: TimeoutsSection,
}

impl Default for FlowsSection {
    fn default() -> Self {
        FlowsSection {
            capacity: default_capacity(),
            seed: None,
            timeouts: TimeoutsSection::default(),
        }
    }
}

fn default_capacity() -> Count<8, { 1 << 28 }> {
    Count(1 << 20)
}

/// A flow timeout: a duration such as `"30s"` or `"2h"`, from 1 ms to 24 days.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FlowTimeout(pub Duration);

impl TryFrom<String> for FlowTimeout {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = humantime::parse_duration(&s)
            .map_err(|e| format!("{s:?} is not a duration like \"30s\" or \"2h\": {e}"))?;
        let max = Duration::from_millis(u64::from(MAX_TIMEOUT_MS));
        if d < Duration::from_millis(1) || d > max {
            return Err(format!("{s:?} is out of range 1ms..=24days"));
        }
        Ok(FlowTimeout(d))
    }
}

/// `[flows.timeouts]`: idle time after which a flow in each state is freed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    /// TCP, SYN seen.
    pub syn_sent: Option<FlowTimeout>,
    /// TCP, SYN-ACK seen.
    pub syn_received: Option<FlowTimeout>,
    /// TCP, established.
    pub established: Option<FlowTimeout>,
    /// TCP, one FIN seen.
    pub closing: Option<FlowTimeout>,
    /// TCP, both FINs seen.
    pub closed: Option<FlowTimeout>,
    /// TCP, RST seen.
    pub reset: Option<FlowTimeout>,
    /// UDP, one direction.
    pub udp_unreplied: Option<FlowTimeout>,
    /// UDP, both directions.
    pub udp_replied: Option<FlowTimeout>,
    /// ICMP.
    pub icmp: Option<FlowTimeout>,
    /// Other IP protocols.
    pub other: Option<FlowTimeout>,
}

impl TimeoutsSection {
    /// The timeout table, defaults filled in.
    pub fn resolve(&self) -> Timeouts {
        let mut t = Timeouts::default();
        let fields = [
            (FlowState::SynSent, self.syn_sent),
            (FlowState::SynReceived, self.syn_received),
            (FlowState::Established, self.established),
            (FlowState::Closing, self.closing),
            (FlowState::Closed, self.closed),
            (FlowState::Reset, self.reset),
            (FlowState::UdpUnreplied, self.udp_unreplied),
            (FlowState::UdpReplied, self.udp_replied),
            (FlowState::Icmp, self.icmp),
            (FlowState::Other, self.other),
        ];
        for (state, value) in fields {
            if let Some(FlowTimeout(d)) = value {
                // Bounded to MAX_TIMEOUT_MS by FlowTimeout's check.
                t.set(state, d.as_millis().min(u128::from(MAX_TIMEOUT_MS)) as u32);
            }
        }
        t
    }
}

/// An address or prefix, IPv4 or IPv6 (`"198.51.100.0/24"`, `"2001:db8::1"`);
/// a prefix with host bits set is refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NetPrefix(pub ipnet::IpNet);

impl TryFrom<String> for NetPrefix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            if net.network() != net.addr() {
                return Err(format!(
                    "{s} has host bits set (did you mean {}?)",
                    net.trunc()
                ));
            }
            return Ok(NetPrefix(net));
        }
        s.parse::<std::net::IpAddr>()
            .map(|a| NetPrefix(ipnet::IpNet::from(a)))
            .map_err(|_| format!("{s:?} is not an IPv4/IPv6 address or prefix"))
    }
}

/// A duration such as `"60s"` or `"10m"`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Span(pub Duration);

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = humantime::parse_duration(&s)
            .map_err(|e| format!("{s:?} is not a duration like \"60s\" or \"10m\": {e}"))?;
        if d > Duration::from_secs(366 * 86_400) {
            return Err(format!("{s:?} is longer than a year"));
        }
        Ok(Span(d))
    }
}

/// The deployment secret: 64 hexadecimal digits (32 bytes).
#[derive(Copy, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Secret(pub [u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl TryFrom<String> for Secret {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err("the secret must be 64 hexadecimal digits (32 bytes)".into());
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hex = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            *o = u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
        }
        Ok(Secret(out))
    }
}

/// `[deception]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeceptionSection {
    /// Prefixes the appliance defends: decoys live in their dark addresses.
    pub protected: Vec<NetPrefix>,
    /// Never decoyed (gateways, broadcast, reserved).
    #[serde(default)]
    pub exclude: Vec<NetPrefix>,
    /// Hosts known to be live (never decoyed).
    #[serde(default)]
    pub live: Vec<NetPrefix>,
    /// Sources never blocked, only reported.
    #[serde(default)]
    pub allow: Vec<NetPrefix>,
    /// The routers of the protected network: their own addresses (which
    /// speak from outside in a bump in the wire, and are never decoys) and
    /// their MACs (which tell outside from inside where one port sees both).
    #[serde(default)]
    pub gateways: Vec<GatewaySection>,
    /// Networks behind routers on the inside: their hosts may send from the
    /// inside with addresses outside the protected space.
    #[serde(default)]
    pub inside_routes: Vec<NetPrefix>,
    /// Prefixes of the protected space routed to the appliance as a whole
    /// (no host can live there): their addresses need no claim.
    #[serde(default)]
    pub dark_routes: Vec<NetPrefix>,
    /// How long a request for an address must go unanswered before it is
    /// claimed (LaBrea's rule).
    #[serde(default = "default_claim_after")]
    pub claim_after: Span,
    /// After start, answer nothing for this long.
    #[serde(default = "default_learning")]
    pub learning: Span,
    /// A never-seen address is dark after this long since start.
    #[serde(default = "default_hold_off")]
    pub hold_off: Span,
    /// A host seen sending stays live until idle this long.
    #[serde(default = "default_live_idle")]
    pub live_idle: Span,
    /// The deployment secret (personas and cookies derive from it).
    pub secret: Option<Secret>,
    /// Cookie key rotation period.
    #[serde(default = "default_rotation")]
    pub cookie_rotation: Span,
    /// How long a proven port counts towards a port bite.
    #[serde(default = "default_proof_ttl")]
    pub proof_ttl: Span,
    /// UDP ports decoys answer with a service reply.
    #[serde(default = "default_udp_services")]
    pub udp_services: Vec<u16>,
    /// TLS certificates (each with its own RSA key) per persona family
    /// that opens 443; the decoys of a family share them. 0: every
    /// ClientHello gets `handshake_failure`.
    #[serde(default = "default_tls_identities")]
    pub tls_identities: Count<0, 64>,
    /// Exact sources each worker can block.
    #[serde(default = "default_latch_capacity")]
    pub latch_capacity: Count<1, { 1 << 24 }>,
    /// CIDR blocks each worker can hold.
    #[serde(default = "default_prefix_capacity")]
    pub prefix_capacity: Count<1, { 1 << 22 }>,
    /// An IPv6 source is blocked by its prefix of this length (48..=128).
    #[serde(default = "default_ipv6_block_len")]
    pub block_ipv6_prefix: Count<48, 128>,
    /// Decoy MACs: a real vendor's OUI for the claimed hardware, or
    /// locally administered.
    #[serde(default)]
    pub decoy_macs: crate::engine::persona::MacStyle,
    /// The share of dark addresses that get a decoy (0.001 to 1); the
    /// others stay silent.
    #[serde(default)]
    pub occupancy: Share,
    /// With a control process: how long a worker's own latch lasts until
    /// control confirms or lifts it.
    #[serde(default = "default_provisional_latch")]
    pub provisional_latch: Span,
    /// Without a control process: how long a worker's own latch lasts
    /// (0s: until restart).
    #[serde(default = "default_latch_for")]
    pub latch_for: Span,
    /// Slots of the shared live-host map.
    #[serde(default = "default_live_slots")]
    pub live_map_slots: Count<1024, { 1 << 28 }>,
    /// One mark in this many is reported to control as an event (0: none).
    #[serde(default = "default_mark_sample")]
    pub mark_sample: Count<0, 1_000_000_000>,
    /// Bite kind -> action.
    #[serde(default)]
    pub policy: PolicySection,
    /// Sweep detection.
    #[serde(default)]
    pub sweep: SweepSection,
    /// Reply rate limits.
    #[serde(default)]
    pub rate_limit: RateSection,
}

/// `[[deception.gateways]]`: one router of the protected network.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Its address on the protected network.
    pub address: std::net::IpAddr,
    /// Its MAC, where one port sees both sides (one-arm, tap).
    pub mac: Option<MacAddr>,
}

/// A MAC address, `aa:bb:cc:dd:ee:ff`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MacAddr(pub [u8; 6]);

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let mut out = [0u8; 6];
        let ok = parts.len() == 6
            && parts
                .iter()
                .zip(out.iter_mut())
                .all(|(p, o)| p.len() == 2 && u8::from_str_radix(p, 16).map(|v| *o = v).is_ok());
        if ok {
            Ok(MacAddr(out))
        } else {
            Err(format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))
        }
    }
}

fn default_claim_after() -> Span {
    Span(Duration::from_secs(3))
}
fn default_learning() -> Span {
    Span(Duration::from_secs(60))
}
fn default_hold_off() -> Span {
    Span(Duration::from_secs(300))
}
fn default_live_idle() -> Span {
    Span(Duration::from_secs(3600))
}
fn default_rotation() -> Span {
    Span(Duration::from_secs(60))
}
fn default_proof_ttl() -> Span {
    Span(Duration::from_secs(600))
}
fn default_udp_services() -> Vec<u16> {
    vec![53, 123]
}
fn default_tls_identities() -> Count<0, 64> {
    Count(4)
}
fn default_latch_capacity() -> Count<1, { 1 << 24 }> {
    Count(1_000_000)
}
fn default_prefix_capacity() -> Count<1, { 1 << 22 }> {
    Count(100_000)
}
fn default_provisional_latch() -> Span {
    Span(Duration::from_secs(60))
}
fn default_latch_for() -> Span {
    Span(Duration::from_secs(3600))
}
fn default_ipv6_block_len() -> Count<48, 128> {
    Count(64)
}
fn default_mark_sample() -> Count<0, 1_000_000_000> {
    Count(1000)
}
fn default_live_slots() -> Count<1024, { 1 << 28 }> {
    Count(1 << 20)
}

/// `[deception.policy]`.
#[derive(Copy, Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Handshake bites.
    #[serde(default = "alert")]
    pub handshake: Action,
    /// Data bites.
    #[serde(default = "block")]
    pub data: Action,
    /// Port bites.
    #[serde(default = "block")]
    pub port: Action,
}

fn alert() -> Action {
    Action::Alert
}
fn block() -> Action {
    Action::Block
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            handshake: Action::Alert,
            data: Action::Block,
            port: Action::Block,
        }
    }
}

/// `[deception.sweep]`.
#[derive(Copy, Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// Distinct decoys that make a sweep (2..=64).
    #[serde(default = "default_sweep_decoys")]
    pub decoys: Count<2, 64>,
    /// Within this window.
    #[serde(default = "default_rotation")]
    pub window: Span,
}

fn default_sweep_decoys() -> Count<2, 64> {
    Count(16)
}

impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            decoys: default_sweep_decoys(),
            window: default_rotation(),
        }
    }
}

/// `[deception.rate_limit]`: replies per second, per worker.
#[derive(Copy, Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    /// From one decoy.
    #[serde(default = "default_per_decoy")]
    pub per_decoy: Count<1, 1_000_000>,
    /// Burst from one decoy.
    #[serde(default = "default_per_decoy_burst")]
    pub per_decoy_burst: Count<1, 1_000_000>,
    /// To one prober (its /24 or /64), from all decoys.
    #[serde(default = "default_per_prober")]
    pub per_prober: Count<1, 10_000_000>,
    /// Burst to one prober.
    #[serde(default = "default_per_prober_burst")]
    pub per_prober_burst: Count<1, 10_000_000>,
    /// From all decoys.
    #[serde(default = "default_total")]
    pub total: Count<1, 100_000_000>,
    /// Burst from all decoys.
    #[serde(default = "default_total_burst")]
    pub total_burst: Count<1, 100_000_000>,
}

fn default_per_decoy() -> Count<1, 1_000_000> {
    Count(100)
}
fn default_per_decoy_burst() -> Count<1, 1_000_000> {
    Count(200)
}
fn default_per_prober() -> Count<1, 10_000_000> {
    Count(1000)
}
fn default_per_prober_burst() -> Count<1, 10_000_000> {
    Count(2000)
}
fn default_total() -> Count<1, 100_000_000> {
    Count(200_000)
}
fn default_total_burst() -> Count<1, 100_000_000> {
    Count(20_000)
}

impl Default for RateSection {
    fn default() -> Self {
        RateSection {
            per_decoy: default_per_decoy(),
            per_decoy_burst: default_per_decoy_burst(),
            per_prober: default_per_prober(),
            per_prober_burst: default_per_prober_burst(),
            total: default_total(),
            total_burst: default_total_burst(),
        }
    }
}

impl DeceptionSection {
    /// Builds the state every worker shares; `seed` varies hash tables.
    pub fn build(&self, seed: u64) -> DeceptionShared {
        let prefixes =
            |list: &[NetPrefix]| PrefixSet::new(list.iter().map(|p| Prefix::from_net(p.0)));
        let secs = |s: Span| u32::try_from(s.0.as_secs()).unwrap_or(u32::MAX);
        DeceptionShared {
            space: AddressSpace {
                protected: prefixes(&self.protected),
                // A gateway's own address is never a decoy.
                excluded: PrefixSet::new(
                    self.exclude
                        .iter()
                        .map(|p| Prefix::from_net(p.0))
                        .chain(self.gateways.iter().map(|g| gateway_prefix(g.address)))
                        .chain(self.protected.iter().flat_map(|p| reserved_addresses(p.0))),
                ),
                static_live: prefixes(&self.live),
                dark_routes: prefixes(&self.dark_routes),
                live: LiveMap::new(self.live_map_slots.0, seed),
                occupancy: Occupancy {
                    per_mille: self.occupancy.per_mille(),
                    key: {
                        use std::hash::Hasher;
                        let secret = self.secret_bytes();
                        let mut h = siphasher::sip::SipHasher13::new_with_key(
                            secret.first_chunk::<16>().unwrap_or(&[0; 16]),
                        );
                        h.write(b"occupancy");
                        h.finish()
                    },
                },
                timing: SpaceTiming {
                    learning_s: secs(self.learning),
                    hold_off_s: secs(self.hold_off),
                    live_idle_s: secs(self.live_idle),
                    claim_after_ds: u32::try_from(self.claim_after.0.as_millis() / 100)
                        .unwrap_or(u32::MAX),
                },
            },
            sides: SideRules {
                gateways: PrefixSet::new(self.gateways.iter().map(|g| gateway_prefix(g.address))),
                gateway_macs: self
                    .gateways
                    .iter()
                    .filter_map(|g| g.mac)
                    .map(|m| m.0)
                    .collect(),
                inside_routes: prefixes(&self.inside_routes),
            },
            allow: prefixes(&self.allow),
            policy: Policy {
                handshake: self.policy.handshake,
                data: self.policy.data,
                port: self.policy.port,
            },
            personas: PersonaMaker::new(&self.secret_bytes()).with_macs(self.decoy_macs),
            secret: self.secret_bytes(),
            cookie_rotation_ms: u64::try_from(self.cookie_rotation.0.as_millis()).unwrap_or(60_000),
            proofs: ProofTable::new(1 << 16, seed ^ 0x7072),
            tickets: WeakTickets::random(),
            proof_ttl_min: u16::try_from(self.proof_ttl.0.as_secs() / 60).unwrap_or(u16::MAX),
            udp_services: self.udp_services.clone(),
            tls: crate::engine::decoy::tls::TlsStore::on_demand(
                self.secret_bytes(),
                self.tls_identities.0 as u32,
            ),
            rates: RateConfig {
                per_decoy: self.rate_limit.per_decoy.0 as u64,
                per_decoy_burst: self.rate_limit.per_decoy_burst.0 as u64,
                per_prober: self.rate_limit.per_prober.0 as u64,
                per_prober_burst: self.rate_limit.per_prober_burst.0 as u64,
                total: self.rate_limit.total.0 as u64,
                total_burst: self.rate_limit.total_burst.0 as u64,
            },
            sweep: SweepConfig {
                decoys: self.sweep.decoys.0 as u32,
                window_s: secs(self.sweep.window).max(1),
            },
            mark_sample: self.mark_sample.0 as u32,
            capture: None,
        }
    }

    /// The configured secret, or one drawn from the OS once per process.
    pub fn secret_bytes(&self) -> [u8; 32] {
        match self.secret {
            Some(Secret(bytes)) => bytes,
            None => *process_secret(),
        }
    }
}

/// A gateway's address as a one-address prefix.
fn gateway_prefix(a: std::net::IpAddr) -> Prefix {
    Prefix::from_net(ipnet::IpNet::from(a))
}

/// Addresses of a protected prefix that are never hosts: an IPv4 subnet's
/// network and broadcast addresses (prefixes up to /30), and an IPv6
/// subnet's Subnet-Router anycast address (RFC 4291 section 2.6.1).
fn reserved_addresses(net: ipnet::IpNet) -> Vec<Prefix> {
    match net {
        ipnet::IpNet::V4(n) if n.prefix_len() <= 30 => vec![
            Prefix::from_net(ipnet::IpNet::from(std::net::IpAddr::V4(n.network()))),
            Prefix::from_net(ipnet::IpNet::from(std::net::IpAddr::V4(n.broadcast()))),
        ],
        ipnet::IpNet::V6(n) if n.prefix_len() <= 126 => vec![Prefix::from_net(ipnet::IpNet::from(
            std::net::IpAddr::V6(n.network()),
        ))],
        _ => Vec::new(),
    }
}

/// A random secret for this process (personas and cookies then change at
/// every restart: configure `secret` to keep them).
fn process_secret() -> &'static [u8; 32] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        let mut out = [0u8; 32];
        let read = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut out));
        if read.is_err() {
            // No /dev/urandom: fall back on std's OS-seeded hasher keys.
            for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&random_seed().wrapping_add(i as u64).to_le_bytes());
            }
        }
        out
    })
}

/// The port, resolved: paths made absolute, backend options checked together.
#[derive(Clone, Debug)]
pub enum PortPlan {
    /// A pcap replay.
    Pcap {
        /// Input capture.
        rx: PathBuf,
        /// Output capture.
        tx: Option<PathBuf>,
        /// Pacing.
        replay: Replay,
        /// The clock flows age by.
        clock: ClockSource,
        /// NIC sizes.
        nic: SoftNicConfig,
    },
    /// Live traffic on AF_PACKET sockets.
    AfPacket(AfPacketConfig),
    /// A DPDK device.
    Dpdk(DpdkPlan),
    /// Live traffic on AF_XDP sockets.
    AfXdp(AfXdpPlan),
}

impl PortSection {
    /// The interfaces of a live port, in the mode's order (inline: outside,
    /// inside; tap: monitor, inject).
    pub fn interfaces(&self) -> Vec<String> {
        match self.mode.unwrap_or(PortMode::OneArm) {
            PortMode::OneArm => self.interface.iter().cloned().collect(),
            PortMode::Inline => self
                .outside
                .iter()
                .chain(self.inside.iter())
                .cloned()
                .collect(),
            PortMode::Tap => self
                .monitor
                .iter()
                .chain(self.inject.iter())
                .cloned()
                .collect(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    ///
    /// ```
    /// use baitwall_dataplane::config::Config;
    /// let ok = Config::parse("[port]\nbackend = \"pcap\"\nrx = \"in.pcap\"\n", "bw.toml");
    /// assert!(ok.is_ok());
    /// let err = Config::parse("[port]\nbackend = \"pcap\"\nrx = \"in.pcap\"\nburst = 8\n", "bw.toml");
    /// let msg = err.unwrap_err().to_string();
    /// assert!(msg.contains("line 4") && msg.contains("unknown field `burst`"));
    /// ```
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.check(text, origin)?;
        Ok(config)
    }

    /// Cross-field checks, reported at the `[port]` table's line.
    fn check(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let port = self.port.get_ref();
        let fail = |field: &str, what: &str| ConfigError::Invalid {
            origin: origin.to_owned(),
            message: format!(
                "line {}: port.{field}: {what}",
                line_of(text, self.port.span().start)
            ),
        };
        let live_fields = [
            ("mode", port.mode.is_some()),
            ("interface", port.interface.is_some()),
            ("outside", port.outside.is_some()),
            ("inside", port.inside.is_some()),
            ("monitor", port.monitor.is_some()),
            ("inject", port.inject.is_some()),
        ];
        match port.backend {
            Backend::Pcap => {
                if port.rx.is_none() {
                    return Err(fail(
                        "rx",
                        "the pcap backend needs `rx`, the capture to replay",
                    ));
                }
                if let Some((field, _)) = live_fields.iter().find(|(_, set)| *set) {
                    return Err(fail(field, "only for the afpacket backend"));
                }
                for (field, set) in [
                    ("eal", port.eal.is_some()),
                    ("device", port.device.is_some()),
                    ("inside_device", port.inside_device.is_some()),
                ] {
                    if set {
                        return Err(fail(field, "only for the dpdk backend"));
                    }
                }
            }
            Backend::Dpdk => {
                if port.device.is_none() {
                    return Err(fail(
                        "device",
                        "the dpdk backend needs `device` (a PCI address or a virtual device)",
                    ));
                }
                let inline = port.mode == Some(PortMode::Inline);
                if inline != port.inside_device.is_some() || port.mode == Some(PortMode::Tap) {
                    return Err(fail(
                        "mode",
                        "dpdk runs one-arm (`device`) or inline (`mode = \"inline\"`, `device` outside and `inside_device`)",
                    ));
                }
                if inline && port.inside_device == port.device {
                    return Err(fail("inside_device", "must differ from `device`"));
                }
                let mut others = live_fields;
                others[0].1 = false; // `mode` is checked above
                for (field, set) in [("rx", port.rx.is_some()), ("tx", port.tx.is_some())]
                    .into_iter()
                    .chain(others)
                {
                    if set {
                        return Err(fail(field, "not for the dpdk backend"));
                    }
                }
                if port.clock == Some(ClockSource::Trace) {
                    return Err(fail("clock", "a live port runs on the system clock"));
                }
            }
            Backend::Afpacket | Backend::Afxdp => {
                if port.backend == Backend::Afpacket && port.xdp_mode.is_some() {
                    return Err(fail("xdp_mode", "only for the afxdp backend"));
                }
                for (field, set) in [
                    ("rx", port.rx.is_some()),
                    ("tx", port.tx.is_some()),
                    ("eal", port.eal.is_some()),
                    ("device", port.device.is_some()),
                    ("inside_device", port.inside_device.is_some()),
                ] {
                    if set {
                        return Err(fail(
                            field,
                            "only for the pcap backend (a live port reads its interfaces)",
                        ));
                    }
                }
                if port.clock == Some(ClockSource::Trace) {
                    return Err(fail("clock", "a live port runs on the system clock"));
                }
                if !port.block_size.0.is_power_of_two() {
                    return Err(fail("block_size", "must be a power of two"));
                }
                let interfaces = port.interfaces();
                let needs = match port.mode.unwrap_or(PortMode::OneArm) {
                    PortMode::OneArm => "one-arm mode needs `interface`",
                    PortMode::Inline => {
                        "inline mode needs `outside` and `inside`, two different interfaces"
                    }
                    PortMode::Tap => {
                        "tap mode needs `monitor` and `inject`, two different interfaces"
                    }
                };
                let want = if port.mode.unwrap_or(PortMode::OneArm) == PortMode::OneArm {
                    1
                } else {
                    2
                };
                let distinct = interfaces.first() != interfaces.get(1);
                if interfaces.len() != want || !distinct {
                    return Err(fail("mode", needs));
                }
            }
        }
        if let Some(d) = &self.deception {
            let invalid = |message: String| ConfigError::Invalid {
                origin: origin.to_owned(),
                message,
            };
            if d.protected.is_empty() {
                return Err(invalid(
                    "deception.protected: list at least one prefix".into(),
                ));
            }
            if d.live_idle.0 < d.hold_off.0 {
                return Err(invalid(format!(
                    "deception.live_idle ({:?}) must be at least deception.hold_off ({:?}): a host that went quiet must stay live for the hold-off",
                    d.live_idle.0, d.hold_off.0
                )));
            }
            if d.cookie_rotation.0 < Duration::from_secs(1) {
                return Err(invalid("deception.cookie_rotation: at least 1s".into()));
            }
            if d.allow.len() > baitwall_channel::region::ALLOW_MAX {
                return Err(invalid(format!(
                    "deception.allow: {} entries, at most {} (control reads them from the region to keep its exports off them)",
                    d.allow.len(),
                    baitwall_channel::region::ALLOW_MAX
                )));
            }
            if !(Duration::from_secs(1)..=Duration::from_secs(3600))
                .contains(&d.provisional_latch.0)
            {
                return Err(invalid(
                    "deception.provisional_latch: 1s to 1h (control confirms or lifts a latch within a second)".into(),
                ));
            }
            if d.latch_for.0 > Duration::from_secs(u64::from(u32::MAX / 2)) {
                return Err(invalid(
                    "deception.latch_for: too long (0s for permanent)".into(),
                ));
            }
            if d.claim_after.0 > Duration::from_secs(60) {
                return Err(invalid(
                    "deception.claim_after: at most 60s (a requester that waited longer has given up)".into(),
                ));
            }
            if let Some(r) = d
                .dark_routes
                .iter()
                .find(|r| !d.protected.iter().any(|p| p.0.contains(&r.0)))
            {
                return Err(invalid(format!(
                    "deception.dark_routes: {} is not inside a protected prefix",
                    r.0
                )));
            }
            let macs = d.gateways.iter().any(|g| g.mac.is_some());
            let all_routed = d
                .protected
                .iter()
                .all(|p| d.dark_routes.iter().any(|r| r.0.contains(&p.0)));
            let mode = port.mode.unwrap_or(PortMode::OneArm);
            if port.backend != Backend::Pcap && mode == PortMode::Tap && !macs {
                return Err(invalid(
                    "deception.gateways: tap mode needs a gateway's `mac`: the appliance tells outside from inside by it".into(),
                ));
            }
            if port.backend != Backend::Pcap && mode == PortMode::OneArm && !macs && !all_routed {
                return Err(invalid(
                    "deception.gateways: one-arm mode needs a gateway's `mac` to tell outside from inside, unless every protected prefix is in `dark_routes` (routed to the appliance as a whole)".into(),
                ));
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let port = self.port.get_mut();
        for p in [&mut port.rx, &mut port.tx].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(c) = self.capture.as_mut()
            && c.dir.is_relative()
        {
            c.dir = base.join(&c.dir);
        }
    }

    /// The runtime settings (cores, burst, idle, engine).
    pub fn runtime(&self) -> RuntimeConfig {
        let seed = self.flows.seed.unwrap_or_else(random_seed);
        // Bite capture needs deception (only decoys see bites).
        let capture = self
            .capture
            .as_ref()
            .filter(|_| self.deception.is_some())
            .map(|c| {
                let settings = c.settings();
                let queues = CaptureQueues::new(settings.buffers);
                (settings, queues)
            });
        RuntimeConfig {
            capture: capture.clone(),
            cores: self
                .workers
                .cores
                .0
                .iter()
                .map(|&c| self.workers.pin.then_some(c))
                .collect(),
            burst: self.workers.burst.0,
            idle: self.workers.idle,
            region: self.control.as_ref().map(|c| RegionConfig {
                path: c.region.clone(),
                slots: c.ring_slots.0,
                hold: (c.start == StartMode::Closed).then_some(c.hold_for.0),
            }),
            engine: EngineConfig {
                flow_capacity: self.flows.capacity.0,
                timeouts: self.flows.timeouts.resolve(),
                flow_seed: seed,
                deception: self.deception.as_ref().map(|d| {
                    let mut shared = d.build(seed);
                    // Every worker gets its share of the reply budgets, so
                    // they hold for the appliance whatever the worker count.
                    shared.rates = shared.rates.split(self.workers.cores.0.len());
                    shared.capture = capture.as_ref().map(|(s, q)| (q.clone(), s.follow_packets));
                    Arc::new(shared)
                }),
                blocks: match &self.deception {
                    Some(d) => BlockConfig {
                        exact: d.latch_capacity.0,
                        prefixes: d.prefix_capacity.0,
                        ipv6_len: d.block_ipv6_prefix.0 as u8,
                        latch_s: d.latch_for.0.as_secs() as u32,
                        provisional_s: d.provisional_latch.0.as_secs() as u32,
                    },
                    None => BlockConfig::default(),
                },
                // A tap port cannot drop: blocked sources are severed.
                sever_blocked: matches!(
                    self.port.get_ref().backend,
                    Backend::Afpacket | Backend::Afxdp
                ) && self.port.get_ref().mode == Some(PortMode::Tap),
            },
        }
    }

    /// The port to open.
    pub fn port_plan(&self) -> PortPlan {
        let port = self.port.get_ref();
        let nic = SoftNicConfig {
            queues: self.workers.cores.0.len() as u16,
            pool_size: port.pool_size.0,
            ring_size: port.ring_size.0,
            lossless_tx: true,
        };
        match port.backend {
            Backend::Pcap => PortPlan::Pcap {
                rx: port.rx.clone().unwrap_or_default(),
                tx: port.tx.clone(),
                replay: match port.replay {
                    ReplayMode::Fast => Replay::Fast,
                    ReplayMode::Timed => Replay::Timed {
                        speed: port.speed.0,
                    },
                },
                clock: port.clock.unwrap_or(ClockSource::Trace),
                nic,
            },
            Backend::Afpacket => PortPlan::AfPacket(AfPacketConfig {
                mode: port.mode.unwrap_or(PortMode::OneArm),
                interfaces: port.interfaces(),
                ring: baitwall_afpacket::RingConfig {
                    block_size: port.block_size.0 as u32,
                    block_count: port.block_count.0 as u32,
                    tx_frames: port.tx_frames.0 as u32,
                    ..baitwall_afpacket::RingConfig::default()
                },
                buffers_per_queue: port.pool_size.0,
            }),
            Backend::Afxdp => PortPlan::AfXdp(AfXdpPlan {
                mode: port.mode.unwrap_or(PortMode::OneArm),
                interfaces: port.interfaces(),
                xdp_mode: port.xdp_mode.unwrap_or(XdpModeSetting::Auto),
                umem_frames: port.umem_frames.0 as u32,
                buffers_per_queue: port.pool_size.0,
            }),
            Backend::Dpdk => PortPlan::Dpdk(DpdkPlan {
                eal: port.eal.clone().unwrap_or_default(),
                device: port.device.clone().unwrap_or_default(),
                inside: port.inside_device.clone(),
                mbufs: u32::try_from(port.pool_size.0).unwrap_or(u32::MAX),
                descriptors: port.descriptors.0 as u16,
            }),
        }
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
}

/// A seed that differs between starts, so flow-table placement cannot be
/// predicted across restarts; std's `RandomState` is seeded by the OS.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x6261_6974u32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const MINIMAL: &str = "[port]\nbackend = \"pcap\"\nrx = \"in.pcap\"\n";

    fn err(text: &str) -> String {
        Config::parse(text, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn occupancy_is_a_share_of_the_dark_addresses() {
        let base =
            "[port]\nbackend = \"pcap\"\nrx = \"x\"\n[deception]\nprotected = [\"10.0.0.0/8\"]\n";
        let full = Config::parse(base, "t").unwrap();
        let d = full.deception.as_ref().unwrap();
        assert_eq!(
            d.occupancy.per_mille(),
            1000,
            "every dark address by default"
        );
        assert_eq!(d.tls_identities.0, 4);
        let text = format!("{base}occupancy = 0.6\nsecret = \"{}\"\n", "ab".repeat(32));
        let c = Config::parse(&text, "t").unwrap();
        let shared = c.deception.as_ref().unwrap().build(1);
        assert_eq!(shared.space.occupancy.per_mille, 600);
        let other = Config::parse(&text.replace("ab", "cd"), "t").unwrap();
        let other = other.deception.as_ref().unwrap().build(1);
        assert_ne!(
            shared.space.occupancy.key, other.space.occupancy.key,
            "keyed by the secret"
        );
    }

    #[test]
    fn a_live_port_reads_its_mode_and_interfaces() {
        let c = Config::parse(
            "[workers]\ncores = [0, 1]\n[port]\nbackend = \"afpacket\"\nmode = \"inline\"\noutside = \"ext\"\ninside = \"int\"\nblock_count = 8\n",
            "t",
        )
        .unwrap();
        match c.port_plan() {
            PortPlan::AfPacket(p) => {
                assert_eq!(p.mode, PortMode::Inline);
                assert_eq!(p.interfaces, ["ext", "int"]);
                assert_eq!(p.ring.block_count, 8);
            }
            other => panic!("{other:?}"),
        }
        let one = Config::parse(
            "[port]\nbackend = \"afpacket\"\ninterface = \"eth1\"\n",
            "t",
        )
        .unwrap();
        assert!(
            matches!(one.port_plan(), PortPlan::AfPacket(p) if p.mode == PortMode::OneArm && p.interfaces == ["eth1"])
        );
    }

    #[test]
    fn live_port_mistakes_name_the_field() {
        for (port, says) in [
            (
                "backend = \"afpacket\"\nmode = \"inline\"\noutside = \"a\"",
                "port.mode: inline mode needs",
            ),
            (
                "backend = \"afpacket\"\nmode = \"inline\"\noutside = \"a\"\ninside = \"a\"",
                "two different interfaces",
            ),
            (
                "backend = \"afpacket\"\nmode = \"tap\"\nmonitor = \"a\"",
                "tap mode needs",
            ),
            ("backend = \"afpacket\"", "one-arm mode needs `interface`"),
            (
                "backend = \"afpacket\"\ninterface = \"a\"\nrx = \"x.pcap\"",
                "port.rx: only for the pcap backend",
            ),
            (
                "backend = \"afpacket\"\ninterface = \"a\"\nclock = \"trace\"",
                "system clock",
            ),
            (
                "backend = \"afpacket\"\ninterface = \"a\"\nblock_size = 5000",
                "power of two",
            ),
            (
                "backend = \"pcap\"\nrx = \"x.pcap\"\ninterface = \"a\"",
                "port.interface: only for the afpacket backend",
            ),
            (
                "backend = \"afpacket\"\nmode = \"bridge\"\ninterface = \"a\"",
                "unknown variant",
            ),
        ] {
            let e = err(&format!("[port]\n{port}\n"));
            assert!(e.contains(says), "{port}: {e}");
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(c.workers.cores.0, vec![0]);
        assert_eq!(c.workers.burst.0, 32);
        assert_eq!(c.flows.capacity.0, 1 << 20);
        let rt = c.runtime();
        assert_eq!(rt.cores, vec![Some(0)]);
        assert_eq!(rt.engine.timeouts, Timeouts::default());
        match c.port_plan() {
            PortPlan::Pcap { replay, clock, .. } => {
                assert_eq!(replay, Replay::Fast);
                assert_eq!(clock, ClockSource::Trace);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_config_parses() {
        let text = r#"
[workers]
cores = [1, 0]
pin = false
burst = 64
idle = "spin"

[port]
backend = "pcap"
rx = "a.pcap"
tx = "b.pcap"
replay = "timed"
speed = 2.5
clock = "system"
pool_size = 4096
ring_size = 512

[flows]
capacity = 1000
seed = 42

[flows.timeouts]
syn_sent = "5s"
established = "1h"
udp_replied = "90s"
"#;
        let c = Config::parse(text, "t").unwrap();
        let rt = c.runtime();
        assert_eq!(rt.cores, vec![None, None]);
        assert_eq!(rt.burst, 64);
        assert_eq!(rt.idle, IdlePolicy::Spin);
        assert_eq!(rt.engine.flow_seed, 42);
        assert_eq!(rt.engine.timeouts.get(FlowState::SynSent), 5_000);
        assert_eq!(rt.engine.timeouts.get(FlowState::Established), 3_600_000);
        assert_eq!(rt.engine.timeouts.get(FlowState::Closing), 120_000);
        match c.port_plan() {
            PortPlan::Pcap { replay, nic, .. } => {
                assert_eq!(replay, Replay::Timed { speed: 2.5 });
                assert_eq!(nic.queues, 2);
                assert_eq!(nic.pool_size, 4096);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Each bad file names the field (or value) and the line it is on.
    #[test]
    fn errors_name_the_field_and_the_line() {
        let cases: [(&str, &[&str]); 12] = [
            (
                "[port]\nbackend = \"pcap\"\nrx = \"x\"\n[deception]\noccupancy = 0.0\n",
                &["line 5", "between 0.001 and 1"],
            ),
            (
                "[port]\nbackend = \"pcap\"\nrx = \"x\"\n[deception]\ntls_identities = 65\n",
                &["line 5", "65 is out of range"],
            ),
            (
                "[workers]\nburst = 0\n[port]\nbackend = \"pcap\"\nrx = \"x\"\n",
                &["line 2", "burst 0 is out of range"],
            ),
            (
                "[workers]\ncores = [0, 0]\n[port]\nbackend = \"pcap\"\nrx = \"x\"\n",
                &["line 2", "core 0 is listed twice"],
            ),
            (
                "[workers]\ncorez = [0]\n[port]\nbackend = \"pcap\"\nrx = \"x\"\n",
                &["line 2", "unknown field `corez`"],
            ),
            (
                "[port]\nbackend = \"netmap\"\n",
                &["line 2", "unknown variant `netmap`"],
            ),
            (
                "[port]\nbackend = \"dpdk\"\n",
                &["line 1", "port.device: the dpdk backend needs `device`"],
            ),
            ("[port]\nbackend = \"pcap\"\n", &["line 1", "port.rx"]),
            (
                "[port]\nbackend = \"pcap\"\nrx = \"x\"\nspeed = -1.0\n",
                &["line 4", "speed -1 is out of range"],
            ),
            (
                "[port]\nbackend = \"pcap\"\nrx = \"x\"\n[flows.timeouts]\nestablished = \"forever\"\n",
                &["line 5", "\"forever\" is not a duration"],
            ),
            (
                "[port]\nbackend = \"pcap\"\nrx = \"x\"\n[flows.timeouts]\nsyn_sent = \"100days\"\n",
                &["line 5", "out of range"],
            ),
            ("[port\n", &["line 1"]),
        ];
        for (text, needles) in cases {
            let e = err(text);
            for needle in needles {
                assert!(e.contains(needle), "{text:?}: {e:?} lacks {needle:?}");
            }
            assert!(e.starts_with("test.toml: "), "{e}");
        }
    }

    #[test]
    fn deception_section_parses_and_refuses_what_is_wrong() {
        let base = "[port]\nbackend = \"pcap\"\nrx = \"x\"\n[deception]\n";
        let ok = format!(
            "{base}protected = [\"198.51.100.0/24\", \"2001:db8::/64\"]\nexclude = [\"198.51.100.1\"]\nsecret = \"{}\"\n[deception.policy]\nhandshake = \"block\"\n",
            "ab".repeat(32)
        );
        let c = Config::parse(&ok, "t").unwrap();
        let d = c.deception.as_ref().unwrap();
        assert_eq!(d.secret_bytes(), [0xab; 32]);
        assert_eq!(d.policy.handshake, Action::Block);
        assert!(c.runtime().engine.deception.is_some());
        let cases: [(&str, &[&str]); 6] = [
            (
                "protected = [\"198.51.100.7/24\"]\n",
                &["line 5", "host bits set", "198.51.100.0/24"],
            ),
            (
                "protected = [\"not-an-address\"]\n",
                &["line 5", "not an IPv4/IPv6 address"],
            ),
            ("protected = []\n", &["deception.protected"]),
            (
                "protected = [\"10.0.0.0/8\"]\nhold_off = \"2h\"\n",
                &["live_idle", "hold_off"],
            ),
            (
                "protected = [\"10.0.0.0/8\"]\nsecret = \"abc\"\n",
                &["line 6", "64 hexadecimal digits"],
            ),
            (
                "protected = [\"10.0.0.0/8\"]\n[deception.policy]\nport = \"ban\"\n",
                &["line 7", "unknown variant `ban`"],
            ),
        ];
        for (tail, needles) in cases {
            let e = err(&format!("{base}{tail}"));
            for needle in needles {
                assert!(e.contains(needle), "{tail:?}: {e:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn an_unset_secret_is_random_but_stable_within_the_process() {
        let text =
            "[port]\nbackend = \"pcap\"\nrx = \"x\"\n[deception]\nprotected = [\"10.0.0.0/8\"]\n";
        let a = Config::parse(text, "t")
            .unwrap()
            .deception
            .unwrap()
            .secret_bytes();
        let b = Config::parse(text, "t")
            .unwrap()
            .deception
            .unwrap()
            .secret_bytes();
        assert_eq!(a, b);
        assert_ne!(a, [0; 32]);
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bw.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.port.get_ref().rx.as_deref(),
            Some(dir.path().join("in.pcap").as_path())
        );
        let missing = Config::load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }));
    }

    #[test]
    fn unseeded_configs_get_different_seeds() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_ne!(c.runtime().engine.flow_seed, c.runtime().engine.flow_seed);
    }
}
