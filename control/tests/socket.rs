//! The control socket over a real Unix socket: commands, and every kind of
//! bad input with its stable code, a stalled client, and the client limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;
use common::{Client, code, served, start};

#[test]
fn commands_work_and_bad_input_gets_stable_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, socket, handle) = start(dir.path(), 8, Duration::from_secs(5));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let mut c = Client::new(&socket);
    let hello = c.ask(r#"{"version": "1"}"#);
    assert_eq!(hello["message"]["protocol"], "1");
    let v = c.ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.7", "for": "1h", "reason": "manual"}}"#);
    assert_eq!(v["return"], "OK", "{v}");
    assert_eq!(v["message"]["prefix"], "192.0.2.7/32");
    let list = c.ask(r#"{"command": "block-list", "arguments": {"covering": "192.0.2.7"}}"#);
    assert_eq!(list["message"].as_array().unwrap().len(), 1);
    assert_eq!(list["message"][0]["reason"], "manual");
    let v = c.ask(r#"{"command": "allow-add", "arguments": {"target": "203.0.113.0/24"}}"#);
    assert_eq!(v["return"], "OK", "{v}");
    assert_eq!(
        c.ask(r#"{"command": "allow-list"}"#)["message"][0],
        "203.0.113.0/24"
    );
    let status = c.ask(r#"{"command": "status"}"#);
    assert_eq!(status["message"]["attached"], false);
    assert_eq!(status["message"]["blocks"], 1);
    // Bad input: each with its code, and nothing changes.
    for (line, want) in [
        ("not json", "not_json"),
        ("[1]", "not_an_object"),
        (r#"{"command": "reboot"}"#, "unknown_command"),
        (r#"{"command": "block-add"}"#, "missing_argument"),
        (
            r#"{"command": "status", "arguments": {"x": 1}}"#,
            "unexpected_argument",
        ),
        (
            r#"{"command": "block-add", "arguments": {"target": 7}}"#,
            "wrong_type",
        ),
        (
            r#"{"command": "block-add", "arguments": {"target": "300.1.1.1"}}"#,
            "invalid_address",
        ),
        (
            r#"{"command": "block-add", "arguments": {"target": "192.0.2.7/24"}}"#,
            "host_bits_set",
        ),
        (
            r#"{"command": "block-add", "arguments": {"target": "192.0.2.8", "for": "999days"}}"#,
            "bad_duration",
        ),
        (
            r#"{"command": "block-remove", "arguments": {"target": "192.0.2.99"}}"#,
            "not_found",
        ),
        (
            r#"{"command": "events", "arguments": {"since": "last tuesday"}}"#,
            "bad_time",
        ),
        (
            r#"{"command": "events", "arguments": {"kind": "everything"}}"#,
            "invalid_kind",
        ),
        (
            r#"{"command": "events", "arguments": {"source": "192.0.2.0/24"}}"#,
            "invalid_address",
        ),
        (
            r#"{"command": "subscribe", "arguments": {"event_types": "bite"}}"#,
            "wrong_type",
        ),
        (
            r#"{"command": "decoys", "arguments": {"sample": 1000}}"#,
            "out_of_range",
        ),
        // Decoys are described by the dataplane, and there is none here.
        (
            r#"{"command": "decoys", "arguments": {"address": "198.51.100.7"}}"#,
            "unavailable",
        ),
        // Started without a configuration file.
        (r#"{"command": "config-reload"}"#, "not_configured"),
        // A block never covers an allowlisted address: not around it, not on it.
        (
            r#"{"command": "block-add", "arguments": {"target": "203.0.0.0/16"}}"#,
            "allowed",
        ),
        (
            r#"{"command": "block-add", "arguments": {"target": "203.0.113.9"}}"#,
            "allowed",
        ),
    ] {
        assert_eq!(code(&c.ask(line)), want, "{line}");
    }
    let list = c.ask(r#"{"command": "block-list"}"#);
    assert_eq!(
        list["message"].as_array().unwrap().len(),
        1,
        "bad input changed nothing"
    );
    let v = c.ask(r#"{"command": "block-remove", "arguments": {"target": "192.0.2.7"}}"#);
    assert_eq!(v["return"], "OK", "{v}");
    assert!(
        c.ask(r#"{"command": "block-list"}"#)["message"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A line over 64 KiB is refused and the connection closed.
    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    assert_eq!(code(&c.send_raw(&long)), "line_too_long");
    // Shutdown over the socket.
    let mut c = Client::new(&socket);
    assert_eq!(c.ask(r#"{"command": "shutdown"}"#)["return"], "OK");
    handle.join().unwrap();
    assert!(stop.load(Ordering::Relaxed));
}

#[test]
fn the_socket_gets_its_mode_and_group() {
    use std::os::unix::fs::MetadataExt;
    // Any group the machine has other than root's own: the test runs as
    // root in CI (where it must run) and may not elsewhere.
    use baitwall_dataplane::testbed::prerequisite;
    if !prerequisite(
        nix::unistd::Uid::effective().is_root(),
        "the socket group check needs root",
    ) {
        return;
    }
    let Some(group) = ["daemon", "nogroup", "users"]
        .into_iter()
        .find_map(|g| nix::unistd::Group::from_name(g).ok().flatten())
    else {
        prerequisite(
            false,
            "no daemon, nogroup or users group to give the socket",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/control.sock");
    let settings = |group: &str| {
        baitwall_control::daemon::Settings::new(baitwall_control::config::ControlConfig {
            region: dir.path().join("absent.region"),
            database: dir.path().join("state.db"),
            socket: baitwall_control::config::SocketSection {
                path: socket.clone(),
                mode: "0640".into(),
                group: Some(group.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = {
        let (stop, settings) = (stop.clone(), settings(&group.name));
        std::thread::spawn(move || baitwall_control::daemon::run(&settings, &stop, |_| {}).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "socket not up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.gid(), group.gid.as_raw());
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(!socket.exists(), "removed at exit");
    // An unknown group stops the start with a clear error.
    let settings = settings("no-such-group-bw");
    let e = baitwall_control::daemon::run(&settings, &stop, |_| {}).unwrap_err();
    assert!(format!("{e:#}").contains("no-such-group-bw"), "{e:#}");
}

#[test]
fn a_stalled_client_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, socket, handle) = start(dir.path(), 3, Duration::from_millis(300));
    // Half a line, then silence.
    let mut stalled = Client::new(&socket);
    stalled.w.write_all(br#"{"command": "sta"#).unwrap();
    assert_eq!(code(&stalled.read()), "timeout");
    // The server is still there for others.
    assert_eq!(
        Client::new(&socket).ask(r#"{"command": "version"}"#)["return"],
        "OK"
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}

#[test]
fn clients_past_the_limit_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, socket, handle) = start(dir.path(), 3, Duration::from_secs(30));
    // Three clients held open (retrying while start()'s readiness probe
    // still holds a slot).
    let mut held: Vec<Client> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < 3 {
        if let Some(c) = served(&socket) {
            held.push(c);
        }
        assert!(Instant::now() < deadline, "could not hold three clients");
    }
    let mut extra = Client::new(&socket);
    assert_eq!(code(&extra.read()), "too_many_clients");
    // When one leaves, a newcomer is served.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(&socket).is_none() {
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}

#[test]
fn a_thousand_clients_at_once_are_served_up_to_the_limit_and_the_rest_refused() {
    // 1,000 client ends plus the server's: make sure the soft fd limit allows it.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < 4096 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    // The default limit of a configuration file.
    let (stop, socket, handle) = start(dir.path(), 64, Duration::from_secs(30));
    let mut clients: Vec<Client> = (0..1000).map(|_| Client::new(&socket)).collect();
    let (mut answered, mut refused) = (0, 0);
    for c in &mut clients {
        // A refused client's socket is closed after its NOK line: the write
        // may fail, the line is there to read either way.
        let _ = c.w.write_all(b"{\"command\": \"version\"}\n");
        let mut line = String::new();
        c.r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["return"] == "OK" {
            answered += 1;
        } else {
            assert_eq!(code(&v), "too_many_clients");
            refused += 1;
        }
    }
    assert_eq!(answered + refused, 1000);
    assert!((1..=64).contains(&answered), "{answered} served");
    assert!(refused >= 936, "{refused} refused");
    // Everyone leaves; the server and the control loop are fine.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        if let Some(c) = served(&socket) {
            break c;
        }
        assert!(Instant::now() < deadline, "no slot came back");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(c.ask(r#"{"command": "status"}"#)["return"], "OK");
    drop(c);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}
