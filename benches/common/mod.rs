//! What the benchmarks share: the deception configuration they run and the
//! B1 baseline.

// Each benchmark uses a part of this module.
#![allow(dead_code)]

/// Deception over 198.51.0.0/16, answering at once, rate limits out of the way.
pub const BENCH_DECEPTION: &str = r#"
[port]
backend = "pcap"
rx = "unused.pcap"
[flows]
capacity = 65536
seed = 7
[deception]
protected = ["198.51.0.0/16"]
# Routed here as a whole: the benchmark's traffic needs no claims.
dark_routes = ["198.51.0.0/16"]
learning = "0s"
hold_off = "0s"
live_idle = "1s"
secret = "6261697477616c6c2062656e63686d61726b207365637265742c206e6f742075"
[deception.rate_limit]
per_decoy = 1000000
per_decoy_burst = 1000000
per_prober = 10000000
per_prober_burst = 10000000
total = 100000000
total_burst = 100000000
"#;

/// B1: swap MACs, addresses and ports in place and recompute the IPv4 header checksum.
pub fn reflect(f: &mut [u8]) {
    use baitwall_dataplane::wire::{EthernetFrame, Ipv4Packet, TcpPacket};
    let mut eth = EthernetFrame::new_unchecked(&mut *f);
    eth.swap_addrs();
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut f[14..]) else {
        return;
    };
    ip.swap_addrs();
    ip.fill_checksum();
    let hl = ip.header_len();
    if let Ok(mut tcp) = TcpPacket::new_checked(&mut f[14 + hl..]) {
        tcp.swap_ports();
    }
}
