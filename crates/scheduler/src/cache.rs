//! The scheduler's view of the cluster: each node's allocatable resources, taints and labels, and
//! what the pods bound to it (including bindings still in flight, "assumed") request.
//!
//! Invariant: a pod the scheduler has decided on counts against its node from the moment of the
//! decision, not from the moment the API server confirms the binding — so a burst never
//! overcommits a node.

use crate::node_table::NodeTable;
// Every pod event and attempt looks pods and nodes up by name: a fast hasher, seeded per process.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodAffinityTerm, Taint, WeightedPodAffinityTerm};
use std::collections::BTreeMap;
use std::sync::Arc;
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
    let Some(spec) = pod.spec.as_ref() else { return Resources { pods: 1, ..Default::default() } };
    let requests = |c: &k8s_openapi::api::core::v1::Container| {
        let Some(resources) = c.resources.as_ref() else { return Resources::default() };
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
    pod.spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| p.host_port.filter(|h| *h > 0).map(|h| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), h)))
        .collect()
}

/// The pod's priority as the scheduler orders and preempts by it (`spec.priority`, default 0;
/// the API server's Priority admission resolves `priorityClassName` into it).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

pub fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.clone())
}

/// A pod's labels, compact and sorted by key: the scheduler keeps one per pod, and a map node
/// per pod would cost more than everything else it keeps of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn of(labels: Option<&BTreeMap<String, String>>) -> Self {
        Labels(labels.into_iter().flatten().map(|(key, value)| (key.as_str().into(), value.as_str().into())).collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (&**key, &**value))
    }

    fn same_as(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let other = labels.map_or(0, BTreeMap::len);
        self.0.len() == other && self.iter().zip(labels.into_iter().flatten()).all(|((k, v), (k2, v2))| k == k2 && v == v2)
    }
}

/// Label look-up over a pod's own labels or the cache's compact copy.
pub trait LabelSource {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSource for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSource for Labels {
    fn label(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &*self.0[i].1)
    }
}

/// What the scheduler remembers of one bound (or assumed) pod: what it takes from its node, and
/// what inter-pod affinity, topology spread and preemption read.
#[derive(Debug)]
pub struct PodInfo {
    /// Shared by every index that names the pod.
    pub uid: Arc<str>,
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    pub priority: i32,
    pub resources: Resources,
    pub host_ports: Vec<(String, i32)>,
    pub owner: Option<String>,
    /// The pod's required anti-affinity terms: they keep matching pods away from it (symmetry).
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    /// The pod's terms that draw (positive weight) or push (negative) matching pods in scoring:
    /// preferred affinity and anti-affinity, and required affinity with Kubernetes' default
    /// hardPodAffinityWeight of 1.
    pub scoring_terms: Vec<(i64, PodAffinityTerm)>,
    /// Deletion has begun (the agent removes the object when the containers are gone).
    pub terminating: bool,
}

impl PodInfo {
    pub fn new(uid: &str, pod: &Pod, node: &str) -> Self {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_anti_affinity = pod_anti_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.clone()).unwrap_or_default();
        fn weighted(terms: Option<&Vec<WeightedPodAffinityTerm>>, sign: i64) -> impl Iterator<Item = (i64, PodAffinityTerm)> + '_ {
            terms.into_iter().flatten().map(move |t| (sign * i64::from(t.weight), t.pod_affinity_term.clone()))
        }
        const HARD_POD_AFFINITY_WEIGHT: i64 = 1;
        let scoring_terms = pod_affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .map(|t| (HARD_POD_AFFINITY_WEIGHT, t.clone()))
            .chain(weighted(pod_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()), 1))
            .chain(weighted(pod_anti_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()), -1))
            .collect();
        PodInfo {
            uid: Arc::from(uid),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: node.to_owned(),
            labels: Labels::of(pod.metadata.labels.as_ref()),
            priority: priority(pod),
            resources: pod_requests(pod),
            host_ports: host_ports(pod),
            owner: controller_uid(pod),
            required_anti_affinity,
            scoring_terms,
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }
}

impl PodInfo {
    /// Whether this still describes `pod` on `node` (a bound pod's spec only changes in what the
    /// scheduler does not read; its labels and deletion may change).
    fn describes(&self, pod: &Pod, node: &str) -> bool {
        self.node == node && self.labels.same_as(pod.metadata.labels.as_ref()) && self.terminating == pod.metadata.deletion_timestamp.is_some() && self.resources == pod_requests(pod)
    }
}

/// The few fields of a pod event that tell whether the cache's count of a bound pod still holds
/// (see [`Cache::still_counts`]); the rest of the event is skipped, not built.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PodGlance {
    pub metadata: GlanceMetadata,
    pub spec: GlanceSpec,
    pub status: GlanceStatus,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GlanceMetadata {
    pub uid: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub deletion_timestamp: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GlanceSpec {
    pub node_name: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct GlanceStatus {
    pub phase: Option<String>,
}

/// A pod nominated to this node by preemption: its room is kept for it against pods of lower
/// priority while its victims terminate.
#[derive(Debug, Clone)]
pub struct Nomination {
    pub uid: String,
    pub priority: i32,
    pub resources: Resources,
}

/// In declaration order (`repr(C)`): what the filter reads of every node it passes over comes
/// first, in the record's first three cache lines, then what only scoring, preemption or
/// look-ups by label read. The search walks hundreds of records per pod (see `node_table`).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct NodeInfo {
    pub allocatable: Resources,
    pub requested: Resources,
    pub pod_count: i64,
    pub taints: Vec<Taint>,
    pub nominated: Vec<Nomination>,
    pub ready: bool,
    pub unschedulable: bool,
    /// The labels as topology rules read them (set by the cache).
    pub domains: NodeDomains,
    pub name: String,
    /// Read through [`NodeInfo::label`].
    labels: BTreeMap<String, String>,
    pub host_ports: HashSet<(String, i32)>,
    /// Pods per controller (owner UID), for spreading replicas.
    pub owner_counts: HashMap<String, usize>,
    /// The pods counted against the node, by UID (preemption picks victims among them).
    pub pods: HashMap<Arc<str>, Arc<PodInfo>>,
}

impl NodeInfo {
    /// The value of the node's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    #[cfg(test)]
    pub fn set_label(&mut self, key: &str, value: &str) {
        self.labels.insert(key.to_owned(), value.to_owned());
    }

    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ready: false,
            unschedulable: false,
            labels: BTreeMap::new(),
            domains: NodeDomains::default(),
            taints: Vec::new(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            pod_count: 0,
            host_ports: HashSet::new(),
            owner_counts: HashMap::new(),
            pods: HashMap::new(),
            nominated: Vec::new(),
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

    pub fn add_pod(&mut self, pod: &Arc<PodInfo>) {
        self.requested.add(&pod.resources, 1);
        self.pod_count += 1;
        self.host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        self.pods.insert(pod.uid.clone(), pod.clone());
    }

    pub fn remove_pod(&mut self, pod: &PodInfo) {
        if self.pods.remove(&pod.uid).is_none() {
            return;
        }
        self.requested.add(&pod.resources, -1);
        self.pod_count -= 1;
        for port in &pod.host_ports {
            self.host_ports.remove(port);
        }
        if let Some(owner) = &pod.owner {
            if let Some(count) = self.owner_counts.get_mut(owner) {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// What nominated pods of at least `priority` (other than `uid`) keep for themselves.
    pub fn reserved_for(&self, uid: &str, priority: i32) -> Resources {
        let mut reserved = Resources::default();
        for nomination in self.nominated.iter().filter(|n| n.priority >= priority && n.uid != uid) {
            reserved.add(&nomination.resources, 1);
        }
        reserved
    }
}

/// Pod UIDs by label key and value: which pods carry a label (affinity and spread look up the
/// pods a selector can match instead of scanning every pod), or which pods' anti-affinity terms
/// require a label of the pods they repel.
#[derive(Default)]
pub struct LabelIndex {
    by_label: HashMap<Box<str>, UidsByValue>,
}

type UidsByValue = HashMap<Box<str>, HashSet<Arc<str>>>;

impl LabelIndex {
    fn insert(&mut self, key: &str, value: &str, uid: &Arc<str>) {
        if !self.by_label.contains_key(key) {
            self.by_label.insert(key.into(), HashMap::new());
        }
        let Some(values) = self.by_label.get_mut(key) else { return };
        if !values.contains_key(value) {
            values.insert(value.into(), HashSet::new());
        }
        if let Some(uids) = values.get_mut(value) {
            uids.insert(uid.clone());
        }
    }

    fn remove(&mut self, key: &str, value: &str, uid: &str) {
        if let Some(values) = self.by_label.get_mut(key) {
            if let Some(uids) = values.get_mut(value) {
                uids.remove(uid);
                if uids.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.by_label.remove(key);
            }
        }
    }

    /// The UIDs indexed under `key=value`.
    pub fn with_label(&self, key: &str, value: &str) -> Option<&HashSet<Arc<str>>> {
        self.by_label.get(key).and_then(|values| values.get(value))
    }
}

/// Pods with some kind of inter-pod term, so an incoming pod checks only those whose terms could
/// match it: a term whose selector has `matchLabels` is indexed under one of those labels (a pod
/// without that label cannot match); other terms are checked against every pod.
#[derive(Default)]
pub struct TermIndex {
    by_required_label: LabelIndex,
    unindexed: HashSet<Arc<str>>,
}

impl TermIndex {
    fn update<'t>(&mut self, pod: &PodInfo, terms: impl Iterator<Item = &'t PodAffinityTerm>, insert: bool) {
        for term in terms {
            let required = term.label_selector.as_ref().and_then(|s| s.match_labels.as_ref()).and_then(|labels| labels.iter().next());
            match (required, insert) {
                (Some((key, value)), true) => self.by_required_label.insert(key, value, &pod.uid),
                (Some((key, value)), false) => self.by_required_label.remove(key, value, &pod.uid),
                (None, true) => {
                    self.unindexed.insert(pod.uid.clone());
                }
                (None, false) => {
                    self.unindexed.remove(&pod.uid);
                }
            }
        }
    }

    /// The UIDs of pods whose indexed terms might match a pod labelled `labels`.
    pub fn could_match<'a>(&'a self, labels: &BTreeMap<String, String>) -> HashSet<&'a str> {
        let indexed = labels.iter().filter_map(|(key, value)| self.by_required_label.with_label(key, value)).flatten();
        indexed.chain(&self.unindexed).map(|uid| &**uid).collect()
    }
}

/// A node label key as a small integer (see [`Domains`]).
pub type KeyId = u32;
/// A value of one label key as a small integer (see [`Domains`]).
pub type ValueId = u32;

/// The node labels as topology rules see them. Every key and each of its values get a small
/// integer, so rules checked on every node for every pod compare and hash numbers instead of
/// strings; and how many nodes carry each value: the topology domains a spread constraint
/// ranges over, known without scanning the nodes. Ids are never reused, so a pod's counts
/// taken during one attempt stay valid however nodes change meanwhile; the tables grow with the
/// distinct values ever seen (a replaced node's hostname stays: a few bytes).
#[derive(Default)]
pub struct Domains {
    keys: HashMap<String, KeyId>,
    /// Indexed by key id.
    values: Vec<KeyValues>,
}

#[derive(Default)]
struct KeyValues {
    ids: HashMap<String, ValueId>,
    /// Nodes carrying each value, indexed by value id.
    nodes: Vec<usize>,
    /// How many values some node carries.
    populated: usize,
}

impl Domains {
    /// The id of each of the node's label values, indexed by key id (keys it lacks:
    /// [`NodeDomains::ABSENT`]), interning what is new.
    fn intern(&mut self, labels: &BTreeMap<String, String>) -> NodeDomains {
        let mut domains = NodeDomains::default();
        for (key, value) in labels {
            let next_key = self.values.len() as KeyId;
            let key_id = *self.keys.entry(key.clone()).or_insert(next_key);
            if key_id == next_key {
                self.values.push(KeyValues::default());
            }
            let values = &mut self.values[key_id as usize];
            let next_value = values.nodes.len() as ValueId;
            let value_id = *values.ids.entry(value.clone()).or_insert(next_value);
            if value_id == next_value {
                values.nodes.push(0);
            }
            domains.set(key_id, value_id);
        }
        domains
    }

    /// Counts (`delta` 1) or uncounts (-1) a node carrying these domains.
    fn count(&mut self, domains: &NodeDomains, delta: isize) {
        for (key, value) in domains.iter() {
            let values = &mut self.values[key as usize];
            let nodes = &mut values.nodes[value as usize];
            let was_populated = *nodes > 0;
            *nodes = nodes.saturating_add_signed(delta);
            match (was_populated, *nodes > 0) {
                (false, true) => values.populated += 1,
                (true, false) => values.populated -= 1,
                _ => {}
            }
        }
    }

    /// The id of `key`, if any node ever carried it.
    pub fn key(&self, key: &str) -> Option<KeyId> {
        self.keys.get(key).copied()
    }

    /// How many values of `key` have ids (some may no longer be on any node).
    pub fn values_of_key(&self, key: KeyId) -> usize {
        self.values.get(key as usize).map_or(0, |values| values.nodes.len())
    }

    /// How many distinct values of `key` the nodes carry.
    pub fn of_key(&self, key: KeyId) -> usize {
        self.values.get(key as usize).map_or(0, |values| values.populated)
    }
}

/// A node's label values as [`Domains`] ids, indexed by key id. The first keys are kept inline:
/// the filter reads them on every node it visits, and a pointer to chase would cost a cache miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDomains {
    inline: [ValueId; NodeDomains::INLINE],
    spilled: Box<[ValueId]>,
}

impl Default for NodeDomains {
    fn default() -> Self {
        NodeDomains { inline: [Self::ABSENT; Self::INLINE], spilled: Box::default() }
    }
}

impl NodeDomains {
    const ABSENT: ValueId = ValueId::MAX;
    const INLINE: usize = 12;

    fn set(&mut self, key: KeyId, value: ValueId) {
        let key = key as usize;
        if key < Self::INLINE {
            self.inline[key] = value;
            return;
        }
        let slot = key - Self::INLINE;
        if self.spilled.len() <= slot {
            let mut spilled = std::mem::take(&mut self.spilled).into_vec();
            spilled.resize(slot + 1, Self::ABSENT);
            self.spilled = spilled.into_boxed_slice();
        }
        self.spilled[slot] = value;
    }

    fn iter(&self) -> impl Iterator<Item = (KeyId, ValueId)> + '_ {
        let ids = self.inline.iter().chain(self.spilled.iter()).copied();
        (0..).zip(ids).filter(|(_, value)| *value != Self::ABSENT)
    }

    /// The node's value of the key (None: it lacks the label, or no node has it).
    pub fn get(&self, key: Option<KeyId>) -> Option<ValueId> {
        let key = key? as usize;
        let value = if key < Self::INLINE { self.inline[key] } else { *self.spilled.get(key - Self::INLINE)? };
        (value != Self::ABSENT).then_some(value)
    }
}

/// Namespaces' labels by name, for terms with a `namespaceSelector`.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

#[derive(Default)]
pub struct Cache {
    pub nodes: NodeTable,
    /// Every counted pod by UID.
    pub pods: HashMap<Arc<str>, Arc<PodInfo>>,
    pub labels: LabelIndex,
    /// Pods with required anti-affinity terms (each incoming pod checks those that could repel it).
    pub anti_affinity: TermIndex,
    /// Pods with terms that score incoming pods (see `PodInfo::scoring_terms`).
    pub scoring_terms: TermIndex,
    pub domains: Domains,
    pub namespaces: NamespaceLabels,
    /// Nominated node per preemptor UID.
    nominations: HashMap<String, String>,
    /// Where the next pod's search starts (round robin over nodes, as kube-scheduler does).
    pub next_start: String,
    /// The round-robin offset among equally good nodes.
    pub rotation: usize,
}

impl Cache {
    /// Adds or updates a node; answers whether anything a filter reads changed.
    pub fn set_node(&mut self, node: &Node) -> bool {
        let info = self.nodes.get_or_insert(node.metadata.name.as_deref().unwrap_or_default());
        let before = (info.ready, info.unschedulable, info.allocatable, info.taints.clone(), info.labels.clone());
        info.set_node(node);
        let changed = before != (info.ready, info.unschedulable, info.allocatable, info.taints.clone(), info.labels.clone());
        if before.4 != info.labels {
            self.domains.count(&info.domains, -1);
            info.domains = self.domains.intern(&info.labels);
            self.domains.count(&info.domains, 1);
        }
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.remove(name) {
            self.domains.count(&info.domains, -1);
        }
    }

    /// Adds or updates a namespace; answers whether its labels changed.
    pub fn set_namespace(&mut self, namespace: &Namespace) -> bool {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        self.namespaces.insert(name, labels.clone()) != Some(labels)
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Counts `pod` (by UID) against `node`, replacing whatever it was counted as before.
    pub fn place(&mut self, uid: &str, pod: &Pod, node: &str) {
        if self.pods.get(uid).is_some_and(|placed| placed.describes(pod, node)) {
            // A status update of a bound pod: nothing the scheduler counts has changed.
            return;
        }
        self.forget(uid);
        let info = Arc::new(PodInfo::new(uid, pod, node));
        self.nodes.get_or_insert(node).add_pod(&info);
        for (key, value) in info.labels.iter() {
            self.labels.insert(key, value, &info.uid);
        }
        self.anti_affinity.update(&info, info.required_anti_affinity.iter(), true);
        self.scoring_terms.update(&info, info.scoring_terms.iter().map(|(_, t)| t), true);
        self.pods.insert(info.uid.clone(), info);
    }

    /// Stops counting a pod (deleted, finished, or a binding that failed), and drops its nomination.
    pub fn forget(&mut self, uid: &str) {
        self.clear_nomination(uid);
        if let Some(old) = self.pods.remove(uid) {
            if let Some(node) = self.nodes.get_mut(&old.node) {
                node.remove_pod(&old);
            }
            for (key, value) in old.labels.iter() {
                self.labels.remove(key, value, uid);
            }
            self.anti_affinity.update(&old, old.required_anti_affinity.iter(), false);
            self.scoring_terms.update(&old, old.scoring_terms.iter().map(|(_, t)| t), false);
        }
    }

    /// Whether the pod a watch event glanced at is counted as it is: bound to the node it is
    /// counted on, with the same labels and deletion state, and not finished. A bound pod's spec
    /// cannot change (the API server's pod update rule), so nothing else it is counted by can.
    pub fn still_counts(&self, pod: &PodGlance) -> bool {
        let finished = matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"));
        let node = pod.spec.node_name.as_deref().unwrap_or_default();
        !finished
            && !node.is_empty()
            && self.pods.get(pod.metadata.uid.as_str()).is_some_and(|counted| {
                counted.node == node && counted.terminating == pod.metadata.deletion_timestamp.is_some() && counted.labels.same_as(pod.metadata.labels.as_ref())
            })
    }

    pub fn is_placed(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Keeps room on `node` for a preemptor while its victims terminate.
    pub fn nominate(&mut self, uid: &str, pod: &Pod, node: &str) {
        self.clear_nomination(uid);
        if let Some(info) = self.nodes.get_mut(node) {
            info.nominated.push(Nomination { uid: uid.to_owned(), priority: priority(pod), resources: pod_requests(pod) });
            self.nominations.insert(uid.to_owned(), node.to_owned());
        }
    }

    /// The node a preemption nominated for the pod: the scheduler's own record, which it knows
    /// before the pod's `status.nominatedNodeName` comes back through the watch.
    pub fn nominated_node(&self, uid: &str) -> Option<&str> {
        self.nominations.get(uid).map(String::as_str)
    }

    pub fn clear_nomination(&mut self, uid: &str) {
        if let Some(node) = self.nominations.remove(uid) {
            if let Some(info) = self.nodes.get_mut(&node) {
                info.nominated.retain(|n| n.uid != uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{cache, place, pod};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn placing_counts_once_and_follows_label_and_deletion_changes() {
        let mut cache = cache(&[("n1", "a")], 4000);
        let web = pod("web", json!({"app": "web"}), "500m", json!({}));
        place(&mut cache, &web, "n1");
        let first = cache.pods["web"].clone();
        place(&mut cache, &web, "n1");
        assert!(Arc::ptr_eq(&first, &cache.pods["web"]), "an unchanged pod is not re-indexed");
        assert_eq!((cache.nodes["n1"].pod_count, cache.nodes["n1"].requested.cpu_millis), (1, 500));
        let relabelled = pod("web", json!({"app": "api"}), "500m", json!({}));
        place(&mut cache, &relabelled, "n1");
        assert!(cache.labels.with_label("app", "web").is_none());
        assert!(cache.labels.with_label("app", "api").is_some_and(|uids| uids.contains("web")));
        let mut deleting = relabelled.clone();
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        place(&mut cache, &deleting, "n1");
        assert!(cache.pods["web"].terminating);
        assert_eq!(cache.nodes["n1"].pod_count, 1, "a terminating pod still takes its room");
        cache.forget("web");
        assert_eq!((cache.nodes["n1"].pod_count, cache.nodes["n1"].requested.cpu_millis), (0, 0));
        assert!(cache.labels.with_label("app", "api").is_none());
    }

    #[test]
    fn a_glance_tells_whether_a_bound_pod_still_counts_as_it_is() {
        let mut cache = cache(&[("n1", "a")], 4000);
        place(&mut cache, &pod("web", json!({"app": "web"}), "500m", json!({})), "n1");
        let glance = |event: serde_json::Value| serde_json::from_value::<super::PodGlance>(event).expect("a glance");
        let running = json!({"metadata": {"uid": "web", "labels": {"app": "web"}}, "spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Running", "podIP": "10.0.0.2"}});
        assert!(cache.still_counts(&glance(running.clone())), "a status change alone");
        let mut relabelled = running.clone();
        relabelled["metadata"]["labels"]["app"] = "api".into();
        let mut deleting = running.clone();
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let mut elsewhere = running.clone();
        elsewhere["spec"]["nodeName"] = "n2".into();
        let mut finished = running.clone();
        finished["status"]["phase"] = "Succeeded".into();
        let mut stranger = running.clone();
        stranger["metadata"]["uid"] = "other".into();
        for changed in [relabelled, deleting, elsewhere, finished, stranger] {
            assert!(!cache.still_counts(&glance(changed.clone())), "{changed}");
        }
    }

    #[test]
    fn domains_follow_node_labels() {
        let mut cache = cache(&[("n1", "a"), ("n2", "a"), ("n3", "b")], 4000);
        let (zone, hostname) = (cache.domains.key("zone"), cache.domains.key("kubernetes.io/hostname"));
        let of_key = |cache: &crate::cache::Cache, key: Option<u32>| key.map(|k| cache.domains.of_key(k));
        assert_eq!((of_key(&cache, zone), of_key(&cache, hostname)), (Some(2), Some(3)));
        let zone_of = |cache: &crate::cache::Cache, node: &str| cache.nodes[node].domains.get(zone);
        assert_eq!(zone_of(&cache, "n1"), zone_of(&cache, "n2"));
        assert_ne!(zone_of(&cache, "n1"), zone_of(&cache, "n3"));
        cache.set_node(&crate::test_support::node("n3", json!({"kubernetes.io/hostname": "n3", "zone": "a"}), 4000));
        assert_eq!(of_key(&cache, zone), Some(1));
        assert_eq!(zone_of(&cache, "n1"), zone_of(&cache, "n3"));
        cache.set_node(&crate::test_support::node("n3", json!({"kubernetes.io/hostname": "n3"}), 4000));
        assert_eq!(zone_of(&cache, "n3"), None, "a label taken off");
        assert_eq!(cache.domains.key("rack"), None, "a key no node has");
        cache.remove_node("n1");
        cache.remove_node("n2");
        cache.remove_node("n3");
        assert_eq!((of_key(&cache, zone), of_key(&cache, hostname)), (Some(0), Some(0)));
    }

    #[test]
    fn domains_beyond_the_inline_keys_are_kept_too() {
        let labels = |last: &str| serde_json::Value::Object((0..20).map(|i| (format!("k{i:02}"), json!(if i == 19 { last.to_owned() } else { format!("v{i}") }))).collect());
        let mut cache = crate::cache::Cache::default();
        cache.set_node(&crate::test_support::node("n1", labels("x"), 4000));
        cache.set_node(&crate::test_support::node("n2", labels("y"), 4000));
        let value = |node: &str, key: &str| cache.nodes[node].domains.get(cache.domains.key(key));
        assert!((0..20).all(|i| value("n1", &format!("k{i:02}")).is_some()));
        assert_eq!(value("n1", "k00"), value("n2", "k00"));
        assert_ne!(value("n1", "k19"), value("n2", "k19"));
    }
}
