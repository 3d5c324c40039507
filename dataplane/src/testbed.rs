//! A dataplane on the `mem` port, for tests, examples and benchmarks that
//! drive real workers without a capture file: the caller injects frames on
//! the returned NIC and collects what the workers transmit.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::clock::ManualClock;
use crate::io::mem::MemPort;
use crate::io::soft::{SoftNic, SoftNicConfig};
use crate::runtime::{Dataplane, RuntimeConfig, RuntimeError};
use crate::synth::{self, Endpoint, Flags};

/// Starts the workers of `config` on a `mem` port with one queue per
/// worker, on a manual clock reading `now_ns`.
pub fn start_mem(
    config: &RuntimeConfig,
    now_ns: u64,
) -> Result<(Dataplane, SoftNic), RuntimeError> {
    start_mem_on(config, ManualClock::new(now_ns).clock())
}

/// [`start_mem`] on the given clock (`Clock::monotonic()` for wall time).
pub fn start_mem_on(
    config: &RuntimeConfig,
    clock: crate::clock::Clock,
) -> Result<(Dataplane, SoftNic), RuntimeError> {
    let mut port = MemPort::new(SoftNicConfig {
        queues: config.cores.len().max(1) as u16,
        pool_size: 1024,
        ring_size: 256,
        lossless_tx: true,
    });
    let nic = port.nic();
    let dp = Dataplane::start(&mut port, config, clock, Arc::new(AtomicBool::new(false)))?;
    Ok((dp, nic))
}

/// Injects `frames` and collects what comes out until the workers are idle
/// (at most ten seconds).
pub fn exchange(nic: &SoftNic, frames: &[Vec<u8>], now_ns: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for f in frames {
        while nic.inject(f, now_ns).is_err() && std::time::Instant::now() < deadline {
            nic.collect(|_, r, _| out.push(r.to_vec()));
        }
    }
    while !nic.is_quiescent() && std::time::Instant::now() < deadline {
        nic.collect(|_, r, _| out.push(r.to_vec()));
    }
    nic.collect(|_, r, _| out.push(r.to_vec()));
    out
}

/// Sends a SYN from `prober` to `decoy` and returns the ISN of the
/// decoy's SYN-ACK, if one came back.
fn syn_ack_isn(nic: &SoftNic, prober: &Endpoint, decoy: &Endpoint, now_ns: u64) -> Option<u32> {
    let replies = exchange(
        nic,
        &[synth::tcp(prober, decoy, Flags::SYN, 9, 0, &[])],
        now_ns,
    );
    replies.iter().find_map(|r| {
        let p = etherparse::SlicedPacket::from_ethernet(r).ok()?;
        match p.transport {
            Some(etherparse::TransportSlice::Tcp(t)) if t.syn() && t.ack() => {
                Some(t.sequence_number())
            }
            _ => None,
        }
    })
}

/// Completes a handshake (SYN, then the ACK carrying the cookie) with the
/// first decoy of `decoys` with port 80 open: a handshake bite, an alert by
/// default. Returns the decoy, or `None` when none answered.
pub fn handshake_a_decoy(
    nic: &SoftNic,
    prober: &Endpoint,
    decoys: impl IntoIterator<Item = std::net::IpAddr>,
    now_ns: u64,
) -> Option<Endpoint> {
    decoys.into_iter().find_map(|ip| {
        let decoy = Endpoint::new([2, 0, 0, 0, 0, 1], ip, 80);
        let isn = syn_ack_isn(nic, prober, &decoy, now_ns)?;
        let ack = synth::tcp(prober, &decoy, Flags::ACK, 10, isn.wrapping_add(1), &[]);
        exchange(nic, &[ack], now_ns);
        Some(decoy)
    })
}

/// Makes `worm` bite the first decoy of `decoys` with port 80 open, the way
/// a worm does: SYN, the cookie from the SYN-ACK, then an ACK with a
/// request. Returns the decoy, or `None` when none answered.
pub fn bite_a_decoy(
    nic: &SoftNic,
    worm: &Endpoint,
    decoys: impl IntoIterator<Item = std::net::IpAddr>,
    now_ns: u64,
) -> Option<Endpoint> {
    decoys.into_iter().find_map(|ip| {
        let decoy = Endpoint::new([2, 0, 0, 0, 0, 1], ip, 80);
        let isn = syn_ack_isn(nic, worm, &decoy, now_ns)?;
        let data = synth::tcp(
            worm,
            &decoy,
            Flags::PSH_ACK,
            10,
            isn.wrapping_add(1),
            b"GET / HTTP/1.0\r\n\r\n",
        );
        exchange(nic, &[data], now_ns);
        Some(decoy)
    })
}

/// A test's prerequisite (a tool, root): when it is not met, one printed
/// line and `false` (the caller skips), or, under `CI=true`, a failure:
/// CI installs everything the tests need.
pub fn prerequisite(met: bool, what: &str) -> bool {
    if !met {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        // A test helper: failing the test is its job under CI.
        #[allow(clippy::panic)]
        if ci {
            panic!("{what}: required under CI=true (.ci/run provides it)");
        }
        println!("skipping: {what}");
    }
    met
}

/// True when this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Finds a tool on PATH, or says it is missing (see [`prerequisite`]).
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    prerequisite(found.is_some(), &format!("{name} is not installed"))
        .then_some(found)
        .flatten()
}

/// Runs a tool to completion and returns what it printed; a tool that
/// cannot start or fails fails the test, with its stderr.
#[allow(clippy::panic)] // a test helper: failing the test is its job
pub fn stdout_of(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if !out.status.success() {
        panic!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
