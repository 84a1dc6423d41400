//! The scheduler: watches pods without a node (and `schedulerName` default-scheduler or empty),
//! takes them highest `spec.priority` first (`queue`), filters the nodes they fit on, scores those,
//! and binds each pod to the best through the `pods/binding` subresource (`schedule` decides over
//! the `cache`, with the rules in `plugins` and `topology`). A pod that fits nowhere gets
//! PodScheduled=False with the message users know and a FailedScheduling event, may preempt
//! lower-priority pods (`preemption`: the victims are deleted with their own grace period, the
//! pod's status gets `nominatedNodeName`, and the room stays reserved for it until the victims'
//! objects are gone), and is retried with back-off and whenever the cluster changes (a node added
//! or changed, a pod gone).
//!
//! Invariant: the scheduler writes only through pods/binding, pod status (PodScheduled,
//! nominatedNodeName), events, and the DELETE of preemption victims; it reads through list/watch.
//! Invariant: a pod only ever preempts pods of strictly lower priority, and not while victims of
//! its earlier preemption are still terminating.
//! Invariant: a binding is a conditional write on the server (a bound pod cannot be bound again),
//! so two schedulers never double-bind; this one counts its own bindings in flight (see `cache`).

mod cache;
mod node_table;
mod plugins;
mod preemption;
mod queue;
mod schedule;
#[cfg(test)]
mod test_support;
mod topology;

use bytes::Bytes;
use cache::Cache;
use http::Method;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use preemption::Preemption;
use queue::ActiveQueue;
use schedule::Decision;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tugboat_client::events::{event_name, InvolvedObject, NewEvent, Recorder};
use tugboat_client::Client;

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const DUE_SCAN_INTERVAL: Duration = Duration::from_secs(1);

struct Waiting {
    retry_at: Instant,
    backoff: Duration,
    message: String,
}

#[derive(Default)]
struct State {
    cache: Cache,
    /// Pods waiting for a node, by UID (the latest version seen). Shared: an attempt holds the
    /// pod outside the lock, and copying a pod's tree there was 1% of the server's time.
    pending: HashMap<String, Arc<Pod>>,
    active: ActiveQueue,
    unschedulable: HashMap<String, Waiting>,
    binding: HashSet<String>,
    /// When `next` last moved unschedulable pods whose wait ended into the active queue.
    last_due_scan: Option<Instant>,
}

impl State {
    fn enqueue(&mut self, uid: &str) {
        if !self.binding.contains(uid) && !self.unschedulable.contains_key(uid) {
            let priority = self.pending.get(uid).map(|pod| cache::priority(pod)).unwrap_or(0);
            self.active.push(uid, priority);
        }
    }

    /// The cluster changed: every unschedulable pod gets another try now.
    fn retry_unschedulable(&mut self) {
        let uids: Vec<String> = self.unschedulable.keys().cloned().collect();
        for uid in uids {
            if let Some(waiting) = self.unschedulable.get_mut(&uid) {
                waiting.retry_at = Instant::now();
            }
        }
    }
}

struct Scheduler {
    client: Client,
    events: Recorder,
    state: Mutex<State>,
    wake: Notify,
}

fn responsible(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let name = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or_default();
    let unbound = spec.and_then(|s| s.node_name.as_deref()).unwrap_or_default().is_empty();
    let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    (name.is_empty() || name == DEFAULT_SCHEDULER) && unbound && pod.metadata.deletion_timestamp.is_none() && !finished
}

/// The pod an event is about.
#[derive(Clone, Copy)]
struct PodRef<'a> {
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
}

fn key(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

impl Scheduler {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_pod_event(&self, kind: &str, event: PodEvent) {
        let pod = match event {
            PodEvent::Listed(pod) => *pod,
            PodEvent::Watched(watched) => {
                if kind == "MODIFIED" && self.lock().cache.still_counts(&watched.glance) {
                    return;
                }
                match tugboat_api::json::from_slice::<WatchedPod>(&watched.text) {
                    Ok(watched) => watched.object.into(),
                    Err(error) => return tracing::warn!(%error, "cannot decode a pod event"),
                }
            }
        };
        self.on_pod(kind, pod);
    }

    fn on_pod(&self, kind: &str, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut state = self.lock();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        if kind == "DELETED" || finished {
            let freed = state.cache.is_placed(&uid);
            state.cache.forget(&uid);
            state.pending.remove(&uid);
            state.unschedulable.remove(&uid);
            if freed {
                state.retry_unschedulable();
                self.wake.notify_one();
            }
            return;
        }
        if !node.is_empty() {
            // Bound (by us or anyone): it counts against its node.
            state.cache.place(&uid, &pod, &node);
            state.pending.remove(&uid);
            state.unschedulable.remove(&uid);
            return;
        }
        if responsible(&pod) {
            state.pending.insert(uid.clone(), Arc::new(pod));
            state.enqueue(&uid);
            self.wake.notify_one();
        } else {
            state.pending.remove(&uid);
            state.cache.clear_nomination(&uid);
        }
    }

    fn on_node(&self, kind: &str, node: Node) {
        let mut state = self.lock();
        let changed = if kind == "DELETED" {
            state.cache.remove_node(node.metadata.name.as_deref().unwrap_or_default());
            false
        } else {
            state.cache.set_node(&node)
        };
        if changed {
            state.retry_unschedulable();
            self.wake.notify_one();
        }
    }

    /// Namespaces' labels matter to affinity terms with a namespaceSelector.
    fn on_namespace(&self, kind: &str, namespace: Namespace) {
        let mut state = self.lock();
        let changed = if kind == "DELETED" {
            state.cache.remove_namespace(namespace.metadata.name.as_deref().unwrap_or_default());
            false
        } else {
            state.cache.set_namespace(&namespace)
        };
        if changed {
            state.retry_unschedulable();
            self.wake.notify_one();
        }
    }

    /// The next pod to schedule, by priority. Unschedulable pods whose wait ended join the
    /// active queue when it runs dry, or at least every `DUE_SCAN_INTERVAL` (as kube-scheduler
    /// flushes its back-off queue), so a burst does not rescan them for every decision.
    fn next(&self) -> Result<String, Option<Instant>> {
        let mut state = self.lock();
        let now = Instant::now();
        let state = &mut *state;
        if state.active.is_empty() || state.last_due_scan.is_none_or(|last| now.duration_since(last) >= DUE_SCAN_INTERVAL) {
            state.last_due_scan = Some(now);
            let due: Vec<(String, i32)> = state
                .unschedulable
                .iter()
                .filter(|(uid, w)| w.retry_at <= now && !state.active.contains(uid))
                .map(|(uid, _)| (uid.clone(), state.pending.get(uid).map(|pod| cache::priority(pod)).unwrap_or(0)))
                .collect();
            for (uid, priority) in due {
                state.active.push(&uid, priority);
            }
        }
        while let Some(uid) = state.active.pop() {
            if state.pending.contains_key(&uid) {
                return Ok(uid);
            }
            state.unschedulable.remove(&uid);
        }
        Err(state.unschedulable.values().map(|w| w.retry_at).min())
    }

    /// One scheduling decision; binding runs in the background.
    fn schedule_one(self: &Arc<Self>, uid: String) {
        let mut state = self.lock();
        let Some(pod) = state.pending.get(&uid).cloned() else {
            state.unschedulable.remove(&uid);
            return;
        };
        let node = match schedule::decide(&mut state.cache, &uid, &pod) {
            Decision::Fits(node) => node,
            Decision::Unschedulable { message, preemption } => {
                let previous = state.unschedulable.get(&uid).map(|w| (w.backoff, w.message.clone()));
                let backoff = previous.as_ref().map(|(b, _)| (*b * 2).min(MAX_BACKOFF)).unwrap_or(INITIAL_BACKOFF);
                let repeated = previous.as_ref().is_some_and(|(_, m)| *m == message);
                state.unschedulable.insert(uid.clone(), Waiting { retry_at: Instant::now() + backoff, backoff, message: message.clone() });
                if let Some(preemption) = &preemption {
                    // The victims' room is kept for the preemptor; it is retried when they are gone.
                    state.cache.nominate(&uid, &pod, &preemption.node);
                }
                drop(state);
                let this = self.clone();
                tokio::spawn(async move {
                    if let Some(preemption) = preemption {
                        this.preempt(&pod, preemption).await;
                    }
                    if !repeated {
                        this.report_unschedulable(&pod, &message).await;
                    }
                });
                return;
            }
        };
        // Assume: the pod counts against the node now; the binding confirms or undoes it.
        state.cache.place(&uid, &pod, &node);
        state.unschedulable.remove(&uid);
        state.pending.remove(&uid);
        state.binding.insert(uid.clone());
        drop(state);
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.bind(&pod, &node).await;
            let mut state = this.lock();
            state.binding.remove(&uid);
            if let Err(error) = result {
                tracing::warn!(pod = ?key(&pod), %node, %error, "binding failed; the pod goes back to the queue");
                state.cache.forget(&uid);
                let conflict = matches!(error, tugboat_client::ClientError::Status { code: http::StatusCode::CONFLICT | http::StatusCode::NOT_FOUND, .. });
                if !conflict {
                    state.pending.insert(uid.clone(), pod);
                    state.unschedulable.insert(uid, Waiting { retry_at: Instant::now() + INITIAL_BACKOFF, backoff: INITIAL_BACKOFF, message: String::new() });
                }
                this.wake.notify_one();
            }
        });
    }

    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), tugboat_client::ClientError> {
        let (namespace, name) = key(pod);
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/binding");
        self.client.request(Method::POST, &path, Some(("application/json", Bytes::from(binding.to_string())))).await?;
        self.event(pod, "Normal", "Scheduled", &format!("Successfully assigned {namespace}/{name} to {node}"));
        Ok(())
    }

    /// Deletes the victims (each with its own grace period: its agent stops it and then removes
    /// the object), records a Preempted event on each, and nominates the node for the preemptor.
    async fn preempt(&self, pod: &Pod, preemption: Preemption) {
        let (namespace, name) = key(pod);
        let node = preemption.node;
        tracing::info!(pod = ?(&namespace, &name), %node, victims = preemption.victims.len(), "preempting");
        for victim in &preemption.victims {
            let path = format!("/api/v1/namespaces/{}/pods/{}", victim.namespace, victim.name);
            match self.client.request(Method::DELETE, &path, None).await {
                Ok(_) => {
                    let victim_ref = PodRef { namespace: &victim.namespace, name: &victim.name, uid: &victim.uid };
                    self.event_on(&victim_ref, "Normal", "Preempted", &format!("Preempted by {namespace}/{name} on node {node}"));
                }
                Err(error) => tracing::warn!(victim = ?(&victim.namespace, &victim.name), %error, "cannot delete a preemption victim"),
            }
        }
        let patch = json!({"status": {"nominatedNodeName": node}});
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
        if let Err(error) = self.client.request(Method::PATCH, &path, Some(("application/merge-patch+json", Bytes::from(patch.to_string())))).await {
            tracing::debug!(%error, "cannot record the nominated node");
        }
    }

    async fn report_unschedulable(&self, pod: &Pod, message: &str) {
        let (namespace, name) = key(pod);
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now}]}});
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
        if let Err(error) = self.client.request(Method::PATCH, &path, Some(("application/merge-patch+json", Bytes::from(patch.to_string())))).await {
            tracing::debug!(%error, "cannot record PodScheduled=False");
        }
        self.event(pod, "Warning", "FailedScheduling", message);
    }

    fn event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        let (namespace, name) = key(pod);
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.event_on(&PodRef { namespace: &namespace, name: &name, uid }, kind, reason, message);
    }

    fn event_on(&self, pod: &PodRef<'_>, kind: &str, reason: &str, message: &str) {
        let PodRef { namespace, name, uid } = *pod;
        let now = jiff::Timestamp::now();
        let event = NewEvent {
            name: &event_name(name),
            namespace,
            about: InvolvedObject { api_version: "v1", kind: "Pod", name, namespace, uid, ..Default::default() },
            kind,
            reason,
            message,
            component: DEFAULT_SCHEDULER,
            host: None,
            first: now,
            last: now,
            count: 1,
        };
        self.events.create(&event);
    }
}

/// A pod event as the informer hands it over: a listed pod, decoded; a watched one glanced at,
/// with its text kept for decoding when the glance shows something the scheduler counts changed.
enum PodEvent {
    Listed(Box<Pod>),
    Watched(WatchedPodEvent),
}

struct WatchedPodEvent {
    glance: cache::PodGlance,
    text: Bytes,
}

/// A watch event's type and a glance at its pod.
#[derive(serde::Deserialize)]
struct EventGlance {
    #[serde(rename = "type")]
    kind: String,
    object: cache::PodGlance,
}

/// A watch event's pod, decoded as the scheduler reads it.
#[derive(serde::Deserialize)]
struct WatchedPod {
    object: PodAsRead,
}

/// What the scheduler reads of a pod: its metadata and spec, and of its status only the phase and
/// the nominated node. A running pod's status (conditions, container states and their times) is
/// a third of it, and every status change of every pod passes through here.
#[derive(serde::Deserialize)]
struct PodAsRead {
    metadata: ObjectMeta,
    spec: Option<PodSpec>,
    status: Option<PodStatusAsRead>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatusAsRead {
    phase: Option<String>,
    nominated_node_name: Option<String>,
}

impl From<PodAsRead> for Pod {
    fn from(pod: PodAsRead) -> Self {
        let status = pod.status.map(|s| PodStatus { phase: s.phase, nominated_node_name: s.nominated_node_name, ..Default::default() });
        Pod { metadata: pod.metadata, spec: pod.spec, status }
    }
}

/// Runs the scheduler until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let scheduler = Arc::new(Scheduler { client: client.clone(), events: Recorder::start(client.clone()), state: Mutex::new(State::default()), wake: Notify::new() });
    let nodes = {
        let scheduler = scheduler.clone();
        tokio::spawn(async move { tugboat_client::inform::<Node>(&scheduler.client.clone(), "/api/v1/nodes", |kind, node| scheduler.on_node(kind, node)).await })
    };
    let namespaces = {
        let scheduler = scheduler.clone();
        tokio::spawn(async move { tugboat_client::inform::<Namespace>(&scheduler.client.clone(), "/api/v1/namespaces", |kind, namespace| scheduler.on_namespace(kind, namespace)).await })
    };
    let pods = {
        let scheduler = scheduler.clone();
        // Two of a bound pod's three events (its binding, its start) change nothing the cache
        // counts: a glance at a few fields tells, so they are never decoded whole.
        let listed = |item: serde_json::Value| serde_json::from_value::<PodAsRead>(item).ok().map(|pod| PodEvent::Listed(Box::new(pod.into())));
        let watched = |text: &Bytes| {
            let event = tugboat_api::json::from_slice::<EventGlance>(text).ok()?;
            Some((event.kind, PodEvent::Watched(WatchedPodEvent { glance: event.object, text: text.clone() })))
        };
        tokio::spawn(async move { tugboat_client::inform_decoding(&scheduler.client.clone(), "/api/v1/pods", listed, watched, |kind, event| scheduler.on_pod_event(kind, event)).await })
    };
    let worker = {
        let scheduler = scheduler.clone();
        tokio::spawn(async move {
            // No yield between decisions: while pods wait, this loop keeps its worker thread, so
            // a burst's creates cannot starve scheduling (yielding after each decision was tried:
            // burst p50 latency went from 45 ms to over 4 s at 5,000 nodes).
            loop {
                match scheduler.next() {
                    Ok(uid) => scheduler.schedule_one(uid),
                    Err(next_retry) => {
                        let wait = next_retry.map(|at| at.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
                        let _ = tokio::time::timeout(wait, scheduler.wake.notified()).await;
                    }
                }
            }
        })
    };
    shutdown.await;
    nodes.abort();
    namespaces.abort();
    pods.abort();
    worker.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn only_unbound_live_pods_of_this_scheduler() {
        let pod = |spec: Value, deleting: bool| -> Pod {
            let mut value = json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec});
            if deleting {
                value["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            serde_json::from_value(value).unwrap()
        };
        assert!(responsible(&pod(json!({"containers": []}), false)));
        assert!(responsible(&pod(json!({"containers": [], "schedulerName": "default-scheduler"}), false)));
        assert!(!responsible(&pod(json!({"containers": [], "schedulerName": "other"}), false)));
        assert!(!responsible(&pod(json!({"containers": [], "nodeName": "n"}), false)));
        assert!(!responsible(&pod(json!({"containers": []}), true)));
    }

    #[test]
    fn a_pod_as_read_keeps_metadata_spec_phase_and_nominated_node() {
        let full = json!({"metadata": {"name": "p", "namespace": "d", "uid": "u", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i"}], "priority": 5},
            "status": {"phase": "Pending", "nominatedNodeName": "n1", "conditions": [{"type": "PodScheduled", "status": "False"}]}});
        let read: Pod = serde_json::from_value::<PodAsRead>(full.clone()).expect("a pod").into();
        let whole: Pod = serde_json::from_value(full).expect("a pod");
        assert_eq!((&read.metadata, &read.spec), (&whole.metadata, &whole.spec));
        let status = read.status.expect("a status");
        assert_eq!((status.phase.as_deref(), status.nominated_node_name.as_deref(), status.conditions), (Some("Pending"), Some("n1"), None));
    }
}
