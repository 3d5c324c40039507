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

mod bites;
mod expiry;
mod requests;
mod session;

use bites::{expires_after, on_bite};
use session::{block_rule, session, unblock_rule, wait_for_region};

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
    let mut state = State::new(
        settings,
        store,
        stop,
        eve,
        subscribers,
        metrics,
        reopen,
        exports,
    );
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

fn api(code: Code, message: impl Into<String>) -> String {
    nok(&ApiError {
        code,
        message: message.into(),
    })
}

impl State {
    /// Control's state over `store`, before any dataplane.
    #[allow(clippy::too_many_arguments)]
    fn new(
        settings: &Settings,
        store: Store,
        stop: &Arc<AtomicBool>,
        eve: Option<EveLog>,
        subscribers: Arc<Subscribers>,
        metrics: Arc<MetricsSource>,
        reopen: Arc<AtomicBool>,
        exports: Exports,
    ) -> State {
        State {
            config: settings.config.clone(),
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
        }
    }

    /// A state for the tests of this module's parts: a store in `dir`, no
    /// socket, no log, no firewall.
    #[cfg(test)]
    #[allow(clippy::panic)] // a test fixture: failing is its job
    fn for_test(dir: &std::path::Path, policy: crate::policy::Policy) -> State {
        let config = ControlConfig {
            region: dir.join("bw.region"),
            database: dir.join("state.db"),
            policy,
            ..ControlConfig::default()
        };
        let store = Store::open(&config.database).unwrap_or_else(|e| panic!("{e}"));
        let exports = Exports::start(&config, &[], Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let mut state = State::new(
            &Settings::new(config),
            store,
            &Arc::new(AtomicBool::new(false)),
            None,
            Arc::default(),
            Arc::default(),
            Arc::default(),
            exports,
        );
        // As `run` does: the policy's allowlist stored and in force.
        state
            .sync_policy_allows(None)
            .unwrap_or_else(|e| panic!("{e}"));
        state
    }

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
}
