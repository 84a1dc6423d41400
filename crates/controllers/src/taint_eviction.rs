//! Taint-based eviction (Kubernetes' taint-eviction-controller): a pod bound to a node with
//! NoExecute taints it does not tolerate is deleted at once; one that tolerates them all for a
//! limited time (`tolerationSeconds`) is deleted when that time has run out since the taint was
//! added; tolerations without seconds keep it forever. A taint that goes cancels the eviction.
//!
//! Work is per node: a node is looked at again when its NoExecute taints change, when a pod lands
//! on it while it has some, and when its earliest eviction deadline comes.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tugboat_client::events::Recorder;
use tugboat_client::{Client, ClientError};

use crate::events;
use crate::node_lifecycle::PodsByNode;
use crate::runtime::Cache;

const NO_EXECUTE: &str = "NoExecute";

/// Whether `toleration` tolerates `taint`, as Kubernetes' `Toleration.ToleratesTaint`: the empty
/// effect matches every effect, the empty key every key; `Exists` ignores the value.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or_default();
    if !effect.is_empty() && taint["effect"] != effect {
        return false;
    }
    let key = toleration["key"].as_str().unwrap_or_default();
    if !key.is_empty() && taint["key"] != key {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or_default() {
        "" | "Equal" => toleration["value"].as_str().unwrap_or_default() == taint["value"].as_str().unwrap_or_default(),
        "Exists" => true,
        _ => false,
    }
}

/// The node's NoExecute taints.
pub fn no_execute_taints(node: &Value) -> Vec<&Value> {
    node["spec"]["taints"].as_array().into_iter().flatten().filter(|t| t["effect"] == NO_EXECUTE).collect()
}

/// What becomes of a pod on a node with NoExecute taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every taint is tolerated without a time limit (or there are none).
    Keep,
    EvictNow,
    /// Every taint is tolerated, the first of them only until then.
    EvictAt(Timestamp),
}

/// The verdict for `pod` given the node's NoExecute taints, each with when it was added. For each
/// taint the pod's first toleration of it counts (as in Kubernetes); `tolerationSeconds` of zero
/// or less means at once.
pub fn verdict(pod: &Value, taints: &[(&Value, Timestamp)]) -> Verdict {
    let tolerations = pod["spec"]["tolerations"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut deadline: Option<Timestamp> = None;
    for (taint, added) in taints {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else { return Verdict::EvictNow };
        let Some(seconds) = toleration["tolerationSeconds"].as_i64() else { continue };
        if seconds <= 0 {
            return Verdict::EvictNow;
        }
        // A deadline beyond the representable range is never reached.
        if let Ok(at) = added.checked_add(SignedDuration::from_secs(seconds)) {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
    deadline.map_or(Verdict::Keep, Verdict::EvictAt)
}

/// A taint's identity on a node, for remembering when a taint without `timeAdded` was first seen.
fn taint_identity(node: &str, taint: &Value) -> String {
    format!("{node}\0{}\0{}", taint["key"].as_str().unwrap_or_default(), taint["value"].as_str().unwrap_or_default())
}

#[derive(Default)]
struct State {
    /// Nodes to look at.
    dirty: HashSet<String>,
    /// The earliest eviction deadline on each node that has one.
    deadlines: HashMap<String, Timestamp>,
    /// When taints without `timeAdded` were first seen (Kubernetes' clients always set it).
    first_seen: HashMap<String, Timestamp>,
    /// UIDs of pods this controller has deleted, so a lagging cache does not evict them twice.
    evicted: HashSet<String>,
    /// Nodes with NoExecute taints now: a pod event looks here, not at its node (every pod
    /// changes a few times in its life, on nodes that are nearly always untainted).
    tainted: HashSet<String>,
}

pub struct TaintEviction {
    client: Client,
    events: Recorder,
    nodes: Arc<Cache>,
    pods: Arc<Cache>,
    pods_by_node: Arc<PodsByNode>,
    state: Mutex<State>,
    wake: Notify,
}

impl TaintEviction {
    pub fn new(client: Client, nodes: Arc<Cache>, pods: Arc<Cache>, pods_by_node: Arc<PodsByNode>) -> Self {
        Self { events: Recorder::start(client.clone()), client, nodes, pods, pods_by_node, state: Mutex::default(), wake: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self, node: &str) {
        self.lock().dirty.insert(node.to_owned());
        self.wake.notify_one();
    }

    /// A node changed: look at it again if its NoExecute taints did.
    pub fn node_changed(&self, old: Option<&Value>, new: Option<&Value>) {
        fn taints(node: Option<&Value>) -> Vec<&Value> {
            node.map(no_execute_taints).unwrap_or_default()
        }
        let Some(name) = new.or(old).and_then(|n| n["metadata"]["name"].as_str()) else { return };
        let now = taints(new);
        {
            let mut state = self.lock();
            if now.is_empty() {
                state.tainted.remove(name);
            } else if !state.tainted.contains(name) {
                state.tainted.insert(name.to_owned());
            }
        }
        if taints(old) != now {
            self.mark(name);
        }
    }

    /// A pod appeared or changed: look at its node if that has NoExecute taints.
    pub fn pod_changed(&self, pod: &Value) {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if !node.is_empty() && self.lock().tainted.contains(node) {
            self.mark(node);
        }
    }

    pub fn pod_deleted(&self, pod: &Value) {
        if let Some(uid) = pod["metadata"]["uid"].as_str() {
            self.lock().evicted.remove(uid);
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next_deadline = self.lock().deadlines.values().min().copied();
            let notified = self.wake.notified();
            match next_deadline {
                Some(at) => {
                    let wait = Timestamp::now().duration_until(at).unsigned_abs();
                    let _ = tokio::time::timeout(wait, notified).await;
                }
                None => notified.await,
            }
            let now = Timestamp::now();
            let dirty: Vec<String> = {
                let mut state = self.lock();
                let due: Vec<String> = state.deadlines.iter().filter(|(_, at)| **at <= now).map(|(node, _)| node.clone()).collect();
                state.dirty.extend(due);
                let dirty = std::mem::take(&mut state.dirty);
                for node in &dirty {
                    state.deadlines.remove(node);
                }
                dirty.into_iter().collect()
            };
            for node in dirty {
                self.process(&node, now).await;
            }
        }
    }

    /// Evicts what is due on `node` and remembers its next deadline.
    async fn process(&self, node_name: &str, now: Timestamp) {
        let Some(node) = self.nodes.get(node_name) else { return };
        let taints = no_execute_taints(&node);
        if taints.is_empty() {
            return;
        }
        let added: Vec<(&Value, Timestamp)> = {
            let mut state = self.lock();
            taints
                .iter()
                .map(|taint| {
                    let recorded = taint["timeAdded"].as_str().and_then(|t| t.parse::<Timestamp>().ok());
                    let at = recorded.unwrap_or_else(|| *state.first_seen.entry(taint_identity(node_name, taint)).or_insert(now));
                    (*taint, at)
                })
                .collect()
        };
        let mut next: Option<Timestamp> = None;
        for key in self.pods_by_node.pods_on(node_name) {
            let Some(pod) = self.pods.get(&key) else { continue };
            if pod["metadata"]["deletionTimestamp"].is_string() {
                continue;
            }
            match verdict(&pod, &added) {
                Verdict::Keep => {}
                Verdict::EvictAt(at) if at > now => next = Some(next.map_or(at, |n| n.min(at))),
                Verdict::EvictAt(_) | Verdict::EvictNow => {
                    if let Err(error) = self.evict(&pod).await {
                        tracing::warn!(%error, pod = %key, "cannot evict a pod from a tainted node; retrying");
                        next = Some(now);
                    }
                }
            }
        }
        if let Some(at) = next {
            self.lock().deadlines.insert(node_name.to_owned(), at);
        }
    }

    /// Marks the pod as disrupted and deletes it (gracefully: its agent, if it is alive, stops the
    /// containers first; an unreachable node's pod stays Terminating until the node returns or is
    /// deleted, and its owner replaces it at once, counting it as gone).
    async fn evict(&self, pod: &Value) -> Result<(), ClientError> {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        if !self.lock().evicted.insert(uid.clone()) {
            return Ok(());
        }
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        events::record(&self.events, events::TAINT_EVICTION_CONTROLLER, events::POD, pod, "Normal", "TaintManagerEviction", &format!("Marking for deletion Pod {namespace}/{name}"));
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": crate::node_lifecycle::now_rfc3339(),
        }]}});
        let result = async {
            crate::node_lifecycle::strategic_patch(&self.client, &format!("{path}/status"), &condition).await?;
            let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}});
            self.client.request(http::Method::DELETE, &path, Some(("application/json", bytes::Bytes::from(options.to_string())))).await
        }
        .await;
        match result {
            Ok(_) | Err(ClientError::Status { code: http::StatusCode::NOT_FOUND | http::StatusCode::CONFLICT, .. }) => Ok(()),
            Err(error) => {
                self.lock().evicted.remove(&uid);
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str) -> Value {
        json!({"key": key, "value": value, "effect": NO_EXECUTE})
    }

    fn pod(tolerations: Value) -> Value {
        json!({"spec": {"tolerations": tolerations}})
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let t = taint("k", "v");
        assert!(tolerates(&json!({"key": "k", "operator": "Exists"}), &t));
        assert!(tolerates(&json!({"key": "k", "value": "v"}), &t));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &t));
        assert!(!tolerates(&json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}), &t));
        assert!(tolerates(&json!({"operator": "Exists"}), &t));
        assert!(!tolerates(&json!({"key": "other", "operator": "Exists"}), &t));
    }

    #[test]
    fn untolerated_taint_evicts_at_once() {
        let unreachable = taint("node.kubernetes.io/unreachable", "");
        let taints = [(&unreachable, at("2026-01-01T00:00:00Z"))];
        assert_eq!(verdict(&pod(json!([])), &taints), Verdict::EvictNow);
        assert_eq!(verdict(&pod(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 0}])), &taints), Verdict::EvictNow);
        assert_eq!(verdict(&pod(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}])), &taints), Verdict::Keep);
        assert_eq!(verdict(&pod(json!([])), &[]), Verdict::Keep);
    }

    #[test]
    fn deadline_is_the_smallest_toleration_after_its_taint_was_added() {
        let unreachable = taint("node.kubernetes.io/unreachable", "");
        let custom = taint("maintenance", "yes");
        let taints = [(&unreachable, at("2026-01-01T00:00:00Z")), (&custom, at("2026-01-01T00:01:00Z"))];
        let tolerations = json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "maintenance", "operator": "Equal", "value": "yes", "tolerationSeconds": 30},
        ]);
        assert_eq!(verdict(&pod(tolerations), &taints), Verdict::EvictAt(at("2026-01-01T00:01:30Z")));
        // A taint tolerated forever does not hold back the other's deadline.
        let tolerations = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}, {"key": "maintenance", "operator": "Exists", "tolerationSeconds": 2}]);
        assert_eq!(verdict(&pod(tolerations), &taints), Verdict::EvictAt(at("2026-01-01T00:01:02Z")));
        // One untolerated taint decides.
        let tolerations = json!([{"key": "maintenance", "operator": "Exists", "tolerationSeconds": 2}]);
        assert_eq!(verdict(&pod(tolerations), &taints), Verdict::EvictNow);
    }
}
