//! The node lifecycle controller (Kubernetes' node-lifecycle-controller), with the two controllers
//! that act on its verdicts through the same informers: taint-based eviction
//! ([`crate::taint_eviction`]) and the pod garbage collection of deleted nodes.
//!
//! - A node whose Lease in `kube-node-lease` and Ready heartbeat have both not moved for the grace
//!   period gets every condition set to Unknown ("NodeStatusUnknown") and its pods marked not Ready.
//! - A node carries `node.kubernetes.io/unreachable:NoExecute` while Ready is Unknown and
//!   `node.kubernetes.io/not-ready:NoExecute` while it is False; both go when it is True again.
//! - Pods bound to a node that no longer exists are deleted at once (grace 0), as Kubernetes' pod
//!   GC does: no agent is left to finish them.
//!
//! Time since the last heartbeat is measured on this process's monotonic clock, from when this
//! controller saw the heartbeat change (never from the timestamps in it), so clock skew between
//! hosts cannot matter; a newly started controller gives every node a full grace period.

use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tugboat_client::events::Recorder;
use tugboat_client::{Client, ClientError};

use crate::events;
use crate::runtime::{object_key, Cache, Change, Handler, Informer, SharedInformers};
use crate::taint_eviction::TaintEviction;

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Kubernetes' default `--node-monitor-grace-period`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(50);
/// The conditions a kubelet reports; each becomes Unknown when the node goes silent.
const NODE_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// The reason of a condition this controller adds for a node that never reported it.
const NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) async fn strategic_patch(client: &Client, path: &str, patch: &Value) -> Result<Bytes, ClientError> {
    client.request(http::Method::PATCH, path, Some(("application/strategic-merge-patch+json", Bytes::from(patch.to_string())))).await
}

/// How often nodes are checked: often enough that a node is marked within a fraction of the grace
/// period after it ran out (Kubernetes checks every 5 s against 50 s).
fn monitor_period(grace: Duration) -> Duration {
    (grace / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// What this controller last saw of a node's heartbeats, and when it saw them change.
#[derive(Debug, Clone)]
struct Health {
    lease_renew_time: Option<String>,
    ready_heartbeat: Option<String>,
    /// When either heartbeat last changed (or the node was first seen).
    probed: Instant,
    /// The Ready status seen at the previous check, for the NodeNotReady event on a transition.
    last_ready: Option<String>,
}

impl Health {
    fn new(now: Instant) -> Self {
        Self { lease_renew_time: None, ready_heartbeat: None, probed: now, last_ready: None }
    }

    /// Records a lease renewal time; a change counts as a heartbeat.
    fn observe_lease(&mut self, renew_time: Option<String>, now: Instant) {
        if renew_time.is_some() && renew_time != self.lease_renew_time {
            self.lease_renew_time = renew_time;
            self.probed = now;
        }
    }

    /// Records the Ready condition's heartbeat; a change counts as a heartbeat.
    fn observe_ready(&mut self, heartbeat: Option<String>, now: Instant) {
        if heartbeat.is_some() && heartbeat != self.ready_heartbeat {
            self.ready_heartbeat = heartbeat;
            self.probed = now;
        }
    }

    fn overdue(&self, now: Instant, grace: Duration) -> bool {
        now.saturating_duration_since(self.probed) > grace
    }
}

fn condition<'a>(node: &'a Value, kind: &str) -> Option<&'a Value> {
    node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

/// The Ready condition's status ("True", "False", "Unknown"), None when the node reports none.
pub fn ready_status(node: &Value) -> Option<&str> {
    condition(node, "Ready")?["status"].as_str()
}

/// The status patch (strategic merge, by condition type) that marks a silent node: every
/// condition Unknown; conditions never reported are added as Unknown too. None when nothing changes.
pub fn unknown_status_patch(node: &Value, now: &str) -> Option<Value> {
    let mut changed = Vec::new();
    for existing in node["status"]["conditions"].as_array().into_iter().flatten() {
        if existing["status"] != "Unknown" {
            changed.push(json!({
                "type": existing["type"], "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.", "lastTransitionTime": now,
            }));
        }
    }
    for kind in NODE_CONDITIONS {
        if condition(node, kind).is_none() {
            changed.push(json!({
                "type": kind, "status": "Unknown", "reason": NEVER_UPDATED,
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": node["metadata"]["creationTimestamp"], "lastTransitionTime": now,
            }));
        }
    }
    (!changed.is_empty()).then(|| json!({"status": {"conditions": changed}}))
}

fn is_condition_taint(taint: &Value) -> bool {
    (taint["key"] == NOT_READY_TAINT || taint["key"] == UNREACHABLE_TAINT) && taint["effect"] == "NoExecute"
}

/// The node's taints as its Ready condition wants them, None when they are right already (or the
/// node reports no Ready condition yet). Other taints are kept, and so is a wanted taint's
/// timeAdded: eviction deadlines count from it.
pub fn wanted_taints(node: &Value, now: &str) -> Option<Vec<Value>> {
    let wanted = match ready_status(node)? {
        "True" => None,
        "False" => Some(NOT_READY_TAINT),
        _ => Some(UNREACHABLE_TAINT),
    };
    let current: Vec<Value> = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    let mut taints: Vec<Value> = current.iter().filter(|t| !is_condition_taint(t) || Some(t["key"].as_str().unwrap_or_default()) == wanted).cloned().collect();
    if let Some(key) = wanted {
        if !taints.iter().any(|t| is_condition_taint(t) && t["key"] == key) {
            taints.push(json!({"key": key, "effect": "NoExecute", "timeAdded": now}));
        }
    }
    (taints != current).then_some(taints)
}

/// The node's taints without the condition taints, None when it has none (no node is Ready:
/// Kubernetes then takes them all off and evicts nothing).
fn without_condition_taints(node: &Value) -> Option<Vec<Value>> {
    let current: Vec<Value> = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    let kept: Vec<Value> = current.iter().filter(|t| !is_condition_taint(t)).cloned().collect();
    (kept.len() != current.len()).then_some(kept)
}

/// Kubernetes' `--unhealthy-zone-threshold`, `--large-cluster-size-threshold` and
/// `--secondary-node-eviction-rate`.
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
const LARGE_CLUSTER_THRESHOLD: usize = 50;
const SECONDARY_EVICTION_RATE: f64 = 0.01;
/// Kubernetes' default `--node-eviction-rate`: nodes per second newly tainted NoExecute.
pub const DEFAULT_EVICTION_RATE: f64 = 0.1;

/// How much of a zone is not Ready, as Kubernetes judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// More than two nodes and at least 55% of them not Ready.
    PartialDisruption,
    /// No node Ready.
    FullDisruption,
}

pub fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Nodes per second that may be newly tainted in a zone of `size` nodes: a partly disrupted zone
/// is more likely cut off than broken, so a small one stops and a large one slows down.
pub fn zone_eviction_rate(state: ZoneState, size: usize, normal_rate: f64) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => normal_rate,
        ZoneState::PartialDisruption if size > LARGE_CLUSTER_THRESHOLD => SECONDARY_EVICTION_RATE,
        ZoneState::PartialDisruption => 0.0,
    }
}

/// A node's zone: its region and zone labels, as Kubernetes keys zones.
fn zone_of(node: &Value) -> String {
    let labels = &node["metadata"]["labels"];
    format!(
        "{}:\0:{}",
        labels["topology.kubernetes.io/region"].as_str().unwrap_or_default(),
        labels["topology.kubernetes.io/zone"].as_str().unwrap_or_default()
    )
}

/// Whether every zone is fully disrupted (no node Ready anywhere, and some node at all), and each
/// zone's eviction rate.
fn assess_zones(nodes: &[Arc<Value>], normal_rate: f64) -> (bool, HashMap<String, f64>) {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for node in nodes {
        let (ready, not_ready) = counts.entry(zone_of(node)).or_default();
        if ready_status(node) == Some("True") {
            *ready += 1;
        } else {
            *not_ready += 1;
        }
    }
    let all_disrupted = !counts.is_empty() && counts.values().all(|(ready, _)| *ready == 0);
    let rates = counts.into_iter().map(|(zone, (ready, not_ready))| (zone, zone_eviction_rate(zone_state(ready, not_ready), ready + not_ready, normal_rate))).collect();
    (all_disrupted, rates)
}

/// A token bucket of at most one token, refilled at `rate` per second (client-go's token bucket
/// with burst 1); a new rate starts a new, full bucket, as Kubernetes swaps limiters.
#[derive(Debug)]
struct Limiter {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Limiter {
    fn new(rate: f64, now: Instant) -> Self {
        Self { rate, tokens: 1.0, refilled: now }
    }

    fn set_rate(&mut self, rate: f64, now: Instant) {
        if rate != self.rate {
            *self = Self::new(rate, now);
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        self.tokens = (self.tokens + now.saturating_duration_since(self.refilled).as_secs_f64() * self.rate).min(1.0);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which pods are bound to which node (pod keys by node name), kept by the pod informer.
#[derive(Default)]
pub struct PodsByNode {
    index: Mutex<HashMap<String, HashSet<String>>>,
}

impl PodsByNode {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, change: &Change) {
        let node = |pod: &Value| pod["spec"]["nodeName"].as_str().unwrap_or_default().to_owned();
        let mut index = self.lock();
        let mut remove = |pod: &Value| {
            let (node, Some(key)) = (node(pod), object_key(pod)) else { return };
            if let Some(keys) = index.get_mut(&node) {
                keys.remove(&key);
                if keys.is_empty() {
                    index.remove(&node);
                }
            }
        };
        match change {
            Change::Added(_) => {}
            Change::Updated { old, .. } => remove(old),
            Change::Deleted(pod) => remove(pod),
        }
        if let Change::Added(pod) | Change::Updated { new: pod, .. } = change {
            if let (node, Some(key)) = (node(pod), object_key(pod)) {
                if !node.is_empty() {
                    index.entry(node).or_default().insert(key);
                }
            }
        }
    }

    /// Keys of the pods bound to `node`.
    pub fn pods_on(&self, node: &str) -> Vec<String> {
        self.lock().get(node).map(|keys| keys.iter().cloned().collect()).unwrap_or_default()
    }

    fn nodes(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

struct Controller {
    client: Client,
    events: Recorder,
    grace: Duration,
    nodes: Arc<Cache>,
    pods: Arc<Cache>,
    pods_by_node: Arc<PodsByNode>,
    health: Mutex<HashMap<String, Health>>,
    /// Nodes per second newly tainted NoExecute in a healthy zone (`--node-eviction-rate`).
    eviction_rate: f64,
    disruption: Mutex<Disruption>,
}

#[derive(Default)]
struct Disruption {
    /// Per zone: how fast nodes may be newly tainted.
    limiters: HashMap<String, Limiter>,
    /// No node was Ready at the last check.
    all_disrupted: bool,
}

impl Controller {
    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_node(&self, change: &Change) {
        let now = Instant::now();
        match change {
            Change::Added(node) | Change::Updated { new: node, .. } => {
                let Some(name) = node["metadata"]["name"].as_str() else { return };
                // The heartbeat this controller itself writes for a node that never reported is
                // none of the node's.
                let heartbeat = condition(node, "Ready")
                    .filter(|c| c["reason"] != NEVER_UPDATED)
                    .and_then(|c| c["lastHeartbeatTime"].as_str())
                    .map(str::to_owned);
                self.health().entry(name.to_owned()).or_insert_with(|| Health::new(now)).observe_ready(heartbeat, now);
            }
            Change::Deleted(node) => {
                if let Some(name) = node["metadata"]["name"].as_str() {
                    self.health().remove(name);
                }
            }
        }
    }

    fn on_lease(&self, change: &Change) {
        let now = Instant::now();
        if let Change::Added(lease) | Change::Updated { new: lease, .. } = change {
            let Some(name) = lease["metadata"]["name"].as_str() else { return };
            let renewed = lease["spec"]["renewTime"].as_str().map(str::to_owned);
            self.health().entry(name.to_owned()).or_insert_with(|| Health::new(now)).observe_lease(renewed, now);
        }
    }

    /// One pass over every node: statuses first, then taints as the zones' disruption allows,
    /// then the pods of deleted nodes.
    async fn check_all(&self) {
        let mut checked = Vec::new();
        for node in self.nodes.all() {
            let name = node["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            match self.update_status(&name, node).await {
                Ok(node) => checked.push(node),
                Err(error) => tracing::debug!(%error, node = %name, "cannot mark the node Unknown; retrying at the next check"),
            }
        }
        let now = Instant::now();
        let stop_all = {
            let mut disruption = self.disruption.lock().unwrap_or_else(|p| p.into_inner());
            let (all_disrupted, rates) = assess_zones(&checked, self.eviction_rate);
            if all_disrupted && !disruption.all_disrupted {
                tracing::warn!("no node is Ready: taint-based eviction stops until one is (Kubernetes' master disruption mode)");
            }
            if !all_disrupted && disruption.all_disrupted {
                // Whatever cut every node off may have hidden real heartbeats: a full grace period again.
                tracing::info!("a node is Ready again: taint-based eviction resumes");
                self.health().values_mut().for_each(|h| h.probed = now);
            }
            disruption.all_disrupted = all_disrupted;
            disruption.limiters.retain(|zone, _| rates.contains_key(zone));
            for (zone, rate) in rates {
                disruption.limiters.entry(zone).or_insert_with(|| Limiter::new(rate, now)).set_rate(rate, now);
            }
            all_disrupted
        };
        // The nodes silent the longest are tainted first when the rate limit holds some back.
        // Each node's time is read once, under one lock: a sort asks for keys n log n times.
        let mut checked: Vec<(Option<Instant>, Arc<Value>)> = {
            let health = self.health();
            checked.into_iter().map(|node| (health.get(node["metadata"]["name"].as_str().unwrap_or_default()).map(|h| h.probed), node)).collect()
        };
        checked.sort_by_key(|(probed, _)| *probed);
        let now = now_rfc3339();
        for (_, node) in checked {
            if let Err(error) = self.reconcile(&node, stop_all, &now).await {
                tracing::debug!(%error, node = %node["metadata"]["name"], "cannot update the node's taints or pods; retrying at the next check");
            }
        }
        if let Err(error) = self.collect_orphaned_pods().await {
            tracing::debug!(%error, "cannot collect the pods of deleted nodes; retrying at the next check");
        }
    }

    /// Marks the node Unknown when its heartbeats are overdue; returns the node as it is now.
    async fn update_status(&self, name: &str, node: Arc<Value>) -> Result<Arc<Value>, ClientError> {
        let overdue = self.health().get(name).is_some_and(|h| h.overdue(Instant::now(), self.grace));
        if !overdue {
            return Ok(node);
        }
        let Some(patch) = unknown_status_patch(&node, &now_rfc3339()) else { return Ok(node) };
        tracing::info!(node = name, "the node stopped posting status; marking it Unknown");
        Ok(Arc::new(serde_json::from_slice(&strategic_patch(&self.client, &format!("/api/v1/nodes/{name}/status"), &patch).await?)?))
    }

    /// The node's NoExecute taints and its pods' readiness, from its Ready condition. With
    /// `stop_all` (no node is Ready) condition taints only go. A node newly tainted takes a token
    /// from its zone's limiter; without one it waits for a later pass. `now` is the pass's time, a new
    /// taint's timeAdded.
    async fn reconcile(&self, node: &Value, stop_all: bool, now: &str) -> Result<(), ClientError> {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let ready = ready_status(node).map(str::to_owned);
        let previous = self.health().get_mut(name).and_then(|h| std::mem::replace(&mut h.last_ready, ready.clone()));
        if previous.as_deref() == Some("True") && ready.as_deref() != Some("True") {
            events::record(&self.events, events::NODE_CONTROLLER, events::NODE, node, "Normal", "NodeNotReady", &format!("Node {name} status is now: NodeNotReady"));
        }
        let taints = if stop_all { without_condition_taints(node) } else { wanted_taints(node, now) };
        if let Some(taints) = taints {
            let newly_tainted = !node["spec"]["taints"].as_array().into_iter().flatten().any(is_condition_taint) && taints.iter().any(is_condition_taint);
            let allowed = !newly_tainted || {
                let mut disruption = self.disruption.lock().unwrap_or_else(|p| p.into_inner());
                disruption.limiters.get_mut(&zone_of(node)).is_some_and(|limiter| limiter.try_take(Instant::now()))
            };
            if allowed {
                // Conditional on the version read, so a concurrent taint change is never overwritten.
                let patch = json!({"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}, "spec": {"taints": taints}});
                let body = Bytes::from(patch.to_string());
                self.client.request(http::Method::PATCH, &format!("/api/v1/nodes/{name}"), Some(("application/merge-patch+json", body))).await?;
            }
        }
        if ready.is_some_and(|r| r != "True") {
            self.mark_pods_not_ready(name).await?;
        }
        Ok(())
    }

    /// Sets Ready=False on the node's pods that still say True (Kubernetes' MarkPodsNotReady), so
    /// Services stop sending them traffic.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), ClientError> {
        for key in self.pods_by_node.pods_on(node) {
            let Some(pod) = self.pods.get(&key) else { continue };
            let ready = pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
            if !ready {
                continue;
            }
            let (namespace, name) = crate::runtime::split_key(&key);
            let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now_rfc3339()}]}});
            match strategic_patch(&self.client, &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"), &patch).await {
                Ok(_) | Err(ClientError::Status { code: http::StatusCode::NOT_FOUND, .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Kubernetes' pod GC of orphans: pods bound to a node that does not exist (asked of the API,
    /// not just the cache) are marked failed and deleted with grace 0.
    async fn collect_orphaned_pods(&self) -> Result<(), ClientError> {
        for node in self.pods_by_node.nodes() {
            if self.nodes.get(&node).is_some() {
                continue;
            }
            match self.client.get(&format!("/api/v1/nodes/{node}")).await {
                Ok(_) => continue,
                Err(ClientError::Status { code: http::StatusCode::NOT_FOUND, .. }) => {}
                Err(error) => return Err(error),
            }
            for key in self.pods_by_node.pods_on(&node) {
                let (namespace, name) = crate::runtime::split_key(&key);
                let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
                tracing::info!(pod = %key, %node, "deleting a pod bound to a node that no longer exists");
                let status = json!({"status": {"phase": "Failed", "conditions": [{
                    "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists", "lastTransitionTime": now_rfc3339(),
                }]}});
                let options = Bytes::from(json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}).to_string());
                let result = async {
                    strategic_patch(&self.client, &format!("{path}/status"), &status).await?;
                    self.client.request(http::Method::DELETE, &path, Some(("application/json", options))).await
                }
                .await;
                match result {
                    Ok(_) | Err(ClientError::Status { code: http::StatusCode::NOT_FOUND, .. }) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }
}

/// Runs the node lifecycle controller, taint-based eviction and the pod GC of deleted nodes until
/// `shutdown` completes. `grace` is Kubernetes' `--node-monitor-grace-period`, `eviction_rate` its
/// `--node-eviction-rate`.
pub async fn run(client: Client, informers: &SharedInformers, grace: Duration, eviction_rate: f64, shutdown: impl std::future::Future<Output = ()>) {
    let nodes = Arc::new(Cache::default());
    let pods = informers.cache(crate::PODS);
    let pods_by_node = Arc::new(PodsByNode::default());
    let controller = Arc::new(Controller {
        client: client.clone(),
        events: Recorder::start(client.clone()),
        grace,
        nodes: nodes.clone(),
        pods: pods.clone(),
        pods_by_node: pods_by_node.clone(),
        health: Mutex::default(),
        eviction_rate,
        disruption: Mutex::default(),
    });
    let eviction = Arc::new(TaintEviction::new(client.clone(), nodes.clone(), pods.clone(), pods_by_node.clone()));

    let on_node: Handler = {
        let (controller, eviction) = (controller.clone(), eviction.clone());
        Arc::new(move |change: &Change| {
            controller.on_node(change);
            match change {
                Change::Added(node) => eviction.node_changed(None, Some(node)),
                Change::Updated { old, new } => eviction.node_changed(Some(old), Some(new)),
                Change::Deleted(node) => eviction.node_changed(Some(node), None),
            }
        })
    };
    let on_lease: Handler = {
        let controller = controller.clone();
        Arc::new(move |change: &Change| controller.on_lease(change))
    };
    let on_pod: Handler = {
        let eviction = eviction.clone();
        Arc::new(move |change: &Change| {
            pods_by_node.apply(change);
            match change {
                Change::Added(pod) | Change::Updated { new: pod, .. } => eviction.pod_changed(pod),
                Change::Deleted(pod) => eviction.pod_deleted(pod),
            }
        })
    };
    let node_informer = Informer::new(client.clone(), "/api/v1/nodes", nodes, on_node);
    let lease_informer = Informer::new(client.clone(), LEASES, Arc::new(Cache::default()), on_lease);
    let pod_subscription = informers.subscribe(crate::PODS, on_pod);
    let mut synced = [node_informer.synced(), lease_informer.synced(), pod_subscription.synced];

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(node_informer.run());
    tasks.spawn(lease_informer.run());
    tasks.spawn(async move {
        // Acting on half-listed state would take present nodes for deleted ones.
        for receiver in &mut synced {
            let _ = receiver.wait_for(|s| *s).await;
        }
        let mut ticker = tokio::time::interval(monitor_period(grace));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            controller.check_all().await;
        }
    });
    tasks.spawn(eviction.run());
    shutdown.await;
    tasks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<&str>, taints: Value) -> Value {
        let conditions = match ready {
            Some(status) => json!([
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": status, "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
            ]),
            None => json!([]),
        };
        json!({"metadata": {"name": "n", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"taints": taints}, "status": {"conditions": conditions}})
    }

    #[test]
    fn a_node_is_overdue_only_after_a_full_grace_period_without_any_heartbeat() {
        let start = Instant::now();
        let grace = Duration::from_secs(50);
        let mut health = Health::new(start);
        // A controller that just started gives every node the full grace period.
        assert!(!health.overdue(start + Duration::from_secs(50), grace));
        assert!(health.overdue(start + Duration::from_secs(51), grace));
        // Either heartbeat moving resets the clock; the same value seen again does not.
        health.observe_lease(Some("t1".into()), start + Duration::from_secs(40));
        assert!(!health.overdue(start + Duration::from_secs(80), grace));
        health.observe_lease(Some("t1".into()), start + Duration::from_secs(80));
        assert!(health.overdue(start + Duration::from_secs(91), grace));
        health.observe_ready(Some("h1".into()), start + Duration::from_secs(91));
        assert!(!health.overdue(start + Duration::from_secs(140), grace));
    }

    #[test]
    fn silent_node_gets_every_condition_unknown() {
        let patch = unknown_status_patch(&node(Some("True"), json!([])), "2026-01-01T00:01:00Z").unwrap();
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        let reported: Vec<(&str, &str, &str)> =
            conditions.iter().map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())).collect();
        assert_eq!(
            reported,
            [
                ("MemoryPressure", "Unknown", "NodeStatusUnknown"),
                ("Ready", "Unknown", "NodeStatusUnknown"),
                ("DiskPressure", "Unknown", "NodeStatusNeverUpdated"),
                ("PIDPressure", "Unknown", "NodeStatusNeverUpdated"),
            ]
        );
        assert_eq!(conditions[1]["message"], "Kubelet stopped posting node status.");
        // Already Unknown everywhere: nothing to write.
        let mut unknown = node(Some("Unknown"), json!([]));
        unknown["status"]["conditions"] = json!(NODE_CONDITIONS.iter().map(|t| json!({"type": t, "status": "Unknown"})).collect::<Vec<_>>());
        assert_eq!(unknown_status_patch(&unknown, "now"), None);
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let custom = json!({"key": "dedicated", "value": "x", "effect": "NoSchedule"});
        let unreachable = json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:01:00Z"});
        assert_eq!(wanted_taints(&node(Some("Unknown"), json!([custom])), "2026-01-01T00:01:00Z"), Some(vec![custom.clone(), unreachable.clone()]));
        // Already right: nothing to write, and the original timeAdded stays.
        assert_eq!(wanted_taints(&node(Some("Unknown"), json!([unreachable])), "2026-01-01T00:09:00Z"), None);
        let not_ready = wanted_taints(&node(Some("False"), json!([unreachable])), "2026-01-01T00:02:00Z").unwrap();
        assert_eq!(not_ready, [json!({"key": NOT_READY_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:02:00Z"})]);
        assert_eq!(wanted_taints(&node(Some("True"), json!([custom, unreachable])), "now"), Some(vec![custom.clone()]));
        assert_eq!(wanted_taints(&node(Some("True"), json!([custom])), "now"), None);
        // A node that never reported Ready is left alone until it is marked Unknown.
        assert_eq!(wanted_taints(&node(None, json!([])), "now"), None);
    }

    #[test]
    fn pods_are_indexed_by_their_node() {
        let index = PodsByNode::default();
        let pod = |node: &str| Arc::new(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": node}}));
        index.apply(&Change::Added(pod("")));
        assert!(index.nodes().is_empty());
        index.apply(&Change::Updated { old: pod(""), new: pod("a") });
        assert_eq!(index.pods_on("a"), ["ns/p"]);
        index.apply(&Change::Deleted(pod("a")));
        assert!(index.pods_on("a").is_empty() && index.nodes().is_empty());
    }

    #[test]
    fn zones_are_judged_as_kubernetes_does() {
        assert_eq!(zone_state(0, 1), ZoneState::FullDisruption);
        // Two of three down is still normal: partial disruption needs more than two.
        assert_eq!(zone_state(1, 2), ZoneState::Normal);
        assert_eq!(zone_state(2, 3), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3), ZoneState::Normal);
        assert_eq!(zone_eviction_rate(ZoneState::PartialDisruption, 10, 0.1), 0.0);
        assert_eq!(zone_eviction_rate(ZoneState::PartialDisruption, 100, 0.1), SECONDARY_EVICTION_RATE);
        assert_eq!(zone_eviction_rate(ZoneState::FullDisruption, 10, 0.1), 0.1);
        let zoned = |zone: &str, ready: &str| {
            let mut n = node(Some(ready), json!([]));
            n["metadata"]["labels"] = json!({"topology.kubernetes.io/zone": zone});
            Arc::new(n)
        };
        let (all, rates) = assess_zones(&[zoned("a", "Unknown"), zoned("b", "True")], 0.1);
        assert!(!all);
        assert_eq!(rates.len(), 2);
        let (all, _) = assess_zones(&[zoned("a", "Unknown"), zoned("b", "False")], 0.1);
        assert!(all);
        assert_eq!(without_condition_taints(&node(Some("Unknown"), json!([{"key": UNREACHABLE_TAINT, "effect": "NoExecute"}]))), Some(vec![]));
        assert_eq!(without_condition_taints(&node(Some("Unknown"), json!([]))), None);
    }

    #[test]
    fn limiter_lets_one_through_then_refills_at_its_rate() {
        let start = Instant::now();
        let mut limiter = Limiter::new(0.1, start);
        assert!(limiter.try_take(start));
        assert!(!limiter.try_take(start + Duration::from_secs(5)));
        assert!(limiter.try_take(start + Duration::from_secs(10)));
        limiter.set_rate(0.0, start + Duration::from_secs(20));
        assert!(!limiter.try_take(start + Duration::from_secs(100)));
    }
}
