//! The pods bound to this node: list, then watch (relisting after errors and 410 Gone), and one
//! worker task per pod UID. Runtime leftovers of pods the API no longer has are cleaned up.

use crate::pleg::Pleg;
use crate::worker::Worker;
use crate::Context;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};

const RELIST_BACKOFF: Duration = Duration::from_secs(1);
const ORPHAN_SWEEP: Duration = Duration::from_secs(30);

/// The pods this node runs, by UID, for the parts of the agent that look pods up by name.
#[derive(Default)]
pub struct KnownPods {
    pods: RwLock<HashMap<String, Pod>>,
}

impl KnownPods {
    pub fn find(&self, namespace: &str, name: &str) -> Option<Pod> {
        let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
        pods.values().find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(name)).cloned()
    }

    pub fn all(&self) -> Vec<Pod> {
        self.pods.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

pub struct PodSource {
    context: Arc<Context>,
    pleg: Arc<Pleg>,
    workers: HashMap<String, watch::Sender<Option<Pod>>>,
}

impl PodSource {
    pub fn new(context: Arc<Context>, pleg: Arc<Pleg>) -> Self {
        Self { context, pleg, workers: HashMap::new() }
    }

    fn update(&mut self, pod: Option<Pod>, uid: &str) {
        {
            let mut known = self.context.pods.pods.write().unwrap_or_else(|p| p.into_inner());
            match &pod {
                Some(pod) => known.insert(uid.to_owned(), pod.clone()),
                None => known.remove(uid),
            };
        }
        if let Some(sender) = self.workers.get(uid) {
            if !sender.is_closed() {
                sender.send_replace(pod);
                return;
            }
        }
        // A worker for a new pod (or one gone from the API that still has runtime leftovers).
        let (sender, receiver) = watch::channel(pod);
        let wake = Arc::new(Notify::new());
        self.pleg.watch(uid, wake.clone());
        let worker = Worker::new(self.context.clone(), uid.to_owned(), receiver, wake);
        let pleg = self.pleg.clone();
        let owned_uid = uid.to_owned();
        tokio::spawn(async move {
            worker.run().await;
            pleg.forget(&owned_uid);
        });
        self.workers.insert(uid.to_owned(), sender);
    }

    fn collection(&self) -> String {
        format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", self.context.config.node_name)
    }

    /// Lists the node's pods, updates every worker, and ends those of vanished pods.
    async fn relist(&mut self) -> Result<String, tugboat_client::ClientError> {
        let list = self.context.api.client().get(&self.collection()).await?;
        let version = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned();
        let mut present = HashSet::new();
        for item in list["items"].as_array().into_iter().flatten() {
            if let Ok(pod) = serde_json::from_value::<Pod>(item.clone()) {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                present.insert(uid.clone());
                self.update(Some(pod), &uid);
            }
        }
        let vanished: Vec<String> = self.workers.keys().filter(|uid| !present.contains(*uid)).cloned().collect();
        for uid in vanished {
            self.update(None, &uid);
        }
        Ok(version)
    }

    /// Runtime sandboxes of pods the API does not have (deleted while the agent was away) get a
    /// worker that stops and removes them.
    async fn sweep_orphans(&mut self) {
        let Ok(runtime_pods) = self.pleg.relist().await else { return };
        for uid in runtime_pods.keys() {
            let known = self.workers.get(uid).is_some_and(|sender| !sender.is_closed());
            if !known {
                tracing::info!(pod = %uid, "stopping runtime leftovers of a pod the API server no longer has");
                self.update(None, uid);
            }
        }
        self.workers.retain(|_, sender| !sender.is_closed());
    }

    pub async fn run(mut self) {
        let mut sweep = tokio::time::interval(ORPHAN_SWEEP);
        loop {
            let version = match self.relist().await {
                Ok(version) => version,
                Err(error) => {
                    tracing::warn!(%error, "cannot list the node's pods; retrying");
                    tokio::time::sleep(RELIST_BACKOFF).await;
                    continue;
                }
            };
            let path = format!("{}&watch=true&allowWatchBookmarks=true&resourceVersion={version}", self.collection());
            let mut events = match self.context.api.client().watch(&path).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch the node's pods; relisting");
                    tokio::time::sleep(RELIST_BACKOFF).await;
                    continue;
                }
            };
            use futures::StreamExt;
            loop {
                tokio::select! {
                    event = events.next() => {
                        let Some(Ok(event)) = event else { break };
                        if !self.apply(event) {
                            break;
                        }
                    }
                    _ = sweep.tick() => self.sweep_orphans().await,
                }
            }
            tokio::time::sleep(RELIST_BACKOFF).await;
        }
    }

    /// Applies a watch event; false when the watch must be restarted (an ERROR event, e.g. 410).
    fn apply(&mut self, event: Value) -> bool {
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        if kind == "ERROR" {
            return false;
        }
        if kind == "BOOKMARK" {
            return true;
        }
        let Ok(pod) = serde_json::from_value::<Pod>(event["object"].clone()) else { return true };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.update(if kind == "DELETED" { None } else { Some(pod) }, &uid);
        true
    }
}
