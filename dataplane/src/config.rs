//! The dataplane's configuration file (TOML), validated as it is read.
//!
//! Every field is documented in `docs/configuration.md`. Unknown fields are
//! rejected, and so are invalid values; either way the error names the field
//! and the line (values are checked while they are deserialized, so the TOML
//! parser knows where they stand). A file that fails changes nothing: callers
//! get an error, never a half-applied configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::engine::EngineConfig;
use crate::engine::flow::{FlowState, MAX_TIMEOUT_MS, Timeouts};
use crate::io::MAX_BURST;
use crate::io::pcap::Replay;
use crate::io::soft::SoftNicConfig;
use crate::runtime::RuntimeConfig;
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
        match port.backend {
            Backend::Pcap => {
                if port.rx.is_none() {
                    return Err(fail(
                        "rx",
                        "the pcap backend needs `rx`, the capture to replay",
                    ));
                }
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
    }

    /// The runtime settings (cores, burst, idle, engine).
    pub fn runtime(&self) -> RuntimeConfig {
        let seed = self.flows.seed.unwrap_or_else(random_seed);
        RuntimeConfig {
            cores: self
                .workers
                .cores
                .0
                .iter()
                .map(|&c| self.workers.pin.then_some(c))
                .collect(),
            burst: self.workers.burst.0,
            idle: self.workers.idle,
            engine: EngineConfig {
                flow_capacity: self.flows.capacity.0,
                timeouts: self.flows.timeouts.resolve(),
                flow_seed: seed,
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
        }
    }

    /// Each bad file names the field (or value) and the line it is on.
    #[test]
    fn errors_name_the_field_and_the_line() {
        let cases: [(&str, &[&str]); 9] = [
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
                "[port]\nbackend = \"dpdk\"\n",
                &["line 2", "unknown variant `dpdk`"],
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
