//! The ReplicaSet and ReplicationController controllers against a real in-process API server
//! (no scheduler or agent: pods stay Pending unless a test marks them Ready itself).

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tugboat_client::Client;
use tugboat_testkit::eventually;

struct Harness {
    client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start_server() -> (Client, tempfile::TempDir) {
    let api = tugboat_testkit::in_process::start_api_server().await;
    (api.client, api.dir)
}

/// An API server with both controllers running against it.
async fn start() -> Harness {
    let (client, dir) = start_server().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tugboat_controllers::run(client.clone(), 2, async move {
        let _ = stopped.await;
    }));
    Harness { client, _stop: stop, _dir: dir }
}

const RS: &str = "/apis/apps/v1/namespaces/default/replicasets";
const RC: &str = "/api/v1/namespaces/default/replicationcontrollers";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})
}

fn replica_set(name: &str, app: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template(app)},
    })
}

async fn merge_patch(client: &Client, path: &str, patch: Value) -> Value {
    let body = Bytes::from(serde_json::to_vec(&patch).unwrap());
    let answer = client.request(Method::PATCH, path, Some(("application/merge-patch+json", body))).await.unwrap();
    serde_json::from_slice(&answer).unwrap()
}

/// Active pods (not terminating) with label app=`app`.
async fn pods(client: &Client, app: &str) -> Vec<Value> {
    let list = client.get(&format!("{PODS}?labelSelector=app%3D{app}")).await.unwrap();
    list["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned().collect()
}

/// Waits until the count is `n` and stays there for a while (no double creates or deletes).
async fn settle_count(client: &Client, app: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} pods of {app}"), || pods(client, app), |p| p.len() == n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pods = pods(client, app).await;
    assert_eq!(pods.len(), n, "the count of {app} pods moved after settling: {pods:#?}");
    pods
}

fn controller_uid(pod: &Value) -> Option<&str> {
    pod["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == true)?["uid"].as_str()
}

async fn status_field(client: &Client, path: &str, field: &str) -> i64 {
    client.get(path).await.unwrap()["status"][field].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn replica_set_creates_replaces_scales_and_reports() {
    let h = start().await;
    let rs = h.client.create(RS, &replica_set("web", "web", 3)).await.unwrap();
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_owned();
    let pods3 = settle_count(&h.client, "web", 3).await;
    for pod in &pods3 {
        assert_eq!(controller_uid(pod), Some(uid.as_str()), "{pod:#}");
        let reference = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(reference["kind"], "ReplicaSet");
        assert_eq!(reference["apiVersion"], "apps/v1");
        assert_eq!(reference["name"], "web");
        assert_eq!(reference["blockOwnerDeletion"], true);
        assert!(pod["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    }
    let path = format!("{RS}/web");
    eventually("status.replicas 3", || status_field(&h.client, &path, "replicas"), |n| *n == 3).await;

    // Events name the owner.
    let events = eventually(
        "SuccessfulCreate events",
        || async { h.client.get("/api/v1/namespaces/default/events").await.unwrap() },
        |e| e["items"].as_array().unwrap().iter().filter(|e| e["reason"] == "SuccessfulCreate").count() == 3,
    )
    .await;
    let event = events["items"].as_array().unwrap().iter().find(|e| e["reason"] == "SuccessfulCreate").unwrap();
    assert_eq!(event["involvedObject"]["kind"], "ReplicaSet");
    assert_eq!(event["involvedObject"]["uid"], uid.as_str());
    assert_eq!(event["source"]["component"], "replicaset-controller");
    assert!(event["message"].as_str().unwrap().starts_with("Created pod: web-"));

    // A deleted pod is replaced.
    let victim = pods3[0]["metadata"]["name"].as_str().unwrap().to_owned();
    h.client.request(Method::DELETE, &format!("{PODS}/{victim}"), None).await.unwrap();
    let after = settle_count(&h.client, "web", 3).await;
    assert!(after.iter().all(|p| p["metadata"]["name"] != victim.as_str()));

    // Scale up and down.
    merge_patch(&h.client, &path, json!({"spec": {"replicas": 10}})).await;
    settle_count(&h.client, "web", 10).await;
    eventually("status.replicas 10", || status_field(&h.client, &path, "replicas"), |n| *n == 10).await;
    merge_patch(&h.client, &path, json!({"spec": {"replicas": 2}})).await;
    settle_count(&h.client, "web", 2).await;
    eventually("status.replicas 2", || status_field(&h.client, &path, "replicas"), |n| *n == 2).await;
    let rs = h.client.get(&path).await.unwrap();
    assert_eq!(rs["status"]["observedGeneration"], rs["metadata"]["generation"]);
    assert_eq!(rs["status"]["fullyLabeledReplicas"], 2);
    assert_eq!(rs["status"]["readyReplicas"].as_i64().unwrap_or(0), 0);
    let events = h.client.get("/api/v1/namespaces/default/events").await.unwrap();
    // One delete by hand doesn't count; scaling 10 → 2 deletes 8.
    let deletes = events["items"].as_array().unwrap().iter().filter(|e| e["reason"] == "SuccessfulDelete").count();
    assert_eq!(deletes, 8);
}

#[tokio::test]
async fn replica_set_adopts_orphans_and_releases_mismatches() {
    let h = start().await;
    let orphan = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "adopt"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
    h.client.create(PODS, &orphan).await.unwrap();
    // Matches too, but another controller owns it: neither adopted nor counted.
    let mut foreign = orphan.clone();
    foreign["metadata"]["name"] = json!("foreign");
    foreign["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "someone-else", "uid": "5a1e0000-0000-0000-0000-000000000000", "controller": true}]);
    h.client.create(PODS, &foreign).await.unwrap();
    // Slack for the pod informer to see the orphan before the ReplicaSet exists (without it, the
    // controller could legitimately create 2, adopt, and delete one).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rs = h.client.create(RS, &replica_set("adopter", "adopt", 2)).await.unwrap();
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_owned();
    let all = settle_count(&h.client, "adopt", 3).await;
    let pods2: Vec<Value> = all.into_iter().filter(|p| p["metadata"]["name"] != "foreign").collect();
    assert_eq!(pods2.len(), 2);
    let foreign = h.client.get(&format!("{PODS}/foreign")).await.unwrap();
    assert_eq!(controller_uid(&foreign), Some("5a1e0000-0000-0000-0000-000000000000"));
    eventually("a SuccessfulCreate event", || count_events(&h.client, "SuccessfulCreate", "adopter"), |n| *n >= 1).await;
    assert_eq!(count_events(&h.client, "SuccessfulCreate", "adopter").await, 1, "the orphan did not count toward replicas");
    assert!(pods2.iter().all(|p| controller_uid(p) == Some(uid.as_str())), "{pods2:#?}");
    assert!(pods2.iter().any(|p| p["metadata"]["name"] == "orphan"), "the orphan was not adopted: {pods2:#?}");

    // Relabel one pod away: it is released and replaced.
    let path = format!("{RS}/adopter");
    merge_patch(&h.client, &format!("{PODS}/orphan"), json!({"metadata": {"labels": {"app": "elsewhere"}}})).await;
    settle_count(&h.client, "adopt", 3).await;
    let released = eventually(
        "the relabeled pod released",
        || async { h.client.get(&format!("{PODS}/orphan")).await.unwrap() },
        |p| controller_uid(p).is_none(),
    )
    .await;
    assert!(released["metadata"]["deletionTimestamp"].is_null());
    eventually("status.replicas 2", || status_field(&h.client, &path, "replicas"), |n| *n == 2).await;

    // Readiness: mark one owned pod Ready; readyReplicas and availableReplicas follow.
    let owned: Vec<Value> = pods(&h.client, "adopt").await.into_iter().filter(|p| controller_uid(p) == Some(uid.as_str())).collect();
    assert_eq!(owned.len(), 2);
    let name = owned[0]["metadata"]["name"].as_str().unwrap();
    let now = jiff::Timestamp::now().to_string();
    merge_patch(
        &h.client,
        &format!("{PODS}/{name}/status"),
        json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}}),
    )
    .await;
    eventually("readyReplicas 1", || status_field(&h.client, &path, "readyReplicas"), |n| *n == 1).await;
    eventually("availableReplicas 1", || status_field(&h.client, &path, "availableReplicas"), |n| *n == 1).await;
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() {
    let h = start().await;
    let mut rs = replica_set("slow", "slow", 1);
    rs["spec"]["minReadySeconds"] = json!(1);
    h.client.create(RS, &rs).await.unwrap();
    let owned = settle_count(&h.client, "slow", 1).await;
    let name = owned[0]["metadata"]["name"].as_str().unwrap();
    let now = jiff::Timestamp::now().to_string();
    merge_patch(
        &h.client,
        &format!("{PODS}/{name}/status"),
        json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}}),
    )
    .await;
    let path = format!("{RS}/slow");
    eventually("readyReplicas 1", || status_field(&h.client, &path, "readyReplicas"), |n| *n == 1).await;
    // Available only after a requeue once minReadySeconds have passed (nothing else changes).
    eventually("availableReplicas 1", || status_field(&h.client, &path, "availableReplicas"), |n| *n == 1).await;
}

#[tokio::test]
async fn replication_controller_works_the_same() {
    let h = start().await;
    let rc = json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "legacy", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"app": "legacy"}, "template": template("legacy")},
    });
    let rc = h.client.create(RC, &rc).await.unwrap();
    let uid = rc["metadata"]["uid"].as_str().unwrap().to_owned();
    let pods2 = settle_count(&h.client, "legacy", 2).await;
    for pod in &pods2 {
        assert_eq!(controller_uid(pod), Some(uid.as_str()));
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicationController");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["apiVersion"], "v1");
    }
    let path = format!("{RC}/legacy");
    eventually("status.replicas 2", || status_field(&h.client, &path, "replicas"), |n| *n == 2).await;
    let victim = pods2[0]["metadata"]["name"].as_str().unwrap();
    h.client.request(Method::DELETE, &format!("{PODS}/{victim}"), None).await.unwrap();
    settle_count(&h.client, "legacy", 2).await;
    merge_patch(&h.client, &path, json!({"spec": {"replicas": 1}})).await;
    settle_count(&h.client, "legacy", 1).await;
    eventually("status.replicas 1", || status_field(&h.client, &path, "replicas"), |n| *n == 1).await;
    let events = h.client.get("/api/v1/namespaces/default/events").await.unwrap();
    let event = events["items"].as_array().unwrap().iter().find(|e| e["reason"] == "SuccessfulDelete").unwrap();
    assert_eq!(event["source"]["component"], "replication-controller");
    assert_eq!(event["involvedObject"]["kind"], "ReplicationController");
}

async fn count_events(client: &Client, reason: &str, owner: &str) -> usize {
    let events = client.get("/api/v1/namespaces/default/events").await.unwrap();
    events["items"].as_array().unwrap().iter().filter(|e| e["reason"] == reason && e["involvedObject"]["name"] == owner).count()
}

/// Expectations: while a burst of creates is still reaching the pod informer, reconciles keep
/// being triggered (every RS update enqueues it); none of them may create again.
#[tokio::test]
async fn burst_never_creates_twice() {
    let (client, _dir) = start_server().await;
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The pod cache trails by far more than a create takes, so without expectations the next
    // reconcile would find too few pods and create again.
    let options = tugboat_controllers::Options { pod_cache_lag: Duration::from_millis(300) };
    tokio::spawn(tugboat_controllers::ReplicaController::run_with(client.clone(), &tugboat_controllers::REPLICA_SET, 2, options, async move {
        let _ = stopped.await;
    }));
    let h = Harness { client, _stop, _dir };
    h.client.create(RS, &replica_set("burst", "burst", 40)).await.unwrap();
    let path = format!("{RS}/burst");
    for i in 0..40 {
        merge_patch(&h.client, &path, json!({"metadata": {"annotations": {"poke": i.to_string()}}})).await;
    }
    settle_count(&h.client, "burst", 40).await;
    eventually("40 SuccessfulCreate events", || count_events(&h.client, "SuccessfulCreate", "burst"), |n| *n >= 40).await;
    assert_eq!(count_events(&h.client, "SuccessfulCreate", "burst").await, 40, "some pod was created twice");
    assert_eq!(count_events(&h.client, "SuccessfulDelete", "burst").await, 0, "surplus pods were created and deleted");

    // The same for deletes: scaling down while the cache still shows the pods being deleted.
    merge_patch(&h.client, &path, json!({"spec": {"replicas": 5}})).await;
    for i in 0..40 {
        merge_patch(&h.client, &path, json!({"metadata": {"annotations": {"poke": format!("down-{i}")}}})).await;
    }
    settle_count(&h.client, "burst", 5).await;
    eventually("35 SuccessfulDelete events", || count_events(&h.client, "SuccessfulDelete", "burst"), |n| *n >= 35).await;
    assert_eq!(count_events(&h.client, "SuccessfulDelete", "burst").await, 35, "some pod was deleted twice");
    assert_eq!(count_events(&h.client, "SuccessfulCreate", "burst").await, 40, "pods were deleted too many and recreated");
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account() {
    let (client, _dir) = start_server().await;
    let informers = tugboat_controllers::shared_informers(&client);
    tokio::spawn(async move { tugboat_controllers::service_accounts::run(&informers, std::future::pending()).await });
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    client.create("/api/v1/namespaces", &namespace).await.unwrap();
    let path = "/api/v1/namespaces/team/serviceaccounts/default";
    let created = eventually("the default service account", || client.get(path), |r| r.is_ok()).await;
    assert!(created.is_ok());
    // Deleted, it comes back.
    client.request(http::Method::DELETE, path, None).await.unwrap();
    let recreated = eventually("the recreated service account", || client.get(path), |r| r.as_ref().is_ok_and(|a| a["metadata"]["name"] == "default")).await;
    assert!(recreated.is_ok());
}
