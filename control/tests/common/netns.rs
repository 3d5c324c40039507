//! Network namespaces, real daemons and their prerequisites, for the
//! enforcement tests: everything is created by the test and removed when
//! its guard drops, even when the test fails.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baitwall_dataplane::testbed::{is_root, prerequisite, tool};

/// True when the test can run: root and every tool present. Otherwise it
/// prints one line and skips, except under `CI=true`, where it fails.
pub fn prerequisites(what: &str, tools: &[&str]) -> bool {
    prerequisite(
        is_root(),
        &format!("{what} needs root (network namespaces)"),
    ) && tools.iter().all(|t| tool(t).is_some())
}

/// Runs a command; its stdout, or a panic that shows its stderr.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Creates `bw<pid><tag>` with its loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("bw{}{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside; its stdout (panics on failure).
    pub fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// `args` prefixed to run inside.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    }

    /// Starts a daemon inside, killed on drop of the guard.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)], log: &Path) -> Daemon {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        Daemon { child: Some(child) }
    }

    /// True when a TCP connection from `src` to `dst:port` succeeds within 1.5 s.
    pub fn tcp_reaches(&self, src: &str, dst: &str, port: u16) -> bool {
        let script = "import socket, sys\n\
            s = socket.socket(socket.AF_INET6 if ':' in sys.argv[2] else socket.AF_INET)\n\
            s.settimeout(1.5)\n\
            s.bind((sys.argv[1], 0))\n\
            s.connect((sys.argv[2], int(sys.argv[3])))\n";
        Command::new("ip")
            .args([
                "netns", "exec", &self.name, "python3", "-c", script, src, dst,
            ])
            .arg(port.to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside would keep it: kill them first.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Connects two namespaces with a veth pair `a_if` (in `a`) <-> `b_if` (in `b`), up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.run(&["ip", "link", "set", a_if, "up"]);
    b.run(&["ip", "link", "set", b_if, "up"]);
}

/// A process killed (SIGKILL) and reaped on drop.
pub struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// Kills it now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
