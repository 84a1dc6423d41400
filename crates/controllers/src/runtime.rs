//! A small controller runtime in the client-go pattern: informers (list, then watch, with an
//! in-memory cache and change handlers) and a deduplicating, rate-limited work queue.

use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tugboat_client::{Client, Shape};

use crate::ControllerError;

/// `namespace/name` of an object (just `name` when it has no namespace), as client-go keys them.
pub fn object_key(object: &Value) -> Option<String> {
    let name = object["metadata"]["name"].as_str()?;
    Some(match object["metadata"]["namespace"].as_str() {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_owned(),
    })
}

/// Splits a key back into (namespace, name).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// One change the informer observed; objects are shared, never mutated after insertion.
#[derive(Debug, Clone)]
pub enum Change {
    Added(Arc<Value>),
    Updated { old: Arc<Value>, new: Arc<Value> },
    Deleted(Arc<Value>),
}

impl Change {
    /// The change as a watch event type and the object's latest state (its last state, deleted).
    pub fn event(&self) -> (&'static str, &Arc<Value>) {
        match self {
            Change::Added(object) => ("ADDED", object),
            Change::Updated { new, .. } => ("MODIFIED", new),
            Change::Deleted(object) => ("DELETED", object),
        }
    }
}

pub type Handler = Arc<dyn Fn(&Change) + Send + Sync>;

/// The fields kept of each object before it is cached and handed to the handler (client-go's
/// transform, applied while decoding): a controller that reads a few fields of a large
/// collection keeps only those. It must keep `metadata.name`, `metadata.namespace` and
/// `metadata.resourceVersion`.
pub type Transform = Arc<Shape>;

/// The informer's view of one resource, keyed by `namespace/name`.
#[derive(Default)]
pub struct Cache {
    /// Ordered by key, so a namespace's objects (`<namespace>/...`) are one range.
    objects: RwLock<BTreeMap<String, Arc<Value>>>,
}

impl Cache {
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.read().get(key).cloned()
    }

    /// Every cached object.
    pub fn all(&self) -> Vec<Arc<Value>> {
        self.read().values().cloned().collect()
    }

    /// Every cached object in `namespace` (not for cluster-scoped objects: see [`Self::all`]).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Value>> {
        // Keys are `<namespace>/<name>`; '0' follows '/', so this range is exactly the namespace.
        self.read().range(format!("{namespace}/")..format!("{namespace}0")).map(|(_, object)| object.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Value>>> {
        // A poisoned lock only means a handler panicked; the map itself is still consistent.
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Value>>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn resource_version(object: &Value) -> &str {
    object["metadata"]["resourceVersion"].as_str().unwrap_or_default()
}

/// Lists and watches one collection (across all namespaces), keeps [`Cache`] current and calls
/// the handler after every change has been applied to the cache.
pub struct Informer {
    client: Client,
    path: String,
    cache: Arc<Cache>,
    handler: Handler,
    synced: watch::Sender<bool>,
    lag: Duration,
    transform: Option<Transform>,
}

impl Informer {
    /// `path` is the collection, e.g. `/api/v1/pods`.
    pub fn new(client: Client, path: &str, cache: Arc<Cache>, handler: Handler) -> Self {
        Self { client, path: path.to_owned(), cache, handler, synced: watch::channel(false).0, lag: Duration::ZERO, transform: None }
    }

    /// Caches every object as `transform` shapes it.
    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = Some(transform);
        self
    }

    fn shape(&self, object: &Value) -> Arc<Value> {
        Arc::new(match &self.transform {
            Some(shape) => shape.apply(object),
            None => object.clone(),
        })
    }

    /// Applies every watch event `lag` after it arrived: a cache that trails the API server, as
    /// under load. For tests of what must hold however late the cache is (expectations).
    pub fn with_lag(mut self, lag: Duration) -> Self {
        self.lag = lag;
        self
    }

    /// Becomes true once the first list has been applied to the cache.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// Runs until the task is dropped: list, watch from the list's revision, and relist whenever
    /// the watch fails or ends (a relist turns whatever was missed into add/update/delete calls).
    pub async fn run(self) {
        let mut failures = 0u32;
        loop {
            match self.relist().await {
                Ok(revision) => {
                    self.synced.send_replace(true);
                    match self.watch(&revision).await {
                        Ok(()) => failures = 0,
                        Err(error) => {
                            tracing::debug!(path = %self.path, %error, "watch failed; relisting");
                            failures += 1;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(path = %self.path, %error, "list failed");
                    failures += 1;
                }
            }
            // Back off on repeated failures so a down API server is not hammered.
            if failures > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(50)))).await;
            }
        }
    }

    async fn relist(&self) -> Result<String, ControllerError> {
        let list = self.client.get(&self.path).await?;
        let revision = list["metadata"]["resourceVersion"].as_str().ok_or(ControllerError::Invalid("a list without resourceVersion"))?.to_owned();
        let mut fresh = BTreeMap::new();
        for item in list["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(key) = object_key(item) {
                fresh.insert(key, self.shape(item));
            }
        }
        let changes = {
            let mut objects = self.cache.write();
            let changes = relist_changes(&objects, &fresh);
            *objects = fresh;
            changes
        };
        for change in &changes {
            (self.handler)(change);
        }
        Ok(revision)
    }

    /// Applies watch events until the stream ends (Ok) or reports an error.
    async fn watch(&self, revision: &str) -> Result<(), ControllerError> {
        let separator = if self.path.contains('?') { '&' } else { '?' };
        let path = format!("{}{separator}watch=true&allowWatchBookmarks=true&resourceVersion={revision}", self.path);
        let mut events = self.client.watch_shaped(&path, self.transform.as_deref()).await?;
        if !self.lag.is_zero() {
            // A reader task stamps events on arrival so the lag does not accumulate.
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            let lag = self.lag;
            let reader = tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    if sender.send((tokio::time::Instant::now() + lag, event)).is_err() {
                        break;
                    }
                }
            });
            let delayed = futures::stream::unfold(receiver, |mut receiver| async move {
                let (due, event) = receiver.recv().await?;
                tokio::time::sleep_until(due).await;
                Some((event, receiver))
            });
            let result = self.apply(delayed.boxed()).await;
            reader.abort();
            return result;
        }
        self.apply(events).await
    }

    async fn apply(&self, mut events: futures::stream::BoxStream<'static, Result<Value, tugboat_client::ClientError>>) -> Result<(), ControllerError> {
        while let Some(event) = events.next().await {
            let mut event = event?;
            // Watch events arrive already shaped.
            let object = event["object"].take();
            match event["type"].as_str().unwrap_or_default() {
                "BOOKMARK" => continue,
                "ERROR" => {
                    // Usually 410 Gone (our revision was compacted): only a relist recovers.
                    return Err(ControllerError::WatchError(object["message"].as_str().unwrap_or("unknown").to_owned()));
                }
                kind @ ("ADDED" | "MODIFIED" | "DELETED") => {
                    let Some(key) = object_key(&object) else { continue };
                    let object = Arc::new(object);
                    let change = {
                        let mut objects = self.cache.write();
                        if kind == "DELETED" {
                            // The event's final state is the one handlers want (e.g. its owner).
                            objects.remove(&key);
                            Change::Deleted(object)
                        } else {
                            match objects.insert(key, object.clone()) {
                                Some(old) => Change::Updated { old, new: object },
                                None => Change::Added(object),
                            }
                        }
                    };
                    (self.handler)(&change);
                }
                other => tracing::debug!(path = %self.path, kind = other, "ignoring unknown watch event"),
            }
        }
        Ok(())
    }
}

/// One informer per collection for a whole controller manager, as client-go's shared informer
/// factory: however many controllers read pods, there is one list/watch and one cache of them.
/// A collection's informer starts with its first subscriber; a later subscriber first gets every
/// cached object as `Added`, then the changes.
#[derive(Clone)]
pub struct SharedInformers {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    client: Client,
    /// How each collection's informer is made, for those not started yet.
    settings: Mutex<HashMap<String, Settings>>,
    informers: Mutex<HashMap<String, Shared>>,
}

#[derive(Default)]
struct Settings {
    transform: Option<Transform>,
    lag: Duration,
}

struct Shared {
    cache: Arc<Cache>,
    handlers: Arc<RwLock<Vec<Handler>>>,
    synced: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What a subscriber gets: the collection's cache and whether its first list has been applied.
pub struct Subscription {
    pub cache: Arc<Cache>,
    pub synced: watch::Receiver<bool>,
}

impl Drop for SharedInner {
    fn drop(&mut self) {
        for shared in self.informers.get_mut().unwrap_or_else(|p| p.into_inner()).values() {
            shared.task.abort();
        }
    }
}

impl SharedInformers {
    pub fn new(client: Client) -> Self {
        let inner = SharedInner { client, settings: Mutex::default(), informers: Mutex::default() };
        Self { inner: Arc::new(inner) }
    }

    /// Changes how the collection's informer will be made (it must not have started yet).
    fn configure(self, path: &str, configure: impl FnOnce(&mut Settings)) -> Self {
        configure(self.inner.settings.lock().unwrap_or_else(|p| p.into_inner()).entry(path.to_owned()).or_default());
        self
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Caches the collection's objects as `transform` shapes them (for every subscriber).
    pub fn with_transform(self, path: &str, transform: Transform) -> Self {
        self.configure(path, |settings| settings.transform = Some(transform))
    }

    /// The collection's cache trails the API server by `lag` (see [`Informer::with_lag`]).
    pub fn with_lag(self, path: &str, lag: Duration) -> Self {
        self.configure(path, |settings| settings.lag = lag)
    }

    /// The collection's cache, starting its informer if nobody has yet (for a controller that
    /// needs the cache before it can build its handler).
    pub fn cache(&self, path: &str) -> Arc<Cache> {
        let mut informers = self.inner.informers.lock().unwrap_or_else(|p| p.into_inner());
        self.shared(&mut informers, path).cache.clone()
    }

    fn shared<'a>(&self, informers: &'a mut HashMap<String, Shared>, path: &str) -> &'a mut Shared {
        informers.entry(path.to_owned()).or_insert_with(|| {
            let cache = Arc::new(Cache::default());
            let handlers: Arc<RwLock<Vec<Handler>>> = Arc::default();
            let fan_out: Handler = {
                let handlers = handlers.clone();
                Arc::new(move |change: &Change| {
                    for handler in handlers.read().unwrap_or_else(|p| p.into_inner()).iter() {
                        handler(change);
                    }
                })
            };
            let settings = self.inner.settings.lock().unwrap_or_else(|p| p.into_inner()).remove(path).unwrap_or_default();
            let mut informer = Informer::new(self.inner.client.clone(), path, cache.clone(), fan_out).with_lag(settings.lag);
            if let Some(transform) = settings.transform {
                informer = informer.with_transform(transform);
            }
            let synced = informer.synced();
            Shared { cache, handlers, synced, task: tokio::spawn(informer.run()) }
        })
    }

    /// Subscribes `handler` to the collection at `path` (e.g. `/api/v1/pods`), starting its
    /// informer if it is the first. The handler runs after each change is in the cache.
    pub fn subscribe(&self, path: &str, handler: Handler) -> Subscription {
        let mut informers = self.inner.informers.lock().unwrap_or_else(|p| p.into_inner());
        let shared = self.shared(&mut informers, path);
        // Holding the handlers' write lock, no change can be handed out between the replay and
        // the registration: the new handler sees every object exactly from here on.
        let mut handlers = shared.handlers.write().unwrap_or_else(|p| p.into_inner());
        // (A snapshot: the handler may read the cache itself.)
        let cached: Vec<Arc<Value>> = shared.cache.read().values().cloned().collect();
        for object in cached {
            handler(&Change::Added(object));
        }
        handlers.push(handler);
        Subscription { cache: shared.cache.clone(), synced: shared.synced.clone() }
    }
}

/// What a relist tells the handlers: objects new to the cache, changed (another resourceVersion),
/// and gone (their deletion happened while no watch was open).
fn relist_changes(cached: &BTreeMap<String, Arc<Value>>, fresh: &BTreeMap<String, Arc<Value>>) -> Vec<Change> {
    let mut changes = Vec::new();
    for (key, new) in fresh {
        match cached.get(key) {
            None => changes.push(Change::Added(new.clone())),
            Some(old) if resource_version(old) != resource_version(new) => changes.push(Change::Updated { old: old.clone(), new: new.clone() }),
            Some(_) => {}
        }
    }
    for (key, old) in cached {
        if !fresh.contains_key(key) {
            changes.push(Change::Deleted(old.clone()));
        }
    }
    changes
}

/// Base and cap of the per-key exponential retry delay (client-go's defaults).
const RETRY_BASE: Duration = Duration::from_millis(5);
const RETRY_MAX: Duration = Duration::from_secs(1000);

#[derive(Default)]
struct QueueState {
    queue: VecDeque<String>,
    /// Keys waiting to be processed (in `queue`, or to be re-queued once their processing ends).
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    shut_down: bool,
}

/// A work queue of keys with client-go's guarantees: a key is never processed by two workers at
/// once; a key added several times while waiting is processed once; a key added while being
/// processed is processed again after [`WorkQueue::done`].
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<QueueState>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: &str) {
        let mut state = self.lock();
        if state.shut_down || state.dirty.contains(key) {
            return;
        }
        state.dirty.insert(key.to_owned());
        if state.processing.contains(key) {
            return;
        }
        state.queue.push_back(key.to_owned());
        drop(state);
        self.notify.notify_one();
    }

    /// Adds the key after `delay`.
    pub fn add_after(&self, key: &str, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key);
        });
    }

    /// Adds the key after its own exponential back-off (grows with each call until [`Self::forget`]).
    pub fn add_rate_limited(&self, key: &str) {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.to_owned()).or_insert(0);
            let delay = retry_delay(*failures);
            *failures += 1;
            delay
        };
        self.add_after(key, delay);
    }

    /// Clears the key's back-off after a success.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    pub fn failures(&self, key: &str) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process, or None once shut down; call [`Self::done`] afterwards.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    // More keys may wait; let another worker look too.
                    if !state.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &str) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.to_owned());
            drop(state);
            self.notify.notify_one();
        }
    }

    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn retry_delay(failures: u32) -> Duration {
    RETRY_BASE.saturating_mul(2u32.saturating_pow(failures.min(31))).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_deduplicates_waiting_keys() {
        let queue = WorkQueue::default();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.get().await.as_deref(), Some("a"));
        assert_eq!(queue.get().await.as_deref(), Some("b"));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn key_added_while_processing_is_processed_again_after_done() {
        let queue = WorkQueue::default();
        queue.add("a");
        let key = queue.get().await.unwrap();
        queue.add("a");
        queue.add("a");
        // Not handed to a second worker while the first still processes it.
        assert!(queue.is_empty());
        queue.done(&key);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.get().await.as_deref(), Some("a"));
        queue.done("a");
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn shut_down_releases_waiting_workers() {
        let queue = WorkQueue::default();
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        assert_eq!(retry_delay(0), Duration::from_millis(5));
        assert_eq!(retry_delay(3), Duration::from_millis(40));
        assert_eq!(retry_delay(100), RETRY_MAX);
    }

    #[tokio::test]
    async fn rate_limit_counts_failures_until_forgotten() {
        let queue = WorkQueue::default();
        queue.add_rate_limited("a");
        queue.add_rate_limited("a");
        assert_eq!(queue.failures("a"), 2);
        queue.forget("a");
        assert_eq!(queue.failures("a"), 0);
    }

    #[test]
    fn relist_reports_adds_updates_and_missed_deletes() {
        let object = |name: &str, rv: &str| Arc::new(serde_json::json!({"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}));
        let cached: BTreeMap<String, Arc<Value>> = [("ns/same", object("same", "1")), ("ns/changed", object("changed", "1")), ("ns/gone", object("gone", "1"))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let fresh: BTreeMap<String, Arc<Value>> = [("ns/same", object("same", "1")), ("ns/changed", object("changed", "2")), ("ns/new", object("new", "3"))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let mut seen: Vec<String> = relist_changes(&cached, &fresh)
            .iter()
            .map(|c| match c {
                Change::Added(o) => format!("added {}", o["metadata"]["name"].as_str().unwrap()),
                Change::Updated { old, new } => format!("updated {} {}->{}", new["metadata"]["name"].as_str().unwrap(), resource_version(old), resource_version(new)),
                Change::Deleted(o) => format!("deleted {}", o["metadata"]["name"].as_str().unwrap()),
            })
            .collect();
        seen.sort();
        assert_eq!(seen, ["added new", "deleted gone", "updated changed 1->2"]);
    }

    #[test]
    fn a_namespace_is_one_range_of_the_cache() {
        let cache = Cache::default();
        for key in ["a/x", "ab/y", "a/z", "b/w", "a-b/v"] {
            let (namespace, name) = split_key(key);
            cache.write().insert(key.to_owned(), Arc::new(serde_json::json!({"metadata": {"name": name, "namespace": namespace}})));
        }
        let names: Vec<String> = cache.in_namespace("a").iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["x", "z"]);
        assert_eq!(cache.in_namespace("ab").len(), 1);
        assert!(cache.in_namespace("c").is_empty());
    }

    #[test]
    fn keys_round_trip() {
        let pod = serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}});
        assert_eq!(object_key(&pod).as_deref(), Some("ns/p"));
        assert_eq!(split_key("ns/p"), ("ns", "p"));
    }
}
