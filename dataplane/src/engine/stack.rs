//! Stacks: how each operating system a persona claims answers at the TCP/IP
//! layer, down to the probes of `nmap -O`.
//!
//! Each [`Stack`] follows one reference entry of nmap's own database
//! (`nmap-os-db`, shipped with Debian's nmap 7.93), named in
//! [`Stack::nmap`]: its SYN-ACK options and window for each of nmap's six
//! SEQ probes, its answer to an ECN-setup SYN, to the odd segments T2-T7,
//! to a closed UDP port (U1) and to echo requests (IE), and how it fills the
//! IPv4 identification of each (SEQ's TI, CI, II). `stack::tests` drives the
//! real reply writers with nmap's probes and compares every answer with that
//! entry, read from the database file itself.
//!
//! Everything here is constant: a persona points at one `&'static Stack`,
//! and the only per-packet work is the branch each field selects.

use serde::Serialize;

/// How a stack fills the IPv4 identification of one kind of reply.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpId {
    /// Always zero (Linux and FreeBSD on DF segments).
    Zero,
    /// One counter per host, incremented per packet and moving with time
    /// (Windows, printers): nmap's `I`; shared by every reply kind that
    /// uses it, so ICMP continues the TCP sequence (`SS=S`).
    Counter,
    /// One counter per (host, destination) pair (Linux's `ip_idents`).
    PerDestination,
    /// Unpredictable per packet (Cisco IOS, FreeBSD's ICMP).
    Random,
}

/// The SYN-ACK option layouts, as each family's stack writes them (nmap's
/// `O` strings: M MSS, N NOP, W window scale, S SACK permitted, T
/// timestamps, L end of list).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Linux (`tcp_options_write`): M, then S T or N N T or N N S, then N W.
    Linux,
    /// Windows: M, N W, then S T or N N T or N N S.
    Windows,
    /// FreeBSD: M, N W, then S T or N N T, or S padded with L L.
    FreeBsd,
    /// HP JetDirect: M, N W, N N S, N N T.
    JetDirect,
    /// Cisco IOS: M alone.
    MssOnly,
}

/// The receive window a stack offers in its SYN-ACK.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The same window always.
    Fixed(u16),
    /// One window when timestamps are on, another when they are off (Linux:
    /// 45 x 1448 and 44 x 1460 segments).
    ByTimestamps {
        /// With timestamps.
        with: u16,
        /// Without.
        without: u16,
    },
    /// The smallest whole number of segments (MSS less the timestamp
    /// option) that reaches this many bytes (HP JetDirect).
    Segments(u16),
}

/// What a stack does with SYN|FIN|PSH|URG (nmap's T3) to a listening port.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SynFin {
    /// Dropped (Linux: a SYN with FIN is discarded in LISTEN).
    Drop,
    /// Answered as a SYN (FreeBSD, older Linux).
    SynAck,
    /// Refused with RST|ACK (Windows).
    Reset,
}

/// One operating system's TCP/IP behaviour.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Stack {
    /// The nmap-os-db entry this stack answers as: its `Fingerprint` name
    /// and which of the entries of that name (0: the first).
    pub nmap: (&'static str, usize),
    /// Initial TTL of TCP segments.
    pub ttl: u8,
    /// Initial TTL of ICMP messages (HP's differ from its TCP).
    pub icmp_ttl: u8,
    /// IPv6 hop limit.
    pub hop_limit: u8,
    /// DF on SYN-ACKs and data.
    pub df: bool,
    /// DF on RSTs.
    pub rst_df: bool,
    /// The MSS it advertises.
    pub mss: u16,
    /// Whether it advertises the peer's MSS when that is smaller.
    pub mss_clamped: bool,
    /// The MSS it advertises to a SYN that offered none (Cisco: RFC 9293's
    /// default of 536).
    pub mss_unoffered: u16,
    /// Its SYN-ACK window.
    pub window: Window,
    /// Window scale shift, when offered one (`None`: never scales).
    pub window_scale: Option<u8>,
    /// Option layout.
    pub layout: Layout,
    /// TCP timestamp clock in Hz (0: no timestamps).
    pub ts_hz: u32,
    /// A timestamp offset per connection rather than per peer (FreeBSD's
    /// `tcp_ts_offset`): nmap sees a random clock (`TS=20-22`).
    pub ts_per_connection: bool,
    /// Whether an ECN-setup SYN (ECE and CWR) gets ECE back (RFC 3168).
    pub ecn: bool,
    /// A null segment (nmap's T2) or FIN to a listening port gets RST|ACK.
    pub bare_to_open_reset: bool,
    /// What SYN|FIN|PSH|URG to a listening port (T3) gets.
    pub syn_fin: SynFin,
    /// Whether FIN|PSH|URG to a closed port (T7, an Xmas scan) is answered.
    pub xmas_to_closed: bool,
    /// RST|ACK to a segment without ACK takes its sequence number from the
    /// segment's acknowledgement field (Cisco's `S=A`) instead of 0.
    pub rst_seq_from_ack: bool,
    /// Its RST|ACK acknowledges the FIN too (everyone but Cisco).
    pub rst_acks_fin: bool,
    /// A bare RST carries the probe's acknowledgement number in its own
    /// acknowledgement field (Windows' `A=O`) instead of 0.
    pub rst_keeps_ack: bool,
    /// IP-ID of SYN-ACKs and data (nmap's TI).
    pub tcp_id: IpId,
    /// IP-ID of RSTs from closed ports (CI).
    pub rst_id: IpId,
    /// IP-ID of ICMP replies (II).
    pub icmp_id: IpId,
    /// An ICMP error quotes the whole datagram (within 576 bytes) rather
    /// than its IP header and 8 bytes (RFC 792's minimum).
    pub quote_whole: bool,
    /// Echo replies copy the request's DF (else never set).
    pub echo_copies_df: bool,
    /// Echo replies keep the request's code (else 0).
    pub echo_keeps_code: bool,
}

/// What a SYN offered that shapes the SYN-ACK.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// MSS offered.
    pub mss: Option<u16>,
    /// SACK permitted offered.
    pub sack: bool,
    /// Window scaling offered.
    pub ws: bool,
    /// Timestamps offered and answered.
    pub ts: bool,
}

/// One SYN-ACK option, in the order a layout writes them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Opt {
    /// Maximum segment size.
    Mss(u16),
    /// No-operation.
    Nop,
    /// Window scale.
    Ws(u8),
    /// SACK permitted.
    Sack,
    /// Timestamps (values written per reply).
    Ts,
    /// End of list (padding).
    Eol,
}

impl Stack {
    /// The MSS of a SYN-ACK answering `offer`.
    pub fn mss_for(&self, offer: &Offer) -> u16 {
        match offer.mss {
            Some(theirs) if self.mss_clamped => theirs.min(self.mss),
            Some(_) => self.mss,
            None => self.mss_unoffered,
        }
    }

    /// The window of a SYN-ACK answering `offer`.
    pub fn window_for(&self, offer: &Offer) -> u16 {
        match self.window {
            Window::Fixed(w) => w,
            Window::ByTimestamps { with, without } => {
                if offer.ts {
                    with
                } else {
                    without
                }
            }
            Window::Segments(bytes) => {
                let seg = u32::from(self.mss_for(offer))
                    .saturating_sub(if offer.ts { 12 } else { 0 })
                    .max(1);
                (u32::from(bytes).div_ceil(seg) * seg).min(0xffff) as u16
            }
        }
    }

    /// The window after the handshake (a stateless decoy does not know
    /// what was negotiated: the unscaled window of a timestamp-less SYN).
    pub fn data_window(&self) -> u16 {
        self.window_for(&Offer {
            mss: None,
            sack: false,
            ws: false,
            ts: false,
        })
    }

    /// The SYN-ACK options answering `offer`, in this stack's order (at
    /// most 9 entries; unused ones are `None`).
    pub fn options_for(&self, offer: &Offer) -> [Option<Opt>; 10] {
        use Opt::{Eol, Nop, Sack, Ts, Ws};
        let mut out = [None; 10];
        let mut n = 0;
        let mut put = |o: Opt| {
            if let Some(slot) = out.get_mut(n) {
                *slot = Some(o);
                n += 1;
            }
        };
        put(Opt::Mss(self.mss_for(offer)));
        let ws = self.window_scale.filter(|_| offer.ws);
        let (sack, ts) = (offer.sack, offer.ts && self.ts_hz != 0);
        match self.layout {
            Layout::Linux => {
                match (sack, ts) {
                    (true, true) => [Sack, Ts].into_iter().for_each(&mut put),
                    (false, true) => [Nop, Nop, Ts].into_iter().for_each(&mut put),
                    (true, false) => [Nop, Nop, Sack].into_iter().for_each(&mut put),
                    (false, false) => {}
                }
                if let Some(w) = ws {
                    [Nop, Ws(w)].into_iter().for_each(&mut put);
                }
            }
            Layout::Windows | Layout::FreeBsd => {
                if let Some(w) = ws {
                    [Nop, Ws(w)].into_iter().for_each(&mut put);
                }
                match (sack, ts) {
                    (true, true) => [Sack, Ts].into_iter().for_each(&mut put),
                    (false, true) => [Nop, Nop, Ts].into_iter().for_each(&mut put),
                    (true, false) if self.layout == Layout::FreeBsd => {
                        [Sack, Eol, Eol].into_iter().for_each(&mut put)
                    }
                    (true, false) => [Nop, Nop, Sack].into_iter().for_each(&mut put),
                    (false, false) => {}
                }
            }
            Layout::JetDirect => {
                if let Some(w) = ws {
                    [Nop, Ws(w)].into_iter().for_each(&mut put);
                }
                if sack {
                    [Nop, Nop, Sack].into_iter().for_each(&mut put);
                }
                if ts {
                    [Nop, Nop, Ts].into_iter().for_each(&mut put);
                }
            }
            Layout::MssOnly => {}
        }
        out
    }
}

/// Linux 5.x (Debian 11, Ubuntu 20.04, RHEL 9 kernels): nmap's
/// "Linux 5.0 - 5.4".
pub static LINUX: Stack = Stack {
    nmap: ("Linux 5.0 - 5.4", 0),
    ttl: 64,
    icmp_ttl: 64,
    hop_limit: 64,
    df: true,
    rst_df: true,
    mss: 1460,
    mss_clamped: false,
    mss_unoffered: 1460,
    window: Window::ByTimestamps {
        with: 65160,
        without: 64240,
    },
    window_scale: Some(7),
    layout: Layout::Linux,
    ts_hz: 1000,
    ts_per_connection: false,
    ecn: true,
    bare_to_open_reset: false,
    syn_fin: SynFin::Drop,
    xmas_to_closed: false,
    rst_seq_from_ack: false,
    rst_acks_fin: true,
    rst_keeps_ack: false,
    tcp_id: IpId::Zero,
    rst_id: IpId::Zero,
    icmp_id: IpId::PerDestination,
    quote_whole: true,
    echo_copies_df: false,
    echo_keeps_code: true,
};

/// Windows Server 2016-2022 (Debian's nmap 7.93 has no 2019 or 2022 entry:
/// the stack did not change): "Microsoft Windows Server 2016 build 10586 -
/// 14393".
pub static WINDOWS: Stack = Stack {
    nmap: ("Microsoft Windows Server 2016 build 10586 - 14393", 0),
    ttl: 128,
    icmp_ttl: 128,
    hop_limit: 128,
    df: true,
    rst_df: true,
    mss: 1460,
    mss_clamped: false,
    mss_unoffered: 1460,
    window: Window::Fixed(8192),
    window_scale: Some(8),
    layout: Layout::Windows,
    ts_hz: 1000,
    ts_per_connection: false,
    ecn: true,
    bare_to_open_reset: true,
    syn_fin: SynFin::Reset,
    xmas_to_closed: true,
    rst_seq_from_ack: false,
    rst_acks_fin: true,
    rst_keeps_ack: true,
    tcp_id: IpId::Counter,
    rst_id: IpId::Counter,
    icmp_id: IpId::Counter,
    quote_whole: true,
    echo_copies_df: false,
    echo_keeps_code: false,
};

/// FreeBSD 12/13: "FreeBSD 12.0-RELEASE - 13.0-CURRENT".
pub static FREEBSD: Stack = Stack {
    nmap: ("FreeBSD 12.0-RELEASE - 13.0-CURRENT", 0),
    ttl: 64,
    icmp_ttl: 64,
    hop_limit: 64,
    df: true,
    rst_df: true,
    mss: 1460,
    mss_clamped: false,
    mss_unoffered: 1460,
    window: Window::Fixed(65535),
    window_scale: Some(6),
    layout: Layout::FreeBsd,
    ts_hz: 1000,
    ts_per_connection: true,
    ecn: true,
    bare_to_open_reset: false,
    syn_fin: SynFin::SynAck,
    xmas_to_closed: true,
    rst_seq_from_ack: false,
    rst_acks_fin: true,
    rst_keeps_ack: false,
    tcp_id: IpId::Zero,
    rst_id: IpId::Zero,
    icmp_id: IpId::Random,
    quote_whole: true,
    echo_copies_df: true,
    echo_keeps_code: true,
};

/// An HP LaserJet's JetDirect stack: "HP LaserJet M476dw printer".
pub static JETDIRECT: Stack = Stack {
    nmap: ("HP LaserJet M476dw printer", 0),
    ttl: 64,
    icmp_ttl: 255,
    hop_limit: 64,
    df: true,
    rst_df: false,
    mss: 1460,
    mss_clamped: true,
    mss_unoffered: 1460,
    window: Window::Segments(8192),
    window_scale: Some(0),
    layout: Layout::JetDirect,
    ts_hz: 1000,
    ts_per_connection: false,
    ecn: false,
    bare_to_open_reset: false,
    syn_fin: SynFin::Drop,
    xmas_to_closed: false,
    rst_seq_from_ack: false,
    rst_acks_fin: true,
    rst_keeps_ack: false,
    tcp_id: IpId::Counter,
    rst_id: IpId::Counter,
    icmp_id: IpId::Counter,
    quote_whole: false,
    echo_copies_df: false,
    echo_keeps_code: true,
};

/// Cisco IOS 15 on a router: "Cisco C7200 router (IOS 15.2)".
pub static IOS: Stack = Stack {
    nmap: ("Cisco C7200 router (IOS 15.2)", 0),
    ttl: 255,
    icmp_ttl: 255,
    hop_limit: 64,
    df: false,
    rst_df: false,
    mss: 1460,
    mss_clamped: true,
    mss_unoffered: 536,
    window: Window::Fixed(4128),
    window_scale: None,
    layout: Layout::MssOnly,
    ts_hz: 0,
    ts_per_connection: false,
    ecn: false,
    bare_to_open_reset: false,
    syn_fin: SynFin::SynAck,
    xmas_to_closed: true,
    rst_seq_from_ack: true,
    rst_acks_fin: false,
    rst_keeps_ack: false,
    tcp_id: IpId::Random,
    rst_id: IpId::Random,
    icmp_id: IpId::Random,
    quote_whole: false,
    echo_copies_df: true,
    echo_keeps_code: true,
};

/// The embedded Linux of a Hikvision video recorder: "Hikvision DVR".
pub static HIKVISION: Stack = Stack {
    nmap: ("Hikvision DVR", 0),
    ttl: 64,
    icmp_ttl: 64,
    hop_limit: 64,
    df: true,
    rst_df: true,
    mss: 1352,
    mss_clamped: false,
    mss_unoffered: 1352,
    window: Window::Fixed(14600),
    window_scale: Some(2),
    layout: Layout::Linux,
    ts_hz: 0,
    ts_per_connection: false,
    ecn: true,
    bare_to_open_reset: false,
    syn_fin: SynFin::SynAck,
    xmas_to_closed: true,
    rst_seq_from_ack: false,
    rst_acks_fin: true,
    rst_keeps_ack: false,
    tcp_id: IpId::Zero,
    rst_id: IpId::Zero,
    icmp_id: IpId::PerDestination,
    quote_whole: true,
    echo_copies_df: false,
    echo_keeps_code: true,
};

/// The face of frames written on behalf of a real host (tap mode's RSTs):
/// Linux's TTL and DF, no IP-ID, no timestamps.
pub static HOST: Stack = Stack {
    nmap: ("", 0),
    ts_hz: 0,
    ..LINUX
};

/// Every stack a persona uses, for the tests and the documentation.
pub static ALL: [&Stack; 6] = [&LINUX, &WINDOWS, &FREEBSD, &JETDIRECT, &IOS, &HIKVISION];

/// A worker's IP-ID counters: one per host (or per host and destination)
/// in a direct-mapped table. A counter moves by one per packet and never
/// falls behind a clock of 64 per second (a host's other traffic), so nmap's
/// probes 100 ms apart see steps of 6 or 7 (`I`), and two replies never
/// share an identification. Hosts that share a slot share a counter (it
/// still only increases). A host answered by two workers has a counter on
/// each; both follow the same clock.
pub struct IpIds {
    slots: Box<[u16]>,
}

impl IpIds {
    const SLOTS: usize = 4096;

    /// Counters at zero.
    pub fn new() -> IpIds {
        IpIds {
            slots: vec![0; Self::SLOTS].into_boxed_slice(),
        }
    }

    /// The identification of the next reply under `mode`, for the host
    /// keyed by `host` (its persona's clock offset) to `peer_key` (a keyed
    /// hash of the prober) at `now_ms`; `salt` varies per packet.
    #[inline]
    pub fn next(&mut self, mode: IpId, host: u32, peer_key: u32, now_ms: u64, salt: u32) -> u16 {
        let key = match mode {
            IpId::Zero => return 0,
            IpId::Random => {
                let x = (salt ^ host)
                    .wrapping_mul(0x9e37_79b9)
                    .wrapping_add(now_ms as u32)
                    .wrapping_mul(0x85eb_ca6b);
                return (x ^ (x >> 15)) as u16;
            }
            IpId::Counter => host,
            IpId::PerDestination => host ^ peer_key.wrapping_mul(0x2545_f491),
        };
        let clock = (key >> 16).wrapping_add((now_ms / 16) as u32) as u16;
        let slot = (key as usize ^ (key as usize >> 12)) % Self::SLOTS;
        let Some(last) = self.slots.get_mut(slot) else {
            return clock;
        };
        let next = last.wrapping_add(1);
        // The clock wins when it is ahead (as a signed 16-bit distance).
        let id = if clock.wrapping_sub(next) as i16 > 0 {
            clock
        } else {
            next
        };
        *last = id;
        id
    }
}

impl Default for IpIds {
    fn default() -> Self {
        IpIds::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A counter steps by one per packet, keeps up with its clock, and
    /// never repeats for back-to-back replies.
    #[test]
    fn counters_step_per_packet_and_follow_the_clock() {
        let mut ids = IpIds::new();
        let a = ids.next(IpId::Counter, 0x1234_5678, 0, 10_000, 1);
        let b = ids.next(IpId::Counter, 0x1234_5678, 0, 10_000, 2);
        assert_eq!(b.wrapping_sub(a), 1, "two replies in the same millisecond");
        let c = ids.next(IpId::Counter, 0x1234_5678, 0, 10_100, 3);
        assert!(
            (5..10).contains(&c.wrapping_sub(b)),
            "{}",
            c.wrapping_sub(b)
        );
        // Another host starts elsewhere; a per-destination counter differs
        // per peer.
        assert_ne!(ids.next(IpId::Counter, 0x9999_0000, 0, 10_100, 3), c);
        let p = ids.next(IpId::PerDestination, 0x1234_5678, 1, 10_100, 3);
        let q = ids.next(IpId::PerDestination, 0x1234_5678, 2, 10_100, 3);
        assert_ne!(p, q);
        assert_eq!(ids.next(IpId::Zero, 1, 2, 3, 4), 0);
        let r: std::collections::HashSet<u16> = (0..64)
            .map(|salt| ids.next(IpId::Random, 7, 0, 10_000, salt))
            .collect();
        assert!(r.len() > 60);
    }

    /// Each layout writes what nmap's reference strings show for the six
    /// SEQ probes' offers (MSS, SACK, WS, TS as nmap's probes carry them).
    #[test]
    fn layouts_write_the_option_strings_of_their_references() {
        let offers = [
            (Some(1460), true, true, true),
            (Some(1400), true, true, true),
            (Some(640), false, true, true),
            (None, true, true, true),
            (Some(536), true, true, true),
            (Some(265), true, false, true),
        ];
        let s = |stack: &Stack| -> Vec<String> {
            offers
                .iter()
                .map(|&(mss, sack, ws, ts)| {
                    let offer = Offer { mss, sack, ws, ts };
                    let mut out = String::new();
                    for o in stack.options_for(&offer).into_iter().flatten() {
                        match o {
                            Opt::Mss(m) => out += &format!("M{m:X}"),
                            Opt::Nop => out.push('N'),
                            Opt::Ws(w) => out += &format!("W{w:X}"),
                            Opt::Sack => out.push('S'),
                            Opt::Ts => out += "T11",
                            Opt::Eol => out.push('L'),
                        }
                    }
                    out
                })
                .collect()
        };
        assert_eq!(
            s(&LINUX),
            [
                "M5B4ST11NW7",
                "M5B4ST11NW7",
                "M5B4NNT11NW7",
                "M5B4ST11NW7",
                "M5B4ST11NW7",
                "M5B4ST11"
            ]
        );
        assert_eq!(
            s(&JETDIRECT),
            [
                "M5B4NW0NNSNNT11",
                "M578NW0NNSNNT11",
                "M280NW0NNT11",
                "M5B4NW0NNSNNT11",
                "M218NW0NNSNNT11",
                "M109NNSNNT11"
            ]
        );
        assert_eq!(s(&IOS), ["M5B4", "M578", "M280", "M218", "M218", "M109"]);
        // HP's windows: whole segments (less the timestamp) past 8 KiB.
        let w: Vec<u16> = offers
            .iter()
            .map(|&(mss, sack, ws, ts)| JETDIRECT.window_for(&Offer { mss, sack, ws, ts }))
            .collect();
        assert_eq!(w, [0x21f0, 0x2088, 0x2258, 0x21f0, 0x20c0, 0x209d]);
    }
}
