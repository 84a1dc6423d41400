//! Filters (does the pod fit this node?) and scores (how good is the fit?), as kube-scheduler's
//! default plugins judge them. Pure functions over the cache's view, so each rule has a unit test.

use crate::cache::{self, NodeInfo, Resources};
use crate::topology::{PodTopology, TopologyFailure};
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration};
use std::collections::BTreeMap;

/// What a pod asks of a node, computed once per scheduling attempt.
pub struct PodRequest<'a> {
    pub uid: &'a str,
    pub pod: &'a Pod,
    pub priority: i32,
    pub resources: Resources,
    pub host_ports: Vec<(String, i32)>,
    pub owner_uid: Option<String>,
}

impl<'a> PodRequest<'a> {
    pub fn new(uid: &'a str, pod: &'a Pod) -> Self {
        PodRequest { uid, pod, priority: cache::priority(pod), resources: cache::pod_requests(pod), host_ports: cache::host_ports(pod), owner_uid: cache::controller_uid(pod) }
    }

    /// The pod's spec, borrowed: filters and scores run once per node, so they must not copy it.
    pub fn spec(&self) -> &'a PodSpec {
        static EMPTY: std::sync::OnceLock<PodSpec> = std::sync::OnceLock::new();
        self.pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(PodSpec::default))
    }
}

/// Why a node does not fit, rendered (only for the FailedScheduling message) in
/// kube-scheduler's words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason<'a> {
    NodeName,
    Unschedulable,
    NotReady,
    UntoleratedTaint(&'a Taint),
    NodeAffinity,
    HostPorts,
    TooManyPods,
    InsufficientCpu,
    InsufficientMemory,
    InsufficientEphemeralStorage,
    Topology(TopologyFailure),
}

impl Reason<'_> {
    /// Whether removing pods from the node could cure it (Kubernetes: Unschedulable as opposed
    /// to UnschedulableAndUnresolvable); preemption only looks at such nodes.
    pub fn resolvable_by_preemption(&self) -> bool {
        matches!(
            self,
            Reason::HostPorts
                | Reason::TooManyPods
                | Reason::InsufficientCpu
                | Reason::InsufficientMemory
                | Reason::InsufficientEphemeralStorage
                | Reason::Topology(TopologyFailure::PodAntiAffinity | TopologyFailure::ExistingAntiAffinity | TopologyFailure::Spread)
        )
    }
}

impl std::fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::UntoleratedTaint(taint) => write!(f, "node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value.as_deref().unwrap_or_default()),
            Reason::NodeAffinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Reason::HostPorts => f.write_str("node(s) didn't have free ports for the requested pod ports"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::InsufficientCpu => f.write_str("Insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("Insufficient memory"),
            Reason::InsufficientEphemeralStorage => f.write_str("Insufficient ephemeral-storage"),
            Reason::Topology(TopologyFailure::PodAffinity) => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::Topology(TopologyFailure::PodAntiAffinity) => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::Topology(TopologyFailure::ExistingAntiAffinity) => f.write_str("node(s) didn't satisfy existing pods anti-affinity rules"),
            Reason::Topology(TopologyFailure::SpreadMissingLabel) => f.write_str("node(s) didn't match pod topology spread constraints (missing required label)"),
            Reason::Topology(TopologyFailure::Spread) => f.write_str("node(s) didn't match pod topology spread constraints"),
        }
    }
}

/// The reasons a node does not fit (at most the four resource shortages at once), without a heap.
#[derive(Debug, Clone, Copy)]
pub struct Unfit<'a> {
    reasons: [Reason<'a>; 4],
    len: usize,
}

impl<'a> Unfit<'a> {
    fn one(reason: Reason<'a>) -> Self {
        Unfit { reasons: [reason; 4], len: 1 }
    }

    pub fn reasons(&self) -> &[Reason<'a>] {
        &self.reasons[..self.len]
    }

    pub fn resolvable_by_preemption(&self) -> bool {
        self.reasons().iter().all(Reason::resolvable_by_preemption)
    }
}

impl<'a> From<Reason<'a>> for Unfit<'a> {
    fn from(reason: Reason<'a>) -> Self {
        Unfit::one(reason)
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

/// The set-based operators label selectors and node selectors share, applied to a label's value
/// (None: the label is absent); None for any other operator.
pub fn set_requirement_matches(operator: &str, values: &[String], value: Option<&str>) -> Option<bool> {
    match operator {
        "In" => Some(value.is_some_and(|v| values.iter().any(|x| x == v))),
        "NotIn" => Some(value.is_none_or(|v| !values.iter().any(|x| x == v))),
        "Exists" => Some(value.is_some()),
        "DoesNotExist" => Some(value.is_none()),
        _ => None,
    }
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok())) else { return false };
            if requirement.operator == "Gt" { v > bound } else { v < bound }
        }
        operator => set_requirement_matches(operator, values, value).unwrap_or(false),
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

/// The pod's node selector and required node affinity against the node's labels.
pub fn node_affinity_matches(spec: &PodSpec, node: &NodeInfo) -> bool {
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| node.label(k) == Some(v.as_str()));
    selector_ok
        && spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .is_none_or(|required| required.node_selector_terms.iter().any(|term| term_matches(term, node.labels(), &node.name)))
}

/// Whether the pod fits the node, or why not (kube-scheduler's filters, in its order).
pub fn filter<'n>(request: &PodRequest, topology: Option<&PodTopology>, node: &'n NodeInfo) -> Result<(), Unfit<'n>> {
    let spec = request.spec();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    if spec.node_name.as_deref().is_some_and(|name| !name.is_empty() && name != node.name) {
        return Err(Reason::NodeName.into());
    }
    if node.unschedulable {
        let taint = Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if !tolerates(tolerations, &taint) {
            return Err(Reason::Unschedulable.into());
        }
    }
    if !node.ready {
        return Err(Reason::NotReady.into());
    }
    if let Some(taint) = node.taints.iter().find(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(tolerations, t)) {
        return Err(Reason::UntoleratedTaint(taint).into());
    }
    if !node_affinity_matches(spec, node) {
        return Err(Reason::NodeAffinity.into());
    }
    if request.host_ports.iter().any(|port| node.host_ports.contains(port)) {
        return Err(Reason::HostPorts.into());
    }
    let reserved = node.reserved_for(request.uid, request.priority);
    let free = node.allocatable.minus(&node.requested).minus(&reserved);
    let mut unfit = Unfit { reasons: [Reason::TooManyPods; 4], len: 0 };
    let shortages = [
        (node.pod_count + reserved.pods + 1 > node.allocatable.pods, Reason::TooManyPods),
        (request.resources.cpu_millis > free.cpu_millis, Reason::InsufficientCpu),
        (request.resources.memory_bytes > free.memory_bytes, Reason::InsufficientMemory),
        (request.resources.ephemeral_bytes > free.ephemeral_bytes, Reason::InsufficientEphemeralStorage),
    ];
    for (short, reason) in shortages {
        if short {
            unfit.reasons[unfit.len] = reason;
            unfit.len += 1;
        }
    }
    if unfit.len > 0 {
        return Err(unfit);
    }
    match topology.map(|t| t.filter(node)) {
        Some(Err(failure)) => Err(Reason::Topology(failure).into()),
        _ => Ok(()),
    }
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
        .map(|terms| terms.iter().filter(|t| term_matches(&t.preference, node.labels(), &node.name)).map(|t| i64::from(t.weight)).sum())
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

    fn pod_request(pod: &Pod, resources: Resources, host_ports: Vec<(String, i32)>, owner_uid: Option<String>) -> PodRequest<'_> {
        PodRequest { uid: "incoming", pod, priority: 0, resources, host_ports, owner_uid }
    }

    /// The filter's verdict as the message fragments it would render (empty when the pod fits).
    fn reasons(request: &PodRequest, node: &NodeInfo) -> Vec<String> {
        filter(request, None, node).err().map(|unfit| unfit.reasons().iter().map(ToString::to_string).collect()).unwrap_or_default()
    }

    #[test]
    fn resources_selectors_taints_and_ports_filter() {
        let (pod, resources) = request(json!({"spec": {"containers": []}}), 3000);
        let small = node("small", 2000);
        let req = pod_request(&pod, resources, vec![], None);
        assert_eq!(reasons(&req, &small), ["Insufficient cpu"]);
        assert!(reasons(&req, &node("big", 4000)).is_empty());

        let (pod, resources) = request(json!({"spec": {"nodeSelector": {"disk": "ssd"}, "containers": []}}), 100);
        let mut labelled = node("l", 4000);
        let req = pod_request(&pod, resources, vec![], None);
        assert_eq!(reasons(&req, &labelled), ["node(s) didn't match Pod's node affinity/selector"]);
        labelled.set_label("disk", "ssd");
        assert!(reasons(&req, &labelled).is_empty());

        let mut tainted = node("t", 4000);
        tainted.taints.push(Taint { key: "dedicated".into(), value: Some("gpu".into()), effect: "NoSchedule".into(), ..Default::default() });
        let (pod, resources) = request(json!({"spec": {"containers": []}}), 100);
        let req = pod_request(&pod, resources, vec![], None);
        assert_eq!(reasons(&req, &tainted), ["node(s) had untolerated taint {dedicated: gpu}"]);
        let (pod, resources) = request(json!({"spec": {"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}), 100);
        let req = pod_request(&pod, resources, vec![("TCP".into(), 80)], None);
        assert!(reasons(&req, &tainted).is_empty());
        tainted.host_ports.insert(("TCP".into(), 80));
        assert_eq!(reasons(&req, &tainted), ["node(s) didn't have free ports for the requested pod ports"]);
    }

    #[test]
    fn required_node_affinity_expressions() {
        let (pod, resources) = request(json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}}), 100);
        let req = pod_request(&pod, resources, vec![], None);
        let mut n = node("n", 4000);
        n.set_label("zone", "b");
        n.set_label("cores", "8");
        assert!(reasons(&req, &n).is_empty());
        n.set_label("cores", "2");
        assert!(!reasons(&req, &n).is_empty());
    }

    #[test]
    fn messages_count_reasons_like_kubernetes() {
        let reasons = BTreeMap::from([("Insufficient cpu".to_owned(), 1), ("node(s) had untolerated taint {a: b}".to_owned(), 2)]);
        assert_eq!(unschedulable_message(3, &reasons), "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {a: b}.");
    }

    #[test]
    fn scores_prefer_emptier_nodes_and_spread_replicas() {
        let (pod, resources) = request(json!({"spec": {"containers": []}}), 500);
        let req = pod_request(&pod, resources, vec![], Some("rs".into()));
        let empty = node("empty", 4000);
        let mut busy = node("busy", 4000);
        busy.requested.cpu_millis = 3000;
        assert!(score(&req, &empty) > score(&req, &busy));
        let mut sibling = node("sibling", 4000);
        sibling.owner_counts.insert("rs".into(), 2);
        assert!(score(&req, &empty) > score(&req, &sibling));
    }
}
