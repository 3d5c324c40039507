//! The control channel's ring against the general-purpose queues, in one
//! process, one producer thread and one consumer thread: 10M 64-byte
//! records through our SPSC ring (batched publish and release, as the
//! workers and control use it), crossbeam's `ArrayQueue` and `rtrb`.
//!
//! Then the same ring between two processes, as the workers and control
//! use it: a shared region under /dev/shm, this benchmark re-running
//! itself as the producing process, timed by the consumer from the first
//! record to the last.
//!
//! First of all, both rings in one thread (push a batch, pop it): the
//! per-record cost of the code itself, which is what `--check` compares.
//!
//! `cargo bench --bench ring` (`-- --short`: 1M records; `--check`: exit
//! 1 below the regression floor, for CI; `--one-thread`: that part alone,
//! for a profiler). Issue 7's
//! targets: no slower than rtrb in one process, >= 20 M events/s between
//! two processes. Prints M records/s, best of 3 runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use baitwall_channel::{Geometry, Record, Region, heap_ring};

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

/// A producer thread pushing `n` records through `push` (spinning while it
/// refuses) and this thread popping them through `pop`, one at a time, as
/// a general-purpose queue is used: M records/s.
fn one_by_one(
    n: u64,
    mut push: impl FnMut([u8; 64]) -> bool + Send,
    mut pop: impl FnMut() -> Option<[u8; 64]>,
) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut r = [0u8; 64];
            for i in 0..n {
                r[8..16].copy_from_slice(&i.to_le_bytes());
                while !push(r) {
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            if let Some(r) = pop() {
                black_box(r);
                got += 1;
            }
        }
    });
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn crossbeam(n: u64) -> f64 {
    let q = crossbeam::queue::ArrayQueue::<[u8; 64]>::new(CAPACITY);
    one_by_one(n, |r| q.push(r).is_ok(), || q.pop())
}

fn rtrb(n: u64) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; 64]>::new(CAPACITY);
    one_by_one(n, move |r| tx.push(r).is_ok(), move || rx.pop().ok())
}

/// Our ring in one thread: push a batch, publish, pop it, release. The
/// per-record cost of the code with nothing shared between cores, which
/// moves little between runs (what `--check` compares).
fn ours_one_thread(n: u64) -> f64 {
    let (mut tx, mut rx) = heap_ring(CAPACITY as u64);
    let mut r = Record::new(1);
    let start = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    while sent < n {
        for _ in 0..BATCH {
            r.put_u64(8, sent);
            // A batch always fits (the last one was drained): a refusal is
            // a broken ring, not a figure.
            assert!(tx.push(black_box(&r)), "the ring refused a record");
            sent += 1;
        }
        tx.publish();
        while let Some(r) = rx.pop() {
            black_box(r);
            got += 1;
        }
        rx.release();
    }
    assert_eq!(got, sent, "records lost");
    sent as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// rtrb the same way in one thread, a record at a time.
fn rtrb_one_thread(n: u64) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; 64]>::new(CAPACITY);
    let mut r = [0u8; 64];
    let start = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    while sent < n {
        for _ in 0..BATCH {
            r[8..16].copy_from_slice(&sent.to_le_bytes());
            assert!(tx.push(black_box(r)).is_ok(), "rtrb refused a record");
            sent += 1;
        }
        while let Ok(r) = rx.pop() {
            black_box(r);
            got += 1;
        }
    }
    assert_eq!(got, sent, "records lost");
    sent as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Set in the child process: the region to produce into, and how many.
const CHILD_ENV: &str = "BAITWALL_RING_BENCH_REGION";

/// The producing process: `n` records into worker 0's events ring,
/// published a batch at a time, as a worker publishes its events.
fn produce_into(path: &std::path::Path, n: u64) {
    let region = Region::attach(path).expect("attach the region");
    let mut ends = region.worker_ends(0).expect("worker 0");
    let mut r = Record::new(1);
    let mut sent = 0u64;
    while sent < n {
        let mut batch = 0;
        while batch < BATCH && sent < n {
            r.put_u64(8, sent);
            if !ends.events.push(&r) {
                break;
            }
            sent += 1;
            batch += 1;
        }
        ends.events.publish();
    }
}

/// Our ring between two processes: M records/s seen by the consumer.
fn two_processes(n: u64) -> f64 {
    // Where the dataplane puts its region: shared memory, not a disk's page cache.
    let dir = std::path::Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("baitwall-ring-bench-{}", std::process::id()));
    let region = Region::create(
        &path,
        Geometry {
            workers: 1,
            slots: CAPACITY as u32,
        },
        1,
    )
    .expect("create the region");
    let mut ends = region.control_ends(0).expect("worker 0");
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, format!("{}:{n}", path.display()))
        .spawn()
        .expect("start the producer");
    let mut got = 0u64;
    let mut start = None;
    while got < n {
        while let Some(r) = ends.events.pop() {
            assert_eq!(r.get_u64(8), got, "a record lost or out of order");
            start.get_or_insert_with(Instant::now);
            got += 1;
        }
        ends.events.release();
        if got == 0 && child.try_wait().ok().flatten().is_some() {
            panic!("the producer exited before sending");
        }
    }
    let rate = n as f64 / start.map_or(1e-9, |s| s.elapsed().as_secs_f64()) / 1e6;
    assert!(child.wait().map(|s| s.success()).unwrap_or(false));
    let _ = std::fs::remove_file(&path);
    rate
}

fn best(f: fn(u64) -> f64, n: u64) -> f64 {
    (0..3).map(|_| f(n)).fold(0.0, f64::max)
}

/// The best of five runs of each of `f` and `g`, taken in turns: a slow
/// spell of this shared VM then falls on both, not on one side of the
/// ratio (three runs of one and then three of the other once gave our
/// ring 0.40x in a run where it was 0.9x before and after).
fn best_interleaved(f: fn(u64) -> f64, g: fn(u64) -> f64, n: u64) -> (f64, f64) {
    (0..5).fold((0.0, 0.0), |(a, b), _| {
        (f64::max(a, f(n)), f64::max(b, g(n)))
    })
}

fn main() {
    if let Some(spec) = std::env::var_os(CHILD_ENV) {
        let spec = spec.to_string_lossy().into_owned();
        let (path, n) = spec.rsplit_once(':').expect("path:count");
        produce_into(std::path::Path::new(path), n.parse().expect("count"));
        return;
    }
    let short = std::env::args().any(|a| a == "--short");
    let n = if short { 1_000_000 } else { 10_000_000 };
    let (o1, r1) = best_interleaved(ours_one_thread, rtrb_one_thread, n);
    if std::env::args().any(|a| a == "--one-thread") {
        // For a profiler (callgrind cannot follow two spinning threads).
        println!(
            "one thread: rtrb {r1:.1} M/s, ours {o1:.1} M/s ({:.2}x)",
            o1 / r1
        );
        return;
    }
    let (o, c, r) = (best(ours, n), best(crossbeam, n), best(rtrb, n));
    let two = best(two_processes, n);
    println!("ring benchmark: {n} records of 64 bytes, best of 3 (one thread: of 5, in turns)");
    println!("{:<52} {:>12} {:>10}", "", "M records/s", "ratio");
    println!("one thread (push {BATCH}, pop them: the code's own cost)");
    println!("{:<52} {:>12.1} {:>10}", "  rtrb::RingBuffer", r1, "1");
    println!(
        "{:<52} {:>12.1} {:>9.2}x",
        "  baitwall-channel ring (batched)",
        o1,
        o1 / r1
    );
    println!("one producer and one consumer thread");
    println!("{:<52} {:>12.1} {:>10}", "  rtrb::RingBuffer", r, "1");
    println!(
        "{:<52} {:>12.1} {:>9.2}x",
        "  crossbeam ArrayQueue",
        c,
        c / r
    );
    println!(
        "{:<52} {:>12.1} {:>9.2}x",
        "  baitwall-channel ring (batched)",
        o,
        o / r
    );
    println!(
        "{:<52} {:>12.1} {:>9.2}x",
        "  baitwall-channel ring, two processes",
        two,
        two / r
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("targets (issue 7):");
    println!(
        "  no slower than rtrb in one process (two threads): {:.2}x: {}",
        o / r,
        verdict(o >= r)
    );
    println!(
        "  >= 20 M events/s between two processes: {two:.1}: {}",
        verdict(two >= 20.0)
    );
    // `--check` (CI) compares the one-thread figures only: our ring at
    // least 0.7x rtrb. The figures across two cores are printed, not
    // checked: two spinning threads on two vCPUs shared with the
    // hypervisor settle into one of two regimes (the consumer right behind
    // the producer, every record a cache-line transfer; or far behind, a
    // stream), so rtrb alone moves from 9 to 310 M/s between runs and no
    // floor on a ratio of two such figures holds. That every record
    // crosses between the processes whole and in order is asserted above;
    // that head and tail sit on separate cache lines, by the ring's tests.
    if std::env::args().any(|a| a == "--check") {
        let ok = o1 / r1 >= 0.7;
        println!(
            "regression check (--check): ours/rtrb in one thread {:.2} (floor 0.70): {}",
            o1 / r1,
            if ok { "ok" } else { "REGRESSION" }
        );
        if !ok {
            std::process::exit(1);
        }
    }
}
