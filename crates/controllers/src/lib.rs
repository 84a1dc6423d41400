//! Tugboat's controllers, in the Kubernetes pattern: informers feed caches and a work queue of
//! owner keys; workers reconcile one owner at a time, level-based, through the API.
//!
//! So far: the ReplicaSet and ReplicationController controllers (one implementation, two kinds),
//! the Deployment controller, the garbage collector, the namespace and ServiceAccount controllers,
//! and the node lifecycle controller with taint-based eviction and the pod GC of deleted nodes.

pub mod deployment;
pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod namespaces;
pub mod node_lifecycle;
pub mod pods;
pub mod replica;
pub mod runtime;
pub mod selector;
pub mod service_accounts;
pub mod taint_eviction;

use std::future::Future;
use std::time::Duration;
use tugboat_client::{Client, ClientError};

pub use replica::{Options, OwnerKind, ReplicaController, REPLICATION_CONTROLLER, REPLICA_SET};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot encode a request: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the watch reported an error: {0}")]
    WatchError(String),
    #[error("invalid object: {0}")]
    Invalid(&'static str),
}

/// Runs the ReplicaSet and ReplicationController controllers on their own informers until
/// `shutdown` completes.
pub async fn run(client: Client, workers: usize, shutdown: impl Future<Output = ()>) {
    run_replicas(&shared_informers(&client), workers, shutdown).await;
}

/// Runs the ReplicaSet and ReplicationController controllers on `informers` until `shutdown`
/// completes.
pub async fn run_replicas(informers: &runtime::SharedInformers, workers: usize, shutdown: impl Future<Output = ()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone, which also means stop.
        let _ = receiver.wait_for(|s| *s).await;
    };
    let replica_sets = ReplicaController::run_shared(informers, &REPLICA_SET, workers, wait(stopped.clone()));
    let replication_controllers = ReplicaController::run_shared(informers, &REPLICATION_CONTROLLER, workers, wait(stopped));
    let controllers = futures::future::join(replica_sets, replication_controllers);
    tokio::pin!(controllers);
    tokio::select! {
        () = shutdown => {
            stop.send_replace(true);
            controllers.await;
        }
        _ = &mut controllers => {}
    }
}

/// Settings of the controller manager.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Workers per ReplicaSet/ReplicationController controller.
    pub workers: usize,
    /// How long a node may go without a heartbeat before it is marked Unknown
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// Nodes per second newly tainted NoExecute (so evicted) in a healthy zone
    /// (`--node-eviction-rate`).
    pub node_eviction_rate: f64,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self { workers: 4, node_monitor_grace_period: node_lifecycle::DEFAULT_GRACE_PERIOD, node_eviction_rate: node_lifecycle::DEFAULT_EVICTION_RATE }
    }
}

/// Parses a duration flag: `50s`, `5m`, `1m30s`, `500ms`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let parsed: jiff::SignedDuration = text.parse().map_err(|e| format!("{text:?} is not a duration such as 50s, 5m or 500ms: {e}"))?;
    Duration::try_from(parsed).map_err(|_| format!("{text:?} is negative"))
}

/// The informers a controller manager shares: pods are cached only in the shape the controllers
/// read ([`pods::summary`]).
pub fn shared_informers(client: &Client) -> runtime::SharedInformers {
    runtime::SharedInformers::new(client.clone()).with_transform(PODS, std::sync::Arc::new(pods::summary()))
}

const PODS: &str = "/api/v1/pods";

/// The controller manager: every controller, until `shutdown` completes.
pub async fn run_all(client: Client, options: ControllerOptions, shutdown: impl Future<Output = ()>) {
    let informers = shared_informers(&client);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|s| *s).await;
    };
    let all = futures::future::join(
        futures::future::join5(
            run_replicas(&informers, options.workers, wait(stopped.clone())),
            deployment::run(&informers, wait(stopped.clone())),
            garbage_collector::run(&informers, wait(stopped.clone())),
            service_accounts::run(&informers, wait(stopped.clone())),
            namespaces::run(&informers, wait(stopped.clone())),
        ),
        node_lifecycle::run(client, &informers, options.node_monitor_grace_period, options.node_eviction_rate, wait(stopped)),
    );
    tokio::pin!(all);
    tokio::select! {
        () = shutdown => {
            stop.send_replace(true);
            all.await;
        }
        _ = &mut all => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        assert_eq!(parse_duration("50"), Ok(Duration::from_secs(50)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
