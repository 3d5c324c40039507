//! `baitwallctl`: the command-line client of the control socket. One
//! subcommand per socket command, human tables by default, `--json` for
//! scripts; exit status 0 when control said OK, 1 when it refused (the code
//! and message go to stderr), 2 when the socket cannot be reached.

use std::io::{BufRead, BufReader, Write};
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
    /// Stop the control process (the dataplane keeps enforcing).
    Shutdown,
}

#[derive(Subcommand, Debug)]
enum BlockCmd {
    /// Blocks in force.
    List {
        /// Only blocks covering this address.
        #[arg(long)]
        covering: Option<String>,
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
        Cmd::Version => ("version", json!({})),
        Cmd::Status => ("status", json!({})),
        Cmd::Stats => ("stats", json!({})),
        Cmd::Hosts { limit } => ("hosts", json!({"limit": limit})),
        Cmd::Shutdown => ("shutdown", json!({})),
        Cmd::Block { action } => match action {
            BlockCmd::List {
                covering,
                offset,
                limit,
            } => (
                "block-list",
                json!({"covering": covering, "offset": offset, "limit": limit}),
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

/// Renders an OK answer as text: a table for lists of objects, `key: value`
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
                    if !columns.contains(k) {
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

/// Runs baitwallctl with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stream = match UnixStream::connect(&cli.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("baitwallctl: cannot reach {}: {e}", cli.socket.display());
            return ExitCode::from(2);
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let line = format!("{}\n", request(&cli.command));
    let mut reply = String::new();
    let io = stream
        .write_all(line.as_bytes())
        .and_then(|()| BufReader::new(&stream).read_line(&mut reply));
    if let Err(e) = io {
        eprintln!("baitwallctl: {}: {e}", cli.socket.display());
        return ExitCode::from(2);
    }
    let Ok(v) = serde_json::from_str::<Value>(&reply) else {
        eprintln!("baitwallctl: not a reply: {reply:?}");
        return ExitCode::from(2);
    };
    if cli.json {
        println!("{v}");
    }
    if v["return"] == "OK" {
        if !cli.json {
            print!("{}", render(&v["message"]));
        }
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "baitwallctl: {}: {}",
            v["error"]["code"].as_str().unwrap_or("?"),
            v["error"]["message"].as_str().unwrap_or("?")
        );
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_objects_and_scalars_render() {
        let rows = json!([
            {"prefix": "192.0.2.7/32", "expires": 1796005000, "reason": "manual"},
            {"prefix": "2001:db8::/48", "expires": 0, "reason": "port"},
        ]);
        assert_eq!(
            render(&rows),
            "EXPIRES     PREFIX         REASON\n1796005000  192.0.2.7/32   manual\n0           2001:db8::/48  port\n"
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
