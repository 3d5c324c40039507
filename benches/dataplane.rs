//! Per-packet costs of the dataplane core, each next to a baseline measured
//! in the same run (criterion; `cargo bench --bench dataplane`).
//!
//! - `classify`: our one-pass classification of an IPv4 TCP SYN, next to
//!   etherparse's zero-copy `SlicedPacket` on the same frame, and next to B0
//!   (read the EtherType and the IPv4 source address: the floor).
//! - `rss`: the software Toeplitz hash of a frame.
//! - `flow_track`: one packet through the flow table with 1k and 1M live
//!   flows (1M: the table is far larger than the caches, so most lookups miss).
//! - `engine`: classify + flow tracking, the whole per-packet engine today.

use std::hint::black_box;
use std::net::Ipv4Addr;

use baitwall_dataplane::engine::classify::classify;
use baitwall_dataplane::engine::flow::{FlowKey, FlowTable, Timeouts};
use baitwall_dataplane::engine::{Engine, EngineConfig};
use baitwall_dataplane::rss::Rss;
use baitwall_dataplane::synth::{self, Endpoint, Flags};
use baitwall_dataplane::wire::TcpFlags;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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
    for flows in [1_000u32, 1_000_000] {
        let mut table = FlowTable::new(flows as usize * 2, Timeouts::default(), 7);
        let keys: Vec<(FlowKey, bool)> = (0..flows)
            .map(|i| {
                let src = Ipv4Addr::from(0x0a00_0000 | i).to_ipv6_mapped().octets();
                let dst = Ipv4Addr::new(198, 51, 100, 10).to_ipv6_mapped().octets();
                FlowKey::new(4, 6, src, 1024 + (i % 50000) as u16, dst, 80)
            })
            .collect();
        for (k, lo) in &keys {
            table.track(k, *lo, Some(TcpFlags::ACK), 60, 0);
        }
        // Visit the flows in a scattered order so the 1M case misses the
        // caches; the keys themselves are read in sequence, as they would come
        // from packets already in cache.
        let order: Vec<(FlowKey, bool)> = (0..keys.len())
            .map(|i| keys[(i * 7919) % keys.len()])
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
    }
    g.finish();
}

fn engine_bench(c: &mut Criterion) {
    let frames = syn_frames(4096);
    let mut engine = Engine::new(&EngineConfig {
        flow_capacity: 1 << 16,
        ..EngineConfig::default()
    });
    let mut bufs = frames.clone();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(bufs.len() as u64));
    g.bench_function("process_syn_4k_flows", |b| {
        b.iter(|| {
            for f in bufs.iter_mut() {
                black_box(engine.process(f, 0));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, classify_bench, rss_bench, flow_bench, engine_bench);
criterion_main!(benches);
