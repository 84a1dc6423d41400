//! Events about pods (Pulling, Started, BackOff, Unhealthy ...), written in the background (by a
//! [`tugboat_client::events::Recorder`]) so a slow API server never holds up a pod. A repeat of
//! the same event bumps its count, as `kubectl describe` shows ("x5 over 2m").

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tugboat_client::events::{self, event_name, seconds, InvolvedObject, NewEvent};
use tugboat_client::Client;

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
    first: jiff::Timestamp,
}

pub struct Recorder {
    writer: events::Recorder,
    node_name: String,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

impl Recorder {
    /// Starts the writer; needs a Tokio runtime.
    pub fn new(client: Client, node_name: &str) -> Self {
        Self { writer: events::Recorder::start(client), node_name: node_name.to_owned(), seen: Arc::default() }
    }

    /// Records an event about `pod`; `field_path` names a container as `spec.containers{name}`.
    pub fn pod(&self, pod: &Pod, field_path: Option<String>, kind: EventType, reason: &str, message: String) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let field_path = field_path.unwrap_or_default();
        let now = jiff::Timestamp::now();
        let key = format!("{uid}/{field_path}/{reason}/{message}");
        // (event name, count, first timestamp) of this event, counting this occurrence.
        let (event_name, count, first) = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() >= REMEMBERED_EVENTS {
                seen.clear();
            }
            let entry = seen.entry(key).or_insert_with(|| Seen { name: event_name(&name), count: 0, first: now });
            entry.count += 1;
            (entry.name.clone(), entry.count, entry.first)
        };
        let kind = if kind == EventType::Normal { "Normal" } else { "Warning" };
        if count > 1 {
            let path = format!("/api/v1/namespaces/{namespace}/events/{event_name}");
            self.writer.patch(path, &json!({"count": count, "lastTimestamp": seconds(now), "firstTimestamp": seconds(first)}));
            return;
        }
        self.writer.create(&NewEvent {
            name: &event_name,
            namespace: &namespace,
            about: InvolvedObject { api_version: "v1", kind: "Pod", name: &name, namespace: &namespace, uid: &uid, resource_version: "", field_path: &field_path },
            kind,
            reason,
            message: &message,
            component: "kubelet",
            host: Some(&self.node_name),
            first: now,
            last: now,
            count: 1,
        });
    }
}
