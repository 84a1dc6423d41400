//! What the endpoint's requests name (a pod, a container) → the runtime's containers, log files
//! and streaming URLs.

use crate::pleg::POD_UID_LABEL;
use crate::spec::CONTAINER_NAME_LABEL;
use crate::Context;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tugboat_cri::api::{self, ContainerFilter, ContainerState, PodSandboxFilter, PodSandboxState};

/// A container named by a request: `container` empty means the pod's first container.
pub struct ContainerRef {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

#[derive(Clone, Copy, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Why a request cannot be served; becomes a Status answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

pub struct Backend {
    pub context: Arc<Context>,
}

fn runtime_error(error: tugboat_cri::CriError) -> BackendError {
    match error {
        tugboat_cri::CriError::NotFound(message) => BackendError::NotFound(message),
        other => BackendError::Internal(other.to_string()),
    }
}

impl Backend {
    fn pod(&self, namespace: &str, name: &str) -> Result<Pod, BackendError> {
        self.context.pods.find(namespace, name).ok_or_else(|| BackendError::NotFound(format!("pod {namespace}/{name} is not on node {}", self.context.config.node_name)))
    }

    /// The container's instances in the runtime, newest first.
    async fn instances(&self, target: &ContainerRef) -> Result<(Pod, String, Vec<api::ContainerStatus>), BackendError> {
        let pod = self.pod(&target.namespace, &target.pod)?;
        let spec = pod.spec.clone().unwrap_or_default();
        let name = if target.container.is_empty() {
            spec.containers.first().map(|c| c.name.clone()).unwrap_or_default()
        } else {
            target.container.clone()
        };
        let known = spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == name);
        if !known {
            return Err(BackendError::BadRequest(format!("container {name} is not valid for pod {}", target.pod)));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let selector = HashMap::from([(POD_UID_LABEL.to_owned(), uid), (CONTAINER_NAME_LABEL.to_owned(), name.clone())]);
        let listed = self.context.runtime.list_containers(Some(ContainerFilter { label_selector: selector, ..Default::default() })).await.map_err(runtime_error)?;
        let mut instances = Vec::new();
        for container in listed {
            if let Ok(status) = self.context.runtime.container_status(&container.id).await {
                instances.push(status);
            }
        }
        instances.sort_by_key(|c| std::cmp::Reverse((c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), c.created_at)));
        Ok((pod, name, instances))
    }

    /// Whether the instance writing `log_path` still runs (a following reader stops after it).
    pub async fn log_writer_running(&self, target: &ContainerRef, log_path: &std::path::Path) -> bool {
        match self.instances(target).await {
            Ok((_, _, instances)) => instances.iter().any(|c| std::path::Path::new(&c.log_path) == log_path && c.state == ContainerState::ContainerRunning as i32),
            Err(_) => false,
        }
    }

    async fn running_container(&self, target: &ContainerRef) -> Result<String, BackendError> {
        let (_, name, instances) = self.instances(target).await?;
        instances
            .into_iter()
            .find(|c| c.state == ContainerState::ContainerRunning as i32)
            .map(|c| c.id)
            .ok_or_else(|| BackendError::BadRequest(format!("container {name} is not running")))
    }
}

impl Backend {
    pub async fn exec_url(&self, target: &ContainerRef, command: Vec<String>, options: StreamOptions) -> Result<String, BackendError> {
        let container_id = self.running_container(target).await?;
        let request = api::ExecRequest { container_id, cmd: command, tty: options.tty, stdin: options.stdin, stdout: options.stdout, stderr: options.stderr };
        self.context.runtime.exec(request).await.map_err(runtime_error)
    }

    pub async fn attach_url(&self, target: &ContainerRef, options: StreamOptions) -> Result<String, BackendError> {
        let container_id = self.running_container(target).await?;
        let request = api::AttachRequest { container_id, stdin: options.stdin, tty: options.tty, stdout: options.stdout, stderr: options.stderr };
        self.context.runtime.attach(request).await.map_err(runtime_error)
    }

    pub async fn port_forward_url(&self, namespace: &str, pod: &str, ports: Vec<u16>) -> Result<String, BackendError> {
        let pod = self.pod(namespace, pod)?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let filter = PodSandboxFilter { label_selector: HashMap::from([(POD_UID_LABEL.to_owned(), uid)]), ..Default::default() };
        let sandboxes = self.context.runtime.list_pod_sandboxes(Some(filter)).await.map_err(runtime_error)?;
        let sandbox = sandboxes
            .into_iter()
            .find(|s| s.state == PodSandboxState::SandboxReady as i32)
            .ok_or_else(|| BackendError::BadRequest(format!("pod {namespace}/{} has no running sandbox", pod.metadata.name.unwrap_or_default())))?;
        let request = api::PortForwardRequest { pod_sandbox_id: sandbox.id, port: ports.into_iter().map(i32::from).collect() };
        self.context.runtime.port_forward(request).await.map_err(runtime_error)
    }

    pub async fn log_path(&self, target: &ContainerRef, previous: bool) -> Result<PathBuf, BackendError> {
        let (_, name, instances) = self.instances(target).await?;
        let instance = if previous { instances.get(1) } else { instances.first() };
        match instance {
            Some(instance) if !instance.log_path.is_empty() => Ok(PathBuf::from(&instance.log_path)),
            Some(_) => Err(BackendError::NotFound(format!("container {name} has no log file"))),
            None if previous => Err(BackendError::BadRequest(format!("previous terminated container \"{name}\" in pod \"{}\" not found", target.pod))),
            None => Err(BackendError::BadRequest(format!("container \"{name}\" in pod \"{}\" is waiting to start: ContainerCreating", target.pod))),
        }
    }
}
