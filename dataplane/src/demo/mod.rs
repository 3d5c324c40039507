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
use crate::engine::classify::classify;
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
}

/// What the demo did.
pub struct DemoResult {
    /// The readable summary.
    pub summary: String,
    /// The run's counters.
    pub outcome: RunOutcome,
    /// Frames in and frames forwarded, by role.
    pub by_role: BTreeMap<Role, (u64, u64)>,
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

    let outcome = crate::run::run(&config, options.stop.clone(), |_| {})?;
    let by_role = account(&frames, &dir.join("forwarded.pcap"))?;
    let summary = summarize(&outcome, &by_role, &frames, options.keep.as_deref());
    Ok(DemoResult {
        summary,
        outcome,
        by_role,
    })
}

/// The role of a frame by its source address.
fn role_of(frame: &[u8]) -> Option<Role> {
    let info = classify(frame).ok()?;
    if !info.is_ip() {
        return Some(Role::Arp);
    }
    let src = IpAddr::from(info.src).to_canonical();
    let dst = IpAddr::from(info.dst).to_canonical();
    if src == IpAddr::V4(cast::WORM) || dst == IpAddr::V4(cast::WORM) {
        Some(Role::Worm)
    } else {
        Some(Role::Benign)
    }
}

/// Frames in (from the scenario) and forwarded (read back from the output capture), by role.
fn account(
    frames: &[scenario::ScenarioFrame],
    forwarded: &Path,
) -> anyhow::Result<BTreeMap<Role, (u64, u64)>> {
    let mut by_role: BTreeMap<Role, (u64, u64)> = Role::ALL.iter().map(|r| (*r, (0, 0))).collect();
    for f in frames {
        by_role.entry(f.role).or_default().0 += 1;
    }
    let file = File::open(forwarded).with_context(|| format!("opening {}", forwarded.display()))?;
    let mut reader = PcapReader::new(std::io::BufReader::new(file))?;
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        // Malformed frames never classify; if one was forwarded it counts as malformed.
        let role = role_of(&packet.data).unwrap_or(Role::Malformed);
        by_role.entry(role).or_default().1 += 1;
    }
    Ok(by_role)
}

fn summarize(
    outcome: &RunOutcome,
    by_role: &BTreeMap<Role, (u64, u64)>,
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
        "  protected: {} and {} with 4 live servers ({} web 80/443, {} ssh, {} dns, {} web); every other address is dark",
        cast::PROTECTED_V4,
        cast::PROTECTED_V6,
        cast::WEB,
        cast::SSH,
        cast::DNS,
        cast::WEB6
    );
    let _ = writeln!(
        s,
        "  {} IPv4 and {} IPv6 benign clients, a worm at {}, a sender of malformed frames at {}; {:.0} s of traffic",
        cast::CLIENTS_V4,
        cast::CLIENTS_V6,
        cast::WORM,
        cast::FUZZER,
        span_s
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<34} {:>10} {:>10} {:>10}",
        "what crossed the appliance", "frames in", "forwarded", "dropped"
    );
    for (role, (inn, out)) in by_role {
        let name = match role {
            Role::Benign => "benign clients and their servers",
            Role::Worm => "the worm (and the server it hit)",
            Role::Malformed => "malformed headers",
            Role::Arp => "ARP",
        };
        let _ = writeln!(
            s,
            "{:<34} {:>10} {:>10} {:>10}",
            name,
            thousands(*inn),
            thousands(*out),
            thousands(inn.saturating_sub(*out))
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "the worm swept {} on port 80: 254 SYNs, 253 to dark addresses (each retried once, nothing answered),",
        cast::PROTECTED_V4
    );
    let _ = writeln!(
        s,
        "then connected to {}:80 and, 0.4 s later, to port 443: Slapper's pattern.",
        cast::WEB
    );
    let _ = writeln!(
        s,
        "This build only forwards and tracks flows: dark addresses get no decoy yet, so the worm is not stopped."
    );
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
    fn embedded_config_is_valid() {
        Config::parse(DEMO_CONFIG, "demo.toml").unwrap();
    }
}
