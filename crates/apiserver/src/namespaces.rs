//! What a fresh cluster must have: the namespaces that always exist, the `kubernetes` Service and
//! the system PriorityClasses. Emptying a terminating namespace is the namespace controller's
//! (`tugboat_controllers::namespaces`), which takes the `kubernetes` finalizer off through
//! `namespaces/{name}/finalize` when done.

use serde_json::json;
use tugboat_api::Registry;

use crate::error::ApiResult;
use crate::objects::WriteOptions;
use crate::ApiServer;

pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

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
