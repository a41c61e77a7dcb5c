//! The outbox: every record is stored here before it is handed to the producer and removed only
//! when the broker acknowledged it, so records survive outages, restarts and crashes.
//!
//! SQLite (compiled in) in WAL mode with `synchronous=NORMAL`: a committed append survives the
//! process being killed at any moment; a power cut may lose the appends since the last WAL
//! checkpoint. The file is locked exclusively, so two HostPulse processes never share one.
//!
//! Records leave in `seq` order (the order they were made, so each stream's order holds). The
//! outbox is bounded by the bytes of its records and by age; beyond either bound the oldest
//! records are dropped and counted. A full disk drops the oldest records to make room; when even
//! that fails the new record is dropped and counted, with an error naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hostpulse_core::settings::OutboxLimits;
use hostpulse_core::wire::{ModelKey, Record};
use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};
use thiserror::Error;

/// Why the outbox cannot be used.
#[derive(Debug, Error)]
pub enum OutboxError {
    /// Another process holds the lock.
    #[error(
        "the outbox {} is in use by another HostPulse process (the desktop app or `hostpulse run`): stop that one first",
        path.display()
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The file or its directory cannot be opened or is not an outbox.
    #[error(
        "cannot open the outbox {}: {reason}; if the file is damaged, move it away and HostPulse starts a new one",
        path.display()
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's or the OS's reason.
        reason: String,
    },
    /// The disk is full even after dropping old records.
    #[error("the disk holding the outbox {} is full: free some space; new records are dropped until then", path.display())]
    DiskFull {
        /// The database file.
        path: PathBuf,
    },
    /// Any other storage error.
    #[error("the outbox {} failed: {reason}", path.display())]
    Storage {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        reason: String,
    },
}

/// A record as kept in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Position in the outbox: increases with every append, never reused.
    pub seq: i64,
    /// The record.
    pub record: Record,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the record was stored.
    pub seq: i64,
    /// Older records dropped to stay within the bounds.
    pub dropped: u64,
}

/// An append that failed, and the older records it had already dropped to make room (they are
/// gone all the same and must be counted).
#[derive(Debug, Error)]
#[error("{error}")]
pub struct AppendError {
    /// Why the record could not be stored.
    pub error: OutboxError,
    /// Records dropped before it failed (age bound, size bound, disk-full rounds).
    pub dropped: u64,
}

/// The records handed to the producer and not yet answered: every stored record up to `upto`,
/// holding `bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    /// The last outbox position handed over (0: none).
    pub upto: i64,
    /// Bytes of the records in flight.
    pub bytes: u64,
}

/// The durable queue of unacknowledged records.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    limits: OutboxLimits,
    len: u64,
    bytes: u64,
    /// Records of a kind this version does not know, removed when the file was opened.
    unknown_removed: u64,
}

/// How many times an append makes room on a full disk before it gives up on the record.
const DISK_FULL_ROUNDS: u32 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stored_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    value TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_age ON records(stored_ms);
CREATE TABLE IF NOT EXISTS history (
    ts_ns INTEGER NOT NULL,
    published INTEGER NOT NULL,
    row_values TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_time ON history(ts_ns);
";

/// Every kind of record this version writes and sends.
const KINDS: [ModelKey; 6] = [
    ModelKey::StreamProperties,
    ModelKey::ParameterDefinitions,
    ModelKey::ParameterData,
    ModelKey::EventData,
    ModelKey::StreamEnd,
    ModelKey::JsonRow,
];

fn model_from(name: &str) -> Option<ModelKey> {
    KINDS.into_iter().find(|m| m.as_str() == name)
}

fn record_bytes(r: &Record) -> u64 {
    (r.key.len() + r.value.len()) as u64
}

impl Outbox {
    /// The outbox file in `data_dir` for one program (`cli` or `app`), so that the desktop app
    /// and a headless agent on the same machine never share one.
    pub fn path_in(data_dir: &Path, program: &str) -> PathBuf {
        data_dir.join("outbox").join(format!("{program}.sqlite3"))
    }

    /// Opens (or creates, readable only by the user) the outbox at `path` and takes its lock.
    pub fn open(path: &Path, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        let open_error = |reason: String| OutboxError::Open { path: path.to_owned(), reason };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        if !path.exists() {
            create_private(path).map_err(|e| open_error(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        Self::init(conn, path, limits)
    }

    /// An outbox in memory (tests, dry runs): same behaviour, nothing survives the process.
    pub fn in_memory(limits: OutboxLimits) -> Outbox {
        let conn = Connection::open_in_memory().expect("SQLite in memory");
        Self::init(conn, Path::new(":memory:"), limits).expect("a fresh in-memory outbox")
    }

    fn init(conn: Connection, path: &Path, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        let path = path.to_owned();
        let fail = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OutboxError::InUse { path: path.clone() },
            _ => OutboxError::Open { path: path.clone(), reason: e.to_string() },
        };
        // Exclusive locking before WAL: no shared-memory file, and a second process is refused.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(fail)?;
        conn.busy_timeout(std::time::Duration::ZERO).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        let unknown_removed = remove_unknown_kinds(&conn, &path).map_err(fail)?;
        let (len, bytes): (i64, i64) = conn
            .query_row("SELECT count(*), coalesce(sum(bytes), 0) FROM records", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(fail)?;
        Ok(Outbox { conn, path, limits, len: len as u64, bytes: bytes as u64, unknown_removed })
    }

    /// Records of a kind this version cannot send (written by another HostPulse version) that
    /// were removed, each reported, when the file was opened.
    pub fn unknown_removed(&self) -> u64 {
        self.unknown_removed
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records kept.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the records kept (keys and values).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Changes the bounds (they apply from the next append).
    pub fn set_limits(&mut self, limits: OutboxLimits) {
        self.limits = limits;
    }

    fn storage(&self, e: rusqlite::Error) -> OutboxError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => OutboxError::DiskFull { path: self.path.clone() },
            _ => OutboxError::Storage { path: self.path.clone(), reason: e.to_string() },
        }
    }

    /// Stores `record` (made at `now_ms`, ms since the Unix epoch), first dropping records older
    /// than the age bound and, oldest first, as many as the size bound needs.
    pub fn append(&mut self, record: &Record, now_ms: i64) -> Result<Appended, OutboxError> {
        self.append_after(record, now_ms, &InFlight::default()).map_err(|e| e.error)
    }

    /// [`append`](Self::append) while the records in `in_flight` are with the producer: those
    /// are neither dropped (their acknowledgement may still come) nor counted against the size
    /// bound (the in-flight window bounds them).
    pub fn append_after(
        &mut self,
        record: &Record,
        now_ms: i64,
        in_flight: &InFlight,
    ) -> Result<Appended, AppendError> {
        let size = record_bytes(record);
        let fail = |error: OutboxError, dropped: u64| AppendError { error, dropped };
        let mut dropped = self.expire_after(now_ms, in_flight.upto).map_err(|e| fail(e, 0))?;
        let limit = self.limits.max_bytes;
        let counted = self.bytes.saturating_sub(in_flight.bytes);
        if counted + size > limit {
            dropped += self.drop_oldest_bytes(counted + size - limit, in_flight.upto).map_err(|e| fail(e, dropped))?;
        }
        let mut rounds = 0;
        loop {
            let inserted = self
                .conn
                .prepare_cached(
                    "INSERT INTO records (stored_ms, model, key, timestamp_ms, value, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        now_ms,
                        record.model.as_str(),
                        &*record.key,
                        record.timestamp_ms,
                        record.value,
                        size as i64
                    ])
                })
                .map(|_| self.conn.last_insert_rowid());
            match inserted {
                Ok(seq) => {
                    self.len += 1;
                    self.bytes += size;
                    return Ok(Appended { seq, dropped });
                }
                // The disk (or the file's page limit) is full: make room, oldest first, never
                // from the records in flight, and only a few times: if that does not help, the
                // new record is the one that is dropped (the caller counts it).
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull) && rounds < DISK_FULL_ROUNDS => {
                    rounds += 1;
                    let tenth = (self.len / 10).max(1);
                    let made_room = self.drop_oldest(tenth, in_flight.upto).map_err(|e| fail(e, dropped))?;
                    if made_room == 0 {
                        return Err(fail(self.storage(e), dropped));
                    }
                    tracing::warn!(path = %self.path.display(), "disk full: dropped the {made_room} oldest unsent records");
                    dropped += made_room;
                }
                Err(e) => return Err(fail(self.storage(e), dropped)),
            }
        }
    }

    /// Drops records older than the age bound, sparing those up to `in_flight_upto` (with the
    /// producer); returns how many.
    pub fn expire_after(&mut self, now_ms: i64, in_flight_upto: i64) -> Result<u64, OutboxError> {
        let cutoff = now_ms.saturating_sub(self.limits.max_age.as_millis() as i64);
        let oldest: Option<i64> = self
            .conn
            .prepare_cached("SELECT min(stored_ms) FROM records WHERE seq > ?1")
            .and_then(|mut s| s.query_row([in_flight_upto], |r| r.get(0)))
            .map_err(|e| self.storage(e))?;
        if oldest.is_none_or(|t| t >= cutoff) {
            return Ok(0);
        }
        self.delete("DELETE FROM records WHERE stored_ms < ?1 AND seq > ?2 RETURNING bytes", [cutoff, in_flight_upto])
    }

    /// Drops the oldest records after `after` holding at least `need` bytes.
    fn drop_oldest_bytes(&mut self, need: u64, after: i64) -> Result<u64, OutboxError> {
        let mut freed = 0u64;
        let mut last = None;
        {
            let mut s = self
                .conn
                .prepare_cached("SELECT seq, bytes FROM records WHERE seq > ?1 ORDER BY seq")
                .map_err(|e| self.storage(e))?;
            let mut rows = s.query([after]).map_err(|e| self.storage(e))?;
            while freed < need {
                let Some(row) = rows.next().map_err(|e| self.storage(e))? else { break };
                last = Some(row.get::<_, i64>(0).map_err(|e| self.storage(e))?);
                freed += row.get::<_, i64>(1).map_err(|e| self.storage(e))? as u64;
            }
        }
        match last {
            Some(seq) => self.delete("DELETE FROM records WHERE seq > ?1 AND seq <= ?2 RETURNING bytes", [after, seq]),
            None => Ok(0),
        }
    }

    /// Drops the `n` oldest records after `after` (those up to it are in flight and stay).
    fn drop_oldest(&mut self, n: u64, after: i64) -> Result<u64, OutboxError> {
        self.delete(
            "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2) RETURNING bytes",
            [after, n as i64],
        )
    }

    fn delete<P: rusqlite::Params>(&mut self, sql: &str, args: P) -> Result<u64, OutboxError> {
        let sizes: Vec<i64> = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_map(args, |r| r.get(0))?.collect())
            .map_err(|e| self.storage(e))?;
        let n = sizes.len() as u64;
        self.len -= n.min(self.len);
        self.bytes -= (sizes.iter().sum::<i64>() as u64).min(self.bytes);
        Ok(n)
    }

    /// Up to `limit` records after `seq`, in order.
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<Stored>, OutboxError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT seq, model, key, timestamp_ms, value FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.storage(e))?;
        let rows = s
            .query_map(params![seq, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.storage(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (seq, model, key, timestamp_ms, value) in rows {
            match model_from(&model) {
                Some(model) => {
                    out.push(Stored { seq, record: Record { model, key: Arc::from(key), value, timestamp_ms } })
                }
                None => tracing::warn!(seq, model, "outbox entry of an unknown kind skipped"),
            }
        }
        Ok(out)
    }

    /// The Kafka timestamp (ms: the time of its first row) of the oldest data record (a
    /// `ParameterData` envelope or a JSON row) kept, that is, from when on rows are not yet
    /// acknowledged.
    pub fn oldest_data_ms(&self) -> Result<Option<i64>, OutboxError> {
        self.conn
            .prepare_cached(
                "SELECT timestamp_ms FROM records WHERE model IN ('ParameterData', 'JsonRow') ORDER BY seq LIMIT 1",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(|e| self.storage(e))
    }

    /// Keeps a sampled row for the window's chart (not a record: it is never sent, and it does
    /// not count against the bounds; [`prune_history`](Self::prune_history) keeps it to an hour).
    /// `values` is the row's values as JSON.
    pub fn keep_history(&mut self, ts_ns: i64, published: bool, values: &str) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("INSERT INTO history (ts_ns, published, row_values) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![ts_ns, published, values]))
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }

    /// The rows kept for the chart measured at or after `since_ns`, oldest first.
    pub fn history_since(&self, since_ns: i64) -> Result<Vec<(i64, bool, String)>, OutboxError> {
        self.conn
            .prepare_cached("SELECT ts_ns, published, row_values FROM history WHERE ts_ns >= ?1 ORDER BY ts_ns")
            .and_then(|mut s| s.query_map([since_ns], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
            .map_err(|e| self.storage(e))
    }

    /// Forgets chart rows measured before `before_ns`.
    pub fn prune_history(&mut self, before_ns: i64) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("DELETE FROM history WHERE ts_ns < ?1")
            .and_then(|mut s| s.execute([before_ns]))
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }

    /// Removes an acknowledged record; `false` when it was no longer there (dropped meanwhile).
    pub fn remove(&mut self, seq: i64) -> Result<bool, OutboxError> {
        Ok(self.delete("DELETE FROM records WHERE seq = ?1 RETURNING bytes", [seq])? == 1)
    }

    #[cfg(test)]
    fn limit_pages(&self, pages: u32) {
        self.conn.pragma_update(None, "max_page_count", pages).unwrap();
    }
}

/// Removes records whose kind this version does not know (a newer version wrote them, then the
/// user went back): they can never be sent by this one and would block the queue. Each is
/// reported; the count is returned.
fn remove_unknown_kinds(conn: &Connection, path: &Path) -> rusqlite::Result<u64> {
    let known = KINDS.map(|m| format!("'{}'", m.as_str())).join(",");
    let removed: Vec<(i64, String)> = conn
        .prepare(&format!("DELETE FROM records WHERE model NOT IN ({known}) RETURNING seq, model"))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (seq, model) in &removed {
        tracing::error!(
            seq,
            model = %model.chars().take(64).collect::<String>(),
            path = %path.display(),
            "outbox record of a kind this HostPulse version cannot send (written by another version) removed"
        );
    }
    Ok(removed.len() as u64)
}

/// Creates an empty file readable only by the user (SQLite keeps the mode for its WAL file).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(i: i64) -> Record {
        Record {
            model: ModelKey::ParameterData,
            key: Arc::from("stream-1"),
            value: format!(r#"{{"C":"JT","K":"ParameterData","V":{{"n":{i:04}}}}}"#),
            timestamp_ms: 1_700_000_000_000 + i,
        }
    }

    fn limits(max_bytes: u64) -> OutboxLimits {
        OutboxLimits { max_bytes, max_age: Duration::from_secs(3600) }
    }

    fn values(o: &Outbox) -> Vec<i64> {
        o.after(0, usize::MAX >> 1).unwrap().iter().map(|s| s.record.timestamp_ms - 1_700_000_000_000).collect()
    }

    #[test]
    fn the_oldest_data_record_says_from_when_rows_are_unacknowledged() {
        let mut o = Outbox::in_memory(limits(1 << 20));
        assert_eq!(o.oldest_data_ms().unwrap(), None);
        let props = Record { model: ModelKey::StreamProperties, timestamp_ms: 5, ..record(0) };
        let p = o.append(&props, 0).unwrap().seq;
        let a = o.append(&record(1), 0).unwrap().seq;
        o.append(&record(2), 0).unwrap();
        assert_eq!(o.oldest_data_ms().unwrap(), Some(1_700_000_000_001), "properties are not rows");
        o.remove(a).unwrap();
        o.remove(p).unwrap();
        assert_eq!(o.oldest_data_ms().unwrap(), Some(1_700_000_000_002));
    }

    #[test]
    fn chart_rows_are_kept_apart_from_records_and_pruned_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = Outbox::path_in(dir.path(), "test");
        let mut o = Outbox::open(&path, limits(1 << 20)).unwrap();
        for t in 0..5 {
            o.keep_history(t * 1000, t % 2 == 0, &format!(r#"[["CPU_Load",{t}.5]]"#)).unwrap();
        }
        assert_eq!((o.len(), o.bytes()), (0, 0), "not records, not counted against the bounds");
        o.prune_history(2000).unwrap();
        drop(o);
        let o = Outbox::open(&path, limits(1 << 20)).unwrap();
        let kept = o.history_since(3000).unwrap();
        assert_eq!(
            kept,
            [(3000, false, r#"[["CPU_Load",3.5]]"#.to_owned()), (4000, true, r#"[["CPU_Load",4.5]]"#.to_owned())]
        );
        assert_eq!(o.history_since(0).unwrap().len(), 3, "pruned before 2000, kept across a reopen");
    }

    #[test]
    fn records_come_back_in_order_and_leave_when_acknowledged() {
        let mut o = Outbox::in_memory(limits(1 << 20));
        let seqs: Vec<i64> = (0..5).map(|i| o.append(&record(i), 0).unwrap().seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(o.after(seqs[1], 2).unwrap().iter().map(|s| s.seq).collect::<Vec<_>>(), &seqs[2..4]);
        assert_eq!(o.after(0, 1).unwrap()[0].record, record(0), "stored as given");
        assert!(o.remove(seqs[0]).unwrap());
        assert!(!o.remove(seqs[0]).unwrap(), "a second acknowledgement removes nothing");
        assert_eq!((o.len(), values(&o)), (4, vec![1, 2, 3, 4]));
        assert_eq!(o.bytes(), 4 * record_bytes(&record(0)));
        // Sequence numbers are never reused, even after the newest record left.
        o.remove(seqs[4]).unwrap();
        assert!(o.append(&record(9), 0).unwrap().seq > seqs[4]);
    }

    #[test]
    fn the_size_bound_drops_the_oldest_and_counts_them() {
        let size = record_bytes(&record(0));
        let mut o = Outbox::in_memory(limits(size * 3));
        let dropped: u64 = (0..10).map(|i| o.append(&record(i), 0).unwrap().dropped).sum();
        assert_eq!(dropped, 7);
        assert_eq!(values(&o), [7, 8, 9], "the newest are kept");
        assert!(o.bytes() <= size * 3);
    }

    #[test]
    fn records_in_flight_are_neither_dropped_nor_counted_against_the_bound() {
        let size = record_bytes(&record(0));
        let mut o = Outbox::in_memory(limits(size * 3));
        let seqs: Vec<i64> = (0..3).map(|i| o.append(&record(i), 0).unwrap().seq).collect();
        // Records 0 and 1 are with the producer: the bound drops record 2, the oldest unsent.
        let in_flight = InFlight { upto: seqs[1], bytes: 2 * size };
        let mut dropped = 0;
        for i in 3..6 {
            dropped += o.append_after(&record(i), 0, &in_flight).unwrap().dropped;
        }
        assert_eq!(dropped, 1);
        assert_eq!(values(&o), [0, 1, 3, 4, 5]);
        // Nor does the age bound touch them.
        assert_eq!(o.expire_after(10_000_000, seqs[1]).unwrap(), 3);
        assert_eq!(values(&o), [0, 1]);
    }

    #[test]
    fn the_age_bound_drops_what_waited_too_long() {
        let mut o = Outbox::in_memory(OutboxLimits { max_bytes: 1 << 20, max_age: Duration::from_secs(10) });
        o.append(&record(0), 0).unwrap();
        o.append(&record(1), 5_000).unwrap();
        assert_eq!(o.append(&record(2), 10_001).unwrap().dropped, 1);
        assert_eq!(values(&o), [1, 2]);
        assert_eq!(o.expire_after(15_001, 0).unwrap(), 1);
        assert_eq!(values(&o), [2]);
    }

    #[test]
    fn a_full_disk_drops_the_oldest_instead_of_failing() {
        let mut o = Outbox::in_memory(limits(1 << 30));
        o.limit_pages(o.conn.query_row("PRAGMA page_count", [], |r| r.get::<_, u32>(0)).unwrap() + 4);
        let big = |i: i64| Record { value: "x".repeat(3000) + &i.to_string(), ..record(i) };
        let mut dropped = 0;
        for i in 0..40 {
            dropped += o.append(&big(i), 0).unwrap().dropped;
        }
        assert!(dropped > 0, "the page limit was reached");
        assert_eq!(o.len() + dropped, 40, "every record is kept or counted");
        assert_eq!(*values(&o).last().unwrap(), 39, "the newest is kept");
    }

    #[test]
    fn an_append_that_fails_on_a_full_disk_says_how_many_it_dropped_before() {
        let mut o = Outbox::in_memory(limits(1 << 30));
        for i in 0..30 {
            o.append(&record(i), 0).unwrap();
        }
        o.limit_pages(o.conn.query_row("PRAGMA page_count", [], |r| r.get::<_, u32>(0)).unwrap());
        // Far larger than what dropping a few small records frees: every round fails.
        let huge = Record { value: "x".repeat(200_000), ..record(30) };
        let e = o.append_after(&huge, 0, &InFlight::default()).unwrap_err();
        assert!(matches!(e.error, OutboxError::DiskFull { .. }), "{e}");
        assert!(e.dropped > 0, "the rounds dropped the oldest: {e:?}");
        assert_eq!(e.dropped, 30 - o.len(), "each one dropped is counted");
    }

    #[test]
    fn a_full_disk_never_drops_records_in_flight_and_gives_up_instead_of_emptying_the_outbox() {
        let mut o = Outbox::in_memory(limits(1 << 30));
        let big = |i: i64| Record { value: "x".repeat(3000) + &i.to_string(), ..record(i) };
        let seqs: Vec<i64> = (0..6).map(|i| o.append(&big(i), 0).unwrap().seq).collect();
        // Everything stored is with the producer; the file may not grow.
        let in_flight = InFlight { upto: *seqs.last().unwrap(), bytes: o.bytes() };
        o.limit_pages(o.conn.query_row("PRAGMA page_count", [], |r| r.get::<_, u32>(0)).unwrap());
        let e = o.append_after(&big(6), 0, &in_flight).unwrap_err();
        assert!(matches!(e.error, OutboxError::DiskFull { .. }), "{e}");
        assert_eq!(e.dropped, 0);
        assert_eq!(values(&o), [0, 1, 2, 3, 4, 5], "nothing in flight was dropped");
        // With unsent records after them, those make room, a tenth at a time, a few rounds at most.
        o.limit_pages(o.conn.query_row("PRAGMA page_count", [], |r| r.get::<_, u32>(0)).unwrap() + 3);
        let (mut appended, mut dropped) = (0, 0);
        for i in 6..40 {
            match o.append_after(&big(i), 0, &in_flight) {
                Ok(a) => {
                    appended += 1;
                    dropped += a.dropped;
                }
                // What a failed append dropped before it gave up is counted too.
                Err(AppendError { error: OutboxError::DiskFull { .. }, dropped: d }) => dropped += d,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(appended > 0);
        assert_eq!(6 + appended - dropped, o.len(), "every record is stored, or counted as dropped");
        assert_eq!(&values(&o)[..6], [0, 1, 2, 3, 4, 5], "the records in flight are all still there");
        assert!(o.len() > 6, "the newest unsent records are kept");
    }

    #[test]
    fn records_of_an_unknown_kind_are_removed_and_counted_at_open_and_the_rest_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = Outbox::path_in(dir.path(), "cli");
        let mut o = Outbox::open(&path, limits(1 << 20)).unwrap();
        o.append(&record(1), 0).unwrap();
        // A later version wrote a kind this one does not know.
        o.conn
            .execute(
                "INSERT INTO records (stored_ms, model, key, timestamp_ms, value, bytes) VALUES (0, 'FutureModel', 'k', 0, 'v', 2)",
                [],
            )
            .unwrap();
        o.append(&record(2), 0).unwrap();
        drop(o);
        let o = Outbox::open(&path, limits(1 << 20)).unwrap();
        assert_eq!(o.unknown_removed(), 1);
        assert_eq!((o.len(), values(&o)), (2, vec![1, 2]));
        drop(o);
        assert_eq!(Outbox::open(&path, limits(1 << 20)).unwrap().unknown_removed(), 0, "removed for good");
    }

    #[test]
    fn records_survive_reopening_and_a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = Outbox::path_in(dir.path(), "cli");
        let mut o = Outbox::open(&path, limits(1 << 20)).unwrap();
        let a = o.append(&record(1), 0).unwrap().seq;
        o.append(&record(2), 0).unwrap();
        o.remove(a).unwrap();
        // The lock is per connection: a second open (as another process would) is refused.
        let e = Outbox::open(&path, limits(1 << 20)).err().expect("locked");
        assert!(matches!(e, OutboxError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("in use by another HostPulse process"), "{e}");
        drop(o);
        let o = Outbox::open(&path, limits(1 << 20)).unwrap();
        assert_eq!((o.len(), values(&o)), (1, vec![2]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_file_that_is_not_an_outbox_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        std::fs::write(&path, "this is not a database, it is a text file that got in the way").unwrap();
        let e = Outbox::open(&path, limits(1 << 20)).err().unwrap();
        assert!(e.to_string().contains("move it away"), "{e}");
        assert!(std::fs::read(&path).unwrap().starts_with(b"this is not"), "the file is left as it was");
    }
}
