//! The Deployment controller and the garbage collector against a real in-process API server, with
//! the ReplicaSet controller (no scheduler or agent: pods stay Pending unless a test marks them
//! Ready itself).

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use tugboat_client::Client;
use tugboat_testkit::eventually;

struct Harness {
    client: Client,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// An API server with the ReplicaSet, Deployment and garbage collector controllers.
async fn start() -> Harness {
    let api = tugboat_testkit::in_process::start_api_server().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|s| *s).await;
    };
    let informers = tugboat_controllers::shared_informers(&api.client);
    let (replicas, deployments, collector) = (informers.clone(), informers.clone(), informers);
    let stopped_too = stopped.clone();
    tokio::spawn(async move { tugboat_controllers::run_replicas(&replicas, 2, until_stopped(stopped_too)).await });
    let stopped_too = stopped.clone();
    tokio::spawn(async move { tugboat_controllers::deployment::run(&deployments, until_stopped(stopped_too)).await });
    tokio::spawn(async move { tugboat_controllers::garbage_collector::run(&collector, until_stopped(stopped)).await });
    Harness { client: api.client, _stop: stop, _dir: api.dir }
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const RS: &str = "/apis/apps/v1/namespaces/default/replicasets";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    })
}

async fn merge_patch(client: &Client, path: &str, patch: Value) -> Value {
    let body = Bytes::from(serde_json::to_vec(&patch).unwrap());
    let answer = client.request(Method::PATCH, path, Some(("application/merge-patch+json", body))).await.unwrap();
    serde_json::from_slice(&answer).unwrap()
}

/// The Deployment's ReplicaSets as (image, spec.replicas), newest revision last.
async fn replica_sets(client: &Client, app: &str) -> Vec<(String, i64)> {
    let list = client.get(&format!("{RS}?labelSelector=app%3D{app}")).await.unwrap();
    let mut sets: Vec<(i64, String, i64)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            let revision = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0);
            (revision, rs["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_owned(), rs["spec"]["replicas"].as_i64().unwrap_or(0))
        })
        .collect();
    sets.sort();
    sets.into_iter().map(|(_, image, replicas)| (image, replicas)).collect()
}

/// Marks every active pod of `app` Running and Ready (what an agent would report).
async fn make_ready(client: &Client, app: &str) -> usize {
    let list = client.get(&format!("{PODS}?labelSelector=app%3D{app}")).await.unwrap();
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut marked = 0;
    for pod in list["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        if pod["status"]["phase"] != "Running" {
            let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
            merge_patch(client, &format!("{PODS}/{name}/status"), status).await;
        }
        marked += 1;
    }
    marked
}

fn condition<'a>(deployment: &'a Value, kind: &str) -> &'a Value {
    deployment["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
}

async fn event_messages(client: &Client, reason: &str) -> Vec<String> {
    let events = client.get("/api/v1/namespaces/default/events").await.unwrap();
    events["items"].as_array().unwrap().iter().filter(|e| e["reason"] == reason).filter_map(|e| e["message"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn scaling_mid_rollout_is_proportional_and_events_tell_the_story() {
    let h = start().await;
    h.client.create(DEPLOYMENTS, &deployment("web", 10, "v1")).await.unwrap();
    let path = format!("{DEPLOYMENTS}/web");
    eventually("10 ready pods", || make_ready(&h.client, "web"), |n| *n == 10).await;
    let complete = eventually("a complete rollout", || async { h.client.get(&path).await.unwrap() }, |d| condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable").await;
    let status = &complete["status"];
    assert_eq!(
        [&status["observedGeneration"], &status["replicas"], &status["updatedReplicas"], &status["readyReplicas"], &status["availableReplicas"]],
        [&complete["metadata"]["generation"], &json!(10), &json!(10), &json!(10), &json!(10)],
        "{status:#}"
    );
    assert!(status.get("collisionCount").is_none(), "{status:#}");
    assert_eq!(status["unavailableReplicas"].as_i64().unwrap_or(0), 0);
    assert_eq!(condition(&complete, "Available")["status"], "True");
    assert_eq!(complete["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");

    // A new template whose pods never become ready: 25% surge and 25% unavailable of 10 stop the
    // rollout at 8 old + 5 new (13 = 10 + 3 pods, 8 = 10 - 2 available).
    merge_patch(&h.client, &path, json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}})).await;
    eventually("a stalled rollout", || replica_sets(&h.client, "web"), |sets| *sets == [("v1".to_owned(), 8), ("v2".to_owned(), 5)]).await;
    // Scaling to 20 (25 allowed with surge) splits the 12 new replicas by size: 8 → 15, 5 → 10.
    merge_patch(&h.client, &path, json!({"spec": {"replicas": 20}})).await;
    eventually("proportional scaling", || replica_sets(&h.client, "web"), |sets| *sets == [("v1".to_owned(), 15), ("v2".to_owned(), 10)]).await;
    let scaled = eventually("status after scaling", || async { h.client.get(&path).await.unwrap() }, |d| d["status"]["updatedReplicas"] == 10 && d["status"]["replicas"] == 25).await;
    assert_eq!(scaled["status"]["unavailableReplicas"], 17, "25 wanted, 8 available: {:#}", scaled["status"]);
    assert_eq!(condition(&scaled, "Available")["status"], "False");

    let rs_names: Vec<String> = h.client.get(&format!("{RS}?labelSelector=app%3Dweb")).await.unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| rs["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    let messages = event_messages(&h.client, "ScalingReplicaSet").await;
    let first = rs_names.iter().find(|n| messages.contains(&format!("Scaled up replica set {n} from 0 to 10"))).expect("the first ReplicaSet's scale-up event");
    for expected in [format!("Scaled down replica set {first} from 10 to 8"), format!("Scaled up replica set {first} from 8 to 15")] {
        assert!(messages.contains(&expected), "{expected:?} in {messages:#?}");
    }
    let second = rs_names.iter().find(|n| *n != first).unwrap();
    assert!(messages.contains(&format!("Scaled up replica set {second} from 5 to 10")), "{messages:#?}");
    let events = h.client.get("/api/v1/namespaces/default/events").await.unwrap();
    let event = events["items"].as_array().unwrap().iter().find(|e| e["reason"] == "ScalingReplicaSet").unwrap();
    assert_eq!((&event["involvedObject"]["kind"], &event["source"]["component"]), (&json!("Deployment"), &json!("deployment-controller")));
}

#[tokio::test]
async fn a_paused_deployment_scales_but_does_not_roll_out() {
    let h = start().await;
    h.client.create(DEPLOYMENTS, &deployment("paused", 2, "v1")).await.unwrap();
    let path = format!("{DEPLOYMENTS}/paused");
    eventually("2 ready pods", || make_ready(&h.client, "paused"), |n| *n == 2).await;
    merge_patch(&h.client, &path, json!({"spec": {"paused": true}})).await;
    eventually("the paused condition", || async { h.client.get(&path).await.unwrap() }, |d| condition(d, "Progressing")["reason"] == "DeploymentPaused").await;
    let paused = h.client.get(&path).await.unwrap();
    assert_eq!((&condition(&paused, "Progressing")["status"], &condition(&paused, "Progressing")["message"]), (&json!("Unknown"), &json!("Deployment is paused")));

    // A new template while paused makes no ReplicaSet; scaling still reaches the current one.
    merge_patch(&h.client, &path, json!({"spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}})).await;
    eventually("scaled while paused", || replica_sets(&h.client, "paused"), |sets| *sets == [("v1".to_owned(), 4)]).await;
    let observed = eventually("the new generation observed", || async { h.client.get(&path).await.unwrap() }, |d| d["status"]["observedGeneration"] == d["metadata"]["generation"]).await;
    assert_eq!(replica_sets(&h.client, "paused").await, [("v1".to_owned(), 4)], "no rollout while paused: {observed:#}");

    merge_patch(&h.client, &path, json!({"spec": {"paused": false}})).await;
    eventually("a new ReplicaSet after resuming", || replica_sets(&h.client, "paused"), |sets| sets.last().is_some_and(|(image, replicas)| image == "v2" && *replicas > 0)).await;
    let resumed = eventually("progress after resuming", || async { h.client.get(&path).await.unwrap() }, |d| condition(d, "Progressing")["status"] == "True").await;
    assert_ne!(condition(&resumed, "Progressing")["reason"], "DeploymentPaused");
}

#[tokio::test]
async fn a_rollout_that_cannot_progress_exceeds_its_deadline_then_recovers() {
    let h = start().await;
    let mut stuck = deployment("stuck", 2, "v1");
    stuck["spec"]["progressDeadlineSeconds"] = json!(1);
    h.client.create(DEPLOYMENTS, &stuck).await.unwrap();
    let path = format!("{DEPLOYMENTS}/stuck");
    let timed_out = eventually("ProgressDeadlineExceeded", || async { h.client.get(&path).await.unwrap() }, |d| condition(d, "Progressing")["reason"] == "ProgressDeadlineExceeded").await;
    let progressing = condition(&timed_out, "Progressing");
    let rs_name = h.client.get(&format!("{RS}?labelSelector=app%3Dstuck")).await.unwrap()["items"][0]["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["message"], format!("ReplicaSet \"{rs_name}\" has timed out progressing."));
    assert_eq!(timed_out["status"]["unavailableReplicas"], 2);

    // Pods that turn ready complete the rollout after all.
    eventually("2 ready pods", || make_ready(&h.client, "stuck"), |n| *n == 2).await;
    let done = eventually("NewReplicaSetAvailable", || async { h.client.get(&path).await.unwrap() }, |d| condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable").await;
    assert_eq!(condition(&done, "Progressing")["message"], format!("ReplicaSet \"{rs_name}\" has successfully progressed."));
}

#[tokio::test]
async fn recreate_empties_the_old_replica_set_before_the_new_one_grows() {
    let h = start().await;
    let mut recreate = deployment("again", 2, "v1");
    recreate["spec"]["strategy"] = json!({"type": "Recreate"});
    h.client.create(DEPLOYMENTS, &recreate).await.unwrap();
    let path = format!("{DEPLOYMENTS}/again");
    eventually("2 ready pods", || make_ready(&h.client, "again"), |n| *n == 2).await;
    merge_patch(&h.client, &path, json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}})).await;
    eventually("the new template at full size", || replica_sets(&h.client, "again"), |sets| *sets == [("v1".to_owned(), 0), ("v2".to_owned(), 2)]).await;
    // The events tell the story in order (listed by name: the owner's, then the time in nanoseconds).
    let messages = eventually("three scaling events", || event_messages(&h.client, "ScalingReplicaSet"), |m| m.len() == 3).await;
    let shape: Vec<String> = messages.iter().map(|m| m.split(' ').enumerate().filter(|(i, _)| *i != 4).map(|(_, w)| w).collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(shape, ["Scaled up replica set from 0 to 2", "Scaled down replica set from 2 to 0", "Scaled up replica set from 0 to 2"], "{messages:#?}");
    assert_ne!(messages[0].split(' ').nth(4), messages[2].split(' ').nth(4), "two ReplicaSets: {messages:#?}");
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_its_dependents_are_gone() {
    let h = start().await;
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "fg", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fg"}},
            // The finalizer holds the pods (as a running container would) until the test lets go.
            "template": {"metadata": {"labels": {"app": "fg"}, "finalizers": ["test.tugboat.dev/hold"]}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}},
    });
    h.client.create(RS, &rs).await.unwrap();
    let pods = eventually("2 pods", || async { h.client.get(&format!("{PODS}?labelSelector=app%3Dfg")).await.unwrap() }, |l| l["items"].as_array().unwrap().len() == 2).await;
    let body = Bytes::from(json!({"propagationPolicy": "Foreground"}).to_string());
    h.client.request(Method::DELETE, &format!("{RS}/fg"), Some(("application/json", body))).await.unwrap();
    // The garbage collector deletes the pods; the owner waits, marked, for them to go.
    eventually(
        "pods terminating",
        || async { h.client.get(&format!("{PODS}?labelSelector=app%3Dfg")).await.unwrap() },
        |l| l["items"].as_array().unwrap().iter().all(|p| p["metadata"]["deletionTimestamp"].is_string()),
    )
    .await;
    let owner = h.client.get(&format!("{RS}/fg")).await.unwrap();
    assert!(owner["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(owner["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let remaining = h.client.get(&format!("{PODS}?labelSelector=app%3Dfg")).await.unwrap();
    assert_eq!(remaining["items"].as_array().unwrap().len(), 2, "the ReplicaSet made no replacements while being deleted");

    for pod in pods["items"].as_array().unwrap() {
        merge_patch(&h.client, &format!("{PODS}/{}", pod["metadata"]["name"].as_str().unwrap()), json!({"metadata": {"finalizers": null}})).await;
    }
    eventually("the owner gone", || async { h.client.get(&format!("{RS}/fg")).await.is_err() }, |gone| *gone).await;
}

#[tokio::test]
async fn a_deployment_deleted_in_the_foreground_waits_for_its_pods() {
    let h = start().await;
    let mut held = deployment("tree", 2, "v1");
    // The finalizer holds the pods (as running containers would) until the test lets go.
    held["spec"]["template"]["metadata"]["finalizers"] = json!(["test.tugboat.dev/hold"]);
    h.client.create(DEPLOYMENTS, &held).await.unwrap();
    let pods = eventually("2 pods", || async { h.client.get(&format!("{PODS}?labelSelector=app%3Dtree")).await.unwrap() }, |l| l["items"].as_array().unwrap().len() == 2).await;
    let body = Bytes::from(json!({"propagationPolicy": "Foreground"}).to_string());
    h.client.request(Method::DELETE, &format!("{DEPLOYMENTS}/tree"), Some(("application/json", body))).await.unwrap();
    // The ReplicaSet is deleted in the foreground too: it waits for its pods, the Deployment for it.
    let replica_set = eventually(
        "the ReplicaSet deleted in the foreground",
        || async { h.client.get(&format!("{RS}?labelSelector=app%3Dtree")).await.unwrap()["items"][0].clone() },
        |rs| rs["metadata"]["finalizers"] == json!(["foregroundDeletion"]),
    )
    .await;
    assert!(replica_set["metadata"]["deletionTimestamp"].is_string());
    eventually(
        "pods terminating",
        || async { h.client.get(&format!("{PODS}?labelSelector=app%3Dtree")).await.unwrap() },
        |l| l["items"].as_array().unwrap().iter().all(|p| p["metadata"]["deletionTimestamp"].is_string()),
    )
    .await;
    let owner = h.client.get(&format!("{DEPLOYMENTS}/tree")).await.unwrap();
    assert_eq!(owner["metadata"]["finalizers"], json!(["foregroundDeletion"]), "{owner:#}");

    for pod in pods["items"].as_array().unwrap() {
        merge_patch(&h.client, &format!("{PODS}/{}", pod["metadata"]["name"].as_str().unwrap()), json!({"metadata": {"finalizers": null}})).await;
    }
    eventually("the Deployment gone", || async { h.client.get(&format!("{DEPLOYMENTS}/tree")).await.is_err() }, |gone| *gone).await;
    let left = h.client.get(&format!("{RS}?labelSelector=app%3Dtree")).await.unwrap();
    assert!(left["items"].as_array().unwrap().is_empty(), "{left:#}");
}

#[tokio::test]
async fn old_replica_sets_beyond_the_history_limit_go_once_a_rollout_completes() {
    let h = start().await;
    let mut limited = deployment("history", 1, "v1");
    limited["spec"]["revisionHistoryLimit"] = json!(1);
    h.client.create(DEPLOYMENTS, &limited).await.unwrap();
    let path = format!("{DEPLOYMENTS}/history");
    for image in ["v1", "v2", "v3"] {
        if image != "v1" {
            merge_patch(&h.client, &path, json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})).await;
        }
        // The new pods turn ready as they come, until the rollout is complete.
        eventually(
            "a complete rollout",
            || async {
                make_ready(&h.client, "history").await;
                h.client.get(&path).await.unwrap()
            },
            |d| d["status"]["observedGeneration"] == d["metadata"]["generation"] && condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable" && d["status"]["replicas"] == 1,
        )
        .await;
    }
    let sets = eventually("one old ReplicaSet kept", || replica_sets(&h.client, "history"), |sets| sets.len() == 2).await;
    assert_eq!(sets, [("v2".to_owned(), 0), ("v3".to_owned(), 1)]);
}
