//! End-to-end: two `tugboat server` processes on one etcd elect one scheduler and one controller
//! manager through Leases, and the survivor takes over when the leader dies.

use serde_json::Value;
use std::time::{Duration, Instant};
use tugboat_testkit::{wait_until, Etcd, Server};

const TUGBOAT: &str = env!("CARGO_BIN_EXE_tugboat");

fn holder(server: &Server, lease: &str) -> String {
    let output = server.kubectl(&["get", "lease", "-n", "kube-system", lease, "-o", "json"]);
    let lease: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    lease["spec"]["holderIdentity"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn two_servers_elect_one_leader_each_and_fail_over() {
    let etcd = Etcd::start();
    let first = Server::start_control_plane(std::path::Path::new(TUGBOAT), &["--datastore-endpoint", &etcd.endpoint]);
    let second = Server::start_control_plane(std::path::Path::new(TUGBOAT), &["--datastore-endpoint", &etcd.endpoint]);
    let port_of = |identity: &str| identity.split('_').nth(1).and_then(|p| p.parse::<u16>().ok());
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        let elected = wait_until(Duration::from_secs(30), || port_of(&holder(&second, lease)).is_some());
        assert!(elected, "{lease} has a leader");
    }
    // Both servers see the same single holder of each lease.
    let scheduler_leader = holder(&second, "kube-scheduler");
    assert_eq!(holder(&first, "kube-scheduler"), scheduler_leader);

    // Make the first server the leader of both if it is not (kill the second, wait, restart it),
    // then kill the first: the second takes over.
    let (mut leader, follower) = if port_of(&scheduler_leader) == Some(first.port) { (first, second) } else { (second, first) };
    leader.kill9();
    let killed = Instant::now();
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        let moved = wait_until(Duration::from_secs(40), || port_of(&holder(&follower, lease)) == Some(follower.port));
        assert!(moved, "{lease} moved to the surviving server; holder is {:?}", holder(&follower, lease));
    }
    println!("leadership moved {:?} after the leader was killed", killed.elapsed());
    // The survivor's controllers act: a ReplicaSet gets its pods.
    let manifest = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: after-failover}
spec:
  replicas: 2
  selector: {matchLabels: {app: failover}}
  template:
    metadata: {labels: {app: failover}}
    spec: {containers: [{name: c, image: "127.0.0.1:5000/busybox:1"}]}
"#;
    assert!(follower.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest)).status.success());
    let created = wait_until(Duration::from_secs(30), || follower.kubectl_ok(&["get", "pods", "-l", "app=failover", "-o", "name"]).lines().count() == 2);
    assert!(created, "the new leader's ReplicaSet controller created the pods");
}
