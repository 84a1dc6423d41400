//! CRI v1 over gRPC on a unix socket (containerd's `io.containerd.grpc.v1.cri` plugin).

use crate::api::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use crate::{CriError, ExecOutput, Runtime};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use tonic::transport::{Channel, Endpoint, Uri};

/// Messages from the runtime (container lists, image lists) can be larger than tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct GrpcRuntime {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl GrpcRuntime {
    /// A client for the CRI socket at `socket` (a path, or `unix://PATH`). The connection is made
    /// lazily and re-made after failures, so a restarted runtime is picked up without help.
    pub fn new(socket: &str) -> Result<Self, CriError> {
        let path = PathBuf::from(socket.strip_prefix("unix://").unwrap_or(socket));
        let connect_path = path.clone();
        // The URI is a placeholder: the connector below always dials the unix socket.
        let channel = Endpoint::from_static("http://[::1]:50051").connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = connect_path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }));
        Ok(Self {
            socket: path,
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
            images: ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    fn error(&self, operation: &'static str, status: tonic::Status) -> CriError {
        match status.code() {
            tonic::Code::NotFound => CriError::NotFound(status.message().to_owned()),
            tonic::Code::Unavailable | tonic::Code::Unknown if status.message().contains("transport") || status.message().contains("connect") => {
                CriError::Unavailable { endpoint: self.socket.display().to_string(), message: status.message().to_owned() }
            }
            _ => CriError::Failed { operation, message: status.message().to_owned() },
        }
    }
}

#[async_trait::async_trait]
impl Runtime for GrpcRuntime {
    async fn version(&self) -> Result<(String, String), CriError> {
        let response = self.runtime.clone().version(api::VersionRequest { version: "v1".into() }).await.map_err(|e| self.error("Version", e))?;
        let response = response.into_inner();
        Ok((response.runtime_name, response.runtime_version))
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String, CriError> {
        let request = api::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        let response = self.runtime.clone().run_pod_sandbox(request).await.map_err(|e| self.error("RunPodSandbox", e))?;
        Ok(response.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let request = api::StopPodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        self.runtime.clone().stop_pod_sandbox(request).await.map_err(|e| self.error("StopPodSandbox", e))?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let request = api::RemovePodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        self.runtime.clone().remove_pod_sandbox(request).await.map_err(|e| self.error("RemovePodSandbox", e))?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<api::PodSandboxStatus, CriError> {
        let request = api::PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.to_owned(), verbose: false };
        let response = self.runtime.clone().pod_sandbox_status(request).await.map_err(|e| self.error("PodSandboxStatus", e))?;
        response.into_inner().status.ok_or_else(|| CriError::NotFound(format!("sandbox {sandbox_id}")))
    }

    async fn list_pod_sandboxes(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>, CriError> {
        let response = self.runtime.clone().list_pod_sandbox(api::ListPodSandboxRequest { filter }).await.map_err(|e| self.error("ListPodSandbox", e))?;
        Ok(response.into_inner().items)
    }

    async fn create_container(&self, sandbox_id: &str, config: api::ContainerConfig, sandbox_config: api::PodSandboxConfig) -> Result<String, CriError> {
        let request = api::CreateContainerRequest { pod_sandbox_id: sandbox_id.to_owned(), config: Some(config), sandbox_config: Some(sandbox_config) };
        let response = self.runtime.clone().create_container(request).await.map_err(|e| self.error("CreateContainer", e))?;
        Ok(response.into_inner().container_id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), CriError> {
        let request = api::StartContainerRequest { container_id: container_id.to_owned() };
        self.runtime.clone().start_container(request).await.map_err(|e| self.error("StartContainer", e))?;
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout_seconds: i64) -> Result<(), CriError> {
        let request = api::StopContainerRequest { container_id: container_id.to_owned(), timeout: timeout_seconds };
        self.runtime.clone().stop_container(request).await.map_err(|e| self.error("StopContainer", e))?;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), CriError> {
        let request = api::RemoveContainerRequest { container_id: container_id.to_owned() };
        self.runtime.clone().remove_container(request).await.map_err(|e| self.error("RemoveContainer", e))?;
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>, CriError> {
        let response = self.runtime.clone().list_containers(api::ListContainersRequest { filter }).await.map_err(|e| self.error("ListContainers", e))?;
        Ok(response.into_inner().containers)
    }

    async fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus, CriError> {
        let request = api::ContainerStatusRequest { container_id: container_id.to_owned(), verbose: false };
        let response = self.runtime.clone().container_status(request).await.map_err(|e| self.error("ContainerStatus", e))?;
        response.into_inner().status.ok_or_else(|| CriError::NotFound(format!("container {container_id}")))
    }

    async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>, CriError> {
        let response = self.runtime.clone().list_container_stats(api::ListContainerStatsRequest { filter: None }).await.map_err(|e| self.error("ListContainerStats", e))?;
        Ok(response.into_inner().stats)
    }

    async fn exec_sync(&self, container_id: &str, command: Vec<String>, timeout_seconds: i64) -> Result<ExecOutput, CriError> {
        let request = api::ExecSyncRequest { container_id: container_id.to_owned(), cmd: command, timeout: timeout_seconds };
        let response = self.runtime.clone().exec_sync(request).await.map_err(|e| self.error("ExecSync", e))?.into_inner();
        Ok(ExecOutput { exit_code: response.exit_code, stdout: response.stdout, stderr: response.stderr })
    }

    async fn exec(&self, request: api::ExecRequest) -> Result<String, CriError> {
        Ok(self.runtime.clone().exec(request).await.map_err(|e| self.error("Exec", e))?.into_inner().url)
    }

    async fn attach(&self, request: api::AttachRequest) -> Result<String, CriError> {
        Ok(self.runtime.clone().attach(request).await.map_err(|e| self.error("Attach", e))?.into_inner().url)
    }

    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String, CriError> {
        Ok(self.runtime.clone().port_forward(request).await.map_err(|e| self.error("PortForward", e))?.into_inner().url)
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        let request = api::ImageStatusRequest { image: Some(crate::image_spec(image)), verbose: false };
        let response = self.images.clone().image_status(request).await.map_err(|e| self.error("ImageStatus", e))?;
        Ok(response.into_inner().image)
    }

    async fn pull_image(&self, image: &str, auth: Option<api::AuthConfig>, sandbox_config: Option<api::PodSandboxConfig>) -> Result<String, CriError> {
        let request = api::PullImageRequest { image: Some(crate::image_spec(image)), auth, sandbox_config };
        let response = self.images.clone().pull_image(request).await.map_err(|e| self.error("PullImage", e))?;
        Ok(response.into_inner().image_ref)
    }

    async fn list_images(&self) -> Result<Vec<api::Image>, CriError> {
        let response = self.images.clone().list_images(api::ListImagesRequest { filter: None }).await.map_err(|e| self.error("ListImages", e))?;
        Ok(response.into_inner().images)
    }
}
