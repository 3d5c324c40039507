//! Receive-side scaling in software: the Toeplitz hash a NIC computes, with a
//! symmetric key, so both directions of a flow land on the same worker.
//!
//! A NIC programmed for RSS hashes (source address, destination address, source
//! port, destination port) with a 40-byte secret key and picks a queue from an
//! indirection table (Microsoft's "RSS hashing" specification). With the key
//! `0x6d5a` repeated, the key is periodic with a period of 16 bits, and every
//! field of the input is a multiple of 16 bits wide, so swapping source and
//! destination gives the same hash (Woo and Park, "Scalable TCP Session
//! Monitoring with Symmetric Receive-side Scaling", 2012). The software ports
//! (`mem`, `pcap`) use [`Rss`] to spread frames; the DPDK backend programs the
//! same key into the NIC, so a flow lands on the same worker either way.
//!
//! The hash is computed with one 256-entry table per input byte position
//! (36 positions cover IPv6 with ports), one load and one XOR per byte.

use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, protocol};

/// The symmetric key: `0x6d5a` repeated over 40 bytes.
pub const SYMMETRIC_KEY: [u8; 40] = {
    let mut key = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        key[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    key
};

/// Size of the indirection table, as on most 10/25/40GbE NICs.
pub const RETA_SIZE: usize = 128;

/// Input length for IPv6 with ports: 16 + 16 + 2 + 2.
const MAX_INPUT: usize = 36;

/// A Toeplitz hasher with precomputed per-byte tables and an indirection table.
pub struct Rss {
    tables: Box<[[u32; 256]; MAX_INPUT]>,
    reta: [u16; RETA_SIZE],
    queues: u16,
}

impl Rss {
    /// Builds the hasher for `key` spreading over `queues` queues (at least one).
    pub fn new(key: &[u8; 40], queues: u16) -> Self {
        let queues = queues.max(1);
        let mut tables = Box::new([[0u32; 256]; MAX_INPUT]);
        for (pos, table) in tables.iter_mut().enumerate() {
            for (byte, slot) in table.iter_mut().enumerate() {
                let mut acc = 0u32;
                for bit in 0..8 {
                    if byte & (0x80 >> bit) != 0 {
                        acc ^= key_window(key, pos * 8 + bit);
                    }
                }
                *slot = acc;
            }
        }
        let mut reta = [0u16; RETA_SIZE];
        for (i, slot) in reta.iter_mut().enumerate() {
            // RETA_SIZE fits in u16, and the remainder is below `queues`.
            *slot = (i % usize::from(queues)) as u16;
        }
        Rss {
            tables,
            reta,
            queues,
        }
    }

    /// Builds the symmetric hasher used by every baitwall port.
    ///
    /// ```
    /// use baitwall_dataplane::rss::Rss;
    /// let rss = Rss::symmetric(4);
    /// // src 10.0.0.1:1234 -> dst 192.0.2.7:80, and the reverse direction
    /// let fwd = [10, 0, 0, 1, 192, 0, 2, 7, 0x04, 0xd2, 0x00, 0x50];
    /// let rev = [192, 0, 2, 7, 10, 0, 0, 1, 0x00, 0x50, 0x04, 0xd2];
    /// assert_eq!(rss.hash(&fwd), rss.hash(&rev));
    /// ```
    pub fn symmetric(queues: u16) -> Self {
        Self::new(&SYMMETRIC_KEY, queues)
    }

    /// Number of queues the indirection table spreads over.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Toeplitz hash of `input` (at most 36 bytes; longer input is cut there).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.tables.iter())
            .fold(0, |acc, (&b, table)| acc ^ table[usize::from(b)])
    }

    /// The queue a hash value selects through the indirection table.
    #[inline]
    pub fn queue_of_hash(&self, hash: u32) -> u16 {
        self.reta[hash as usize % RETA_SIZE]
    }

    /// Hash of an Ethernet frame as a NIC would compute it: IPv4/IPv6 with TCP
    /// or UDP ports when present, addresses only for other protocols and for
    /// fragments, and 0 for anything that is not IP (it goes to queue 0).
    pub fn hash_frame(&self, frame: &[u8]) -> u32 {
        let mut input = [0u8; MAX_INPUT];
        match flow_input(frame, &mut input) {
            Some(len) => self.hash(input.get(..len).unwrap_or(&[])),
            None => 0,
        }
    }

    /// The queue a frame lands on.
    #[inline]
    pub fn queue_of_frame(&self, frame: &[u8]) -> u16 {
        self.queue_of_hash(self.hash_frame(frame))
    }
}

/// The 32 key bits starting at bit `start` (bits past the key read as 0).
fn key_window(key: &[u8; 40], start: usize) -> u32 {
    (0..32).fold(0u32, |acc, i| {
        let bit = start + i;
        let set = key
            .get(bit / 8)
            .is_some_and(|byte| byte & (0x80 >> (bit % 8)) != 0);
        (acc << 1) | u32::from(set)
    })
}

/// Writes the RSS input of a frame (src addr, dst addr, [src port, dst port])
/// into `out` and returns its length, or `None` for frames RSS does not hash.
fn flow_input(frame: &[u8], out: &mut [u8; MAX_INPUT]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let payload = eth.payload();
    let (proto, addr_len, l4, fragment) = match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(payload).ok()?;
            out.get_mut(..4)?.copy_from_slice(&ip.src_addr().octets());
            out.get_mut(4..8)?.copy_from_slice(&ip.dst_addr().octets());
            let hl = ip.header_len();
            (ip.protocol(), 8, payload.get(hl..)?, ip.is_fragment())
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(payload).ok()?;
            out.get_mut(..16)?.copy_from_slice(&ip.src_addr().octets());
            out.get_mut(16..32)?
                .copy_from_slice(&ip.dst_addr().octets());
            match ip.upper_layer() {
                Ok(upper) => (
                    upper.protocol,
                    32,
                    payload.get(upper.offset..)?,
                    upper.is_fragment,
                ),
                Err(_) => return Some(32),
            }
        }
        _ => return None,
    };
    if fragment || !(proto == protocol::TCP || proto == protocol::UDP) {
        return Some(addr_len);
    }
    match l4.get(..4) {
        Some(ports) => {
            out.get_mut(addr_len..addr_len + 4)?.copy_from_slice(ports);
            Some(addr_len + 4)
        }
        None => Some(addr_len),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The key of Microsoft's RSS verification suite.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    fn v4_input(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&sport.to_be_bytes());
        v.extend_from_slice(&dport.to_be_bytes());
        v
    }

    /// One of Microsoft's published IPv4 verification vectors: (dst, dport,
    /// src, sport, hash over addresses only, hash with TCP ports).
    type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);

    #[test]
    fn matches_microsoft_verification_suite_ipv4() {
        let rss = Rss::new(&MS_KEY, 1);
        let cases: [Vector; 5] = [
            (
                [161, 142, 100, 80],
                1766,
                [66, 9, 149, 187],
                2794,
                0x323e8fc2,
                0x51ccc178,
            ),
            (
                [65, 69, 140, 83],
                4739,
                [199, 92, 111, 2],
                14230,
                0xd718262a,
                0xc626b0ea,
            ),
            (
                [12, 22, 207, 184],
                38024,
                [24, 19, 198, 95],
                12898,
                0xd2d0a5de,
                0x5c2b394a,
            ),
            (
                [209, 142, 163, 6],
                2217,
                [38, 27, 205, 30],
                48228,
                0x82989176,
                0xafc7327f,
            ),
            (
                [202, 188, 127, 2],
                1303,
                [153, 39, 163, 191],
                44251,
                0x5d1809c5,
                0x10e828a2,
            ),
        ];
        for (dst, dport, src, sport, ip_only, with_ports) in cases {
            let input = v4_input(src, sport, dst, dport);
            assert_eq!(rss.hash(&input[..8]), ip_only, "{dst:?} {src:?}");
            assert_eq!(rss.hash(&input), with_ports, "{dst:?} {src:?}");
        }
    }

    #[test]
    fn symmetric_key_is_symmetric_for_v4_and_v6() {
        let rss = Rss::symmetric(4);
        let a = v4_input([10, 0, 0, 1], 1234, [192, 0, 2, 7], 80);
        let b = v4_input([192, 0, 2, 7], 80, [10, 0, 0, 1], 1234);
        assert_eq!(rss.hash(&a), rss.hash(&b));
        let mut c = vec![0x20, 0x01, 0x0d, 0xb8];
        c.resize(16, 0x11);
        let mut d = vec![0x20, 0x01, 0x0d, 0xb8];
        d.resize(16, 0x22);
        let fwd = [c.clone(), d.clone(), vec![0x04, 0xd2, 0x00, 0x50]].concat();
        let rev = [d, c, vec![0x00, 0x50, 0x04, 0xd2]].concat();
        assert_eq!(rss.hash(&fwd), rss.hash(&rev));
    }

    #[test]
    fn indirection_table_covers_every_queue() {
        let rss = Rss::symmetric(3);
        let mut seen = [false; 3];
        for h in 0..RETA_SIZE as u32 {
            seen[usize::from(rss.queue_of_hash(h))] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(Rss::symmetric(0).queues(), 1);
    }

    #[test]
    fn non_ip_frames_hash_to_zero() {
        let rss = Rss::symmetric(2);
        let mut arp = vec![0xffu8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.resize(60, 0);
        assert_eq!(rss.hash_frame(&arp), 0);
        assert_eq!(rss.hash_frame(&[1, 2, 3]), 0);
    }
}
