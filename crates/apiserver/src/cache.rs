//! The watch cache: every stored object of every kind, in memory, kept current by ONE store
//! watch over the whole keyspace. Lists and watches are served from here, so a thousand watchers
//! cost the store what one costs.
//!
//! Invariant: the cache applies store events strictly in revision order, and `applied_revision`
//! is advanced only after the event it names is visible in the resource's state and event log.
//! Invariant: the cache never writes to the store.

use tugboat_api::meta::Pointer;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tugboat_api::{meta, Registry, ResourceType, Shape};
use tugboat_store::{Event, EventKind, ListOptions, Revision, Store, StoreError};

use crate::error::{ApiError, ApiResult};
use crate::{keys, served};

/// Events kept per resource for watches that resume from a past revision.
const EVENT_LOG_CAPACITY: usize = 10_000;

/// One object as served: its JSON (with `metadata.resourceVersion` set) plus what selectors need.
#[derive(Debug)]
pub struct CachedObject {
    /// The store key; shared with the cache's index, and the source of name and namespace.
    pub key: Arc<str>,
    namespaced: bool,
    pub revision: Revision,
    pub json: Bytes,
    /// What selectors read, decoded from `json` the first time a selector asks (see
    /// [`ResourceCache::labels`]): most objects are never matched against one (watches and lists
    /// without selectors need only the bytes).
    selectable: OnceLock<Selectable>,
}

#[derive(Debug, Default)]
struct Selectable {
    labels: Map<String, Value>,
    /// Values of the resource's kind-specific field selectors, in declaration order.
    fields: Box<[String]>,
}

impl Selectable {
    fn of(resource: &ResourceType, object: &Value) -> Self {
        Selectable {
            labels: object.at("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default(),
            fields: resource.field_selectors.iter().map(|path| meta::field_value(object, path)).collect(),
        }
    }
}

impl CachedObject {
    /// Builds the served form of an object that already carries its resourceVersion.
    fn from_value(resource: &ResourceType, key: String, object: &Value, revision: Revision) -> Self {
        let mut json = tugboat_api::json::to_vec(object);
        // The encoder grows its buffer by doubling; cached objects live long, so drop the slack.
        json.shrink_to_fit();
        let cached = Self::with_json(resource, key, revision, Bytes::from(json));
        let _ = cached.selectable.set(Selectable::of(resource, object));
        cached
    }

    /// `json`: the served form of the object.
    fn with_json(resource: &ResourceType, key: String, revision: Revision, json: Bytes) -> Self {
        Self { key: key.into(), namespaced: resource.namespaced, revision, json, selectable: OnceLock::new() }
    }

    /// `metadata.name`: the key's last segment.
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }

    /// `metadata.namespace`: the key's second-to-last segment, for namespaced kinds.
    pub fn namespace(&self) -> &str {
        if !self.namespaced {
            return "";
        }
        self.key.rsplit('/').nth(1).unwrap_or_default()
    }

    pub fn value(&self) -> Value {
        tugboat_api::json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One change to one object.
#[derive(Debug)]
pub struct Change {
    pub kind: ChangeKind,
    /// The new state; for `Deleted`, the last state with the deletion's revision.
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

impl Change {
    pub fn revision(&self) -> Revision {
        self.object.revision
    }

    /// `cached`: the cache's current object under the event's key, if any. When it is the
    /// version the event replaces (almost always), it is the change's `prev` without decoding.
    fn from_store_event(cache: &ResourceCache, event: &Event, cached: Option<Arc<CachedObject>>) -> Result<Self, serde_json::Error> {
        let object = Arc::new(cache.decode(&event.kv.key, &event.kv.value, event.kv.mod_revision)?);
        let prev = match (&event.prev, cached) {
            (Some(p), Some(cached)) if cached.revision == p.mod_revision => Some(cached),
            (Some(p), _) => Some(Arc::new(cache.decode(&p.key, &p.value, p.mod_revision)?)),
            (None, _) => None,
        };
        let kind = match (event.kind, &prev) {
            (EventKind::Delete, _) => ChangeKind::Deleted,
            (EventKind::Put, None) => ChangeKind::Added,
            (EventKind::Put, Some(_)) => ChangeKind::Modified,
        };
        Ok(Self { kind, object, prev })
    }
}

struct ResourceState {
    objects: BTreeMap<Arc<str>, Arc<CachedObject>>,
    log: VecDeque<Arc<Change>>,
    /// Every change after this revision is in `log`; a watch may resume from any revision >= it.
    floor: Revision,
}

/// The cache of one resource type.
pub struct ResourceCache {
    pub resource: &'static ResourceType,
    /// What selectors read of an object (labels, the kind's field selectors): all the cache
    /// ever decodes of a stored object, whose bytes it serves as they are.
    selectable: Shape,
    state: RwLock<ResourceState>,
    /// Bumped (to the change's revision) whenever a change lands, to wake this resource's watchers.
    changed: watch::Sender<Revision>,
}

/// A point-in-time view of one resource's objects.
pub struct Snapshot {
    pub revision: Revision,
    pub objects: Vec<Arc<CachedObject>>,
}

/// What a watcher reads next.
pub enum Catchup {
    Changes(Vec<Arc<Change>>),
    /// The watcher fell behind the event log; it must start again.
    TooOld,
}

impl ResourceCache {
    fn new(resource: &'static ResourceType) -> Self {
        let mut selectable = vec!["metadata.labels"];
        selectable.extend(resource.field_selectors);
        Self {
            resource,
            selectable: Shape::of(&selectable),
            state: RwLock::new(ResourceState { objects: BTreeMap::new(), log: VecDeque::new(), floor: 0 }),
            changed: watch::channel(0).0,
        }
    }

    /// Builds the served form of a stored value. `revision` becomes `metadata.resourceVersion`.
    pub fn decode(&self, key: &str, value: &[u8], revision: Revision) -> Result<CachedObject, serde_json::Error> {
        let resource = self.resource;
        // Stored objects have no resourceVersion: it is inserted into the stored bytes. One that
        // names a resourceVersion anywhere (an Event's involvedObject may) takes the long way.
        if memchr::memmem::find(value, b"\"resourceVersion\"").is_none() {
            if let Some(json) = served::with_resource_version(value, revision) {
                return Ok(CachedObject::with_json(resource, key.to_owned(), revision, json));
            }
        }
        let mut object: Value = tugboat_api::json::from_slice(value)?;
        meta::metadata_mut(&mut object).insert("resourceVersion".into(), Value::String(revision.to_string()));
        Ok(CachedObject::from_value(resource, key.to_owned(), &object, revision))
    }

    /// What selectors read of one of this resource's objects, decoded on first use.
    fn selectable<'o>(&self, object: &'o CachedObject) -> &'o Selectable {
        // The bytes were decoded (or written) by this server, so they are valid JSON.
        object.selectable.get_or_init(|| self.selectable.decode(&object.json).map(|value| Selectable::of(self.resource, &value)).unwrap_or_default())
    }

    /// The object's `metadata.labels`.
    pub fn labels<'o>(&self, object: &'o CachedObject) -> &'o Map<String, Value> {
        &self.selectable(object).labels
    }

    /// The value of a field selector path on the object.
    pub fn field(&self, object: &CachedObject, path: &str) -> String {
        match path {
            "metadata.name" => object.name().to_string(),
            "metadata.namespace" => object.namespace().to_string(),
            _ => self
                .resource
                .field_selectors
                .iter()
                .position(|p| *p == path)
                .and_then(|i| self.selectable(object).fields.get(i).cloned())
                .unwrap_or_default(),
        }
    }

    /// Objects under `prefix` (a resource or namespace key prefix), in key order, starting after
    /// `start_after`, and the revision they are current at.
    pub fn snapshot(&self, prefix: &str, applied: &AtomicI64) -> Snapshot {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let revision = applied.load(Ordering::Acquire);
        let objects = state.objects.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded)).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, o)| o.clone()).collect();
        Snapshot { revision, objects }
    }

    /// One object by key, as of the newest applied revision.
    pub fn object(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).objects.get(key).cloned()
    }

    /// Changes with revision > `after`.
    pub fn changes_after(&self, after: Revision) -> Catchup {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if after < state.floor {
            return Catchup::TooOld;
        }
        let start = state.log.partition_point(|c| c.revision() <= after);
        Catchup::Changes(state.log.range(start..).cloned().collect())
    }

    pub fn floor(&self) -> Revision {
        self.state.read().unwrap_or_else(|e| e.into_inner()).floor
    }

    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.changed.subscribe()
    }

    fn apply(&self, change: Change) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let revision = change.revision();
        match change.kind {
            ChangeKind::Deleted => state.objects.remove(&change.object.key),
            ChangeKind::Added | ChangeKind::Modified => state.objects.insert(change.object.key.clone(), change.object.clone()),
        };
        state.log.push_back(Arc::new(change));
        if state.log.len() > EVENT_LOG_CAPACITY {
            if let Some(dropped) = state.log.pop_front() {
                state.floor = dropped.revision();
            }
        }
        drop(state);
        self.changed.send_replace(revision);
    }

    fn forget_before(&self, compacted: Revision) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.floor = state.floor.max(compacted);
        let keep_from = state.log.partition_point(|c| c.revision() <= compacted);
        state.log.drain(..keep_from);
    }

    fn reset(&self, objects: BTreeMap<Arc<str>, Arc<CachedObject>>, revision: Revision) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        *state = ResourceState { objects, log: VecDeque::new(), floor: revision };
        drop(state);
        self.changed.send_replace(revision);
    }
}

/// The watch cache of every served resource.
pub struct Cache {
    store: Arc<dyn Store>,
    resources: HashMap<String, Arc<ResourceCache>>,
    /// The newest store revision whose change has been applied.
    applied: AtomicI64,
    applied_changed: watch::Sender<Revision>,
}

impl Cache {
    /// Loads every object and starts following the store.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        let resources = Registry::get()
            .types()
            .iter()
            .map(|t| (keys::resource_prefix(t), Arc::new(ResourceCache::new(t))))
            .collect();
        let cache = Arc::new(Self { store, resources, applied: AtomicI64::new(0), applied_changed: watch::channel(0).0 });
        let revision = cache.load().await?;
        tokio::spawn(cache.clone().follow(revision));
        Ok(cache)
    }

    pub fn resource(&self, resource: &ResourceType) -> &Arc<ResourceCache> {
        // Every registry type got an entry in `start`.
        &self.resources[&keys::resource_prefix(resource)]
    }

    pub fn applied_revision(&self) -> Revision {
        self.applied.load(Ordering::Acquire)
    }

    pub fn applied(&self) -> &AtomicI64 {
        &self.applied
    }

    /// Waits until the cache has applied `revision`, for consistent reads.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> ApiResult<()> {
        let mut receiver = self.applied_changed.subscribe();
        let reached = tokio::time::timeout(timeout, receiver.wait_for(|applied| *applied >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(format!(
                "Too large resource version: {revision}, current: {}",
                self.applied_revision()
            ))),
        }
    }

    /// Waits until the cache holds everything the store has acknowledged so far.
    pub async fn sync(&self) -> ApiResult<Revision> {
        let current = self.store.current_revision().await.map_err(ApiError::from_store)?;
        self.wait_for(current, Duration::from_secs(3)).await?;
        Ok(self.applied_revision())
    }

    /// Drops history the store no longer has, so watches from before it fail as they would on the store.
    pub fn compacted(&self, revision: Revision) {
        for cache in self.resources.values() {
            cache.forget_before(revision);
        }
    }

    async fn load(&self) -> Result<Revision, StoreError> {
        let mut loaded: HashMap<&str, BTreeMap<Arc<str>, Arc<CachedObject>>> = HashMap::new();
        let first = self.store.list(keys::ROOT, ListOptions { limit: Some(5_000), ..Default::default() }).await?;
        let revision = first.revision;
        let mut page = first;
        loop {
            for kv in &page.items {
                let Some((prefix, cache)) = self.route(&kv.key) else { continue };
                match cache.decode(&kv.key, &kv.value, kv.mod_revision) {
                    Ok(object) => {
                        loaded.entry(prefix).or_default().insert(object.key.clone(), Arc::new(object));
                    }
                    Err(error) => tracing::error!(key = %kv.key, %error, "skipping undecodable stored object"),
                }
            }
            let Some(last) = page.items.last().filter(|_| page.more).map(|kv| kv.key.clone()) else { break };
            page = self
                .store
                .list(keys::ROOT, ListOptions { revision: Some(revision), start_after: Some(last), limit: Some(5_000) })
                .await?;
        }
        for (prefix, cache) in &self.resources {
            cache.reset(loaded.remove(prefix.as_str()).unwrap_or_default(), revision);
        }
        self.advance(revision);
        Ok(revision)
    }

    fn route(&self, key: &str) -> Option<(&str, &Arc<ResourceCache>)> {
        let prefix = keys::resource_prefix_of(key)?;
        self.resources.get_key_value(prefix).map(|(k, v)| (k.as_str(), v))
    }

    fn advance(&self, revision: Revision) {
        self.applied.store(revision, Ordering::Release);
        self.applied_changed.send_replace(revision);
    }

    /// Applies store events forever; on a broken watch, reloads everything and carries on.
    async fn follow(self: Arc<Self>, mut from: Revision) {
        loop {
            match self.follow_once(from).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "watch cache lost its store watch; reloading");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match self.load().await {
                        Ok(revision) => from = revision,
                        Err(error) => tracing::error!(%error, "watch cache reload failed; retrying"),
                    }
                }
            }
        }
    }

    async fn follow_once(&self, from: Revision) -> Result<(), StoreError> {
        // The whole keyspace, so that writes outside /registry/ still advance the revision that
        // consistent reads wait for.
        let mut events = self.store.watch("/", from).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            if let Some((_, cache)) = self.route(&event.kv.key) {
                match Change::from_store_event(cache, &event, cache.object(&event.kv.key)) {
                    Ok(change) => cache.apply(change),
                    Err(error) => tracing::error!(key = %event.kv.key, %error, "skipping undecodable stored object"),
                }
            }
            self.advance(event.revision());
        }
        Ok(())
    }

    /// A store watch for one resource from a revision older than the cache's event log.
    pub async fn watch_store(
        &self,
        resource: &'static ResourceType,
        prefix: String,
        after: Revision,
    ) -> ApiResult<futures::stream::BoxStream<'static, ApiResult<Arc<Change>>>> {
        let events = self.store.watch(&prefix, after).await.map_err(ApiError::from_store)?;
        let cache = self.resource(resource).clone();
        Ok(events
            .filter_map(move |event| {
                let change = event
                    .map_err(ApiError::from_store)
                    .map(|event| Change::from_store_event(&cache, &event, None).ok().map(Arc::new))
                    .transpose();
                std::future::ready(change)
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, version: &str, plural: &str) -> &'static ResourceType {
        Registry::get().lookup(group, version, plural).expect("a built-in resource")
    }

    #[test]
    fn stored_bytes_are_served_with_their_revision_and_decoded_only_when_a_selector_asks() {
        let pods = resource("", "v1", "pods");
        let cache = ResourceCache::new(pods);
        let stored = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},"spec":{"nodeName":"n1"}}"#;
        let object = cache.decode("/registry/pods/default/web", stored, 7).expect("valid JSON");
        let served: Value = serde_json::from_slice(&object.json).expect("served JSON");
        assert_eq!(served["metadata"]["resourceVersion"], "7");
        assert!(object.selectable.get().is_none());
        assert_eq!(cache.labels(&object)["app"], "web");
        assert_eq!((cache.field(&object, "spec.nodeName"), cache.field(&object, "metadata.namespace")), ("n1".to_owned(), "default".to_owned()));
    }

    #[test]
    fn a_stored_object_that_names_a_resource_version_is_served_with_its_own() {
        let events = resource("", "v1", "events");
        let cache = ResourceCache::new(events);
        let stored = br#"{"metadata":{"name":"e","namespace":"default"},"involvedObject":{"kind":"Pod","name":"web","resourceVersion":"3"}}"#;
        let object = cache.decode("/registry/events/default/e", stored, 9).expect("valid JSON");
        let served: Value = serde_json::from_slice(&object.json).expect("served JSON");
        assert_eq!((served["metadata"]["resourceVersion"].as_str(), served["involvedObject"]["resourceVersion"].as_str()), (Some("9"), Some("3")));
        assert_eq!(cache.field(&object, "involvedObject.name"), "web");
    }
}
