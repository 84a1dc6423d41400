//! The node lifecycle controller, taint-based eviction, the pod GC of deleted nodes, and pod
//! admission, against a real in-process API server. Nodes are simulated: the test renews their
//! Leases and posts their status itself, and stops doing so for a node to make it go silent.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tugboat_client::{Client, ClientError};
use tugboat_controllers::ControllerOptions;
use tugboat_testkit::eventually;

// A copy of `start_server` in tests/replicas.rs (the in-process harness is a known near-copy).
async fn start_server() -> (Client, tempfile::TempDir) {
    let api = tugboat_testkit::in_process::start_api_server().await;
    (api.client, api.dir)
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const GRACE: Duration = Duration::from_secs(3);
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

async fn patch(client: &Client, path: &str, content_type: &str, patch: Value) -> Value {
    let body = Bytes::from(serde_json::to_vec(&patch).unwrap());
    let answer = client.request(Method::PATCH, path, Some((content_type, body))).await.unwrap();
    serde_json::from_slice(&answer).unwrap()
}

fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Simulated agents: every node in `alive` renews its Lease and posts Ready=True, every 300 ms.
fn heartbeat(client: Client, alive: Arc<Mutex<HashSet<String>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let nodes: Vec<String> = alive.lock().unwrap().iter().cloned().collect();
            for node in nodes {
                let now = now_micro();
                let lease = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}");
                let body = Bytes::from(json!({"spec": {"renewTime": now}}).to_string());
                let _ = client.request(Method::PATCH, &lease, Some(("application/merge-patch+json", body))).await;
                let status = json!({"status": {"conditions": [ready_condition(&now)]}});
                let body = Bytes::from(status.to_string());
                let _ = client.request(Method::PATCH, &format!("/api/v1/nodes/{node}/status"), Some(("application/merge-patch+json", body))).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

fn ready_condition(now: &str) -> Value {
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now})
}

async fn register_node(client: &Client, name: &str) {
    let now = now_micro();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"conditions": [ready_condition(&now)]}});
    client.create("/api/v1/nodes", &node).await.unwrap();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
    });
    client.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", &lease).await.unwrap();
}

fn unreachable_toleration(seconds: Option<i64>) -> Value {
    let mut toleration = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
    if let Some(seconds) = seconds {
        toleration["tolerationSeconds"] = json!(seconds);
    }
    toleration
}

async fn create_pod(client: &Client, name: &str, node: &str, tolerations: Value) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "tolerations": tolerations, "containers": [{"name": "c", "image": "busybox:1"}]},
    });
    client.create(PODS, &pod).await.unwrap();
    let now = now_micro();
    patch(client, &format!("{PODS}/{name}/status"), "application/merge-patch+json", json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}})).await;
}

async fn get(client: &Client, path: &str) -> Option<Value> {
    match client.get(path).await {
        Ok(object) => Some(object),
        Err(ClientError::Status { code: http::StatusCode::NOT_FOUND, .. }) => None,
        Err(error) => panic!("GET {path}: {error}"),
    }
}

async fn get_pod(client: &Client, name: &str) -> Option<Value> {
    get(client, &format!("{PODS}/{name}")).await
}

fn condition<'a>(object: &'a Value, kind: &str) -> &'a Value {
    object["status"]["conditions"].as_array().and_then(|all| all.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
}

fn taint_keys(node: &Value) -> Vec<String> {
    node["spec"]["taints"].as_array().into_iter().flatten().map(|t| format!("{}:{}", t["key"].as_str().unwrap_or(""), t["effect"].as_str().unwrap_or(""))).collect()
}

fn terminating(pod: &Option<Value>) -> bool {
    pod.as_ref().is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string())
}

async fn events(client: &Client, reason: &str, name: &str) -> Vec<Value> {
    let list = client.get("/api/v1/namespaces/default/events").await.unwrap();
    list["items"].as_array().unwrap().iter().filter(|e| e["reason"] == reason && e["involvedObject"]["name"] == name).cloned().collect()
}

/// Active (not terminating) pods of the ReplicaSet `app`.
async fn active_pods(client: &Client, app: &str) -> Vec<Value> {
    let list = client.get(&format!("{PODS}?labelSelector=app%3D{app}")).await.unwrap();
    list["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_marked_tainted_and_evicted_then_recovers() {
    let (client, _dir) = start_server().await;
    for node in ["a", "b"] {
        register_node(&client, node).await;
    }
    let alive = Arc::new(Mutex::new(HashSet::from(["a".to_owned(), "b".to_owned()])));
    let _heartbeat = heartbeat(client.clone(), alive.clone());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ControllerOptions { workers: 2, node_monitor_grace_period: GRACE, ..ControllerOptions::default() };
    tokio::spawn(tugboat_controllers::run_all(client.clone(), options, async move {
        let _ = stopped.await;
    }));

    // Pods on the node to be lost: one tolerating it for 2 s, one forever; one on the other node.
    create_pod(&client, "brief", "a", json!([unreachable_toleration(Some(2))])).await;
    create_pod(&client, "forever", "a", json!([unreachable_toleration(None)])).await;
    create_pod(&client, "elsewhere", "b", json!([unreachable_toleration(Some(2))])).await;
    // A ReplicaSet with a pod on each node (bound by hand: no scheduler here).
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"tolerations": [unreachable_toleration(Some(2))], "containers": [{"name": "c", "image": "busybox:1"}]},
        }},
    });
    client.create("/apis/apps/v1/namespaces/default/replicasets", &rs).await.unwrap();
    let replicas = eventually("2 pods of web", || active_pods(&client, "web"), |p| p.len() == 2).await;
    let mut on_a = String::new();
    for (pod, node) in replicas.iter().zip(["a", "b"]) {
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": node}});
        client.create(&format!("{PODS}/{name}/binding"), &binding).await.unwrap();
        if node == "a" {
            on_a = name;
        }
    }
    // Healthy nodes are left alone for longer than the grace period.
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let a = get(&client, "/api/v1/nodes/a").await.unwrap();
    assert_eq!(condition(&a, "Ready")["status"], "True");
    assert!(taint_keys(&a).is_empty(), "{a:#?}");

    // Node a goes silent.
    alive.lock().unwrap().remove("a");
    let a = eventually("node a Unknown and tainted", || get(&client, "/api/v1/nodes/a"), |n| {
        n.as_ref().is_some_and(|n| condition(n, "Ready")["status"] == "Unknown" && taint_keys(n) == [format!("{UNREACHABLE}:NoExecute")])
    })
    .await
    .unwrap();
    let ready = condition(&a, "Ready");
    assert_eq!((ready["reason"].as_str(), ready["message"].as_str()), (Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")));
    assert!(a["spec"]["taints"][0]["timeAdded"].is_string());
    eventually("a NodeNotReady event", || events(&client, "NodeNotReady", "a"), |e| !e.is_empty()).await;
    let b = get(&client, "/api/v1/nodes/b").await.unwrap();
    assert_eq!(condition(&b, "Ready")["status"], "True");
    assert!(taint_keys(&b).is_empty());

    // Its pods are marked not ready, then evicted once their toleration ran out: they stay
    // Terminating (no agent finishes them) and the ReplicaSet replaces its pod at once.
    let forever = eventually("forever not ready", || get_pod(&client, "forever"), |p| p.as_ref().is_some_and(|p| condition(p, "Ready")["status"] == "False")).await;
    assert!(!terminating(&forever));
    eventually("brief evicted", || get_pod(&client, "brief"), terminating).await;
    eventually("the ReplicaSet's pod on a evicted", || get_pod(&client, &on_a), terminating).await;
    let brief = get_pod(&client, "brief").await.unwrap();
    assert_eq!(condition(&brief, "DisruptionTarget")["reason"], "DeletionByTaintManager");
    let evictions = eventually("an eviction event", || events(&client, "TaintManagerEviction", "brief"), |e| !e.is_empty()).await;
    assert_eq!(evictions[0]["message"], "Marking for deletion Pod default/brief");
    let replacements = eventually("a replacement", || active_pods(&client, "web"), |p| p.len() == 2 && p.iter().all(|p| p["metadata"]["name"] != on_a.as_str())).await;
    assert!(replacements.iter().any(|p| p["spec"]["nodeName"].is_null()), "the replacement waits for a scheduler: {replacements:#?}");
    // Tolerated forever, or on the healthy node: kept.
    assert!(!terminating(&get_pod(&client, "forever").await));
    assert!(!terminating(&get_pod(&client, "elsewhere").await));

    // Node a comes back: Ready again, taint gone.
    alive.lock().unwrap().insert("a".to_owned());
    eventually("node a untainted", || get(&client, "/api/v1/nodes/a"), |n| {
        n.as_ref().is_some_and(|n| condition(n, "Ready")["status"] == "True" && taint_keys(n).is_empty())
    })
    .await;
    assert!(!terminating(&get_pod(&client, "forever").await));

    // Node b is deleted: its pods are force-deleted (no agent will ever finish them).
    alive.lock().unwrap().remove("b");
    client.request(Method::DELETE, "/api/v1/nodes/b", None).await.unwrap();
    eventually("elsewhere gone", || get_pod(&client, "elsewhere"), Option::is_none).await;
}

#[tokio::test]
async fn pods_are_admitted_with_default_tolerations_and_priority() {
    let (client, _dir) = start_server().await;
    let pod = |name: &str, class: Option<&str>| {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
        if let Some(class) = class {
            pod["spec"]["priorityClassName"] = json!(class);
        }
        pod
    };
    let plain = client.create(PODS, &pod("plain", None)).await.unwrap();
    let tolerations: Vec<(&str, i64)> = plain["spec"]["tolerations"].as_array().unwrap().iter().map(|t| (t["key"].as_str().unwrap(), t["tolerationSeconds"].as_i64().unwrap())).collect();
    assert_eq!(tolerations, [("node.kubernetes.io/not-ready", 300), ("node.kubernetes.io/unreachable", 300)]);
    assert_eq!((plain["spec"]["priority"].as_i64(), plain["spec"]["preemptionPolicy"].as_str()), (Some(0), Some("PreemptLowerPriority")));

    let critical = client.create(PODS, &pod("critical", Some("system-cluster-critical"))).await.unwrap();
    assert_eq!(critical["spec"]["priority"], 2_000_000_000);

    let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "batch"}, "value": 100, "globalDefault": true, "preemptionPolicy": "Never"});
    client.create("/apis/scheduling.k8s.io/v1/priorityclasses", &class).await.unwrap();
    let defaulted = client.create(PODS, &pod("defaulted", None)).await.unwrap();
    assert_eq!((defaulted["spec"]["priorityClassName"].as_str(), defaulted["spec"]["priority"].as_i64()), (Some("batch"), Some(100)));
    assert_eq!(defaulted["spec"]["preemptionPolicy"], "Never");

    match client.create(PODS, &pod("x", Some("foo"))).await {
        Err(ClientError::Status { code, message, .. }) => {
            assert_eq!(code, http::StatusCode::FORBIDDEN);
            assert_eq!(message, r#"pods "x" is forbidden: no PriorityClass with name foo was found"#);
        }
        other => panic!("a pod naming an unknown PriorityClass was admitted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_evicted_when_no_node_is_ready() {
    let (client, _dir) = start_server().await;
    register_node(&client, "only").await;
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ControllerOptions { workers: 1, node_monitor_grace_period: GRACE, ..ControllerOptions::default() };
    tokio::spawn(tugboat_controllers::run_all(client.clone(), options, async move {
        let _ = stopped.await;
    }));
    create_pod(&client, "untolerating", "only", json!([])).await;
    // No heartbeats at all: the node goes Unknown and its pod not ready, but with every node
    // down the cause is more likely the control plane's own network, so nothing is tainted.
    eventually("only Unknown", || get(&client, "/api/v1/nodes/only"), |n| n.as_ref().is_some_and(|n| condition(n, "Ready")["status"] == "Unknown")).await;
    eventually("the pod not ready", || get_pod(&client, "untolerating"), |p| p.as_ref().is_some_and(|p| condition(p, "Ready")["status"] == "False")).await;
    tokio::time::sleep(GRACE).await;
    let node = get(&client, "/api/v1/nodes/only").await.unwrap();
    assert!(taint_keys(&node).is_empty(), "{node:#?}");
    assert!(!terminating(&get_pod(&client, "untolerating").await));
}
