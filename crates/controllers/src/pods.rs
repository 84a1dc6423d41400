//! Pure rules about pods: activity, readiness, availability, and the order in which surplus pods
//! are deleted (Kubernetes' `ActivePodsWithRanks`).

use serde_json::Value;
use std::cmp::Ordering;
use tugboat_client::Shape;

/// The fields of a pod the controllers read, and nothing else: the shared pod informer caches
/// pods in this shape (client-go's transform), so 150,000 pods cost a few KB each, not a full
/// copy, and decoding a pod event skips the rest. Every rule in this crate that reads pods must
/// find its fields here.
pub fn summary() -> Shape {
    Shape::of(&[
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "metadata.resourceVersion",
        "metadata.labels",
        "metadata.ownerReferences",
        "metadata.deletionTimestamp",
        "metadata.creationTimestamp",
        "spec.nodeName",
        "spec.tolerations",
        "status.phase",
        "status.conditions.type",
        "status.conditions.status",
        "status.conditions.lastTransitionTime",
        "status.containerStatuses.restartCount",
    ])
}

/// A pod that counts toward replicas: not terminating and not finished.
pub fn is_active(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null() && !matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some()
}

/// When the pod became Ready (the condition's lastTransitionTime), if it is Ready and says so.
pub fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    ready_condition(pod)?["lastTransitionTime"].as_str()?.parse().ok()
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`; otherwise, when it is
/// Ready but not yet long enough, how long until it will be available.
pub fn availability(pod: &Value, min_ready_seconds: i64, now: jiff::Timestamp) -> Result<(), Option<std::time::Duration>> {
    if !is_ready(pod) {
        return Err(None);
    }
    if min_ready_seconds <= 0 {
        return Ok(());
    }
    // Ready without a transition time: the kubelet always sets it, so treat as just ready.
    let Some(since) = ready_since(pod) else { return Err(Some(std::time::Duration::from_secs(min_ready_seconds.unsigned_abs()))) };
    let available_at = since.as_second().saturating_add(min_ready_seconds);
    let remaining = available_at - now.as_second();
    if remaining <= 0 {
        Ok(())
    } else {
        Err(Some(std::time::Duration::from_secs(remaining.unsigned_abs())))
    }
}

fn phase_rank(pod: &Value) -> u8 {
    match pod["status"]["phase"].as_str() {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn restarts(pod: &Value) -> i64 {
    pod["status"]["containerStatuses"].as_array().map(|all| all.iter().map(|c| c["restartCount"].as_i64().unwrap_or(0)).max().unwrap_or(0)).unwrap_or(0)
}

fn node(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

fn created(pod: &Value) -> Option<jiff::Timestamp> {
    pod["metadata"]["creationTimestamp"].as_str()?.parse().ok()
}

/// Kubernetes' deletion order ("which pod to give up first"), as `ActivePodsWithRanks.Less`:
/// unscheduled before scheduled; Pending < Unknown < Running; not ready before ready; more related
/// pods on the same node first (`rank`); ready for less time first; more restarts first; newer first.
fn delete_first(a: (&Value, usize), b: (&Value, usize)) -> Ordering {
    let (pa, ra) = a;
    let (pb, rb) = b;
    let unscheduled = |p: &Value| node(p).is_empty();
    unscheduled(pb)
        .cmp(&unscheduled(pa))
        .then_with(|| phase_rank(pa).cmp(&phase_rank(pb)))
        .then_with(|| is_ready(pa).cmp(&is_ready(pb)))
        .then_with(|| rb.cmp(&ra))
        .then_with(|| match (is_ready(pa) && is_ready(pb), ready_since(pa), ready_since(pb)) {
            // Both ready: the one ready more recently goes first; an unknown time counts as most recent.
            (true, a_since, b_since) => match (a_since, b_since) {
                (Some(x), Some(y)) => y.cmp(&x),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(pb).cmp(&restarts(pa)))
        .then_with(|| match (created(pa), created(pb)) {
            (Some(x), Some(y)) => y.cmp(&x),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        // Not in Kubernetes: a total order, so reconciles that run on the same (possibly stale)
        // cache pick the same victims instead of different ones.
        .then_with(|| pa["metadata"]["name"].as_str().cmp(&pb["metadata"]["name"].as_str()))
}

/// Indices of `pods`, the ones to delete first at the front. `related` are all of the owner's
/// active pods, used to rank pods on crowded nodes first (spreading what remains).
pub fn deletion_order(pods: &[&Value]) -> Vec<usize> {
    let mut per_node = std::collections::HashMap::<&str, usize>::new();
    for pod in pods {
        if !node(pod).is_empty() {
            *per_node.entry(node(pod)).or_default() += 1;
        }
    }
    let rank = |pod: &Value| if node(pod).is_empty() { 0 } else { per_node.get(node(pod)).copied().unwrap_or(0) };
    let mut order: Vec<usize> = (0..pods.len()).collect();
    order.sort_by(|&a, &b| delete_first((pods[a], rank(pods[a])), (pods[b], rank(pods[b]))));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_keeps_what_the_rules_read() {
        let full = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7", "labels": {"app": "a"}, "annotations": {"big": "x"},
                "ownerReferences": [{"uid": "o", "controller": true}], "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}], "tolerations": [{"key": "k", "operator": "Exists"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z", "message": "m"}],
                "containerStatuses": [{"name": "c", "restartCount": 3, "image": "i"}]},
        });
        let kept = summary().apply(&full);
        assert!(kept["metadata"]["annotations"].is_null() && kept["spec"]["containers"].is_null() && kept["status"]["podIP"].is_null());
        assert_eq!(kept["metadata"]["labels"]["app"], "a");
        assert_eq!(kept["spec"]["tolerations"][0]["key"], "k");
        for rule in [is_active, is_ready] {
            assert_eq!(rule(&kept), rule(&full));
        }
        assert_eq!(ready_since(&kept), ready_since(&full));
        assert_eq!(restarts(&kept), restarts(&full));
        assert_eq!(node(&kept), node(&full));
        assert_eq!(created(&kept), created(&full));
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<&str>, created: &str) -> Value {
        let conditions = match ready_at {
            Some(at) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}]),
            None => json!([{"type": "Ready", "status": "False"}]),
        };
        json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conditions},
        })
    }

    fn names(pods: &[Value]) -> Vec<String> {
        let refs: Vec<&Value> = pods.iter().collect();
        deletion_order(&refs).into_iter().map(|i| pods[i]["metadata"]["name"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn unscheduled_pending_unready_go_first() {
        let pods = vec![
            pod("running-ready", "n1", "Running", Some("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z"),
            pod("running-unready", "n2", "Running", None, "2026-01-01T00:00:00Z"),
            pod("unscheduled", "", "Pending", None, "2026-01-01T00:00:00Z"),
            pod("pending", "n3", "Pending", None, "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(names(&pods), ["unscheduled", "pending", "running-unready", "running-ready"]);
    }

    #[test]
    fn crowded_node_then_recently_ready_then_newer_first() {
        let pods = vec![
            pod("old-alone", "n1", "Running", Some("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z"),
            pod("crowded-a", "n2", "Running", Some("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z"),
            pod("crowded-b", "n2", "Running", Some("2026-01-02T00:00:00Z"), "2026-01-01T00:00:00Z"),
        ];
        // Both n2 pods outrank the lone one; of them, the one ready more recently goes first.
        assert_eq!(names(&pods), ["crowded-b", "crowded-a", "old-alone"]);
        let pending = vec![pod("older", "", "Pending", None, "2026-01-01T00:00:00Z"), pod("newer", "", "Pending", None, "2026-01-03T00:00:00Z")];
        assert_eq!(names(&pending), ["newer", "older"]);
    }

    #[test]
    fn activity_and_availability() {
        let mut p = pod("p", "n", "Running", Some("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z");
        assert!(is_active(&p));
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        assert_eq!(availability(&p, 0, now), Ok(()));
        assert_eq!(availability(&p, 10, now), Ok(()));
        assert_eq!(availability(&p, 15, now), Err(Some(std::time::Duration::from_secs(5))));
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!is_active(&p));
        let failed = pod("f", "n", "Failed", None, "2026-01-01T00:00:00Z");
        assert!(!is_active(&failed));
        assert_eq!(availability(&failed, 0, now), Err(None));
    }
}
