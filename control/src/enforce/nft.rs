//! Keeps the nftables sets equal to the block state, from a thread of its
//! own: the control loop hands it each change and never waits on `nft`.
//!
//! At start, then every `reconcile_interval`, and after any failure, the
//! thread creates the table and sets (idempotent), lists the sets and runs
//! the batch that makes them equal to the blocks ([`Planner::reconcile`]).
//! The allow sets follow the allowlist the same way, through a planner of
//! their own, and always change before the block sets, so a broader block
//! never lands before the carve-out for an allowed address inside it.
//! Between reconciles each change becomes a small batch of its own. A run
//! that fails or stalls past `timeout` is killed, reported (status and one
//! EVE `enforce` event per change of state) and retried with a backoff
//! from 1 s to 30 s; no change is dropped, because the retry is a full
//! reconcile against the blocks as they are then.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};

use super::nft_plan::{Batch, Listed, Planner, SETS, Sets, create, parse_listing};
use crate::config::NftSection;
use crate::policy::Net;

/// Elements per `nft` run. Every run of nft 1.0.6 first reads the whole
/// interval set into its cache (about 0.7 s for 100k elements here), so
/// runs are few and large: a first load of a million blocks goes in five.
const CHUNK: usize = 200_000;

/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the sync thread is told.
enum Msg {
    /// A block is in force until the given Unix second (0: permanent).
    Set(Net, u32),
    /// A block ended.
    Remove(Net),
    /// The allowlist, whole.
    Allows(Vec<Net>),
}

/// How the sync is doing (the `status` request's `enforcement.nftables`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NftStatus {
    /// `starting`, `ok` or `failing`.
    pub state: &'static str,
    /// Blocks that should be in the sets.
    pub blocks: usize,
    /// Elements the sets hold as far as known (covered blocks are left out).
    pub elements: Option<usize>,
    /// Entries the allow sets hold as far as known (`None` without them).
    pub allowed: Option<usize>,
    /// Successful `nft` runs.
    pub runs: u64,
    /// Failed ones.
    pub failures: u64,
    /// Full reconciles done.
    pub reconciles: u64,
    /// Unix seconds of the last success.
    pub last_ok: u64,
    /// The last failure, if the sync is failing.
    pub last_error: Option<String>,
}

/// A change of state worth an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A run failed (and will be retried).
    Failing(String),
    /// Runs succeed again.
    Recovered,
}

/// The handle the control loop holds.
pub struct NftSync {
    tx: Option<Sender<Msg>>,
    status: Arc<Mutex<NftStatus>>,
    reports: Receiver<Report>,
    thread: Option<JoinHandle<()>>,
}

fn now_s() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

impl NftSync {
    /// Starts the thread with the blocks in force now (prefix, expiry) and
    /// the allowlist.
    pub fn start(
        config: NftSection,
        blocks: Vec<(Net, u32)>,
        allows: Vec<Net>,
    ) -> std::io::Result<NftSync> {
        let (tx, rx) = channel();
        let (report_tx, reports) = channel();
        let status = Arc::new(Mutex::new(NftStatus {
            state: "starting",
            ..NftStatus::default()
        }));
        let mut planner = Planner::new(config.split_hosts());
        for (net, expires) in blocks {
            planner.set(net, expires);
        }
        let shared = status.clone();
        let thread = std::thread::Builder::new()
            .name("bw-nft".into())
            .spawn(move || {
                let mut worker = Worker::new(config, planner, shared, report_tx);
                worker.apply(Msg::Allows(allows));
                worker.run(&rx);
            })?;
        Ok(NftSync {
            tx: Some(tx),
            status,
            reports,
            thread: Some(thread),
        })
    }

    /// A block is in force until `expires` (0: permanent).
    pub fn set(&self, net: Net, expires: u32) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Set(net, expires));
        }
    }

    /// A block ended.
    pub fn remove(&self, net: Net) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Remove(net));
        }
    }

    /// The allowlist changed: these are its entries now.
    pub fn allows(&self, allows: Vec<Net>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Allows(allows));
        }
    }

    /// How the sync is doing.
    pub fn status(&self) -> NftStatus {
        self.status.lock().clone()
    }

    /// Changes of state since the last call.
    pub fn reports(&self) -> Vec<Report> {
        self.reports.try_iter().collect()
    }
}

impl Drop for NftSync {
    fn drop(&mut self) {
        // The sets keep their elements (and timeouts) when control stops:
        // the firewall goes on enforcing.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sync thread's state.
struct Worker {
    config: NftSection,
    sets: Sets,
    planner: Planner,
    /// The allow sets and their planner, when configured.
    allow: Option<(Sets, Planner)>,
    /// The allowlist as last told.
    allowed: BTreeSet<Net>,
    status: Arc<Mutex<NftStatus>>,
    reports: Sender<Report>,
    failing: bool,
    backoff: Duration,
    /// When the next full reconcile is due.
    reconcile_at: Instant,
    /// How long the last listing of both sets took: every nft run rereads
    /// the sets, so a run's time limit grows with them.
    listing: Duration,
}

impl Worker {
    fn new(
        config: NftSection,
        planner: Planner,
        status: Arc<Mutex<NftStatus>>,
        reports: Sender<Report>,
    ) -> Worker {
        let sets = Sets {
            family: config.family.clone(),
            table: config.table.clone(),
            set4: config.set4.clone(),
            set6: config.set6.clone(),
            hosts4: config.hosts4.clone(),
            hosts6: config.hosts6.clone(),
            allow4: config.allow_names().0,
            allow6: config.allow_names().1,
        };
        let allow = sets.allow_sets().map(|s| (s, Planner::new(false)));
        Worker {
            config,
            sets,
            planner,
            allow,
            allowed: BTreeSet::new(),
            status,
            reports,
            failing: false,
            backoff: Duration::from_secs(1),
            reconcile_at: Instant::now(),
            listing: Duration::ZERO,
        }
    }

    /// The time limit of one run: the configured one, plus twice what
    /// reading the sets took last time (a big set is slow, not stalled).
    fn limit(&self) -> Duration {
        self.config.timeout + self.listing * 2
    }

    fn run(mut self, rx: &Receiver<Msg>) {
        loop {
            let wait = self.reconcile_at.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    self.apply(m);
                    // Take every change already queued into one batch.
                    while let Ok(m) = rx.try_recv() {
                        self.apply(m);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let known = self.planner.knows_installed()
                && self.allow.as_ref().is_none_or(|(_, p)| p.knows_installed());
            let dirty =
                self.planner.has_dirty() || self.allow.as_ref().is_some_and(|(_, p)| p.has_dirty());
            let result = if Instant::now() >= self.reconcile_at || !known {
                if Instant::now() < self.reconcile_at {
                    // Failing: wait for the retry time.
                    continue;
                }
                self.reconcile()
            } else if dirty {
                self.changes()
            } else {
                continue;
            };
            self.finish(result);
        }
    }

    fn apply(&mut self, m: Msg) {
        match m {
            Msg::Set(net, expires) => self.planner.set(net, expires),
            Msg::Remove(net) => self.planner.remove(net),
            Msg::Allows(nets) => {
                let now: BTreeSet<Net> = nets.into_iter().collect();
                if let Some((_, p)) = &mut self.allow {
                    for net in now.difference(&self.allowed) {
                        p.set(*net, 0);
                    }
                    for net in self.allowed.difference(&now) {
                        p.remove(*net);
                    }
                }
                self.allowed = now;
            }
        }
    }

    /// Forgets what the sets hold: the next run is a full reconcile.
    fn forget_installed(&mut self) {
        self.planner.forget_installed();
        if let Some((_, p)) = &mut self.allow {
            p.forget_installed();
        }
    }

    /// Lists `sets`' configured sets (in [`Sets::names`]' order).
    fn list(&self, sets: &Sets) -> Result<[Vec<Listed>; SETS], String> {
        let mut listed: [Vec<_>; SETS] = Default::default();
        for (i, set) in sets.names().into_iter().enumerate() {
            if set.is_empty() {
                continue;
            }
            let args = ["-j", "list", "set", &sets.family, &sets.table, set];
            let out = run(&self.config.command, &args, None, self.limit())?;
            listed[i] = parse_listing(&out).map_err(|e| format!("listing set {set}: {e}"))?;
        }
        Ok(listed)
    }

    /// Creates what is missing, lists the sets and makes them equal.
    fn reconcile(&mut self) -> Result<(), String> {
        self.forget_installed();
        if self.config.create {
            let chain = (!self.config.chain.is_empty()).then_some((
                self.config.chain.as_str(),
                self.config.hook.as_str(),
                self.config.priority,
            ));
            self.nft_batch(create(&self.sets, chain))?;
        }
        let listed_at = now_s();
        let started = Instant::now();
        let allow_listed = match &self.allow {
            Some((sets, _)) => Some(self.list(sets)?),
            None => None,
        };
        let listed = self.list(&self.sets)?;
        self.listing = started.elapsed();
        if let (Some((_, planner)), Some([a4, a6, _, _])) = (&mut self.allow, &allow_listed) {
            let batch = planner.reconcile([a4, a6, &[], &[]], listed_at, now_s());
            self.apply_allow_batch(&batch)?;
        }
        let [l4, l6, h4, h6] = &listed;
        let batch = self.planner.reconcile([l4, l6, h4, h6], listed_at, now_s());
        self.apply_batch(&batch, &self.sets)?;
        self.status.lock().reconciles += 1;
        self.reconcile_at = Instant::now() + self.config.reconcile_interval;
        Ok(())
    }

    /// The batches for the changes since the last ones: the allow sets'
    /// first.
    fn changes(&mut self) -> Result<(), String> {
        if let Some((_, planner)) = &mut self.allow {
            let Some(batch) = planner.plan_changes(now_s()) else {
                return self.reconcile();
            };
            self.apply_allow_batch(&batch)?;
        }
        match self.planner.plan_changes(now_s()) {
            Some(batch) => self.apply_batch(&batch, &self.sets),
            None => self.reconcile(),
        }
    }

    fn apply_allow_batch(&self, batch: &Batch) -> Result<(), String> {
        match &self.allow {
            Some((sets, _)) => self.apply_batch(batch, sets),
            None => Ok(()),
        }
    }

    fn apply_batch(&self, batch: &Batch, sets: &Sets) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        for part in batch.chunks(CHUNK) {
            self.nft_batch(part.commands(sets))?;
        }
        Ok(())
    }

    fn nft_batch(&self, commands: Vec<Value>) -> Result<(), String> {
        let doc = json!({"nftables": commands}).to_string();
        run(
            &self.config.command,
            &["-j", "-f", "-"],
            Some(&doc),
            self.limit(),
        )
        .map(drop)
    }

    fn finish(&mut self, result: Result<(), String>) {
        let mut s = self.status.lock();
        s.blocks = self.planner.desired_len();
        match result {
            Ok(()) => {
                s.runs += 1;
                s.state = "ok";
                s.last_ok = u64::from(now_s());
                s.last_error = None;
                s.elements = self.planner.installed_len();
                s.allowed = self.allow.as_ref().and_then(|(_, p)| p.installed_len());
                self.backoff = Duration::from_secs(1);
                if self.failing {
                    self.failing = false;
                    let _ = self.reports.send(Report::Recovered);
                }
            }
            Err(e) => {
                s.failures += 1;
                s.state = "failing";
                s.last_error = Some(e.clone());
                s.elements = None;
                s.allowed = None;
                // (Field by field: `s` borrows the status.)
                self.planner.forget_installed();
                if let Some((_, p)) = &mut self.allow {
                    p.forget_installed();
                }
                self.reconcile_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                if !self.failing {
                    self.failing = true;
                    let _ = self.reports.send(Report::Failing(e));
                }
            }
        }
    }
}

/// Runs `command args`, feeding `stdin`; its stdout, or why it failed (its
/// stderr, exit status, or the timeout after which it was killed).
///
/// The command runs in a process group of its own, and a timeout kills the
/// whole group (an `ssh` and what it started, not only the first process).
/// Its output is read by threads that hand it over through channels, so a
/// descendant that escaped the group and holds a pipe open cannot keep this
/// call waiting past the timeout either.
pub fn run(
    command: &[String],
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let Some((program, prefix)) = command.split_first() else {
        return Err("no nft command configured".into());
    };
    let shown = || format!("{} {}", command.join(" "), args.join(" "));
    let mut child = Command::new(program)
        .args(prefix)
        .args(args)
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", shown()))?;
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let kill_group = || {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    };
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut text);
            }
            let _ = tx.send(text);
        });
        rx
    };
    let out = pipe(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let err = pipe(
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    );
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        // A firewall that stops reading is caught by the timeout below.
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = input.write_all(text.as_bytes());
        });
    }
    let deadline = Instant::now() + timeout;
    let killed = || format!("{} did not finish within {timeout:?}: killed", shown());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                kill_group();
                let _ = child.wait();
                return Err(killed());
            }
            Err(e) => {
                kill_group();
                return Err(format!("waiting for {}: {e}", shown()));
            }
        }
    };
    // What is left of the group (a child nft left behind) goes too; the
    // pipes then close, or the wait below gives up at the deadline.
    kill_group();
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100))
    };
    let stdout = out.recv_timeout(left()).map_err(|_| killed())?;
    let stderr = err.recv_timeout(left()).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let why = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        Err(format!("{} failed ({status}): {why}", shown()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_failing_or_stalling_command_is_an_error_that_says_why() {
        let sh = |script: &str| {
            vec![
                "sh".to_string(),
                "-c".to_string(),
                script.to_string(),
                "nft".to_string(),
            ]
        };
        assert_eq!(
            run(&sh("cat"), &[], Some("{\"x\": 1}"), Duration::from_secs(5)).unwrap(),
            "{\"x\": 1}"
        );
        let e = run(
            &sh("echo 'Error: No such file' >&2; exit 1"),
            &["-j"],
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(
            e.contains("No such file") && e.contains("exit status: 1"),
            "{e}"
        );
        let e = run(&sh("sleep 5"), &[], None, Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("did not finish") && e.contains("killed"), "{e}");
        // A descendant holding the pipes open is killed with the group
        // (so the call does not wait the 30 s for it).
        let marker = format!("30.{}", std::process::id());
        let e = run(
            &sh(&format!("(sleep {marker} &); exit 1")),
            &[],
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.contains("exit status: 1"), "{e}");
        let alive = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|p| std::fs::read(p.ok()?.path().join("cmdline")).ok())
            .any(|cmd| String::from_utf8_lossy(&cmd).contains(&marker));
        assert!(!alive, "the backgrounded sleep outlived the group kill");
        let e = run(
            &["/nonexistent/nft".to_string()],
            &[],
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }
}
