//! A running appliance to operate without a NIC: two workers on the
//! in-memory port with bite capture, control with its socket, event log
//! and metrics, a live web server inside, a worm that bites, and a scanner
//! that keeps sweeping the dark space (about 7,500 SYNs a second). It stays
//! up so `baitwallctl` can be tried against it.
//!
//! `cargo run --release -p baitwall-control --example session -- [DIR] [SECONDS]`
//!
//! DIR (default `/tmp/baitwall-session`) holds the socket, the database and
//! the event log; the session ends after SECONDS (default 600) or Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baitwall_control::config::ControlConfig;
use baitwall_control::daemon::{self, Settings};
use baitwall_dataplane::config::Config;
use baitwall_dataplane::runtime::RegionConfig;
use baitwall_dataplane::synth::{self, Endpoint, Flags};
use baitwall_dataplane::testbed;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/baitwall-session".into()),
    );
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(600);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("control.toml");
    std::fs::write(
        &file,
        "region = \"bw.region\"\ndatabase = \"state.db\"\n\
         [socket]\npath = \"control.sock\"\n\
         [eve]\npath = \"eve.json\"\nstats_interval = \"10s\"\n\
         [metrics]\nlisten = \"127.0.0.1:9477\"\n",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).unwrap();
    }
    let settings = Settings {
        config: ControlConfig::load(&file).unwrap(),
        config_path: Some(file.clone()),
    };
    let control = {
        let stop = stop.clone();
        std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).unwrap())
    };

    // The dataplane: wall-clock time, so the events read like a live run.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let text = "[workers]\ncores = [0, 1]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"unused\"\n\
                [flows]\ncapacity = 65536\n\
                [deception]\nprotected = [\"198.51.100.0/24\"]\ndark_routes = [\"198.51.100.0/24\"]\nexclude = [\"198.51.100.1\"]\n\
                learning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1m\"\nmark_sample = 100\n\
                [deception.rate_limit]\nper_prober = 100000\nper_prober_burst = 100000\n\
                [capture]\ndir = \"captures\"\nfollow_packets = 8\n";
    let text = text.replace("captures", &dir.join("captures").display().to_string());
    let mut rt = Config::parse(&text, "session").unwrap().runtime();
    rt.region = Some(RegionConfig {
        path: dir.join("bw.region"),
        slots: 4096,
        hold: None,
    });
    let (dp, nic) =
        testbed::start_mem_on(&rt, baitwall_dataplane::clock::Clock::monotonic()).unwrap();

    // A scanner sweeps 22, 80 and 443 over the /24: marks, no bite.
    let scanner = |port| Endpoint::new([2; 6], Ipv4Addr::new(203, 0, 113, 9), port);
    let probes: Vec<Vec<u8>> = (2..=254u8)
        .flat_map(|last| [22u16, 80, 443].map(move |p| (last, p)))
        .map(|(last, p)| {
            let d = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 51, 100, last), p);
            synth::tcp(&scanner(33000 + p), &d, Flags::SYN, 1, 0, &[])
        })
        .collect();
    testbed::exchange(&nic, &probes, now);
    // A live web server inside answers a client: learned as a host, never a decoy.
    let web = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(198, 51, 100, 10), 80);
    let client = Endpoint::new([2; 6], Ipv4Addr::new(203, 0, 113, 50), 51000);
    testbed::exchange(
        &nic,
        &[synth::tcp(&web, &client, Flags::SYN_ACK, 1, 2, &[])],
        now,
    );
    // The worm uses what it found: a connection with data is a bite.
    let worm = Endpoint::new([2; 6], Ipv4Addr::new(192, 0, 2, 66), 40000);
    let decoys = (20..250u8).map(|last| IpAddr::from(Ipv4Addr::new(198, 51, 100, last)));
    let bitten = testbed::bite_a_decoy(&nic, &worm, decoys, now).unwrap();
    println!(
        "worm 192.0.2.66 bit decoy {}; try:\n  baitwallctl --socket {} status\n  \
         curl -s http://127.0.0.1:9477/metrics\n(ends in {seconds} s or on Ctrl-C)",
        bitten.ip,
        dir.join("control.sock").display()
    );
    let until = Instant::now() + Duration::from_secs(seconds);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        testbed::exchange(&nic, &probes, now);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}
