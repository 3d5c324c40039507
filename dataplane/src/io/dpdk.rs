//! The DPDK port (cargo feature `dpdk`): one DPDK Ethernet device (one-arm)
//! or two (inline: `device` outside, `inside_device` inside; forwarded
//! frames cross, decoy replies go back where the probe came from), one
//! queue pair per worker and device, RSS programmed with the same symmetric Toeplitz
//! key the software path uses ([`crate::rss::SYMMETRIC_KEY`]), frames in
//! DPDK's own mbufs from one mempool: no copy between the wire and the
//! engine, the reply written in place in the mbuf.
//!
//! The EAL is started from `[port] eal` (DPDK's command-line arguments) and
//! the device named by `[port] device`: a PCI address on an appliance
//! (docs/deploy.md), or a virtual device (`net_pcap0`, `net_ring0`,
//! `net_af_packet0`) for tests and labs. Worker threads register with the
//! EAL at their first burst, so they get lcore ids and mempool caches.

use std::sync::Arc;

use baitwall_dpdk::{DpdkError, Eal, EthPort, Mbuf, Mempool, PortQueue};

pub use crate::config::DpdkPlan as DpdkConfig;

use super::{BufTooSmall, Burst, Egress, PacketBuf, Port, Queue, QueueStats, Side, TxOutcome};

/// A frame in an mbuf, and the device it came in by.
pub struct DpdkBuf {
    mbuf: Mbuf,
    side: u8,
    /// The side of the wire `side` is (inline only).
    arrival: Option<Side>,
    egress: Egress,
}

impl PacketBuf for DpdkBuf {
    fn data(&self) -> &[u8] {
        self.mbuf.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.mbuf.data_mut()
    }
    fn capacity(&self) -> usize {
        self.mbuf.capacity()
    }
    fn set_len(&mut self, len: usize) -> Result<(), BufTooSmall> {
        if self.mbuf.set_len(len) {
            Ok(())
        } else {
            Err(BufTooSmall)
        }
    }
    fn timestamp_ns(&self) -> u64 {
        0
    }
    fn set_egress(&mut self, egress: Egress) {
        self.egress = egress;
    }
    fn side(&self) -> Option<Side> {
        self.arrival
    }
}

/// One worker's queue pair on each device.
pub struct DpdkQueue {
    /// Outside (or the only device) first, then inside.
    sides: Vec<PortQueue>,
    eal: &'static Eal,
    registered: bool,
    /// Reused for every transmit burst, one per device (allocated once).
    out: [Vec<Mbuf>; 2],
    /// Which device `rx_burst` reads first (alternates, for fairness).
    first: usize,
    /// The devices stay up while a queue lives; the pool with them.
    ports: Vec<Arc<EthPort>>,
    pool: Arc<Mempool>,
    /// The devices' drops, as last read.
    drops: u64,
    idle_polls: u32,
    reads_device_stats: bool,
}

/// Read the device's counters after this many empty polls (a burst counts 16).
const STATS_EVERY_IDLE: u32 = 65536;

impl Queue for DpdkQueue {
    type Buf = DpdkBuf;

    fn rx_burst(&mut self, out: &mut Burst<DpdkBuf>, max: usize) -> usize {
        if !self.registered {
            // Once: a failure leaves the thread without an lcore id, which
            // only costs mempool caching.
            let _ = self.eal.register_thread();
            self.registered = true;
        }
        let max = max.min(super::MAX_BURST);
        let sides = self.sides.len();
        let mut n = 0;
        for k in 0..sides {
            let side = (self.first + k) % sides;
            let arrival = match (sides, side) {
                (1, _) => None,
                (_, 0) => Some(Side::Outside),
                _ => Some(Side::Inside),
            };
            if let Some(q) = self.sides.get_mut(side) {
                n += q.rx_burst(max - n, |mbuf| {
                    out.push(DpdkBuf {
                        mbuf,
                        side: side as u8,
                        arrival,
                        egress: Egress::Forward,
                    })
                });
            }
            if n >= max {
                break;
            }
        }
        self.first = (self.first + 1) % sides.max(1);
        // The devices' counters are per device: queue 0 reads and reports
        // them (the others would count them again), rarely, idle or busy.
        if self.reads_device_stats {
            self.idle_polls += if n == 0 { 1 } else { 16 };
            if self.idle_polls >= STATS_EVERY_IDLE {
                self.idle_polls = 0;
                self.drops = self
                    .ports
                    .iter()
                    .filter_map(|p| p.stats().ok())
                    .map(|s| s.imissed + s.rx_nombuf + s.ierrors)
                    .sum();
            }
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut Burst<DpdkBuf>) -> TxOutcome {
        let inline = self.sides.len() > 1;
        let mut outcome = TxOutcome::default();
        for b in bufs.drain(..) {
            let side = usize::from(b.side).min(1);
            let to = match (inline, b.egress) {
                (false, Egress::Reply) => 0,
                // One-arm sends only what the appliance made: a received
                // frame is already on its way (io::afpacket says why).
                (false, Egress::Forward) => {
                    outcome.skipped += 1;
                    continue;
                }
                (true, Egress::Reply) => side,
                (true, Egress::Forward) => 1 - side,
            };
            if let Some(v) = self.out.get_mut(to) {
                v.push(b.mbuf);
            }
        }
        for (q, v) in self.sides.iter_mut().zip(self.out.iter_mut()) {
            let total = v.len();
            let sent = q.tx_burst(v);
            outcome.sent += sent;
            outcome.dropped += total - sent;
            // What the device had no room for goes back to the pool.
            v.clear();
        }
        outcome
    }

    fn alloc(&mut self) -> Option<DpdkBuf> {
        self.pool.alloc().map(|mbuf| DpdkBuf {
            mbuf,
            side: 0,
            arrival: None,
            egress: Egress::Forward,
        })
    }

    fn recycle(&mut self, buf: DpdkBuf) {
        drop(buf);
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            rx_dropped: self.drops,
        }
    }
}

/// The port: the EAL, the pool, the devices and their queues.
pub struct DpdkPort {
    name: String,
    queues: Vec<DpdkQueue>,
}

impl DpdkPort {
    /// Starts the EAL (once per process), creates the pool, and starts the
    /// device(s) with `queues` queue pairs each.
    pub fn open(config: &DpdkConfig, queues: usize) -> Result<DpdkPort, DpdkError> {
        let eal = Eal::init(&config.eal)?;
        let n = u16::try_from(queues).unwrap_or(u16::MAX);
        // Every RX and TX ring of every queue of every device full, a
        // cache and a burst per worker: fewer mbufs than that starves the
        // rings (or fails the start). DPDK likes 2^n - 1.
        let devices = 1 + u32::from(config.inside.is_some());
        let rings = devices * u32::from(n) * 2 * u32::from(config.descriptors);
        let needed = rings + u32::from(n) * (256 + 64) + 1024;
        let mbufs = config.mbufs.max(needed).next_power_of_two() - 1;
        let pool = Arc::new(Mempool::new(eal, "bw_pool", mbufs, 256)?);
        let mut ports = Vec::new();
        for device in std::iter::once(&config.device).chain(config.inside.iter()) {
            let id = EthPort::find(eal, device)?;
            ports.push(EthPort::start(
                eal,
                id,
                n,
                config.descriptors,
                &pool,
                &crate::rss::SYMMETRIC_KEY,
            )?);
        }
        // Queue q of every device goes to worker q.
        let mut per_device: Vec<std::vec::IntoIter<PortQueue>> =
            ports.iter().map(|p| p.take_queues().into_iter()).collect();
        let queues = (0..n)
            .map(|q| DpdkQueue {
                sides: per_device.iter_mut().filter_map(Iterator::next).collect(),
                eal,
                registered: false,
                out: [
                    Vec::with_capacity(super::MAX_BURST),
                    Vec::with_capacity(super::MAX_BURST),
                ],
                first: 0,
                ports: ports.clone(),
                pool: pool.clone(),
                drops: 0,
                idle_polls: 0,
                reads_device_stats: q == 0,
            })
            .collect();
        let name = match &config.inside {
            Some(inside) => format!("dpdk:inline:{},{inside}", config.device),
            None => format!("dpdk:{}", config.device),
        };
        Ok(DpdkPort { name, queues })
    }
}

impl Port for DpdkPort {
    type Queue = DpdkQueue;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn take_queues(&mut self) -> Vec<DpdkQueue> {
        std::mem::take(&mut self.queues)
    }
}
