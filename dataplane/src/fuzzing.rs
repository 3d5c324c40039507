//! Entry points for the fuzz targets in `fuzz/`, kept here so that they
//! compile with the crate and a unit test runs them over the committed seed
//! corpora (cargo-fuzz itself needs a nightly toolchain; these do not).
//!
//! Each function takes untrusted bytes and must return without panicking,
//! whatever they hold.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::{Arc, OnceLock};

use crate::config::Config;
use crate::engine::classify::classify;
use crate::engine::decoy::service;
use crate::engine::decoy::tls::TlsStore;
use crate::engine::flow::Timeouts;
use crate::engine::persona::{Persona, PersonaKind, PersonaMaker};
use crate::engine::{Engine, EngineConfig};
use crate::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet,
    Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// The fuzzing engine's configuration: half of each family is protected, a
/// half of that routed dark (every frame to it reaches the decoy code:
/// marks, cookies, services) and the rest claimed at the first request
/// (claims, yields). Sides go by the gateway's MAC, so the input chooses
/// its side, and sources from both halves reach both side rules.
const FUZZ_CONFIG: &str = r#"
[port]
backend = "pcap"
rx = "unused.pcap"
[flows]
capacity = 64
seed = 1
[deception]
protected = ["0.0.0.0/1", "::/1"]
dark_routes = ["0.0.0.0/2", "::/2"]
gateways = [{ address = "10.0.0.1", mac = "02:00:00:00:00:01" }]
inside_routes = ["192.168.0.0/16"]
claim_after = "0s"
exclude = ["10.0.0.2"]
allow = ["192.0.2.0/24"]
learning = "0s"
hold_off = "0s"
live_idle = "1s"
secret = "6261697477616c6c2066757a7a696e67207365637265742c206e6f7420757365"
live_map_slots = 1024
latch_capacity = 16
"#;

thread_local! {
    /// One small engine per fuzzing thread, reused across inputs so flows,
    /// latches and rate limits accumulate as they would in a worker.
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// A frame from the wire: classification and the engine (flow table, dark
/// space, decoy replies written in place, cookies, bites, the latch), then
/// the Ethernet view.
pub fn frame(data: &[u8]) {
    let _ = black_box(classify(data));
    let mut buf = data.to_vec();
    // The first two bytes of input drive the clock, so expiry paths run too.
    let now = data.get(..2).map_or(0, |b| {
        u64::from(u16::from_be_bytes([b[0], b[1]])) * 1_000_000_000
    });
    ENGINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let engine = slot.get_or_insert_with(|| match Config::parse(FUZZ_CONFIG, "fuzz") {
            Ok(config) => Engine::new(&config.runtime().engine),
            Err(_) => Engine::new(&EngineConfig {
                flow_capacity: 64,
                timeouts: Timeouts::default(),
                flow_seed: 1,
                deception: None,
                blocks: crate::engine::BlockConfig::default(),
                sever_blocked: false,
            }),
        });
        black_box(engine.process(&mut buf, now));
    });
    ethernet(data);
}

/// An Ethernet header (with or without an 802.1Q tag).
pub fn ethernet(data: &[u8]) {
    if let Ok(v) = EthernetFrame::new_checked(data) {
        let _ = black_box(EthernetRepr::parse(&v));
        black_box((v.vlan_tci(), v.payload()));
    }
}

/// An ARP packet.
pub fn arp(data: &[u8]) {
    if let Ok(v) = ArpPacket::new_checked(data) {
        let _ = black_box(ArpRepr::parse(&v));
    }
}

/// An IPv4 packet.
pub fn ipv4(data: &[u8]) {
    if let Ok(v) = Ipv4Packet::new_checked(data) {
        let _ = black_box(Ipv4Repr::parse(&v));
        black_box((v.options(), v.payload(), v.verify_checksum()));
    }
}

/// An IPv6 packet and its extension-header chain.
pub fn ipv6(data: &[u8]) {
    if let Ok(v) = Ipv6Packet::new_checked(data) {
        let _ = black_box(Ipv6Repr::parse(&v));
        let _ = black_box(v.upper_layer());
    }
}

/// A TCP segment and its options.
pub fn tcp(data: &[u8]) {
    if let Ok(v) = TcpPacket::new_checked(data) {
        let _ = black_box(TcpRepr::parse(&v));
        for o in v.options_iter() {
            let _ = black_box(o);
        }
    }
}

/// A UDP datagram.
pub fn udp(data: &[u8]) {
    if let Ok(v) = UdpPacket::new_checked(data) {
        let _ = black_box(UdpRepr::parse(&v));
    }
}

/// An ICMPv4 message.
pub fn icmpv4(data: &[u8]) {
    if let Ok(v) = Icmpv4Packet::new_checked(data) {
        let _ = black_box(Icmpv4Repr::parse(&v));
    }
}

/// An ICMPv6 message and its NDP options.
pub fn icmpv6(data: &[u8]) {
    if let Ok(v) = Icmpv6Packet::new_checked(data) {
        let _ = black_box(Icmpv6Repr::parse(&v));
        for o in v.ndp_options_iter() {
            let _ = black_box(o);
        }
    }
}

/// The ports `service` reaches, chosen by the input's first byte.
const SERVICE_PORTS: [u16; 16] = [
    21, 22, 23, 25, 80, 135, 139, 443, 445, 515, 554, 631, 3389, 8000, 8080, 9100,
];

thread_local! {
    /// A decoy of each persona family (in `PersonaKind::ALL` order).
    static DECOYS: Vec<Persona> = {
        let maker = PersonaMaker::new(&[0x66; 32]);
        PersonaKind::ALL
            .iter()
            .filter_map(|kind| {
                (0..65_536u32)
                    .map(|i| maker.persona(&std::net::Ipv4Addr::from(0x0a00_0000 + i).to_ipv6_mapped().octets()))
                    .find(|p| p.kind == *kind)
            })
            .collect()
    };
}

/// The decoys' TLS identities for fuzzing: one per family, made once.
fn fuzz_identities() -> &'static TlsStore {
    static STORE: OnceLock<Arc<TlsStore>> = OnceLock::new();
    STORE.get_or_init(|| TlsStore::made_now(&[0x66; 32], 1).unwrap_or_else(|_| TlsStore::off()))
}

/// What a decoy service says to the data of a verified connection: byte 0
/// picks the port and the persona family, byte 1 the bytes the decoy has
/// sent before (the acknowledged offset), the rest is the segment's data
/// (HTTP, TLS, SMB, DCE/RPC, NetBIOS, RTSP, LPD parsers).
pub fn service(data: &[u8]) {
    let (Some(&pick), Some(&sent), Some(payload)) = (data.first(), data.get(1), data.get(2..))
    else {
        return;
    };
    let port = SERVICE_PORTS[usize::from(pick) % SERVICE_PORTS.len()];
    DECOYS.with(|decoys| {
        if let Some(p) = decoys.get(usize::from(pick / 16) % decoys.len().max(1)) {
            let r = service::answer(
                p,
                port,
                payload,
                u32::from(sent),
                1_767_225_600,
                fuzz_identities(),
            );
            black_box(r.map(|r| r.payload().len()));
            black_box(service::banner(p, port).map(|r| r.payload().len()));
        }
    });
}

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target, by name, as `fuzz/` names them.
pub const TARGETS: [(&str, Target); 11] = [
    ("frame", frame),
    ("ethernet", ethernet),
    ("arp", arp),
    ("ipv4", ipv4),
    ("ipv6", ipv6),
    ("tcp", tcp),
    ("udp", udp),
    ("icmpv4", icmpv4),
    ("icmpv6", icmpv6),
    ("config", config),
    ("service", service),
];

/// A configuration file: any bytes, valid UTF-8 or not.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        black_box(Config::parse(text, "fuzz.toml").is_ok());
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
    fn the_frame_target_runs_with_deception_on() {
        let config = Config::parse(FUZZ_CONFIG, "fuzz").unwrap();
        assert!(config.runtime().engine.deception.is_some());
    }

    #[test]
    fn every_target_runs_over_its_seed_corpus_and_every_prefix() {
        for (name, target) in TARGETS {
            for seed in corpus(name) {
                for len in 0..=seed.len() {
                    target(&seed[..len]);
                }
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
