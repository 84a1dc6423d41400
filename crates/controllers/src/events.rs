//! Recording Events about objects, best effort, as client-go's event recorder does.

use serde_json::Value;
use tugboat_client::events::{event_name, InvolvedObject, NewEvent};
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
    let metadata = &object["metadata"];
    let field = |name: &str| metadata[name].as_str().unwrap_or_default().to_owned();
    let (name, object_namespace, uid, resource_version) = (field("name"), field("namespace"), field("uid"), field("resourceVersion"));
    let namespace = if object_namespace.is_empty() { "default".to_owned() } else { object_namespace.clone() };
    let (client, kind, reason) = (client.clone(), kind.to_owned(), reason.to_owned());
    tokio::spawn(async move {
        let now = jiff::Timestamp::now();
        let event = NewEvent {
            name: &event_name(&name),
            namespace: &namespace,
            about: InvolvedObject {
                api_version,
                kind: object_kind,
                name: &name,
                namespace: &object_namespace,
                uid: &uid,
                resource_version: &resource_version,
                field_path: "",
            },
            kind: &kind,
            reason: &reason,
            message: &message,
            component,
            host: None,
            first: now,
            last: now,
            count: 1,
        };
        if let Err(error) = client.create_event(&event).await {
            tracing::debug!(%error, "cannot record an event");
        }
    });
}
