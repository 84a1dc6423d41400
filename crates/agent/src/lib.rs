//! The node agent (Kubernetes' kubelet): registers its Node, keeps its Lease, and turns the Pods
//! bound to it into sandboxes and containers through the CRI, reporting their status back.
//!
//! Flow: [`pods::PodSource`] lists and watches the node's Pods and hands each to its own
//! [`worker`] task; the [`pleg`] relists the runtime and wakes the worker of every pod whose
//! containers changed; a worker reconciles one pod level-based (what should run vs. what runs)
//! and writes the pod's status.
//!
//! Invariant: the agent talks to the cluster only through the API server (client), and to
//! containers only through [`tugboat_cri::Runtime`]; it never reads the store.
//! Invariant: the runtime's state is the truth about containers. The agent keeps no state that a
//! restart would lose and that matters: after a restart it adopts sandboxes and containers by their
//! labels, so a running container is never restarted because the agent was.

mod api;
mod backoff;
pub mod containerd;
mod endpoint;
mod events;
mod images;
mod network;
mod node;
mod pleg;
mod pods;
mod probes;
mod spec;
mod stats;
mod status;
mod worker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tugboat_cri::Runtime;

pub use api::ApiClient;

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// Volumes, logs, the runtime's own state (when the agent runs containerd) live here.
    pub data_dir: PathBuf,
    /// The address other nodes and the API server reach this node at.
    pub node_ip: IpAddr,
    /// Port of the agent's HTTPS endpoint (logs, exec, attach, port-forward, stats).
    pub port: u16,
    /// Registries reachable over plain HTTP besides loopback ones (`host[:port]`).
    pub insecure_registries: Vec<String>,
    pub max_pods: u32,
    /// How often the runtime is relisted to notice containers that exited.
    pub relist_interval: Duration,
    /// Where the runtime reads its CNI configuration (the agent writes the node's there).
    pub cni_conf_dir: PathBuf,
    /// The cluster CA (PEM): the endpoint accepts only client certificates it signed.
    pub cluster_ca_pem: String,
    /// containerd's registry `hosts.toml` directory, when the agent runs containerd itself
    /// (plain-HTTP registries are configured there).
    pub registry_hosts_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Api(#[from] tugboat_client::ClientError),
    #[error(transparent)]
    Runtime(#[from] tugboat_cri::CriError),
    #[error("{0}")]
    Setup(String),
    #[error("i/o on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl AgentError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// What every part of a running agent shares.
pub struct Context {
    pub config: AgentConfig,
    pub api: ApiClient,
    pub runtime: Arc<dyn Runtime>,
    pub volumes: tugboat_podinputs::VolumeManager,
    pub events: events::Recorder,
    pub node: node::NodeFacts,
    pub stats: stats::StatsCache,
    pub images: images::ImagePuller,
    pub pods: pods::KnownPods,
}

impl Context {
    fn logs_dir(&self) -> PathBuf {
        self.config.data_dir.join("logs")
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(mut config: AgentConfig, api: ApiClient, runtime: Arc<dyn Runtime>, shutdown: impl std::future::Future<Output = ()>) -> Result<(), AgentError> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, config.port))
        .await
        .map_err(|e| AgentError::Setup(format!("cannot listen on port {} for the agent endpoint: {e}; choose another with --agent-port", config.port)))?;
    config.port = listener.local_addr().map_err(|e| AgentError::Setup(e.to_string()))?.port();
    let names = vec![config.node_ip.to_string(), config.node_name.clone(), "localhost".into(), "127.0.0.1".into()];
    let tls = tugboat_pki::agent_tls_config(&config.cluster_ca_pem, &names).map_err(|e| AgentError::Setup(format!("cannot set up the agent endpoint's TLS: {e}")))?;
    let node = node::NodeFacts::gather(&config, runtime.as_ref()).await?;
    let volumes = tugboat_podinputs::VolumeManager::new(config.data_dir.join("pods"));
    let events = events::Recorder::new(api.client().clone(), &config.node_name);
    let images = images::ImagePuller::new(config.registry_hosts_dir.clone(), config.insecure_registries.clone());
    let context = Arc::new(Context { config, api, runtime, volumes, events, node, stats: stats::StatsCache::default(), images, pods: Default::default() });

    let registered = node::register(&context).await?;
    let pod_cidr = registered["spec"]["podCIDR"].as_str().unwrap_or_default();
    if pod_cidr.is_empty() {
        return Err(AgentError::Setup(format!("node {} has no spec.podCIDR; the API server assigns one from --cluster-cidr", context.config.node_name)));
    }
    let config = &context.config;
    network::write_cni_config(&config.cni_conf_dir, &config.data_dir.join("cni").join("ipam"), &config.node_name, pod_cidr)?;
    let pleg = pleg::Pleg::new(context.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(node::heartbeat(context.clone()));
    tasks.spawn(endpoint::serve(context.clone(), listener, Arc::new(tls)));
    tasks.spawn(stats::collect(context.clone()));
    let source = pods::PodSource::new(context.clone(), pleg.clone());
    tasks.spawn(pleg.clone().run());
    tasks.spawn(source.run());
    shutdown.await;
    tasks.abort_all();
    Ok(())
}
