//! The control process's state in SQLite (the bundled library, so no system
//! package is needed): blocks with absolute expiry times, the bite history,
//! and the rule generation counter. WAL mode, so a reader never waits on the
//! writer and a crash loses at most the transaction in flight; schema
//! versions are tracked in `PRAGMA user_version` and migrated forward.
//!
//! Expiry is stored as an absolute Unix time: restarting control never
//! resets a ban clock. A refresh can only extend a block, never shorten it
//! (an echo of an old bite must not cut a newer, longer block short).
//!
//! Every block has an origin: this appliance (0), or the id of the
//! appliance whose BGP announcement taught it ([`Store::learn_block`],
//! docs/enforcement.md). A learned block follows its announcement (its
//! expiry is what the origin says, and a withdrawal removes it); a local
//! block is never changed by the fabric, so an echo of our own block can
//! never extend it.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 7;

/// One block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Network (16 bytes; IPv4-mapped for IPv4).
    pub net: [u8; 16],
    /// Prefix length on the 128-bit space.
    pub len: u8,
    /// Expiry, Unix seconds; 0 = permanent.
    pub expires: u32,
    /// Why (the bite kind, or "manual"; "peer" when learned).
    pub reason: String,
    /// Who decided it: 0 for this appliance, else the appliance id that
    /// announced it through BGP.
    pub origin: u32,
}

impl Block {
    /// A block this appliance decided.
    pub fn local(net: [u8; 16], len: u8, expires: u32, reason: impl Into<String>) -> Block {
        Block {
            net,
            len,
            expires,
            reason: reason.into(),
            origin: 0,
        }
    }

    /// True when this appliance decided it (it is announced; learned ones are not).
    pub fn is_local(&self) -> bool {
        self.origin == 0
    }
}

/// What a learned block did to the store.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new block.
    New,
    /// A learned block's expiry or origin changed.
    Updated,
    /// The same announcement again.
    Unchanged,
    /// This appliance blocks the prefix itself: its own block stays as it is.
    KeptLocal,
}

/// What an upsert did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new block.
    New,
    /// An existing block now lasts longer.
    Extended,
    /// An existing block already lasted at least as long.
    Unchanged,
}

/// What the history says about one source.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceSummary {
    /// The source address (16 bytes; IPv4-mapped for IPv4).
    #[serde(skip)]
    pub src: [u8; 16],
    /// The source as text.
    pub source: String,
    /// Events recorded.
    pub events: u64,
    /// Bite kinds seen (with sweeps and services), comma-separated.
    pub kinds: String,
    /// Distinct decoys (destinations) touched.
    pub decoys: u64,
    /// Distinct workers that saw it.
    pub workers: u64,
    /// First event, Unix ns.
    pub first_seen_ns: u64,
    /// Last event, Unix ns.
    pub last_seen_ns: u64,
}

/// One row of the history.
#[derive(Clone, Debug)]
pub struct EventRow<'a> {
    /// Unix nanoseconds.
    pub time_ns: u64,
    /// Bite kind, `sweep`, `block` or `unblock`.
    pub kind: &'a str,
    /// Source (for blocks: the prefix's network).
    pub src: [u8; 16],
    /// Decoy.
    pub dst: [u8; 16],
    /// Source port.
    pub src_port: u16,
    /// Decoy port.
    pub dst_port: u16,
    /// Worker.
    pub worker: u16,
    /// Action taken, or the block's reason.
    pub action: &'a str,
    /// The EVE JSON line.
    pub eve: Option<&'a str>,
}

/// A 16-byte address column (zero when malformed).
fn blob16(raw: Vec<u8>) -> [u8; 16] {
    let mut a = [0u8; 16];
    if raw.len() == 16 {
        a.copy_from_slice(&raw);
    }
    a
}

/// A learned service: address, port, first and last seen (Unix ns).
pub type LearnedHost = ([u8; 16], u16, u64, u64);

/// Blocks changed since a generation, and prefixes removed since it.
pub type Changes = (Vec<Block>, Vec<([u8; 16], u8)>);

/// The store.
pub struct Store {
    conn: Connection,
}

/// Store errors.
pub type Result<T> = std::result::Result<T, rusqlite::Error>;

impl Store {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 1 {
            self.conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS blocks (
                     net BLOB NOT NULL,
                     len INTEGER NOT NULL,
                     expires INTEGER NOT NULL,
                     reason TEXT NOT NULL,
                     created INTEGER NOT NULL,
                     updated INTEGER NOT NULL,
                     bites INTEGER NOT NULL DEFAULT 1,
                     PRIMARY KEY (net, len)
                 );
                 CREATE TABLE IF NOT EXISTS events (
                     id INTEGER PRIMARY KEY,
                     time_ns INTEGER NOT NULL,
                     kind TEXT NOT NULL,
                     src BLOB NOT NULL,
                     dst BLOB NOT NULL,
                     src_port INTEGER NOT NULL,
                     dst_port INTEGER NOT NULL,
                     worker INTEGER NOT NULL,
                     action TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        if version < 2 {
            // Version 2: every block and every removal carries the rule
            // generation that last changed it, so a resync can send only
            // what changed since a worker's last applied generation.
            self.conn.execute_batch(
                "BEGIN;
                 ALTER TABLE blocks ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
                 CREATE TABLE IF NOT EXISTS removed (
                     net BLOB NOT NULL,
                     len INTEGER NOT NULL,
                     generation INTEGER NOT NULL,
                     PRIMARY KEY (net, len)
                 );
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if version < 3 {
            // Version 3: the allowlist and the live hosts and services the
            // workers learned.
            self.conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS allows (
                     net BLOB NOT NULL,
                     len INTEGER NOT NULL,
                     reason TEXT NOT NULL,
                     created INTEGER NOT NULL,
                     PRIMARY KEY (net, len)
                 );
                 CREATE TABLE IF NOT EXISTS hosts (
                     addr BLOB NOT NULL,
                     port INTEGER NOT NULL,
                     first_seen_ns INTEGER NOT NULL,
                     last_seen_ns INTEGER NOT NULL,
                     PRIMARY KEY (addr, port)
                 );
                 PRAGMA user_version = 3;
                 COMMIT;",
            )?;
        }
        if version < 4 {
            // Version 4: each event keeps its EVE JSON object (what the log
            // and subscribers saw), and the history is searched by time and
            // by source.
            self.conn.execute_batch(
                "BEGIN;
                 ALTER TABLE events ADD COLUMN eve TEXT;
                 CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
                 CREATE INDEX IF NOT EXISTS events_src ON events (src);
                 PRAGMA user_version = 4;
                 COMMIT;",
            )?;
        }
        if version < 5 {
            // Version 5: allow entries removed, with the generation that
            // removed them, so a resync by generation can send the removal
            // to workers that missed it (as `removed` does for blocks).
            self.conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS removed_allows (
                     net BLOB NOT NULL,
                     len INTEGER NOT NULL,
                     generation INTEGER NOT NULL,
                     PRIMARY KEY (net, len)
                 );
                 PRAGMA user_version = 5;
                 COMMIT;",
            )?;
        }
        if version < 6 {
            // Version 6: a block's origin (0: this appliance; else the
            // appliance whose BGP announcement it was learned from), and
            // when that announcement was last heard (Unix ms: a session
            // can drop and come back within a second).
            self.conn.execute_batch(
                "BEGIN;
                 ALTER TABLE blocks ADD COLUMN origin INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE blocks ADD COLUMN heard_ms INTEGER NOT NULL DEFAULT 0;
                 PRAGMA user_version = 6;
                 COMMIT;",
            )?;
        }
        if version < 7 {
            // Version 7: blocks listed in the order they were made, a page
            // at a time, without sorting the whole table for each page.
            self.conn.execute_batch(
                "BEGIN;
                 CREATE INDEX IF NOT EXISTS blocks_created ON blocks (created);
                 PRAGMA user_version = 7;
                 COMMIT;",
            )?;
        }
        Ok(())
    }

    /// Adds an allow entry (kept until removed).
    pub fn add_allow(&self, net: &[u8; 16], len: u8, reason: &str, now_s: u32) -> Result<()> {
        self.conn.execute(
            "DELETE FROM removed_allows WHERE net = ?1 AND len = ?2",
            params![&net[..], len],
        )?;
        self.conn.execute(
            "INSERT INTO allows (net, len, reason, created) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(net, len) DO UPDATE SET reason = ?3",
            params![&net[..], len, reason, now_s],
        )?;
        Ok(())
    }

    /// Removes an allow entry; false if there was none.
    pub fn remove_allow(&self, net: &[u8; 16], len: u8) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM allows WHERE net = ?1 AND len = ?2",
            params![&net[..], len],
        )? > 0)
    }

    /// Records that the allow entry `net/len` was removed in `generation`.
    pub fn stamp_allow_removed(&self, net: &[u8; 16], len: u8, generation: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO removed_allows (net, len, generation) VALUES (?1, ?2, ?3) \
             ON CONFLICT(net, len) DO UPDATE SET generation = ?3",
            params![&net[..], len, generation as i64],
        )?;
        Ok(())
    }

    /// Allow entries removed after `generation` (and not added back).
    pub fn allow_removals_since(&self, generation: u64) -> Result<Vec<([u8; 16], u8)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT net, len FROM removed_allows WHERE generation > ?1")?;
        let rows = stmt.query_map(params![generation as i64], |r| {
            Ok((blob16(r.get(0)?), r.get(1)?))
        })?;
        rows.collect()
    }

    /// The allow entries that came from the policy's allowlist.
    pub fn policy_allows(&self) -> Result<Vec<([u8; 16], u8)>> {
        self.allows_with_reason("policy")
    }

    /// The allow entries stored with `reason` (`policy`: the policy's
    /// allowlist; `dataplane`: the dataplane's own `[deception] allow`).
    pub fn allows_with_reason(&self, reason: &str) -> Result<Vec<([u8; 16], u8)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT net, len FROM allows WHERE reason = ?1")?;
        let rows = stmt.query_map(params![reason], |r| Ok((blob16(r.get(0)?), r.get(1)?)))?;
        rows.collect()
    }

    /// Every stored allow entry.
    pub fn allows(&self) -> Result<Vec<([u8; 16], u8)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT net, len FROM allows ORDER BY created")?;
        let rows = stmt.query_map([], |r| {
            let net: Vec<u8> = r.get(0)?;
            let mut n = [0u8; 16];
            if net.len() == 16 {
                n.copy_from_slice(&net);
            }
            Ok((n, r.get(1)?))
        })?;
        rows.collect()
    }

    /// Records that `addr` offers `port` (a learned service), seen at `time_ns`.
    pub fn learn_host(&self, addr: &[u8; 16], port: u16, time_ns: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO hosts (addr, port, first_seen_ns, last_seen_ns) VALUES (?1, ?2, ?3, ?3) \
             ON CONFLICT(addr, port) DO UPDATE SET last_seen_ns = MAX(last_seen_ns, ?3)",
            params![&addr[..], port, time_ns as i64],
        )?;
        Ok(())
    }

    /// Hosts seen alive since `since_ns` (any port, port 0 being the host
    /// itself): (address, last seen), the most recent first, at most `limit`.
    pub fn live_hosts(&self, since_ns: u64, limit: u32) -> Result<Vec<([u8; 16], u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT addr, MAX(last_seen_ns) AS seen FROM hosts WHERE last_seen_ns >= ?1 \
             GROUP BY addr ORDER BY seen DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since_ns as i64, limit], |r| {
            Ok((blob16(r.get(0)?), r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect()
    }

    /// Learned hosts and services: (address, port, first seen, last seen), most recent first.
    pub fn hosts(&self, limit: u32) -> Result<Vec<LearnedHost>> {
        let mut stmt = self.conn.prepare(
            "SELECT addr, port, first_seen_ns, last_seen_ns FROM hosts ORDER BY last_seen_ns DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            let a: Vec<u8> = r.get(0)?;
            let mut addr = [0u8; 16];
            if a.len() == 16 {
                addr.copy_from_slice(&a);
            }
            Ok((
                addr,
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
            ))
        })?;
        rows.collect()
    }

    /// Marks the block on `net/len` (if any) as changed in `generation`.
    pub fn stamp_block(&self, net: &[u8; 16], len: u8, generation: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE blocks SET generation = ?3 WHERE net = ?1 AND len = ?2",
            params![&net[..], len, generation as i64],
        )?;
        self.conn.execute(
            "DELETE FROM removed WHERE net = ?1 AND len = ?2",
            params![&net[..], len],
        )?;
        Ok(())
    }

    /// Records that the block on `net/len` was removed in `generation`.
    pub fn stamp_removed(&self, net: &[u8; 16], len: u8, generation: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO removed (net, len, generation) VALUES (?1, ?2, ?3) \
             ON CONFLICT(net, len) DO UPDATE SET generation = ?3",
            params![&net[..], len, generation as i64],
        )?;
        Ok(())
    }

    /// Blocks in force at `now_s` changed after `generation`, and the
    /// prefixes removed after it.
    pub fn changes_since(&self, generation: u64, now_s: u32) -> Result<Changes> {
        let mut stmt = self.conn.prepare(
            "SELECT net, len, expires, reason, origin FROM blocks \
             WHERE generation > ?1 AND (expires = 0 OR expires > ?2) ORDER BY generation",
        )?;
        let blocks = stmt
            .query_map(params![generation as i64, now_s], row_to_block)?
            .collect::<Result<Vec<_>>>()?;
        let mut stmt = self
            .conn
            .prepare("SELECT net, len FROM removed WHERE generation > ?1")?;
        let removed = stmt
            .query_map(params![generation as i64], |r| {
                let net: Vec<u8> = r.get(0)?;
                let mut n = [0u8; 16];
                if net.len() == 16 {
                    n.copy_from_slice(&net);
                }
                Ok((n, r.get(1)?))
            })?
            .collect::<Result<Vec<_>>>()?;
        Ok((blocks, removed))
    }

    /// The dataplane instance the last session served (0: none).
    pub fn last_instance(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map_or(0, |v| v as u64))
    }

    /// Records the dataplane instance this session serves.
    pub fn set_instance(&self, instance: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('instance', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
            params![instance as i64],
        )?;
        Ok(())
    }

    /// Installs or updates a block another appliance announced (`b.origin`
    /// non-zero): its expiry is the announcement's, even if shorter. A
    /// local block on the same prefix is left exactly as it is.
    pub fn learn_block(&self, b: &Block, now_ms: u64) -> Result<Learned> {
        let now_s = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let now_ms = now_ms.min(i64::MAX as u64) as i64;
        let tx = self.conn.unchecked_transaction()?;
        let old = expiry_and_origin(&tx, &b.net, b.len)?;
        let learned = match old {
            Some((_, 0)) => Learned::KeptLocal,
            Some((expires, origin)) => {
                tx.execute(
                    "UPDATE blocks SET expires = ?3, origin = ?4, updated = ?5, heard_ms = ?6 \
                     WHERE net = ?1 AND len = ?2",
                    params![&b.net[..], b.len, b.expires, b.origin, now_s, now_ms],
                )?;
                if (expires, origin) == (b.expires, b.origin) {
                    Learned::Unchanged
                } else {
                    Learned::Updated
                }
            }
            None => {
                tx.execute(
                    "INSERT INTO blocks (net, len, expires, reason, created, updated, origin, heard_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                    params![&b.net[..], b.len, b.expires, b.reason, now_s, b.origin, now_ms],
                )?;
                Learned::New
            }
        };
        tx.commit()?;
        Ok(learned)
    }

    /// Removes a learned block (a withdrawal); a local one stays. Returns
    /// the origin of the block removed, if one was.
    pub fn unlearn_block(&self, net: &[u8; 16], len: u8) -> Result<Option<u32>> {
        let tx = self.conn.unchecked_transaction()?;
        let origin: Option<u32> = tx
            .query_row(
                "SELECT origin FROM blocks WHERE net = ?1 AND len = ?2 AND origin != 0",
                params![&net[..], len],
                |r| r.get(0),
            )
            .optional()?;
        if origin.is_some() {
            tx.execute(
                "DELETE FROM blocks WHERE net = ?1 AND len = ?2",
                params![&net[..], len],
            )?;
        }
        tx.commit()?;
        Ok(origin)
    }

    /// Removes the learned blocks not announced again since `before_ms`
    /// (Unix ms) and returns them: after a BGP session comes back, what was
    /// withdrawn while it was down.
    pub fn take_stale_learned(&self, before_ms: u64) -> Result<Vec<Block>> {
        let before_ms = before_ms.min(i64::MAX as u64) as i64;
        self.take_where("origin != 0 AND heard_ms < ?1", before_ms)
    }

    /// Deletes the blocks `condition` (SQL on `blocks`, with `?1` bound to
    /// `value`) selects, in one transaction, and returns them.
    fn take_where(&self, condition: &str, value: impl rusqlite::ToSql) -> Result<Vec<Block>> {
        let tx = self.conn.unchecked_transaction()?;
        let taken: Vec<Block> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT net, len, expires, reason, origin FROM blocks WHERE {condition}"
            ))?;
            let rows = stmt.query_map(params![value], row_to_block)?;
            rows.collect::<Result<_>>()?
        };
        tx.execute(
            &format!("DELETE FROM blocks WHERE {condition}"),
            params![value],
        )?;
        tx.commit()?;
        Ok(taken)
    }

    /// Adds a block, or extends an existing one (a refresh never shortens).
    pub fn upsert_block(&self, b: &Block, now_s: u32) -> Result<Change> {
        let tx = self.conn.unchecked_transaction()?;
        let old = expiry_and_origin(&tx, &b.net, b.len)?;
        let change = match old {
            None => {
                tx.execute(
                    "INSERT INTO blocks (net, len, expires, reason, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![&b.net[..], b.len, b.expires, b.reason, now_s],
                )?;
                Change::New
            }
            Some((old, origin)) => {
                let longer = old != 0 && (b.expires == 0 || b.expires > old);
                let expires = if longer { b.expires } else { old };
                // A local decision makes the block this appliance's own
                // (announced from now on), whoever taught it first.
                tx.execute(
                    "UPDATE blocks SET expires = ?3, updated = ?4, bites = bites + 1, origin = 0 \
                     WHERE net = ?1 AND len = ?2",
                    params![&b.net[..], b.len, expires, now_s],
                )?;
                // A learned block that becomes ours changed too: it is
                // announced from now on.
                if longer || origin != 0 {
                    Change::Extended
                } else {
                    Change::Unchanged
                }
            }
        };
        tx.commit()?;
        Ok(change)
    }

    /// Removes a block; false if there was none.
    pub fn remove_block(&self, net: &[u8; 16], len: u8) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM blocks WHERE net = ?1 AND len = ?2",
            params![&net[..], len],
        )? > 0)
    }

    /// The block on `net/len`, if any.
    pub fn block(&self, net: &[u8; 16], len: u8) -> Result<Option<Block>> {
        self.conn
            .query_row(
                "SELECT net, len, expires, reason, origin FROM blocks WHERE net = ?1 AND len = ?2",
                params![&net[..], len],
                row_to_block,
            )
            .optional()
    }

    /// How many times a block on `net/len` was made or refreshed (0: never).
    pub fn times_blocked(&self, net: &[u8; 16], len: u8) -> Result<u32> {
        Ok(self
            .conn
            .query_row(
                "SELECT bites FROM blocks WHERE net = ?1 AND len = ?2",
                params![&net[..], len],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Stores many new blocks in one transaction (a restore, a bulk
    /// import, a benchmark's fixture); blocks already stored keep theirs.
    /// Returns how many were new.
    pub fn import_blocks(&self, blocks: &[Block], now_s: u32) -> Result<usize> {
        let tx = self.conn.unchecked_transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO blocks (net, len, expires, reason, created, updated, origin) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            )?;
            for b in blocks {
                added += stmt.execute(params![
                    &b.net[..],
                    b.len,
                    b.expires,
                    b.reason,
                    now_s,
                    b.origin
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Moves WAL checkpoints off this connection: SQLite otherwise runs one
    /// inside whichever commit grows the log past 1,000 pages, and that
    /// commit (a block the operator is waiting for) takes milliseconds
    /// instead of microseconds. A thread with its own connection
    /// checkpoints every second instead, in PASSIVE mode, which never
    /// waits for and never blocks this connection's writes. It stops with
    /// `stop`, checkpointing once more.
    pub fn checkpoint_elsewhere(
        &self,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<std::thread::JoinHandle<()>> {
        let path = self.conn.path().unwrap_or_default().to_owned();
        let other = Connection::open(&path)?;
        other.busy_timeout(std::time::Duration::from_secs(5))?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoint = move || {
            let _ = other.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        };
        std::thread::Builder::new()
            .name("bw-checkpoint".into())
            .spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    checkpoint();
                    // A second at most between checkpoints, waking early to stop.
                    for _ in 0..10 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
                checkpoint();
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }

    /// Blocks stored (expired ones not yet swept included).
    pub fn count_blocks(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM blocks", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
    }

    /// Blocks in force at `now_s`.
    pub fn active_blocks(&self, now_s: u32) -> Result<Vec<Block>> {
        let mut stmt = self.conn.prepare(
            "SELECT net, len, expires, reason, origin FROM blocks WHERE expires = 0 OR expires > ?1 ORDER BY created",
        )?;
        let rows = stmt.query_map(params![now_s], row_to_block)?;
        rows.collect()
    }

    /// One page of the blocks in force at `now_s` that `query` selects,
    /// read with the table's indexes: a page costs its own rows (and, with
    /// `offset`, the rows skipped), never a load of the whole table.
    pub fn list_blocks(&self, query: &BlockQuery, now_s: u32) -> Result<Vec<Block>> {
        let local = query.local.map(i64::from);
        if let Some(addr) = query.covering {
            // The blocks covering one address: one primary-key lookup per
            // prefix length (at most 129), most specific first.
            let mut stmt = self.conn.prepare_cached(
                "SELECT net, len, expires, reason, origin FROM blocks \
                 WHERE net = ?1 AND len = ?2 AND (expires = 0 OR expires > ?3) \
                 AND (?4 IS NULL OR (origin = 0) = ?4)",
            )?;
            let mut out = Vec::new();
            let a = u128::from_be_bytes(addr);
            for len in (0..=128u8).rev() {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                let net = (a & mask).to_be_bytes();
                let row = stmt
                    .query_row(params![&net[..], len, now_s, local], row_to_block)
                    .optional()?;
                out.extend(row.filter(|b| query.after.is_none_or(|x| (b.net, b.len) > x)));
            }
            if query.after.is_some() {
                out.sort_unstable_by_key(|b| (b.net, b.len));
            }
            return Ok(out
                .into_iter()
                .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
                .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
                .collect());
        }
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        match query.after {
            // In prefix order from `after`: the primary key's order.
            Some((net, len)) => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT net, len, expires, reason, origin FROM blocks \
                     WHERE (net, len) > (?1, ?2) AND (expires = 0 OR expires > ?3) \
                     AND (?4 IS NULL OR (origin = 0) = ?4) \
                     ORDER BY net, len LIMIT ?5 OFFSET ?6",
                )?;
                let rows = stmt.query_map(
                    params![&net[..], len, now_s, local, limit, offset],
                    row_to_block,
                )?;
                rows.collect()
            }
            // In the order they were made.
            None => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT net, len, expires, reason, origin FROM blocks INDEXED BY blocks_created \
                     WHERE (expires = 0 OR expires > ?1) AND (?2 IS NULL OR (origin = 0) = ?2) \
                     ORDER BY created, rowid LIMIT ?3 OFFSET ?4",
                )?;
                let rows = stmt.query_map(params![now_s, local, limit, offset], row_to_block)?;
                rows.collect()
            }
        }
    }

    /// The blocks in force at `now_s` that share an address with `net`
    /// (cover it, or lie inside it), by index: the covering ones by key,
    /// the ones inside by a range of the key.
    pub fn overlapping_blocks(&self, net: &([u8; 16], u8), now_s: u32) -> Result<Vec<Block>> {
        let covering = BlockQuery {
            covering: Some(net.0),
            limit: u64::MAX,
            ..BlockQuery::default()
        };
        let mut out: Vec<Block> = self
            .list_blocks(&covering, now_s)?
            .into_iter()
            .filter(|b| b.len <= net.1)
            .collect();
        let first = u128::from_be_bytes(net.0);
        let last = first | u128::MAX.checked_shr(u32::from(net.1)).unwrap_or(0);
        let mut stmt = self.conn.prepare_cached(
            "SELECT net, len, expires, reason, origin FROM blocks \
             WHERE net >= ?1 AND net <= ?2 AND len > ?3 AND (expires = 0 OR expires > ?4)",
        )?;
        let inside = stmt.query_map(
            params![
                &first.to_be_bytes()[..],
                &last.to_be_bytes()[..],
                net.1,
                now_s
            ],
            row_to_block,
        )?;
        for b in inside {
            out.push(b?);
        }
        Ok(out)
    }

    /// Deletes the blocks expired at `now_s` and returns them.
    pub fn take_expired(&self, now_s: u32) -> Result<Vec<Block>> {
        self.take_where("expires != 0 AND expires <= ?1", now_s)
    }

    /// Appends an event and its EVE object to the history.
    pub fn record(&self, row: &EventRow<'_>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO events (time_ns, kind, src, dst, src_port, dst_port, worker, action, eve) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.time_ns as i64,
                row.kind,
                &row.src[..],
                &row.dst[..],
                row.src_port,
                row.dst_port,
                row.worker,
                row.action,
                row.eve
            ],
        )?;
        Ok(())
    }

    /// The history, oldest first: the newest `limit` events at or after
    /// `since_ns`, of `kind` (an event type, or a bite kind; `"bite"`: any
    /// bite), about `source`. Each is its EVE object (rebuilt from the
    /// columns for events stored before schema 4).
    pub fn events(
        &self,
        since_ns: Option<u64>,
        limit: u64,
        kind: Option<&str>,
        source: Option<&[u8; 16]>,
    ) -> Result<Vec<serde_json::Value>> {
        let kinds: Vec<&str> = match kind {
            None => Vec::new(),
            Some("bite") => vec!["handshake", "data", "port"],
            Some(k) => vec![k],
        };
        let mut sql = String::from(
            "SELECT time_ns, kind, src, dst, src_port, dst_port, worker, action, eve FROM events \
             WHERE kind != 'service' AND time_ns >= ?1",
        );
        if !kinds.is_empty() {
            sql.push_str(" AND kind IN (");
            sql.push_str(&vec!["?"; kinds.len()].join(", "));
            sql.push(')');
        }
        if source.is_some() {
            sql.push_str(" AND src = ?");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let mut values: Vec<rusqlite::types::Value> =
            vec![(since_ns.unwrap_or(0).min(i64::MAX as u64) as i64).into()];
        values.extend(kinds.iter().map(|k| (*k).to_string().into()));
        if let Some(src) = source {
            values.push(src.to_vec().into());
        }
        values.push((limit.min(i64::MAX as u64) as i64).into());
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            let eve: Option<String> = r.get(8)?;
            if let Some(v) = eve.and_then(|e| serde_json::from_str(&e).ok()) {
                return Ok(v);
            }
            let (src, dst) = (blob16(r.get(2)?), blob16(r.get(3)?));
            let kind: String = r.get(1)?;
            Ok(serde_json::json!({
                "timestamp": crate::eve::timestamp(r.get::<_, i64>(0)? as u64),
                "event_type": if kind == "sweep" { "sweep" } else { "bite" },
                "src_ip": crate::eve::ip_text(&src),
                "src_port": r.get::<_, u16>(4)?,
                "dest_ip": crate::eve::ip_text(&dst),
                "dest_port": r.get::<_, u16>(5)?,
                "proto": "TCP",
                "baitwall": {"kind": kind, "action": r.get::<_, String>(7)?, "worker": r.get::<_, u16>(6)?},
            }))
        })?;
        let mut v = rows.collect::<Result<Vec<_>>>()?;
        v.reverse();
        Ok(v)
    }

    /// The newest bite: its time (Unix ns), source and kind.
    pub fn last_bite(&self) -> Result<Option<(u64, [u8; 16], String)>> {
        self.conn
            .query_row(
                "SELECT time_ns, src, kind FROM events WHERE kind IN ('handshake', 'data', 'port') \
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, blob16(r.get(1)?), r.get(2)?)),
            )
            .optional()
    }

    /// Appends an event to the history (without an EVE object).
    #[allow(clippy::too_many_arguments)]
    pub fn record_event(
        &self,
        time_ns: u64,
        kind: &str,
        src: &[u8; 16],
        dst: &[u8; 16],
        src_port: u16,
        dst_port: u16,
        worker: u16,
        action: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO events (time_ns, kind, src, dst, src_port, dst_port, worker, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![time_ns as i64, kind, &src[..], &dst[..], src_port, dst_port, worker, action],
        )?;
        Ok(())
    }

    /// Per source: bite kinds, decoys touched, workers, first and last seen;
    /// most recent first, at most `limit`.
    pub fn sources(&self, limit: u32) -> Result<Vec<SourceSummary>> {
        let mut stmt = self.conn.prepare(
            "SELECT src, COUNT(*), GROUP_CONCAT(DISTINCT kind), COUNT(DISTINCT dst), \
             COUNT(DISTINCT worker), MIN(time_ns), MAX(time_ns) \
             FROM events WHERE kind IN ('handshake', 'data', 'port', 'sweep') GROUP BY src ORDER BY MAX(time_ns) DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            let raw: Vec<u8> = r.get(0)?;
            let mut src = [0u8; 16];
            if raw.len() == 16 {
                src.copy_from_slice(&raw);
            }
            Ok(SourceSummary {
                src,
                source: std::net::IpAddr::from(src).to_canonical().to_string(),
                events: r.get::<_, i64>(1)? as u64,
                kinds: r.get(2)?,
                decoys: r.get::<_, i64>(3)? as u64,
                workers: r.get::<_, i64>(4)? as u64,
                first_seen_ns: r.get::<_, i64>(5)? as u64,
                last_seen_ns: r.get::<_, i64>(6)? as u64,
            })
        })?;
        rows.collect()
    }

    /// Events stored.
    pub fn event_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
    }

    /// Takes the next rule generation (persisted, so it only grows across restarts).
    pub fn next_generation(&self) -> Result<u64> {
        let tx = self.conn.unchecked_transaction()?;
        let current: i64 = tx
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let next = current + 1;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('generation', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
            params![next],
        )?;
        tx.commit()?;
        Ok(next as u64)
    }
}

/// The expiry and origin of the block on `net/len`, if there is one.
fn expiry_and_origin(tx: &Connection, net: &[u8; 16], len: u8) -> Result<Option<(u32, u32)>> {
    tx.query_row(
        "SELECT expires, origin FROM blocks WHERE net = ?1 AND len = ?2",
        params![&net[..], len],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// What a block listing selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockQuery {
    /// Only blocks covering this address.
    pub covering: Option<[u8; 16]>,
    /// Only local blocks (`Some(true)`) or only learned ones (`Some(false)`).
    pub local: Option<bool>,
    /// In prefix order, after this prefix (else in the order made).
    pub after: Option<([u8; 16], u8)>,
    /// Skip this many.
    pub offset: u64,
    /// At most this many.
    pub limit: u64,
}

fn row_to_block(r: &rusqlite::Row<'_>) -> Result<Block> {
    let net: Vec<u8> = r.get(0)?;
    let mut n = [0u8; 16];
    if net.len() == 16 {
        n.copy_from_slice(&net);
    }
    Ok(Block {
        net: n,
        len: r.get(1)?,
        expires: r.get(2)?,
        reason: r.get(3)?,
        origin: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn worm() -> [u8; 16] {
        std::net::Ipv4Addr::new(192, 0, 2, 66)
            .to_ipv6_mapped()
            .octets()
    }

    fn block(expires: u32) -> Block {
        Block::local(worm(), 128, expires, "port")
    }

    #[test]
    fn blocks_survive_a_reopen_with_their_absolute_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.upsert_block(&block(5000), 1000).unwrap(), Change::New);
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.block(&worm(), 128).unwrap(), Some(block(5000)));
        assert_eq!(s.active_blocks(4999).unwrap().len(), 1);
        assert_eq!(
            s.active_blocks(5000).unwrap().len(),
            0,
            "expired at its absolute time"
        );
        let journal: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let version: i64 = s
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_refresh_extends_and_never_shortens() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.upsert_block(&block(5000), 1).unwrap();
        assert_eq!(s.upsert_block(&block(9000), 2).unwrap(), Change::Extended);
        assert_eq!(s.upsert_block(&block(6000), 3).unwrap(), Change::Unchanged);
        assert_eq!(s.block(&worm(), 128).unwrap().unwrap().expires, 9000);
        assert_eq!(
            s.upsert_block(&block(0), 4).unwrap(),
            Change::Extended,
            "permanent is longest"
        );
        assert_eq!(
            s.upsert_block(&block(99_999), 5).unwrap(),
            Change::Unchanged
        );
        assert_eq!(s.block(&worm(), 128).unwrap().unwrap().expires, 0);
    }

    #[test]
    fn expired_blocks_are_taken_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.upsert_block(&block(100), 1).unwrap();
        let mut other = block(0);
        other.net[15] ^= 1;
        s.upsert_block(&other, 1).unwrap();
        assert_eq!(s.take_expired(99).unwrap().len(), 0);
        assert_eq!(s.take_expired(100).unwrap(), vec![block(100)]);
        assert_eq!(
            s.take_expired(100_000).unwrap().len(),
            0,
            "permanent blocks never expire"
        );
        assert_eq!(s.active_blocks(100_000).unwrap(), vec![other]);
    }

    #[test]
    fn learned_blocks_follow_their_announcement_and_never_touch_a_local_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let learned = |expires, origin| Block {
            origin,
            ..Block::local(worm(), 128, expires, "peer")
        };
        assert_eq!(s.learn_block(&learned(5000, 7), 10).unwrap(), Learned::New);
        assert_eq!(
            s.learn_block(&learned(5000, 7), 11).unwrap(),
            Learned::Unchanged
        );
        assert_eq!(
            s.learn_block(&learned(3000, 7), 12).unwrap(),
            Learned::Updated,
            "the origin's word goes, even when shorter"
        );
        assert_eq!(s.block(&worm(), 128).unwrap().unwrap().expires, 3000);
        assert_eq!(s.unlearn_block(&worm(), 128).unwrap(), Some(7));
        assert_eq!(s.block(&worm(), 128).unwrap(), None);
        assert_eq!(s.unlearn_block(&worm(), 128).unwrap(), None);

        // A local block: the fabric neither extends nor withdraws it.
        s.upsert_block(&block(4000), 20).unwrap();
        assert_eq!(
            s.learn_block(&learned(9000, 7), 21).unwrap(),
            Learned::KeptLocal
        );
        assert_eq!(s.unlearn_block(&worm(), 128).unwrap(), None);
        assert_eq!(s.block(&worm(), 128).unwrap().unwrap(), block(4000));

        // A local bite on a learned block makes it ours.
        let mut other = learned(5000, 9);
        other.net[15] ^= 1;
        s.learn_block(&other, 30).unwrap();
        let mut bite = block(4000);
        bite.net = other.net;
        assert_eq!(
            s.upsert_block(&bite, 31).unwrap(),
            Change::Extended,
            "a change (now announced) even though it lasts no longer"
        );
        let now = s.block(&other.net, 128).unwrap().unwrap();
        assert!(now.is_local() && now.expires == 5000, "{now:?}");
    }

    #[test]
    fn stale_learned_blocks_are_swept_and_local_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let mut old = block(0);
        old.origin = 7;
        let mut fresh = old.clone();
        fresh.net[15] ^= 1;
        let mut local = block(0);
        local.net[15] ^= 2;
        s.learn_block(&old, 100).unwrap();
        s.learn_block(&fresh, 100).unwrap();
        s.upsert_block(&local, 100).unwrap();
        // The session came back at 150; `fresh` was announced again.
        s.learn_block(&fresh, 160).unwrap();
        assert_eq!(s.take_stale_learned(150).unwrap(), vec![old]);
        assert_eq!(s.active_blocks(200).unwrap().len(), 2);
    }

    #[test]
    fn generations_only_grow_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let a = Store::open(&path).unwrap().next_generation().unwrap();
        let b = Store::open(&path).unwrap().next_generation().unwrap();
        assert!(b > a);
    }

    #[test]
    fn sources_aggregate_kinds_decoys_workers_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let d1 = [1u8; 16];
        let d2 = [2u8; 16];
        s.record_event(10, "handshake", &worm(), &d1, 1, 80, 0, "alert")
            .unwrap();
        s.record_event(20, "port", &worm(), &d1, 2, 443, 1, "block")
            .unwrap();
        s.record_event(30, "sweep", &worm(), &d2, 3, 80, 1, "count")
            .unwrap();
        s.record_event(40, "service", &d1, &worm(), 80, 1, 0, "count")
            .unwrap();
        let all = s.sources(10).unwrap();
        assert_eq!(all.len(), 1, "services are not sources of bites");
        let w = &all[0];
        assert_eq!(w.source, "192.0.2.66");
        assert_eq!((w.events, w.decoys, w.workers), (3, 2, 2));
        assert_eq!((w.first_seen_ns, w.last_seen_ns), (10, 30));
        for k in ["handshake", "port", "sweep"] {
            assert!(w.kinds.contains(k), "{}", w.kinds);
        }
    }

    #[test]
    fn changes_since_a_generation_are_exactly_what_a_worker_missed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.upsert_block(&block(0), 1).unwrap();
        s.stamp_block(&worm(), 128, 5).unwrap();
        let mut other = block(0);
        other.net[15] ^= 1;
        s.upsert_block(&other, 1).unwrap();
        s.stamp_block(&other.net, 128, 7).unwrap();
        s.stamp_removed(&[9; 16], 120, 8).unwrap();
        let (blocks, removed) = s.changes_since(5, 10).unwrap();
        assert_eq!(blocks, vec![other.clone()]);
        assert_eq!(removed, vec![([9; 16], 120)]);
        let (blocks, removed) = s.changes_since(8, 10).unwrap();
        assert!(blocks.is_empty() && removed.is_empty());
        assert_eq!(s.changes_since(0, 10).unwrap().0.len(), 2);
        // Re-adding a removed prefix forgets the removal.
        s.upsert_block(&Block::local([9; 16], 120, 0, "x"), 1)
            .unwrap();
        s.stamp_block(&[9; 16], 120, 9).unwrap();
        assert!(s.changes_since(5, 10).unwrap().1.is_empty());
        assert_eq!(s.last_instance().unwrap(), 0);
        s.set_instance(0xfeed).unwrap();
        assert_eq!(s.last_instance().unwrap(), 0xfeed);
    }

    #[test]
    fn allows_and_learned_hosts_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            s.add_allow(&worm(), 128, "scanner we run", 1).unwrap();
            s.learn_host(&[7; 16], 443, 100).unwrap();
            s.learn_host(&[7; 16], 443, 50).unwrap();
            s.learn_host(&[7; 16], 443, 200).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.allows().unwrap(), vec![(worm(), 128)]);
        assert_eq!(s.hosts(10).unwrap(), vec![([7; 16], 443, 100, 200)]);
        // Liveness: one row per host, its latest time, old ones left out.
        s.learn_host(&[7; 16], 0, 300).unwrap();
        s.learn_host(&[8; 16], 0, 50).unwrap();
        assert_eq!(s.live_hosts(100, 10).unwrap(), vec![([7; 16], 300)]);
        assert_eq!(s.live_hosts(0, 1).unwrap(), vec![([7; 16], 300)]);
        assert_eq!(s.live_hosts(0, 10).unwrap().len(), 2);
        assert!(s.remove_allow(&worm(), 128).unwrap());
        assert!(s.allows().unwrap().is_empty());
    }

    #[test]
    fn allow_removals_are_found_by_generation_until_added_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.add_allow(&worm(), 128, "lab", 1).unwrap();
        assert!(s.remove_allow(&worm(), 128).unwrap());
        s.stamp_allow_removed(&worm(), 128, 7).unwrap();
        assert_eq!(s.allow_removals_since(6).unwrap(), [(worm(), 128)]);
        assert!(
            s.allow_removals_since(7).unwrap().is_empty(),
            "the workers have 7"
        );
        s.add_allow(&worm(), 128, "back", 2).unwrap();
        assert!(s.allow_removals_since(0).unwrap().is_empty(), "added back");
    }

    #[test]
    fn events_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.record_event(1, "port", &worm(), &[0; 16], 40000, 443, 1, "block")
            .unwrap();
        assert_eq!(s.event_count().unwrap(), 1);
    }

    /// Listing by index gives what filtering every block in force would:
    /// random blocks (local and learned, expired and not, nested
    /// prefixes), every kind of query.
    #[test]
    fn block_pages_match_a_filter_over_every_block() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let now = 10_000;
        for i in 0..400u32 {
            let r = next();
            let len = [96u8, 104, 112, 120, 124, 128, 128, 128][(r % 8) as usize];
            let addr = std::net::Ipv4Addr::from(0xc000_0200 | (r >> 8) as u32 & 0xff)
                .to_ipv6_mapped()
                .octets();
            let mask = u128::MAX << (128 - u32::from(len));
            let net = (u128::from_be_bytes(addr) & mask).to_be_bytes();
            let expires = [0u32, 5_000, 20_000][(r >> 20) as usize % 3];
            let mut b = Block::local(net, len, expires, "t");
            if r >> 30 & 1 == 1 {
                b.origin = 7;
                s.learn_block(&b, u64::from(1_000 + i) * 1000).unwrap();
            } else {
                s.upsert_block(&b, 1_000 + i).unwrap();
            }
        }
        let in_force = s.active_blocks(now).unwrap();
        let key = |b: &Block| (b.net, b.len);
        let v4 = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets();
        for covering in [None, Some(v4([192, 0, 2, 66]))] {
            for local in [None, Some(true), Some(false)] {
                for after in [None, Some((v4([192, 0, 2, 100]), 128))] {
                    for (offset, limit) in [(0, 1_000), (3, 7), (50, 25)] {
                        let q = BlockQuery {
                            covering,
                            local,
                            after,
                            offset,
                            limit,
                        };
                        let mut want: Vec<Block> = in_force
                            .iter()
                            .filter(|b| covering.is_none_or(|a| crate::policy::covers(&key(b), &a)))
                            .filter(|b| local.is_none_or(|l| l == b.is_local()))
                            .filter(|b| after.is_none_or(|x| key(b) > x))
                            .cloned()
                            .collect();
                        if after.is_some() {
                            want.sort_unstable_by_key(key);
                        } else if covering.is_some() {
                            want.sort_unstable_by_key(|b| std::cmp::Reverse(b.len));
                        }
                        let want: Vec<_> = want
                            .into_iter()
                            .skip(offset as usize)
                            .take(limit as usize)
                            .collect();
                        assert_eq!(s.list_blocks(&q, now).unwrap(), want, "{q:?}");
                    }
                }
            }
        }
        // Overlap: what covers 192.0.2.64/26 or lies inside it.
        let target = (v4([192, 0, 2, 64]), 122);
        let mut got: Vec<_> = s
            .overlapping_blocks(&target, now)
            .unwrap()
            .iter()
            .map(key)
            .collect();
        let mut want: Vec<_> = in_force
            .iter()
            .filter(|b| crate::policy::overlap(&key(b), &target))
            .map(key)
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(!want.is_empty());
    }
}
