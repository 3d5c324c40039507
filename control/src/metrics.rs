//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1 on the
//! configured address (off by default), in the text exposition format
//! 0.0.4. Counters end in `_total`, units are base units (bytes, seconds),
//! labels are `worker`, `kind` and `reason`, and no label ever holds an
//! address (a scan would otherwise explode the series count).
//!
//! The endpoint reads the workers' counters straight from the region and
//! control's own figures from a snapshot the control loop refreshes, so a
//! scrape never waits on the loop and a slow scraper never holds it up.
//! A few concurrent connections at most, each with a short timeout.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use baitwall_channel::Region;
use parking_lot::Mutex;

use crate::counters;

/// Control's own figures, refreshed by the control loop.
#[derive(Clone, Debug, Default)]
pub struct ControlFigures {
    /// Unix time control started, seconds.
    pub start_time_s: u64,
    /// A dataplane is attached.
    pub attached: bool,
    /// Blocks in force.
    pub blocks: u64,
    /// Allowlist entries.
    pub allows: u64,
    /// Events in the history.
    pub events_stored: u64,
    /// Event log lines written.
    pub eve_lines: u64,
    /// Event log write failures.
    pub eve_errors: u64,
    /// Socket subscribers now.
    pub subscribers: u64,
    /// Events a slow subscriber missed.
    pub subscriber_drops: u64,
    /// Events each worker's ring dropped because control was behind.
    pub ring_drops: Vec<u64>,
    /// Blocks refused because the store was at `max_blocks`.
    pub refused: u64,
    /// Workers' provisional latches control lifted.
    pub lifted: u64,
    /// The nftables sync, when configured.
    pub nft: Option<crate::enforce::nft::NftStatus>,
}

/// What a scrape reads.
#[derive(Default)]
pub struct MetricsSource {
    /// The attached region, if any.
    pub region: Mutex<Option<Arc<Region>>>,
    /// Control's figures.
    pub control: Mutex<ControlFigures>,
}

impl MetricsSource {
    /// The whole exposition.
    pub fn render(&self) -> String {
        let c = self.control.lock().clone();
        let mut out = String::with_capacity(16 << 10);
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "baitwall_control_start_time_seconds",
            "Unix time the control process started.",
            c.start_time_s,
        );
        gauge(
            "baitwall_dataplane_attached",
            "1 while a dataplane is attached to control.",
            u64::from(c.attached),
        );
        gauge("baitwall_blocks", "Blocks in force (stored).", c.blocks);
        gauge("baitwall_allow_entries", "Allowlist entries.", c.allows);
        gauge(
            "baitwall_events_stored",
            "Events in the history database.",
            c.events_stored,
        );
        gauge(
            "baitwall_subscribers",
            "Control socket connections streaming events.",
            c.subscribers,
        );
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "baitwall_eve_lines_total",
            "Event log lines written.",
            c.eve_lines,
        );
        counter(
            "baitwall_eve_errors_total",
            "Event log writes, rotations or reopens that failed.",
            c.eve_errors,
        );
        counter(
            "baitwall_subscriber_dropped_total",
            "Events slow subscribers missed.",
            c.subscriber_drops,
        );
        counter(
            "baitwall_blocks_refused_total",
            "Blocks refused because the store held max_blocks.",
            c.refused,
        );
        counter(
            "baitwall_latches_lifted_total",
            "Workers' provisional latches control lifted (policy, allowlist, max_blocks, narrowed).",
            c.lifted,
        );
        if let Some(n) = &c.nft {
            counter(
                "baitwall_nftables_runs_total",
                "nft runs that succeeded.",
                n.runs,
            );
            counter(
                "baitwall_nftables_failures_total",
                "nft runs that failed or timed out (each is retried).",
                n.failures,
            );
            let _ = writeln!(
                out,
                "# HELP baitwall_nftables_up 1 while the nftables sets follow the blocks, 0 while failing or starting.\n# TYPE baitwall_nftables_up gauge\nbaitwall_nftables_up {}",
                u64::from(n.state == "ok")
            );
            let _ = writeln!(
                out,
                "# HELP baitwall_nftables_elements Elements in the nftables sets, as last known.\n# TYPE baitwall_nftables_elements gauge\nbaitwall_nftables_elements {}",
                n.elements.unwrap_or(0)
            );
            let _ = writeln!(
                out,
                "# HELP baitwall_nftables_last_success_time_seconds Unix time of the last nft run that succeeded.\n# TYPE baitwall_nftables_last_success_time_seconds gauge\nbaitwall_nftables_last_success_time_seconds {}",
                n.last_ok
            );
        }
        let _ = writeln!(
            out,
            "# HELP baitwall_ring_dropped_total Events a worker's ring dropped while control was behind.\n# TYPE baitwall_ring_dropped_total counter"
        );
        for (w, d) in c.ring_drops.iter().enumerate() {
            let _ = writeln!(out, "baitwall_ring_dropped_total{{worker=\"{w}\"}} {d}");
        }
        if let Some(region) = self.region.lock().clone() {
            let cells = counters::parse_names(&region.stat_names());
            let workers: Vec<Vec<u64>> = (0..region.geometry().workers)
                .map(|w| region.read_stats(w))
                .collect();
            counters::prometheus(&mut out, &cells, &workers);
        }
        out
    }
}

/// Connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 8;
/// A request must arrive within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listen` until `stop`.
pub fn serve(
    listen: SocketAddr,
    source: Arc<MetricsSource>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("bw-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                            let _ = respond(stream, 503, "text/plain", "busy\n");
                            continue;
                        }
                        active.fetch_add(1, Ordering::AcqRel);
                        let (source, mine) = (source.clone(), active.clone());
                        let spawned =
                            std::thread::Builder::new()
                                .name("bw-scrape".into())
                                .spawn(move || {
                                    let _ = scrape(stream, &source);
                                    mine.fetch_sub(1, Ordering::AcqRel);
                                });
                        if spawned.is_err() {
                            active.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
}

fn scrape(mut stream: TcpStream, source: &MetricsSource) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > 8192 {
            return respond(stream, 431, "text/plain", "request header too large\n");
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(
            stream,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &source.render(),
        ),
        ("GET", _) => respond(stream, 404, "text/plain", "try /metrics\n"),
        _ => respond(stream, 405, "text/plain", "GET only\n"),
    }
}

fn respond(mut stream: TcpStream, status: u16, ty: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
