//! Events about pods (Pulling, Started, BackOff, Unhealthy ...), written in the background so a
//! slow API server never holds up a pod. A repeat of the same event bumps its count, as
//! `kubectl describe` shows ("x5 over 2m").

use crate::api::ApiClient;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Remembered events beyond this many are forgotten (their repeats become new events).
const REMEMBERED_EVENTS: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

struct Seen {
    name: String,
    count: u64,
    first: String,
}

pub struct Recorder {
    api: ApiClient,
    node_name: String,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

impl Recorder {
    pub fn new(api: ApiClient, node_name: &str) -> Self {
        Self { api, node_name: node_name.to_owned(), seen: Arc::default() }
    }

    /// Records an event about `pod`; `field_path` names a container as `spec.containers{name}`.
    pub fn pod(&self, pod: &Pod, field_path: Option<String>, kind: EventType, reason: &str, message: String) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = jiff::Timestamp::now().to_string();
        let key = format!("{uid}/{}/{reason}/{message}", field_path.as_deref().unwrap_or_default());
        // (event name, count, first timestamp) of this event, counting this occurrence.
        let (event_name, count, first) = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() >= REMEMBERED_EVENTS {
                seen.clear();
            }
            let entry = seen.entry(key).or_insert_with(|| Seen { name: format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond()), count: 0, first: now.clone() });
            entry.count += 1;
            (entry.name.clone(), entry.count, entry.first.clone())
        };
        let api = self.api.clone();
        let kind = if kind == EventType::Normal { "Normal" } else { "Warning" };
        let collection = format!("/api/v1/namespaces/{namespace}/events");
        if count > 1 {
            let path = format!("{collection}/{event_name}");
            tokio::spawn(async move {
                let patch = json!({"count": count, "lastTimestamp": now, "firstTimestamp": first});
                if let Err(error) = api.merge_patch(&path, &patch).await {
                    tracing::debug!(%error, "cannot update an event");
                }
            });
            return;
        }
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace, "uid": uid, "fieldPath": field_path},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
        });
        tokio::spawn(async move {
            if let Err(error) = api.create(&collection, &event).await {
                tracing::debug!(%error, "cannot record an event");
            }
        });
    }
}
