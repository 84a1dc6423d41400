//! The agent's pod logic against a real in-process API server and the in-memory CRI runtime:
//! status, restarts with back-off, probes, pull failures, config errors and deletion — fast, and
//! without containers (the end-to-end tests in crates/tugboat run the real containerd).

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tugboat_agent::{AgentConfig, ApiClient};
use tugboat_client::Client;
use tugboat_cri::FakeRuntime;

const NODE: &str = "fake-node";

struct Harness {
    client: Client,
    runtime: Arc<FakeRuntime>,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let api = tugboat_testkit::in_process::start_api_server().await;
    let (client, dir) = (api.client, api.dir);
    let runtime = Arc::new(FakeRuntime::new());
    runtime.add_image("busybox:1");
    let agent = AgentConfig {
        node_name: NODE.into(),
        data_dir: dir.path().join("agent"),
        node_ip: "127.0.0.1".parse().unwrap(),
        port: 0,
        insecure_registries: vec![],
        max_pods: 110,
        relist_interval: Duration::from_millis(50),
        cni_conf_dir: dir.path().join("cni"),
        cluster_ca_pem: api.ca_pem,
        registry_hosts_dir: None,
    };
    let agent_runtime = runtime.clone();
    let agent_client = ApiClient::new(client.clone());
    tokio::spawn(async move {
        if let Err(error) = tugboat_agent::run(agent, agent_client, agent_runtime, std::future::pending()).await {
            panic!("the agent stopped: {error}");
        }
    });
    Harness { client, runtime, _dir: dir }
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = NODE.into();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

async fn get_pod(client: &Client, name: &str) -> Value {
    client.get(&format!("/api/v1/namespaces/default/pods/{name}")).await.unwrap_or(Value::Null)
}

/// Polls the pod until `check` holds (bounded); returns the last pod seen.
async fn wait_pod(client: &Client, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let pod = get_pod(client, name).await;
        if check(&pod) {
            return pod;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pod {name} never got {what}: {:#}", get_pod(client, name).await);
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"].as_array().and_then(|all| all.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn node_registers_with_capacity_lease_and_pod_network() {
    let h = start().await;
    let mut node = Value::Null;
    for _ in 0..100 {
        node = h.client.get(&format!("/api/v1/nodes/{NODE}")).await.unwrap_or(Value::Null);
        if node["status"]["conditions"].is_array() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "True", "{node:#}");
    for resource in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(node["status"]["capacity"][resource].is_string(), "capacity lacks {resource}: {node:#}");
    }
    assert_eq!(node["status"]["nodeInfo"]["containerRuntimeVersion"], "fake://0.0.0");
    assert_eq!(node["spec"]["podCIDR"], "10.42.0.0/24");
    let lease = h.client.get(&format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")).await.unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
}

#[tokio::test]
async fn init_containers_run_first_then_containers_become_ready() {
    let h = start().await;
    let spec = json!({"initContainers": [{"name": "setup", "image": "busybox:1", "command": ["true"]}],
        "containers": [{"name": "app", "image": "busybox:1", "command": ["sleep", "1000"]}]});
    h.client.create("/api/v1/namespaces/default/pods", &pod("p", spec)).await.unwrap();
    let pod = wait_pod(&h.client, "p", "the init container started", |p| p["status"]["initContainerStatuses"][0]["state"]["running"].is_object()).await;
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(container_status(&pod, "app")["state"]["waiting"]["reason"], "PodInitializing");
    let init_id = h.runtime.running_named("setup");
    assert_eq!(init_id.len(), 1);
    h.runtime.exit_container(&init_id[0], 0, "Completed");
    let pod = wait_pod(&h.client, "p", "Running and Ready", |p| p["status"]["phase"] == "Running" && container_status(p, "app")["ready"] == true).await;
    assert_eq!(pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    assert!(pod["status"]["podIP"].is_string());
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let conditions: Vec<(String, String)> = pod["status"]["conditions"].as_array().unwrap().iter().map(|c| (c["type"].as_str().unwrap().to_owned(), c["status"].as_str().unwrap().to_owned())).collect();
    for kind in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        assert!(conditions.contains(&(kind.to_owned(), "True".to_owned())), "{conditions:?}");
    }
}

#[tokio::test]
async fn a_crash_restarts_at_once_then_backs_off() {
    let h = start().await;
    let spec = json!({"containers": [{"name": "app", "image": "busybox:1", "command": ["sleep", "1000"]}]});
    h.client.create("/api/v1/namespaces/default/pods", &pod("crash", spec)).await.unwrap();
    wait_pod(&h.client, "crash", "Running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
    let first = h.runtime.running_named("app");
    h.runtime.exit_container(&first[0], 1, "Error");
    let pod = wait_pod(&h.client, "crash", "a restart", |p| container_status(p, "app")["restartCount"] == 1 && container_status(p, "app")["state"]["running"].is_object()).await;
    assert_eq!(container_status(&pod, "app")["lastState"]["terminated"]["exitCode"], 1);
    let second = h.runtime.running_named("app");
    assert_ne!(first, second, "a new container instance runs");
    h.runtime.exit_container(&second[0], 2, "Error");
    let pod = wait_pod(&h.client, "crash", "CrashLoopBackOff", |p| container_status(p, "app")["state"]["waiting"]["reason"] == "CrashLoopBackOff").await;
    let message = container_status(&pod, "app")["state"]["waiting"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("back-off 10s restarting failed container=app"), "{message}");
    assert_eq!(container_status(&pod, "app")["lastState"]["terminated"]["exitCode"], 2);
    assert!(h.runtime.running_named("app").is_empty(), "no restart during the back-off");
}

#[tokio::test]
async fn failing_liveness_restarts_and_readiness_drives_ready() {
    let h = start().await;
    let probe = |command: &str| json!({"exec": {"command": [command]}, "periodSeconds": 1, "failureThreshold": 1});
    let spec = json!({"containers": [{"name": "app", "image": "busybox:1", "command": ["sleep", "1000"],
        "readinessProbe": probe("ready-check"), "livenessProbe": probe("live-check")}]});
    h.runtime.set_exec_exit_code("ready-check", 1);
    h.client.create("/api/v1/namespaces/default/pods", &pod("probed", spec)).await.unwrap();
    let pod = wait_pod(&h.client, "probed", "running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
    assert_eq!(container_status(&pod, "app")["ready"], false);
    h.runtime.set_exec_exit_code("ready-check", 0);
    wait_pod(&h.client, "probed", "Ready", |p| container_status(p, "app")["ready"] == true).await;
    h.runtime.set_exec_exit_code("live-check", 1);
    wait_pod(&h.client, "probed", "a liveness restart", |p| container_status(p, "app")["restartCount"] == 1).await;
}

#[tokio::test]
async fn pull_failures_and_missing_config_are_reported_not_fatal() {
    let h = start().await;
    h.runtime.fail_pull("127.0.0.1:5000/missing:1", "127.0.0.1:5000/missing:1: not found");
    let spec = json!({"containers": [{"name": "app", "image": "127.0.0.1:5000/missing:1"}]});
    h.client.create("/api/v1/namespaces/default/pods", &pod("nopull", spec)).await.unwrap();
    let found = wait_pod(&h.client, "nopull", "ErrImagePull", |p| container_status(p, "app")["state"]["waiting"]["reason"] == "ErrImagePull").await;
    assert!(container_status(&found, "app")["state"]["waiting"]["message"].as_str().unwrap().contains("not found"));
    wait_pod(&h.client, "nopull", "ImagePullBackOff", |p| container_status(p, "app")["state"]["waiting"]["reason"] == "ImagePullBackOff").await;

    let spec = json!({"containers": [{"name": "app", "image": "busybox:1",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}]});
    h.client.create("/api/v1/namespaces/default/pods", &pod("noconfig", spec)).await.unwrap();
    let found = wait_pod(&h.client, "noconfig", "CreateContainerConfigError", |p| container_status(p, "app")["state"]["waiting"]["reason"] == "CreateContainerConfigError").await;
    assert!(container_status(&found, "app")["state"]["waiting"]["message"].as_str().unwrap().contains("absent"), "{found:#}");
    // Once the ConfigMap exists the container starts.
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "absent"}, "data": {"k": "v"}});
    h.client.create("/api/v1/namespaces/default/configmaps", &config_map).await.unwrap();
    wait_pod(&h.client, "noconfig", "running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
}

#[tokio::test]
async fn deleted_pods_stop_then_disappear() {
    let h = start().await;
    let spec = json!({"terminationGracePeriodSeconds": 5, "containers": [{"name": "app", "image": "busybox:1"}]});
    h.client.create("/api/v1/namespaces/default/pods", &pod("gone", spec)).await.unwrap();
    wait_pod(&h.client, "gone", "running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
    h.client.request(http::Method::DELETE, "/api/v1/namespaces/default/pods/gone", None).await.unwrap();
    wait_pod(&h.client, "gone", "deleted", Value::is_null).await;
    let calls = h.runtime.calls();
    let stop = calls.iter().position(|c| c.starts_with("StopContainer")).expect("the container was stopped");
    let remove = calls.iter().position(|c| c.starts_with("RemovePodSandbox")).expect("the sandbox was removed");
    assert!(stop < remove, "{calls:?}");
    assert!(h.runtime.running_named("app").is_empty());
}

#[tokio::test]
async fn a_changed_config_map_reaches_mounted_files() {
    let h = start().await;
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "one"}});
    h.client.create("/api/v1/namespaces/default/configmaps", &config_map).await.unwrap();
    let spec = json!({"containers": [{"name": "app", "image": "busybox:1", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]});
    h.client.create("/api/v1/namespaces/default/pods", &pod("configured", spec)).await.unwrap();
    let pod = wait_pod(&h.client, "configured", "running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let file = h._dir.path().join("agent/pods").join(uid).join("volumes/kubernetes.io~configmap/cfg/mode");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one");
    let patch = json!({"data": {"mode": "two"}});
    h.client.request(http::Method::PATCH, "/api/v1/namespaces/default/configmaps/settings", Some(("application/merge-patch+json", bytes::Bytes::from(patch.to_string())))).await.unwrap();
    // The agent refreshes mounted configuration every 10 s.
    let mut content = String::new();
    for _ in 0..300 {
        content = std::fs::read_to_string(&file).unwrap_or_default();
        if content == "two" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(content, "two", "the update reached the mounted file");
}
