//! The ReplicaSet and ReplicationController controllers: one implementation, parameterized by
//! [`OwnerKind`], following Kubernetes' `pkg/controller/replicaset`.

use bytes::Bytes;
use futures::{stream, StreamExt};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tugboat_client::events::Recorder;
use tugboat_client::{Client, ClientError};

use crate::expectations::Expectations;
use crate::pods::{availability, deletion_order, is_active, is_ready};
use crate::runtime::{object_key, split_key, Cache, Change, SharedInformers, WorkQueue};
use crate::selector::Selector;
use crate::ControllerError;

/// At most this many creates or deletes per reconcile (Kubernetes' `burstReplicas`).
const BURST_REPLICAS: usize = 500;
/// Deletes in flight at once.
const CONCURRENT_REQUESTS: usize = 16;

/// The kind a controller manages.
#[derive(Debug)]
pub struct OwnerKind {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// `/apis/apps/v1` or `/api/v1`.
    pub api_prefix: &'static str,
    pub resource: &'static str,
    /// The Event source component.
    pub component: &'static str,
    /// ReplicationControllers select with a plain map; ReplicaSets with a LabelSelector.
    pub map_selector: bool,
}

pub const REPLICA_SET: OwnerKind = OwnerKind {
    api_version: "apps/v1",
    kind: "ReplicaSet",
    api_prefix: "/apis/apps/v1",
    resource: "replicasets",
    component: "replicaset-controller",
    map_selector: false,
};

pub const REPLICATION_CONTROLLER: OwnerKind = OwnerKind {
    api_version: "v1",
    kind: "ReplicationController",
    api_prefix: "/api/v1",
    resource: "replicationcontrollers",
    component: "replication-controller",
    map_selector: true,
};

impl OwnerKind {
    fn group(api_version: &str) -> &str {
        api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("")
    }

    fn is_kind_of(&self, reference: &Value) -> bool {
        reference["kind"] == self.kind && reference["apiVersion"].as_str().is_some_and(|v| Self::group(v) == Self::group(self.api_version))
    }

    fn selector(&self, owner: &Value) -> Result<Selector, ControllerError> {
        if self.map_selector {
            Selector::from_map(&owner["spec"]["selector"])
        } else {
            Selector::from_label_selector(&owner["spec"]["selector"])
        }
    }

    fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/namespaces/{namespace}/{}/{name}", self.api_prefix, self.resource)
    }
}

/// Where a pod's controller ownerReference points.
enum ControllerRef {
    /// One of our owners, present in the cache with the same UID.
    Ours(String),
    /// Another controller (or one of our kind that is gone or was replaced).
    Other,
    None,
}

fn controller_reference(pod: &Value) -> Option<&Value> {
    pod["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == true)
}

/// Tuning for tests.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Delay every pod watch event by this much (see [`crate::runtime::Informer::with_lag`]).
    pub pod_cache_lag: Duration,
}

pub struct ReplicaController {
    client: Client,
    events: Recorder,
    kind: &'static OwnerKind,
    owners: Arc<Cache>,
    pods: Arc<Cache>,
    queue: WorkQueue,
    expectations: Expectations,
}

impl ReplicaController {
    /// Runs informers and `workers` workers until `shutdown` completes.
    pub async fn run(client: Client, kind: &'static OwnerKind, workers: usize, shutdown: impl Future<Output = ()>) {
        Self::run_with(client, kind, workers, Options::default(), shutdown).await;
    }

    pub async fn run_with(client: Client, kind: &'static OwnerKind, workers: usize, options: Options, shutdown: impl Future<Output = ()>) {
        let informers = crate::shared_informers(&client).with_lag(crate::PODS, options.pod_cache_lag);
        Self::run_shared(&informers, kind, workers, shutdown).await;
    }

    /// Runs on the controller manager's shared informers until `shutdown` completes.
    pub async fn run_shared(informers: &SharedInformers, kind: &'static OwnerKind, workers: usize, shutdown: impl Future<Output = ()>) {
        let owners_path = format!("{}/{}", kind.api_prefix, kind.resource);
        let controller = Arc::new(Self {
            client: informers.client().clone(),
            events: Recorder::start(informers.client().clone()),
            kind,
            owners: informers.cache(&owners_path),
            pods: informers.cache(crate::PODS),
            queue: WorkQueue::default(),
            expectations: Expectations::default(),
        });
        let owners = informers.subscribe(&owners_path, {
            let controller = controller.clone();
            Arc::new(move |change: &Change| controller.owner_changed(change))
        });
        let pods = informers.subscribe(crate::PODS, {
            let controller = controller.clone();
            Arc::new(move |change: &Change| controller.pod_changed(change))
        });
        let mut synced = [owners.synced, pods.synced];
        let work = {
            let controller = controller.clone();
            async move {
                // Reconciling against a half-filled cache would create pods that already exist.
                for receiver in &mut synced {
                    if receiver.wait_for(|s| *s).await.is_err() {
                        return;
                    }
                }
                let mut workers_set = tokio::task::JoinSet::new();
                for _ in 0..workers.max(1) {
                    let controller = controller.clone();
                    workers_set.spawn(async move { controller.worker().await });
                }
                while workers_set.join_next().await.is_some() {}
            }
        };
        tokio::select! {
            () = shutdown => {}
            () = work => {}
        }
        controller.queue.shut_down();
    }

    async fn worker(&self) {
        while let Some(key) = self.queue.get().await {
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(error) => {
                    tracing::info!(kind = self.kind.kind, %key, %error, "sync failed; retrying");
                    self.queue.add_rate_limited(&key);
                }
            }
            self.queue.done(&key);
        }
    }

    fn owner_changed(&self, change: &Change) {
        let object = match change {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        };
        if let Some(key) = object_key(object) {
            self.queue.add(&key);
        }
    }

    fn resolve(&self, pod: &Value) -> ControllerRef {
        let Some(reference) = controller_reference(pod) else { return ControllerRef::None };
        if !self.kind.is_kind_of(reference) {
            return ControllerRef::Other;
        }
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let Some(name) = reference["name"].as_str() else { return ControllerRef::Other };
        let key = format!("{namespace}/{name}");
        match self.owners.get(&key) {
            Some(owner) if owner["metadata"]["uid"] == reference["uid"] => ControllerRef::Ours(key),
            _ => ControllerRef::Other,
        }
    }

    /// Owners in the pod's namespace whose selector matches it (for orphans).
    fn matching_owners(&self, pod: &Value) -> Vec<String> {
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        self.owners
            .in_namespace(namespace)
            .iter()
            .filter(|owner| self.kind.selector(owner).is_ok_and(|s| s.matches(&pod["metadata"]["labels"])))
            .filter_map(|owner| object_key(owner))
            .collect()
    }

    fn pod_changed(&self, change: &Change) {
        match change {
            Change::Added(pod) => {
                if !pod["metadata"]["deletionTimestamp"].is_null() {
                    // Already terminating when first seen (e.g. after a restart): a deletion.
                    return self.pod_gone(pod);
                }
                match self.resolve(pod) {
                    ControllerRef::Ours(owner) => {
                        self.expectations.creation_observed(&owner);
                        self.queue.add(&owner);
                    }
                    ControllerRef::Other => {}
                    ControllerRef::None => self.matching_owners(pod).iter().for_each(|o| self.queue.add(o)),
                }
            }
            Change::Updated { old, new } => {
                if old["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"] {
                    return;
                }
                let labels_changed = old["metadata"]["labels"] != new["metadata"]["labels"];
                if !new["metadata"]["deletionTimestamp"].is_null() && old["metadata"]["deletionTimestamp"].is_null() {
                    // Graceful deletion started: count it now, the pod no longer counts as a replica.
                    self.pod_gone(new);
                    if labels_changed {
                        if let ControllerRef::Ours(owner) = self.resolve(old) {
                            self.queue.add(&owner);
                        }
                    }
                    return;
                }
                let old_ref = self.resolve(old);
                let new_ref = self.resolve(new);
                if let ControllerRef::Ours(old_owner) = &old_ref {
                    if !matches!(&new_ref, ControllerRef::Ours(n) if n == old_owner) {
                        // The controller reference changed or was removed: the old owner may need a replacement.
                        self.queue.add(old_owner);
                    }
                }
                match new_ref {
                    ControllerRef::Ours(owner) => {
                        self.queue.add(&owner);
                        // A pod that just became ready turns available after minReadySeconds.
                        if !is_ready(old) && is_ready(new) {
                            if let Some(owner_object) = self.owners.get(&owner) {
                                let min_ready = owner_object["spec"]["minReadySeconds"].as_u64().unwrap_or(0);
                                if min_ready > 0 {
                                    self.queue.add_after(&owner, Duration::from_secs(min_ready));
                                }
                            }
                        }
                    }
                    ControllerRef::Other => {}
                    ControllerRef::None => {
                        if labels_changed || controller_reference(old).is_some() {
                            self.matching_owners(new).iter().for_each(|o| self.queue.add(o));
                        }
                    }
                }
            }
            Change::Deleted(pod) => self.pod_gone(pod),
        }
    }

    fn pod_gone(&self, pod: &Value) {
        if let (ControllerRef::Ours(owner), Some(pod_key)) = (self.resolve(pod), object_key(pod)) {
            self.expectations.deletion_observed(&owner, &pod_key);
            self.queue.add(&owner);
        }
    }

    /// Reconciles one owner, level-based, from the caches.
    async fn sync(&self, key: &str) -> Result<(), ControllerError> {
        let Some(owner) = self.owners.get(key) else {
            self.expectations.delete(key);
            return Ok(());
        };
        let selector = self.kind.selector(&owner)?;
        let needs_sync = self.expectations.satisfied(key);
        let (namespace, _) = split_key(key);
        let pods: Vec<Arc<Value>> = self.pods.in_namespace(namespace).into_iter().filter(|p| is_active(p)).collect();
        let owned = self.claim(&owner, &selector, pods).await?;
        let mut result = Ok(());
        if needs_sync && owner["metadata"]["deletionTimestamp"].is_null() {
            result = self.manage(key, &owner, &owned).await;
        }
        let now = jiff::Timestamp::now();
        let failure = result.as_ref().err().map(|error| {
            let wanted = owner["spec"]["replicas"].as_i64().unwrap_or(1);
            let reason = if i64::try_from(owned.len()).unwrap_or(i64::MAX) < wanted { "FailedCreate" } else { "FailedDelete" };
            (reason, error.to_string())
        });
        let (status, wait) = compute_status(&owner, &owned, failure, now);
        if status_differs(&owner["status"], &status) {
            self.patch_status(&owner, &status).await?;
        }
        if let Some(wait) = wait {
            self.queue.add_after(key, wait);
        }
        result
    }

    /// Adopts matching orphans, releases owned pods that stopped matching; returns the pods
    /// this owner controls afterwards (Kubernetes' `ClaimPods`).
    async fn claim(&self, owner: &Value, selector: &Selector, pods: Vec<Arc<Value>>) -> Result<Vec<Arc<Value>>, ControllerError> {
        let uid = &owner["metadata"]["uid"];
        let owner_deleting = !owner["metadata"]["deletionTimestamp"].is_null();
        let mut claimed = Vec::new();
        let mut first_error = None;
        // Whether adopting is allowed, checked once and only when there is an orphan to adopt.
        let mut can_adopt: Option<bool> = None;
        for pod in pods {
            let matches = selector.matches(&pod["metadata"]["labels"]);
            let result = match controller_reference(&pod) {
                Some(reference) if reference["uid"] == *uid => {
                    if matches {
                        claimed.push(pod);
                        continue;
                    }
                    if owner_deleting {
                        continue;
                    }
                    self.release(owner, &pod).await
                }
                Some(_) => continue,
                None => {
                    if !matches || owner_deleting {
                        continue;
                    }
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(owner).await?);
                    }
                    if can_adopt == Some(false) {
                        continue;
                    }
                    match self.adopt(owner, &pod).await {
                        Ok(adopted) => {
                            claimed.push(Arc::new(adopted));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(()) => {}
                // Gone already, or changed under us: the informer brings the new state and a resync.
                Err(ControllerError::Client(ClientError::Status { code: StatusCode::NOT_FOUND, .. })) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(claimed),
        }
    }

    fn owner_reference(&self, owner: &Value) -> Value {
        json!({
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }

    /// Kubernetes' `RecheckDeletionTimestamp`: the cached owner may be stale, so before adopting
    /// read it from the API and make sure it is the same object (UID) and not being deleted;
    /// otherwise a just-deleted owner could adopt pods that the garbage collector then misses.
    async fn can_adopt(&self, owner: &Value) -> Result<bool, ControllerError> {
        let namespace = owner["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = owner["metadata"]["name"].as_str().unwrap_or_default();
        match self.client.get(&self.kind.object_path(namespace, name)).await {
            Ok(fresh) => Ok(fresh["metadata"]["uid"] == owner["metadata"]["uid"] && fresh["metadata"]["deletionTimestamp"].is_null()),
            Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    async fn adopt(&self, owner: &Value, pod: &Value) -> Result<Value, ControllerError> {
        let mut references = pod["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        references.push(self.owner_reference(owner));
        // The resourceVersion precondition makes a concurrent change (e.g. another controller
        // adopting it first) fail with 409 instead of being overwritten.
        let patch = json!({"metadata": {"ownerReferences": references, "resourceVersion": pod["metadata"]["resourceVersion"]}});
        self.merge_patch(&pod_path(pod), &patch).await
    }

    async fn release(&self, owner: &Value, pod: &Value) -> Result<(), ControllerError> {
        let uid = &owner["metadata"]["uid"];
        let references: Vec<Value> = pod["metadata"]["ownerReferences"].as_array().map(Vec::as_slice).unwrap_or_default().iter().filter(|r| r["uid"] != *uid).cloned().collect();
        let references = if references.is_empty() { Value::Null } else { Value::Array(references) };
        let patch = json!({"metadata": {"ownerReferences": references, "resourceVersion": pod["metadata"]["resourceVersion"]}});
        self.merge_patch(&pod_path(pod), &patch).await.map(drop)
    }

    async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ControllerError> {
        let body = Bytes::from(serde_json::to_vec(patch)?);
        let answer = self.client.request(Method::PATCH, path, Some(("application/merge-patch+json", body))).await?;
        Ok(serde_json::from_slice(&answer)?)
    }

    /// Creates or deletes pods so that `owned.len()` becomes `spec.replicas`.
    async fn manage(&self, key: &str, owner: &Value, owned: &[Arc<Value>]) -> Result<(), ControllerError> {
        let wanted = usize::try_from(owner["spec"]["replicas"].as_i64().unwrap_or(1).max(0)).unwrap_or(0);
        if owned.len() < wanted {
            let count = (wanted - owned.len()).min(BURST_REPLICAS);
            // Recorded before any request, so the informer's add events can never arrive first.
            self.expectations.expect_creations(key, count);
            let (created, result) = self.slow_start_creates(key, owner, count).await;
            let skipped = count - created;
            if skipped > 0 {
                tracing::debug!(%key, skipped, "skipping pod creations after a failure");
                self.expectations.lower_creations(key, skipped);
            }
            result
        } else if owned.len() > wanted {
            let count = (owned.len() - wanted).min(BURST_REPLICAS);
            let refs: Vec<&Value> = owned.iter().map(|p| p.as_ref()).collect();
            let victims: Vec<&Value> = deletion_order(&refs).into_iter().take(count).map(|i| refs[i]).collect();
            self.expectations.expect_deletions(key, victims.iter().filter_map(|p| object_key(p)));
            // Collected first: a closure in the stream's type trips the compiler's Send check
            // for higher-ranked lifetimes once this future is spawned.
            let deletes: Vec<_> = victims.into_iter().map(|pod| self.delete_pod(key, owner, pod)).collect();
            let results: Vec<Result<(), ControllerError>> = stream::iter(deletes).buffer_unordered(CONCURRENT_REQUESTS).collect().await;
            results.into_iter().collect()
        } else {
            Ok(())
        }
    }

    /// Creates `count` pods in batches of 1, 2, 4, ..., each batch's creates all in flight at
    /// once, and stops at the first batch with a failure (Kubernetes' `slowStartBatch`: a quota
    /// or admission error fails once, not 500 times). Returns how many creates were attempted,
    /// and the first error.
    async fn slow_start_creates(&self, key: &str, owner: &Value, count: usize) -> (usize, Result<(), ControllerError>) {
        let mut attempted = 0;
        let mut batch = 1;
        while attempted < count {
            let size = batch.min(count - attempted);
            attempted += size;
            let creates: Vec<_> = (0..size).map(|_| self.create_pod(key, owner)).collect();
            let results: Vec<Result<(), ControllerError>> = futures::future::join_all(creates).await;
            if let Some(error) = results.into_iter().find_map(Result::err) {
                return (attempted, Err(error));
            }
            batch *= 2;
        }
        (attempted, Ok(()))
    }

    async fn create_pod(&self, key: &str, owner: &Value) -> Result<(), ControllerError> {
        let (namespace, name) = split_key(key);
        let template = &owner["spec"]["template"];
        let mut metadata = json!({
            "generateName": format!("{name}-"),
            "namespace": namespace,
            "ownerReferences": [self.owner_reference(owner)],
        });
        for field in ["labels", "annotations", "finalizers"] {
            if !template["metadata"][field].is_null() {
                metadata[field] = template["metadata"][field].clone();
            }
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]});
        match self.client.create_as::<Created>(&format!("/api/v1/namespaces/{namespace}/pods"), &pod).await {
            Ok(created) => {
                self.event(owner, "Normal", "SuccessfulCreate", &format!("Created pod: {}", created.metadata.name));
                Ok(())
            }
            Err(error) => {
                // This pod will never show up in the informer: stop waiting for it.
                self.expectations.creation_observed(key);
                self.event(owner, "Warning", "FailedCreate", &format!("Error creating: {error}"));
                Err(error.into())
            }
        }
    }

    async fn delete_pod(&self, key: &str, owner: &Value, pod: &Value) -> Result<(), ControllerError> {
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        match self.client.request(Method::DELETE, &pod_path(pod), None).await {
            Ok(_) => {
                self.event(owner, "Normal", "SuccessfulDelete", &format!("Deleted pod: {pod_name}"));
                Ok(())
            }
            Err(error) => {
                if let Some(pod_key) = object_key(pod) {
                    self.expectations.deletion_observed(key, &pod_key);
                }
                if matches!(error, ClientError::Status { code: StatusCode::NOT_FOUND, .. }) {
                    return Ok(());
                }
                self.event(owner, "Warning", "FailedDelete", &format!("Error deleting: {error}"));
                Err(error.into())
            }
        }
    }

    async fn patch_status(&self, owner: &Value, status: &Value) -> Result<(), ControllerError> {
        let namespace = owner["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = owner["metadata"]["name"].as_str().unwrap_or_default();
        let path = format!("{}/status", self.kind.object_path(namespace, name));
        match self.merge_patch(&path, &json!({"status": status})).await {
            Ok(_) => Ok(()),
            // Deleted meanwhile: nothing to report.
            Err(ControllerError::Client(ClientError::Status { code: StatusCode::NOT_FOUND, .. })) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Records an Event about the owner, in the background (an Event is best effort).
    fn event(&self, owner: &Value, kind: &str, reason: &str, message: &str) {
        crate::events::record(&self.events, self.kind.component, (self.kind.api_version, self.kind.kind), owner, kind, reason, message);
    }
}

fn pod_path(pod: &Value) -> String {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    format!("/api/v1/namespaces/{namespace}/pods/{name}")
}

/// The owner's status from the pods it controls, and how long until a ready pod becomes available
/// (when one is waiting out minReadySeconds).
/// `failure` (reason, message) is why creating or deleting pods just failed: it becomes the
/// ReplicaFailure condition, which is dropped again after a sync without failure.
pub fn compute_status(owner: &Value, owned: &[Arc<Value>], failure: Option<(&str, String)>, now: jiff::Timestamp) -> (Value, Option<Duration>) {
    let template_labels = owner["spec"]["template"]["metadata"]["labels"].as_object();
    let min_ready = owner["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    let mut wait: Option<Duration> = None;
    for pod in owned {
        let labels = &pod["metadata"]["labels"];
        if template_labels.is_none_or(|t| t.iter().all(|(k, v)| labels.get(k) == Some(v))) {
            fully_labeled += 1;
        }
        if is_ready(pod) {
            ready += 1;
        }
        match availability(pod, min_ready, now) {
            Ok(()) => available += 1,
            Err(Some(remaining)) => wait = Some(wait.map_or(remaining, |w| w.min(remaining))),
            Err(None) => {}
        }
    }
    let mut status = json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
    });
    if let Some(generation) = owner["metadata"]["generation"].as_i64() {
        status["observedGeneration"] = generation.into();
    }
    let existing = owner["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut conditions: Vec<Value> = existing.iter().filter(|c| c["type"] != "ReplicaFailure").cloned().collect();
    if let Some((reason, message)) = failure {
        // The same failure again keeps its condition (and transition time) as it is.
        let previous = existing.iter().find(|c| c["type"] == "ReplicaFailure" && c["reason"] == reason);
        conditions.push(previous.cloned().unwrap_or_else(|| {
            json!({"type": "ReplicaFailure", "status": "True", "reason": reason, "message": message, "lastTransitionTime": now.to_string()})
        }));
    }
    if !conditions.is_empty() {
        status["conditions"] = Value::Array(conditions);
    }
    (status, wait)
}

/// Whether writing `wanted` would change `current`; zero counts equal absent ones, as the API
/// server omits zero-valued counters.
fn status_differs(current: &Value, wanted: &Value) -> bool {
    let number = |v: &Value, field: &str| v[field].as_i64().unwrap_or(0);
    let conditions = |v: &Value| v["conditions"].as_array().cloned().unwrap_or_default();
    ["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"].iter().any(|f| number(current, f) != number(wanted, f))
        || conditions(current) != conditions(wanted)
}

/// The part of a created pod's answer the controller reads: its generated name.
#[derive(serde::Deserialize)]
struct Created {
    metadata: CreatedMetadata,
}

#[derive(serde::Deserialize)]
struct CreatedMetadata {
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_labeled_ready_and_available() {
        let owner = json!({
            "metadata": {"generation": 4},
            "spec": {"minReadySeconds": 10, "template": {"metadata": {"labels": {"app": "web", "extra": "1"}}}},
        });
        let ready_at = |t: &str| json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
        let pods = vec![
            Arc::new(json!({"metadata": {"labels": {"app": "web", "extra": "1"}}, "status": {"conditions": ready_at("2026-01-01T00:00:00Z")}})),
            Arc::new(json!({"metadata": {"labels": {"app": "web"}}, "status": {"conditions": ready_at("2026-01-01T00:00:55Z")}})),
            Arc::new(json!({"metadata": {"labels": {"app": "web", "extra": "1"}}, "status": {}})),
        ];
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let (status, wait) = compute_status(&owner, &pods, None, now);
        assert_eq!(status, json!({"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 1, "observedGeneration": 4}));
        assert_eq!(wait, Some(Duration::from_secs(5)));
        assert!(!status_differs(&status, &status));
        assert!(status_differs(&json!({"replicas": 3}), &status));
        assert!(!status_differs(&json!({}), &json!({"replicas": 0, "readyReplicas": 0})));
    }

    #[test]
    fn replica_failure_condition_comes_and_goes() {
        let owner = json!({"spec": {}, "status": {"conditions": [{"type": "Other", "status": "True"}]}});
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let (failed, _) = compute_status(&owner, &[], Some(("FailedCreate", "quota".to_owned())), now);
        let conditions = failed["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["type"], "ReplicaFailure");
        assert_eq!(conditions[1]["reason"], "FailedCreate");
        assert!(status_differs(&owner["status"], &failed));
        // Failing the same way later keeps the condition unchanged: no status write.
        let later: jiff::Timestamp = "2026-01-01T00:02:00Z".parse().unwrap();
        let (again, _) = compute_status(&json!({"spec": {}, "status": failed}), &[], Some(("FailedCreate", "quota".to_owned())), later);
        assert!(!status_differs(&failed, &again));
        // Success removes it.
        let (healed, _) = compute_status(&json!({"spec": {}, "status": failed}), &[], None, later);
        assert_eq!(healed["conditions"], json!([{"type": "Other", "status": "True"}]));
    }

    #[test]
    fn owner_kind_matches_references_by_group() {
        assert!(REPLICA_SET.is_kind_of(&json!({"apiVersion": "apps/v1", "kind": "ReplicaSet"})));
        assert!(!REPLICA_SET.is_kind_of(&json!({"apiVersion": "v1", "kind": "ReplicaSet"})));
        assert!(REPLICATION_CONTROLLER.is_kind_of(&json!({"apiVersion": "v1", "kind": "ReplicationController"})));
        assert!(!REPLICATION_CONTROLLER.is_kind_of(&json!({"apiVersion": "apps/v1", "kind": "ReplicaSet"})));
    }
}
