//! The lab (deploy/lab): real scanners attack a protected /24 through the
//! appliance, inline on AF_PACKET between two veth pairs, with control
//! beside it. Tools nobody here wrote (nmap, hping3, curl, the kernel's own
//! TCP stack driven by a small worm script) do the talking.
//!
//! Needs root, iproute2, ethtool, nmap, hping3, masscan, zmap, curl, nft,
//! tcpdump and /usr/bin/python3 with scapy (forged frames);
//! without them the test skips with one line, and under CI=true (where
//! .ci/run installs them) it fails. Everything runs in namespaces this test
//! creates (a prefix of its own) and takes down at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baitwall_dataplane::testbed::{is_root, prerequisite, tool};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_baitwall");
const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/lab");

/// The lab and the processes of one test; everything goes at drop.
struct Lab {
    prefix: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn up(tag: &str) -> Lab {
        Lab::up_with(tag, &[])
    }

    /// `deploy/lab/up` with `args` after the prefix (`--tap`).
    fn up_with(tag: &str, args: &[&str]) -> Lab {
        // The guard first: a lab that fails half-way up is still taken down.
        let lab = Lab {
            prefix: format!("{tag}{}", std::process::id() % 100_000),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let status = Command::new(format!("{LAB}/up"))
            .arg(&lab.prefix)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "deploy/lab/up {}", lab.prefix);
        lab
    }

    fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// A command run in namespace `which` (out, bw, in).
    fn exec(&self, which: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which), program]);
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// Starts control and the dataplane with the lab's configuration, its
    /// `[port]` section replaced by `port` when given; waits for the attach.
    fn start_appliance(&mut self, port: Option<&str>) {
        self.start_appliance_edited(port, |t| t);
    }

    /// [`Lab::start_appliance`] with the lab's configuration text passed
    /// through `edit` first.
    fn start_appliance_edited(&mut self, port: Option<&str>, edit: impl Fn(String) -> String) {
        let region = format!("/dev/shm/{}.region", self.prefix);
        let config = self.dir.path().join("baitwall.toml");
        let mut text = edit(std::fs::read_to_string(format!("{LAB}/baitwall.toml")).unwrap())
            .replace("/dev/shm/bwlab.region", &region);
        if let Some(port) = port {
            let start = text.find("[port]").unwrap();
            let end = text.find("[flows]").unwrap();
            text.replace_range(start..end, port);
        }
        std::fs::write(&config, text).unwrap();
        // Control keeps the protected side's firewall (an nftables set in
        // the `in` namespace) in sync with its blocks (docs/enforcement.md).
        // Sets only, no drop chain: what the lab checks of the traffic is
        // the appliance's doing (control/tests/enforce_nft.rs checks the
        // set's own drops with real packets).
        let control_config = self.dir.path().join("control.toml");
        std::fs::write(
            &control_config,
            format!(
                "[nftables]\ncommand = [\"ip\", \"netns\", \"exec\", \"{}\", \"nft\"]\nchain = \"\"\n",
                self.ns("in")
            ),
        )
        .unwrap();
        let control = Command::new(BIN)
            .args(["control", "run", "--config"])
            .arg(&control_config)
            .args(["--region", &region, "--database"])
            .arg(self.dir.path().join("state.db"))
            .arg("--socket")
            .arg(self.socket())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(control);
        let dataplane = self
            .exec("bw", BIN)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(dataplane);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket().exists()
                && ask(&self.socket(), json!({"command": "status"}))["attached"] == true
            {
                return;
            }
            assert!(Instant::now() < deadline, "control never attached");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Has the router resolve 198.51.100.`first`..=`last` (a datagram to
    /// each makes its kernel ask, three times a second apart), so that the
    /// dark ones are claimed (`claim_after` 1 s: at the second request)
    /// and the live ones answer for themselves.
    fn resolve_v4(&self, first: u8, last: u8) {
        let script = format!(
            "import socket, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range({first}, {last} + 1):\n    s.sendto(b'x', ('198.51.100.%d' % i, 9))\n\
             time.sleep(2.5)\n"
        );
        let out = self
            .exec("out", "/usr/bin/python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// As [`Lab::resolve_v4`] for 2001:db8:100::20-::40 (the router asks
    /// with neighbour solicitations, three a second apart).
    fn resolve_v6(&self) {
        let script = "import socket, time\n\
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
            s.bind(('2001:db8:66::77', 0))\n\
            for i in range(0x20, 0x41):\n    s.sendto(b'x', ('2001:db8:100::%x' % i, 9))\n\
            time.sleep(2.5)\n";
        let out = self
            .exec("out", "/usr/bin/python3")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A claimed IPv6 decoy of ::20-::40 with port 80 open whose persona
    /// `persona` accepts: (address, MAC).
    fn v6_decoy(&self, persona: impl Fn(&str) -> bool) -> (String, String) {
        let sample = ask(
            &self.socket(),
            json!({"command": "decoys", "arguments": {"address": "2001:db8:100::20", "sample": 33}}),
        );
        let d = sample
            .as_array()
            .unwrap()
            .iter()
            .find(|d| {
                persona(d["persona"].as_str().unwrap())
                    && d["open_ports"].as_array().unwrap().contains(&json!(80))
            })
            .unwrap_or_else(|| panic!("a claimed IPv6 decoy with 80 open: {sample}"))
            .clone();
        (
            d["address"].as_str().unwrap().to_string(),
            d["mac"].as_str().unwrap().to_string(),
        )
    }

    /// Runs a scapy script in namespace `which`; what it printed.
    fn scapy(&self, which: &str, script: &str, args: &[&str]) -> String {
        let out = self
            .exec(which, "/usr/bin/python3")
            .args(["-c", script])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scapy in {which}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The dark addresses of 198.51.100.2-40 as the dataplane describes them.
    fn decoy_sample(&self) -> Vec<Value> {
        ask(
            &self.socket(),
            json!({"command": "decoys", "arguments": {"address": "198.51.100.2", "sample": 39}}),
        )
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            let last: u8 = d["address"]
                .as_str()
                .unwrap()
                .rsplit('.')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            last <= 40
        })
        .cloned()
        .collect()
    }

    /// Control's summed counters (`stats` `total`).
    fn totals(&self) -> Value {
        ask(&self.socket(), json!({"command": "stats"}))["total"].clone()
    }

    /// Every bite event in control's history.
    fn bite_events(&self) -> Vec<Value> {
        ask(
            &self.socket(),
            json!({"command": "events", "arguments": {"kind": "bite"}}),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// The first dark address of .2-.40 whose persona has every port of
    /// `ports` open, as the dataplane describes it.
    fn decoy_with(&self, ports: &[u16]) -> String {
        let personas = ask(
            &self.socket(),
            json!({"command": "decoys", "arguments": {"address": "198.51.100.2", "sample": 39}}),
        );
        personas
            .as_array()
            .unwrap()
            .iter()
            .find(|d| {
                let open = d["open_ports"].as_array().unwrap();
                ports.iter().all(|p| open.contains(&json!(p)))
            })
            .unwrap_or_else(|| panic!("a decoy with {ports:?} open"))["address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Runs deploy/lab/worm.py against `decoy`; what it printed.
    fn run_worm(&self, decoy: &str) -> String {
        let worm = self
            .exec("out", "/usr/bin/python3")
            .args([&format!("{LAB}/worm.py"), decoy])
            .output()
            .unwrap();
        String::from_utf8_lossy(&worm.stdout).into_owned()
    }

    /// The worm bites the first decoy of .2-.40 with 80 and 443 open; then
    /// only it is blocked, and on every worker: it cannot reach the real
    /// server any more, the benign client still can. Returns the decoy.
    fn worm_is_blocked(&self) -> String {
        let decoy = self.decoy_with(&[80, 443]);
        let said = self.run_worm(&decoy);
        assert!(said.contains("80 connected"), "{said}");
        let blocks = ask(&self.socket(), json!({"command": "block-list"}));
        let prefixes: Vec<&str> = blocks
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["prefix"].as_str().unwrap())
            .collect();
        assert_eq!(prefixes, ["203.0.113.66/32"], "only the worm is blocked");
        assert_eq!(fetch(self, "203.0.113.66", "http://198.51.100.10/"), None);
        assert!(fetch(self, "203.0.113.10", "http://198.51.100.10/").is_some());
        // The bite also reached the protected side's firewall, with the
        // block's remaining time as the element's timeout.
        let timeout = self.nft_timeout("203.0.113.66");
        assert!(
            (3590..=3600).contains(&timeout),
            "the worm's element times out with its block: {timeout}"
        );
        decoy
    }

    /// The timeout of `address`'s element in the `in` namespace's
    /// `blocked4` set, once control has put it there.
    fn nft_timeout(&self, address: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .exec("in", "nft")
                .args(["-j", "list", "set", "inet", "baitwall", "blocked4"])
                .output()
                .unwrap();
            let listing: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let found = listing["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["set"]["elem"].as_array())
                .flatten()
                .find(|e| e["elem"]["val"] == address)
                .and_then(|e| e["elem"]["timeout"].as_u64());
            if let Some(t) = found {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{address} never reached the firewall's set: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(format!("{LAB}/down"))
            .arg(&self.prefix)
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_file(format!("/dev/shm/{}.region", self.prefix));
    }
}

fn ask(socket: &Path, request: Value) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    writeln!(s, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["return"], "OK", "{request} -> {v}");
    v["message"].clone()
}

/// curl from `source` in the outside namespace; the page, or None.
fn fetch(lab: &Lab, source: &str, url: &str) -> Option<String> {
    let out = lab
        .exec("out", "curl")
        .args(["-s", "--max-time", "3", "--interface", source, url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn prerequisites() -> bool {
    if !prerequisite(
        is_root(),
        "the lab needs root (network namespaces, AF_PACKET)",
    ) {
        return false;
    }
    [
        "ip", "ethtool", "nmap", "hping3", "masscan", "zmap", "curl", "timeout", "nft",
    ]
    .iter()
    .all(|t| tool(t).is_some())
        && prerequisite(
            Path::new("/usr/bin/python3").exists(),
            "/usr/bin/python3 is not installed",
        )
        && prerequisite(
            Command::new("/usr/bin/python3")
                .args(["-c", "import scapy.all"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "scapy is not installed for /usr/bin/python3 (python3-scapy)",
        )
}

/// One lab at a time. Each runs real tools at their own rates on a
/// two-core machine (zmap at 10,000 probes a second), and the tap's
/// severing races a real server's answer: run side by side, one lab's load
/// decides another's outcome.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A lab that failed still ran to its end: the next one may start.
    ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A server on `argv[1]:argv[2]` that answers each connection after a second.
const SLOW_SERVER: &str = r#"
import socket, sys, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
def answer(c):
    try:
        time.sleep(1); c.sendall(b"late answer\n")
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=answer, args=(c,), daemon=True).start()
"#;

/// Connects from `argv[1]` to `argv[2]:argv[3]` and prints what it got:
/// `data`, `reset`, `refused`, `closed` or `timeout`.
const CLIENT: &str = r#"
import socket, sys
c = socket.socket(); c.settimeout(5); c.bind((sys.argv[1], 0))
try:
    c.connect((sys.argv[2], int(sys.argv[3])))
    print("data" if c.recv(100) else "closed")
except ConnectionResetError:
    print("reset")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#;

#[test]
fn on_a_tap_the_worms_connections_are_severed() {
    if !prerequisites() || tool("tc").is_none() || tool("bridge").is_none() {
        return;
    }
    let _lab = one_lab_at_a_time();
    // The lab on a tap: the appliance sees copies (mirrored to `mon`) and
    // can only inject (by `inj`); blocks become RSTs to both ends.
    let mut lab = Lab::up_with("bwp", &["--tap"]);
    lab.start_appliance(Some(
        "[port]\nbackend = \"afpacket\"\nmode = \"tap\"\nmonitor = \"mon\"\ninject = \"inj\"\n\n",
    ));
    lab.resolve_v4(2, 40);
    assert!(fetch(&lab, "203.0.113.10", "http://198.51.100.10/").is_some());
    let said = lab.run_worm(&lab.decoy_with(&[80]));
    // The decoy answered through the injection port; the request bit; the
    // connection was reset under the worm.
    assert!(said.contains("80 connected"), "{said}");
    assert!(said.contains("80 ConnectionResetError"), "{said}");
    let blocks = ask(&lab.socket(), json!({"command": "block-list"}));
    assert_eq!(blocks[0]["prefix"], "203.0.113.66/32", "{blocks}");
    // Its traffic still crosses the tap, but every connection is severed.
    // A tap's RSTs race the real server's answer (the copy goes through the
    // appliance, the original does not), so the server here answers after
    // a second: a connection the RSTs reach is reset, whatever the load on
    // the machine; the benign client's gets the answer.
    let server = lab
        .exec("in", "/usr/bin/python3")
        .args(["-c", SLOW_SERVER, "198.51.100.10", "8081"])
        .spawn()
        .unwrap();
    lab.children.push(server);
    let outcome = |source: &str| {
        let out = lab
            .exec("out", "/usr/bin/python3")
            .args(["-c", CLIENT, source, "198.51.100.10", "8081"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // (Refused until python listens.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut benign = outcome("203.0.113.10");
    while benign == "refused" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        benign = outcome("203.0.113.10");
    }
    assert_eq!(benign, "data");
    assert_eq!(outcome("203.0.113.66"), "reset");
    assert!(fetch(&lab, "203.0.113.10", "http://198.51.100.10/").is_some());
    let stats = ask(&lab.socket(), json!({"command": "stats"}));
    assert!(stats["total"]["severed"].as_u64().unwrap() >= 2, "{stats}");
}

/// nmap's grepable output: open ports per host.
fn open_ports(grepable: &str) -> BTreeMap<String, BTreeSet<u16>> {
    let mut hosts = BTreeMap::new();
    for line in grepable.lines().filter(|l| l.contains("Ports:")) {
        let host = line.split_whitespace().nth(1).unwrap().to_string();
        let ports = line.split("Ports:").nth(1).unwrap();
        let open: BTreeSet<u16> = ports
            .split(',')
            .filter(|p| p.contains("/open/"))
            .filter_map(|p| p.trim().split('/').next()?.parse().ok())
            .collect();
        hosts.insert(host, open);
    }
    hosts
}

#[test]
fn scanners_see_decoys_a_worm_is_blocked_and_forged_sources_are_not() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up("bwt");
    lab.start_appliance(None);
    lab.resolve_v4(2, 80);

    // The benign client reaches the real web server through the appliance.
    let page = fetch(&lab, "203.0.113.10", "http://198.51.100.10/");
    assert_eq!(
        page.as_deref(),
        Some("the real web server of 198.51.100.10\n")
    );

    // nmap -sS from the scanner: real hosts show their real ports, dark
    // addresses show decoys whose open ports vary by persona.
    let scan = lab
        .exec("out", "nmap")
        .args([
            "-sS",
            "-Pn",
            "-n",
            "--max-retries",
            "1",
            "-p",
            "22,80,443,445,3389",
            "-S",
            "203.0.113.77",
            "-e",
            "o0",
            "-oG",
            "-",
            "198.51.100.2-40",
        ])
        .output()
        .unwrap();
    assert!(scan.status.success());
    let hosts = open_ports(&String::from_utf8_lossy(&scan.stdout));
    assert_eq!(hosts.get("198.51.100.10"), Some(&BTreeSet::from([80])));
    assert_eq!(hosts.get("198.51.100.22"), Some(&BTreeSet::from([22])));
    let personas = ask(
        &lab.socket(),
        json!({"command": "decoys", "arguments": {"address": "198.51.100.2", "sample": 39}}),
    );
    let scanned = BTreeSet::from([22u16, 80, 443, 445, 3389]);
    let mut shapes = BTreeSet::new();
    for d in personas.as_array().unwrap() {
        let addr = d["address"].as_str().unwrap();
        if addr.rsplit('.').next().unwrap().parse::<u8>().unwrap() > 40 {
            continue;
        }
        let persona: BTreeSet<u16> = d["open_ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as u16)
            .filter(|p| scanned.contains(p))
            .collect();
        assert_eq!(hosts.get(addr), Some(&persona), "{addr}: nmap vs persona");
        assert_ne!(persona, scanned, "{addr}: never every port");
        shapes.insert(persona);
    }
    assert!(shapes.len() >= 3, "personas differ: {shapes:?}");

    // The worm: a decoy's port 80 with a request, then its port 443.
    let decoy = lab.worm_is_blocked();

    // hping3 forging the benign client: SYNs and ACKs to the decoy.
    for flags in ["-S", "-A"] {
        let status = lab
            .exec("out", "hping3")
            .args([
                flags,
                "-a",
                "203.0.113.10",
                "-p",
                "80",
                "-c",
                "20",
                "-i",
                "u2000",
                "-q",
                &decoy,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        // hping3 exits 1 when no reply came back (the replies went to the
        // real client, which drops them): either is fine.
        assert!(status.code().is_some());
    }
    let covered = ask(
        &lab.socket(),
        json!({"command": "block-list", "arguments": {"covering": "203.0.113.10"}}),
    );
    assert_eq!(covered, json!([]), "a forged source is never blocked");
    assert!(fetch(&lab, "203.0.113.10", "http://198.51.100.10/").is_some());

    // OS and version detection against a decoy with SSH open: a plausible
    // OS guess and service. -O first: -sV connects, which is a bite, and
    // blocks the scanner.
    let ssh_decoy = personas
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["open_ports"].as_array().unwrap().contains(&json!(22)) && d["persona"] != "router"
        })
        .expect("a decoy with SSH")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let os = lab
        .exec("out", "nmap")
        .args([
            "-O",
            "-Pn",
            "-n",
            "-p",
            "22,80,443",
            "-S",
            "203.0.113.77",
            "-e",
            "o0",
            &ssh_decoy,
        ])
        .output()
        .unwrap();
    let os = String::from_utf8_lossy(&os.stdout);
    assert!(
        os.contains("Running") || os.contains("OS guesses") || os.contains("OS details"),
        "no OS guess: {os}"
    );
    let version = lab
        .exec("out", "nmap")
        .args(["-sV", "-Pn", "-n", "-p", "22", &ssh_decoy])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains("22/tcp open  ssh") && version.contains("SSH"),
        "{version}"
    );

    // masscan over the /24 at its default rate (100 packets a second). Its
    // own stack sends everything to one "router" MAC: the appliance answers
    // by address, whatever the MAC. (masscan 1.3.2 may hang after its
    // --wait: the output it printed is kept.)
    let masscan = lab
        .exec("out", "timeout")
        .args([
            "30",
            "masscan",
            "198.51.100.0/24",
            "-p80,443",
            "--source-ip",
            "203.0.113.77",
            "--router-mac",
            "02:00:00:00:00:fe",
            "-e",
            "o0",
            "--wait",
            "2",
        ])
        .output()
        .unwrap();
    let found: BTreeSet<(String, u16)> = String::from_utf8_lossy(&masscan.stdout)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Discovered open port ")?;
            let (port, host) = rest.split_once("/tcp on ")?;
            Some((host.trim().to_string(), port.parse().ok()?))
        })
        .collect();
    assert!(found.len() >= 20, "masscan sees decoys: {found:?}");
    // What masscan found agrees with what nmap saw where both looked.
    for (host, port) in &found {
        assert_ne!(host, "198.51.100.1", "the router is never a decoy");
        if let Some(open) = hosts.get(host.as_str()) {
            assert!(open.contains(port), "{host}:{port} was not open to nmap");
        }
    }
    // zmap over a dark /16 at its default rate: decoys everywhere, and the
    // appliance keeps up (the per-prober rate limit answers only part of it).
    let zmap = lab
        .exec("out", "timeout")
        .args([
            "60",
            "zmap",
            "-p",
            "80",
            "-i",
            "o0",
            "-S",
            "203.0.113.77",
            "-G",
            "02:00:00:00:00:fe",
            "-b",
            "/dev/null",
            "-q",
            "-o",
            "-",
            "10.99.0.0/16",
        ])
        .output()
        .unwrap();
    let answered: Vec<String> = String::from_utf8_lossy(&zmap.stdout)
        .lines()
        .filter(|l| l.starts_with("10.99."))
        .map(str::to_string)
        .collect();
    assert!(
        answered.len() >= 100,
        "zmap sees decoys: {}",
        answered.len()
    );
    let stats = ask(&lab.socket(), json!({"command": "stats"}));
    assert_eq!(
        stats["total"]["port_drops"], 0,
        "no frame lost below the workers"
    );
    assert!(
        stats["control"]["ring_drops"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d == 0),
        "no event lost between the processes"
    );
}

#[test]
fn the_worm_is_blocked_the_same_way_through_dpdk() {
    if !prerequisites()
        || !prerequisite(
            Command::new("pkg-config")
                .args(["--exists", "libdpdk"])
                .status()
                .is_ok_and(|s| s.success()),
            "DPDK (libdpdk-dev) is not installed",
        )
    {
        return;
    }
    let _lab = one_lab_at_a_time();
    // The same lab, the appliance on DPDK: net_af_packet devices on the
    // same veth ends, inline, two workers (two queue pairs per device).
    let mut lab = Lab::up("bwd");
    let file_prefix = lab.prefix.clone();
    lab.start_appliance(Some(&format!(
        "[port]\nbackend = \"dpdk\"\nmode = \"inline\"\n\
         device = \"net_af_packet0\"\ninside_device = \"net_af_packet1\"\npool_size = 8191\n\
         eal = [\"--no-huge\", \"--no-pci\", \"--file-prefix\", \"{file_prefix}\", \"--no-shconf\", \"-m\", \"256\",\n\
                \"-l\", \"0-1\", \"--log-level=lib.eal:error\",\n\
                \"--vdev=net_af_packet0,iface=ext,qpairs=2\", \"--vdev=net_af_packet1,iface=int,qpairs=2\"]\n\n"
    )));
    let status = ask(&lab.socket(), json!({"command": "status"}));
    assert_eq!(status["port"], "dpdk:inline:net_af_packet0,net_af_packet1");
    lab.resolve_v4(2, 40);
    assert_eq!(
        fetch(&lab, "203.0.113.10", "http://198.51.100.10/").as_deref(),
        Some("the real web server of 198.51.100.10\n")
    );
    lab.worm_is_blocked();
}

/// Sends a TCP SYN from `argv[1]` (any address: forged or not) with this
/// namespace's MAC on `argv[4]` to `argv[2]`:`argv[3]`, Ethernet
/// destination `argv[5]`, and prints how many SYN-ACKs came back for it
/// within two seconds.
const FORGED_SYN: &str = r#"
import sys
from scapy.all import AsyncSniffer, Ether, IP, IPv6, TCP, sendp, conf, get_if_hwaddr
conf.verb = 0
src, dst, port, iface, dmac = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
l3 = IPv6(src=src, dst=dst) if ":" in dst else IP(src=src, dst=dst)
frame = Ether(src=get_if_hwaddr(iface), dst=dmac) / l3 / TCP(sport=44444, dport=port, flags="S", seq=1000)
def answers(p):
    return TCP in p and p[TCP].dport == 44444 and p[TCP].flags & 0x12 == 0x12
sniffer = AsyncSniffer(iface=iface, lfilter=answers, timeout=2)
sniffer.start()
import time; time.sleep(0.3)
sendp(frame, iface=iface, count=3, inter=0.05)
sniffer.join()
print(len(sniffer.results or []))
"#;

/// Sends `argv[3]` frames from each address of `argv[1]` (comma-separated,
/// forged inside sources) to `argv[2]` through the router's MAC-less path:
/// SYNs, UDP and ICMP echo, by Ethernet on o0.
const FORGED_INSIDE_SOURCES: &str = r#"
import sys
from scapy.all import Ether, IP, TCP, UDP, ICMP, sendp, conf, get_if_hwaddr
conf.verb = 0
frames = []
for src in sys.argv[1].split(","):
    for l4 in (TCP(sport=1234, dport=80, flags="S"), UDP(sport=1234, dport=53), ICMP()):
        frames.append(Ether(src=get_if_hwaddr("o0"), dst="ff:ff:ff:ff:ff:ff") / IP(src=src, dst=sys.argv[2]) / l4)
sendp(frames * int(sys.argv[3]), iface="o0")
print(len(frames) * int(sys.argv[3]))
"#;

/// An ICMP echo from the router's own address (`argv[1]`) to `argv[2]`;
/// prints `reply` or `none`.
const ROUTER_PING: &str = r#"
import sys
from scapy.all import IP, ICMP, sr1, conf
conf.verb = 0
r = sr1(IP(src=sys.argv[1], dst=sys.argv[2]) / ICMP(id=7, seq=1), timeout=3)
print("reply" if r is not None and ICMP in r and r[ICMP].type == 0 else "none")
"#;

#[test]
fn each_side_speaks_only_for_itself_and_a_quiet_server_is_never_claimed() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up("bws");
    // learning and hold_off are 0 s: only the claim rule keeps the quiet
    // server (198.51.100.30, not declared live) from being taken.
    lab.start_appliance(None);
    lab.resolve_v4(2, 40);

    // The quiet server stays reachable from outside throughout, across
    // several of the router's resolutions, and talking to it is no bite.
    for round in 0..4 {
        assert_eq!(
            fetch(&lab, "203.0.113.10", "http://198.51.100.30/").as_deref(),
            Some("the quiet server of 198.51.100.30\n"),
            "round {round}"
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    let quiet = ask(
        &lab.socket(),
        json!({"command": "decoys", "arguments": {"address": "198.51.100.30"}}),
    );
    assert_eq!(quiet[0]["state"], "live", "{quiet}");
    assert!(lab.bite_events().is_empty(), "no bite");

    // The router's own ARP and ICMP, from its address inside the
    // protected prefix, still pass (it is the configured gateway).
    assert_eq!(
        lab.scapy("out", ROUTER_PING, &["198.51.100.1", "198.51.100.10"]),
        "reply"
    );

    // An inside host forging an outside source, with its own MAC: no
    // SYN-ACK comes back to it, so it can never bite in that name.
    let decoy = lab.decoy_with(&[80]);
    let decoy_mac = ask(
        &lab.socket(),
        json!({"command": "decoys", "arguments": {"address": decoy}}),
    )[0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        lab.scapy(
            "in",
            FORGED_SYN,
            &["203.0.113.10", &decoy, "80", "p0", &decoy_mac]
        ),
        "0",
        "an insider forging an outside source gets no SYN-ACK"
    );
    // The same frame from outside, in the real client's own name, gets one.
    assert_eq!(
        lab.scapy(
            "out",
            FORGED_SYN,
            &["203.0.113.10", &decoy, "80", "o0", &decoy_mac]
        ),
        "3"
    );

    // Outside frames forging every decoy's address (and the quiet
    // server's) are dropped and never learned: every decoy still answers.
    let before = lab.decoy_sample();
    let forged: Vec<String> = before
        .iter()
        .map(|d| d["address"].as_str().unwrap().to_string())
        .chain(["198.51.100.30".to_string()])
        .collect();
    lab.scapy(
        "out",
        FORGED_INSIDE_SOURCES,
        &[&forged.join(","), "198.51.100.10", "3"],
    );
    let after = lab.decoy_sample();
    assert_eq!(before, after, "every decoy still answers");
    let totals = lab.totals();
    assert!(
        totals["drops"]["spoofed"].as_u64().unwrap() >= 3 * 3 * forged.len() as u64,
        "{totals}"
    );
    assert!(totals["claims"].as_u64().unwrap() >= 10, "{totals}");
    assert_eq!(
        ask(&lab.socket(), json!({"command": "block-list"})),
        json!([]),
        "nobody is blocked"
    );
    assert!(lab.bite_events().is_empty());
}

#[test]
fn one_arm_sends_only_what_it_made() {
    if !prerequisites() || tool("tcpdump").is_none() {
        return;
    }
    let _lab = one_lab_at_a_time();
    // The appliance on `ext` alone: one arm on the outside link, told
    // outside from inside by the router's MAC (deploy/lab/baitwall.toml).
    let mut lab = Lab::up("bwo");
    lab.start_appliance(Some(
        "[port]\nbackend = \"afpacket\"\nmode = \"one-arm\"\ninterface = \"ext\"\n\n",
    ));
    // Whatever arrives at the router's interface from the wire.
    let capture = lab
        .exec("out", "timeout")
        .args([
            "6",
            "tcpdump",
            "-i",
            "o0",
            "-Q",
            "in",
            "-n",
            "-l",
            "udp port 9999",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Broadcasts, and unicast to hosts on either side: none is the
    // appliance's to send again.
    let sent = lab.scapy(
        "out",
        r#"
from scapy.all import Ether, IP, UDP, sendp, conf, get_if_hwaddr
conf.verb = 0
me = get_if_hwaddr("o0")
frames = [Ether(src=me, dst=d) / IP(src="203.0.113.10", dst=a) / UDP(sport=9999, dport=9999) / b"one-arm"
          for d, a in (("ff:ff:ff:ff:ff:ff", "203.0.113.255"), ("02:00:00:00:99:99", "198.51.100.10"),
                       ("02:00:00:00:99:98", "10.99.1.2"))]
sendp(frames * 5, iface="o0")
print(len(frames) * 5)
"#,
        &[],
    );
    assert_eq!(sent, "15");
    // A decoy still answers: its reply is the appliance's own.
    let decoy = ask(
        &lab.socket(),
        json!({"command": "decoys", "arguments": {"address": "10.99.1.2"}}),
    )[0]
    .clone();
    assert_eq!(decoy["state"], "dark", "{decoy}");
    let port = decoy["open_ports"][0].as_u64().unwrap().to_string();
    assert_eq!(
        lab.scapy(
            "out",
            FORGED_SYN,
            &[
                "203.0.113.77",
                "10.99.1.2",
                &port,
                "o0",
                decoy["mac"].as_str().unwrap()
            ]
        ),
        "3",
        "the decoy's SYN-ACKs"
    );
    let out = capture.wait_with_output().unwrap();
    let echoed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        echoed.lines().filter(|l| l.contains(" IP ")).count(),
        0,
        "one-arm sent back frames it did not make:\n{echoed:?}"
    );
    let totals = lab.totals();
    assert!(totals["rx_packets"].as_u64().unwrap() >= 15, "{totals}");
}

#[test]
fn ipv6_an_allowlisted_neighbour_of_a_latched_64_passes_and_mapped_sources_get_nothing() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up_with("bw6", &["--v6"]);
    lab.start_appliance(None);
    // The router resolves ::20-::40 (three solicitations a second apart):
    // the appliance claims them.
    lab.resolve_v6();
    let (addr, mac) = lab.v6_decoy(|_| true);

    // IPv4-mapped and IPv4-compatible sources get nothing.
    for src in ["::ffff:203.0.113.10", "::203.0.113.10"] {
        assert_eq!(
            lab.scapy("out", FORGED_SYN, &[src, &addr, "80", "o0", &mac]),
            "0",
            "{src}"
        );
    }
    // A real IPv6 client does get the decoy's SYN-ACK.
    assert_eq!(
        lab.scapy(
            "out",
            FORGED_SYN,
            &["2001:db8:66::77", &addr, "80", "o0", &mac]
        ),
        "3"
    );
    assert!(lab.bite_events().is_empty());

    // The worm, from its own /64, bites with a request: the worker latches
    // its /64; control, whose exports never cover an allowlisted address,
    // stores and exports the worm's own address (docs/enforcement.md).
    let worm = "import socket, sys\n\
        s = socket.socket(socket.AF_INET6); s.settimeout(3)\n\
        s.bind(('2001:db8:66::66', 0)); s.connect((sys.argv[1], 80))\n\
        s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
        try:\n    s.recv(100)\nexcept OSError:\n    pass\n\
        print('connected')\n";
    let said = lab
        .exec("out", "/usr/bin/python3")
        .args(["-c", worm, &addr])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&said.stdout).trim(), "connected");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocks = ask(&lab.socket(), json!({"command": "block-list"}));
        if blocks
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["prefix"] == "2001:db8:66::66/128")
        {
            assert_eq!(blocks.as_array().unwrap().len(), 1, "{blocks}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worm was never blocked: {blocks}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let web = "http://[2001:db8:100::10]/";
    assert_eq!(fetch(&lab, "2001:db8:66::66", web), None, "the worm");
    assert_eq!(
        fetch(&lab, "2001:db8:66::77", web),
        None,
        "its /64, latched by the worker"
    );
    assert_eq!(
        fetch(&lab, "2001:db8:66::200", web).as_deref(),
        Some("the real web server of 198.51.100.10\n"),
        "the allowlisted neighbour inside the latched /64"
    );
}

/// Sends `argv[4]` TCP ACKs (random acknowledgement numbers, random
/// timestamp echoes: forged bites) from `argv[1]` to `argv[2]`:`argv[3]`
/// as fast as scapy can, for at most `argv[5]` seconds; prints how many.
const FORGED_ACKS: &str = r#"
import random, sys, time
from scapy.all import Ether, IP, IPv6, TCP, Raw, conf, get_if_hwaddr, getmacbyip, sendp
conf.verb = 0
src, dst, port, count, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
iface = "o0"
dmac = sys.argv[6]
l3 = (lambda: IPv6(src=src, dst=dst)) if ":" in dst else (lambda: IP(src=src, dst=dst))
sent, end = 0, time.time() + limit
s = conf.L2socket(iface=iface)
while sent < count and time.time() < end:
    frames = [Ether(src=get_if_hwaddr(iface), dst=dmac) / l3() /
              TCP(sport=random.randint(1024, 65535), dport=port, flags="PA", seq=random.getrandbits(32),
                  ack=random.getrandbits(32), options=[("NOP", None), ("NOP", None),
                  ("Timestamp", (random.getrandbits(32), random.getrandbits(32)))]) / Raw(b"GET / HTTP/1.0\r\n\r\n")
              for _ in range(min(200, count - sent))]
    for f in frames:
        s.send(f)
    sent += len(frames)
print(sent)
"#;

impl Lab {
    /// A dark decoy of .2-.40 with 80 and 443 open whose persona has a TCP
    /// clock (a Linux web server or a printer): its bites can be strong.
    fn clocked_decoy(&self) -> (String, String) {
        let d = self
            .decoy_sample()
            .into_iter()
            .find(|d| {
                let open = d["open_ports"].as_array().unwrap();
                ["linux_web", "printer"].contains(&d["persona"].as_str().unwrap())
                    && open.contains(&json!(80))
                    && open.contains(&json!(443))
            })
            .expect("a clocked decoy with 80 and 443");
        (
            d["address"].as_str().unwrap().to_string(),
            d["mac"].as_str().unwrap().to_string(),
        )
    }

    /// Runs worm.py from `source` against `decoy`; how long from its start
    /// until control lists `listed` blocked (printed by the tests: a
    /// latency seen, never asserted).
    fn worm_latched(&self, decoy: &str, source: &str, listed: &str) -> Duration {
        let started = Instant::now();
        let worm = self
            .exec("out", "/usr/bin/python3")
            .args([&format!("{LAB}/worm.py"), decoy, source])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let took = loop {
            let covered = ask(
                &self.socket(),
                json!({"command": "block-list", "arguments": {"covering": source}}),
            );
            if covered
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["prefix"] == listed)
            {
                break started.elapsed();
            }
            assert!(Instant::now() < deadline, "{source} was never latched");
            std::thread::sleep(Duration::from_millis(5));
        };
        let said = String::from_utf8_lossy(&worm.wait_with_output().unwrap().stdout).into_owned();
        assert!(said.contains("80 connected"), "{said}");
        took
    }
}

/// Completes a handshake from `argv[1]` with the decoy `argv[2]` (MAC
/// `argv[3]`) on port 80 and sends the data that bites, its TCP checksum
/// broken unless `argv[4]` is "good"; prints the cookie it acknowledged.
const CHECKSUMMED_BITE: &str = r#"
import sys
from scapy.all import Ether, IP, TCP, Raw, conf, get_if_hwaddr, srp1, sendp
conf.verb = 0
src, dst, dmac, good = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "good"
iface = "o0"
eth = Ether(src=get_if_hwaddr(iface), dst=dmac)
syn = eth / IP(src=src, dst=dst) / TCP(sport=45555, dport=80, flags="S", seq=1000)
synack = srp1(syn, iface=iface, timeout=5)
ack = synack[TCP].seq + 1
bite = Ether(bytes(eth / IP(src=src, dst=dst) / TCP(sport=45555, dport=80, flags="PA", seq=1001, ack=ack)
                   / Raw(b"GET / HTTP/1.0\r\n\r\n")))
if not good:
    # Not 0xffff: in one's complement 0x0000 and 0xffff are the same sum.
    bite[TCP].chksum ^= 0x0101
sendp(bite, iface=iface)
print(hex(ack))
"#;

/// A bite whose TCP checksum is wrong, with the right cookie: a real host
/// drops it, so the decoy does too. It latches nobody and spends nothing
/// (the same source's correct bite afterwards is its first weak try and
/// latches), and it is counted as `bad_checksum`.
#[test]
fn a_bite_with_a_bad_checksum_latches_nobody() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up("bwk");
    lab.start_appliance(None);
    let decoys = ask(
        &lab.socket(),
        json!({"command": "decoys", "arguments": {"address": "10.99.3.1", "sample": 20}}),
    );
    let d = decoys
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["open_ports"].as_array().unwrap().contains(&json!(80)))
        .expect("a decoy with port 80 open");
    let (decoy, mac) = (d["address"].as_str().unwrap(), d["mac"].as_str().unwrap());
    let client = "203.0.113.10";
    let covering = || {
        ask(
            &lab.socket(),
            json!({"command": "block-list", "arguments": {"covering": client}}),
        )
    };
    let before = lab.totals()["drops"]["bad_checksum"].as_u64().unwrap();
    lab.scapy("out", CHECKSUMMED_BITE, &[client, decoy, mac, "bad"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(covering(), json!([]), "a bad checksum latches nobody");
    let after = lab.totals()["drops"]["bad_checksum"].as_u64().unwrap();
    assert!(after > before, "counted: {before} then {after}");
    assert!(fetch(&lab, client, "http://198.51.100.10/").is_some());
    // The same bite with its checksum right: the source's first weak try,
    // unspent by the bad one, latches it.
    lab.scapy("out", CHECKSUMMED_BITE, &[client, decoy, mac, "good"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while covering() == json!([]) {
        assert!(Instant::now() < deadline, "the correct bite latches");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worm_is_latched_whatever_is_sent_in_its_name_and_a_forged_flood_never_blocks_an_innocent() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up("bwf");
    lab.start_appliance(None);
    lab.resolve_v4(2, 40);
    let (decoy, mac) = lab.clocked_decoy();

    // A forged-ACK flood naming the benign client, for a minute, as fast
    // as hping3 and scapy send: wrong cookies and timestamp echoes.
    let hping = lab
        .exec("out", "timeout")
        .args([
            "60",
            "hping3",
            "--flood",
            "-A",
            "-a",
            "203.0.113.10",
            "-p",
            "80",
            "-d",
            "20",
            &decoy,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scapy_sent = lab.scapy(
        "out",
        FORGED_ACKS,
        &["203.0.113.10", &decoy, "80", "100000000", "58", &mac],
    );
    let hping = hping.wait_with_output().unwrap();
    assert!(hping.status.code().is_some());
    let covered = ask(
        &lab.socket(),
        json!({"command": "block-list", "arguments": {"covering": "203.0.113.10"}}),
    );
    assert_eq!(
        covered,
        json!([]),
        "a forged flood never blocks an innocent"
    );
    assert!(fetch(&lab, "203.0.113.10", "http://198.51.100.10/").is_some());
    let totals = lab.totals();
    println!(
        "forged flood: {} frames from scapy, {} bad cookies, {} bad echoes, {} weak bites denied",
        scapy_sent, totals["bad_cookies"], totals["bad_echoes"], totals["weak_denied"]
    );
    assert!(totals["bad_cookies"].as_u64().unwrap() > 10_000, "{totals}");

    // A worm that first sends a thousand ACKs with wrong cookies in its own
    // name, then bites with a real kernel stack (timestamps on): latched.
    lab.scapy(
        "out",
        FORGED_ACKS,
        &["203.0.113.66", &decoy, "80", "1000", "30", &mac],
    );
    let took = lab.worm_latched(&decoy, "203.0.113.66", "203.0.113.66/32");
    println!("worm after 1,000 wrong cookies of its own: latched in {took:?}");
    assert_eq!(fetch(&lab, "203.0.113.66", "http://198.51.100.10/"), None);

    // A worm whose /24 neighbour is being spoofed: latched, and the
    // neighbour is not.
    lab.scapy(
        "out",
        FORGED_ACKS,
        &["203.0.113.78", &decoy, "80", "1000", "30", &mac],
    );
    let took = lab.worm_latched(&decoy, "203.0.113.77", "203.0.113.77/32");
    println!("worm with a spoofed /24 neighbour: latched in {took:?}");
    let blocks = ask(&lab.socket(), json!({"command": "block-list"}));
    let prefixes: BTreeSet<&str> = blocks
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(
        prefixes,
        BTreeSet::from(["203.0.113.66/32", "203.0.113.77/32"]),
        "only the worms"
    );
    let bites = lab.bite_events();
    assert!(
        bites
            .iter()
            .any(|b| b["baitwall"]["proof"] == "strong" && b["baitwall"]["action"] == "block"),
        "strong proofs latched: {bites:?}"
    );
}

#[test]
fn over_ipv6_a_worm_is_latched_after_wrong_cookies_and_a_forged_flood_blocks_nobody() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up_with("bwg", &["--v6"]);
    lab.start_appliance(None);
    lab.resolve_v6();
    // A persona with a TCP clock: its bites can be strong.
    let (decoy, mac) = lab.v6_decoy(|persona| ["linux_web", "printer"].contains(&persona));
    // Forged ACKs naming ::77 for half a minute: nobody is blocked.
    let sent = lab.scapy(
        "out",
        FORGED_ACKS,
        &["2001:db8:66::77", &decoy, "80", "100000000", "30", &mac],
    );
    assert_eq!(
        ask(&lab.socket(), json!({"command": "block-list"})),
        json!([])
    );
    println!("forged IPv6 flood: {sent} frames");
    // The worm's own wrong cookies first, then its bite: latched.
    lab.scapy(
        "out",
        FORGED_ACKS,
        &["2001:db8:66::66", &decoy, "80", "1000", "30", &mac],
    );
    let took = lab.worm_latched(&decoy, "2001:db8:66::66", "2001:db8:66::66/128");
    println!("IPv6 worm after 1,000 wrong cookies of its own: latched in {took:?}");
}

/// What nmap's database must call a decoy of each persona: the vendor, OS
/// family and generation of the top guess's class (`None`: any), and a
/// word its name must carry (`""`: any).
fn claimed_os(
    persona: &str,
) -> (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
) {
    match persona {
        "linux_web" | "linux_ssh" => ("Linux", "Linux", Some("5.X"), ""),
        "windows_server" => ("Microsoft", "Windows", Some("2016"), "Server"),
        "freebsd" => ("FreeBSD", "FreeBSD", None, ""),
        "printer" => ("HP", "embedded", None, "LaserJet"),
        "router" => ("Cisco", "IOS", Some("15.X"), "router"),
        "camera" => ("Linux", "Linux", None, "Hikvision"),
        other => panic!("no claim for persona {other}"),
    }
}

impl Lab {
    /// `count` dark addresses from `address` on, with their personas.
    fn decoy_personas(&self, address: &str, count: usize) -> Vec<(String, String)> {
        let decoys = ask(
            &self.socket(),
            json!({"command": "decoys", "arguments": {"address": address, "sample": count}}),
        );
        let decoys: Vec<(String, String)> = decoys
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["address"].as_str().unwrap().to_owned(),
                    d["persona"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(decoys.len(), count);
        decoys
    }

    /// nmap with `args` against `decoys` from the scanner 203.0.113.77 on
    /// the outside; its XML report.
    fn nmap_xml(&self, args: &[&str], decoys: &[(String, String)]) -> String {
        let scan = self
            .exec("out", "nmap")
            .args(args)
            .args(["-Pn", "-n", "-S", "203.0.113.77", "-e", "o0", "-oX", "-"])
            .args(decoys.iter().map(|(a, _)| a.as_str()))
            .output()
            .unwrap();
        assert!(scan.status.success());
        String::from_utf8_lossy(&scan.stdout).into_owned()
    }
}

/// nmap's XML report, parsed (it starts with a DOCTYPE).
fn nmap_doc(xml: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(xml, options).unwrap()
}

/// `nmap -O --osscan-guess` against 40 decoys of the dark /16: the top
/// guess names the OS the persona claims (family, generation, and for the
/// appliances the device) for at least 95% of them. Prints the agreement
/// per persona (docs/deception.md has a run's figures).
#[test]
fn nmap_takes_each_decoy_for_the_os_its_persona_claims() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up("bwo");
    lab.start_appliance(None);
    // The dark /16 is routed here whole: every address is a decoy at once.
    let decoys = lab.decoy_personas("10.99.7.1", 40);
    let xml = lab.nmap_xml(
        &[
            "-O",
            "--osscan-guess",
            "--max-os-tries",
            "2",
            "-p",
            "1,22,80,135,443,554",
        ],
        &decoys,
    );
    let doc = nmap_doc(&xml);
    // Per persona: decoys, agreeing top guesses, exact (100%) matches.
    let mut tally: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    let mut misses = Vec::new();
    for host in doc.descendants().filter(|n| n.has_tag_name("host")) {
        let addr = host
            .descendants()
            .find(|n| n.has_tag_name("address") && n.attribute("addrtype") == Some("ipv4"))
            .and_then(|n| n.attribute("addr"))
            .unwrap();
        let persona = &decoys.iter().find(|(a, _)| a == addr).unwrap().1;
        let (vendor, family, generation, word) = claimed_os(persona);
        let top = host.descendants().find(|n| n.has_tag_name("osmatch"));
        let name = top.and_then(|m| m.attribute("name")).unwrap_or("none");
        let accuracy: u32 = top
            .and_then(|m| m.attribute("accuracy"))
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let class = top.and_then(|m| m.children().find(|c| c.has_tag_name("osclass")));
        let agrees = class.is_some_and(|c| {
            c.attribute("vendor") == Some(vendor)
                && c.attribute("osfamily") == Some(family)
                && generation.is_none_or(|g| c.attribute("osgen") == Some(g))
        }) && name.contains(word);
        let t = tally.entry(claimed_name(persona)).or_default();
        t.0 += 1;
        t.1 += u32::from(agrees);
        t.2 += u32::from(agrees && accuracy == 100);
        if !agrees {
            misses.push(format!("{addr} ({persona}): {name} ({accuracy}%)"));
        }
    }
    println!("persona          decoys  agreeing  exact");
    for (persona, (n, agree, exact)) in &tally {
        println!("{persona:<16} {n:>6}  {agree:>8}  {exact:>5}");
    }
    let (n, agree) = tally.values().fold((0, 0), |(n, a), t| (n + t.0, a + t.1));
    println!("all              {n:>6}  {agree:>8}   misses: {misses:?}");
    assert_eq!(n, 40, "nmap reported every decoy");
    assert!(
        agree * 100 >= n * 95,
        "{agree} of {n} agree; misses: {misses:#?}"
    );
    assert!(
        tally.len() >= 5,
        "the sample covers the families: {tally:?}"
    );
}

/// `nmap -sV` against 30 decoys of the dark /16, from a scanner the
/// operator allowlisted (its bites alert and the decoys keep answering):
/// every open port is named as the persona's own software would be, the
/// product where nmap's probes name one for the real thing, and each TLS
/// port (443, RDP's 3389) shows a certificate in the persona's style.
/// Prints the
/// agreement per persona (docs/deception.md has a run's figures).
#[test]
fn nmap_names_the_software_each_persona_claims_on_every_open_port() {
    if !prerequisites() {
        return;
    }
    let _lab = one_lab_at_a_time();
    let mut lab = Lab::up("bwv");
    lab.start_appliance_edited(None, |t| {
        t.replace(
            "allow = [\"2001:db8:66::200\"]",
            "allow = [\"2001:db8:66::200\", \"203.0.113.77\"]",
        )
    });
    let decoys = lab.decoy_personas("10.99.9.1", 30);
    let xml = lab.nmap_xml(
        &[
            "-sV",
            "--script",
            "ssl-cert",
            "-p",
            "22,23,80,135,139,443,445,515,554,631,3389,8000,8080,9100",
        ],
        &decoys,
    );
    let doc = nmap_doc(&xml);
    // Per persona: open ports, ports named as the claimed software.
    let mut tally: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut misses = Vec::new();
    for host in doc.descendants().filter(|n| n.has_tag_name("host")) {
        let addr = host
            .descendants()
            .find(|n| n.has_tag_name("address") && n.attribute("addrtype") == Some("ipv4"))
            .and_then(|n| n.attribute("addr"))
            .unwrap();
        let persona = &decoys.iter().find(|(a, _)| a == addr).unwrap().1;
        for port in host.descendants().filter(|n| n.has_tag_name("port")) {
            let open = port
                .children()
                .any(|c| c.has_tag_name("state") && c.attribute("state") == Some("open"));
            if !open {
                continue;
            }
            let number: u16 = port.attribute("portid").unwrap().parse().unwrap();
            let service = port.children().find(|c| c.has_tag_name("service"));
            let attr = |a| service.and_then(|s| s.attribute(a)).unwrap_or("");
            let (name, product, tunnel) = (attr("name"), attr("product"), attr("tunnel"));
            let (want_names, want_product) = claimed_service(persona, number);
            let agrees = (want_names.contains(&name)
                || (tunnel == "ssl" && want_names.contains(&"ssl")))
                && (want_product.is_empty() || want_product.iter().any(|p| product.contains(p)));
            // TLS (443, and RDP's 3389): the certificate is the persona's
            // own (engine::decoy::certs).
            let cert = port
                .children()
                .find(|c| c.has_tag_name("script") && c.attribute("id") == Some("ssl-cert"))
                .and_then(|c| c.attribute("output"))
                .unwrap_or("");
            let cert_ok = !matches!(number, 443 | 3389) || {
                let style = match persona.as_str() {
                    "windows_server" => "Subject: commonName=WIN-",
                    "printer" => "Subject: commonName=NPI",
                    _ => "Subject: commonName=",
                };
                cert.starts_with(style) && cert.contains("Public Key type: rsa")
            };
            let agrees = agrees && cert_ok;
            let t = tally.entry(claimed_name(persona)).or_default();
            t.0 += 1;
            t.1 += u32::from(agrees);
            if !agrees {
                misses.push(format!(
                    "{addr}:{number} ({persona}): {tunnel}/{name} {product:?} {:?} {cert:?}",
                    attr("version")
                ));
            }
        }
    }
    println!("persona          ports  named");
    for (persona, (n, named)) in &tally {
        println!("{persona:<16} {n:>5}  {named:>5}");
    }
    let (n, named) = tally.values().fold((0, 0), |(n, a), t| (n + t.0, a + t.1));
    println!("all              {n:>5}  {named:>5}   misses: {misses:?}");
    assert!(n >= 60, "open ports found: {n}");
    assert!(
        named * 100 >= n * 95,
        "{named} of {n} named; misses: {misses:#?}"
    );
    assert!(
        tally.len() >= 5,
        "the sample covers the families: {tally:?}"
    );
}

/// What nmap -sV names a persona's open `port` on the real thing: the
/// service names it may report and the products it may name, by a piece
/// of the name (none where nmap names none for the real software either:
/// Windows Server 2019's SMB, which refuses nmap's SMB1 probe, raw
/// printing, and TLS, whose tunnel a stateless decoy cannot complete).
fn claimed_service(persona: &str, port: u16) -> (&'static [&'static str], &'static [&'static str]) {
    match (persona, port) {
        ("router", 22) => (&["ssh"], &["Cisco SSH"]),
        (_, 22) => (&["ssh"], &["OpenSSH"]),
        ("router", 23) => (&["telnet"], &["Cisco router telnetd"]),
        ("windows_server", 80) => (&["http"], &["Microsoft IIS httpd"]),
        ("printer", 80 | 631) => (&["http", "ipp"], &["HP Color LaserJet MFP M476dw"]),
        ("router", 80) => (&["http"], &["Cisco IOS http config"]),
        ("camera", 80) => (&["http"], &["Hikvision"]),
        (_, 80 | 8080) => (&["http", "http-proxy"], &["nginx", "Apache httpd"]),
        (_, 443) => (&["ssl", "https"], &[]),
        (_, 135) => (&["msrpc"], &["Microsoft Windows RPC"]),
        (_, 139) => (&["netbios-ssn"], &["Microsoft Windows netbios-ssn"]),
        (_, 445) => (&["microsoft-ds"], &[]),
        (_, 3389) => (&["ms-wbt-server"], &["Microsoft Terminal Service"]),
        (_, 515) => (&["printer"], &[]),
        (_, 9100) => (&["jetdirect"], &[]),
        (_, 554) => (&["rtsp"], &["Hikvision"]),
        (_, 8000) => (&["ipcam", "http-alt"], &["Hikvision"]),
        _ => (&[], &["?"]),
    }
}

/// The persona names, as `'static` keys for the tally.
fn claimed_name(persona: &str) -> &'static str {
    match persona {
        "linux_web" => "linux_web",
        "linux_ssh" => "linux_ssh",
        "windows_server" => "windows_server",
        "freebsd" => "freebsd",
        "printer" => "printer",
        "router" => "router",
        "camera" => "camera",
        _ => "other",
    }
}
