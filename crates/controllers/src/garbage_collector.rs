//! The garbage collector: dependents (pods, ReplicaSets) follow their owners through
//! ownerReferences.
//!
//! - Background (the default): once an owner is gone, its dependents are deleted.
//! - Orphan: an owner being deleted with the `orphan` finalizer first has its ownerReference removed
//!   from every dependent, then loses the finalizer (and with it, its object).
//! - Foreground: an owner being deleted with the `foregroundDeletion` finalizer first has its
//!   dependents deleted (those owning others in the foreground too); once none are left, it loses
//!   the finalizer.
//!
//! Watch-driven: informers keep the owners' UIDs and the dependents; every change re-examines the
//! owners involved. Owner kinds it does not watch are never taken for gone.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tugboat_client::Client;

use crate::runtime::{Change, SharedInformers};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

/// Kinds whose objects own others: (apiVersion, kind, collection path).
const OWNERS: &[(&str, &str, &str)] = &[
    ("apps/v1", "ReplicaSet", "/apis/apps/v1/replicasets"),
    ("apps/v1", "Deployment", "/apis/apps/v1/deployments"),
    ("apps/v1", "StatefulSet", "/apis/apps/v1/statefulsets"),
    ("apps/v1", "DaemonSet", "/apis/apps/v1/daemonsets"),
    ("v1", "ReplicationController", "/api/v1/replicationcontrollers"),
    ("batch/v1", "Job", "/apis/batch/v1/jobs"),
];
/// Kinds whose objects are owned: (collection path, object path prefix builder).
const DEPENDENTS: &[(&str, &str)] = &[("/api/v1/pods", "/api/v1/namespaces/{ns}/pods/{name}"), ("/apis/apps/v1/replicasets", "/apis/apps/v1/namespaces/{ns}/replicasets/{name}")];

#[derive(Clone)]
struct Dependent {
    uid: String,
    path: String,
    namespace: String,
    owners: Vec<Value>,
}

impl Dependent {
    fn owner_uids(&self) -> impl Iterator<Item = &str> {
        self.owners.iter().filter_map(|o| o["uid"].as_str())
    }
}

/// The API path of an owner named by an ownerReference, for owner kinds the collector knows.
fn owner_path(reference: &Value, namespace: &str) -> Option<String> {
    let kind = reference["kind"].as_str()?;
    let (_, _, collection) = OWNERS.iter().find(|(api_version, k, _)| *k == kind && reference["apiVersion"] == *api_version)?;
    let (prefix, plural) = collection.rsplit_once('/')?;
    Some(format!("{prefix}/namespaces/{namespace}/{plural}/{}", reference["name"].as_str()?))
}

#[derive(Default)]
struct Graph {
    /// Live owners by UID: (kind, object), and which owner kinds have been listed at least once.
    owners: HashMap<String, (String, Arc<Value>)>,
    listed_kinds: HashSet<String>,
    /// Dependents by UID.
    dependents: HashMap<String, Dependent>,
    /// Dependent UIDs by the UID of each of their owners: an owner's dependents without a scan.
    by_owner: HashMap<String, HashSet<String>>,
    /// Owner UIDs to look at again.
    dirty: HashSet<String>,
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

fn object_path(template: &str, object: &Value) -> String {
    template
        .replace("{ns}", object["metadata"]["namespace"].as_str().unwrap_or_default())
        .replace("{name}", object["metadata"]["name"].as_str().unwrap_or_default())
}

pub struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    wake: Notify,
}

impl GarbageCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_owner(&self, kind: &str, event: &str, object: Arc<Value>) {
        let mut graph = self.lock();
        let id = uid(&object);
        if event == "DELETED" {
            graph.owners.remove(&id);
        } else {
            graph.owners.insert(id.clone(), (kind.to_owned(), object));
        }
        graph.listed_kinds.insert(kind.to_owned());
        graph.dirty.insert(id);
        self.wake.notify_one();
    }

    fn on_dependent(&self, template: &str, event: &str, object: &Value) {
        let mut guard = self.lock();
        let graph = &mut *guard;
        let id = uid(object);
        let owners: Vec<Value> = object["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        for owner in &owners {
            graph.dirty.insert(owner["uid"].as_str().unwrap_or_default().to_owned());
        }
        if let Some(previous) = graph.dependents.remove(&id) {
            for owner in previous.owner_uids() {
                if let Some(set) = graph.by_owner.get_mut(owner) {
                    set.remove(&id);
                    if set.is_empty() {
                        graph.by_owner.remove(owner);
                    }
                }
            }
        }
        if event != "DELETED" && !owners.is_empty() {
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
            let dependent = Dependent { uid: id.clone(), path: object_path(template, object), namespace, owners };
            for owner in dependent.owner_uids() {
                graph.by_owner.entry(owner.to_owned()).or_default().insert(id.clone());
            }
            graph.dependents.insert(id, dependent);
        }
        self.wake.notify_one();
    }

    async fn send(&self, method: Method, path: &str, body: Value, content_type: &str) {
        let result = self.client.request(method, path, Some((content_type, Bytes::from(body.to_string())))).await;
        if let Err(error) = result {
            tracing::debug!(%error, path, "garbage collector write failed (retried on the next change)");
        }
    }

    /// Examines one owner UID: its dependents' fate follows its state.
    async fn process(&self, owner_uid: &str) {
        let (owner, dependents, kind_known, owning) = {
            let graph = self.lock();
            let owner = graph.owners.get(owner_uid).cloned();
            // The common case: a live owner not being deleted leaves its dependents alone.
            if owner.as_ref().is_some_and(|(_, object)| object["metadata"]["deletionTimestamp"].is_null()) {
                return;
            }
            let dependents: Vec<Dependent> = graph.by_owner.get(owner_uid).into_iter().flatten().filter_map(|id| graph.dependents.get(id)).cloned().collect();
            let kind = dependents.iter().flat_map(|d| d.owners.iter()).find(|o| o["uid"] == owner_uid).and_then(|o| o["kind"].as_str()).unwrap_or_default().to_owned();
            // Dependents with dependents of their own (a Deployment's ReplicaSets own pods).
            let owning: HashSet<String> = dependents.iter().filter(|d| graph.by_owner.contains_key(&d.uid)).map(|d| d.uid.clone()).collect();
            (owner, dependents, graph.listed_kinds.contains(&kind), owning)
        };
        match owner {
            None if kind_known => {
                // Background: the owner is gone; so go its dependents. The informers may lag
                // (a new owner's dependents can be seen before the owner): ask the API first.
                let Some(first) = dependents.first() else { return };
                let reference = first.owners.iter().find(|o| o["uid"] == owner_uid).cloned().unwrap_or_default();
                if let Some(path) = owner_path(&reference, &first.namespace) {
                    if let Ok(live) = self.client.get(&path).await {
                        if live["metadata"]["uid"] == owner_uid {
                            return;
                        }
                    }
                }
                for dependent in dependents {
                    let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
                    self.send(Method::DELETE, &dependent.path, options, "application/json").await;
                }
            }
            None => {}
            Some((kind, object)) => {
                let finalizers: Vec<String> = object["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(str::to_owned)).collect();
                let deleting = object["metadata"]["deletionTimestamp"].is_string();
                let api_version = OWNERS.iter().find(|(_, k, _)| *k == kind).map(|(v, _, _)| *v).unwrap_or_default();
                let reference = json!({"apiVersion": api_version, "kind": kind, "name": object["metadata"]["name"]});
                let Some(owner_path) = owner_path(&reference, object["metadata"]["namespace"].as_str().unwrap_or_default()) else { return };
                if deleting && finalizers.iter().any(|f| f == ORPHAN) {
                    for dependent in &dependents {
                        let remaining: Vec<&Value> = dependent.owners.iter().filter(|o| o["uid"] != owner_uid).collect();
                        // null removes the field: an orphan has no ownerReferences at all.
                        let references = if remaining.is_empty() { Value::Null } else { json!(remaining) };
                        self.send(Method::PATCH, &dependent.path, json!({"metadata": {"ownerReferences": references}}), "application/merge-patch+json").await;
                    }
                    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != ORPHAN).collect();
                    self.send(Method::PATCH, &owner_path, json!({"metadata": {"finalizers": rest}}), "application/merge-patch+json").await;
                } else if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
                    if dependents.is_empty() {
                        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FOREGROUND).collect();
                        self.send(Method::PATCH, &owner_path, json!({"metadata": {"finalizers": rest}}), "application/merge-patch+json").await;
                    } else {
                        for dependent in dependents {
                            // As Kubernetes: a dependent that owns others goes in the foreground
                            // too, so the owner waits for the whole tree (Deployment → ReplicaSets → pods).
                            let policy = if owning.contains(&dependent.uid) { "Foreground" } else { "Background" };
                            let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy});
                            self.send(Method::DELETE, &dependent.path, options, "application/json").await;
                        }
                    }
                }
            }
        }
    }
}

/// Runs the garbage collector on the controller manager's shared informers until `shutdown`
/// resolves.
pub async fn run(informers: &SharedInformers, shutdown: impl std::future::Future<Output = ()>) {
    let collector = Arc::new(GarbageCollector { client: informers.client().clone(), graph: Mutex::default(), wake: Notify::new() });
    let mut tasks = tokio::task::JoinSet::new();
    for (_, kind, collection) in OWNERS {
        let collector = collector.clone();
        informers.subscribe(
            collection,
            Arc::new(move |change: &Change| {
                let (event, object) = change.event();
                collector.on_owner(kind, event, object.clone());
            }),
        );
    }
    for (collection, template) in DEPENDENTS {
        let collector = collector.clone();
        informers.subscribe(
            collection,
            Arc::new(move |change: &Change| {
                let (event, object) = change.event();
                collector.on_dependent(template, event, object);
            }),
        );
    }
    let worker = collector.clone();
    tasks.spawn(async move {
        let mut passes = 0u32;
        loop {
            passes = passes.wrapping_add(1);
            if passes.is_multiple_of(6) {
                // Every ~30 s every owner is looked at again, retrying writes that failed.
                let mut graph = worker.lock();
                let all: Vec<String> = graph.by_owner.keys().cloned().collect();
                graph.dirty.extend(all);
            }
            let dirty: Vec<String> = std::mem::take(&mut worker.lock().dirty).into_iter().collect();
            for owner in &dirty {
                worker.process(owner).await;
            }
            // Writes echo back as events that mark owners dirty again; a periodic pass also
            // retries writes that failed.
            let _ = tokio::time::timeout(Duration::from_secs(5), worker.wake.notified()).await;
        }
    });
    shutdown.await;
    tasks.abort_all();
}
