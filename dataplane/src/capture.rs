//! The bite capture's writer: takes the frames the workers kept of each
//! biting source (see `engine::evidence`) and appends them to one pcap file
//! per source, `<dir>/<source>.pcap`, for forensics (Wireshark, tcpdump).
//!
//! It runs on its own thread, off the packet path. A file stops growing at
//! `max_bytes_per_source`, and the whole capture at `max_bytes` (counting
//! the files already in the folder), so a worm cannot fill the disk through
//! it; what is refused is counted. A file that cannot be written is counted
//! as an error and the frame dropped: the capture never stops the appliance.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::evidence::{CaptureQueues, CapturedFrame, SNAP};

/// Settings of the bite capture (`[capture]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The folder of the per-source pcap files.
    pub dir: PathBuf,
    /// A source's file stops growing at this size.
    pub max_bytes_per_source: u64,
    /// The folder's pcap files stop growing at this total.
    pub max_bytes: u64,
    /// Frames kept from a source after its bite.
    pub follow_packets: u32,
    /// Buffers between the workers and the writer.
    pub buffers: usize,
}

/// What the writer did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureReport {
    /// Frames written.
    pub frames: u64,
    /// Frames refused by a size cap.
    pub over_cap: u64,
    /// Files written to.
    pub sources: u64,
    /// Frames lost to write errors.
    pub errors: u64,
}

/// The pcap global header: microsecond timestamps, Ethernet, snap length.
fn pcap_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&(SNAP as u32).to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    h
}

/// A source's file name: its address, with `:` made safe for every filesystem.
pub fn file_name(src: &[u8; 16]) -> String {
    let addr = std::net::IpAddr::from(*src).to_canonical().to_string();
    format!("{}.pcap", addr.replace(':', "_"))
}

struct Open {
    out: BufWriter<File>,
    bytes: u64,
}

/// Files kept open at once; others are closed and reopened on demand.
const OPEN_FILES: usize = 64;

struct Writer {
    config: CaptureConfig,
    open: HashMap<[u8; 16], Open>,
    total: u64,
    report: CaptureReport,
}

impl Writer {
    fn new(config: CaptureConfig) -> std::io::Result<Writer> {
        std::fs::create_dir_all(&config.dir)?;
        let total = std::fs::read_dir(&config.dir)?
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "pcap"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(Writer {
            config,
            open: HashMap::new(),
            total,
            report: CaptureReport::default(),
        })
    }

    fn file(&mut self, src: &[u8; 16]) -> std::io::Result<&mut Open> {
        if !self.open.contains_key(src) {
            if self.open.len() >= OPEN_FILES {
                let victim = self.open.keys().next().copied();
                if let Some(mut v) = victim.and_then(|k| self.open.remove(&k)) {
                    v.out.flush()?;
                }
            }
            let path = self.config.dir.join(file_name(src));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let mut bytes = file.metadata()?.len();
            let mut out = BufWriter::new(file);
            if bytes == 0 {
                out.write_all(&pcap_header())?;
                bytes = 24;
                self.total += 24;
                self.report.sources += 1;
            }
            self.open.insert(*src, Open { out, bytes });
        }
        self.open
            .get_mut(src)
            .ok_or_else(|| std::io::Error::other("file vanished from the open set"))
    }

    fn write(&mut self, f: &CapturedFrame) {
        let record = 16 + u64::from(f.len);
        let (per_source, max_total) = (self.config.max_bytes_per_source, self.config.max_bytes);
        if self.total + record > max_total {
            self.report.over_cap += 1;
            return;
        }
        let result = (|| {
            let open = self.file(&f.src)?;
            if open.bytes + record > per_source {
                return Ok(false);
            }
            let secs = f.time_ns / 1_000_000_000;
            let micros = (f.time_ns % 1_000_000_000) / 1_000;
            // One write per record: a failure never leaves half a record.
            let mut one = [0u8; 16 + SNAP];
            one[0..4].copy_from_slice(&(secs as u32).to_le_bytes());
            one[4..8].copy_from_slice(&(micros as u32).to_le_bytes());
            one[8..12].copy_from_slice(&u32::from(f.len).to_le_bytes());
            one[12..16].copy_from_slice(&f.orig_len.to_le_bytes());
            let data = f.bytes();
            one[16..16 + data.len()].copy_from_slice(data);
            open.out.write_all(&one[..16 + data.len()])?;
            open.bytes += record;
            Ok::<bool, std::io::Error>(true)
        })();
        match result {
            Ok(true) => {
                self.total += record;
                self.report.frames += 1;
            }
            Ok(false) => self.report.over_cap += 1,
            Err(_) => {
                self.report.errors += 1;
                // Reopened (and measured again) at its next frame.
                self.open.remove(&f.src);
            }
        }
    }

    fn flush(&mut self) {
        for o in self.open.values_mut() {
            if o.out.flush().is_err() {
                self.report.errors += 1;
            }
        }
    }
}

/// Starts the writer; it runs until `stop`, then writes what is queued and
/// returns its report.
pub fn spawn(
    config: CaptureConfig,
    queues: Arc<CaptureQueues>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<CaptureReport>> {
    let mut writer = Writer::new(config)?;
    std::thread::Builder::new()
        .name("bw-capture".into())
        .spawn(move || {
            loop {
                let stopping = stop.load(Ordering::Acquire);
                let mut wrote = false;
                while let Some(f) = queues.take() {
                    writer.write(&f);
                    queues.give_back(f);
                    wrote = true;
                }
                if wrote {
                    writer.flush();
                }
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            writer.flush();
            writer.report
        })
}

/// Reads a capture file back (for tests and tools): (timestamp ns, frame).
pub fn read(path: &Path) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    let bytes = std::fs::read(path)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a baitwall capture");
    if bytes.get(..24) != Some(&pcap_header()[..]) {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let head = bytes.get(at..at + 16).ok_or_else(bad)?;
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let len = word(8) as usize;
        let data = bytes.get(at + 16..at + 16 + len).ok_or_else(bad)?;
        out.push((
            u64::from(word(0)) * 1_000_000_000 + u64::from(word(4)) * 1_000,
            data.to_vec(),
        ));
        at += 16 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::evidence::Evidence;

    fn config(dir: &Path, per_source: u64, total: u64) -> CaptureConfig {
        CaptureConfig {
            dir: dir.to_owned(),
            max_bytes_per_source: per_source,
            max_bytes: total,
            follow_packets: 0,
            buffers: 64,
        }
    }

    fn worm(n: u8) -> [u8; 16] {
        std::net::Ipv4Addr::new(192, 0, 2, n)
            .to_ipv6_mapped()
            .octets()
    }

    fn run(config: CaptureConfig, frames: &[([u8; 16], &[u8])]) -> CaptureReport {
        let q = CaptureQueues::new(64);
        let mut e = Evidence::new(q.clone(), 0);
        for (i, (src, f)) in frames.iter().enumerate() {
            e.note(f, src, 1_000_000_000 * (i as u64 + 1));
        }
        for (src, _) in frames {
            e.on_bite(src, 0);
        }
        let stop = Arc::new(AtomicBool::new(true));
        spawn(config, q, stop).unwrap().join().unwrap()
    }

    #[test]
    fn each_source_gets_its_own_readable_pcap() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(
            config(dir.path(), 1 << 20, 1 << 20),
            &[
                (worm(1), b"first"),
                (worm(2), b"other"),
                (worm(1), b"second"),
            ],
        );
        assert_eq!(report.frames, 3);
        assert_eq!(report.sources, 2);
        let one = read(&dir.path().join("192.0.2.1.pcap")).unwrap();
        assert_eq!(
            one,
            [
                (1_000_000_000, b"first".to_vec()),
                (3_000_000_000, b"second".to_vec())
            ]
        );
        assert_eq!(
            file_name(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            "2001_db8__1.pcap"
        );
    }

    #[test]
    fn size_caps_stop_a_file_and_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        // Header 24 + two records of 16 + 10: room for one record per file.
        let ten: &[u8] = b"0123456789";
        let report = run(
            config(dir.path(), 24 + 26 + 10, 1 << 20),
            &[(worm(1), ten), (worm(1), ten), (worm(1), ten)],
        );
        assert_eq!((report.frames, report.over_cap), (1, 2));
        let dir2 = tempfile::tempdir().unwrap();
        let report = run(
            config(dir2.path(), 1 << 20, 24 + 26),
            &[(worm(1), ten), (worm(2), ten)],
        );
        assert_eq!((report.frames, report.over_cap), (1, 1));
    }
}
