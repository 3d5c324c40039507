//! Crash tests with the real binaries: `kill -9` of control in the middle
//! of a run of bites, `kill -9` of the dataplane, restarts of each; the
//! final block set must be exactly the set of sources that bit, and the
//! restarted dataplane must drop them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baitwall_control::store::Store;
use baitwall_dataplane::demo::scenario::{Role, ScenarioFrame};
use baitwall_dataplane::demo::write_pcap;
use baitwall_dataplane::engine::cookie::{CookieJar, CookieTuple};
use baitwall_dataplane::engine::persona::PersonaMaker;
use baitwall_dataplane::synth::{self, Endpoint, Flags};

const BIN: &str = env!("CARGO_BIN_EXE_baitwall");
const SECRET: [u8; 32] = [0x5c; 32];
const T0_NS: u64 = 1_767_226_200 * 1_000_000_000;
const MS: u64 = 1_000_000;
const WORMS: u32 = 24;

fn v6(ip: Ipv4Addr) -> [u8; 16] {
    ip.to_ipv6_mapped().octets()
}

fn worm_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 100 + i as u8)
}

/// Decoys with port 80 open under `SECRET`.
fn decoys() -> Vec<Endpoint> {
    let personas = PersonaMaker::new(&SECRET);
    (20..250u8)
        .map(|last| Ipv4Addr::new(198, 51, 100, last))
        .filter(|a| personas.persona(&v6(*a)).is_open(80))
        .map(|a| Endpoint::new(personas.persona(&v6(a)).mac.0, a, 80))
        .collect()
}

/// Worm `i` bites decoy `i` (SYN, then data with the cookie) at `at_ms`.
fn bites(from_ms: u64, step_ms: u64) -> Vec<ScenarioFrame> {
    bites_of(0..WORMS, from_ms, step_ms)
}

/// [`bites`] by the worms `worms`, `step_ms` apart from `from_ms`.
fn bites_of(worms: std::ops::Range<u32>, from_ms: u64, step_ms: u64) -> Vec<ScenarioFrame> {
    let decoys = decoys();
    let mut frames = Vec::new();
    let first = worms.start;
    for i in worms {
        let at = from_ms + u64::from(i - first) * step_ms;
        let worm = Endpoint::new([2, 0, 0x5e, 0, 0, 0xfe], worm_ip(i), 40000);
        let d = &decoys[i as usize % decoys.len()];
        frames.push(frame(at, synth::tcp(&worm, d, Flags::SYN, 7, 0, &[])));
        let isn = CookieJar::new(&SECRET, 60_000, (T0_NS + at * MS) / MS).isn(&CookieTuple {
            src: v6(worm_ip(i)),
            dst: v6(match d.ip {
                std::net::IpAddr::V4(a) => a,
                _ => unreachable!(),
            }),
            src_port: 40000,
            dst_port: 80,
        });
        frames.push(frame(
            at + 2,
            synth::tcp(
                &worm,
                d,
                Flags::PSH_ACK,
                8,
                isn.wrapping_add(1),
                b"GET / HTTP/1.0\r\n\r\n",
            ),
        ));
    }
    frames
}

fn frame(at_ms: u64, frame: Vec<u8>) -> ScenarioFrame {
    ScenarioFrame {
        ts_ns: T0_NS + at_ms * MS,
        frame,
        role: Role::Worm,
    }
}

/// Every worm sending to a live host outside the protected space, from many ports.
fn worm_traffic(from_ms: u64) -> Vec<ScenarioFrame> {
    let live = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(203, 0, 113, 80), 80);
    (0..WORMS)
        .flat_map(|i| {
            (0..4u16).map(move |p| {
                let worm = Endpoint::new([2, 0, 0x5e, 0, 0, 0xfe], worm_ip(i), 30000 + p);
                frame(
                    from_ms + u64::from(i),
                    synth::tcp(&worm, &live, Flags::SYN, 1, 0, &[]),
                )
            })
        })
        .collect()
}

/// A benign frame at `at_ms`, to hold the timed replay before the worms.
fn padding(at_ms: u64) -> ScenarioFrame {
    let a = Endpoint::new(
        [2, 0, 0x5e, 0, 0, 0xfe],
        Ipv4Addr::new(203, 0, 113, 9),
        5000,
    );
    let b = Endpoint::new([2, 0, 0, 0, 1, 10], Ipv4Addr::new(203, 0, 113, 80), 80);
    frame(at_ms, synth::tcp(&a, &b, Flags::SYN, 1, 0, &[]))
}

fn write_config(dir: &Path, name: &str, rx: &str, tx: &str) -> PathBuf {
    let hex: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!(
        "[workers]\ncores = [0, 1]\npin = false\n[port]\nbackend = \"pcap\"\nrx = \"{rx}\"\ntx = \"{tx}\"\nreplay = \"timed\"\n[flows]\ncapacity = 4096\n[deception]\nprotected = [\"198.51.100.0/24\"]\ndark_routes = [\"198.51.100.0/24\"]\nlearning = \"0s\"\nhold_off = \"0s\"\nlive_idle = \"1m\"\nsecret = \"{hex}\"\nlatch_capacity = 1024\nprefix_capacity = 64\n[control]\nregion = \"{}\"\nring_slots = 1024\n",
        dir.join("bw.region").display()
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A child process killed when the test ends, passed or failed (a failed
/// assertion must not leave a control process running).
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn control(dir: &Path) -> Proc {
    Proc(
        Command::new(BIN)
            .args(["control", "run", "--block-for", "1h", "--region"])
            .arg(dir.join("bw.region"))
            .arg("--database")
            .arg(dir.join("state.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn dataplane(config: &Path) -> Proc {
    Proc(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A random number of milliseconds in `lo..hi` (std's OS-seeded hasher).
fn random_ms(lo: u64, hi: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    lo + RandomState::new().hash_one(std::process::id()) % (hi - lo)
}

fn kill9(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
}

fn blocked(db: &Path) -> BTreeSet<Ipv4Addr> {
    let Ok(store) = Store::open(db) else {
        return BTreeSet::new();
    };
    store
        .active_blocks(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as u32,
        )
        .unwrap_or_default()
        .iter()
        .filter_map(|b| {
            std::net::IpAddr::from(b.net)
                .to_canonical()
                .to_string()
                .parse()
                .ok()
        })
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn frames_out(pcap: &Path) -> usize {
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(pcap).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        n += 1;
    }
    n
}

#[test]
fn no_block_is_lost_to_kill_9_of_control_or_of_the_dataplane() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let expected: BTreeSet<Ipv4Addr> = (0..WORMS).map(worm_ip).collect();

    // Phase 1: bites spread over 2.4 s; control is killed in the middle and restarted.
    let mut frames = bites(100, 100);
    frames.push(padding(2_700));
    frames.sort_by_key(|f| f.ts_ns);
    write_pcap(&dir.join("bites.pcap"), &frames).unwrap();
    let config = write_config(dir, "bites.toml", "bites.pcap", "bites-out.pcap");
    let mut ctl = control(dir);
    let mut dp = dataplane(&config);
    // Kill at a random moment inside the run of bites (printed, so a failure
    // can be replayed by hand).
    let kill_control_at = random_ms(300, 2_000);
    let kill_dataplane_at = random_ms(200, 1_500);
    println!(
        "kill -9 of control at {kill_control_at} ms, of the dataplane at {kill_dataplane_at} ms"
    );
    std::thread::sleep(Duration::from_millis(kill_control_at));
    kill9(&mut ctl);
    std::thread::sleep(Duration::from_millis(500));
    let mut ctl = control(dir);
    assert!(dp.wait().unwrap().success(), "the dataplane run failed");
    wait_until("every worm stored", Duration::from_secs(20), || {
        blocked(&dir.join("state.db")) == expected
    });

    // Phase 2: the dataplane is killed in the middle of a run, then restarted
    // on worm traffic; control resyncs it before the worms send (1 s of
    // benign traffic first), so every worm frame is dropped.
    let long: Vec<ScenarioFrame> = (0..100).map(|i| padding(i * 100)).collect();
    write_pcap(&dir.join("long.pcap"), &long).unwrap();
    let config = write_config(dir, "long.toml", "long.pcap", "long-out.pcap");
    let mut dp = dataplane(&config);
    std::thread::sleep(Duration::from_millis(kill_dataplane_at));
    kill9(&mut dp);
    let mut after = vec![padding(0)];
    after.extend(worm_traffic(1_000));
    after.push(padding(1_500));
    after.sort_by_key(|f| f.ts_ns);
    write_pcap(&dir.join("after.pcap"), &after).unwrap();
    let config = write_config(dir, "after.toml", "after.pcap", "after-out.pcap");
    let mut dp = dataplane(&config);
    assert!(dp.wait().unwrap().success());
    assert_eq!(
        frames_out(&dir.join("after-out.pcap")),
        2,
        "only the two benign frames passed"
    );

    // And the store still holds exactly the worms after control is killed too.
    kill9(&mut ctl);
    assert_eq!(blocked(&dir.join("state.db")), expected);
}

/// A dataplane killed (`kill -9`) in the middle of a run of bites: what
/// its workers had published, control reads from the old region's rings
/// when the new dataplane replaces it; what they had not is lost with the
/// process (and its latches with it), and those worms are latched again
/// when they bite the new dataplane. At the end every worm is stored.
#[test]
fn a_dataplane_killed_under_a_worms_bites_loses_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    const SET: std::ops::Range<u32> = 40..64;
    let expected: BTreeSet<Ipv4Addr> = SET.map(worm_ip).collect();
    let mut frames = bites_of(SET, 100, 100);
    frames.push(padding(2_700));
    frames.sort_by_key(|f| f.ts_ns);
    write_pcap(&dir.join("bites.pcap"), &frames).unwrap();
    let config = write_config(dir, "bites.toml", "bites.pcap", "bites-out.pcap");
    let mut ctl = control(dir);
    let mut dp = dataplane(&config);
    let kill_at = random_ms(400, 2_200);
    println!("kill -9 of the dataplane at {kill_at} ms");
    std::thread::sleep(Duration::from_millis(kill_at));
    kill9(&mut dp);
    // The worms bite again: the new dataplane (a new region) replaces the
    // killed one; control reads the old rings, then resyncs the new.
    let mut again = vec![padding(0)];
    again.extend(bites_of(SET, 1_000, 20));
    again.push(padding(2_000));
    again.sort_by_key(|f| f.ts_ns);
    write_pcap(&dir.join("again.pcap"), &again).unwrap();
    let before = blocked(&dir.join("state.db"));
    let config = write_config(dir, "again.toml", "again.pcap", "again-out.pcap");
    let mut dp = dataplane(&config);
    assert!(dp.wait().unwrap().success(), "the second run failed");
    wait_until("every worm stored", Duration::from_secs(20), || {
        blocked(&dir.join("state.db")).is_superset(&expected)
    });
    println!(
        "{} of {} worms were stored from the killed run before the restart",
        before.intersection(&expected).count(),
        expected.len()
    );
    kill9(&mut ctl);
    assert!(blocked(&dir.join("state.db")).is_superset(&expected));
}
