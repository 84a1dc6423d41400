//! `tugboat-bench-pods`: pod start latency (create through the API → Running seen by a watcher)
//! for bursts of pods, beside the floor measured in the same run — the same sandbox and container
//! created directly over CRI on the same containerd — and the agent's memory. Prints figures;
//! asserts nothing.

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tugboat_bench::{quantiles, rss_kib};
use tugboat_client::Client;
use tugboat_cri::{api, GrpcRuntime, Runtime};
use tugboat_testkit::{registry::ensure_test_registry, wait_until, Server};

#[derive(Parser)]
struct Args {
    /// Burst sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    bursts: Vec<usize>,
    /// The tugboat binary to measure.
    #[arg(long, default_value = "target/release/tugboat")]
    tugboat: PathBuf,
}

/// Sandbox + container + start straight over CRI, `burst` at once: the floor of pod start.
async fn floor(runtime: Arc<GrpcRuntime>, image: &str, burst: usize, round: usize) -> anyhow::Result<Vec<Duration>> {
    let image_ref = runtime.pull_image(image, None, None).await?;
    let logs = tempfile::tempdir()?;
    let mut tasks = Vec::new();
    for i in 0..burst {
        let runtime = runtime.clone();
        let image_ref = image_ref.clone();
        let log_directory = logs.path().to_string_lossy().into_owned();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let uid = format!("floor-{round}-{i}");
            let sandbox = api::PodSandboxConfig {
                metadata: Some(api::PodSandboxMetadata { name: uid.clone(), uid: uid.clone(), namespace: "bench".into(), attempt: 0 }),
                hostname: uid.clone(),
                log_directory,
                linux: Some(api::LinuxPodSandboxConfig { cgroup_parent: format!("/tugboat/pod{uid}"), ..Default::default() }),
                ..Default::default()
            };
            let sandbox_id = runtime.run_pod_sandbox(sandbox.clone()).await?;
            let container = api::ContainerConfig {
                metadata: Some(api::ContainerMetadata { name: "c".into(), attempt: 0 }),
                image: Some(tugboat_cri::image_spec(&image_ref)),
                command: vec!["sleep".into(), "100000".into()],
                log_path: format!("{uid}.log"),
                ..Default::default()
            };
            let id = runtime.create_container(&sandbox_id, container, sandbox).await?;
            runtime.start_container(&id).await?;
            Ok::<_, anyhow::Error>((started.elapsed(), sandbox_id))
        }));
    }
    let mut latencies = Vec::new();
    let mut sandboxes = Vec::new();
    for task in tasks {
        let (latency, sandbox) = task.await??;
        latencies.push(latency);
        sandboxes.push(sandbox);
    }
    for sandbox in sandboxes {
        runtime.stop_pod_sandbox(&sandbox).await?;
        runtime.remove_pod_sandbox(&sandbox).await?;
    }
    Ok(latencies)
}

/// Creates `burst` pods at once through the API; each latency runs from its create request to
/// the watch event that shows it Running.
async fn through_api(client: &Client, node: &str, image: &str, burst: usize, round: usize) -> anyhow::Result<Vec<Duration>> {
    let list = client.get("/api/v1/namespaces/default/pods").await?;
    let version = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned();
    let mut events = client.watch(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={version}")).await?;
    let created: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..burst {
        let (client, created) = (client.clone(), created.clone());
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("bench-{round}-{i}")},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": image, "command": ["sleep", "100000"]}]}});
        tasks.push(tokio::spawn(async move {
            created.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("bench-{round}-{i}"), Instant::now());
            client.create("/api/v1/namespaces/default/pods", &pod).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let mut latencies = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while latencies.len() < burst {
        let event = tokio::time::timeout_at(deadline, events.next()).await.context("pods did not all run within 120 s")?;
        let Some(Ok(event)) = event else { anyhow::bail!("the watch ended") };
        let name = event["object"]["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if event["object"]["status"]["phase"] == "Running" && !latencies.contains_key(&name) {
            if let Some(started) = created.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
                latencies.insert(name, started.elapsed());
            }
        }
    }
    for name in latencies.keys() {
        client.request(http::Method::DELETE, &format!("/api/v1/namespaces/default/pods/{name}"), None).await?;
    }
    Ok(latencies.into_values().collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let image = ensure_test_registry();
    // The control plane alone, and the agent as its own process so its memory is its own.
    let server = Server::start(&args.tugboat, &[]);
    let agent_dir = tempfile::tempdir()?;
    let node = "bench-node";
    let mut agent = Command::new(&args.tugboat)
        .args(["agent", "--node-name", node, "--agent-port", &tugboat_testkit::free_port().to_string()])
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--data-dir")
        .arg(agent_dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(agent_dir.path().join("agent.log"))?)
        .spawn()?;
    let ready = wait_until(Duration::from_secs(60), || {
        let output = server.kubectl(&["get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        output.stdout == b"True"
    });
    anyhow::ensure!(ready, "the agent did not get Ready: {}", std::fs::read_to_string(agent_dir.path().join("agent.log")).unwrap_or_default());
    let client = Client::from_kubeconfig(&server.kubeconfig())?;
    let socket = tugboat_agent::containerd::Layout::new(agent_dir.path()).socket;
    let runtime = Arc::new(GrpcRuntime::new(&socket.to_string_lossy())?);

    // Warm up: the image is pulled once, like a node that ran it before.
    through_api(&client, node, &image, 1, 0).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("agent idle RSS: {} KiB", rss_kib(agent.id()));
    for (round, &burst) in args.bursts.iter().enumerate() {
        let round = round + 1;
        let direct = floor(runtime.clone(), &image, burst, round).await?;
        println!("burst {burst:>3}  CRI floor (sandbox+container+start)    {}", quantiles(direct));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let api = through_api(&client, node, &image, burst, round).await?;
        println!("burst {burst:>3}  API create → Running seen by watcher  {}", quantiles(api));
        println!("          agent RSS with the burst running: {} KiB", rss_kib(agent.id()));
        // Let the agent stop this round's pods before the next round (and before the end).
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !runtime.list_pod_sandboxes(None).await?.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
    // The agent's containerd outlives it by design; this run is over, so stop it too.
    tugboat_testkit::stop_agent_runtime(agent_dir.path());
    Ok(())
}
