//! Shared by the socket tests: control with a socket and no dataplane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use baitwall_control::config::{ControlConfig, SocketSection};
use baitwall_control::daemon::{self, Settings};

/// Starts control serving a socket in `dir`; returns its stop flag, the
/// socket path and its thread.
pub fn start(
    dir: &Path,
    max_clients: usize,
    idle: Duration,
) -> (Arc<AtomicBool>, PathBuf, std::thread::JoinHandle<()>) {
    let socket = dir.join("control.sock");
    let settings = Settings::new(ControlConfig {
        // No dataplane: requests are answered from the store while control waits.
        region: dir.join("absent.region"),
        database: dir.join("state.db"),
        socket: SocketSection {
            path: socket.clone(),
            max_clients,
            idle_timeout: idle,
            ..SocketSection::default()
        },
        ..ControlConfig::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || daemon::run(&settings, &stop, |_| {}).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "socket not up");
        std::thread::sleep(Duration::from_millis(5));
    }
    (stop, socket, handle)
}
