//! Personas: the deterministic face of each decoy.
//!
//! A decoy's persona is derived from a keyed hash (SipHash-2-4 under the
//! deployment secret) of its address: the same address gives the same
//! persona on every worker and after every restart with the same secret, and
//! neighbouring addresses give unrelated ones. A persona fixes everything a
//! fingerprinting scanner looks at (see `shared/notes/deception-facts.md`,
//! from nmap-os-db and p0f): the stack family (initial TTL, window, window
//! scale, MSS, TCP option order, DF, IP-ID behaviour, timestamp clock), the
//! open ports of a plausible service set, and the service banners. No persona
//! opens every port: that is the tarpit tell Degreaser and nmap look for.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use super::stack::{self, Stack};
use crate::wire::EthernetAddress;

/// The families of host a decoy can pass for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonaKind {
    /// A Linux web server (nginx or Apache) with SSH.
    LinuxWeb,
    /// A Linux box with SSH only.
    LinuxSsh,
    /// A Windows server (SMB, RPC, RDP, sometimes IIS).
    WindowsServer,
    /// A network printer (HP JetDirect: HTTP, LPD, IPP, raw 9100).
    Printer,
    /// A Cisco IOS router (SSH, telnet, HTTP).
    Router,
    /// A FreeBSD server (SSH, nginx).
    FreeBsd,
    /// An embedded video recorder (Hikvision: HTTP, RTSP, its SDK port).
    Camera,
}

impl Persona {
    /// A plain face for frames written on behalf of a real host (tap
    /// mode's RSTs): its own MAC, Linux's TTL and DF, no IP-ID, nothing open.
    pub const fn for_host(mac: EthernetAddress) -> Persona {
        Persona {
            kind: PersonaKind::LinuxSsh,
            stack: &stack::HOST,
            mac,
            clock_offset: 0,
            skew_ppm: 0,
            open_ports: &[],
            http_server: "",
            ssh_banner: "",
        }
    }
}

impl PersonaKind {
    /// Every family, in wire-code order.
    pub const ALL: [PersonaKind; 7] = [
        PersonaKind::LinuxWeb,
        PersonaKind::LinuxSsh,
        PersonaKind::WindowsServer,
        PersonaKind::Printer,
        PersonaKind::Router,
        PersonaKind::FreeBsd,
        PersonaKind::Camera,
    ];

    /// Stable lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PersonaKind::LinuxWeb => "linux_web",
            PersonaKind::LinuxSsh => "linux_ssh",
            PersonaKind::WindowsServer => "windows_server",
            PersonaKind::Printer => "printer",
            PersonaKind::Router => "router",
            PersonaKind::FreeBsd => "freebsd",
            PersonaKind::Camera => "camera",
        }
    }

    /// The UDP services the family runs (the others' UDP ports are closed):
    /// an IOS router is its network's DNS forwarder and NTP server.
    pub const fn udp_ports(self) -> &'static [u16] {
        match self {
            PersonaKind::Router => &[53, 123],
            _ => &[],
        }
    }

    /// The stack of this family.
    pub const fn stack(self) -> &'static Stack {
        match self {
            PersonaKind::LinuxWeb | PersonaKind::LinuxSsh => &stack::LINUX,
            PersonaKind::WindowsServer => &stack::WINDOWS,
            PersonaKind::Printer => &stack::JETDIRECT,
            PersonaKind::Router => &stack::IOS,
            PersonaKind::FreeBsd => &stack::FREEBSD,
            PersonaKind::Camera => &stack::HIKVISION,
        }
    }
}

/// The face of one decoy.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Persona {
    /// The family.
    pub kind: PersonaKind,
    /// How its TCP/IP stack answers (the family's: `engine::stack`).
    pub stack: &'static Stack,
    /// The decoy's MAC: a vendor's or locally administered, unique per decoy.
    #[serde(serialize_with = "ser_mac")]
    pub mac: EthernetAddress,
    /// Per-decoy starting point of its IP-ID counter and TCP timestamps.
    pub clock_offset: u32,
    /// Its clock's own skew, in parts per million (a real host's crystal
    /// is off by tens of ppm; two decoys never share a skew by design).
    pub skew_ppm: i32,
    /// Open TCP ports; every other port answers RST.
    pub open_ports: &'static [u16],
    /// `Server:` header of its HTTP ports.
    pub http_server: &'static str,
    /// SSH identification string (without CR LF).
    pub ssh_banner: &'static str,
}

fn ser_mac<S: serde::Serializer>(mac: &EthernetAddress, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(mac)
}

impl Persona {
    /// Bits fixed per decoy and different between decoys (its clock
    /// offset and its NIC bits), for the values a real host keeps in its
    /// files: serial numbers, GUIDs, entity tags.
    pub fn identity(&self) -> u64 {
        let [.., a, b, c] = self.mac.0;
        u64::from(self.clock_offset) << 24 | u64::from(a) << 16 | u64::from(b) << 8 | u64::from(c)
    }

    /// True when `port` is open on this decoy.
    #[inline]
    pub fn is_open(&self, port: u16) -> bool {
        self.open_ports.contains(&port)
    }

    /// The persona's TCP clock (its timestamps are that clock plus a keyed
    /// offset per prober: `engine::tsproof`).
    #[inline]
    pub fn ts_clock(&self) -> super::tsproof::TsClock {
        super::tsproof::TsClock {
            offset: self.clock_offset,
            hz: self.stack.ts_hz,
            skew_ppm: self.skew_ppm,
        }
    }

    /// The key of this decoy's timestamp offset towards the prober of
    /// `pair` on connection `ports` (source port << 16 | decoy port): the
    /// pair's, or, on a stack with an offset per connection, the pair's
    /// mixed with the ports.
    #[inline]
    pub fn ts_key(&self, pair: u64, ports: u32) -> u64 {
        if self.stack.ts_per_connection {
            pair ^ (u64::from(ports).wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_0000_0000)
        } else {
            pair
        }
    }
}

const LINUX_WEB_PORTS: &[u16] = &[22, 80, 443];
const LINUX_WEB_PORTS_ALT: &[u16] = &[22, 80, 443, 8080];
const LINUX_SSH_PORTS: &[u16] = &[22];
const WINDOWS_PORTS: &[u16] = &[135, 139, 445, 3389];
const WINDOWS_IIS_PORTS: &[u16] = &[80, 135, 139, 443, 445, 3389];
const PRINTER_PORTS: &[u16] = &[80, 443, 515, 631, 9100];
const ROUTER_PORTS: &[u16] = &[22, 23, 80];
const FREEBSD_PORTS: &[u16] = &[22, 80, 443];
const CAMERA_PORTS: &[u16] = &[80, 554, 8000];

/// A Linux persona's distribution: what its services say, all of them on
/// a 5.x kernel (the stack nmap's database knows as Linux 5).
struct Distro {
    ssh: &'static str,
    nginx: &'static str,
    apache: &'static str,
}

const DISTROS: &[Distro] = &[
    // Debian 11 (bullseye), kernel 5.10.
    Distro {
        ssh: "SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u3",
        nginx: "nginx/1.18.0",
        apache: "Apache/2.4.62 (Debian)",
    },
    // Ubuntu 20.04 (focal), kernel 5.4.
    Distro {
        ssh: "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11",
        nginx: "nginx/1.18.0 (Ubuntu)",
        apache: "Apache/2.4.41 (Ubuntu)",
    },
    // Red Hat Enterprise Linux 9, kernel 5.14.
    Distro {
        ssh: "SSH-2.0-OpenSSH_8.7",
        nginx: "nginx/1.20.1",
        apache: "Apache/2.4.57 (Red Hat Enterprise Linux)",
    },
];

/// Checked at compile time: the table has a first entry.
const DEBIAN_11: &Distro = &DISTROS[0];

/// Which MAC addresses decoys use.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MacStyle {
    /// A real vendor's OUI for the hardware the persona claims (HP for a
    /// printer, Cisco for a router, Dell, Supermicro, HPE, VMware or
    /// Hyper-V for servers), as a LAN scan's vendor column expects.
    #[default]
    Vendor,
    /// Locally administered addresses (02:...), which no vendor owns.
    Local,
}

/// OUIs per family, each checked against nmap's `nmap-mac-prefixes` in a
/// test (the table a LAN scan names vendors from).
const LINUX_OUIS: &[[u8; 3]] = &[
    [0xf8, 0xbc, 0x12], // Dell
    [0xb0, 0x83, 0xfe], // Dell
    [0xd4, 0xae, 0x52], // Dell
    [0x0c, 0xc4, 0x7a], // Super Micro Computer
    [0xac, 0x1f, 0x6b], // Super Micro Computer
    [0x00, 0x50, 0x56], // VMware
];
const WINDOWS_OUIS: &[[u8; 3]] = &[
    [0xd4, 0xae, 0x52], // Dell
    [0xb0, 0x83, 0xfe], // Dell
    [0x94, 0x18, 0x82], // Hewlett Packard Enterprise
    [0x70, 0x10, 0x6f], // Hewlett Packard Enterprise
    [0x00, 0x50, 0x56], // VMware
    [0x00, 0x15, 0x5d], // Microsoft (Hyper-V)
];
const PRINTER_OUIS: &[[u8; 3]] = &[
    [0x3c, 0xd9, 0x2b], // Hewlett Packard
    [0xa0, 0xd3, 0xc1], // Hewlett Packard
    [0x94, 0x57, 0xa5], // Hewlett Packard
    [0xd0, 0xbf, 0x9c], // Hewlett Packard
    [0xf4, 0xce, 0x46], // Hewlett Packard
    [0x9c, 0x8e, 0x99], // Hewlett Packard
];
const CAMERA_OUIS: &[[u8; 3]] = &[
    [0x28, 0x57, 0xbe], // Hangzhou Hikvision Digital Technology
    [0x24, 0x28, 0xfd], // Hangzhou Hikvision Digital Technology
    [0x08, 0x54, 0x11], // Hangzhou Hikvision Digital Technology
    [0x18, 0x68, 0xcb], // Hangzhou Hikvision Digital Technology
];
const ROUTER_OUIS: &[[u8; 3]] = &[
    [0x58, 0x8d, 0x09], // Cisco Systems
    [0x00, 0x26, 0x0b], // Cisco Systems
    [0x00, 0x1b, 0xd4], // Cisco Systems
    [0xc8, 0x00, 0x84], // Cisco Systems
];

impl PersonaKind {
    /// The OUIs a decoy of this family may carry.
    pub const fn ouis(self) -> &'static [[u8; 3]] {
        match self {
            PersonaKind::LinuxWeb | PersonaKind::LinuxSsh | PersonaKind::FreeBsd => LINUX_OUIS,
            PersonaKind::Camera => CAMERA_OUIS,
            PersonaKind::WindowsServer => WINDOWS_OUIS,
            PersonaKind::Printer => PRINTER_OUIS,
            PersonaKind::Router => ROUTER_OUIS,
        }
    }
}

/// Derives personas from the deployment secret.
#[derive(Clone, Debug)]
pub struct PersonaMaker {
    k0: u64,
    k1: u64,
    macs: MacStyle,
}

impl PersonaMaker {
    /// A maker keyed by `secret` (the same secret gives the same personas).
    pub fn new(secret: &[u8; 32]) -> Self {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            if let Some(src) = secret.get(at..at + 8) {
                w.copy_from_slice(src);
            }
            u64::from_le_bytes(w)
        };
        // Personas are keyed by the first half of the secret; cookie epoch
        // keys derive from the second half.
        PersonaMaker {
            k0: word(0) ^ 0x7065_7273_6f6e_6173,
            k1: word(8) ^ 0x6261_6974_7761_6c6c,
            macs: MacStyle::Vendor,
        }
    }

    /// This maker, with decoy MACs of `style`.
    pub fn with_macs(self, style: MacStyle) -> Self {
        PersonaMaker {
            macs: style,
            ..self
        }
    }

    /// The 24 bits of a vendor MAC after its OUI: a keyed permutation of the
    /// address's low 24 bits (a four-round Feistel network on two 12-bit
    /// halves), so that two decoys whose addresses differ only there (all
    /// of an IPv4 /8) never share a MAC, and neighbours' MACs look
    /// unrelated to anyone without the secret.
    fn nic_bits(&self, addr: &[u8; 16]) -> [u8; 3] {
        let low = u32::from_be_bytes([0, addr[13], addr[14], addr[15]]);
        let (mut l, mut r) = (low >> 12, low & 0xfff);
        for round in 0..4u32 {
            let key = (self.k1 >> (16 * round)) as u32 ^ self.k0 as u32;
            let f = (r.wrapping_mul(0x9e37_79b1) ^ key).rotate_left(7 + round) >> 20;
            (l, r) = (r, (l ^ f) & 0xfff);
        }
        let v = (l << 12 | r).to_be_bytes();
        [v[1], v[2], v[3]]
    }

    /// The persona of the decoy at `addr` (16 bytes, IPv4-mapped for IPv4).
    pub fn persona(&self, addr: &[u8; 16]) -> Persona {
        // One SipHash-1-3 with a 128-bit output gives both words: a persona
        // needs to be unpredictable without the secret, not a MAC (cookies,
        // which are, keep SipHash-2-4). Half the cost of the two SipHash-2-4
        // finalisations this replaced, and it is paid per mark in a sweep.
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(addr);
        let hash = h.finish128();
        let (a, b) = (hash.h1, hash.h2);
        let pick = |bits: u64, n: usize| (bits as usize) % n.max(1);
        let clock_offset = (a >> 32) as u32;
        let sel = (a >> 8) as u16;
        let kind = match a % 100 {
            0..=29 => PersonaKind::LinuxWeb,
            30..=44 => PersonaKind::LinuxSsh,
            45..=66 => PersonaKind::WindowsServer,
            67..=74 => PersonaKind::FreeBsd,
            75..=84 => PersonaKind::Printer,
            85..=92 => PersonaKind::Router,
            _ => PersonaKind::Camera,
        };
        let m = b.to_le_bytes();
        let mac = match self.macs {
            MacStyle::Vendor => {
                let ouis = kind.ouis();
                let [o0, o1, o2] = ouis
                    .get(pick(b >> 48, ouis.len()))
                    .copied()
                    .unwrap_or([0x00, 0x50, 0x56]);
                let [n0, n1, n2] = self.nic_bits(addr);
                EthernetAddress([o0, o1, o2, n0, n1, n2])
            }
            // Locally administered (bit 1 of the first octet), unicast (bit 0 clear).
            MacStyle::Local => {
                EthernetAddress([(m[0] & 0xfc) | 0x02, m[1], m[2], m[3], m[4], m[5]])
            }
        };
        let skew_ppm = (b >> 24 & 0x7f) as i32 - 63;
        let face = |open_ports: &'static [u16], http_server, ssh_banner| Persona {
            kind,
            stack: kind.stack(),
            mac,
            clock_offset,
            skew_ppm,
            open_ports,
            http_server,
            ssh_banner,
        };
        match kind {
            PersonaKind::LinuxWeb | PersonaKind::LinuxSsh => {
                let distro = DISTROS
                    .get(pick(u64::from(sel >> 3), DISTROS.len()))
                    .unwrap_or(DEBIAN_11);
                let ports = match (kind, sel & 2) {
                    (PersonaKind::LinuxSsh, _) => LINUX_SSH_PORTS,
                    (_, 0) => LINUX_WEB_PORTS,
                    _ => LINUX_WEB_PORTS_ALT,
                };
                let http = if sel & 4 == 0 {
                    distro.nginx
                } else {
                    distro.apache
                };
                face(ports, http, distro.ssh)
            }
            PersonaKind::WindowsServer => face(
                if sel & 2 == 0 {
                    WINDOWS_PORTS
                } else {
                    WINDOWS_IIS_PORTS
                },
                "Microsoft-IIS/10.0",
                "SSH-2.0-OpenSSH_for_Windows_8.1",
            ),
            PersonaKind::Printer => face(
                PRINTER_PORTS,
                "HP HTTP Server; HP Color LaserJet MFP M476dw - CF387A",
                "",
            ),
            PersonaKind::Router => face(ROUTER_PORTS, "cisco-IOS", "SSH-2.0-Cisco-1.25"),
            PersonaKind::FreeBsd => face(
                FREEBSD_PORTS,
                "nginx/1.18.0",
                "SSH-2.0-OpenSSH_7.9 FreeBSD-20200214",
            ),
            PersonaKind::Camera => face(CAMERA_PORTS, "DNVRS-Webs", ""),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::net::Ipv4Addr;

    #[test]
    fn every_family_has_a_wire_code_the_channel_names_and_decodes() {
        use baitwall_channel::message::code;
        assert_eq!(PersonaKind::ALL.len(), usize::from(code::PERSONAS));
        for kind in PersonaKind::ALL {
            let c = crate::engine::query::family_code(kind);
            assert!(c < code::PERSONAS, "{kind:?}");
            assert_eq!(code::persona_name(c), kind.as_str());
        }
    }

    fn addr(i: u32) -> [u8; 16] {
        Ipv4Addr::from(0xc633_6400 + i).to_ipv6_mapped().octets()
    }

    #[test]
    fn the_same_address_gives_the_same_persona() {
        let a = PersonaMaker::new(&[1; 32]);
        let b = PersonaMaker::new(&[1; 32]);
        for i in 0..256 {
            assert_eq!(a.persona(&addr(i)), b.persona(&addr(i)));
        }
    }

    #[test]
    fn another_secret_gives_other_personas() {
        let a = PersonaMaker::new(&[1; 32]);
        let b = PersonaMaker::new(&[2; 32]);
        let same = (0..256)
            .filter(|&i| a.persona(&addr(i)).mac == b.persona(&addr(i)).mac)
            .count();
        assert_eq!(same, 0);
    }

    #[test]
    fn decoys_differ_and_no_persona_opens_everything() {
        let maker = PersonaMaker::new(&[3; 32]);
        let personas: Vec<Persona> = (0..1024).map(|i| maker.persona(&addr(i))).collect();
        let macs: HashSet<_> = personas.iter().map(|p| p.mac).collect();
        assert_eq!(
            macs.len(),
            personas.len(),
            "one MAC per decoy (a shared MAC is LaBrea's tell)"
        );
        let mut kinds: HashMap<PersonaKind, usize> = HashMap::new();
        for p in &personas {
            *kinds.entry(p.kind).or_default() += 1;
            assert!(!p.mac.is_local() && p.mac.is_unicast(), "{}", p.mac);
            let oui = [p.mac.0[0], p.mac.0[1], p.mac.0[2]];
            assert!(p.kind.ouis().contains(&oui), "{:?} {}", p.kind, p.mac);
            assert!(!p.open_ports.is_empty() && p.open_ports.len() <= 8);
            assert!(
                p.stack.data_window() > 20,
                "Degreaser flags windows of 20 or less"
            );
            assert!((-63..=64).contains(&p.skew_ppm));
        }
        assert_eq!(kinds.len(), 7, "{kinds:?}");
        assert!(kinds.values().all(|&n| n >= 20), "{kinds:?}");
        let clocks: HashSet<_> = personas.iter().map(|p| p.clock_offset).collect();
        assert!(clocks.len() > 1000, "decoys must not share a clock");
        let skews: HashSet<_> = personas.iter().map(|p| p.skew_ppm).collect();
        assert!(skews.len() > 100, "nor a skew: {}", skews.len());
    }

    #[test]
    fn timestamps_follow_the_persona_with_its_own_skew() {
        let maker = PersonaMaker::new(&[4; 32]);
        let find = |kind| {
            (0..4096)
                .map(|i| maker.persona(&addr(i)))
                .find(|p| p.kind == kind && p.skew_ppm.abs() > 20)
                .unwrap()
        };
        let linux = find(PersonaKind::LinuxWeb);
        let clock = linux.ts_clock();
        let day = 86_400_000u64;
        let ticks = clock
            .tsval(7, 1_000_000 + day)
            .unwrap()
            .wrapping_sub(clock.tsval(7, 1_000_000).unwrap());
        // A day at 1 kHz, off by the decoy's own skew.
        let want = 86_400_000i64 + 86_400_000 * i64::from(linux.skew_ppm) / 1_000_000;
        assert!((i64::from(ticks) - want).abs() <= 1, "{ticks} vs {want}");
        assert_eq!(find(PersonaKind::Router).ts_clock().tsval(7, 1000), None);
        let bsd = find(PersonaKind::FreeBsd);
        assert_ne!(
            bsd.ts_key(7 << 32, 40_000 << 16 | 22),
            bsd.ts_key(7 << 32, 40_001 << 16 | 22),
            "FreeBSD keeps an offset per connection"
        );
        assert_eq!(linux.ts_key(7 << 32, 1), linux.ts_key(7 << 32, 2));
    }

    /// Each family's OUIs belong to the vendor it claims, by nmap's own
    /// table (what a LAN scan prints next to a MAC).
    #[test]
    fn vendor_ouis_name_the_claimed_hardware_in_nmaps_table() {
        let table =
            std::fs::read_to_string("/usr/share/nmap/nmap-mac-prefixes").unwrap_or_default();
        if !crate::testbed::prerequisite(
            !table.is_empty(),
            "nmap (its nmap-mac-prefixes) is not installed",
        ) {
            return;
        }
        let vendor = |oui: &[u8; 3]| {
            let key = format!("{:02X}{:02X}{:02X} ", oui[0], oui[1], oui[2]);
            table
                .lines()
                .find_map(|l| l.strip_prefix(&key))
                .unwrap_or_else(|| panic!("{key} not in nmap-mac-prefixes"))
                .to_owned()
        };
        for (kind, makers) in [
            (PersonaKind::Printer, &["Hewlett Packard"][..]),
            (PersonaKind::Router, &["Cisco Systems"][..]),
            (
                PersonaKind::Camera,
                &["Hangzhou Hikvision Digital Technology"][..],
            ),
            (
                PersonaKind::LinuxWeb,
                &["Dell", "Super Micro Computer", "VMware"][..],
            ),
            (
                PersonaKind::WindowsServer,
                &["Dell", "Hewlett Packard Enterprise", "VMware", "Microsoft"][..],
            ),
        ] {
            for oui in kind.ouis() {
                let v = vendor(oui);
                assert!(makers.iter().any(|m| v.starts_with(m)), "{kind:?}: {v}");
            }
        }
    }

    /// Decoys whose addresses differ only in their low 24 bits never share
    /// a MAC (the NIC part is a keyed permutation of those bits), and the
    /// local style stays available.
    #[test]
    fn vendor_macs_are_unique_per_decoy_and_local_ones_stay_available() {
        let maker = PersonaMaker::new(&[6; 32]);
        let mut seen = HashSet::new();
        for i in 0..1u32 << 16 {
            let a = Ipv4Addr::from(0x0a00_0000 | (i * 7 % (1 << 24)))
                .to_ipv6_mapped()
                .octets();
            let p = maker.persona(&a);
            assert!(seen.insert(p.mac), "{} repeated", p.mac);
        }
        let local = PersonaMaker::new(&[6; 32]).with_macs(MacStyle::Local);
        let p = local.persona(&addr(1));
        assert!(p.mac.is_local() && p.mac.is_unicast());
        assert_eq!(p.kind, maker.persona(&addr(1)).kind, "only the MAC changes");
    }
}
