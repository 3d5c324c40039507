//! The binding against DPDK's virtual devices, without NIC or hugepages:
//! `net_ring` loops every frame sent back to its receive side. Skips with
//! one line when this build has no DPDK, and fails under CI=true.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baitwall_dpdk::{DpdkError, Eal, EthPort, Mempool, PortQueue};

fn eal() -> Option<&'static Eal> {
    let args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        "128",
        "-l",
        "0",
        "--log-level=lib.eal:error",
        "--vdev=net_ring0",
    ]
    .map(String::from)
    .to_vec();
    match Eal::init(&args) {
        Ok(e) => Some(e),
        Err(DpdkError::NotBuilt) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "DPDK is required under CI=true (.ci/run installs libdpdk-dev)"
            );
            println!("skipping: this build has no DPDK");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn frames_sent_on_a_ring_port_come_back_whole_and_in_order() {
    let Some(eal) = eal() else { return };
    let pool = Mempool::new(eal, "bw_test_pool", 2047, 0).unwrap();
    let id = EthPort::find(eal, "net_ring0").unwrap();
    let port = EthPort::start(eal, id, 1, 256, &pool, &[0x6d; 40]).unwrap();
    let mut queues = port.take_queues();
    assert_eq!(queues.len(), 1, "one queue only");
    assert!(port.take_queues().is_empty(), "queues are handed out once");
    let mut q: PortQueue = queues.pop().unwrap();
    let mut received = Vec::new();
    for round in 0..10u8 {
        let mut out: Vec<_> = (0..32u8)
            .map(|i| {
                let mut m = pool.alloc().unwrap();
                assert!(m.set_len(60));
                m.data_mut().fill(round.wrapping_mul(32).wrapping_add(i));
                m
            })
            .collect();
        while !out.is_empty() {
            q.tx_burst(&mut out);
        }
        while received.len() < usize::from(round + 1) * 32 {
            q.rx_burst(64, |m| received.push(m.data().to_vec()));
        }
    }
    assert_eq!(received.len(), 320);
    for (i, f) in received.iter().enumerate() {
        assert_eq!(f.len(), 60);
        assert!(f.iter().all(|&b| b == i as u8), "frame {i}");
    }
    let stats = port.stats().unwrap();
    assert_eq!((stats.ipackets, stats.opackets), (320, 320));
    // A frame cannot grow past its mbuf.
    let mut m = pool.alloc().unwrap();
    assert!(m.capacity() >= 1518);
    assert!(!m.set_len(m.capacity() + 1));
    // The same EAL again is fine; other arguments are refused.
    assert!(Eal::init(&["--no-pci".to_string()]).is_err());
}
