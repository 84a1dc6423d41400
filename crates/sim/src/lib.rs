//! Simulated nodes, as kwok and kubemark do it: `tugboat sim` registers Nodes with a chosen
//! capacity, keeps their Leases renewed, and turns the pods bound to them Running (with a pod IP
//! from the node's podCIDR and Ready conditions) without starting containers. Everything else —
//! API server, store, scheduler, controllers — is the real thing, which is the point: the control
//! plane can be measured at thousands of nodes on one machine.
//!
//! Invariant: the simulator is an API client like any agent; it writes only its own Nodes, their
//! Leases, and the status (or final deletion) of pods bound to them.
//! Invariant: stopping the simulator stops every heartbeat of its nodes, exactly as a dead kubelet
//! would: the node lifecycle controller is what notices.

mod pods;

use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tugboat_client::{Client, ClientError};

/// How often each node's Lease is renewed (kubelet's default).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// How often the simulator renews the slice of its nodes' Leases that is due.
const LEASE_RENEW_TICK: Duration = Duration::from_millis(100);
const LEASE_DURATION_SECONDS: u64 = 40;
/// API writes the simulator keeps in flight at once (registrations, renewals, pod status).
const CONCURRENT_WRITES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot register the simulated node {node}: {source}; is the API server reachable and the name free?")]
    Register { node: String, source: ClientError },
    #[error("the API server gave node {node} no usable spec.podCIDR ({cidr:?}); start the server with a --cluster-cidr large enough for every node")]
    PodCidr { node: String, cidr: String },
}

/// What the simulated nodes look like.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: usize,
    /// Nodes are named `<prefix><index>`.
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    /// Nodes are spread round-robin over this many `topology.kubernetes.io/zone` values.
    pub zones: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self { nodes: 1, name_prefix: "sim-".into(), cpu: "32".into(), memory: "256Gi".into(), max_pods: 110, zones: 3 }
    }
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn now_micros() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn node_name(options: &SimOptions, index: usize) -> String {
    format!("{}{index}", options.name_prefix)
}

fn ready_conditions() -> Value {
    let now = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated node)"),
    ])
}

/// The Node object of simulated node `index`, status included (a node registers with it).
pub fn node_object(options: &SimOptions, index: usize) -> Value {
    let name = node_name(options, index);
    let zone = format!("zone-{}", index % options.zones.max(1));
    let capacity = json!({"cpu": options.cpu, "memory": options.memory, "pods": options.max_pods.to_string(), "ephemeral-storage": "1Ti"});
    // Host addresses from 172.16.0.0/12, one per node index: unique and never routed here.
    let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + index as u32);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": zone, "type": "tugboat-sim",
        }, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "status": {
            "capacity": capacity, "allocatable": capacity,
            "conditions": ready_conditions(),
            "addresses": [{"type": "InternalIP", "address": address.to_string()}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "simulated", "osImage": "tugboat-sim",
                "containerRuntimeVersion": "sim://0", "kubeletVersion": "v1.32.0-tugboat-sim", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        },
    })
}

/// A node's pod network (spec.podCIDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl PodNetwork {
    /// Parses `a.b.c.d/n`; the network must hold at least a few pods (n ≤ 29).
    pub fn parse(cidr: &str) -> Option<Self> {
        let (base, prefix) = cidr.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 29)?;
        Some(Self { base: base.parse().ok()?, prefix })
    }

    /// Addresses pods can have: all but the network, gateway and broadcast addresses.
    pub fn usable(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 3
    }
}

/// A simulated node as the simulator knows it after registration.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    pub host_ip: Ipv4Addr,
    pub pod_network: PodNetwork,
}

async fn register(client: &Client, options: &SimOptions, index: usize) -> Result<SimNode, SimError> {
    let object = node_object(options, index);
    let name = node_name(options, index);
    let error = |source| SimError::Register { node: name.clone(), source };
    let node = match client.create("/api/v1/nodes", &object).await {
        Ok(node) => node,
        // Taking over a node an earlier simulator registered, as a restarted kubelet does.
        Err(ClientError::Status { code: http::StatusCode::CONFLICT, .. }) => {
            client.merge_patch(&format!("/api/v1/nodes/{name}/status"), &json!({"status": object["status"]})).await.map_err(error)?
        }
        Err(source) => return Err(error(source)),
    };
    let cidr = node["spec"]["podCIDR"].as_str().unwrap_or_default();
    let pod_network = PodNetwork::parse(cidr).ok_or_else(|| SimError::PodCidr { node: name.clone(), cidr: cidr.to_owned() })?;
    if pod_network.usable() < options.max_pods {
        // A node cannot run more pods than its network has addresses: say so, as its capacity.
        let pods = pod_network.usable().to_string();
        let patch = json!({"status": {"capacity": {"pods": pods}, "allocatable": {"pods": pods}}});
        client.merge_patch(&format!("/api/v1/nodes/{name}/status"), &patch).await.map_err(error)?;
    }
    let host_ip = object["status"]["addresses"][0]["address"].as_str().and_then(|a| a.parse().ok()).unwrap_or(Ipv4Addr::LOCALHOST);
    renew_lease(client, &name).await;
    Ok(SimNode { name, host_ip, pod_network })
}

/// Renews (or creates) the node's Lease in kube-node-lease.
async fn renew_lease(client: &Client, node: &str) {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}");
    let renewed = client.merge_patch_as::<serde::de::IgnoredAny>(&path, &json!({"spec": {"renewTime": now_micros(), "holderIdentity": node}})).await;
    match renewed {
        Ok(_) => {}
        Err(ClientError::Status { code: http::StatusCode::NOT_FOUND, .. }) => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now_micros()},
            });
            if let Err(error) = client.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", &lease).await {
                tracing::warn!(%error, node, "cannot create the node lease");
            }
        }
        Err(error) => tracing::warn!(%error, node, "cannot renew the node lease"),
    }
}

/// Renews every node's Lease once per [`LEASE_RENEW_INTERVAL`], a slice of the nodes every
/// [`LEASE_RENEW_TICK`]: 5,000 nodes make 50 small writes every 100 ms, not a burst of 5,000
/// every ten seconds, nor 500 lone requests a second that share no connection or commit work.
async fn keep_leases(client: Client, nodes: Arc<Vec<SimNode>>) {
    let ticks = (LEASE_RENEW_INTERVAL.as_millis() / LEASE_RENEW_TICK.as_millis()).max(1) as usize;
    let mut ticker = tokio::time::interval(LEASE_RENEW_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_WRITES));
    for tick in (0..ticks).cycle() {
        ticker.tick().await;
        for node in &nodes[tick * nodes.len() / ticks..(tick + 1) * nodes.len() / ticks] {
            let Ok(permit) = limit.clone().acquire_owned().await else { return };
            let (client, name) = (client.clone(), node.name.clone());
            tokio::spawn(async move {
                renew_lease(&client, &name).await;
                drop(permit);
            });
        }
    }
}

/// Watches the simulated Nodes and posts Ready again whenever someone (the node lifecycle
/// controller, after a missed heartbeat) marked one otherwise while this simulator is alive, as a
/// kubelet does on its next status update.
async fn keep_ready(client: Client, nodes: Arc<Vec<SimNode>>) {
    let ours: std::collections::HashSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reporter = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(name) = receiver.recv().await {
                let patch = json!({"status": {"conditions": ready_conditions()}});
                if let Err(error) = client.merge_patch(&format!("/api/v1/nodes/{name}/status"), &patch).await {
                    tracing::warn!(%error, node = %name, "cannot report the node Ready");
                }
            }
        })
    };
    tugboat_client::inform::<Value>(&client, "/api/v1/nodes?labelSelector=type%3Dtugboat-sim", |_kind, node| {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let ready = node["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ours.contains(name) && !ready {
            let _ = sender.send(name.to_owned());
        }
    })
    .await;
    reporter.abort();
}

/// Registers the nodes, then keeps them alive and runs their pods until `shutdown` resolves.
pub async fn run(client: Client, options: SimOptions, shutdown: impl Future<Output = ()>) -> Result<(), SimError> {
    let registered: Vec<Result<SimNode, SimError>> = futures::stream::iter(0..options.nodes)
        .map(|index| {
            let (client, options) = (client.clone(), options.clone());
            async move { register(&client, &options, index).await }
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    let nodes: Vec<SimNode> = registered.into_iter().collect::<Result<_, _>>()?;
    tracing::info!(nodes = nodes.len(), "simulated nodes registered");
    let nodes = Arc::new(nodes);
    let by_name: HashMap<String, SimNode> = nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
    let tasks = [
        tokio::spawn(keep_leases(client.clone(), nodes.clone())),
        tokio::spawn(keep_ready(client.clone(), nodes.clone())),
        tokio::spawn(pods::run(client, by_name, CONCURRENT_WRITES)),
    ];
    shutdown.await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_capacity_zone_and_unique_addresses() {
        let options = SimOptions { nodes: 5, zones: 2, ..Default::default() };
        let first = node_object(&options, 0);
        let third = node_object(&options, 2);
        assert_eq!(first["metadata"]["name"], "sim-0");
        assert_eq!(first["metadata"]["labels"]["topology.kubernetes.io/zone"], "zone-0");
        assert_eq!(third["metadata"]["labels"]["topology.kubernetes.io/zone"], "zone-0");
        assert_eq!(node_object(&options, 1)["metadata"]["labels"]["topology.kubernetes.io/zone"], "zone-1");
        assert_eq!(first["status"]["allocatable"]["pods"], "110");
        assert_ne!(first["status"]["addresses"][0], third["status"]["addresses"][0]);
        let ready = first["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
    }

    #[test]
    fn pod_networks_say_how_many_pods_they_hold() {
        let network = PodNetwork::parse("10.42.7.0/24").unwrap();
        assert_eq!((network.base, network.usable()), (Ipv4Addr::new(10, 42, 7, 0), 253));
        assert_eq!(PodNetwork::parse("10.0.4.0/22").map(|n| n.usable()), Some(1021));
        assert_eq!(PodNetwork::parse("10.42.7.0/30"), None);
        assert_eq!(PodNetwork::parse(""), None);
    }
}
