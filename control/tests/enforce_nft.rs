//! The nftables layer against a real kernel: control keeps a set in a
//! namespace of the test's own in sync with its blocks, and real TCP
//! connections show what the set drops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use baitwall_control::config::{ControlConfig, MetricsSection, NftSection, SocketSection};
use baitwall_control::daemon::{self, Settings};
use serde_json::Value;

mod common;
use common::netns::{Daemon, Netns, eventually, prerequisites, veth};
use common::{Client, bite, eve_schema_errors, scrape_text};

/// The elements of a set: (value as text, timeout, expires) per element.
fn elements(fw: &Netns, set: &str) -> Vec<(String, Option<u64>, Option<u64>)> {
    let out = fw.run(&["nft", "-j", "list", "set", "inet", "baitwall", set]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    let set = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("set"))
        .unwrap()
        .clone();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        v => format!(
            "{}/{}",
            v["prefix"]["addr"].as_str().unwrap(),
            v["prefix"]["len"]
        ),
    };
    set["elem"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| match e.get("elem") {
                    Some(i) => (
                        text(&i["val"]),
                        i["timeout"].as_u64(),
                        i["expires"].as_u64(),
                    ),
                    None => (text(e), None, None),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `value` is out of `set`.
fn gone(fw: &Netns, set: &str, value: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{value} out of {set}"),
        || element(fw, set, value).is_none().then_some(()),
    );
}

fn element(fw: &Netns, set: &str, value: &str) -> Option<(Option<u64>, Option<u64>)> {
    elements(fw, set)
        .into_iter()
        .find(|e| e.0 == value)
        .map(|e| (e.1, e.2))
}

/// A firewall namespace serving HTTP on 192.0.2.1:8080 and a network
/// behind it (namespaces tagged `tag`fw and `tag`src) whose `sources` can
/// connect to it.
fn firewall(tag: &str, dir: &std::path::Path, sources: &[&str]) -> (Netns, Netns, Daemon) {
    let fw = Netns::new(&format!("{tag}fw"));
    let net = Netns::new(&format!("{tag}src"));
    veth(&fw, "fw0", &net, "src0");
    fw.run(&["ip", "addr", "add", "192.0.2.1/24", "dev", "fw0"]);
    for s in sources {
        net.run(&["ip", "addr", "add", &format!("{s}/24"), "dev", "src0"]);
    }
    let server = fw.spawn(
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "192.0.2.1",
            "8080",
        ],
        &[],
        &dir.join("http.log"),
    );
    eventually(Duration::from_secs(10), "the firewall's server", || {
        net.tcp_reaches(sources[0], "192.0.2.1", 8080).then_some(())
    });
    (fw, net, server)
}

#[test]
fn the_nftables_set_follows_bites_extensions_unblocks_and_cidr_blocks() {
    if !prerequisites("the nftables test", &["ip", "nft", "python3"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The firewall and a network behind it where the worm (192.0.2.66) and
    // a bystander (192.0.2.200) live.
    let (fw, net, _server) = firewall("nft", dir.path(), &["192.0.2.66", "192.0.2.200"]);

    let socket = dir.path().join("control.sock");
    let region = dir.path().join("bw.region");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = Settings::new(ControlConfig {
        region: region.clone(),
        database: dir.path().join("state.db"),
        socket: SocketSection {
            path: socket.clone(),
            ..SocketSection::default()
        },
        metrics: MetricsSection {
            listen: Some(([127, 0, 0, 1], metrics_port).into()),
        },
        nftables: Some(NftSection {
            command: fw.argv(&["nft"]),
            // Long enough that every change below goes through the
            // incremental path; failures still reconcile at once.
            reconcile_interval: Duration::from_secs(3600),
            ..NftSection::default()
        }),
        ..ControlConfig::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let control = {
        let stop = stop.clone();
        std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).unwrap())
    };
    let (dataplane, nic) = common::start_dataplane(&region, 0);
    eventually(Duration::from_secs(10), "control's socket", || {
        std::os::unix::net::UnixStream::connect(&socket).ok()
    });
    let mut c = Client::new(&socket);
    let mut events = Client::new(&socket);
    let sub = events.ask(r#"{"command": "subscribe", "arguments": {"event_types": ["enforce"]}}"#);
    assert_eq!(sub["return"], "OK", "{sub}");

    // A bite: the worm is blocked for the policy's hour, in the set with
    // the remaining time as its timeout, and its packets are dropped.
    assert!(net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080));
    eventually(Duration::from_secs(20), "control attached", || {
        (c.ask(r#"{"command": "status"}"#)["message"]["attached"] == true).then_some(())
    });
    bite(&nic);
    let (timeout, expires) = eventually(Duration::from_secs(20), "the worm in the set", || {
        element(&fw, "blocked4", "192.0.2.66")
    });
    // The block's remaining time (a second may pass between the store and the nft run).
    assert!(
        timeout.is_some_and(|t| (3598..=3600).contains(&t)),
        "{timeout:?}"
    );
    assert!(expires.unwrap() > 3500, "{expires:?}");
    assert!(
        !net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080),
        "the worm is dropped"
    );
    assert!(
        net.tcp_reaches("192.0.2.200", "192.0.2.1", 8080),
        "the bystander is not"
    );

    // Extended: the element is refreshed with the new remaining time.
    let r =
        c.ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.66", "for": "2h"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    eventually(Duration::from_secs(10), "the refreshed element", || {
        let t = element(&fw, "blocked4", "192.0.2.66")?.0?;
        (7198..=7200).contains(&t).then_some(())
    });

    // Unblocked: out of the set, and the worm's packets pass again.
    let r = c.ask(r#"{"command": "block-remove", "arguments": {"target": "192.0.2.66"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    gone(&fw, "blocked4", "192.0.2.66");
    assert!(net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080));

    // A CIDR block matches the addresses inside its range, and only them.
    let r = c
        .ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.64/26", "for": "10m"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    let r = c.ask(r#"{"command": "block-add", "arguments": {"target": "2001:db8:66::/64", "for": "permanent"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    eventually(Duration::from_secs(10), "the /26 in the set", || {
        element(&fw, "blocked4", "192.0.2.64/26")
    });
    assert!(
        !net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080),
        "inside the /26"
    );
    assert!(
        net.tcp_reaches("192.0.2.200", "192.0.2.1", 8080),
        "outside the /26"
    );
    let v6 = eventually(Duration::from_secs(10), "the /64 in the set", || {
        element(&fw, "blocked6", "2001:db8:66::/64")
    });
    assert_eq!(v6, (None, None), "a permanent block has no timeout");

    // An element gone behind control's back (as a timed-out one is): its
    // unblock still goes through, in a batch that cannot fail on it.
    fw.run(&[
        "nft",
        "delete",
        "element",
        "inet",
        "baitwall",
        "blocked6",
        "{ 2001:db8:66::/64 }",
    ]);
    let r = c.ask(r#"{"command": "block-remove", "arguments": {"target": "2001:db8:66::/64"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    let r =
        c.ask(r#"{"command": "block-add", "arguments": {"target": "198.51.100.9", "for": "1h"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    eventually(Duration::from_secs(10), "the next block in the set", || {
        element(&fw, "blocked4", "198.51.100.9")
    });
    let status = c.ask(r#"{"command": "status"}"#);
    assert_eq!(
        status["message"]["enforcement"]["nftables"]["failures"], 0,
        "no batch failed: {status}"
    );

    // The firewall loses its table behind control's back: the next update
    // fails, is reported, and the retry puts everything back.
    fw.run(&["nft", "delete", "table", "inet", "baitwall"]);
    let r =
        c.ask(r#"{"command": "block-add", "arguments": {"target": "203.0.113.9", "for": "1h"}}"#);
    assert_eq!(
        r["return"], "OK",
        "control's own state never waits on the firewall: {r}"
    );
    let failing = events.read();
    assert_eq!(failing["baitwall"]["state"], "failing", "{failing}");
    assert!(
        failing["baitwall"]["error"]
            .as_str()
            .unwrap()
            .contains("nft"),
        "{failing}"
    );
    let recovered = events.read();
    assert_eq!(recovered["baitwall"]["state"], "ok", "{recovered}");
    for e in [&failing, &recovered] {
        assert_eq!(eve_schema_errors(e), Vec::<String>::new(), "{e}");
    }
    let all = elements(&fw, "blocked4");
    assert!(all.iter().any(|e| e.0 == "203.0.113.9"), "{all:?}");
    assert!(all.iter().any(|e| e.0 == "192.0.2.64/26"), "{all:?}");
    assert!(
        !net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080),
        "the chain is back too"
    );
    let status = c.ask(r#"{"command": "status"}"#);
    let nft = &status["message"]["enforcement"]["nftables"];
    assert_eq!(nft["state"], "ok", "{status}");
    assert!(nft["failures"].as_u64().unwrap() >= 1, "{status}");
    assert!(nft["reconciles"].as_u64().unwrap() >= 2, "{status}");
    // The same for Prometheus (refreshed once a second).
    eventually(Duration::from_secs(10), "the nftables metrics", || {
        let body = scrape_text(metrics_port);
        let value = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse::<u64>().ok())
        };
        (value("baitwall_nftables_up") == Some(1)
            && value("baitwall_nftables_failures_total") >= Some(1)
            && value("baitwall_nftables_elements") >= Some(3))
        .then_some(())
    });

    // Control stops: the firewall keeps enforcing.
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dataplane.stop();
    assert!(element(&fw, "blocked4", "192.0.2.64/26").is_some());
}

/// Control with `[nftables]` driving `fw`, its state in `dir`, until `stop`.
fn start_control(
    fw: &Netns,
    dir: &std::path::Path,
    hosts: Option<(&str, &str)>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let socket = dir.join("control.sock");
    let (hosts4, hosts6) = hosts.unwrap_or_default();
    let settings = Settings::new(ControlConfig {
        region: dir.join("bw.region"),
        database: dir.join("state.db"),
        socket: SocketSection {
            path: socket.clone(),
            ..SocketSection::default()
        },
        nftables: Some(NftSection {
            command: fw.argv(&["nft"]),
            hosts4: hosts4.into(),
            hosts6: hosts6.into(),
            reconcile_interval: Duration::from_secs(3600),
            ..NftSection::default()
        }),
        ..ControlConfig::default()
    });
    let stop = stop.clone();
    let control = std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).unwrap());
    eventually(Duration::from_secs(10), "control's socket", || {
        std::os::unix::net::UnixStream::connect(&socket).ok()
    });
    control
}

#[test]
fn host_sets_take_single_addresses_and_allow_entries_are_let_through() {
    if !prerequisites("the nftables host-set test", &["ip", "nft", "python3"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (fw, net, _server) = firewall(
        "nfth",
        dir.path(),
        &["192.0.2.66", "192.0.2.200", "192.0.2.201"],
    );
    let socket = dir.path().join("control.sock");

    // Without host sets: the worm's address is an element of the interval set.
    let stop = Arc::new(AtomicBool::new(false));
    let control = start_control(&fw, dir.path(), None, &stop);
    let mut c = Client::new(&socket);
    let r =
        c.ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.66", "for": "1h"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    eventually(Duration::from_secs(10), "the worm in blocked4", || {
        element(&fw, "blocked4", "192.0.2.66")
    });
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    drop(c);

    // The operator turns host sets on: the first reconcile moves the
    // address across, keeping its time left, and the worm stays dropped.
    let stop = Arc::new(AtomicBool::new(false));
    let control = start_control(&fw, dir.path(), Some(("hosts4", "hosts6")), &stop);
    let mut c = Client::new(&socket);
    let (timeout, _) = eventually(Duration::from_secs(10), "the worm in hosts4", || {
        element(&fw, "hosts4", "192.0.2.66")
    });
    assert!(
        timeout.is_some_and(|t| (3500..=3600).contains(&t)),
        "{timeout:?}"
    );
    assert_eq!(element(&fw, "blocked4", "192.0.2.66"), None);
    assert!(!net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080));
    assert!(net.tcp_reaches("192.0.2.200", "192.0.2.1", 8080));

    // A prefix goes to the interval set; the address inside it stays in
    // its hash set (no overlap to refuse there) and outlives the prefix.
    let r = c.ask(
        r#"{"command": "block-add", "arguments": {"target": "192.0.2.192/26", "for": "10m"}}"#,
    );
    assert_eq!(r["return"], "OK", "{r}");
    let r = c.ask(
        r#"{"command": "block-add", "arguments": {"target": "2001:db8::66", "for": "permanent"}}"#,
    );
    assert_eq!(r["return"], "OK", "{r}");
    eventually(Duration::from_secs(10), "the /26 and the IPv6 host", || {
        element(&fw, "blocked4", "192.0.2.192/26")?;
        element(&fw, "hosts6", "2001:db8::66")
    });
    assert!(
        !net.tcp_reaches("192.0.2.200", "192.0.2.1", 8080),
        "inside the /26"
    );
    let r = c.ask(r#"{"command": "block-remove", "arguments": {"target": "192.0.2.192/26"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    gone(&fw, "blocked4", "192.0.2.192/26");
    assert!(net.tcp_reaches("192.0.2.200", "192.0.2.1", 8080));
    assert!(!net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080));

    // Unblocked: out of its host set.
    let r = c.ask(r#"{"command": "block-remove", "arguments": {"target": "192.0.2.66"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    gone(&fw, "hosts4", "192.0.2.66");
    assert!(net.tcp_reaches("192.0.2.66", "192.0.2.1", 8080));

    // An address allowed inside a blocked prefix gets through the
    // firewall, as through the dataplane; its neighbour does not. (The
    // block first: a block added over an allow entry is refused.)
    let r = c.ask(
        r#"{"command": "block-add", "arguments": {"target": "192.0.2.192/26", "for": "10m"}}"#,
    );
    assert_eq!(r["return"], "OK", "{r}");
    let r = c.ask(r#"{"command": "allow-add", "arguments": {"target": "192.0.2.200"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    eventually(
        Duration::from_secs(10),
        "the allow entry and the /26",
        || {
            element(&fw, "blocked4", "192.0.2.192/26")?;
            element(&fw, "allowed4", "192.0.2.200")
        },
    );
    assert!(net.tcp_reaches("192.0.2.200", "192.0.2.1", 8080), "allowed");
    assert!(
        !net.tcp_reaches("192.0.2.201", "192.0.2.1", 8080),
        "blocked"
    );
    let status = c.ask(r#"{"command": "status"}"#);
    assert_eq!(
        status["message"]["enforcement"]["nftables"]["allowed"], 1,
        "{status}"
    );
    // The entry goes: so does the carve-out.
    let r = c.ask(r#"{"command": "allow-remove", "arguments": {"target": "192.0.2.200"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    gone(&fw, "allowed4", "192.0.2.200");
    assert!(!net.tcp_reaches("192.0.2.200", "192.0.2.1", 8080));

    let status = c.ask(r#"{"command": "status"}"#);
    assert_eq!(
        status["message"]["enforcement"]["nftables"]["failures"], 0,
        "{status}"
    );
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
}
