//! The `pcap` port: a capture file (pcap or pcapng) is the receive side, and
//! transmitted frames are written to a pcap file.
//!
//! A feeder thread plays the NIC: it reads the file, spreads frames over the
//! queues with RSS, and waits when the rings are full, so a replay never loses
//! a frame. It replays as fast as the workers take frames, or at the recorded
//! timing (optionally sped up). Each buffer carries its frame's capture time,
//! so workers on [`crate::clock::Clock::Trace`] age flows by the trace's
//! clock whatever the replay speed. A writer thread drains the transmit rings
//! into the output file, keeping each frame's timestamp.
//!
//! Reading uses the `pcap-file` crate; its pcapng reader allocates a small
//! options vector per packet, which is the file's cost, not the engine's.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

use super::Port;
use super::soft::{InjectError, SoftNic, SoftNicConfig, SoftQueue};

/// How the feeder paces the file.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Replay {
    /// As fast as the workers take frames.
    Fast,
    /// At the recorded inter-frame timing divided by `speed` (2.0 = twice as fast).
    Timed {
        /// Speed-up factor, greater than zero.
        speed: f64,
    },
}

/// What a pcap port reads and writes.
#[derive(Clone, Debug)]
pub struct PcapPortConfig {
    /// The capture to replay (pcap or pcapng, Ethernet link type).
    pub rx_path: PathBuf,
    /// Where transmitted frames go; `None` discards them (still counted).
    pub tx_path: Option<PathBuf>,
    /// Pacing.
    pub replay: Replay,
    /// Sizes of the software NIC.
    pub nic: SoftNicConfig,
}

/// Errors opening or running a pcap port.
#[derive(Debug, thiserror::Error)]
pub enum PcapPortError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a pcap or pcapng capture, or is damaged.
    #[error("{path}: not a readable pcap/pcapng capture: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// The capture's link type is not Ethernet.
    #[error(
        "{path}: link type {linktype} is not Ethernet; baitwall replays Ethernet captures only"
    )]
    LinkType {
        /// The file.
        path: PathBuf,
        /// The link type found.
        linktype: String,
    },
    /// A feeder or writer thread died.
    #[error("pcap {0} thread panicked")]
    Thread(&'static str),
}

/// Counts from one replay.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PcapReport {
    /// Frames read from the file and handed to the workers.
    pub frames_in: u64,
    /// Frames skipped because their interface was not Ethernet (pcapng).
    pub skipped_non_ethernet: u64,
    /// Frames captured shorter than they were on the wire (snap length).
    pub truncated_in_capture: u64,
    /// Frames written to the output (or discarded when there is none).
    pub frames_out: u64,
    /// True when the whole file was read (false if stopped early).
    pub completed: bool,
}

enum Source {
    Pcap(PcapReader<BufReader<File>>),
    /// The reader, and for each interface of the current section whether it is Ethernet.
    PcapNg(PcapNgReader<BufReader<File>>, Vec<bool>),
}

/// One frame as the source yields it.
enum Next<'a> {
    Frame {
        data: &'a [u8],
        timestamp: Duration,
        original_len: u32,
    },
    /// A block that carries no frame (interface description, statistics...).
    Skipped,
    /// A frame from an interface that is not Ethernet.
    NotEthernet,
    End,
}

impl Source {
    fn open(path: &Path) -> Result<(Source, PcapHeader), PcapPortError> {
        let io = |source| PcapPortError::Io {
            path: path.to_owned(),
            source,
        };
        let format = |e: pcap_file::PcapError| PcapPortError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            let mut f = File::open(path).map_err(io)?;
            f.read_exact(&mut magic)
                .map_err(|e| PcapPortError::Format {
                    path: path.to_owned(),
                    message: format!("too short for a capture header ({e})"),
                })?;
        }
        let reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
        if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            let ng = PcapNgReader::new(reader).map_err(format)?;
            let header = PcapHeader {
                ts_resolution: TsResolution::NanoSecond,
                ..PcapHeader::default()
            };
            Ok((Source::PcapNg(ng, Vec::new()), header))
        } else {
            let pcap = PcapReader::new(reader).map_err(format)?;
            let header = pcap.header();
            if header.datalink != DataLink::ETHERNET {
                return Err(PcapPortError::LinkType {
                    path: path.to_owned(),
                    linktype: format!("{:?}", header.datalink),
                });
            }
            Ok((Source::Pcap(pcap), header))
        }
    }

    fn next(&mut self) -> Result<Next<'_>, pcap_file::PcapError> {
        match self {
            Source::Pcap(reader) => match reader.next_packet() {
                None => Ok(Next::End),
                Some(Err(e)) => Err(e),
                Some(Ok(p)) => Ok(Next::Frame {
                    timestamp: p.timestamp,
                    original_len: p.orig_len,
                    data: match p.data {
                        std::borrow::Cow::Borrowed(d) => d,
                        // The pcap reader always borrows from its buffer.
                        std::borrow::Cow::Owned(_) => return Ok(Next::Skipped),
                    },
                }),
            },
            Source::PcapNg(reader, ethernet_ifaces) => {
                let block = match reader.next_block() {
                    None => return Ok(Next::End),
                    Some(block) => block?,
                };
                let (interface, timestamp, original_len, data) = match block {
                    Block::EnhancedPacket(epb) => {
                        (epb.interface_id, epb.timestamp, epb.original_len, epb.data)
                    }
                    Block::SimplePacket(spb) => (0, Duration::ZERO, spb.original_len, spb.data),
                    Block::SectionHeader(_) => {
                        // Interface numbering restarts in every section.
                        ethernet_ifaces.clear();
                        return Ok(Next::Skipped);
                    }
                    Block::InterfaceDescription(idb) => {
                        ethernet_ifaces.push(idb.linktype == DataLink::ETHERNET);
                        return Ok(Next::Skipped);
                    }
                    _ => return Ok(Next::Skipped),
                };
                let ethernet = ethernet_ifaces
                    .get(interface as usize)
                    .copied()
                    .unwrap_or(false);
                match data {
                    std::borrow::Cow::Borrowed(data) if ethernet => Ok(Next::Frame {
                        data,
                        timestamp,
                        original_len,
                    }),
                    _ => Ok(Next::NotEthernet),
                }
            }
        }
    }
}

/// A port that replays a capture file.
pub struct PcapPort {
    config: PcapPortConfig,
    nic: SoftNic,
    source: Option<(Source, PcapHeader)>,
    taken: bool,
}

impl PcapPort {
    /// Opens the capture and checks its format; nothing runs until [`PcapPort::start`].
    pub fn open(config: PcapPortConfig) -> Result<Self, PcapPortError> {
        let source = Source::open(&config.rx_path)?;
        Ok(PcapPort {
            nic: SoftNic::new(config.nic),
            source: Some(source),
            taken: false,
            config,
        })
    }

    /// The software NIC behind the port.
    pub fn nic(&self) -> SoftNic {
        self.nic.clone()
    }

    /// Starts the feeder and writer threads. `stop` ends the replay early.
    pub fn start(&mut self, stop: Arc<AtomicBool>) -> Result<PcapRun, PcapPortError> {
        let (source, header) = self.source.take().ok_or(PcapPortError::Thread("feeder"))?;
        let writer = match &self.config.tx_path {
            Some(path) => {
                let file = File::create(path).map_err(|source| PcapPortError::Io {
                    path: path.clone(),
                    source,
                })?;
                let out_header = PcapHeader {
                    datalink: DataLink::ETHERNET,
                    ..header
                };
                Some(
                    PcapWriter::with_header(BufWriter::with_capacity(1 << 20, file), out_header)
                        .map_err(|e| PcapPortError::Format {
                            path: path.clone(),
                            message: e.to_string(),
                        })?,
                )
            }
            None => None,
        };
        let feeder_done = Arc::new(AtomicBool::new(false));
        let feeder = {
            let nic = self.nic.clone();
            let replay = self.config.replay;
            let done = feeder_done.clone();
            let stop = stop.clone();
            let path = self.config.rx_path.clone();
            std::thread::Builder::new()
                .name("bw-pcap-feed".into())
                .spawn(move || {
                    let result = feed(source, &nic, replay, &stop, &path);
                    done.store(true, Ordering::Release);
                    result
                })
                .map_err(|source| PcapPortError::Io {
                    path: self.config.rx_path.clone(),
                    source,
                })?
        };
        let close = Arc::new(AtomicBool::new(false));
        let writer_thread = {
            let nic = self.nic.clone();
            let done = feeder_done.clone();
            let close = close.clone();
            let path = self.config.tx_path.clone();
            std::thread::Builder::new()
                .name("bw-pcap-write".into())
                .spawn(move || drain(writer, &nic, &done, &close, path))
                .map_err(|source| PcapPortError::Io {
                    path: self.config.rx_path.clone(),
                    source,
                })?
        };
        Ok(PcapRun {
            nic: self.nic.clone(),
            feeder_done,
            close,
            feeder,
            writer: writer_thread,
        })
    }
}

impl Port for PcapPort {
    type Queue = SoftQueue;

    fn name(&self) -> String {
        format!("pcap:{}", self.config.rx_path.display())
    }

    fn take_queues(&mut self) -> Vec<SoftQueue> {
        if std::mem::replace(&mut self.taken, true) {
            return Vec::new();
        }
        self.nic.queue_handles()
    }
}

/// Feeder counts, merged into [`PcapReport`].
struct FeedReport {
    frames_in: u64,
    skipped_non_ethernet: u64,
    truncated_in_capture: u64,
    completed: bool,
}

fn feed(
    mut source: Source,
    nic: &SoftNic,
    replay: Replay,
    stop: &AtomicBool,
    path: &Path,
) -> Result<FeedReport, PcapPortError> {
    let mut report = FeedReport {
        frames_in: 0,
        skipped_non_ethernet: 0,
        truncated_in_capture: 0,
        completed: false,
    };
    let mut first: Option<(Duration, Instant)> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(report);
        }
        let (data, timestamp, original_len) = match source.next() {
            Ok(Next::End) => break,
            Ok(Next::Skipped) => continue,
            Ok(Next::NotEthernet) => {
                report.skipped_non_ethernet += 1;
                continue;
            }
            Ok(Next::Frame {
                data,
                timestamp,
                original_len,
            }) => (data, timestamp, original_len),
            Err(e) => {
                return Err(PcapPortError::Format {
                    path: path.to_owned(),
                    message: format!("after {} frames: {e}", report.frames_in),
                });
            }
        };
        if let Replay::Timed { speed } = replay {
            let (t0, w0) = *first.get_or_insert((timestamp, Instant::now()));
            let offset = timestamp
                .saturating_sub(t0)
                .div_f64(speed.max(f64::MIN_POSITIVE));
            let due = w0 + offset;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if (original_len as usize) > data.len() {
            report.truncated_in_capture += 1;
        }
        let ts_ns = u64::try_from(timestamp.as_nanos()).unwrap_or(u64::MAX);
        let queue = nic.queue_of(data);
        // Back-pressure: a replay waits for the workers rather than lose a frame.
        loop {
            match nic.inject_to(queue, data, ts_ns) {
                Ok(()) => break,
                Err(InjectError::RingFull | InjectError::PoolEmpty) => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(report);
                    }
                    std::thread::yield_now();
                }
            }
        }
        report.frames_in += 1;
    }
    report.completed = true;
    Ok(report)
}

fn drain(
    mut writer: Option<PcapWriter<BufWriter<File>>>,
    nic: &SoftNic,
    feeder_done: &AtomicBool,
    close: &AtomicBool,
    path: Option<PathBuf>,
) -> Result<u64, PcapPortError> {
    let mut frames = 0u64;
    let mut error: Option<PcapPortError> = None;
    loop {
        // Read the flags before draining: if the feeder was done (or the run
        // closed, with the workers stopped) before this drain, and the drain
        // found nothing, nothing more can arrive.
        let finished = feeder_done.load(Ordering::Acquire);
        let closing = close.load(Ordering::Acquire);
        let n = nic.collect(|_, frame, ts_ns| {
            frames += 1;
            if let (Some(w), None) = (writer.as_mut(), error.as_ref()) {
                let packet =
                    PcapPacket::new(Duration::from_nanos(ts_ns), frame.len() as u32, frame);
                if let Err(e) = w.write_packet(&packet) {
                    error = Some(PcapPortError::Format {
                        path: path.clone().unwrap_or_default(),
                        message: e.to_string(),
                    });
                }
            }
        });
        if n == 0 {
            if (finished && nic.is_quiescent()) || closing {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    if let Some(w) = writer {
        use std::io::Write;
        let mut inner = w.into_writer();
        if let Err(source) = inner.flush() {
            error.get_or_insert(PcapPortError::Io {
                path: path.unwrap_or_default(),
                source,
            });
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(frames),
    }
}

/// A running replay: the feeder and writer threads.
pub struct PcapRun {
    nic: SoftNic,
    feeder_done: Arc<AtomicBool>,
    close: Arc<AtomicBool>,
    feeder: JoinHandle<Result<FeedReport, PcapPortError>>,
    writer: JoinHandle<Result<u64, PcapPortError>>,
}

impl PcapRun {
    /// True once the file is read and every frame has been processed and written.
    pub fn is_finished(&self) -> bool {
        self.feeder_done.load(Ordering::Acquire)
            && self.nic.is_quiescent()
            && self.writer.is_finished()
    }

    /// Waits for the threads (call after the workers have stopped) and reports.
    pub fn finish(self) -> Result<PcapReport, PcapPortError> {
        self.close.store(true, Ordering::Release);
        let feed = self
            .feeder
            .join()
            .map_err(|_| PcapPortError::Thread("feeder"))??;
        let frames_out = self
            .writer
            .join()
            .map_err(|_| PcapPortError::Thread("writer"))??;
        Ok(PcapReport {
            frames_in: feed.frames_in,
            skipped_non_ethernet: feed.skipped_non_ethernet,
            truncated_in_capture: feed.truncated_in_capture,
            frames_out,
            completed: feed.completed,
        })
    }
}
