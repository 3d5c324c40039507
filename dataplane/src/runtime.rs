//! Starting and stopping the workers of one port.
//!
//! [`Dataplane::start`] takes the port's queues, builds one engine per queue,
//! and spawns one pinned worker thread per queue. The handle it returns reads
//! counters, sends control messages to every worker, waits for them to be
//! applied (generation barriers), and stops the workers cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, bounded};
use crossbeam::utils::CachePadded;

use baitwall_channel::{Geometry, Region};

use crate::capture::CaptureReport;
use crate::clock::Clock;
use crate::engine::evidence::CaptureQueues;
use crate::engine::{Engine, EngineConfig};
use crate::io::Port;
use crate::stats::{StatsBoard, StatsSnapshot};
use crate::worker::{
    self, ControlMsg, IdlePolicy, WorkerConfig, WorkerEvent, WorkerLinks, WorkerReport,
};

/// Depth of each worker's control channel.
const CONTROL_DEPTH: usize = 1024;

/// Events held for the collector before workers start counting losses.
const EVENT_DEPTH: usize = 1 << 16;

/// How to run the workers.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// One entry per worker: the core to pin it to (`None`: not pinned).
    pub cores: Vec<Option<usize>>,
    /// Frames per burst.
    pub burst: usize,
    /// Idle behaviour.
    pub idle: IdlePolicy,
    /// Engine settings (each worker gets its own engine).
    pub engine: EngineConfig,
    /// The shared-memory region for the control process (`None`: no control).
    pub region: Option<RegionConfig>,
    /// Bite capture: the writer's settings and the queues the workers fill
    /// (the same queues are in the engine's deception settings).
    pub capture: Option<(crate::capture::CaptureConfig, Arc<CaptureQueues>)>,
}

/// Where and how large the control region is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionConfig {
    /// The region file (normally under /dev/shm).
    pub path: std::path::PathBuf,
    /// Slots per ring (a power of two).
    pub slots: u32,
    /// Fail-closed start: hold traffic until the first resync, at most this long.
    pub hold: Option<std::time::Duration>,
}

/// A fresh instance id for the region: 8 bytes from /dev/urandom (or the
/// OS-seeded std hasher when it is missing).
fn instance_id() -> u64 {
    let mut b = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    match read {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::process::id())
        }
    }
}

/// The cores workers may be pinned to: every online CPU. Not the calling
/// thread's affinity: DPDK's EAL pins the thread that starts it to its main
/// lcore before the workers start, and `isolcpus=` leaves the isolated
/// cores out of every process's default affinity, yet the workers are
/// meant to run exactly there (docs/deploy.md). Where the kernel's list
/// cannot be read, the calling thread's affinity.
fn online_cores() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|text| parse_cpu_list(&text))
        .unwrap_or_else(|| {
            core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
}

/// The kernel's CPU list format (`0-3,8,10-11`); `None` if malformed.
fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cores = Vec::new();
    for part in text.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?),
            None => {
                let core = part.parse::<usize>().ok()?;
                (core, core)
            }
        };
        // The kernel caps CPU ids well below this (CONFIG_NR_CPUS).
        if lo > hi || hi >= 1 << 16 {
            return None;
        }
        cores.extend(lo..=hi);
    }
    Some(cores)
}

/// Errors starting the workers.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The port has fewer queues than there are workers.
    #[error("port {port} has {queues} queue(s) but {workers} worker(s) are configured")]
    Queues {
        /// The port.
        port: String,
        /// Queues the port offered.
        queues: usize,
        /// Workers configured.
        workers: usize,
    },
    /// A configured core does not exist.
    #[error(
        "workers.cores: core {core} does not exist on this machine (cores available: {available:?})"
    )]
    NoSuchCore {
        /// The core asked for.
        core: usize,
        /// The cores there are.
        available: Vec<usize>,
    },
    /// The control region could not be created.
    #[error("control region: {0}")]
    Region(baitwall_channel::RegionError),
    /// The bite capture's folder could not be prepared.
    #[error("capture.dir {}: {source}", dir.display())]
    Capture {
        /// The folder.
        dir: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The OS refused a thread.
    #[error("cannot start worker {id}: {source}")]
    Spawn {
        /// Worker index.
        id: usize,
        /// The cause.
        source: std::io::Error,
    },
}

/// The running workers.
pub struct Dataplane {
    workers: Vec<JoinHandle<WorkerReport>>,
    control: Vec<Sender<ControlMsg>>,
    board: Arc<StatsBoard>,
    applied: Arc<[CachePadded<AtomicU64>]>,
    stop: Arc<AtomicBool>,
    generation: u64,
    port: String,
    events: Receiver<WorkerEvent>,
    undelivered: u64,
    capture: Option<(Arc<AtomicBool>, JoinHandle<CaptureReport>)>,
    /// The control region, closed when the workers have stopped.
    region: Option<Arc<Region>>,
}

/// Final report of a run.
#[derive(Clone, Debug)]
pub struct DataplaneReport {
    /// The port's name.
    pub port: String,
    /// Per worker.
    pub workers: Vec<WorkerReport>,
    /// Summed counters.
    pub snapshot: StatsSnapshot,
    /// Events not yet taken with [`Dataplane::drain_events`] when the workers stopped.
    pub events: Vec<WorkerEvent>,
    /// What the bite capture wrote, when it was on.
    pub capture: Option<CaptureReport>,
}

impl Dataplane {
    /// Spawns one worker per configured core on the port's queues. `stop` is
    /// shared with signal handlers: setting it stops every worker.
    pub fn start<P: Port>(
        port: &mut P,
        config: &RuntimeConfig,
        clock: Clock,
        stop: Arc<AtomicBool>,
    ) -> Result<Dataplane, RuntimeError> {
        let available = online_cores();
        if let Some(core) = config
            .cores
            .iter()
            .flatten()
            .find(|c| !available.contains(c))
        {
            return Err(RuntimeError::NoSuchCore {
                core: *core,
                available,
            });
        }
        let port_name = port.name();
        let queues = port.take_queues();
        let n = config.cores.len();
        if queues.len() < n || n == 0 {
            return Err(RuntimeError::Queues {
                port: port_name,
                queues: queues.len(),
                workers: n,
            });
        }
        let board = Arc::new(StatsBoard::new(n));
        let applied: Arc<[CachePadded<AtomicU64>]> = (0..n)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect();
        let mut workers = Vec::with_capacity(n);
        let mut control = Vec::with_capacity(n);
        let (events_tx, events) = bounded(EVENT_DEPTH);
        // The dataplane's own allowlist goes into the region's header, so
        // control's exports (nftables, BGP) never cover it either.
        let allow: Vec<([u8; 16], u8)> = config
            .engine
            .deception
            .as_ref()
            .map(|d| {
                d.allow
                    .iter()
                    .map(|p| (p.network().to_be_bytes(), p.len()))
                    .collect()
            })
            .unwrap_or_default();
        let region = match &config.region {
            Some(rc) => Some(
                Region::create_described(
                    &rc.path,
                    Geometry {
                        workers: n as u32,
                        slots: rc.slots,
                    },
                    instance_id(),
                    &crate::stats::cell_names(),
                    &port_name,
                    &allow,
                )
                .map_err(RuntimeError::Region)?,
            ),
            None => None,
        };
        let capture = match &config.capture {
            Some((settings, queues)) => {
                let stop = Arc::new(AtomicBool::new(false));
                let handle = crate::capture::spawn(settings.clone(), queues.clone(), stop.clone())
                    .map_err(|source| RuntimeError::Capture {
                        dir: settings.dir.clone(),
                        source,
                    })?;
                Some((stop, handle))
            }
            None => None,
        };
        for (id, (queue, core)) in queues.into_iter().zip(config.cores.iter()).enumerate() {
            let (tx, rx) = bounded(CONTROL_DEPTH);
            let worker_config = WorkerConfig {
                id,
                core: *core,
                burst: config.burst,
                idle: config.idle,
                hold: config.region.as_ref().and_then(|r| r.hold),
            };
            let links = WorkerLinks {
                board: board.clone(),
                applied: applied.clone(),
                stop: stop.clone(),
                events: events_tx.clone(),
            };
            let ends = region.as_ref().and_then(|r| r.worker_ends(id as u32));
            // Each engine allocates its tables here, before the thread
            // starts, with its own hash seed.
            let mut engine_config = config.engine.clone();
            engine_config.flow_seed ^= (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            if region.is_some() {
                // Control confirms or lifts every latch: until it does, a
                // worker's own latch is provisional.
                engine_config.blocks = engine_config.blocks.controlled();
            }
            let engine = Engine::new(&engine_config);
            let clock = clock.clone();
            let handle = std::thread::Builder::new()
                .name(format!("bw-worker-{id}"))
                .spawn(move || worker::run(worker_config, queue, engine, rx, links, clock, ends))
                .map_err(|source| {
                    stop.store(true, Ordering::Relaxed);
                    RuntimeError::Spawn { id, source }
                })?;
            workers.push(handle);
            control.push(tx);
        }
        Ok(Dataplane {
            workers,
            control,
            board,
            applied,
            stop,
            generation: 0,
            port: port_name,
            events,
            undelivered: 0,
            capture,
            region,
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Current counters of every worker.
    pub fn stats(&self) -> StatsSnapshot {
        self.board.snapshot()
    }

    /// Sends `msg` to every worker followed by a barrier; returns the barrier's generation.
    pub fn broadcast(&mut self, msg: ControlMsg) -> u64 {
        self.generation += 1;
        for tx in &self.control {
            // A full channel means the worker is stuck: the message is
            // counted as undelivered, and the barrier will time out.
            for m in [msg, ControlMsg::Barrier(self.generation)] {
                if tx.try_send(m).is_err() {
                    self.undelivered += 1;
                }
            }
        }
        self.generation
    }

    /// Waits until every worker has applied generation `generation`.
    pub fn wait_applied(&self, generation: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .applied
                .iter()
                .all(|g| g.load(Ordering::Acquire) >= generation)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Control messages that could not be delivered (a worker's channel was full).
    pub fn undelivered(&self) -> u64 {
        self.undelivered
    }

    /// Takes the events the workers reported so far.
    pub fn drain_events(&self) -> Vec<WorkerEvent> {
        self.events.try_iter().collect()
    }

    /// True once a stop was requested (signal or control message).
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stops every worker and collects their final reports.
    pub fn stop(self) -> DataplaneReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut workers: Vec<WorkerReport> = self
            .workers
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect();
        workers.sort_by_key(|w| w.id);
        // Nothing reads or answers the rings any more: say so to control.
        if let Some(region) = &self.region {
            region.close();
        }
        // The workers are done: the writer empties the queue and stops.
        let capture = self.capture.and_then(|(stop, handle)| {
            stop.store(true, Ordering::Release);
            handle.join().ok()
        });
        let snapshot = StatsSnapshot::from_workers(workers.iter().map(|w| w.counters).collect());
        DataplaneReport {
            port: self.port,
            workers,
            snapshot,
            events: self.events.try_iter().collect(),
            capture,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cpu_lists_read_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        for bad in ["", "3-1", "a", "0-", "0,,1", "0-99999"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_online_core_is_available_whatever_this_threads_affinity() {
        let online = online_cores();
        let mine: Vec<usize> = core_affinity::get_core_ids()
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert!(
            mine.iter().all(|c| online.contains(c)),
            "{mine:?} {online:?}"
        );
        // Pinned to one core, this thread still sees every core: as the
        // dataplane's main thread does once DPDK's EAL has pinned it.
        let narrowed = std::thread::spawn(move || {
            core_affinity::set_for_current(core_affinity::CoreId { id: mine[0] });
            online_cores()
        })
        .join()
        .unwrap();
        assert_eq!(narrowed, online);
    }
}
