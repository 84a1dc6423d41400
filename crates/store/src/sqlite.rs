//! The embedded backend: one SQLite database file in WAL mode.
//!
//! Every write appends a row to `log`, whose integer primary key is the revision (kine's idea:
//! the log is the history, and the newest row of a key is its value; a deletion is a tombstone
//! row). One writer thread owns the write connection and commits whatever requests are waiting
//! in one transaction: one fsync acknowledges a whole group of writes, so throughput grows with
//! the number of concurrent callers while every acknowledged write is durable
//! (`synchronous=FULL`). Under a steady stream of writes the writer also waits a moment for
//! more before committing ([`COMMIT_LINGER`]), so a burst pays for fewer, larger commits. Reads
//! run on a small pool of read connections, which WAL lets proceed while the writer commits.
//!
//! Watchers replay history from the log and then follow an in-process broadcast of committed
//! events; the revision order of the log makes the hand-over between the two exact.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{oneshot, Semaphore};

use crate::range::{check_not_compacted, check_readable, lower_bound, prefix_end, Lower};
use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StoreError, WatchStream, FORMAT_VERSION};

/// Tuning of the embedded store. The defaults suit a small control plane.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// At most this many waiting writes share one transaction (and one fsync).
    pub max_batch: usize,
    /// SQLite page cache per connection, in KiB. Memory use is bounded by
    /// `(readers + 1) * cache_kib`.
    pub cache_kib: u32,
    /// At most this many reads run at once, each on its own connection.
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { max_batch: 256, cache_kib: 2 * 1024, readers: 4 }
    }
}

/// Events read per query when replaying history to a watcher, fewer if their values reach
/// [`HISTORY_PAGE_BYTES`] first.
const HISTORY_PAGE: usize = 1000;
/// Bounds the memory of one page of history replay (an object can be up to 1.5 MiB).
const HISTORY_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Committed batches the live feed keeps (tokio's broadcast holds them until overwritten, read
/// or not); a watcher that falls further behind re-reads the log instead, so this bounds memory,
/// not correctness.
const LIVE_BATCHES: usize = 64;
/// Events buffered between a watcher's feeding task and its stream.
const WATCH_BUFFER: usize = 256;
/// Bytes of WAL file kept on disk between bursts of writes.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Tries of a read at the current revision that keeps losing races with compactions.
const CURRENT_READ_ATTEMPTS: u32 = 3;
/// How long a batch waits for more writes when the previous commit ended less than this long
/// ago (writes are streaming in). Each commit costs an fsync and rewrites the pages it shares
/// with the last one; in a burst of pod writes, commits only ~7 writes apart made fsync and
/// WAL page writes about 9% of the server's CPU. A lone write does not wait.
const COMMIT_LINGER: Duration = Duration::from_millis(2);
/// Revisions compacted per transaction; the writer serves waiting writes between two slices.
const COMPACTION_SLICE: Revision = 2_000;

const SCHEMA_META: &str = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value NOT NULL)";
const SCHEMA_LOG: &str = "
    CREATE TABLE IF NOT EXISTS log (
        revision INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        deleted INTEGER NOT NULL
    );
    -- Descending so that 'ORDER BY key, revision DESC' (newest version first) needs no sort.
    CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision DESC);";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Write {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: Revision },
    Delete { key: String, expected: Option<Revision> },
}

impl Write {
    fn key(&self) -> &str {
        match self {
            Write::Create { key, .. } | Write::Update { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

/// What the writer thread is asked to do. A write is answered with the event it produced.
enum Command {
    Write(Write, Reply<Event>),
    Compact(Revision, Reply<()>),
}

/// State the writer, the readers and the watchers share.
struct Shared {
    path: PathBuf,
    cache_kib: u32,
    /// Bounds the number of concurrent reads, hence of read connections.
    read_slots: Arc<Semaphore>,
    idle_readers: Mutex<Vec<Connection>>,
    /// Revision of the newest committed write; only the writer thread raises it, after commit.
    current: AtomicI64,
    /// Raised before any row is deleted, so no reader is promised history being removed.
    compacted: AtomicI64,
}

impl Shared {
    fn current(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }

    fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }
}

/// The embedded SQLite store. Dropping it waits for the writer thread to finish the batch at
/// hand and ends every watch stream.
pub struct SqliteStore {
    /// `None` only while dropping: closing the channel is what stops the writer.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    live: broadcast::Sender<Arc<[Event]>>,
    shared: Arc<Shared>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. Synchronous and quick, so it may be
    /// called from async code at start-up: it only touches the file and starts the writer thread.
    ///
    /// Fails if another store (in this or another process) has the database open: two writers
    /// would each count revisions on their own.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let lock = lock_exclusively(path)?;
        let mut connection = connect(path, options.cache_kib)?;
        let persisted = initialize(&mut connection)?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            cache_kib: options.cache_kib,
            read_slots: Arc::new(Semaphore::new(options.readers.max(1))),
            idle_readers: Mutex::new(Vec::new()),
            current: AtomicI64::new(persisted.current),
            compacted: AtomicI64::new(persisted.compacted),
        });
        let (commands, receiver) = mpsc::channel();
        let live = broadcast::channel(LIVE_BATCHES).0;
        let writer = Writer {
            connection,
            _lock: lock,
            commands: receiver,
            max_batch: options.max_batch.max(1),
            shared: shared.clone(),
            live: live.clone(),
            compacted_through: persisted.compacted_through,
            // A compaction interrupted by a crash resumes by itself.
            compaction: (persisted.compacted_through < persisted.compacted).then(Vec::new),
            last_commit: Instant::now(),
        };
        let writer = std::thread::Builder::new().name("tugboat-sqlite-writer".into()).spawn(move || writer.run())?;
        Ok(Self { commands: Some(commands), writer: Some(writer), live, shared })
    }

    /// Hands a command to the writer thread and waits for its answer.
    async fn submit<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands.as_ref().ok_or(StoreError::Closed)?;
        commands.send(command(reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn write(&self, write: Write) -> Result<Event, StoreError> {
        self.submit(|reply| Command::Write(write, reply)).await
    }

    /// Runs `query` at `revision` (the current one if `None`) on a read connection.
    async fn read_at<T: Send + 'static>(
        &self,
        revision: Option<Revision>,
        query: impl Fn(&Connection, Revision) -> Result<T, StoreError> + Send + Sync + 'static,
    ) -> Result<T, StoreError> {
        let query = Arc::new(query);
        let mut attempts = 0;
        loop {
            let at = match revision {
                Some(requested) => {
                    check_readable(requested, self.shared.compacted(), self.shared.current())?;
                    requested
                }
                None => self.shared.current(),
            };
            let (query, shared) = (query.clone(), self.shared.clone());
            let result = read(&self.shared, move |connection| {
                let result = query(connection, at)?;
                // A compaction that started after the check above may have removed rows this read
                // needed; the compacted revision is raised before any deletion, so this catches it.
                check_not_compacted(at, shared.compacted())?;
                Ok(result)
            })
            .await;
            attempts += 1;
            match result {
                // A read at the current revision asked for no history: it lost a race with a
                // compaction up to (nearly) the newest revision, and a newer one will do.
                Err(StoreError::Compacted { .. }) if revision.is_none() && attempts < CURRENT_READ_ATTEMPTS => continue,
                result => return result,
            }
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has finished what it is doing. Waiting for
        // it means the database is closed when this returns, so it can be reopened at once.
        self.commands.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
    }
}

/// Takes an exclusive lock on `<path>-lock`, released when the returned file is closed (by the
/// kernel too, should the process die). A file of its own: SQLite's POSIX locks on the database
/// would be dropped by closing any other descriptor of it.
fn lock_exclusively(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push("-lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!("{} is in use by another store (is another tugboat server running on this data directory?)", path.display()),
        ))),
        Err(std::fs::TryLockError::Error(error)) => Err(error.into()),
    }
}

fn connect(path: &Path, cache_kib: u32) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    // Readers wait briefly while a checkpoint resets the WAL; nothing else should ever wait.
    connection.busy_timeout(Duration::from_secs(10))?;
    let mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(std::io::Error::other(format!(
            "{}: SQLite cannot use write-ahead logging there (journal mode is {mode}); put the data directory on a local filesystem",
            path.display()
        ))));
    }
    // The bundled SQLite has STAT4, under which a statement whose bound value is compared with an
    // indexed column is compiled again whenever that value changes: every prepared lookup by key
    // was re-parsed and re-planned on each use. The planner's stability guarantee turns that off
    // (this store runs no ANALYZE, so there are no statistics to plan by anyway).
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // FULL: in WAL mode every commit fsyncs the log, so an acknowledged write survives power loss.
    connection.pragma_update(None, "synchronous", "FULL")?;
    // Negative: a size in KiB rather than in pages.
    connection.pragma_update(None, "cache_size", -i64::from(cache_kib))?;
    // Without a limit the WAL file keeps the size of the largest burst it ever held; with one,
    // SQLite truncates it to this when it starts over after a checkpoint.
    connection.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(connection)
}

fn connect_reader(shared: &Shared) -> Result<Connection, StoreError> {
    let connection = connect(&shared.path, shared.cache_kib)?;
    connection.pragma_update(None, "query_only", true)?;
    Ok(connection)
}

/// Runs `query` on a pooled read connection, off the async worker threads.
async fn read<T: Send + 'static>(
    shared: &Arc<Shared>,
    query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let slot = shared.read_slots.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let idle = shared.idle_readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => connect_reader(&shared)?,
        };
        let result = query(&connection);
        shared.idle_readers.lock().unwrap_or_else(PoisonError::into_inner).push(connection);
        result
    })
    .await
    .map_err(|error| StoreError::Io(std::io::Error::other(format!("SQLite read task failed: {error}"))))?
}

/// What `initialize` finds on disk.
struct Persisted {
    current: Revision,
    compacted: Revision,
    /// Log rows made obsolete up to this revision have been deleted (see [`delete_obsolete`]).
    compacted_through: Revision,
}

/// Creates the schema on first use and checks the format version.
fn initialize(connection: &mut Connection) -> Result<Persisted, StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA_META)?;
    // Checked before touching `log`, whose layout another format version may not share.
    let found: Option<String> = tx
        .query_row("SELECT CAST(value AS TEXT) FROM meta WHERE name = 'format_version'", [], |row| row.get(0))
        .optional()?;
    match found {
        None => {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('format_version', ?1), ('compacted_revision', 0), ('compacted_through', 0)",
                [i64::from(FORMAT_VERSION)],
            )?;
        }
        Some(found) if found == FORMAT_VERSION.to_string() => {}
        Some(found) => return Err(StoreError::UnsupportedFormat { found, expected: FORMAT_VERSION }),
    }
    tx.execute_batch(SCHEMA_LOG)?;
    let meta = |name: &str| -> Result<Revision, StoreError> {
        let value = tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| row.get(0)).optional()?;
        value.ok_or_else(|| StoreError::Corrupt(format!("the meta table has no {name}")))
    };
    let compacted = meta("compacted_revision")?;
    let compacted_through = meta("compacted_through")?;
    let newest: Revision = tx.query_row("SELECT COALESCE(MAX(revision), 1) FROM log", [], |row| row.get(0))?;
    tx.commit()?;
    // Compaction may have deleted the newest rows (tombstones), but none above the compacted
    // revision, so the larger of the two is the revision the store had reached.
    Ok(Persisted { current: newest.max(compacted), compacted, compacted_through })
}

/// The value of `key` at `revision`: its newest version there, unless that is a tombstone.
fn version_at(connection: &Connection, key: &str, revision: Revision) -> Result<Option<KeyValue>, rusqlite::Error> {
    let row = connection
        .prepare_cached(
            "SELECT revision, create_revision, deleted, value FROM log
             WHERE key = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT 1",
        )?
        .query_row(params![key, revision], |row| version(key, row))
        .optional()?;
    Ok(row.flatten())
}

/// Reads a row whose first columns are `revision, create_revision, deleted, value`.
fn version(key: &str, row: &rusqlite::Row) -> Result<Option<KeyValue>, rusqlite::Error> {
    if row.get::<_, bool>(2)? {
        return Ok(None);
    }
    Ok(Some(KeyValue {
        key: key.to_owned(),
        value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
        create_revision: row.get(1)?,
        mod_revision: row.get(0)?,
    }))
}

/// The row at `revision`, as the value of `key` (`None` for a tombstone).
fn version_by_revision(connection: &Connection, key: &str, revision: Revision) -> Result<Option<KeyValue>, rusqlite::Error> {
    let row = connection
        .prepare_cached("SELECT revision, create_revision, deleted, value FROM log WHERE revision = ?1")?
        .query_row([revision], |row| version(key, row))?;
    Ok(row)
}

/// Every version of every key from `?1` on (compared with `comparison`), at or below revision
/// `?2`, below `?3` if `bounded`: in key order and newest first within a key, so the first row of
/// a key is its version at `?2`. Only index columns: the key index alone answers it, in this order.
fn list_sql(comparison: &str, bounded: bool) -> String {
    format!(
        "SELECT key, revision FROM log WHERE key {comparison} ?1 AND revision <= ?2 {} ORDER BY key, revision DESC",
        if bounded { "AND key < ?3" } else { "" }
    )
}

/// Keys in `prefix` after `start_after` at `revision`; true if more follow the last one returned.
///
/// Walks the key index and reads a row only for the version it returns: until a compaction, a key
/// updated often has many versions, and reading each (value included) would make a listing cost
/// the history behind it rather than what it returns.
fn list_at(
    connection: &Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
    revision: Revision,
) -> Result<(Vec<KeyValue>, bool), rusqlite::Error> {
    let (comparison, start) = match lower_bound(prefix, start_after) {
        Lower::From(key) => (">=", key),
        Lower::After(key) => (">", key),
    };
    let end = prefix_end(prefix);
    let mut statement = connection.prepare_cached(&list_sql(comparison, end.is_some()))?;
    let mut rows = match &end {
        Some(end) => statement.query(params![start, revision, end])?,
        None => statement.query(params![start, revision])?,
    };
    let mut items = Vec::new();
    let mut previous_key = String::new();
    let mut first = true;
    while let Some(row) = rows.next()? {
        let key = row.get_ref(0)?.as_str()?;
        if !first && key == previous_key {
            continue;
        }
        first = false;
        previous_key.clear();
        previous_key.push_str(key);
        let Some(item) = version_by_revision(connection, &previous_key, row.get(1)?)? else {
            continue;
        };
        if limit.is_some_and(|limit| items.len() >= limit) {
            return Ok((items, true));
        }
        items.push(item);
    }
    Ok((items, false))
}

/// Rows after revision `?1` with keys from `?2` and below `?3` (if not NULL), at most `?4`, with
/// the version each replaced. `+l.key` keeps SQLite off the key index: walking the log in revision
/// order from `?1` costs what was written since, whatever the prefix ("/" included), while the key
/// index would need every version under the prefix sorted.
const HISTORY_SQL: &str = "
    SELECT l.revision, l.key, l.value, l.create_revision, l.deleted, p.revision, p.value
    FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision
    WHERE l.revision > ?1 AND +l.key >= ?2 AND (?3 IS NULL OR +l.key < ?3)
    ORDER BY l.revision LIMIT ?4";

/// Changes to keys in `prefix` after revision `after`, oldest first: at most [`HISTORY_PAGE`]
/// events, and not many more than [`HISTORY_PAGE_BYTES`] of values. True if none follow them.
fn history(connection: &Connection, prefix: &str, after: Revision) -> Result<(Vec<Event>, bool), StoreError> {
    let mut statement = connection.prepare_cached(HISTORY_SQL)?;
    let mut rows = statement.query(params![after, prefix, prefix_end(prefix), HISTORY_PAGE as i64])?;
    let mut events = Vec::new();
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        if bytes >= HISTORY_PAGE_BYTES {
            return Ok((events, false));
        }
        let revision: Revision = row.get(0)?;
        let key: String = row.get(1)?;
        // A version keeps the create revision of the one it replaces.
        let create_revision: Revision = row.get(3)?;
        let prev = match row.get::<_, Option<Revision>>(5)? {
            Some(mod_revision) => {
                Some(KeyValue { key: key.clone(), value: Bytes::from(row.get::<_, Vec<u8>>(6)?), create_revision, mod_revision })
            }
            None => None,
        };
        let event = if row.get::<_, bool>(4)? {
            // Compaction keeps the version a tombstone above the compacted revision replaced.
            let prev = prev.ok_or_else(|| {
                StoreError::Corrupt(format!("the deletion of {key:?} at revision {revision} has no previous version in the log"))
            })?;
            Event { kind: EventKind::Delete, kv: KeyValue { mod_revision: revision, ..prev.clone() }, prev: Some(prev) }
        } else {
            let value = Bytes::from(row.get::<_, Vec<u8>>(2)?);
            Event { kind: EventKind::Put, kv: KeyValue { key, value, create_revision, mod_revision: revision }, prev }
        };
        bytes += event.kv.value.len() + event.prev.as_ref().map_or(0, |prev| prev.value.len());
        events.push(event);
    }
    let complete = events.len() < HISTORY_PAGE;
    Ok((events, complete))
}

/// The writer thread: the only user of the write connection and the only one raising
/// `current`, so revisions are assigned without any further locking.
struct Writer {
    connection: Connection,
    /// Held for as long as the write connection is open (fields drop in order).
    _lock: std::fs::File,
    commands: mpsc::Receiver<Command>,
    max_batch: usize,
    shared: Arc<Shared>,
    live: broadcast::Sender<Arc<[Event]>>,
    compacted_through: Revision,
    /// `Some` while compaction work is pending, holding the callers waiting for it to finish.
    compaction: Option<Vec<Reply<()>>>,
    /// When the last write transaction ended.
    last_commit: Instant,
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = if self.compaction.is_some() {
                match self.commands.try_recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            } else {
                match self.commands.recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::RecvError) => return,
                }
            };
            if let Some(first) = first {
                self.serve(first);
            }
            // One slice after each batch: writes wait for at most one slice, and a steady stream
            // of writes cannot starve compaction.
            if self.compaction.is_some() {
                self.compact_slice();
            }
        }
    }

    /// Handles `first` and whatever else is already waiting, up to `max_batch` commands; when
    /// writes are streaming in, also what arrives within [`COMMIT_LINGER`].
    fn serve(&mut self, first: Command) {
        let mut linger = self.last_commit.elapsed() < COMMIT_LINGER;
        let mut writes = Vec::new();
        let mut compactions = Vec::new();
        let mut next = Some(first);
        loop {
            while let Some(command) = next {
                match command {
                    Command::Write(write, reply) => writes.push((write, reply)),
                    Command::Compact(revision, reply) => compactions.push((revision, reply)),
                }
                next = if writes.len() + compactions.len() < self.max_batch { self.commands.try_recv().ok() } else { None };
            }
            if !linger || writes.len() + compactions.len() >= self.max_batch {
                break;
            }
            // Sleeping rather than blocking on the channel: writers arriving meanwhile need not
            // wake this thread one by one.
            std::thread::sleep(COMMIT_LINGER);
            linger = false;
            next = self.commands.try_recv().ok();
        }
        if !writes.is_empty() {
            self.commit(writes);
            self.last_commit = Instant::now();
        }
        for (revision, reply) in compactions {
            self.start_compaction(revision, reply);
        }
    }

    /// Applies `writes` in one transaction, then answers each caller: group commit.
    fn commit(&mut self, writes: Vec<(Write, Reply<Event>)>) {
        let first = self.shared.current() + 1;
        match apply_all(&mut self.connection, writes.iter().map(|(write, _)| write), first) {
            Ok(outcomes) => {
                let events: Vec<Event> = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok().cloned()).collect();
                if let Some(last) = events.last() {
                    // Durable now: make it visible, then tell the watchers (none listening is fine).
                    self.shared.current.store(last.revision(), Ordering::Release);
                    let _ = self.live.send(events.into());
                }
                for ((_, reply), outcome) in writes.into_iter().zip(outcomes) {
                    // The caller may have given up waiting; the write stands regardless.
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = writes.len(), "SQLite write transaction failed; none of its writes were stored");
                for (_, reply) in writes {
                    let _ = reply.send(Err(failure("write transaction", &error)));
                }
            }
        }
    }

    fn start_compaction(&mut self, revision: Revision, reply: Reply<()>) {
        let current = self.shared.current();
        if revision > current {
            let _ = reply.send(Err(StoreError::FutureRevision { requested: revision, current }));
            return;
        }
        if revision > self.shared.compacted() {
            // Recorded before deleting anything, so no reader is promised history being removed.
            if let Err(error) = self.connection.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted_revision'", [revision]) {
                let _ = reply.send(Err(error.into()));
                return;
            }
            self.shared.compacted.store(revision, Ordering::Release);
        }
        // Answered by `compact_slice` once the log is compacted through the compacted revision.
        self.compaction.get_or_insert_with(Vec::new).push(reply);
    }

    fn compact_slice(&mut self) {
        let target = self.shared.compacted();
        if self.compacted_through < target {
            let high = (self.compacted_through + COMPACTION_SLICE).min(target);
            if let Err(error) = delete_obsolete(&mut self.connection, self.compacted_through, high) {
                tracing::error!(%error, "SQLite compaction failed; the next compaction retries it");
                for reply in self.compaction.take().unwrap_or_default() {
                    let _ = reply.send(Err(failure("compaction", &error)));
                }
                return;
            }
            self.compacted_through = high;
        }
        if self.compacted_through >= target {
            for reply in self.compaction.take().unwrap_or_default() {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

/// The error each caller of a failed shared transaction gets (`rusqlite::Error` is not `Clone`).
fn failure(what: &str, error: &rusqlite::Error) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("SQLite {what} failed: {error}")))
}

/// Applies `writes` in one transaction, assigning revisions from `first` on to those whose
/// condition holds. The outer error fails the whole transaction; the inner results are each
/// write's own outcome.
fn apply_all<'a>(
    connection: &mut Connection,
    writes: impl Iterator<Item = &'a Write>,
    first: Revision,
) -> Result<Vec<Result<Event, StoreError>>, rusqlite::Error> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut next = first;
    let mut outcomes = Vec::new();
    for write in writes {
        let outcome = apply(&tx, write, next)?;
        if outcome.is_ok() {
            next += 1;
        }
        outcomes.push(outcome);
    }
    tx.commit()?;
    Ok(outcomes)
}

/// Checks the condition of `write` against the state so far (earlier writes of the same batch
/// included) and, if it holds, appends its row at `revision`. A refusal costs no revision.
fn apply(connection: &Connection, write: &Write, revision: Revision) -> Result<Result<Event, StoreError>, rusqlite::Error> {
    let key = write.key();
    let current = version_at(connection, key, Revision::MAX)?;
    let event = match (write, current) {
        (Write::Create { .. }, Some(_)) => return Ok(Err(StoreError::AlreadyExists { key: key.to_owned() })),
        (Write::Update { .. } | Write::Delete { .. }, None) => return Ok(Err(StoreError::NotFound { key: key.to_owned() })),
        (Write::Update { expected, .. }, Some(current)) | (Write::Delete { expected: Some(expected), .. }, Some(current))
            if current.mod_revision != *expected =>
        {
            return Ok(Err(StoreError::Conflict { key: key.to_owned(), current: Some(Box::new(current)) }));
        }
        (Write::Create { value, .. }, None) => Event {
            kind: EventKind::Put,
            kv: KeyValue { key: key.to_owned(), value: value.clone(), create_revision: revision, mod_revision: revision },
            prev: None,
        },
        (Write::Update { value, .. }, Some(current)) => Event {
            kind: EventKind::Put,
            kv: KeyValue { key: key.to_owned(), value: value.clone(), create_revision: current.create_revision, mod_revision: revision },
            prev: Some(current),
        },
        (Write::Delete { .. }, Some(current)) => {
            Event { kind: EventKind::Delete, kv: KeyValue { mod_revision: revision, ..current.clone() }, prev: Some(current) }
        }
    };
    // A tombstone keeps no value: its event's value is that of the version it replaces.
    let (value, deleted) = match event.kind {
        EventKind::Put => (event.kv.value.as_ref(), false),
        EventKind::Delete => (&[][..], true),
    };
    let prev_revision = event.prev.as_ref().map_or(0, |prev| prev.mod_revision);
    connection
        .prepare_cached(
            "INSERT INTO log (revision, key, value, create_revision, prev_revision, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![revision, key, value, event.kv.create_revision, prev_revision, deleted])?;
    Ok(Ok(event))
}

/// Deletes the rows made obsolete by the writes in revisions `(low, high]`: the versions those
/// writes replaced, and the tombstones among them. A version replaced only after `high` stays:
/// reads at `high` and later need it. Every row links to the version it replaced
/// (`prev_revision`), so this touches only the slice and the rows it names.
fn delete_obsolete(connection: &mut Connection, low: Revision, high: Revision) -> Result<(), rusqlite::Error> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Prepared once: a slice runs after every write batch, and parsing and planning these
    // statements each time cost as much as the slice's work.
    tx.prepare_cached(
        "DELETE FROM log WHERE revision IN
             (SELECT prev_revision FROM log WHERE revision > ?1 AND revision <= ?2 AND prev_revision > 0)",
    )?
    .execute(params![low, high])?;
    tx.prepare_cached("DELETE FROM log WHERE revision > ?1 AND revision <= ?2 AND deleted")?.execute(params![low, high])?;
    tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted_through'")?.execute([high])?;
    tx.commit()
}

/// Feeds one watcher: history from the log, then the live feed, falling back to the log whenever
/// it lags. Ends when the store or the stream's reader goes away, or with an error item.
async fn feed_watcher(
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
    mut live: broadcast::Receiver<Arc<[Event]>>,
    sender: tokio::sync::mpsc::Sender<Result<Event, StoreError>>,
) {
    let mut last = after;
    if let Err(error) = follow(&shared, &prefix, &mut last, &mut live, &sender).await {
        let _ = sender.send(Err(error)).await;
    }
}

/// Returns `Ok` when there is nobody left to deliver to or nothing left to deliver.
async fn follow(
    shared: &Arc<Shared>,
    prefix: &str,
    last: &mut Revision,
    live: &mut broadcast::Receiver<Arc<[Event]>>,
    sender: &tokio::sync::mpsc::Sender<Result<Event, StoreError>>,
) -> Result<(), StoreError> {
    loop {
        // Catch up from the log. Everything committed before `live` was subscribed (or before
        // it lagged) is in there.
        loop {
            let (after, owned_prefix, for_check) = (*last, prefix.to_owned(), shared.clone());
            let page = read(shared, move |connection| {
                let page = history(connection, &owned_prefix, after)?;
                check_not_compacted(after, for_check.compacted())?;
                Ok(page)
            })
            .await?;
            let (page, complete) = page;
            for event in page {
                *last = event.revision();
                if sender.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
            }
            if complete {
                break;
            }
        }
        // Follow the live feed, skipping what the log already delivered.
        loop {
            let batch = tokio::select! {
                batch = live.recv() => batch,
                () = sender.closed() => return Ok(()),
            };
            match batch {
                Ok(events) => {
                    let seen = *last;
                    for event in events.iter().filter(|event| event.revision() > seen && event.kv.key.starts_with(prefix)) {
                        *last = event.revision();
                        if sender.send(Ok(event.clone())).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.current())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        self.write(Write::Create { key: key.to_owned(), value }).await.map(|event| event.revision())
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        self.write(Write::Update { key: key.to_owned(), value, expected }).await.map(|event| event.revision())
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(Write::Delete { key: key.to_owned(), expected }).await.map(|event| event.kv)
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read_at(revision, move |connection, at| Ok(version_at(connection, &key, at)?)).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_owned();
        let limit = options.limit.filter(|&limit| limit > 0);
        self.read_at(options.revision, move |connection, at| {
            let (items, more) = list_at(connection, &prefix, options.start_after.as_deref(), limit, at)?;
            Ok(ListResult { items, revision: at, more })
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        check_not_compacted(after, self.shared.compacted())?;
        // Subscribe before reading history: what commits from now on arrives live, everything
        // earlier is in the log, and the feeder drops what it would see twice.
        let live = self.live.subscribe();
        let (sender, receiver) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        tokio::spawn(feed_watcher(self.shared.clone(), prefix.to_owned(), after, live, sender));
        Ok(tokio_stream::wrappers::ReceiverStream::new(receiver).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.submit(|reply| Command::Compact(revision, reply)).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.compacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queries must walk an index in the order they need, never sort the log.
    #[test]
    fn queries_do_not_sort() {
        let dir = tempfile::tempdir().unwrap();
        let mut connection = connect(&dir.path().join("db"), 1024).unwrap();
        initialize(&mut connection).unwrap();
        let plan = |sql: &str, values: &[&dyn rusqlite::ToSql]| -> String {
            let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = statement.query_map(values, |row| row.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let list = plan(&list_sql(">=", true), params!["/a/", 5, "/a0"]);
        assert!(list.contains("COVERING INDEX log_key_revision") && !list.contains("TEMP B-TREE"), "{list}");
        let history = plan(HISTORY_SQL, params![5, "/a/", "/a0", 10]);
        assert!(!history.contains("log_key_revision") && !history.contains("TEMP B-TREE"), "{history}");
    }

    /// What compaction leaves in the log: the conformance suite sees only that old reads fail,
    /// not whether the superseded rows are actually gone.
    #[tokio::test]
    async fn compaction_keeps_only_what_reads_at_or_after_it_need() {
        use crate::Store;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let value = || Bytes::from_static(b"v");
        let x = store.create("/x", value()).await.unwrap(); // 2
        let x = store.update("/x", value(), x).await.unwrap(); // 3
        store.create("/y", value()).await.unwrap(); // 4
        store.delete("/y", None).await.unwrap(); // 5
        let z = store.create("/z", value()).await.unwrap(); // 6
        store.update("/x", value(), x).await.unwrap(); // 7
        store.compact(z).await.unwrap();
        drop(store);

        let connection = Connection::open(&path).unwrap();
        let revisions: Vec<Revision> = connection
            .prepare("SELECT revision FROM log ORDER BY revision")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        // /x at 3 is its value at 6, replaced only at 7; /x at 2 and /y (deleted at 5) are gone.
        assert_eq!(revisions, [3, 6, 7]);
        let meta = |name: &str| -> Revision {
            connection.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| row.get(0)).unwrap()
        };
        assert_eq!((meta("compacted_revision"), meta("compacted_through")), (6, 6));
    }
}
