//! Blocklist lookups at full size (criterion; `cargo bench --bench blocklist`):
//! 1,000,000 exact sources and 100,000 prefixes, half IPv4 and half IPv6,
//! next to general-purpose structures loaded with the same entries and
//! measured in the same run:
//!
//! - exact hits: ours against a hashbrown set with the standard library's
//!   hasher (`RandomState`, SipHash-1-3) holding the same 1M exact
//!   addresses, as the same 16 bytes (IPv4-mapped for IPv4);
//! - prefix hits (addresses inside a blocked /24 or /48, not blocked
//!   exactly) and misses: ours against two longest-prefix-match crates,
//!   `ip_network_table` (a tree bitmap) and `prefix-trie`, each holding all
//!   1.1M entries (exact ones as /32 and /128);
//! - ours a burst at a time, as the workers look sources up: the summary
//!   words of 32 sources prefetched, then the table lines where a block
//!   may be, then the lookups.
//!
//! Probes are drawn from two million addresses per kind, visited 4,096 at a
//! time, so lookups miss the caches as they do on a live link. The
//! blocklist's memory is printed before the run (issue 7: at most 64 MiB).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::hash_map::RandomState;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use baitwall_dataplane::engine::blocklist::{Blocklist, Standing};
use baitwall_dataplane::engine::space::Prefix;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{Ipv4Net, Ipv6Net};

/// Probes per call of a benchmark's routine.
const BATCH: usize = 4096;
/// Sources prefetched ahead when ours runs a burst at a time.
const BURST: usize = 32;
/// Distinct probe addresses per kind.
const PROBES: usize = 1 << 21;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn v4(&mut self) -> u32 {
        self.next() as u32
    }

    fn v6(&mut self) -> u128 {
        // Global unicast (2000::/3), never IPv4-mapped.
        ((u128::from(self.next()) << 64) | u128::from(self.next())) & !(0xe000u128 << 112)
            | (0x2000u128 << 112)
    }
}

fn mapped(a: u32) -> [u8; 16] {
    Ipv4Addr::from(a).to_ipv6_mapped().octets()
}

/// Everything loaded, and the probes of each kind.
struct Fixture {
    ours: Blocklist,
    exact: hashbrown::HashSet<[u8; 16], RandomState>,
    tree: ip_network_table::IpNetworkTable<()>,
    trie_v4: prefix_trie::PrefixMap<Ipv4Net, ()>,
    trie_v6: prefix_trie::PrefixMap<Ipv6Net, ()>,
    /// (exact hits, prefix hits, misses) for IPv4 and for IPv6.
    v4: [Vec<u32>; 3],
    v6: [Vec<u128>; 3],
}

fn fixture() -> Fixture {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut f = Fixture {
        ours: Blocklist::new(1_000_000, 100_000),
        exact: hashbrown::HashSet::with_hasher(RandomState::new()),
        tree: ip_network_table::IpNetworkTable::new(),
        trie_v4: prefix_trie::PrefixMap::new(),
        trie_v6: prefix_trie::PrefixMap::new(),
        v4: Default::default(),
        v6: Default::default(),
    };
    let (mut nets_v4, mut nets_v6) = (Vec::new(), Vec::new());
    let (mut exact_v4, mut exact_v6) = (Vec::new(), Vec::new());
    for _ in 0..500_000 {
        let (a, b) = (rng.v4(), rng.v6());
        f.ours.block(Prefix::host(mapped(a)), 0).unwrap();
        f.ours.block(Prefix::host(b.to_be_bytes()), 0).unwrap();
        f.exact.insert(mapped(a));
        f.exact.insert(b.to_be_bytes());
        exact_v4.push(a);
        exact_v6.push(b);
        let (a, b) = (Ipv4Addr::from(a), Ipv6Addr::from(b));
        f.tree
            .insert(ip_network::Ipv4Network::new(a, 32).unwrap(), ());
        f.tree
            .insert(ip_network::Ipv6Network::new(b, 128).unwrap(), ());
        f.trie_v4.insert(Ipv4Net::new(a, 32).unwrap(), ());
        f.trie_v6.insert(Ipv6Net::new(b, 128).unwrap(), ());
    }
    for _ in 0..50_000 {
        let (a, b) = (rng.v4() & !0xff, rng.v6() & !((1u128 << 80) - 1));
        f.ours
            .block(Prefix::from_parts(u128::from_be_bytes(mapped(a)), 120), 0)
            .unwrap();
        f.ours.block(Prefix::from_parts(b, 48), 0).unwrap();
        nets_v4.push(a);
        nets_v6.push(b);
        let (a, b) = (Ipv4Addr::from(a), Ipv6Addr::from(b));
        f.tree
            .insert(ip_network::Ipv4Network::new(a, 24).unwrap(), ());
        f.tree
            .insert(ip_network::Ipv6Network::new(b, 48).unwrap(), ());
        f.trie_v4.insert(Ipv4Net::new(a, 24).unwrap(), ());
        f.trie_v6.insert(Ipv6Net::new(b, 48).unwrap(), ());
    }
    let pick = |rng: &mut Rng, n: usize| rng.next() as usize % n;
    for _ in 0..PROBES {
        f.v4[0].push(exact_v4[pick(&mut rng, exact_v4.len())]);
        f.v4[1].push(nets_v4[pick(&mut rng, nets_v4.len())] | (rng.v4() & 0xff));
        f.v4[2].push(rng.v4());
        f.v6[0].push(exact_v6[pick(&mut rng, exact_v6.len())]);
        f.v6[1].push(nets_v6[pick(&mut rng, nets_v6.len())] | (rng.v6() & ((1u128 << 80) - 1)));
        f.v6[2].push(rng.v6());
    }
    f
}

/// The next BATCH probes of `probes` (a rotating window).
fn window<'a, T: Copy>(probes: &'a [T], pos: &mut usize) -> &'a [T] {
    *pos = (*pos + BATCH) % (probes.len() - BATCH);
    &probes[*pos..*pos + BATCH]
}

fn ours_one(bl: &Blocklist, batch: &[[u8; 16]]) -> usize {
    batch
        .iter()
        .filter(|a| bl.standing(black_box(a), 10) != Standing::Clear)
        .count()
}

fn ours_burst(bl: &Blocklist, batch: &[[u8; 16]]) -> usize {
    batch
        .chunks(BURST)
        .map(|burst| {
            // The engine's two passes: the summary, then the table's lines
            // where it may hold a block.
            for a in burst {
                bl.prefetch(a);
            }
            for a in burst {
                bl.prefetch_entries(a);
            }
            ours_one(bl, burst)
        })
        .sum()
}

/// The benchmarks of one family; `addr` turns a probe into ours' 16 bytes,
/// `tree`/`trie` look it up in the general-purpose structures.
fn family<T: Copy>(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    f: &Fixture,
    probes: &[Vec<T>; 3],
    addr: impl Fn(T) -> [u8; 16],
    exact: impl Fn(T) -> bool,
    tree: impl Fn(T) -> bool,
    trie: impl Fn(T) -> bool,
) {
    let ours_probes: Vec<Vec<[u8; 16]>> = probes
        .iter()
        .map(|p| p.iter().map(|&a| addr(a)).collect())
        .collect();
    for (kind, i) in [("exact", 0), ("prefix", 1), ("miss", 2)] {
        let mut pos = 0;
        g.bench_function(format!("{kind}/ours"), |b| {
            b.iter(|| ours_one(&f.ours, window(&ours_probes[i], &mut pos)))
        });
        let mut pos = 0;
        g.bench_function(format!("{kind}/ours_burst"), |b| {
            b.iter(|| ours_burst(&f.ours, window(&ours_probes[i], &mut pos)))
        });
        if kind == "exact" {
            let mut pos = 0;
            g.bench_function(format!("{kind}/hashbrown_std_hasher"), |b| {
                b.iter(|| {
                    let w = window(&probes[i], &mut pos);
                    w.iter().filter(|&&a| exact(black_box(a))).count()
                })
            });
            continue;
        }
        let mut pos = 0;
        g.bench_function(format!("{kind}/ip_network_table"), |b| {
            b.iter(|| {
                let w = window(&probes[i], &mut pos);
                w.iter().filter(|&&a| tree(black_box(a))).count()
            })
        });
        let mut pos = 0;
        g.bench_function(format!("{kind}/prefix_trie"), |b| {
            b.iter(|| {
                let w = window(&probes[i], &mut pos);
                w.iter().filter(|&&a| trie(black_box(a))).count()
            })
        });
    }
}

fn blocklist_bench(c: &mut Criterion) {
    let f = fixture();
    println!(
        "blocklist: 1,000,000 exact + 100,000 prefixes, {:.1} MiB (target: <= 64 MiB)",
        f.ours.memory() as f64 / (1 << 20) as f64
    );
    let mut g = c.benchmark_group("blocklist_v4");
    g.throughput(Throughput::Elements(BATCH as u64));
    family(
        &mut g,
        &f,
        &f.v4,
        mapped,
        |a| f.exact.contains(&mapped(a)),
        |a| {
            f.tree
                .longest_match(IpAddr::V4(Ipv4Addr::from(a)))
                .is_some()
        },
        |a| {
            f.trie_v4
                .get_lpm(&Ipv4Net::new(Ipv4Addr::from(a), 32).unwrap_or_default())
                .is_some()
        },
    );
    g.finish();
    let mut g = c.benchmark_group("blocklist_v6");
    g.throughput(Throughput::Elements(BATCH as u64));
    family(
        &mut g,
        &f,
        &f.v6,
        u128::to_be_bytes,
        |a| f.exact.contains(&a.to_be_bytes()),
        |a| {
            f.tree
                .longest_match(IpAddr::V6(Ipv6Addr::from(a)))
                .is_some()
        },
        |a| {
            f.trie_v6
                .get_lpm(&Ipv6Net::new(Ipv6Addr::from(a), 128).unwrap_or_default())
                .is_some()
        },
    );
    g.finish();
}

criterion_group!(benches, blocklist_bench);
criterion_main!(benches);
