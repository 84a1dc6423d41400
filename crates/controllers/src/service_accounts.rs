//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, created
//! when the namespace appears and again if someone deletes it.

use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tugboat_client::{Client, ClientError};

use crate::runtime::{Change, SharedInformers};

const DEFAULT: &str = "default";

struct Controller {
    client: Client,
    /// Namespaces to check.
    dirty: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Controller {
    fn mark(&self, namespace: &str) {
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(namespace.to_owned());
        self.wake.notify_one();
    }

    async fn ensure(&self, namespace: &str) -> Result<(), ClientError> {
        let live = match self.client.get(&format!("/api/v1/namespaces/{namespace}")).await {
            Ok(live) => live,
            Err(ClientError::Status { code: http::StatusCode::NOT_FOUND, .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        if live["metadata"]["deletionTimestamp"].is_string() {
            return Ok(());
        }
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT, "namespace": namespace}});
        match self.client.create(&format!("/api/v1/namespaces/{namespace}/serviceaccounts"), &account).await {
            Ok(_) | Err(ClientError::Status { code: http::StatusCode::CONFLICT, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Runs the ServiceAccount controller on the controller manager's shared informers until
/// `shutdown` resolves.
pub async fn run(informers: &SharedInformers, shutdown: impl std::future::Future<Output = ()>) {
    let controller = Arc::new(Controller { client: informers.client().clone(), dirty: Mutex::default(), wake: Notify::new() });
    let mut tasks = tokio::task::JoinSet::new();
    let c = controller.clone();
    informers.subscribe(
        "/api/v1/namespaces",
        Arc::new(move |change: &Change| {
            if let Change::Added(namespace) | Change::Updated { new: namespace, .. } = change {
                c.mark(namespace["metadata"]["name"].as_str().unwrap_or_default());
            }
        }),
    );
    let c = controller.clone();
    informers.subscribe(
        "/api/v1/serviceaccounts",
        Arc::new(move |change: &Change| {
            if let Change::Deleted(account) = change {
                if account["metadata"]["name"] == DEFAULT {
                    c.mark(account["metadata"]["namespace"].as_str().unwrap_or_default());
                }
            }
        }),
    );
    let c = controller.clone();
    tasks.spawn(async move {
        loop {
            let dirty = std::mem::take(&mut *c.dirty.lock().unwrap_or_else(|p| p.into_inner()));
            for namespace in dirty {
                if let Err(error) = c.ensure(&namespace).await {
                    tracing::debug!(%error, %namespace, "cannot ensure the default service account; retrying");
                    c.mark(&namespace);
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), c.wake.notified()).await;
        }
    });
    shutdown.await;
    tasks.abort_all();
}
