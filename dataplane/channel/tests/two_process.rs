//! Ten million records between two real processes through a shared region:
//! none lost, none duplicated, in order on each ring, across many
//! wraparounds. The test binary re-runs itself as the producing process.

#![cfg(not(loom))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use baitwall_channel::{Geometry, Record, Region};

const TOTAL: u64 = 10_000_000;
const WORKERS: u32 = 2;
const CHILD_ENV: &str = "BAITWALL_CHANNEL_TEST_REGION";

fn record(worker: u32, seq: u64) -> Record {
    let mut r = Record::new(1);
    r.put_u64(8, seq);
    r.put_u64(16, u64::from(worker));
    r.put_u64(56, seq ^ 0xa5a5_a5a5_a5a5_a5a5);
    r
}

/// The producing process: each worker ring gets TOTAL / WORKERS records,
/// pushed in batches and published once per batch.
fn produce(path: &Path) {
    let region = Region::attach(path).unwrap();
    let mut ends: Vec<_> = (0..WORKERS)
        .map(|w| region.worker_ends(w).unwrap())
        .collect();
    let per = TOTAL / u64::from(WORKERS);
    let mut next = vec![0u64; WORKERS as usize];
    let deadline = Instant::now() + Duration::from_secs(300);
    while next.iter().any(|&n| n < per) {
        for (w, e) in ends.iter_mut().enumerate() {
            let mut batch = 0;
            while next[w] < per && batch < 64 && e.events.push(&record(w as u32, next[w])) {
                next[w] += 1;
                batch += 1;
            }
            e.events.publish();
        }
        assert!(Instant::now() < deadline, "consumer stalled");
    }
}

#[test]
fn ten_million_records_between_two_processes() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        produce(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-process.region");
    let region = Region::create(
        &path,
        Geometry {
            workers: WORKERS,
            slots: 4096,
        },
        7,
    )
    .unwrap();
    let mut ends: Vec<_> = (0..WORKERS)
        .map(|w| region.control_ends(w).unwrap())
        .collect();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ten_million_records_between_two_processes",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let per = TOTAL / u64::from(WORKERS);
    let mut expect = vec![0u64; WORKERS as usize];
    let deadline = Instant::now() + Duration::from_secs(300);
    while expect.iter().any(|&n| n < per) {
        for (w, e) in ends.iter_mut().enumerate() {
            while let Some(r) = e.events.pop() {
                let seq = r.get_u64(8);
                assert_eq!(seq, expect[w], "ring {w}: lost or duplicated record");
                assert_eq!(r.get_u64(16), w as u64, "record on the wrong ring");
                assert_eq!(r.get_u64(56), seq ^ 0xa5a5_a5a5_a5a5_a5a5, "torn record");
                expect[w] += 1;
            }
            e.events.release();
        }
        if let Some(status) = child.try_wait().unwrap() {
            // The producer may finish first; drain what is left, then check.
            assert!(status.success(), "producer failed: {status}");
        }
        assert!(Instant::now() < deadline, "producer stalled");
    }
    assert!(child.wait().unwrap().success());
    for e in &mut ends {
        assert!(e.events.pop().is_none(), "more records than were sent");
        assert_eq!(e.events.dropped(), 0);
    }
    assert_eq!(expect.iter().sum::<u64>(), TOTAL);
}
