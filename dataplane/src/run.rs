//! Running the dataplane on a configuration: open the port, start the
//! workers, feed them, stop cleanly, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clock::Clock;
use crate::config::{ClockSource, Config, PortPlan};
use crate::io::pcap::{PcapPort, PcapPortConfig, PcapReport};
use crate::runtime::{Dataplane, DataplaneReport};
use crate::stats::StatsSnapshot;

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// Workers' final counters.
    pub dataplane: DataplaneReport,
    /// The port's replay counters.
    pub pcap: PcapReport,
    /// Wall-clock time the run took.
    pub elapsed: Duration,
    /// True when the run ended because `stop` was set (signal), not because the input ended.
    pub interrupted: bool,
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
        })
    }
}

/// Runs until the input is consumed or `stop` is set; calls `progress` about
/// once a second with the live counters.
pub fn run(
    config: &Config,
    stop: Arc<AtomicBool>,
    mut progress: impl FnMut(&StatsSnapshot),
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
            let dataplane = Dataplane::start(&mut port, &runtime, clock, stop.clone())?;
            let replay = match port.start(stop.clone()) {
                Ok(r) => r,
                Err(e) => {
                    dataplane.stop();
                    return Err(e.into());
                }
            };
            let mut last_progress = Instant::now();
            while !replay.is_finished() && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                if last_progress.elapsed() >= Duration::from_secs(1) {
                    progress(&dataplane.stats());
                    last_progress = Instant::now();
                }
            }
            let interrupted = stop.load(Ordering::Relaxed);
            let report = dataplane.stop();
            let pcap = replay.finish().context("pcap replay")?;
            Ok(RunOutcome {
                dataplane: report,
                pcap,
                elapsed: started.elapsed(),
                interrupted,
            })
        }
    }
}
