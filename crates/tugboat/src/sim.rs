//! `tugboat sim`: simulated nodes for scale tests (like kwok): real API server, store, scheduler
//! and controllers, pods made Running without containers.

use anyhow::Context;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Credentials and address of the API server.
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Nodes are named <prefix><index>; several simulators need different prefixes.
    #[arg(long, default_value = "sim-")]
    name_prefix: String,
    /// Each node's cpu capacity (a Kubernetes quantity).
    #[arg(long, default_value = "32")]
    cpu: String,
    /// Each node's memory capacity (a Kubernetes quantity).
    #[arg(long, default_value = "256Gi")]
    memory: String,
    /// Each node's pod capacity.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Nodes are spread over this many topology.kubernetes.io/zone labels.
    #[arg(long, default_value_t = 3)]
    zones: usize,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let client = tugboat_client::Client::from_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("cannot use the kubeconfig {}", args.kubeconfig.display()))?;
    let options = tugboat_sim::SimOptions {
        nodes: args.nodes,
        name_prefix: args.name_prefix,
        cpu: args.cpu,
        memory: args.memory,
        max_pods: args.max_pods,
        zones: args.zones,
    };
    tugboat_sim::run(client, options, crate::server::shutdown_signal()).await.context("the node simulator stopped")
}
