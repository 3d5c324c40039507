//! The dataplane on AF_XDP in the lab (deploy/lab): inline between the
//! lab's veths, in the appliance's namespace (a thread of this test joins
//! it), one worker (a veth has one queue). The benign client reaches the
//! real server through it, decoys answer, the worm that bites is blocked.
//! Needs root, iproute2, ethtool, curl and /usr/bin/python3; skips with
//! one line without them, and fails under CI=true.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baitwall_dataplane::config::Config;
use baitwall_dataplane::engine::persona::PersonaMaker;
use baitwall_dataplane::testbed::{prerequisite, tool};

const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/lab");

struct Lab(String);

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(format!("{LAB}/down"))
            .arg(&self.0)
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_file(format!("/dev/shm/{}.region", self.0));
    }
}

fn fetch(prefix: &str, source: &str, url: &str) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{prefix}-out"),
            "curl",
            "-s",
            "--max-time",
            "3",
            "--interface",
            source,
            url,
        ])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_worm_is_blocked_through_af_xdp() {
    if !prerequisite(
        nix::unistd::Uid::effective().is_root(),
        "the lab needs root",
    ) || !["ip", "ethtool", "curl"].iter().all(|t| tool(t).is_some())
        || !prerequisite(
            std::path::Path::new("/usr/bin/python3").exists(),
            "/usr/bin/python3 is not installed",
        )
    {
        return;
    }
    let lab = Lab(format!("bwx{}", std::process::id() % 100_000));
    let status = Command::new(format!("{LAB}/up"))
        .arg(&lab.0)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut text = std::fs::read_to_string(format!("{LAB}/baitwall.toml"))
        .unwrap()
        .replace(
            "/dev/shm/bwlab.region",
            &format!("/dev/shm/{}.region", lab.0),
        )
        .replace("cores = [0, 1]", "cores = [0]");
    let (start, end) = (text.find("[port]").unwrap(), text.find("[flows]").unwrap());
    text.replace_range(
        start..end,
        "[port]\nbackend = \"afxdp\"\nmode = \"inline\"\noutside = \"ext\"\ninside = \"int\"\nxdp_mode = \"native\"\n\n",
    );
    let config = Config::parse(&text, "lab").unwrap();
    // The decoy the worm will find: dark, with 80 and 443 open.
    let maker = PersonaMaker::new(&config.deception.as_ref().unwrap().secret_bytes());
    let decoy = (20..40u8)
        .map(|last| Ipv4Addr::new(198, 51, 100, last))
        .find(|a| {
            let p = maker.persona(&a.to_ipv6_mapped().octets());
            p.is_open(80) && p.is_open(443)
        })
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let appliance = {
        let (stop, ns) = (stop.clone(), format!("/run/netns/{}-bw", lab.0));
        std::thread::spawn(move || {
            let fd = std::fs::File::open(ns).unwrap();
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            baitwall_dataplane::run::run(&config, stop, |_| {})
        })
    };
    // Through the appliance once it is up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        if let Some(p) = fetch(&lab.0, "203.0.113.10", "http://198.51.100.10/") {
            break p;
        }
        assert!(
            !appliance.is_finished(),
            "the appliance stopped: {:?}",
            appliance.join()
        );
        assert!(Instant::now() < deadline, "never reached the web server");
    };
    assert_eq!(page, "the real web server of 198.51.100.10\n");
    let worm = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-out", lab.0),
            "/usr/bin/python3",
            &format!("{LAB}/worm.py"),
            &decoy.to_string(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&worm.stdout);
    assert!(said.contains("80 connected"), "{said}");
    assert_eq!(
        fetch(&lab.0, "203.0.113.66", "http://198.51.100.10/"),
        None,
        "the worm is blocked"
    );
    assert!(fetch(&lab.0, "203.0.113.10", "http://198.51.100.10/").is_some());
    stop.store(true, Ordering::Relaxed);
    let outcome = appliance.join().unwrap().unwrap();
    assert!(outcome.dataplane.port.starts_with("afxdp:inline:ext,int"));
    assert!(outcome.dataplane.snapshot.total.latched >= 1);
}
