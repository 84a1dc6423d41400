//! End-to-end with real containers: `tugboat server` with its node agent and own containerd
//! (runc, CNI bridge), the installed kubectl, and test images from a real registry on
//! 127.0.0.1:5000 built from busybox-static.

use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tugboat_testkit::{registry::ensure_test_registry, tail, wait_until, Server};

const TUGBOAT: &str = env!("CARGO_BIN_EXE_tugboat");

fn server() -> Server {
    Server::start_with_agent(std::path::Path::new(TUGBOAT), &[])
}

fn pod_json(server: &Server, name: &str) -> Value {
    let output = server.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"].as_array().and_then(|all| all.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

/// Waits (bounded) until `check` holds for the pod; panics with the pod and the server log.
fn wait_pod(server: &Server, name: &str, what: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(timeout, || {
        last = pod_json(server, name);
        check(&last)
    });
    assert!(ok, "pod {name} never got {what}: {last:#}\nevents:\n{}\nlog tail:\n{}", server.kubectl_ok(&["get", "events"]), tail(&server.log(), 40));
    last
}

fn http_get(address: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn web_pod(image: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: {node}
  initContainers:
  - name: page
    image: {image}
    command: ["sh", "-c", "echo hello from tugboat > /www/index.html"]
    volumeMounts: [{{name: www, mountPath: /www}}]
  containers:
  - name: httpd
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    volumeMounts: [{{name: www, mountPath: /www}}]
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
  - name: client
    image: {image}
    command: ["sh", "-c", "while true; do wget -qO- http://localhost:8080/; sleep 1; done"]
  volumes:
  - name: www
    emptyDir: {{}}
"#
    )
}

#[test]
fn a_pod_serves_http_and_streams_logs_exec_port_forward_cp_and_metrics() {
    let image = ensure_test_registry();
    let server = server();
    let node = server.node_name.clone().unwrap();
    server.apply(&web_pod(&image, &node));
    let pod = wait_pod(&server, "web", "Running and Ready", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running" && p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    });
    assert_eq!(pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
    let page = http_get(&format!("{pod_ip}:8080")).unwrap_or_default();
    assert!(page.contains("hello from tugboat"), "the pod IP answers HTTP from the host: {page:?}");

    // Logs: the client container prints the page every second.
    assert!(wait_until(Duration::from_secs(10), || server.kubectl_ok(&["logs", "web", "-c", "client"]).contains("hello from tugboat")));
    let (mut follow, follow_path) = server.kubectl_background(&["logs", "-f", "web", "-c", "client", "--tail", "1"], "follow.log");
    assert!(wait_until(Duration::from_secs(10), || std::fs::read_to_string(&follow_path).unwrap_or_default().lines().count() >= 3), "logs -f keeps streaming");
    let _ = follow.kill();
    let _ = follow.wait();
    let stamped = server.kubectl_ok(&["logs", "web", "-c", "client", "--tail", "1", "--timestamps"]);
    assert!(stamped.starts_with("20") && stamped.contains("Z hello from tugboat"), "{stamped:?}");

    // Exec, non-interactive, with the exit code carried back.
    assert_eq!(server.kubectl_ok(&["exec", "web", "-c", "httpd", "--", "cat", "/www/index.html"]), "hello from tugboat\n");
    let failed = server.kubectl(&["exec", "web", "-c", "httpd", "--", "sh", "-c", "exit 7"]);
    assert_eq!(failed.status.code(), Some(7), "{}", String::from_utf8_lossy(&failed.stderr));

    // Interactive exec through a terminal (`script` gives kubectl a pty).
    let mut terminal = Command::new("script")
        .args(["-q", "-c", "kubectl exec -it web -c httpd -- sh", "/dev/null"])
        .env("KUBECONFIG", server.kubeconfig())
        .env("HOME", server.data_dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) runs");
    let mut input = terminal.stdin.take().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    input.write_all(b"echo answer-$((6*7))\n").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    input.write_all(b"exit\n").unwrap();
    drop(input);
    let output = terminal.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("answer-42"), "interactive shell output: {text:?} {}", String::from_utf8_lossy(&output.stderr));

    // Port-forward from a local port to the pod.
    let local = tugboat_testkit::free_port();
    let (mut forward, _) = server.kubectl_background(&["port-forward", "pod/web", &format!("{local}:8080")], "forward.log");
    let forwarded = wait_until(Duration::from_secs(10), || http_get(&format!("127.0.0.1:{local}")).is_some_and(|r| r.contains("hello from tugboat")));
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(forwarded, "port-forward reaches the pod");

    // cp both ways (tar over exec, stdin closed at the end).
    let local_file = server.data_dir.path().join("upload.txt");
    std::fs::write(&local_file, "copied in\n").unwrap();
    server.kubectl_ok(&["cp", local_file.to_str().unwrap(), "web:/tmp/upload.txt", "-c", "httpd"]);
    assert_eq!(server.kubectl_ok(&["exec", "web", "-c", "httpd", "--", "cat", "/tmp/upload.txt"]), "copied in\n");
    let back = server.data_dir.path().join("download.txt");
    server.kubectl_ok(&["cp", "web:/www/index.html", back.to_str().unwrap(), "-c", "httpd"]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "hello from tugboat\n");

    // Metrics through metrics.k8s.io.
    let mut top = String::new();
    let measured = wait_until(Duration::from_secs(40), || {
        let output = server.kubectl(&["top", "pod", "web", "--containers"]);
        top = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        output.status.success() && top.contains("httpd")
    });
    assert!(measured, "kubectl top pod: {top}");
    assert!(server.kubectl(&["top", "node"]).status.success());
}

/// The host pid of a container's main process (containerd's shim records it).
fn container_pid(server: &Server, container_id: &str) -> Option<i32> {
    let id = container_id.trim_start_matches("containerd://");
    let state = server.containerd_state_dir()?;
    std::fs::read_to_string(state.join("io.containerd.runtime.v2.task").join("k8s.io").join(id).join("init.pid")).ok()?.trim().parse().ok()
}

#[test]
fn containers_heal_back_off_and_follow_probes() {
    let image = ensure_test_registry();
    let server = server();
    let node = server.node_name.clone().unwrap();
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: heal}}
spec:
  nodeName: {node}
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 100000"]
    readinessProbe:
      exec: {{command: ["cat", "/tmp/ready"]}}
      periodSeconds: 1
      failureThreshold: 1
  - name: unhealthy
    image: {image}
    command: ["sh", "-c", "touch /tmp/alive; sleep 4; rm /tmp/alive; exec sleep 100000"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/alive"]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ));
    let pod = wait_pod(&server, "heal", "main running", Duration::from_secs(60), |p| container(p, "main")["ready"] == true);
    let first_id = container(&pod, "main")["containerID"].as_str().unwrap().to_owned();

    // Kill the main process from the host: a new container replaces it at once.
    let pid = container_pid(&server, &first_id).expect("the container's pid");
    let killed_at = Instant::now();
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let pod = wait_pod(&server, "heal", "a restart of main", Duration::from_secs(20), |p| {
        container(p, "main")["restartCount"] == 1 && container(p, "main")["state"]["running"].is_object()
    });
    println!("main process killed → new container running seen after {:?}", killed_at.elapsed());
    assert_ne!(container(&pod, "main")["containerID"], first_id.as_str());
    assert_eq!(container(&pod, "main")["lastState"]["terminated"]["exitCode"], 137);

    // Readiness follows the probe: remove the file → not Ready; put it back → Ready.
    server.kubectl_ok(&["exec", "heal", "-c", "main", "--", "rm", "/tmp/ready"]);
    wait_pod(&server, "heal", "main not ready", Duration::from_secs(20), |p| container(p, "main")["ready"] == false);
    server.kubectl_ok(&["exec", "heal", "-c", "main", "--", "touch", "/tmp/ready"]);
    wait_pod(&server, "heal", "main ready again", Duration::from_secs(20), |p| container(p, "main")["ready"] == true);

    // The failing liveness probe restarts its container.
    wait_pod(&server, "heal", "a liveness restart", Duration::from_secs(40), |p| container(p, "unhealthy")["restartCount"].as_u64() >= Some(1));
    let events = server.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=heal"]);
    assert!(events.contains("Unhealthy") && events.contains("failed liveness probe"), "{events}");

    // A program that keeps crashing goes to CrashLoopBackOff, and the gaps between its runs grow.
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: crasher}}
spec:
  nodeName: {node}
  containers:
  - name: crasher
    image: {image}
    command: ["sh", "-c", "exit 3"]
"#
    ));
    let mut runs: Vec<(String, String)> = Vec::new();
    wait_until(Duration::from_secs(90), || {
        let pod = pod_json(&server, "crasher");
        let last = &container(&pod, "crasher")["lastState"]["terminated"];
        if let (Some(started), Some(finished)) = (last["startedAt"].as_str(), last["finishedAt"].as_str()) {
            if runs.last().map(|(s, _)| s.as_str()) != Some(started) {
                runs.push((started.to_owned(), finished.to_owned()));
            }
        }
        runs.len() >= 3
    });
    let parse = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
    let gaps: Vec<i64> = runs.windows(2).map(|w| (parse(&w[1].0) - parse(&w[0].1)).get_seconds()).collect();
    println!("crash loop: gaps between runs (s): {gaps:?}");
    assert!(gaps.len() >= 2 && gaps.windows(2).all(|g| g[1] > g[0]), "back-off delays grow: {gaps:?} ({runs:?})");
    let pod = pod_json(&server, "crasher");
    assert_eq!(container(&pod, "crasher")["state"]["waiting"]["reason"], "CrashLoopBackOff", "{pod:#}");
    let events = server.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=crasher"]);
    assert!(events.contains("BackOff"), "{events}");
}

#[test]
fn delete_runs_prestop_then_sigterm_and_restart_keeps_containers() {
    let image = ensure_test_registry();
    let mut server = server();
    let node = server.node_name.clone().unwrap();
    let shared = server.data_dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 20
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "trap 'echo TERM >> /shared/story; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    lifecycle:
      preStop:
        exec: {{command: ["sh", "-c", "echo preStop >> /shared/story"]}}
  volumes:
  - name: shared
    hostPath: {{path: {shared}, type: Directory}}
"#,
            shared = shared.display()
        ),
    );
    let pod = wait_pod(&server, "graceful", "Running", Duration::from_secs(60), |p| container(p, "main")["state"]["running"].is_object());
    let id = container(&pod, "main")["containerID"].as_str().unwrap().to_owned();

    // kill -9 of the server (and its agent), then a restart: the same container keeps running.
    server.restart();
    let ok = wait_until(Duration::from_secs(30), || {
        server.kubectl(&["get", "node", server.node_name.as_deref().unwrap(), "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout == b"True"
    });
    assert!(ok, "the node is Ready again after the restart");
    std::thread::sleep(Duration::from_secs(2));
    let pod = wait_pod(&server, "graceful", "still running", Duration::from_secs(20), |p| container(p, "main")["state"]["running"].is_object());
    assert_eq!(container(&pod, "main")["containerID"], id.as_str(), "the agent adopted the running container");
    assert_eq!(container(&pod, "main")["restartCount"], 0);

    // kill -9 of containerd: the agent starts it again and the container keeps running.
    let old_runtime = server.containerd_pid().expect("the agent's containerd");
    assert!(Command::new("kill").args(["-9", &old_runtime.to_string()]).status().unwrap().success());
    let restarted = wait_until(Duration::from_secs(20), || server.containerd_pid().is_some_and(|pid| pid != old_runtime && std::path::Path::new(&format!("/proc/{pid}")).exists()));
    assert!(restarted, "the agent restarted containerd; log:\n{}", tail(&server.log(), 20));
    std::thread::sleep(Duration::from_secs(2));
    let pod = wait_pod(&server, "graceful", "running after the runtime restart", Duration::from_secs(20), |p| container(p, "main")["state"]["running"].is_object());
    assert_eq!(container(&pod, "main")["containerID"], id.as_str(), "no pod was lost with the runtime");
    assert_eq!(container(&pod, "main")["restartCount"], 0);

    // Delete: preStop, then SIGTERM (the trap exits), then the object goes.
    let pid = container_pid(&server, &id).expect("container pid");
    server.kubectl_ok(&["delete", "pod", "graceful"]);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the container is gone once delete returns");
    assert_eq!(std::fs::read_to_string(shared.join("story")).unwrap(), "preStop\nTERM\n");
    assert!(server.kubectl(&["get", "pod", "graceful"]).stderr.starts_with(b"Error from server (NotFound)"));
}

#[test]
fn bad_images_and_commands_are_reported() {
    let image = ensure_test_registry();
    let server = server();
    let node = server.node_name.clone().unwrap();
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: broken}}
spec:
  nodeName: {node}
  containers:
  - name: noimage
    image: 127.0.0.1:5000/does-not-exist:1
  - name: nocommand
    image: {image}
    command: ["/no/such/program"]
  - name: noconfig
    image: {image}
    command: ["sleep", "1000"]
    envFrom: [{{configMapRef: {{name: missing}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: hog
    image: {image}
    command: ["sh", "-c", "x=$(yes | head -c 200000000); echo survived"]
    resources: {{limits: {{memory: 20Mi}}}}
"#
    ));
    // Going over the memory limit is reported as OOMKilled.
    let hog = wait_pod(&server, "hog", "Failed", Duration::from_secs(60), |p| p["status"]["phase"] == "Failed");
    assert_eq!(container(&hog, "hog")["state"]["terminated"]["reason"], "OOMKilled", "{hog:#}");
    let pod = wait_pod(&server, "broken", "pull back-off and errors", Duration::from_secs(60), |p| {
        container(p, "noimage")["state"]["waiting"]["reason"] == "ImagePullBackOff"
            && container(p, "noconfig")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
            && container(p, "nocommand")["lastState"]["terminated"]["exitCode"].is_number()
    });
    let message = container(&pod, "noimage")["state"]["waiting"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("does-not-exist"), "{message}");
    let failed_run = &container(&pod, "nocommand")["lastState"]["terminated"];
    assert!(failed_run["message"].as_str().unwrap_or_default().contains("/no/such/program"), "{failed_run:#}");
    assert!(container(&pod, "noconfig")["state"]["waiting"]["message"].as_str().unwrap_or_default().contains("missing"));
}

#[test]
fn the_scheduler_places_pods_and_explains_what_does_not_fit() {
    let image = ensure_test_registry();
    let server = server();
    let node = server.node_name.clone().unwrap();
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: placed}}
spec:
  containers:
  - name: main
    image: {image}
    command: ["sleep", "100000"]
    resources: {{requests: {{cpu: 100m, memory: 16Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: too-big}}
spec:
  containers:
  - name: main
    image: {image}
    resources: {{requests: {{cpu: "1000"}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nowhere}}
spec:
  nodeSelector: {{disk: ssd}}
  containers:
  - name: main
    image: {image}
"#
    ));
    let placed = wait_pod(&server, "placed", "Running", Duration::from_secs(60), |p| p["status"]["phase"] == "Running");
    assert_eq!(placed["spec"]["nodeName"], node.as_str());
    let events = server.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=placed"]);
    assert!(events.contains("Scheduled") && events.contains(&format!("Successfully assigned default/placed to {node}")), "{events}");

    let scheduled_condition = |p: &Value| p["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned()).unwrap_or(Value::Null);
    let big = wait_pod(&server, "too-big", "Unschedulable", Duration::from_secs(30), |p| scheduled_condition(p)["reason"] == "Unschedulable");
    assert_eq!(big["status"]["phase"], "Pending");
    assert_eq!(scheduled_condition(&big)["message"], "0/1 nodes are available: 1 Insufficient cpu.");
    let events = server.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=too-big"]);
    assert!(events.contains("FailedScheduling") && events.contains("Insufficient cpu"), "{events}");
    let nowhere = wait_pod(&server, "nowhere", "Unschedulable", Duration::from_secs(30), |p| scheduled_condition(p)["reason"] == "Unschedulable");
    assert_eq!(scheduled_condition(&nowhere)["message"], "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.");

    // A label on the node lets the waiting pod in: the scheduler retries when the cluster changes.
    server.kubectl_ok(&["label", "node", &node, "disk=ssd"]);
    wait_pod(&server, "nowhere", "bound after the label", Duration::from_secs(30), |p| p["spec"]["nodeName"] == node.as_str());
}
