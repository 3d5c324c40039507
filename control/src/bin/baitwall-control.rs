//! `baitwall-control`: the control process (see `--help`).

fn main() -> std::process::ExitCode {
    baitwall_control::cli::main()
}
