//! Per-packet costs of the dataplane core, each next to a baseline measured
//! in the same run (criterion; `cargo bench --bench dataplane`).
//!
//! - `classify`: our one-pass classification of an IPv4 TCP SYN, next to
//!   etherparse's zero-copy `SlicedPacket` on the same frame, and next to B0
//!   (read the EtherType and the IPv4 source address: the floor).
//! - `classify_protocol`: the same per protocol (IPv4 TCP, UDP, ICMP echo,
//!   IPv6 TCP, ARP), ours next to etherparse.
//! - `rss`: the software Toeplitz hash of a frame.
//! - `flow_track`: one packet through the flow table with 1k and 1M live
//!   flows (and 10M with `BAITWALL_BENCH_10M=1`: 2.3 GB and a minute of
//!   set-up), one at a time and a burst at a time with prefetch, as the
//!   engine does (1M: the table is far larger than the caches).
//! - `flow_insert`: a new flow per packet into a full table of 1k and 1M
//!   flows (each insert evicts or reuses a slot).
//! - `engine`: classify + flow tracking, the forwarding path.
//! - `marks`: a SYN to a dark address turned into the decoy's SYN-ACK in
//!   place (cookie, persona, checksums), next to B1 (reflect a frame in
//!   place and recompute the IPv4 checksum) measured in the same run; and
//!   the cookie alone (ISN, and verification of an ACK).

// A benchmark aborts on a broken fixture: unwrap/expect are the point there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use baitwall_dataplane::engine::classify::classify;
use baitwall_dataplane::engine::flow::{FlowKey, FlowTable, Timeouts};
use baitwall_dataplane::engine::{Engine, EngineConfig};
use baitwall_dataplane::rss::Rss;
use baitwall_dataplane::synth::{self, Endpoint, Flags};
use baitwall_dataplane::wire::TcpFlags;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{BENCH_DECEPTION, reflect};

fn syn_frames(n: u32) -> Vec<Vec<u8>> {
    let server = Endpoint::new([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 51, 100, 10), 80);
    (0..n)
        .map(|i| {
            let client = Endpoint::new(
                [2, 0, 0, 0, 0, 1],
                Ipv4Addr::from(0x0a00_0000 | i),
                1024 + (i % 50000) as u16,
            );
            synth::tcp(&client, &server, Flags::SYN, i, 0, &[])
        })
        .collect()
}

fn classify_bench(c: &mut Criterion) {
    let frames = syn_frames(1024);
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("b0_touch_headers", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in &frames {
                let f = black_box(f.as_slice());
                if f.get(12..14) == Some(&[0x08, 0x00]) {
                    acc ^= f
                        .get(26..30)
                        .map_or(0, |a| u32::from_be_bytes([a[0], a[1], a[2], a[3]]));
                }
            }
            acc
        })
    });
    g.bench_function("baitwall", |b| {
        b.iter(|| {
            let mut acc = 0u16;
            for f in &frames {
                if let Ok(info) = classify(black_box(f)) {
                    acc ^= info.dst_port;
                }
            }
            acc
        })
    });
    g.bench_function("etherparse_sliced", |b| {
        b.iter(|| {
            let mut acc = 0u16;
            for f in &frames {
                if let Ok(p) = etherparse::SlicedPacket::from_ethernet(black_box(f))
                    && let Some(etherparse::TransportSlice::Tcp(t)) = p.transport
                {
                    acc ^= t.destination_port();
                }
            }
            acc
        })
    });
    g.finish();
}

/// Classification per protocol: 1,024 frames of each kind, ours next to
/// etherparse's `SlicedPacket` on the same frames.
fn classify_protocols_bench(c: &mut Criterion) {
    use std::net::Ipv6Addr;
    let v4 = |i: u32, port: u16| {
        Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::from(0x0a00_0000 | i), port)
    };
    let v6 = |i: u32, port: u16| {
        Endpoint::new(
            [2, 0, 0, 0, 0, 1],
            Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(i)),
            port,
        )
    };
    let server = Endpoint::new([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 51, 100, 10), 53);
    let server6 = Endpoint::new([2, 0, 0, 0, 0, 2], Ipv6Addr::LOCALHOST, 80);
    let each = |make: &dyn Fn(u32) -> Vec<u8>| (0..1024).map(make).collect::<Vec<_>>();
    let kinds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "ipv4_tcp",
            each(&|i| synth::tcp(&v4(i, 1024), &server.port(80), Flags::SYN, i, 0, &[])),
        ),
        (
            "ipv4_udp",
            each(&|i| synth::udp(&v4(i, 1024), &server, b"query")),
        ),
        (
            "ipv4_icmp_echo",
            each(&|i| synth::echo(&v4(i, 0), &server, i as u16, false, b"ping")),
        ),
        (
            "ipv6_tcp",
            each(&|i| synth::tcp(&v6(i, 1024), &server6, Flags::SYN, i, 0, &[])),
        ),
        (
            "arp",
            each(&|i| {
                let sender = Ipv4Addr::from(0x0a00_0000 | i);
                synth::arp(
                    [2, 0, 0, 0, 0, 1],
                    sender,
                    [0; 6],
                    Ipv4Addr::new(10, 0, 0, 1),
                    false,
                )
            }),
        ),
    ];
    let mut g = c.benchmark_group("classify_protocol");
    for (name, frames) in &kinds {
        assert!(
            frames.iter().all(|f| classify(f).is_ok()),
            "{name}: fixture"
        );
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function(format!("{name}/baitwall"), |b| {
            b.iter(|| {
                frames
                    .iter()
                    .filter(|f| classify(black_box(f)).is_ok_and(|i| i.src_port != 1))
                    .count()
            })
        });
        g.bench_function(format!("{name}/etherparse_sliced"), |b| {
            b.iter(|| {
                frames
                    .iter()
                    .filter(|f| etherparse::SlicedPacket::from_ethernet(black_box(f)).is_ok())
                    .count()
            })
        });
    }
    g.finish();
}

fn rss_bench(c: &mut Criterion) {
    let frames = syn_frames(1024);
    let rss = Rss::symmetric(2);
    let mut g = c.benchmark_group("rss");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("toeplitz_frame", |b| {
        b.iter(|| {
            frames
                .iter()
                .fold(0u32, |acc, f| acc ^ rss.hash_frame(black_box(f)))
        })
    });
    g.finish();
}

fn flow_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_track");
    let sizes: &[u32] = if std::env::var_os("BAITWALL_BENCH_10M").is_some() {
        &[1_000, 1_000_000, 10_000_000]
    } else {
        &[1_000, 1_000_000]
    };
    for &flows in sizes {
        let mut table = FlowTable::new(flows as usize * 2, Timeouts::default(), 7);
        let dst = Ipv4Addr::new(198, 51, 100, 10).to_ipv6_mapped().octets();
        let key = |i: u32| {
            let src = Ipv4Addr::from(0x0a00_0000 | i).to_ipv6_mapped().octets();
            FlowKey::new(4, 6, src, 1024 + (i % 50000) as u16, dst, 80)
        };
        for i in 0..flows {
            let (k, lo) = key(i);
            table.track(&k, lo, Some(TcpFlags::ACK), 60, 0);
        }
        // Visit the flows in a scattered order so the big tables miss the
        // caches; the keys themselves are read in sequence, as they would
        // come from packets already in cache.
        let order: Vec<(FlowKey, bool)> = (0..flows.min(1 << 22))
            .map(|i| key(((u64::from(i) * 7919) % u64::from(flows)) as u32))
            .collect();
        let batch = 4096.min(order.len());
        g.throughput(Throughput::Elements(batch as u64));
        let mut pos = 0usize;
        g.bench_function(format!("{flows}_flows"), |b| {
            b.iter(|| {
                for _ in 0..batch {
                    let (k, lo) = &order[pos];
                    pos = (pos + 1) % order.len();
                    black_box(table.track(k, *lo, Some(TcpFlags::ACK), 60, 1));
                }
            })
        });
        // As the engine does it: a burst's slots hashed and their buckets
        // prefetched, then their entries, then the flows tracked.
        let mut pos = 0usize;
        g.bench_function(format!("{flows}_flows_burst"), |b| {
            b.iter(|| {
                let mut slots = [Default::default(); BURST];
                for _ in 0..batch / BURST {
                    let start = pos;
                    for s in slots.iter_mut() {
                        *s = table.slot(&order[pos].0);
                        table.prefetch_bucket(*s);
                        pos = (pos + 1) % order.len();
                    }
                    for s in &slots {
                        table.prefetch_entry(*s);
                    }
                    for (i, s) in slots.iter().enumerate() {
                        let (k, lo) = &order[(start + i) % order.len()];
                        black_box(table.track_at(*s, k, *lo, Some(TcpFlags::ACK), 60, 1));
                    }
                }
            })
        });
    }
    g.finish();
}

/// Flow creation: every packet a flow the table has not seen, into a table
/// of 1k and 1M flows kept full, so each insert also evicts (the oldest
/// idle flow of its bucket) or reuses an expired slot.
fn flow_insert_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_insert");
    let dst = Ipv4Addr::new(198, 51, 100, 10).to_ipv6_mapped().octets();
    for capacity in [1_000usize, 1_000_000] {
        let mut table = FlowTable::new(capacity, Timeouts::default(), 7);
        let mut next = 0u32;
        let mut key = move || {
            next = next.wrapping_add(0x9e37_79b9);
            let src = Ipv4Addr::from(next).to_ipv6_mapped().octets();
            FlowKey::new(4, 6, src, 1024 + (next % 50000) as u16, dst, 80)
        };
        // Fill it first: the benchmark measures inserts into a full table.
        for _ in 0..table.capacity() {
            let (k, lo) = key();
            table.track(&k, lo, Some(TcpFlags::SYN), 60, 0);
        }
        let batch = 4096;
        g.throughput(Throughput::Elements(batch));
        let mut now = 1u32;
        g.bench_function(format!("{capacity}_flows_full"), |b| {
            b.iter(|| {
                now = now.wrapping_add(1);
                for _ in 0..batch {
                    let (k, lo) = key();
                    black_box(table.track(&k, lo, Some(TcpFlags::SYN), 60, now));
                }
            })
        });
    }
    g.finish();
}

/// Frames per burst in the burst variants, as a worker receives them.
const BURST: usize = 32;

fn engine_bench(c: &mut Criterion) {
    let frames = syn_frames(4096);
    let mut engine = Engine::new(&EngineConfig {
        flow_capacity: 1 << 16,
        ..EngineConfig::default()
    });
    let now = 1_767_225_600_000_000_000u64;
    let mut bufs = frames.clone();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(bufs.len() as u64));
    g.bench_function("process_syn_4k_flows", |b| {
        b.iter(|| {
            for f in bufs.iter_mut() {
                black_box(engine.process(f, now));
            }
        })
    });
    g.finish();
}

fn marks_bench(c: &mut Criterion) {
    use baitwall_dataplane::config::Config;
    use baitwall_dataplane::engine::cookie::{CookieJar, CookieTuple};
    let config = Config::parse(BENCH_DECEPTION, "bench").expect("bench config");
    let mut engine = Engine::new(&config.runtime().engine);
    // SYNs from many sources to many dark decoys, ports 22/80/443/445, as
    // Linux lays them out; the same SYNs offering timestamps (RFC 7323,
    // Linux's default), whose SYN-ACKs from
    // personas with a TCP clock then carry the keyed TSval of the strong
    // proofs (engine::tsproof): the two differ by the timestamp's work.
    let syns = |timestamps: bool| -> Vec<Vec<u8>> {
        (0..4096u32)
            .map(|i| {
                let client = Endpoint::new(
                    [2, 0, 0, 0, 0, 1],
                    Ipv4Addr::from(0xcb00_7100 | (i & 0xff)),
                    1024 + i as u16,
                );
                let decoy = Endpoint::new(
                    [2, 0, 0, 0, 0, 2],
                    Ipv4Addr::from(0xc633_0000 | ((i * 7919) & 0xffff)),
                    [22, 80, 443, 445][i as usize % 4],
                );
                // Laid out as Linux's, timestamps on or off.
                synth::linux_syn(&client, &decoy, i, timestamps.then_some(i))
            })
            .collect()
    };
    let templates = syns(false);
    let ts_templates = syns(true);
    let mut bufs = templates.clone();
    let now = 1_767_225_600_000_000_000u64;
    let mut g = c.benchmark_group("marks");
    g.throughput(Throughput::Elements(templates.len() as u64));
    g.bench_function("b1_reflect_in_place", |b| {
        b.iter(|| {
            for (buf, t) in bufs.iter_mut().zip(templates.iter()) {
                buf.copy_from_slice(t);
                reflect(black_box(buf));
            }
        })
    });
    g.bench_function("syn_to_syn_ack_with_cookie", |b| {
        b.iter(|| {
            for (buf, t) in bufs.iter_mut().zip(templates.iter()) {
                buf.clear();
                buf.extend_from_slice(t);
                black_box(engine.process(buf, now));
            }
        })
    });
    let mut ts_engine = Engine::new(&config.runtime().engine);
    let mut ts_bufs = ts_templates.clone();
    g.bench_function("syn_to_syn_ack_with_cookie_and_timestamp", |b| {
        b.iter(|| {
            for (buf, t) in ts_bufs.iter_mut().zip(ts_templates.iter()) {
                buf.clear();
                buf.extend_from_slice(t);
                black_box(ts_engine.process(buf, now));
            }
        })
    });
    let jar = CookieJar::new(&[7; 32], 60_000, now / 1_000_000);
    let tuples: Vec<CookieTuple> = (0..4096u32)
        .map(|i| CookieTuple {
            src: Ipv4Addr::from(0xcb00_7100 | i).to_ipv6_mapped().octets(),
            dst: Ipv4Addr::from(0xc633_0000 | i).to_ipv6_mapped().octets(),
            src_port: i as u16,
            dst_port: 80,
        })
        .collect();
    let isns: Vec<u32> = tuples.iter().map(|t| jar.isn(t)).collect();
    g.bench_function("cookie_isn", |b| {
        b.iter(|| {
            tuples
                .iter()
                .fold(0u32, |acc, t| acc ^ jar.isn(black_box(t)))
        })
    });
    g.bench_function("cookie_verify_ack", |b| {
        b.iter(|| {
            tuples
                .iter()
                .zip(isns.iter())
                .filter(|(t, isn)| {
                    jar.verify(black_box(t), isn.wrapping_add(1), 1025)
                        .is_some()
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    classify_bench,
    classify_protocols_bench,
    rss_bench,
    flow_bench,
    flow_insert_bench,
    engine_bench,
    marks_bench
);
criterion_main!(benches);
