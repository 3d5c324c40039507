//! Entry points for the fuzz targets in `fuzz/`, kept here so that they
//! compile with the crate and a unit test runs them over the committed seed
//! corpora (cargo-fuzz itself needs a nightly toolchain; these do not).
//!
//! Each function takes untrusted bytes and must return without panicking,
//! whatever they hold.

use std::cell::RefCell;

use crate::config::Config;
use crate::engine::classify::classify;
use crate::engine::flow::Timeouts;
use crate::engine::{Engine, EngineConfig};
use crate::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet,
    Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

thread_local! {
    /// One small engine per fuzzing thread, reused across inputs so flows
    /// accumulate, evict and expire as they would in a worker.
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::new(&EngineConfig {
        flow_capacity: 64,
        timeouts: Timeouts::default(),
        flow_seed: 1,
    }));
}

/// A frame from the wire: classification, the engine, and every header view
/// and parser on the bytes as they are.
pub fn frame(data: &[u8]) {
    let _ = classify(data);
    let mut buf = data.to_vec();
    // The first two bytes of input drive the clock, so expiry paths run too.
    let now = data
        .get(..2)
        .map_or(0, |b| u32::from(u16::from_be_bytes([b[0], b[1]])) * 1000);
    ENGINE.with(|engine| {
        let _ = engine.borrow_mut().process(&mut buf, now);
    });
    headers(data);
}

/// Every view's checked constructor and `Repr::parse` on `data`.
pub fn headers(data: &[u8]) {
    if let Ok(v) = EthernetFrame::new_checked(data) {
        let _ = EthernetRepr::parse(&v);
        let _ = v.payload();
    }
    if let Ok(v) = ArpPacket::new_checked(data) {
        let _ = ArpRepr::parse(&v);
    }
    if let Ok(v) = Ipv4Packet::new_checked(data) {
        let _ = Ipv4Repr::parse(&v);
        let _ = (v.options(), v.payload(), v.verify_checksum());
    }
    if let Ok(v) = Ipv6Packet::new_checked(data) {
        let _ = Ipv6Repr::parse(&v);
        let _ = v.upper_layer();
    }
    if let Ok(v) = TcpPacket::new_checked(data) {
        let _ = TcpRepr::parse(&v);
        for _ in v.options_iter() {}
    }
    if let Ok(v) = UdpPacket::new_checked(data) {
        let _ = UdpRepr::parse(&v);
    }
    if let Ok(v) = Icmpv4Packet::new_checked(data) {
        let _ = Icmpv4Repr::parse(&v);
    }
    if let Ok(v) = Icmpv6Packet::new_checked(data) {
        let _ = Icmpv6Repr::parse(&v);
        for _ in v.ndp_options_iter() {}
    }
}

/// A configuration file: any bytes, valid UTF-8 or not.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, "fuzz.toml");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::path::Path;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
        seeds
    }

    #[test]
    fn frame_target_runs_over_its_seed_corpus_and_every_prefix() {
        for seed in corpus("frame") {
            for len in 0..=seed.len() {
                frame(&seed[..len]);
            }
        }
    }

    #[test]
    fn config_target_runs_over_its_seed_corpus() {
        let seeds = corpus("config");
        let valid = seeds
            .iter()
            .filter(|s| Config::parse(std::str::from_utf8(s).unwrap_or(""), "t").is_ok())
            .count();
        assert!(
            valid > 0,
            "the corpus should hold at least one valid config"
        );
        for seed in seeds {
            config(&seed);
        }
    }
}
