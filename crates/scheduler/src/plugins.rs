//! Filters (does the pod fit this node?) and scores (how good is the fit?), as kube-scheduler's
//! default plugins judge them. Pure functions over the cache's view, so each rule has a unit test.

use crate::cache::{NodeInfo, Resources};
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration};
use std::collections::BTreeMap;

/// What a pod asks of a node, computed once per scheduling attempt.
pub struct PodRequest<'a> {
    pub pod: &'a Pod,
    pub resources: Resources,
    pub host_ports: Vec<(String, i32)>,
    pub owner_uid: Option<String>,
}

impl PodRequest<'_> {
    /// The pod's spec, borrowed: filters and scores run once per node, so they must not copy it.
    fn spec(&self) -> &PodSpec {
        static EMPTY: std::sync::OnceLock<PodSpec> = std::sync::OnceLock::new();
        self.pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(PodSpec::default))
    }
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_matches = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_matches = match t.operator.as_deref() {
            Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key),
            _ => t.key.as_deref() == Some(taint.key.as_str()) && t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        };
        effect_matches && key_matches
    })
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok())) else { return false };
            if requirement.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(node_name)))
}

/// Why the node does not fit the pod (kube-scheduler's wording), or an empty list when it fits.
pub fn filter(request: &PodRequest, node: &NodeInfo) -> Vec<String> {
    let spec = request.spec();
    let mut reasons = Vec::new();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if name != node.name {
            reasons.push("node(s) didn't match the requested node name".into());
            return reasons;
        }
    }
    if node.unschedulable {
        let taint = Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if !tolerates(tolerations, &taint) {
            reasons.push("node(s) were unschedulable".into());
            return reasons;
        }
    }
    if !node.ready {
        reasons.push("node(s) were not ready".into());
        return reasons;
    }
    for taint in node.taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute") {
        if !tolerates(tolerations, taint) {
            reasons.push(format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value.as_deref().unwrap_or_default()));
            return reasons;
        }
    }
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .is_none_or(|required| required.node_selector_terms.iter().any(|term| term_matches(term, &node.labels, &node.name)));
    if !(selector_ok && affinity_ok) {
        reasons.push("node(s) didn't match Pod's node affinity/selector".into());
        return reasons;
    }
    if request.host_ports.iter().any(|port| node.host_ports.contains(port)) {
        reasons.push("node(s) didn't have free ports for the requested pod ports".into());
        return reasons;
    }
    let free = node.allocatable.minus(&node.requested);
    if node.pod_count + 1 > node.allocatable.pods {
        reasons.push("Too many pods".into());
    }
    if request.resources.cpu_millis > free.cpu_millis {
        reasons.push("Insufficient cpu".into());
    }
    if request.resources.memory_bytes > free.memory_bytes {
        reasons.push("Insufficient memory".into());
    }
    if request.resources.ephemeral_bytes > free.ephemeral_bytes {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    reasons
}

/// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}."
pub fn unschedulable_message(total_nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
    if parts.is_empty() {
        format!("0/{total_nodes} nodes are available.")
    } else {
        format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
    }
}

fn fraction(used: i64, total: i64) -> f64 {
    if total <= 0 { 1.0 } else { (used as f64 / total as f64).min(1.0) }
}

/// The node's score for the pod, higher is better: least allocated, balanced allocation,
/// preferred node affinity, PreferNoSchedule taints, and spreading a controller's replicas.
pub fn score(request: &PodRequest, node: &NodeInfo) -> i64 {
    let spec = request.spec();
    let cpu = fraction(node.requested.cpu_millis + request.resources.cpu_millis, node.allocatable.cpu_millis);
    let memory = fraction(node.requested.memory_bytes + request.resources.memory_bytes, node.allocatable.memory_bytes);
    let least_allocated = ((1.0 - cpu) + (1.0 - memory)) / 2.0 * 100.0;
    let balanced = (1.0 - (cpu - memory).abs()) * 100.0;
    let preferred: i64 = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
        .map(|terms| terms.iter().filter(|t| term_matches(&t.preference, &node.labels, &node.name)).map(|t| i64::from(t.weight)).sum())
        .unwrap_or(0);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let intolerable = node.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerates(tolerations, t)).count() as i64;
    let siblings = request.owner_uid.as_ref().map(|uid| node.owner_counts.get(uid).copied().unwrap_or(0)).unwrap_or(0) as i64;
    least_allocated as i64 + balanced as i64 + preferred - 50 * intolerable - 20 * siblings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: i64) -> NodeInfo {
        let mut info = NodeInfo::new(name);
        info.ready = true;
        info.allocatable = Resources { cpu_millis: cpu, memory_bytes: 8 << 30, ephemeral_bytes: 100 << 30, pods: 110 };
        info
    }

    fn request(pod: serde_json::Value, cpu: i64) -> (Pod, Resources) {
        (serde_json::from_value(pod).unwrap(), Resources { cpu_millis: cpu, memory_bytes: 1 << 20, ephemeral_bytes: 0, pods: 1 })
    }

    #[test]
    fn resources_selectors_taints_and_ports_filter() {
        let (pod, resources) = request(json!({"spec": {"containers": []}}), 3000);
        let small = node("small", 2000);
        let req = PodRequest { pod: &pod, resources, host_ports: vec![], owner_uid: None };
        assert_eq!(filter(&req, &small), ["Insufficient cpu"]);
        assert!(filter(&req, &node("big", 4000)).is_empty());

        let (pod, resources) = request(json!({"spec": {"nodeSelector": {"disk": "ssd"}, "containers": []}}), 100);
        let mut labelled = node("l", 4000);
        let req = PodRequest { pod: &pod, resources, host_ports: vec![], owner_uid: None };
        assert_eq!(filter(&req, &labelled), ["node(s) didn't match Pod's node affinity/selector"]);
        labelled.labels.insert("disk".into(), "ssd".into());
        assert!(filter(&req, &labelled).is_empty());

        let mut tainted = node("t", 4000);
        tainted.taints.push(Taint { key: "dedicated".into(), value: Some("gpu".into()), effect: "NoSchedule".into(), ..Default::default() });
        let (pod, resources) = request(json!({"spec": {"containers": []}}), 100);
        let req = PodRequest { pod: &pod, resources, host_ports: vec![], owner_uid: None };
        assert_eq!(filter(&req, &tainted), ["node(s) had untolerated taint {dedicated: gpu}"]);
        let (pod, resources) = request(json!({"spec": {"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}), 100);
        let req = PodRequest { pod: &pod, resources, host_ports: vec![("TCP".into(), 80)], owner_uid: None };
        assert!(filter(&req, &tainted).is_empty());
        tainted.host_ports.insert(("TCP".into(), 80));
        assert_eq!(filter(&req, &tainted), ["node(s) didn't have free ports for the requested pod ports"]);
    }

    #[test]
    fn required_node_affinity_expressions() {
        let (pod, resources) = request(json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}}), 100);
        let req = PodRequest { pod: &pod, resources, host_ports: vec![], owner_uid: None };
        let mut n = node("n", 4000);
        n.labels.insert("zone".into(), "b".into());
        n.labels.insert("cores".into(), "8".into());
        assert!(filter(&req, &n).is_empty());
        n.labels.insert("cores".into(), "2".into());
        assert!(!filter(&req, &n).is_empty());
    }

    #[test]
    fn messages_count_reasons_like_kubernetes() {
        let reasons = BTreeMap::from([("Insufficient cpu".to_owned(), 1), ("node(s) had untolerated taint {a: b}".to_owned(), 2)]);
        assert_eq!(unschedulable_message(3, &reasons), "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {a: b}.");
    }

    #[test]
    fn scores_prefer_emptier_nodes_and_spread_replicas() {
        let (pod, resources) = request(json!({"spec": {"containers": []}}), 500);
        let req = PodRequest { pod: &pod, resources, host_ports: vec![], owner_uid: Some("rs".into()) };
        let empty = node("empty", 4000);
        let mut busy = node("busy", 4000);
        busy.requested.cpu_millis = 3000;
        assert!(score(&req, &empty) > score(&req, &busy));
        let mut sibling = node("sibling", 4000);
        sibling.owner_counts.insert("rs".into(), 2);
        assert!(score(&req, &empty) > score(&req, &sibling));
    }
}
