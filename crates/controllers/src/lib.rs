//! Tugboat's controllers, in the Kubernetes pattern: informers feed caches and a work queue of
//! owner keys; workers reconcile one owner at a time, level-based, through the API.
//!
//! So far: the ReplicaSet and ReplicationController controllers (one implementation, two kinds),
//! the Deployment controller, the garbage collector and the ServiceAccount controller.

pub mod deployment;
pub mod expectations;
pub mod garbage_collector;
pub mod pods;
pub mod replica;
pub mod runtime;
pub mod selector;
pub mod service_accounts;

use std::future::Future;
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

/// Runs the ReplicaSet controller with `workers` workers until `shutdown` completes.
pub async fn run_replica_sets(client: Client, workers: usize, shutdown: impl Future<Output = ()>) {
    ReplicaController::run(client, &REPLICA_SET, workers, shutdown).await;
}

/// Runs the ReplicationController controller with `workers` workers until `shutdown` completes.
pub async fn run_replication_controllers(client: Client, workers: usize, shutdown: impl Future<Output = ()>) {
    ReplicaController::run(client, &REPLICATION_CONTROLLER, workers, shutdown).await;
}

/// Runs both controllers until `shutdown` completes.
pub async fn run(client: Client, workers: usize, shutdown: impl Future<Output = ()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone, which also means stop.
        let _ = receiver.wait_for(|s| *s).await;
    };
    let replica_sets = run_replica_sets(client.clone(), workers, wait(stopped.clone()));
    let replication_controllers = run_replication_controllers(client, workers, wait(stopped));
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

/// The controller manager: every controller, until `shutdown` completes.
pub async fn run_all(client: Client, workers: usize, shutdown: impl Future<Output = ()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|s| *s).await;
    };
    let all = futures::future::join4(
        run(client.clone(), workers, wait(stopped.clone())),
        deployment::run(client.clone(), wait(stopped.clone())),
        garbage_collector::run(client.clone(), wait(stopped.clone())),
        service_accounts::run(client, wait(stopped)),
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
