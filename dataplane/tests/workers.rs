//! Workers over the `mem` port: RSS keeps both directions of a flow on one
//! worker, and every received frame is either transmitted or dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use baitwall_dataplane::clock::ManualClock;
use baitwall_dataplane::engine::EngineConfig;
use baitwall_dataplane::engine::flow::FlowState;
use baitwall_dataplane::io::mem::MemPort;
use baitwall_dataplane::io::soft::{SoftNic, SoftNicConfig};
use baitwall_dataplane::runtime::{Dataplane, RuntimeConfig};
use baitwall_dataplane::synth::{self, Endpoint, Flags};
use baitwall_dataplane::worker::{ControlMsg, IdlePolicy};

/// A tiny deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn runtime(workers: usize, capacity: usize) -> RuntimeConfig {
    RuntimeConfig {
        // Unpinned: tests share the machine's two cores with the test harness.
        cores: vec![None; workers],
        burst: 32,
        idle: IdlePolicy::Adaptive,
        engine: EngineConfig {
            flow_capacity: capacity,
            ..EngineConfig::default()
        },
        region: None,
        capture: None,
    }
}

/// Injects every frame (waiting when rings are full) and collects what comes
/// out, recording the queue each frame left on.
fn pump(nic: &SoftNic, frames: &[Vec<u8>], out: &mut Vec<(usize, Vec<u8>)>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for f in frames {
        loop {
            nic.collect(|q, frame, _| out.push((q, frame.to_vec())));
            if nic.inject(f, 0).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "workers stopped taking frames");
            std::thread::yield_now();
        }
    }
    while !nic.is_quiescent() {
        nic.collect(|q, frame, _| out.push((q, frame.to_vec())));
        assert!(Instant::now() < deadline, "frames stuck in the NIC");
        std::thread::yield_now();
    }
}

#[test]
fn both_directions_of_10000_flows_land_on_one_worker_each() {
    const FLOWS: usize = 10_000;
    let workers = 2;
    let mut port = MemPort::new(SoftNicConfig {
        queues: workers as u16,
        pool_size: 4096,
        ring_size: 1024,
        lossless_tx: true,
    });
    let nic = port.nic();
    let stop = Arc::new(AtomicBool::new(false));
    let clock = ManualClock::new(0);
    let dp = Dataplane::start(&mut port, &runtime(workers, 1 << 16), clock.clock(), stop).unwrap();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut syns = Vec::with_capacity(FLOWS);
    let mut synacks = Vec::with_capacity(FLOWS);
    for _ in 0..FLOWS {
        let r = rng.next();
        let client = Endpoint::new(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::from((r >> 32) as u32 | 0x0a00_0000),
            1024 + (r as u16 % 60000),
        );
        let server = Endpoint::new(
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::from(0xc633_6400 | (r as u32 >> 24)),
            [22, 80, 443, 8080][(r >> 8) as usize % 4],
        );
        syns.push(synth::tcp(&client, &server, Flags::SYN, r as u32, 0, &[]));
        synacks.push(synth::tcp(
            &server,
            &client,
            Flags::SYN_ACK,
            7,
            r as u32 + 1,
            &[],
        ));
    }
    let mut out = Vec::new();
    pump(&nic, &syns, &mut out);
    pump(&nic, &synacks, &mut out);
    let report = dp.stop();

    // Every frame came out, on the queue of the worker that tracked its flow.
    assert_eq!(out.len(), 2 * FLOWS);
    let mut queue_of: HashMap<Vec<u8>, usize> = HashMap::new();
    for (q, frame) in &out {
        queue_of.insert(frame.clone(), *q);
    }
    let mut per_queue = [0usize; 2];
    for (syn, synack) in syns.iter().zip(synacks.iter()) {
        let q = queue_of[syn];
        assert_eq!(
            q, queue_of[synack],
            "the two directions of a flow split across workers"
        );
        per_queue[q] += 1;
    }
    // RSS spreads the flows over both workers.
    assert!(per_queue.iter().all(|&n| n > FLOWS / 4), "{per_queue:?}");

    // Each flow exists once, and it saw both directions: SYN then SYN-ACK.
    let total = &report.snapshot.total;
    assert_eq!(total.flows.created, FLOWS as u64);
    let syn_received: u64 = report
        .workers
        .iter()
        .map(|w| w.flow_states[FlowState::SynReceived as usize])
        .sum();
    assert_eq!(syn_received, FLOWS as u64);
    assert_eq!(total.rx_packets, total.tx_packets + total.dropped);
}

#[test]
fn counters_add_up_with_drops() {
    let mut port = MemPort::new(SoftNicConfig {
        queues: 2,
        pool_size: 1024,
        ring_size: 256,
        lossless_tx: true,
    });
    let nic = port.nic();
    let stop = Arc::new(AtomicBool::new(false));
    let dp = Dataplane::start(
        &mut port,
        &runtime(2, 4096),
        ManualClock::new(0).clock(),
        stop,
    )
    .unwrap();
    let a = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(203, 0, 113, 1), 5000);
    let b = Endpoint::new([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 51, 100, 7), 80);
    let mut frames = Vec::new();
    for i in 0..500u16 {
        let good = synth::tcp(&a.port(5000 + i), &b, Flags::SYN, 1, 0, &[]);
        frames.push(good.clone());
        if i % 10 == 0 {
            let mut bad = good;
            bad[synth::offsets::IPV4_VERSION_IHL] = 0x44; // IHL 4 < 5
            frames.push(bad);
        }
        if i % 25 == 0 {
            frames.push(vec![0u8; 10]); // shorter than an Ethernet header
        }
    }
    let mut out = Vec::new();
    pump(&nic, &frames, &mut out);
    let report = dp.stop();
    let t = &report.snapshot.total;
    assert_eq!(t.rx_packets, frames.len() as u64);
    assert_eq!(t.tx_packets, 500);
    assert_eq!(t.drops.get("bad_header_len"), Some(&50));
    assert_eq!(t.drops.get("truncated"), Some(&20));
    assert_eq!(t.rx_packets, t.tx_packets + t.dropped);
    assert_eq!(out.len(), 500);
    let per_worker_rx: u64 = report.snapshot.workers.iter().map(|w| w.rx_packets).sum();
    assert_eq!(per_worker_rx, t.rx_packets);
}

#[test]
fn barriers_are_acknowledged_and_clear_flows_applies() {
    let mut port = MemPort::new(SoftNicConfig {
        queues: 2,
        pool_size: 256,
        ring_size: 64,
        lossless_tx: true,
    });
    let nic = port.nic();
    let stop = Arc::new(AtomicBool::new(false));
    let mut dp = Dataplane::start(
        &mut port,
        &runtime(2, 1024),
        ManualClock::new(0).clock(),
        stop,
    )
    .unwrap();
    let a = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(203, 0, 113, 1), 5000);
    let b = Endpoint::new([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 51, 100, 7), 80);
    let frames: Vec<_> = (0..40u16)
        .map(|i| synth::tcp(&a.port(6000 + i), &b, Flags::SYN, 1, 0, &[]))
        .collect();
    let mut out = Vec::new();
    pump(&nic, &frames, &mut out);
    let g = dp.broadcast(ControlMsg::ClearFlows);
    assert!(dp.wait_applied(g, Duration::from_secs(10)));
    // Counters are published after the message is applied; wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while dp.stats().total.flows.active != 0 {
        assert!(Instant::now() < deadline, "flows not cleared");
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = dp.stop();
    assert_eq!(report.snapshot.total.flows.created, 40);
    assert_eq!(report.snapshot.total.flows.active, 0);
}

#[test]
fn a_missing_core_is_refused_with_its_number() {
    let mut port = MemPort::new(SoftNicConfig::default());
    let mut cfg = runtime(1, 64);
    cfg.cores = vec![Some(100_000)];
    let err = Dataplane::start(
        &mut port,
        &cfg,
        ManualClock::new(0).clock(),
        Arc::new(AtomicBool::new(false)),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("core 100000 does not exist"),
        "{err}"
    );
}
