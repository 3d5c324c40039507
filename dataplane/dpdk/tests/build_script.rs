//! The build script notices DPDK arriving after a build without it.
//!
//! On a fresh machine README's demo builds the workspace before `.ci/run`
//! installs `libdpdk-dev`; the crate must then be rebuilt with DPDK, not
//! kept from cache as "built without DPDK". This builds the crate twice in
//! a target directory of its own: first with pkg-config's search path
//! pointing at an empty directory (no DPDK), then with DPDK's `.pc` files
//! linked into that directory, and checks that the second build ran the
//! build script again and found DPDK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

/// Builds the crate with `PKG_CONFIG_LIBDIR=libdir`; returns cargo's
/// stderr (build script warnings included).
fn build(target: &Path, libdir: &Path) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", "baitwall-dpdk", "--target-dir"])
        .arg(target)
        .env("PKG_CONFIG_LIBDIR", libdir)
        .env_remove("PKG_CONFIG_PATH")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn a_build_without_dpdk_is_redone_when_dpdk_appears() {
    let system = Command::new("pkg-config")
        .args(["--variable", "pcfiledir", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let Some(pcdir) = system.filter(|d| !d.is_empty()) else {
        baitwall_dataplane::testbed::prerequisite(false, "DPDK (libdpdk-dev) is not installed");
        return;
    };
    let libdir = tempfile::tempdir().unwrap();
    // Its own target directory, kept between runs so that only the
    // first run compiles the dependencies.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/build-script-test");

    let before = build(&target, libdir.path());
    assert!(before.contains("without DPDK"), "{before}");

    // DPDK arrives: every .pc file of the system's directory (libdpdk's
    // and the ones it requires), as `apt-get install` would add them.
    for entry in std::fs::read_dir(&pcdir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pc") {
            std::os::unix::fs::symlink(&path, libdir.path().join(path.file_name().unwrap()))
                .unwrap();
        }
    }
    let after = build(&target, libdir.path());
    assert!(!after.contains("without DPDK"), "{after}");
    // And the crate now has DPDK: its cfg changed, so a third build with
    // nothing new leaves it alone (no rerun, no warning either way).
    let again = build(&target, libdir.path());
    assert!(!again.contains("without DPDK"), "{again}");
}
