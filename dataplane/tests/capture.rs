//! Bite capture end to end: a worm connects to a decoy, sends data (a
//! bite), and keeps trying after the latch; its pcap file holds the SYN,
//! the biting segment with its payload, and the frames it sent after, and
//! nobody else gets a file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use baitwall_dataplane::config::Config;
use baitwall_dataplane::io::soft::SoftNic;
use baitwall_dataplane::synth::{self, Endpoint, Flags};
use etherparse::{SlicedPacket, TransportSlice};

const T0: u64 = 1_767_226_200 * 1_000_000_000;

fn settle(nic: &SoftNic) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nic.is_quiescent() {
        nic.collect(|_, f, _| out.push(f.to_vec()));
        assert!(Instant::now() < deadline);
    }
    nic.collect(|_, f, _| out.push(f.to_vec()));
    out
}

fn tcp(frame: &[u8]) -> (bool, bool, u32, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    (t.syn(), t.ack(), t.sequence_number(), t.payload().to_vec())
}

#[test]
fn a_biters_frames_land_in_its_own_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[workers]\ncores = [0]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"unused\"\n\
         [deception]\nprotected = [\"198.51.100.0/24\"]\ndark_routes = [\"198.51.100.0/24\"]\nlearning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1m\"\n\
         [capture]\ndir = \"{}\"\nfollow_packets = 2\n",
        dir.path().join("caps").display()
    );
    let rt = Config::parse(&text, "t").unwrap().runtime();
    let (dp, nic) = baitwall_dataplane::testbed::start_mem(&rt, T0).unwrap();
    let worm = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 66), 40000);
    let scanner = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 77), 40000);
    // A decoy with port 80 open: the first that answers with a SYN-ACK.
    let (decoy, isn) = (20..250u8)
        .find_map(|last| {
            let d = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 51, 100, last), 80);
            nic.inject(&synth::tcp(&worm, &d, Flags::SYN, 9, 0, &[]), T0)
                .unwrap();
            let replies = settle(&nic);
            let (syn, ack, seq, _) = tcp(replies.last().unwrap());
            (syn && ack).then_some((d, seq))
        })
        .unwrap();
    // A scan from someone else, who never bites: no file for it.
    nic.inject(&synth::tcp(&scanner, &decoy, Flags::SYN, 1, 0, &[]), T0)
        .unwrap();
    settle(&nic);
    let get = b"GET /exploit HTTP/1.0\r\n\r\n";
    let bite = synth::tcp(&worm, &decoy, Flags::PSH_ACK, 10, isn.wrapping_add(1), get);
    nic.inject(&bite, T0 + 1_000).unwrap();
    settle(&nic);
    // After the latch: three more tries, dropped; two are kept.
    for i in 0..3u32 {
        let retry = synth::tcp(
            &worm,
            &decoy,
            Flags::PSH_ACK,
            10 + i,
            isn.wrapping_add(1),
            get,
        );
        nic.inject(&retry, T0 + 2_000).unwrap();
    }
    let after = settle(&nic);
    assert!(after.is_empty(), "a latched worm gets nothing back");
    let report = dp.stop();
    let capture = report.capture.unwrap();
    assert_eq!(capture.sources, 1);
    assert_eq!(report.snapshot.total.capture_lost, 0);

    let frames =
        baitwall_dataplane::capture::read(&dir.path().join("caps/192.0.2.66.pcap")).unwrap();
    // The SYNs to every decoy tried (from the history), the bite, two follow-ups.
    let syns = frames.iter().filter(|(_, f)| tcp(f).0).count();
    let with_get: Vec<_> = frames.iter().filter(|(_, f)| tcp(f).3 == get).collect();
    assert!(syns >= 1, "the worm's SYN is in its capture");
    assert_eq!(with_get.len(), 3, "the bite and two follow-ups");
    assert_eq!(frames.len(), syns + 3);
    assert_eq!(capture.frames as usize, frames.len());
    // Frames are written as the worm sent them, not as the decoy's reply.
    assert_eq!(with_get[0].1, bite);
    // Stamped with the worker's clock (this testbed's is fixed at T0), in order.
    assert!(frames.iter().all(|(t, _)| *t == T0));
    tcpdump_reads(&dir.path().join("caps/192.0.2.66.pcap"), frames.len());
    let files: Vec<_> = std::fs::read_dir(dir.path().join("caps"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["192.0.2.66.pcap"]);
}

/// A real reader: tcpdump parses the file and sees the worm's segments.
fn tcpdump_reads(path: &std::path::Path, frames: usize) {
    let Some(tcpdump) = baitwall_dataplane::testbed::tool("tcpdump") else {
        return;
    };
    let text = baitwall_dataplane::testbed::stdout_of(
        std::process::Command::new(tcpdump)
            .args(["-nn", "-r"])
            .arg(path),
    );
    assert_eq!(text.lines().count(), frames, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("192.0.2.66.40000 > 198.51.100.")),
        "{text}"
    );
}
