//! The scheduler's view of the cluster: each node's allocatable resources, taints and labels, and
//! what the pods bound to it (including bindings still in flight, "assumed") request.
//!
//! Invariant: a pod the scheduler has decided on counts against its node from the moment of the
//! decision, not from the moment the API server confirms the binding — so a burst never
//! overcommits a node.

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use std::collections::{BTreeMap, HashMap, HashSet};
use tugboat_api::quantity;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_bytes: i64,
    pub pods: i64,
}

impl Resources {
    pub fn minus(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis - other.cpu_millis,
            memory_bytes: self.memory_bytes - other.memory_bytes,
            ephemeral_bytes: self.ephemeral_bytes - other.ephemeral_bytes,
            pods: self.pods - other.pods,
        }
    }

    fn add(&mut self, other: &Resources, sign: i64) {
        self.cpu_millis += sign * other.cpu_millis;
        self.memory_bytes += sign * other.memory_bytes;
        self.ephemeral_bytes += sign * other.ephemeral_bytes;
        self.pods += sign * other.pods;
    }

    fn max(&mut self, other: &Resources) {
        self.cpu_millis = self.cpu_millis.max(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.max(other.memory_bytes);
        self.ephemeral_bytes = self.ephemeral_bytes.max(other.ephemeral_bytes);
    }

    fn from_map(map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> Resources {
        let get = |name: &str, parse: fn(&str) -> Result<i64, quantity::QuantityError>| map.and_then(|m| m.get(name)).and_then(|q| parse(&q.0).ok()).unwrap_or(0);
        Resources {
            cpu_millis: get("cpu", quantity::cpu_millis),
            memory_bytes: get("memory", quantity::bytes),
            ephemeral_bytes: get("ephemeral-storage", quantity::bytes),
            pods: get("pods", quantity::bytes),
        }
    }
}

/// What a pod requests, as Kubernetes counts it: the sum over containers, or the largest init
/// container if that is more (init containers run one at a time), plus overhead; one pod slot.
pub fn pod_requests(pod: &Pod) -> Resources {
    let spec = pod.spec.clone().unwrap_or_default();
    let requests = |c: &k8s_openapi::api::core::v1::Container| {
        let resources = c.resources.clone().unwrap_or_default();
        // A limit without a request counts as the request (the API server defaults it so).
        let mut merged = resources.limits.clone().unwrap_or_default();
        merged.extend(resources.requests.clone().unwrap_or_default());
        Resources::from_map(Some(&merged))
    };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&requests(container), 1);
    }
    for init in spec.init_containers.iter().flatten() {
        total.max(&requests(init));
    }
    total.add(&Resources::from_map(spec.overhead.as_ref()), 1);
    total.pods = 1;
    total
}

pub fn host_ports(pod: &Pod) -> Vec<(String, i32)> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .flat_map(|c| c.ports.clone().unwrap_or_default())
        .filter_map(|p| p.host_port.filter(|h| *h > 0).map(|h| (p.protocol.unwrap_or_else(|| "TCP".into()), h)))
        .collect()
}

pub fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.clone())
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub ready: bool,
    pub unschedulable: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub requested: Resources,
    pub pod_count: i64,
    pub host_ports: HashSet<(String, i32)>,
    /// Pods per controller (owner UID), for spreading replicas.
    pub owner_counts: HashMap<String, usize>,
}

impl NodeInfo {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ready: false,
            unschedulable: false,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            pod_count: 0,
            host_ports: HashSet::new(),
            owner_counts: HashMap::new(),
        }
    }

    fn set_node(&mut self, node: &Node) {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        self.unschedulable = spec.unschedulable == Some(true);
        self.taints = spec.taints.unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.allocatable = Resources::from_map(status.allocatable.as_ref());
        self.ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    }
}

/// What one bound (or assumed) pod takes from its node.
#[derive(Debug, Clone)]
struct Placement {
    node: String,
    resources: Resources,
    host_ports: Vec<(String, i32)>,
    owner: Option<String>,
}

#[derive(Default)]
pub struct Cache {
    pub nodes: BTreeMap<String, NodeInfo>,
    placements: HashMap<String, Placement>,
}

impl Cache {
    /// Adds or updates a node; answers whether anything a filter reads changed.
    pub fn set_node(&mut self, node: &Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self.nodes.entry(name.clone()).or_insert_with(|| NodeInfo::new(&name));
        let before = (info.ready, info.unschedulable, info.allocatable, info.taints.clone(), info.labels.clone());
        info.set_node(node);
        before != (info.ready, info.unschedulable, info.allocatable, info.taints.clone(), info.labels.clone())
    }

    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    fn apply(&mut self, placement: &Placement, sign: i64) {
        let info = self.nodes.entry(placement.node.clone()).or_insert_with(|| NodeInfo::new(&placement.node));
        info.requested.add(&placement.resources, sign);
        info.pod_count += sign;
        for port in &placement.host_ports {
            if sign > 0 {
                info.host_ports.insert(port.clone());
            } else {
                info.host_ports.remove(port);
            }
        }
        if let Some(owner) = &placement.owner {
            let count = info.owner_counts.entry(owner.clone()).or_default();
            *count = if sign > 0 { *count + 1 } else { count.saturating_sub(1) };
        }
    }

    /// Counts `pod` (by UID) against `node`, replacing whatever it was counted as before.
    pub fn place(&mut self, uid: &str, pod: &Pod, node: &str) {
        self.forget(uid);
        let placement = Placement { node: node.to_owned(), resources: pod_requests(pod), host_ports: host_ports(pod), owner: controller_uid(pod) };
        self.apply(&placement, 1);
        self.placements.insert(uid.to_owned(), placement);
    }

    /// Stops counting a pod (deleted, finished, or a binding that failed).
    pub fn forget(&mut self, uid: &str) {
        if let Some(old) = self.placements.remove(uid) {
            self.apply(&old, -1);
        }
    }

    pub fn is_placed(&self, uid: &str) -> bool {
        self.placements.contains_key(uid)
    }
}
