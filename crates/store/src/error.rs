use crate::{KeyValue, Revision};

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// The conditional write lost: `current` is the value the condition was checked against.
    #[error("key {key:?} was modified concurrently (now at revision {})", current.as_ref().map_or(0, |kv| kv.mod_revision))]
    Conflict { key: String, current: Option<Box<KeyValue>> },
    #[error("revision {requested} has been compacted (oldest available is {compacted}); start again from a newer revision")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("store data format version {found} is not supported by this build (expects {expected}); use a matching tugboat release")]
    UnsupportedFormat { found: String, expected: u32 },
    #[error("sqlite store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("etcd error: {0}; check that etcd is running and reachable at the --datastore-endpoint")]
    Etcd(#[from] etcd_client::Error),
    #[error("store i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("store is shutting down")]
    Closed,
    /// Stored data that this build cannot make sense of (e.g. a non-UTF-8 key in etcd, a
    /// missing history row): never produced by a correct store, so not worth retrying.
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),
}
