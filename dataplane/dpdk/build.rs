//! Compiles the C shim against the system's DPDK (found with pkg-config
//! `libdpdk`: Debian's 22.11 LTS, `apt-get install libdpdk-dev`) and links
//! DPDK's libraries. Without DPDK the crate still builds, with every call
//! returning `DpdkError::NotBuilt`, so machines without it can build the
//! workspace; its tests then skip (and fail under CI=true).

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    // Rerun when DPDK is installed, upgraded or removed: its `libdpdk.pc`
    // lands in one of pkg-config's search directories, and a directory
    // named here is watched for any change in it. Without this a build
    // made before `apt-get install libdpdk-dev` stays "without DPDK".
    for dir in pc_dirs() {
        println!("cargo:rerun-if-changed={dir}");
    }
    let dpdk = match pkg_config::Config::new()
        .atleast_version("21.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            println!("cargo:warning=building baitwall-dpdk without DPDK (libdpdk not found: {e})");
            println!("cargo:rustc-cfg=bw_no_dpdk");
            return;
        }
    };
    let mut build = cc::Build::new();
    build
        .file("shim/shim.c")
        .warnings(true)
        .flag_if_supported("-Wno-deprecated-declarations");
    for path in &dpdk.include_paths {
        build.include(path);
    }
    // pkg-config's other flags: `-include rte_config.h`, `-march=...`.
    let cflags = std::process::Command::new("pkg-config")
        .args(["--cflags-only-other", "libdpdk"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut words = cflags.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-include" {
            if let Some(h) = words.next() {
                build.flag("-include").flag(h);
            }
        } else {
            build.flag(w);
        }
    }
    build.compile("bw_dpdk_shim");
}

/// pkg-config's search directories that exist: `PKG_CONFIG_PATH`, then
/// `PKG_CONFIG_LIBDIR` where set (it replaces the default), else the
/// built-in `pc_path`.
fn pc_dirs() -> Vec<String> {
    let builtin = std::env::var("PKG_CONFIG_LIBDIR").unwrap_or_else(|_| {
        std::process::Command::new("pkg-config")
            .args(["--variable", "pc_path", "pkg-config"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    });
    let env = std::env::var("PKG_CONFIG_PATH").unwrap_or_default();
    env.split(':')
        .chain(builtin.split(':'))
        .filter(|d| !d.is_empty() && std::path::Path::new(d).is_dir())
        .map(str::to_owned)
        .collect()
}
