//! The namespace controller: empties a terminating namespace and then lets it go, as Kubernetes'
//! does. What to delete comes from discovery (every namespaced resource that supports
//! deletecollection, in its group's preferred version); each collection is deleted with
//! background cascading, the namespace is checked until every list comes back empty (finalizers
//! and graceful pod deletion take their time), and then the `kubernetes` finalizer comes off
//! through `namespaces/{name}/finalize`, after which the API server removes the namespace.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tugboat_client::{Client, ClientError};

use crate::runtime::{Change, SharedInformers};

/// The finalizer this controller owns, in a namespace's `spec.finalizers`.
const FINALIZER: &str = "kubernetes";
/// How long after a namespace starts terminating its contents are deleted. `kubectl delete -f`
/// deletes a manifest's Namespace and then, one by one, the objects in it: emptying the
/// namespace at once would make those later deletes fail with NotFound.
const CLEANUP_DELAY: Duration = Duration::from_secs(2);
/// How soon a namespace that still holds objects is looked at again.
const RECHECK: Duration = Duration::from_millis(250);
/// How soon a pass that failed (the API unreachable) is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Whether this controller has work in `namespace`: deleted, and still holding its finalizer.
fn terminating(namespace: &Value) -> bool {
    namespace["metadata"]["deletionTimestamp"].is_string()
        && namespace["spec"]["finalizers"].as_array().is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

struct Controller {
    client: Client,
    /// Namespaces being emptied now, each by one task.
    emptying: Mutex<HashSet<String>>,
}

impl Controller {
    fn emptying(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.emptying.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties `name` and lets it go; returns once it is gone or no longer terminating.
    async fn finalize(&self, name: &str) {
        tokio::time::sleep(CLEANUP_DELAY).await;
        // Found through discovery once per namespace, not on every look.
        let mut collections = None;
        loop {
            match self.pass(name, &mut collections).await {
                Ok(true) => return,
                Ok(false) => tokio::time::sleep(RECHECK).await,
                Err(error) => {
                    tracing::debug!(%error, namespace = name, "cannot empty the terminating namespace yet; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// One look at the namespace: deletes what is in it and, when nothing is left, releases it.
    /// `Ok(true)` when there is nothing more to do. `collections`: the namespace's collection
    /// paths, discovered on the first look.
    async fn pass(&self, name: &str, collections: &mut Option<Vec<String>>) -> Result<bool, ClientError> {
        let namespace = match self.client.get(&format!("/api/v1/namespaces/{name}")).await {
            Ok(namespace) => namespace,
            Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => return Ok(true),
            Err(error) => return Err(error),
        };
        if !terminating(&namespace) {
            return Ok(true);
        }
        let collections = match collections {
            Some(known) => known,
            None => collections.insert(self.collections(name).await?),
        };
        if self.delete_contents(collections).await? > 0 {
            return Ok(false);
        }
        let finalizers: Vec<&Value> = namespace["spec"]["finalizers"].as_array().into_iter().flatten().filter(|f| *f != FINALIZER).collect();
        let finalized = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "resourceVersion": namespace["metadata"]["resourceVersion"]},
            "spec": {"finalizers": finalizers},
        });
        let body = Bytes::from(finalized.to_string());
        match self.client.request(Method::PUT, &format!("/api/v1/namespaces/{name}/finalize"), Some(("application/json", body))).await {
            Ok(_) | Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => Ok(true),
            // Changed meanwhile: look again from a fresh read.
            Err(ClientError::Status { code: StatusCode::CONFLICT, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deletes every one of a namespace's `collections` and answers how many objects are still there.
    async fn delete_contents(&self, collections: &[String]) -> Result<usize, ClientError> {
        let background = Bytes::from_static(br#"{"apiVersion":"v1","kind":"DeleteOptions","propagationPolicy":"Background"}"#);
        let mut remaining = 0;
        for collection in collections {
            self.client.request(Method::DELETE, collection, Some(("application/json", background.clone()))).await?;
            remaining += self.client.get(collection).await?["items"].as_array().map_or(0, Vec::len);
        }
        Ok(remaining)
    }

    /// The collection path in `namespace` of every namespaced resource that can be deleted as a
    /// collection, found through discovery.
    async fn collections(&self, namespace: &str) -> Result<Vec<String>, ClientError> {
        let groups = self.client.get("/apis").await?;
        let preferred = groups["groups"].as_array().into_iter().flatten().filter_map(|g| g["preferredVersion"]["groupVersion"].as_str());
        let group_versions: Vec<String> = std::iter::once("api/v1".to_owned()).chain(preferred.map(|gv| format!("apis/{gv}"))).collect();
        let mut collections = Vec::new();
        for group_version in group_versions {
            let resources = self.client.get(&format!("/{group_version}")).await?;
            for resource in resources["resources"].as_array().into_iter().flatten() {
                let name = resource["name"].as_str().unwrap_or_default();
                let deletable = resource["verbs"].as_array().is_some_and(|verbs| verbs.iter().any(|v| v == "deletecollection"));
                // Subresources (`pods/status`) are named with a slash.
                if resource["namespaced"] == true && deletable && !name.contains('/') {
                    collections.push(format!("/{group_version}/namespaces/{namespace}/{name}"));
                }
            }
        }
        Ok(collections)
    }
}

/// Runs the namespace controller on the controller manager's shared informers until `shutdown`
/// resolves.
pub async fn run(informers: &SharedInformers, shutdown: impl Future<Output = ()>) {
    let controller = Arc::new(Controller { client: informers.client().clone(), emptying: Mutex::default() });
    let (found, mut terminating_names) = tokio::sync::mpsc::unbounded_channel::<String>();
    informers.subscribe(
        "/api/v1/namespaces",
        Arc::new(move |change: &Change| {
            if let Change::Added(namespace) | Change::Updated { new: namespace, .. } = change {
                if terminating(namespace) {
                    // The receiver lives until shutdown; a send fails only after it.
                    let _ = found.send(namespace["metadata"]["name"].as_str().unwrap_or_default().to_owned());
                }
            }
        }),
    );
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(name) = terminating_names.recv() => {
                if controller.emptying().insert(name.clone()) {
                    let controller = controller.clone();
                    tasks.spawn(async move {
                        controller.finalize(&name).await;
                        controller.emptying().remove(&name);
                    });
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
}
