//! The Kubernetes API server: HTTPS with client-certificate authentication, the REST verbs of
//! every registered kind, discovery, OpenAPI, Tables, and watch from an in-memory cache.
//!
//! Invariant: this crate reaches cluster state only through the [`tugboat_store::Store`] trait;
//! it knows nothing about SQLite or etcd.
//! Invariant: agents, schedulers and controllers never link this crate; they speak HTTP to it.

mod admission;
mod agent_proxy;
mod allocator;
mod binding;
mod cache;
mod discovery;
mod error;
mod handlers;
mod json_text;
mod keys;
mod namespaces;
mod objects;
mod request;
mod respond;
mod served;
mod server;
mod watch;

pub use allocator::{Ipv4Cidr, DEFAULT_NODE_CIDR_PREFIX};
pub use error::ApiError;
pub use server::{serve, serve_in_process};

use std::sync::Arc;
use std::time::Duration;
use tugboat_store::{Store, StoreError};

/// Settings of the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How `/api` tells clients to reach this server (`host:port`).
    pub advertise_address: String,
    pub secure_port: u16,
    pub service_cidr: Ipv4Cidr,
    /// Pod networks of Nodes (spec.podCIDR) come from this range.
    pub cluster_cidr: Ipv4Cidr,
    /// The prefix length of each Node's pod network (Kubernetes' `--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// How often history older than the previous interval is compacted away.
    pub compaction_interval: Duration,
    /// TLS (with the API server's client certificate) for reaching node agents: logs, exec,
    /// attach, port-forward and metrics. None: those answer 503.
    pub agent_client_tls: Option<Arc<rustls::ClientConfig>>,
}

/// A running API server's state, shared by all connections.
pub struct ApiServer {
    objects: objects::Objects,
    config: ApiConfig,
}

impl ApiServer {
    /// Loads the watch cache, creates the system namespaces, and starts the server's own
    /// background work (compaction).
    pub async fn start(store: Arc<dyn Store>, config: ApiConfig) -> Result<Arc<Self>, StartError> {
        let cache = cache::Cache::start(store.clone()).await?;
        let allocator = allocator::Allocator::new(config.service_cidr, config.cluster_cidr, config.node_cidr_mask_size);
        let server = Arc::new(Self { objects: objects::Objects::new(store, cache, allocator), config });
        namespaces::bootstrap(&server).await.map_err(|e| StartError::Bootstrap(e.message))?;
        tokio::spawn(compact_periodically(server.clone()));
        Ok(server)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load cluster state from the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot create the system namespaces: {0}")]
    Bootstrap(String),
}

/// Like kube-apiserver, compacts every interval up to the revision seen one interval earlier,
/// so a watcher always has at least one interval to resume.
async fn compact_periodically(server: Arc<ApiServer>) {
    let interval = server.config.compaction_interval;
    let mut previous: Option<i64> = None;
    loop {
        tokio::time::sleep(interval).await;
        let store = &server.objects.store;
        if let Some(target) = previous {
            match store.compact(target).await {
                Ok(()) => server.objects.cache.compacted(target),
                Err(error) => tracing::warn!(%error, revision = target, "compaction failed"),
            }
        }
        previous = store.current_revision().await.ok();
    }
}
