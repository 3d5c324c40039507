//! The command line shared by `baitwall-dataplane` and the umbrella `baitwall`
//! binary: `run`, `check-config` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::report;

/// baitwall dataplane: poll-mode workers for a line-rate deception appliance.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the workers on a configuration file until the input ends or SIGINT/SIGTERM.
    Run {
        /// The TOML configuration (see docs/configuration.md).
        #[arg(short, long)]
        config: PathBuf,
        /// Print the final counters as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and exit (0: valid, 1: invalid).
    CheckConfig {
        /// The TOML configuration.
        config: PathBuf,
    },
    /// Replay the built-in scenario (a protected network, benign clients, a
    /// scanning worm) through the real workers and summarise what happened.
    Demo {
        /// Workers to run (default: 2, or fewer on a smaller machine).
        #[arg(long)]
        workers: Option<usize>,
        /// Keep the scenario, the configuration and the output capture in this folder.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Print the final counters as JSON after the summary.
        #[arg(long)]
        json: bool,
    },
}

/// Installs SIGINT/SIGTERM handlers that set the returned flag.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    main_with(None)
}

/// Parses the command line and runs the command; `control` is how to start
/// the control process as a child (the umbrella `baitwall` binary knows how;
/// without it the demo runs the dataplane alone).
pub fn main_with(control: Option<crate::demo::ControlCommand>) -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command, control) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn execute(
    command: Command,
    control: Option<crate::demo::ControlCommand>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: valid", config.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Run { config, json } => {
            let config = Config::load(&config)?;
            let stop = stop_on_signals()?;
            let outcome = crate::run::run(&config, stop, |snap| {
                eprintln!(
                    "rx {} tx {} dropped {} flows {}",
                    report::thousands(snap.total.rx_packets),
                    report::thousands(snap.total.tx_packets),
                    report::thousands(snap.total.dropped),
                    report::thousands(snap.total.flows.active)
                );
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome.json())?);
            } else {
                print!("{}", report::render(&outcome));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            workers,
            keep,
            json,
        } => {
            let stop = stop_on_signals()?;
            let demo = crate::demo::run(crate::demo::DemoOptions {
                workers,
                keep,
                stop,
                control,
            })?;
            print!("{}", demo.summary);
            if json {
                println!("{}", serde_json::to_string_pretty(&demo.outcome.json())?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
