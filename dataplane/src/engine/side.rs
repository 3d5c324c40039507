//! Which side of the wire a frame came from, and what each side may say.
//!
//! Invariant 3 of the design: what arrives on one side can never make the
//! appliance act in the name of the other. Every frame is given a [`Side`]:
//! by the port where it knows (inline: the interface), else by its
//! Ethernet source (a configured gateway's MAC is the outside, any other
//! MAC the inside: one-arm and tap), else, with no gateway MAC configured
//! (capture replays, tests), by its IP source. Then:
//!
//! | side | source | verdict |
//! |---|---|---|
//! | outside | outside the protected space, or a gateway's address | as usual: may be marked, may bite |
//! | outside | inside the protected space | dropped, `spoofed`, never learned |
//! | inside | inside the protected space, an `inside_routes` network, or link-local/unspecified | as usual; the only frames liveness is learned from |
//! | inside | anything else | dropped, `spoofed` |
//!
//! Who can forge what, and why these rules hold against it, is the threat
//! model in `docs/deception.md`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::classify::PacketInfo;
use super::space::PrefixSet;
use crate::io::Side;

/// How frames are given a side, and the exceptions to the source rules.
#[derive(Clone, Debug, Default)]
pub struct SideRules {
    /// The gateways' own addresses: the router's interface on the
    /// protected network, which in a bump in the wire speaks from outside.
    pub gateways: PrefixSet,
    /// The gateways' MACs: a frame from one is from the outside, any other
    /// from the inside (one-arm and tap). Empty: sides by IP source.
    pub gateway_macs: Vec<[u8; 6]>,
    /// Networks behind routers on the inside whose hosts send from outside
    /// the protected space.
    pub inside_routes: PrefixSet,
}

/// Why a frame's source cannot be what it says.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SourceFault {
    /// An inside address arriving from the outside, or the reverse.
    WrongSide,
}

impl SideRules {
    /// The side of a frame: `arrival` when the port knows it, else by the
    /// Ethernet source when gateway MACs are configured, else by the IP
    /// source (`protected`: the protected space).
    #[inline]
    pub fn side_of(
        &self,
        arrival: Option<Side>,
        frame: &[u8],
        src: &[u8; 16],
        protected: &PrefixSet,
    ) -> Side {
        if let Some(side) = arrival {
            return side;
        }
        if !self.gateway_macs.is_empty() {
            let from_gateway = frame
                .get(6..12)
                .is_some_and(|mac| self.gateway_macs.iter().any(|g| g[..] == *mac));
            return if from_gateway {
                Side::Outside
            } else {
                Side::Inside
            };
        }
        if self.gateways.contains(src) {
            Side::Outside
        } else if protected.contains(src) || self.inside_routes.contains(src) {
            Side::Inside
        } else {
            Side::Outside
        }
    }

    /// Checks an IP (or ARP sender) source against the side it came from.
    #[inline]
    pub fn check(
        &self,
        side: Side,
        src: &[u8; 16],
        protected: &PrefixSet,
    ) -> Result<(), SourceFault> {
        let inside = protected.contains(src);
        let ok = match side {
            Side::Outside => !inside || self.gateways.contains(src),
            Side::Inside => inside || self.inside_routes.contains(src) || link_scoped(src),
        };
        if ok {
            Ok(())
        } else {
            Err(SourceFault::WrongSide)
        }
    }
}

/// True for sources that never leave their link: unspecified (DHCP,
/// duplicate address detection) and link-local (RFC 3927, RFC 4291).
fn link_scoped(src: &[u8; 16]) -> bool {
    match family(src) {
        Family::V4(a) => a.is_unspecified() || a.is_link_local(),
        Family::V6(a) => a.is_unspecified() || a.is_unicast_link_local(),
    }
}

enum Family {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// IPv4 addresses are carried IPv4-mapped on the engine's 16-byte space.
fn family(addr: &[u8; 16]) -> Family {
    let v6 = Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => Family::V4(v4),
        None => Family::V6(v6),
    }
}

/// True when `info`'s source is a routable unicast host of the packet's own
/// family: the only sources the appliance answers, learns or blocks (RFC
/// 1122 3.2.1.3, RFC 4291 2.5). Refused: IPv4 0/8, loopback, link-local,
/// multicast and 240/4 (broadcast included); IPv6 unspecified, loopback,
/// link-local, multicast, and IPv4-mapped or IPv4-compatible addresses,
/// which on the wire would make an IPv6 packet speak for an IPv4 host (RFC
/// 4291 2.5.5). A link-local source is never latched: its block would be
/// the whole link's fe80::/64.
#[inline]
pub fn unicast_host(info: &PacketInfo) -> bool {
    let src = &info.src;
    let mapped = baitwall_channel::is_v4_mapped(src);
    match info.ip_version {
        4 if mapped => {
            let a = [src[12], src[13], src[14], src[15]];
            !(a[0] == 0 || a[0] == 127 || a[0] >= 224 || (a[0] == 169 && a[1] == 254))
        }
        6 if !mapped => {
            let compatible = src[..12] == [0; 12];
            let link_local = src[0] == 0xfe && src[1] & 0xc0 == 0x80;
            !(compatible || src[0] == 0xff || link_local)
        }
        _ => false,
    }
}

/// True when `addr` belongs to the packet's family (an IPv6 packet to an
/// IPv4-mapped address is not to the IPv4 host).
#[inline]
pub fn of_family(addr: &[u8; 16], ip_version: u8) -> bool {
    let mapped = baitwall_channel::is_v4_mapped(addr);
    mapped == (ip_version == 4)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::space::Prefix;
    use std::net::IpAddr;

    fn a(s: &str) -> [u8; 16] {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    fn set(list: &[&str]) -> PrefixSet {
        PrefixSet::new(list.iter().map(|s| Prefix::from_net(s.parse().unwrap())))
    }

    fn protected() -> PrefixSet {
        set(&["198.51.100.0/24", "2001:db8:100::/64"])
    }

    fn rules(macs: Vec<[u8; 6]>) -> SideRules {
        SideRules {
            gateways: set(&["198.51.100.1/32"]),
            gateway_macs: macs,
            inside_routes: set(&["10.20.0.0/16"]),
        }
    }

    fn frame_from(mac: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[6..12].copy_from_slice(&mac);
        f
    }

    const ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
    const HOST: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

    /// (source, side) -> allowed, for every side and kind of source.
    #[test]
    fn each_side_speaks_only_for_itself() {
        let r = rules(vec![]);
        let p = protected();
        let table: &[(&str, Side, bool)] = &[
            ("203.0.113.9", Side::Outside, true),
            ("198.51.100.20", Side::Outside, false),
            ("198.51.100.1", Side::Outside, true),
            ("2001:db8:100::20", Side::Outside, false),
            ("2001:db8:200::20", Side::Outside, true),
            ("198.51.100.20", Side::Inside, true),
            ("2001:db8:100::20", Side::Inside, true),
            ("203.0.113.9", Side::Inside, false),
            ("2001:db8:200::20", Side::Inside, false),
            ("10.20.3.4", Side::Inside, true),
            ("0.0.0.0", Side::Inside, true),
            ("169.254.1.1", Side::Inside, true),
            ("::", Side::Inside, true),
            ("fe80::1", Side::Inside, true),
        ];
        for (src, side, ok) in table {
            assert_eq!(
                r.check(*side, &a(src), &p).is_ok(),
                *ok,
                "{src} from {side:?}"
            );
        }
    }

    #[test]
    fn the_port_decides_then_the_gateway_mac_then_the_address() {
        let p = protected();
        let inside_host = a("198.51.100.20");
        let outside_host = a("203.0.113.9");
        // The port's word is final.
        let by_mac = rules(vec![ROUTER]);
        assert_eq!(
            by_mac.side_of(Some(Side::Inside), &frame_from(ROUTER), &outside_host, &p),
            Side::Inside
        );
        // By MAC: the router's frames are outside whatever they say; any
        // other MAC is inside, even with an outside address (an insider
        // forging one).
        assert_eq!(
            by_mac.side_of(None, &frame_from(ROUTER), &inside_host, &p),
            Side::Outside
        );
        assert_eq!(
            by_mac.side_of(None, &frame_from(HOST), &outside_host, &p),
            Side::Inside
        );
        // By address, without gateway MACs (replays).
        let by_ip = rules(vec![]);
        assert_eq!(
            by_ip.side_of(None, &frame_from(HOST), &outside_host, &p),
            Side::Outside
        );
        assert_eq!(
            by_ip.side_of(None, &frame_from(HOST), &inside_host, &p),
            Side::Inside
        );
        assert_eq!(
            by_ip.side_of(None, &frame_from(HOST), &a("198.51.100.1"), &p),
            Side::Outside,
            "the gateway speaks from outside"
        );
    }

    fn info(version: u8, src: &str) -> PacketInfo {
        let mut i = PacketInfo::EMPTY;
        i.ip_version = version;
        i.src = a(src);
        i
    }

    #[test]
    fn only_unicast_hosts_of_the_packets_family_are_sources() {
        let table: &[(u8, &str, bool)] = &[
            (4, "203.0.113.9", true),
            (4, "0.0.0.0", false),
            (4, "0.1.2.3", false),
            (4, "127.0.0.1", false),
            (4, "224.0.0.1", false),
            (4, "239.255.255.250", false),
            (4, "240.0.0.1", false),
            (4, "255.255.255.255", false),
            (6, "2001:db8:200::9", true),
            (4, "169.254.7.7", false),
            (6, "fe80::1", false),
            (6, "::", false),
            (6, "::1", false),
            (6, "ff02::1", false),
            // IPv4-mapped and IPv4-compatible: an IPv6 packet speaking for
            // an IPv4 host.
            (6, "::ffff:203.0.113.9", false),
            (6, "::203.0.113.9", false),
        ];
        for (version, src, ok) in table {
            assert_eq!(unicast_host(&info(*version, src)), *ok, "v{version} {src}");
        }
        assert!(of_family(&a("198.51.100.20"), 4));
        assert!(!of_family(&a("198.51.100.20"), 6));
        assert!(of_family(&a("2001:db8:100::1"), 6));
        assert!(!of_family(&a("2001:db8:100::1"), 4));
    }
}
