//! `baitwallctl` against a running control: golden human output, `--json`,
//! and the exit status (0 OK, 1 refused, 2 unreachable).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::start;

const CTL: &str = env!("CARGO_BIN_EXE_baitwallctl");

fn ctl(socket: &std::path::Path, args: &[&str]) -> Output {
    Command::new(CTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn baitwallctl_speaks_for_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, socket, handle) = start(dir.path(), 8, Duration::from_secs(5));

    let o = ctl(
        &socket,
        &[
            "block",
            "add",
            "192.0.2.7",
            "--for",
            "permanent",
            "--reason",
            "manual",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ctl(
        &socket,
        &[
            "block",
            "add",
            "2001:db8:bad::/48",
            "--for",
            "permanent",
            "--reason",
            "port",
        ],
    );
    assert!(o.status.success());
    // Golden table: permanent blocks (expiry 0) so the output is fixed.
    let o = ctl(&socket, &["block", "list"]);
    assert_eq!(
        stdout(&o),
        "PREFIX             EXPIRES  REASON  ORIGIN\n192.0.2.7/32       -        manual  local\n2001:db8:bad::/48  -        port    local\n"
    );
    // Events: one line each, time first.
    let o = ctl(&socket, &["events", "--kind", "block"]);
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with("  block    192.0.2.7/32  manual, permanent (manual)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with("  block    2001:db8:bad::/48  manual, permanent (port)"),
        "{}",
        lines[1]
    );
    // Stats without a dataplane: control's own figures only.
    let o = ctl(&socket, &["stats"]);
    assert_eq!(
        stdout(&o),
        "no dataplane attached\nblocks 2  events stored 2  subscribers 0  ring drops 0\n"
    );
    // Decoys are described by the dataplane: without one, refused (exit 1).
    let o = ctl(&socket, &["decoys", "198.51.100.7"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unavailable"));
    // Started without a file: nothing to reload.
    let o = ctl(&socket, &["config", "reload"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not_configured"));
    // The same as JSON, for scripts.
    let o = ctl(
        &socket,
        &["--json", "block", "list", "--covering", "192.0.2.7"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["return"], "OK");
    assert_eq!(v["message"][0]["prefix"], "192.0.2.7/32");
    // Refused: exit 1, the code on stderr, nothing on stdout.
    let o = ctl(&socket, &["block", "add", "192.0.2.7/24"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("host_bits_set"));
    assert!(o.stdout.is_empty());
    let o = ctl(&socket, &["allow", "remove", "203.0.113.1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not_found"));
    // Objects print as key/value lines.
    let o = ctl(&socket, &["status"]);
    assert!(stdout(&o).contains("attached"), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("blocks") && l.ends_with(" 2"))
    );
    // Unreachable: exit 2.
    let o = ctl(&dir.path().join("nothing.sock"), &["status"]);
    assert_eq!(o.status.code(), Some(2));

    let o = ctl(&socket, &["shutdown"]);
    assert!(o.status.success());
    handle.join().unwrap();
    assert!(stop.load(Ordering::Relaxed));
}
