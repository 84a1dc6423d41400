//! The store: a versioned key-value map with Kubernetes storage semantics.
//!
//! Every write gets the next value of one cluster-wide revision counter, which only grows.
//! Keys are plain strings (the API server uses `/registry/<group>/<resource>/[<namespace>/]<name>`);
//! values are opaque bytes. The store knows nothing about HTTP, JSON or Kubernetes kinds.
//!
//! Two backends implement [`Store`]: [`SqliteStore`] (embedded, the default) and [`EtcdStore`]
//! (a real etcd v3 cluster). Both pass the same conformance suite (`tests/conformance.rs`).

mod error;
mod etcd;
mod range;
mod sqlite;

pub use error::StoreError;
pub use etcd::EtcdStore;
pub use sqlite::{SqliteOptions, SqliteStore};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A cluster-wide revision. Starts at 1 for an empty store; every write increments it by one.
pub type Revision = i64;

/// Version of the on-disk layout each backend writes. Stored with the data (SQLite: a `meta`
/// table; etcd: the key [`FORMAT_VERSION_KEY`]) so a future release can recognise and migrate it.
pub const FORMAT_VERSION: u32 = 1;

/// etcd key holding [`FORMAT_VERSION`]. It lies outside every prefix the API server uses.
pub const FORMAT_VERSION_KEY: &str = "/tugboat-meta/format-version";

/// One stored key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`: the new value. For `Delete`: the last value before deletion, with
    /// `mod_revision` set to the revision of the deletion itself.
    pub kv: KeyValue,
    /// The value before this change, if there was one.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Parameters of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Read at this revision instead of the current one. Fails with
    /// [`StoreError::Compacted`] if it is at or below the compacted revision, and with
    /// [`StoreError::FutureRevision`] if it is above the current one.
    pub revision: Option<Revision>,
    /// Only keys strictly greater than this one (pagination: the last key of the previous page).
    pub start_after: Option<String>,
    /// At most this many items; `None` or 0 means no limit.
    pub limit: Option<usize>,
}

/// Result of [`Store::list`].
#[derive(Debug, Clone)]
pub struct ListResult {
    /// Items in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (the current revision unless one was asked for).
    pub revision: Revision,
    /// True if more keys under the prefix follow the last returned item.
    pub more: bool,
}

/// A stream of changes in strictly ascending revision order. It ends with an error item
/// (e.g. [`StoreError::Compacted`]) if the store can no longer deliver every change.
pub type WatchStream = BoxStream<'static, Result<Event, StoreError>>;

/// Kubernetes storage semantics over a versioned key-value map.
///
/// Invariant: a write is acknowledged (its future resolves `Ok`) only once it is durable.
/// Invariant: revisions seen by readers and watchers never go backwards.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The newest revision. For an empty store this is 1.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Creates `key` if it does not exist. Returns the new revision.
    /// Fails with [`StoreError::AlreadyExists`] otherwise.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError>;

    /// Replaces the value of `key` if its current `mod_revision` equals `expected`.
    /// Returns the new revision. Fails with [`StoreError::NotFound`] if absent and with
    /// [`StoreError::Conflict`] (carrying the current value) if the revision differs.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError>;

    /// Deletes `key`, if `expected` is given only when its current `mod_revision` equals it.
    /// Returns the deleted value with `mod_revision` set to the revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Reads one key at the current revision or at `revision`.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>, StoreError>;

    /// Lists keys starting with `prefix` in ascending key order.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError>;

    /// Streams every change to keys starting with `prefix` with a revision greater than
    /// `after`, in revision order, first the past ones then live ones. Fails with
    /// [`StoreError::Compacted`] if `after` is below the compacted revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Discards history older than `revision`: afterwards reads and watches at revisions below
    /// it fail with [`StoreError::Compacted`]. The newest value of every live key is kept.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision of the latest compaction (0 if never compacted).
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;
}
