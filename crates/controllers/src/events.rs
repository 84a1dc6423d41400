//! Recording Events about objects, best effort, as client-go's event recorder does: each
//! controller records through its own [`Recorder`].

use serde_json::Value;
use tugboat_client::events::{event_name, InvolvedObject, NewEvent, Recorder};

/// Who reports an Event: `source.component` and `reportingComponent`.
pub const NODE_CONTROLLER: &str = "node-controller";
pub const TAINT_EVICTION_CONTROLLER: &str = "taint-eviction-controller";

/// The kind of object an Event is about: (apiVersion, kind). List items carry neither.
pub type InvolvedKind = (&'static str, &'static str);
pub const NODE: InvolvedKind = ("v1", "Node");
pub const POD: InvolvedKind = ("v1", "Pod");

/// Records a `kind` (Normal or Warning) Event about `object` (see [`Recorder`]); a cluster-scoped
/// object's Events go to the `default` namespace, as in Kubernetes.
pub fn record(events: &Recorder, component: &'static str, (api_version, object_kind): InvolvedKind, object: &Value, kind: &str, reason: &str, message: &str) {
    let metadata = &object["metadata"];
    let field = |name: &str| metadata[name].as_str().unwrap_or_default();
    let (name, object_namespace) = (field("name"), field("namespace"));
    let now = jiff::Timestamp::now();
    events.create(&NewEvent {
        name: &event_name(name),
        namespace: if object_namespace.is_empty() { "default" } else { object_namespace },
        about: InvolvedObject {
            api_version,
            kind: object_kind,
            name,
            namespace: object_namespace,
            uid: field("uid"),
            resource_version: field("resourceVersion"),
            field_path: "",
        },
        kind,
        reason,
        message,
        component,
        host: None,
        first: now,
        last: now,
        count: 1,
    });
}
