//! `baitwallctl exabgp`: the bridge between ExaBGP's process API (stdin
//! and stdout) and control's socket.
//!
//! Two threads share one [`Bridge`]:
//! - the main thread reads ExaBGP's lines; learned and withdrawn blocks go
//!   to the control thread as `peer-*` requests, and a session that comes
//!   back gets every announcement again;
//! - the control thread subscribes to control's `block` and `unblock`
//!   events and turns them into announcements, compares the announcements
//!   with control's local blocks at each (re)connection and every
//!   `resync_interval` (a subscriber that falls behind misses events),
//!   replays everything learned when control comes back (then sweeps what
//!   it no longer has), sends the requests, and sweeps stale learned blocks
//!   once a session has been up for `sweep_after`.
//!
//! When control is down the announcements stay as they are (ExaBGP keeps
//! them) and learned blocks wait in the bridge; when ExaBGP goes away (its
//! pipe closes) the bridge exits, and the ExaBGP that starts next runs a
//! new one, which announces everything from control.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{Bridge, BridgeConfig, Heard, peer_block, peer_sweep, peer_withdraw};
use crate::config::ControlConfig;
use crate::policy::{Net, parse_net};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes commands to ExaBGP, one per line; exits when ExaBGP is gone.
/// Called with the bridge locked: the bridge's state and what ExaBGP was
/// told change together, so a withdrawal cannot overtake the announcement
/// it cancels (one writer at a time, in the bridge's order).
fn say(lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            std::process::exit(0);
        }
    }
    if out.flush().is_err() {
        std::process::exit(0);
    }
}

/// Runs the bridge with control's configuration file.
pub fn main(config_path: &Path) -> ExitCode {
    let config = match ControlConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("baitwallctl exabgp: {e:#}");
            return ExitCode::from(2);
        }
    };
    let Some(bgp) = &config.bgp else {
        eprintln!(
            "baitwallctl exabgp: {} has no [bgp] section (appliance_id and asn are needed)",
            config_path.display()
        );
        return ExitCode::from(2);
    };
    let bridge = Arc::new(Mutex::new(Bridge::new(BridgeConfig::from(bgp))));
    let (tx, rx) = channel::<Value>();
    let socket = config.socket.path.clone();
    let resync = bgp.resync_interval;
    {
        let bridge = bridge.clone();
        let spawned = std::thread::Builder::new()
            .name("bw-exabgp-control".into())
            .spawn(move || control_link(&socket, &bridge, &rx, resync));
        if let Err(e) = spawned {
            eprintln!("baitwallctl exabgp: {e}");
            return ExitCode::from(2);
        }
    }
    eprintln!(
        "baitwallctl exabgp: appliance {} in AS {}, control at {}",
        bgp.appliance_id,
        bgp.asn,
        config.socket.path.display()
    );
    let mut refused = 0u64;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let now = now_ms();
        let mut b = bridge.lock();
        match b.hear(&line, now) {
            Ok(Heard::Routes {
                learned,
                withdrawn,
                echoes,
            }) => {
                drop(b);
                for net in echoes {
                    eprintln!(
                        "baitwallctl exabgp: ignored {}: this appliance's own block, come back (an echo)",
                        crate::eve::net_text(&net.0, net.1)
                    );
                }
                for net in withdrawn {
                    let _ = tx.send(peer_withdraw(&net));
                }
                for (net, origin, expires) in learned {
                    let _ = tx.send(peer_block(&net, origin, expires, now));
                }
            }
            Ok(Heard::Up) => {
                let lines = b.announce_all();
                say(&lines);
                drop(b);
                eprintln!(
                    "baitwallctl exabgp: session up; announced {} commands again",
                    lines.len()
                );
            }
            Ok(Heard::Down) => eprintln!("baitwallctl exabgp: session down"),
            Ok(Heard::Ack(false)) => {
                refused += 1;
                eprintln!("baitwallctl exabgp: ExaBGP refused a command ({refused} so far)");
            }
            Ok(Heard::Ack(true) | Heard::Nothing) => {}
            Err(e) => eprintln!("baitwallctl exabgp: {e}"),
        }
    }
    // ExaBGP closed our stdin: it stopped, and its next run starts a new bridge.
    ExitCode::SUCCESS
}

/// A connection to the control socket.
struct Link {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    /// A line read in part before a read timed out.
    pending: String,
}

impl Link {
    fn open(path: &Path) -> std::io::Result<Link> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Link {
            stream,
            reader,
            pending: String::new(),
        })
    }

    fn ask(&mut self, request: &Value) -> std::io::Result<Value> {
        self.stream.write_all(format!("{request}\n").as_bytes())?;
        self.line()
    }

    /// The next line; a timeout keeps what was read of it for the next call.
    fn line(&mut self) -> std::io::Result<Value> {
        if self.reader.read_line(&mut self.pending)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if !self.pending.ends_with('\n') {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = std::mem::take(&mut self.pending);
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Control's local blocks in force: (prefix, expiry). Paged by prefix
/// (`after`), so a block removed between two pages cannot make a later one
/// be skipped.
fn local_blocks(path: &Path) -> std::io::Result<Vec<(Net, u32)>> {
    const PAGE: usize = 10_000;
    let mut link = Link::open(path)?;
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = link.ask(&json!({"command": "block-list", "arguments": {
            "origin": "local", "after": after, "limit": PAGE}}))?;
        let Some(rows) = page["message"].as_array() else {
            return Err(std::io::Error::other(format!("block-list refused: {page}")));
        };
        for r in rows {
            if let Some(net) = r["prefix"].as_str().and_then(|p| parse_net(p).ok()) {
                all.push((net, r["expires_unix"].as_u64().map_or(0, |e| e as u32)));
            }
        }
        if rows.len() < PAGE {
            return Ok(all);
        }
        after = rows
            .last()
            .and_then(|r| r["prefix"].as_str())
            .map(str::to_string);
    }
}

/// Orders a replay: withdrawals first, then what was learned, then sweeps
/// (a sweep before the replay would remove, and the replay put back, every
/// learned block).
fn replay_order(requests: &mut [Value]) {
    let rank = |r: &Value| match r["command"].as_str() {
        Some("peer-withdraw") => 0,
        Some("peer-block") => 1,
        _ => 2,
    };
    requests.sort_by_key(rank);
}

/// Sends requests on a fresh connection; refusals are reported, not retried
/// (they are final: allowlisted, an echo, a full store), except
/// `unavailable` (control could not answer this time), which fails the
/// send so that the session retries it.
fn send(path: &Path, requests: &[Value]) -> std::io::Result<()> {
    let mut link = Link::open(path)?;
    for r in requests {
        let reply = link.ask(r)?;
        if r["command"] == "peer-block" && reply["message"]["action"] == "kept_local" {
            eprintln!(
                "baitwallctl exabgp: control keeps its own block on {} (announced by appliance {} too)",
                r["arguments"]["target"].as_str().unwrap_or(""),
                r["arguments"]["origin"]
            );
        }
        if reply["error"]["code"] == "unavailable" {
            return Err(std::io::Error::other(format!(
                "control could not answer {}: {}",
                r["command"], reply["error"]["message"]
            )));
        }
        if reply["return"] != "OK" {
            eprintln!(
                "baitwallctl exabgp: control refused {} {}: {} {}",
                r["command"].as_str().unwrap_or("?"),
                r["arguments"]["target"].as_str().unwrap_or(""),
                reply["error"]["code"].as_str().unwrap_or("?"),
                reply["error"]["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// The control thread: connects (again and again), keeps announcements
/// equal to control's local blocks, and delivers learned blocks.
fn control_link(path: &Path, bridge: &Mutex<Bridge>, requests: &Receiver<Value>, resync: Duration) {
    let mut backlog: Vec<Value> = Vec::new();
    let mut was_down = false;
    loop {
        match session(path, bridge, requests, resync, &mut backlog) {
            Ok(()) => return,
            Err(e) => {
                if !was_down {
                    eprintln!(
                        "baitwallctl exabgp: control at {} unreachable ({e}); retrying every second",
                        path.display()
                    );
                }
                was_down = true;
                std::thread::sleep(Duration::from_secs(1));
                // Requests that came meanwhile are replayed from the bridge's
                // state at the next connection; withdrawals are kept.
                backlog.extend(requests.try_iter().filter(|r| r["command"] != "peer-block"));
            }
        }
    }
}

/// One connection to control; returns `Ok` when the requests channel
/// closed (the bridge is exiting), an error when control went away.
fn session(
    path: &Path,
    bridge: &Mutex<Bridge>,
    requests: &Receiver<Value>,
    resync: Duration,
    backlog: &mut Vec<Value>,
) -> std::io::Result<()> {
    let mut events = Link::open(path)?;
    let reply = events.ask(
        &json!({"command": "subscribe", "arguments": {"event_types": ["block", "unblock"]}}),
    )?;
    if reply["return"] != "OK" {
        return Err(std::io::Error::other(format!("subscribe refused: {reply}")));
    }
    events
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)))?;
    // Withdrawals that waited, then everything learned (control may have
    // restarted, or missed requests while it was away). Stale learned
    // blocks are swept after a session comes up, not here: a bridge that
    // just started has learned nothing yet.
    let mut first: Vec<Value> = std::mem::take(backlog);
    first.extend(bridge.lock().learned_requests());
    replay_order(&mut first);
    if let Err(e) = send(path, &first) {
        backlog.extend(first.into_iter().filter(|r| r["command"] != "peer-block"));
        return Err(e);
    }
    let local = local_blocks(path)?;
    {
        let mut b = bridge.lock();
        let lines = b.sync(&local);
        say(&lines);
    }
    let (announced, learned) = {
        let b = bridge.lock();
        (b.announced(), b.learned())
    };
    eprintln!(
        "baitwallctl exabgp: attached to control; {announced} blocks announced, {learned} learned"
    );
    let mut last_sync = Instant::now();
    loop {
        match events.line() {
            Ok(event) => {
                let mut b = bridge.lock();
                let (lines, again) = b.on_event(&event);
                say(&lines);
                drop(b);
                backlog.extend(again);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        let mut batch: Vec<Value> = std::mem::take(backlog);
        loop {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if let Some(since) = bridge.lock().due_sweep(now_ms()) {
            batch.push(peer_sweep(since));
        }
        if !batch.is_empty()
            && let Err(e) = send(path, &batch)
        {
            backlog.extend(batch.into_iter().filter(|r| r["command"] != "peer-block"));
            return Err(e);
        }
        if last_sync.elapsed() >= resync {
            last_sync = Instant::now();
            let local = local_blocks(path)?;
            let mut b = bridge.lock();
            let lines = b.sync(&local);
            say(&lines);
        }
    }
}
