//! The control plane with simulated nodes (`tugboat sim`): the real server, store, scheduler and
//! controllers, driven by the installed kubectl, with nodes whose heartbeats the test can stop.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tugboat_testkit::{wait_until, Server, Sim};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tugboat"))
}

fn json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&server.kubectl_ok(&all)).unwrap_or(Value::Null)
}

fn ready_nodes(server: &Server) -> usize {
    let nodes = json(server, &["get", "nodes"]);
    nodes["items"].as_array().into_iter().flatten().filter(|n| condition(n, "Ready") == "True").count()
}

fn condition(object: &Value, kind: &str) -> String {
    let found = object["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind);
    found.and_then(|c| c["status"].as_str()).unwrap_or_default().to_owned()
}

/// Live (not terminating) pods of `app`, with their nodes.
fn live_pods(server: &Server, app: &str) -> Vec<(String, String, String)> {
    let pods = json(server, &["get", "pods", "-l", &format!("app={app}")]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&p["metadata"]["name"]), text(&p["spec"]["nodeName"]), text(&p["status"]["phase"]))
        })
        .collect()
}

fn deployment(name: &str, replicas: usize, toleration_seconds: u64) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      tolerations:
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: {toleration_seconds}}}
      containers:
      - name: c
        image: registry.k8s.io/pause:3.10
        resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
"#
    )
}

#[test]
fn a_node_that_stops_its_heartbeat_is_marked_unknown_and_its_pods_move() {
    let server = Server::start_control_plane(binary(), &["--node-monitor-grace-period", "4s"]);
    let _steady = Sim::start(binary(), &server, &["--nodes", "2", "--name-prefix", "steady-"]);
    let mut doomed = Sim::start(binary(), &server, &["--nodes", "1", "--name-prefix", "doomed-"]);
    assert!(wait_until(Duration::from_secs(30), || ready_nodes(&server) == 3), "3 simulated nodes never became Ready:\n{}", server.kubectl_ok(&["get", "nodes"]));

    server.kubectl_with_stdin(&["apply", "-f", "-"], Some(&deployment("web", 6, 2)));
    let spread = wait_until(Duration::from_secs(30), || {
        let pods = live_pods(&server, "web");
        pods.len() == 6 && pods.iter().all(|(_, _, phase)| phase == "Running") && pods.iter().any(|(_, node, _)| node == "doomed-0")
    });
    assert!(spread, "6 pods never ran with some on doomed-0: {:?}", live_pods(&server, "web"));

    // The kubelet of doomed-0 dies: after the grace period its node is Unknown and tainted.
    doomed.kill();
    let unknown = wait_until(Duration::from_secs(30), || {
        let node = json(&server, &["get", "node", "doomed-0"]);
        let tainted = node["spec"]["taints"].as_array().into_iter().flatten().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute");
        condition(&node, "Ready") == "Unknown" && tainted
    });
    assert!(unknown, "doomed-0 was never marked unreachable: {}", server.kubectl_ok(&["get", "node", "doomed-0", "-o", "yaml"]));

    // Its pods are evicted once their 2 s toleration runs out, and replaced on the live nodes.
    let moved = wait_until(Duration::from_secs(30), || {
        let pods = live_pods(&server, "web");
        pods.len() == 6 && pods.iter().all(|(_, node, phase)| node.starts_with("steady-") && phase == "Running")
    });
    assert!(moved, "the pods of doomed-0 were not replaced elsewhere: {:?}\n{}", live_pods(&server, "web"), server.kubectl_ok(&["get", "events", "-A"]));
    let events = server.kubectl_ok(&["get", "events", "--field-selector", "reason=TaintManagerEviction", "-o", "name"]);
    assert!(!events.trim().is_empty(), "no TaintManagerEviction event was recorded");

    // The API server gave the pods the toleration they did not state: not-ready for 300 s.
    let pods = json(&server, &["get", "pods", "-l", "app=web"]);
    let tolerations = &pods["items"][0]["spec"]["tolerations"];
    let not_ready = tolerations.as_array().into_iter().flatten().find(|t| t["key"] == "node.kubernetes.io/not-ready");
    assert_eq!(not_ready.map(|t| t["tolerationSeconds"].clone()), Some(Value::from(300)), "{tolerations}");
}

#[test]
fn simulated_nodes_run_a_deployment_spread_over_them() {
    let server = Server::start_control_plane(binary(), &[]);
    let _nodes = Sim::start(binary(), &server, &["--nodes", "20"]);
    assert!(wait_until(Duration::from_secs(30), || ready_nodes(&server) == 20), "20 simulated nodes never became Ready");
    server.kubectl_ok(&["create", "deployment", "many", "--image=registry.k8s.io/pause:3.10", "--replicas=200"]);
    server.kubectl_ok(&["rollout", "status", "deployment/many", "--timeout=60s"]);
    let pods = json(&server, &["get", "pods", "-l", "app=many"]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 200);
    let mut per_node = std::collections::HashMap::<String, usize>::new();
    for pod in &items {
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(pod["status"]["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.42.")), "{}", pod["status"]);
        *per_node.entry(pod["spec"]["nodeName"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    // The scheduler spreads a controller's replicas: every node holds its share, give or take.
    assert_eq!(per_node.len(), 20, "{per_node:?}");
    assert!(per_node.values().all(|count| (5..=15).contains(count)), "{per_node:?}");
    let ips: std::collections::HashSet<&str> = items.iter().filter_map(|p| p["status"]["podIP"].as_str()).collect();
    assert_eq!(ips.len(), 200, "pod IPs are unique");
}
