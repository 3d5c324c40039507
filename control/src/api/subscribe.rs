//! Event subscribers: socket clients that asked for `subscribe`. The control
//! loop hands each event line to every subscriber's bounded queue with
//! `try_send`; a subscriber that cannot keep up misses events (counted),
//! and one that went away is forgotten. The loop never waits on a client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use parking_lot::Mutex;

/// Event lines queued per subscriber before it starts missing some.
pub const QUEUE: usize = 4096;

struct Subscriber {
    tx: SyncSender<Arc<str>>,
    /// `event_type`s wanted (empty: all).
    types: Vec<String>,
}

/// Every current subscriber.
#[derive(Default)]
pub struct Subscribers {
    list: Mutex<Vec<Subscriber>>,
    dropped: AtomicU64,
}

impl Subscribers {
    /// Adds a subscriber to `types` (empty: every event type).
    pub fn add(&self, types: Vec<String>) -> Receiver<Arc<str>> {
        let (tx, rx) = sync_channel(QUEUE);
        self.list.lock().push(Subscriber { tx, types });
        rx
    }

    /// Hands an event line of `event_type` to every subscriber that wants it.
    pub fn publish(&self, event_type: &str, line: &str) {
        let mut list = self.list.lock();
        if list.is_empty() {
            return;
        }
        let line: Arc<str> = Arc::from(line);
        list.retain(|s| {
            if !s.types.is_empty() && !s.types.iter().any(|t| t == event_type) {
                return true;
            }
            match s.tx.try_send(line.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }

    /// Subscribers now.
    pub fn count(&self) -> usize {
        self.list.lock().len()
    }

    /// Events subscribers missed because their queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn events_reach_who_wants_them_and_slow_or_gone_ones_cost_nothing() {
        let s = Subscribers::default();
        let all = s.add(Vec::new());
        let blocks = s.add(vec!["block".into()]);
        let gone = s.add(Vec::new());
        drop(gone);
        s.publish("bite", "{\"b\":1}");
        s.publish("block", "{\"k\":1}");
        assert_eq!(s.count(), 2, "the closed one is forgotten");
        assert_eq!(&*all.recv().unwrap(), "{\"b\":1}");
        assert_eq!(&*all.recv().unwrap(), "{\"k\":1}");
        assert_eq!(&*blocks.recv().unwrap(), "{\"k\":1}");
        assert!(blocks.try_recv().is_err());
        for _ in 0..QUEUE + 10 {
            s.publish("bite", "x");
        }
        assert_eq!(s.dropped(), 10, "only the full queue missed events");
        drop(all);
    }
}
