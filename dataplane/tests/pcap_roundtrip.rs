//! The pcap port end to end: a capture in, the same frames out, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use baitwall_dataplane::config::Config;
use baitwall_dataplane::demo::scenario::{self, Role};
use baitwall_dataplane::demo::write_pcap;
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

fn config(dir: &Path, rx: &str, workers: usize, extra: &str) -> Config {
    let cores: Vec<String> = (0..workers).map(|c| c.to_string()).collect();
    let text = format!(
        "[workers]\ncores = [{}]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"{rx}\"\ntx = \"out.pcap\"\n{extra}",
        cores.join(", ")
    );
    let path = dir.join("bw.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

fn frames(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.timestamp, p.data.to_vec()));
    }
    v
}

fn clean_scenario() -> Vec<scenario::ScenarioFrame> {
    scenario::build()
        .into_iter()
        .filter(|f| f.role != Role::Malformed)
        .collect()
}

#[test]
fn pcap_in_same_frames_out_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    write_pcap(&dir.path().join("in.pcap"), &clean_scenario()).unwrap();
    let cfg = config(dir.path(), "in.pcap", 1, "");
    let outcome =
        baitwall_dataplane::run::run(&cfg, Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    assert!(outcome.pcap.completed);
    assert_eq!(outcome.pcap.frames_in, outcome.pcap.frames_out);
    // One worker keeps the order, the writer keeps the timestamps and the
    // header: the output file is the input file.
    let a = std::fs::read(dir.path().join("in.pcap")).unwrap();
    let b = std::fs::read(dir.path().join("out.pcap")).unwrap();
    assert_eq!(a.len(), b.len());
    assert!(a == b, "output differs from input");
}

#[test]
fn two_workers_forward_every_frame_and_keep_per_flow_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = clean_scenario();
    write_pcap(&dir.path().join("in.pcap"), &input).unwrap();
    let cfg = config(dir.path(), "in.pcap", 2, "");
    let outcome =
        baitwall_dataplane::run::run(&cfg, Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    let mut out: Vec<_> = frames(&dir.path().join("out.pcap"));
    assert_eq!(out.len(), input.len());
    assert_eq!(outcome.dataplane.snapshot.total.dropped, 0);
    let mut want: Vec<_> = input
        .iter()
        .map(|f| (Duration::from_nanos(f.ts_ns), f.frame.clone()))
        .collect();
    want.sort();
    out.sort();
    assert_eq!(want, out);
}

#[test]
fn malformed_frames_are_dropped_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    write_pcap(&dir.path().join("in.pcap"), &scenario::build()).unwrap();
    let cfg = config(dir.path(), "in.pcap", 2, "");
    let outcome =
        baitwall_dataplane::run::run(&cfg, Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    let t = &outcome.dataplane.snapshot.total;
    assert_eq!(t.dropped, 3);
    assert_eq!(t.drops.get("bad_header_len"), Some(&2), "{:?}", t.drops);
    assert_eq!(t.drops.get("bad_total_len"), Some(&1), "{:?}", t.drops);
    assert_eq!(outcome.pcap.frames_out, outcome.pcap.frames_in - 3);
}

#[test]
fn pcapng_input_gives_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let input = clean_scenario();
    {
        let file = std::fs::File::create(dir.path().join("in.pcapng")).unwrap();
        let mut w = PcapNgWriter::new(file).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![],
        })
        .unwrap();
        for f in &input {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_micros(f.ts_ns / 1000),
                original_len: f.frame.len() as u32,
                data: Cow::Borrowed(&f.frame),
                options: vec![],
            })
            .unwrap();
        }
    }
    let cfg = config(dir.path(), "in.pcapng", 1, "");
    let outcome =
        baitwall_dataplane::run::run(&cfg, Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    assert_eq!(outcome.pcap.frames_in, input.len() as u64);
    let out = frames(&dir.path().join("out.pcap"));
    let got: Vec<_> = out.into_iter().map(|(_, f)| f).collect();
    let want: Vec<_> = input.into_iter().map(|f| f.frame).collect();
    assert_eq!(got, want);
}

#[test]
fn timed_replay_keeps_the_recorded_pacing() {
    let dir = tempfile::tempdir().unwrap();
    // Ten frames 20 ms apart, replayed at 2x: the replay takes at least 90 ms.
    let all = clean_scenario();
    let frames: Vec<_> = all
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, f)| scenario::ScenarioFrame {
            ts_ns: 1_000_000_000 + i as u64 * 20_000_000,
            ..f.clone()
        })
        .collect();
    write_pcap(&dir.path().join("in.pcap"), &frames).unwrap();
    let cfg = config(
        dir.path(),
        "in.pcap",
        1,
        "replay = \"timed\"\nspeed = 2.0\n",
    );
    let outcome =
        baitwall_dataplane::run::run(&cfg, Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    assert_eq!(outcome.pcap.frames_out, 10);
    // A lower bound only: the replay sleeps until each frame is due.
    assert!(
        outcome.elapsed >= Duration::from_millis(90),
        "{:?}",
        outcome.elapsed
    );
}

#[test]
fn a_file_that_is_not_a_capture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.pcap"), b"this is not a capture file").unwrap();
    let cfg = config(dir.path(), "in.pcap", 1, "");
    let err =
        baitwall_dataplane::run::run(&cfg, Arc::new(AtomicBool::new(false)), |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a readable pcap/pcapng capture"),
        "{err:#}"
    );
    std::fs::write(dir.path().join("in.pcap"), b"").unwrap();
    let err =
        baitwall_dataplane::run::run(&cfg, Arc::new(AtomicBool::new(false)), |_| {}).unwrap_err();
    assert!(err.to_string().contains("too short"), "{err:#}");
}
