//! The control socket's server: a Unix stream socket speaking the protocol
//! of [`super::protocol`], one thread per client, a cap on clients, a line
//! limit and an idle timeout, so no client can stall or crash control.
//! Valid requests go to the control loop over a channel; the loop answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use super::protocol::{ApiError, Code, MAX_LINE, PROTOCOL_VERSION, Request, nok, ok, parse};
use super::subscribe::Subscribers;

/// How the socket is served.
#[derive(Clone, Debug)]
pub struct SocketSettings {
    /// The socket file (replaced at start).
    pub path: PathBuf,
    /// Clients served at once; more are refused with `too_many_clients`.
    pub max_clients: usize,
    /// A client silent this long mid-line (or between lines) is closed with `timeout`.
    pub idle_timeout: Duration,
    /// Permission bits of the socket file.
    pub mode: u32,
    /// The group that owns the socket file.
    pub group: Option<String>,
}

impl SocketSettings {
    /// The defaults for a socket at `path`: mode 0660, 64 clients, 10 s.
    pub fn at(path: PathBuf) -> SocketSettings {
        SocketSettings {
            path,
            max_clients: 64,
            idle_timeout: Duration::from_secs(10),
            mode: 0o660,
            group: None,
        }
    }
}

/// Gives the socket file to `group` (by name or number).
fn set_group(path: &Path, group: &str) -> std::io::Result<()> {
    let gid = match group.parse::<u32>() {
        Ok(n) => n,
        Err(_) => nix::unistd::Group::from_name(group)
            .map_err(std::io::Error::from)?
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("socket group {group:?} does not exist"),
                )
            })?
            .gid
            .as_raw(),
    };
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// A request for the control loop, and where its reply line goes.
pub struct Command {
    /// The request.
    pub request: Request,
    /// The reply line.
    pub reply: SyncSender<String>,
}

/// Binds the socket (its mode and group set before any client can
/// connect) and serves it on a thread until `stop`.
pub fn serve(
    settings: SocketSettings,
    commands: SyncSender<Command>,
    subscribers: Arc<Subscribers>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    if let Some(dir) = settings.path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&settings.path);
    let listener = UnixListener::bind(&settings.path)?;
    std::fs::set_permissions(
        &settings.path,
        std::fs::Permissions::from_mode(settings.mode),
    )?;
    if let Some(group) = &settings.group
        && let Err(e) = set_group(&settings.path, group)
    {
        let _ = std::fs::remove_file(&settings.path);
        return Err(e);
    }
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("bw-socket".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if active.load(Ordering::Acquire) >= settings.max_clients {
                            refuse(stream);
                            continue;
                        }
                        active.fetch_add(1, Ordering::AcqRel);
                        let (commands, mine, timeout) =
                            (commands.clone(), active.clone(), settings.idle_timeout);
                        let (subscribers, stop) = (subscribers.clone(), stop.clone());
                        let spawned =
                            std::thread::Builder::new()
                                .name("bw-client".into())
                                .spawn(move || {
                                    let ends = Ends {
                                        commands: &commands,
                                        subscribers: &subscribers,
                                        stop: &stop,
                                    };
                                    let _ = client(stream, &ends, timeout);
                                    mine.fetch_sub(1, Ordering::AcqRel);
                                });
                        if spawned.is_err() {
                            // The thread (and its decrement) never ran.
                            active.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            let _ = std::fs::remove_file(&settings.path);
        })
}

fn refuse(mut stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let e = ApiError {
        code: Code::TooManyClients,
        message: "too many clients; try again later".into(),
    };
    let _ = writeln!(stream, "{}", nok(&e));
}

/// What a client thread talks to.
struct Ends<'a> {
    commands: &'a SyncSender<Command>,
    subscribers: &'a Subscribers,
    stop: &'a AtomicBool,
}

fn client(stream: UnixStream, ends: &Ends<'_>, timeout: Duration) -> std::io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        // One byte past the limit tells an over-long line from a full one.
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let e = ApiError {
                    code: Code::Timeout,
                    message: format!("no complete line within {timeout:?}"),
                };
                let _ = writeln!(writer, "{}", nok(&e));
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        // No newline: either over-long (refused), or the stream ended in the
        // middle of a line (answered, then the connection ends).
        if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
            let e = ApiError {
                code: Code::LineTooLong,
                message: format!("a request line is at most {MAX_LINE} bytes"),
            };
            writeln!(writer, "{}", nok(&e))?;
            return Ok(());
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match parse(text) {
            Err(e) => nok(&e),
            Ok(Request::Hello) => ok(json!({
                "protocol": PROTOCOL_VERSION,
                "program": env!("CARGO_PKG_VERSION"),
            })),
            Ok(Request::Subscribe { event_types }) => {
                let rx = ends.subscribers.add(event_types.clone());
                writeln!(
                    writer,
                    "{}",
                    ok(json!({"subscribed": event_types, "format": "eve"}))
                )?;
                return stream_events(writer, &rx, ends.stop, timeout);
            }
            Ok(request) => ask(ends.commands, request),
        };
        writeln!(writer, "{reply}")?;
        if line.last() != Some(&b'\n') {
            return Ok(());
        }
    }
}

/// Writes each event line to a subscriber until it hangs up, stalls
/// longer than `timeout` on a write, or control stops.
fn stream_events(
    mut writer: UnixStream,
    rx: &Receiver<Arc<str>>,
    stop: &AtomicBool,
    timeout: Duration,
) -> std::io::Result<()> {
    writer.set_write_timeout(Some(timeout))?;
    let mut probe = [0u8; 1];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                writer.write_all(line.as_bytes())?;
                writer.write_all(b"\n")?;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Quiet: see whether the client is still there (a
                // subscriber sends nothing; end of stream means it left).
                writer.set_nonblocking(true)?;
                let gone = matches!(writer.read(&mut probe), Ok(0));
                writer.set_nonblocking(false)?;
                if gone {
                    return Ok(());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

fn ask(commands: &SyncSender<Command>, request: Request) -> String {
    let (tx, rx): (SyncSender<String>, Receiver<String>) = sync_channel(1);
    let unavailable = || {
        nok(&ApiError {
            code: Code::Unavailable,
            message: "the control loop did not answer".into(),
        })
    };
    if commands.send(Command { request, reply: tx }).is_err() {
        return unavailable();
    }
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| unavailable())
}

/// Connects to a control socket, for tools and tests.
pub fn connect(path: &Path) -> std::io::Result<UnixStream> {
    UnixStream::connect(path)
}
