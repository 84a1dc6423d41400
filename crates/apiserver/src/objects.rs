//! The write path shared by every kind: admission of a request body, create, update (with
//! optimistic concurrency), patch, and delete (finalizers, graceful pod deletion, namespaces).
//!
//! Invariant: every write is one conditional store operation on the revision that was read;
//! a lost race is retried from a fresh read or answered with 409, never silently merged.
//! Invariant: a write to the main resource never changes `.status`; a write to `/status`
//! changes only `.status`; only pods/binding changes both, in one write.

use tugboat_api::meta::Pointer;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tugboat_api::{field_tree, meta, validation, ResourceType, Shape};
use tugboat_store::{Revision, Store, StoreError};

use crate::allocator::Allocator;
use crate::cache::{Cache, CachedObject};
use crate::error::{ApiError, ApiResult, Target};
use crate::{keys, served};
use crate::request::FieldValidation;

/// How many times a write retries after losing a race it did not pin with a resourceVersion.
const MAX_WRITE_ATTEMPTS: usize = 16;

/// The part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
    /// A namespace's `spec.finalizers`: only `namespaces/{name}/finalize` writes them, so a
    /// plain update cannot let a namespace go before the namespace controller has emptied it.
    Finalizers,
}

/// Options of a write request.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub dry_run: bool,
}

/// An object as a write left it; [`Written::json`] is its served form.
pub enum Written {
    /// Stored by this request: the bytes stored (without a resourceVersion) and their revision.
    Stored(Bytes, Revision),
    /// Not stored by this request (a dry run, a write that changed nothing, a deletion).
    Unstored(Value),
}

impl Written {
    /// The object as served (resourceVersion included).
    pub fn object(&self) -> Value {
        match self {
            Written::Stored(..) => tugboat_api::json::from_slice(&self.json()).unwrap_or(Value::Null),
            Written::Unstored(object) => object.clone(),
        }
    }

    /// The served JSON (resourceVersion included): the stored bytes with the revision inserted,
    /// so a write's answer costs no second encoding.
    pub fn json(&self) -> Bytes {
        match self {
            Written::Stored(stored, revision) => served::with_resource_version(stored, *revision).unwrap_or_else(|| stored.clone()),
            Written::Unstored(object) => encode(object),
        }
    }
}

/// The outcome of a delete request.
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// The object is marked for deletion and waits for finalizers or graceful termination.
    Pending(Value),
}

/// Parameters of a delete request (`metav1.DeleteOptions`).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_revision: Option<String>,
    pub dry_run: bool,
}

pub struct Objects {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    allocator: Allocator,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>, cache: Arc<Cache>, allocator: Allocator) -> Self {
        Self { store, cache, allocator }
    }

    /// Stores `object` (without its resourceVersion) under `key` through `write`, a conditional
    /// create or update of its encoding: its encoding and revision once stored; the object
    /// comes back with the error otherwise (a create may retry it under another name).
    async fn write<F>(object: Value, write: impl FnOnce(Bytes) -> F) -> Result<(Bytes, Revision), (Value, StoreError)>
    where
        F: std::future::Future<Output = Result<Revision, StoreError>>,
    {
        let stored = encode(&object);
        match write(stored.clone()).await {
            Ok(revision) => Ok((stored, revision)),
            Err(error) => Err((object, error)),
        }
    }

    /// Reads one object, consistently: the watch cache is first brought up to the store's
    /// current revision, so a read sees every write acknowledged before it. Serving from memory
    /// keeps reads off the store's threads.
    pub async fn get(&self, resource: &ResourceType, namespace: &str, name: &str) -> ApiResult<(Value, Revision)> {
        let object = self.get_cached(resource, namespace, name).await?;
        Ok((object.value(), object.revision))
    }

    /// [`Self::get`] by store key, for a write that will replace the object.
    async fn current(&self, resource: &ResourceType, key: &str, name: &str) -> ApiResult<(Value, Revision)> {
        let object = self.cached(resource, key, name).await?;
        Ok((object.value(), object.revision))
    }

    /// [`Self::get`], as the cache holds it: its served JSON is at hand, its value is not.
    pub async fn get_cached(&self, resource: &ResourceType, namespace: &str, name: &str) -> ApiResult<Arc<CachedObject>> {
        self.cached(resource, &keys::object_key(resource, namespace, name), name).await
    }

    async fn cached(&self, resource: &ResourceType, key: &str, name: &str) -> ApiResult<Arc<CachedObject>> {
        self.cache.sync().await?;
        self.cache.resource(resource).object(key).ok_or_else(|| ApiError::not_found(&Target { resource, name }))
    }

    /// Every object of a cluster-scoped resource, consistently (as [`Self::get`]).
    pub async fn list_all(&self, resource: &ResourceType) -> ApiResult<Vec<Value>> {
        self.cache.sync().await?;
        let snapshot = self.cache.resource(resource).snapshot(&keys::resource_prefix(resource), self.cache.applied());
        Ok(snapshot.objects.iter().map(|object| object.value()).collect())
    }

    /// Checks a request body against the URL and the kind's schema, and decodes it as its kind
    /// would be through its typed form (`field_tree::decode`). Returns the normalised object and
    /// any warnings.
    pub fn admit_body(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        url_name: Option<&str>,
        mut object: Value,
        field_validation: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let Value::Object(fields) = &mut object else {
            return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
        };
        let api_version = resource.api_version();
        match fields.get("apiVersion").and_then(Value::as_str) {
            None => {
                fields.insert("apiVersion".into(), api_version.clone().into());
            }
            Some(v) if v == api_version => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )))
            }
        }
        match fields.get("kind").and_then(Value::as_str) {
            None => {
                fields.insert("kind".into(), resource.kind.into());
            }
            Some(k) if k == resource.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({}) for this URL",
                    resource.kind
                )))
            }
        }
        let metadata = meta::metadata_mut(&mut object);
        if resource.namespaced {
            let url_namespace = namespace.unwrap_or_default();
            match metadata.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    metadata.insert("namespace".into(), url_namespace.into());
                }
                Some(ns) if ns == url_namespace => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
            }
        } else {
            metadata.remove("namespace");
        }
        if let Some(url_name) = url_name {
            match metadata.get("name").and_then(Value::as_str) {
                None | Some("") => {
                    metadata.insert("name".into(), url_name.into());
                }
                Some(n) if n == url_name => {}
                Some(n) => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({url_name})"
                    )))
                }
            }
        }
        let mut unknown = Vec::new();
        let collect = (field_validation != FieldValidation::Ignore).then_some(&mut unknown);
        let cannot = |problem: String| {
            ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: {problem}", resource.kind, resource.version, resource.kind))
        };
        let admitted = field_tree::decode(resource, object, collect).map_err(|e| cannot(e.to_string()))?;
        if !unknown.is_empty() {
            let described: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
            if field_validation == FieldValidation::Strict {
                return Err(cannot(format!("strict decoding error: {}", described.join(", "))));
            }
            warnings.extend(described);
        }
        Ok(admitted)
    }

    /// [`Self::admit_body`] for `patched`, the result of patching `current`: the top-level fields
    /// the patch left as they were are already in admitted form, so only the others go through
    /// the typed decode (a status patch does not re-decode the spec). When the changed fields
    /// alone do not admit (a kind with a required field, or a real error), the whole object from
    /// `repatch` is admitted instead, with the whole object's answer.
    // The admission inputs of `admit_body`, plus the two views of the patched object.
    #[allow(clippy::too_many_arguments)]
    pub fn admit_patched(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        current: &Value,
        patched: Value,
        repatch: impl FnOnce() -> ApiResult<Value>,
        field_validation: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let (Value::Object(mut changed), Value::Object(current)) = (patched, current) else {
            return self.admit_body(resource, namespace, Some(name), repatch()?, field_validation, warnings);
        };
        let same: Vec<String> = changed
            .iter()
            .filter(|(field, value)| !matches!(field.as_str(), "apiVersion" | "kind") && current.get(field.as_str()) == Some(value))
            .map(|(field, _)| field.clone())
            .collect();
        let unchanged: Vec<(String, Value)> = same.into_iter().filter_map(|field| changed.remove_entry(&field)).collect();
        let mut found = Vec::new();
        match self.admit_body(resource, namespace, Some(name), Value::Object(changed), field_validation, &mut found) {
            Ok(mut admitted) => {
                if let Value::Object(fields) = &mut admitted {
                    fields.extend(unchanged);
                }
                warnings.extend(found);
                Ok(admitted)
            }
            Err(_) => self.admit_body(resource, namespace, Some(name), repatch()?, field_validation, warnings),
        }
    }

    /// Creates an admitted object.
    pub async fn create(&self, resource: &'static ResourceType, mut object: Value, options: WriteOptions) -> ApiResult<Written> {
        let generate_name = meta::str_at(&object, "/metadata/generateName").to_owned();
        if meta::name(&object).is_empty() && !generate_name.is_empty() {
            meta::metadata_mut(&mut object).insert("name".into(), generated_name(&generate_name).into());
        }
        prepare_for_create(resource, &mut object);
        resource.apply_defaults(&mut object);
        if resource.group.is_empty() && resource.kind == "Pod" {
            crate::admission::admit_pod(self, &mut object).await?;
        }
        self.validate(resource, &object, true)?;
        if resource.namespaced {
            self.require_active_namespace(meta::namespace(&object)).await?;
        }
        let mut allocation = self.allocator.assign(resource, &mut object, &self.cache, options.dry_run).await?;
        if options.dry_run {
            return Ok(Written::Unstored(object));
        }
        for attempt in 0.. {
            let key = keys::object_key(resource, meta::namespace(&object), meta::name(&object));
            match Self::write(object, |stored| self.store.create(&key, stored)).await {
                Ok((stored, revision)) => {
                    if let Some(allocation) = allocation.take() {
                        // Later allocations must see this object's addresses in the cache.
                        allocation.hold_until_cached(&self.cache, revision).await;
                    }
                    return Ok(Written::Stored(stored, revision));
                }
                Err((mut returned, StoreError::AlreadyExists { .. })) if !generate_name.is_empty() && attempt < 8 => {
                    meta::metadata_mut(&mut returned).insert("name".into(), generated_name(&generate_name).into());
                    object = returned;
                }
                Err((returned, StoreError::AlreadyExists { .. })) => {
                    return Err(ApiError::already_exists(&Target { resource, name: meta::name(&returned) }))
                }
                Err((_, e)) => return Err(ApiError::from_store(e)),
            }
        }
        unreachable!("the loop returns")
    }

    /// Updates an object: reads it, lets `mutate` produce the desired state from the current
    /// one, merges that according to `part`, and writes it conditioned on the revision read.
    /// `pinned`: the caller named a resourceVersion, so a lost race is a 409, not a retry.
    // One write path for every kind of update; its parameters are each a different axis.
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        part: Part,
        pinned: bool,
        options: WriteOptions,
        mutate: impl Fn(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Written> {
        let target = Target { resource, name };
        let key = keys::object_key(resource, namespace, name);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (current, revision) = self.current(resource, &key, name).await?;
            let desired = mutate(&current)?;
            let desired_revision = meta::str_at(&desired, "/metadata/resourceVersion");
            if !desired_revision.is_empty() && desired_revision != revision.to_string() {
                return Err(ApiError::stale(&target));
            }
            let mut next = match part {
                Part::Status => match self.status_update(resource, current, desired)? {
                    Ok(next) => next,
                    Err(unchanged) => return Ok(Written::Unstored(unchanged)),
                },
                Part::Main | Part::Finalizers => {
                    let mut next = merge_update(resource, &current, desired, part == Part::Finalizers);
                    resource.apply_defaults(&mut next);
                    self.validate(resource, &next, true)?;
                    if matches!(part, Part::Main) {
                        let errors = resource.validate_update(&current, &next);
                        if !errors.is_empty() {
                            return Err(ApiError::invalid(&target, &errors));
                        }
                    }
                    if next == current {
                        return Ok(Written::Unstored(current));
                    }
                    next
                }
            };
            if options.dry_run {
                return Ok(Written::Unstored(next));
            }
            let lost = if deletion_complete(resource, &next) {
                match self.store.delete(&key, Some(revision)).await {
                    Ok(kv) => {
                        set_resource_version(&mut next, kv.mod_revision);
                        return Ok(Written::Unstored(next));
                    }
                    Err(error) => error,
                }
            } else {
                strip_resource_version(&mut next);
                match Self::write(next, |stored| self.store.update(&key, stored, revision)).await {
                    Ok((stored, revision)) => return Ok(Written::Stored(stored, revision)),
                    Err((_, error)) => error,
                }
            };
            retry_after(lost, pinned, &target)?;
        }
        Err(ApiError::conflict(&target, "too many concurrent writers; try again"))
    }

    /// The object a status write leaves: `current` with `desired`'s status (none if it has none)
    /// and nothing else changed, defaulted and checked; `Err` with the object when the status
    /// is what it was. The rest of the object moves over rather than being copied or compared:
    /// status writes are the most frequent writes, and pods are large.
    fn status_update(&self, resource: &ResourceType, current: Value, desired: Value) -> ApiResult<Result<Value, Value>> {
        let (mut next, previous) = with_status_from(current, desired);
        resource.apply_defaults(&mut next);
        // No kind-specific rule reads the status: like Kubernetes' status strategies, a status
        // write is not checked against the spec's rules.
        self.validate(resource, &next, false)?;
        Ok(if next.get("status") == previous.as_ref() { Err(next) } else { Ok(next) })
    }

    /// A write straight to storage, as Kubernetes' pods/binding makes one: `edit` turns the
    /// current object's served JSON into the JSON to store, with no defaulting, validation,
    /// metadata merge or generation count (what it changes needs none of them, and a pod is
    /// bound once in its life: this is a quarter of a burst's writes). Retried from a fresh read
    /// when another write got there first.
    pub async fn update_in_storage(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: WriteOptions,
        edit: impl Fn(&[u8]) -> ApiResult<Vec<u8>>,
    ) -> ApiResult<()> {
        let target = Target { resource, name };
        let key = keys::object_key(resource, namespace, name);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let current = self.cached(resource, &key, name).await?;
            let stored = edit(&current.json)?;
            if options.dry_run {
                return Ok(());
            }
            match self.store.update(&key, Bytes::from(stored), current.revision).await {
                Ok(_) => return Ok(()),
                Err(lost) => retry_after(lost, false, &target)?,
            }
        }
        Err(ApiError::conflict(&target, "too many concurrent writers; try again"))
    }

    /// Deletes an object, or marks it for deletion when finalizers or graceful termination
    /// must run first.
    pub async fn delete(&self, resource: &'static ResourceType, namespace: &str, name: &str, options: &DeleteOptions) -> ApiResult<Deleted> {
        let target = Target { resource, name };
        let key = keys::object_key(resource, namespace, name);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (current, revision) = self.current(resource, &key, name).await?;
            if let Some(uid) = &options.precondition_uid {
                if meta::str_at(&current, "/metadata/uid") != uid {
                    return Err(ApiError::conflict(&target, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta::str_at(&current, "/metadata/uid"))));
                }
            }
            if let Some(rv) = &options.precondition_revision {
                if *rv != revision.to_string() {
                    return Err(ApiError::conflict(&target, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}")));
                }
            }
            let Some(mut marked) = mark_for_deletion(resource, &current, options) else {
                if options.dry_run {
                    return Ok(Deleted::Gone(current));
                }
                match self.store.delete(&key, Some(revision)).await {
                    Ok(kv) => {
                        let mut gone = current;
                        set_resource_version(&mut gone, kv.mod_revision);
                        return Ok(Deleted::Gone(gone));
                    }
                    Err(lost) => {
                        retry_after(lost, false, &target)?;
                        continue;
                    }
                }
            };
            if marked == current || options.dry_run {
                return Ok(Deleted::Pending(marked));
            }
            strip_resource_version(&mut marked);
            match self.store.update(&key, encode(&marked), revision).await {
                Ok(new_revision) => {
                    set_resource_version(&mut marked, new_revision);
                    return Ok(Deleted::Pending(marked));
                }
                Err(lost) => retry_after(lost, false, &target)?,
            }
        }
        Err(ApiError::conflict(&target, "too many concurrent writers; try again"))
    }

    /// The generic metadata checks, and with `kind_rules` the kind's own.
    fn validate(&self, resource: &ResourceType, object: &Value, kind_rules: bool) -> ApiResult<()> {
        let mut errors = validation::validate_object(resource, object);
        if kind_rules {
            errors.extend(resource.validate(object));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            let name = meta::name(object);
            let name = if name.is_empty() { meta::str_at(object, "/metadata/generateName") } else { name };
            Err(ApiError::invalid(&Target { resource, name }, &errors))
        }
    }

    /// Objects may be created only in a namespace that exists and is not terminating.
    async fn require_active_namespace(&self, namespace: &str) -> ApiResult<()> {
        let namespaces = tugboat_api::Registry::get()
            .lookup("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
        // The cache answers almost always; a namespace created a moment ago may not be in it yet.
        let cached = self.cache.resource(namespaces).object(&keys::object_key(namespaces, "", namespace));
        let object = match cached {
            // Every create asks: a namespace whose text lacks the field is not being deleted;
            // otherwise decode only what `is_deleting` reads.
            Some(object) if memchr::memmem::find(&object.json, b"\"deletionTimestamp\"").is_none() => return Ok(()),
            Some(object) => {
                static DELETION: std::sync::OnceLock<Shape> = std::sync::OnceLock::new();
                DELETION.get_or_init(|| Shape::of(&["metadata.deletionTimestamp"])).decode(&object.json).unwrap_or(Value::Null)
            }
            None => match self.get(namespaces, "", namespace).await {
                Ok((object, _)) => object,
                Err(e) if e.reason == "NotFound" => return Err(ApiError::namespace_not_found(namespace)),
                Err(e) => return Err(e),
            },
        };
        if is_deleting(&object) {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }
}

pub fn encode(object: &Value) -> Bytes {
    Bytes::from(tugboat_api::json::to_vec(object))
}

/// After a conditional write failed: Ok when it lost a race it may retry from a fresh read
/// (`pinned`: the caller named the revision, so it may not), else the answer to give.
fn retry_after(error: StoreError, pinned: bool, target: &Target) -> ApiResult<()> {
    match error {
        StoreError::Conflict { .. } if !pinned => Ok(()),
        StoreError::Conflict { .. } => Err(ApiError::stale(target)),
        StoreError::NotFound { .. } => Err(ApiError::not_found(target)),
        e => Err(ApiError::from_store(e)),
    }
}

pub fn set_resource_version(object: &mut Value, revision: Revision) {
    meta::metadata_mut(object).insert("resourceVersion".into(), revision.to_string().into());
}

fn strip_resource_version(object: &mut Value) {
    meta::metadata_mut(object).remove("resourceVersion");
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn generated_name(prefix: &str) -> String {
    // The alphabet Kubernetes uses: no vowels (no words), no confusable characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5].iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    let prefix: String = prefix.chars().take(253 - 5).collect();
    format!("{prefix}{suffix}")
}

fn is_deleting(object: &Value) -> bool {
    object.at("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Whether a write leaves a deleting object with nothing left to wait for: no finalizers and no
/// grace period running (a bound pod waits for its node agent to delete it with grace 0).
fn deletion_complete(resource: &ResourceType, object: &Value) -> bool {
    let namespace_finalizers = resource.group.is_empty()
        && resource.kind == "Namespace"
        && object.at("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    is_deleting(object)
        && finalizers(object).is_empty()
        && !namespace_finalizers
        && object.at("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .at("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Fresh metadata and status for a new object.
fn prepare_for_create(resource: &ResourceType, object: &mut Value) {
    let metadata = meta::metadata_mut(object);
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"] {
        metadata.remove(field);
    }
    metadata.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
    metadata.insert("creationTimestamp".into(), now_rfc3339().into());
    if resource.tracks_generation() {
        metadata.insert("generation".into(), 1.into());
    } else {
        metadata.remove("generation");
    }
    if resource.subresources.status && resource.kind != "Node" {
        if let Value::Object(fields) = object {
            fields.remove("status");
        }
    }
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            meta::object_field_mut(object, "status").insert("phase".into(), "Pending".into());
            let qos = qos_class(object);
            meta::object_field_mut(object, "status").insert("qosClass".into(), qos.into());
        }
        ("", "Namespace") => {
            meta::object_field_mut(object, "status").insert("phase".into(), "Active".into());
        }
        ("", "PersistentVolume" | "PersistentVolumeClaim") => {
            meta::object_field_mut(object, "status").insert("phase".into(), "Pending".into());
        }
        _ => {}
    }
}

/// The pod's QoS class as Kubernetes computes it (GetPodQOS): from its containers' and init
/// containers' positive cpu and memory requests and limits, summed per resource and compared as
/// quantities, so "1" and "1000m" CPU are the same amount. Guaranteed needs every container to
/// limit both and the sums of requests to equal the sums of limits; a request left out defaults
/// to the limit, as creation's defaulting does.
fn qos_class(pod: &Value) -> &'static str {
    // Milli-cores for cpu, bytes for memory: the units each is allocated in.
    const COMPUTE: [(&str, i32); 2] = [("cpu", -3), ("memory", 0)];
    let mut requests = [None::<i64>; 2];
    let mut limits = [None::<i64>; 2];
    let mut every_container_limits_both = true;
    let containers = ["/spec/containers", "/spec/initContainers"].into_iter().filter_map(|path| pod.at(path).and_then(Value::as_array)).flatten();
    for container in containers {
        let stated = |kind: &str| container.get("resources").and_then(|r| r.get(kind)).and_then(Value::as_object);
        let (stated_requests, stated_limits) = (stated("requests"), stated("limits"));
        for (index, (name, scale)) in COMPUTE.into_iter().enumerate() {
            let positive = |quantity: Option<&Value>| {
                let quantity = tugboat_api::quantity::Quantity::parse(quantity?.as_str()?).ok()?;
                quantity.scaled_value(scale).filter(|amount| *amount > 0)
            };
            let stated_limit = stated_limits.and_then(|l| l.get(name));
            let limit = positive(stated_limit);
            let request = positive(stated_requests.and_then(|r| r.get(name)).or(stated_limit));
            if let Some(request) = request {
                requests[index] = Some(requests[index].unwrap_or(0).saturating_add(request));
            }
            match limit {
                Some(limit) => limits[index] = Some(limits[index].unwrap_or(0).saturating_add(limit)),
                None => every_container_limits_both = false,
            }
        }
    }
    if requests == [None; 2] && limits == [None; 2] {
        "BestEffort"
    } else if every_container_limits_both && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Combines the stored object with the desired one for a write to the main resource or (with
/// `finalizers_only`) to a namespace's finalizers: fields the writer may not change are kept from
/// `current`. Status writes keep everything but the status (`with_status_from`).
fn merge_update(resource: &ResourceType, current: &Value, desired: Value, finalizers_only: bool) -> Value {
    let mut next = if finalizers_only {
        with_finalizers_of(current.clone(), &desired)
    } else if resource.subresources.status {
        with_status_of(desired, current)
    } else {
        desired
    };
    if !finalizers_only && resource.group.is_empty() && resource.kind == "Namespace" {
        next = with_finalizers_of(next, current);
    }
    let no_metadata = Map::new();
    let current_meta = current.get("metadata").and_then(Value::as_object).unwrap_or(&no_metadata);
    let metadata = meta::metadata_mut(&mut next);
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "name"] {
        match current_meta.get(field) {
            Some(v) => metadata.insert(field.into(), v.clone()),
            None => metadata.remove(field),
        };
    }
    if let Some(rv) = current_meta.get("resourceVersion") {
        metadata.insert("resourceVersion".into(), rv.clone());
    }
    if resource.tracks_generation() && !same_spec(current, &next) {
        let generation = current.at("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        meta::metadata_mut(&mut next).insert("generation".into(), generation.into());
    }
    next
}

/// `object` with `.status` taken from `source` (removed if `source` has none).
fn with_status_of(mut object: Value, source: &Value) -> Value {
    if let Value::Object(fields) = &mut object {
        match source.get("status") {
            Some(status) => fields.insert("status".into(), status.clone()),
            None => fields.remove("status"),
        };
    }
    object
}

/// `current` with `desired`'s `.status` moved in (removed if `desired` has none), and the status
/// it had: what a status write leaves of an object.
fn with_status_from(mut current: Value, desired: Value) -> (Value, Option<Value>) {
    let status = match desired {
        Value::Object(mut fields) => fields.remove("status"),
        _ => None,
    };
    let previous = match (&mut current, status) {
        (Value::Object(fields), Some(status)) => fields.insert("status".into(), status),
        (Value::Object(fields), None) => fields.remove("status"),
        _ => None,
    };
    (current, previous)
}

/// `object` with `.spec.finalizers` taken from `source` (removed if `source` has none).
fn with_finalizers_of(mut object: Value, source: &Value) -> Value {
    let spec = meta::object_field_mut(&mut object, "spec");
    match source.at("/spec/finalizers") {
        Some(finalizers) => spec.insert("finalizers".into(), finalizers.clone()),
        None => spec.remove("finalizers"),
    };
    object
}

/// Whether two objects agree on everything but metadata and status: what `metadata.generation`
/// counts changes of. Compared in place; pods are large and this runs on every write.
fn same_spec(a: &Value, b: &Value) -> bool {
    const NOT_SPEC: [&str; 4] = ["metadata", "status", "apiVersion", "kind"];
    let empty = Map::new();
    let a = a.as_object().unwrap_or(&empty);
    let b = b.as_object().unwrap_or(&empty);
    let spec = |fields: &Map<String, Value>| fields.keys().filter(|k| !NOT_SPEC.contains(&k.as_str())).count();
    spec(a) == spec(b) && a.iter().filter(|(k, _)| !NOT_SPEC.contains(&k.as_str())).all(|(k, v)| b.get(k) == Some(v))
}

/// The object marked for deletion, or `None` if it can be removed right away.
fn mark_for_deletion(resource: &ResourceType, current: &Value, options: &DeleteOptions) -> Option<Value> {
    let mut marked = current.clone();
    let already_deleting = is_deleting(current);
    let mut finalizers = finalizers(current);
    if !already_deleting {
        let policy_finalizer = match options.propagation_policy.as_deref() {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            _ => None,
        };
        if let Some(f) = policy_finalizer {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_owned());
            }
        }
    }
    let is_namespace = resource.group.is_empty() && resource.kind == "Namespace";
    let is_pod = resource.group.is_empty() && resource.kind == "Pod";
    let bound_pod = is_pod && !meta::str_at(current, "/spec/nodeName").is_empty();
    let grace = options
        .grace_period_seconds
        .or_else(|| current.at("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30)
        .max(0);
    let namespace_finalizers = is_namespace
        && current.at("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    // A bound pod's containers must stop first: its node agent finishes the deletion.
    let graceful_pod = bound_pod && grace > 0;
    if finalizers.is_empty() && !namespace_finalizers && !graceful_pod {
        return None;
    }
    let metadata = meta::metadata_mut(&mut marked);
    if !already_deleting {
        let deadline = if graceful_pod {
            jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(grace)).unwrap_or(jiff::Timestamp::now())
        } else {
            jiff::Timestamp::now()
        };
        metadata.insert("deletionTimestamp".into(), deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into());
        metadata.insert("deletionGracePeriodSeconds".into(), (if graceful_pod { grace } else { 0 }).into());
    } else if graceful_pod {
        // A second delete may shorten the grace period, never lengthen it.
        let previous = current.at("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(grace);
        metadata.insert("deletionGracePeriodSeconds".into(), grace.min(previous).into());
    }
    if !finalizers.is_empty() {
        metadata.insert("finalizers".into(), json!(finalizers));
    }
    if is_namespace {
        meta::object_field_mut(&mut marked, "status").insert("phase".into(), "Terminating".into());
    }
    Some(marked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tugboat_api::Registry;

    fn resource(group: &str, plural: &str) -> &'static ResourceType {
        Registry::get().lookup(group, "v1", plural).unwrap()
    }

    #[test]
    fn main_writes_keep_status_and_count_generations() {
        let deployments = resource("apps", "deployments");
        let current = json!({"metadata":{"name":"a","uid":"u","generation":1,"resourceVersion":"5"},"spec":{"replicas":1},"status":{"replicas":1}});
        let desired = json!({"metadata":{"name":"a","labels":{"x":"y"}},"spec":{"replicas":3},"status":{"replicas":9}});
        let next = merge_update(deployments, &current, desired, false);
        assert_eq!(next["status"]["replicas"], 1);
        assert_eq!(next["spec"]["replicas"], 3);
        assert_eq!(next["metadata"]["generation"], 2);
        assert_eq!(next["metadata"]["uid"], "u");
        assert_eq!(next["metadata"]["labels"]["x"], "y");
    }

    #[test]
    fn status_writes_change_only_status() {
        let current = json!({"metadata":{"name":"a","generation":1},"spec":{"replicas":1},"status":{"replicas":1}});
        let desired = json!({"metadata":{"name":"a","labels":{"x":"y"}},"spec":{"replicas":3},"status":{"replicas":2}});
        let (next, previous) = with_status_from(current.clone(), desired);
        assert_eq!(previous, Some(json!({"replicas": 1})));
        assert_eq!(next["status"]["replicas"], 2);
        assert_eq!(next["spec"]["replicas"], 1);
        assert_eq!(next["metadata"]["generation"], 1);
        assert!(next["metadata"].get("labels").is_none());
        let without_status = json!({"metadata":{"name":"a"},"spec":{"replicas":3}});
        let (next, _) = with_status_from(current, without_status);
        assert!(next.get("status").is_none());
        assert_eq!(next["spec"]["replicas"], 1);
    }

    #[test]
    fn deletion_marks_only_when_something_must_run_first() {
        let configmaps = resource("", "configmaps");
        let plain = json!({"metadata":{"name":"a"}});
        assert!(mark_for_deletion(configmaps, &plain, &DeleteOptions::default()).is_none());
        let foreground = DeleteOptions { propagation_policy: Some("Foreground".into()), ..Default::default() };
        let marked = mark_for_deletion(configmaps, &plain, &foreground).unwrap();
        assert_eq!(marked["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        assert!(marked["metadata"]["deletionTimestamp"].is_string());

        let pods = resource("", "pods");
        let unbound = json!({"metadata":{"name":"p"},"spec":{}});
        assert!(mark_for_deletion(pods, &unbound, &DeleteOptions::default()).is_none());
        let bound = json!({"metadata":{"name":"p"},"spec":{"nodeName":"n1","terminationGracePeriodSeconds":10}});
        let marked = mark_for_deletion(pods, &bound, &DeleteOptions::default()).unwrap();
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 10);
        let forced = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        assert!(mark_for_deletion(pods, &bound, &forced).is_none());

        let namespaces = resource("", "namespaces");
        let ns = json!({"metadata":{"name":"n"},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}});
        assert_eq!(mark_for_deletion(namespaces, &ns, &DeleteOptions::default()).unwrap()["status"]["phase"], "Terminating");
    }

    #[test]
    fn qos_classes() {
        let pod = |resources: Value| json!({"spec":{"containers":[{"name":"c","resources":resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"limits":{"cpu":"1","memory":"1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&pod(json!({"requests":{"cpu":"1"}}))), "Burstable");
        assert_eq!(qos_class(&pod(json!({"limits":{"cpu":"1"}}))), "Burstable", "memory is not limited");
        assert_eq!(qos_class(&pod(json!({"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"500m"}}))), "Burstable");
        // Amounts, not spellings.
        let same = json!({"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"1000m","memory":"1073741824"}});
        assert_eq!(qos_class(&pod(same)), "Guaranteed");
        // Zero is no request at all.
        assert_eq!(qos_class(&pod(json!({"requests":{"cpu":"0","memory":"0"}}))), "BestEffort");
        // Summed per resource over containers and init containers; every one must limit both.
        let limited = json!({"resources":{"limits":{"cpu":"250m","memory":"64Mi"}}});
        let both = json!({"spec":{"containers":[limited.clone(),{"resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"1","memory":"1Gi"}}}],"initContainers":[limited.clone()]}});
        assert_eq!(qos_class(&both), "Guaranteed");
        let unlimited_init = json!({"spec":{"containers":[limited.clone()],"initContainers":[{"resources":{"requests":{"cpu":"100m"}}}]}});
        assert_eq!(qos_class(&unlimited_init), "Burstable");
        let bare_second = json!({"spec":{"containers":[limited, {}]}});
        assert_eq!(qos_class(&bare_second), "Burstable");
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let name = generated_name("web-");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }
}
