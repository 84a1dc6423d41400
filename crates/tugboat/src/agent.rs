//! `tugboat agent`: the node agent, alone (`tugboat server` also runs one for its own node).

use anyhow::Context as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tugboat_agent::{containerd::Containerd, AgentConfig, ApiClient};
use tugboat_cri::Runtime;

/// Settings shared by `tugboat agent` and the agent inside `tugboat server`.
#[derive(clap::Args, Clone, Debug)]
pub struct AgentOptions {
    /// The Node's name (default: the machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the API server and other nodes reach this node at (default: the address of
    /// the default route's interface).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// CRI socket of an existing runtime (e.g. unix:///run/containerd/containerd.sock).
    /// Without it the agent runs its own containerd under its data directory.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// A registry (host[:port]) to reach over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// HTTPS port of the agent (logs, exec, attach, port-forward, stats).
    #[arg(long, default_value_t = 10250)]
    pub agent_port: u16,
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// Credentials (and, unless --server, the address) of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The API server's URL, overriding the kubeconfig's.
    #[arg(long)]
    server: Option<String>,
    /// Volumes, logs and the agent's containerd live here.
    #[arg(long, default_value = "/var/lib/tugboat/agent")]
    data_dir: PathBuf,
    #[command(flatten)]
    options: AgentOptions,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let mut client = tugboat_client::Client::from_kubeconfig(&args.kubeconfig).with_context(|| format!("cannot use the kubeconfig {}", args.kubeconfig.display()))?;
    if let Some(server) = &args.server {
        client = client.with_server(server);
    }
    let ca_pem = tugboat_pki::Kubeconfig::read(&args.kubeconfig).with_context(|| format!("cannot read the kubeconfig {}", args.kubeconfig.display()))?.ca_pem;
    start(client, ca_pem, args.data_dir, args.options, crate::server::shutdown_signal()).await
}

/// The address of the interface the default route leaves from (no packet is sent).
fn default_route_ip() -> IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|socket| {
        socket.connect("192.0.2.1:9")?;
        socket.local_addr()
    });
    probe.map(|address| address.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Starts the runtime (own containerd unless an endpoint is given) and runs the agent.
pub async fn start(client: tugboat_client::Client, cluster_ca_pem: String, data_dir: PathBuf, options: AgentOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create the agent's data directory {}", data_dir.display()))?;
    let node_name = match options.node_name {
        Some(name) => name,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").context("cannot read the hostname; pass --node-name")?.trim().to_lowercase(),
    };
    let (runtime, cni_conf_dir, registry_hosts_dir): (Arc<dyn Runtime>, PathBuf, Option<PathBuf>) = match &options.container_runtime_endpoint {
        Some(endpoint) => (Arc::new(tugboat_cri::GrpcRuntime::new(endpoint)?), PathBuf::from("/etc/cni/net.d"), None),
        None => {
            let containerd = Containerd::start(&data_dir).await.context("cannot run containerd")?;
            containerd.provide_sandbox_image().await.context("cannot provide the sandbox (pause) image to containerd")?;
            (containerd.runtime.clone(), containerd.layout.cni_conf_dir.clone(), Some(containerd.layout.registry_hosts_dir.clone()))
        }
    };
    let config = AgentConfig {
        node_name,
        data_dir,
        node_ip: options.node_ip.unwrap_or_else(default_route_ip),
        port: options.agent_port,
        insecure_registries: options.insecure_registries,
        max_pods: options.max_pods,
        relist_interval: Duration::from_millis(250),
        cni_conf_dir,
        cluster_ca_pem,
        registry_hosts_dir,
    };
    tugboat_agent::run(config, ApiClient::new(client), runtime, shutdown).await.context("the agent stopped")?;
    Ok(())
}
