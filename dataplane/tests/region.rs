//! The workers on the control region: rules pushed down a worker's ring are
//! in force after its generation acknowledgement, and bites come up the
//! events ring as records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use baitwall_channel::message::kind;
use baitwall_channel::{Region, Rule, UpEvent};
use baitwall_dataplane::config::Config;
use baitwall_dataplane::io::soft::SoftNic;
use baitwall_dataplane::runtime::RegionConfig;
use baitwall_dataplane::synth::{self, Endpoint, Flags};

const T0: u64 = 1_767_226_200 * 1_000_000_000;

fn config(region: &std::path::Path) -> baitwall_dataplane::runtime::RuntimeConfig {
    let text = r#"
[workers]
cores = [0, 1]
pin = false
[port]
backend = "pcap"
rx = "unused.pcap"
[flows]
capacity = 4096
[deception]
protected = ["198.51.100.0/24"]
dark_routes = ["198.51.100.0/24"]
learning = "0s"
hold_off = "0s"
live_idle = "1m"
secret = "SECRET"
"#
    .replace("SECRET", &"cd".repeat(32));
    let mut rt = Config::parse(&text, "test").unwrap().runtime();
    rt.region = Some(RegionConfig {
        path: region.to_owned(),
        slots: 1024,
        hold: None,
    });
    rt
}

fn send_and_collect(nic: &SoftNic, frames: &[Vec<u8>]) -> usize {
    for f in frames {
        while nic.inject(f, T0).is_err() {
            nic.collect(|_, _, _| {});
            std::thread::yield_now();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = 0;
    while !nic.is_quiescent() {
        out += nic.collect(|_, _, _| {});
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    out
}

#[test]
fn rules_down_the_rings_and_bites_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bw.region");
    let (dp, nic) = baitwall_dataplane::testbed::start_mem(&config(&path), T0).unwrap();
    let control = Region::attach(&path).unwrap();
    assert_eq!(control.geometry().workers, 2);
    let mut ends: Vec<_> = (0..2).map(|w| control.control_ends(w).unwrap()).collect();

    // Block 203.0.113.0/24 on every worker, then a generation marker.
    let net = Ipv4Addr::new(203, 0, 113, 0).to_ipv6_mapped().octets();
    for e in &mut ends {
        assert!(
            e.rules.push(
                &Rule::Block {
                    net,
                    len: 120,
                    expiry: 0
                }
                .encode()
            )
        );
        assert!(e.rules.push(&Rule::Generation(1).encode()));
        e.rules.publish();
    }
    // Wait for both workers to acknowledge generation 1.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut acked = [false; 2];
    while !acked.iter().all(|a| *a) {
        for (w, e) in ends.iter_mut().enumerate() {
            while let Some(r) = e.events.pop() {
                let ev = UpEvent::decode(&r).unwrap();
                if ev.kind == kind::APPLIED && ev.time_ns >= 1 {
                    acked[w] = true;
                }
            }
            e.events.release();
        }
        assert!(Instant::now() < deadline, "generation not acknowledged");
        std::thread::sleep(Duration::from_millis(1));
    }

    // Traffic from the blocked /24 is dropped on every worker; others flow.
    let live = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(192, 0, 2, 10), 80);
    let blocked: Vec<_> = (0..200u16)
        .map(|i| {
            synth::tcp(
                &Endpoint::new([2; 6], Ipv4Addr::new(203, 0, 113, 7), 1000 + i),
                &live,
                Flags::SYN,
                1,
                0,
                &[],
            )
        })
        .collect();
    let clean: Vec<_> = (0..200u16)
        .map(|i| {
            synth::tcp(
                &Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 77), 1000 + i),
                &live,
                Flags::SYN,
                1,
                0,
                &[],
            )
        })
        .collect();
    assert_eq!(send_and_collect(&nic, &blocked), 0);
    assert_eq!(send_and_collect(&nic, &clean), 200);

    // A bite goes up its worker's events ring.
    let decoy = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 51, 100, 40), 0);
    let worm = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 66), 40000);
    let mut open_port = None;
    for port in [22u16, 80, 135, 443] {
        let mut f = synth::tcp(
            &worm.port(40000 + port),
            &decoy.port(port),
            Flags::SYN,
            9,
            0,
            &[],
        );
        nic.inject(&f, T0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut reply = None;
        while reply.is_none() {
            nic.collect(|_, frame, _| reply = Some(frame.to_vec()));
            assert!(Instant::now() < deadline);
        }
        f = reply.unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        if let Some(etherparse::TransportSlice::Tcp(t)) = p.transport
            && t.syn()
        {
            open_port = Some((port, t.sequence_number()));
            break;
        }
    }
    let (port, isn) = open_port.expect("the decoy has one of these ports open");
    let ack = synth::tcp(
        &worm.port(40000 + port),
        &decoy.port(port),
        Flags::PSH_ACK,
        10,
        isn.wrapping_add(1),
        b"x",
    );
    send_and_collect(&nic, &[ack]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bite = None;
    while bite.is_none() {
        for e in &mut ends {
            while let Some(r) = e.events.pop() {
                let ev = UpEvent::decode(&r).unwrap();
                if ev.kind == kind::BITE {
                    bite = Some(ev);
                }
            }
            e.events.release();
        }
        assert!(Instant::now() < deadline, "no bite came up");
    }
    let bite = bite.unwrap();
    assert_eq!(
        bite.src,
        Ipv4Addr::new(192, 0, 2, 66).to_ipv6_mapped().octets()
    );
    assert_eq!(bite.dst_port, port);
    let report = dp.stop();
    assert_eq!(report.snapshot.total.rules_applied, 2);
    assert_eq!(report.snapshot.total.generation, 1);
    assert!(
        report
            .snapshot
            .total
            .drops
            .get("blocked")
            .copied()
            .unwrap_or(0)
            >= 200
    );
}

#[test]
fn a_fail_closed_start_holds_traffic_until_the_first_resync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bw.region");
    let mut rt = config(&path);
    if let Some(r) = rt.region.as_mut() {
        r.hold = Some(Duration::from_secs(600));
    }
    let (dp, nic) = baitwall_dataplane::testbed::start_mem(&rt, T0).unwrap();
    let live = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(192, 0, 2, 10), 80);
    let frames: Vec<_> = (0..100u16)
        .map(|i| {
            synth::tcp(
                &Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 77), 1000 + i),
                &live,
                Flags::SYN,
                1,
                0,
                &[],
            )
        })
        .collect();
    assert_eq!(
        send_and_collect(&nic, &frames),
        0,
        "held before control's resync"
    );
    // Control resyncs: an empty state, then the generation marker.
    let control = Region::attach(&path).unwrap();
    for w in 0..2 {
        let mut e = control.control_ends(w).unwrap();
        assert!(e.rules.push(&Rule::Generation(1).encode()));
        e.rules.publish();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while dp.stats().workers.iter().any(|w| w.generation < 1) {
        assert!(Instant::now() < deadline, "resync not applied");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        send_and_collect(&nic, &frames),
        100,
        "open after the resync"
    );
    let report = dp.stop();
    assert_eq!(report.snapshot.total.drops.get("holding"), Some(&100));
    assert_eq!(report.snapshot.total.hold_timeouts, 0);
}

/// A bite that latched while control's ring was full reaches control once
/// control reads again: the worker keeps it and retries (nothing lost).
#[test]
fn a_latched_bite_waits_for_a_full_ring_and_is_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bw.region");
    let mut rt = config(&path);
    // One worker, a 16-record ring, every mark reported: the ring fills
    // with sampled marks while control does not read.
    rt.cores = vec![None];
    if let Some(r) = rt.region.as_mut() {
        r.slots = 16;
    }
    let (dp, nic) = baitwall_dataplane::testbed::start_mem(&rt, T0).unwrap();
    let control = Region::attach(&path).unwrap();
    let mut ends = control.control_ends(0).unwrap();
    // Fill the ring with handshake-bite alerts from many /24s (each its own
    // budget), so it is full when the worm latches.
    let decoys = (20..250u8).map(|l| Ipv4Addr::new(198, 51, 100, l).into());
    let mut fillers = 0;
    for (i, d) in decoys.clone().take(40).enumerate() {
        let prober = Endpoint::new([2; 6], Ipv4Addr::new(10, i as u8, 0, 1), 30000);
        if baitwall_dataplane::testbed::handshake_a_decoy(&nic, &prober, [d], T0).is_some() {
            fillers += 1;
        }
    }
    assert!(fillers >= 16, "{fillers} handshakes");
    // The worm bites: its latch event finds the ring full.
    let worm = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 66), 40000);
    baitwall_dataplane::testbed::bite_a_decoy(&nic, &worm, decoys, T0).expect("a decoy");
    let waiting =
        |dp: &baitwall_dataplane::runtime::Dataplane| dp.stats().total.latch_events_waiting;
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting(&dp) == 0 {
        assert!(Instant::now() < deadline, "the latch never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Control reads again: the latched bite arrives.
    let mut latched = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while latched.is_none() {
        while let Some(r) = ends.events.pop() {
            if let Ok(ev) = UpEvent::decode(&r)
                && ev.kind == kind::BITE
                && ev.action == baitwall_channel::message::code::ACTION_BLOCK
            {
                latched = Some(ev);
            }
        }
        ends.events.release();
        // An idle worker retries at its next maintenance turn.
        assert!(Instant::now() < deadline, "the latched bite never came up");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        latched.unwrap().src,
        Ipv4Addr::new(192, 0, 2, 66).to_ipv6_mapped().octets()
    );
    let stats = dp.stop().snapshot.total;
    assert_eq!(stats.latch_events_lost, 0);
}

/// Pushes `rules` then the marker `generation` to every worker, and waits
/// until each has acknowledged it.
fn push_and_wait(
    ends: &mut [baitwall_channel::region::ControlEnds],
    rules: &[Rule],
    generation: u64,
) {
    for e in ends.iter_mut() {
        for rule in rules {
            assert!(e.rules.push(&rule.encode()));
        }
        assert!(e.rules.push(&Rule::Generation(generation).encode()));
        e.rules.publish();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut acked = vec![false; ends.len()];
    while !acked.iter().all(|a| *a) {
        for (w, e) in ends.iter_mut().enumerate() {
            while let Some(r) = e.events.pop() {
                let ev = UpEvent::decode(&r).unwrap();
                if ev.kind == kind::APPLIED && ev.time_ns >= generation {
                    acked[w] = true;
                }
            }
            e.events.release();
        }
        assert!(
            Instant::now() < deadline,
            "generation {generation} not acknowledged"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Expiries are Unix times from control's wall clock; the workers compare
/// them with the wall clock, not with the wall time they read at start, so
/// an NTP step (here on an injected clock) moves every expiry check with it.
#[test]
fn block_expiries_follow_wall_clock_steps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bw.region");
    let clock = baitwall_dataplane::clock::ManualClock::new(T0);
    let (dp, nic) =
        baitwall_dataplane::testbed::start_mem_on(&config(&path), clock.clock()).unwrap();
    let control = Region::attach(&path).unwrap();
    let mut ends: Vec<_> = (0..2).map(|w| control.control_ends(w).unwrap()).collect();
    let live = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(192, 0, 2, 10), 80);
    let from_blocked = |n: u16| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let src = Endpoint::new([2; 6], Ipv4Addr::new(203, 0, 113, 7), 1000 + i);
                synth::tcp(&src, &live, Flags::SYN, 1, 0, &[])
            })
            .collect()
    };
    let net = Ipv4Addr::new(203, 0, 113, 0).to_ipv6_mapped().octets();
    // The wall clock steps back an hour after the workers started; a
    // second later control blocks the /24 for a minute by its wall clock.
    clock.step_wall_ns(-3_600_000_000_000);
    clock.advance_ns(1_100_000_000);
    let wall_s = ((T0 + 1_100_000_000) / 1_000_000_000 - 3_600) as u32;
    push_and_wait(
        &mut ends,
        &[Rule::Block {
            net,
            len: 120,
            expiry: wall_s + 60,
        }],
        1,
    );
    assert_eq!(
        send_and_collect(&nic, &from_blocked(50)),
        0,
        "the block holds"
    );
    // Half a minute later it still holds.
    clock.advance_ns(30_000_000_000);
    push_and_wait(&mut ends, &[], 2);
    assert_eq!(
        send_and_collect(&nic, &from_blocked(50)),
        0,
        "the block still holds"
    );
    // The wall clock steps forward past the expiry: the block is over.
    clock.step_wall_ns(120_000_000_000);
    clock.advance_ns(1_100_000_000);
    push_and_wait(&mut ends, &[], 3);
    assert_eq!(
        send_and_collect(&nic, &from_blocked(50)),
        50,
        "the block expired"
    );
    dp.stop();
}
