//! Golden verdict tables for deception: one frame in, the verdict, and what
//! the reply frame must say, for every mark and bite kind and for the
//! negatives (forged ACKs, spoofed sources, live and quiet hosts, the
//! allowlist, expired and previous cookie keys). Replies are parsed back
//! with etherparse, which shares no code with our writers, and their
//! checksums are checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::bite::{Action, BiteKind, Policy, ProofTable};
use super::cookie::{CookieJar, CookieTuple};
use super::deceive::{DeceptionShared, MarkKind};
use super::event::{Event, EventKind};
use super::limit::{RateConfig, SweepConfig};
use super::persona::{Persona, PersonaKind, PersonaMaker};
use super::side::SideRules;
use super::space::{AddressSpace, LiveMap, Prefix, PrefixSet, SpaceTiming};
use super::{DropReason, Engine, EngineConfig, Verdict};
use crate::synth::{self, Endpoint, Flags};

const SECRET: [u8; 32] = [0x42; 32];
const ROTATION_MS: u64 = 60_000;
/// 2026-01-01T00:10:00Z, in nanoseconds.
const T0: u64 = 1_767_226_200 * 1_000_000_000;
const SEC: u64 = 1_000_000_000;
const ROUTER: [u8; 6] = [2, 0, 0x5e, 0, 0, 0xfe];

fn net(s: &str) -> Prefix {
    Prefix::from_net(s.parse().unwrap())
}

fn shared(timing: SpaceTiming, rates: RateConfig) -> Arc<DeceptionShared> {
    shared_sampling(timing, rates, 0)
}

fn shared_sampling(
    timing: SpaceTiming,
    rates: RateConfig,
    mark_sample: u32,
) -> Arc<DeceptionShared> {
    shared_full(timing, rates, mark_sample, Vec::new())
}

/// The fixture's shared state; `gateway_macs`: sides by MAC (one-arm, tap).
fn shared_full(
    timing: SpaceTiming,
    rates: RateConfig,
    mark_sample: u32,
    gateway_macs: Vec<[u8; 6]>,
) -> Arc<DeceptionShared> {
    Arc::new(DeceptionShared {
        space: AddressSpace {
            // The /24 and /64 the older tables use are routed to the
            // appliance as a whole; 198.51.101.0/24 and 2001:db8:101::/64
            // are a LAN behind the router 198.51.101.1, where addresses are
            // claimed (the side and claim tables).
            protected: PrefixSet::new([
                net("198.51.100.0/24"),
                net("2001:db8:100::/64"),
                net(LAN4),
                net(LAN6),
            ]),
            excluded: PrefixSet::new([
                net("198.51.100.1/32"),
                net("198.51.101.1/32"),
                net("2001:db8:101::1/128"),
            ]),
            static_live: PrefixSet::new([net("198.51.100.10/32")]),
            dark_routes: PrefixSet::new([net("198.51.100.0/24"), net("2001:db8:100::/64")]),
            live: LiveMap::new(1 << 16, 1),
            timing,
            occupancy: super::space::Occupancy::FULL,
        },
        sides: sides(gateway_macs),
        allow: PrefixSet::new([net("203.0.113.200/32"), net("2001:db8:200::200/128")]),
        policy: Policy::default(),
        personas: PersonaMaker::new(&SECRET),
        secret: SECRET,
        cookie_rotation_ms: ROTATION_MS,
        proofs: ProofTable::new(1 << 12, 2),
        tickets: super::ticket::WeakTickets::new(1 << 16, (11, 12)),
        proof_ttl_min: 10,
        udp_services: vec![53, 123],
        tls: tls_store(),
        rates,
        sweep: SweepConfig {
            decoys: 16,
            window_s: 60,
        },
        mark_sample,
        capture: None,
    })
}

/// The fixtures' TLS identities, made once for every test (RSA key
/// generation takes a while).
fn tls_store() -> Arc<super::decoy::tls::TlsStore> {
    static STORE: std::sync::OnceLock<Arc<super::decoy::tls::TlsStore>> =
        std::sync::OnceLock::new();
    STORE
        .get_or_init(|| super::decoy::tls::TlsStore::made_now(&SECRET, 1).unwrap())
        .clone()
}

const LAN4: &str = "198.51.101.0/24";
const LAN6: &str = "2001:db8:101::/64";

fn sides(gateway_macs: Vec<[u8; 6]>) -> SideRules {
    SideRules {
        gateways: PrefixSet::new([net("198.51.101.1/32"), net("2001:db8:101::1/128")]),
        gateway_macs,
        inside_routes: PrefixSet::new([net("10.20.0.0/16")]),
    }
}

fn no_wait() -> SpaceTiming {
    SpaceTiming {
        learning_s: 0,
        hold_off_s: 0,
        live_idle_s: 600,
        claim_after_ds: 30,
    }
}

fn engine_with(timing: SpaceTiming, rates: RateConfig) -> Engine {
    Engine::new(&EngineConfig {
        flow_capacity: 4096,
        deception: Some(shared(timing, rates)),
        ..EngineConfig::default()
    })
}

fn engine() -> Engine {
    engine_with(no_wait(), RateConfig::default())
}

fn v4(s: &str) -> [u8; 16] {
    s.parse::<Ipv4Addr>().unwrap().to_ipv6_mapped().octets()
}

fn ip(a: [u8; 16]) -> IpAddr {
    IpAddr::from(a).to_canonical()
}

fn persona(addr: [u8; 16]) -> Persona {
    PersonaMaker::new(&SECRET).persona(&addr)
}

/// The first dark address of 198.51.100.0/24 whose persona has `ports` open.
fn decoy_with(ports: &[u16]) -> Endpoint {
    for last in 20..=250u8 {
        let a = v4(&format!("198.51.100.{last}"));
        let p = persona(a);
        if ports.iter().all(|port| p.is_open(*port)) {
            return Endpoint::new(p.mac.0, ip(a), ports[0]);
        }
    }
    panic!("no decoy with ports {ports:?}");
}

fn client(last: u8, port: u16) -> Endpoint {
    Endpoint::new(ROUTER, Ipv4Addr::new(203, 0, 113, last), port)
}

fn cookie_isn(c: &Endpoint, d: &Endpoint, at_ns: u64) -> u32 {
    CookieJar::new(&SECRET, ROTATION_MS, at_ns / 1_000_000).isn(&CookieTuple {
        src: match c.ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        },
        dst: match d.ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        },
        src_port: c.port,
        dst_port: d.port,
    })
}

fn events(e: &mut Engine) -> Vec<Event> {
    let mut v = Vec::new();
    e.drain_events(|ev| v.push(ev));
    v
}

fn bites(evs: &[Event]) -> Vec<(BiteKind, Action)> {
    evs.iter()
        .filter_map(|e| match e.kind {
            EventKind::Bite { kind, action, .. } => Some((kind, action)),
            _ => None,
        })
        .collect()
}

/// A reply parsed back: (src ip, dst ip, tcp view) with checksums checked.
struct TcpReply {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    syn: bool,
    ack_flag: bool,
    rst: bool,
    fin: bool,
    window: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn tcp_reply(frame: &[u8]) -> TcpReply {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let eth = match p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        other => panic!("{other:?}"),
    };
    let (src, dst, ttl) = match &p.net {
        Some(NetSlice::Ipv4(v)) => {
            let h = v.header();
            assert_eq!(
                h.to_header().calc_header_checksum(),
                h.header_checksum(),
                "IPv4 checksum"
            );
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                h.ttl(),
            )
        }
        Some(NetSlice::Ipv6(v)) => {
            let h = v.header();
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                h.hop_limit(),
            )
        }
        other => panic!("{other:?}"),
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    let expected = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => t.calc_checksum_ipv4(s.octets(), d.octets()).unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => t.calc_checksum_ipv6(s.octets(), d.octets()).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(expected, t.checksum(), "TCP checksum");
    TcpReply {
        src,
        dst,
        ttl,
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        sport: t.source_port(),
        dport: t.destination_port(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        ack_flag: t.ack(),
        rst: t.rst(),
        fin: t.fin(),
        window: t.window_size(),
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
    }
}

#[path = "golden_sides.rs"]
mod sides;

#[path = "golden_nmap.rs"]
mod nmap;

#[path = "golden_proofs.rs"]
mod proofs;

#[test]
fn syn_to_a_dark_open_port_gets_the_personas_syn_ack_with_a_cookie() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let c = client(5, 40000);
    let mut f = synth::tcp(&c, &d, Flags::SYN, 1000, 0, &[]);
    assert_eq!(e.process(&mut f, T0), Verdict::Reply);
    let r = tcp_reply(&f);
    let p = persona(match d.ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    });
    assert_eq!((r.src, r.dst), (d.ip, c.ip));
    assert_eq!((r.src_mac, r.dst_mac), (p.mac.0, ROUTER));
    assert_eq!((r.sport, r.dport), (80, 40000));
    assert!(r.syn && r.ack_flag && !r.rst);
    assert_eq!(r.ack, 1001);
    assert_eq!(r.seq, cookie_isn(&c, &d, T0));
    assert_eq!(r.ttl, p.stack.ttl);
    // The SYN offered only MSS (1460): the reply carries MSS and nothing
    // it did not offer.
    let offer = crate::engine::stack::Offer {
        mss: Some(1460),
        ..Default::default()
    };
    assert_eq!(r.window, p.stack.window_for(&offer));
    let mss = p.stack.mss_for(&offer);
    assert_eq!(&r.options[..4], &[2, 4, (mss >> 8) as u8, mss as u8]);
    assert!(r.options[4..].iter().all(|&b| b == 0 || b == 1));
    assert!(f.len() >= 60);
    assert_eq!(e.deception_counters().marks[MarkKind::SynAck as usize], 1);
    assert!(events(&mut e).is_empty(), "a bare SYN is never a bite");
}

/// Probes whose checksums fail get nothing from a decoy, as from a real
/// stack (nmap's `--badsum` tells a middlebox that answers them), and a
/// bite whose checksum fails latches nobody.
#[test]
fn bad_checksums_get_no_answer_and_bite_nobody() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let c = client(5, 40000);
    let syn = synth::tcp(&c, &d, Flags::SYN, 1000, 0, &[]);
    // The TCP checksum (bytes 50-51 of an untagged IPv4 frame), then the
    // IPv4 header checksum (bytes 24-25), each off by one bit.
    for at in [50usize, 24] {
        let mut bad = syn.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            e.process(&mut bad, T0),
            Verdict::Drop(DropReason::BadChecksum),
            "byte {at}"
        );
    }
    // The same SYN, intact, is answered; Ethernet padding past the IP
    // length is not part of any checksum.
    let mut padded = syn.clone();
    padded.extend_from_slice(&[0xaa; 8]);
    assert_eq!(e.process(&mut padded, T0), Verdict::Reply);
    // A data bite with a bad checksum: dropped, counted, nobody latched.
    let worm = client(66, 40002);
    let mut get = handshake_then_get(&mut e, &worm, &d);
    let last = get.len() - 1;
    get[last] ^= 0x20;
    assert_eq!(
        e.process(&mut get, T0 + SEC),
        Verdict::Drop(DropReason::BadChecksum)
    );
    assert!(
        !bites(&events(&mut e))
            .iter()
            .any(|(_, a)| *a == Action::Block),
        "a bad checksum never latches"
    );
    assert_eq!(
        e.blocklist().standing(&v4("203.0.113.66"), 0),
        crate::engine::blocklist::Standing::Clear
    );
}

#[test]
fn closed_ports_answer_rst_like_a_real_host() {
    let mut e = engine();
    let d = decoy_with(&[80]).port(12345);
    let c = client(5, 40000);
    let mut f = synth::tcp(&c, &d, Flags::SYN, 1000, 0, &[]);
    assert_eq!(e.process(&mut f, T0), Verdict::Reply);
    let r = tcp_reply(&f);
    assert!(r.rst && r.ack_flag && !r.syn);
    assert_eq!((r.seq, r.ack), (0, 1001));
    assert_eq!(r.window, 0);
}

#[test]
fn live_excluded_quiet_and_learning_addresses_are_forwarded() {
    let c = client(5, 40000);
    let cases: [(&str, SpaceTiming, Ipv4Addr, u64); 5] = [
        (
            "a configured live host",
            no_wait(),
            Ipv4Addr::new(198, 51, 100, 10),
            T0,
        ),
        (
            "an excluded address",
            no_wait(),
            Ipv4Addr::new(198, 51, 100, 1),
            T0,
        ),
        (
            "an unprotected address",
            no_wait(),
            Ipv4Addr::new(192, 0, 2, 1),
            T0,
        ),
        (
            "during the learning period",
            SpaceTiming {
                learning_s: 60,
                hold_off_s: 0,
                live_idle_s: 600,
                claim_after_ds: 30,
            },
            Ipv4Addr::new(198, 51, 100, 30),
            T0 + 30 * SEC,
        ),
        (
            "a quiet address inside the hold-off",
            SpaceTiming {
                learning_s: 0,
                hold_off_s: 300,
                live_idle_s: 600,
                claim_after_ds: 30,
            },
            Ipv4Addr::new(198, 51, 100, 30),
            T0 + 100 * SEC,
        ),
    ];
    for (what, timing, dst, at) in cases {
        let mut e = engine_with(timing, RateConfig::default());
        // The engine's clock starts at its first packet.
        let mut first = synth::tcp(
            &client(9, 1),
            &Endpoint::new(ROUTER, Ipv4Addr::new(192, 0, 2, 9), 1),
            Flags::SYN,
            1,
            0,
            &[],
        );
        assert_eq!(e.process(&mut first, T0), Verdict::Forward);
        let d = Endpoint::new([2, 0, 0, 0, 0, 9], dst, 80);
        let mut f = synth::tcp(&c, &d, Flags::SYN, 1, 0, &[]);
        let before = f.clone();
        assert_eq!(e.process(&mut f, at), Verdict::Forward, "{what}");
        assert_eq!(f, before, "{what}: the frame is untouched");
    }
}

#[test]
fn a_host_that_sends_is_learned_live_and_never_decoyed() {
    let mut e = engine();
    let host = Endpoint::new([2, 0, 0, 0, 1, 30], Ipv4Addr::new(198, 51, 100, 30), 22);
    let c = client(5, 40000);
    let mut out = synth::tcp(&host, &c, Flags::SYN_ACK, 7, 8, &[]);
    assert_eq!(e.process(&mut out, T0), Verdict::Forward);
    let mut f = synth::tcp(&c, &host, Flags::SYN, 1, 0, &[]);
    assert_eq!(e.process(&mut f, T0 + SEC), Verdict::Forward);
}

/// Drives a full connection: SYN, then ACK with the cookie from the SYN-ACK.
fn handshake(e: &mut Engine, c: &Endpoint, d: &Endpoint, at: u64) -> (Verdict, Vec<u8>, u32) {
    let mut syn = synth::tcp(c, d, Flags::SYN, 5000, 0, &[]);
    assert_eq!(e.process(&mut syn, at), Verdict::Reply);
    let isn = tcp_reply(&syn).seq;
    let mut ack = synth::tcp(c, d, Flags::ACK, 5001, isn.wrapping_add(1), &[]);
    let v = e.process(&mut ack, at + SEC / 10);
    (v, ack, isn)
}

/// `worm`'s handshake with `d` at T0, and the GET a worm sends next (not
/// yet processed).
fn handshake_then_get(e: &mut Engine, worm: &Endpoint, d: &Endpoint) -> Vec<u8> {
    let (_, _, isn) = handshake(e, worm, d, T0);
    synth::tcp(
        worm,
        d,
        Flags::PSH_ACK,
        5001,
        isn.wrapping_add(1),
        b"GET / HTTP/1.1\r\n\r\n",
    )
}

#[test]
fn handshake_bite_alerts_and_a_server_first_port_sends_its_banner() {
    let mut e = engine();
    let d = decoy_with(&[22]);
    let c = client(5, 40001);
    let (v, reply, isn) = handshake(&mut e, &c, &d, T0);
    assert_eq!(v, Verdict::Reply);
    let r = tcp_reply(&reply);
    assert_eq!((r.seq, r.ack), (isn.wrapping_add(1), 5001));
    assert!(
        r.payload.starts_with(b"SSH-2.0-"),
        "{:?}",
        String::from_utf8_lossy(&r.payload)
    );
    assert_eq!(
        bites(&events(&mut e)),
        vec![(BiteKind::Handshake, Action::Alert)]
    );
    assert_eq!(e.latched(), Vec::<[u8; 16]>::new());
}

#[test]
fn data_bite_latches_and_every_later_packet_is_dropped() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let worm = client(66, 40002);
    let mut get = handshake_then_get(&mut e, &worm, &d);
    assert_eq!(
        e.process(&mut get, T0 + SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    let evs = bites(&events(&mut e));
    assert_eq!(
        evs,
        vec![
            (BiteKind::Handshake, Action::Alert),
            (BiteKind::Data, Action::Block)
        ]
    );
    assert_eq!(e.latched(), vec![v4("203.0.113.66")]);
    // Everything from the worm is dropped now, even to live hosts.
    let live = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(198, 51, 100, 10), 443);
    let mut later = synth::tcp(&worm, &live, Flags::SYN, 1, 0, &[]);
    assert_eq!(
        e.process(&mut later, T0 + 2 * SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    // Others are untouched.
    let mut benign = synth::tcp(&client(7, 1234), &live, Flags::SYN, 1, 0, &[]);
    assert_eq!(e.process(&mut benign, T0 + 2 * SEC), Verdict::Forward);
}

#[test]
fn port_bite_is_slappers_80_then_443() {
    let mut e = engine();
    let d = decoy_with(&[80, 443]);
    let worm = client(66, 40003);
    let (v, _, _) = handshake(&mut e, &worm, &d, T0);
    assert_eq!(
        v,
        Verdict::Drop(DropReason::ToDecoy),
        "a bare ACK on port 80 needs no answer"
    );
    let (v, _, _) = handshake(&mut e, &worm.port(40004), &d.port(443), T0 + 2 * SEC);
    assert_eq!(v, Verdict::Drop(DropReason::Blocked));
    assert_eq!(
        bites(&events(&mut e)),
        vec![
            (BiteKind::Handshake, Action::Alert),
            (BiteKind::Port, Action::Block)
        ]
    );
}

#[test]
fn a_forged_ack_with_a_wrong_cookie_is_reset_and_never_a_bite() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let c = client(5, 40005);
    let mut syn = synth::tcp(&c, &d, Flags::SYN, 5000, 0, &[]);
    e.process(&mut syn, T0);
    let isn = tcp_reply(&syn).seq;
    for wrong in [isn, isn.wrapping_add(5000), isn ^ 0x8000_0000, 0, 1] {
        let mut ack = synth::tcp(
            &c,
            &d,
            Flags::PSH_ACK,
            5001,
            wrong,
            b"GET / HTTP/1.0\r\n\r\n",
        );
        assert_eq!(e.process(&mut ack, T0 + SEC), Verdict::Reply);
        let r = tcp_reply(&ack);
        assert!(r.rst && !r.ack_flag);
        assert_eq!(r.seq, wrong);
    }
    assert!(bites(&events(&mut e)).is_empty());
    assert!(e.latched().is_empty());
    assert_eq!(e.deception_counters().bad_cookies, 5);
}

#[test]
fn spoofed_syns_from_a_live_clients_address_never_block_it() {
    let mut e = engine();
    // 20 decoys, two ports each, from the address of a real client.
    let victim = client(10, 0);
    let mut sent = 0;
    for last in 20..=200u8 {
        let a = v4(&format!("198.51.100.{last}"));
        let d = Endpoint::new(persona(a).mac.0, ip(a), 0);
        for port in [80, 443] {
            let mut f = synth::tcp(
                &victim.port(30000 + u16::from(last)),
                &d.port(port),
                Flags::SYN,
                1,
                0,
                &[],
            );
            assert_eq!(e.process(&mut f, T0), Verdict::Reply);
            // The spoofer never sees the SYN-ACK; its blind ACK guesses.
            let mut ack = synth::tcp(
                &victim.port(30000 + u16::from(last)),
                &d.port(port),
                Flags::ACK,
                2,
                12345,
                &[],
            );
            e.process(&mut ack, T0 + SEC);
        }
        sent += 1;
        if sent == 20 {
            break;
        }
    }
    let evs = events(&mut e);
    assert!(
        bites(&evs).is_empty(),
        "no bite from spoofed traffic: {evs:?}"
    );
    assert!(
        evs.iter()
            .any(|ev| matches!(ev.kind, EventKind::Sweep { .. })),
        "the sweep is reported"
    );
    assert!(e.latched().is_empty());
    // The real client's own traffic still flows.
    let live = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(198, 51, 100, 10), 80);
    let mut f = synth::tcp(&victim.port(5555), &live, Flags::SYN, 1, 0, &[]);
    assert_eq!(e.process(&mut f, T0 + 2 * SEC), Verdict::Forward);
}

#[test]
fn an_allowlisted_biter_is_reported_not_blocked_and_gets_an_answer() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let scanner = client(200, 40006);
    let (_, _, isn) = handshake(&mut e, &scanner, &d, T0);
    let mut get = synth::tcp(
        &scanner,
        &d,
        Flags::PSH_ACK,
        5001,
        isn.wrapping_add(1),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(e.process(&mut get, T0 + SEC), Verdict::Reply);
    let r = tcp_reply(&get);
    assert!(
        r.payload.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&r.payload)
    );
    assert!(r.fin);
    assert_eq!(r.ack, 5001 + 27);
    let evs = events(&mut e);
    assert!(evs.iter().any(|ev| matches!(
        ev.kind,
        EventKind::Bite {
            kind: BiteKind::Data,
            action: Action::Alert,
            allowlisted: true,
            strong: false,
        }
    )));
    assert!(e.latched().is_empty());
}

#[test]
fn cookies_of_the_previous_key_pass_and_older_ones_fail() {
    let d = decoy_with(&[80]);
    let c = client(5, 40007);
    // Previous epoch: accepted.
    let mut e = engine();
    let mut syn = synth::tcp(&c, &d, Flags::SYN, 5000, 0, &[]);
    e.process(&mut syn, T0);
    let isn = tcp_reply(&syn).seq;
    let mut ack = synth::tcp(&c, &d, Flags::ACK, 5001, isn.wrapping_add(1), &[]);
    e.process(&mut ack, T0 + 60 * SEC);
    assert_eq!(
        bites(&events(&mut e)),
        vec![(BiteKind::Handshake, Action::Alert)]
    );
    // Two rotations later: expired, reset, no bite.
    let mut e = engine();
    let mut syn = synth::tcp(&c, &d, Flags::SYN, 5000, 0, &[]);
    e.process(&mut syn, T0);
    let isn = tcp_reply(&syn).seq;
    let mut ack = synth::tcp(&c, &d, Flags::ACK, 5001, isn.wrapping_add(1), &[]);
    assert_eq!(e.process(&mut ack, T0 + 125 * SEC), Verdict::Reply);
    assert!(tcp_reply(&ack).rst);
    assert!(bites(&events(&mut e)).is_empty());
}

#[test]
fn data_after_a_banner_bites_but_a_guess_inside_the_window_does_not() {
    let mut e = engine();
    let d = decoy_with(&[22]);
    let c = client(5, 40009);
    let (_, banner, isn) = handshake(&mut e, &c, &d, T0);
    let banner_len = tcp_reply(&banner).payload.len() as u32;
    events(&mut e);
    // Acknowledging the banner exactly, with data: a data bite.
    let mut data = synth::tcp(
        &c,
        &d,
        Flags::PSH_ACK,
        5001,
        isn.wrapping_add(1 + banner_len),
        b"SSH-2.0-x\r\n",
    );
    assert_eq!(
        e.process(&mut data, T0 + SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    // Elsewhere inside the window the segment is answered, but is no bite.
    let mut e = engine();
    let c = client(6, 40010);
    let (_, _, isn) = handshake(&mut e, &c, &d, T0);
    events(&mut e);
    let mut off = synth::tcp(
        &c,
        &d,
        Flags::PSH_ACK,
        5001,
        isn.wrapping_add(1 + 500),
        b"hello",
    );
    assert_eq!(e.process(&mut off, T0 + SEC), Verdict::Reply);
    assert!(bites(&events(&mut e)).is_empty());
}

#[test]
fn fin_on_a_verified_connection_is_answered_with_fin() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let c = client(5, 40008);
    let (_, _, isn) = handshake(&mut e, &c, &d, T0);
    let mut fin = synth::tcp(&c, &d, Flags::FIN_ACK, 5001, isn.wrapping_add(1), &[]);
    assert_eq!(e.process(&mut fin, T0 + SEC), Verdict::Reply);
    let r = tcp_reply(&fin);
    assert!(r.fin && r.ack_flag);
    assert_eq!((r.seq, r.ack), (isn.wrapping_add(1), 5002));
    // Retransmitted, the same FIN gets the same answer.
    let mut again = synth::tcp(&c, &d, Flags::FIN_ACK, 5001, isn.wrapping_add(1), &[]);
    e.process(&mut again, T0 + 2 * SEC);
    assert_eq!(tcp_reply(&again).seq, r.seq);
}

#[test]
fn icmp_echo_to_a_dark_address_gets_the_decoys_reply() {
    for (dst, src) in [
        (
            IpAddr::from(Ipv4Addr::new(198, 51, 100, 77)),
            IpAddr::from(Ipv4Addr::new(203, 0, 113, 5)),
        ),
        (
            "2001:db8:100::77".parse::<IpAddr>().unwrap(),
            "2001:db8:ff::5".parse::<IpAddr>().unwrap(),
        ),
    ] {
        let mut e = engine();
        let c = Endpoint::new(ROUTER, src, 0x1234);
        let d = Endpoint::new([2, 0, 0, 0, 0, 1], dst, 0x1234);
        let mut f = synth::echo(&c, &d, 7, false, b"abcdefgh");
        assert_eq!(e.process(&mut f, T0), Verdict::Reply);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        match p.transport {
            Some(TransportSlice::Icmpv4(i)) => {
                assert_eq!(i.type_u8(), 0);
                assert_eq!(i.payload(), b"abcdefgh");
                assert_eq!(
                    i.header().checksum,
                    i.icmp_type().calc_checksum(i.payload())
                );
            }
            Some(TransportSlice::Icmpv6(i)) => {
                assert_eq!(i.type_u8(), 129);
                assert_eq!(i.payload(), b"abcdefgh");
                let Some(NetSlice::Ipv6(v6)) = &p.net else {
                    panic!()
                };
                let h = v6.header();
                assert_eq!(
                    i.header().checksum,
                    i.icmp_type()
                        .calc_checksum(
                            h.source_addr().octets(),
                            h.destination_addr().octets(),
                            i.payload()
                        )
                        .unwrap()
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_vacant_dark_address_is_silent_to_syn_ping_and_arp() {
    let mut sh = shared(no_wait(), RateConfig::default());
    let occupancy = super::space::Occupancy {
        per_mille: 500,
        key: 3,
    };
    Arc::get_mut(&mut sh).unwrap().space.occupancy = occupancy;
    let mut e = Engine::new(&EngineConfig {
        flow_capacity: 4096,
        deception: Some(sh),
        ..EngineConfig::default()
    });
    let pick = |vacant: bool| {
        (20..=250u8)
            .map(|last| Ipv4Addr::new(198, 51, 100, last))
            .find(|a| {
                occupancy.holds(&a.to_ipv6_mapped().octets()) != vacant && a.octets()[3] != 77
            })
            .unwrap()
    };
    let (vacant, occupied) = (pick(true), pick(false));
    let c = client(5, 40000);
    for (addr, answered) in [(vacant, false), (occupied, true)] {
        let mac = persona(addr.to_ipv6_mapped().octets()).mac.0;
        let d = Endpoint::new(mac, IpAddr::V4(addr), 80);
        let mut syn = synth::tcp(&c, &d, Flags::SYN, 1, 0, &[]);
        let mut arp = synth::arp(ROUTER, Ipv4Addr::new(198, 51, 100, 1), [0; 6], addr, false);
        let verdicts = [e.process(&mut syn, T0), e.process(&mut arp, T0)];
        if answered {
            assert_eq!(verdicts, [Verdict::Reply; 2], "{addr}");
        } else {
            assert!(!verdicts.contains(&Verdict::Reply), "{addr}: {verdicts:?}");
        }
    }
    assert_eq!(e.deception_counters().marks[MarkKind::SynAck as usize], 1);
}

#[test]
fn arp_and_ndp_for_dark_addresses_answer_with_the_decoys_mac() {
    let mut e = engine();
    let target = Ipv4Addr::new(198, 51, 100, 77);
    let mut f = synth::arp(
        ROUTER,
        Ipv4Addr::new(198, 51, 100, 1),
        [0; 6],
        target,
        false,
    );
    assert_eq!(e.process(&mut f, T0), Verdict::Reply);
    let mac = persona(target.to_ipv6_mapped().octets()).mac.0;
    assert_eq!(&f[0..6], &ROUTER);
    assert_eq!(&f[6..12], &mac);
    assert_eq!(&f[20..22], &[0, 2], "ARP reply");
    assert_eq!(&f[22..28], &mac);
    assert_eq!(&f[28..32], &target.octets());
    // A live host's address is left to the host.
    let mut live = synth::arp(
        ROUTER,
        Ipv4Addr::new(198, 51, 100, 1),
        [0; 6],
        Ipv4Addr::new(198, 51, 100, 10),
        false,
    );
    assert_eq!(e.process(&mut live, T0), Verdict::Forward);

    let dark6: Ipv6Addr = "2001:db8:100::77".parse().unwrap();
    let asker: Ipv6Addr = "2001:db8:100::1".parse().unwrap();
    let mut ns = neighbor_solicitation(asker, dark6);
    assert_eq!(e.process(&mut ns, T0), Verdict::Reply);
    let p = SlicedPacket::from_ethernet(&ns).unwrap();
    let Some(NetSlice::Ipv6(v6)) = &p.net else {
        panic!()
    };
    assert_eq!(v6.header().hop_limit(), 255);
    assert_eq!(v6.header().source_addr(), dark6);
    let Some(TransportSlice::Icmpv6(i)) = p.transport else {
        panic!()
    };
    assert_eq!(i.type_u8(), 136);
    let mac6 = persona(dark6.octets()).mac.0;
    assert_eq!(
        &i.payload()[16..20],
        &[2, 1, mac6[0], mac6[1]],
        "target link-layer address option"
    );
    // Duplicate address detection is never answered.
    let mut dad = neighbor_solicitation(Ipv6Addr::UNSPECIFIED, dark6);
    assert_eq!(e.process(&mut dad, T0), Verdict::Forward);
}

fn neighbor_solicitation(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    if !src.is_unspecified() {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&ROUTER);
    }
    let mut f = vec![0x33, 0x33, 0xff, t[13], t[14], t[15]];
    f.extend_from_slice(&ROUTER);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&group.octets());
    let l4 = f.len();
    f.extend_from_slice(&icmp);
    let mut view = crate::wire::Icmpv6Packet::new_unchecked(&mut f[l4..]);
    view.fill_checksum(&src, &group);
    f
}

/// A decoy of family `kind` in 198.51.100.0/24, on `port`.
fn decoy_of(kind: PersonaKind, port: u16) -> Endpoint {
    (20..=250u8)
        .map(|last| v4(&format!("198.51.100.{last}")))
        .find(|a| persona(*a).kind == kind)
        .map(|a| Endpoint::new(persona(a).mac.0, ip(a), port))
        .unwrap()
}

#[test]
fn udp_closed_ports_get_port_unreachable_and_dns_gets_refused() {
    let mut e = engine();
    let c = client(5, 53000);
    let d = decoy_of(PersonaKind::LinuxWeb, 9999);
    let mut f = synth::udp(&c, &d, b"hello?");
    let original_ip = f[14..14 + 20 + 8 + 6].to_vec();
    assert_eq!(e.process(&mut f, T0), Verdict::Reply);
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(TransportSlice::Icmpv4(i)) = p.transport else {
        panic!()
    };
    assert_eq!((i.type_u8(), i.code_u8()), (3, 3));
    assert_eq!(
        i.payload(),
        &original_ip[..],
        "the whole offending datagram is quoted"
    );
    assert_eq!(
        i.header().checksum,
        i.icmp_type().calc_checksum(i.payload())
    );

    let query = [
        0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
    ];
    // A Linux web server runs no DNS: port unreachable.
    let mut q = synth::udp(&c, &d.port(53), &query);
    assert_eq!(e.process(&mut q, T0), Verdict::Reply);
    let p = SlicedPacket::from_ethernet(&q).unwrap();
    assert!(matches!(p.transport, Some(TransportSlice::Icmpv4(_))));
    // The router does: REFUSED to an outsider.
    let router = decoy_of(PersonaKind::Router, 53);
    let mut q = synth::udp(&c, &router, &query);
    assert_eq!(e.process(&mut q, T0), Verdict::Reply);
    let p = SlicedPacket::from_ethernet(&q).unwrap();
    let Some(TransportSlice::Udp(u)) = p.transport else {
        panic!()
    };
    let a = u.payload();
    assert_eq!(&a[..2], &[0xab, 0xcd]);
    assert_eq!(a[2] & 0x80, 0x80, "a response");
    assert_eq!(a[3] & 0x0f, 5, "REFUSED");
    assert_eq!(&a[12..], &query[12..], "the question is echoed");
}

#[test]
fn the_routers_ntp_is_stratum_3_under_its_upstream_and_its_clock_moves() {
    let mut e = engine();
    let c = client(5, 123);
    let router = decoy_of(PersonaKind::Router, 123);
    let mut request = [0u8; 48];
    request[0] = 0x23; // version 4, client
    request[40..48].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    let ask = |e: &mut Engine, at: u64| {
        let mut q = synth::udp(&c, &router, &request);
        assert_eq!(e.process(&mut q, at), Verdict::Reply);
        let p = SlicedPacket::from_ethernet(&q).unwrap();
        let Some(TransportSlice::Udp(u)) = p.transport else {
            panic!()
        };
        u.payload().to_vec()
    };
    let a = ask(&mut e, T0);
    assert_eq!(a.len(), 48);
    assert_eq!(a[0], 0x24, "version 4, server");
    assert_eq!(a[1], 3, "stratum 3");
    let IpAddr::V4(addr) = router.ip else {
        panic!()
    };
    let [x, y, z, _] = addr.octets();
    assert_eq!(
        &a[12..16],
        &[x, y, z, 1],
        "the upstream is the /24's router"
    );
    assert_eq!(&a[24..32], &request[40..48], "the client's transmit time");
    let ts = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    // Receive time is the engine's clock in NTP's era, to the millisecond.
    let unix_ms = T0 / 1_000_000;
    assert_eq!(ts(&a, 32) >> 32, unix_ms / 1000 + 2_208_988_800);
    assert!(ts(&a, 40) > ts(&a, 32), "sent after it received");
    assert!(ts(&a, 16) <= ts(&a, 32), "synchronised before");
    // 1.25 s later the fractions have moved, not only the seconds.
    let b = ask(&mut e, T0 + 1_250_000_000);
    assert_eq!(ts(&b, 32) - ts(&a, 32), (5u64 << 32) / 4);
    // Other families run no NTP.
    let linux = decoy_of(PersonaKind::LinuxWeb, 123);
    let mut q = synth::udp(&c, &linux, &request);
    assert_eq!(e.process(&mut q, T0), Verdict::Reply);
    let p = SlicedPacket::from_ethernet(&q).unwrap();
    assert!(matches!(p.transport, Some(TransportSlice::Icmpv4(_))));
}

#[test]
fn replies_are_rate_limited_per_decoy() {
    let rates = RateConfig {
        per_decoy: 10,
        per_decoy_burst: 50,
        per_prober: 1_000_000,
        per_prober_burst: 1_000_000,
        total: 1_000_000,
        total_burst: 1_000_000,
    };
    let mut e = engine_with(no_wait(), rates);
    let d = decoy_with(&[80]);
    let mut replied = 0;
    let mut limited = 0;
    for i in 0..300u16 {
        let mut f = synth::tcp(&client(5, 1000 + i), &d, Flags::SYN, 1, 0, &[]);
        match e.process(&mut f, T0) {
            Verdict::Reply => replied += 1,
            Verdict::Drop(DropReason::RateLimited) => limited += 1,
            v => panic!("{v:?}"),
        }
    }
    assert_eq!((replied, limited), (50, 250));
}

#[test]
fn a_weak_bite_after_a_wrong_cookie_in_the_sources_name_is_reported_never_blocked() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let victim = client(10, 0);
    // A spoofer guesses a cookie in the victim's name, once: that spends the
    // victim's one weak try of the day (engine::ticket).
    let mut guess = synth::tcp(&victim.port(20000), &d, Flags::PSH_ACK, 1, 7919, b"x");
    e.process(&mut guess, T0);
    // Then a weak bite from the victim's address verifies (a lucky guess,
    // or the victim itself, whose stack has no timestamps): reported, not
    // blocked.
    let (_, _, isn) = handshake(&mut e, &victim.port(40011), &d, T0 + SEC);
    let mut data = synth::tcp(
        &victim.port(40011),
        &d,
        Flags::PSH_ACK,
        5001,
        isn.wrapping_add(1),
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert_eq!(e.process(&mut data, T0 + 2 * SEC), Verdict::Reply);
    assert!(e.latched().is_empty());
    assert_eq!(e.deception_counters().weak_denied, 1);
    assert!(bites(&events(&mut e)).contains(&(BiteKind::Data, Action::Alert)));
}

#[test]
fn arp_probes_for_a_dark_address_are_left_to_the_claimant() {
    let mut e = engine();
    let target = Ipv4Addr::new(198, 51, 100, 77);
    let mut probe = synth::arp(
        [2, 0, 0, 0, 0, 0x33],
        Ipv4Addr::UNSPECIFIED,
        [0; 6],
        target,
        false,
    );
    assert_eq!(e.process(&mut probe, T0), Verdict::Forward);
}

#[test]
fn fin_null_and_xmas_probes_get_rst_from_closed_ports_and_silence_from_open_ones() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    let c = client(5, 40012);
    let fin = Flags {
        fin: true,
        ..Flags::default()
    };
    let mut closed = synth::tcp(&c, &d.port(12345), fin, 77, 0, &[]);
    assert_eq!(e.process(&mut closed, T0), Verdict::Reply);
    let r = tcp_reply(&closed);
    assert!(r.rst && r.ack_flag);
    assert_eq!(r.ack, 78, "FIN counts one");
    let mut open = synth::tcp(&c, &d, fin, 77, 0, &[]);
    assert_eq!(e.process(&mut open, T0), Verdict::Drop(DropReason::ToDecoy));
}

#[test]
fn sources_that_are_not_hosts_get_no_reply() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    for src in [
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::UNSPECIFIED,
    ] {
        let mut f = synth::tcp(&Endpoint::new(ROUTER, src, 1), &d, Flags::SYN, 1, 0, &[]);
        assert_eq!(
            e.process(&mut f, T0),
            Verdict::Drop(DropReason::ToDecoy),
            "{src}"
        );
    }
}

#[test]
fn one_prober_gets_at_most_its_rate_however_many_decoys_it_hits() {
    let rates = RateConfig {
        per_decoy: 1000,
        per_decoy_burst: 1000,
        per_prober: 10,
        per_prober_burst: 30,
        total: 1_000_000,
        total_burst: 1_000_000,
    };
    let mut e = engine_with(no_wait(), rates);
    let victim = client(10, 0);
    let mut replied = 0;
    for last in 20..220u8 {
        let d = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 51, 100, last), 80);
        let mut f = synth::tcp(
            &victim.port(1000 + u16::from(last)),
            &d,
            Flags::SYN,
            1,
            0,
            &[],
        );
        if e.process(&mut f, T0) == Verdict::Reply {
            replied += 1;
        }
    }
    assert_eq!(replied, 30);
}

#[test]
fn one_mark_in_n_is_reported_as_a_sampled_mark() {
    let mut e = Engine::new(&EngineConfig {
        flow_capacity: 4096,
        deception: Some(shared_sampling(no_wait(), RateConfig::default(), 3)),
        ..EngineConfig::default()
    });
    let d = decoy_with(&[80]);
    for i in 0..9u16 {
        let mut f = synth::tcp(&client(5, 40000 + i), &d, Flags::SYN, 1000, 0, &[]);
        assert_eq!(e.process(&mut f, T0 + u64::from(i)), Verdict::Reply);
    }
    let sampled: Vec<_> = events(&mut e)
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Mark { kind, one_in } => Some((kind, one_in, ev.src_port)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sampled,
        [
            (MarkKind::SynAck, 3, 40002),
            (MarkKind::SynAck, 3, 40005),
            (MarkKind::SynAck, 3, 40008)
        ]
    );
    // Off (0): marks are counted, never reported.
    let mut quiet = engine();
    let mut f = synth::tcp(&client(5, 40000), &d, Flags::SYN, 1000, 0, &[]);
    quiet.process(&mut f, T0);
    assert!(events(&mut quiet).is_empty());
}

fn answers(e: &Engine, addr: [u8; 16], count: u8, at: u64) -> Vec<baitwall_channel::PersonaAnswer> {
    let mut v = Vec::new();
    e.answer_query(7, addr, count, at, |a| v.push(a));
    v
}

#[test]
fn queries_describe_an_address_as_the_outside_sees_it() {
    use baitwall_channel::message::code;
    let mut e = engine();
    // The engine's clock starts at the first frame it sees.
    let mut f = synth::tcp(&client(5, 40000), &decoy_with(&[80]), Flags::SYN, 1, 0, &[]);
    e.process(&mut f, T0);
    let dark = v4("198.51.100.77");
    let [a] = answers(&e, dark, 0, T0)[..] else {
        panic!("one answer")
    };
    let p = persona(dark);
    assert!(a.last && a.found);
    assert_eq!((a.id, a.addr), (7, dark));
    assert_eq!(code::darkness_name(a.darkness), "dark");
    assert_eq!(code::persona_name(a.family), p.kind.as_str());
    assert_eq!(
        (a.ttl, a.window, a.mss, a.mac),
        (p.stack.ttl, p.stack.data_window(), p.stack.mss, p.mac.0)
    );
    assert_eq!(a.open_ports().collect::<Vec<_>>(), p.open_ports);
    for (addr, state) in [
        ("198.51.100.1", "excluded"),
        ("198.51.100.10", "static_live"),
        ("192.0.2.1", "unprotected"),
    ] {
        let got = answers(&e, v4(addr), 0, T0);
        assert_eq!(code::darkness_name(got[0].darkness), state, "{addr}");
    }
}

#[test]
fn a_sample_lists_dark_addresses_in_order_and_flags_the_last() {
    use baitwall_channel::message::code;
    let mut e = engine();
    let mut f = synth::tcp(&client(5, 40000), &decoy_with(&[80]), Flags::SYN, 1, 0, &[]);
    e.process(&mut f, T0);
    let got = answers(&e, v4("198.51.100.0"), 12, T0);
    assert_eq!(got.len(), 12);
    assert!(
        got.iter()
            .all(|a| code::darkness_name(a.darkness) == "dark" && a.found)
    );
    assert!(got[..11].iter().all(|a| !a.last) && got[11].last);
    let addrs: Vec<_> = got.iter().map(|a| ip(a.addr).to_string()).collect();
    for skipped in ["198.51.100.1", "198.51.100.10"] {
        assert!(
            !addrs.contains(&skipped.to_string()),
            "{skipped} is not dark"
        );
    }
    // This table excludes only .1 (the configuration also excludes the
    // network and broadcast addresses).
    assert_eq!(addrs[..3], ["198.51.100.0", "198.51.100.2", "198.51.100.3"]);
    assert!(got.windows(2).all(|w| w[0].addr < w[1].addr));
    // Past the end of the protected space: one empty, last answer.
    let none = answers(&e, v4("203.0.113.0"), 4, T0);
    assert_eq!(none.len(), 1);
    assert!(none[0].last && !none[0].found);
}

#[test]
fn wire_names_match_the_engines_names() {
    use baitwall_channel::message::code;
    for k in MarkKind::ALL {
        assert_eq!(code::mark_name(k as u8), k.as_str());
    }
    let dark = answers(&engine(), v4("192.0.2.1"), 0, T0);
    assert_eq!(code::darkness_name(dark[0].darkness), "unprotected");
}

#[test]
fn on_a_tap_a_blocked_sources_connection_is_severed_at_both_ends() {
    let mut e = Engine::new(&EngineConfig {
        flow_capacity: 4096,
        deception: Some(shared(no_wait(), RateConfig::default())),
        sever_blocked: true,
        ..EngineConfig::default()
    });
    let worm = Endpoint::new([2, 0, 0, 0, 0, 0x66], Ipv4Addr::new(203, 0, 113, 66), 40000);
    let server = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(198, 51, 100, 10), 80);
    e.latch(v4("203.0.113.66"), T0);
    // A segment of an established connection the tap saw go by.
    let mut f = synth::tcp(&worm, &server, Flags::PSH_ACK, 1000, 5000, b"GET");
    assert_eq!(e.process(&mut f, T0), Verdict::Sever);
    let mut other: Vec<u8> = Vec::new();
    assert!(e.write_severance(&mut f, &mut other, T0));
    // To the source, as from the server: seq = the segment's ack.
    let r = tcp_reply(&f);
    assert_eq!((r.src, r.dst), (server.ip, worm.ip));
    assert_eq!((r.src_mac, r.dst_mac), (server.mac, worm.mac));
    assert_eq!((r.sport, r.dport), (80, 40000));
    assert!(r.rst && !r.syn && r.payload.is_empty());
    assert_eq!(r.seq, 5000);
    // To the server, as from the source: seq = just past the segment.
    let r = tcp_reply(&other);
    assert_eq!((r.src, r.dst), (worm.ip, server.ip));
    assert_eq!((r.src_mac, r.dst_mac), (worm.mac, server.mac));
    assert_eq!((r.sport, r.dport), (40000, 80));
    assert!(r.rst && r.payload.is_empty());
    assert_eq!(r.seq, 1003);
    // Nothing to write twice; a RST from the source is only dropped.
    assert!(!e.write_severance(&mut f, &mut other, T0));
    let mut rst = synth::tcp(&worm, &server, Flags::RST_ACK, 1003, 5000, &[]);
    assert_eq!(e.process(&mut rst, T0), Verdict::Drop(DropReason::Blocked));
    // A flood is bounded: the budget runs out within one millisecond.
    let severed = (0..2000u32)
        .filter(|i| {
            let mut g = synth::tcp(&worm, &server, Flags::PSH_ACK, 2000 + i, 5000, b"x");
            e.process(&mut g, T0 + 1_000_000) == Verdict::Sever
        })
        .count();
    assert!((1..=1000).contains(&severed), "{severed}");
    // Without a tap, a blocked source's frame is dropped, not severed.
    let mut inline = engine();
    inline.latch(v4("203.0.113.66"), T0);
    let mut g = synth::tcp(&worm, &server, Flags::PSH_ACK, 1000, 5000, b"GET");
    assert_eq!(
        inline.process(&mut g, T0),
        Verdict::Drop(DropReason::Blocked)
    );
}
