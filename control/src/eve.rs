//! Events as EVE JSON (Suricata's event log conventions), and the log file.
//!
//! Every event is one JSON object on one line with Suricata's common fields
//! (`timestamp`, `event_type`, `src_ip`, `src_port`, `dest_ip`, `dest_port`,
//! `proto`, `flow_id`) and a `baitwall` object with what is ours (bite
//! kind, persona, action, worker), so pipelines built for Suricata's
//! eve.json (Filebeat, Vector, Logstash) take it unchanged. The schema is
//! `docs/eve.schema.json`. The same objects go to the log, to the socket's
//! subscribers and into the history.
//!
//! The log rotates itself by size (`eve.json` -> `eve.json.1` -> ...) and
//! reopens its file on request (SIGHUP), for an external logrotate. A
//! failed write is counted and reported, never fatal: the appliance keeps
//! blocking with a full disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use baitwall_channel::UpEvent;
use baitwall_channel::message::{NO_PERSONA, code, kind};
use serde_json::{Map, Value, json};

use crate::store::Block;

/// An address as text (IPv4-mapped addresses as IPv4).
pub fn ip_text(a: &[u8; 16]) -> String {
    std::net::IpAddr::from(*a).to_canonical().to_string()
}

/// A prefix as text (`192.0.2.0/24`, `2001:db8::/64`).
pub fn net_text(net: &[u8; 16], len: u8) -> String {
    let addr = std::net::IpAddr::from(*net).to_canonical();
    let len = if addr.is_ipv4() {
        len.saturating_sub(96)
    } else {
        len
    };
    format!("{addr}/{len}")
}

/// Suricata's timestamp: `2026-11-30T01:02:03.123456+0000`.
pub fn timestamp(time_ns: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(time_ns);
    let text = humantime::format_rfc3339_micros(t).to_string();
    match text.strip_suffix('Z') {
        Some(head) => format!("{head}+0000"),
        None => text,
    }
}

/// Unix seconds as an RFC 3339 time (0: `None`, meaning never).
pub fn seconds_text(s: u32) -> Option<String> {
    (s != 0).then(|| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(u64::from(s)))
            .to_string()
    })
}

fn is_v4(a: &[u8; 16]) -> bool {
    baitwall_channel::is_v4_mapped(a)
}

/// A flow id like Suricata's: the same for both directions of one flow,
/// and below 2^53 so that JSON consumers that read numbers as doubles (jq,
/// JavaScript) keep every digit.
pub fn flow_id(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, proto: &str) -> u64 {
    let (a, b) = if (src, sport) <= (dst, dport) {
        ((src, sport), (dst, dport))
    } else {
        ((dst, dport), (src, sport))
    };
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &byte in bytes {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(a.0);
    eat(&a.1.to_be_bytes());
    eat(b.0);
    eat(&b.1.to_be_bytes());
    eat(proto.as_bytes());
    h & ((1 << 53) - 1)
}

/// The transport a mark of `mark` kind answered.
fn mark_proto(mark: u8, v4: bool) -> &'static str {
    match code::mark_name(mark) {
        "syn_ack" | "rst" | "service" => "TCP",
        "udp" | "unreachable" => "UDP",
        "echo" if v4 => "ICMP",
        "echo" | "ndp" => "IPv6-ICMP",
        "arp" => "ARP",
        _ => "unknown",
    }
}

fn endpoints(obj: &mut Map<String, Value>, ev: &UpEvent, proto: &str) {
    obj.insert("src_ip".into(), ip_text(&ev.src).into());
    obj.insert("src_port".into(), ev.src_port.into());
    obj.insert("dest_ip".into(), ip_text(&ev.dst).into());
    obj.insert("dest_port".into(), ev.dst_port.into());
    obj.insert("proto".into(), proto.into());
    obj.insert(
        "flow_id".into(),
        flow_id(&ev.src, &ev.dst, ev.src_port, ev.dst_port, proto).into(),
    );
}

fn persona(ev: &UpEvent) -> Value {
    if ev.persona == NO_PERSONA {
        Value::Null
    } else {
        code::persona_name(ev.persona).into()
    }
}

/// The EVE object of a worker's bite, sweep or sampled mark (`None` for
/// other records).
pub fn from_up(ev: &UpEvent) -> Option<Value> {
    let (event_type, proto, baitwall) = match ev.kind {
        kind::BITE => (
            "bite",
            "TCP",
            json!({
                "kind": code::bite_name(ev.bite),
                "action": code::action_name(ev.action),
                "allowlisted": ev.allowlisted,
                "proof": if ev.strong { "strong" } else { "weak" },
                "persona": persona(ev),
                "worker": ev.worker,
            }),
        ),
        kind::SWEEP => (
            "sweep",
            "TCP",
            json!({
                "kind": "sweep",
                "action": "count",
                "decoys": ev.decoys,
                "persona": persona(ev),
                "worker": ev.worker,
            }),
        ),
        kind::MARK => (
            "mark",
            mark_proto(ev.bite, is_v4(&ev.src)),
            json!({
                "kind": code::mark_name(ev.bite),
                "action": "mark",
                "sampled_one_in": ev.decoys,
                "persona": persona(ev),
                "worker": ev.worker,
            }),
        ),
        _ => return None,
    };
    let mut obj = Map::new();
    obj.insert("timestamp".into(), timestamp(ev.time_ns).into());
    obj.insert("event_type".into(), event_type.into());
    endpoints(&mut obj, ev, proto);
    obj.insert("baitwall".into(), baitwall);
    Some(Value::Object(obj))
}

/// Why a block ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Unblock {
    /// Its time ran out.
    Expired,
    /// An operator removed it.
    Removed,
    /// A learned block whose announcement was withdrawn.
    Withdrawn,
    /// A learned block not announced again after its BGP session came back.
    Stale,
    /// A learned block an allow entry added since overlaps.
    Allowed,
}

impl Unblock {
    /// The reason as the event and history write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unblock::Expired => "expired",
            Unblock::Removed => "removed",
            Unblock::Withdrawn => "withdrawn",
            Unblock::Stale => "stale",
            Unblock::Allowed => "allowed",
        }
    }
}

/// The EVE object of a block made or extended at `time_ns`.
pub fn block(b: &Block, change: &str, time_ns: u64) -> Value {
    json!({
        "timestamp": timestamp(time_ns),
        "event_type": "block",
        "src_ip": ip_text(&b.net),
        "baitwall": {
            "action": "block",
            "prefix": net_text(&b.net, b.len),
            "change": change,
            "reason": b.reason,
            "expires": seconds_text(b.expires),
            "expires_unix": b.expires,
            "permanent": b.expires == 0,
            "origin": origin_text(b.origin),
        },
    })
}

/// Who decided a block: `"local"`, or `"peer:ID"` for one learned from the
/// appliance `ID` through BGP.
pub fn origin_text(origin: u32) -> String {
    if origin == 0 {
        "local".to_string()
    } else {
        format!("peer:{origin}")
    }
}

/// The EVE object of a block that ended at `time_ns`.
pub fn unblock(net: &[u8; 16], len: u8, origin: u32, why: Unblock, time_ns: u64) -> Value {
    json!({
        "timestamp": timestamp(time_ns),
        "event_type": "unblock",
        "src_ip": ip_text(net),
        "baitwall": {
            "action": "unblock",
            "prefix": net_text(net, len),
            "reason": why.as_str(),
            "origin": origin_text(origin),
        },
    })
}

/// The EVE object of an export (`target`: `nftables`) failing or
/// recovering at `time_ns`.
pub fn enforce(target: &str, state: &str, error: Option<&str>, time_ns: u64) -> Value {
    json!({
        "timestamp": timestamp(time_ns),
        "event_type": "enforce",
        "baitwall": {
            "target": target,
            "state": state,
            "error": error,
        },
    })
}

/// The EVE `stats` object: counters summed and per worker.
pub fn stats(time_ns: u64, uptime_s: u64, counters: Value) -> Value {
    json!({
        "timestamp": timestamp(time_ns),
        "event_type": "stats",
        "stats": {"uptime": uptime_s, "baitwall": counters},
    })
}

/// The event log file.
pub struct EveLog {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    size: u64,
    rotate_bytes: u64,
    keep: u32,
    /// Lines written.
    pub lines: u64,
    /// Writes, rotations or reopens that failed.
    pub errors: u64,
}

fn open_append(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((BufWriter::with_capacity(64 << 10, file), size))
}

impl EveLog {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: &Path, rotate_bytes: u64, keep: u32) -> std::io::Result<EveLog> {
        let (out, size) = open_append(path)?;
        Ok(EveLog {
            path: path.to_owned(),
            out: Some(out),
            size,
            rotate_bytes,
            keep,
            lines: 0,
            errors: 0,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the rotation settings (from a reloaded configuration).
    pub fn set_rotation(&mut self, rotate_bytes: u64, keep: u32) {
        self.rotate_bytes = rotate_bytes;
        self.keep = keep;
    }

    /// Appends one event line (buffered: [`EveLog::flush`] after a batch).
    pub fn write(&mut self, event: &Value) {
        let line = event.to_string();
        let need = line.len() as u64 + 1;
        if self.size > 0 && self.size + need > self.rotate_bytes {
            self.rotate();
        }
        let Some(out) = self.out.as_mut() else {
            self.errors += 1;
            return;
        };
        match out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
        {
            Ok(()) => {
                self.size += need;
                self.lines += 1;
            }
            Err(_) => self.errors += 1,
        }
    }

    /// Writes buffered lines to the file.
    pub fn flush(&mut self) {
        if let Some(out) = self.out.as_mut()
            && out.flush().is_err()
        {
            self.errors += 1;
        }
    }

    /// Closes and reopens the file by name (after an external rotation).
    pub fn reopen(&mut self) {
        self.flush();
        self.out = None;
        match open_append(&self.path) {
            Ok((out, size)) => {
                self.out = Some(out);
                self.size = size;
            }
            Err(_) => self.errors += 1,
        }
    }

    /// Shifts `eve.json.N-1` to `eve.json.N` (dropping the oldest), moves
    /// the live file to `.1` and starts a new one.
    fn rotate(&mut self) {
        self.flush();
        self.out = None;
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            if std::fs::rename(&self.path, numbered(1)).is_err() {
                self.errors += 1;
            }
        }
        self.reopen();
    }
}

impl Drop for EveLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn v4(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv4Addr>()
            .unwrap()
            .to_ipv6_mapped()
            .octets()
    }

    fn bite() -> UpEvent {
        UpEvent {
            kind: kind::BITE,
            bite: code::BITE_PORT,
            action: code::ACTION_BLOCK,
            allowlisted: false,
            strong: false,
            latched_len: 128,
            worker: 1,
            time_ns: 1_764_464_523_123_456_789,
            src: v4("203.0.113.66"),
            dst: v4("198.51.100.77"),
            src_port: 40001,
            dst_port: 443,
            decoys: 0,
            persona: 0,
        }
    }

    #[test]
    fn a_bite_has_suricatas_fields_and_ours() {
        let e = from_up(&bite()).unwrap();
        assert_eq!(
            e,
            json!({
                "timestamp": "2025-11-30T01:02:03.123456+0000",
                "event_type": "bite",
                "src_ip": "203.0.113.66",
                "src_port": 40001,
                "dest_ip": "198.51.100.77",
                "dest_port": 443,
                "proto": "TCP",
                "flow_id": e["flow_id"],
                "baitwall": {"kind": "port", "action": "block", "allowlisted": false,
                             "proof": "weak", "persona": "linux_web", "worker": 1},
            })
        );
        assert!(e["flow_id"].as_u64().unwrap() < 1 << 53);
    }

    #[test]
    fn a_bite_on_every_persona_family_meets_the_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../docs/eve.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for family in (0..code::PERSONAS).chain([NO_PERSONA]) {
            let e = from_up(&UpEvent {
                persona: family,
                ..bite()
            })
            .unwrap();
            let errors: Vec<String> = validator.iter_errors(&e).map(|x| x.to_string()).collect();
            assert!(errors.is_empty(), "{e}: {errors:?}");
        }
    }

    #[test]
    fn flow_ids_are_the_same_both_ways_and_differ_between_flows() {
        let (a, b) = (v4("192.0.2.1"), v4("192.0.2.2"));
        assert_eq!(flow_id(&a, &b, 1, 2, "TCP"), flow_id(&b, &a, 2, 1, "TCP"));
        assert_ne!(flow_id(&a, &b, 1, 2, "TCP"), flow_id(&a, &b, 1, 3, "TCP"));
        assert_ne!(flow_id(&a, &b, 1, 2, "TCP"), flow_id(&a, &b, 1, 2, "UDP"));
    }

    #[test]
    fn marks_say_their_protocol_and_sampling() {
        let mut m = bite();
        m.kind = kind::MARK;
        m.bite = 3; // echo
        m.decoys = 1000;
        let e = from_up(&m).unwrap();
        assert_eq!(e["proto"], "ICMP");
        assert_eq!(e["baitwall"]["sampled_one_in"], 1000);
        assert_eq!(e["baitwall"]["kind"], "echo");
        m.kind = kind::APPLIED;
        assert!(from_up(&m).is_none());
    }

    #[test]
    fn blocks_and_unblocks_name_the_prefix() {
        let b = Block::local(v4("192.0.2.0"), 120, 0, "manual");
        let e = block(&b, "new", 0);
        assert_eq!(e["baitwall"]["prefix"], "192.0.2.0/24");
        assert_eq!(e["baitwall"]["permanent"], true);
        assert_eq!(e["baitwall"]["expires"], Value::Null);
        let u = unblock(&b.net, 128, 0, Unblock::Expired, 0);
        assert_eq!(u["baitwall"]["prefix"], "192.0.2.0/32");
        assert_eq!(u["baitwall"]["reason"], "expired");
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        let mut log = EveLog::open(&path, 4096, 2).unwrap();
        let e = from_up(&bite()).unwrap();
        for _ in 0..100 {
            log.write(&e);
        }
        log.flush();
        let line = e.to_string().len() as u64 + 1;
        for p in [
            path.clone(),
            dir.path().join("eve.json.1"),
            dir.path().join("eve.json.2"),
        ] {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 4096 && len % line == 0, "{}: {len}", p.display());
        }
        assert!(!dir.path().join("eve.json.3").exists());
        assert_eq!((log.lines, log.errors), (100, 0));
        // Every line that is kept parses.
        for l in std::fs::read_to_string(&path).unwrap().lines() {
            serde_json::from_str::<Value>(l).unwrap();
        }
    }

    #[test]
    fn reopen_follows_an_external_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        let mut log = EveLog::open(&path, 1 << 20, 5).unwrap();
        log.write(&json!({"n": 1}));
        log.flush();
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        log.reopen();
        log.write(&json!({"n": 2}));
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":2}\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("moved")).unwrap(),
            "{\"n\":1}\n"
        );
    }
}
