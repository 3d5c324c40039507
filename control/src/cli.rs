//! The command line of `baitwall-control` (also `baitwall control ...`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::ControlConfig;
use crate::daemon::{self, Notice, Settings};
use crate::eve::net_text;
use crate::policy::Policy;
use crate::store::Store;
use clap::{Parser, Subcommand};

/// baitwall control: spreads, stores and expires the blocks the workers latch.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach to the dataplane's region and run until SIGINT/SIGTERM
    /// (SIGHUP reopens the event log).
    Run {
        /// The configuration file (TOML; see docs/configuration.md). The
        /// options below override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The dataplane's region file (its `[control] region`).
        #[arg(long)]
        region: Option<PathBuf>,
        /// The SQLite database holding blocks and history.
        #[arg(long)]
        database: Option<PathBuf>,
        /// A policy file (TOML; the `[policy]` table of docs/configuration.md).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// How long data and port bites block ("0s": permanent).
        #[arg(long, value_parser = humantime::parse_duration)]
        block_for: Option<std::time::Duration>,
        /// Serve the JSON control socket here (see docs/control-socket.md);
        /// without --config, no socket unless this is given.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Write the EVE JSON event log here.
        #[arg(long)]
        eve: Option<PathBuf>,
        /// Serve Prometheus metrics on this address (like 127.0.0.1:9477).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration file and print it with every default filled in.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// What the history says per source (kinds, decoys, workers, first and
    /// last seen), most recent first, as JSON lines.
    Sources {
        /// The SQLite database.
        #[arg(long, default_value = "/var/lib/baitwall/state.db")]
        database: PathBuf,
        /// At most this many sources.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The live hosts and services the workers learned, as JSON lines.
    Hosts {
        /// The SQLite database.
        #[arg(long, default_value = "/var/lib/baitwall/state.db")]
        database: PathBuf,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// List the blocks in force in a database, as JSON lines.
    Blocks {
        /// The SQLite database.
        #[arg(long, default_value = "/var/lib/baitwall/state.db")]
        database: PathBuf,
    },
}

/// Parses the process's arguments and runs the command.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Parses `args` (program name first) and runs the command.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::CheckConfig { file } => {
            let config = ControlConfig::load(&file)?;
            println!("{}", toml::to_string_pretty(&config)?);
            eprintln!("{}: OK", file.display());
            Ok(())
        }
        Command::Run {
            config: config_path,
            region,
            database,
            policy,
            block_for,
            socket,
            eve,
            metrics,
        } => {
            let mut config = match &config_path {
                Some(path) => ControlConfig::load(path)?,
                None => {
                    let mut c = ControlConfig::default();
                    c.socket.path = PathBuf::new();
                    c
                }
            };
            if let Some(r) = region {
                config.region = r;
            }
            if let Some(d) = database {
                config.database = d;
            }
            if let Some(path) = policy {
                config.policy = Policy::load(&path)?;
            }
            if let Some(d) = block_for {
                config.policy.kinds.data.r#for = d;
                config.policy.kinds.port.r#for = d;
            }
            if let Some(s) = socket {
                config.socket.path = s;
            }
            if let Some(e) = eve {
                config.eve.path = Some(e);
            }
            if let Some(m) = metrics {
                config.metrics.listen = Some(m);
            }
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())?;
            }
            let settings = Settings {
                config,
                config_path,
            };
            daemon::run(&settings, &stop, |n| match n {
                Notice::Attached {
                    instance,
                    workers,
                    blocks,
                    delta,
                } => eprintln!(
                    "attached to dataplane instance {instance:016x}: {workers} workers, {blocks} block(s) pushed{}",
                    if delta {
                        " (only the changes since the workers' generation)"
                    } else {
                        " (full resync)"
                    }
                ),
                Notice::Blocked { block, change } => eprintln!(
                    "block {} {} ({}, {:?})",
                    net_text(&block.net, block.len),
                    crate::eve::seconds_text(block.expires)
                        .map_or_else(|| "permanently".to_string(), |t| format!("until {t}")),
                    block.reason,
                    change
                ),
                Notice::Expired(n) => eprintln!("{n} block(s) expired"),
                Notice::Refused(b) => eprintln!(
                    "block {} refused: the store is full (max_blocks)",
                    net_text(&b.net, b.len)
                ),
                Notice::Lifted { net, len, why } => eprintln!(
                    "latch of {} lifted on every worker ({why})",
                    net_text(&net, len)
                ),
                Notice::Applied(g) => eprintln!("generation {g} in force on every worker"),
                Notice::RingFault { worker } => eprintln!(
                    "worker {worker}'s ring broke the protocol (corrupt region?): attaching again"
                ),
                Notice::Drained(n) => {
                    eprintln!("{n} record(s) read from the rings of the dataplane that went")
                }
                Notice::Detached { instance } => eprintln!(
                    "dataplane instance {instance:016x} stopped or was replaced: waiting for the next"
                ),
            })
        }
        Command::Sources { database, limit } => {
            let store = Store::open(&database)?;
            for s in store.sources(limit)? {
                println!("{}", serde_json::to_string(&s)?);
            }
            Ok(())
        }
        Command::Hosts { database, limit } => {
            let store = Store::open(&database)?;
            for (addr, port, first, last) in store.hosts(limit)? {
                println!(
                    "{}",
                    serde_json::json!({
                        "host": std::net::IpAddr::from(addr).to_canonical().to_string(),
                        "port": port,
                        "first_seen_ns": first,
                        "last_seen_ns": last,
                    })
                );
            }
            Ok(())
        }
        Command::Blocks { database } => {
            let store = Store::open(&database)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            for b in store.active_blocks(now)? {
                println!(
                    "{}",
                    serde_json::json!({
                        "prefix": net_text(&b.net, b.len),
                        "expires": crate::eve::seconds_text(b.expires),
                        "reason": b.reason,
                    })
                );
            }
            Ok(())
        }
    }
}
