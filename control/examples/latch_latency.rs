//! Measures the cross-worker latch: the wall time from a worker seeing a
//! blocking bite to every worker acknowledging the block control pushed.
//!
//! `cargo run --release -p baitwall-control --example latch_latency -- [bites]`
//!
//! Two workers on the `mem` port with a control region, control in a thread
//! of the same process (the rings are the same shared memory either way).
//! For each bite: inject the biting segment (a new worm address each time),
//! then wait for control's "generation applied on every worker" notice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baitwall_control::daemon::{self, Notice, Settings};
use baitwall_dataplane::config::Config;
use baitwall_dataplane::runtime::RegionConfig;
use baitwall_dataplane::synth::{self, Endpoint, Flags};

const T0: u64 = 1_767_226_200 * 1_000_000_000;

fn main() {
    let bites: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let text = format!(
        "[workers]\ncores = [0, 1]\npin = false\nidle = \"adaptive\"\n[port]\nbackend = \"pcap\"\nrx = \"unused\"\n[flows]\ncapacity = 4096\n[deception]\nprotected = [\"198.51.100.0/24\"]\ndark_routes = [\"198.51.100.0/24\"]\nlearning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1m\"\nsecret = \"{}\"\n[deception.rate_limit]\nper_decoy = 1000000\nper_decoy_burst = 1000000\nper_prober = 1000000\nper_prober_burst = 1000000\n",
        "ef".repeat(32)
    );
    let mut rt = Config::parse(&text, "t").unwrap().runtime();
    rt.region = Some(RegionConfig {
        path: region.clone(),
        slots: 4096,
        hold: None,
    });
    let (dp, nic) = baitwall_dataplane::testbed::start_mem(&rt, T0).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let applied: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let control = {
        let stop = stop.clone();
        let applied = applied.clone();
        let settings = Settings::new(baitwall_control::config::ControlConfig {
            region,
            database: dir.path().join("state.db"),
            socket: baitwall_control::config::SocketSection {
                path: std::path::PathBuf::new(),
                ..Default::default()
            },
            ..Default::default()
        });
        std::thread::spawn(move || {
            daemon::run(&settings, &stop, |n| {
                if let Notice::Applied(g) = n {
                    applied.lock().unwrap().push((g, Instant::now()));
                }
            })
            .unwrap();
        })
    };
    // The decoy: any dark address with port 80 open answers the SYN.
    let decoy = (20..250u8)
        .map(|last| Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 51, 100, last), 80))
        .find(|d| {
            let probe = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 1), 1);
            nic.inject(&synth::tcp(&probe, d, Flags::SYN, 1, 0, &[]), T0)
                .unwrap();
            let mut syn_ack = false;
            while !nic.is_quiescent() {
                nic.collect(|_, f, _| syn_ack = f.get(47).is_some_and(|b| b & 0x12 == 0x12));
            }
            syn_ack
        })
        .unwrap();
    // Wait for the attach resync.
    while applied.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut latencies = Vec::new();
    for i in 0..bites {
        let worm = Endpoint::new([2; 6], Ipv4Addr::from(0x0a00_0000 + i), 40000);
        nic.inject(&synth::tcp(&worm, &decoy, Flags::SYN, 9, 0, &[]), T0)
            .unwrap();
        let mut isn = None;
        while isn.is_none() {
            nic.collect(|_, f, _| {
                isn = f
                    .get(38..42)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            });
        }
        let seen = applied.lock().unwrap().len();
        let biting = synth::tcp(
            &worm,
            &decoy,
            Flags::PSH_ACK,
            10,
            isn.unwrap().wrapping_add(1),
            b"x",
        );
        let t0 = Instant::now();
        nic.inject(&biting, T0).unwrap();
        let done = loop {
            nic.collect(|_, _, _| {});
            if let Some(&(_, at)) = applied.lock().unwrap().get(seen) {
                break at;
            }
            std::hint::spin_loop();
        };
        latencies.push(done.duration_since(t0));
    }
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "cross-worker latch over {} bites: median {:?}, p90 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
}
