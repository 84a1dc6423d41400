//! Recording Events about objects, best effort, as client-go's event recorder does.

use serde_json::{json, Value};
use tugboat_client::Client;

/// Who reports an Event: `source.component` and `reportingComponent`.
pub const NODE_CONTROLLER: &str = "node-controller";
pub const TAINT_EVICTION_CONTROLLER: &str = "taint-eviction-controller";

/// The kind of object an Event is about: (apiVersion, kind). List items carry neither.
pub type InvolvedKind = (&'static str, &'static str);
pub const NODE: InvolvedKind = ("v1", "Node");
pub const POD: InvolvedKind = ("v1", "Pod");

/// Records a `kind` (Normal or Warning) Event about `object` in the background; a cluster-scoped
/// object's Events go to the `default` namespace, as in Kubernetes.
pub fn record(client: &Client, component: &'static str, (api_version, object_kind): InvolvedKind, object: &Value, kind: &str, reason: &str, message: String) {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let object_namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let namespace = if object_namespace.is_empty() { "default" } else { object_namespace }.to_owned();
    let now = jiff::Timestamp::now();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": namespace},
        "involvedObject": {
            "apiVersion": api_version, "kind": object_kind, "name": name, "namespace": object_namespace,
            "uid": object["metadata"]["uid"], "resourceVersion": object["metadata"]["resourceVersion"],
        },
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(),
        "source": {"component": component},
        "reportingComponent": component,
    });
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = client.create_as::<serde::de::IgnoredAny>(&format!("/api/v1/namespaces/{namespace}/events"), &event).await {
            tracing::debug!(%error, "cannot record an event");
        }
    });
}
