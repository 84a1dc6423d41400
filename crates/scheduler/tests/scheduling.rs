//! The scheduler against a real in-process API server with three fake nodes (no agents): pod
//! anti-affinity and priority preemption end to end. With no agent, a deleted bound pod only gets
//! a deletionTimestamp; the test then deletes it with grace 0, standing in for the agent.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use tugboat_client::Client;
use tugboat_testkit::in_process::{start_api_server, InProcessApi};
use tugboat_testkit::eventually;

const PODS: &str = "/api/v1/namespaces/default/pods";

struct Harness {
    client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _api: InProcessApi,
}

/// An API server, three Ready nodes of `cpu` each, and the scheduler.
async fn start(cpu: &str) -> Harness {
    let api = start_api_server().await;
    let client = api.client.clone();
    for name in ["node-1", "node-2", "node-3"] {
        client.create("/api/v1/nodes", &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).await.unwrap();
        let status = json!({"status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}, "capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]}});
        merge_patch(&client, &format!("/api/v1/nodes/{name}/status"), status).await;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tugboat_scheduler::run(client.clone(), async move {
        let _ = stopped.await;
    }));
    Harness { client, _stop: stop, _api: api }
}

async fn merge_patch(client: &Client, path: &str, patch: Value) -> Value {
    let body = Bytes::from(serde_json::to_vec(&patch).unwrap());
    let answer = client.request(Method::PATCH, path, Some(("application/merge-patch+json", body))).await.unwrap();
    serde_json::from_slice(&answer).unwrap()
}

fn pod(name: &str, app: &str, cpu: &str, spec: Value) -> Value {
    let mut body = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1", "resources": {"requests": {"cpu": cpu}}}]},
    });
    body["spec"].as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    body
}

async fn get_pod(client: &Client, name: &str) -> Option<Value> {
    client.get(&format!("{PODS}/{name}")).await.ok()
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_spreads_three_pods_and_leaves_the_fourth_pending() {
    let harness = start("2").await;
    let client = &harness.client;
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 1..=4 {
        client.create(PODS, &pod(&format!("web-{i}"), "web", "100m", anti.clone())).await.unwrap();
    }
    let list = async || client.get(&format!("{PODS}?labelSelector=app%3Dweb")).await.unwrap()["items"].as_array().cloned().unwrap_or_default();
    let pods = eventually("three web pods bound, one told why not", list, |pods| {
        let bound = pods.iter().filter(|p| !node_of(p).is_empty()).count();
        let told = pods.iter().any(|p| p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["reason"] == "Unschedulable")));
        bound == 3 && told
    })
    .await;
    let mut nodes: Vec<&str> = pods.iter().map(node_of).filter(|n| !n.is_empty()).collect();
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    let pending = pods.iter().find(|p| node_of(p).is_empty()).unwrap();
    let condition = pending["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").unwrap();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["message"], "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_low_priority_one() {
    let harness = start("1").await;
    let client = &harness.client;
    // The Priority admission (when present) resolves the class and accepts a matching spec.priority.
    for (name, value) in [("low", 10), ("high", 1000)] {
        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value});
        client.create("/apis/scheduling.k8s.io/v1/priorityclasses", &class).await.unwrap();
    }
    for i in 1..=3 {
        client.create(PODS, &pod(&format!("low-{i}"), "low", "800m", json!({"priorityClassName": "low", "priority": 10}))).await.unwrap();
    }
    for i in 1..=3 {
        eventually("the low-priority pods bound", async || get_pod(client, &format!("low-{i}")).await, |p| p.as_ref().is_some_and(|p| !node_of(p).is_empty())).await;
    }
    client.create(PODS, &pod("high", "high", "800m", json!({"priorityClassName": "high", "priority": 1000}))).await.unwrap();

    // Exactly one victim is asked to terminate; standing in for its agent, delete it for good.
    let victims = async || {
        let mut terminating = Vec::new();
        for i in 1..=3 {
            if let Some(p) = get_pod(client, &format!("low-{i}")).await.filter(|p| !p["metadata"]["deletionTimestamp"].is_null()) {
                terminating.push(p);
            }
        }
        terminating
    };
    let terminating = eventually("a victim terminating", victims, |v| !v.is_empty()).await;
    assert_eq!(terminating.len(), 1, "one victim frees enough room");
    let victim = &terminating[0];
    let (victim_name, victim_node) = (victim["metadata"]["name"].as_str().unwrap().to_owned(), node_of(victim).to_owned());
    let nominated = eventually("the preemptor nominated", async || get_pod(client, "high").await.unwrap(), |p| p["status"]["nominatedNodeName"].is_string()).await;
    assert_eq!(nominated["status"]["nominatedNodeName"], victim_node.as_str());
    assert!(node_of(&nominated).is_empty(), "not bound while the victim still runs");
    let force = Bytes::from(json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}).to_string());
    client.request(Method::DELETE, &format!("{PODS}/{victim_name}"), Some(("application/json", force))).await.unwrap();

    let high = eventually("the preemptor bound", async || get_pod(client, "high").await.unwrap(), |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&high), victim_node);
    let events = client.get("/api/v1/namespaces/default/events").await.unwrap();
    let preempted: Vec<&Value> = events["items"].as_array().unwrap().iter().filter(|e| e["reason"] == "Preempted").collect();
    assert_eq!(preempted.len(), 1, "{preempted:#?}");
    assert_eq!(preempted[0]["involvedObject"]["name"], victim_name.as_str());
    assert_eq!(preempted[0]["message"], format!("Preempted by default/high on node {victim_node}"));
}
