//! An API server inside the test process, on a fresh embedded store, spoken to over real HTTPS
//! with an admin client certificate: the harness of the integration tests of the components that
//! are API clients (agent, scheduler, controllers), which must not start processes to be fast.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tugboat_apiserver::{ApiConfig, ApiServer, Ipv4Cidr};
use tugboat_client::Client;
use tugboat_pki::{write_kubeconfig, ClientIdentity, ClusterPki, Kubeconfig};
use tugboat_store::{SqliteOptions, SqliteStore, Store};

/// A running in-process API server; it stops with the test's runtime.
pub struct InProcessApi {
    pub client: Client,
    /// An admin kubeconfig for it (for components that take one).
    pub kubeconfig: PathBuf,
    /// The cluster CA, PEM.
    pub ca_pem: String,
    /// Holds the store, certificates and kubeconfig; deleted on drop.
    pub dir: tempfile::TempDir,
}

/// Starts an API server on a loopback port (pod networks from 10.42.0.0/16, services from
/// 10.43.0.0/16). Panics with the reason if it cannot: this only ever runs inside tests.
pub async fn start_api_server() -> InProcessApi {
    let dir = tempfile::tempdir().expect("temporary directory for the API server");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("embedded store"));
    let pki = ClusterPki::load_or_create(&dir.path().join("pki")).expect("cluster certificates");
    let serving = pki.serving_cert(&["127.0.0.1".into()]).expect("serving certificate");
    let tls = Arc::new(pki.server_tls_config(&serving).expect("server TLS"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = listener.local_addr().expect("the listener's address");
    let config = ApiConfig {
        advertise_address: address.to_string(),
        secure_port: address.port(),
        service_cidr: Ipv4Cidr::parse("10.43.0.0/16").expect("service range"),
        cluster_cidr: Ipv4Cidr::parse("10.42.0.0/16").expect("cluster range"),
        node_cidr_mask_size: tugboat_apiserver::DEFAULT_NODE_CIDR_PREFIX,
        bookmark_interval: Duration::from_secs(60),
        compaction_interval: Duration::from_secs(3600),
        agent_client_tls: None,
    };
    let server = ApiServer::start(store, config).await.expect("the API server starts");
    tokio::spawn(tugboat_apiserver::serve(server, listener, tls, std::future::pending()));
    let admin = pki.client_cert("admin", &ClientIdentity { user: "admin", groups: &["system:masters"] }).expect("admin certificate");
    let kubeconfig = dir.path().join("admin.kubeconfig");
    let config = Kubeconfig {
        server: format!("https://{address}"),
        ca_pem: pki.ca_cert_pem.clone(),
        client_cert_pem: Some(admin.cert_pem),
        client_key_pem: Some(admin.key_pem),
        token: None,
    };
    write_kubeconfig(&kubeconfig, &config).expect("admin kubeconfig");
    let client = Client::from_kubeconfig(&kubeconfig).expect("a client for the admin kubeconfig");
    InProcessApi { client, kubeconfig, ca_pem: pki.ca_cert_pem.clone(), dir }
}
