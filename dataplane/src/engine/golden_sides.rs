//! Golden tables for invariants 2 and 3: each side speaks only for itself,
//! an address is claimed only when a request for it from the outside went
//! unanswered for `claim_after`, a claim yields to its owner, only unicast
//! hosts of a packet's own family are sources, and the allowlist holds
//! inside a latched prefix. The LAN is 198.51.101.0/24 and
//! 2001:db8:101::/64 behind the router 198.51.101.1 (see `golden.rs`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::io::{BufTooSmall, PacketBuf, Side};

/// A frame and the side the port says it came from.
struct Sided {
    frame: Vec<u8>,
    side: Option<Side>,
}

impl PacketBuf for Sided {
    fn data(&self) -> &[u8] {
        &self.frame
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.frame
    }
    fn capacity(&self) -> usize {
        self.frame.capacity()
    }
    fn set_len(&mut self, len: usize) -> Result<(), BufTooSmall> {
        PacketBuf::set_len(&mut self.frame, len)
    }
    fn timestamp_ns(&self) -> u64 {
        0
    }
    fn side(&self) -> Option<Side> {
        self.side
    }
}

const OUT: Option<Side> = Some(Side::Outside);
const IN: Option<Side> = Some(Side::Inside);
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x30];

fn send(e: &mut Engine, side: Option<Side>, frame: &[u8], at: u64) -> (Verdict, Vec<u8>) {
    let mut b = Sided {
        frame: frame.to_vec(),
        side,
    };
    let v = e.process(&mut b, at);
    (v, b.frame)
}

fn lan(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 101, last)
}

fn gateway() -> Ipv4Addr {
    lan(1)
}

fn who_has(target: Ipv4Addr) -> Vec<u8> {
    synth::arp(ROUTER, gateway(), [0; 6], target, false)
}

/// The router asks for `target` at `at`, `at`+1 s, ... until the claim
/// (`claim_after` 3 s): what the last request got.
fn claim(e: &mut Engine, target: Ipv4Addr, at: u64) -> Verdict {
    for i in 0..3 {
        assert_eq!(
            send(e, OUT, &who_has(target), at + i * SEC).0,
            Verdict::Forward,
            "request {i} for {target}: not yet"
        );
    }
    send(e, OUT, &who_has(target), at + 3 * SEC).0
}

/// A LAN decoy claimed at `at`, with `port` open.
fn claimed_decoy(e: &mut Engine, port: u16, at: u64) -> Endpoint {
    for last in 20..=250u8 {
        let a = lan(last);
        let p = persona(a.to_ipv6_mapped().octets());
        if p.is_open(port) {
            assert_eq!(claim(e, a, at), Verdict::Reply);
            return Endpoint::new(p.mac.0, a, port);
        }
    }
    panic!("no LAN decoy with {port}");
}

#[test]
fn each_side_speaks_only_for_itself() {
    let mut e = engine();
    let d = claimed_decoy(&mut e, 80, T0);
    let outsider = client(5, 40000);
    let insider = Endpoint::new(HOST_MAC, lan(30), 40000);
    let forged_inside = Endpoint::new(ROUTER, lan(40), 40000);
    let forged_outside = Endpoint::new(HOST_MAC, Ipv4Addr::new(203, 0, 113, 5), 40000);
    let routed_inside = Endpoint::new(HOST_MAC, Ipv4Addr::new(10, 20, 3, 4), 40000);
    let web = Endpoint::new(ROUTER, Ipv4Addr::new(192, 0, 2, 80), 80);
    let syn = |from: &Endpoint, to: &Endpoint| synth::tcp(from, to, Flags::SYN, 1, 0, &[]);
    // description, arrival side, frame, verdict
    let table: Vec<(&str, Option<Side>, Vec<u8>, Verdict)> = vec![
        (
            "an outside prober gets the decoy's SYN-ACK",
            OUT,
            syn(&outsider, &d),
            Verdict::Reply,
        ),
        (
            "an outside frame with an inside source is dropped",
            OUT,
            syn(&forged_inside, &d),
            Verdict::Drop(DropReason::Spoofed),
        ),
        (
            "the gateway's own frames pass from outside",
            OUT,
            synth::echo(
                &Endpoint::new(ROUTER, gateway(), 7),
                &Endpoint::new(HOST_MAC, lan(30), 7),
                1,
                false,
                b"ping",
            ),
            Verdict::Forward,
        ),
        (
            "an inside frame with an outside source is dropped: no SYN-ACK",
            IN,
            syn(&forged_outside, &d),
            Verdict::Drop(DropReason::Spoofed),
        ),
        (
            "a network routed behind the inside may send out",
            IN,
            syn(&routed_inside, &web),
            Verdict::Forward,
        ),
        (
            "an inside worm scanning its own LAN is marked",
            IN,
            syn(&insider, &d),
            Verdict::Reply,
        ),
        (
            "inside hosts reach the outside",
            IN,
            syn(&insider, &web),
            Verdict::Forward,
        ),
    ];
    for (what, side, frame, verdict) in table {
        assert_eq!(
            send(&mut e, side, &frame, T0 + 5 * SEC).0,
            verdict,
            "{what}"
        );
    }
    assert_eq!(e.deception_counters().claims, 1);
    // The forged inside source was not learned: its address stays
    // claimable (the request for .40 is not answered by a live host).
    assert_eq!(claim(&mut e, lan(40), T0 + 10 * SEC), Verdict::Reply);
}

#[test]
fn by_mac_the_router_is_outside_and_every_other_mac_inside() {
    // One-arm and tap: no port side; the gateway's MAC tells.
    let mut e = Engine::new(&EngineConfig {
        flow_capacity: 4096,
        deception: Some(shared_full(
            no_wait(),
            RateConfig::default(),
            0,
            vec![ROUTER],
        )),
        ..EngineConfig::default()
    });
    assert_eq!(claim(&mut e, lan(50), T0), Verdict::Reply);
    let d = Endpoint::new(
        persona(lan(50).to_ipv6_mapped().octets()).mac.0,
        lan(50),
        22,
    );
    // An insider forging an outside address, with its own MAC: dropped,
    // so the decoy's reply never reaches it and it can never bite.
    let forged = Endpoint::new(HOST_MAC, Ipv4Addr::new(203, 0, 113, 5), 40000);
    let (v, _) = send(
        &mut e,
        None,
        &synth::tcp(&forged, &d, Flags::SYN, 1, 0, &[]),
        T0 + 4 * SEC,
    );
    assert_eq!(v, Verdict::Drop(DropReason::Spoofed));
    // The real outside host, through the router, is answered.
    let real = client(5, 40000);
    let (v, _) = send(
        &mut e,
        None,
        &synth::tcp(&real, &d, Flags::SYN, 1, 0, &[]),
        T0 + 4 * SEC,
    );
    assert!(matches!(v, Verdict::Reply), "{v:?}");
}

#[test]
fn a_quiet_server_that_answers_its_arp_is_never_claimed() {
    let mut e = engine();
    let server = lan(40);
    let server_mac = [2, 0, 0, 0, 1, 40];
    let c = client(9, 41000);
    let s = Endpoint::new(server_mac, server, 80);
    // Each round, the router asks and the server answers from inside; the
    // server never speaks first.
    for round in 0..6u64 {
        let at = T0 + round * 2 * SEC;
        assert_eq!(send(&mut e, OUT, &who_has(server), at).0, Verdict::Forward);
        let reply = synth::arp(server_mac, server, ROUTER, gateway(), true);
        assert_eq!(send(&mut e, IN, &reply, at + SEC / 100).0, Verdict::Forward);
    }
    // The client's connection and request cross untouched: no mark, no bite.
    let at = T0 + 20 * SEC;
    let syn = synth::tcp(&c, &s, Flags::SYN, 1, 0, &[]);
    assert_eq!(send(&mut e, OUT, &syn, at), (Verdict::Forward, syn.clone()));
    let get = synth::tcp(&c, &s, Flags::PSH_ACK, 2, 777, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(send(&mut e, OUT, &get, at).0, Verdict::Forward);
    assert_eq!(e.deception_counters().claims, 0);
    assert!(bites(&events(&mut e)).is_empty());
}

#[test]
fn requests_from_the_inside_never_claim_and_a_claim_yields_to_its_owner() {
    let mut e = engine();
    let t = lan(60);
    // An inside host asking (its answer would not cross the appliance).
    let inside_ask = synth::arp(HOST_MAC, lan(30), [0; 6], t, false);
    for i in 0..6 {
        assert_eq!(
            send(&mut e, IN, &inside_ask, T0 + i * SEC).0,
            Verdict::Forward
        );
    }
    assert_eq!(e.deception_counters().claims, 0);
    // The router's unanswered requests claim it.
    assert_eq!(claim(&mut e, t, T0 + 10 * SEC), Verdict::Reply);
    // Its owner comes back with a gratuitous ARP: the decoy yields at once.
    let owner_mac = [2, 0, 0, 0, 1, 60];
    let garp = synth::arp(owner_mac, t, [0; 6], t, false);
    assert_eq!(send(&mut e, IN, &garp, T0 + 20 * SEC).0, Verdict::Forward);
    let c = counters(&e);
    assert_eq!((c.claims, c.yields), (1, 1));
    let syn = synth::tcp(
        &client(5, 1),
        &Endpoint::new(owner_mac, t, 80),
        Flags::SYN,
        1,
        0,
        &[],
    );
    assert_eq!(send(&mut e, OUT, &syn, T0 + 21 * SEC).0, Verdict::Forward);
    assert_eq!(
        send(&mut e, OUT, &who_has(t), T0 + 21 * SEC).0,
        Verdict::Forward
    );
    // An ARP probe (RFC 5227) for another claimed address is an owner too.
    assert_eq!(claim(&mut e, lan(61), T0 + 30 * SEC), Verdict::Reply);
    let probe = synth::arp(owner_mac, Ipv4Addr::UNSPECIFIED, [0; 6], lan(61), false);
    assert_eq!(send(&mut e, IN, &probe, T0 + 40 * SEC).0, Verdict::Forward);
    assert_eq!(counters(&e).yields, 2);
}

fn counters(e: &Engine) -> super::super::deceive::DeceptionCounters {
    e.deception_counters()
}

/// A neighbour solicitation from `src` for `target`, or an advertisement
/// of `target` (`advert`).
fn ndp(src: Ipv6Addr, target: Ipv6Addr, mac: [u8; 6], advert: bool) -> Vec<u8> {
    let mut f = neighbor_solicitation(src, target);
    f[6..12].copy_from_slice(&mac);
    if advert {
        // Type 136, to all nodes; the checksum computed again.
        let l4 = 14 + 40;
        f[l4] = 136;
        let group: Ipv6Addr = "ff02::1".parse().unwrap();
        f[38..54].copy_from_slice(&group.octets());
        f[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
        let mut view = crate::wire::Icmpv6Packet::new_unchecked(&mut f[l4..]);
        view.fill_checksum(&src, &group);
    }
    f
}

#[test]
fn ipv6_claims_follow_solicitations_and_yield_to_dad_and_adverts() {
    let mut e = engine();
    let router: Ipv6Addr = "fe80::1".parse().unwrap();
    let t: Ipv6Addr = "2001:db8:101::77".parse().unwrap();
    for i in 0..3 {
        let (v, _) = send(&mut e, OUT, &ndp(router, t, ROUTER, false), T0 + i * SEC);
        assert_eq!(v, Verdict::Forward, "solicitation {i}");
    }
    let (v, na) = send(&mut e, OUT, &ndp(router, t, ROUTER, false), T0 + 3 * SEC);
    assert_eq!(v, Verdict::Reply);
    // Solicited, not overriding: an owner's cache entry would stand.
    assert_eq!(na[14 + 40 + 4] & 0xe0, 0x40, "S set, R and O clear");
    // Duplicate address detection from the inside: someone takes it.
    let dad = ndp(Ipv6Addr::UNSPECIFIED, t, HOST_MAC, false);
    assert_eq!(send(&mut e, IN, &dad, T0 + 5 * SEC).0, Verdict::Forward);
    assert_eq!(counters(&e).yields, 1);
    assert_eq!(
        send(&mut e, OUT, &ndp(router, t, ROUTER, false), T0 + 6 * SEC).0,
        Verdict::Forward
    );
    // An unsolicited advertisement from the inside does the same.
    let u: Ipv6Addr = "2001:db8:101::78".parse().unwrap();
    for i in 0..4 {
        send(
            &mut e,
            OUT,
            &ndp(router, u, ROUTER, false),
            T0 + (10 + i) * SEC,
        );
    }
    assert_eq!(counters(&e).claims, 2);
    let owner: Ipv6Addr = "2001:db8:101::78".parse().unwrap();
    let advert = ndp(owner, u, HOST_MAC, true);
    assert_eq!(send(&mut e, IN, &advert, T0 + 15 * SEC).0, Verdict::Forward);
    assert_eq!(counters(&e).yields, 2);
    // From the outside, a forged advertisement proves nothing.
    let w: Ipv6Addr = "2001:db8:101::79".parse().unwrap();
    for i in 0..4 {
        send(
            &mut e,
            OUT,
            &ndp(router, w, ROUTER, false),
            T0 + (20 + i) * SEC,
        );
    }
    assert_eq!(counters(&e).claims, 3);
    let forged = ndp(router, w, ROUTER, true);
    send(&mut e, OUT, &forged, T0 + 25 * SEC);
    assert_eq!(counters(&e).yields, 2);
    assert_eq!(
        send(&mut e, OUT, &ndp(router, w, ROUTER, false), T0 + 26 * SEC).0,
        Verdict::Reply
    );
}

#[test]
fn ipv4_mapped_and_compatible_sources_get_nothing() {
    let mut e = engine();
    let d6: Ipv6Addr = "2001:db8:100::80".parse().unwrap();
    let p = persona(d6.octets());
    let port = *p.open_ports.first().unwrap();
    let to = Endpoint::new(p.mac.0, d6, port);
    for src in ["::ffff:203.0.113.9", "::203.0.113.9"] {
        let from = Endpoint::new(ROUTER, src.parse::<Ipv6Addr>().unwrap(), 40000);
        let syn = synth::tcp(&from, &to, Flags::SYN, 1, 0, &[]);
        assert_eq!(
            send(&mut e, OUT, &syn, T0).0,
            Verdict::Drop(DropReason::ToDecoy),
            "{src}"
        );
    }
    // An IPv6 packet to an IPv4-mapped address is not to the IPv4 decoy.
    let from = Endpoint::new(
        ROUTER,
        "2001:db8:200::9".parse::<Ipv6Addr>().unwrap(),
        40000,
    );
    let mapped = Endpoint::new(
        ROUTER,
        "::ffff:198.51.100.80".parse::<Ipv6Addr>().unwrap(),
        80,
    );
    let syn = synth::tcp(&from, &mapped, Flags::SYN, 1, 0, &[]);
    assert_eq!(send(&mut e, OUT, &syn, T0).0, Verdict::Forward);
    assert_eq!(counters(&e).marks.iter().sum::<u64>(), 0);
    assert!(e.latched().is_empty());
}

#[test]
fn an_allowlisted_address_inside_a_latched_ipv6_prefix_still_passes() {
    let mut e = engine();
    let d6: Ipv6Addr = "2001:db8:100::80".parse().unwrap();
    let p = persona(d6.octets());
    let port = *p
        .open_ports
        .iter()
        .find(|port| [80, 443, 8080].contains(*port))
        .unwrap_or(p.open_ports.first().unwrap());
    let d = Endpoint::new(p.mac.0, d6, port);
    let worm = Endpoint::new(
        ROUTER,
        "2001:db8:200::66".parse::<Ipv6Addr>().unwrap(),
        40000,
    );
    let (_, _, isn) = handshake(&mut e, &worm, &d, T0);
    let mut data = synth::tcp(
        &worm,
        &d,
        Flags::PSH_ACK,
        5001,
        isn.wrapping_add(1),
        b"GET /\r\n\r\n",
    );
    assert_eq!(
        e.process(&mut data, T0 + SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    // The worm's /64 is latched; its allowlisted neighbour still passes.
    let web = Endpoint::new(ROUTER, "2001:db8:300::80".parse::<Ipv6Addr>().unwrap(), 80);
    let neighbour = Endpoint::new(ROUTER, "2001:db8:200::77".parse::<Ipv6Addr>().unwrap(), 1);
    let allowed = Endpoint::new(ROUTER, "2001:db8:200::200".parse::<Ipv6Addr>().unwrap(), 1);
    let mut f = synth::tcp(&neighbour, &web, Flags::SYN, 1, 0, &[]);
    assert_eq!(
        e.process(&mut f, T0 + 2 * SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    let mut f = synth::tcp(&allowed, &web, Flags::SYN, 1, 0, &[]);
    assert_eq!(e.process(&mut f, T0 + 2 * SEC), Verdict::Forward);
}
