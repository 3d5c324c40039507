//! Requests and replies of the control socket, newline-delimited JSON:
//!
//! ```text
//! -> {"command": "block-add", "arguments": {"target": "192.0.2.7", "for": "1h", "reason": "manual"}}
//! <- {"return": "OK", "message": {...}}
//! <- {"return": "NOK", "error": {"code": "host_bits_set", "message": "..."}}
//! ```
//!
//! Parsing is strict and total: every malformed request maps to one stable
//! error code and changes nothing; no input can panic the parser (it has a
//! fuzz target). A first line `{"version": "1"}` is a handshake.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::policy::{Net, parse_net};

/// The longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// Longest block duration a request may ask for.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// Stable error codes: a client may match on them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// The line is not JSON.
    NotJson,
    /// The JSON is not an object.
    NotAnObject,
    /// No `command` field.
    MissingCommand,
    /// A command this build does not know.
    UnknownCommand,
    /// A required argument is missing.
    MissingArgument,
    /// An argument the command does not take.
    UnexpectedArgument,
    /// An argument of the wrong JSON type.
    WrongType,
    /// Not an IPv4/IPv6 address or prefix.
    InvalidAddress,
    /// A prefix with host bits set.
    HostBitsSet,
    /// A duration that does not parse or is out of range.
    BadDuration,
    /// A number out of its range.
    OutOfRange,
    /// The line is longer than [`MAX_LINE`].
    LineTooLong,
    /// A protocol version this build does not speak.
    UnsupportedVersion,
    /// No complete line within the idle timeout.
    Timeout,
    /// The server is at its client limit.
    TooManyClients,
    /// The control loop did not answer.
    Unavailable,
    /// The block or allow entry does not exist.
    NotFound,
    /// A time that is neither RFC 3339 nor a duration ago.
    BadTime,
    /// A kind or event type this build does not know.
    InvalidKind,
    /// The configuration file does not validate (nothing changed).
    InvalidConfig,
    /// Control was started without a configuration file to reload.
    NotConfigured,
    /// A learned block this appliance's allowlist covers.
    Allowed,
    /// A learned block that is an echo of this appliance's own.
    OwnOrigin,
    /// The store holds `max_blocks` already.
    Full,
}

impl Code {
    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::NotJson => "not_json",
            Code::NotAnObject => "not_an_object",
            Code::MissingCommand => "missing_command",
            Code::UnknownCommand => "unknown_command",
            Code::MissingArgument => "missing_argument",
            Code::UnexpectedArgument => "unexpected_argument",
            Code::WrongType => "wrong_type",
            Code::InvalidAddress => "invalid_address",
            Code::HostBitsSet => "host_bits_set",
            Code::BadDuration => "bad_duration",
            Code::OutOfRange => "out_of_range",
            Code::LineTooLong => "line_too_long",
            Code::UnsupportedVersion => "unsupported_version",
            Code::Timeout => "timeout",
            Code::TooManyClients => "too_many_clients",
            Code::Unavailable => "unavailable",
            Code::NotFound => "not_found",
            Code::BadTime => "bad_time",
            Code::InvalidKind => "invalid_kind",
            Code::InvalidConfig => "invalid_config",
            Code::NotConfigured => "not_configured",
            Code::Allowed => "allowed",
            Code::OwnOrigin => "own_origin",
            Code::Full => "full",
        }
    }
}

/// A refused request: a stable code and a human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The code.
    pub code: Code,
    /// What is wrong.
    pub message: String,
}

fn err(code: Code, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
    }
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `{"version": "1"}`: the handshake.
    Hello,
    /// Program and protocol version.
    Version,
    /// Uptime, workers, generation, last bite.
    Status,
    /// Counters.
    Stats,
    /// Blocks, with an optional source filter and paging.
    BlockList {
        /// Only blocks covering this address.
        covering: Option<[u8; 16]>,
        /// Skip this many.
        offset: u64,
        /// At most this many.
        limit: u64,
        /// Only local blocks (`Some(true)`) or only learned ones (`Some(false)`).
        local: Option<bool>,
        /// In prefix order, starting after this prefix (paging that a
        /// removal between two pages cannot shift).
        after: Option<Net>,
    },
    /// Block a source or prefix.
    BlockAdd {
        /// What to block.
        target: Net,
        /// How long (`None`: permanent).
        duration: Option<Duration>,
        /// Why.
        reason: String,
    },
    /// Remove a block.
    BlockRemove {
        /// The block.
        target: Net,
    },
    /// A block another appliance announced through BGP (from the ExaBGP bridge).
    PeerBlock {
        /// What it blocks.
        target: Net,
        /// The announcing appliance's id.
        origin: u32,
        /// Its expiry, Unix seconds (0: permanent).
        expires: u32,
        /// When the bridge last heard it announced, Unix ms (default: now).
        heard_ms: Option<u64>,
    },
    /// The announcement of a learned block was withdrawn.
    PeerWithdraw {
        /// The block.
        target: Net,
    },
    /// Learned blocks not announced again since `before_ms` (Unix ms) are stale.
    PeerSweep {
        /// When the BGP session came back.
        before_ms: u64,
    },
    /// The allowlist.
    AllowList,
    /// Allow a source or prefix.
    AllowAdd {
        /// What to allow.
        target: Net,
        /// Why.
        reason: String,
    },
    /// Remove an allow entry.
    AllowRemove {
        /// The entry.
        target: Net,
    },
    /// Learned hosts and services.
    Hosts {
        /// At most this many.
        limit: u64,
    },
    /// The event history, oldest first.
    Events {
        /// Only events at or after this Unix time, nanoseconds.
        since_ns: Option<u64>,
        /// At most this many (the newest ones).
        limit: u64,
        /// Only this event type or bite kind.
        kind: Option<String>,
        /// Only events about this source (or its block).
        source: Option<[u8; 16]>,
    },
    /// Stream events on this connection until it closes.
    Subscribe {
        /// Only these event types (empty: all).
        event_types: Vec<String>,
    },
    /// A decoy address's persona, or a sample of dark addresses.
    Decoys {
        /// The address (or where a sample starts).
        address: Option<[u8; 16]>,
        /// 0: describe `address`; otherwise a sample of this many.
        count: u8,
    },
    /// The configuration in force.
    ConfigShow,
    /// Read the configuration file again and apply what can change live.
    ConfigReload,
    /// Stop the control process.
    Shutdown,
}

/// Event types of the log and the history.
pub const EVENT_TYPES: [&str; 7] = [
    "bite", "sweep", "mark", "block", "unblock", "stats", "enforce",
];

/// Bite kinds, also accepted as an `events` kind.
pub const BITE_KINDS: [&str; 3] = ["handshake", "data", "port"];

/// The commands this build knows, for `unknown_command` messages.
pub const COMMANDS: [&str; 19] = [
    "version",
    "status",
    "stats",
    "block-list",
    "block-add",
    "block-remove",
    "peer-block",
    "peer-withdraw",
    "peer-sweep",
    "allow-list",
    "allow-add",
    "allow-remove",
    "hosts",
    "decoys",
    "events",
    "subscribe",
    "config-show",
    "config-reload",
    "shutdown",
];

/// Arguments of one request, consumed as they are read so that anything
/// left over is an unexpected argument.
struct Args {
    map: Map<String, Value>,
}

impl Args {
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(err(
                Code::WrongType,
                format!("argument {name:?} must be a string"),
            )),
        }
    }

    fn required_string(&mut self, name: &str) -> Result<String, ApiError> {
        self.string(name)?.ok_or_else(|| {
            err(
                Code::MissingArgument,
                format!("argument {name:?} is required"),
            )
        })
    }

    fn number(&mut self, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(v),
                _ => Err(err(
                    Code::OutOfRange,
                    format!("argument {name:?} must be an integer in 0..={max}"),
                )),
            },
            Some(_) => Err(err(
                Code::WrongType,
                format!("argument {name:?} must be a number"),
            )),
        }
    }

    fn target(&mut self) -> Result<Net, ApiError> {
        let text = self.required_string("target")?;
        parse_net(&text).map_err(|m| {
            if m.contains("host bits") {
                err(Code::HostBitsSet, m)
            } else {
                err(Code::InvalidAddress, m)
            }
        })
    }

    fn address(&mut self, name: &str) -> Result<Option<[u8; 16]>, ApiError> {
        let Some(a) = self.string(name)? else {
            return Ok(None);
        };
        let (net, len) = parse_net(&a).map_err(|m| err(Code::InvalidAddress, m))?;
        if len != 128 {
            return Err(err(
                Code::InvalidAddress,
                format!("{name:?} takes an address, not a prefix"),
            ));
        }
        Ok(Some(net))
    }

    fn strings(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        let wrong = || {
            err(
                Code::WrongType,
                format!("argument {name:?} must be an array of strings"),
            )
        };
        match self.take(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(wrong()),
                })
                .collect(),
            Some(_) => Err(wrong()),
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(err(
                Code::UnexpectedArgument,
                format!("unexpected argument {k:?}"),
            )),
        }
    }
}

fn duration(text: &str) -> Result<Option<Duration>, ApiError> {
    if text == "permanent" {
        return Ok(None);
    }
    let d = humantime::parse_duration(text).map_err(|e| {
        err(
            Code::BadDuration,
            format!("{text:?} is not a duration like \"1h\" or \"permanent\": {e}"),
        )
    })?;
    if d < Duration::from_secs(1) || d > MAX_DURATION {
        return Err(err(
            Code::BadDuration,
            format!("{text:?} is out of range 1s..=366days"),
        ));
    }
    Ok(Some(d))
}

/// An RFC 3339 time, or a duration meaning that long ago, as Unix nanoseconds.
fn since(text: &str, now: std::time::SystemTime) -> Result<u64, ApiError> {
    let bad = || {
        err(
            Code::BadTime,
            format!(
                "{text:?} is neither an RFC 3339 time (\"2026-11-30T01:00:00Z\") nor a duration ago (\"10m\")"
            ),
        )
    };
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(text).map_err(|_| bad())?;
            now.checked_sub(ago).ok_or_else(bad)?
        }
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .map_err(|_| bad())
}

fn known_kind(kind: String, also_bites: bool) -> Result<String, ApiError> {
    let ok =
        EVENT_TYPES.contains(&kind.as_str()) || (also_bites && BITE_KINDS.contains(&kind.as_str()));
    if ok {
        Ok(kind)
    } else {
        Err(err(
            Code::InvalidKind,
            format!(
                "unknown kind {kind:?}; known: {}{}",
                EVENT_TYPES.join(", "),
                if also_bites {
                    ", handshake, data, port"
                } else {
                    ""
                }
            ),
        ))
    }
}

/// Parses one request line (without its newline).
pub fn parse(line: &[u8]) -> Result<Request, ApiError> {
    if line.len() > MAX_LINE {
        return Err(err(
            Code::LineTooLong,
            format!("a request line is at most {MAX_LINE} bytes"),
        ));
    }
    let value: Value =
        serde_json::from_slice(line).map_err(|e| err(Code::NotJson, e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(err(Code::NotAnObject, "a request is a JSON object"));
    };
    if let Some(v) = obj.remove("version") {
        if !obj.is_empty() {
            return Err(err(
                Code::UnexpectedArgument,
                "the handshake holds only \"version\"",
            ));
        }
        return match v {
            Value::String(s) if s == PROTOCOL_VERSION => Ok(Request::Hello),
            Value::String(s) => Err(err(
                Code::UnsupportedVersion,
                format!("protocol {s:?}; this build speaks {PROTOCOL_VERSION:?}"),
            )),
            _ => Err(err(Code::WrongType, "\"version\" must be a string")),
        };
    }
    let command = match obj.remove("command") {
        None => return Err(err(Code::MissingCommand, "a request needs \"command\"")),
        Some(Value::String(c)) => c,
        Some(_) => return Err(err(Code::WrongType, "\"command\" must be a string")),
    };
    let map = match obj.remove("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err(Code::WrongType, "\"arguments\" must be an object")),
    };
    if let Some(k) = obj.keys().next() {
        return Err(err(
            Code::UnexpectedArgument,
            format!("unexpected field {k:?} (arguments go in \"arguments\")"),
        ));
    }
    let mut args = Args { map };
    let request = match command.as_str() {
        "version" => Request::Version,
        "status" => Request::Status,
        "stats" => Request::Stats,
        "block-list" => {
            let covering = match args.string("covering")? {
                None => None,
                Some(a) => {
                    let (net, len) = parse_net(&a).map_err(|m| err(Code::InvalidAddress, m))?;
                    if len != 128 {
                        return Err(err(
                            Code::InvalidAddress,
                            "\"covering\" takes an address, not a prefix",
                        ));
                    }
                    Some(net)
                }
            };
            Request::BlockList {
                covering,
                offset: args.number("offset", 0, u64::from(u32::MAX))?,
                limit: args.number("limit", 100, 10_000)?,
                after: match args.string("after")? {
                    None => None,
                    Some(p) => Some(parse_net(&p).map_err(|m| err(Code::InvalidAddress, m))?),
                },
                local: match args.string("origin")?.as_deref() {
                    None | Some("any") => None,
                    Some("local") => Some(true),
                    Some("learned") => Some(false),
                    Some(o) => {
                        return Err(err(
                            Code::OutOfRange,
                            format!("\"origin\" is \"local\", \"learned\" or \"any\", not {o:?}"),
                        ));
                    }
                },
            }
        }
        "peer-block" => {
            let target = args.target()?;
            let origin = args.number("origin", 0, u64::from(u32::MAX))?;
            if origin == 0 {
                return Err(err(
                    Code::OutOfRange,
                    "argument \"origin\" must be an appliance id in 1..=4294967295",
                ));
            }
            Request::PeerBlock {
                target,
                origin: origin as u32,
                expires: args.number("expires", 0, u64::from(u32::MAX))? as u32,
                heard_ms: match args.take("heard_ms") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v <= i64::MAX as u64) => {
                        n.as_u64()
                    }
                    Some(_) => {
                        return Err(err(
                            Code::OutOfRange,
                            "argument \"heard_ms\" must be Unix milliseconds",
                        ));
                    }
                },
            }
        }
        "peer-withdraw" => Request::PeerWithdraw {
            target: args.target()?,
        },
        "peer-sweep" => Request::PeerSweep {
            before_ms: args.number("before_ms", 0, i64::MAX as u64)?,
        },
        "block-add" => {
            let target = args.target()?;
            let duration = match args.string("for")? {
                None => Some(Duration::from_secs(3600)),
                Some(d) => duration(&d)?,
            };
            let reason = args.string("reason")?.unwrap_or_else(|| "manual".into());
            Request::BlockAdd {
                target,
                duration,
                reason,
            }
        }
        "block-remove" => Request::BlockRemove {
            target: args.target()?,
        },
        "allow-list" => Request::AllowList,
        "allow-add" => Request::AllowAdd {
            target: args.target()?,
            reason: args.string("reason")?.unwrap_or_else(|| "manual".into()),
        },
        "allow-remove" => Request::AllowRemove {
            target: args.target()?,
        },
        "hosts" => Request::Hosts {
            limit: args.number("limit", 100, 10_000)?,
        },
        "events" => Request::Events {
            since_ns: match args.string("since")? {
                None => None,
                Some(t) => Some(since(&t, std::time::SystemTime::now())?),
            },
            limit: args.number("limit", 100, 10_000)?,
            kind: args
                .string("kind")?
                .map(|k| known_kind(k, true))
                .transpose()?,
            source: args.address("source")?,
        },
        "subscribe" => Request::Subscribe {
            event_types: args
                .strings("event_types")?
                .into_iter()
                .map(|k| known_kind(k, false))
                .collect::<Result<_, _>>()?,
        },
        "decoys" => {
            let address = args.address("address")?;
            let default = if address.is_some() { 0 } else { 8 };
            let count = args.number("sample", default, 64)?;
            Request::Decoys {
                address,
                count: u8::try_from(count).unwrap_or(64),
            }
        }
        "config-show" => Request::ConfigShow,
        "config-reload" => Request::ConfigReload,
        "shutdown" => Request::Shutdown,
        other => {
            return Err(err(
                Code::UnknownCommand,
                format!("unknown command {other:?}; known: {}", COMMANDS.join(", ")),
            ));
        }
    };
    args.finish()?;
    Ok(request)
}

/// A successful reply line.
pub fn ok(message: Value) -> String {
    json!({"return": "OK", "message": message}).to_string()
}

/// A refusal line.
pub fn nok(e: &ApiError) -> String {
    json!({"return": "NOK", "error": {"code": e.code.as_str(), "message": e.message}}).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn code(line: &str) -> &'static str {
        parse(line.as_bytes()).unwrap_err().code.as_str()
    }

    #[test]
    fn well_formed_requests_parse() {
        assert_eq!(parse(br#"{"version": "1"}"#).unwrap(), Request::Hello);
        assert_eq!(parse(br#"{"command": "status"}"#).unwrap(), Request::Status);
        let r = parse(br#"{"command": "block-add", "arguments": {"target": "192.0.2.7", "for": "1h", "reason": "manual"}}"#).unwrap();
        let Request::BlockAdd {
            target,
            duration,
            reason,
        } = r
        else {
            panic!()
        };
        assert_eq!(target.1, 128);
        assert_eq!(duration, Some(Duration::from_secs(3600)));
        assert_eq!(reason, "manual");
        let r = parse(br#"{"command": "block-add", "arguments": {"target": "2001:db8::/48", "for": "permanent"}}"#).unwrap();
        assert!(matches!(
            r,
            Request::BlockAdd {
                duration: None,
                target: (_, 48),
                ..
            }
        ));
        let r = parse(
            br#"{"command": "block-list", "arguments": {"covering": "192.0.2.7", "limit": 5}}"#,
        )
        .unwrap();
        assert!(matches!(
            r,
            Request::BlockList {
                limit: 5,
                offset: 0,
                covering: Some(_),
                local: None,
                after: None,
            }
        ));
    }

    #[test]
    fn peer_requests_parse_and_refuse_with_codes() {
        let r = parse(br#"{"command": "peer-block", "arguments": {"target": "192.0.2.66", "origin": 7, "expires": 1790000000}}"#).unwrap();
        let Request::PeerBlock {
            target,
            origin,
            expires,
            heard_ms,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(
            (target.1, origin, expires, heard_ms),
            (128, 7, 1_790_000_000, None)
        );
        assert!(matches!(
            parse(br#"{"command": "peer-block", "arguments": {"target": "192.0.2.66", "origin": 7, "heard_ms": 5}}"#).unwrap(),
            Request::PeerBlock { heard_ms: Some(5), .. }
        ));
        assert!(matches!(
            parse(br#"{"command": "block-list", "arguments": {"after": "192.0.2.66/32"}}"#)
                .unwrap(),
            Request::BlockList {
                after: Some((_, 128)),
                ..
            }
        ));
        assert!(matches!(
            parse(br#"{"command": "peer-withdraw", "arguments": {"target": "2001:db8::/64"}}"#)
                .unwrap(),
            Request::PeerWithdraw { target: (_, 64) }
        ));
        assert_eq!(
            parse(br#"{"command": "peer-sweep", "arguments": {"before_ms": 1790000000000}}"#)
                .unwrap(),
            Request::PeerSweep {
                before_ms: 1_790_000_000_000
            }
        );
        assert!(matches!(
            parse(br#"{"command": "block-list", "arguments": {"origin": "local"}}"#).unwrap(),
            Request::BlockList {
                local: Some(true),
                ..
            }
        ));
        for (line, want) in [
            (
                r#"{"command": "peer-block", "arguments": {"target": "192.0.2.66", "origin": 0}}"#,
                "out_of_range",
            ),
            (
                r#"{"command": "peer-block", "arguments": {"target": "192.0.2.66", "origin": 4294967296}}"#,
                "out_of_range",
            ),
            (
                r#"{"command": "peer-block", "arguments": {"target": "192.0.2.66", "origin": 7, "expires": -1}}"#,
                "out_of_range",
            ),
            (
                r#"{"command": "peer-block", "arguments": {"origin": 7}}"#,
                "missing_argument",
            ),
            (
                r#"{"command": "peer-withdraw", "arguments": {"target": "192.0.2.1/24"}}"#,
                "host_bits_set",
            ),
            (
                r#"{"command": "peer-sweep", "arguments": {"before_ms": "now"}}"#,
                "wrong_type",
            ),
            (
                r#"{"command": "block-list", "arguments": {"origin": "mars"}}"#,
                "out_of_range",
            ),
        ] {
            assert_eq!(code(line), want, "{line}");
        }
    }

    /// Every kind of bad input, with its exact code.
    #[test]
    fn bad_requests_get_stable_codes() {
        let cases: [(&str, &str); 16] = [
            ("not json", "not_json"),
            ("[1, 2]", "not_an_object"),
            ("{}", "missing_command"),
            (r#"{"command": 7}"#, "wrong_type"),
            (r#"{"command": "reboot"}"#, "unknown_command"),
            (r#"{"command": "block-add"}"#, "missing_argument"),
            (
                r#"{"command": "status", "arguments": {"x": 1}}"#,
                "unexpected_argument",
            ),
            (
                r#"{"command": "status", "extra": 1}"#,
                "unexpected_argument",
            ),
            (
                r#"{"command": "block-add", "arguments": {"target": 7}}"#,
                "wrong_type",
            ),
            (
                r#"{"command": "block-add", "arguments": {"target": "999.1.1.1"}}"#,
                "invalid_address",
            ),
            (
                r#"{"command": "block-add", "arguments": {"target": "192.0.2.7/24"}}"#,
                "host_bits_set",
            ),
            (
                r#"{"command": "block-add", "arguments": {"target": "192.0.2.7", "for": "400days"}}"#,
                "bad_duration",
            ),
            (
                r#"{"command": "block-add", "arguments": {"target": "192.0.2.7", "for": "soon"}}"#,
                "bad_duration",
            ),
            (
                r#"{"command": "hosts", "arguments": {"limit": -1}}"#,
                "out_of_range",
            ),
            (r#"{"version": "2"}"#, "unsupported_version"),
            (r#"{"command": "status", "arguments": [1]}"#, "wrong_type"),
        ];
        for (line, want) in cases {
            assert_eq!(code(line), want, "{line}");
        }
        let long = vec![b' '; MAX_LINE + 1];
        assert_eq!(parse(&long).unwrap_err().code, Code::LineTooLong);
    }

    #[test]
    fn the_new_commands_parse_and_refuse_with_codes() {
        let r = parse(br#"{"command": "events", "arguments": {"since": "2026-11-30T00:00:00Z", "kind": "port", "source": "203.0.113.5", "limit": 5}}"#).unwrap();
        let Request::Events {
            since_ns,
            limit,
            kind,
            source,
        } = r
        else {
            panic!()
        };
        assert_eq!(since_ns, Some(1_795_996_800 * 1_000_000_000));
        assert_eq!((limit, kind.as_deref()), (5, Some("port")));
        assert!(source.is_some());
        assert!(matches!(
            parse(br#"{"command": "events", "arguments": {"since": "10m"}}"#).unwrap(),
            Request::Events {
                since_ns: Some(_),
                ..
            }
        ));
        assert_eq!(
            parse(br#"{"command": "subscribe", "arguments": {"event_types": ["bite", "block"]}}"#)
                .unwrap(),
            Request::Subscribe {
                event_types: vec!["bite".into(), "block".into()]
            }
        );
        assert_eq!(
            parse(br#"{"command": "decoys", "arguments": {"address": "198.51.100.7"}}"#).unwrap(),
            Request::Decoys {
                address: Some(
                    std::net::Ipv4Addr::new(198, 51, 100, 7)
                        .to_ipv6_mapped()
                        .octets()
                ),
                count: 0
            }
        );
        assert_eq!(
            parse(br#"{"command": "decoys"}"#).unwrap(),
            Request::Decoys {
                address: None,
                count: 8
            }
        );
        assert_eq!(
            parse(br#"{"command": "config-reload"}"#).unwrap(),
            Request::ConfigReload
        );
        for (line, want) in [
            (
                r#"{"command": "events", "arguments": {"since": "yesterday-ish"}}"#,
                "bad_time",
            ),
            (
                r#"{"command": "events", "arguments": {"kind": "nope"}}"#,
                "invalid_kind",
            ),
            (
                r#"{"command": "events", "arguments": {"source": "192.0.2.0/24"}}"#,
                "invalid_address",
            ),
            (
                r#"{"command": "events", "arguments": {"limit": 10001}}"#,
                "out_of_range",
            ),
            (
                r#"{"command": "subscribe", "arguments": {"event_types": "bite"}}"#,
                "wrong_type",
            ),
            (
                r#"{"command": "subscribe", "arguments": {"event_types": [1]}}"#,
                "wrong_type",
            ),
            (
                r#"{"command": "subscribe", "arguments": {"event_types": ["port"]}}"#,
                "invalid_kind",
            ),
            (
                r#"{"command": "decoys", "arguments": {"sample": 65}}"#,
                "out_of_range",
            ),
            (
                r#"{"command": "decoys", "arguments": {"address": "x"}}"#,
                "invalid_address",
            ),
            (
                r#"{"command": "config-show", "arguments": {"x": 1}}"#,
                "unexpected_argument",
            ),
        ] {
            assert_eq!(code(line), want, "{line}");
        }
    }

    #[test]
    fn replies_are_one_line_of_json() {
        let line = nok(&err(Code::HostBitsSet, "x"));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["return"], "NOK");
        assert_eq!(v["error"]["code"], "host_bits_set");
        assert!(!ok(json!({"a": 1})).contains('\n'));
    }

    #[test]
    fn the_fuzz_seed_corpus_parses_without_panicking() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control_request");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let _ = parse(&bytes);
            n += 1;
        }
        assert!(n >= 5);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&bytes);
        }
    }
}
