//! End to end through the `baitwall` binary: the demo, `run` on a capture,
//! `check-config`, and a clean stop on SIGINT. Output captures are read back
//! with tcpdump, a reader we did not write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_baitwall");

use baitwall_dataplane::testbed::tool;

fn baitwall(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Lines tcpdump prints for `filter` over `pcap`.
fn tcpdump_count(tcpdump: &Path, pcap: &Path, filter: &str) -> usize {
    let mut cmd = Command::new(tcpdump);
    cmd.args(["-nn", "-r"]).arg(pcap);
    if !filter.is_empty() {
        cmd.arg(filter);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Runs the demo keeping its files in `dir/demo`; returns the scenario capture.
fn demo_capture(dir: &Path) -> PathBuf {
    let keep = dir.join("demo");
    let out = baitwall(&["demo", "--keep", keep.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    keep.join("scenario.pcap")
}

/// Writes a one-worker, unpinned pcap configuration replaying `rx`, with
/// `port_extra` lines added to `[port]`.
fn one_worker_config(dir: &Path, name: &str, rx: &Path, port_extra: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[workers]\ncores = [0]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"{}\"\n{port_extra}",
        rx.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn demo_summarises_and_its_captures_read_in_tcpdump() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let out = baitwall(&["demo", "--keep", keep.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "what crossed the appliance",
        "malformed headers                           3          0          0          3",
        "port bite (strong proof) -> LATCHED",
        "latched: 192.0.2.66",
        "the spoofed client 203.0.113.10 was not blocked",
        "1,483 frames in, 1,473 out",
        "quiet server 198.51.100.13 (not declared live, never speaks first): 17 of its 17 frames forwarded, 0 answered by a decoy in its name: kept safe",
        "addresses claimed (the router's requests went unanswered): 249;",
        "[control #1] block 192.0.2.66/32",
        "[control #2] attached to dataplane instance",
        "(only the changes since the workers' generation)",
        "\"prefix\":\"192.0.2.66/32\"",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("203.0.113.10 (worker"),
        "the spoofed client was latched:\n{stdout}"
    );
    let Some(tcpdump) = tool("tcpdump") else {
        return;
    };
    let input = keep.join("scenario.pcap");
    let output = keep.join("forwarded.pcap");
    assert_eq!(tcpdump_count(&tcpdump, &input, ""), 1483);
    assert_eq!(tcpdump_count(&tcpdump, &output, ""), 1473);
    // The malformed frames came from 192.0.2.99 and none went through.
    assert_eq!(tcpdump_count(&tcpdump, &input, "src host 192.0.2.99"), 3);
    assert_eq!(tcpdump_count(&tcpdump, &output, "src host 192.0.2.99"), 0);
    // Decoys answered the worm's sweep; only the SYNs to live hosts (the
    // router, the three servers and the quiet one) went through.
    let syn = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
    assert_eq!(
        tcpdump_count(&tcpdump, &output, &format!("src host 192.0.2.66 and {syn}")),
        5
    );
    // The quiet server answered its own ARP, and its client's request
    // reached it.
    assert_eq!(
        tcpdump_count(
            &tcpdump,
            &output,
            "src host 203.0.113.150 and dst host 198.51.100.13"
        ),
        tcpdump_count(
            &tcpdump,
            &input,
            "src host 203.0.113.150 and dst host 198.51.100.13"
        ),
    );
    let decoy_syn_acks =
        "dst host 192.0.2.66 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)";
    assert!(tcpdump_count(&tcpdump, &output, decoy_syn_acks) > 100);
    // After the latch, nothing of the worm's reached port 443 anywhere.
    assert_eq!(
        tcpdump_count(
            &tcpdump,
            &output,
            "src host 192.0.2.66 and tcp dst port 443"
        ),
        0
    );
    // The impersonated client's own conversation with the web server flowed.
    assert_eq!(
        tcpdump_count(
            &tcpdump,
            &output,
            "src host 203.0.113.10 and dst host 198.51.100.10"
        ),
        tcpdump_count(
            &tcpdump,
            &input,
            "src host 203.0.113.10 and dst host 198.51.100.10"
        )
    );
}

#[test]
fn run_on_a_capture_reports_json_that_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = demo_capture(dir.path());
    let config = one_worker_config(dir.path(), "bw.toml", &scenario, "tx = \"out.pcap\"\n");
    let out = baitwall(&["run", "--config", config.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = &v["stats"]["total"];
    // No [deception] section: forward only, drop only what lies.
    assert_eq!(total["rx_packets"], 1483);
    assert_eq!(total["tx_packets"], 1480);
    assert_eq!(total["dropped"], 3);
    assert_eq!(v["replay"]["frames_out"], 1480);
    assert_eq!(v["interrupted"], false);
    if let Some(tcpdump) = tool("tcpdump") {
        assert_eq!(
            tcpdump_count(&tcpdump, &dir.path().join("out.pcap"), ""),
            1480
        );
    }
}

#[test]
fn check_config_accepts_the_example_and_names_bad_fields() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/baitwall.toml");
    let out = baitwall(&["check-config", example.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[port]\nbackend = \"pcap\"\nrx = \"x.pcap\"\nbursts = 4\n",
    )
    .unwrap();
    let out = baitwall(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("unknown field `bursts`"),
        "{err}"
    );

    let out = baitwall(&[
        "run",
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

/// Every TOML under deploy/ (the lab's own aside) is a configuration a user
/// copies: each must pass its process's `check-config`. A file with a
/// `[port]` table is the dataplane's; any other is control's.
#[test]
fn every_configuration_under_deploy_passes_its_check_config() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut pending = vec![deploy.clone()];
    let mut checked = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == deploy.join("lab") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let dataplane = text.lines().any(|l| l.trim() == "[port]");
            let file = path.to_str().unwrap();
            let out = if dataplane {
                baitwall(&["check-config", file])
            } else {
                baitwall(&["control", "check-config", file])
            };
            assert!(
                out.status.success(),
                "{} check-config {file}: {}",
                if dataplane { "dataplane" } else { "control" },
                String::from_utf8_lossy(&out.stderr)
            );
            checked.push(path.strip_prefix(&deploy).unwrap().to_path_buf());
        }
    }
    checked.sort();
    for expected in ["appliance.toml", "baitwall.toml", "control.toml"] {
        assert!(
            checked.iter().any(|p| p == Path::new(expected)),
            "deploy/{expected} was not checked: {checked:?}"
        );
    }
}

/// DPDK's EAL pins the thread that starts it to its main lcore before the
/// workers start, so the dataplane's own affinity is that one core; the
/// workers must still get every core of `[workers] cores` (the appliance
/// of docs/deploy.md keeps the EAL on a housekeeping core, `-l 0`).
#[test]
fn dpdk_workers_take_their_cores_beside_the_eals_main_lcore() {
    let dpdk = Command::new("pkg-config")
        .args(["--exists", "libdpdk"])
        .status()
        .is_ok_and(|s| s.success());
    if !baitwall_dataplane::testbed::prerequisite(dpdk, "DPDK (libdpdk-dev) is not installed") {
        return;
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if !baitwall_dataplane::testbed::prerequisite(online.trim() != "0", "a second core") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dpdk.toml");
    std::fs::write(
        &config,
        "[workers]\ncores = [0, 1]\npin = true\n[port]\nbackend = \"dpdk\"\ndevice = \"net_null0\"\n\
         pool_size = 4095\neal = [\"-l\", \"0\", \"--no-huge\", \"--no-pci\", \"-m\", \"128\", \"--no-shconf\",\n\
         \"--file-prefix\", \"bwpin\", \"--vdev=net_null0\", \"--log-level=lib.eal:error\"]\n",
    )
    .unwrap();
    let stderr = dir.path().join("stderr");
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        // The EAL's runtime files go here, not to /run/dpdk.
        .env("RUNTIME_DIRECTORY", dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // A progress line: the workers run.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&stderr)
        .unwrap()
        .lines()
        .any(|l| l.starts_with("rx "))
    {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            panic!("{}", std::fs::read_to_string(&stderr).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    // The report's rows: worker, core, counters.
    let cores: Vec<(&str, &str)> = report
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() > 2 && (w[0] == "0" || w[0] == "1"))
        .map(|w| (w[0], w[1]))
        .collect();
    assert_eq!(cores, [("0", "0"), ("1", "1")], "{report}");
}

#[test]
fn sigint_stops_the_workers_cleanly_with_final_counters() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = demo_capture(dir.path());
    // A timed replay of 95 s of traffic: far longer than this test waits.
    let config = one_worker_config(dir.path(), "slow.toml", &scenario, "replay = \"timed\"\n");
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first progress line (after about a second) shows the workers are
    // running and the signal handlers installed.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.starts_with("rx "), "unexpected first line: {line:?}");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "did not stop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["interrupted"], true);
    let total = &v["stats"]["total"];
    let rx = total["rx_packets"].as_u64().unwrap();
    assert!(rx > 0 && rx < 1483, "rx {rx}");
    assert_eq!(
        rx,
        total["tx_packets"].as_u64().unwrap() + total["dropped"].as_u64().unwrap()
    );
}
