//! The container runtime behind a trait.
//!
//! [`Runtime`] is the slice of CRI v1 the agent uses, in CRI's own message types (re-exported as
//! [`api`]), so the agent's logic is written once against the real protocol. Two implementations:
//! [`GrpcRuntime`] speaks CRI v1 gRPC to containerd over its unix socket; [`FakeRuntime`] keeps
//! sandboxes, containers and images in memory so the agent's reconcile logic has fast unit tests.
//!
//! Invariant: this crate knows nothing about Pods or the API server; it moves CRI messages.

mod fake;
mod grpc;

pub use fake::FakeRuntime;
pub use grpc::GrpcRuntime;
pub use k8s_cri::v1 as api;

use api::{
    Container, ContainerConfig, ContainerFilter, ContainerStats, ContainerStatus, ExecRequest, Image, ImageSpec,
    PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxStatus, PortForwardRequest, AttachRequest, AuthConfig,
};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot reach the container runtime at {endpoint}: {message}; is containerd running?")]
    Unavailable { endpoint: String, message: String },
    #[error("not found in the container runtime: {0}")]
    NotFound(String),
    /// The runtime refused or failed the call; `message` is the runtime's own words (users see it
    /// in pod status, e.g. the registry's answer to a pull).
    #[error("{operation} failed: {message}")]
    Failed { operation: &'static str, message: String },
}

impl CriError {
    /// The runtime's own words, for users (pod status, events): without this crate's framing.
    pub fn runtime_message(&self) -> String {
        match self {
            CriError::NotFound(message) | CriError::Failed { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// The output of a command run to completion in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Runtime name and version, e.g. ("containerd", "1.6.20").
    async fn version(&self) -> Result<(String, String), CriError>;

    async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String, CriError>;
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError>;
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError>;
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, CriError>;
    async fn list_pod_sandboxes(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>, CriError>;

    async fn create_container(&self, sandbox_id: &str, config: ContainerConfig, sandbox_config: PodSandboxConfig) -> Result<String, CriError>;
    async fn start_container(&self, container_id: &str) -> Result<(), CriError>;
    /// Stops with SIGTERM (or the image's stop signal), then SIGKILL after `timeout_seconds`.
    async fn stop_container(&self, container_id: &str, timeout_seconds: i64) -> Result<(), CriError>;
    async fn remove_container(&self, container_id: &str) -> Result<(), CriError>;
    async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>, CriError>;
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, CriError>;
    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>, CriError>;

    async fn exec_sync(&self, container_id: &str, command: Vec<String>, timeout_seconds: i64) -> Result<ExecOutput, CriError>;
    /// Streaming calls answer with a URL on the runtime's streaming server.
    async fn exec(&self, request: ExecRequest) -> Result<String, CriError>;
    async fn attach(&self, request: AttachRequest) -> Result<String, CriError>;
    async fn port_forward(&self, request: PortForwardRequest) -> Result<String, CriError>;

    /// `None` when the image is not present.
    async fn image_status(&self, image: &str) -> Result<Option<Image>, CriError>;
    /// Pulls and answers the image reference the runtime stored (an image ID or digest).
    async fn pull_image(&self, image: &str, auth: Option<AuthConfig>, sandbox_config: Option<PodSandboxConfig>) -> Result<String, CriError>;
    async fn list_images(&self) -> Result<Vec<Image>, CriError>;
}

/// A CRI image spec for a reference.
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec { image: image.to_owned(), ..Default::default() }
}
