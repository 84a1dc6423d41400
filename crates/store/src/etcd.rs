//! The etcd v3 backend: every operation is one etcd request or transaction, so several API
//! servers can share one etcd cluster. etcd keeps the revisions, the history and the compaction;
//! this maps its answers onto the [`Store`](crate::Store) contract.
//!
//! etcd does not say which revision it compacted to (its error carries no number), and this
//! backend must not write anything at compaction time: any extra write would advance the revision
//! without an event under the prefixes the API server routes. So the compacted revision is kept in
//! memory and found again, on connect and whenever etcd reports a compaction this process did not
//! do, by a binary search over reads at old revisions (see [`EtcdStore::probe_compacted`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, CompactionOptions, ConnectOptions, DeleteOptions, EventType, GetOptions, GetResponse, KvClient,
    ResponseHeader, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};
use futures::StreamExt;

use crate::range::{check_not_compacted, lower_bound, prefix_end, Lower};
use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StoreError, WatchStream, FORMAT_VERSION, FORMAT_VERSION_KEY,
};

/// etcd's `ErrGRPCCompacted`: a read, watch or compaction at a revision older than its compaction.
const ETCD_COMPACTED: &str = "required revision has been compacted";
/// etcd's `ErrGRPCFutureRev`: a read or compaction at a revision it has not reached.
const ETCD_FUTURE: &str = "required revision is a future revision";

/// A store on an etcd v3 cluster. Dropping it ends every watch stream.
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    /// The newest compaction this process knows of. Shared with the watch streams, which learn
    /// of compactions from etcd.
    compacted: Arc<AtomicI64>,
    /// Never sent on: watch streams end when it is dropped with the store.
    closing: tokio::sync::watch::Sender<()>,
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`), checks or records the data format version
    /// and learns the compacted revision.
    pub async fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // Detects a dead connection under an idle watch.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // A member cut off from its cluster refuses rather than serving stale data.
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options)).await?;
        let store = Self {
            // gRPC's default 4 MiB would refuse a list, or a batch of watch events, of a few large
            // objects: the answer's size is etcd's to bound (as kube-apiserver also lets it).
            kv: client.kv_client().max_decoding_message_size(usize::MAX),
            watch: client.watch_client().max_decoding_message_size(usize::MAX),
            compacted: Arc::new(AtomicI64::new(0)),
            closing: tokio::sync::watch::channel(()).0,
        };
        store.check_format().await?;
        store.refresh_compacted().await?;
        Ok(store)
    }

    /// A handle for one request (the client's calls take `&mut self`; clones share the channel).
    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    /// Writes [`FORMAT_VERSION`] to [`FORMAT_VERSION_KEY`] if absent; refuses a different value.
    async fn check_format(&self) -> Result<(), StoreError> {
        let expected = FORMAT_VERSION.to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(FORMAT_VERSION_KEY, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(FORMAT_VERSION_KEY, expected.as_str(), None)])
            .or_else([TxnOp::get(FORMAT_VERSION_KEY, None)]);
        let response = self.kv().txn(txn).await?;
        if response.succeeded() {
            return Ok(());
        }
        let found = match first_kv(&response) {
            Some(kv) => String::from_utf8_lossy(kv.value()).into_owned(),
            None => String::new(),
        };
        if found == expected {
            Ok(())
        } else {
            Err(StoreError::UnsupportedFormat { found, expected: FORMAT_VERSION })
        }
    }

    /// Finds etcd's compacted revision: reads at a revision fail exactly when it is below that,
    /// so the smallest readable revision is it (0 if revision 1 is still readable). A binary
    /// search costs about log2(current) small reads, and writes nothing.
    async fn probe_compacted(&self) -> Result<Revision, StoreError> {
        if self.readable(1).await? {
            return Ok(0);
        }
        // The current revision is always readable.
        let (mut unreadable, mut readable) = (1, self.current().await?);
        while readable - unreadable > 1 {
            let middle = unreadable + (readable - unreadable) / 2;
            if self.readable(middle).await? {
                readable = middle;
            } else {
                unreadable = middle;
            }
        }
        Ok(readable)
    }

    async fn readable(&self, revision: Revision) -> Result<bool, StoreError> {
        let options = GetOptions::new().with_revision(revision).with_count_only();
        match self.kv().get(FORMAT_VERSION_KEY, Some(options)).await {
            Ok(_) => Ok(true),
            Err(error) if is(&error, ETCD_COMPACTED) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Learns etcd's compacted revision; it only ever grows here.
    async fn refresh_compacted(&self) -> Result<Revision, StoreError> {
        let probed = self.probe_compacted().await?;
        Ok(self.compacted.fetch_max(probed, Ordering::AcqRel).max(probed))
    }

    async fn current(&self) -> Result<Revision, StoreError> {
        let response = self.kv().get(FORMAT_VERSION_KEY, Some(GetOptions::new().with_count_only())).await?;
        header_revision(response.header())
    }

    /// Turns etcd's number-less answers to a request at `requested` into ours, with numbers.
    async fn revision_error(&self, error: etcd_client::Error, requested: Revision) -> StoreError {
        let numbers = if is(&error, ETCD_COMPACTED) {
            self.refresh_compacted().await.map(|compacted| StoreError::Compacted { requested, compacted })
        } else if is(&error, ETCD_FUTURE) {
            self.current().await.map(|current| StoreError::FutureRevision { requested, current })
        } else {
            return error.into();
        };
        numbers.unwrap_or_else(|error| error)
    }

    /// A range read at `revision` (the current one if `None`).
    async fn range(&self, key: Vec<u8>, mut options: GetOptions, revision: Option<Revision>) -> Result<GetResponse, StoreError> {
        if let Some(revision) = revision {
            check_not_compacted(revision, self.compacted())?;
            options = options.with_revision(revision);
        }
        match (self.kv().get(key, Some(options)).await, revision) {
            (Ok(response), _) => Ok(response),
            (Err(error), Some(requested)) => Err(self.revision_error(error, requested).await),
            (Err(error), None) => Err(error.into()),
        }
    }

    /// Runs `operation` on `key` if it exists and, when `expected` is given, was last modified at
    /// `expected`. Otherwise fails with NotFound, or with Conflict carrying the current value.
    async fn write_existing(&self, key: &str, expected: Option<Revision>, operation: TxnOp) -> Result<TxnResponse, StoreError> {
        // A missing key compares as mod revision 0: also require that it exists.
        let mut conditions = vec![Compare::version(key, CompareOp::Greater, 0)];
        conditions.extend(expected.map(|revision| Compare::mod_revision(key, CompareOp::Equal, revision)));
        let txn = Txn::new().when(conditions).and_then([operation]).or_else([TxnOp::get(key, None)]);
        let response = self.kv().txn(txn).await?;
        if response.succeeded() {
            return Ok(response);
        }
        match first_kv(&response) {
            Some(current) => Err(StoreError::Conflict { key: key.to_owned(), current: Some(Box::new(key_value(&current)?)) }),
            None => Err(StoreError::NotFound { key: key.to_owned() }),
        }
    }
}

/// Whether `error` is etcd's answer `message`. etcd sends these as gRPC statuses whose code
/// (OutOfRange) other errors share, so the text is what tells them apart.
fn is(error: &etcd_client::Error, message: &str) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains(message))
}

fn header_revision(header: Option<&ResponseHeader>) -> Result<Revision, StoreError> {
    header.map(ResponseHeader::revision).ok_or_else(|| StoreError::Corrupt("etcd answered without a response header".into()))
}

/// The value the `or_else` get of a failed transaction found, if the key exists.
fn first_kv(response: &TxnResponse) -> Option<etcd_client::KeyValue> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

fn key_value(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = kv.key_str().map_err(|_| {
        StoreError::Corrupt(format!("etcd holds a key that is not UTF-8 ({:?}); tugboat never writes one", String::from_utf8_lossy(kv.key())))
    })?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// etcd refuses an empty key; `"\0"` starts at the first key there can be.
fn range_start(key: &[u8]) -> Vec<u8> {
    if key.is_empty() {
        vec![0]
    } else {
        key.to_vec()
    }
}

/// The end of the key range of `prefix`; etcd's `"\0"` means "every key from the start on".
fn range_end(prefix: &str) -> Vec<u8> {
    prefix_end(prefix).map_or_else(|| vec![0], String::into_bytes)
}

/// One etcd watch seen as a stream of [`Event`]s.
struct Feed {
    stream: etcd_client::WatchStream,
    closing: tokio::sync::watch::Receiver<()>,
    compacted: Arc<AtomicI64>,
    /// The revision of the last event delivered (at first the one the watch started after).
    last: Revision,
    /// Set once the stream has delivered its final (error) item.
    done: bool,
}

impl Feed {
    /// The next non-empty batch of items, or `None` at the end.
    async fn next(mut self) -> Option<(Vec<Result<Event, StoreError>>, Self)> {
        while !self.done {
            let message = tokio::select! {
                message = self.stream.message() => message,
                // Only ever an error: the store was dropped.
                _ = self.closing.changed() => return None,
            };
            let items = self.translate(message);
            if !items.is_empty() {
                return Some((items, self));
            }
        }
        None
    }

    fn translate(&mut self, message: Result<Option<etcd_client::WatchResponse>, etcd_client::Error>) -> Vec<Result<Event, StoreError>> {
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return self.fail(etcd_client::Error::WatchError("etcd ended the watch stream".into()).into()),
            Err(error) => return self.fail(error.into()),
        };
        if response.compact_revision() > 0 {
            let compacted = response.compact_revision();
            self.compacted.fetch_max(compacted, Ordering::AcqRel);
            return self.fail(StoreError::Compacted { requested: self.last, compacted });
        }
        if response.canceled() {
            let reason = format!("etcd cancelled the watch: {}", response.cancel_reason());
            return self.fail(etcd_client::Error::WatchError(reason).into());
        }
        let mut items = Vec::with_capacity(response.events().len());
        for event in response.events() {
            match event_from(event) {
                Ok(event) => {
                    self.last = event.revision();
                    items.push(Ok(event));
                }
                Err(error) => {
                    items.extend(self.fail(error));
                    break;
                }
            }
        }
        items
    }

    /// The final item of the stream.
    fn fail(&mut self, error: StoreError) -> Vec<Result<Event, StoreError>> {
        self.done = true;
        vec![Err(error)]
    }
}

fn event_from(event: &etcd_client::Event) -> Result<Event, StoreError> {
    let kv = event.kv().ok_or_else(|| StoreError::Corrupt("etcd sent a watch event without a key".into()))?;
    let prev = event.prev_kv().map(key_value).transpose()?;
    match event.event_type() {
        EventType::Put => Ok(Event { kind: EventKind::Put, kv: key_value(kv)?, prev }),
        EventType::Delete => {
            // etcd's deletion carries no value: the event's is the one deleted.
            let prev = prev.ok_or_else(|| {
                StoreError::Corrupt(format!("etcd sent the deletion of {:?} without its previous value", String::from_utf8_lossy(kv.key())))
            })?;
            Ok(Event { kind: EventKind::Delete, kv: KeyValue { mod_revision: kv.mod_revision(), ..prev.clone() }, prev: Some(prev) })
        }
    }
}

#[async_trait::async_trait]
impl crate::Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.current().await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let response = self.kv().txn(txn).await?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.to_owned() });
        }
        header_revision(response.header())
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        let response = self.write_existing(key, Some(expected), TxnOp::put(key, value.to_vec(), None)).await?;
        header_revision(response.header())
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let operation = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
        let response = self.write_existing(key, expected, operation).await?;
        let deleted = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
            _ => None,
        });
        let deleted = deleted.ok_or_else(|| StoreError::Corrupt(format!("etcd deleted {key:?} without returning its value")))?;
        Ok(KeyValue { mod_revision: header_revision(response.header())?, ..key_value(&deleted)? })
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        let response = self.range(key.into(), GetOptions::new(), revision).await?;
        response.kvs().first().map(key_value).transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        let start = match lower_bound(prefix, options.start_after.as_deref()) {
            Lower::From(key) => range_start(key.as_bytes()),
            // The smallest key after `key`.
            Lower::After(key) => [key.as_bytes(), &[0]].concat(),
        };
        let mut get = GetOptions::new().with_range(range_end(prefix));
        if let Some(limit) = options.limit.filter(|&limit| limit > 0) {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let response = self.range(start, get, options.revision).await?;
        Ok(ListResult {
            items: response.kvs().iter().map(key_value).collect::<Result<_, _>>()?,
            revision: match options.revision {
                Some(revision) => revision,
                None => header_revision(response.header())?,
            },
            more: response.more(),
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        check_not_compacted(after, self.compacted())?;
        // etcd reads a start revision of 0 (or less) as "from now on".
        let start = (after + 1).max(1);
        let options = WatchOptions::new().with_range(range_end(prefix)).with_start_revision(start).with_prev_key();
        let stream = self.watch.clone().watch(range_start(prefix.as_bytes()), Some(options)).await?;
        let feed =
            Feed { stream, closing: self.closing.subscribe(), compacted: self.compacted.clone(), last: after, done: false };
        Ok(futures::stream::unfold(feed, Feed::next).flat_map(futures::stream::iter).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision <= self.compacted() {
            return Ok(());
        }
        // Physical: return once etcd has compacted, so reads below fail from now on.
        match self.kv().compact(revision, Some(CompactionOptions::new().with_physical())).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            // Someone else compacted further already: nothing left to do but learn how far.
            Err(error) if is(&error, ETCD_COMPACTED) => self.refresh_compacted().await.map(drop),
            Err(error) => Err(self.revision_error(error, revision).await),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.compacted())
    }
}
