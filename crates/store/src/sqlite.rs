//! The embedded backend: one SQLite database file in WAL mode.
//!
//! Every write appends a row to `log`, whose integer primary key is the revision (kine's idea:
//! the log is the history, the newest row of a key is its value). One writer thread owns the
//! write connection and commits whatever requests are waiting in one transaction: one fsync
//! acknowledges a whole group of writes, so throughput grows with the number of concurrent
//! writers while every acknowledged write is durable (`synchronous=FULL`).
//!
//! Watchers are fed from the log (history) and from an in-process broadcast of committed
//! batches (live); the revision order of the log makes the hand-over between the two exact.

use bytes::Bytes;
use futures::StreamExt;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::{broadcast, oneshot, watch};

use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StoreError, WatchStream, FORMAT_VERSION};

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// At most this many waiting writes share one transaction.
    pub max_batch: usize,
    /// SQLite page cache per connection, in KiB.
    pub cache_kib: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { max_batch: 256, cache_kib: 16 * 1024 }
    }
}

/// Rows read per query when replaying history to a watcher.
const HISTORY_PAGE: i64 = 1000;
/// Committed batches kept for watchers that fall behind before they re-read the log.
const BROADCAST_BATCHES: usize = 4096;

enum Write {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: Revision },
    Delete { key: String, expected: Option<Revision> },
    Compact { revision: Revision },
}

enum Outcome {
    Revision(Revision),
    Deleted(KeyValue),
    Compacted,
}

struct Request {
    write: Write,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

struct Shared {
    path: PathBuf,
    options: SqliteOptions,
    writes: Mutex<Option<mpsc::Sender<Request>>>,
    readers: Mutex<Vec<Connection>>,
    current: AtomicI64,
    compacted: AtomicI64,
    committed: broadcast::Sender<Arc<Vec<Event>>>,
    closed: watch::Sender<bool>,
}

/// The embedded SQLite store. Dropping it stops the writer and ends every watch stream.
pub struct SqliteStore {
    shared: Arc<Shared>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. Synchronous and quick: it does not
    /// block on anything but the file itself, so it may be called from async code at start-up.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let mut writer = connect(path, &options)?;
        let (current, compacted) = initialize(&mut writer)?;
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            options,
            writes: Mutex::new(Some(sender)),
            readers: Mutex::new(Vec::new()),
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            committed: broadcast::channel(BROADCAST_BATCHES).0,
            closed: watch::channel(false).0,
        });
        let for_writer = shared.clone();
        std::thread::Builder::new()
            .name("tugboat-sqlite-writer".into())
            .spawn(move || write_loop(writer, receiver, &for_writer))?;
        Ok(Self { shared })
    }

    async fn write(&self, write: Write) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let writes = self.shared.writes.lock().unwrap_or_else(|e| e.into_inner());
            let sender = writes.as_ref().ok_or(StoreError::Closed)?;
            sender.send(Request { write, reply }).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `read` on a pooled read connection off the async threads.
    async fn read<T: Send + 'static>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
        read_on(self.shared.clone(), read).await
    }

    fn check_readable(&self, revision: Option<Revision>) -> Result<(), StoreError> {
        let Some(requested) = revision else { return Ok(()) };
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if requested < compacted {
            return Err(StoreError::Compacted { requested, compacted });
        }
        let current = self.shared.current.load(Ordering::Acquire);
        if requested > current {
            return Err(StoreError::FutureRevision { requested, current });
        }
        Ok(())
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.shared.writes.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.shared.closed.send_replace(true);
    }
}

async fn read_on<T: Send + 'static>(
    shared: Arc<Shared>,
    read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || {
        let pooled = shared.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match pooled {
            Some(c) => c,
            None => connect(&shared.path, &shared.options)?,
        };
        let result = read(&connection);
        shared.readers.lock().unwrap_or_else(|e| e.into_inner()).push(connection);
        result
    })
    .await
    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
}

fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(30))?;
    connection.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-{}; PRAGMA temp_store=MEMORY;",
        options.cache_kib
    ))?;
    Ok(connection)
}

/// Creates the schema on first use and checks the format version. Returns the current and the
/// compacted revision.
fn initialize(connection: &mut Connection) -> Result<(Revision, Revision), StoreError> {
    let tx = connection.transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS log (
             revision INTEGER PRIMARY KEY,
             key TEXT NOT NULL,
             value BLOB NOT NULL,
             create_revision INTEGER NOT NULL,
             prev_revision INTEGER NOT NULL,
             deleted INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision DESC);",
    )?;
    let meta = |name: &str| -> Result<Option<String>, rusqlite::Error> {
        tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| row.get(0)).optional()
    };
    match meta("format_version")? {
        None => {
            tx.execute("INSERT INTO meta (name, value) VALUES ('format_version', ?1), ('current_revision', '1'), ('compacted_revision', '0')", [FORMAT_VERSION.to_string()])?;
        }
        Some(v) if v == FORMAT_VERSION.to_string() => {}
        Some(found) => return Err(StoreError::UnsupportedFormat { found, expected: FORMAT_VERSION }),
    }
    let number = |name: &str| -> Result<Revision, StoreError> {
        let text = meta(name)?.unwrap_or_default();
        text.parse().map_err(|_| StoreError::UnsupportedFormat { found: format!("{name}={text:?}"), expected: FORMAT_VERSION })
    };
    let current = number("current_revision")?;
    let compacted = number("compacted_revision")?;
    tx.commit()?;
    Ok((current, compacted))
}

/// The newest row of `key` (live or tombstone).
struct Latest {
    revision: Revision,
    create_revision: Revision,
    deleted: bool,
    value: Bytes,
}

fn latest(tx: &Transaction, key: &str) -> Result<Option<Latest>, rusqlite::Error> {
    tx.prepare_cached("SELECT revision, create_revision, deleted, value FROM log WHERE key = ?1 ORDER BY revision DESC LIMIT 1")?
        .query_row([key], |row| {
            Ok(Latest {
                revision: row.get(0)?,
                create_revision: row.get(1)?,
                deleted: row.get::<_, i64>(2)? != 0,
                value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            })
        })
        .optional()
}

fn live(latest: Option<Latest>) -> Option<Latest> {
    latest.filter(|l| !l.deleted)
}

impl Latest {
    fn key_value(&self, key: &str) -> KeyValue {
        KeyValue { key: key.to_owned(), value: self.value.clone(), create_revision: self.create_revision, mod_revision: self.revision }
    }
}

/// Applies one write inside the batch transaction. `Err` fails only this request.
fn apply(tx: &Transaction, write: &Write, revision: Revision, events: &mut Vec<Event>) -> Result<Outcome, StoreError> {
    let insert = |key: &str, value: &[u8], create: Revision, prev: Revision, deleted: bool| {
        tx.prepare_cached("INSERT INTO log (revision, key, value, create_revision, prev_revision, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![revision, key, value, create, prev, deleted as i64])
    };
    match write {
        Write::Create { key, value } => {
            if live(latest(tx, key)?).is_some() {
                return Err(StoreError::AlreadyExists { key: key.clone() });
            }
            insert(key, value, revision, 0, false)?;
            let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision: revision, mod_revision: revision };
            events.push(Event { kind: EventKind::Put, kv, prev: None });
            Ok(Outcome::Revision(revision))
        }
        Write::Update { key, value, expected } => {
            let current = live(latest(tx, key)?).ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
            if current.revision != *expected {
                return Err(StoreError::Conflict { key: key.clone(), current: Some(Box::new(current.key_value(key))) });
            }
            insert(key, value, current.create_revision, current.revision, false)?;
            let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision: current.create_revision, mod_revision: revision };
            events.push(Event { kind: EventKind::Put, kv, prev: Some(current.key_value(key)) });
            Ok(Outcome::Revision(revision))
        }
        Write::Delete { key, expected } => {
            let current = live(latest(tx, key)?).ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
            if expected.is_some_and(|e| e != current.revision) {
                return Err(StoreError::Conflict { key: key.clone(), current: Some(Box::new(current.key_value(key))) });
            }
            insert(key, &[], current.create_revision, current.revision, true)?;
            let kv = KeyValue { mod_revision: revision, ..current.key_value(key) };
            events.push(Event { kind: EventKind::Delete, kv: kv.clone(), prev: Some(current.key_value(key)) });
            Ok(Outcome::Deleted(kv))
        }
        Write::Compact { .. } => unreachable!("compaction runs outside write batches"),
    }
}

fn write_loop(mut connection: Connection, requests: mpsc::Receiver<Request>, shared: &Shared) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < shared.options.max_batch {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Compactions run alone: they are long and must not delay a batch's acknowledgement.
        let (compactions, writes): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(|r| matches!(r.write, Write::Compact { .. }));
        if !writes.is_empty() {
            commit_batch(&mut connection, writes, shared);
        }
        for request in compactions {
            let Write::Compact { revision } = request.write else { continue };
            let result = compact(&mut connection, revision, shared).map(|()| Outcome::Compacted);
            let _ = request.reply.send(result);
        }
    }
}

fn commit_batch(connection: &mut Connection, batch: Vec<Request>, shared: &Shared) {
    let start = shared.current.load(Ordering::Acquire);
    let mut events = Vec::with_capacity(batch.len());
    let mut outcomes = Vec::with_capacity(batch.len());
    let result = (|| -> Result<Revision, StoreError> {
        let tx = connection.transaction()?;
        let mut revision = start;
        for request in &batch {
            let result = apply(&tx, &request.write, revision + 1, &mut events);
            if result.is_ok() {
                revision += 1;
            }
            outcomes.push(result);
        }
        if revision != start {
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'current_revision'", [revision.to_string()])?;
        }
        tx.commit()?;
        Ok(revision)
    })();
    match result {
        Ok(revision) => {
            shared.current.store(revision, Ordering::Release);
            if !events.is_empty() {
                // No receivers is fine: nobody watches.
                let _ = shared.committed.send(Arc::new(events));
            }
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
        }
        Err(error) => {
            let message = error.to_string();
            tracing::error!(%message, "sqlite write batch failed; nothing in it was stored");
            for request in batch {
                let _ = request.reply.send(Err(StoreError::Io(std::io::Error::other(message.clone()))));
            }
        }
    }
}

/// Removes history below `revision`, keeping what reads at `revision` and later need.
fn compact(connection: &mut Connection, revision: Revision, shared: &Shared) -> Result<(), StoreError> {
    let revision = revision.min(shared.current.load(Ordering::Acquire));
    if revision <= shared.compacted.load(Ordering::Acquire) {
        return Ok(());
    }
    // Record the new floor first, so no reader is promised history being deleted.
    connection.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted_revision'", [revision.to_string()])?;
    shared.compacted.store(revision, Ordering::Release);
    // In slices of the revision space, each its own short transaction.
    let oldest: Revision = connection.query_row("SELECT COALESCE(MIN(revision), 0) FROM log", [], |r| r.get(0))?;
    let mut low = oldest;
    while low <= revision {
        let high = (low + 10_000).min(revision + 1);
        connection.execute(
            "DELETE FROM log WHERE revision >= ?1 AND revision < ?2 AND revision <= ?3 AND (
                 deleted = 1 OR EXISTS (SELECT 1 FROM log AS newer WHERE newer.key = log.key
                                        AND newer.revision > log.revision AND newer.revision <= ?3))",
            params![low, high, revision],
        )?;
        low = high;
    }
    Ok(())
}

fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn row_event(row: &rusqlite::Row) -> Result<Event, rusqlite::Error> {
    let revision: Revision = row.get(0)?;
    let key: String = row.get(1)?;
    let value = Bytes::from(row.get::<_, Vec<u8>>(2)?);
    let create_revision: Revision = row.get(3)?;
    let deleted = row.get::<_, i64>(4)? != 0;
    let prev = match row.get::<_, Option<Revision>>(5)? {
        Some(prev_revision) => Some(KeyValue {
            key: key.clone(),
            value: Bytes::from(row.get::<_, Vec<u8>>(6)?),
            create_revision: row.get(7)?,
            mod_revision: prev_revision,
        }),
        None => None,
    };
    Ok(if deleted {
        let last = prev.clone().unwrap_or(KeyValue { key: key.clone(), value: Bytes::new(), create_revision, mod_revision: revision });
        Event { kind: EventKind::Delete, kv: KeyValue { mod_revision: revision, ..last }, prev }
    } else {
        Event { kind: EventKind::Put, kv: KeyValue { key, value, create_revision, mod_revision: revision }, prev }
    })
}

/// Changes after `after` under `prefix`, oldest first, at most one page.
fn history(connection: &Connection, prefix: &str, after: Revision) -> Result<Vec<Event>, StoreError> {
    let end = prefix_end(prefix);
    let mut statement = connection.prepare_cached(
        "SELECT l.revision, l.key, l.value, l.create_revision, l.deleted, p.revision, p.value, p.create_revision
         FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision AND l.prev_revision > 0
         WHERE l.revision > ?1 AND l.key >= ?2 AND (?3 IS NULL OR l.key < ?3)
         ORDER BY l.revision LIMIT ?4",
    )?;
    let rows = statement.query_map(params![after, prefix, end, HISTORY_PAGE], row_event)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[async_trait::async_trait]
impl crate::Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        match self.write(Write::Create { key: key.to_owned(), value }).await? {
            Outcome::Revision(r) => Ok(r),
            _ => unreachable!("a create answers with its revision"),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        match self.write(Write::Update { key: key.to_owned(), value, expected }).await? {
            Outcome::Revision(r) => Ok(r),
            _ => unreachable!("an update answers with its revision"),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        match self.write(Write::Delete { key: key.to_owned(), expected }).await? {
            Outcome::Deleted(kv) => Ok(kv),
            _ => unreachable!("a delete answers with the deleted value"),
        }
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        self.check_readable(revision)?;
        let at = revision.unwrap_or(Revision::MAX);
        let key = key.to_owned();
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT revision, create_revision, deleted, value FROM log WHERE key = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT 1")?
                .query_row(params![key, at], |row| {
                    Ok((row.get::<_, Revision>(0)?, row.get::<_, Revision>(1)?, row.get::<_, i64>(2)? != 0, row.get::<_, Vec<u8>>(3)?))
                })
                .optional()?;
            Ok(row.filter(|r| !r.2).map(|(mod_revision, create_revision, _, value)| KeyValue {
                key,
                value: Bytes::from(value),
                create_revision,
                mod_revision,
            }))
        })
        .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        self.check_readable(options.revision)?;
        // Read the revision before the rows: rows newer than it are filtered out below.
        let revision = options.revision.unwrap_or_else(|| self.shared.current.load(Ordering::Acquire));
        let prefix = prefix.to_owned();
        let limit = options.limit.filter(|l| *l > 0);
        self.read(move |c| {
            let end = prefix_end(&prefix);
            let lower = options.start_after.filter(|s| *s >= prefix);
            // Newest row per key at `revision`, in key order: the first row of each key group.
            let mut statement = c.prepare_cached(
                "SELECT key, revision, create_revision, deleted, value FROM log
                 WHERE key >= ?1 AND (?2 IS NULL OR key > ?2) AND (?3 IS NULL OR key < ?3) AND revision <= ?4
                 ORDER BY key, revision DESC",
            )?;
            let mut rows = statement.query(params![prefix, lower, end, revision])?;
            let mut items = Vec::new();
            let mut last_key: Option<String> = None;
            let mut more = false;
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                if last_key.as_deref() == Some(key.as_str()) {
                    continue;
                }
                last_key = Some(key.clone());
                if row.get::<_, i64>(3)? != 0 {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    more = true;
                    break;
                }
                items.push(KeyValue {
                    key,
                    mod_revision: row.get(1)?,
                    create_revision: row.get(2)?,
                    value: Bytes::from(row.get::<_, Vec<u8>>(4)?),
                });
            }
            Ok(ListResult { items, revision, more })
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(StoreError::Compacted { requested: after, compacted });
        }
        // Subscribe before reading history, so nothing committed in between is missed.
        let mut live = self.shared.committed.subscribe();
        let mut closed = self.shared.closed.subscribe();
        let shared = self.shared.clone();
        let prefix = prefix.to_owned();
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Event, StoreError>>(256);
        tokio::spawn(async move {
            let mut last = after;
            let mut catch_up = true;
            loop {
                if catch_up {
                    let compacted = shared.compacted.load(Ordering::Acquire);
                    if last < compacted {
                        let _ = sender.send(Err(StoreError::Compacted { requested: last, compacted })).await;
                        return;
                    }
                    let page = {
                        let prefix = prefix.clone();
                        read_on(shared.clone(), move |c| history(c, &prefix, last)).await
                    };
                    let page = match page {
                        Ok(page) => page,
                        Err(error) => {
                            let _ = sender.send(Err(error)).await;
                            return;
                        }
                    };
                    let full = page.len() as i64 == HISTORY_PAGE;
                    for event in page {
                        last = event.revision();
                        if sender.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    catch_up = full;
                    continue;
                }
                tokio::select! {
                    batch = live.recv() => match batch {
                        Ok(events) => {
                            for event in events.iter() {
                                if event.revision() <= last || !event.kv.key.starts_with(&prefix) {
                                    continue;
                                }
                                last = event.revision();
                                if sender.send(Ok(event.clone())).await.is_err() {
                                    return;
                                }
                            }
                        }
                        // Fell behind the broadcast: the log still has everything.
                        Err(broadcast::error::RecvError::Lagged(_)) => catch_up = true,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = closed.changed() => return,
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(receiver).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.write(Write::Compact { revision }).await.map(|_| ())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/a/").as_deref(), Some("/a0"));
        assert_eq!(prefix_end("/").as_deref(), Some("0"));
        assert_eq!(prefix_end(""), None);
    }
}
