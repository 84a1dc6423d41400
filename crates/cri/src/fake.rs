//! An in-memory runtime for the agent's unit tests: it keeps the CRI state machine (sandboxes
//! ready/not ready, containers created → running → exited) and lets a test crash containers, fail
//! pulls and script exec results, without processes.

use crate::api::{self, ContainerState, PodSandboxState};
use crate::{CriError, ExecOutput, Runtime};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: BTreeMap<String, api::PodSandboxStatus>,
    containers: BTreeMap<String, api::ContainerStatus>,
    container_sandbox: BTreeMap<String, String>,
    images: BTreeSet<String>,
    pull_failures: BTreeMap<String, String>,
    start_failures: BTreeMap<String, String>,
    exec_exit_codes: BTreeMap<String, i32>,
    pulls: Vec<String>,
    calls: Vec<String>,
}

#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; keep reporting.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add_image(&self, image: &str) {
        self.state().images.insert(image.to_owned());
    }

    /// Pulls of `image` fail with `message` (as a registry's answer would).
    pub fn fail_pull(&self, image: &str, message: &str) {
        self.state().pull_failures.insert(image.to_owned(), message.to_owned());
    }

    /// Starting a container whose command's first word is `program` fails with `message`.
    pub fn fail_start(&self, program: &str, message: &str) {
        self.state().start_failures.insert(program.to_owned(), message.to_owned());
    }

    /// `exec_sync` of a command whose first word is `program` exits with `code`.
    pub fn set_exec_exit_code(&self, program: &str, code: i32) {
        self.state().exec_exit_codes.insert(program.to_owned(), code);
    }

    /// The container's process ends with `exit_code`, as if it crashed or finished.
    pub fn exit_container(&self, container_id: &str, exit_code: i32, reason: &str) {
        if let Some(status) = self.state().containers.get_mut(container_id) {
            status.state = ContainerState::ContainerExited as i32;
            status.exit_code = exit_code;
            status.finished_at = now_nanos();
            status.reason = reason.to_owned();
        }
    }

    /// Images pulled so far, in order.
    pub fn pulls(&self) -> Vec<String> {
        self.state().pulls.clone()
    }

    /// Every call so far, as `Operation name-or-id`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Running containers whose metadata name is `name`.
    pub fn running_named(&self, name: &str) -> Vec<String> {
        let state = self.state();
        state
            .containers
            .iter()
            .filter(|(_, s)| s.state == ContainerState::ContainerRunning as i32 && s.metadata.as_ref().is_some_and(|m| m.name == name))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<(String, String), CriError> {
        Ok(("fake".into(), "0.0.0".into()))
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String, CriError> {
        let mut state = self.state();
        state.next_id += 1;
        let id = format!("sandbox-{}", state.next_id);
        let ip = format!("10.88.0.{}", state.next_id % 250 + 2);
        state.calls.push(format!("RunPodSandbox {}", config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default()));
        let status = api::PodSandboxStatus {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: PodSandboxState::SandboxReady as i32,
            created_at: now_nanos(),
            network: Some(api::PodSandboxNetworkStatus { ip, additional_ips: vec![] }),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            ..Default::default()
        };
        state.sandboxes.insert(id.clone(), status);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut state = self.state();
        state.calls.push(format!("StopPodSandbox {sandbox_id}"));
        let containers: Vec<String> = state.container_sandbox.iter().filter(|(_, s)| *s == sandbox_id).map(|(c, _)| c.clone()).collect();
        for id in containers {
            if let Some(status) = state.containers.get_mut(&id) {
                if status.state == ContainerState::ContainerRunning as i32 {
                    status.state = ContainerState::ContainerExited as i32;
                    status.exit_code = 137;
                    status.finished_at = now_nanos();
                }
            }
        }
        if let Some(sandbox) = state.sandboxes.get_mut(sandbox_id) {
            sandbox.state = PodSandboxState::SandboxNotready as i32;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut state = self.state();
        state.calls.push(format!("RemovePodSandbox {sandbox_id}"));
        state.sandboxes.remove(sandbox_id);
        let containers: Vec<String> = state.container_sandbox.iter().filter(|(_, s)| *s == sandbox_id).map(|(c, _)| c.clone()).collect();
        for id in containers {
            state.containers.remove(&id);
            state.container_sandbox.remove(&id);
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<api::PodSandboxStatus, CriError> {
        self.state().sandboxes.get(sandbox_id).cloned().ok_or_else(|| CriError::NotFound(format!("sandbox {sandbox_id}")))
    }

    async fn list_pod_sandboxes(&self, _filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>, CriError> {
        Ok(self
            .state()
            .sandboxes
            .values()
            .map(|s| api::PodSandbox {
                id: s.id.clone(),
                metadata: s.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(&self, sandbox_id: &str, config: api::ContainerConfig, _sandbox_config: api::PodSandboxConfig) -> Result<String, CriError> {
        let mut state = self.state();
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(CriError::NotFound(format!("sandbox {sandbox_id}")));
        }
        state.next_id += 1;
        let id = format!("container-{}", state.next_id);
        state.calls.push(format!("CreateContainer {}", config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default()));
        let image = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        let status = api::ContainerStatus {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: ContainerState::ContainerCreated as i32,
            created_at: now_nanos(),
            image: config.image.clone(),
            image_ref: format!("sha256:{image}"),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            log_path: config.log_path.clone(),
            ..Default::default()
        };
        state.containers.insert(id.clone(), status);
        state.container_sandbox.insert(id.clone(), sandbox_id.to_owned());
        // Remember the command so start failures can be scripted by program name.
        if let Some(program) = config.command.first().or(config.args.first()) {
            if let Some(message) = state.start_failures.get(program).cloned() {
                if let Some(status) = state.containers.get_mut(&id) {
                    status.message = message;
                }
            }
        }
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), CriError> {
        let mut state = self.state();
        state.calls.push(format!("StartContainer {container_id}"));
        let status = state.containers.get_mut(container_id).ok_or_else(|| CriError::NotFound(format!("container {container_id}")))?;
        if !status.message.is_empty() {
            let message = status.message.clone();
            status.state = ContainerState::ContainerExited as i32;
            status.exit_code = 128;
            status.reason = "StartError".into();
            status.finished_at = now_nanos();
            return Err(CriError::Failed { operation: "StartContainer", message });
        }
        status.state = ContainerState::ContainerRunning as i32;
        status.started_at = now_nanos();
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, _timeout_seconds: i64) -> Result<(), CriError> {
        let mut state = self.state();
        state.calls.push(format!("StopContainer {container_id}"));
        if let Some(status) = state.containers.get_mut(container_id) {
            if status.state == ContainerState::ContainerRunning as i32 {
                status.state = ContainerState::ContainerExited as i32;
                status.exit_code = 143;
                status.finished_at = now_nanos();
            }
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), CriError> {
        let mut state = self.state();
        state.calls.push(format!("RemoveContainer {container_id}"));
        state.containers.remove(container_id);
        state.container_sandbox.remove(container_id);
        Ok(())
    }

    async fn list_containers(&self, _filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>, CriError> {
        let state = self.state();
        Ok(state
            .containers
            .values()
            .map(|s| api::Container {
                id: s.id.clone(),
                pod_sandbox_id: state.container_sandbox.get(&s.id).cloned().unwrap_or_default(),
                metadata: s.metadata.clone(),
                image: s.image.clone(),
                image_ref: s.image_ref.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
                ..Default::default()
            })
            .collect())
    }

    async fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus, CriError> {
        self.state().containers.get(container_id).cloned().ok_or_else(|| CriError::NotFound(format!("container {container_id}")))
    }

    async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>, CriError> {
        Ok(Vec::new())
    }

    async fn exec_sync(&self, container_id: &str, command: Vec<String>, _timeout_seconds: i64) -> Result<ExecOutput, CriError> {
        let state = self.state();
        let running = state.containers.get(container_id).is_some_and(|s| s.state == ContainerState::ContainerRunning as i32);
        if !running {
            return Err(CriError::Failed { operation: "ExecSync", message: format!("container {container_id} is not running") });
        }
        let exit_code = command.first().and_then(|program| state.exec_exit_codes.get(program)).copied().unwrap_or(0);
        Ok(ExecOutput { exit_code, ..Default::default() })
    }

    async fn exec(&self, request: api::ExecRequest) -> Result<String, CriError> {
        Ok(format!("http://127.0.0.1:1/exec/{}", request.container_id))
    }

    async fn attach(&self, request: api::AttachRequest) -> Result<String, CriError> {
        Ok(format!("http://127.0.0.1:1/attach/{}", request.container_id))
    }

    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String, CriError> {
        Ok(format!("http://127.0.0.1:1/portforward/{}", request.pod_sandbox_id))
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        let state = self.state();
        Ok(state.images.contains(image).then(|| api::Image { id: format!("sha256:{image}"), repo_tags: vec![image.to_owned()], ..Default::default() }))
    }

    async fn pull_image(&self, image: &str, _auth: Option<api::AuthConfig>, _sandbox_config: Option<api::PodSandboxConfig>) -> Result<String, CriError> {
        let mut state = self.state();
        state.pulls.push(image.to_owned());
        if let Some(message) = state.pull_failures.get(image) {
            return Err(CriError::Failed { operation: "PullImage", message: message.clone() });
        }
        state.images.insert(image.to_owned());
        Ok(format!("sha256:{image}"))
    }

    async fn list_images(&self) -> Result<Vec<api::Image>, CriError> {
        Ok(self.state().images.iter().map(|i| api::Image { id: format!("sha256:{i}"), repo_tags: vec![i.clone()], ..Default::default() }).collect())
    }
}
