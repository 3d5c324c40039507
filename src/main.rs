//! `baitwall`: the umbrella command. Today it carries the dataplane's
//! commands (`demo`, `run`, `check-config`); the control process joins it
//! when it exists.

fn main() -> std::process::ExitCode {
    baitwall_dataplane::cli::main()
}
