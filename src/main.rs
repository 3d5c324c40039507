//! `baitwall`: the umbrella command. `baitwall control ...` runs the control
//! process's commands; everything else is the dataplane's (`demo`, `run`,
//! `check-config`).

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "control") {
        let rest = std::iter::once(std::ffi::OsString::from("baitwall control"))
            .chain(args.into_iter().skip(2));
        return baitwall_control::cli::main_from(rest);
    }
    // The demo starts the control process as a child: this very binary,
    // with `control` first.
    let control =
        std::env::current_exe()
            .ok()
            .map(|program| baitwall_dataplane::demo::ControlCommand {
                program,
                prefix: vec!["control".into()],
            });
    baitwall_dataplane::cli::main_with(control)
}
