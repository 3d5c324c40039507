//! A session with one dataplane instance: attach, resync by generation,
//! the loop that drains every worker's events and pushes rules, and the
//! drain of a region that goes away.

use super::*;

/// Waits until the region exists and is ready (the dataplane may start later).
pub(super) fn wait_for_region(
    state: &mut State,
    stop: &AtomicBool,
    commands: &Receiver<Command>,
) -> anyhow::Result<Option<Arc<Region>>> {
    loop {
        state.answer_all(commands, None);
        state.housekeeping(None)?;
        if state.attach_after.is_some_and(|t| Instant::now() < t) {
            state.idle(commands, Duration::from_millis(10), None);
            continue;
        }
        match Region::attach(&state.config.region) {
            Ok(region) => return Ok(Some(region)),
            Err(RegionError::Io { .. } | RegionError::NotReady(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        state.idle(commands, Duration::from_millis(10), None);
    }
}

/// The rule that lifts a block on every worker.
pub(super) fn unblock_rule(b: &Block) -> Rule {
    Rule::Unblock {
        net: b.net,
        len: b.len,
    }
}

pub(super) fn block_rule(b: &Block) -> Rule {
    Rule::Block {
        net: b.net,
        len: b.len,
        expiry: b.expires,
    }
}

/// Hosts seen alive within this long (seconds) are restored to a new
/// dataplane, at most [`LIVE_RESTORE_MAX`] of them, the most recent first.
pub(super) const LIVE_RESTORE_S: u32 = 24 * 3600;
pub(super) const LIVE_RESTORE_MAX: u32 = 65_536;

/// Resynchronises a freshly attached dataplane: the stored state first,
/// before any new decision. If this is the instance the last session
/// served and every worker says which generation it has in force, only
/// what changed since is sent; otherwise everything.
pub(super) fn resync(
    state: &mut State,
    region: &Region,
    ends: &mut [Downlink],
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<()> {
    let store = &state.store;
    let applied = ends
        .iter()
        .map(|e| e.ends.rules.applied())
        .min()
        .unwrap_or(0);
    let delta = applied > 0 && store.last_instance()? == region.instance_id();
    store.set_instance(region.instance_id())?;
    let (blocks, removed) = if delta {
        store.changes_since(applied, now_s())?
    } else {
        (store.active_blocks(now_s())?, Vec::new())
    };
    // Allow entries removed since (every allow in force is sent anyway).
    let disallowed = if delta {
        store.allow_removals_since(applied)?
    } else {
        Vec::new()
    };
    let generation = store.next_generation()?;
    for b in &blocks {
        store.stamp_block(&b.net, b.len, generation)?;
    }
    // The dataplane's own allowlist (`[deception] allow`, from the region's
    // header) joins control's, so no export covers it; pushed below with
    // the rest.
    state.sync_allows("dataplane", &region.allowlist(), None)?;
    // The allowlist first, so no block pushed after it can catch an
    // allowed source.
    state.refresh_allowed()?;
    let mut rules: Vec<Rule> = state
        .allowed
        .iter()
        .map(|&(net, len)| Rule::Allow {
            net,
            len,
            expiry: 0,
        })
        .collect();
    rules.extend(
        disallowed
            .iter()
            .map(|&(net, len)| Rule::Disallow { net, len }),
    );
    // Liveness learned before a restart, so that no decoy claims a host
    // that was alive (a delta resync's workers kept theirs).
    if !delta {
        let since_ns = u64::from(now_s().saturating_sub(LIVE_RESTORE_S)) * 1_000_000_000;
        rules.extend(
            state
                .store
                .live_hosts(since_ns, LIVE_RESTORE_MAX)?
                .into_iter()
                .map(|(addr, seen_ns)| Rule::Live {
                    addr,
                    seen: (seen_ns / 1_000_000_000) as u32,
                }),
        );
    }
    rules.extend(blocks.iter().map(block_rule));
    rules.extend(removed.iter().map(|&(net, len)| Rule::Unblock { net, len }));
    send_all(ends, &rules, generation)?;
    notice(Notice::Attached {
        instance: region.instance_id(),
        workers: region.geometry().workers,
        blocks: blocks.len(),
        delta,
    });
    Ok(())
}

/// Handles one record of a worker's events ring.
pub(super) fn on_record(
    state: &mut State,
    worker: usize,
    record: &Record,
    acked: &mut [u64],
    pending: &mut Vec<Rule>,
    batch: &mut Option<u64>,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<()> {
    if record.kind() == kind::PERSONA {
        if let Ok(a) = PersonaAnswer::decode(record) {
            state.on_answer(a);
        }
        return Ok(());
    }
    let Ok(ev) = UpEvent::decode(record) else {
        return Ok(());
    };
    match ev.kind {
        kind::APPLIED => {
            if let Some(a) = acked.get_mut(worker) {
                *a = (*a).max(ev.time_ns);
            }
        }
        kind::BITE => on_bite(state, &ev, pending, batch, notice)?,
        kind::SWEEP => {
            if let Some(e) = eve::from_up(&ev) {
                state.emit(
                    &e,
                    Some(EventRow {
                        time_ns: ev.time_ns,
                        kind: "sweep",
                        src: ev.src,
                        dst: ev.dst,
                        src_port: ev.src_port,
                        dst_port: ev.dst_port,
                        worker: ev.worker,
                        action: "count",
                        eve: None,
                    }),
                )?;
            }
        }
        kind::MARK => {
            if let Some(e) = eve::from_up(&ev) {
                state.emit(&e, None)?;
            }
        }
        // An inside host answered a SYN: a live host and service.
        kind::SERVICE => state.store.learn_host(&ev.src, ev.src_port, ev.time_ns)?,
        // An inside host showed it is alive (port 0: the host).
        kind::LIVE => state.store.learn_host(&ev.src, 0, ev.time_ns)?,
        _ => {}
    }
    Ok(())
}

/// Reads every record left in the rings of a region that is going away
/// (its dataplane stopped or was replaced), so that no bite, block or
/// learned host it reported before it went is lost: a clean stop
/// publishes its workers' last events before it closes the region, and a
/// killed dataplane's published events are still in the mapping. The
/// rules this makes are not pushed (nothing reads those rings now): what
/// they store reaches the next dataplane with its full resync. Returns the
/// records read.
pub(super) fn drain(
    state: &mut State,
    ends: &mut [Downlink],
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<usize> {
    let mut acked = vec![0u64; ends.len()];
    let mut pending = Vec::new();
    let mut batch = None;
    let mut read = 0;
    for (w, e) in ends.iter_mut().enumerate() {
        while let Some(record) = e.ends.events.pop() {
            read += 1;
            on_record(
                state,
                w,
                &record,
                &mut acked,
                &mut pending,
                &mut batch,
                notice,
            )?;
        }
        e.ends.events.release();
    }
    Ok(read)
}

pub(super) fn session(
    state: &mut State,
    region: Arc<Region>,
    stop: &AtomicBool,
    notice: &mut impl FnMut(Notice),
    commands: &Receiver<Command>,
) -> anyhow::Result<SessionEnd> {
    let workers = region.geometry().workers;
    let mut ends: Vec<Downlink> = (0..workers)
        .filter_map(|w| region.control_ends(w))
        .map(Downlink::new)
        .collect();
    // The stored state goes out first (what does not fit in a ring waits
    // in its downlink and goes out round by round).
    if let Err(e) = resync(state, &region, &mut ends, notice) {
        // A store error ends control (as anywhere else); a worker that
        // does not read its ring ends only this session: attach again in
        // a second and resync from the store.
        if e.downcast_ref::<crate::downlink::Stalled>().is_none() {
            return Err(e);
        }
        state.attach_after = Some(Instant::now() + Duration::from_secs(1));
        return Ok(SessionEnd::Resync);
    }
    let mut acked = vec![0u64; ends.len()];
    let mut announced = 0u64;
    let mut last_expiry = Instant::now();
    let mut last_region_check = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(SessionEnd::Stopped);
        }
        // Rules owed since the last round go first, in order.
        for link in &mut ends {
            link.flush();
        }
        state.answer_all(
            commands,
            Some(&mut Attached {
                ends: &mut ends,
                region: &region,
            }),
        );
        let mut pending: Vec<Rule> = Vec::new();
        // The generation of this round's blocks, taken at the first one.
        let mut batch: Option<u64> = None;
        let mut busy = false;
        for w in 0..ends.len() {
            // A bounded share per worker and round: the ring frees slots as
            // it is read, so a worker producing faster than control reads
            // would otherwise keep this loop on its ring, away from the
            // other workers' rings, the socket and the expiry sweep.
            for _ in 0..EVENTS_PER_ROUND {
                let Some(record) = ends.get_mut(w).and_then(|e| e.ends.events.pop()) else {
                    break;
                };
                busy = true;
                on_record(
                    state,
                    w,
                    &record,
                    &mut acked,
                    &mut pending,
                    &mut batch,
                    notice,
                )?;
            }
            if let Some(e) = ends.get_mut(w) {
                e.ends.events.release();
            }
        }
        if let Some(w) = ends
            .iter()
            .position(|e| e.ends.events.faulted() || e.ends.rules.faulted())
        {
            // A ring index broke the protocol (a corrupt or foreign
            // region): nothing more is read from or written to it. Start
            // over from a fresh attach, a second from now.
            notice(Notice::RingFault { worker: w });
            state.attach_after = Some(Instant::now() + Duration::from_secs(1));
            return Ok(SessionEnd::Resync);
        }
        if let Some(g) = batch
            && send_all(&mut ends, &pending, g).is_err()
        {
            // Stored already: the resync brings every worker up to date.
            return Ok(SessionEnd::Resync);
        }
        let all_acked = acked.iter().copied().min().unwrap_or(0);
        if all_acked > announced {
            announced = all_acked;
            notice(Notice::Applied(all_acked));
        }
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            last_expiry = Instant::now();
            if let Some((rules, generation)) = expiry::sweep(state, now_s(), notice)?
                && send_all(&mut ends, &rules, generation).is_err()
            {
                return Ok(SessionEnd::Resync);
            }
        }
        state.housekeeping(Some(&Attached {
            ends: &mut ends,
            region: &region,
        }))?;
        if std::mem::take(&mut state.resync) {
            return Ok(SessionEnd::Resync);
        }
        if last_region_check.elapsed() >= Duration::from_millis(100) {
            last_region_check = Instant::now();
            let replaced = Region::attach(&state.config.region)
                .is_ok_and(|current| current.instance_id() != region.instance_id());
            // A dataplane that stopped cleanly closed its region: nothing
            // reads the rings any more, so this session is over too.
            if replaced || !region.is_open() {
                let drained = drain(state, &mut ends, notice)?;
                if drained > 0 {
                    notice(Notice::Drained(drained));
                }
                // Questions in flight die with this instance.
                for q in state.queries.drain(..) {
                    let _ = q
                        .reply
                        .send(api(Code::Unavailable, "the dataplane stopped or restarted"));
                }
                notice(Notice::Detached {
                    instance: region.instance_id(),
                });
                return Ok(SessionEnd::Replaced);
            }
        }
        if !busy {
            state.idle(
                commands,
                Duration::from_micros(100),
                Some(&mut Attached {
                    ends: &mut ends,
                    region: &region,
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use baitwall_channel::Geometry;
    use baitwall_channel::message::NO_PERSONA;

    fn event(kind: u16, src_last: u8, time_ns: u64) -> UpEvent {
        UpEvent {
            kind,
            bite: code::BITE_DATA,
            action: code::ACTION_ALERT,
            allowlisted: false,
            strong: false,
            latched_len: 0,
            worker: 0,
            time_ns,
            src: std::net::Ipv4Addr::new(192, 0, 2, src_last)
                .to_ipv6_mapped()
                .octets(),
            dst: [0; 16],
            src_port: 80,
            dst_port: 80,
            decoys: 0,
            persona: NO_PERSONA,
        }
    }

    /// Every kind of record is handled by one function; a drain reads
    /// every worker's ring to the end.
    #[test]
    fn a_drain_reads_every_record_of_every_worker() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), crate::policy::Policy::default());
        let region = Region::in_memory(
            Geometry {
                workers: 2,
                slots: 64,
            },
            3,
        )
        .unwrap();
        let mut links: Vec<Downlink> = (0..2)
            .map(|w| Downlink::new(region.control_ends(w).unwrap()))
            .collect();
        for w in 0..2 {
            let mut ends = region.worker_ends(w).unwrap();
            for i in 0..50u8 {
                assert!(
                    ends.events
                        .push(&event(kind::BITE, i, u64::from(i)).encode())
                );
            }
            // A learned service and a garbage record, which is skipped.
            assert!(ends.events.push(&event(kind::SERVICE, 9, 1).encode()));
            assert!(ends.events.push(&baitwall_channel::Record::new(0xeeee)));
            ends.events.publish();
        }
        let read = drain(&mut state, &mut links, &mut |_| {}).unwrap();
        assert_eq!(read, 2 * 52);
        assert_eq!(state.store.event_count().unwrap(), 100);
        assert_eq!(drain(&mut state, &mut links, &mut |_| {}).unwrap(), 0);
    }

    #[test]
    fn acknowledgements_raise_each_workers_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), crate::policy::Policy::default());
        let mut acked = vec![0u64; 2];
        let (mut pending, mut batch) = (Vec::new(), None);
        for (w, g) in [(1usize, 7u64), (1, 5), (0, 2)] {
            let record = event(kind::APPLIED, 0, g).encode();
            on_record(
                &mut state,
                w,
                &record,
                &mut acked,
                &mut pending,
                &mut batch,
                &mut |_| {},
            )
            .unwrap();
        }
        assert_eq!(acked, [2, 7], "never lowered by an older marker");
    }
}
