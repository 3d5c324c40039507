//! The socket on a real veth pair, inside a network namespace this test
//! creates (a thread that unshares its network namespace: the pair, the
//! sockets and the namespace vanish with it). Needs root; without it the
//! tests skip with one line, and fail under CI=true.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use baitwall_afpacket::{Fanout, RingConfig, Socket};

const OURS: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn root_or_skip() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "AF_PACKET tests need root: required under CI=true"
        );
        println!("skipping: AF_PACKET tests need root");
    }
    root
}

/// Runs `f` on a thread in a fresh network namespace holding an up veth
/// pair `bwa` <-> `bwb` with IPv6 off (no router solicitations on the wire).
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        for args in [
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
            "sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
            "ip link add name bwa type veth peer name bwb",
            "ip link set bwa up",
            "ip link set bwb up",
        ] {
            let mut words = args.split(' ');
            let status = Command::new(words.next().unwrap())
                .args(words)
                .status()
                .unwrap();
            assert!(status.success(), "{args}");
        }
        f()
    })
    .join()
    .unwrap()
}

/// An IPv4/UDP frame from us, `sport` varying the flow.
fn frame(sport: u16, seq: u16) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&OURS);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[192, 0, 2, 1]);
    f[30..34].copy_from_slice(&[198, 51, 100, 7]);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f[42..44].copy_from_slice(&seq.to_be_bytes());
    f
}

/// Receives until `want` of our frames arrived (or ten seconds passed).
fn collect(sockets: &mut [Socket], want: usize) -> Vec<Vec<(u16, u16)>> {
    let mut got: Vec<Vec<(u16, u16)>> = vec![Vec::new(); sockets.len()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.iter().map(Vec::len).sum::<usize>() < want && Instant::now() < deadline {
        for (i, s) in sockets.iter_mut().enumerate() {
            s.recv(64, |f| {
                if f.data.len() >= 44 && f.data[6..12] == OURS {
                    let sport = u16::from_be_bytes([f.data[34], f.data[35]]);
                    let seq = u16::from_be_bytes([f.data[42], f.data[43]]);
                    got[i].push((sport, seq));
                }
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    got
}

#[test]
fn frames_cross_the_pair_through_the_rings_in_order() {
    if !root_or_skip() {
        return;
    }
    let (got, stats) = in_netns(|| {
        let config = RingConfig {
            block_size: 1 << 14,
            block_count: 8,
            tx_frames: 64,
            ..RingConfig::default()
        };
        let mut tx = Socket::open("bwa", &config).unwrap();
        let mut rx = Socket::open("bwb", &config).unwrap();
        // More frames than TX slots: send, flush, wait for room.
        let mut sent = 0u16;
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent < 500 && Instant::now() < deadline {
            if tx.send(&frame(1000, sent)) {
                sent += 1;
            } else {
                tx.flush().unwrap();
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        tx.flush().unwrap();
        let got = collect(std::slice::from_mut(&mut rx), 500);
        (got, rx.statistics().unwrap())
    });
    let seqs: Vec<u16> = got[0].iter().map(|&(_, s)| s).collect();
    assert_eq!(seqs, (0..500).collect::<Vec<_>>(), "all, once, in order");
    assert!(stats.packets >= 500 && stats.drops == 0, "{stats:?}");
}

#[test]
fn a_vlan_tag_the_driver_strips_is_reported() {
    if !root_or_skip() {
        return;
    }
    let got = in_netns(|| {
        let config = RingConfig::default();
        let mut tx = Socket::open("bwa", &config).unwrap();
        let mut rx = Socket::open("bwb", &config).unwrap();
        let plain = frame(7, 7);
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
        tagged.extend_from_slice(&plain[12..]);
        assert!(tx.send(&tagged));
        tx.flush().unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.is_empty() && Instant::now() < deadline {
            rx.recv(8, |f| {
                if f.data[6..12] == OURS {
                    seen.push((f.vlan, f.data.to_vec()));
                }
            });
        }
        (seen, plain)
    });
    let (seen, plain) = got;
    let (vlan, data) = &seen[0];
    // Either the tag stayed in the frame, or the kernel took it off and says so.
    match vlan {
        Some((tpid, tci)) => {
            assert_eq!((*tpid, *tci & 0x0fff), (0x8100, 42));
            assert_eq!(data, &plain);
        }
        None => assert_eq!(&data[12..16], &[0x81, 0x00, 0x00, 42]),
    }
}

#[test]
fn a_fanout_group_spreads_flows_and_keeps_each_on_one_socket() {
    if !root_or_skip() {
        return;
    }
    let got = in_netns(|| {
        let first = RingConfig {
            fanout: Some(Fanout::New),
            ..RingConfig::default()
        };
        let mut tx = Socket::open("bwa", &RingConfig::default()).unwrap();
        let leader = Socket::open("bwb", &first).unwrap();
        let id = leader.fanout_group().unwrap();
        let member = RingConfig {
            fanout: Some(Fanout::Join(id)),
            ..RingConfig::default()
        };
        let mut group = vec![leader, Socket::open("bwb", &member).unwrap()];
        // 64 flows, three frames each.
        for round in 0..3u16 {
            for flow in 0..64u16 {
                assert!(tx.send(&frame(2000 + flow, round)));
            }
            tx.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        collect(&mut group, 192)
    });
    assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 192);
    assert!(got.iter().all(|g| !g.is_empty()), "both members get flows");
    let mut owner: HashMap<u16, usize> = HashMap::new();
    for (i, g) in got.iter().enumerate() {
        for (sport, _) in g {
            assert_eq!(*owner.entry(*sport).or_insert(i), i, "flow {sport} split");
        }
    }
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let e = match Socket::open("bw-no-such-if", &RingConfig::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a missing interface"),
    };
    assert!(e.contains("bw-no-such-if"), "{e}");
    let bad = RingConfig {
        block_size: 3000,
        ..RingConfig::default()
    };
    assert!(Socket::open("lo", &bad).is_err());
}
