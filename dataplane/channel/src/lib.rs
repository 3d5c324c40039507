//! baitwall's shared-memory channel between the dataplane and the control
//! process: one versioned region (a file under /dev/shm) holding, per
//! worker, a ring of events going up and a ring of rules coming down.
//!
//! This is one of the few crates allowed `unsafe` (it places atomics in
//! memory another process maps); every block says why it is sound.
//!
//! ```
//! use baitwall_channel::{Record, heap_ring};
//!
//! let (mut producer, mut consumer) = heap_ring(16);
//! let mut bite = Record::new(1);
//! bite.put_u64(8, 0xc000_0242);
//! assert!(producer.push(&bite));
//! producer.publish(); // one store makes the whole batch visible
//! assert_eq!(consumer.pop().map(|r| r.get_u64(8)), Some(0xc000_0242));
//! consumer.release(); // one store frees what was read
//! assert!(consumer.pop().is_none());
//! ```

pub mod message;
pub mod record;
#[cfg(not(loom))]
pub mod region;
pub mod ring;

pub use message::{DecodeError, PersonaAnswer, Rule, UpEvent};
pub use record::{RECORD_SIZE, Record};
#[cfg(not(loom))]
pub use region::{Geometry, Region, RegionError};
pub use ring::{Consumer, Producer, heap_ring};

/// True when a 16-byte address is IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291
/// section 2.5.5.2): how records, and both processes, carry IPv4.
#[inline]
pub fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}
