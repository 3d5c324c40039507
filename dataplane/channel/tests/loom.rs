//! Model-checked interleavings of the ring protocol (loom explores every
//! schedule of a producer and a consumer, with the memory orderings the ring
//! uses). Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p baitwall-channel --release --test loom`

#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baitwall_channel::{Record, heap_ring};

fn rec(n: u64) -> Record {
    let mut r = Record::new(1);
    r.put_u64(8, n);
    r
}

/// Three records through a ring of two slots: every record arrives once, in
/// order, and no slot is read while it is written (loom's cells check that).
#[test]
fn spsc_delivers_in_order_through_wraparound() {
    loom::model(|| {
        let (mut p, mut c) = heap_ring(2);
        let producer = loom::thread::spawn(move || {
            for i in 0..3 {
                while !p.push(&rec(i)) {
                    p.publish();
                    loom::thread::yield_now();
                }
                p.publish();
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            match c.pop() {
                Some(r) => got.push(r.get_u64(8)),
                None => {
                    c.release();
                    loom::thread::yield_now();
                }
            }
        }
        c.release();
        producer.join().unwrap();
        assert_eq!(got, vec![0, 1, 2]);
    });
}

/// A full ring drops and counts; what was accepted still arrives.
#[test]
fn full_ring_drops_newest_and_counts() {
    loom::model(|| {
        let (mut p, mut c) = heap_ring(1);
        let producer = loom::thread::spawn(move || {
            let mut accepted = Vec::new();
            for i in 0..2 {
                if p.push_or_drop(&rec(i)) {
                    accepted.push(i);
                }
                p.publish();
            }
            (accepted, p.dropped())
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            if let Some(r) = c.pop() {
                got.push(r.get_u64(8));
            }
            c.release();
            loom::thread::yield_now();
        }
        let (accepted, dropped) = producer.join().unwrap();
        while let Some(r) = c.pop() {
            got.push(r.get_u64(8));
        }
        assert_eq!(got, accepted);
        assert_eq!(accepted.len() as u64 + dropped, 2);
    });
}
