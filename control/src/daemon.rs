//! The control loop: attach to the dataplane's region, resynchronise every
//! worker with the stored blocks, then drain events, decide, store and push.
//!
//! One session per dataplane instance. At attach, every worker gets the full
//! block state and a generation marker before anything else; the dataplane
//! keeps enforcing what it has meanwhile (a block is never lost by a control
//! restart). A blocking bite from any worker becomes a block with an
//! absolute expiry, stored first, then pushed to every worker with a new
//! generation marker, which each worker acknowledges once it is in force.
//! When the region file is replaced (the dataplane restarted: a new instance
//! id), the session ends and a new one resynchronises the new workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use baitwall_channel::message::{code, kind};
use baitwall_channel::region::ControlEnds;
use baitwall_channel::{Region, RegionError, Rule, UpEvent};

use std::sync::mpsc::Receiver;

use serde_json::json;

use crate::api::protocol::{ApiError, Code, Request, nok, ok};
use crate::api::server::{Command, SocketSettings};
use crate::policy::{Decision, Net, Policy, covers};
use crate::store::{Block, Change, Store};

/// How control runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The dataplane's region file.
    pub region: PathBuf,
    /// The SQLite database.
    pub database: PathBuf,
    /// What bites become (kinds, durations, escalation, allowlist, cap).
    pub policy: Policy,
    /// The JSON control socket (`None`: not served).
    pub socket: Option<SocketSettings>,
}

/// Why a session ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum SessionEnd {
    /// Stop was requested.
    Stopped,
    /// The region was replaced: the dataplane restarted.
    Replaced,
}

/// What control reports as it runs (for logs and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Attached to a dataplane instance and pushed `blocks` blocks.
    Attached {
        /// The instance id.
        instance: u64,
        /// Workers.
        workers: u32,
        /// Blocks pushed at resync.
        blocks: usize,
        /// True when only the changes since the workers' generation were sent.
        delta: bool,
    },
    /// A source was blocked (or its block extended).
    Blocked {
        /// The block.
        block: Block,
        /// New or extended.
        change: Change,
    },
    /// Blocks expired and were removed.
    Expired(usize),
    /// A block was refused: the store holds `max_blocks` already.
    Refused(Block),
    /// Every worker acknowledged a generation.
    Applied(u64),
}

fn now_s() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Runs until `stop` is set; `notice` hears what happens.
pub fn run(
    settings: &Settings,
    stop: &Arc<AtomicBool>,
    mut notice: impl FnMut(Notice),
) -> anyhow::Result<()> {
    let store = Store::open(&settings.database)
        .with_context(|| format!("opening {}", settings.database.display()))?;
    let (tx, commands) = std::sync::mpsc::sync_channel::<Command>(64);
    let server = match &settings.socket {
        Some(s) => Some(
            crate::api::server::serve(s.clone(), tx, stop.clone())
                .with_context(|| format!("serving {}", s.path.display()))?,
        ),
        None => None,
    };
    let started = Instant::now();
    let result = (|| {
        while !stop.load(Ordering::Relaxed) {
            let Some(region) = wait_for_region(settings, &store, stop, &commands, started)? else {
                break;
            };
            let end = session(
                settings,
                &store,
                region,
                stop,
                &mut notice,
                &commands,
                started,
            )?;
            if end == SessionEnd::Stopped {
                break;
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    if let Some(server) = server {
        let _ = server.join();
    }
    result
}

/// What a request may act on: the store always, the workers when attached.
struct Ctx<'a> {
    store: &'a Store,
    stop: &'a AtomicBool,
    started: Instant,
    attached: Option<(&'a mut Vec<ControlEnds>, u64)>,
}

/// Answers every waiting request.
fn answer_all(commands: &Receiver<Command>, ctx: &mut Ctx<'_>) {
    while let Ok(cmd) = commands.try_recv() {
        let line = answer(&cmd.request, ctx).unwrap_or_else(|e| {
            nok(&ApiError {
                code: Code::Unavailable,
                message: format!("{e:#}"),
            })
        });
        let _ = cmd.reply.send(line);
    }
}

fn text_net(net: &[u8; 16], len: u8) -> String {
    let addr = std::net::IpAddr::from(*net).to_canonical();
    let len = if addr.is_ipv4() {
        len.saturating_sub(96)
    } else {
        len
    };
    format!("{addr}/{len}")
}

fn not_found(what: &str, net: &Net) -> String {
    nok(&ApiError {
        code: Code::NotFound,
        message: format!("no {what} on {}", text_net(&net.0, net.1)),
    })
}

/// Pushes `rules` to every worker under a new generation, if attached.
fn push_rules(ctx: &mut Ctx<'_>, rules: &[Rule]) -> anyhow::Result<Option<u64>> {
    let store = ctx.store;
    match ctx.attached.as_mut() {
        Some((ends, _)) => {
            let g = store.next_generation()?;
            push_all(ends, rules, g)?;
            Ok(Some(g))
        }
        None => Ok(None),
    }
}

fn answer(request: &Request, ctx: &mut Ctx<'_>) -> anyhow::Result<String> {
    let store = ctx.store;
    Ok(match request {
        Request::Hello | Request::Version => ok(json!({
            "program": env!("CARGO_PKG_VERSION"),
            "protocol": crate::api::protocol::PROTOCOL_VERSION,
        })),
        Request::Status => ok(json!({
            "uptime_seconds": ctx.started.elapsed().as_secs(),
            "attached": ctx.attached.is_some(),
            "instance": ctx.attached.as_ref().map(|(_, id)| format!("{id:016x}")),
            "workers": ctx.attached.as_ref().map(|(e, _)| e.len()),
            "blocks": store.count_blocks()?,
        })),
        Request::Stats => ok(json!({
            "events_dropped_per_worker": ctx
                .attached
                .as_ref()
                .map(|(ends, _)| ends.iter().map(|e| e.events.dropped()).collect::<Vec<_>>()),
            "events": store.event_count()?,
        })),
        Request::BlockList {
            covering,
            offset,
            limit,
        } => {
            let list: Vec<_> = store
                .active_blocks(now_s())?
                .into_iter()
                .filter(|b| covering.is_none_or(|a| covers(&(b.net, b.len), &a)))
                .skip(*offset as usize)
                .take(*limit as usize)
                .map(|b| json!({"prefix": text_net(&b.net, b.len), "expires": b.expires, "reason": b.reason}))
                .collect();
            ok(json!(list))
        }
        Request::BlockAdd {
            target,
            duration,
            reason,
        } => {
            let block = Block {
                net: target.0,
                len: target.1,
                expires: duration.map_or(0, expiry),
                reason: reason.clone(),
            };
            store.upsert_block(&block, now_s())?;
            let stored = store.block(&block.net, block.len)?.unwrap_or(block);
            let generation = push_rules(ctx, &[block_rule(&stored)])?;
            if let Some(g) = generation {
                store.stamp_block(&stored.net, stored.len, g)?;
            }
            ok(
                json!({"prefix": text_net(&stored.net, stored.len), "expires": stored.expires, "generation": generation}),
            )
        }
        Request::BlockRemove { target } => {
            if !store.remove_block(&target.0, target.1)? {
                return Ok(not_found("block", target));
            }
            let generation = push_rules(
                ctx,
                &[Rule::Unblock {
                    net: target.0,
                    len: target.1,
                }],
            )?;
            store.stamp_removed(&target.0, target.1, generation.unwrap_or(0))?;
            ok(json!({"removed": text_net(&target.0, target.1), "generation": generation}))
        }
        Request::AllowList => ok(json!(
            store
                .allows()?
                .iter()
                .map(|(n, l)| text_net(n, *l))
                .collect::<Vec<_>>()
        )),
        Request::AllowAdd { target, reason } => {
            store.add_allow(&target.0, target.1, reason, now_s())?;
            let generation = push_rules(
                ctx,
                &[Rule::Allow {
                    net: target.0,
                    len: target.1,
                    expiry: 0,
                }],
            )?;
            ok(json!({"allowed": text_net(&target.0, target.1), "generation": generation}))
        }
        Request::AllowRemove { target } => {
            if !store.remove_allow(&target.0, target.1)? {
                return Ok(not_found("allow entry", target));
            }
            let generation = push_rules(
                ctx,
                &[Rule::Disallow {
                    net: target.0,
                    len: target.1,
                }],
            )?;
            ok(json!({"removed": text_net(&target.0, target.1), "generation": generation}))
        }
        Request::Hosts { limit } => ok(json!(
            store
                .hosts(u32::try_from(*limit).unwrap_or(u32::MAX))?
                .iter()
                .map(|(a, p, first, last)| json!({
                    "host": std::net::IpAddr::from(*a).to_canonical().to_string(),
                    "port": p,
                    "first_seen_ns": first,
                    "last_seen_ns": last,
                }))
                .collect::<Vec<_>>()
        )),
        Request::Shutdown => {
            ctx.stop.store(true, Ordering::Relaxed);
            ok(json!("shutting down"))
        }
    })
}

/// Waits until the region exists and is ready (the dataplane may start later).
fn wait_for_region(
    settings: &Settings,
    store: &Store,
    stop: &AtomicBool,
    commands: &Receiver<Command>,
    started: Instant,
) -> anyhow::Result<Option<Arc<Region>>> {
    loop {
        answer_all(
            commands,
            &mut Ctx {
                store,
                stop,
                started,
                attached: None,
            },
        );
        match Region::attach(&settings.region) {
            Ok(region) => return Ok(Some(region)),
            Err(RegionError::Io { .. } | RegionError::NotReady(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pushes `rule` on a rules ring, waiting while it is full (control may
/// wait; workers drain a bounded number of rules per turn). Gives up after
/// a second, and says so.
fn push(ends: &mut ControlEnds, rule: &Rule) -> anyhow::Result<()> {
    let record = rule.encode();
    let deadline = Instant::now() + Duration::from_secs(1);
    while !ends.rules.push(&record) {
        ends.rules.publish();
        anyhow::ensure!(
            Instant::now() < deadline,
            "a worker's rules ring stayed full for 1 s"
        );
        std::thread::sleep(Duration::from_micros(50));
    }
    Ok(())
}

fn push_all(all: &mut [ControlEnds], rules: &[Rule], generation: u64) -> anyhow::Result<()> {
    for ends in all.iter_mut() {
        for rule in rules {
            push(ends, rule)?;
        }
        push(ends, &Rule::Generation(generation))?;
        ends.rules.publish();
    }
    Ok(())
}

fn block_rule(b: &Block) -> Rule {
    Rule::Block {
        net: b.net,
        len: b.len,
        expiry: b.expires,
    }
}

fn session(
    settings: &Settings,
    store: &Store,
    region: Arc<Region>,
    stop: &AtomicBool,
    notice: &mut impl FnMut(Notice),
    commands: &Receiver<Command>,
    started: Instant,
) -> anyhow::Result<SessionEnd> {
    let workers = region.geometry().workers;
    let mut ends: Vec<ControlEnds> = (0..workers)
        .filter_map(|w| region.control_ends(w))
        .collect();
    // Resynchronise: the stored state first, before any new decision. If
    // this is the dataplane instance the last session served, and every
    // worker says which generation it has in force, only what changed since
    // is sent; otherwise everything.
    let applied = ends.iter().map(|e| e.rules.applied()).min().unwrap_or(0);
    let delta = applied > 0 && store.last_instance()? == region.instance_id();
    store.set_instance(region.instance_id())?;
    let (blocks, removed) = if delta {
        store.changes_since(applied, now_s())?
    } else {
        (store.active_blocks(now_s())?, Vec::new())
    };
    let mut generation = store.next_generation()?;
    for b in &blocks {
        store.stamp_block(&b.net, b.len, generation)?;
    }
    // The allowlist first (the policy's and the stored one), so no block
    // pushed after it can catch an allowed source.
    for (net, len) in settings.policy.allowlist() {
        store.add_allow(&net, len, "policy", now_s())?;
    }
    let allowed = store.allows()?;
    let mut rules: Vec<Rule> = allowed
        .iter()
        .copied()
        .map(|(net, len)| Rule::Allow {
            net,
            len,
            expiry: 0,
        })
        .collect();
    rules.extend(blocks.iter().map(block_rule));
    rules.extend(removed.iter().map(|&(net, len)| Rule::Unblock { net, len }));
    push_all(&mut ends, &rules, generation)?;
    notice(Notice::Attached {
        instance: region.instance_id(),
        workers,
        blocks: blocks.len(),
        delta,
    });
    let mut acked = vec![0u64; ends.len()];
    let mut announced = 0u64;
    let mut last_expiry = Instant::now();
    let mut last_region_check = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(SessionEnd::Stopped);
        }
        answer_all(
            commands,
            &mut Ctx {
                store,
                stop,
                started,
                attached: Some((&mut ends, region.instance_id())),
            },
        );
        let mut pending: Vec<Rule> = Vec::new();
        // The generation of this round's blocks, taken at the first one.
        let mut batch: Option<u64> = None;
        let mut busy = false;
        for (w, e) in ends.iter_mut().enumerate() {
            while let Some(record) = e.events.pop() {
                busy = true;
                let Ok(ev) = UpEvent::decode(&record) else {
                    continue;
                };
                match ev.kind {
                    kind::APPLIED => {
                        if let Some(a) = acked.get_mut(w) {
                            *a = (*a).max(ev.time_ns);
                        }
                    }
                    kind::BITE => {
                        store.record_event(
                            ev.time_ns,
                            code::bite_name(ev.bite),
                            &ev.src,
                            &ev.dst,
                            ev.src_port,
                            ev.dst_port,
                            ev.worker,
                            code::action_name(ev.action),
                        )?;
                        let (net, len) = settings.policy.source_net(&ev.src);
                        let times = store.times_blocked(&net, len)?;
                        let stored_allow = allowed.iter().any(|n| covers(n, &ev.src));
                        let decision = if stored_allow {
                            Decision::Allowed
                        } else {
                            settings.policy.decide(&ev, times)
                        };
                        if let Decision::Block { net, r#for } = decision {
                            let block = Block {
                                net: net.0,
                                len: net.1,
                                expires: expiry(r#for),
                                reason: code::bite_name(ev.bite).to_string(),
                            };
                            if times == 0 && store.count_blocks()? >= settings.policy.max_blocks {
                                notice(Notice::Refused(block));
                            } else {
                                let change = store.upsert_block(&block, now_s())?;
                                if change != Change::Unchanged {
                                    let g = match batch {
                                        Some(g) => g,
                                        None => *batch.insert(store.next_generation()?),
                                    };
                                    store.stamp_block(&block.net, block.len, g)?;
                                    let stored =
                                        store.block(&block.net, block.len)?.unwrap_or(block);
                                    pending.push(block_rule(&stored));
                                    notice(Notice::Blocked {
                                        block: stored,
                                        change,
                                    });
                                }
                            }
                        }
                    }
                    kind::SWEEP => {
                        store.record_event(
                            ev.time_ns,
                            "sweep",
                            &ev.src,
                            &ev.dst,
                            ev.src_port,
                            ev.dst_port,
                            ev.worker,
                            "count",
                        )?;
                    }
                    // An inside host answered a SYN: a live host and service.
                    kind::SERVICE => store.learn_host(&ev.src, ev.src_port, ev.time_ns)?,
                    _ => {}
                }
            }
            e.events.release();
        }
        if let Some(g) = batch {
            generation = g;
            push_all(&mut ends, &pending, generation)?;
        }
        let all_acked = acked.iter().copied().min().unwrap_or(0);
        if all_acked > announced {
            announced = all_acked;
            notice(Notice::Applied(all_acked));
        }
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            last_expiry = Instant::now();
            let expired = store.take_expired(now_s())?;
            if !expired.is_empty() {
                let rules: Vec<Rule> = expired
                    .iter()
                    .map(|b| Rule::Unblock {
                        net: b.net,
                        len: b.len,
                    })
                    .collect();
                generation = store.next_generation()?;
                for b in &expired {
                    store.stamp_removed(&b.net, b.len, generation)?;
                }
                push_all(&mut ends, &rules, generation)?;
                notice(Notice::Expired(expired.len()));
            }
        }
        if last_region_check.elapsed() >= Duration::from_millis(100) {
            last_region_check = Instant::now();
            if let Ok(current) = Region::attach(&settings.region)
                && current.instance_id() != region.instance_id()
            {
                return Ok(SessionEnd::Replaced);
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// An absolute expiry `for` from now (0: permanent).
fn expiry(r#for: Duration) -> u32 {
    if r#for.is_zero() {
        0
    } else {
        now_s().saturating_add(u32::try_from(r#for.as_secs()).unwrap_or(u32::MAX))
    }
}
