//! Workloads end to end with real containers: Deployments, ReplicaSets and ReplicationControllers
//! driven through the installed kubectl against `tugboat server` with its node agent, scheduler and
//! controllers, with test images from the registry on 127.0.0.1:5000.

use serde_json::Value;
use std::collections::HashMap;
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tugboat_testkit::{registry::ensure_test_registry, tail, wait_until, Server};

const TUGBOAT: &str = env!("CARGO_BIN_EXE_tugboat");

fn server() -> Server {
    Server::start_with_agent(std::path::Path::new(TUGBOAT), &[])
}

fn is_terminating(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string() || matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Pods matching `selector` that are not terminating.
fn live_pods(server: &Server, selector: &str) -> Vec<Value> {
    let list: Value = serde_json::from_slice(&server.kubectl(&["get", "pods", "-l", selector, "-o", "json"]).stdout).unwrap_or(Value::Null);
    list["items"].as_array().cloned().unwrap_or_default().into_iter().filter(|p| !is_terminating(p)).collect()
}

fn name(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

/// Waits until exactly `count` pods of `selector` are live and all of them run.
fn running(server: &Server, selector: &str, count: usize) -> Vec<Value> {
    let mut pods = Vec::new();
    let ok = wait_until(Duration::from_secs(90), || {
        pods = live_pods(server, selector);
        pods.len() == count && pods.iter().all(|p| p["status"]["phase"] == "Running")
    });
    assert!(ok, "{count} pods of {selector} never ran: {}\n{}", server.kubectl_ok(&["get", "pods", "-o", "wide"]), tail(&server.log(), 30));
    pods
}

fn rollout_status(server: &Server, deployment: &str) {
    server.kubectl_ok(&["rollout", "status", &format!("deployment/{deployment}"), "--timeout=120s"]);
}

/// `kubectl get pods -w` in the background; every watch event is kept with the moment it arrived.
struct PodWatch {
    child: Child,
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl PodWatch {
    fn start(server: &Server, selector: &str) -> Self {
        let mut child = Command::new("kubectl")
            .args(["get", "pods", "-l", selector, "--watch", "--output-watch-events", "-o", "json"])
            .env("KUBECONFIG", server.kubeconfig())
            .env("HOME", server.data_dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl starts");
        let stdout = child.stdout.take().expect("kubectl's stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            // kubectl writes each event as one JSON document: they are taken as they complete.
            for event in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
                let Ok(event) = event else { break };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), event));
            }
        });
        PodWatch { child, events }
    }

    fn events(&self) -> Vec<(Instant, Value)> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replays pod watch events: for each moment after the first time `armed` holds, the number of
/// live pods and of live Ready pods. Returns (most live, fewest ready, pods seen).
fn replay(events: &[(Instant, Value)], armed: impl Fn(usize, usize) -> bool) -> (usize, usize, usize) {
    let mut pods: HashMap<String, Value> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let (mut most_live, mut fewest_ready, mut checking) = (0, usize::MAX, false);
    for (_, event) in events {
        let pod = &event["object"];
        seen.insert(name(pod));
        if event["type"] == "DELETED" {
            pods.remove(&name(pod));
        } else {
            pods.insert(name(pod), pod.clone());
        }
        let live = pods.values().filter(|p| !is_terminating(p)).count();
        let ready = pods.values().filter(|p| !is_terminating(p) && is_ready(p)).count();
        checking |= armed(live, ready);
        if checking {
            most_live = most_live.max(live);
            fewest_ready = fewest_ready.min(ready);
        }
    }
    (most_live, fewest_ready, seen.len())
}

fn web_deployment(image: &str, message: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {image}
        command: ["sh", "-c", "echo {message} > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

#[test]
fn deployments_scale_roll_out_within_bounds_pause_restart_and_roll_back() {
    let image = ensure_test_registry();
    let server = server();
    server.apply(&web_deployment(&image, "v1"));
    rollout_status(&server, "web");
    running(&server, "app=web", 3);
    for replicas in [10, 2, 3] {
        server.kubectl_ok(&["scale", "deployment/web", &format!("--replicas={replicas}")]);
        running(&server, "app=web", replicas);
    }
    rollout_status(&server, "web");

    // A new template rolls out while a watch records every pod change: never more than
    // replicas + maxSurge = 4 live pods, never fewer than replicas - maxUnavailable = 2 ready.
    let watch = PodWatch::start(&server, "app=web");
    server.apply(&web_deployment(&image, "v2"));
    rollout_status(&server, "web");
    let history = server.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(history.lines().any(|l| l.starts_with("1 ")) && history.lines().any(|l| l.starts_with("2 ")), "{history}");
    let second = server.kubectl_ok(&["rollout", "history", "deployment/web", "--revision=2"]);
    assert!(second.contains("echo v2"), "{second}");
    let command = || server.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].command[2]}"]);
    assert!(command().contains("v2"));
    server.kubectl_ok(&["rollout", "undo", "deployment/web", "--to-revision=1"]);
    rollout_status(&server, "web");
    assert!(command().contains("v1"), "{}", command());
    running(&server, "app=web", 3);
    let events = watch.events();
    drop(watch);
    let (most_live, fewest_ready, seen) = replay(&events, |live, ready| live == 3 && ready == 3);
    println!("two rollouts of 3 replicas: at most {most_live} live pods, at least {fewest_ready} ready, {seen} pods seen");
    assert!(seen >= 9, "the watch saw both rollouts ({seen} pods)");
    assert!(most_live <= 4, "more than replicas + maxSurge pods: {most_live}");
    assert!(fewest_ready >= 2, "fewer than replicas - maxUnavailable ready pods: {fewest_ready}");

    // Paused: a template change waits; resumed: it rolls out.
    let replica_sets = || server.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"]).lines().count();
    let before = replica_sets();
    server.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    let progressing = || server.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"]);
    assert!(wait_until(Duration::from_secs(20), || progressing() == "DeploymentPaused"), "{}", progressing());
    server.kubectl_ok(&["set", "env", "deployment/web", "STAGE=paused"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replica_sets(), before, "no rollout while paused");
    server.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&server, "web");
    assert_eq!(replica_sets(), before + 1);
    server.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&server, "web");
    assert_eq!(replica_sets(), before + 2, "a restart is a new revision");
    let restarted = server.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.metadata.annotations}"]);
    assert!(restarted.contains("kubectl.kubernetes.io/restartedAt"), "{restarted}");
    running(&server, "app=web", 3);

    let described = server.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(described.contains("ScalingReplicaSet") && described.contains("Scaled up replica set web-"), "{described}");
    assert!(described.contains("NewReplicaSetAvailable"), "{described}");

    // Deleted in the foreground, the Deployment waits for its ReplicaSets, which wait for their pods.
    server.kubectl_ok(&["delete", "deployment", "web", "--cascade=foreground", "--timeout=60s"]);
    assert_eq!(server.kubectl_ok(&["get", "pods,rs", "-l", "app=web", "-o", "name"]).trim(), "", "nothing outlives its Deployment");
}

#[test]
fn a_rollout_that_never_gets_ready_exceeds_its_progress_deadline() {
    let image = ensure_test_registry();
    let server = server();
    server.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: never}}
spec:
  replicas: 1
  progressDeadlineSeconds: 5
  selector: {{matchLabels: {{app: never}}}}
  template:
    metadata: {{labels: {{app: never}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: {image}
        command: ["sleep", "100000"]
        readinessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1}}
"#
    ));
    let output = server.kubectl(&["rollout", "status", "deployment/never", "--timeout=60s"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "rollout status fails: {}{stderr}\n{}", String::from_utf8_lossy(&output.stdout), server.kubectl_ok(&["get", "deployment,rs,pods", "-o", "yaml"]));
    assert!(stderr.contains("exceeded its progress deadline"), "{stderr}");
    let message = server.kubectl_ok(&["get", "deployment", "never", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].message}"]);
    assert!(message.starts_with("ReplicaSet \"never-") && message.ends_with("\" has timed out progressing."), "{message}");
}

#[test]
fn replica_sets_and_replication_controllers_replace_deleted_pods() {
    let image = ensure_test_registry();
    let server = server();
    server.apply(&format!(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: heal}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: heal}}}}
  template:
    metadata: {{labels: {{app: heal}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: main, image: "{image}", command: ["sleep", "100000"]}}]
---
apiVersion: v1
kind: ReplicationController
metadata: {{name: legacy}}
spec:
  replicas: 3
  selector: {{app: legacy}}
  template:
    metadata: {{labels: {{app: legacy}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: main, image: "{image}", command: ["sleep", "100000"]}}]
"#
    ));
    let pods = running(&server, "app=heal", 3);
    let victim = name(&pods[0]);
    let watch = PodWatch::start(&server, "app=heal");
    assert!(wait_until(Duration::from_secs(10), || watch.events().len() >= 3), "the watch lists the pods");
    server.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    let after = running(&server, "app=heal", 3);
    assert!(after.iter().all(|p| name(p) != victim), "a replacement runs instead of {victim}");
    // The gap between the deletion and the replacement's creation, as the watch saw them.
    let events = watch.events();
    let deleted_at = events.iter().find(|(_, e)| name(&e["object"]) == victim && (is_terminating(&e["object"]) || e["type"] == "DELETED")).map(|(at, _)| *at);
    let original: Vec<String> = pods.iter().map(name).collect();
    let created_at = events.iter().find(|(_, e)| e["type"] == "ADDED" && !original.contains(&name(&e["object"]))).map(|(at, _)| *at);
    if let (Some(deleted), Some(created)) = (deleted_at, created_at) {
        println!("pod deleted → replacement created, seen by a watch: {:?}", created.saturating_duration_since(deleted));
    }

    let pods = running(&server, "app=legacy", 3);
    let victim = name(&pods[0]);
    server.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    let after = running(&server, "app=legacy", 3);
    assert!(after.iter().all(|p| name(p) != victim), "the ReplicationController replaced {victim}");
    let owner = &after[0]["metadata"]["ownerReferences"][0];
    assert_eq!((&owner["kind"], &owner["name"]), (&Value::from("ReplicationController"), &Value::from("legacy")));
}

#[test]
fn deleting_replica_sets_cascades_in_the_background_orphans_or_the_foreground() {
    let image = ensure_test_registry();
    let server = server();
    let replica_set = |name: &str, app: &str, grace: u32, command: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: {name}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      terminationGracePeriodSeconds: {grace}
      containers: [{{name: main, image: "{image}", command: ["sh", "-c", "{command}"]}}]
"#
        )
    };
    // Orphan: the ReplicaSet goes, its pods stay, ownerless; a new ReplicaSet adopts them.
    server.apply(&replica_set("keep", "keep", 0, "exec sleep 100000"));
    let pods = running(&server, "app=keep", 2);
    server.kubectl_ok(&["delete", "rs", "keep", "--cascade=orphan"]);
    let orphans = running(&server, "app=keep", 2);
    assert_eq!(orphans.iter().map(name).collect::<Vec<_>>(), pods.iter().map(name).collect::<Vec<_>>());
    let owners = server.kubectl_ok(&["get", "pods", "-l", "app=keep", "-o", "jsonpath={.items[*].metadata.ownerReferences}"]);
    assert!(owners.trim().is_empty(), "orphaned pods have no owner: {owners}");
    server.apply(&replica_set("adopter", "keep", 0, "exec sleep 100000"));
    let adopted = wait_until(Duration::from_secs(30), || {
        server.kubectl_ok(&["get", "pods", "-l", "app=keep", "-o", "jsonpath={.items[*].metadata.ownerReferences[0].name}"]).split_whitespace().filter(|o| *o == "adopter").count() == 2
    });
    assert!(adopted, "the new ReplicaSet adopted the orphans");
    assert_eq!(running(&server, "app=keep", 2).iter().map(name).collect::<Vec<_>>(), pods.iter().map(name).collect::<Vec<_>>(), "no new pods");

    // Background: the ReplicaSet goes at once, its pods after it.
    server.kubectl_ok(&["delete", "rs", "adopter", "--cascade=background"]);
    assert!(wait_until(Duration::from_secs(60), || server.kubectl_ok(&["get", "pods", "-l", "app=keep", "-o", "name"]).trim().is_empty()), "the pods went too");

    // Foreground: the ReplicaSet stays, marked, until its pods are gone. Its pods ignore SIGTERM
    // and take their 3 s grace period to stop, so there is time to look.
    server.apply(&replica_set("fg", "fg", 3, "trap '' TERM; while true; do sleep 0.2; done"));
    running(&server, "app=fg", 2);
    server.kubectl_ok(&["delete", "rs", "fg", "--cascade=foreground", "--wait=false"]);
    let rs: Value = serde_json::from_str(&server.kubectl_ok(&["get", "rs", "fg", "-o", "json"])).unwrap_or(Value::Null);
    assert!(rs["metadata"]["deletionTimestamp"].is_string(), "{rs:#}");
    assert_eq!(rs["metadata"]["finalizers"], serde_json::json!(["foregroundDeletion"]));
    assert!(wait_until(Duration::from_secs(20), || live_pods(&server, "app=fg").is_empty()), "the garbage collector deletes the pods");
    // Looked at in this order, an owner gone means its pods were gone before.
    let gone = wait_until(Duration::from_secs(60), || {
        let owner_gone = !server.kubectl(&["get", "rs", "fg"]).status.success();
        let pods = server.kubectl_ok(&["get", "pods", "-l", "app=fg", "-o", "name"]);
        assert!(!owner_gone || pods.trim().is_empty(), "the ReplicaSet went before its pods: {pods}");
        owner_gone
    });
    assert!(gone, "the ReplicaSet goes once its pods are gone");
}
