//! Shared by the control tests: control with a socket and no dataplane,
//! and a dataplane on the in-memory NIC that a worm can bite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use baitwall_control::config::{ControlConfig, SocketSection};
use baitwall_control::daemon::{self, Settings};
use baitwall_dataplane::config::Config;
use baitwall_dataplane::io::soft::SoftNic;
use baitwall_dataplane::runtime::{Dataplane, RegionConfig};
use baitwall_dataplane::synth::{self, Endpoint, Flags};
use serde_json::Value;
use std::net::Ipv4Addr;

pub mod netns;

/// Starts control serving a socket in `dir`; returns its stop flag, the
/// socket path and its thread.
pub fn start(
    dir: &Path,
    max_clients: usize,
    idle: Duration,
) -> (Arc<AtomicBool>, PathBuf, std::thread::JoinHandle<()>) {
    let socket = dir.join("control.sock");
    let settings = Settings::new(ControlConfig {
        // No dataplane: requests are answered from the store while control waits.
        region: dir.join("absent.region"),
        database: dir.join("state.db"),
        socket: SocketSection {
            path: socket.clone(),
            max_clients,
            idle_timeout: idle,
            ..SocketSection::default()
        },
        ..ControlConfig::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "socket not up");
        std::thread::sleep(Duration::from_millis(5));
    }
    (stop, socket, handle)
}

/// Trace time of the packets: "now" for the dataplane's blocklist.
pub const T0: u64 = 1_767_226_200 * 1_000_000_000;

pub fn start_dataplane(region: &Path, mark_sample: u32) -> (Dataplane, SoftNic) {
    start_dataplane_on(
        region,
        mark_sample,
        baitwall_dataplane::clock::ManualClock::new(T0).clock(),
    )
}

/// [`start_dataplane`] on `clock`.
pub fn start_dataplane_on(
    region: &Path,
    mark_sample: u32,
    clock: baitwall_dataplane::clock::Clock,
) -> (Dataplane, SoftNic) {
    let text = format!(
        "[workers]\ncores = [0, 1]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"unused\"\n[flows]\ncapacity = 4096\n[deception]\nprotected = [\"198.51.100.0/24\"]\ndark_routes = [\"198.51.100.0/24\"]\nlearning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1m\"\nsecret = \"{}\"\nmark_sample = {mark_sample}\n",
        "ef".repeat(32)
    );
    let mut rt = Config::parse(&text, "t").unwrap().runtime();
    rt.region = Some(RegionConfig {
        path: region.to_owned(),
        slots: 1024,
        hold: None,
    });
    baitwall_dataplane::testbed::start_mem_on(&rt, clock).unwrap()
}

/// Sends `frames` and returns how many came out.
pub fn through(nic: &SoftNic, frames: &[Vec<u8>]) -> usize {
    let mut out = 0;
    for f in frames {
        while nic.inject(f, T0).is_err() {
            out += nic.collect(|_, _, _| {});
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nic.is_quiescent() {
        out += nic.collect(|_, _, _| {});
        assert!(Instant::now() < deadline);
    }
    out
}

/// The worm's SYNs to a host outside the protected space from many ports:
/// RSS spreads them over both workers.
pub fn worm_traffic() -> Vec<Vec<u8>> {
    let live = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(192, 0, 2, 10), 80);
    (0..64u16)
        .map(|i| {
            let worm = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 66), 20000 + i);
            synth::tcp(&worm, &live, Flags::SYN, 1, 0, &[])
        })
        .collect()
}

/// Makes the worm (192.0.2.66) bite a decoy of 198.51.100.0/24.
pub fn bite(nic: &SoftNic) {
    let worm = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 66), 40000);
    let decoys = (20..250u8).map(|last| Ipv4Addr::new(198, 51, 100, last).into());
    baitwall_dataplane::testbed::bite_a_decoy(nic, &worm, decoys, T0)
        .expect("no decoy with port 80 open");
}

/// A raw client of the control socket.
pub struct Client {
    /// Writes.
    pub w: UnixStream,
    /// Reads.
    pub r: BufReader<UnixStream>,
}

impl Client {
    pub fn new(path: &Path) -> Client {
        let w = UnixStream::connect(path).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Client { w, r }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> Value {
        self.w.write_all(bytes).unwrap();
        self.read()
    }

    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    pub fn ask(&mut self, line: &str) -> Value {
        self.send_raw(format!("{line}\n").as_bytes())
    }
}

/// A client that got an answer to `version` (a refused one gets its NOK
/// line and a closed socket: `None`).
pub fn served(path: &Path) -> Option<Client> {
    let mut c = Client::new(path);
    c.w.write_all(b"{\"command\": \"version\"}\n").ok()?;
    let mut line = String::new();
    c.r.read_line(&mut line).ok()?;
    line.contains("\"OK\"").then_some(c)
}

pub fn code(v: &Value) -> &str {
    assert_eq!(v["return"], "NOK", "{v}");
    v["error"]["code"].as_str().unwrap()
}

/// `GET /metrics` from control's Prometheus endpoint on `port`: the body.
pub fn scrape_text(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// A validator for docs/eve.schema.json.
pub fn eve_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/eve.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// What docs/eve.schema.json finds wrong with an event (empty: valid).
pub fn eve_schema_errors(event: &Value) -> Vec<String> {
    eve_validator()
        .iter_errors(event)
        .map(|e| e.to_string())
        .collect()
}
