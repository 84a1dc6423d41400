//! Builders shared by the unit tests: Ready nodes, pods from JSON, a cache of both.

use crate::cache::Cache;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

/// A Ready node with `cpu` millicores, 8 GiB, 110 pods and the given labels.
pub fn node(name: &str, labels: Value, cpu_millis: i64) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": format!("{cpu_millis}m"), "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("a valid node")
}

/// A pod in namespace `default` (UID = name) with `labels`, requesting `cpu`, plus `spec` fields.
pub fn pod(name: &str, labels: Value, cpu: &str, spec: Value) -> Pod {
    let mut value = json!({
        "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]},
    });
    if let (Some(target), Some(extra)) = (value["spec"].as_object_mut(), spec.as_object()) {
        target.extend(extra.clone());
    }
    serde_json::from_value(value).expect("a valid pod")
}

/// A cache with nodes named `names`, each labelled with its zone (`zone-of(name)`) and hostname.
pub fn cache(nodes: &[(&str, &str)], cpu_millis: i64) -> Cache {
    let mut cache = Cache::default();
    for (name, zone) in nodes {
        cache.set_node(&node(name, json!({"kubernetes.io/hostname": name, "zone": zone}), cpu_millis));
    }
    cache
}

/// Places a pod on a node in the cache.
pub fn place(cache: &mut Cache, pod: &Pod, node: &str) {
    cache.place(pod.metadata.uid.as_deref().unwrap_or_default(), pod, node);
}
