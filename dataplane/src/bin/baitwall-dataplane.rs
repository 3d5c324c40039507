//! `baitwall-dataplane`: runs the poll-mode workers (see `--help`).

fn main() -> std::process::ExitCode {
    baitwall_dataplane::cli::main()
}
