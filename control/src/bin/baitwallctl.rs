//! `baitwallctl`: the command-line client of the control socket (see `--help`).

fn main() -> std::process::ExitCode {
    baitwall_control::ctl::main()
}
