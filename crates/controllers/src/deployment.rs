//! The Deployment controller, after kube-controller-manager's `pkg/controller/deployment`: each
//! revision of the pod template is a ReplicaSet named `<deployment>-<pod-template-hash>`.
//!
//! One reconcile takes one step, like Kubernetes' `syncDeployment`:
//! - paused, or a scaling event (an active ReplicaSet's `desired-replicas` annotation differs from
//!   `spec.replicas`): replicas are spread proportionally over the active ReplicaSets, no rollout;
//! - RollingUpdate: scale the new ReplicaSet up within maxSurge, else old ones down within
//!   maxUnavailable; Recreate: old ones to zero, and the new one only once their pods are gone;
//! - then the status, with the Available and Progressing conditions (paused/resumed, progress
//!   deadline) that `kubectl rollout status` reads.
//!
//! Unlike Kubernetes, the rollout arithmetic counts pods conservatively from ReplicaSet status as
//! well as spec (a ReplicaSet scaled down still has its pods until its status says otherwise, and
//! one scaled down below its available count has at most its new spec available), so a lagging
//! cache can never take a rollout beyond maxSurge or below maxUnavailable.
//!
//! Revisions are the `deployment.kubernetes.io/revision` annotation (what `kubectl rollout
//! history/undo` read); old ReplicaSets beyond revisionHistoryLimit go once a rollout is complete.
//! Every change of a Deployment or of a ReplicaSet it owns reconciles it from the informers' state;
//! a rollout that makes no progress is looked at again when its deadline passes.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tugboat_client::events::Recorder;
use tugboat_client::{Client, ClientError};

use crate::events;
use crate::runtime::{Change, SharedInformers};

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// Deployment annotations never copied to its ReplicaSets (Kubernetes' `annotationsToSkip`).
const NOT_COPIED: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"];
const COMPONENT: &str = "deployment-controller";

// Reasons of the Progressing condition, as Kubernetes names them.
const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

/// A stable hash of a pod template (FNV-1a over its JSON), as a short label-safe string.
pub fn template_hash(template: &Value) -> String {
    let text = template.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Kubernetes' hashes avoid vowels so they never spell words; keep to its alphabet.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(hash % ALPHABET.len() as u64) as usize] as char);
        hash /= ALPHABET.len() as u64;
    }
    out
}

/// maxSurge/maxUnavailable: an integer, or a percentage of `replicas` (surge rounds up,
/// unavailable rounds down, as Kubernetes does).
pub fn scaled(value: &Value, replicas: i64, round_up: bool, default: &str) -> i64 {
    let text = match value {
        Value::Number(n) => return n.as_i64().unwrap_or(0),
        Value::String(s) => s.clone(),
        _ => default.to_owned(),
    };
    match text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
        Some(percent) if round_up => (percent * replicas + 99) / 100,
        Some(percent) => percent * replicas / 100,
        None => text.parse().unwrap_or(0),
    }
}

/// A pod template as Kubernetes compares a Deployment's with its ReplicaSets' (`EqualIgnoreHash`):
/// without the pod-template-hash label, and without nulls, empty objects and empty arrays, which
/// Kubernetes' typed objects do not tell from absent fields (`kubectl rollout undo` sends
/// `creationTimestamp: null`, `resources: {}`, ...).
pub fn comparable_template(template: &Value) -> Value {
    fn normalize(value: &Value) -> Option<Value> {
        match value {
            Value::Null => None,
            Value::Object(map) => {
                let kept: serde_json::Map<String, Value> = map.iter().filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v))).collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            Value::Array(items) => (!items.is_empty()).then(|| Value::Array(items.iter().map(|v| normalize(v).unwrap_or(Value::Null)).collect())),
            other => Some(other.clone()),
        }
    }
    let mut template = template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    normalize(&template).unwrap_or(Value::Null)
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn revision_of(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// What the rollout arithmetic reads of a Deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    pub replicas: i64,
    /// 0 unless RollingUpdate (Kubernetes' `MaxSurge`).
    pub surge: i64,
    /// 0 unless RollingUpdate (Kubernetes' `MaxUnavailable`), never above `replicas`.
    pub unavailable: i64,
    pub rolling: bool,
    pub paused: bool,
    /// progressDeadlineSeconds, unless absent or "never" (MaxInt32).
    pub deadline: Option<i64>,
}

impl DeploymentSpec {
    pub fn of(deployment: &Value) -> Self {
        let spec = &deployment["spec"];
        let replicas = spec["replicas"].as_i64().unwrap_or(1);
        let rolling = spec["strategy"]["type"] != "Recreate";
        let (mut surge, mut unavailable) = (0, 0);
        if rolling {
            let rolling_update = &spec["strategy"]["rollingUpdate"];
            surge = scaled(&rolling_update["maxSurge"], replicas, true, "25%");
            unavailable = scaled(&rolling_update["maxUnavailable"], replicas, false, "25%");
            // Both zero would never move: Kubernetes' ResolveFenceposts allows one unavailable.
            if surge == 0 && unavailable == 0 {
                unavailable = 1;
            }
            unavailable = unavailable.min(replicas);
        }
        let deadline = spec["progressDeadlineSeconds"].as_i64().filter(|d| *d != i64::from(i32::MAX));
        DeploymentSpec { replicas, surge, unavailable, rolling, paused: spec["paused"] == true, deadline }
    }

    fn max_replicas(&self) -> i64 {
        self.replicas + self.surge
    }
}

/// What the rollout arithmetic reads of a ReplicaSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaSetView {
    pub name: String,
    /// spec.replicas
    pub spec: i64,
    /// status.replicas: its pods that are not terminating.
    pub pods: i64,
    pub ready: i64,
    pub available: i64,
    pub revision: i64,
    pub created: String,
    /// The desired-replicas and max-replicas annotations: the Deployment's size when last scaled.
    pub desired: Option<i64>,
    pub max: Option<i64>,
}

impl ReplicaSetView {
    pub fn of(rs: &Value) -> Self {
        let annotation = |name: &str| rs["metadata"]["annotations"][name].as_str().and_then(|v| v.parse().ok());
        ReplicaSetView {
            name: rs["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
            spec: int(&rs["spec"]["replicas"]),
            pods: int(&rs["status"]["replicas"]),
            ready: int(&rs["status"]["readyReplicas"]),
            available: int(&rs["status"]["availableReplicas"]),
            revision: revision_of(rs),
            created: rs["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_owned(),
            desired: annotation(DESIRED_REPLICAS),
            max: annotation(MAX_REPLICAS),
        }
    }

    fn active(&self) -> bool {
        self.spec > 0
    }

    /// Available pods it keeps once it reaches its spec: when it shrinks, the ReplicaSet
    /// controller deletes unavailable pods first, but at worst available ones.
    fn available_at_spec(&self) -> i64 {
        self.available.min(self.spec)
    }

    /// Pods it may have that are not terminating: a ReplicaSet just scaled down keeps its pods
    /// until its controller has deleted them, which its status then shows.
    fn pods_at_most(&self) -> i64 {
        self.spec.max(self.pods)
    }

    fn older_first(a: &&ReplicaSetView, b: &&ReplicaSetView) -> Ordering {
        a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
    }
}

/// New sizes (name, replicas) for a scaling event or a paused Deployment (Kubernetes' `scale`):
/// the single active ReplicaSet (or, with none active, the newest) takes `replicas`; a saturated
/// new one empties the old ones; during a rolling update the change is split across the active
/// ReplicaSets in proportion to their size. Lists every ReplicaSet to write, sizes unchanged
/// included (their size annotations follow the Deployment's).
pub fn proportional_sizes(spec: &DeploymentSpec, new: Option<&ReplicaSetView>, old: &[ReplicaSetView], status_replicas: i64) -> Vec<(String, i64)> {
    let mut old_newest_first: Vec<&ReplicaSetView> = old.iter().collect();
    old_newest_first.sort_by(|a, b| ReplicaSetView::older_first(b, a));
    let mut active: Vec<&ReplicaSetView> = new.into_iter().chain(old_newest_first.iter().copied()).filter(|rs| rs.active()).collect();
    let active_or_latest = match active.len() {
        0 => new.or(old_newest_first.first().copied()),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(rs) = active_or_latest {
        return vec![(rs.name.clone(), spec.replicas)];
    }
    let saturated = new.is_some_and(|rs| rs.spec == spec.replicas && rs.desired == Some(spec.replicas) && rs.available == spec.replicas);
    if saturated {
        return active.iter().filter(|rs| new.is_none_or(|n| n.name != rs.name)).map(|rs| (rs.name.clone(), 0)).collect();
    }
    if !spec.rolling {
        return Vec::new();
    }
    let total: i64 = active.iter().map(|rs| rs.spec).sum();
    let allowed = if spec.replicas > 0 { spec.max_replicas() } else { 0 };
    let to_add = allowed - total;
    // Larger ReplicaSets first; among equals, newer ones grow first and older ones shrink first.
    active.sort_by(|a, b| {
        b.spec.cmp(&a.spec).then_with(|| if to_add > 0 { ReplicaSetView::older_first(b, a) } else { ReplicaSetView::older_first(a, b) })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i64)> = Vec::new();
    for rs in &active {
        let share = proportion(spec, rs, to_add, added, status_replicas);
        added += share;
        sizes.push((rs.name.clone(), rs.spec + share));
    }
    // What rounding left over goes to (or comes from) the largest.
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// Kubernetes' `GetReplicaSetProportion`: this ReplicaSet's share of `to_add`, from its size
/// relative to the Deployment's size when it was last scaled (the max-replicas annotation).
fn proportion(spec: &DeploymentSpec, rs: &ReplicaSetView, to_add: i64, added: i64, status_replicas: i64) -> i64 {
    if rs.spec == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if spec.replicas == 0 {
        -rs.spec
    } else {
        let before = rs.max.filter(|m| *m != 0).unwrap_or(status_replicas);
        if before <= 0 {
            return 0;
        }
        ((rs.spec * spec.max_replicas()) as f64 / before as f64).round() as i64 - rs.spec
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Whether the Deployment was resized since its active ReplicaSets were last scaled.
pub fn is_scaling_event(spec: &DeploymentSpec, new: Option<&ReplicaSetView>, old: &[ReplicaSetView]) -> bool {
    new.into_iter().chain(old).filter(|rs| rs.active()).any(|rs| rs.desired.is_some_and(|d| d != spec.replicas))
}

/// The new ReplicaSet's size for the next step of a rolling update: up to `replicas`, while all
/// pods that may exist stay within replicas + maxSurge.
pub fn new_replicas(spec: &DeploymentSpec, new: &ReplicaSetView, old: &[ReplicaSetView]) -> i64 {
    if new.spec >= spec.replicas {
        return spec.replicas;
    }
    let pods: i64 = new.pods_at_most() + old.iter().map(ReplicaSetView::pods_at_most).sum::<i64>();
    if pods >= spec.max_replicas() {
        return new.spec;
    }
    new.spec + (spec.max_replicas() - pods).min(spec.replicas - new.spec)
}

/// Old ReplicaSets to shrink in the next step of a rolling update (Kubernetes'
/// `reconcileOldReplicaSets`): first their unavailable pods, then available ones as long as
/// replicas - maxUnavailable stay available. Returns only the sizes that change.
pub fn old_scale_down(spec: &DeploymentSpec, new: &ReplicaSetView, old: &[ReplicaSetView]) -> Vec<(String, i64)> {
    let old_spec: i64 = old.iter().map(|rs| rs.spec).sum();
    if old_spec == 0 {
        return Vec::new();
    }
    let min_available = spec.replicas - spec.unavailable;
    let new_unavailable = new.spec - new.available_at_spec();
    let max_scaled_down = new.spec + old_spec - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&ReplicaSetView> = old.iter().collect();
    sorted.sort_by(ReplicaSetView::older_first);
    let mut sizes: Vec<i64> = sorted.iter().map(|rs| rs.spec).collect();
    // Unavailable pods serve nothing: they go first, oldest ReplicaSet first.
    let mut cleaned = 0;
    for (rs, size) in sorted.iter().zip(sizes.iter_mut()) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = rs.spec - rs.available_at_spec();
        let count = unhealthy.min(max_scaled_down - cleaned);
        *size -= count;
        cleaned += count;
    }
    let available: i64 = new.available_at_spec() + sorted.iter().zip(&sizes).map(|(rs, size)| rs.available.min(*size)).sum::<i64>();
    let mut removable = (available - min_available).max(0);
    for size in &mut sizes {
        let count = (*size).min(removable);
        *size -= count;
        removable -= count;
    }
    sorted.iter().zip(sizes).filter(|(rs, size)| rs.spec != *size).map(|(rs, size)| (rs.name.clone(), size)).collect()
}

fn timestamp(now: jiff::Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn condition(kind: &str, status: &str, reason: &str, message: String, now: jiff::Timestamp) -> Value {
    let at = timestamp(now);
    json!({"type": kind, "status": status, "reason": reason, "message": message, "lastUpdateTime": at, "lastTransitionTime": at})
}

/// Kubernetes' `SetDeploymentCondition`: the same status and reason leave the condition as it is;
/// the same status keeps its transition time.
fn set_condition(conditions: &mut Vec<Value>, mut new: Value) {
    if let Some(index) = conditions.iter().position(|c| c["type"] == new["type"]) {
        let current = &conditions[index];
        if current["status"] == new["status"] && current["reason"] == new["reason"] {
            return;
        }
        if current["status"] == new["status"] {
            new["lastTransitionTime"] = current["lastTransitionTime"].clone();
        }
        conditions.remove(index);
    }
    conditions.push(new);
}

fn find_condition<'a>(conditions: &'a [Value], kind: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| c["type"] == kind)
}

/// What a reconcile learned that the status must say besides the counts.
#[derive(Debug, Default)]
pub struct StatusInputs {
    /// The Progressing condition of a new ReplicaSet just created or first found: (reason, message).
    pub new_rs_progress: Option<(&'static str, String)>,
    /// Whether this was a rollout step (not a paused or scaling sync): only those estimate progress.
    pub estimate_progress: bool,
    /// The ReplicaFailure condition of the new (else an old) ReplicaSet.
    pub replica_failure: Option<Value>,
}

/// The Deployment's next status (Kubernetes' `calculateStatus` and `syncRolloutStatus`), and
/// when to look again to notice a missed progress deadline.
pub fn compute_status(deployment: &Value, new: Option<&ReplicaSetView>, all: &[&ReplicaSetView], inputs: StatusInputs, now: jiff::Timestamp) -> (Value, Option<Duration>) {
    let spec = DeploymentSpec::of(deployment);
    let current = &deployment["status"];
    let replicas: i64 = all.iter().map(|rs| rs.pods).sum();
    let updated = new.map_or(0, |rs| rs.pods);
    let ready: i64 = all.iter().map(|rs| rs.ready).sum();
    let available: i64 = all.iter().map(|rs| rs.available).sum();
    let spec_total: i64 = all.iter().map(|rs| rs.spec).sum();
    let mut conditions: Vec<Value> = current["conditions"].as_array().cloned().unwrap_or_default();
    let progressing_reason = |conditions: &[Value]| find_condition(conditions, "Progressing").and_then(|c| c["reason"].as_str().map(str::to_owned));

    // Pausing and resuming show as an Unknown Progressing condition (a timeout stays reported).
    if spec.deadline.is_some() && progressing_reason(&conditions).as_deref() != Some(TIMED_OUT) {
        let paused_shown = progressing_reason(&conditions).as_deref() == Some(PAUSED);
        if spec.paused && !paused_shown {
            set_condition(&mut conditions, condition("Progressing", "Unknown", PAUSED, "Deployment is paused".into(), now));
        } else if !spec.paused && paused_shown {
            set_condition(&mut conditions, condition("Progressing", "Unknown", RESUMED, "Deployment is resumed".into(), now));
        }
    }
    if let (Some((reason, message)), Some(_)) = (inputs.new_rs_progress, spec.deadline) {
        if reason == NEW_RS_CREATED || find_condition(&conditions, "Progressing").is_none() {
            set_condition(&mut conditions, condition("Progressing", "True", reason, message, now));
        }
    }
    let available_condition = if available >= spec.replicas - spec.unavailable {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), now)
    } else {
        condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into(), now)
    };
    set_condition(&mut conditions, available_condition);

    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
        "unavailableReplicas": (spec_total - available).max(0),
    });
    let new_name = new.map(|rs| rs.name.as_str()).unwrap_or_default();
    let subject = if new.is_some() { format!("ReplicaSet {new_name:?}") } else { format!("Deployment {:?}", deployment["metadata"]["name"].as_str().unwrap_or_default()) };
    let complete = updated == spec.replicas && replicas == spec.replicas && available == spec.replicas;
    let mut wait = None;
    if spec.deadline.is_none() {
        conditions.retain(|c| c["type"] != "Progressing");
    } else if inputs.estimate_progress {
        let deadline = spec.deadline.unwrap_or_default();
        let was_complete = progressing_reason(current["conditions"].as_array().map(Vec::as_slice).unwrap_or_default()).as_deref() == Some(NEW_RS_AVAILABLE);
        let old_replicas = int(&current["replicas"]) - int(&current["updatedReplicas"]);
        let progressed = updated > int(&current["updatedReplicas"])
            || replicas - updated < old_replicas
            || ready > int(&current["readyReplicas"])
            || available > int(&current["availableReplicas"]);
        if !(replicas == updated && was_complete) {
            if complete {
                set_condition(&mut conditions, condition("Progressing", "True", NEW_RS_AVAILABLE, format!("{subject} has successfully progressed."), now));
            } else if progressed {
                // Progress refreshes lastUpdateTime even with the same reason: the deadline counts from it.
                let mut refreshed = condition("Progressing", "True", RS_UPDATED, format!("{subject} is progressing."), now);
                if let Some(previous) = find_condition(&conditions, "Progressing").filter(|c| c["status"] == "True") {
                    refreshed["lastTransitionTime"] = previous["lastTransitionTime"].clone();
                }
                conditions.retain(|c| c["type"] != "Progressing");
                conditions.push(refreshed);
            } else if let Some(progressing) = find_condition(&conditions, "Progressing").cloned() {
                let since = progressing["lastUpdateTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).unwrap_or(now);
                let remaining = since.as_second() + deadline - now.as_second();
                let reason = progressing["reason"].as_str().unwrap_or_default();
                if reason == TIMED_OUT || (reason != NEW_RS_AVAILABLE && remaining < 0) {
                    set_condition(&mut conditions, condition("Progressing", "False", TIMED_OUT, format!("{subject} has timed out progressing."), now));
                } else if reason != NEW_RS_AVAILABLE {
                    // Nothing moves and nothing else will wake us: look again once the deadline passed.
                    wait = Some(Duration::from_secs(remaining.max(0).unsigned_abs() + 1));
                }
            }
        }
    }
    conditions.retain(|c| c["type"] != "ReplicaFailure");
    if let Some(failure) = inputs.replica_failure {
        conditions.push(failure);
    }
    status["conditions"] = Value::Array(conditions);
    (status, wait)
}

/// Whether writing `wanted` would change `current` (absent counters read as zero).
fn status_differs(current: &Value, wanted: &Value) -> bool {
    ["observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"].iter().any(|f| int(&current[*f]) != int(&wanted[*f]))
        || current["conditions"].as_array().cloned().unwrap_or_default() != wanted["conditions"].as_array().cloned().unwrap_or_default()
}

#[derive(Default)]
struct State {
    deployments: HashMap<String, Value>,
    replica_sets: HashMap<String, Value>,
    dirty: BTreeSet<String>,
    /// Deployments to look at again at a given time (progress deadlines).
    later: HashMap<String, Instant>,
}

fn object_key(object: &Value) -> String {
    format!("{}/{}", object["metadata"]["namespace"].as_str().unwrap_or_default(), object["metadata"]["name"].as_str().unwrap_or_default())
}

pub struct DeploymentController {
    client: Client,
    events: Recorder,
    state: Mutex<State>,
    wake: Notify,
}

impl DeploymentController {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn owner_key(rs: &Value) -> Option<String> {
        let owner = rs["metadata"]["ownerReferences"].as_array()?.iter().find(|o| o["kind"] == "Deployment" && o["controller"] == true)?;
        Some(format!("{}/{}", rs["metadata"]["namespace"].as_str().unwrap_or_default(), owner["name"].as_str()?))
    }

    async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ClientError> {
        let bytes = self.client.request(Method::PATCH, path, Some(("application/merge-patch+json", Bytes::from(patch.to_string())))).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn event(&self, deployment: &Value, message: &str) {
        events::record(&self.events, COMPONENT, ("apps/v1", "Deployment"), deployment, "Normal", "ScalingReplicaSet", message);
    }

    /// Sets a ReplicaSet's size and size annotations (Kubernetes' `scaleReplicaSet`); the write is
    /// conditional on the version read, so a decision made on a stale ReplicaSet is retried.
    /// Returns whether the size changed.
    async fn scale(&self, deployment: &Value, rs: &Value, size: i64) -> Result<bool, ClientError> {
        let spec = DeploymentSpec::of(deployment);
        let view = ReplicaSetView::of(rs);
        let resized = view.spec != size;
        if !resized && view.desired == Some(spec.replicas) && view.max == Some(spec.max_replicas()) {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"resourceVersion": rs["metadata"]["resourceVersion"],
                "annotations": {DESIRED_REPLICAS: spec.replicas.to_string(), MAX_REPLICAS: spec.max_replicas().to_string()}},
            "spec": {"replicas": size},
        });
        let namespace = rs["metadata"]["namespace"].as_str().unwrap_or_default();
        self.merge_patch(&format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{}", view.name), &patch).await?;
        if resized {
            let direction = if size > view.spec { "up" } else { "down" };
            self.event(deployment, &format!("Scaled {direction} replica set {} from {} to {size}", view.name, view.spec));
        }
        Ok(resized)
    }

    /// Applies `sizes` in order; returns whether any size changed.
    async fn scale_all(&self, deployment: &Value, owned: &[Value], sizes: &[(String, i64)]) -> Result<bool, ClientError> {
        let mut changed = false;
        for (name, size) in sizes {
            if let Some(rs) = owned.iter().find(|rs| rs["metadata"]["name"] == name.as_str()) {
                changed |= self.scale(deployment, rs, *size).await?;
            }
        }
        Ok(changed)
    }

    /// Creates the ReplicaSet of the current template at `size` (Kubernetes' `getNewReplicaSet`);
    /// `None` when it exists already: the cache lags behind an earlier create, and the informer
    /// brings it.
    async fn create_new_rs(&self, deployment: &Value, hash: &str, revision: i64, size: i64, inputs: &mut StatusInputs) -> Result<Option<Value>, ClientError> {
        let spec = DeploymentSpec::of(deployment);
        let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let mut template = deployment["spec"]["template"].clone();
        template["metadata"]["labels"][HASH_LABEL] = hash.into();
        let mut selector = deployment["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = hash.into();
        let mut annotations = copied_annotations(deployment);
        annotations.insert(REVISION.into(), revision.to_string().into());
        annotations.insert(DESIRED_REPLICAS.into(), spec.replicas.to_string().into());
        annotations.insert(MAX_REPLICAS.into(), spec.max_replicas().to_string().into());
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{name}-{hash}"), "namespace": namespace, "labels": template["metadata"]["labels"], "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": deployment["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": size, "minReadySeconds": int(&deployment["spec"]["minReadySeconds"]), "selector": selector, "template": template},
        });
        let created = match self.client.create(&format!("/apis/apps/v1/namespaces/{namespace}/replicasets"), &rs).await {
            Ok(created) => created,
            Err(ClientError::Status { code: StatusCode::CONFLICT, .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        if size > 0 {
            self.event(deployment, &format!("Scaled up replica set {name}-{hash} from 0 to {size}"));
        }
        inputs.new_rs_progress = Some((NEW_RS_CREATED, format!("Created new replica set \"{name}-{hash}\"")));
        Ok(Some(created))
    }

    /// Brings an existing new ReplicaSet's annotations and minReadySeconds in line with the
    /// Deployment: a rollback makes it the newest revision again, remembering the old number.
    async fn sync_new_rs(&self, deployment: &Value, rs: Value, revision: i64) -> Result<Value, ClientError> {
        let mut annotations = serde_json::Map::new();
        for (key, value) in copied_annotations(deployment) {
            if rs["metadata"]["annotations"][&key] != value {
                annotations.insert(key, value);
            }
        }
        let current = revision_of(&rs);
        if current < revision {
            annotations.insert(REVISION.into(), revision.to_string().into());
            if current > 0 {
                let history = match rs["metadata"]["annotations"][REVISION_HISTORY].as_str() {
                    Some(h) if !h.is_empty() => format!("{h},{current}"),
                    _ => current.to_string(),
                };
                annotations.insert(REVISION_HISTORY.into(), history.into());
            }
        }
        let min_ready = int(&deployment["spec"]["minReadySeconds"]);
        if annotations.is_empty() && int(&rs["spec"]["minReadySeconds"]) == min_ready {
            return Ok(rs);
        }
        let patch = json!({"metadata": {"resourceVersion": rs["metadata"]["resourceVersion"], "annotations": annotations}, "spec": {"minReadySeconds": min_ready}});
        let namespace = rs["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = rs["metadata"]["name"].as_str().unwrap_or_default();
        self.merge_patch(&format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"), &patch).await
    }

    /// Deletes old, empty ReplicaSets beyond revisionHistoryLimit, oldest revision first
    /// (Kubernetes' `cleanupDeployment`).
    async fn cleanup(&self, deployment: &Value, old: &[Value]) -> Result<(), ClientError> {
        let limit = deployment["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0);
        let mut alive: Vec<&Value> = old.iter().filter(|rs| rs["metadata"]["deletionTimestamp"].is_null()).collect();
        let excess = usize::try_from(i64::try_from(alive.len()).unwrap_or(i64::MAX) - limit).unwrap_or(0);
        alive.sort_by_key(|rs| revision_of(rs));
        for rs in alive.into_iter().take(excess) {
            let idle = int(&rs["spec"]["replicas"]) == 0 && int(&rs["status"]["replicas"]) == 0 && int(&rs["metadata"]["generation"]) <= int(&rs["status"]["observedGeneration"]);
            if !idle {
                continue;
            }
            let path = format!("/apis/apps/v1/namespaces/{}/replicasets/{}", rs["metadata"]["namespace"].as_str().unwrap_or_default(), rs["metadata"]["name"].as_str().unwrap_or_default());
            let options = Bytes::from(json!({"propagationPolicy": "Background"}).to_string());
            match self.client.request(Method::DELETE, &path, Some(("application/json", options))).await {
                Ok(_) | Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// One step for one Deployment; returns when to look again if nothing else will wake us.
    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ClientError> {
        let (deployment, owned) = {
            let state = self.lock();
            let Some(deployment) = state.deployments.get(key).cloned() else { return Ok(None) };
            let uid = deployment["metadata"]["uid"].clone();
            let owned: Vec<Value> = state
                .replica_sets
                .values()
                .filter(|rs| rs["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|o| o["uid"] == uid && o["controller"] == true)))
                .cloned()
                .collect();
            (deployment, owned)
        };
        let spec = DeploymentSpec::of(&deployment);
        let template = comparable_template(&deployment["spec"]["template"]);
        let hash = template_hash(&template);
        // The oldest ReplicaSet with the current template is the new one (a rollback reuses it).
        let mut owned = owned;
        owned.sort_by(|a, b| {
            let created = |rs: &Value| rs["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_owned();
            created(a).cmp(&created(b)).then_with(|| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()))
        });
        let (mut new_rs, mut old): (Option<Value>, Vec<Value>) = (None, Vec::new());
        for rs in owned {
            if new_rs.is_none() && comparable_template(&rs["spec"]["template"]) == template {
                new_rs = Some(rs);
            } else {
                old.push(rs);
            }
        }
        let mut inputs = StatusInputs::default();
        if deployment["metadata"]["deletionTimestamp"].is_string() {
            return self.update_status(&deployment, new_rs.as_ref(), &old, inputs).await;
        }
        let old_views: Vec<ReplicaSetView> = old.iter().map(ReplicaSetView::of).collect();
        let next_revision = old_views.iter().map(|rs| rs.revision).max().unwrap_or(0) + 1;
        if let Some(rs) = new_rs.take() {
            let rs = self.sync_new_rs(&deployment, rs, next_revision).await?;
            inputs.new_rs_progress = Some((FOUND_NEW_RS, format!("Found new replica set {:?}", rs["metadata"]["name"].as_str().unwrap_or_default())));
            new_rs = Some(rs);
        }
        let deployment = self.sync_revision_annotation(deployment, new_rs.as_ref()).await?;

        let new_view = new_rs.as_ref().map(ReplicaSetView::of);
        let all_owned: Vec<Value> = new_rs.iter().chain(&old).cloned().collect();
        if spec.paused || is_scaling_event(&spec, new_view.as_ref(), &old_views) {
            let status_replicas = int(&deployment["status"]["replicas"]);
            self.scale_all(&deployment, &all_owned, &proportional_sizes(&spec, new_view.as_ref(), &old_views, status_replicas)).await?;
            if spec.paused {
                self.cleanup(&deployment, &old).await?;
            }
            return self.update_status(&deployment, new_rs.as_ref(), &old, inputs).await;
        }
        inputs.estimate_progress = true;
        let was_complete = {
            let status = &deployment["status"];
            [int(&status["updatedReplicas"]), int(&status["replicas"]), int(&status["availableReplicas"])] == [spec.replicas; 3]
                && int(&status["observedGeneration"]) >= int(&deployment["metadata"]["generation"])
        };
        if spec.rolling {
            let new_object = match new_rs.take() {
                Some(rs) => rs,
                None => {
                    let size = new_replicas(&spec, &ReplicaSetView::default(), &old_views);
                    let Some(created) = self.create_new_rs(&deployment, &hash, next_revision, size, &mut inputs).await? else { return Ok(None) };
                    created
                }
            };
            let new_view = ReplicaSetView::of(&new_object);
            let size = new_replicas(&spec, &new_view, &old_views);
            if size != new_view.spec && self.scale(&deployment, &new_object, size).await? {
                return self.update_status(&deployment, Some(&new_object), &old, inputs).await;
            }
            if self.scale_all(&deployment, &old, &old_scale_down(&spec, &new_view, &old_views)).await? {
                return self.update_status(&deployment, Some(&new_object), &old, inputs).await;
            }
            new_rs = Some(new_object);
        } else {
            let empty_old: Vec<(String, i64)> = old_views.iter().filter(|rs| rs.active()).map(|rs| (rs.name.clone(), 0)).collect();
            if self.scale_all(&deployment, &old, &empty_old).await? {
                return self.update_status(&deployment, new_rs.as_ref(), &old, inputs).await;
            }
            // Recreate: no new pod while an old one still runs.
            if old_views.iter().any(|rs| rs.pods > 0) {
                return self.update_status(&deployment, new_rs.as_ref(), &old, inputs).await;
            }
            match &new_rs {
                Some(rs) => {
                    self.scale(&deployment, rs, spec.replicas).await?;
                }
                None => {
                    let Some(created) = self.create_new_rs(&deployment, &hash, next_revision, spec.replicas, &mut inputs).await? else { return Ok(None) };
                    new_rs = Some(created);
                }
            }
        }
        if was_complete {
            self.cleanup(&deployment, &old).await?;
        }
        self.update_status(&deployment, new_rs.as_ref(), &old, inputs).await
    }

    /// The Deployment carries the revision of its new ReplicaSet (shown by `kubectl describe`).
    /// Returns the Deployment as written, so the conditional status write of this sync follows it.
    async fn sync_revision_annotation(&self, deployment: Value, new_rs: Option<&Value>) -> Result<Value, ClientError> {
        let Some(revision) = new_rs.map(revision_of).filter(|r| *r > 0) else { return Ok(deployment) };
        if revision_of(&deployment) == revision {
            return Ok(deployment);
        }
        let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let patch = json!({"metadata": {"resourceVersion": deployment["metadata"]["resourceVersion"], "annotations": {REVISION: revision.to_string()}}});
        match self.merge_patch(&format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"), &patch).await {
            Ok(written) if written["metadata"]["uid"] == deployment["metadata"]["uid"] => Ok(written),
            Ok(_) | Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => Ok(deployment),
            Err(error) => Err(error),
        }
    }

    async fn update_status(&self, deployment: &Value, new_rs: Option<&Value>, old: &[Value], mut inputs: StatusInputs) -> Result<Option<Duration>, ClientError> {
        let new_view = new_rs.map(ReplicaSetView::of);
        let old_views: Vec<ReplicaSetView> = old.iter().map(ReplicaSetView::of).collect();
        let all: Vec<&ReplicaSetView> = new_view.iter().chain(&old_views).collect();
        let failure_of = |rs: &Value| rs["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "ReplicaFailure").cloned());
        inputs.replica_failure = new_rs.and_then(failure_of).or_else(|| old.iter().find_map(failure_of));
        let (status, wait) = compute_status(deployment, new_view.as_ref(), &all, inputs, jiff::Timestamp::now());
        if !status_differs(&deployment["status"], &status) {
            return Ok(wait);
        }
        let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status");
        let patch = json!({"metadata": {"resourceVersion": deployment["metadata"]["resourceVersion"]}, "status": status});
        match self.merge_patch(&path, &patch).await {
            // The write comes back through the informer and is looked at again then.
            Ok(_) | Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// The Deployment's annotations that its ReplicaSets carry too (`kubernetes.io/change-cause`, ...).
fn copied_annotations(deployment: &Value) -> serde_json::Map<String, Value> {
    let mut copied = deployment["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    copied.retain(|key, _| !NOT_COPIED.contains(&key.as_str()));
    copied
}

/// Runs the Deployment controller on the controller manager's shared informers until `shutdown`
/// resolves.
pub async fn run(informers: &SharedInformers, shutdown: impl std::future::Future<Output = ()>) {
    let controller = Arc::new(DeploymentController { client: informers.client().clone(), events: Recorder::start(informers.client().clone()), state: Mutex::default(), wake: Notify::new() });
    let mut tasks = tokio::task::JoinSet::new();
    let c = controller.clone();
    informers.subscribe(
        "/apis/apps/v1/deployments",
        Arc::new(move |change: &Change| {
            let (event, object) = change.event();
            let key = object_key(object);
            let mut state = c.lock();
            if event == "DELETED" {
                state.deployments.remove(&key);
                state.later.remove(&key);
            } else {
                state.deployments.insert(key.clone(), (**object).clone());
                state.dirty.insert(key);
            }
            c.wake.notify_one();
        }),
    );
    let c = controller.clone();
    informers.subscribe(
        "/apis/apps/v1/replicasets",
        Arc::new(move |change: &Change| {
            let (event, object) = change.event();
            let key = object_key(object);
            let owner = DeploymentController::owner_key(object);
            let mut state = c.lock();
            if event == "DELETED" {
                state.replica_sets.remove(&key);
            } else {
                state.replica_sets.insert(key, (**object).clone());
            }
            if let Some(owner) = owner {
                state.dirty.insert(owner);
            }
            c.wake.notify_one();
        }),
    );
    let worker = controller.clone();
    tasks.spawn(async move {
        loop {
            let dirty: Vec<String> = {
                let mut state = worker.lock();
                let now = Instant::now();
                let due: Vec<String> = state.later.iter().filter(|(_, at)| **at <= now).map(|(key, _)| key.clone()).collect();
                for key in due {
                    state.later.remove(&key);
                    state.dirty.insert(key);
                }
                std::mem::take(&mut state.dirty).into_iter().collect()
            };
            for key in dirty {
                match worker.reconcile(&key).await {
                    Ok(Some(after)) => {
                        worker.lock().later.insert(key, Instant::now() + after);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::debug!(%error, deployment = %key, "reconcile failed; retrying");
                        worker.lock().later.insert(key, Instant::now() + Duration::from_millis(500));
                    }
                }
            }
            let next = worker.lock().later.values().min().copied();
            let nap = next.map_or(Duration::from_secs(2), |at| at.saturating_duration_since(Instant::now()).min(Duration::from_secs(2)));
            let _ = tokio::time::timeout(nap, worker.wake.notified()).await;
        }
    });
    shutdown.await;
    tasks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, spec: i64, available: i64, created: &str) -> ReplicaSetView {
        ReplicaSetView { name: name.into(), spec, pods: spec, ready: available, available, created: created.into(), ..Default::default() }
    }

    fn rolling(replicas: i64, surge: i64, unavailable: i64) -> DeploymentSpec {
        DeploymentSpec::of(&json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}))
    }

    #[test]
    fn hashes_are_stable_and_label_safe() {
        let template = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(template_hash(&template), template_hash(&template.clone()));
        assert_ne!(template_hash(&template), template_hash(&json!({"spec": {"containers": [{"name": "c", "image": "b"}]}})));
        assert!(template_hash(&template).chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn templates_compare_without_the_hash_label_and_empty_fields() {
        let deployment = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "a", "env": []}]}});
        let replica_set = json!({"metadata": {"creationTimestamp": null, "labels": {"app": "web", HASH_LABEL: "x"}}, "spec": {"containers": [{"name": "c", "image": "a", "resources": {}}]}});
        assert_eq!(comparable_template(&deployment), comparable_template(&replica_set));
        let other = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "b"}]}});
        assert_ne!(comparable_template(&deployment), comparable_template(&other));
    }

    #[test]
    fn surge_and_unavailable_scale_like_kubernetes() {
        assert_eq!(scaled(&json!("25%"), 10, true, "25%"), 3);
        assert_eq!(scaled(&json!("25%"), 10, false, "25%"), 2);
        assert_eq!(scaled(&json!(1), 10, false, "25%"), 1);
        assert_eq!(scaled(&Value::Null, 4, true, "25%"), 1);
        let defaults = DeploymentSpec::of(&json!({"spec": {"replicas": 3, "progressDeadlineSeconds": 600}}));
        assert_eq!((defaults.surge, defaults.unavailable, defaults.deadline), (1, 0, Some(600)));
        assert_eq!((rolling(3, 0, 0).surge, rolling(3, 0, 0).unavailable), (0, 1), "never both zero");
        let recreate = DeploymentSpec::of(&json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}, "progressDeadlineSeconds": 2147483647}}));
        assert_eq!((recreate.surge, recreate.unavailable, recreate.deadline), (0, 0, None));
    }

    #[test]
    fn rolling_update_stays_within_surge_and_unavailable() {
        let spec = rolling(3, 1, 1);
        let old = rs("old", 3, 3, "2026-01-01T00:00:00Z");
        // One more pod than replicas may exist: the new ReplicaSet gets one.
        assert_eq!(new_replicas(&spec, &ReplicaSetView::default(), std::slice::from_ref(&old)), 1);
        let new = rs("new", 1, 0, "2026-01-02T00:00:00Z");
        assert_eq!(new_replicas(&spec, &new, std::slice::from_ref(&old)), 1, "4 pods is the ceiling");
        // One may be unavailable: the old one gives up one pod although the new one is not ready.
        assert_eq!(old_scale_down(&spec, &new, std::slice::from_ref(&old)), [("old".to_owned(), 2)]);
        // Scaled down but its pod still running (status not caught up): no room for a new pod yet.
        let shrinking = ReplicaSetView { spec: 2, ..old.clone() };
        assert_eq!(new_replicas(&spec, &new, std::slice::from_ref(&shrinking)), 1);
        // ... and its stale available count of 3 is not trusted beyond its new spec.
        assert_eq!(old_scale_down(&spec, &new, std::slice::from_ref(&shrinking)), []);
        let gone = ReplicaSetView { spec: 2, pods: 2, ready: 2, available: 2, ..old };
        assert_eq!(new_replicas(&spec, &new, std::slice::from_ref(&gone)), 2);
    }

    #[test]
    fn unavailable_old_pods_go_first() {
        let spec = rolling(4, 0, 1);
        let new = rs("new", 0, 0, "2026-01-02T00:00:00Z");
        let broken = rs("broken", 2, 0, "2026-01-01T00:00:00Z");
        let healthy = rs("healthy", 2, 2, "2026-01-01T10:00:00Z");
        // 2 available of 4, 3 wanted: no healthy pod may go, but a broken one may, to make room
        // (one at a time: without surge, 4 - 3 is all that may be missing).
        assert_eq!(old_scale_down(&spec, &new, &[healthy, broken]), [("broken".to_owned(), 1)]);
    }

    #[test]
    fn scaling_mid_rollout_splits_the_change_by_size() {
        // A rollout of 10 (surge 3) in progress: old 8, new 5, scaled to 20 (surge 5).
        let mut old = rs("old", 8, 8, "2026-01-01T00:00:00Z");
        let mut new = rs("new", 5, 0, "2026-01-02T00:00:00Z");
        for view in [&mut old, &mut new] {
            view.desired = Some(10);
            view.max = Some(13);
        }
        let spec = DeploymentSpec::of(&json!({"spec": {"replicas": 20, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}));
        assert!(is_scaling_event(&spec, Some(&new), std::slice::from_ref(&old)));
        let sizes = proportional_sizes(&spec, Some(&new), std::slice::from_ref(&old), 13);
        // 25 allowed, 13 there: 12 to add, 8*25/13 → +7 for the larger, the rest (+5) for the other.
        assert_eq!(sizes, [("old".to_owned(), 15), ("new".to_owned(), 10)]);
        // Scaling down takes from the larger first.
        let spec = DeploymentSpec::of(&json!({"spec": {"replicas": 5, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}));
        let sizes = proportional_sizes(&spec, Some(&new), std::slice::from_ref(&old), 13);
        assert_eq!(sizes.iter().map(|(_, s)| s).sum::<i64>(), 6);
        assert_eq!(sizes, [("old".to_owned(), 4), ("new".to_owned(), 2)]);
    }

    #[test]
    fn one_active_replica_set_takes_the_whole_size() {
        let spec = rolling(7, 1, 0);
        let old = rs("old", 0, 0, "2026-01-01T00:00:00Z");
        let new = rs("new", 3, 3, "2026-01-02T00:00:00Z");
        assert_eq!(proportional_sizes(&spec, Some(&new), std::slice::from_ref(&old), 3), [("new".to_owned(), 7)]);
        // Paused before any new ReplicaSet exists: the newest old one takes it.
        let older = rs("older", 0, 0, "2025-01-01T00:00:00Z");
        assert_eq!(proportional_sizes(&spec, None, &[older, old], 0), [("old".to_owned(), 7)]);
    }

    fn condition_of<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
    }

    fn deployment(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3, "progressDeadlineSeconds": 5}, "status": status})
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_rollout_without_progress_times_out_after_its_deadline() {
        let new = ReplicaSetView { name: "web-abc".into(), spec: 3, pods: 3, ..Default::default() };
        let progressing = json!({"replicas": 3, "updatedReplicas": 3, "conditions": [
            {"type": "Progressing", "status": "True", "reason": RS_UPDATED, "message": "", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let inputs = || StatusInputs { estimate_progress: true, ..Default::default() };
        let (status, wait) = compute_status(&deployment(progressing.clone()), Some(&new), &[&new], inputs(), at("2026-01-01T00:00:03Z"));
        assert_eq!(wait, Some(Duration::from_secs(3)), "looks again once the deadline passed");
        assert_eq!(condition_of(&status, "Progressing")["reason"], RS_UPDATED);
        let (status, wait) = compute_status(&deployment(progressing), Some(&new), &[&new], inputs(), at("2026-01-01T00:00:06Z"));
        assert_eq!(wait, None);
        let progressing = condition_of(&status, "Progressing");
        assert_eq!((&progressing["status"], &progressing["reason"]), (&json!("False"), &json!(TIMED_OUT)));
        assert_eq!(progressing["message"], "ReplicaSet \"web-abc\" has timed out progressing.");
        assert_eq!(status["unavailableReplicas"], 3);
        assert!(status.get("collisionCount").is_none());
    }

    #[test]
    fn progress_refreshes_the_deadline_and_completion_is_reported() {
        let previous = json!({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 1, "conditions": [
            {"type": "Progressing", "status": "True", "reason": RS_UPDATED, "message": "", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let inputs = || StatusInputs { estimate_progress: true, ..Default::default() };
        let mut new = ReplicaSetView { name: "web-abc".into(), spec: 3, pods: 3, ready: 2, available: 2, ..Default::default() };
        let (status, _) = compute_status(&deployment(previous.clone()), Some(&new), &[&new], inputs(), at("2026-01-01T00:00:09Z"));
        let progressing = condition_of(&status, "Progressing");
        assert_eq!((&progressing["reason"], &progressing["lastUpdateTime"], &progressing["lastTransitionTime"]), (&json!(RS_UPDATED), &json!("2026-01-01T00:00:09Z"), &json!("2026-01-01T00:00:00Z")));
        new.ready = 3;
        new.available = 3;
        let (status, _) = compute_status(&deployment(previous), Some(&new), &[&new], inputs(), at("2026-01-01T00:00:09Z"));
        assert_eq!(condition_of(&status, "Available")["reason"], "MinimumReplicasAvailable");
        assert_eq!(condition_of(&status, "Progressing")["reason"], NEW_RS_AVAILABLE);
        assert_eq!(condition_of(&status, "Progressing")["message"], "ReplicaSet \"web-abc\" has successfully progressed.");
    }

    #[test]
    fn pause_and_resume_show_in_the_progressing_condition() {
        let mut paused = deployment(json!({}));
        paused["spec"]["paused"] = json!(true);
        let (status, _) = compute_status(&paused, None, &[], StatusInputs::default(), at("2026-01-01T00:00:00Z"));
        assert_eq!((&condition_of(&status, "Progressing")["status"], &condition_of(&status, "Progressing")["reason"]), (&json!("Unknown"), &json!(PAUSED)));
        let resumed = deployment(status);
        let (status, _) = compute_status(&resumed, None, &[], StatusInputs::default(), at("2026-01-01T00:00:01Z"));
        assert_eq!((&condition_of(&status, "Progressing")["reason"], &condition_of(&status, "Progressing")["message"]), (&json!(RESUMED), &json!("Deployment is resumed")));
    }
}
