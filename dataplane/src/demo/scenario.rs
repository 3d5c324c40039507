//! The built-in scenario: a protected network, benign clients, a scanning
//! worm in the manner of Slapper, and a sender of malformed frames.
//!
//! Deterministic: the same frames and timestamps on every run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::engine::cookie::{CookieJar, CookieTuple};
use crate::engine::persona::PersonaMaker;
use crate::synth::{self, Endpoint, Flags};

/// The demo's deployment secret; `demo.toml` carries the same one.
pub const DEMO_SECRET: [u8; 32] = *b"baitwall demo secret, not secret";
/// The demo's cookie rotation, as in `demo.toml`.
pub const DEMO_ROTATION_MS: u64 = 60_000;

/// What the scenario knows of the appliance's marks: the personas and
/// cookies that the demo's secret gives.
struct Marks {
    personas: PersonaMaker,
}

impl Marks {
    fn new() -> Self {
        Marks {
            personas: PersonaMaker::new(&DEMO_SECRET),
        }
    }

    fn open(&self, addr: Ipv4Addr, ports: &[u16]) -> bool {
        let p = self.personas.persona(&addr.to_ipv6_mapped().octets());
        ports.iter().all(|port| p.is_open(*port))
    }

    fn mac(&self, addr: Ipv4Addr) -> [u8; 6] {
        self.personas.persona(&addr.to_ipv6_mapped().octets()).mac.0
    }

    /// The TSval of the decoy's SYN-ACK to `c` at `at_ns` (the worm's
    /// stack echoes it: a strong proof, `engine::tsproof`).
    fn tsval(&self, c: &Endpoint, d: &Endpoint, at_ns: u64) -> u32 {
        let v6 = |ip: IpAddr| match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let jar = CookieJar::new(&DEMO_SECRET, DEMO_ROTATION_MS, at_ns / 1_000_000);
        self.personas
            .persona(&v6(d.ip))
            .ts_clock()
            .tsval(jar.pair(&v6(c.ip), &v6(d.ip)), at_ns / 1_000_000)
            .unwrap_or(0)
    }

    /// The ISN of the decoy's SYN-ACK to `c` at `at_ns`.
    fn isn(&self, c: &Endpoint, d: &Endpoint, at_ns: u64) -> u32 {
        let v6 = |ip: IpAddr| match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        CookieJar::new(&DEMO_SECRET, DEMO_ROTATION_MS, at_ns / 1_000_000).isn(&CookieTuple {
            src: v6(c.ip),
            dst: v6(d.ip),
            src_port: c.port,
            dst_port: d.port,
        })
    }
}

/// Who sent a frame, for the demo's accounting.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Benign clients and the live servers answering them.
    Benign,
    /// The worm, and the live server's answers to it.
    Worm,
    /// A sender forging a benign client's address.
    Spoofer,
    /// Frames whose headers lie.
    Malformed,
    /// ARP.
    Arp,
}

impl Role {
    /// Every role, in report order.
    pub const ALL: [Role; 5] = [
        Role::Benign,
        Role::Worm,
        Role::Spoofer,
        Role::Malformed,
        Role::Arp,
    ];
}

/// One frame of the scenario.
#[derive(Clone, Debug)]
pub struct ScenarioFrame {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame.
    pub frame: Vec<u8>,
    /// Its role.
    pub role: Role,
}

/// The scenario's cast.
pub mod cast {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The protected IPv4 prefix.
    pub const PROTECTED_V4: &str = "198.51.100.0/24";
    /// The protected IPv6 prefix.
    pub const PROTECTED_V6: &str = "2001:db8:100::/64";
    /// The web server (ports 80 and 443).
    pub const WEB: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    /// The SSH server.
    pub const SSH: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
    /// The DNS server.
    pub const DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
    /// A quiet web server: not declared live, never speaks first (it only
    /// answers ARP and TCP, like most servers behind a router).
    pub const QUIET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 13);
    /// The IPv6 web server.
    pub const WEB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
    /// The worm.
    pub const WORM: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
    /// The benign client whose address the spoofer forges.
    pub const SPOOFED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    /// The sender of malformed frames.
    pub const FUZZER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
    /// Number of IPv4 benign clients (203.0.113.10 and up).
    pub const CLIENTS_V4: u8 = 20;
    /// Number of IPv6 benign clients (2001:db8:ff::10 and up).
    pub const CLIENTS_V6: u16 = 4;
}

/// Start of the scenario: 2026-01-01T00:00:00Z.
const T0_NS: u64 = 1_767_225_600 * 1_000_000_000;
const MS: u64 = 1_000_000;
const ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0xfe];

fn server_mac(last: u8) -> [u8; 6] {
    [0x02, 0x00, 0x5e, 0x00, 0x01, last]
}

/// Collects frames in time order.
struct Script {
    frames: Vec<ScenarioFrame>,
}

impl Script {
    fn at(&mut self, ms: u64, role: Role, frame: Vec<u8>) {
        self.frames.push(ScenarioFrame {
            ts_ns: T0_NS + ms * MS,
            frame,
            role,
        });
    }

    /// A whole TCP conversation: handshake, one request and one response,
    /// then a FIN exchange. Returns the time after it.
    fn conversation(
        &mut self,
        start_ms: u64,
        role: Role,
        client: &Endpoint,
        server: &Endpoint,
        request: &[u8],
        response: &[u8],
    ) -> u64 {
        let (c_isn, s_isn) = (0x1000_0000u32 ^ u32::from(client.port), 0x5000_0000u32);
        let rtt = 2;
        let mut t = start_ms;
        let (c, s) = (client, server);
        self.at(t, role, synth::tcp(c, s, Flags::SYN, c_isn, 0, &[]));
        t += rtt;
        self.at(
            t,
            role,
            synth::tcp(s, c, Flags::SYN_ACK, s_isn, c_isn + 1, &[]),
        );
        t += rtt;
        let (mut cs, mut ss) = (c_isn + 1, s_isn + 1);
        self.at(t, role, synth::tcp(c, s, Flags::ACK, cs, ss, &[]));
        self.at(t, role, synth::tcp(c, s, Flags::PSH_ACK, cs, ss, request));
        cs += request.len() as u32;
        t += rtt;
        self.at(t, role, synth::tcp(s, c, Flags::PSH_ACK, ss, cs, response));
        ss += response.len() as u32;
        t += 1;
        self.at(t, role, synth::tcp(c, s, Flags::FIN_ACK, cs, ss, &[]));
        t += rtt;
        self.at(t, role, synth::tcp(s, c, Flags::FIN_ACK, ss, cs + 1, &[]));
        t += rtt;
        self.at(t, role, synth::tcp(c, s, Flags::ACK, cs + 1, ss + 1, &[]));
        t
    }
}

const HTTP_GET: &[u8] =
    b"GET / HTTP/1.1\r\nHost: www.example.net\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const HTTP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<h1>Hello</h1>";
const SSH_CLIENT: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
const SSH_SERVER: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
const SLAPPER_443: &[u8] = b"\x80\x62\x01\x00\x02\x00\x39\x00\x00\x00\x10";

/// Builds the scenario, sorted by time.
pub fn build() -> Vec<ScenarioFrame> {
    let mut s = Script { frames: Vec::new() };
    let web = Endpoint::new(server_mac(10), cast::WEB, 80);
    let ssh = Endpoint::new(server_mac(11), cast::SSH, 22);
    let dns = Endpoint::new(server_mac(12), cast::DNS, 53);
    let web6 = Endpoint::new(server_mac(16), cast::WEB6, 80);

    // The upstream router learns the web server's MAC.
    s.at(
        0,
        Role::Arp,
        synth::arp(
            ROUTER_MAC,
            Ipv4Addr::new(198, 51, 100, 1),
            [0; 6],
            cast::WEB,
            false,
        ),
    );
    s.at(
        1,
        Role::Arp,
        synth::arp(
            web.mac,
            cast::WEB,
            ROUTER_MAC,
            Ipv4Addr::new(198, 51, 100, 1),
            true,
        ),
    );

    for i in 0..cast::CLIENTS_V4 {
        let ip = Ipv4Addr::new(203, 0, 113, 10 + i);
        let base = 100 + u64::from(i) * 1500;
        let client = Endpoint::new(ROUTER_MAC, ip, 40000 + u16::from(i) * 7);
        let query = [
            0x12, i, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
        ];
        s.at(
            base,
            Role::Benign,
            synth::udp(&client.port(50000 + u16::from(i)), &dns, &query),
        );
        let mut answer = query.to_vec();
        answer[2] = 0x81;
        s.at(
            base + 1,
            Role::Benign,
            synth::udp(&dns, &client.port(50000 + u16::from(i)), &answer),
        );
        let t = s.conversation(base + 5, Role::Benign, &client, &web, HTTP_GET, HTTP_OK);
        if i % 2 == 0 {
            s.conversation(
                t + 20,
                Role::Benign,
                &client.port(client.port + 1),
                &ssh,
                SSH_CLIENT,
                SSH_SERVER,
            );
        }
        if i % 4 == 0 {
            let pinger = client.port(0x4242);
            for seq in 0..2 {
                let t = base + 800 + u64::from(seq) * 1000;
                s.at(
                    t,
                    Role::Benign,
                    synth::echo(&pinger, &web.port(0x4242), seq, false, b"abcdefgh"),
                );
                s.at(
                    t + 1,
                    Role::Benign,
                    synth::echo(&web.port(0x4242), &pinger, seq, true, b"abcdefgh"),
                );
            }
        }
    }
    for i in 0..cast::CLIENTS_V6 {
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x10 + i);
        let client = Endpoint::new(ROUTER_MAC, ip, 41000 + i);
        s.conversation(
            2_000 + u64::from(i) * 3000,
            Role::Benign,
            &client,
            &web6,
            HTTP_GET,
            HTTP_OK,
        );
    }

    // After the learning period, the router resolves the addresses the
    // worm's sweep is about to reach (a Linux router: three requests a
    // second apart). The live servers answer for themselves, the quiet one
    // included; the appliance claims the rest once a request has gone
    // unanswered for `claim_after` (LaBrea's rule).
    let quiet = Endpoint::new(server_mac(13), cast::QUIET, 80);
    let router_ip = Ipv4Addr::new(198, 51, 100, 1);
    for host in 2..=254u8 {
        let addr = Ipv4Addr::new(198, 51, 100, host);
        for probe in 0..3u64 {
            let t = 12_000 + u64::from(host) * 4 + probe * 1000;
            s.at(
                t,
                Role::Arp,
                synth::arp(ROUTER_MAC, router_ip, [0; 6], addr, false),
            );
            if [10, 11, 12, 13].contains(&host) {
                s.at(
                    t + 1,
                    Role::Arp,
                    synth::arp(server_mac(host), addr, ROUTER_MAC, router_ip, true),
                );
            }
        }
    }

    // The worm, in the manner of Slapper: a SYN sweep of port 80, then a
    // connection to an HTTP server it found, then port 443 on the same host.
    // It answers what it receives: its ACKs to decoys carry the cookie from
    // the decoy's SYN-ACK, computed here from the demo's secret exactly as
    // the appliance computes it (a replay cannot read replies, so the capture
    // holds what a live worm would have sent back).
    let worm = Endpoint::new(ROUTER_MAC, cast::WORM, 0);
    let marks = Marks::new();
    let sweep_ms = 20_000;
    let mut decoy = None;
    for host in 1..=254u8 {
        let t = sweep_ms + u64::from(host) * 4;
        let port = 32768 + u16::from(host);
        let addr = Ipv4Addr::new(198, 51, 100, host);
        let target = Endpoint::new(server_mac(host), addr, 80);
        let isn = 0x7000_0000 + u32::from(host);
        let probe = worm.port(port);
        s.at(
            t,
            Role::Worm,
            synth::tcp(&probe, &target, Flags::SYN, isn, 0, &[]),
        );
        match host {
            10 | 13 => {
                let server = if host == 10 { &web } else { &quiet };
                s.at(
                    t + 1,
                    Role::Worm,
                    synth::tcp(server, &probe, Flags::SYN_ACK, 0x5100_0000, isn + 1, &[]),
                );
                s.at(
                    t + 2,
                    Role::Worm,
                    synth::tcp(&probe, server, Flags::RST_ACK, isn + 1, 0x5100_0001, &[]),
                );
            }
            // Live hosts without a web server, and the router, refuse.
            1 | 11 | 12 => {
                let host_ep = Endpoint::new(server_mac(host), addr, 80);
                s.at(
                    t + 1,
                    Role::Worm,
                    synth::tcp(&host_ep, &probe, Flags::RST_ACK, 0, isn + 1, &[]),
                );
            }
            _ if decoy.is_none() && marks.open(addr, &[80, 443]) => decoy = Some(addr),
            _ => {}
        }
    }
    if let Some(addr) = decoy {
        let d = Endpoint::new(marks.mac(addr), addr, 80);
        // Port 80: a completed connect(), then closed (the worm read the
        // banner elsewhere). Its kernel negotiates TCP timestamps, as Linux
        // does by default, and echoes the decoy's: strong proofs.
        let c = worm.port(34001);
        let t = sweep_ms + 2_000;
        let ts = |ms: u64| (0x0100_0000 + ms) as u32;
        s.at(
            t,
            Role::Worm,
            synth::tcp_ts(&c, &d, Flags::SYN, 0x7100_0000, 0, &[], (ts(t), 0)),
        );
        let isn = marks.isn(&c, &d, T0_NS + t * MS);
        let echo = marks.tsval(&c, &d, T0_NS + t * MS);
        s.at(
            t + 2,
            Role::Worm,
            synth::tcp_ts(
                &c,
                &d,
                Flags::ACK,
                0x7100_0001,
                isn.wrapping_add(1),
                &[],
                (ts(t + 2), echo),
            ),
        );
        s.at(
            t + 3,
            Role::Worm,
            synth::tcp_ts(
                &c,
                &d,
                Flags::FIN_ACK,
                0x7100_0001,
                isn.wrapping_add(1),
                &[],
                (ts(t + 3), echo),
            ),
        );
        s.at(
            t + 5,
            Role::Worm,
            synth::tcp_ts(
                &c,
                &d,
                Flags::ACK,
                0x7100_0002,
                isn.wrapping_add(2),
                &[],
                (ts(t + 5), echo),
            ),
        );
        // 0.4 s later, port 443 on the same host: the port bite.
        let c = worm.port(34002);
        let d = d.port(443);
        let t = t + 400;
        s.at(
            t,
            Role::Worm,
            synth::tcp_ts(&c, &d, Flags::SYN, 0x7200_0000, 0, &[], (ts(t), 0)),
        );
        let isn = marks.isn(&c, &d, T0_NS + t * MS);
        let echo = marks.tsval(&c, &d, T0_NS + t * MS);
        s.at(
            t + 2,
            Role::Worm,
            synth::tcp_ts(
                &c,
                &d,
                Flags::ACK,
                0x7200_0001,
                isn.wrapping_add(1),
                &[],
                (ts(t + 2), echo),
            ),
        );
        s.at(
            t + 3,
            Role::Worm,
            synth::tcp_ts(
                &c,
                &d,
                Flags::PSH_ACK,
                0x7200_0001,
                isn.wrapping_add(1),
                SLAPPER_443,
                (ts(t + 3), echo),
            ),
        );
        // Then the attack on the real web server, which the latch must stop.
        let c = worm.port(34003);
        s.at(
            t + 500,
            Role::Worm,
            synth::tcp(&c, &web.port(443), Flags::SYN, 0x7300_0000, 0, &[]),
        );
        s.at(
            t + 1500,
            Role::Worm,
            synth::tcp(&c, &web.port(443), Flags::SYN, 0x7300_0000, 0, &[]),
        );
        s.at(
            t + 2500,
            Role::Worm,
            synth::tcp(&worm.port(34004), &web, Flags::SYN, 0x7400_0000, 0, &[]),
        );
    }

    // A spoofer forges the address of a benign client (203.0.113.10) and
    // probes 20 decoys on ports 80 and 443, then sends blind ACKs guessing
    // at the cookies. It never sees a SYN-ACK, so it can never bite; the
    // client it impersonates must stay untouched.
    let victim = cast::SPOOFED;
    let spoof = Endpoint::new(ROUTER_MAC, victim, 0);
    let mut n = 0u16;
    for host in 100..=254u8 {
        let addr = Ipv4Addr::new(198, 51, 100, host);
        let d = Endpoint::new(marks.mac(addr), addr, 0);
        for port in [80u16, 443] {
            let t = 40_000 + u64::from(n) * 10;
            let c = spoof.port(20_000 + n);
            s.at(
                t,
                Role::Spoofer,
                synth::tcp(
                    &c,
                    &d.port(port),
                    Flags::SYN,
                    0x6600_0000 + u32::from(n),
                    0,
                    &[],
                ),
            );
            s.at(
                t + 5,
                Role::Spoofer,
                synth::tcp(
                    &c,
                    &d.port(port),
                    Flags::ACK,
                    0x6600_0001 + u32::from(n),
                    0x1234_5678 ^ u32::from(n),
                    &[],
                ),
            );
            n += 1;
        }
        if n >= 40 {
            break;
        }
    }
    // A client of the quiet server: its request is the server's business,
    // never a bite.
    let reader = Endpoint::new(ROUTER_MAC, Ipv4Addr::new(203, 0, 113, 150), 46000);
    s.conversation(50_000, Role::Benign, &reader, &quiet, HTTP_GET, HTTP_OK);

    // The impersonated client's own traffic afterwards must still flow.
    let real = Endpoint::new(ROUTER_MAC, victim, 47000);
    s.conversation(60_000, Role::Benign, &real, &web, HTTP_GET, HTTP_OK);

    // Frames whose headers lie: each must be dropped with its reason.
    let fuzzer = Endpoint::new(ROUTER_MAC, cast::FUZZER, 6666);
    let probe = synth::tcp(&fuzzer, &web, Flags::SYN, 1, 0, &[]);
    let mut ihl = probe.clone();
    ihl[synth::offsets::IPV4_VERSION_IHL] = 0x43;
    s.at(30_000, Role::Malformed, ihl);
    let mut total = probe.clone();
    total[synth::offsets::IPV4_TOTAL_LEN..synth::offsets::IPV4_TOTAL_LEN + 2]
        .copy_from_slice(&1400u16.to_be_bytes());
    s.at(30_001, Role::Malformed, total);
    let mut offset = probe;
    offset[synth::offsets::TCP_DATA_OFFSET] = 0xf0;
    s.at(30_002, Role::Malformed, offset);

    // A late conversation moves the trace clock past the SYN timeout, so the
    // sweep's unanswered SYNs expire before the end.
    let late = Endpoint::new(ROUTER_MAC, Ipv4Addr::new(203, 0, 113, 200), 45000);
    s.conversation(95_000, Role::Benign, &late, &web, HTTP_GET, HTTP_OK);

    s.frames.sort_by_key(|f| f.ts_ns);
    s.frames
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::classify::classify;

    #[test]
    fn scenario_is_deterministic_and_sorted() {
        let a = build();
        let b = build();
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(x, y)| x.frame == y.frame && x.ts_ns == y.ts_ns)
        );
        assert!(a.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    }

    #[test]
    fn only_malformed_frames_fail_classification() {
        for f in build() {
            let result = classify(&f.frame);
            assert_eq!(
                result.is_err(),
                f.role == Role::Malformed,
                "{:?} {:?}",
                f.role,
                result
            );
        }
    }

    #[test]
    fn worm_sweeps_every_address() {
        let frames = build();
        let syns = frames
            .iter()
            .filter(|f| f.role == Role::Worm)
            .filter_map(|f| classify(&f.frame).ok())
            .filter(|i| i.tcp_flags.is_some_and(|fl| fl.0 & 0x12 == 0x02))
            .count();
        // 254 sweep SYNs, the two connections to the decoy and three
        // attempts on the web server.
        assert_eq!(syns, 254 + 2 + 3);
    }
}
