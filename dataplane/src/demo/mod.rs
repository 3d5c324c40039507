//! `demo`: replays the built-in scenario through the real workers (pcap
//! backend, embedded configuration) and explains what crossed the appliance.

pub mod scenario;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};

use crate::config::{Config, CoreList};
use crate::engine::bite::Action;
use crate::engine::classify::classify;
use crate::engine::event::EventKind;
use crate::report::{self, thousands};
use crate::run::RunOutcome;
use scenario::{Role, cast};

/// The embedded configuration.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

/// Options of `demo`.
pub struct DemoOptions {
    /// Workers to run (default: 2, capped by the machine's cores).
    pub workers: Option<usize>,
    /// Keep the files here instead of a temporary folder.
    pub keep: Option<PathBuf>,
    /// Set to stop early.
    pub stop: Arc<AtomicBool>,
    /// How to start the control process (`None`: the dataplane alone).
    pub control: Option<ControlCommand>,
}

/// How to start the control process: `program prefix... run ...`.
#[derive(Clone, Debug)]
pub struct ControlCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the control subcommand (`["control"]` for `baitwall`).
    pub prefix: Vec<std::ffi::OsString>,
}

impl ControlCommand {
    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.prefix);
        c
    }

    fn spawn(&self, dir: &Path, log: &str) -> anyhow::Result<std::process::Child> {
        let log = File::create(dir.join(log))?;
        let child = self
            .command()
            .arg("run")
            .arg("--region")
            .arg(dir.join("baitwall.region"))
            .arg("--database")
            .arg(dir.join("state.db"))
            .args(["--block-for", "1h"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the control process")?;
        Ok(child)
    }

    /// The blocks in force, as control's `blocks` command prints them.
    fn blocks(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let out = self
            .command()
            .arg("blocks")
            .arg("--database")
            .arg(dir.join("state.db"))
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

/// What the control process did during the demo.
pub struct ControlStory {
    /// The first control process's log.
    pub first: Vec<String>,
    /// The restarted one's log.
    pub second: Vec<String>,
    /// The blocks SQLite holds after the run.
    pub stored: Vec<String>,
}

/// What the demo did.
pub struct DemoResult {
    /// The readable summary.
    pub summary: String,
    /// The run's counters.
    pub outcome: RunOutcome,
    /// Frames in, forwarded and answered, by role.
    pub by_role: Tally,
}

/// Writes frames to a pcap file (nanosecond timestamps).
pub fn write_pcap(path: &Path, frames: &[scenario::ScenarioFrame]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let header = PcapHeader {
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(BufWriter::new(file), header)?;
    for f in frames {
        w.write_packet(&PcapPacket::new(
            Duration::from_nanos(f.ts_ns),
            f.frame.len() as u32,
            &f.frame,
        ))?;
    }
    Ok(())
}

/// Runs the demo.
pub fn run(options: DemoOptions) -> anyhow::Result<DemoResult> {
    let temp;
    let dir = match &options.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_owned()
        }
    };
    let frames = scenario::build();
    write_pcap(&dir.join("scenario.pcap"), &frames)?;
    let config_path = dir.join("demo.toml");
    std::fs::write(&config_path, DEMO_CONFIG)?;
    let mut config = Config::load(&config_path)?;
    let available = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
    let workers = options.workers.unwrap_or(2).clamp(1, available.max(1));
    config.workers.cores = CoreList((0..workers).collect());

    let mut story = None;
    let outcome = match &options.control {
        None => crate::run::run(&config, options.stop.clone(), |_| {})?,
        Some(control) => {
            config.control = Some(crate::config::ControlSection {
                region: dir.join("baitwall.region"),
                ring_slots: crate::config::RingSlots(4096),
                start: crate::config::StartMode::Open,
                hold_for: crate::config::Span(Duration::from_secs(5)),
            });
            let (outcome, s) = run_with_control(&config, &options, control, &dir)?;
            story = Some(s);
            outcome
        }
    };
    let by_role = account(&frames, &dir.join("forwarded.pcap"))?;
    let quiet = quiet_server(&frames, &dir.join("forwarded.pcap"))?;
    let mut summary = summarize(&outcome, &by_role, &quiet, &frames, options.keep.as_deref());
    if let Some(s) = &story {
        summary.push_str(&tell_control(s));
    }
    Ok(DemoResult {
        summary,
        outcome,
        by_role,
    })
}

/// Runs the replay with the control process beside it: control starts
/// first, is killed with SIGKILL as soon as it has stored the worm's block
/// (at least a second into the replay) and started again; it resyncs the
/// workers by generation.
fn run_with_control(
    config: &Config,
    options: &DemoOptions,
    control: &ControlCommand,
    dir: &Path,
) -> anyhow::Result<(RunOutcome, ControlStory)> {
    let mut first = control.spawn(dir, "control-1.log")?;
    let restarter = {
        let control = control.clone();
        let dir = dir.to_owned();
        std::thread::spawn(move || -> anyhow::Result<std::process::Child> {
            std::thread::sleep(Duration::from_millis(1000));
            // Not before control #1 has the worm's block (a loaded machine
            // replays slower), so the story is the same on every run.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while control.blocks(&dir)?.is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // SIGKILL: control gets no chance to tidy up.
            first.kill()?;
            first.wait()?;
            control.spawn(&dir, "control-2.log")
        })
    };
    let outcome = crate::run::run(config, options.stop.clone(), |_| {})?;
    let mut second = restarter
        .join()
        .map_err(|_| anyhow::anyhow!("the control restarter panicked"))??;
    // The block must be in SQLite, and the restarted control must have
    // pushed it back at its attach.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut stored = control.blocks(dir)?;
    while stored.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        stored = control.blocks(dir)?;
    }
    let _ = std::process::Command::new("kill")
        .arg(second.id().to_string())
        .status();
    let _ = second.wait();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    Ok((
        outcome,
        ControlStory {
            first: read("control-1.log"),
            second: read("control-2.log"),
            stored,
        },
    ))
}

fn tell_control(s: &ControlStory) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "the control process (a separate process, over shared-memory rings):"
    );
    for line in s.first.iter().filter(|l| !l.starts_with("generation")) {
        let _ = writeln!(out, "  [control #1] {line}");
    }
    let _ = writeln!(
        out,
        "  [demo] control #1 killed with SIGKILL once it had stored the block, then started again"
    );
    for line in s.second.iter().filter(|l| !l.starts_with("generation")) {
        let _ = writeln!(out, "  [control #2] {line}");
    }
    let _ = writeln!(
        out,
        "SQLite holds after the run: {}",
        if s.stored.is_empty() {
            "no block".to_string()
        } else {
            s.stored.join(" ")
        }
    );
    out
}

/// Live hosts of the scenario: anything else inside the protected space
/// that sends is a decoy answering.
fn is_live_server(ip: IpAddr) -> bool {
    [
        IpAddr::V4(cast::WEB),
        IpAddr::V4(cast::SSH),
        IpAddr::V4(cast::DNS),
        IpAddr::V4(cast::QUIET),
        IpAddr::V6(cast::WEB6),
        IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1)),
    ]
    .contains(&ip)
}

fn is_protected(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[..3] == [198, 51, 100],
        IpAddr::V6(a) => a.segments()[..4] == [0x2001, 0xdb8, 0x100, 0],
    }
}

/// What an output frame was: the role it belongs to, and whether it is a
/// decoy's reply (true) or a forwarded frame (false).
fn classify_output(frame: &[u8]) -> (Role, bool) {
    let Ok(info) = classify(frame) else {
        return (Role::Malformed, false);
    };
    if !info.is_ip() {
        // An ARP reply from a protected address that is not a live host is a decoy's.
        let sender = frame
            .get(28..32)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(IpAddr::from);
        let from_decoy = sender.is_some_and(|ip| is_protected(ip) && !is_live_server(ip));
        return (Role::Arp, from_decoy);
    }
    let src = IpAddr::from(info.src).to_canonical();
    let dst = IpAddr::from(info.dst).to_canonical();
    let worm = IpAddr::V4(cast::WORM);
    if is_protected(src) && !is_live_server(src) {
        let role = if dst == worm {
            Role::Worm
        } else if dst == IpAddr::V4(cast::SPOOFED) {
            // The real client only talks to live servers: decoy replies to
            // its address answer the spoofer's forgeries.
            Role::Spoofer
        } else {
            Role::Benign
        };
        return (role, true);
    }
    let role = if src == worm || dst == worm {
        Role::Worm
    } else {
        Role::Benign
    };
    (role, false)
}

/// Per role: frames in, forwarded, answered by decoys (dropped is the rest).
pub type Tally = BTreeMap<Role, (u64, u64, u64)>;

/// Counts frames in (from the scenario) and out (read back from the output capture).
fn account(frames: &[scenario::ScenarioFrame], forwarded: &Path) -> anyhow::Result<Tally> {
    let mut tally: Tally = Role::ALL.iter().map(|r| (*r, (0, 0, 0))).collect();
    for f in frames {
        tally.entry(f.role).or_default().0 += 1;
    }
    let file = File::open(forwarded).with_context(|| format!("opening {}", forwarded.display()))?;
    let mut reader = PcapReader::new(std::io::BufReader::new(file))?;
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let (role, reply) = classify_output(&packet.data);
        let entry = tally.entry(role).or_default();
        if reply {
            entry.2 += 1;
        } else {
            entry.1 += 1;
        }
    }
    Ok(tally)
}

/// What happened to the quiet server: frames to or from it in the
/// scenario, those that crossed, and frames a decoy sent in its name.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QuietServer {
    /// Frames to or from it in the scenario (ARP included).
    pub frames_in: u64,
    /// Those forwarded.
    pub forwarded: u64,
    /// Frames the appliance made in its name (a claim): must be 0.
    pub impersonated: u64,
}

impl QuietServer {
    fn line(&self) -> String {
        format!(
            "quiet server {} (not declared live, never speaks first): {} of its {} frames forwarded, {} answered by a decoy in its name{}\n",
            cast::QUIET,
            thousands(self.forwarded),
            thousands(self.frames_in),
            self.impersonated,
            if self.impersonated == 0 && self.forwarded == self.frames_in {
                ": kept safe"
            } else {
                ": CLAIMED"
            }
        )
    }
}

/// Frames touching the quiet server, in and out; one made by a decoy
/// carries the persona's MAC as its Ethernet source.
fn quiet_server(
    frames: &[scenario::ScenarioFrame],
    forwarded: &Path,
) -> anyhow::Result<QuietServer> {
    let quiet = cast::QUIET.octets();
    let decoy_mac = crate::engine::persona::PersonaMaker::new(&scenario::DEMO_SECRET)
        .persona(&cast::QUIET.to_ipv6_mapped().octets())
        .mac
        .0;
    // IPv4 source or destination, or an ARP sender or target.
    let touches = |f: &[u8]| match f.get(12..14) {
        Some([0x08, 0x00]) => f.get(26..30) == Some(&quiet) || f.get(30..34) == Some(&quiet),
        Some([0x08, 0x06]) => f.get(28..32) == Some(&quiet) || f.get(38..42) == Some(&quiet),
        _ => false,
    };
    let mut q = QuietServer {
        frames_in: frames.iter().filter(|f| touches(&f.frame)).count() as u64,
        ..QuietServer::default()
    };
    let file = File::open(forwarded).with_context(|| format!("opening {}", forwarded.display()))?;
    let mut reader = PcapReader::new(std::io::BufReader::new(file))?;
    while let Some(packet) = reader.next_packet() {
        let data = &packet?.data;
        if data.get(6..12) == Some(&decoy_mac) {
            q.impersonated += 1;
        } else if touches(data) {
            q.forwarded += 1;
        }
    }
    Ok(q)
}

fn ip_text(a: [u8; 16]) -> String {
    IpAddr::from(a).to_canonical().to_string()
}

fn summarize(
    outcome: &RunOutcome,
    tally: &Tally,
    quiet: &QuietServer,
    frames: &[scenario::ScenarioFrame],
    kept: Option<&Path>,
) -> String {
    let mut s = String::new();
    let workers = outcome.dataplane.workers.len();
    let span_s = match (frames.first(), frames.last()) {
        (Some(a), Some(b)) => (b.ts_ns - a.ts_ns) as f64 / 1e9,
        _ => 0.0,
    };
    let _ = writeln!(
        s,
        "baitwall demo: the built-in scenario through {workers} poll-mode worker(s)"
    );
    let _ = writeln!(
        s,
        "  protected: {} and {}; live: {} (web 80/443), {} (ssh), {} (dns), {} (web), and {} (web, quiet: never speaks first, not declared); other addresses are claimed once the router's requests for them go unanswered",
        cast::PROTECTED_V4,
        cast::PROTECTED_V6,
        cast::WEB,
        cast::SSH,
        cast::DNS,
        cast::WEB6,
        cast::QUIET
    );
    let _ = writeln!(
        s,
        "  {} IPv4 and {} IPv6 benign clients, a worm at {}, a spoofer forging {}, malformed frames from {}; {:.0} s of traffic",
        cast::CLIENTS_V4,
        cast::CLIENTS_V6,
        cast::WORM,
        cast::SPOOFED,
        cast::FUZZER,
        span_s
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        "what crossed the appliance", "frames in", "forwarded", "answered", "dropped"
    );
    for (role, (inn, fwd, ans)) in tally {
        let name = match role {
            Role::Benign => "benign clients and their servers",
            Role::Worm => "the worm (and the server it hit)",
            Role::Spoofer => "the spoofer",
            Role::Malformed => "malformed headers",
            Role::Arp => "ARP",
        };
        let _ = writeln!(
            s,
            "{:<34} {:>10} {:>10} {:>10} {:>10}",
            name,
            thousands(*inn),
            thousands(*fwd),
            thousands(*ans),
            thousands(inn.saturating_sub(fwd + ans))
        );
    }
    let _ = writeln!(s);
    let t = &outcome.dataplane.snapshot.total;
    let marks: Vec<String> = t.marks.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        s,
        "marks sent by decoys: {}",
        if marks.is_empty() {
            "none".into()
        } else {
            marks.join(", ")
        }
    );
    let mut services: Vec<String> = outcome
        .events
        .iter()
        .filter(|e| matches!(e.event.kind, EventKind::Service))
        .map(|e| match IpAddr::from(e.event.src).to_canonical() {
            IpAddr::V4(a) => format!("{a}:{}", e.event.src_port),
            IpAddr::V6(a) => format!("[{a}]:{}", e.event.src_port),
        })
        .collect();
    services.sort();
    services.dedup();
    let _ = writeln!(
        s,
        "services learned from inside SYN-ACKs: {}",
        services.join(", ")
    );
    let _ = writeln!(s, "bites and sweeps, in order:");
    let mut events: Vec<_> = outcome
        .events
        .iter()
        .filter(|e| !matches!(e.event.kind, EventKind::Service | EventKind::Live))
        .copied()
        .collect();
    events.sort_by_key(|e| e.event.time_ns);
    for e in &events {
        let ev = &e.event;
        let what = match ev.kind {
            EventKind::Bite {
                kind,
                action,
                allowlisted,
                strong,
            } => format!(
                "{} bite ({}) -> {}{}",
                kind.as_str(),
                if strong { "strong proof" } else { "weak proof" },
                match action {
                    Action::Block => "LATCHED",
                    Action::Alert => "alert",
                    Action::Count => "count",
                },
                if allowlisted { " (allowlisted)" } else { "" }
            ),
            EventKind::Sweep { decoys } => format!("sweep seen (~{decoys} decoys; evidence only)"),
            EventKind::Service | EventKind::Live | EventKind::Mark { .. } => continue,
        };
        let _ = writeln!(
            s,
            "  worker {}: {} -> {}:{}  {}",
            e.worker,
            ip_text(ev.src),
            ip_text(ev.dst),
            ev.dst_port,
            what
        );
    }
    let latched: Vec<String> = outcome
        .dataplane
        .workers
        .iter()
        .flat_map(|w| {
            w.latched
                .iter()
                .map(|a| format!("{} (worker {})", ip_text(*a), w.id))
        })
        .collect();
    let _ = writeln!(
        s,
        "latched: {}; dropped from latched sources: {}",
        if latched.is_empty() {
            "nobody".to_string()
        } else {
            latched.join(", ")
        },
        t.drops.get("blocked").copied().unwrap_or(0)
    );
    let _ = writeln!(
        s,
        "forged ACKs rejected (cookie did not verify): {}; the spoofed client {} was not blocked and its own traffic flowed",
        t.bad_cookies,
        cast::SPOOFED
    );
    let _ = writeln!(
        s,
        "addresses claimed (the router's requests went unanswered): {}; given back to an owner: {}; frames from the wrong side dropped: {}",
        t.claims, t.yields, t.spoofed
    );
    s.push_str(&quiet.line());
    let _ = writeln!(s);
    s.push_str(&report::render(outcome));
    if let Some(dir) = kept {
        let _ = writeln!(
            s,
            "files kept in {}: scenario.pcap (input), forwarded.pcap (output), demo.toml",
            dir.display()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn embedded_config_is_valid_and_shares_the_scenarios_secret() {
        let c = Config::parse(DEMO_CONFIG, "demo.toml").unwrap();
        let d = c.deception.unwrap();
        assert_eq!(d.secret_bytes(), scenario::DEMO_SECRET);
        assert_eq!(
            d.cookie_rotation.0.as_millis() as u64,
            scenario::DEMO_ROTATION_MS
        );
    }
}
