//! The control channel's ring against the general-purpose queues, in one
//! process, one producer thread and one consumer thread: 10M 64-byte
//! records through our SPSC ring (batched publish and release, as the
//! workers and control use it), crossbeam's `ArrayQueue` and `rtrb`.
//!
//! `cargo bench --bench ring` (`-- --short`: 1M records). Issue 7's target:
//! no slower than rtrb in one process (and >= 20 M events/s between two
//! processes: the rings are the same shared memory, see the
//! `two_process` test of the channel crate, which moves 10M records but
//! does not time them). Prints M records/s, best of 3 runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use baitwall_channel::{Record, heap_ring};

const CAPACITY: usize = 1 << 16;
const BATCH: usize = 32;

fn ours(n: u64) -> f64 {
    let (mut tx, mut rx) = heap_ring(CAPACITY as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut r = Record::new(1);
            let mut sent = 0u64;
            while sent < n {
                let mut batch = 0;
                while batch < BATCH && sent < n {
                    r.put_u64(8, sent);
                    if !tx.push(&r) {
                        break;
                    }
                    sent += 1;
                    batch += 1;
                }
                tx.publish();
            }
        });
        let mut got = 0u64;
        while got < n {
            while let Some(r) = rx.pop() {
                black_box(r);
                got += 1;
            }
            rx.release();
        }
    });
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn crossbeam(n: u64) -> f64 {
    let q = crossbeam::queue::ArrayQueue::<[u8; 64]>::new(CAPACITY);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut r = [0u8; 64];
            for i in 0..n {
                r[8..16].copy_from_slice(&i.to_le_bytes());
                while q.push(r).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            if let Some(r) = q.pop() {
                black_box(r);
                got += 1;
            }
        }
    });
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn rtrb(n: u64) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; 64]>::new(CAPACITY);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut r = [0u8; 64];
            for i in 0..n {
                r[8..16].copy_from_slice(&i.to_le_bytes());
                while tx.push(r).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            if let Ok(r) = rx.pop() {
                black_box(r);
                got += 1;
            }
        }
    });
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn best(f: fn(u64) -> f64, n: u64) -> f64 {
    (0..3).map(|_| f(n)).fold(0.0, f64::max)
}

fn main() {
    let short = std::env::args().any(|a| a == "--short");
    let n = if short { 1_000_000 } else { 10_000_000 };
    let (o, c, r) = (best(ours, n), best(crossbeam, n), best(rtrb, n));
    println!(
        "ring benchmark: {n} records of 64 bytes, one producer and one consumer thread, best of 3"
    );
    println!("{:<44} {:>12} {:>10}", "", "M records/s", "ratio");
    println!("{:<44} {:>12.1} {:>10}", "rtrb::RingBuffer", r, "1");
    println!("{:<44} {:>12.1} {:>9.2}x", "crossbeam ArrayQueue", c, c / r);
    println!(
        "{:<44} {:>12.1} {:>9.2}x",
        "baitwall-channel ring (batched)",
        o,
        o / r
    );
    println!(
        "target (issue 7): no slower than rtrb in one process: {}",
        if o >= r { "met" } else { "NOT met" }
    );
}
