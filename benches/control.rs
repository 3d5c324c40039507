//! Control's block operations with a million blocks stored: `block-list`,
//! `block-add` and `block-remove` as an operator's client sees them, over
//! the JSON control socket, latency percentiles of each (issue 16's target:
//! p99 under 1 ms).
//!
//! `cargo bench --bench control` (`-- --blocks N` for another store size).
//! The store is made once per run in a temporary directory (a bulk import
//! of N blocks, about ten seconds for a million); control then runs in a
//! thread of this process with no dataplane, as it does while it waits
//! for one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baitwall_control::config::{ControlConfig, SocketSection};
use baitwall_control::daemon::{self, Settings};
use baitwall_control::store::{Block, Store};

/// One request and its answer; the round trip's duration.
fn ask(w: &mut UnixStream, r: &mut BufReader<UnixStream>, line: &str) -> Duration {
    let start = Instant::now();
    w.write_all(line.as_bytes()).expect("write");
    w.write_all(b"\n").expect("write");
    let mut answer = String::new();
    r.read_line(&mut answer).expect("read");
    let took = start.elapsed();
    assert!(
        answer.starts_with("{\"return\":\"OK\""),
        "{line} -> {}",
        &answer[..answer.len().min(300)]
    );
    took
}

/// p50, p99 and the maximum of `samples`, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99), at(1.0))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let blocks: u32 = args
        .iter()
        .position(|a| a == "--blocks")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state.db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as u32;
    let started = Instant::now();
    {
        let store = Store::open(&db).expect("store");
        // 10.0.0.0/8 and beyond, one address each, an hour to go.
        let fixture: Vec<Block> = (0..blocks)
            .map(|i| {
                let net = Ipv4Addr::from(0x0a00_0000 + i).to_ipv6_mapped().octets();
                Block::local(net, 128, now + 3600, "bench")
            })
            .collect();
        for chunk in fixture.chunks(100_000) {
            store.import_blocks(chunk, now).expect("import");
        }
        assert_eq!(store.count_blocks().expect("count"), u64::from(blocks));
    }
    println!(
        "control block operations, {blocks} blocks stored (imported in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let socket = dir.path().join("control.sock");
    let settings = Settings::new(ControlConfig {
        region: dir.path().join("absent.region"),
        database: db,
        socket: SocketSection {
            path: socket.clone(),
            ..SocketSection::default()
        },
        ..ControlConfig::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let control = {
        let stop = stop.clone();
        std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).expect("control"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut w = loop {
        if let Ok(s) = UnixStream::connect(&socket) {
            break s;
        }
        assert!(Instant::now() < deadline, "socket not up");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut r = BufReader::new(w.try_clone().expect("clone"));
    // The first answer waits for control's start (it loads the blocks in
    // force for the firewall exports): not an operation's latency.
    ask(&mut w, &mut r, "{\"command\":\"status\"}");
    const N: u32 = 2_000;
    let target = |i: u32| Ipv4Addr::from(0xc633_0000 + i).to_string();
    let mut list = Vec::new();
    let mut covering = Vec::new();
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for i in 0..N {
        list.push(ask(
            &mut w,
            &mut r,
            &format!(
                "{{\"command\":\"block-list\",\"arguments\":{{\"limit\":100,\"offset\":{}}}}}",
                i % 50 * 100
            ),
        ));
        covering.push(ask(
            &mut w,
            &mut r,
            &format!(
                "{{\"command\":\"block-list\",\"arguments\":{{\"covering\":\"{}\"}}}}",
                Ipv4Addr::from(0x0a00_0000 + i * 397 % blocks.max(1))
            ),
        ));
        add.push(ask(
            &mut w,
            &mut r,
            &format!(
                "{{\"command\":\"block-add\",\"arguments\":{{\"target\":\"{}\",\"for\":\"1h\"}}}}",
                target(i)
            ),
        ));
    }
    for i in 0..N {
        remove.push(ask(
            &mut w,
            &mut r,
            &format!(
                "{{\"command\":\"block-remove\",\"arguments\":{{\"target\":\"{}\"}}}}",
                target(i)
            ),
        ));
    }
    stop.store(true, Ordering::Relaxed);
    drop((w, r));
    control.join().expect("control thread");
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "operation (round trip on the socket)", "p50 µs", "p99 µs", "max µs"
    );
    let mut met = true;
    for (name, samples) in [
        ("block-list, 100 blocks a page", list),
        ("block-list --covering ADDR", covering),
        ("block-add (stored, logged, exported)", add),
        ("block-remove", remove),
    ] {
        let (p50, p99, max) = percentiles(samples);
        met &= p99 < 1_000.0;
        println!("{name:<44} {p50:>9.0} {p99:>9.0} {max:>9.0}");
    }
    println!(
        "target: p99 under 1 ms for each, {blocks} blocks stored: {}",
        if met { "met" } else { "NOT met" }
    );
}
