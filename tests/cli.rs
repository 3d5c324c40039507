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
        "port bite -> LATCHED",
        "latched: 192.0.2.66",
        "the spoofed client 203.0.113.10 was not blocked",
        "702 frames in, 692 out",
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
    assert_eq!(tcpdump_count(&tcpdump, &input, ""), 702);
    assert_eq!(tcpdump_count(&tcpdump, &output, ""), 692);
    // The malformed frames came from 192.0.2.99 and none went through.
    assert_eq!(tcpdump_count(&tcpdump, &input, "src host 192.0.2.99"), 3);
    assert_eq!(tcpdump_count(&tcpdump, &output, "src host 192.0.2.99"), 0);
    // Decoys answered the worm's sweep; only the SYNs to live hosts went through.
    let syn = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
    assert_eq!(
        tcpdump_count(&tcpdump, &output, &format!("src host 192.0.2.66 and {syn}")),
        4
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
    assert_eq!(total["rx_packets"], 702);
    assert_eq!(total["tx_packets"], 699);
    assert_eq!(total["dropped"], 3);
    assert_eq!(v["replay"]["frames_out"], 699);
    assert_eq!(v["interrupted"], false);
    if let Some(tcpdump) = tool("tcpdump") {
        assert_eq!(
            tcpdump_count(&tcpdump, &dir.path().join("out.pcap"), ""),
            699
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
    assert!(rx > 0 && rx < 702, "rx {rx}");
    assert_eq!(
        rx,
        total["tx_packets"].as_u64().unwrap() + total["dropped"].as_u64().unwrap()
    );
}
