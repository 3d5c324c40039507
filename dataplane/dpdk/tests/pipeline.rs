//! The dataplane's workers on a DPDK device: `net_pcap` reads a capture
//! and writes what the workers send, through the EAL, a mempool, the
//! device's queues and mbufs (the reply written in place in the mbuf).
//! Without hugepages or a NIC. Skips with one line when this build has no
//! DPDK, and fails under CI=true.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use baitwall_dataplane::clock::Clock;
use baitwall_dataplane::config::{Config, PortPlan};
use baitwall_dataplane::io::dpdk::DpdkPort;
use baitwall_dataplane::runtime::Dataplane;
use baitwall_dataplane::synth::{self, Endpoint, Flags};
use baitwall_dpdk::DpdkError;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

#[test]
fn one_arm_workers_answer_decoys_and_send_nothing_else_through_a_dpdk_device() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.pcap"), dir.path().join("out.pcap"));
    // Ten frames between two outside hosts, then a SYN to a dark address
    // of the protected /24.
    let a = Endpoint::new([2, 0, 0, 0, 0, 0xa], Ipv4Addr::new(192, 0, 2, 1), 40000);
    let b = Endpoint::new([2, 0, 0, 0, 0, 0xb], Ipv4Addr::new(192, 0, 2, 2), 80);
    let mut frames: Vec<Vec<u8>> = (0..10u32)
        .map(|i| synth::tcp(&a, &b, Flags::PSH_ACK, 1 + i, 1, b"hello"))
        .collect();
    let decoy = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 51, 100, 77), 22);
    frames.push(synth::tcp(&a, &decoy, Flags::SYN, 7, 0, &[]));
    let mut w = PcapWriter::new(std::fs::File::create(&input).unwrap()).unwrap();
    for f in &frames {
        w.write_packet(&PcapPacket::new(Duration::ZERO, f.len() as u32, f))
            .unwrap();
    }
    drop(w);

    let text = format!(
        "[workers]\ncores = [0]\npin = false\n\
         [port]\nbackend = \"dpdk\"\ndevice = \"net_pcap0\"\npool_size = 4095\ndescriptors = 256\n\
         eal = [\"--no-huge\", \"--no-pci\", \"--no-shconf\", \"-m\", \"128\", \"-l\", \"0\", \"--log-level=lib.eal:error\", \"--vdev=net_pcap0,rx_pcap={},tx_pcap={}\"]\n\
         [deception]\nprotected = [\"198.51.100.0/24\"]\ndark_routes = [\"198.51.100.0/24\"]\nlearning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1m\"\n",
        input.display(),
        output.display()
    );
    let config = Config::parse(&text, "t").unwrap();
    let PortPlan::Dpdk(plan) = config.port_plan() else {
        panic!("a dpdk plan")
    };
    let mut port = match DpdkPort::open(&plan, 1) {
        Ok(p) => p,
        Err(DpdkError::NotBuilt) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "DPDK is required under CI=true (.ci/run installs libdpdk-dev)"
            );
            println!("skipping: this build has no DPDK");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let dp = Dataplane::start(
        &mut port,
        &config.runtime(),
        Clock::monotonic(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dp.stats().total.rx_packets < frames.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the device never delivered the capture"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = dp.stop();
    // One-arm: the ten frames between outside hosts are already on their
    // way; only the decoy's reply, which the appliance made, is sent.
    assert_eq!(report.snapshot.total.tx_packets, 1);
    assert_eq!(report.snapshot.total.rx_packets, 11);
    // The workers are gone, and with them the device: its output is closed.
    drop(port);
    let mut r = PcapReader::new(std::fs::File::open(&output).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    assert_eq!(out.len(), 1, "one-arm sends nothing it did not make");
    let reply = etherparse::SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(etherparse::TransportSlice::Tcp(t)) = reply.transport else {
        panic!("a TCP reply")
    };
    assert!(t.syn() && t.ack() || t.rst(), "the decoy answered");
    assert_eq!((t.source_port(), t.destination_port()), (22, 40000));
}
