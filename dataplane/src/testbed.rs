//! A dataplane on the `mem` port, for tests, examples and benchmarks that
//! drive real workers without a capture file: the caller injects frames on
//! the returned NIC and collects what the workers transmit.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::clock::ManualClock;
use crate::io::mem::MemPort;
use crate::io::soft::{SoftNic, SoftNicConfig};
use crate::runtime::{Dataplane, RuntimeConfig, RuntimeError};

/// Starts the workers of `config` on a `mem` port with one queue per
/// worker, on a manual clock reading `now_ns`.
pub fn start_mem(
    config: &RuntimeConfig,
    now_ns: u64,
) -> Result<(Dataplane, SoftNic), RuntimeError> {
    let mut port = MemPort::new(SoftNicConfig {
        queues: config.cores.len().max(1) as u16,
        pool_size: 1024,
        ring_size: 256,
        lossless_tx: true,
    });
    let nic = port.nic();
    let dp = Dataplane::start(
        &mut port,
        config,
        ManualClock::new(now_ns).clock(),
        Arc::new(AtomicBool::new(false)),
    )?;
    Ok((dp, nic))
}
