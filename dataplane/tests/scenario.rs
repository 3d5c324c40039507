//! The Slapper scenario end to end: a generated capture of benign traffic, a
//! worm, a spoofer and malformed frames, replayed through the real workers
//! with deception on. The set of blocked sources must be exactly the worm.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use baitwall_dataplane::demo::scenario::{Role, cast};
use baitwall_dataplane::demo::{self, DemoOptions};
use baitwall_dataplane::engine::bite::{Action, BiteKind};
use baitwall_dataplane::engine::event::EventKind;

fn ip(a: [u8; 16]) -> IpAddr {
    IpAddr::from(a).to_canonical()
}

fn run(workers: usize) -> demo::DemoResult {
    demo::run(DemoOptions {
        workers: Some(workers),
        keep: None,
        stop: Arc::new(AtomicBool::new(false)),
        control: None,
    })
    .unwrap()
}

#[test]
fn exactly_the_worm_is_blocked_with_one_and_two_workers() {
    for workers in [1, 2] {
        let result = run(workers);
        let o = &result.outcome;
        let latched: BTreeSet<IpAddr> = o
            .dataplane
            .workers
            .iter()
            .flat_map(|w| w.latched.iter().map(|a| ip(*a)))
            .collect();
        assert_eq!(
            latched,
            BTreeSet::from([IpAddr::V4(cast::WORM)]),
            "{workers} worker(s)"
        );
        // Every worker holds the block, wherever the bite was seen.
        assert!(o.dataplane.workers.iter().all(|w| !w.latched.is_empty()));

        let bites: Vec<(IpAddr, BiteKind, Action, u16)> = o
            .events
            .iter()
            .filter_map(|e| match e.event.kind {
                EventKind::Bite { kind, action, .. } => {
                    Some((ip(e.event.src), kind, action, e.event.dst_port))
                }
                _ => None,
            })
            .collect();
        let worm = IpAddr::V4(cast::WORM);
        assert_eq!(
            bites,
            vec![
                (worm, BiteKind::Handshake, Action::Alert, 80),
                (worm, BiteKind::Port, Action::Block, 443),
            ],
            "{workers} worker(s)"
        );
        // The spoofer's sweep is seen as evidence, never as a bite.
        assert!(
            o.events
                .iter()
                .any(|e| matches!(e.event.kind, EventKind::Sweep { .. })
                    && ip(e.event.src) == IpAddr::V4(cast::SPOOFED))
        );

        let t = &o.dataplane.snapshot.total;
        assert_eq!(t.latched, workers as u64, "one latch per worker");
        assert!(t.bad_cookies > 0, "the spoofer's blind ACKs were rejected");
        // Benign traffic all flowed; the spoofer was answered but nothing of
        // it was forwarded; malformed frames were dropped.
        let (inn, fwd, ans) = result.by_role[&Role::Benign];
        assert_eq!((fwd, ans), (inn, 0));
        let (inn, fwd, ans) = result.by_role[&Role::Spoofer];
        assert_eq!((fwd, ans), (0, inn));
        let (inn, fwd, ans) = result.by_role[&Role::Malformed];
        assert_eq!((inn, fwd, ans), (3, 0, 0));
    }
}
