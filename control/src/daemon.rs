//! The control loop: attach to the dataplane's region, resynchronise every
//! worker with the stored blocks, then drain events, decide, store, log and
//! push; answer the socket's requests between rounds.
//!
//! One session per dataplane instance. At attach, every worker gets the full
//! block state and a generation marker before anything else; the dataplane
//! keeps enforcing what it has meanwhile (a block is never lost by a control
//! restart). A blocking bite from any worker becomes a block with an
//! absolute expiry, stored first, then pushed to every worker with a new
//! generation marker, which each worker acknowledges once it is in force.
//! When the region file is replaced (the dataplane restarted: a new instance
//! id), the session ends and a new one resynchronises the new workers.
//!
//! Nothing here waits on a client: requests arrive on a channel polled
//! between rounds, subscribers get events through bounded queues, the
//! metrics endpoint reads a snapshot, and a `decoys` question to the
//! dataplane is answered when its reply comes up the events ring.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use baitwall_channel::message::{PersonaAnswer, code, kind};
use baitwall_channel::{Record, Region, RegionError, Rule, UpEvent};
use serde_json::{Value, json};

use crate::api::protocol::{ApiError, Code, Request, nok, ok};
use crate::api::server::{Command, SocketSettings};
use crate::api::subscribe::Subscribers;
use crate::config::{ControlConfig, MarkLogging};
use crate::counters;
use crate::downlink::{Downlink, send_all};
use crate::enforce::Exports;
use crate::enforce::nft::Report;
use crate::eve::{self, EveLog, Unblock, net_text};
use crate::metrics::{ControlFigures, MetricsSource};
use crate::policy::{Decision, Net, Policy, covers, overlap};
use crate::store::{Block, BlockQuery, Change, EventRow, Learned, Store};

/// Events control reads from one worker's ring in one round of its loop.
const EVENTS_PER_ROUND: usize = 4096;

/// How control runs: its configuration, and the file it came from (for
/// `config-reload`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The configuration in force at start.
    pub config: ControlConfig,
    /// The file it was read from, if any.
    pub config_path: Option<PathBuf>,
}

impl Settings {
    /// Settings from a configuration built in code (no file to reload).
    pub fn new(config: ControlConfig) -> Settings {
        Settings {
            config,
            config_path: None,
        }
    }
}

/// Why a session ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum SessionEnd {
    /// Stop was requested.
    Stopped,
    /// The region was replaced (the dataplane restarted) or closed (it
    /// stopped).
    Replaced,
    /// A push failed (a worker's rules ring stayed full): resynchronise the
    /// same dataplane from the store, which already holds every change.
    Resync,
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
    /// A worker's provisional latch was lifted from every worker: `why`
    /// is `policy` (the kind is only recorded), `allowlisted`, `max_blocks`
    /// or `narrowed` (the block stored is narrower, to spare an
    /// allowlisted address).
    Lifted {
        /// The prefix latched.
        net: [u8; 16],
        /// Its length.
        len: u8,
        /// Why.
        why: &'static str,
    },
    /// Every worker acknowledged a generation.
    Applied(u64),
    /// Records read from the rings of a dataplane that stopped or was
    /// replaced, after it went.
    Drained(usize),
    /// A worker's ring index broke the protocol (written by something that
    /// is not a baitwall dataplane following it): the session starts over.
    RingFault {
        /// The worker.
        worker: usize,
    },
    /// The dataplane instance stopped (it closed its region) or was
    /// replaced by a new one: the session with it is over.
    Detached {
        /// The instance id.
        instance: u64,
    },
}

fn now_s() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How long a `decoys` question may wait for the dataplane's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A `decoys` question on its way through the dataplane.
struct PendingQuery {
    id: u32,
    reply: SyncSender<String>,
    answers: Vec<PersonaAnswer>,
    deadline: Instant,
}

/// Everything the loop owns besides the rings.
struct State {
    config: ControlConfig,
    config_path: Option<PathBuf>,
    store: Store,
    stop: Arc<AtomicBool>,
    started: Instant,
    start_unix_s: u64,
    eve: Option<EveLog>,
    subscribers: Arc<Subscribers>,
    metrics: Arc<MetricsSource>,
    reopen: Arc<AtomicBool>,
    /// Allow entries in force (stored and policy), refreshed on change.
    allowed: Vec<Net>,
    queries: Vec<PendingQuery>,
    next_query: u32,
    refused: u64,
    /// The last bite's block was refused for `max_blocks`.
    refused_last: bool,
    /// Provisional latches lifted.
    lifted: u64,
    /// Not before: a session ended on a ring fault waits a second before
    /// it attaches again (answering requests meanwhile).
    attach_after: Option<Instant>,
    last_stats: Instant,
    last_figures: Instant,
    /// A push failed: the session resynchronises the workers at the end
    /// of this round.
    resync: bool,
    /// The firewall sets kept in sync with the blocks.
    exports: Exports,
}

/// The dataplane, when attached.
struct Attached<'a> {
    ends: &'a mut Vec<Downlink>,
    region: &'a Arc<Region>,
}

/// Runs until `stop` is set; `notice` hears what happens.
pub fn run(
    settings: &Settings,
    stop: &Arc<AtomicBool>,
    mut notice: impl FnMut(Notice),
) -> anyhow::Result<()> {
    let config = &settings.config;
    let store = Store::open(&config.database)
        .with_context(|| format!("opening {}", config.database.display()))?;
    let subscribers = Arc::new(Subscribers::default());
    let metrics = Arc::new(MetricsSource::default());
    let (tx, commands) = std::sync::mpsc::sync_channel::<Command>(64);
    let mut threads = vec![store.checkpoint_elsewhere(stop.clone())?];
    if !config.socket.path.as_os_str().is_empty() {
        let s = &config.socket;
        let socket = SocketSettings {
            path: s.path.clone(),
            max_clients: s.max_clients,
            idle_timeout: s.idle_timeout,
            mode: s.mode_bits(),
            group: s.group.clone(),
        };
        threads.push(
            crate::api::server::serve(socket, tx, subscribers.clone(), stop.clone())
                .with_context(|| format!("serving {}", s.path.display()))?,
        );
    }
    if let Some(listen) = config.metrics.listen {
        threads.push(
            crate::metrics::serve(listen, metrics.clone(), stop.clone())
                .with_context(|| format!("serving metrics on {listen}"))?,
        );
    }
    let eve = match &config.eve.path {
        Some(path) => Some(
            EveLog::open(path, config.eve.rotate_bytes, config.eve.keep)
                .with_context(|| format!("opening the event log {}", path.display()))?,
        ),
        None => None,
    };
    let reopen = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reopen.clone())?;
    // The stored allowlist and the policy's (stored just below): the
    // firewall's carve-outs are in place from the first reconcile.
    let mut allows = store.allows()?;
    allows.extend(config.policy.allowlist());
    let exports = Exports::start(config, &store.active_blocks(now_s())?, allows)
        .context("starting the nftables sync")?;
    let mut state = State {
        config: config.clone(),
        config_path: settings.config_path.clone(),
        store,
        stop: stop.clone(),
        started: Instant::now(),
        start_unix_s: u64::from(now_s()),
        eve,
        subscribers,
        metrics,
        reopen,
        allowed: Vec::new(),
        queries: Vec::new(),
        next_query: 1,
        refused: 0,
        refused_last: false,
        lifted: 0,
        attach_after: None,
        resync: false,
        last_stats: Instant::now(),
        last_figures: Instant::now() - Duration::from_secs(10),
        exports,
    };
    let result = (|| {
        // The policy's allowlist is stored (and so pushed) like any other.
        state.sync_policy_allows(None)?;
        while !stop.load(Ordering::Relaxed) {
            let Some(region) = wait_for_region(&mut state, stop, &commands)? else {
                break;
            };
            let end = session(&mut state, region, stop, &mut notice, &commands)?;
            if end == SessionEnd::Stopped {
                break;
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if let Some(log) = state.eve.as_mut() {
        log.flush();
    }
    result
}

fn not_found(what: &str, net: &Net) -> String {
    nok(&ApiError {
        code: Code::NotFound,
        message: format!("no {what} on {}", net_text(&net.0, net.1)),
    })
}

fn api(code: Code, message: impl Into<String>) -> String {
    nok(&ApiError {
        code,
        message: message.into(),
    })
}

impl State {
    /// Logs an event, hands it to subscribers; bites, sweeps, blocks and
    /// unblocks also go into the history.
    fn emit(&mut self, event: &Value, row: Option<EventRow<'_>>) -> anyhow::Result<()> {
        let line = event.to_string();
        if let Some(mut row) = row {
            row.eve = Some(&line);
            self.store.record(&row)?;
        }
        let event_type = event["event_type"].as_str().unwrap_or("");
        let log_it = event_type != "mark" || self.config.eve.marks == MarkLogging::Sampled;
        if log_it && let Some(log) = self.eve.as_mut() {
            log.write(event);
        }
        self.subscribers.publish(event_type, &line);
        Ok(())
    }

    fn emit_block(&mut self, b: &Block, change: &str) -> anyhow::Result<()> {
        self.exports.block(b);
        let e = eve::block(b, change, now_ns());
        self.emit(
            &e,
            Some(EventRow {
                time_ns: now_ns(),
                kind: "block",
                src: b.net,
                dst: [0; 16],
                src_port: 0,
                dst_port: 0,
                worker: 0,
                action: &b.reason,
                eve: None,
            }),
        )
    }

    fn emit_unblock(
        &mut self,
        net: &[u8; 16],
        len: u8,
        origin: u32,
        why: Unblock,
    ) -> anyhow::Result<()> {
        self.exports.unblock(net, len);
        let e = eve::unblock(net, len, origin, why, now_ns());
        self.emit(
            &e,
            Some(EventRow {
                time_ns: now_ns(),
                kind: "unblock",
                src: *net,
                dst: [0; 16],
                src_port: 0,
                dst_port: 0,
                worker: 0,
                action: why.as_str(),
                eve: None,
            }),
        )
    }

    fn refresh_allowed(&mut self) -> anyhow::Result<()> {
        self.allowed = self.store.allows()?;
        self.exports.allows(&self.allowed);
        Ok(())
    }

    /// Makes the stored policy allow entries match the policy: adds the new
    /// ones, removes the dropped ones, pushes both when attached.
    fn sync_policy_allows(&mut self, attached: Option<&mut Attached<'_>>) -> anyhow::Result<()> {
        let wanted = self.config.policy.allowlist();
        self.sync_allows("policy", &wanted, attached)
    }

    /// Makes the stored allow entries of `reason` equal to `wanted`.
    fn sync_allows(
        &mut self,
        reason: &str,
        wanted: &[Net],
        attached: Option<&mut Attached<'_>>,
    ) -> anyhow::Result<()> {
        let stored = self.store.allows_with_reason(reason)?;
        let mut rules = Vec::new();
        for &(net, len) in wanted.iter().filter(|n| !stored.contains(n)) {
            self.store.add_allow(&net, len, reason, now_s())?;
            rules.push(Rule::Allow {
                net,
                len,
                expiry: 0,
            });
        }
        let removed: Vec<Net> = stored
            .iter()
            .copied()
            .filter(|n| !wanted.contains(n))
            .collect();
        for &(net, len) in &removed {
            self.store.remove_allow(&net, len)?;
            rules.push(Rule::Disallow { net, len });
        }
        if !rules.is_empty() {
            let g = self.push_rules(attached, &rules)?;
            for (net, len) in removed {
                self.store.stamp_allow_removed(&net, len, g)?;
            }
        }
        self.refresh_allowed()
    }

    /// Takes a generation for `rules` (stored changes are stamped with it,
    /// attached or not, so a resync by generation finds them) and pushes
    /// them to every worker when attached. A push that fails is not the
    /// request's failure: the store holds the change, and the session
    /// resynchronises the workers from it.
    fn push_rules(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        rules: &[Rule],
    ) -> anyhow::Result<u64> {
        let g = self.store.next_generation()?;
        if let Some(a) = attached
            && send_all(a.ends, rules, g).is_err()
        {
            self.resync = true;
        }
        Ok(g)
    }

    /// Per-worker counters read from the region.
    fn worker_counters(region: &Region) -> (Vec<Option<counters::Cell>>, Vec<Vec<u64>>) {
        let cells = counters::parse_names(&region.stat_names());
        let workers = (0..region.geometry().workers)
            .map(|w| region.read_stats(w))
            .collect();
        (cells, workers)
    }

    fn stats_json(&self, attached: Option<&Attached<'_>>) -> anyhow::Result<Value> {
        let control = json!({
            "events_stored": self.store.event_count()?,
            "blocks": self.store.count_blocks()?,
            "ring_drops": attached.map(|a| a.ends.iter().map(|e| e.ends.events.dropped()).collect::<Vec<_>>()),
            "eve_lines": self.eve.as_ref().map(|l| l.lines),
            "eve_errors": self.eve.as_ref().map(|l| l.errors),
            "subscribers": self.subscribers.count(),
            "subscriber_drops": self.subscribers.dropped(),
            "blocks_refused": self.refused,
            "latches_lifted": self.lifted,
        });
        let Some(a) = attached else {
            return Ok(json!({"workers": 0, "total": null, "per_worker": [], "control": control}));
        };
        let (cells, workers) = Self::worker_counters(a.region);
        let total = counters::sum(&cells, &workers);
        Ok(json!({
            "workers": workers.len(),
            "total": counters::worker_json(&cells, &total),
            "per_worker": workers.iter().map(|w| counters::worker_json(&cells, w)).collect::<Vec<_>>(),
            "control": control,
        }))
    }

    /// Refreshes what the metrics endpoint reads (about once a second).
    fn refresh_figures(&mut self, attached: Option<&Attached<'_>>) -> anyhow::Result<()> {
        // At once when the dataplane comes or goes, else once a second.
        let changed = self.metrics.region.lock().is_some() != attached.is_some();
        if !changed && self.last_figures.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_figures = Instant::now();
        let figures = ControlFigures {
            start_time_s: self.start_unix_s,
            attached: attached.is_some(),
            blocks: self.store.count_blocks()?,
            allows: self.allowed.len() as u64,
            events_stored: self.store.event_count()?,
            eve_lines: self.eve.as_ref().map_or(0, |l| l.lines),
            eve_errors: self.eve.as_ref().map_or(0, |l| l.errors),
            subscribers: self.subscribers.count() as u64,
            subscriber_drops: self.subscribers.dropped(),
            ring_drops: attached
                .map(|a| a.ends.iter().map(|e| e.ends.events.dropped()).collect())
                .unwrap_or_default(),
            refused: self.refused,
            lifted: self.lifted,
            nft: self.exports.nft_status(),
        };
        *self.metrics.control.lock() = figures;
        *self.metrics.region.lock() = attached.map(|a| a.region.clone());
        Ok(())
    }

    /// Housekeeping every round: reopen the log on SIGHUP, the periodic
    /// stats event, flushing, metrics figures, overdue questions.
    fn housekeeping(&mut self, attached: Option<&Attached<'_>>) -> anyhow::Result<()> {
        if self.reopen.swap(false, Ordering::Relaxed)
            && let Some(log) = self.eve.as_mut()
        {
            log.reopen();
        }
        let every = self.config.eve.stats_interval;
        if !every.is_zero() && self.last_stats.elapsed() >= every {
            self.last_stats = Instant::now();
            let counters = self.stats_json(attached)?;
            let e = eve::stats(now_ns(), self.started.elapsed().as_secs(), counters);
            self.emit(&e, None)?;
        }
        for (target, report) in self.exports.reports() {
            let e = match report {
                Report::Failing(error) => eve::enforce(target, "failing", Some(&error), now_ns()),
                Report::Recovered => eve::enforce(target, "ok", None, now_ns()),
            };
            self.emit(&e, None)?;
        }
        if let Some(log) = self.eve.as_mut() {
            log.flush();
        }
        self.refresh_figures(attached)?;
        let now = Instant::now();
        self.queries.retain(|q| {
            if now < q.deadline {
                return true;
            }
            let _ = q.reply.send(api(
                Code::Unavailable,
                "the dataplane did not answer within 2 s",
            ));
            false
        });
        Ok(())
    }

    /// Answers every waiting request.
    fn answer_all(
        &mut self,
        commands: &Receiver<Command>,
        mut attached: Option<&mut Attached<'_>>,
    ) {
        while let Ok(cmd) = commands.try_recv() {
            self.answer_one(cmd, attached.as_deref_mut());
        }
    }

    /// Answers one request.
    fn answer_one(&mut self, cmd: Command, attached: Option<&mut Attached<'_>>) {
        if let Request::Decoys { address, count } = cmd.request {
            self.ask_dataplane(cmd.reply, address, count, attached);
            return;
        }
        let line = self
            .answer(&cmd.request, attached)
            .unwrap_or_else(|e| api(Code::Unavailable, format!("{e:#}")));
        let _ = cmd.reply.send(line);
    }

    /// Idles for at most `limit`, waking at once for a request (answered
    /// here): control's idle time is a wait on its request channel, never
    /// a sleep a request would have to sit out.
    fn idle(
        &mut self,
        commands: &Receiver<Command>,
        limit: Duration,
        attached: Option<&mut Attached<'_>>,
    ) {
        if let Ok(cmd) = commands.recv_timeout(limit) {
            self.answer_one(cmd, attached);
        }
    }

    /// Sends a `decoys` question to worker 0; the answer goes out when the
    /// dataplane's reply arrives (or times out).
    fn ask_dataplane(
        &mut self,
        reply: SyncSender<String>,
        address: Option<[u8; 16]>,
        count: u8,
        attached: Option<&mut Attached<'_>>,
    ) {
        let Some(ends) = attached.and_then(|a| a.ends.first_mut()) else {
            let _ = reply.send(api(
                Code::Unavailable,
                "no dataplane is attached: decoys are described by the running dataplane",
            ));
            return;
        };
        let id = self.next_query;
        self.next_query = self.next_query.wrapping_add(1).max(1);
        let rule = Rule::Query {
            id,
            addr: address.unwrap_or([0; 16]),
            count,
        };
        if let Err(e) = ends.send_rule(&rule) {
            let _ = reply.send(api(Code::Unavailable, format!("{e:#}")));
            return;
        }
        self.queries.push(PendingQuery {
            id,
            reply,
            answers: Vec::new(),
            deadline: Instant::now() + QUERY_TIMEOUT,
        });
    }

    /// Collects a dataplane answer; replies once the last one is in.
    fn on_answer(&mut self, a: PersonaAnswer) {
        let Some(i) = self.queries.iter().position(|q| q.id == a.id) else {
            return;
        };
        if let Some(q) = self.queries.get_mut(i) {
            if a.found {
                q.answers.push(a);
            }
            if !a.last {
                return;
            }
        }
        let q = self.queries.swap_remove(i);
        let list: Vec<Value> = q.answers.iter().map(decoy_json).collect();
        let _ = q.reply.send(ok(json!(list)));
    }

    fn answer(
        &mut self,
        request: &Request,
        attached: Option<&mut Attached<'_>>,
    ) -> anyhow::Result<String> {
        let store = &self.store;
        Ok(match request {
            Request::Hello | Request::Version => ok(json!({
                "program": env!("CARGO_PKG_VERSION"),
                "protocol": crate::api::protocol::PROTOCOL_VERSION,
            })),
            Request::Status => {
                let (cells, workers) = match attached.as_deref() {
                    Some(a) => Self::worker_counters(a.region),
                    None => (Vec::new(), Vec::new()),
                };
                let total = counters::worker_json(&cells, &counters::sum(&cells, &workers));
                let last_bite = store.last_bite()?.map(|(t, src, kind)| {
                    json!({"timestamp": eve::timestamp(t), "src_ip": eve::ip_text(&src), "kind": kind})
                });
                ok(json!({
                    "uptime_seconds": self.started.elapsed().as_secs(),
                    "attached": attached.is_some(),
                    "instance": attached.as_deref().map(|a| format!("{:016x}", a.region.instance_id())),
                    "workers": attached.as_deref().map(|a| a.ends.len()),
                    "port": attached.as_deref().map(|a| a.region.port()),
                    "generation": total.get("generation"),
                    "blocks": store.count_blocks()?,
                    "allows": self.allowed.len(),
                    "last_bite": last_bite,
                    "region": self.config.region,
                    "config_file": self.config_path,
                    "enforcement": self.exports.status(),
                }))
            }
            Request::Stats => ok(self.stats_json(attached.as_deref())?),
            Request::BlockList {
                covering,
                offset,
                limit,
                local,
                after,
            } => {
                let query = BlockQuery {
                    covering: *covering,
                    local: *local,
                    after: *after,
                    offset: *offset,
                    limit: *limit,
                };
                let list: Vec<_> = store
                    .list_blocks(&query, now_s())?
                    .into_iter()
                    .map(|b| {
                        json!({
                            "prefix": net_text(&b.net, b.len),
                            "expires": eve::seconds_text(b.expires),
                            "expires_unix": b.expires,
                            "reason": b.reason,
                            "origin": eve::origin_text(b.origin),
                        })
                    })
                    .collect();
                ok(json!(list))
            }
            Request::BlockAdd {
                target,
                duration,
                reason,
            } => {
                // Refused when an allow entry covers the block or lies
                // inside it: no block, and so no export to a firewall or a
                // router, ever covers an allowlisted address.
                if let Some(a) = self.allowed.iter().find(|a| overlap(a, target)) {
                    return Ok(api(
                        Code::Allowed,
                        format!(
                            "{} is covered by or covers the allow entry {}: block around it, or remove the allow entry first",
                            net_text(&target.0, target.1),
                            net_text(&a.0, a.1)
                        ),
                    ));
                }
                let block = Block::local(
                    target.0,
                    target.1,
                    duration.map_or(0, expiry),
                    reason.clone(),
                );
                let change = store.upsert_block(&block, now_s())?;
                let stored = store.block(&block.net, block.len)?.unwrap_or(block);
                let generation = self.push_rules(attached, &[block_rule(&stored)])?;
                self.store
                    .stamp_block(&stored.net, stored.len, generation)?;
                if change != Change::Unchanged {
                    self.emit_block(&stored, "manual")?;
                }
                ok(json!({
                    "prefix": net_text(&stored.net, stored.len),
                    "expires": eve::seconds_text(stored.expires),
                    "generation": generation,
                }))
            }
            Request::BlockRemove { target } => {
                let Some(old) = store.block(&target.0, target.1)? else {
                    return Ok(not_found("block", target));
                };
                if !store.remove_block(&target.0, target.1)? {
                    return Ok(not_found("block", target));
                }
                let rule = Rule::Unblock {
                    net: target.0,
                    len: target.1,
                };
                let generation = self.push_rules(attached, &[rule])?;
                self.store.stamp_removed(&target.0, target.1, generation)?;
                self.emit_unblock(&target.0, target.1, old.origin, Unblock::Removed)?;
                ok(json!({"removed": net_text(&target.0, target.1), "generation": generation}))
            }
            Request::PeerBlock {
                target,
                origin,
                expires,
                heard_ms,
            } => {
                let heard_ms = heard_ms.unwrap_or(now_ns() / 1_000_000);
                self.learn(attached, target, *origin, *expires, heard_ms)?
            }
            Request::PeerWithdraw { target } => {
                let Some(origin) = self.store.unlearn_block(&target.0, target.1)? else {
                    return Ok(match self.store.block(&target.0, target.1)? {
                        Some(_) => ok(
                            json!({"prefix": net_text(&target.0, target.1), "action": "kept_local"}),
                        ),
                        None => not_found("learned block", target),
                    });
                };
                let rule = Rule::Unblock {
                    net: target.0,
                    len: target.1,
                };
                let generation = self.push_rules(attached, &[rule])?;
                self.store.stamp_removed(&target.0, target.1, generation)?;
                self.emit_unblock(&target.0, target.1, origin, Unblock::Withdrawn)?;
                ok(
                    json!({"prefix": net_text(&target.0, target.1), "action": "removed", "generation": generation}),
                )
            }
            Request::PeerSweep { before_ms } => {
                let stale = self.store.take_stale_learned(*before_ms)?;
                let rules: Vec<Rule> = stale.iter().map(unblock_rule).collect();
                let generation = if rules.is_empty() {
                    None
                } else {
                    Some(self.push_rules(attached, &rules)?)
                };
                for b in &stale {
                    if let Some(g) = generation {
                        self.store.stamp_removed(&b.net, b.len, g)?;
                    }
                    self.emit_unblock(&b.net, b.len, b.origin, Unblock::Stale)?;
                }
                ok(
                    json!({"removed": stale.iter().map(|b| net_text(&b.net, b.len)).collect::<Vec<_>>()}),
                )
            }
            Request::AllowList => ok(json!(
                store
                    .allows()?
                    .iter()
                    .map(|(n, l)| net_text(n, *l))
                    .collect::<Vec<_>>()
            )),
            Request::AllowAdd { target, reason } => {
                store.add_allow(&target.0, target.1, reason, now_s())?;
                // Learned blocks it overlaps go (they would be refused now);
                // local ones stay, and the allow entry wins over them.
                let mut unlearned = Vec::new();
                for b in store.overlapping_blocks(target, now_s())? {
                    if !b.is_local()
                        && overlap(&(b.net, b.len), target)
                        && store.unlearn_block(&b.net, b.len)?.is_some()
                    {
                        unlearned.push(b);
                    }
                }
                let mut rules = vec![Rule::Allow {
                    net: target.0,
                    len: target.1,
                    expiry: 0,
                }];
                rules.extend(unlearned.iter().map(unblock_rule));
                let generation = self.push_rules(attached, &rules)?;
                for b in &unlearned {
                    self.store.stamp_removed(&b.net, b.len, generation)?;
                    self.emit_unblock(&b.net, b.len, b.origin, Unblock::Allowed)?;
                }
                self.refresh_allowed()?;
                ok(json!({"allowed": net_text(&target.0, target.1), "generation": generation}))
            }
            Request::AllowRemove { target } => {
                if !store.remove_allow(&target.0, target.1)? {
                    return Ok(not_found("allow entry", target));
                }
                let rule = Rule::Disallow {
                    net: target.0,
                    len: target.1,
                };
                let generation = self.push_rules(attached, &[rule])?;
                self.store
                    .stamp_allow_removed(&target.0, target.1, generation)?;
                self.refresh_allowed()?;
                ok(json!({"removed": net_text(&target.0, target.1), "generation": generation}))
            }
            Request::Hosts { limit } => ok(json!(
                store
                    .hosts(u32::try_from(*limit).unwrap_or(u32::MAX))?
                    .iter()
                    .map(|(a, p, first, last)| json!({
                        "host": eve::ip_text(a),
                        "port": p,
                        "first_seen": eve::timestamp(*first),
                        "last_seen": eve::timestamp(*last),
                    }))
                    .collect::<Vec<_>>()
            )),
            Request::Events {
                since_ns,
                limit,
                kind,
                source,
            } => ok(json!(store.events(
                *since_ns,
                *limit,
                kind.as_deref(),
                source.as_ref()
            )?)),
            Request::ConfigShow => ok(json!({
                "file": self.config_path,
                "config": serde_json::to_value(&self.config)?,
            })),
            Request::ConfigReload => self.reload(attached)?,
            Request::Shutdown => {
                self.stop.store(true, Ordering::Relaxed);
                ok(json!("shutting down"))
            }
            // Handled by the socket server and `answer_all`.
            Request::Subscribe { .. } | Request::Decoys { .. } => {
                api(Code::Unavailable, "not answered here")
            }
        })
    }

    /// A block another appliance announced: refused when it echoes our own,
    /// when the allowlist covers it, or when the store is full; a local
    /// block on the same prefix is left as it is.
    fn learn(
        &mut self,
        attached: Option<&mut Attached<'_>>,
        target: &Net,
        origin: u32,
        expires: u32,
        heard_ms: u64,
    ) -> anyhow::Result<String> {
        let prefix = net_text(&target.0, target.1);
        let Some(bgp) = &self.config.bgp else {
            return Ok(api(
                Code::NotConfigured,
                "this control has no [bgp] section: it learns no blocks",
            ));
        };
        if !bgp.learn {
            return Ok(api(Code::NotConfigured, "[bgp] learn is off"));
        }
        if origin == bgp.appliance_id {
            return Ok(api(
                Code::OwnOrigin,
                format!(
                    "{prefix} is this appliance's own block (origin {origin}): an echo changes nothing"
                ),
            ));
        }
        // Refused when an allow entry covers the block, or lies inside it.
        if let Some(a) = self.allowed.iter().find(|a| overlap(a, target)) {
            return Ok(api(
                Code::Allowed,
                format!(
                    "{prefix} is covered by or covers the allow entry {}",
                    net_text(&a.0, a.1)
                ),
            ));
        }
        if expires != 0 && expires <= now_s() {
            return Ok(api(Code::OutOfRange, format!("{prefix} expired already")));
        }
        let block = Block {
            origin,
            ..Block::local(target.0, target.1, expires, "peer")
        };
        if self.store.block(&block.net, block.len)?.is_none()
            && self.store.count_blocks()? >= self.config.policy.max_blocks
        {
            self.refused += 1;
            return Ok(api(
                Code::Full,
                format!("{prefix}: the store holds policy.max_blocks blocks already"),
            ));
        }
        let action = match self.store.learn_block(&block, heard_ms)? {
            Learned::KeptLocal => "kept_local",
            Learned::Unchanged => "unchanged",
            change => {
                let stored = self.store.block(&block.net, block.len)?.unwrap_or(block);
                let generation = self.push_rules(attached, &[block_rule(&stored)])?;
                self.store
                    .stamp_block(&stored.net, stored.len, generation)?;
                let new = change == Learned::New;
                self.emit_block(&stored, if new { "learned" } else { "relearned" })?;
                if new { "added" } else { "updated" }
            }
        };
        Ok(ok(
            json!({"prefix": prefix, "action": action, "origin": origin}),
        ))
    }

    /// Re-reads the configuration file: on any error nothing changes; else
    /// the policy, allowlist and event log settings apply now, and fields
    /// that need a restart are named (and left as they are).
    fn reload(&mut self, attached: Option<&mut Attached<'_>>) -> anyhow::Result<String> {
        let Some(path) = self.config_path.clone() else {
            return Ok(api(
                Code::NotConfigured,
                "control was started without --config: there is no file to reload",
            ));
        };
        let new = match ControlConfig::load(&path) {
            Ok(c) => c,
            Err(e) => return Ok(api(Code::InvalidConfig, format!("{e:#}; nothing changed"))),
        };
        // Open a new log before anything changes, so a bad path changes nothing.
        let new_log = match (
            &new.eve.path,
            self.eve.as_ref().map(|l| l.path().to_owned()),
        ) {
            (Some(p), Some(old)) if *p == old => None,
            (Some(p), _) => match EveLog::open(p, new.eve.rotate_bytes, new.eve.keep) {
                Ok(log) => Some(Some(log)),
                Err(e) => {
                    return Ok(api(
                        Code::InvalidConfig,
                        format!("eve.path {}: {e}; nothing changed", p.display()),
                    ));
                }
            },
            (None, Some(_)) => Some(None),
            (None, None) => None,
        };
        let restart = self.config.restart_fields(&new);
        let mut applied = Vec::new();
        if new.policy != self.config.policy {
            applied.push("policy");
        }
        if new.eve != self.config.eve {
            applied.push("eve");
        }
        let old = std::mem::replace(&mut self.config, new);
        // What needs a restart stays as it is, so config-show says what is in force.
        self.config.region = old.region;
        self.config.database = old.database;
        self.config.socket = old.socket;
        self.config.metrics = old.metrics;
        if let Some(log) = new_log {
            self.eve = log;
        }
        if let Some(log) = self.eve.as_mut() {
            log.set_rotation(self.config.eve.rotate_bytes, self.config.eve.keep);
        }
        self.sync_policy_allows(attached)?;
        Ok(ok(json!({"applied": applied, "restart_required": restart})))
    }
}

/// A dataplane answer as the `decoys` reply shows it.
fn decoy_json(a: &PersonaAnswer) -> Value {
    let mac = a.mac.map(|b| format!("{b:02x}")).join(":");
    json!({
        "address": eve::ip_text(&a.addr),
        "state": code::darkness_name(a.darkness),
        "persona": code::persona_name(a.family),
        "mac": mac,
        "ttl": a.ttl,
        "window": a.window,
        "mss": a.mss,
        "dont_fragment": a.dont_frag,
        "open_ports": a.open_ports().collect::<Vec<_>>(),
    })
}

/// Waits until the region exists and is ready (the dataplane may start later).
fn wait_for_region(
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
fn unblock_rule(b: &Block) -> Rule {
    Rule::Unblock {
        net: b.net,
        len: b.len,
    }
}

fn block_rule(b: &Block) -> Rule {
    Rule::Block {
        net: b.net,
        len: b.len,
        expiry: b.expires,
    }
}

/// Hosts seen alive within this long (seconds) are restored to a new
/// dataplane, at most [`LIVE_RESTORE_MAX`] of them, the most recent first.
const LIVE_RESTORE_S: u32 = 24 * 3600;
const LIVE_RESTORE_MAX: u32 = 65_536;

/// Resynchronises a freshly attached dataplane: the stored state first,
/// before any new decision. If this is the instance the last session
/// served and every worker says which generation it has in force, only
/// what changed since is sent; otherwise everything.
fn resync(
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

/// Handles a bite: history, log, policy, maybe a block (stored, logged,
/// queued for every worker in `pending` under this round's generation).
///
/// A bite the worker latched is provisional on the workers
/// (`[deception] provisional_latch`); control answers every one in the same
/// round: the stored block confirms it (its expiry or permanence replaces
/// the provisional one), or the latched prefix is lifted (the policy only
/// records this kind, the source is allowlisted, the store is full, or the
/// block was narrowed to keep an allowlisted address out of it).
fn on_bite(
    state: &mut State,
    ev: &UpEvent,
    pending: &mut Vec<Rule>,
    batch: &mut Option<u64>,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<()> {
    if let Some(e) = eve::from_up(ev) {
        state.emit(
            &e,
            Some(EventRow {
                time_ns: ev.time_ns,
                kind: code::bite_name(ev.bite),
                src: ev.src,
                dst: ev.dst,
                src_port: ev.src_port,
                dst_port: ev.dst_port,
                worker: ev.worker,
                action: code::action_name(ev.action),
                eve: None,
            }),
        )?;
    }
    let latched = (ev.action == code::ACTION_BLOCK).then(|| Policy::latched_net(ev));
    let confirmed = confirm(state, ev, pending, batch, notice)?;
    if let Some(net) = latched
        && confirmed != Some(net)
    {
        let why = match confirmed {
            Some(_) => "narrowed",
            None if state.allowed.iter().any(|n| covers(n, &ev.src)) => "allowlisted",
            None if state.refused_last => "max_blocks",
            None => "policy",
        };
        lift(state, net, why, pending, batch, notice)?;
    }
    Ok(())
}

/// The block the policy makes of a bite, stored and queued; its prefix, or
/// `None` when the bite blocks nothing.
fn confirm(
    state: &mut State,
    ev: &UpEvent,
    pending: &mut Vec<Rule>,
    batch: &mut Option<u64>,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<Option<Net>> {
    state.refused_last = false;
    let policy = &state.config.policy;
    let (net, len) = Policy::latched_net(ev);
    let times = state.store.times_blocked(&net, len)?;
    let decision = if state.allowed.iter().any(|n| covers(n, &ev.src)) {
        Decision::Allowed
    } else {
        policy.decide(ev, times)
    };
    let Decision::Block { mut net, r#for } = decision else {
        return Ok(None);
    };
    // A block never covers an allowlisted address (nor does any export of
    // it): a widened block (an IPv6 /64) that would is narrowed to the
    // biter itself. The dataplane's own latch already lets the allowlist
    // through (allow wins inside a block).
    if net.1 < 128 && state.allowed.iter().any(|a| overlap(a, &net)) {
        net = (ev.src, 128);
    }
    let block = Block::local(net.0, net.1, expiry(r#for), code::bite_name(ev.bite));
    if times == 0 && state.store.count_blocks()? >= policy.max_blocks {
        state.refused += 1;
        state.refused_last = true;
        notice(Notice::Refused(block));
        return Ok(None);
    }
    let change = state.store.upsert_block(&block, now_s())?;
    if change == Change::Unchanged && ev.action != code::ACTION_BLOCK {
        return Ok(Some(net));
    }
    // Pushed even when the store did not change, if a worker latched: its
    // provisional expiry is replaced by the stored one.
    let g = match *batch {
        Some(g) => g,
        None => *batch.insert(state.store.next_generation()?),
    };
    if change != Change::Unchanged {
        state.store.stamp_block(&block.net, block.len, g)?;
    }
    let stored = state.store.block(&block.net, block.len)?.unwrap_or(block);
    pending.push(block_rule(&stored));
    if change != Change::Unchanged {
        state.emit_block(
            &stored,
            match change {
                Change::New => "new",
                _ => "extended",
            },
        )?;
        notice(Notice::Blocked {
            block: stored,
            change,
        });
    }
    Ok(Some(net))
}

/// Lifts a worker's provisional latch of `net` from every worker, unless
/// the store holds a block of exactly that prefix (then that is restored).
fn lift(
    state: &mut State,
    net: Net,
    why: &'static str,
    pending: &mut Vec<Rule>,
    batch: &mut Option<u64>,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<()> {
    if batch.is_none() {
        *batch = Some(state.store.next_generation()?);
    }
    match state.store.block(&net.0, net.1)? {
        Some(stored) if stored.expires == 0 || stored.expires > now_s() => {
            pending.push(block_rule(&stored));
        }
        _ => {
            pending.push(Rule::Unblock {
                net: net.0,
                len: net.1,
            });
            state.lifted += 1;
            notice(Notice::Lifted {
                net: net.0,
                len: net.1,
                why,
            });
        }
    }
    Ok(())
}

/// Handles one record of a worker's events ring.
fn on_record(
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
fn drain(
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

fn session(
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
    resync(state, &region, &mut ends, notice)?;
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
            let expired = state.store.take_expired(now_s())?;
            if !expired.is_empty() {
                let rules: Vec<Rule> = expired.iter().map(unblock_rule).collect();
                let generation = state.store.next_generation()?;
                for b in &expired {
                    state.store.stamp_removed(&b.net, b.len, generation)?;
                    state.emit_unblock(&b.net, b.len, b.origin, Unblock::Expired)?;
                }
                notice(Notice::Expired(expired.len()));
                if send_all(&mut ends, &rules, generation).is_err() {
                    return Ok(SessionEnd::Resync);
                }
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

/// An absolute expiry `for` from now (0: permanent).
fn expiry(r#for: Duration) -> u32 {
    if r#for.is_zero() {
        0
    } else {
        now_s().saturating_add(u32::try_from(r#for.as_secs()).unwrap_or(u32::MAX))
    }
}
