//! `tugboat-bench-scale`: the control plane at scale. For each node count it starts a fresh
//! `tugboat server` (API server, SQLite store, scheduler, controllers; no agent) and a
//! `tugboat sim` process simulating the nodes, then measures through the real API:
//! - scheduling throughput, per-pod latency and the server's CPU time per pod for a burst of bare
//!   pods, plain and with required pod anti-affinity plus a DoNotSchedule topology spread
//!   constraint;
//! - scheduling latency at a paced arrival rate;
//! - the time a Deployment of many replicas takes to become available;
//! - the server's RSS and store size, at the largest node count after filling up to a total pod
//!   count.
//!
//! Latencies are watcher-side: from the pod's ADDED event to the first event showing it bound,
//! both seen by one watch in this process. Prints figures; asserts nothing.

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tugboat_bench::{cpu_time, quantile, rss_kib};
use tugboat_client::Client;
use tugboat_testkit::{Server, Sim};

#[derive(Parser)]
struct Args {
    /// Node counts to measure, each on a fresh cluster.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    nodes: Vec<usize>,
    /// Pods per scheduling burst.
    #[arg(long, default_value_t = 30_000)]
    pods: usize,
    /// Arrival rate of the paced latency run, pods per second.
    #[arg(long, default_value_t = 1_000)]
    paced_rate: u64,
    /// Pods in the paced latency run.
    #[arg(long, default_value_t = 10_000)]
    paced_pods: usize,
    /// Replicas of the Deployment whose rollout is timed.
    #[arg(long, default_value_t = 10_000)]
    replicas: usize,
    /// At the largest node count, pods are added until the cluster holds this many, then the
    /// server's memory and store size are read.
    #[arg(long, default_value_t = 150_000)]
    total_pods: usize,
    /// Concurrent creating clients. Each waits for its create's answer before the next, so the
    /// offered load is clients / create latency: with 64, the scheduler's queue stayed empty
    /// (p50 latency 30 ms) and a tenth or more of the machine idle, so the figure was the load
    /// generator's. With 128 a queue builds and the throughput is the cluster's.
    #[arg(long, default_value_t = 128)]
    clients: usize,
    /// HTTP/2 connections the creating clients share (client-go multiplexes a process's
    /// requests over one connection per server).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Give up waiting for a phase after this many seconds (and report what was reached).
    #[arg(long, default_value_t = 600)]
    phase_timeout: u64,
    /// The tugboat binary to measure.
    #[arg(long, default_value = "target/release/tugboat")]
    tugboat: PathBuf,
}

/// A control plane and its simulated nodes.
struct Cluster {
    server: Server,
    _sim: Sim,
    /// One per connection.
    clients: Vec<Client>,
    watcher: Watcher,
}

fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    Client::from_kubeconfig(kubeconfig).with_context(|| format!("cannot use {}", kubeconfig.display()))
}

impl Cluster {
    async fn start(args: &Args, nodes: usize) -> anyhow::Result<Self> {
        // Room for everything this run creates, as scheduler_perf sizes its nodes to the test:
        // pods per node, and a pod network per node with as many addresses.
        let planned = 2 * args.pods + args.paced_pods + args.replicas + args.total_pods;
        let max_pods = (planned * 12 / 10 / nodes.max(1)).max(110);
        let mask = (16..=24u32).rev().find(|prefix| (1u32 << (32 - prefix)) - 3 >= max_pods as u32).unwrap_or(16).to_string();
        let server = Server::start_control_plane(&args.tugboat, &["--cluster-cidr", "10.0.0.0/8", "--node-cidr-mask-size", &mask]);
        let max_pods = max_pods.to_string();
        let sim = Sim::start(&args.tugboat, &server, &["--nodes", &nodes.to_string(), "--max-pods", &max_pods, "--cpu", "64", "--memory", "1Ti"]);
        let kubeconfig = server.kubeconfig();
        let clients = (0..args.connections.max(1)).map(|_| client(&kubeconfig)).collect::<anyhow::Result<Vec<_>>>()?;
        // One request each first: a client whose first requests come concurrently opens a
        // connection (a TLS handshake on the server) for each of them before it learns the
        // server speaks HTTP/2, and a burst would start with a hundred handshakes.
        for client in &clients {
            client.get("/version").await?;
        }
        let watcher = Watcher::start(&clients[0]).await?;
        let cluster = Cluster { server, _sim: sim, clients, watcher };
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.phase_timeout);
        loop {
            let list = cluster.clients[0].get("/api/v1/nodes").await?;
            let ready = list["items"].as_array().into_iter().flatten().filter(|n| is_ready(n)).count();
            if ready >= nodes {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "only {ready} of {nodes} simulated nodes became Ready");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("  {nodes} simulated nodes registered and Ready in {:.1} s", started.elapsed().as_secs_f64());
        Ok(cluster)
    }

    fn server_pid(&self) -> u32 {
        self.server.pid().unwrap_or(0)
    }

    async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        self.clients[0].create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).await?;
        Ok(())
    }
}

fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// What the watcher saw of one pod.
#[derive(Default, Clone, Copy)]
struct Seen {
    added: Option<Instant>,
    bound: Option<Instant>,
    running: bool,
}

#[derive(Default)]
struct Observed {
    /// By namespace, then pod name.
    pods: HashMap<String, HashMap<String, Seen>>,
    bound: HashMap<String, usize>,
    running: usize,
}

/// One watch over every pod in the cluster, recording when each appeared, was bound and ran.
struct Watcher {
    observed: Arc<Mutex<Observed>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    async fn start(client: &Client) -> anyhow::Result<Self> {
        let list = client.get("/api/v1/pods?limit=1").await?;
        let revision = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_owned();
        // Only what is recorded is decoded: the watcher shares the machine with what it measures.
        let shape = tugboat_client::Shape::of(&["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"]);
        let mut events = client.watch_shaped(&format!("/api/v1/pods?watch=true&resourceVersion={revision}"), Some(&shape)).await?;
        let observed: Arc<Mutex<Observed>> = Arc::default();
        let task = {
            let observed = observed.clone();
            tokio::spawn(async move {
                while let Some(Ok(event)) = events.next().await {
                    let now = Instant::now();
                    let pod = &event["object"];
                    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    let mut guard = observed.lock().unwrap_or_else(|p| p.into_inner());
                    let observed = &mut *guard;
                    // Most events are of pods already seen: look up before allocating keys.
                    if !observed.pods.contains_key(namespace) {
                        observed.pods.insert(namespace.to_owned(), HashMap::new());
                    }
                    let pods = observed.pods.get_mut(namespace).expect("inserted above");
                    if !pods.contains_key(name) {
                        pods.insert(name.to_owned(), Seen::default());
                    }
                    let entry = pods.get_mut(name).expect("inserted above");
                    entry.added.get_or_insert(now);
                    if entry.bound.is_none() && pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) {
                        entry.bound = Some(now);
                        *observed.bound.entry(namespace.to_owned()).or_default() += 1;
                    }
                    let running = pod["status"]["phase"] == "Running" && event["type"] != "DELETED";
                    if running != entry.running {
                        entry.running = running;
                        observed.running = if running { observed.running + 1 } else { observed.running.saturating_sub(1) };
                    }
                }
            })
        };
        Ok(Self { observed, task })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `count` pods of `namespace` are bound (or the timeout), then summarises them.
    async fn scheduling(&self, namespace: &str, count: usize, timeout: Duration) -> Summary {
        let deadline = Instant::now() + timeout;
        while self.lock().bound.get(namespace).copied().unwrap_or(0) < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let observed = self.lock();
        Summary::of(observed.pods.get(namespace).map(|p| p.values().copied().collect()).unwrap_or_default(), count)
    }

    /// Waits until the cluster holds `count` Running pods (or the timeout); answers how many.
    async fn running(&self, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.lock().running < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.lock().running
    }

    /// Waits for `count` pods to be Running, and says so: the next phase starts from here.
    async fn settle(&self, count: usize, timeout: Duration) {
        let started = Instant::now();
        let running = self.running(count, timeout).await;
        println!("  {running} pods Running, {:.1} s later", started.elapsed().as_secs_f64());
    }
}

struct Summary {
    expected: usize,
    bound: usize,
    /// Bound pods per second between the 10% and the 90% binding: the steady rate.
    sustained: f64,
    /// Bound pods per second from the first pod seen to the last binding.
    overall: f64,
    latencies: Vec<Duration>,
    /// The server's CPU time from the first create to the last binding: per bound pod, a figure
    /// that a noisy machine moves less than the rates (it counts no time the server waited).
    server_cpu: Duration,
}

impl Summary {
    fn of(seen: Vec<Seen>, expected: usize) -> Self {
        let mut bindings: Vec<Instant> = seen.iter().filter_map(|s| s.bound).collect();
        bindings.sort();
        let mut latencies: Vec<Duration> = seen.iter().filter_map(|s| Some(s.bound?.saturating_duration_since(s.added?))).collect();
        latencies.sort();
        let first = seen.iter().filter_map(|s| s.added).min();
        let rate = |from: usize, to: usize| -> f64 {
            match (bindings.get(from), bindings.get(to)) {
                (Some(a), Some(b)) if b > a => (to - from) as f64 / b.duration_since(*a).as_secs_f64(),
                _ => 0.0,
            }
        };
        let sustained = rate(bindings.len() / 10, bindings.len() * 9 / 10);
        let overall = match (first, bindings.last()) {
            (Some(a), Some(b)) if *b > a => bindings.len() as f64 / b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        Summary { expected, bound: bindings.len(), sustained, overall, latencies, server_cpu: Duration::ZERO }
    }

    fn line(&self, what: &str) -> String {
        let ms = |q| quantile(&self.latencies, q).as_secs_f64() * 1e3;
        format!(
            "{what:<40} {:>6}/{:<6} bound  sustained {:>7.0} pods/s  overall {:>7.0} pods/s  latency p50 {:>8.1} ms  p99 {:>8.1} ms  server CPU {:>4.0} µs/pod",
            self.bound, self.expected, self.sustained, self.overall, ms(0.5), ms(0.99),
            self.server_cpu.as_secs_f64() * 1e6 / self.bound.max(1) as f64
        )
    }
}

fn pod(name: &str, group: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "scale"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    });
    if let Some(group) = group {
        // scheduler_perf's anti-affinity and topology spreading workloads in one: no two pods of
        // a group on one node, and the group spread evenly over the zones.
        let selector = json!({"matchLabels": {"group": group}});
        pod["metadata"]["labels"]["group"] = group.into();
        pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]}});
        pod["spec"]["topologySpreadConstraints"] = json!([
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}]);
    }
    pod
}

/// A run's pod bodies, serialized once: pods differ only in their name and group, which are
/// spliced into the text (the load generator shares the 2 cores with what it measures).
struct PodBodies {
    template: String,
}

impl PodBodies {
    const NAME: &str = "@name@";
    const GROUP: &str = "@group@";

    fn new(constrained: bool) -> Self {
        Self { template: pod(Self::NAME, constrained.then_some(Self::GROUP)).to_string() }
    }

    /// Pod `index` of the run: groups of 10 pods share a group label.
    fn body(&self, name: &str, index: usize) -> bytes::Bytes {
        self.template.replace(Self::NAME, name).replace(Self::GROUP, &format!("g{}", index / 10)).into()
    }
}

/// Creates `count` pods named `<prefix>-<i>` in `namespace` from `creators` concurrent tasks
/// sharing the connections; with `rate`, pod i is created no earlier than i/rate seconds after
/// the start.
async fn create_pods(connections: &[Client], creators: usize, namespace: &str, prefix: &str, count: usize, rate: Option<u64>, constrained: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let collection = format!("/api/v1/namespaces/{namespace}/pods");
    let bodies = Arc::new(PodBodies::new(constrained));
    let tasks: Vec<_> = (0..creators.max(1))
        .map(|k| {
            let client = connections[k % connections.len()].clone();
            let (collection, prefix, stride, bodies) = (collection.clone(), prefix.to_owned(), creators.max(1), bodies.clone());
            tokio::spawn(async move {
                for i in (k..count).step_by(stride) {
                    if let Some(rate) = rate {
                        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate as f64)).into()).await;
                    }
                    let body = bodies.body(&format!("{prefix}-{i}"), i);
                    // The answer (the created pod) is not read: the watcher times the pod.
                    client.request(http::Method::POST, &collection, Some(("application/json", body))).await?;
                }
                Ok::<_, tugboat_client::ClientError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

async fn scheduling_run(cluster: &Cluster, args: &Args, namespace: &str, count: usize, rate: Option<u64>, constrained: bool) -> anyhow::Result<Summary> {
    cluster.namespace(namespace).await?;
    let cpu_before = cpu_time(cluster.server_pid());
    let took = create_pods(&cluster.clients, args.clients, namespace, "p", count, rate, constrained).await?;
    println!("  created {count} pods in {namespace} in {:.1} s ({:.0}/s)", took.as_secs_f64(), count as f64 / took.as_secs_f64());
    let mut summary = cluster.watcher.scheduling(namespace, count, Duration::from_secs(args.phase_timeout)).await;
    summary.server_cpu = cpu_time(cluster.server_pid()).saturating_sub(cpu_before);
    Ok(summary)
}

/// Creates a Deployment of `replicas` and answers how long until all are available.
async fn deployment_run(cluster: &Cluster, args: &Args, replicas: usize) -> anyhow::Result<(Duration, i64)> {
    cluster.namespace("deploy").await?;
    let template = pod("unused", None);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "big", "namespace": "deploy"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "big"}},
            "template": {"metadata": {"labels": {"app": "big"}}, "spec": template["spec"]}},
    });
    let started = Instant::now();
    cluster.clients[0].create("/apis/apps/v1/namespaces/deploy/deployments", &deployment).await?;
    let deadline = started + Duration::from_secs(args.phase_timeout);
    loop {
        let current = cluster.clients[0].get("/apis/apps/v1/namespaces/deploy/deployments/big").await?;
        let available = current["status"]["availableReplicas"].as_i64().unwrap_or(0);
        if available >= replicas as i64 || Instant::now() >= deadline {
            return Ok((started.elapsed(), available));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn directory_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

async fn measure(args: &Args, nodes: usize, fill: bool) -> anyhow::Result<Vec<String>> {
    println!("== {nodes} nodes");
    let cluster = Cluster::start(args, nodes).await?;
    let timeout = Duration::from_secs(args.phase_timeout);
    let mut lines = Vec::new();
    let mut report = |line: String| {
        println!("  {line}");
        lines.push(line);
    };
    // Every phase starts on a settled cluster: all pods so far Running, nothing left in flight.
    let mut pods = 0;
    let paced = scheduling_run(&cluster, args, "paced", args.paced_pods, Some(args.paced_rate), false).await?;
    report(paced.line(&format!("{nodes} nodes, paced at {}/s", args.paced_rate)));
    pods += args.paced_pods;
    cluster.watcher.settle(pods, timeout).await;
    let plain = scheduling_run(&cluster, args, "plain", args.pods, None, false).await?;
    report(plain.line(&format!("{nodes} nodes, burst of {} plain pods", args.pods)));
    pods += args.pods;
    cluster.watcher.settle(pods, timeout).await;
    let constrained = scheduling_run(&cluster, args, "constrained", args.pods, None, true).await?;
    report(constrained.line(&format!("{nodes} nodes, burst, anti-affinity + spread")));
    pods += args.pods;
    cluster.watcher.settle(pods, timeout).await;
    let (took, available) = deployment_run(&cluster, args, args.replicas).await?;
    report(format!("{nodes} nodes, Deployment of {} replicas: {available} available after {:.1} s", args.replicas, took.as_secs_f64()));
    pods += args.replicas;
    if fill && args.total_pods > pods {
        cluster.namespace("fill").await?;
        let more = args.total_pods - pods;
        let took = create_pods(&cluster.clients, args.clients, "fill", "f", more, None, false).await?;
        println!("  created {more} more pods in {:.1} s", took.as_secs_f64());
        pods = args.total_pods;
    }
    let running = cluster.watcher.running(pods, timeout).await;
    // Let the compaction and the caches settle a moment before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let store = directory_bytes(&cluster.server.data_dir.path().join("db"));
    report(format!(
        "{nodes} nodes, {running} pods Running: server RSS {:.0} MiB, store {:.0} MiB",
        rss_kib(cluster.server_pid()) as f64 / 1024.0,
        store as f64 / (1024.0 * 1024.0)
    ));
    Ok(lines)
}

// One thread: the load generator shares the 2 cores with what it measures, and a second worker
// would mostly be woken for single responses.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.tugboat.exists(), "{} not found; build it with `cargo build --release --bin tugboat`", args.tugboat.display());
    let largest = args.nodes.iter().copied().max().unwrap_or(0);
    let mut report = Vec::new();
    for &nodes in &args.nodes {
        report.extend(measure(&args, nodes, nodes == largest).await?);
    }
    println!("\nsummary (this machine: {} cores)", std::thread::available_parallelism().map_or(0, usize::from));
    for line in report {
        println!("{line}");
    }
    Ok(())
}
