//! The `mem` port: a software NIC driven directly by the caller, for tests and
//! benchmarks. The caller injects frames (spread over queues by RSS) and
//! collects what the workers transmitted.

use super::Port;
use super::soft::{SoftNic, SoftNicConfig, SoftQueue};

/// An in-memory port; [`MemPort::nic`] is the wire side.
pub struct MemPort {
    nic: SoftNic,
    taken: bool,
}

impl MemPort {
    /// A port with the given sizes.
    pub fn new(config: SoftNicConfig) -> Self {
        MemPort {
            nic: SoftNic::new(config),
            taken: false,
        }
    }

    /// The wire side: inject frames, collect transmitted frames.
    pub fn nic(&self) -> SoftNic {
        self.nic.clone()
    }
}

impl Port for MemPort {
    type Queue = SoftQueue;

    fn name(&self) -> String {
        format!("mem:{}q", self.nic.queues())
    }

    fn take_queues(&mut self) -> Vec<SoftQueue> {
        if std::mem::replace(&mut self.taken, true) {
            return Vec::new();
        }
        self.nic.queue_handles()
    }
}
