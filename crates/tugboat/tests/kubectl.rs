//! End-to-end: the real `tugboat` binary, the installed kubectl (no extra flags), and each store
//! backend (embedded SQLite and a real etcd).

use serde_json::Value;
use std::time::Duration;
use tugboat_testkit::{wait_until, Etcd, Server};

const TUGBOAT: &str = env!("CARGO_BIN_EXE_tugboat");

/// Runs a scenario once on SQLite and once on etcd.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&tugboat_testkit::Server::start(std::path::Path::new(super::TUGBOAT), &[])); })*
        }
        mod etcd {
            $(#[test] fn $name() {
                let etcd = tugboat_testkit::Etcd::start();
                let server = tugboat_testkit::Server::start(std::path::Path::new(super::TUGBOAT), &["--datastore-endpoint", &etcd.endpoint]);
                super::$name(&server);
            })*
        }
    };
}

on_both_stores!(apply_diff_and_reapply, everyday_commands, watch_prints_changes, python_client);

const APP_V1: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: httpd
        image: 127.0.0.1:5000/busybox:1
        command: ["httpd", "-f", "-p", "80"]
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn apply_diff_and_reapply(server: &Server) {
    let out = server.kubectl_with_stdin(&["apply", "-f", "-"], Some(APP_V1));
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    for line in ["namespace/shop created", "deployment.apps/web created", "service/web created", "configmap/settings created"] {
        assert!(printed.contains(line), "missing {line:?} in:\n{printed}");
    }

    // Change the image, drop env B, recolor: diff shows it, apply patches it.
    let v2 = APP_V1
        .replace("busybox:1", "busybox:2")
        .replace("        - {name: B, value: \"2\"}\n", "")
        .replace("color: blue", "color: green")
        .replace("strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}", "strategy:\n    type: Recreate");
    let diff = server.kubectl_with_stdin(&["diff", "-f", "-"], Some(&v2));
    let diff_text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(1), "kubectl diff should report differences: {}", String::from_utf8_lossy(&diff.stderr));
    assert!(diff_text.contains("busybox:2") && diff_text.contains("green"), "diff output:\n{diff_text}");

    let out = server.kubectl_with_stdin(&["apply", "-f", "-"], Some(&v2));
    assert!(out.status.success(), "re-apply failed: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("deployment.apps/web configured") && printed.contains("namespace/shop unchanged"), "{printed}");

    let deployment = json(&server.kubectl_ok(&["get", "deployment", "web", "-n", "shop", "-o", "json"]));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "127.0.0.1:5000/busybox:2");
    assert_eq!(container["env"].as_array().map(Vec::len), Some(1), "env B must be gone: {container}");
    assert_eq!(deployment["spec"]["strategy"], serde_json::json!({"type": "Recreate"}), "retainKeys drops rollingUpdate");
    assert_eq!(deployment["metadata"]["generation"], 2);
    assert_eq!(server.kubectl_ok(&["get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.color}"]), "green");

    let no_diff = server.kubectl_with_stdin(&["diff", "-f", "-"], Some(&v2));
    assert_eq!(no_diff.status.code(), Some(0), "no differences after apply: {}", String::from_utf8_lossy(&no_diff.stdout));

    let out = server.kubectl_with_stdin(&["delete", "-f", "-", "--wait=false"], Some(&v2));
    assert!(out.status.success(), "delete -f failed: {}", String::from_utf8_lossy(&out.stderr));
    // A bare control plane has no namespace controller to let the namespace go (see
    // `a_deleted_namespace_is_emptied_then_goes`); the manifest's objects went one by one.
    assert_eq!(server.kubectl_ok(&["get", "ns", "shop", "-o", "jsonpath={.status.phase}"]), "Terminating");
    assert_eq!(server.kubectl_ok(&["get", "deployments,configmaps", "-n", "shop", "-o", "name"]), "");
}

/// `kubectl delete namespace` waits until the namespace controller has emptied it and it is gone.
#[test]
fn a_deleted_namespace_is_emptied_then_goes() {
    let server = Server::start_control_plane(std::path::Path::new(TUGBOAT), &[]);
    server.kubectl_ok(&["create", "namespace", "shop"]);
    server.kubectl_ok(&["create", "configmap", "settings", "-n", "shop", "--from-literal=color=blue"]);
    server.kubectl_ok(&["create", "deployment", "web", "-n", "shop", "--image=busybox", "--replicas=2"]);
    assert!(wait_until(Duration::from_secs(10), || server.kubectl_ok(&["get", "pods", "-n", "shop", "-o", "name"]).lines().count() == 2), "the deployment's pods exist");
    // kubectl waits for the namespace to be gone (its default --wait=true) and fails if it is not.
    server.kubectl_ok(&["delete", "namespace", "shop", "--timeout=30s"]);
    assert!(!server.kubectl(&["get", "ns", "shop"]).status.success());
    assert_eq!(server.kubectl_ok(&["get", "deployments,replicasets,pods,configmaps", "-n", "shop", "-o", "name"]), "");
}

fn everyday_commands(server: &Server) {
    server.kubectl_ok(&["create", "namespace", "team"]);
    server.kubectl_with_stdin(&["apply", "-f", "-"], Some(&APP_V1.replace("shop", "team")));

    let wide = server.kubectl_ok(&["get", "deploy,svc,cm", "-n", "team", "-o", "wide"]);
    for header in ["READY", "UP-TO-DATE", "AVAILABLE", "CONTAINERS", "IMAGES", "SELECTOR", "TYPE", "CLUSTER-IP", "PORT(S)", "DATA"] {
        assert!(wide.contains(header), "missing column {header} in:\n{wide}");
    }
    assert!(wide.contains("deployment.apps/web") && wide.contains("service/web") && wide.contains("80/TCP"), "{wide}");
    let yaml = server.kubectl_ok(&["get", "deploy", "web", "-n", "team", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:"), "{yaml}");
    let ip = server.kubectl_ok(&["get", "svc", "web", "-n", "team", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.43."), "cluster IP allocated from the service CIDR: {ip}");

    let describe = server.kubectl_ok(&["describe", "deployment", "web", "-n", "team"]);
    assert!(describe.contains("Replicas:") && describe.contains("StrategyType:"), "{describe}");

    server.kubectl_ok(&["label", "deployment", "web", "-n", "team", "tier=front"]);
    server.kubectl_ok(&["annotate", "deployment", "web", "-n", "team", "owner=ops"]);
    let labelled = server.kubectl_ok(&["get", "deploy", "-n", "team", "-l", "tier=front", "-o", "name"]);
    assert_eq!(labelled.trim(), "deployment.apps/web");
    assert_eq!(server.kubectl_ok(&["get", "deploy", "web", "-n", "team", "-o", "jsonpath={.metadata.annotations.owner}"]), "ops");

    server.kubectl_ok(&["scale", "deployment", "web", "-n", "team", "--replicas=5"]);
    assert_eq!(server.kubectl_ok(&["get", "deploy", "web", "-n", "team", "-o", "jsonpath={.spec.replicas}"]), "5");
    let scale = json(&server.kubectl_ok(&["get", "--raw", "/apis/apps/v1/namespaces/team/deployments/web/scale"]));
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(5)));
    assert_eq!(scale["status"]["selector"], "app=web");

    let all = server.kubectl_ok(&["get", "deployments", "-A"]);
    assert!(all.contains("NAMESPACE") && all.contains("team"), "{all}");
    let namespaces = server.kubectl_ok(&["get", "namespaces"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease", "team"] {
        assert!(namespaces.contains(ns), "{ns} missing:\n{namespaces}");
    }

    let resources = server.kubectl_ok(&["api-resources"]);
    for line in ["deployments", "deploy", "apps/v1", "horizontalpodautoscalers", "leases", "priorityclasses", "endpointslices"] {
        assert!(resources.contains(line), "{line} missing from api-resources:\n{resources}");
    }
    let explain = server.kubectl_ok(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("rollingUpdate") && explain.contains("DeploymentStrategy"), "{explain}");
    assert_eq!(server.kubectl_ok(&["get", "--raw", "/readyz"]), "ok");

    // Bad input gets a Status error, not a crash.
    let unknown = server.kubectl_with_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: team}\nbogus: 1\n"));
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown field \"bogus\""), "{}", String::from_utf8_lossy(&unknown.stderr));
    let bad_name = server.kubectl(&["create", "configmap", "Bad_Name", "-n", "team"]);
    assert!(!bad_name.status.success());
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("is invalid"), "{}", String::from_utf8_lossy(&bad_name.stderr));
    let missing = server.kubectl(&["get", "deploy", "nope", "-n", "team"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"), "{}", String::from_utf8_lossy(&missing.stderr));
}

fn watch_prints_changes(server: &Server) {
    let pod = |name: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  containers:\n  - {{name: c, image: 127.0.0.1:5000/busybox:1}}\n");
    let (mut watcher, output) = server.kubectl_background(&["get", "pods", "-w", "--output-watch-events", "-n", "default"], "watch.out");
    std::thread::sleep(Duration::from_millis(800));
    server.kubectl_with_stdin(&["apply", "-f", "-"], Some(&pod("p1")));
    server.kubectl_ok(&["label", "pod", "p1", "color=red"]);
    server.kubectl_ok(&["delete", "pod", "p1"]);
    let seen = wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        text.contains("ADDED") && text.contains("MODIFIED") && text.contains("DELETED")
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(seen, "watch output:\n{}", std::fs::read_to_string(&output).unwrap_or_default());

    // Resuming from an old resourceVersion replays every change since.
    let list = json(&server.kubectl_ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]));
    let from = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    for i in 0..3 {
        server.kubectl_ok(&["create", "configmap", &format!("c{i}"), "-n", "default"]);
    }
    server.kubectl_ok(&["delete", "configmap", "c1", "-n", "default"]);
    let events = server.kubectl_ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={from}&timeoutSeconds=1")]);
    let kinds: Vec<String> = events.lines().map(|l| format!("{} {}", json(l)["type"].as_str().unwrap(), json(l)["object"]["metadata"]["name"].as_str().unwrap())).collect();
    assert_eq!(kinds, ["ADDED c0", "ADDED c1", "ADDED c2", "DELETED c1"]);
}

fn python_client(server: &Server) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/python_client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .env("KUBECONFIG", server.kubeconfig())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python client scenario failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sqlite_restart_and_kill9_lose_no_acknowledged_write() {
    let mut server = Server::start(std::path::Path::new(TUGBOAT), &[]);
    server.kubectl_ok(&["create", "configmap", "before", "-n", "default", "--from-literal=k=v"]);
    server.restart();
    assert_eq!(server.kubectl_ok(&["get", "cm", "before", "-n", "default", "-o", "jsonpath={.data.k}"]), "v");
    kill9_during_burst(&mut server);
}

#[test]
fn etcd_restart_and_kill9_lose_no_acknowledged_write() {
    let etcd = Etcd::start();
    let mut server = Server::start(std::path::Path::new(TUGBOAT), &["--datastore-endpoint", &etcd.endpoint]);
    server.kubectl_ok(&["create", "configmap", "before", "-n", "default", "--from-literal=k=v"]);
    server.restart();
    assert_eq!(server.kubectl_ok(&["get", "cm", "before", "-n", "default", "-o", "jsonpath={.data.k}"]), "v");
    kill9_during_burst(&mut server);
}

/// A client writes as fast as it can and logs every acknowledged name; the server is killed
/// with SIGKILL mid-burst; after a restart every acknowledged object must be there.
fn kill9_during_burst(server: &mut Server) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/write_burst.py");
    let acked = server.data_dir.path().join("acked.txt");
    let mut writer = std::process::Command::new("python3")
        .arg(script)
        .arg(&acked)
        .env("KUBECONFIG", server.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&acked).map(|t| t.lines().count() >= 100).unwrap_or(false)),
        "the writer acknowledged fewer than 100 writes"
    );
    server.kill9();
    let _ = writer.wait();
    let names: Vec<String> = std::fs::read_to_string(&acked).unwrap_or_default().lines().map(str::to_owned).collect();
    server.restart();
    let stored = json(&server.kubectl_ok(&["get", "configmaps", "-n", "default", "-o", "json"]));
    let present: std::collections::HashSet<&str> =
        stored["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    let lost: Vec<&String> = names.iter().filter(|n| !present.contains(n.as_str())).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes were lost, e.g. {:?}", lost.len(), names.len(), &lost[..lost.len().min(5)]);
}

#[test]
fn sqlite_watch_from_compacted_revision_is_gone() {
    watch_from_compacted_revision_is_gone(&Server::start(std::path::Path::new(TUGBOAT), &["--compaction-interval-seconds", "1"]));
}

#[test]
fn etcd_watch_from_compacted_revision_is_gone() {
    let etcd = Etcd::start();
    let args = ["--datastore-endpoint", etcd.endpoint.as_str(), "--compaction-interval-seconds", "1"];
    watch_from_compacted_revision_is_gone(&Server::start(std::path::Path::new(TUGBOAT), &args));
}

/// Once history is compacted, resuming a watch from before it answers 410 Gone (reason Expired),
/// which makes clients relist.
fn watch_from_compacted_revision_is_gone(server: &Server) {
    server.kubectl_ok(&["create", "configmap", "old", "-n", "default"]);
    let old = server.kubectl_ok(&["get", "cm", "old", "-n", "default", "-o", "jsonpath={.metadata.resourceVersion}"]);
    // Compaction runs every second up to the revision seen a second earlier: keep writing so
    // the revision moves past `old`, then wait for two rounds.
    for i in 0..3 {
        server.kubectl_ok(&["create", "configmap", &format!("new{i}"), "-n", "default"]);
        std::thread::sleep(Duration::from_millis(1200));
    }
    let gone = wait_until(Duration::from_secs(10), || {
        let out = server.kubectl(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}&timeoutSeconds=1")]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        text.contains("Expired") || text.contains("410") || text.contains("Gone") || text.contains("too old")
    });
    assert!(gone, "a watch from a compacted revision must fail with 410 Gone; log:\n{}", server.log());
}
