//! The Deployment controller: each revision of the pod template is a ReplicaSet named
//! `<deployment>-<pod-template-hash>`; RollingUpdate moves replicas from old ReplicaSets to the new
//! one within maxSurge/maxUnavailable, Recreate empties the old ones first. Revisions are kept as
//! the `deployment.kubernetes.io/revision` annotation (what `kubectl rollout history/undo` read),
//! old ReplicaSets beyond revisionHistoryLimit are deleted, and the status carries what
//! `kubectl rollout status` waits for (observedGeneration, updated/ready/available replicas,
//! the Available and Progressing conditions).
//!
//! Level-based: every change of a Deployment or of a ReplicaSet it owns reconciles the whole
//! Deployment from the informers' state.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tugboat_client::Client;

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

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

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn revision(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Scale steps for one Deployment from its ReplicaSets: (new desired, old desired by name).
pub fn rollout(deployment: &Value, new_rs: &Value, old: &[Value]) -> (i64, Vec<(String, i64)>) {
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let strategy = &deployment["spec"]["strategy"];
    let new_current = int(&new_rs["spec"]["replicas"]);
    let old_total: i64 = old.iter().map(|rs| int(&rs["spec"]["replicas"])).sum();
    if strategy["type"] == "Recreate" {
        // Old ones go first; the new one grows only when no old pod is left.
        let old_pods: i64 = old.iter().map(|rs| int(&rs["status"]["replicas"])).sum();
        let new_desired = if old_total == 0 && old_pods == 0 { replicas } else { 0 };
        return (new_desired, old.iter().map(|rs| (rs["metadata"]["name"].as_str().unwrap_or_default().to_owned(), 0)).collect());
    }
    let surge = scaled(&strategy["rollingUpdate"]["maxSurge"], replicas, true, "25%");
    let mut unavailable = scaled(&strategy["rollingUpdate"]["maxUnavailable"], replicas, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    // Scale up the new ReplicaSet within replicas + maxSurge.
    let allowed = replicas + surge;
    let room = (allowed - new_current - old_total).max(0);
    let new_desired = if new_current >= replicas { replicas } else { (new_current + room).min(replicas) };
    // Scale down old ReplicaSets while keeping replicas - maxUnavailable available.
    let min_available = replicas - unavailable;
    let available: i64 = int(&new_rs["status"]["availableReplicas"]) + old.iter().map(|rs| int(&rs["status"]["availableReplicas"])).sum::<i64>();
    let mut can_remove = (available - min_available).max(0);
    // Old pods that are not available can always go: they serve nothing.
    let mut steps = Vec::new();
    let mut sorted: Vec<&Value> = old.iter().collect();
    sorted.sort_by_key(|rs| revision(rs));
    for rs in sorted {
        let name = rs["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let current = int(&rs["spec"]["replicas"]);
        let unhealthy = (current - int(&rs["status"]["availableReplicas"])).max(0);
        let removable = (unhealthy + can_remove).min(current);
        can_remove -= (removable - unhealthy).max(0);
        steps.push((name, current - removable));
    }
    (new_desired, steps)
}

#[derive(Default)]
struct State {
    deployments: HashMap<String, Value>,
    replica_sets: HashMap<String, Value>,
    dirty: BTreeSet<String>,
}

fn object_key(object: &Value) -> String {
    format!("{}/{}", object["metadata"]["namespace"].as_str().unwrap_or_default(), object["metadata"]["name"].as_str().unwrap_or_default())
}

pub struct DeploymentController {
    client: Client,
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

    async fn write(&self, method: Method, path: &str, body: &Value, content_type: &str) -> Result<Value, tugboat_client::ClientError> {
        let bytes = self.client.request(method, path, Some((content_type, Bytes::from(body.to_string())))).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn reconcile(&self, key: &str) -> Result<(), tugboat_client::ClientError> {
        let (deployment, owned) = {
            let state = self.lock();
            let Some(deployment) = state.deployments.get(key).cloned() else { return Ok(()) };
            let uid = deployment["metadata"]["uid"].clone();
            let owned: Vec<Value> = state
                .replica_sets
                .values()
                .filter(|rs| rs["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|o| o["uid"] == uid)))
                .cloned()
                .collect();
            (deployment, owned)
        };
        if deployment["metadata"]["deletionTimestamp"].is_string() {
            return Ok(());
        }
        let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let collection = format!("/apis/apps/v1/namespaces/{namespace}/replicasets");
        let template = deployment["spec"]["template"].clone();
        let hash = template_hash(&template);
        let max_revision = owned.iter().map(revision).max().unwrap_or(0);
        let paused = deployment["spec"]["paused"] == true;

        // The ReplicaSet of the current template: found by hash (rollbacks reuse old ones), else made.
        let mut new_rs = owned.iter().find(|rs| rs["metadata"]["labels"][HASH_LABEL] == hash.as_str()).cloned();
        if new_rs.is_none() && !paused {
            let mut rs_template = template.clone();
            rs_template["metadata"]["labels"][HASH_LABEL] = hash.clone().into();
            let mut selector = deployment["spec"]["selector"].clone();
            selector["matchLabels"][HASH_LABEL] = hash.clone().into();
            let mut labels = template["metadata"]["labels"].clone();
            labels[HASH_LABEL] = hash.clone().into();
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{name}-{hash}"), "namespace": namespace, "labels": labels,
                    "annotations": {REVISION: (max_revision + 1).to_string(), "deployment.kubernetes.io/desired-replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(1).to_string()},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": deployment["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"replicas": 0, "minReadySeconds": deployment["spec"]["minReadySeconds"].as_i64().unwrap_or(0), "selector": selector, "template": rs_template},
            });
            match self.client.create(&collection, &rs).await {
                Ok(created) => new_rs = Some(created),
                Err(tugboat_client::ClientError::Status { code: http::StatusCode::CONFLICT, .. }) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        let Some(new_rs) = new_rs else { return self.update_status(&deployment, None, &owned).await };
        let new_name = new_rs["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        // A rollback to an old template makes that ReplicaSet the newest revision again.
        if revision(&new_rs) < max_revision {
            let patch = json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}});
            self.write(Method::PATCH, &format!("{collection}/{new_name}"), &patch, "application/merge-patch+json").await?;
        }
        let old: Vec<Value> = owned.iter().filter(|rs| rs["metadata"]["name"] != new_name.as_str()).cloned().collect();
        if !paused {
            let (new_desired, old_steps) = rollout(&deployment, &new_rs, &old);
            let scale = |rs_name: &str, replicas: i64| {
                let path = format!("{collection}/{rs_name}");
                let patch = json!({"spec": {"replicas": replicas}, "metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(1).to_string()}}});
                async move { self.write(Method::PATCH, &path, &patch, "application/merge-patch+json").await.map(drop) }
            };
            if int(&new_rs["spec"]["replicas"]) != new_desired {
                scale(&new_name, new_desired).await?;
            }
            for (rs_name, desired) in old_steps {
                let current = old.iter().find(|rs| rs["metadata"]["name"] == rs_name.as_str()).map(|rs| int(&rs["spec"]["replicas"])).unwrap_or(0);
                if current != desired {
                    scale(&rs_name, desired).await?;
                }
            }
            // Revision history: empty old ReplicaSets beyond the limit go, oldest first.
            let limit = deployment["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
            let mut empty: Vec<&Value> = old.iter().filter(|rs| int(&rs["spec"]["replicas"]) == 0 && int(&rs["status"]["replicas"]) == 0).collect();
            empty.sort_by_key(|rs| revision(rs));
            let excess = empty.len().saturating_sub(limit);
            for rs in empty.into_iter().take(excess) {
                let path = format!("{collection}/{}", rs["metadata"]["name"].as_str().unwrap_or_default());
                self.write(Method::DELETE, &path, &json!({"propagationPolicy": "Background"}), "application/json").await?;
            }
        }
        self.update_status(&deployment, Some(&new_rs), &old).await
    }

    async fn update_status(&self, deployment: &Value, new_rs: Option<&Value>, old: &[Value]) -> Result<(), tugboat_client::ClientError> {
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        let all: Vec<&Value> = new_rs.into_iter().chain(old.iter()).collect();
        let total: i64 = all.iter().map(|rs| int(&rs["status"]["replicas"])).sum();
        let ready: i64 = all.iter().map(|rs| int(&rs["status"]["readyReplicas"])).sum();
        let available: i64 = all.iter().map(|rs| int(&rs["status"]["availableReplicas"])).sum();
        let updated = new_rs.map(|rs| int(&rs["status"]["replicas"])).unwrap_or(0);
        let strategy = &deployment["spec"]["strategy"];
        let max_unavailable = if strategy["type"] == "Recreate" { replicas } else { scaled(&strategy["rollingUpdate"]["maxUnavailable"], replicas, false, "25%") };
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let previous = deployment["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let condition = |kind: &str, status: bool, reason: &str, message: String| {
            let status = if status { "True" } else { "False" };
            let old = previous.iter().find(|c| c["type"] == kind);
            let since = old.filter(|c| c["status"] == status).map(|c| c["lastTransitionTime"].clone()).unwrap_or_else(|| now.clone().into());
            let updated = if old.is_some_and(|c| c["reason"] == reason && c["status"] == status) { old.map(|c| c["lastUpdateTime"].clone()).unwrap_or_else(|| now.clone().into()) } else { now.clone().into() };
            json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since, "lastUpdateTime": updated})
        };
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let new_name = new_rs.and_then(|rs| rs["metadata"]["name"].as_str()).unwrap_or_default();
        let complete = new_rs.is_some_and(|rs| int(&rs["status"]["availableReplicas"]) >= replicas) && updated == replicas && total == replicas;
        let available_condition = if available >= replicas - max_unavailable {
            condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
        } else {
            condition("Available", false, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into())
        };
        let progressing = if complete {
            condition("Progressing", true, "NewReplicaSetAvailable", format!("ReplicaSet \"{new_name}\" has successfully progressed."))
        } else {
            condition("Progressing", true, "ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."))
        };
        let status = json!({
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": total, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
            "unavailableReplicas": (replicas - available).max(0),
            "conditions": [available_condition, progressing],
        });
        let current = &deployment["status"];
        let same = ["observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"].iter().all(|f| current[*f] == status[*f])
            && current["conditions"].as_array().map(|c| c.iter().map(|c| (c["type"].clone(), c["status"].clone(), c["reason"].clone())).collect::<Vec<_>>())
                == status["conditions"].as_array().map(|c| c.iter().map(|c| (c["type"].clone(), c["status"].clone(), c["reason"].clone())).collect::<Vec<_>>());
        if same {
            return Ok(());
        }
        let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or_default();
        let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status");
        match self.write(Method::PATCH, &path, &json!({"status": status}), "application/merge-patch+json").await {
            Ok(_) | Err(tugboat_client::ClientError::Status { code: http::StatusCode::NOT_FOUND, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Runs the Deployment controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let controller = Arc::new(DeploymentController { client: client.clone(), state: Mutex::default(), wake: Notify::new() });
    let mut tasks = tokio::task::JoinSet::new();
    {
        let c = controller.clone();
        tasks.spawn(async move {
            tugboat_client::inform::<Value>(&c.client.clone(), "/apis/apps/v1/deployments", |event, object| {
                let key = object_key(&object);
                let mut state = c.lock();
                if event == "DELETED" {
                    state.deployments.remove(&key);
                } else {
                    state.deployments.insert(key.clone(), object);
                    state.dirty.insert(key);
                }
                c.wake.notify_one();
            })
            .await
        });
    }
    {
        let c = controller.clone();
        tasks.spawn(async move {
            tugboat_client::inform::<Value>(&c.client.clone(), "/apis/apps/v1/replicasets", |event, object| {
                let key = object_key(&object);
                let owner = DeploymentController::owner_key(&object);
                let mut state = c.lock();
                if event == "DELETED" {
                    state.replica_sets.remove(&key);
                } else {
                    state.replica_sets.insert(key, object);
                }
                if let Some(owner) = owner {
                    state.dirty.insert(owner);
                }
                c.wake.notify_one();
            })
            .await
        });
    }
    let worker = controller.clone();
    tasks.spawn(async move {
        loop {
            let dirty: Vec<String> = std::mem::take(&mut worker.lock().dirty).into_iter().collect();
            for key in dirty {
                if let Err(error) = worker.reconcile(&key).await {
                    tracing::debug!(%error, deployment = %key, "reconcile failed; retrying");
                    worker.lock().dirty.insert(key);
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), worker.wake.notified()).await;
        }
    });
    shutdown.await;
    tasks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, spec: i64, available: i64, revision: i64) -> Value {
        json!({"metadata": {"name": name, "annotations": {REVISION: revision.to_string()}}, "spec": {"replicas": spec}, "status": {"replicas": spec, "availableReplicas": available}})
    }

    #[test]
    fn hashes_are_stable_and_label_safe() {
        let template = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(template_hash(&template), template_hash(&template.clone()));
        assert_ne!(template_hash(&template), template_hash(&json!({"spec": {"containers": [{"name": "c", "image": "b"}]}})));
        assert!(template_hash(&template).chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn surge_and_unavailable_scale_like_kubernetes() {
        assert_eq!(scaled(&json!("25%"), 10, true, "25%"), 3);
        assert_eq!(scaled(&json!("25%"), 10, false, "25%"), 2);
        assert_eq!(scaled(&json!(1), 10, false, "25%"), 1);
        assert_eq!(scaled(&Value::Null, 4, true, "25%"), 1);
    }

    #[test]
    fn rolling_update_stays_within_surge_and_unavailable() {
        let deployment = json!({"spec": {"replicas": 3, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        // Start: old at 3 (all available), new at 0: the new one may add one pod (surge 1).
        let (new_desired, old_steps) = rollout(&deployment, &rs("new", 0, 0, 2), &[rs("old", 3, 3, 1)]);
        assert_eq!(new_desired, 1);
        assert_eq!(old_steps, [("old".to_owned(), 3)], "nothing may become unavailable");
        // The new pod is available: one old pod may go.
        let (new_desired, old_steps) = rollout(&deployment, &rs("new", 1, 1, 2), &[rs("old", 3, 3, 1)]);
        assert_eq!(new_desired, 1);
        assert_eq!(old_steps, [("old".to_owned(), 2)]);
        // Done: all on the new one.
        let (new_desired, old_steps) = rollout(&deployment, &rs("new", 3, 3, 2), &[rs("old", 0, 0, 1)]);
        assert_eq!((new_desired, old_steps), (3, vec![("old".to_owned(), 0)]));
    }

    #[test]
    fn recreate_empties_old_replica_sets_first() {
        let deployment = json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}});
        let (new_desired, old_steps) = rollout(&deployment, &rs("new", 0, 0, 2), &[rs("old", 2, 2, 1)]);
        assert_eq!((new_desired, old_steps), (0, vec![("old".to_owned(), 0)]));
        let (new_desired, _) = rollout(&deployment, &rs("new", 0, 0, 2), &[rs("old", 0, 0, 1)]);
        assert_eq!(new_desired, 2);
    }
}
