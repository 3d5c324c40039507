//! Control with real workers: a bite seen by one worker becomes a stored
//! block in force on every worker, and survives a restart of both sides.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baitwall_control::config::{ControlConfig, SocketSection};
use baitwall_control::daemon::{self, Notice, Settings};
use baitwall_control::policy::Policy;
use baitwall_control::store::Store;
use baitwall_dataplane::io::soft::SoftNic;
use baitwall_dataplane::runtime::Dataplane;

mod common;
use common::{bite, through, worm_traffic};

fn start_dataplane(region: &Path) -> (Dataplane, SoftNic) {
    common::start_dataplane(region, 0)
}

type Notices = Arc<Mutex<Vec<Notice>>>;

/// Control for a test folder: its region and database there, no socket.
fn settings(dir: &Path, policy: Policy) -> Settings {
    Settings::new(ControlConfig {
        region: dir.join("bw.region"),
        database: dir.join("state.db"),
        policy,
        socket: SocketSection {
            path: PathBuf::new(),
            ..SocketSection::default()
        },
        ..ControlConfig::default()
    })
}

fn run_control(settings: Settings) -> (Arc<AtomicBool>, Notices, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let notices: Notices = Arc::new(Mutex::new(Vec::new()));
    let handle = {
        let stop = stop.clone();
        let notices = notices.clone();
        std::thread::spawn(move || {
            daemon::run(&settings, &stop, |n| notices.lock().unwrap().push(n)).unwrap();
        })
    };
    (stop, notices, handle)
}

/// Waits for a notice `f` accepts; returns the first such.
fn wait_for(notices: &Mutex<Vec<Notice>>, what: &str, f: impl Fn(&Notice) -> bool) -> Notice {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(n) = notices.lock().unwrap().iter().find(|n| f(n)) {
            return n.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            notices.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn worm() -> [u8; 16] {
    Ipv4Addr::new(192, 0, 2, 66).to_ipv6_mapped().octets()
}

#[test]
fn a_bite_on_one_worker_is_stored_and_enforced_everywhere_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    // Control first: it waits for the dataplane.
    let (stop, notices, control) = run_control(settings.clone());
    let (dp, nic) = start_dataplane(&region);
    wait_for(&notices, "attach", |n| {
        matches!(n, Notice::Attached { blocks: 0, .. })
    });
    assert_eq!(
        through(&nic, &worm_traffic()),
        64,
        "not blocked before the bite"
    );

    // This test has no run loop spreading latches in-process: only control
    // can carry the block to the worker that did not see the bite.
    bite(&nic);
    wait_for(&notices, "the block", |n| {
        matches!(n, Notice::Blocked { .. })
    });
    wait_for(
        &notices,
        "every worker applying it",
        |n| matches!(n, Notice::Applied(g) if *g >= 2),
    );
    assert_eq!(through(&nic, &worm_traffic()), 0, "blocked on both workers");
    let expires = Store::open(&settings.config.database)
        .unwrap()
        .block(&worm(), 128)
        .unwrap()
        .unwrap()
        .expires;
    assert!(expires > 0);

    // Stop both. A new dataplane (new region, new instance) and a new
    // control: the block is back before any bite, with its original expiry.
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
    let (dp, nic) = start_dataplane(&region);
    let (stop, notices, control) = run_control(settings.clone());
    wait_for(&notices, "resync", |n| {
        matches!(n, Notice::Attached { blocks: 1, .. })
    });
    wait_for(&notices, "resync applied", |n| {
        matches!(n, Notice::Applied(_))
    });
    assert_eq!(
        through(&nic, &worm_traffic()),
        0,
        "still blocked after both restarted"
    );
    let again = Store::open(&settings.config.database)
        .unwrap()
        .block(&worm(), 128)
        .unwrap()
        .unwrap();
    assert_eq!(again.expires, expires, "the ban clock was not reset");
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

#[test]
fn a_dataplane_that_stops_ends_its_session_and_the_next_one_is_attached() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    let (stop, notices, control) = run_control(settings);
    let (dp, _nic) = start_dataplane(&region);
    let first = wait_for(&notices, "attach", |n| matches!(n, Notice::Attached { .. }));
    let Notice::Attached { instance, .. } = first else {
        unreachable!()
    };
    // A clean stop closes the region: control must not go on as if the
    // dataplane were there (its status would say attached, its pushes
    // would land in rings nobody reads).
    dp.stop();
    wait_for(
        &notices,
        "the session to end",
        |n| matches!(n, Notice::Detached { instance: i } if *i == instance),
    );
    let (dp, _nic) = start_dataplane(&region);
    wait_for(
        &notices,
        "the next attach",
        |n| matches!(n, Notice::Attached { instance: i, .. } if *i != instance),
    );
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

#[test]
fn controls_allowlist_wins_over_a_workers_latch() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(
        dir.path(),
        Policy::parse("allow = [\"192.0.2.64/30\"]\n", "p").unwrap(),
    );
    let (stop, notices, control) = run_control(settings.clone());
    let (dp, nic) = start_dataplane(&region);
    wait_for(&notices, "resync", |n| matches!(n, Notice::Applied(_)));
    bite(&nic);
    // The biting worker latched the source, but the allow entry control
    // pushed at resync covers it: its traffic flows, and nothing is stored.
    assert_eq!(through(&nic, &worm_traffic()), 64);
    assert!(
        !notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n, Notice::Blocked { .. }))
    );
    assert!(
        Store::open(&settings.config.database)
            .unwrap()
            .block(&worm(), 128)
            .unwrap()
            .is_none()
    );
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

#[test]
fn a_control_restart_against_the_same_workers_resends_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    let (stop, notices, control) = run_control(settings.clone());
    let (dp, nic) = start_dataplane(&region);
    wait_for(&notices, "attach", |n| {
        matches!(n, Notice::Attached { delta: false, .. })
    });
    bite(&nic);
    wait_for(
        &notices,
        "the block applied",
        |n| matches!(n, Notice::Applied(g) if *g >= 2),
    );
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    // Same dataplane, new control: the workers hold generation 2 already.
    let (stop, notices, control) = run_control(settings.clone());
    wait_for(&notices, "delta resync", |n| {
        matches!(
            n,
            Notice::Attached {
                delta: true,
                blocks: 0,
                ..
            }
        )
    });
    wait_for(&notices, "resync applied", |n| {
        matches!(n, Notice::Applied(_))
    });
    assert_eq!(
        through(&nic, &worm_traffic()),
        0,
        "still blocked on both workers"
    );
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

/// A dataplane protecting 2001:db8:100::/64 on the region `region`, with
/// `deception` added to its `[deception]` table.
fn start_v6_dataplane(region: &Path, deception: &str) -> (Dataplane, SoftNic) {
    let text = format!(
        "[workers]\ncores = [0, 1]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"unused\"\n\
         [flows]\ncapacity = 4096\n[deception]\nprotected = [\"2001:db8:100::/64\"]\n\
         dark_routes = [\"2001:db8:100::/64\"]\n{deception}\
         learning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1m\"\nsecret = \"{}\"\n",
        "ef".repeat(32)
    );
    let mut rt = baitwall_dataplane::config::Config::parse(&text, "t")
        .unwrap()
        .runtime();
    rt.region = Some(baitwall_dataplane::runtime::RegionConfig {
        path: region.to_owned(),
        slots: 1024,
        hold: None,
    });
    baitwall_dataplane::testbed::start_mem(&rt, common::T0).unwrap()
}

#[test]
fn a_block_never_covers_the_dataplanes_allowlist() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    let (stop, notices, control) = run_control(settings.clone());
    // The dataplane allowlists one address of the worm's /64.
    let (dp, nic) = start_v6_dataplane(&region, "allow = [\"2001:db8:66::200\"]\n");
    wait_for(&notices, "resync", |n| matches!(n, Notice::Applied(_)));
    // Control took the dataplane's allow entry from the region.
    let store = Store::open(&settings.config.database).unwrap();
    let allowed: std::net::Ipv6Addr = "2001:db8:66::200".parse().unwrap();
    assert_eq!(
        store.allows_with_reason("dataplane").unwrap(),
        vec![(allowed.octets(), 128)]
    );
    // The worm bites: its /64 would cover the allowlisted neighbour, so
    // control stores (and exports) the worm's own address only.
    let worm_ip: std::net::Ipv6Addr = "2001:db8:66::66".parse().unwrap();
    let worm = baitwall_dataplane::synth::Endpoint::new([2; 6], worm_ip, 40000);
    let decoys = (0x20..0x80u16).map(|i| {
        std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, i))
    });
    baitwall_dataplane::testbed::bite_a_decoy(&nic, &worm, decoys, common::T0)
        .expect("an IPv6 decoy with port 80 open");
    wait_for(&notices, "the block", |n| {
        matches!(n, Notice::Blocked { .. })
    });
    let store = Store::open(&settings.config.database).unwrap();
    let blocks: Vec<_> = store
        .active_blocks(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as u32,
        )
        .unwrap()
        .into_iter()
        .map(|b| (b.net, b.len))
        .collect();
    assert_eq!(
        blocks,
        vec![(worm_ip.octets(), 128)],
        "narrowed to the biter"
    );
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

/// A dataplane whose 198.51.101.0/24 is a LAN behind the router
/// 198.51.101.1: addresses are claimed at the first unanswered request
/// (claim_after 0 s), its clock at `now_ns`.
fn start_lan_dataplane(region: &Path, now_ns: u64) -> (Dataplane, SoftNic) {
    let text = format!(
        "[workers]\ncores = [0, 1]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"unused\"\n\
         [flows]\ncapacity = 4096\n[deception]\nprotected = [\"198.51.101.0/24\"]\n\
         gateways = [{{ address = \"198.51.101.1\" }}]\nclaim_after = \"0s\"\n\
         learning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1h\"\nsecret = \"{}\"\n",
        "ef".repeat(32)
    );
    let mut rt = baitwall_dataplane::config::Config::parse(&text, "t")
        .unwrap()
        .runtime();
    rt.region = Some(baitwall_dataplane::runtime::RegionConfig {
        path: region.to_owned(),
        slots: 1024,
        hold: None,
    });
    baitwall_dataplane::testbed::start_mem(&rt, now_ns).unwrap()
}

/// True when the router's request for `target` was answered by a decoy.
fn claimed(nic: &SoftNic, target: Ipv4Addr, now_ns: u64) -> bool {
    let ask = baitwall_dataplane::synth::arp(
        [2, 0, 0, 0, 0, 0xfe],
        Ipv4Addr::new(198, 51, 101, 1),
        [0; 6],
        target,
        false,
    );
    baitwall_dataplane::testbed::exchange(nic, &[ask], now_ns)
        .iter()
        .any(|f| f.get(20..22) == Some(&[0, 2]))
}

#[test]
fn liveness_survives_a_dataplane_restart() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    let (stop, notices, control) = run_control(settings.clone());
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let (dp, nic) = start_lan_dataplane(&region, now_ns);
    let Notice::Attached { instance, .. } =
        wait_for(&notices, "attach", |n| matches!(n, Notice::Attached { .. }))
    else {
        unreachable!()
    };
    wait_for(&notices, "resync", |n| matches!(n, Notice::Applied(_)));
    // A quiet server speaks once (an answer to some client), from inside.
    let server = baitwall_dataplane::synth::Endpoint::new(
        [2, 0, 0, 0, 1, 40],
        Ipv4Addr::new(198, 51, 101, 40),
        80,
    );
    let client = baitwall_dataplane::synth::Endpoint::new(
        [2, 0, 0, 0, 0, 0xfe],
        Ipv4Addr::new(203, 0, 113, 9),
        40000,
    );
    let syn_ack = baitwall_dataplane::synth::tcp(
        &server,
        &client,
        baitwall_dataplane::synth::Flags::SYN_ACK,
        1,
        2,
        &[],
    );
    baitwall_dataplane::testbed::exchange(&nic, &[syn_ack], now_ns);
    let deadline = Instant::now() + Duration::from_secs(20);
    let server_key = Ipv4Addr::new(198, 51, 101, 40).to_ipv6_mapped().octets();
    while !Store::open(&settings.config.database)
        .unwrap()
        .live_hosts(0, 10)
        .unwrap()
        .iter()
        .any(|(a, _)| *a == server_key)
    {
        assert!(Instant::now() < deadline, "control never stored the host");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A new dataplane knows nothing by itself; control restores the host,
    // so the router's request for it is left to it, while a never-seen
    // neighbour is claimed at once.
    dp.stop();
    let (dp, nic) = start_lan_dataplane(&region, now_ns + 1_000_000_000);
    wait_for(
        &notices,
        "the second attach",
        |n| matches!(n, Notice::Attached { instance: i, delta: false, .. } if *i != instance),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let applied = |n: &Notice| matches!(n, Notice::Applied(_));
    while notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| applied(n))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the resync was never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    let later = now_ns + 2_000_000_000;
    assert!(
        !claimed(&nic, Ipv4Addr::new(198, 51, 101, 40), later),
        "the server was claimed"
    );
    assert!(
        claimed(&nic, Ipv4Addr::new(198, 51, 101, 41), later),
        "a dark neighbour is claimed"
    );
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

/// Waits until `f` holds, checking every millisecond for up to 10 s;
/// returns how long it took.
fn until(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

/// A latch control does not keep (the policy only records the kind, or the
/// store is full) is lifted from every worker at once: the worker's block
/// was provisional, and the worm's traffic flows again without waiting for
/// the provisional minute to pass (the workers' clock never moves here).
#[test]
fn a_latch_control_does_not_keep_is_lifted_from_every_worker() {
    for (policy, why) in [
        (
            "[kinds]\ndata = { action = \"record\" }\nport = { action = \"record\" }\n",
            "policy",
        ),
        ("max_blocks = 0\n", "max_blocks"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let region = dir.path().join("bw.region");
        let settings = settings(dir.path(), Policy::parse(policy, "p").unwrap());
        let (stop, notices, control) = run_control(settings.clone());
        let (dp, nic) = start_dataplane(&region);
        wait_for(&notices, "resync", |n| matches!(n, Notice::Applied(_)));
        bite(&nic);
        let lifted = wait_for(&notices, "the lift", |n| matches!(n, Notice::Lifted { .. }));
        assert_eq!(
            lifted,
            Notice::Lifted {
                net: worm(),
                len: 128,
                why
            }
        );
        let took = until("the worm's traffic to flow again", || {
            through(&nic, &worm_traffic()) == 64
        });
        println!("{why}: the latch was lifted on every worker within {took:?} of the lift");
        stop.store(true, Ordering::Relaxed);
        control.join().unwrap();
        let report = dp.stop();
        // The worker did latch (provisionally) before control lifted it.
        assert!(report.snapshot.total.latched >= 1, "{policy}");
        assert!(
            Store::open(&settings.config.database)
                .unwrap()
                .block(&worm(), 128)
                .unwrap()
                .is_none()
        );
    }
}

/// A latch control keeps takes control's expiry: it outlives the
/// provisional minute, and ends when control's block does, by the wall
/// clock.
#[test]
fn a_confirmed_latch_takes_controls_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    let (stop, notices, control) = run_control(settings.clone());
    let clock = baitwall_dataplane::clock::ManualClock::new(common::T0);
    let (dp, nic) = common::start_dataplane_on(&region, 0, clock.clock());
    wait_for(&notices, "resync", |n| matches!(n, Notice::Applied(_)));
    bite(&nic);
    let Notice::Blocked { block, .. } = wait_for(&notices, "the block", |n| {
        matches!(n, Notice::Blocked { .. })
    }) else {
        unreachable!()
    };
    until("every worker applying it", || {
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n, Notice::Applied(g) if *g >= 2))
    });
    assert_eq!(through(&nic, &worm_traffic()), 0);
    // Past the provisional minute: still blocked (control's hour holds).
    clock.advance_ns(61_000_000_000);
    until("the workers to see the minute pass", || {
        through(&nic, &worm_traffic()) == 0
    });
    // The wall clock reaches control's expiry: the block is over.
    let to_expiry = i64::from(block.expires) - (common::T0 / 1_000_000_000) as i64 - 61;
    clock.step_wall_ns((to_expiry + 1) * 1_000_000_000);
    clock.advance_ns(1_100_000_000);
    until("the block to end by the wall clock", || {
        through(&nic, &worm_traffic()) == 64
    });
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

/// The IPv6 block length is the dataplane's (`block_ipv6_prefix`); control
/// learns it from the latch and stores that prefix.
#[test]
fn control_stores_the_prefix_the_worker_latched() {
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    let (stop, notices, control) = run_control(settings.clone());
    let (dp, nic) = start_v6_dataplane(&region, "block_ipv6_prefix = 56\n");
    wait_for(&notices, "resync", |n| matches!(n, Notice::Applied(_)));
    let worm_ip: std::net::Ipv6Addr = "2001:db8:1:2::66".parse().unwrap();
    let worm = baitwall_dataplane::synth::Endpoint::new([2; 6], worm_ip, 40000);
    let decoys = (0x20..0x80u16).map(|i| {
        std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, i))
    });
    baitwall_dataplane::testbed::bite_a_decoy(&nic, &worm, decoys, common::T0)
        .expect("an IPv6 decoy with port 80 open");
    let Notice::Blocked { block, .. } = wait_for(&notices, "the block", |n| {
        matches!(n, Notice::Blocked { .. })
    }) else {
        unreachable!()
    };
    let slash56: std::net::Ipv6Addr = "2001:db8:1::".parse().unwrap();
    assert_eq!((block.net, block.len), (slash56.octets(), 56));
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

/// A dataplane that stops cleanly publishes its workers' last events and
/// closes its region; control reads every record left in the rings before
/// it lets them go. Here the "dataplane" is a region the test drives: it
/// publishes more bites than control reads in a round (4,096 a worker)
/// and closes the region at once, so control notices the close with most
/// of them unread.
#[test]
fn the_events_of_a_stopped_dataplane_are_all_read() {
    use baitwall_channel::message::{NO_PERSONA, code, kind};
    use baitwall_channel::{Geometry, Region, UpEvent};
    const BITES: u32 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bw.region");
    let settings = settings(dir.path(), Policy::default());
    let region = Region::create(
        &path,
        Geometry {
            workers: 1,
            slots: 1 << 15,
        },
        7,
    )
    .unwrap();
    let mut ends = region.worker_ends(0).unwrap();
    let (stop, notices, control) = run_control(settings.clone());
    wait_for(&notices, "attach", |n| matches!(n, Notice::Attached { .. }));
    // Alerts (no latch, so control pushes nothing down a ring no worker
    // reads): each is stored in the event history.
    for i in 0..BITES {
        let ev = UpEvent {
            kind: kind::BITE,
            bite: code::BITE_DATA,
            action: code::ACTION_ALERT,
            allowlisted: false,
            strong: true,
            latched_len: 0,
            worker: 0,
            time_ns: common::T0 + u64::from(i),
            src: Ipv4Addr::from(0x0a00_0000 | i).to_ipv6_mapped().octets(),
            dst: Ipv4Addr::new(198, 51, 100, 20).to_ipv6_mapped().octets(),
            src_port: 40000,
            dst_port: 80,
            decoys: 0,
            persona: NO_PERSONA,
        };
        assert!(ends.events.push(&ev.encode()));
    }
    ends.events.publish();
    region.close();
    wait_for(&notices, "the session to end", |n| {
        matches!(n, Notice::Detached { instance: 7 })
    });
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    let stored = Store::open(&settings.config.database)
        .unwrap()
        .event_count()
        .unwrap();
    println!("{stored} of {BITES} bites stored");
    assert_eq!(stored, u64::from(BITES));
}
