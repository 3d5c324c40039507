//! The BGP layer with real daemons: two appliances (two control processes,
//! each with its own ExaBGP running `baitwallctl exabgp`) peer with a BIRD
//! route reflector, each in a network namespace of the test's own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use baitwall_control::config::ControlConfig;
use baitwall_control::daemon::{self, Settings};
use serde_json::Value;

mod common;
use common::netns::{Daemon, Netns, eventually, prerequisites, veth};
use common::{Client, eve_schema_errors};

/// One appliance: its control (in this process), its ExaBGP (in its namespace).
struct Appliance {
    name: &'static str,
    ns: Netns,
    dir: PathBuf,
    socket: PathBuf,
    exabgp: Option<Daemon>,
    stop: Arc<AtomicBool>,
    control: Option<JoinHandle<()>>,
}

impl Appliance {
    fn new(
        name: &'static str,
        id: u32,
        me: &str,
        rr: &str,
        allow: &str,
        bgp_extra: &str,
        dir: &Path,
    ) -> Appliance {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("control.sock");
        let config = dir.join("control.toml");
        std::fs::write(
            &config,
            format!(
                "region = \"absent.region\"\ndatabase = \"state.db\"\n\
                 [policy]\nallow = [{allow}]\n\
                 [socket]\npath = \"{}\"\n\
                 [bgp]\nappliance_id = {id}\nasn = 65000\nsweep_after = \"2s\"\nresync_interval = \"5s\"\n{bgp_extra}\n",
                socket.display()
            ),
        )
        .unwrap();
        // ExaBGP runs the bridge; the wrapper keeps the bridge's stderr.
        let bridge = dir.join("bridge.sh");
        std::fs::write(
            &bridge,
            format!(
                "#!/bin/sh\nexec {} exabgp --config {} 2>>{}\n",
                env!("CARGO_BIN_EXE_baitwallctl"),
                config.display(),
                dir.join("bridge.log").display()
            ),
        )
        .unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&bridge).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(&bridge, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(
            dir.join("exabgp.conf"),
            format!(
                "process baitwall {{\n  run {};\n  encoder json;\n}}\n\
                 neighbor {rr} {{\n  router-id {me};\n  local-address {me};\n  local-as 65000;\n  peer-as 65000;\n\
                 \x20 family {{ ipv4 flow; ipv6 flow; ipv4 unicast; }}\n\
                 \x20 api {{ processes [ baitwall ]; receive {{ parsed; update; }} neighbor-changes; }}\n}}\n",
                bridge.display()
            ),
        )
        .unwrap();
        let ns = Netns::new(&format!("bgp{name}"));
        let settings = Settings {
            config: ControlConfig::load(&config).unwrap(),
            config_path: Some(config),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let control = {
            let stop = stop.clone();
            std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).unwrap())
        };
        eventually(Duration::from_secs(10), "control's socket", || {
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
        Appliance {
            name,
            ns,
            dir,
            socket,
            exabgp: None,
            stop,
            control: Some(control),
        }
    }

    fn start_exabgp(&mut self) {
        let conf = self.dir.join("exabgp.conf");
        let log = self.dir.join("exabgp.log");
        self.exabgp = Some(self.ns.spawn(
            &["exabgp", conf.to_str().unwrap()],
            &[
                ("exabgp.daemon.user", "root"),
                ("exabgp.log.destination", log.to_str().unwrap()),
                ("exabgp.api.ack", "true"),
            ],
            &self.dir.join("exabgp.out"),
        ));
    }

    fn ask(&self, line: &str) -> Value {
        Client::new(&self.socket).ask(line)
    }

    /// Blocks in force: prefix -> (origin, expires_unix).
    fn blocks(&self) -> Vec<(String, String, u64)> {
        let v = self.ask(r#"{"command": "block-list", "arguments": {"limit": 10000}}"#);
        v["message"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["prefix"].as_str().unwrap().to_string(),
                    b["origin"].as_str().unwrap().to_string(),
                    b["expires_unix"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn block(&self, prefix: &str) -> Option<(String, u64)> {
        self.blocks()
            .into_iter()
            .find(|b| b.0 == prefix)
            .map(|b| (b.1, b.2))
    }

    fn bridge_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bridge.log")).unwrap_or_default()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut e) = self.exabgp.take() {
            e.kill();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
        if std::thread::panicking() {
            for f in ["bridge.log", "exabgp.log", "exabgp.out"] {
                let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!(
                    "--- {} {f} (last lines, newest first)\n{}",
                    self.name,
                    tail.join("\n")
                );
            }
        }
    }
}

/// The route reflector.
struct Reflector {
    ns: Netns,
    dir: PathBuf,
    bird: Option<Daemon>,
}

impl Reflector {
    fn start(&mut self) {
        let conf = self.dir.join("bird.conf");
        let ctl = self.dir.join("bird.ctl");
        self.bird = Some(self.ns.spawn(
            &[
                "bird",
                "-f",
                "-c",
                conf.to_str().unwrap(),
                "-s",
                ctl.to_str().unwrap(),
            ],
            &[],
            &self.dir.join("bird.out"),
        ));
    }

    fn birdc(&self, cmd: &str) -> String {
        let ctl = self.dir.join("bird.ctl");
        let out = std::process::Command::new("birdc")
            .args(["-s", ctl.to_str().unwrap()])
            .args(cmd.split(' '))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// True when BIRD's FlowSpec table holds a rule for source `prefix`.
    fn has_flow(&self, prefix: &str) -> bool {
        let (table, family) = if prefix.contains(':') {
            ("flowtab6", "flow6")
        } else {
            ("flowtab4", "flow4")
        };
        self.birdc(&format!("show route table {table}"))
            .contains(&format!("{family} {{ src {prefix}; }}"))
    }

    /// BIRD's unicast route for `prefix` with its attributes ("" if none).
    fn route(&self, prefix: &str) -> String {
        let out = self.birdc(&format!("show route {prefix} all"));
        if out.contains(prefix) {
            out
        } else {
            String::new()
        }
    }

    /// Reloads BIRD with `extra` appended to its configuration.
    fn reconfigure(&self, extra: &str) {
        std::fs::write(self.dir.join("bird.conf"), format!("{BIRD_CONF}{extra}")).unwrap();
        let out = self.birdc("configure");
        assert!(
            out.contains("Reconfigured") || out.contains("Reconfiguration"),
            "{out}"
        );
    }

    fn established(&self) -> usize {
        self.birdc("show protocols")
            .lines()
            .filter(|l| l.contains("Established"))
            .count()
    }
}

const BIRD_CONF: &str = "router id 10.66.1.1;
protocol device {}
flow4 table flowtab4;
flow6 table flowtab6;
template bgp appliances {
  local as 65000;
  rr client;
  rr cluster id 10.66.1.1;
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 3;
  flow4 { table flowtab4; import all; export all; };
  flow6 { table flowtab6; import all; export all; };
  ipv4 { import all; export all; };
}
protocol bgp a from appliances { neighbor 10.66.1.2 as 65000; }
protocol bgp b from appliances { neighbor 10.66.2.2 as 65000; }
";

const CONVERGE: Duration = Duration::from_secs(60);

#[test]
fn blocks_spread_through_a_route_reflector_and_converge_after_daemons_restart() {
    if !prerequisites("the BGP test", &["ip", "exabgp", "bird", "birdc"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut rr = Reflector {
        ns: Netns::new("bgprr"),
        dir: tmp.path().join("rr"),
        bird: None,
    };
    std::fs::create_dir_all(&rr.dir).unwrap();
    std::fs::write(rr.dir.join("bird.conf"), BIRD_CONF).unwrap();
    // A also announces RTBH routes (RFC 7999) for its IPv4 blocks.
    let rtbh =
        "rtbh = true\nnext_hop4 = \"10.66.1.2\"\ncommunities = [\"65535:666\", \"65535:65281\"]";
    let mut a = Appliance::new("a", 1, "10.66.1.2", "10.66.1.1", "", rtbh, tmp.path());
    let mut b = Appliance::new(
        "b",
        2,
        "10.66.2.2",
        "10.66.2.1",
        "\"203.0.113.0/24\"",
        "",
        tmp.path(),
    );
    veth(&rr.ns, "rra", &a.ns, "a0");
    veth(&rr.ns, "rrb", &b.ns, "b0");
    rr.ns
        .run(&["ip", "addr", "add", "10.66.1.1/24", "dev", "rra"]);
    rr.ns
        .run(&["ip", "addr", "add", "10.66.2.1/24", "dev", "rrb"]);
    a.ns.run(&["ip", "addr", "add", "10.66.1.2/24", "dev", "a0"]);
    b.ns.run(&["ip", "addr", "add", "10.66.2.2/24", "dev", "b0"]);
    rr.start();
    a.start_exabgp();
    b.start_exabgp();
    eventually(CONVERGE, "both sessions established", || {
        (rr.established() == 2).then_some(())
    });

    // A block on A reaches B (marked with A's origin, A's expiry) within
    // 2 s, and BIRD's FlowSpec table.
    let r =
        a.ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.66", "for": "1h"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    let (origin, expires) = a.block("192.0.2.66/32").unwrap();
    assert_eq!(origin, "local");
    let at = Instant::now();
    let learned = eventually(Duration::from_secs(2), "the block on B within 2 s", || {
        b.block("192.0.2.66/32")
    });
    println!("A's block reached B in {:?}", at.elapsed());
    assert_eq!(learned, ("peer:1".to_string(), expires));
    assert!(rr.has_flow("192.0.2.66/32"));
    // The RTBH route, with BLACKHOLE and NO_EXPORT and A's large community.
    let route = eventually(CONVERGE, "A's RTBH route at the reflector", || {
        Some(rr.route("192.0.2.66/32")).filter(|r| !r.is_empty())
    });
    assert!(
        route.contains("(65535,666)") && route.contains("(65535,65281)"),
        "{route}"
    );
    assert!(route.contains(&format!("(65000, 1, {expires})")), "{route}");
    // A's own block is never extended by what comes back.
    assert_eq!(a.block("192.0.2.66/32"), Some(("local".into(), expires)));

    // IPv6: a /64 goes the same way.
    let r = a.ask(r#"{"command": "block-add", "arguments": {"target": "2001:db8:66::/64", "for": "permanent"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    let learned = eventually(CONVERGE, "the IPv6 block on B", || {
        b.block("2001:db8:66::/64")
    });
    assert_eq!(learned, ("peer:1".to_string(), 0));
    assert!(rr.has_flow("2001:db8:66::/64"));

    // The reflector injects two rules of its own: one carrying A's id (an
    // echo of a block of A's, as a second reflector would send it back),
    // and one from a third appliance on a prefix A blocks itself, lasting
    // longer. A ignores the echo and keeps its own block as it is; B,
    // which has nothing of its own there, learns both.
    rr.reconfigure(&format!(
        "protocol static injected {{\n  flow4 {{ table flowtab4; }};\n  \
         route flow4 {{ src 192.0.2.123/32; }} {{ bgp_large_community.add((65000, 1, 0)); }};\n  \
         route flow4 {{ src 192.0.2.66/32; }} {{ bgp_large_community.add((65000, 3, {})); }};\n}}\n",
        expires + 9999
    ));
    eventually(
        CONVERGE,
        "A hearing the echo and the third appliance's rule",
        || {
            let log = a.bridge_log();
            (log.contains("ignored 192.0.2.123/32")
                && log.contains("keeps its own block on 192.0.2.66/32"))
            .then_some(())
        },
    );
    assert_eq!(a.block("192.0.2.123/32"), None, "an echo teaches A nothing");
    assert_eq!(
        a.block("192.0.2.66/32"),
        Some(("local".into(), expires)),
        "a longer block from the fabric never extends A's own"
    );
    eventually(CONVERGE, "B learning the injected rules", || {
        (b.block("192.0.2.123/32") == Some(("peer:1".into(), 0))
            && b.block("192.0.2.66/32") == Some(("peer:3".into(), expires + 9999)))
        .then_some(())
    });
    rr.reconfigure("");
    eventually(CONVERGE, "the injected rules gone from B", || {
        (b.block("192.0.2.123/32").is_none()
            && b.block("192.0.2.66/32") == Some(("peer:1".into(), expires)))
        .then_some(())
    });
    assert_eq!(a.block("192.0.2.66/32"), Some(("local".into(), expires)));

    // An allow entry B adds later removes the learned block it overlaps.
    let r =
        a.ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.44", "for": "1h"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    eventually(CONVERGE, "192.0.2.44 on B", || b.block("192.0.2.44/32"));
    let r = b.ask(r#"{"command": "allow-add", "arguments": {"target": "192.0.2.32/27"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    assert_eq!(
        b.block("192.0.2.44/32"),
        None,
        "allowed now: no longer blocked"
    );

    // B's allowlist covers 203.0.113.9: B refuses it. (192.0.2.77 follows
    // it down the same path: once it is on B, the first one was decided.)
    for t in ["203.0.113.9", "192.0.2.77"] {
        let r = a.ask(&format!(
            r#"{{"command": "block-add", "arguments": {{"target": "{t}", "for": "1h"}}}}"#
        ));
        assert_eq!(r["return"], "OK", "{r}");
    }
    eventually(CONVERGE, "192.0.2.77 on B", || b.block("192.0.2.77/32"));
    assert!(rr.has_flow("203.0.113.9/32"), "the fabric carries it");
    assert_eq!(b.block("203.0.113.9/32"), None, "B's allowlist covers it");
    assert!(
        b.bridge_log()
            .contains("peer-block 203.0.113.9/32: allowed"),
        "{}",
        b.bridge_log()
    );

    // The unblock withdraws it everywhere.
    let r = a.ask(r#"{"command": "block-remove", "arguments": {"target": "192.0.2.66"}}"#);
    assert_eq!(r["return"], "OK", "{r}");
    eventually(CONVERGE, "the withdrawal on B", || {
        b.block("192.0.2.66/32").is_none().then_some(())
    });
    assert!(!rr.has_flow("192.0.2.66/32"));
    eventually(CONVERGE, "the RTBH route withdrawn", || {
        rr.route("192.0.2.66/32").is_empty().then_some(())
    });

    // B's ExaBGP dies; meanwhile A blocks 192.0.2.88 and unblocks
    // 192.0.2.77. After a restart B converges: the new block is learned,
    // the one withdrawn while B was away is swept.
    b.exabgp.as_mut().unwrap().kill();
    a.ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.88", "for": "1h"}}"#);
    a.ask(r#"{"command": "block-remove", "arguments": {"target": "192.0.2.77"}}"#);
    eventually(CONVERGE, "A's change at the reflector", || {
        (rr.has_flow("192.0.2.88/32") && !rr.has_flow("192.0.2.77/32")).then_some(())
    });
    assert!(
        b.block("192.0.2.77/32").is_some(),
        "B could not hear the withdrawal"
    );
    b.start_exabgp();
    eventually(CONVERGE, "B converged after its ExaBGP restarted", || {
        (b.block("192.0.2.88/32").is_some() && b.block("192.0.2.77/32").is_none()).then_some(())
    });

    // BIRD dies; meanwhile A blocks 192.0.2.99 and unblocks 192.0.2.88.
    // After BIRD restarts, everything converges again.
    rr.bird.as_mut().unwrap().kill();
    a.ask(r#"{"command": "block-add", "arguments": {"target": "192.0.2.99", "for": "1h"}}"#);
    a.ask(r#"{"command": "block-remove", "arguments": {"target": "192.0.2.88"}}"#);
    rr.start();
    eventually(CONVERGE, "B converged after BIRD restarted", || {
        (b.block("192.0.2.99/32").is_some() && b.block("192.0.2.88/32").is_none()).then_some(())
    });
    assert!(rr.has_flow("192.0.2.99/32") && !rr.has_flow("192.0.2.88/32"));

    // A's ExaBGP dies: the reflector withdraws A's routes (that is BGP),
    // and after a restart A announces everything again from its control.
    a.exabgp.as_mut().unwrap().kill();
    eventually(CONVERGE, "A's routes withdrawn with its session", || {
        (!rr.has_flow("192.0.2.99/32") && b.block("192.0.2.99/32").is_none()).then_some(())
    });
    assert!(
        a.block("192.0.2.99/32").is_some(),
        "A itself keeps its block"
    );
    a.start_exabgp();
    // Nothing lost, nothing extra: B comes to hold exactly A's local
    // blocks (but the allowlisted one), each with A's expiry.
    let on_a: std::collections::BTreeSet<(String, u64)> = a
        .blocks()
        .into_iter()
        .filter(|x| x.1 == "local" && !x.0.starts_with("203.0.113.") && x.0 != "192.0.2.44/32")
        .map(|x| (x.0, x.2))
        .collect();
    assert_eq!(on_a.len(), 2, "{on_a:?}");
    eventually(
        CONVERGE,
        "B holding A's blocks after A's ExaBGP restarted",
        || {
            let on_b: std::collections::BTreeSet<(String, u64)> = b
                .blocks()
                .into_iter()
                .filter(|x| x.1 == "peer:1")
                .map(|x| (x.0, x.2))
                .collect();
            (on_b == on_a).then_some(())
        },
    );
    assert!(rr.has_flow("192.0.2.99/32") && rr.has_flow("2001:db8:66::/64"));
    // B's history tells the story in EVE: learned, withdrawn, stale.
    let history = b.ask(r#"{"command": "events", "arguments": {"limit": 1000}}"#);
    let history = history["message"].as_array().unwrap();
    for e in history {
        assert_eq!(eve_schema_errors(e), Vec::<String>::new(), "{e}");
    }
    let reasons: std::collections::BTreeSet<&str> = history
        .iter()
        .filter_map(|e| {
            let b = &e["baitwall"];
            b["change"].as_str().or(b["reason"].as_str())
        })
        .collect();
    for r in ["learned", "relearned", "withdrawn", "stale", "allowed"] {
        assert!(reasons.contains(r), "{r} in {reasons:?}");
    }
    assert!(
        a.blocks().iter().all(|x| x.1 == "local"),
        "A learned nothing back"
    );
    rr.bird.take();
}
