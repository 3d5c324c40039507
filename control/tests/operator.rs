//! The operator's view of a worm, end to end: a dataplane with two workers
//! on the in-memory NIC, control run from a configuration file, and every
//! surface an operator uses: a subscription, `events`, `decoys`, `stats`,
//! `status`, the EVE log (checked against docs/eve.schema.json and read by
//! jq), the Prometheus endpoint (parsed by a text-format parser), SIGHUP
//! reopening the log, `config-show`/`config-reload`, and `baitwallctl`'s
//! `events --follow` and `top`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baitwall_control::daemon::{self, Settings};
use serde_json::Value;

mod common;
use common::{Client, bite, code, eve_validator, scrape_text, start_dataplane};

const CTL: &str = env!("CARGO_BIN_EXE_baitwallctl");

fn config_text(dir: &Path, metrics_port: u16, extra_policy: &str) -> String {
    format!(
        "region = \"bw.region\"\ndatabase = \"state.db\"\n\
         [policy]\n{extra_policy}\n\
         [socket]\npath = \"control.sock\"\n\
         [eve]\npath = \"log/eve.json\"\nstats_interval = \"1s\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n# {}\n",
        dir.display()
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads subscription lines until `want` returns true for one, or fails.
fn read_until(sub: &mut Client, what: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no {what} event: {seen:?}");
        let e = sub.read();
        let done = want(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn eve_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_for_file(path: &Path, what: &str, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = eve_lines(path);
        if want(&lines) {
            return lines;
        }
        assert!(Instant::now() < deadline, "{what}: {lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_operator_follows_a_worm_through_every_surface() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("control.toml");
    std::fs::write(&file, config_text(dir.path(), port, "")).unwrap();
    let settings = Settings {
        config: baitwall_control::config::ControlConfig::load(&file).unwrap(),
        config_path: Some(file.clone()),
    };
    let socket = dir.path().join("control.sock");
    let eve = dir.path().join("log/eve.json");
    let stop = Arc::new(AtomicBool::new(false));
    let control = {
        let stop = stop.clone();
        std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).unwrap())
    };
    // Every mark is sampled, so the worm's SYN-ACK shows up as a mark.
    let (dp, nic) = start_dataplane(&dir.path().join("bw.region"), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        if let Some(mut c) = common::served(&socket) {
            let s = c.ask(r#"{"command": "status"}"#);
            if s["message"]["attached"] == true {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "control never attached");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut sub = Client::new(&socket);
    let ok = sub.ask(
        r#"{"command": "subscribe", "arguments": {"event_types": ["mark", "bite", "block"]}}"#,
    );
    assert_eq!(ok["return"], "OK", "{ok}");

    bite(&nic);

    // The subscription sees the mark, the bite and the block, in that order.
    let seen = read_until(&mut sub, "block", |e| e["event_type"] == "block");
    let types: Vec<&str> = seen
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    let first = |t: &str| types.iter().position(|x| *x == t).unwrap();
    assert!(
        first("mark") < first("bite") && first("bite") < first("block"),
        "{types:?}"
    );
    let bite_event = &seen[first("bite")];
    assert_eq!(bite_event["src_ip"], "192.0.2.66");
    assert_eq!(bite_event["baitwall"]["kind"], "data");
    assert_eq!(bite_event["baitwall"]["action"], "block");
    let decoy = bite_event["dest_ip"].as_str().unwrap().to_string();
    let persona = bite_event["baitwall"]["persona"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(seen[first("block")]["baitwall"]["prefix"], "192.0.2.66/32");

    // The history has the same objects, filtered by source and kind.
    let h = c.ask(r#"{"command": "events", "arguments": {"source": "192.0.2.66", "since": "2026-01-01T00:00:00Z"}}"#);
    let kinds: Vec<&str> = h["message"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["bite", "block"], "{h}");
    assert_eq!(h["message"][0], *bite_event);
    let only = c.ask(r#"{"command": "events", "arguments": {"kind": "block"}}"#);
    assert_eq!(only["message"].as_array().unwrap().len(), 1);

    // The decoy the worm touched, as the dataplane describes it.
    let d = c.ask(&format!(
        r#"{{"command": "decoys", "arguments": {{"address": "{decoy}"}}}}"#
    ));
    assert_eq!(d["message"][0]["state"], "dark", "{d}");
    assert_eq!(d["message"][0]["persona"], persona.as_str());
    assert!(
        d["message"][0]["open_ports"]
            .as_array()
            .unwrap()
            .contains(&80.into())
    );
    let sample = c.ask(r#"{"command": "decoys", "arguments": {"sample": 5}}"#);
    assert_eq!(sample["message"].as_array().unwrap().len(), 5, "{sample}");

    // Counters per worker and summed.
    let s = c.ask(r#"{"command": "stats"}"#)["message"].clone();
    assert_eq!(s["per_worker"].as_array().unwrap().len(), 2);
    let sum: u64 = (0..2)
        .map(|w| s["per_worker"][w]["rx_packets"].as_u64().unwrap())
        .sum();
    assert_eq!(s["total"]["rx_packets"].as_u64().unwrap(), sum);
    assert!(s["total"]["marks"]["syn_ack"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["total"]["bites"]["data"], 1);
    let st = c.ask(r#"{"command": "status"}"#)["message"].clone();
    assert_eq!(st["last_bite"]["src_ip"], "192.0.2.66");
    assert_eq!(st["workers"], 2);
    assert_eq!(st["port"], "mem:2q");

    // Prometheus: parsed by a text-format parser; names, units, labels.
    let body = scrape_text(port);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let rx: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "baitwall_rx_packets_total")
        .collect();
    assert_eq!(
        rx.len(),
        2,
        "one series per worker: {:?}",
        scrape.samples.iter().map(|s| &s.metric).collect::<Vec<_>>()
    );
    let data_bites = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "baitwall_bites_total" && s.labels.get("kind") == Some("data"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => panic!("bites are a counter"),
        })
        .sum::<f64>();
    assert_eq!(data_bites, 1.0);
    for s in &scrape.samples {
        assert!(s.metric.starts_with("baitwall_"), "{}", s.metric);
        for (k, v) in s.labels.iter() {
            assert!(["worker", "kind", "reason"].contains(&k.as_str()), "{k}");
            assert!(
                v.parse::<std::net::IpAddr>().is_err(),
                "an address in a label: {v}"
            );
        }
    }
    assert!(body.contains("# TYPE baitwall_rx_bytes_total counter"));
    // The side and claim counters: spoofed drops, claims and yields.
    for metric in [
        "baitwall_claims_total",
        "baitwall_yields_total",
        "baitwall_drops_total",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == metric),
            "{metric} in the metrics"
        );
    }
    assert!(body.contains("# HELP baitwall_claims_total Addresses claimed"));
    // Control's own figures are refreshed once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !scrape_text(port).contains("baitwall_blocks 1\n") {
        assert!(
            Instant::now() < deadline,
            "the blocks gauge never showed the block"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The event log: schema-valid lines, a stats event, read by jq.
    let lines = wait_for_file(&eve, "a stats event", |l| {
        l.iter().any(|e| e["event_type"] == "stats")
    });
    let validator = eve_validator();
    for e in &lines {
        let errors: Vec<String> = validator.iter_errors(e).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{e}: {errors:?}");
    }
    for t in ["mark", "bite", "block", "stats"] {
        assert!(
            lines.iter().any(|e| e["event_type"] == t),
            "no {t} in the log"
        );
    }
    jq_reads(&eve);

    // SIGHUP reopens the log: after an external rotation, new events go to
    // a new file of the same name.
    std::fs::rename(&eve, dir.path().join("log/eve.json.old")).unwrap();
    let pid = std::process::id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(200));
    let r = c.ask(r#"{"command": "block-add", "arguments": {"target": "203.0.113.0/24", "for": "permanent"}}"#);
    assert_eq!(r["return"], "OK");
    wait_for_file(&eve, "the manual block in the reopened log", |l| {
        l.iter()
            .any(|e| e["baitwall"]["prefix"] == "203.0.113.0/24")
    });

    // baitwallctl events --follow prints history, then new events.
    let mut follow = Command::new(CTL)
        .arg("--socket")
        .arg(&socket)
        .args([
            "--json", "events", "--follow", "--kind", "block", "--limit", "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        first["baitwall"]["prefix"], "203.0.113.0/24",
        "history first"
    );
    // Wait until the subscription is in place, then make an event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.ask(r#"{"command": "stats"}"#)["message"]["control"]["subscribers"] != 2 {
        assert!(Instant::now() < deadline, "follow never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.ask(r#"{"command": "block-remove", "arguments": {"target": "203.0.113.0/24"}}"#);
    // The stream may carry another block event first (a late bite of the
    // worm extending its block): the removal is among the next few.
    let mut next = Value::Null;
    for _ in 0..8 {
        line.clear();
        out.read_line(&mut line).unwrap();
        next = serde_json::from_str(&line).unwrap();
        if next["event_type"] == "unblock" {
            break;
        }
    }
    assert_eq!(next["event_type"], "unblock", "{next}");
    assert_eq!(next["baitwall"]["reason"], "removed");
    follow.kill().unwrap();
    follow.wait().unwrap();

    // baitwallctl top: one refresh, a row per worker and a total.
    let top = Command::new(CTL)
        .arg("--socket")
        .arg(&socket)
        .args(["top", "--count", "1", "--interval", "200ms"])
        .output()
        .unwrap();
    assert!(top.status.success());
    let screen = String::from_utf8(top.stdout).unwrap();
    for column in ["RX_MPPS", "SPOOFED/S", "CLAIMS", "YIELDS", "EVLOST"] {
        assert!(screen.contains(column), "{column}: {screen}");
    }
    for row in ["0 ", "1 ", "total"] {
        assert!(
            screen.lines().any(|l| l.starts_with(row)),
            "{row}: {screen}"
        );
    }

    // config-show, then reloads: a broken file changes nothing; a good one
    // applies the policy now and names what needs a restart.
    let shown = c.ask(r#"{"command": "config-show"}"#)["message"].clone();
    assert_eq!(shown["config"]["eve"]["stats_interval"], "1s");
    std::fs::write(&file, "[policy]\nmax_blocks = \"many\"\n").unwrap();
    let bad = c.ask(r#"{"command": "config-reload"}"#);
    assert_eq!(code(&bad), "invalid_config");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_blocks"),
        "{bad}"
    );
    assert_eq!(c.ask(r#"{"command": "config-show"}"#)["message"], shown);
    let mut good = config_text(dir.path(), port, "allow = [\"198.18.0.0/15\"]");
    good = good.replace("path = \"control.sock\"", "path = \"other.sock\"");
    std::fs::write(&file, good).unwrap();
    let reloaded = c.ask(r#"{"command": "config-reload"}"#);
    assert_eq!(
        reloaded["message"]["applied"],
        serde_json::json!(["policy"]),
        "{reloaded}"
    );
    assert_eq!(
        reloaded["message"]["restart_required"],
        serde_json::json!(["socket"])
    );
    let allows = c.ask(r#"{"command": "allow-list"}"#);
    assert!(
        allows["message"]
            .as_array()
            .unwrap()
            .contains(&"198.18.0.0/15".into())
    );
    let shown = c.ask(r#"{"command": "config-show"}"#)["message"].clone();
    assert!(
        shown["config"]["socket"]["path"]
            .as_str()
            .unwrap()
            .ends_with("control.sock")
    );

    drop(sub);
    stop.store(true, Ordering::Relaxed);
    control.join().unwrap();
    dp.stop();
}

/// A real consumer: jq selects the bites' sources from the log.
fn jq_reads(eve: &Path) {
    let Some(jq) = baitwall_dataplane::testbed::tool("jq") else {
        return;
    };
    let text = baitwall_dataplane::testbed::stdout_of(
        Command::new(jq)
            .args([
                "-r",
                "select(.event_type == \"bite\") | \"\\(.src_ip) \\(.baitwall.kind) \\(.flow_id)\"",
            ])
            .arg(eve),
    );
    let mut words = text.lines().next().unwrap_or_default().split(' ');
    assert_eq!(words.next(), Some("192.0.2.66"), "{text}");
    assert_eq!(words.next(), Some("data"));
    // jq reads numbers as doubles: the flow id must survive it exactly.
    let id: u64 = words.next().unwrap().parse().unwrap();
    let raw = eve_lines(eve)
        .into_iter()
        .find(|e| e["event_type"] == "bite")
        .unwrap();
    assert_eq!(raw["flow_id"].as_u64(), Some(id));
}
