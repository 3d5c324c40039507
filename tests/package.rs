//! The Debian package, end to end on this machine: cargo-deb builds it from
//! the binaries of this test build, dpkg installs it, and the test checks
//! what it put where (binaries, units, conffiles, the user and group
//! `baitwall`, the directories and their owners), verifies the installed
//! units with `systemd-analyze verify` and the log rotation with logrotate.
//! systemd is not PID 1 here, so the test then starts both processes as
//! their units would: the unit's ExecStart, user, group, umask and
//! capabilities, through setpriv. The dataplane replays the demo's scenario
//! (a pcap port: no NIC), control runs on the installed control.toml; an
//! operator in the group `baitwall` asks `baitwallctl status` through the
//! socket, the worm gets blocked and its bite captured, logrotate rotates
//! the event log and control reopens it. Last, `dpkg --purge`, and nothing
//! may be left but the system account.
//!
//! Needs root, dpkg, cargo-deb, systemd-analyze, setpriv, logrotate and
//! pkill, and a machine where systemd is not running (CI): without them it
//! skips with one line, and fails under CI=true. It installs on the machine
//! itself (issue 8 allows it): one install at a time (a lock file), never
//! over a baitwall package already there, and a guard purges the package
//! and stops the processes even when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use baitwall_dataplane::testbed::{is_root, prerequisite, tool};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_baitwall");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PACKAGE: &str = "baitwall";
const BINARIES: [&str; 4] = [
    "baitwall",
    "baitwall-dataplane",
    "baitwall-control",
    "baitwallctl",
];
const UNITS: [&str; 2] = ["baitwall-dataplane.service", "baitwall-control.service"];
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const REGION: &str = "/dev/shm/baitwall.region";
const SOCKET_DIR: &str = "/run/baitwall";
/// The demo scenario's worm (dataplane/src/demo/scenario.rs).
const WORM: &str = "192.0.2.66";

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// dpkg's status of the package: `None` when dpkg does not know it.
fn package_status() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", PACKAGE])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !status.is_empty() && status != "not-installed").then_some(status)
}

fn prerequisites() -> bool {
    if !prerequisite(is_root(), "the package test needs root (dpkg -i)") {
        return false;
    }
    let tools = [
        "dpkg",
        "dpkg-query",
        "dpkg-statoverride",
        "systemd-analyze",
        "setpriv",
        "logrotate",
        "pkill",
        "getent",
    ];
    if !tools.iter().all(|t| tool(t).is_some()) {
        return false;
    }
    let cargo_deb = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    prerequisite(
        cargo_deb,
        "cargo-deb is not installed (cargo install --locked cargo-deb)",
    ) && prerequisite(
        !Path::new("/run/systemd/system").exists(),
        "systemd runs on this machine: the package test emulates the units where it does not (CI); install by hand as docs/deploy.md says",
    ) && prerequisite(
        package_status().is_none(),
        "a baitwall package is already installed here: the test will not replace and purge it",
    )
}

/// Runs `cmd` to completion within `limit` (killed past it), its output kept.
fn bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} took longer than {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// [`bounded`], and the command must succeed; returns its stdout.
fn ok(cmd: &mut Command, limit: Duration) -> String {
    let out = bounded(cmd, limit);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The values of `key` in a unit file (every `key=` line, in order).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit_values(unit, key).pop()
}

/// `CAP_NET_RAW CAP_IPC_LOCK` as setpriv's `-all,+net_raw,+ipc_lock`.
fn setpriv_caps(caps: Option<String>) -> String {
    let mut s = String::from("-all");
    for cap in caps.unwrap_or_default().split_whitespace() {
        s.push_str(",+");
        s.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    s
}

/// A process started as its installed unit would start it: the unit's
/// user, group, umask and capabilities, and its ExecStart with `args`
/// replacing the ExecStart's own arguments when given.
fn start_as_unit(unit: &str, args: Option<&[&str]>, log: &Path) -> Child {
    let text = std::fs::read_to_string(Path::new(UNIT_DIR).join(unit)).unwrap();
    let exec = unit_value(&text, "ExecStart").unwrap();
    let mut exec: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    if let Some(args) = args {
        exec.truncate(1);
        exec.extend(args.iter().map(|a| a.to_string()));
    }
    let umask = unit_value(&text, "UMask").unwrap_or_else(|| "0022".into());
    let mut setpriv = vec!["setpriv".to_string()];
    if let Some(user) = unit_value(&text, "User") {
        setpriv.push(format!("--reuid={user}"));
    }
    match unit_value(&text, "Group") {
        Some(group) => setpriv.push(format!("--regid={group}")),
        None => setpriv.push("--regid=0".into()),
    }
    if unit_value(&text, "User").is_some() {
        setpriv.push("--init-groups".into());
    } else {
        setpriv.push("--clear-groups".into());
    }
    let ambient = setpriv_caps(unit_value(&text, "AmbientCapabilities"));
    setpriv.push(format!("--inh-caps={ambient}"));
    setpriv.push(format!("--ambient-caps={ambient}"));
    setpriv.push(format!(
        "--bounding-set={}",
        setpriv_caps(unit_value(&text, "CapabilityBoundingSet"))
    ));
    if unit_value(&text, "NoNewPrivileges").as_deref() == Some("yes") {
        setpriv.push("--no-new-privs".into());
    }
    setpriv.push("--".into());
    let log = File::create(log).unwrap();
    Command::new("sh")
        .args(["-c", "umask \"$0\" && exec \"$@\"", &umask])
        .args(&setpriv)
        .args(&exec)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// `baitwallctl --json ARGS` as an operator: `nobody`, with the group
/// `baitwall` or without it.
fn operator(in_group: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup"]);
    if in_group {
        cmd.arg("--groups=baitwall");
    } else {
        cmd.arg("--clear-groups");
    }
    cmd.args(["--", "/usr/bin/baitwallctl", "--json"])
        .args(args);
    bounded(&mut cmd, Duration::from_secs(20))
}

/// The message of control's answer to `baitwallctl --json ARGS`, asked by
/// an operator in the group.
fn ctl(args: &[&str]) -> Value {
    let out = operator(true, args);
    assert!(
        out.status.success(),
        "baitwallctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    answer["message"].clone()
}

/// Waits until `done`; past `limit`, fails with what `context` says (the
/// processes' logs).
fn wait_for(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn id_of(database: &str, name: &str) -> u32 {
    let out = ok(
        Command::new("getent").args([database, name]),
        Duration::from_secs(10),
    );
    out.split(':').nth(2).unwrap().trim().parse().unwrap()
}

/// Owner, group and permission bits of a path.
fn stat(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// The package and the processes of the test; everything goes at drop,
/// whatever happened.
struct Installed {
    children: Vec<(&'static str, Child)>,
    logs: PathBuf,
}

impl Installed {
    /// Stops a child with SIGTERM, as systemd would; false if it had to be killed.
    fn stop(&mut self, name: &str) -> bool {
        let Some(i) = self.children.iter().position(|(n, _)| *n == name) else {
            return true;
        };
        let (_, mut child) = self.children.remove(i);
        if child.try_wait().unwrap().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait().unwrap().success()
    }

    /// Both processes' output, for a failure's message.
    fn logs(&self) -> String {
        logs_in(&self.logs)
    }
}

fn logs_in(dir: &Path) -> String {
    ["control", "dataplane"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            format!("--- {name}:\n{text}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Installed {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if package_status().is_some() {
            let _ = bounded(
                Command::new("dpkg").args(["--purge", PACKAGE]),
                Duration::from_secs(120),
            );
        }
        // What systemd would have removed: the runtime directory.
        let _ = std::fs::remove_dir_all(SOCKET_DIR);
        let _ = std::fs::remove_file(REGION);
    }
}

/// Builds the package from this build's binaries: cargo-deb's assets name
/// `target/release/...`, so the binaries go to a staging target directory's
/// `release/` and cargo-deb runs there with `--no-build`.
fn build_package(staging: &Path) -> PathBuf {
    // `cargo test --workspace` built every binary already: this finds them
    // fresh. Alone (`cargo test --test package`), it builds the other
    // packages' binaries. cargo holds no lock while tests run.
    ok(
        Command::new(cargo())
            .current_dir(ROOT)
            .args(["build", "--workspace", "--bins"]),
        Duration::from_secs(1200),
    );
    let built = Path::new(BIN).parent().unwrap();
    std::fs::create_dir_all(staging.join("release")).unwrap();
    for bin in BINARIES {
        std::fs::copy(built.join(bin), staging.join("release").join(bin)).unwrap();
    }
    let deb = staging.join("baitwall.deb");
    ok(
        Command::new(cargo())
            .current_dir(ROOT)
            .env("CARGO_TARGET_DIR", staging)
            .args(["deb", "--no-build", "--strip", "--fast", "--output"])
            .arg(&deb),
        Duration::from_secs(300),
    );
    deb
}

#[test]
fn the_package_installs_runs_as_its_units_and_purges_clean() {
    if !prerequisites() {
        return;
    }
    // One install at a time on this machine, whichever process runs it.
    let lock = File::create(std::env::temp_dir().join("baitwall-package-test.lock")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while lock.try_lock().is_err() {
        assert!(
            Instant::now() < deadline,
            "another package test held the lock for 10 min"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_package(&dir.path().join("staging"));
    let contents = ok(
        Command::new("dpkg-deb").arg("--contents").arg(&deb),
        Duration::from_secs(30),
    );
    for path in [
        "./usr/bin/baitwall-dataplane",
        "./usr/lib/systemd/system/baitwall-control.service",
        "./etc/baitwall/baitwall.toml",
        "./etc/logrotate.d/baitwall",
        "./usr/lib/systemd/system/exabgp.service.d/baitwall.conf",
        "./usr/share/doc/baitwall/deploy.md",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }

    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut installed = Installed {
        children: Vec::new(),
        logs: logs.clone(),
    };
    ok(
        Command::new("dpkg")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("--install")
            .arg(&deb),
        Duration::from_secs(120),
    );
    assert_eq!(package_status().as_deref(), Some("installed"));

    // What the package put where.
    for bin in BINARIES {
        let (_, _, mode) = stat(&format!("/usr/bin/{bin}"));
        assert_eq!(mode, 0o755, "/usr/bin/{bin}");
    }
    let conffiles = ok(
        Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]),
        Duration::from_secs(10),
    );
    for conffile in [
        "/etc/baitwall/baitwall.toml",
        "/etc/baitwall/control.toml",
        "/etc/logrotate.d/baitwall",
    ] {
        assert!(conffiles.contains(conffile), "{conffile}: {conffiles}");
    }
    let passwd = ok(
        Command::new("getent").args(["passwd", "baitwall"]),
        Duration::from_secs(10),
    );
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert!(
        fields[2].parse::<u32>().unwrap() < 1000,
        "a system user: {passwd}"
    );
    assert_eq!(fields[5], "/var/lib/baitwall", "{passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    let uid = id_of("passwd", "baitwall");
    let gid = id_of("group", "baitwall");
    assert_eq!(fields[3].parse::<u32>().unwrap(), gid, "{passwd}");
    assert_eq!(stat("/var/lib/baitwall"), (uid, gid, 0o750));
    assert_eq!(stat("/var/log/baitwall"), (uid, gid, 0o750));
    assert_eq!(stat("/var/lib/baitwall/captures"), (0, gid, 0o770));
    assert_eq!(stat("/etc/baitwall/baitwall.toml"), (0, 0, 0o640));
    assert_eq!(stat("/etc/baitwall/control.toml"), (0, gid, 0o640));
    // Control is enabled (for the next boot); the dataplane waits for its
    // ports to be configured.
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants");
    assert!(wants.join("baitwall-control.service").exists());
    assert!(!wants.join("baitwall-dataplane.service").exists());

    // The installed units and rotation, checked by their own tools (and
    // ExaBGP's unit with the package's drop-in, where ExaBGP is installed).
    let mut units: Vec<String> = UNITS.iter().map(|u| format!("{UNIT_DIR}/{u}")).collect();
    if Path::new(UNIT_DIR).join("exabgp.service").exists() {
        units.push("exabgp.service".into());
    }
    let verify = bounded(
        Command::new("systemd-analyze").arg("verify").args(&units),
        Duration::from_secs(60),
    );
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("baitwall"), "systemd-analyze verify: {said}");
    // Expiries are Unix times: both processes start after the wall clock
    // is set (ordering only: time-sync.target is passive).
    for unit in ["baitwall-dataplane.service", "baitwall-control.service"] {
        let text = std::fs::read_to_string(Path::new(UNIT_DIR).join(unit)).unwrap();
        let after = unit_values(&text, "After").join(" ");
        assert!(after.contains("time-sync.target"), "{unit}: After={after}");
    }
    let rotate = bounded(
        Command::new("logrotate").args(["-d", "/etc/logrotate.d/baitwall"]),
        Duration::from_secs(30),
    );
    let said = String::from_utf8_lossy(&rotate.stderr);
    assert!(
        rotate.status.success() && !said.contains("error"),
        "logrotate -d: {said}"
    );
    // The installed binaries read the installed configurations; control's
    // as the user it runs as.
    ok(
        Command::new("/usr/bin/baitwall-dataplane")
            .args(["check-config", "/etc/baitwall/baitwall.toml"]),
        Duration::from_secs(30),
    );
    ok(
        Command::new("setpriv")
            .args([
                "--reuid=baitwall",
                "--regid=baitwall",
                "--init-groups",
                "--",
            ])
            .args([
                "/usr/bin/baitwall",
                "control",
                "check-config",
                "/etc/baitwall/control.toml",
            ]),
        Duration::from_secs(30),
    );

    // The dataplane's configuration: the demo's scenario and settings (the
    // installed example wants NICs), timed at 10x, with control's region,
    // a fail-closed start (no frame before control's resync) and bite
    // capture into the packaged directory.
    let demo = dir.path().join("demo");
    ok(
        Command::new("/usr/bin/baitwall")
            .arg("demo")
            .arg("--keep")
            .arg(&demo),
        Duration::from_secs(120),
    );
    let mut config = std::fs::read_to_string(demo.join("demo.toml"))
        .unwrap()
        .replace("speed = 50.0", "speed = 10.0");
    config.push_str(&format!(
        "\n[control]\nregion = \"{REGION}\"\nstart = \"closed\"\nhold_for = \"20s\"\n\n\
         [capture]\ndir = \"/var/lib/baitwall/captures\"\n"
    ));
    let config_path = demo.join("demo.toml");
    std::fs::write(&config_path, config).unwrap();

    // Control, as its unit starts it (RuntimeDirectory= made by hand).
    ok(
        Command::new("install").args([
            "-d", "-o", "baitwall", "-g", "baitwall", "-m", "0750", SOCKET_DIR,
        ]),
        Duration::from_secs(10),
    );
    let control = start_as_unit("baitwall-control.service", None, &logs.join("control.log"));
    installed.children.push(("control", control));
    let status = |in_group| operator(in_group, &["status"]);
    let context = || logs_in(&logs);
    wait_for(
        "control's socket answers",
        Duration::from_secs(30),
        context,
        || status(true).status.success(),
    );
    // Only the group baitwall may operate it (exit 2: socket unreachable).
    assert_eq!(status(false).status.code(), Some(2));

    let dataplane = start_as_unit(
        "baitwall-dataplane.service",
        Some(&["run", "--config", config_path.to_str().unwrap()]),
        &logs.join("dataplane.log"),
    );
    installed.children.push(("dataplane", dataplane));
    wait_for(
        "control attached to the dataplane",
        Duration::from_secs(30),
        context,
        || ctl(&["status"])["attached"] == true,
    );
    // The region is the group's, so that control (not root) maps it.
    assert_eq!(stat(REGION), (0, gid, 0o660));
    let status = ctl(&["status"]);
    assert!(status["workers"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(
        status["config_file"], "/etc/baitwall/control.toml",
        "{status}"
    );

    // The replay ends (about 10 s) and the dataplane exits: the worm bit a
    // decoy, control stored its block, the worker captured its frames.
    wait_for("the replay ends", Duration::from_secs(90), context, || {
        installed
            .children
            .iter_mut()
            .find(|(n, _)| *n == "dataplane")
            .is_some_and(|(_, c)| c.try_wait().unwrap().is_some())
    });
    assert!(installed.stop("dataplane"), "{}", installed.logs());
    let blocks = ctl(&["block", "list"]);
    assert!(
        blocks.to_string().contains(&format!("{WORM}/32")),
        "{blocks}\n{}",
        installed.logs()
    );
    let capture = format!("/var/lib/baitwall/captures/{WORM}.pcap");
    assert_eq!(stat(&capture), (0, gid, 0o660));
    let eve = "/var/log/baitwall/eve.json";
    wait_for(
        "the block in the event log",
        Duration::from_secs(10),
        context,
        || std::fs::read_to_string(eve).is_ok_and(|t| t.contains("\"event_type\":\"block\"")),
    );
    assert_eq!(stat(eve), (uid, gid, 0o640));

    // logrotate renames the log; its postrotate's SIGHUP has control
    // reopen it by name.
    ok(
        Command::new("logrotate")
            .arg("--force")
            .arg("--state")
            .arg(dir.path().join("logrotate.state"))
            .arg("/etc/logrotate.d/baitwall"),
        Duration::from_secs(30),
    );
    let rotated: Vec<String> = std::fs::read_dir("/var/log/baitwall")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("eve.json-"))
        .collect();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    wait_for(
        "control reopens eve.json",
        Duration::from_secs(10),
        context,
        || Path::new(eve).exists(),
    );

    assert!(installed.stop("control"), "{}", installed.logs());
    std::fs::remove_dir_all(SOCKET_DIR).unwrap();

    // Purge: the package's files, its state and logs, the enablement and
    // the stat override go; the system account stays (Debian's practice).
    ok(
        Command::new("dpkg").args(["--purge", PACKAGE]),
        Duration::from_secs(120),
    );
    assert_eq!(package_status(), None);
    for gone in BINARIES
        .iter()
        .map(|b| format!("/usr/bin/{b}"))
        .chain(UNITS.iter().map(|u| format!("{UNIT_DIR}/{u}")))
        .chain([
            "/etc/baitwall".to_string(),
            "/etc/logrotate.d/baitwall".to_string(),
            "/var/lib/baitwall".to_string(),
            "/var/log/baitwall".to_string(),
            "/usr/share/doc/baitwall".to_string(),
            format!("{UNIT_DIR}/exabgp.service.d/baitwall.conf"),
            REGION.to_string(),
            wants.join("baitwall-control.service").display().to_string(),
        ])
    {
        assert!(
            std::fs::symlink_metadata(&gone).is_err(),
            "{gone} is left after the purge"
        );
    }
    let overrides = ok(
        Command::new("dpkg-statoverride").arg("--list"),
        Duration::from_secs(10),
    );
    assert!(!overrides.contains("/etc/baitwall"), "{overrides}");
    assert_eq!(id_of("passwd", "baitwall"), uid);
    drop(installed);
}
