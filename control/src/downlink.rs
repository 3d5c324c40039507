//! Rules on their way down to one worker: its ends of the region's rings
//! and a backlog, so that control never waits for a worker.
//!
//! A rules ring holds a few thousand records and a worker drains a bounded
//! number of them per turn; a burst of rules larger than the free room
//! (a resync of many blocks, a mass expiry) used to make control sleep
//! until the worker caught up. Now what does not fit waits here, in
//! order, and goes out at the start of each round of the control loop; a
//! generation marker always follows the rules it covers, so a worker
//! acknowledges a generation only once it holds all of them. A backlog
//! that outgrows [`BACKLOG_MAX`] means the worker has stopped reading:
//! the session then ends and starts over with a resync.

use std::collections::VecDeque;

use baitwall_channel::region::ControlEnds;
use baitwall_channel::{Record, Rule};

/// Records a worker may owe before control gives up on the session: four
/// times a full store of a million blocks (a resync sends them all, and a
/// worker takes them a ring at a time), 256 MiB at the very most.
pub const BACKLOG_MAX: usize = 1 << 22;

/// One worker's rings as control drives them.
pub struct Downlink {
    /// The region's ends: events up, rules down.
    pub ends: ControlEnds,
    backlog: VecDeque<Record>,
}

/// The worker owes more than [`BACKLOG_MAX`] records: it is not reading.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a worker's rules backlog passed {BACKLOG_MAX} records: it is not reading its ring")]
pub struct Stalled;

impl Downlink {
    /// A downlink over `ends`, nothing owed.
    pub fn new(ends: ControlEnds) -> Downlink {
        Downlink {
            ends,
            backlog: VecDeque::new(),
        }
    }

    /// Sends `rules` then the marker of `generation`: as much as fits now,
    /// the rest at the next [`flush`](Self::flush). Never waits.
    pub fn send(&mut self, rules: &[Rule], generation: u64) -> Result<(), Stalled> {
        self.backlog.extend(rules.iter().map(Rule::encode));
        self.backlog
            .push_back(Rule::Generation(generation).encode());
        self.flush();
        if self.backlog.len() > BACKLOG_MAX {
            return Err(Stalled);
        }
        Ok(())
    }

    /// Sends one rule with no marker (a question for the worker), behind
    /// anything owed.
    pub fn send_rule(&mut self, rule: &Rule) -> Result<(), Stalled> {
        self.backlog.push_back(rule.encode());
        self.flush();
        if self.backlog.len() > BACKLOG_MAX {
            return Err(Stalled);
        }
        Ok(())
    }

    /// Moves what fits of the backlog onto the ring, in order, and
    /// publishes it.
    pub fn flush(&mut self) {
        while let Some(record) = self.backlog.front() {
            if !self.ends.rules.push(record) {
                break;
            }
            self.backlog.pop_front();
        }
        self.ends.rules.publish();
    }

    /// Records waiting for room on the ring.
    pub fn owed(&self) -> usize {
        self.backlog.len()
    }
}

/// Sends `rules` and the marker of `generation` to every worker.
pub fn send_all(links: &mut [Downlink], rules: &[Rule], generation: u64) -> Result<(), Stalled> {
    for link in links.iter_mut() {
        link.send(rules, generation)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use baitwall_channel::{Geometry, Region};

    fn net(i: u32) -> [u8; 16] {
        std::net::Ipv4Addr::from(0x0a00_0000 | i)
            .to_ipv6_mapped()
            .octets()
    }

    /// More rules than the ring holds go out in order as the worker
    /// reads, each generation marker after its rules, and control never
    /// waited for any of it.
    #[test]
    fn a_burst_larger_than_the_ring_arrives_whole_and_in_order() {
        let region = Region::in_memory(
            Geometry {
                workers: 1,
                slots: 16,
            },
            1,
        )
        .unwrap();
        let mut worker = region.worker_ends(0).unwrap();
        let mut link = Downlink::new(region.control_ends(0).unwrap());
        let first: Vec<Rule> = (0..40)
            .map(|i| Rule::Unblock {
                net: net(i),
                len: 128,
            })
            .collect();
        let second: Vec<Rule> = (40..50)
            .map(|i| Rule::Unblock {
                net: net(i),
                len: 128,
            })
            .collect();
        link.send(&first, 1).unwrap();
        link.send(&second, 2).unwrap();
        assert_eq!(link.owed(), 52 - 16, "the ring took what fits");
        let mut got = Vec::new();
        while got.len() < 52 {
            while let Some(r) = worker.rules.pop() {
                got.push(Rule::decode(&r).unwrap());
            }
            worker.rules.release();
            link.flush();
        }
        assert_eq!(link.owed(), 0);
        let mut want = first.clone();
        want.push(Rule::Generation(1));
        want.extend(second.iter().cloned());
        want.push(Rule::Generation(2));
        assert_eq!(got, want);
    }

    #[test]
    fn a_worker_that_never_reads_stalls_the_link_instead_of_control() {
        let region = Region::in_memory(
            Geometry {
                workers: 1,
                slots: 16,
            },
            1,
        )
        .unwrap();
        let _worker = region.worker_ends(0).unwrap();
        let mut link = Downlink::new(region.control_ends(0).unwrap());
        let rules: Vec<Rule> = (0..8192)
            .map(|i| Rule::Unblock {
                net: net(i),
                len: 128,
            })
            .collect();
        let mut sent = 0;
        let end = loop {
            match link.send(&rules, sent) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 2_000, "never stalled");
        };
        assert_eq!(end, Stalled);
        assert!(link.owed() > BACKLOG_MAX);
    }
}
