//! The pods of simulated nodes: a bound pod is reported Running and Ready with an IP from its
//! node's pod network; a pod marked for deletion is removed at once (there is nothing to stop),
//! as an agent does with grace 0 after its containers are gone.

use crate::{PodNetwork, SimNode};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use tugboat_api::meta::str_at;
use tugboat_client::{Client, ClientError, Shape};

/// What the simulator does about one pod event.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Report the pod Running on `node`.
    Start { namespace: String, name: String, uid: String, node: String },
    /// Delete the pod object for good.
    Remove { namespace: String, name: String, uid: String },
}

impl Action {
    fn uid(&self) -> &str {
        match self {
            Action::Start { uid, .. } | Action::Remove { uid, .. } => uid,
        }
    }
}


/// The action a pod's current state calls for, if it is bound to one of `ours`.
pub fn decide(pod: &Value, ours: &HashMap<String, SimNode>) -> Option<Action> {
    let node = str_at(pod, "/spec/nodeName");
    if !ours.contains_key(node) {
        return None;
    }
    let (namespace, name, uid) = (str_at(pod, "/metadata/namespace").to_owned(), str_at(pod, "/metadata/name").to_owned(), str_at(pod, "/metadata/uid").to_owned());
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return Some(Action::Remove { namespace, name, uid });
    }
    match str_at(pod, "/status/phase") {
        "" | "Pending" => Some(Action::Start { namespace, name, uid, node: node.to_owned() }),
        _ => None,
    }
}

/// The fields of a pod the simulator reads ([`decide`], [`running_status`], the address
/// book); pod events are decoded to these alone.
fn read_fields() -> Shape {
    Shape::of(&[
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "metadata.deletionTimestamp",
        "spec.nodeName",
        "spec.containers.name",
        "spec.containers.image",
        "spec.initContainers.name",
        "spec.initContainers.image",
        "status.phase",
        "status.podIP",
    ])
}

/// Pod addresses of one node's pod network: host numbers 2 up to the last before broadcast (1
/// is the gateway's), reused once freed.
#[derive(Default)]
pub struct NodeAddresses {
    by_uid: HashMap<String, u32>,
    taken: HashSet<u32>,
    next: u32,
}

impl NodeAddresses {
    /// The pod's address (the same one on every call for a UID), or None when the network is full.
    pub fn assign(&mut self, uid: &str, network: &PodNetwork) -> Option<Ipv4Addr> {
        let usable = network.usable();
        let host = match self.by_uid.get(uid) {
            Some(host) => *host,
            None => {
                let host = (0..usable).map(|step| 2 + (self.next + step) % usable).find(|h| !self.taken.contains(h))?;
                self.next = host - 1;
                self.taken.insert(host);
                self.by_uid.insert(uid.to_owned(), host);
                host
            }
        };
        Some(Ipv4Addr::from(u32::from(network.base) + host))
    }

    /// Records an address a pod already has (seen after the simulator restarted).
    pub fn keep(&mut self, uid: &str, address: Ipv4Addr, network: &PodNetwork) {
        let host = u32::from(address).wrapping_sub(u32::from(network.base));
        if (2..2 + network.usable()).contains(&host) {
            self.taken.insert(host);
            self.by_uid.insert(uid.to_owned(), host);
        }
    }

    pub fn release(&mut self, uid: &str) {
        if let Some(host) = self.by_uid.remove(uid) {
            self.taken.remove(&host);
        }
    }
}

/// The status a running pod reports: phase Running, every condition True, every container running.
pub fn running_status(pod: &Value, pod_ip: Ipv4Addr, host_ip: Ipv4Addr, now: &str) -> Value {
    let container_statuses = |field: &str, running: bool| -> Vec<Value> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let state = if running {
                    json!({"running": {"startedAt": now}})
                } else {
                    json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}})
                };
                json!({"name": c["name"], "image": c["image"], "imageID": "", "containerID": format!("sim://{}", c["name"].as_str().unwrap_or_default()),
                    "ready": running, "started": running, "restartCount": 0, "state": state})
            })
            .collect()
    };
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    json!({"status": {
        "phase": "Running", "hostIP": host_ip.to_string(), "hostIPs": [{"ip": host_ip.to_string()}],
        "podIP": pod_ip.to_string(), "podIPs": [{"ip": pod_ip.to_string()}], "startTime": now,
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
        "initContainerStatuses": container_statuses("initContainers", false),
        "containerStatuses": container_statuses("containers", true),
    }})
}

struct State {
    nodes: HashMap<String, SimNode>,
    addresses: HashMap<String, NodeAddresses>,
    in_flight: HashSet<String>,
}

/// A unit of API work, with everything it needs decided under the lock.
struct Work {
    action: Action,
    status: Option<Value>,
}

/// Watches every pod and acts for those on our nodes, with `writers` API writes in flight.
pub async fn run(client: Client, nodes: HashMap<String, SimNode>, writers: usize) {
    let state = Arc::new(Mutex::new(State { nodes, addresses: HashMap::new(), in_flight: HashSet::new() }));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Work>();
    let workers = {
        let (client, state) = (client.clone(), state.clone());
        tokio::spawn(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver).for_each_concurrent(writers, move |work| {
            let (client, state) = (client.clone(), state.clone());
            async move {
                let uid = work.action.uid().to_owned();
                if let Err(error) = perform(&client, work).await {
                    tracing::warn!(%error, %uid, "simulated pod update failed; the next event retries it");
                }
                state.lock().unwrap_or_else(|p| p.into_inner()).in_flight.remove(&uid);
            }
        }))
    };
    let handle = |kind: &str, pod: Value| {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let uid = str_at(&pod, "/metadata/uid").to_owned();
        let node = str_at(&pod, "/spec/nodeName").to_owned();
        let Some(sim_node) = state.nodes.get(&node).cloned() else { return };
        if kind == "DELETED" {
            if let Some(addresses) = state.addresses.get_mut(&node) {
                addresses.release(&uid);
            }
            return;
        }
        if let Ok(ip) = str_at(&pod, "/status/podIP").parse::<Ipv4Addr>() {
            state.addresses.entry(node.clone()).or_default().keep(&uid, ip, &sim_node.pod_network);
        }
        let Some(action) = decide(&pod, &state.nodes) else { return };
        if !state.in_flight.insert(uid.clone()) {
            return;
        }
        let status = match &action {
            Action::Start { .. } => match state.addresses.entry(node.clone()).or_default().assign(&uid, &sim_node.pod_network) {
                Some(ip) => Some(running_status(&pod, ip, sim_node.host_ip, &crate::now())),
                None => {
                    tracing::warn!(%node, "the node's pod network is full; the pod stays Pending");
                    state.in_flight.remove(&uid);
                    return;
                }
            },
            Action::Remove { .. } => None,
        };
        let _ = sender.send(Work { action, status });
    };
    tugboat_client::inform_shaped(&client, "/api/v1/pods", &read_fields(), handle).await;
    workers.abort();
}

async fn perform(client: &Client, work: Work) -> Result<(), ClientError> {
    let gone = |result: Result<(), ClientError>| match result {
        // Deleted or replaced meanwhile: nothing left to do for this pod.
        Err(ClientError::Status { code: http::StatusCode::NOT_FOUND | http::StatusCode::CONFLICT, .. }) => Ok(()),
        other => other,
    };
    match work.action {
        Action::Start { namespace, name, .. } => {
            let status = work.status.unwrap_or(Value::Null);
            let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
            // The answer (the whole pod) is not read: the next watch event shows the pod anyway.
            let body = bytes::Bytes::from(status.to_string());
            gone(client.request(http::Method::PATCH, &path, Some(("application/merge-patch+json", body))).await.map(drop))
        }
        Action::Remove { namespace, name, uid } => {
            let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
            let body = bytes::Bytes::from(options.to_string());
            let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
            gone(client.request(http::Method::DELETE, &path, Some(("application/json", body))).await.map(drop))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> HashMap<String, SimNode> {
        let node = SimNode { name: "sim-0".into(), host_ip: Ipv4Addr::new(172, 16, 0, 1), pod_network: PodNetwork { base: Ipv4Addr::new(10, 42, 3, 0), prefix: 24 } };
        HashMap::from([("sim-0".to_owned(), node)])
    }

    fn pod(node: &str, phase: &str, deleting: bool) -> Value {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": phase}});
        if deleting {
            pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        pod
    }

    #[test]
    fn only_pods_bound_to_our_nodes_are_started_or_removed() {
        let start = Action::Start { namespace: "ns".into(), name: "p".into(), uid: "u1".into(), node: "sim-0".into() };
        assert_eq!(decide(&pod("sim-0", "Pending", false), &ours()), Some(start));
        assert_eq!(decide(&pod("sim-0", "Running", false), &ours()), None);
        assert_eq!(decide(&pod("other", "Pending", false), &ours()), None);
        assert_eq!(decide(&pod("", "Pending", false), &ours()), None);
        assert_eq!(decide(&pod("sim-0", "Running", true), &ours()), Some(Action::Remove { namespace: "ns".into(), name: "p".into(), uid: "u1".into() }));
    }

    #[test]
    fn the_read_fields_are_all_the_simulator_needs() {
        for full in [pod("sim-0", "Pending", false), pod("sim-0", "Running", true)] {
            let shaped = read_fields().apply(&full);
            assert_eq!(decide(&shaped, &ours()), decide(&full, &ours()));
            let (ip, host) = (Ipv4Addr::new(10, 42, 3, 2), Ipv4Addr::new(172, 16, 0, 1));
            assert_eq!(running_status(&shaped, ip, host, "now"), running_status(&full, ip, host, "now"));
        }
    }

    #[test]
    fn addresses_are_unique_stable_and_reused() {
        let network = PodNetwork { base: Ipv4Addr::new(10, 42, 3, 0), prefix: 24 };
        let mut addresses = NodeAddresses::default();
        let first = addresses.assign("a", &network).unwrap();
        assert_eq!(first, Ipv4Addr::new(10, 42, 3, 2));
        assert_eq!(addresses.assign("a", &network), Some(first));
        addresses.keep("b", Ipv4Addr::new(10, 42, 3, 3), &network);
        assert_eq!(addresses.assign("c", &network), Some(Ipv4Addr::new(10, 42, 3, 4)));
        let mut all: HashSet<Ipv4Addr> = HashSet::from([first, Ipv4Addr::new(10, 42, 3, 3), Ipv4Addr::new(10, 42, 3, 4)]);
        for i in 0..250 {
            all.insert(addresses.assign(&format!("x{i}"), &network).unwrap());
        }
        assert_eq!(all.len(), 253);
        assert!(all.iter().all(|ip| ip.octets()[3] >= 2 && ip.octets()[3] <= 254));
        assert_eq!(addresses.assign("full", &network), None);
        addresses.release("a");
        assert_eq!(addresses.assign("full", &network), Some(first));
        // A /22 holds four times as many, up to 10.42.7.254.
        let wide = PodNetwork { base: Ipv4Addr::new(10, 42, 4, 0), prefix: 22 };
        assert_eq!(wide.usable(), 1021);
        let mut addresses = NodeAddresses::default();
        let last = (0..1021).map(|i| addresses.assign(&format!("w{i}"), &wide).unwrap()).max().unwrap();
        assert_eq!(last, Ipv4Addr::new(10, 42, 7, 254));
        assert_eq!(addresses.assign("more", &wide), None);
    }

    #[test]
    fn running_status_reports_every_container_ready() {
        let status = running_status(&pod("sim-0", "Pending", false), Ipv4Addr::new(10, 42, 3, 2), Ipv4Addr::new(172, 16, 0, 1), "2026-01-01T00:00:00Z");
        assert_eq!(status["status"]["phase"], "Running");
        assert_eq!(status["status"]["podIP"], "10.42.3.2");
        assert_eq!(status["status"]["containerStatuses"][0]["ready"], true);
        assert!(status["status"]["conditions"].as_array().unwrap().iter().all(|c| c["status"] == "True"));
    }
}
