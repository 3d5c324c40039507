//! Every stack against its nmap-os-db reference: nmap's OS-detection probes
//! (SEQ 1-6, ECN, T2-T7, U1, IE, byte for byte as `osscan2.cc` builds
//! them) go through the engine to a decoy of each persona family, the
//! answers are reduced to nmap's attributes the way nmap reduces them, and
//! each attribute is matched against the expression of the stack's
//! reference entry, read from Debian's `/usr/share/nmap/nmap-os-db`.
//!
//! SP and ISR describe the spread of six random ISNs (as random as the
//! real stack's: a keyed hash of the 4-tuple, RFC 6528); a single sample
//! falls a few units either side of one host's reference range, so they
//! are checked over 21 runs, a third of which must fall inside it.

use std::collections::HashMap;

use super::*;
use crate::engine::stack::{self, Stack};
use crate::wire::checksum;

const DB: &str = "/usr/share/nmap/nmap-os-db";
const SCANNER: [u8; 4] = [203, 0, 113, 77];
const SCANNER_MAC: [u8; 6] = ROUTER;

/// nmap's `prbOpts` and `prbWindowSz` (osscan2.cc): SEQ 1-6, ECN, T2-T7.
const OPTS: [&[u8]; 13] = [
    b"\x03\x03\x0a\x01\x02\x04\x05\xb4\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02",
    b"\x02\x04\x05\x78\x03\x03\x00\x04\x02\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x00",
    b"\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x01\x01\x03\x03\x05\x01\x02\x04\x02\x80",
    b"\x04\x02\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x03\x03\x0a\x00",
    b"\x02\x04\x02\x18\x04\x02\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x03\x03\x0a\x00",
    b"\x02\x04\x01\x09\x04\x02\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00",
    b"\x03\x03\x0a\x01\x02\x04\x05\xb4\x04\x02\x01\x01",
    b"\x03\x03\x0a\x01\x02\x04\x01\x09\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02",
    b"\x03\x03\x0a\x01\x02\x04\x01\x09\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02",
    b"\x03\x03\x0a\x01\x02\x04\x01\x09\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02",
    b"\x03\x03\x0a\x01\x02\x04\x01\x09\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02",
    b"\x03\x03\x0a\x01\x02\x04\x01\x09\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02",
    b"\x03\x03\x0f\x01\x02\x04\x01\x09\x08\x0a\xff\xff\xff\xff\x00\x00\x00\x00\x04\x02",
];
const WINDOWS: [u16; 13] = [1, 63, 4, 4, 16, 512, 3, 128, 256, 1024, 31337, 32768, 65535];

// TCP flag bits (RFC 9293, RFC 3168).
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;

/// An IPv4 packet from the scanner to `dst` in an Ethernet frame.
fn ip_frame(dst: [u8; 4], proto: u8, tos: u8, id: u16, df: bool, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(
        &persona(v4(&format!("{}.{}.{}.{}", dst[0], dst[1], dst[2], dst[3])))
            .mac
            .0,
    );
    f.extend_from_slice(&SCANNER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, tos];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&[if df { 0x40 } else { 0 }, 0, 59, proto, 0, 0]);
    ip.extend_from_slice(&SCANNER);
    ip.extend_from_slice(&dst);
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

/// The transport checksum of `l4` over the pseudo-header.
fn l4_checksum(dst: [u8; 4], proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = SCANNER.to_vec();
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(l4);
    checksum::checksum(&pseudo)
}

/// One of nmap's TCP probes.
struct TcpProbe {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    reserved: u8,
    window: u16,
    urgent: u16,
    options: &'static [u8],
    df: bool,
}

fn tcp_frame(dst: [u8; 4], p: &TcpProbe) -> Vec<u8> {
    let hl = 20 + p.options.len();
    let mut t = Vec::new();
    t.extend_from_slice(&p.sport.to_be_bytes());
    t.extend_from_slice(&p.dport.to_be_bytes());
    t.extend_from_slice(&p.seq.to_be_bytes());
    t.extend_from_slice(&p.ack.to_be_bytes());
    t.extend_from_slice(&[((hl / 4) as u8) << 4 | p.reserved, p.flags]);
    t.extend_from_slice(&p.window.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&p.urgent.to_be_bytes());
    t.extend_from_slice(p.options);
    let c = l4_checksum(dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ip_frame(dst, 6, 0, 0x3a00 ^ p.sport, p.df, &t)
}

/// A reply, as far as nmap reads it.
#[derive(Clone, Debug)]
struct Reply {
    ttl: u8,
    df: bool,
    id: u16,
    total_len: u16,
    l4: Vec<u8>,
}

fn reply_of(frame: &[u8]) -> Reply {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    assert_eq!(checksum::checksum(&ip[..ihl]), 0, "IPv4 header checksum");
    let total_len = u16::from_be_bytes([ip[2], ip[3]]);
    let l4 = ip[ihl..usize::from(total_len)].to_vec();
    Reply {
        ttl: ip[8],
        df: ip[6] & 0x40 != 0,
        id: u16::from_be_bytes([ip[4], ip[5]]),
        total_len,
        l4,
    }
}

/// Sends `frame` at `at_ns`; the reply, if the engine answered.
fn send(e: &mut Engine, mut frame: Vec<u8>, at_ns: u64) -> Option<Reply> {
    match e.process(&mut frame, at_ns) {
        Verdict::Reply => Some(reply_of(&frame)),
        _ => None,
    }
}

fn hex(v: u32) -> String {
    format!("{v:X}")
}

/// nmap's option string of a TCP header's options.
fn ops(options: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => {
                s.push('L');
                i += 1;
            }
            1 => {
                s.push('N');
                i += 1;
            }
            2 => {
                s += &format!(
                    "M{:X}",
                    u16::from_be_bytes([options[i + 2], options[i + 3]])
                );
                i += 4;
            }
            3 => {
                s += &format!("W{:X}", options[i + 2]);
                i += 3;
            }
            4 => {
                s.push('S');
                i += 2;
            }
            8 => {
                let nz = |b: &[u8]| if b.iter().any(|&x| x != 0) { '1' } else { '0' };
                s.push('T');
                s.push(nz(&options[i + 2..i + 6]));
                s.push(nz(&options[i + 6..i + 10]));
                i += 10;
            }
            _ => i += usize::from(options[i + 1]).max(2),
        }
    }
    s
}

/// The attributes nmap reads from a TCP reply to `p` (T1-T7, ECN).
fn tcp_attrs(r: &Reply, p: &TcpProbe, ecn: bool) -> HashMap<&'static str, String> {
    let t = &r.l4;
    let hl = usize::from(t[12] >> 4) * 4;
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let flags = t[13];
    let rel = |v: u32, base: u32, same: &str| {
        if v == 0 {
            "Z".to_owned()
        } else if v == base {
            same.to_owned()
        } else if v == base.wrapping_add(1) {
            format!("{same}+")
        } else {
            "O".to_owned()
        }
    };
    let mut f = String::new();
    for (bit, c) in [
        (ECE, 'E'),
        (URG, 'U'),
        (ACK, 'A'),
        (PSH, 'P'),
        (RST, 'R'),
        (SYN, 'S'),
        (FIN, 'F'),
    ] {
        if flags & bit != 0 {
            f.push(c);
        }
    }
    let mut q = String::new();
    if t[12] & 0x0f != 0 {
        q.push('R');
    }
    if flags & URG == 0 && u16::from_be_bytes([t[18], t[19]]) != 0 {
        q.push('U');
    }
    let mut a = HashMap::from([
        ("R", "Y".to_owned()),
        ("DF", if r.df { "Y" } else { "N" }.to_owned()),
        ("T", hex(r.ttl.into())),
        ("TG", hex(initial_ttl(r.ttl).into())),
        ("W", hex(u16::from_be_bytes([t[14], t[15]]).into())),
        ("S", rel(seq, p.ack, "A")),
        ("A", rel(ack, p.seq, "S")),
        ("F", f),
        ("O", ops(&t[20..hl])),
        ("RD", "0".to_owned()),
        ("Q", q),
    ]);
    if ecn {
        let cc = match (flags & ECE != 0, flags & CWR != 0) {
            (true, false) => "Y",
            (false, false) => "N",
            (true, true) => "S",
            (false, true) => "O",
        };
        a.insert("CC", cc.to_owned());
    }
    a
}

fn initial_ttl(ttl: u8) -> u8 {
    match ttl {
        0..=32 => 32,
        33..=64 => 64,
        65..=128 => 128,
        _ => 255,
    }
}

/// nmap's IP-ID sequence class (`get_ipid_sequence_16`).
fn ipid_class(ids: &[u16]) -> Option<&'static str> {
    if ids.len() < 2 {
        return None;
    }
    let diffs: Vec<u16> = ids.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    if ids.len() > 2 && diffs.iter().any(|&d| d > 20000) {
        return Some("RD");
    }
    if ids.iter().all(|&i| i == 0) {
        return Some("Z");
    }
    if diffs.iter().all(|&d| d == 0) {
        return Some("C");
    }
    if diffs
        .iter()
        .any(|&d| d > 1000 && (d % 256 != 0 || d >= 25600))
    {
        return Some("RI");
    }
    if diffs.iter().all(|&d| d % 256 == 0 && d <= 5120) {
        return Some("BI");
    }
    if diffs.iter().all(|&d| d < 10) {
        return Some("I");
    }
    None
}

/// GCD, ISR and SP of ISNs sampled at `ms` (`osscan2.cc`).
fn isn_stats(isns: &[u32], ms: &[u64]) -> (u32, u32, u32) {
    let diffs: Vec<u32> = isns
        .windows(2)
        .map(|w| {
            let d = w[1].wrapping_sub(w[0]);
            d.min(w[0].wrapping_sub(w[1]))
        })
        .collect();
    let gcd = diffs.iter().fold(0u32, |g, &d| {
        let (mut a, mut b) = (g, d);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    });
    let rates: Vec<f64> = diffs
        .iter()
        .zip(ms.windows(2))
        .map(|(&d, t)| f64::from(d) / ((t[1] - t[0]) as f64 / 1000.0))
        .collect();
    let avg = rates.iter().sum::<f64>() / rates.len() as f64;
    let isr = (8.0 * avg.log2()).round() as u32;
    let div = if gcd > 9 { f64::from(gcd) } else { 1.0 };
    let var = rates
        .iter()
        .map(|r| (r / div - avg / div).powi(2))
        .sum::<f64>()
        / (rates.len() - 1) as f64;
    let sp = if var.sqrt() <= 1.0 {
        0
    } else {
        (8.0 * var.sqrt().log2()).round() as u32
    };
    (gcd.max(1), isr, sp)
}

/// nmap's TS class of TSvals sampled at `ms`.
fn ts_class(tsvals: &[Option<u32>], ms: &[u64]) -> String {
    if tsvals.iter().any(Option::is_none) {
        return "U".to_owned();
    }
    let ts: Vec<u32> = tsvals.iter().map(|t| t.unwrap_or(0)).collect();
    if ts.iter().all(|&t| t == 0) {
        return "0".to_owned();
    }
    let n = ts.len() - 1;
    let hz: f64 = ts
        .windows(2)
        .zip(ms.windows(2))
        .map(|(w, t)| {
            let d = w[1].wrapping_sub(w[0]).min(w[0].wrapping_sub(w[1]));
            f64::from(d) / ((t[1] - t[0]) as f64 / 1000.0) / n as f64
        })
        .sum();
    match hz {
        h if h < 5.66 => "1".to_owned(),
        h if (70.0..=150.0).contains(&h) => "7".to_owned(),
        h if (150.0..=350.0).contains(&h) => "8".to_owned(),
        h => hex(h.log2().round() as u32),
    }
}

fn tsval_of(options: &[u8]) -> Option<u32> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            8 => return Some(u32::from_be_bytes(options[i + 2..i + 6].try_into().ok()?)),
            _ => i += usize::from(*options.get(i + 1)?).max(2),
        }
    }
    None
}

/// Whether `value` satisfies nmap-os-db's expression `expr`.
fn satisfies(expr: &str, value: &str) -> bool {
    let num = |s: &str| u64::from_str_radix(s, 16).ok();
    expr.split('|').any(|alt| {
        if alt == value {
            return true;
        }
        let (Some(v), true) = (num(value), !value.is_empty()) else {
            return false;
        };
        if let Some(x) = alt.strip_prefix('>').and_then(num) {
            return v > x;
        }
        if let Some(x) = alt.strip_prefix('<').and_then(num) {
            return v < x;
        }
        match alt.split_once('-').map(|(a, b)| (num(a), num(b))) {
            Some((Some(a), Some(b))) => (a..=b).contains(&v),
            _ => false,
        }
    })
}

/// The tests of the `nth` entry named `name`: test name to attributes.
fn reference(db: &str, (name, nth): (&str, usize)) -> HashMap<String, HashMap<String, String>> {
    let header = format!("Fingerprint {name}\n");
    let at = db
        .match_indices(&header)
        .nth(nth)
        .unwrap_or_else(|| panic!("no entry {name:?} #{nth} in {DB}"))
        .0;
    let mut tests = HashMap::new();
    for line in db[at..].lines().skip(1).take_while(|l| !l.is_empty()) {
        let Some((test, rest)) = line.split_once('(') else {
            continue;
        };
        let body = rest.trim_end_matches(')');
        let attrs = body
            .split('%')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        tests.insert(test.to_owned(), attrs);
    }
    tests
}

/// What a decoy of `stack` answered to one run of nmap's probes from
/// source ports based at `base`, at `t0` (ns).
struct Run {
    tests: HashMap<String, HashMap<&'static str, String>>,
    isn: (u32, u32, u32),
}

fn probe_run(decoy: [u8; 4], open: u16, closed: u16, base: u16, t0: u64) -> Run {
    let mut e = engine();
    let mut tests: HashMap<String, HashMap<&'static str, String>> = HashMap::new();
    let silent = || HashMap::from([("R", "N".to_owned())]);
    let (mut isns, mut ms, mut tsvals, mut tcp_ids) = (vec![], vec![], vec![], vec![]);
    // SEQ 1-6, 100 ms apart, from six ports.
    for i in 0..6u16 {
        let p = TcpProbe {
            sport: base + i,
            dport: open,
            seq: 0x1000_0000u32.wrapping_mul(u32::from(i) + 3) ^ u32::from(base),
            ack: 0x2222_0000 ^ u32::from(base) << 3,
            flags: SYN,
            reserved: 0,
            window: WINDOWS[usize::from(i)],
            urgent: 0,
            options: OPTS[usize::from(i)],
            df: false,
        };
        let at = t0 + u64::from(i) * 100_000_000;
        let r = send(&mut e, tcp_frame(decoy, &p), at).expect("SEQ probe answered");
        let a = tcp_attrs(&r, &p, false);
        let hl = usize::from(r.l4[12] >> 4) * 4;
        isns.push(u32::from_be_bytes(r.l4[4..8].try_into().unwrap()));
        ms.push(at / 1_000_000);
        tsvals.push(tsval_of(&r.l4[20..hl]));
        tcp_ids.push(r.id);
        tests.entry("OPS".into()).or_default().insert(
            ["O1", "O2", "O3", "O4", "O5", "O6"][usize::from(i)],
            a["O"].clone(),
        );
        tests.entry("WIN".into()).or_default().insert(
            ["W1", "W2", "W3", "W4", "W5", "W6"][usize::from(i)],
            a["W"].clone(),
        );
        if i == 0 {
            let mut t1 = a.clone();
            t1.remove("W");
            t1.remove("O");
            tests.insert("T1".into(), t1);
        }
    }
    // After the SEQ probes, nmap sends the two echoes, then U1, then ECN
    // and T2-T7 ("the order of these probes are important for ipid
    // generation", osscan2.cc: the echoes' IDs follow the SEQ replies').
    let t = t0 + 600_000_000;
    let t_tcp = t + 40_000_000;
    // IE: two echoes, DF with code 9 and 120 zeros, then TOS 4, code 0 and 150.
    let mut icmp_ids = vec![];
    let mut ie = vec![];
    for (k, (df, tos, code, len)) in [(true, 0u8, 9u8, 120usize), (false, 4, 0, 150)]
        .into_iter()
        .enumerate()
    {
        let mut m = vec![8, code, 0, 0];
        m.extend_from_slice(&(base ^ 0x4d00).to_be_bytes());
        m.extend_from_slice(&(295 + k as u16).to_be_bytes());
        m.extend(std::iter::repeat_n(0u8, len));
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let f = ip_frame(decoy, 1, tos, base.wrapping_add(0x7000 + k as u16), df, &m);
        if let Some(r) = send(&mut e, f, t + k as u64 * 1_000_000) {
            assert_eq!(checksum::checksum(&r.l4), 0, "ICMP checksum");
            icmp_ids.push(r.id);
            ie.push((r.clone(), df, code));
        }
    }
    // U1: 300 'C's to a closed UDP port, IP-ID 0x1042.
    let mut u = Vec::new();
    u.extend_from_slice(&(base + 30).to_be_bytes());
    u.extend_from_slice(&40125u16.to_be_bytes());
    u.extend_from_slice(&308u16.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&[b'C'; 300]);
    let c = l4_checksum(decoy, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    let sent = ip_frame(decoy, 17, 0, 0x1042, false, &u);
    let sent_ip = sent[14..14 + 328].to_vec();
    let u1 = match send(&mut e, sent, t + 20_000_000) {
        Some(r) => {
            let q = &r.l4[8..];
            let g = |ok: bool, v: String| if ok { "G".to_owned() } else { v };
            let quoted_len = u16::from_be_bytes([q[2], q[3]]);
            HashMap::from([
                ("R", "Y".to_owned()),
                ("DF", if r.df { "Y" } else { "N" }.to_owned()),
                ("T", hex(r.ttl.into())),
                ("TG", hex(initial_ttl(r.ttl).into())),
                ("IPL", hex(r.total_len.into())),
                (
                    "UN",
                    hex(u32::from_be_bytes(r.l4[4..8].try_into().unwrap())),
                ),
                ("RIPL", g(quoted_len == 328, hex(quoted_len.into()))),
                (
                    "RID",
                    g(
                        q[4..6] == sent_ip[4..6],
                        hex(u16::from_be_bytes([q[4], q[5]]).into()),
                    ),
                ),
                ("RIPCK", g(q[10..12] == sent_ip[10..12], "I".to_owned())),
                ("RUCK", g(q[26..28] == sent_ip[26..28], "I".to_owned())),
                ("RUD", g(q[28..].iter().all(|&b| b == b'C'), "I".to_owned())),
            ])
        }
        None => silent(),
    };
    tests.insert("U1".into(), u1);
    // ECN, then T2-T7, a millisecond apart.
    let odd = [
        ("ECN", open, SYN | ECE | CWR, 0x01, 0xf7f5, false),
        ("T2", open, 0, 0, 0, true),
        ("T3", open, SYN | FIN | URG | PSH, 0, 0, false),
        ("T4", open, ACK, 0, 0, true),
        ("T5", closed, SYN, 0, 0, false),
        ("T6", closed, ACK, 0, 0, true),
        ("T7", closed, FIN | PSH | URG, 0, 0, false),
    ];
    let mut closed_ids = vec![];
    for (k, (name, port, flags, reserved, urgent, df)) in odd.into_iter().enumerate() {
        let p = TcpProbe {
            sport: base + 10 + k as u16,
            dport: port,
            seq: 0x5151_0000 ^ (u32::from(base) << 4) ^ k as u32,
            // nmap's T probes carry a random acknowledgement number even
            // without ACK; the ECN probe's is zero.
            ack: if name == "ECN" {
                0
            } else {
                0x7a7a_0000 ^ u32::from(base) ^ (k as u32) << 9
            },
            flags,
            reserved,
            window: WINDOWS[6 + k],
            urgent,
            options: OPTS[6 + k],
            df,
        };
        let a = match send(&mut e, tcp_frame(decoy, &p), t_tcp + k as u64 * 1_000_000) {
            Some(r) => {
                if port == closed {
                    closed_ids.push(r.id);
                }
                tcp_attrs(&r, &p, name == "ECN")
            }
            None => silent(),
        };
        tests.insert(name.into(), a);
    }
    let ie_attrs = if ie.len() == 2 {
        let dfi = match ie.iter().map(|(r, df, _)| (r.df, *df)).collect::<Vec<_>>()[..] {
            [(false, _), (false, _)] => "N",
            [(a, x), (b, y)] if a == x && b == y => "S",
            [(true, _), (true, _)] => "Y",
            _ => "O",
        };
        let codes: Vec<(u8, u8)> = ie.iter().map(|(r, _, c)| (r.l4[1], *c)).collect();
        let cd = if codes.iter().all(|(got, _)| *got == 0) {
            "Z".to_owned()
        } else if codes.iter().all(|(got, sent)| got == sent) {
            "S".to_owned()
        } else {
            "O".to_owned()
        };
        HashMap::from([
            ("R", "Y".to_owned()),
            ("DFI", dfi.to_owned()),
            ("T", hex(ie[0].0.ttl.into())),
            ("TG", hex(initial_ttl(ie[0].0.ttl).into())),
            ("CD", cd),
        ])
    } else {
        silent()
    };
    tests.insert("IE".into(), ie_attrs);
    let isn = isn_stats(&isns, &ms);
    let mut seq = HashMap::from([("GCD", hex(isn.0)), ("TS", ts_class(&tsvals, &ms))]);
    for (attr, ids) in [("TI", &tcp_ids), ("CI", &closed_ids), ("II", &icmp_ids)] {
        if let Some(class) = ipid_class(ids) {
            seq.insert(attr, class.to_owned());
        }
    }
    // SS: the ICMP IDs continue the TCP sequence (osscan2.cc).
    let counted = |c: Option<&String>| c.is_some_and(|c| ["I", "BI", "RI"].contains(&c.as_str()));
    if counted(seq.get("TI")) && counted(seq.get("II")) {
        let avg = f64::from(tcp_ids[5].wrapping_sub(tcp_ids[0])) / 5.0;
        let gap = f64::from(icmp_ids[0].wrapping_sub(tcp_ids[5]));
        let ss = if gap < avg * 3.0 { "S" } else { "O" };
        seq.insert("SS", ss.to_owned());
    }
    tests.insert("SEQ".into(), seq);
    Run { tests, isn }
}

/// A dark decoy of the fixture's /24 with `stack`, with an open and a closed port.
fn decoy_of(stack: &'static Stack) -> ([u8; 4], u16, u16) {
    for last in 20..=250u8 {
        let a = [198, 51, 100, last];
        let p = persona(v4(&format!("198.51.100.{last}")));
        if std::ptr::eq(p.stack, stack) {
            return (a, p.open_ports[0], 1);
        }
    }
    panic!("no decoy of {:?}", stack.nmap);
}

#[test]
fn every_stack_answers_nmaps_probes_as_its_reference_entry() {
    let db = std::fs::read_to_string(DB).unwrap_or_default();
    if !crate::testbed::prerequisite(!db.is_empty(), "nmap (its nmap-os-db) is not installed") {
        return;
    }
    let mut failures = Vec::new();
    for stack in stack::ALL {
        let want = reference(&db, stack.nmap);
        let (decoy, open, closed) = decoy_of(stack);
        let run = probe_run(decoy, open, closed, 40_000, T0);
        for (test, attrs) in &want {
            let got = run.tests.get(test);
            for (attr, expr) in attrs {
                if test == "SEQ" && (attr == "SP" || attr == "ISR") {
                    continue;
                }
                // A reference that says the probe goes unanswered says
                // nothing else about it.
                let value = match got.and_then(|g| g.get(attr.as_str())) {
                    Some(v) => v.clone(),
                    None if attr == "R" => "Y".to_owned(),
                    None => String::new(),
                };
                if !satisfies(expr, &value) {
                    failures.push(format!(
                        "{}: {test}.{attr}: got {value:?}, nmap-os-db says {expr:?}",
                        stack.nmap.0
                    ));
                }
            }
        }
        // ISR and SP over 21 runs: a third of them at least lie in the
        // reference range. The ranges are learned from a few scans of one
        // real host whose ISNs are as random as ours, and nmap weighs SP
        // and ISR lightly, so a real host falls outside them often too;
        // what must hold is that our spread is the one nmap learned.
        let mut isr = Vec::new();
        let mut sp = Vec::new();
        for k in 0..21u16 {
            let run = probe_run(
                decoy,
                open,
                closed,
                41_000 + k * 64,
                T0 + u64::from(k) * 5 * SEC,
            );
            isr.push(run.isn.1);
            sp.push(run.isn.2);
        }
        for (attr, runs) in [("ISR", &isr), ("SP", &sp)] {
            let expr = &want["SEQ"][attr];
            let inside = runs.iter().filter(|v| satisfies(expr, &hex(**v))).count();
            if inside * 3 < runs.len() {
                failures.push(format!(
                    "{}: SEQ.{attr}: {inside} of {} runs in {expr:?}: {runs:X?}",
                    stack.nmap.0,
                    runs.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_expression_matcher_reads_nmaps_syntax() {
    assert!(satisfies("3B-45", "40"));
    assert!(!satisfies("3B-45", "80"));
    assert!(satisfies("M5B4ST11NW6|M5B4ST11NW7", "M5B4ST11NW7"));
    assert!(satisfies("I|RD", "RD"));
    assert!(satisfies(">1000", "1001") && !satisfies(">1000", "FFF"));
    assert!(satisfies("", ""));
    assert!(!satisfies("Z", ""));
    assert_eq!(ipid_class(&[0, 0, 0]), Some("Z"));
    assert_eq!(ipid_class(&[100, 106, 113]), Some("I"));
    assert_eq!(ipid_class(&[100, 40000, 7]), Some("RD"));
    assert_eq!(ipid_class(&[100, 9000]), Some("RI"));
}
