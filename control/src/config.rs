//! Control's configuration file (TOML): where the region, the database and
//! the socket are, the policy, the event log, the metrics endpoint, and the
//! enforcement beyond the dataplane (an nftables set, BGP through ExaBGP).
//! Every field has a default, so an empty file is a valid configuration;
//! unknown fields and out-of-range values are errors that name the field
//! and the line. The reference is `docs/configuration.md`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, duration_text};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The dataplane's region file (its `[control] region`).
    #[serde(default = "default_region")]
    pub region: PathBuf,
    /// The SQLite database of blocks, allowlist, hosts and history.
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// What bites become.
    #[serde(default)]
    pub policy: Policy,
    /// The JSON control socket.
    #[serde(default)]
    pub socket: SocketSection,
    /// The EVE JSON event log.
    #[serde(default)]
    pub eve: EveSection,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// An nftables set kept in sync with the blocks (absent: off).
    pub nftables: Option<NftSection>,
    /// Blocks announced to and learned from the BGP fabric (absent: off).
    pub bgp: Option<BgpSection>,
}

/// `[nftables]`: a firewall's sets kept equal to the block state
/// (docs/enforcement.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NftSection {
    /// The `nft` command, as argv; `-j -f -` or `-j list set ...` is
    /// appended. A prefix like `["ssh", "fw1", "nft"]` drives a remote firewall.
    #[serde(default = "default_nft")]
    pub command: Vec<String>,
    /// The table's family.
    #[serde(default = "default_nft_family")]
    pub family: String,
    /// The table holding the sets.
    #[serde(default = "default_nft_table")]
    pub table: String,
    /// The IPv4 set (`type ipv4_addr; flags interval, timeout`).
    #[serde(default = "default_set4")]
    pub set4: String,
    /// The IPv6 set (`type ipv6_addr; flags interval, timeout`).
    #[serde(default = "default_set6")]
    pub set6: String,
    /// With `hosts6`: single IPv4 addresses go to this set (`type
    /// ipv4_addr; flags timeout`, a hash set nft changes without rereading
    /// it) and `set4` keeps the prefixes; `""`: everything in `set4`.
    #[serde(default)]
    pub hosts4: String,
    /// With `hosts4`: the same for single IPv6 addresses.
    #[serde(default)]
    pub hosts6: String,
    /// The allowlist's IPv4 entries (`flags interval`): the drop chain
    /// lets their sources through first, as the dataplane does (allow wins
    /// over a broader block). Absent: `allowed4` when control creates the
    /// table, none when the operator owns it; `""`: none.
    #[serde(default)]
    pub allow4: Option<String>,
    /// The allowlist's IPv6 entries (as `allow4`; absent: `allowed6`).
    #[serde(default)]
    pub allow6: Option<String>,
    /// Create the table and sets (and the drop chain) when missing.
    #[serde(default = "yes")]
    pub create: bool,
    /// With `create`: a chain of this name dropping the sets' sources;
    /// `""`: only the sets (the firewall's own rules use them).
    #[serde(default = "default_nft_chain")]
    pub chain: String,
    /// The chain's hook (`prerouting`, `input` or `forward`).
    #[serde(default = "default_nft_hook")]
    pub hook: String,
    /// The chain's priority (-300: before connection tracking).
    #[serde(default = "default_nft_priority")]
    pub priority: i32,
    /// The sets are listed and made equal to the blocks this often.
    #[serde(default = "default_reconcile", with = "duration_text")]
    pub reconcile_interval: Duration,
    /// An `nft` run taking longer is killed, reported and retried.
    #[serde(default = "default_nft_timeout", with = "duration_text")]
    pub timeout: Duration,
}

impl NftSection {
    /// True when single addresses have host sets of their own.
    pub fn split_hosts(&self) -> bool {
        !self.hosts4.is_empty() && !self.hosts6.is_empty()
    }

    /// The allow sets' names (IPv4, IPv6), `""` for none: as configured,
    /// or by default `allowed4` and `allowed6` when control creates the
    /// table (with `create = false` the operator's table may not have them,
    /// and a missing set would stop the whole sync).
    pub fn allow_names(&self) -> (String, String) {
        match (&self.allow4, &self.allow6) {
            (None, None) if self.create => ("allowed4".into(), "allowed6".into()),
            (a, b) => (a.clone().unwrap_or_default(), b.clone().unwrap_or_default()),
        }
    }
}

fn default_nft() -> Vec<String> {
    vec!["nft".into()]
}
fn default_nft_family() -> String {
    "inet".into()
}
fn default_nft_table() -> String {
    "baitwall".into()
}
fn default_set4() -> String {
    "blocked4".into()
}
fn default_set6() -> String {
    "blocked6".into()
}

fn yes() -> bool {
    true
}
fn default_nft_chain() -> String {
    "drop".into()
}
fn default_nft_hook() -> String {
    "prerouting".into()
}
fn default_nft_priority() -> i32 {
    -300
}
fn default_reconcile() -> Duration {
    Duration::from_secs(300)
}
fn default_nft_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for NftSection {
    fn default() -> Self {
        NftSection {
            command: default_nft(),
            family: default_nft_family(),
            table: default_nft_table(),
            set4: default_set4(),
            set6: default_set6(),
            hosts4: String::new(),
            hosts6: String::new(),
            allow4: None,
            allow6: None,
            create: true,
            chain: default_nft_chain(),
            hook: default_nft_hook(),
            priority: default_nft_priority(),
            reconcile_interval: default_reconcile(),
            timeout: default_nft_timeout(),
        }
    }
}

/// `[bgp]`: this appliance in the BGP fabric, used by control (to refuse
/// echoes of its own blocks) and by the ExaBGP bridge (`baitwallctl
/// exabgp`, docs/enforcement.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSection {
    /// This appliance's id in the fabric (unique, non-zero): the origin
    /// its announcements carry.
    pub appliance_id: u32,
    /// The AS whose large communities (RFC 8092) carry origin and expiry:
    /// `ASN:appliance_id:expiry`.
    pub asn: u32,
    /// Announce blocks as FlowSpec `source X then discard` (RFC 8955).
    #[serde(default = "yes")]
    pub flowspec: bool,
    /// Also announce them as RTBH routes for source-based RTBH (RFC 5635).
    #[serde(default)]
    pub rtbh: bool,
    /// Next hop of IPv4 RTBH routes (the routers' discard next hop).
    pub next_hop4: Option<Ipv4Addr>,
    /// Next hop of IPv6 RTBH routes.
    pub next_hop6: Option<Ipv6Addr>,
    /// Communities of RTBH routes (`"65535:666"`: BLACKHOLE, RFC 7999).
    #[serde(default = "default_rtbh_communities")]
    pub communities: Vec<String>,
    /// Install blocks other appliances announce.
    #[serde(default = "yes")]
    pub learn: bool,
    /// After a session comes back, learned blocks not announced again
    /// within this long are removed (withdrawn while it was down).
    #[serde(default = "default_sweep_after", with = "duration_text")]
    pub sweep_after: Duration,
    /// The bridge compares its announcements with control's blocks this often.
    #[serde(default = "default_resync", with = "duration_text")]
    pub resync_interval: Duration,
}

fn default_rtbh_communities() -> Vec<String> {
    vec!["65535:666".into()]
}
fn default_sweep_after() -> Duration {
    Duration::from_secs(60)
}
fn default_resync() -> Duration {
    Duration::from_secs(60)
}

/// True for a name nft takes without quoting.
fn nft_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s.len() <= 64
}

/// A standard community, `"ASN:VALUE"` with both 16-bit.
pub fn community(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn default_region() -> PathBuf {
    PathBuf::from("/dev/shm/baitwall.region")
}
fn default_database() -> PathBuf {
    PathBuf::from("/var/lib/baitwall/state.db")
}

/// `[socket]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSection {
    /// The socket file; `""` turns the socket off.
    #[serde(default = "default_socket")]
    pub path: PathBuf,
    /// Permission bits of the socket file, in octal text.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// The group that owns the socket (its members may operate baitwall).
    pub group: Option<String>,
    /// Clients served at once; more are refused with `too_many_clients`.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// A client silent this long in the middle of a line is closed.
    #[serde(default = "default_idle", with = "duration_text")]
    pub idle_timeout: Duration,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/baitwall/control.sock")
}
fn default_mode() -> String {
    "0660".into()
}
fn default_max_clients() -> usize {
    64
}
fn default_idle() -> Duration {
    Duration::from_secs(10)
}

impl Default for SocketSection {
    fn default() -> Self {
        SocketSection {
            path: default_socket(),
            mode: default_mode(),
            group: None,
            max_clients: default_max_clients(),
            idle_timeout: default_idle(),
        }
    }
}

impl SocketSection {
    /// The permission bits.
    pub fn mode_bits(&self) -> u32 {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8).unwrap_or(0o660)
    }
}

/// What the event log does with marks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkLogging {
    /// Each mark the dataplane samples (`[deception] mark_sample`) is an event.
    Sampled,
    /// Marks appear only in the periodic `stats` events.
    Off,
}

/// `[eve]`: the EVE JSON event log.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EveSection {
    /// The log file; absent: no log (events still reach subscribers).
    pub path: Option<PathBuf>,
    /// The log is rotated when it would grow past this many bytes.
    #[serde(default = "default_rotate")]
    pub rotate_bytes: u64,
    /// Rotated files kept (`eve.json.1` newest).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Sampled marks as events, or marks in `stats` only.
    #[serde(default = "default_marks")]
    pub marks: MarkLogging,
    /// A `stats` event (counters summed and per worker) this often; `"0s"`: never.
    #[serde(default = "default_stats", with = "duration_text")]
    pub stats_interval: Duration,
}

fn default_rotate() -> u64 {
    100 << 20
}
fn default_keep() -> u32 {
    5
}
fn default_marks() -> MarkLogging {
    MarkLogging::Sampled
}
fn default_stats() -> Duration {
    Duration::from_secs(60)
}

impl Default for EveSection {
    fn default() -> Self {
        EveSection {
            path: None,
            rotate_bytes: default_rotate(),
            keep: default_keep(),
            marks: default_marks(),
            stats_interval: default_stats(),
        }
    }
}

/// `[metrics]`: the Prometheus text endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address to serve `GET /metrics` on; absent: off.
    pub listen: Option<SocketAddr>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            region: default_region(),
            database: default_database(),
            policy: Policy::default(),
            socket: SocketSection::default(),
            eve: EveSection::default(),
            metrics: MetricsSection::default(),
            nftables: None,
            bgp: None,
        }
    }
}

impl ControlConfig {
    /// Reads and validates a file; relative paths are taken from its folder.
    pub fn load(path: &Path) -> anyhow::Result<ControlConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut config = ControlConfig::parse(&text, &path.display().to_string())?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        Ok(config)
    }

    /// Parses and validates text; errors name the field and the line.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<ControlConfig> {
        let config: ControlConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: {}", e.to_string().trim_end()))?;
        // The policy's own checks (allowlist entries, IPv6 prefix length).
        config.policy.validate(&format!("{origin}: policy"))?;
        let s = &config.socket;
        let mode_ok = u32::from_str_radix(s.mode.trim_start_matches("0o"), 8)
            .is_ok_and(|m| m <= 0o777 && m & 0o600 == 0o600);
        anyhow::ensure!(
            mode_ok,
            "{origin}: socket.mode {:?} must be octal permission bits that let the owner read and write (like \"0660\")",
            s.mode
        );
        anyhow::ensure!(
            (1..=100_000).contains(&s.max_clients),
            "{origin}: socket.max_clients {} is out of range 1..=100000",
            s.max_clients
        );
        anyhow::ensure!(
            (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&s.idle_timeout),
            "{origin}: socket.idle_timeout is out of range 100ms..=1h"
        );
        let e = &config.eve;
        anyhow::ensure!(
            e.rotate_bytes >= 4096,
            "{origin}: eve.rotate_bytes {} is below 4096",
            e.rotate_bytes
        );
        anyhow::ensure!(
            e.keep <= 1000,
            "{origin}: eve.keep {} is out of range 0..=1000",
            e.keep
        );
        anyhow::ensure!(
            e.stats_interval.is_zero() || e.stats_interval >= Duration::from_secs(1),
            "{origin}: eve.stats_interval must be \"0s\" (off) or at least 1s"
        );
        if let Some(n) = &config.nftables {
            anyhow::ensure!(
                !n.command.is_empty() && !n.command[0].is_empty(),
                "{origin}: nftables.command must name a program"
            );
            anyhow::ensure!(
                ["inet", "ip", "ip6", "bridge", "netdev"].contains(&n.family.as_str()),
                "{origin}: nftables.family {:?} is not one of inet, ip, ip6, bridge, netdev",
                n.family
            );
            for (field, name) in [("table", &n.table), ("set4", &n.set4), ("set6", &n.set6)] {
                anyhow::ensure!(
                    nft_name(name),
                    "{origin}: nftables.{field} {name:?} must be a name of letters, digits, '_' and '-'"
                );
            }
            anyhow::ensure!(
                n.set4 != n.set6,
                "{origin}: nftables.set4 and set6 must differ"
            );
            anyhow::ensure!(
                n.allow4.is_some() == n.allow6.is_some(),
                "{origin}: nftables.allow4 and allow6 go together (set both, or neither)"
            );
            let (allow4, allow6) = n.allow_names();
            let mut names = vec![&n.set4, &n.set6];
            for (a, b, a_name, b_name) in [
                (&n.hosts4, &n.hosts6, "hosts4", "hosts6"),
                (&allow4, &allow6, "allow4", "allow6"),
            ] {
                anyhow::ensure!(
                    a.is_empty() == b.is_empty(),
                    "{origin}: nftables.{a_name} and {b_name} go together (set both, or neither)"
                );
                for (field, name) in [(a_name, a), (b_name, b)] {
                    anyhow::ensure!(
                        name.is_empty() || nft_name(name),
                        "{origin}: nftables.{field} {name:?} must be a name of letters, digits, '_' and '-'"
                    );
                }
                if !a.is_empty() {
                    names.extend([a, b]);
                }
            }
            anyhow::ensure!(
                names
                    .iter()
                    .enumerate()
                    .all(|(i, a)| names[..i].iter().all(|b| b != a)),
                "{origin}: nftables.set4, set6, hosts4, hosts6, allow4 and allow6 must all differ"
            );
            if !n.chain.is_empty() {
                anyhow::ensure!(
                    nft_name(&n.chain),
                    "{origin}: nftables.chain {:?} must be a name of letters, digits, '_' and '-'",
                    n.chain
                );
                // Its two rules match `ip saddr` and `ip6 saddr`: only an
                // inet table takes both.
                anyhow::ensure!(
                    n.family == "inet",
                    "{origin}: nftables.chain needs family inet (set chain = \"\" for {}, and match the sets in your own rules)",
                    n.family
                );
                anyhow::ensure!(
                    ["prerouting", "input", "forward"].contains(&n.hook.as_str()),
                    "{origin}: nftables.hook {:?} is not one of prerouting, input, forward",
                    n.hook
                );
            }
            anyhow::ensure!(
                n.reconcile_interval >= Duration::from_secs(1),
                "{origin}: nftables.reconcile_interval must be at least 1s"
            );
            anyhow::ensure!(
                (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&n.timeout),
                "{origin}: nftables.timeout is out of range 100ms..=10m"
            );
        }
        if let Some(b) = &config.bgp {
            anyhow::ensure!(
                b.appliance_id != 0,
                "{origin}: bgp.appliance_id must not be 0 (0 means \"this appliance\" in the store)"
            );
            anyhow::ensure!(b.asn != 0, "{origin}: bgp.asn must not be 0");
            anyhow::ensure!(
                b.flowspec || b.rtbh,
                "{origin}: bgp needs flowspec, rtbh or both"
            );
            if b.rtbh {
                anyhow::ensure!(
                    b.next_hop4.is_some() || b.next_hop6.is_some(),
                    "{origin}: bgp.rtbh needs next_hop4, next_hop6 or both"
                );
            }
            for c in &b.communities {
                anyhow::ensure!(
                    community(c).is_some(),
                    "{origin}: bgp.communities entry {c:?} is not \"ASN:VALUE\" with 16-bit numbers"
                );
            }
            anyhow::ensure!(
                b.resync_interval >= Duration::from_secs(1),
                "{origin}: bgp.resync_interval must be at least 1s"
            );
        }
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.region);
        fix(&mut self.database);
        fix(&mut self.socket.path);
        if let Some(p) = self.eve.path.as_mut() {
            fix(p);
        }
    }

    /// Fields that differ from `other` and only take effect at a restart.
    pub fn restart_fields(&self, other: &ControlConfig) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.region != other.region {
            v.push("region");
        }
        if self.database != other.database {
            v.push("database");
        }
        if self.socket != other.socket {
            v.push("socket");
        }
        if self.metrics != other.metrics {
            v.push("metrics");
        }
        if self.nftables != other.nftables {
            v.push("nftables");
        }
        if self.bgp != other.bgp {
            v.push("bgp");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn an_empty_file_takes_every_default() {
        let c = ControlConfig::parse("", "t").unwrap();
        assert_eq!(c, ControlConfig::default());
        assert_eq!(c.socket.mode_bits(), 0o660);
        assert!(c.metrics.listen.is_none() && c.eve.path.is_none());
    }

    #[test]
    fn a_full_file_reads_back() {
        let c = ControlConfig::parse(
            r#"
region = "/dev/shm/x.region"
database = "/tmp/x.db"
[policy]
allow = ["192.0.2.0/24"]
[policy.kinds.data]
action = "block"
for = "2h"
[socket]
path = "/tmp/x.sock"
mode = "0600"
group = "baitwall"
max_clients = 1000
idle_timeout = "5s"
[eve]
path = "/var/log/baitwall/eve.json"
rotate_bytes = 1048576
keep = 3
marks = "off"
stats_interval = "10s"
[metrics]
listen = "127.0.0.1:9477"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.socket.mode_bits(), 0o600);
        assert_eq!(c.socket.group.as_deref(), Some("baitwall"));
        assert_eq!(c.policy.kinds.data.r#for, Duration::from_secs(7200));
        assert_eq!(c.eve.marks, MarkLogging::Off);
        assert_eq!(c.metrics.listen.unwrap().port(), 9477);
    }

    #[test]
    fn bad_files_name_the_field() {
        for (text, says) in [
            ("regoin = \"x\"", "unknown field `regoin`"),
            ("[socket]\nmode = \"0999\"", "socket.mode"),
            ("[socket]\nmode = \"0060\"", "socket.mode"),
            ("[socket]\nmax_clients = 0", "max_clients"),
            ("[eve]\nrotate_bytes = 10", "rotate_bytes"),
            ("[eve]\nmarks = \"all\"", "unknown variant"),
            ("[metrics]\nlisten = \"nowhere\"", "line 2"),
            ("[policy]\nallow = [\"192.0.2.1/24\"]", "host bits"),
            ("[policy]\nipv6_prefix = 12", "ipv6_prefix"),
            ("[eve]\nstats_interval = \"10ms\"", "stats_interval"),
            ("[nftables]\ntable = \"a b\"", "nftables.table"),
            ("[nftables]\nfamily = \"arp\"", "nftables.family"),
            ("[nftables]\nhook = \"output\"", "nftables.hook"),
            ("[nftables]\nfamily = \"netdev\"", "nftables.chain"),
            (
                "[nftables]\nfamily = \"ip\"",
                "nftables.chain needs family inet",
            ),
            ("[nftables]\ncommand = []", "nftables.command"),
            (
                "[nftables]\nhosts4 = \"h4\"",
                "hosts4 and hosts6 go together",
            ),
            ("[nftables]\nallow6 = \"\"", "allow4 and allow6 go together"),
            (
                "[nftables]\nallow4 = \"blocked6\"\nallow6 = \"a6\"",
                "must all differ",
            ),
            (
                "[nftables]\nhosts4 = \"h4\"\nhosts6 = \"blocked4\"",
                "must all differ",
            ),
            (
                "[nftables]\nhosts4 = \"h 4\"\nhosts6 = \"h6\"",
                "nftables.hosts4",
            ),
            ("[bgp]\nasn = 65000", "missing field `appliance_id`"),
            ("[bgp]\nappliance_id = 0\nasn = 65000", "appliance_id"),
            (
                "[bgp]\nappliance_id = 1\nasn = 65000\nrtbh = true",
                "next_hop4",
            ),
            (
                "[bgp]\nappliance_id = 1\nasn = 65000\ncommunities = [\"65535:66666\"]",
                "communities",
            ),
        ] {
            let e = ControlConfig::parse(text, "c.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.starts_with("c.toml"), "{e}");
        }
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/control.toml");
        let c = ControlConfig::load(&path).unwrap();
        assert_eq!(c.socket.group.as_deref(), Some("baitwall"));
        assert_eq!(c.metrics.listen.unwrap().port(), 9477);
    }

    #[test]
    fn the_shipped_example_with_every_commented_section_on_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/control.toml");
        let text = std::fs::read_to_string(path).unwrap();
        // Uncomment `# [section]` and `# key = value` lines (not prose).
        let on: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = ControlConfig::parse(&on, "control.toml").unwrap();
        let n = c.nftables.unwrap();
        assert_eq!(
            (n.set4.as_str(), n.hook.as_str()),
            ("blocked4", "prerouting")
        );
        let b = c.bgp.unwrap();
        assert_eq!((b.appliance_id, b.asn, b.communities.len()), (1, 65000, 2));
        assert_eq!(c.policy.permanent_after, Some(3));
    }

    #[test]
    fn allow_sets_default_on_only_in_a_table_control_creates() {
        let names = |text: &str| {
            let c = ControlConfig::parse(text, "c.toml").unwrap();
            c.nftables.unwrap().allow_names()
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(names("[nftables]"), pair("allowed4", "allowed6"));
        assert_eq!(names("[nftables]\ncreate = false"), pair("", ""));
        assert_eq!(
            names("[nftables]\ncreate = false\nallow4 = \"a4\"\nallow6 = \"a6\""),
            pair("a4", "a6")
        );
        assert_eq!(
            names("[nftables]\nallow4 = \"\"\nallow6 = \"\""),
            pair("", "")
        );
    }

    #[test]
    fn restart_only_fields_are_named() {
        let a = ControlConfig::default();
        let mut b = a.clone();
        b.policy.max_blocks = 5;
        b.eve.keep = 1;
        assert!(a.restart_fields(&b).is_empty());
        b.socket.max_clients = 9;
        b.metrics.listen = Some("127.0.0.1:1".parse().unwrap());
        assert_eq!(a.restart_fields(&b), ["socket", "metrics"]);
    }
}
