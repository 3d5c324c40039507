//! `baitwallctl`: the command-line client of the control socket. One
//! subcommand per socket command, human tables by default, `--json` for
//! scripts; exit status 0 when control said OK, 1 when it refused (the code
//! and message go to stderr), 2 when the socket cannot be reached.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

/// baitwallctl: operate baitwall through its control socket.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The control socket.
    #[arg(long, global = true, default_value = "/run/baitwall/control.sock")]
    socket: PathBuf,
    /// Print control's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Program and protocol version.
    Version,
    /// Uptime, dataplane attachment, blocks stored.
    Status,
    /// Counters.
    Stats,
    /// Blocks: list, add, remove.
    Block {
        #[command(subcommand)]
        action: BlockCmd,
    },
    /// The allowlist: list, add, remove.
    Allow {
        #[command(subcommand)]
        action: AllowCmd,
    },
    /// Live hosts and services the workers learned.
    Hosts {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// A decoy's persona as the outside sees it, or a sample of dark addresses.
    Decoys {
        /// The address (without it: a sample from the start of the protected space).
        address: Option<String>,
        /// Sample this many dark addresses (from ADDRESS on, when given).
        #[arg(long)]
        sample: Option<u64>,
    },
    /// The event history; with --follow, then every new event as it happens.
    Events {
        /// Only events since this time (RFC 3339) or this long ago ("10m").
        #[arg(long)]
        since: Option<String>,
        /// Only this event type (bite, sweep, mark, block, unblock, stats) or bite kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only events about this source address.
        #[arg(long)]
        source: Option<String>,
        /// At most this many from the history (the newest).
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Keep the connection open and print new events until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// The configuration in force, or reload it from its file.
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Packets per second, marks, bites and blocks per worker, refreshed.
    Top {
        /// Refresh interval.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Stop the control process (the dataplane keeps enforcing).
    Shutdown,
    /// Bridge control and ExaBGP: run by ExaBGP as a process of its API
    /// (docs/enforcement.md); announces local blocks, learns the fabric's.
    Exabgp {
        /// Control's configuration file (its [bgp] and [socket] sections).
        #[arg(long, default_value = "/etc/baitwall/control.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum BlockCmd {
    /// Blocks in force.
    List {
        /// Only blocks covering this address.
        #[arg(long)]
        covering: Option<String>,
        /// Only blocks decided here ("local"), or learned through BGP ("learned").
        #[arg(long)]
        origin: Option<String>,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Block an address or prefix.
    Add {
        /// Address or prefix.
        target: String,
        /// How long ("1h", "30m", "permanent").
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Why.
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Remove a block.
    Remove {
        /// Address or prefix.
        target: String,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// The configuration in force (with every default filled in).
    Show,
    /// Read the file again: an invalid one changes nothing and says why.
    Reload,
}

#[derive(Subcommand, Debug)]
enum AllowCmd {
    /// Allow entries.
    List,
    /// Allow an address or prefix (it wins over any block).
    Add {
        /// Address or prefix.
        target: String,
        /// Why.
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Remove an allow entry.
    Remove {
        /// Address or prefix.
        target: String,
    },
}

fn request(cmd: &Cmd) -> Value {
    let (command, arguments) = match cmd {
        // `exabgp` is a long-running bridge (run by `main`), not one request.
        Cmd::Version | Cmd::Exabgp { .. } => ("version", json!({})),
        Cmd::Status => ("status", json!({})),
        Cmd::Stats => ("stats", json!({})),
        Cmd::Hosts { limit } => ("hosts", json!({"limit": limit})),
        Cmd::Decoys { address, sample } => {
            ("decoys", json!({"address": address, "sample": sample}))
        }
        Cmd::Events {
            since,
            kind,
            source,
            limit,
            ..
        } => (
            "events",
            json!({"since": since, "kind": kind, "source": source, "limit": limit}),
        ),
        Cmd::Config { action } => match action {
            ConfigCmd::Show => ("config-show", json!({})),
            ConfigCmd::Reload => ("config-reload", json!({})),
        },
        Cmd::Top { .. } => ("stats", json!({})),
        Cmd::Shutdown => ("shutdown", json!({})),
        Cmd::Block { action } => match action {
            BlockCmd::List {
                covering,
                origin,
                offset,
                limit,
            } => (
                "block-list",
                json!({"covering": covering, "origin": origin, "offset": offset, "limit": limit}),
            ),
            BlockCmd::Add {
                target,
                duration,
                reason,
            } => (
                "block-add",
                json!({"target": target, "for": duration, "reason": reason}),
            ),
            BlockCmd::Remove { target } => ("block-remove", json!({"target": target})),
        },
        Cmd::Allow { action } => match action {
            AllowCmd::List => ("allow-list", json!({})),
            AllowCmd::Add { target, reason } => {
                ("allow-add", json!({"target": target, "reason": reason}))
            }
            AllowCmd::Remove { target } => ("allow-remove", json!({"target": target})),
        },
    };
    json!({"command": command, "arguments": arguments})
}

/// Renders an OK answer as text: a table for lists of objects (without the
/// `*_unix` copies of time columns), `key: value`
/// lines for objects, the value itself otherwise.
pub fn render(message: &Value) -> String {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    match message {
        Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
            let mut columns: Vec<String> = Vec::new();
            for row in rows {
                for k in row.as_object().map(|o| o.keys()).into_iter().flatten() {
                    // `*_unix` fields repeat a time column for scripts (`--json`).
                    if !columns.contains(k) && !k.ends_with("_unix") {
                        columns.push(k.clone());
                    }
                }
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| columns.iter().map(|c| scalar(&r[c])).collect())
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells
                        .iter()
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                        .max(c.len())
                })
                .collect();
            let line = |vals: &[String]| {
                vals.iter()
                    .zip(widths.iter())
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            let mut out = line(&columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>());
            out.push('\n');
            for r in &cells {
                out.push_str(&line(r));
                out.push('\n');
            }
            out
        }
        Value::Array(rows) if rows.is_empty() => "(none)\n".to_string(),
        Value::Array(rows) => rows.iter().map(|v| scalar(v) + "\n").collect(),
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            map.iter()
                .map(|(k, v)| format!("{k:<width$}  {}\n", scalar(v)))
                .collect()
        }
        other => scalar(other) + "\n",
    }
}

/// One EVE event as one human line.
pub fn event_line(e: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let b = &e["baitwall"];
    let ends = || {
        format!(
            "{}:{} -> {}:{}",
            text(&e["src_ip"]),
            text(&e["src_port"]),
            text(&e["dest_ip"]),
            text(&e["dest_port"])
        )
    };
    let who = || format!("({}, worker {})", text(&b["persona"]), text(&b["worker"]));
    let ty = text(&e["event_type"]);
    let what = match ty.as_str() {
        "bite" => format!(
            "{}  {} ({}) -> {}{} {}",
            ends(),
            text(&b["kind"]),
            text(&b["proof"]),
            text(&b["action"]),
            if b["allowlisted"] == true {
                " (allowlisted)"
            } else {
                ""
            },
            who()
        ),
        "sweep" => format!("{}  ~{} decoys {}", ends(), text(&b["decoys"]), who()),
        "mark" => format!(
            "{}  {} (1 in {}) {}",
            ends(),
            text(&b["kind"]),
            text(&b["sampled_one_in"]),
            who()
        ),
        "block" => format!(
            "{}  {}, {} ({})",
            text(&b["prefix"]),
            text(&b["change"]),
            if b["permanent"] == true {
                "permanent".to_string()
            } else {
                format!("until {}", text(&b["expires"]))
            },
            text(&b["reason"])
        ),
        "unblock" => format!("{}  ({})", text(&b["prefix"]), text(&b["reason"])),
        "stats" => format!("uptime {} s", text(&e["stats"]["uptime"])),
        _ => e.to_string(),
    };
    format!("{}  {ty:<7}  {what}", text(&e["timestamp"]))
}

/// The `stats` answer as a table: one row per worker and a total.
pub fn stats_table(m: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let group_sum = |v: &Value| v.as_object().map_or(0, |o| o.values().map(n).sum::<u64>());
    let row = |name: String, w: &Value| {
        json!({
            "worker": name,
            "rx_packets": n(&w["rx_packets"]),
            "tx_packets": n(&w["tx_packets"]),
            "drops": group_sum(&w["drops"]),
            "marks": group_sum(&w["marks"]),
            "bites": group_sum(&w["bites"]),
            "latched": n(&w["latched"]),
            "flows": n(&w["flows_active"]),
        })
    };
    let mut rows: Vec<Value> = m["per_worker"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .enumerate()
                .map(|(i, w)| row(i.to_string(), w))
                .collect()
        })
        .unwrap_or_default();
    if !m["total"].is_null() {
        rows.push(row("total".into(), &m["total"]));
    }
    let mut out = if rows.is_empty() {
        "no dataplane attached\n".to_string()
    } else {
        render(&json!(rows))
    };
    let c = &m["control"];
    out.push_str(&format!(
        "blocks {}  events stored {}  subscribers {}  ring drops {}\n",
        n(&c["blocks"]),
        n(&c["events_stored"]),
        n(&c["subscribers"]),
        c["ring_drops"]
            .as_array()
            .map_or(0, |d| d.iter().map(n).sum::<u64>()),
    ));
    out
}

/// One `top` screen from two `stats` answers `dt` apart.
pub fn top_screen(before: &Value, now: &Value, dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-3);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let group_sum = |v: &Value| v.as_object().map_or(0, |o| o.values().map(n).sum::<u64>());
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    let mut out = format!(
        "baitwall top: every {:.1} s; blocks {}\n{:<7} {:>9} {:>9} {:>10} {:>9} {:>10} {:>10} {:>8} {:>8} {:>7} {:>9}\n",
        secs,
        n(&now["control"]["blocks"]),
        "WORKER",
        "RX_MPPS",
        "TX_MPPS",
        "MARKS/S",
        "BITES/S",
        "DROPS/S",
        "SPOOFED/S",
        "CLAIMS",
        "YIELDS",
        "EVLOST",
        "FLOWS"
    );
    let workers = now["per_worker"].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<(String, Value, Value)> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| (i.to_string(), before["per_worker"][i].clone(), w.clone()))
        .collect();
    rows.push((
        "total".into(),
        before["total"].clone(),
        now["total"].clone(),
    ));
    for (name, a, b) in rows {
        out.push_str(&format!(
            "{:<7} {:>9.3} {:>9.3} {:>10.0} {:>9.0} {:>10.0} {:>10.0} {:>8} {:>8} {:>7} {:>9}\n",
            name,
            rate(n(&a["rx_packets"]), n(&b["rx_packets"])) / 1e6,
            rate(n(&a["tx_packets"]), n(&b["tx_packets"])) / 1e6,
            rate(group_sum(&a["marks"]), group_sum(&b["marks"])),
            rate(group_sum(&a["bites"]), group_sum(&b["bites"])),
            rate(group_sum(&a["drops"]), group_sum(&b["drops"])),
            rate(n(&a["drops"]["spoofed"]), n(&b["drops"]["spoofed"])),
            n(&b["claims"]),
            n(&b["yields"]),
            // Events lost on their way (full rings; never a latched bite
            // unless its waiting queue overflowed: latch_events_lost).
            n(&b["events_lost"]) + n(&b["events_dropped"]) + n(&b["latch_events_lost"]),
            n(&b["flows_active"]),
        ));
    }
    out
}

/// The `config-show` answer as the TOML an operator writes (unset
/// optional fields left out).
pub fn config_toml(m: &Value) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let file = m["file"]
        .as_str()
        .unwrap_or("(none: started without --config)");
    let body = toml::to_string_pretty(&strip(&m["config"])).unwrap_or_else(|e| format!("# {e}\n"));
    format!("# in force; file: {file}\n{body}")
}

/// A connection to the control socket.
struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    fn open(path: &std::path::Path) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Conn { stream, reader })
    }

    /// Sends a request and reads its reply.
    fn ask(&mut self, request: &Value) -> std::io::Result<Value> {
        self.stream.write_all(format!("{request}\n").as_bytes())?;
        self.line()
    }

    fn line(&mut self) -> std::io::Result<Value> {
        let mut reply = String::new();
        if self.reader.read_line(&mut reply)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "control closed the connection",
            ));
        }
        serde_json::from_str(&reply).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a reply: {reply:?}"),
            )
        })
    }
}

/// Why baitwallctl stopped early.
enum Failure {
    /// Control refused (exit 1).
    Refused(Value),
    /// The socket failed (exit 2).
    Io(String),
}

fn checked(v: Value) -> Result<Value, Failure> {
    if v["return"] == "OK" {
        Ok(v)
    } else {
        Err(Failure::Refused(v))
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Io(format!("{}: {e}", cli.socket.display()));
    let mut conn = Conn::open(&cli.socket)
        .map_err(|e| Failure::Io(format!("cannot reach {}: {e}", cli.socket.display())))?;
    match &cli.command {
        Cmd::Top { interval, count } => {
            let clear = std::io::stdout().is_terminal();
            let mut before = checked(conn.ask(&request(&cli.command)).map_err(io)?)?;
            let mut at = std::time::Instant::now();
            let mut shown = 0u64;
            while count.is_none_or(|c| shown < c) {
                std::thread::sleep(*interval);
                let now = checked(conn.ask(&request(&cli.command)).map_err(io)?)?;
                let screen = if cli.json {
                    format!("{now}\n")
                } else {
                    top_screen(&before["message"], &now["message"], at.elapsed())
                };
                if clear && !cli.json {
                    print!("\x1b[H\x1b[2J");
                }
                print!("{screen}");
                let _ = std::io::stdout().flush();
                before = now;
                at = std::time::Instant::now();
                shown += 1;
            }
            Ok(())
        }
        Cmd::Events { follow, .. } => {
            let history = checked(conn.ask(&request(&cli.command)).map_err(io)?)?;
            let print = |e: &Value| {
                if cli.json {
                    println!("{e}");
                } else {
                    println!("{}", event_line(e));
                }
                let _ = std::io::stdout().flush();
            };
            for e in history["message"].as_array().into_iter().flatten() {
                print(e);
            }
            if !*follow {
                return Ok(());
            }
            checked(conn.ask(&json!({"command": "subscribe"})).map_err(io)?)?;
            let _ = conn.stream.set_read_timeout(None);
            let _ = conn.reader.get_ref().set_read_timeout(None);
            loop {
                match conn.line() {
                    Ok(e) => print(&e),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(io(e)),
                }
            }
        }
        command => {
            let v = checked(conn.ask(&request(command)).map_err(io)?)?;
            if cli.json {
                println!("{v}");
            } else if matches!(command, Cmd::Stats) {
                print!("{}", stats_table(&v["message"]));
            } else if matches!(
                command,
                Cmd::Config {
                    action: ConfigCmd::Show
                }
            ) {
                print!("{}", config_toml(&v["message"]));
            } else {
                print!("{}", render(&v["message"]));
            }
            Ok(())
        }
    }
}

/// Runs baitwallctl with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Exabgp { config } = &cli.command {
        return crate::bgp::run::main(config);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(v)) => {
            if cli.json {
                println!("{v}");
            }
            eprintln!(
                "baitwallctl: {}: {}",
                v["error"]["code"].as_str().unwrap_or("?"),
                v["error"]["message"].as_str().unwrap_or("?")
            );
            ExitCode::from(1)
        }
        Err(Failure::Io(message)) => {
            eprintln!("baitwallctl: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_objects_and_scalars_render() {
        let rows = json!([
            {"prefix": "192.0.2.7/32", "expires": "2026-11-30T02:16:15Z", "reason": "manual"},
            {"prefix": "2001:db8::/48", "expires": null, "reason": "port"},
        ]);
        // Columns in the answer's order; null (a permanent block) as "-".
        assert_eq!(
            render(&rows),
            "PREFIX         EXPIRES               REASON\n192.0.2.7/32   2026-11-30T02:16:15Z  manual\n2001:db8::/48  -                     port\n"
        );
        assert_eq!(render(&json!([])), "(none)\n");
        assert_eq!(render(&json!(["a/32", "b/24"])), "a/32\nb/24\n");
        assert_eq!(
            render(&json!({"attached": false, "blocks": 3})),
            "attached  false\nblocks    3\n"
        );
        assert_eq!(render(&json!("shutting down")), "shutting down\n");
    }
}
