//! `tugboat server`: the control plane.

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tugboat_apiserver::{ApiConfig, ApiServer, Ipv4Cidr};
use tugboat_pki::{write_kubeconfig, ClientIdentity, ClusterPki, Kubeconfig};
use tugboat_store::{EtcdStore, SqliteOptions, SqliteStore, Store};

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where the cluster's state, certificates and kubeconfig live.
    #[arg(long, default_value = "/var/lib/tugboat")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Absent: embedded SQLite in the data dir. `http://host:port[,http://host:port...]`: etcd v3.
    #[arg(long)]
    datastore_endpoint: Option<String>,
    /// Cluster IPs of Services come from this range.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Each Node gets a /24 pod network (spec.podCIDR) from this range.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// The prefix length of each Node's pod network: 24 gives 254 pod addresses per node.
    #[arg(long, default_value_t = tugboat_apiserver::DEFAULT_NODE_CIDR_PREFIX)]
    node_cidr_mask_size: u8,
    /// Extra names or addresses for the serving certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Compact store history older than this many seconds (at most twice as old is kept).
    #[arg(long, default_value_t = 300)]
    compaction_interval_seconds: u64,
    /// Seconds between watch bookmarks, for watches that ask for them.
    #[arg(long, default_value_t = 60)]
    bookmark_interval_seconds: u64,
    /// Run no node agent here (a control plane without workloads).
    #[arg(long)]
    disable_agent: bool,
    /// Run no scheduler here (pods then need spec.nodeName, or a scheduler elsewhere).
    #[arg(long)]
    disable_scheduler: bool,
    /// Run no controllers here (ReplicaSets, Deployments ... then wait for a controller manager
    /// elsewhere).
    #[arg(long)]
    disable_controllers: bool,
    #[command(flatten)]
    controllers: ControllerArgs,
    #[command(flatten)]
    agent: crate::agent::AgentOptions,
}

/// Settings of the controllers, for `tugboat server` and `tugboat controller-manager`.
#[derive(clap::Args)]
pub struct ControllerArgs {
    /// How long a node may go without renewing its Lease or posting status before it is marked
    /// Unknown and tainted unreachable: `50s`, `5m`, `500ms`, or seconds.
    #[arg(long, default_value = "50s", value_parser = tugboat_controllers::parse_duration)]
    node_monitor_grace_period: Duration,
    /// Nodes per second that may newly be tainted NoExecute (their pods then evicted) while their
    /// zone is healthy; a zone with most nodes down, or a cluster with none up, evicts less or not at all.
    #[arg(long, default_value_t = tugboat_controllers::node_lifecycle::DEFAULT_EVICTION_RATE)]
    node_eviction_rate: f64,
}

impl ControllerArgs {
    pub fn options(&self) -> tugboat_controllers::ControllerOptions {
        tugboat_controllers::ControllerOptions {
            workers: CONTROLLER_WORKERS,
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_eviction_rate: self.node_eviction_rate,
        }
    }
}

/// Workers per controller: enough to overlap API round trips on two cores.
pub const CONTROLLER_WORKERS: usize = 4;

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {}; choose another with --data-dir", args.data_dir.display()))?;
    let store = open_store(&args).await?;

    let pki = ClusterPki::load_or_create(&args.data_dir.join("pki")).context("cannot set up the cluster certificates")?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into(), "kubernetes".into(),
        "kubernetes.default".into(), "kubernetes.default.svc".into(), "kubernetes.default.svc.cluster.local".into()];
    let service_cidr = Ipv4Cidr::parse(&args.service_cidr).map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
    names.push(service_cidr.api_service_ip().to_string());
    if let Ok(hostname) = std::fs::read_to_string("/etc/hostname") {
        names.push(hostname.trim().to_string());
    }
    if !args.bind_address.is_unspecified() {
        names.push(args.bind_address.to_string());
    }
    names.extend(args.tls_san.iter().cloned());
    names.dedup();
    let serving = pki.serving_cert(&names).context("cannot issue the serving certificate")?;
    let tls = pki.server_tls_config(&serving).context("cannot configure TLS")?;
    let admin = pki
        .client_cert("admin", &ClientIdentity { user: "admin", groups: &["system:masters"] })
        .context("cannot issue the admin client certificate")?;

    let agent_client = pki
        .client_cert("apiserver-agent-client", &ClientIdentity { user: "kube-apiserver-kubelet-client", groups: &["system:masters"] })
        .context("cannot issue the API server's client certificate for node agents")?;

    let host = if args.bind_address.is_unspecified() { "127.0.0.1".to_string() } else { args.bind_address.to_string() };
    let advertise = SocketAddr::new(host.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])), args.secure_port).to_string();
    let kubeconfig_path = args.data_dir.join("admin.kubeconfig");
    write_kubeconfig(
        &kubeconfig_path,
        &Kubeconfig {
            server: format!("https://{advertise}"),
            ca_pem: pki.ca_cert_pem.clone(),
            client_cert_pem: Some(admin.cert_pem),
            client_key_pem: Some(admin.key_pem),
            token: None,
        },
    )
    .context("cannot write the admin kubeconfig")?;

    let config = ApiConfig {
        advertise_address: advertise.clone(),
        secure_port: args.secure_port,
        service_cidr,
        cluster_cidr: Ipv4Cidr::parse(&args.cluster_cidr).map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?,
        node_cidr_mask_size: args.node_cidr_mask_size,
        bookmark_interval: Duration::from_secs(args.bookmark_interval_seconds.max(1)),
        compaction_interval: Duration::from_secs(args.compaction_interval_seconds.max(1)),
        agent_client_tls: Some(Arc::new(tugboat_pki::agent_client_tls_config(&agent_client).context("cannot set up TLS toward node agents")?)),
    };
    let server = ApiServer::start(store, config).await.context("the API server could not start")?;
    let listen = SocketAddr::new(args.bind_address, args.secure_port);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another server running? choose another with --secure-port"))?;
    tracing::info!(%listen, "API server ready");
    println!("Tugboat is running. To use it:\n    export KUBECONFIG={}\n    kubectl get namespaces", kubeconfig_path.display());
    // The scheduler and the controllers in this process reach the API server in process: the
    // same API, without TLS and sockets. Run alone, they use a kubeconfig like any client.
    let loopback = {
        let server = server.clone();
        tugboat_client::Client::in_process(move |request| tugboat_apiserver::serve_in_process(server.clone(), request))
    };
    // Several servers may share one etcd: one scheduler and one controller manager act at a time,
    // chosen through Leases in kube-system.
    let identity = format!("{}_{}_{}", names.iter().find(|n| !n.contains('.') && !n.contains(':') && *n != "localhost" && *n != "kubernetes").cloned().unwrap_or_default(), args.secure_port, std::process::id());
    if !args.disable_scheduler {
        let client = loopback.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let component = |stop: tokio::sync::oneshot::Receiver<()>| tugboat_scheduler::run(client.clone(), async move { let _ = stop.await; });
            tugboat_client::leader::run_while_leader(client.clone(), "kube-system", "kube-scheduler", &identity, component).await
        });
    }
    if !args.disable_controllers {
        let client = loopback.clone();
        let identity = identity.clone();
        let options = args.controllers.options();
        tokio::spawn(async move {
            let component = |stop: tokio::sync::oneshot::Receiver<()>| tugboat_controllers::run_all(client.clone(), options.clone(), async move { let _ = stop.await; });
            tugboat_client::leader::run_while_leader(client.clone(), "kube-system", "kube-controller-manager", &identity, component).await
        });
    }
    if !args.disable_agent {
        let node_name = match &args.agent.node_name {
            Some(name) => name.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname").context("cannot read the hostname; pass --node-name")?.trim().to_lowercase(),
        };
        let node = pki
            .client_cert(&format!("node-{node_name}"), &ClientIdentity { user: &format!("system:node:{node_name}"), groups: &["system:nodes"] })
            .context("cannot issue the node agent's client certificate")?;
        let agent_kubeconfig = args.data_dir.join("agent.kubeconfig");
        write_kubeconfig(
            &agent_kubeconfig,
            &Kubeconfig { server: format!("https://{advertise}"), ca_pem: pki.ca_cert_pem.clone(), client_cert_pem: Some(node.cert_pem), client_key_pem: Some(node.key_pem), token: None },
        )
        .context("cannot write the agent's kubeconfig")?;
        let client = tugboat_client::Client::from_kubeconfig(&agent_kubeconfig).context("cannot use the agent's kubeconfig")?;
        let mut options = args.agent.clone();
        options.node_name = Some(node_name);
        if options.node_ip.is_none() && !args.bind_address.is_unspecified() {
            options.node_ip = Some(args.bind_address);
        }
        let data_dir = args.data_dir.join("agent");
        let ca_pem = pki.ca_cert_pem.clone();
        tokio::spawn(async move {
            if let Err(error) = crate::agent::start(client, ca_pem, data_dir, options, std::future::pending()).await {
                tracing::error!("the node agent stopped: {error:#}");
            }
        });
    }
    tugboat_apiserver::serve(server, listener, Arc::new(tls), shutdown_signal()).await;
    tracing::info!("shut down");
    Ok(())
}

async fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    match &args.datastore_endpoint {
        None => {
            let path = args.data_dir.join("db").join("state.db");
            std::fs::create_dir_all(path.parent().unwrap_or(&args.data_dir))?;
            let store = SqliteStore::open(&path, SqliteOptions::default())
                .with_context(|| format!("cannot open the embedded store at {}", path.display()))?;
            Ok(Arc::new(store))
        }
        Some(endpoint) => {
            let endpoints: Vec<String> = endpoint.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
            if endpoints.iter().any(|e| !e.starts_with("http://")) {
                anyhow::bail!("--datastore-endpoint {endpoint:?}: expected http://host:port[,http://host:port...] (etcd v3)");
            }
            // etcd started alongside (by systemd, a script or a test) may take a moment to answer.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                match EtcdStore::connect(&endpoints).await {
                    Ok(store) => return Ok(Arc::new(store)),
                    Err(error) if std::time::Instant::now() < deadline => {
                        tracing::warn!(%error, %endpoint, "etcd is not answering yet; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(error) => return Err(error).with_context(|| format!("cannot reach etcd at {endpoint} (gave up after 30 s)")),
                }
            }
        }
    }
}

pub async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}
