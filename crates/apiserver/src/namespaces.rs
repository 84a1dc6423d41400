//! Namespace lifecycle inside the server: the namespaces that always exist, and finalizing a
//! terminating namespace by deleting everything in it.
//!
//! This is the API server's own finalizer (`spec.finalizers: ["kubernetes"]`); it uses the same
//! write path as clients and is the only place the server deletes objects on its own.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tugboat_api::{meta, Registry};

use crate::error::ApiResult;
use crate::objects::{DeleteOptions, Part, WriteOptions};
use crate::{keys, ApiServer};

pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// How long after a namespace starts terminating its contents are deleted.
const CLEANUP_DELAY: Duration = Duration::from_secs(2);

const WRITE: WriteOptions = WriteOptions { dry_run: false };

/// Creates what a fresh cluster must have: the system namespaces, the `kubernetes` Service and
/// the system PriorityClasses.
pub async fn bootstrap(server: &ApiServer) -> ApiResult<()> {
    let registry = Registry::get();
    let (Some(namespaces), Some(services)) = (registry.lookup("", "v1", "namespaces"), registry.lookup("", "v1", "services")) else {
        return Ok(());
    };
    for name in SYSTEM_NAMESPACES {
        if server.objects.get(namespaces, "", name).await.is_err() {
            let object = namespaces.decode(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
                .unwrap_or_default();
            ignore_exists(server.objects.create(namespaces, object, WRITE).await)?;
        }
    }
    if server.objects.get(services, "default", "kubernetes").await.is_err() {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": server.config.service_cidr.api_service_ip().to_string(),
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": server.config.secure_port}]},
        });
        let service = services.decode(service).unwrap_or_default();
        ignore_exists(server.objects.create(services, service, WRITE).await)?;
    }
    if let Some(classes) = registry.lookup("scheduling.k8s.io", "v1", "priorityclasses") {
        for (name, value, description) in crate::admission::SYSTEM_PRIORITY_CLASSES {
            if server.objects.get(classes, "", name).await.is_err() {
                let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value, "description": description});
                let class = classes.decode(class).unwrap_or_default();
                ignore_exists(server.objects.create(classes, class, WRITE).await)?;
            }
        }
    }
    Ok(())
}

fn ignore_exists<T>(result: ApiResult<T>) -> ApiResult<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Finalizes terminating namespaces: those found at start and each one `terminating` names.
pub async fn run_finalizer(server: Arc<ApiServer>, mut terminating: mpsc::UnboundedReceiver<String>) {
    let Some(namespaces) = Registry::get().lookup("", "v1", "namespaces") else { return };
    let cache = server.objects.cache.clone();
    let existing = cache.resource(namespaces).snapshot(&keys::resource_prefix(namespaces), cache.applied());
    for ns in existing.objects.iter().map(|o| o.value()).filter(|o| o.pointer("/metadata/deletionTimestamp").is_some()) {
        tokio::spawn(finalize(server.clone(), meta::name(&ns).to_owned()));
    }
    while let Some(name) = terminating.recv().await {
        tokio::spawn(finalize(server.clone(), name));
    }
}

/// Deletes every object in the namespace, waits until all are gone, then releases the
/// namespace's `kubernetes` finalizer so the namespace itself goes.
async fn finalize(server: Arc<ApiServer>, namespace: String) {
    // `kubectl delete -f` deletes a manifest's Namespace and then, one by one, the objects in it.
    // Cleaning up at once would make those later deletes fail with NotFound; Kubernetes'
    // namespace controller, a separate process, naturally starts a little later.
    tokio::time::sleep(CLEANUP_DELAY).await;
    let registry = Registry::get();
    let Some(namespaces) = registry.lookup("", "v1", "namespaces") else { return };
    let cache = server.objects.cache.clone();
    let options = DeleteOptions { propagation_policy: Some("Background".into()), ..Default::default() };
    loop {
        let mut remaining = 0;
        for resource in registry.types().iter().filter(|t| t.namespaced) {
            let snapshot = cache.resource(resource).snapshot(&keys::list_prefix(resource, Some(&namespace)), cache.applied());
            for object in &snapshot.objects {
                remaining += 1;
                let deleting = object.value().pointer("/metadata/deletionTimestamp").is_some();
                if !deleting {
                    if let Err(error) = server.objects.delete(resource, &namespace, object.name(), &options).await {
                        if error.reason != "NotFound" {
                            tracing::warn!(%namespace, name = %object.name(), kind = resource.kind, message = %error.message, "namespace cleanup could not delete an object");
                        }
                    }
                }
            }
        }
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let released = server
        .objects
        .update(namespaces, "", &namespace, Part::Main, false, WRITE, |current| {
            let mut next = current.clone();
            if let Some(Value::Array(finalizers)) = next.pointer_mut("/spec/finalizers") {
                finalizers.retain(|f| f != "kubernetes");
            }
            Ok(next)
        })
        .await;
    if let Err(error) = released {
        if error.reason != "NotFound" {
            tracing::warn!(%namespace, message = %error.message, "could not release the namespace finalizer");
        }
    }
}
