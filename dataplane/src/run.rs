//! Running the dataplane on a configuration: open the port, start the
//! workers, feed them, stop cleanly, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clock::Clock;
use crate::config::{ClockSource, Config, PortPlan};
use crate::engine::bite::Action;
use crate::engine::event::EventKind;
use crate::io::afpacket::AfPacketPort;
use crate::io::pcap::{PcapPort, PcapPortConfig, PcapReport};
use crate::runtime::{Dataplane, DataplaneReport};
use crate::stats::StatsSnapshot;
use crate::worker::{ControlMsg, WorkerEvent};

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// Workers' final counters.
    pub dataplane: DataplaneReport,
    /// The port's frame counts: the replay's for a pcap port; for a live
    /// port, frames the workers received and sent.
    pub pcap: PcapReport,
    /// Wall-clock time the run took.
    pub elapsed: Duration,
    /// True when the run ended because `stop` was set (signal), not because the input ended.
    pub interrupted: bool,
    /// Events the workers reported (bites, sweeps), in arrival order.
    pub events: Vec<WorkerEvent>,
}

impl RunOutcome {
    /// The outcome as JSON: totals, per-worker counters, replay counters.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "port": self.dataplane.port,
            "interrupted": self.interrupted,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "replay": self.pcap,
            "stats": self.dataplane.snapshot,
            "events": self.events.iter().map(event_json).collect::<Vec<_>>(),
        })
    }
}

/// Runs until the input is consumed or `stop` is set; calls `progress` about
/// once a second with the live counters.
pub fn run(
    config: &Config,
    stop: Arc<AtomicBool>,
    progress: impl FnMut(&StatsSnapshot),
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let runtime = config.runtime();
    match config.port_plan() {
        PortPlan::Pcap {
            rx,
            tx,
            replay,
            clock,
            nic,
        } => {
            let mut port = PcapPort::open(PcapPortConfig {
                rx_path: rx,
                tx_path: tx,
                replay,
                nic,
            })?;
            let clock = match clock {
                ClockSource::Trace => Clock::Trace,
                ClockSource::System => Clock::monotonic(),
            };
            // Workers first, so the feeder finds someone draining the rings.
            let mut dataplane = Dataplane::start(&mut port, &runtime, clock, stop.clone())?;
            let replay = match port.start(stop.clone()) {
                Ok(r) => r,
                Err(e) => {
                    dataplane.stop();
                    return Err(e.into());
                }
            };
            let mut events = supervise(&mut dataplane, &stop, progress, || replay.is_finished());
            let interrupted = stop.load(Ordering::Relaxed);
            let mut report = dataplane.stop();
            keep_events(&mut events, std::mem::take(&mut report.events));
            let pcap = replay.finish().context("pcap replay")?;
            Ok(RunOutcome {
                dataplane: report,
                pcap,
                elapsed: started.elapsed(),
                interrupted,
                events,
            })
        }
        PortPlan::AfPacket(plan) => {
            let mut port = AfPacketPort::open(&plan, runtime.cores.len()).with_context(|| {
                format!(
                    "opening the afpacket port on {}",
                    plan.interfaces.join(", ")
                )
            })?;
            run_live(&mut port, &runtime, stop, progress, started)
        }
        #[cfg(feature = "afxdp")]
        PortPlan::AfXdp(plan) => {
            use crate::config::XdpModeSetting;
            let config = crate::io::afxdp::AfXdpConfig {
                mode: plan.mode,
                interfaces: plan.interfaces.clone(),
                xdp: baitwall_afxdp::XdpConfig {
                    frames: plan.umem_frames,
                    mode: match plan.xdp_mode {
                        XdpModeSetting::Auto => baitwall_afxdp::XdpMode::Auto,
                        XdpModeSetting::Native => baitwall_afxdp::XdpMode::Native,
                        XdpModeSetting::Skb => baitwall_afxdp::XdpMode::Skb,
                    },
                },
                buffers_per_queue: plan.buffers_per_queue,
            };
            let mut port = crate::io::afxdp::AfXdpPort::open(&config, runtime.cores.len())
                .with_context(|| {
                    format!("opening the afxdp port on {}", plan.interfaces.join(", "))
                })?;
            run_live(&mut port, &runtime, stop, progress, started)
        }
        #[cfg(not(feature = "afxdp"))]
        PortPlan::AfXdp(_) => anyhow::bail!(
            "port.backend = \"afxdp\": this build has no AF_XDP backend (build with `--features afxdp`)"
        ),
        #[cfg(feature = "dpdk")]
        PortPlan::Dpdk(plan) => {
            let mut port = crate::io::dpdk::DpdkPort::open(&plan, runtime.cores.len())
                .with_context(|| format!("opening the DPDK device {}", plan.device))?;
            run_live(&mut port, &runtime, stop, progress, started)
        }
        #[cfg(not(feature = "dpdk"))]
        PortPlan::Dpdk(_) => anyhow::bail!(
            "port.backend = \"dpdk\": this build has no DPDK backend (build with `--features dpdk`, with DPDK installed)"
        ),
    }
}

/// Events a run keeps for its report; later ones are counted, not kept
/// (the control process will stream and store them instead).
pub const MAX_KEPT_EVENTS: usize = 100_000;

fn keep_events(kept: &mut Vec<WorkerEvent>, fresh: Vec<WorkerEvent>) {
    let room = MAX_KEPT_EVENTS.saturating_sub(kept.len());
    kept.extend(fresh.into_iter().take(room));
}

/// Spreads each block a worker latched to every worker: the in-process
/// stand-in for the control process, which will do this over shared-memory
/// rings. A worker that already holds the block ignores the repeat.
fn spread_latches(dataplane: &mut Dataplane, events: &[WorkerEvent]) {
    for e in events {
        if let EventKind::Bite {
            action: Action::Block,
            ..
        } = e.event.kind
        {
            dataplane.broadcast(ControlMsg::Latch(e.event.src));
        }
    }
}

/// Watches running workers until `stop` or `done()`: spreads their latches,
/// keeps their events, reports progress about once a second.
fn supervise(
    dataplane: &mut Dataplane,
    stop: &AtomicBool,
    mut progress: impl FnMut(&StatsSnapshot),
    done: impl Fn() -> bool,
) -> Vec<WorkerEvent> {
    let mut last_progress = Instant::now();
    let mut events = Vec::new();
    while !done() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
        let fresh = dataplane.drain_events();
        spread_latches(dataplane, &fresh);
        keep_events(&mut events, fresh);
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&dataplane.stats());
            last_progress = Instant::now();
        }
    }
    events
}

/// Runs workers on a live port until `stop` (SIGINT, SIGTERM).
fn run_live<P: crate::io::Port>(
    port: &mut P,
    runtime: &crate::runtime::RuntimeConfig,
    stop: Arc<AtomicBool>,
    progress: impl FnMut(&StatsSnapshot),
    started: Instant,
) -> anyhow::Result<RunOutcome> {
    let mut dataplane = Dataplane::start(port, runtime, Clock::monotonic(), stop.clone())?;
    let mut events = supervise(&mut dataplane, &stop, progress, || false);
    let mut report = dataplane.stop();
    keep_events(&mut events, std::mem::take(&mut report.events));
    let total = &report.snapshot.total;
    let counts = PcapReport {
        frames_in: total.rx_packets,
        frames_out: total.tx_packets,
        completed: false,
        ..PcapReport::default()
    };
    Ok(RunOutcome {
        dataplane: report,
        pcap: counts,
        elapsed: started.elapsed(),
        interrupted: true,
        events,
    })
}

/// An event as JSON, with addresses written as text.
pub fn event_json(e: &WorkerEvent) -> serde_json::Value {
    let ip = |a: [u8; 16]| std::net::IpAddr::from(a).to_canonical().to_string();
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("src".into(), ip(e.event.src).into());
        obj.insert("dst".into(), ip(e.event.dst).into());
    }
    v
}
