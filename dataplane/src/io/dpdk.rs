//! The DPDK port (cargo feature `dpdk`): one DPDK Ethernet device, one
//! queue pair per worker, RSS programmed with the same symmetric Toeplitz
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

use super::{BufTooSmall, Burst, PacketBuf, Port, Queue, QueueStats, TxOutcome};

/// A frame in an mbuf.
pub struct DpdkBuf(Mbuf);

impl PacketBuf for DpdkBuf {
    fn data(&self) -> &[u8] {
        self.0.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
    fn set_len(&mut self, len: usize) -> Result<(), BufTooSmall> {
        if self.0.set_len(len) {
            Ok(())
        } else {
            Err(BufTooSmall)
        }
    }
    fn timestamp_ns(&self) -> u64 {
        0
    }
}

/// One worker's queue pair.
pub struct DpdkQueue {
    queue: PortQueue,
    eal: &'static Eal,
    registered: bool,
    /// Reused for every transmit burst (allocated once).
    out: Vec<Mbuf>,
    /// The port stays up while a queue lives; the pool with it.
    port: Arc<EthPort>,
    _pool: Arc<Mempool>,
    /// The device's drops, as last read (queue 0 reads them for the port).
    drops: u64,
    idle_polls: u32,
}

/// Read the device's counters after this many empty polls.
const STATS_EVERY_IDLE: u32 = 4096;

impl Queue for DpdkQueue {
    type Buf = DpdkBuf;

    fn rx_burst(&mut self, out: &mut Burst<DpdkBuf>, max: usize) -> usize {
        if !self.registered {
            // Once: a failure leaves the thread without an lcore id, which
            // only costs mempool caching.
            let _ = self.eal.register_thread();
            self.registered = true;
        }
        let n = self
            .queue
            .rx_burst(max.min(super::MAX_BURST), |m| out.push(DpdkBuf(m)));
        if n == 0 {
            self.idle_polls += 1;
            if self.idle_polls >= STATS_EVERY_IDLE {
                self.idle_polls = 0;
                if let Ok(s) = self.port.stats() {
                    self.drops = s.imissed + s.rx_nombuf + s.ierrors;
                }
            }
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut Burst<DpdkBuf>) -> TxOutcome {
        self.out.extend(bufs.drain(..).map(|b| b.0));
        let total = self.out.len();
        let sent = self.queue.tx_burst(&mut self.out);
        // What the device had no room for goes back to the pool.
        self.out.clear();
        TxOutcome {
            sent,
            dropped: total - sent,
            skipped: 0,
        }
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

/// The port: the EAL, the pool, the device and its queues.
pub struct DpdkPort {
    name: String,
    queues: Vec<DpdkQueue>,
}

impl DpdkPort {
    /// Starts the EAL (once per process), creates the pool, and starts the
    /// device with `queues` queue pairs.
    pub fn open(config: &DpdkConfig, queues: usize) -> Result<DpdkPort, DpdkError> {
        let eal = Eal::init(&config.eal)?;
        let pool = Arc::new(Mempool::new(eal, "bw_pool", config.mbufs, 256)?);
        let id = EthPort::find(eal, &config.device)?;
        let n = u16::try_from(queues).unwrap_or(u16::MAX);
        let port = Arc::new(EthPort::start(
            eal,
            id,
            n,
            config.descriptors,
            &pool,
            &crate::rss::SYMMETRIC_KEY,
        )?);
        let queues = (0..n)
            .filter_map(|q| PortQueue::new(&port, q))
            .map(|queue| DpdkQueue {
                queue,
                eal,
                registered: false,
                out: Vec::with_capacity(super::MAX_BURST),
                port: port.clone(),
                _pool: pool.clone(),
                drops: 0,
                idle_polls: 0,
            })
            .collect();
        Ok(DpdkPort {
            name: format!("dpdk:{}", config.device),
            queues,
        })
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
