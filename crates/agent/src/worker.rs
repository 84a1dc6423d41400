//! One task per pod: a level-based reconcile of what the Pod asks for against what the runtime
//! runs — sandbox, init containers in order, containers with their restart policy and back-off,
//! probes and hooks — then the pod's status; and, when the pod is deleted, graceful termination.

use crate::backoff::{Backoff, RESET_AFTER_RUNNING};
use crate::events::EventType;
use crate::images::PullFailure;
use crate::pleg::POD_UID_LABEL;
use crate::probes::{Action, ProbeManager, Target};
use crate::spec::{self, ContainerInputs, CONTAINER_HASH_ANNOTATION, CONTAINER_NAME_LABEL};
use crate::status::{self, ContainerView};
use crate::{AgentError, Context};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Secret};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{watch, Notify};
use tugboat_cri::api::{ContainerFilter, ContainerState, ContainerStatus, PodSandbox, PodSandboxFilter, PodSandboxState};
use tugboat_podinputs::{ObjectSource, PodFacts, PodVolumes, SourceError};

/// Mounted config (ConfigMaps, Secrets, downward API) is refreshed this often.
const VOLUME_RESYNC: Duration = Duration::from_secs(10);
/// A failed step (mount, sandbox, config) is retried after this long.
const RETRY: Duration = Duration::from_secs(5);
/// Where a pod gone from the API (force-deleted) is given to stop.
const ORPHAN_GRACE_SECONDS: i64 = 2;

/// The runtime's view of one pod.
#[derive(Default)]
struct Observed {
    /// Newest first.
    sandboxes: Vec<PodSandbox>,
    /// Per container name, newest instance (highest attempt) first.
    containers: HashMap<String, Vec<ContainerStatus>>,
}

impl Observed {
    fn ready_sandbox(&self) -> Option<&PodSandbox> {
        self.sandboxes.iter().find(|s| s.state == PodSandboxState::SandboxReady as i32)
    }

    fn instances(&self, name: &str) -> &[ContainerStatus] {
        self.containers.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    fn running(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.containers.values().flatten().filter(|c| is_running(c))
    }
}

fn is_running(status: &ContainerStatus) -> bool {
    status.state == ContainerState::ContainerRunning as i32
}

fn is_exited(status: &ContainerStatus) -> bool {
    status.state == ContainerState::ContainerExited as i32
}

/// Whether `after` differs from `before` only in status and bookkeeping (resourceVersion,
/// managedFields): nothing a sync acts on.
fn only_status_changed(before: Option<&Pod>, after: Option<&Pod>) -> bool {
    match (before, after) {
        (Some(before), Some(after)) => {
            let meta = |pod: &Pod| (pod.metadata.uid.clone(), pod.metadata.labels.clone(), pod.metadata.annotations.clone(), pod.metadata.deletion_timestamp.clone(), pod.metadata.deletion_grace_period_seconds);
            before.spec == after.spec && meta(before) == meta(after) && status_phase(before) == status_phase(after)
        }
        _ => false,
    }
}

fn status_phase(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.phase.clone())
}

fn system_time(nanos: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64)
}

fn container_field_path(pod: &Pod, name: &str) -> String {
    let init = spec::spec(pod).init_containers.unwrap_or_default().iter().any(|c| c.name == name);
    if init { format!("spec.initContainers{{{name}}}") } else { format!("spec.containers{{{name}}}") }
}

/// ConfigMaps, Secrets and volumes, read from the API server when a pod needs them.
struct ApiObjects<'a>(&'a crate::ApiClient);

fn source_error(error: tugboat_client::ClientError) -> SourceError {
    SourceError(error.to_string())
}

#[async_trait::async_trait]
impl ObjectSource for ApiObjects<'_> {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, SourceError> {
        self.0.get_opt(&format!("/api/v1/namespaces/{namespace}/configmaps/{name}")).await.map_err(source_error)
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
        self.0.get_opt(&format!("/api/v1/namespaces/{namespace}/secrets/{name}")).await.map_err(source_error)
    }
    async fn persistent_volume_claim(&self, namespace: &str, name: &str) -> Result<Option<k8s_openapi::api::core::v1::PersistentVolumeClaim>, SourceError> {
        self.0.get_opt(&format!("/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")).await.map_err(source_error)
    }
    async fn persistent_volume(&self, name: &str) -> Result<Option<k8s_openapi::api::core::v1::PersistentVolume>, SourceError> {
        self.0.get_opt(&format!("/api/v1/persistentvolumes/{name}")).await.map_err(source_error)
    }
}

pub struct Worker {
    context: Arc<Context>,
    uid: String,
    pods: watch::Receiver<Option<Pod>>,
    wake: Arc<Notify>,
    probes: ProbeManager,
    restart_backoff: HashMap<String, Backoff>,
    /// Why a container is not running, found during this sync.
    waiting: HashMap<String, (String, String)>,
    volumes: Option<(PodVolumes, Instant)>,
    last_status: Option<Value>,
    /// The earliest moment a timer (back-off, retry) asks for another sync.
    wake_at: Option<Instant>,
}

impl Worker {
    pub fn new(context: Arc<Context>, uid: String, pods: watch::Receiver<Option<Pod>>, wake: Arc<Notify>) -> Self {
        Self {
            context,
            uid,
            pods,
            wake,
            probes: ProbeManager::default(),
            restart_backoff: HashMap::new(),
            waiting: HashMap::new(),
            volumes: None,
            last_status: None,
            wake_at: None,
        }
    }

    fn wake_in(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.wake_at = Some(self.wake_at.map_or(at, |current| current.min(at)));
    }

    fn wake_at_time(&mut self, at: SystemTime) {
        self.wake_in(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO) + Duration::from_millis(10));
    }

    /// Runs until the pod is gone from the API and from the runtime.
    pub async fn run(mut self) {
        loop {
            let pod = self.pods.borrow_and_update().clone();
            self.wake_at = None;
            let finished = match &pod {
                Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                    if let Err(error) = self.sync(pod).await {
                        tracing::warn!(pod = %self.uid, %error, "cannot sync the pod; retrying");
                        self.wake_in(RETRY);
                    }
                    false
                }
                _ => match self.terminate(pod.as_ref()).await {
                    Ok(()) => pod.is_none(),
                    Err(error) => {
                        tracing::warn!(pod = %self.uid, %error, "cannot stop the pod; retrying");
                        self.wake_in(Duration::from_secs(1));
                        false
                    }
                },
            };
            if finished {
                return;
            }
            // Level-based: any change (or timer) makes a full sync — but not the echo of the
            // agent's own status write.
            let resync = tokio::time::sleep_until(self.wake_at.map(tokio::time::Instant::from_std).unwrap_or_else(|| tokio::time::Instant::now() + VOLUME_RESYNC));
            tokio::pin!(resync);
            loop {
                tokio::select! {
                    changed = self.pods.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !only_status_changed(pod.as_ref(), self.pods.borrow().as_ref()) {
                            break;
                        }
                    }
                    _ = self.wake.notified() => break,
                    _ = &mut resync => break,
                }
            }
        }
    }

    async fn observe(&self) -> Result<Observed, AgentError> {
        let selector = HashMap::from([(POD_UID_LABEL.to_owned(), self.uid.clone())]);
        let runtime = &self.context.runtime;
        let mut sandboxes = runtime.list_pod_sandboxes(Some(PodSandboxFilter { label_selector: selector.clone(), ..Default::default() })).await?;
        sandboxes.retain(|s| s.labels.get(POD_UID_LABEL) == Some(&self.uid));
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let listed = runtime.list_containers(Some(ContainerFilter { label_selector: selector, ..Default::default() })).await?;
        let mut containers: HashMap<String, Vec<ContainerStatus>> = HashMap::new();
        for container in listed.into_iter().filter(|c| c.labels.get(POD_UID_LABEL) == Some(&self.uid)) {
            match runtime.container_status(&container.id).await {
                Ok(status) => {
                    let name = container.labels.get(CONTAINER_NAME_LABEL).cloned().unwrap_or_default();
                    containers.entry(name).or_default().push(status);
                }
                // Removed between the list and the status call.
                Err(tugboat_cri::CriError::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        for instances in containers.values_mut() {
            instances.sort_by_key(|c| std::cmp::Reverse((c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), c.created_at)));
        }
        Ok(Observed { sandboxes, containers })
    }

    fn log_directory(&self, pod: &Pod) -> PathBuf {
        self.context.logs_dir().join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            self.uid
        ))
    }

    fn facts(&self, pod: &Pod, pod_ip: &str) -> PodFacts {
        PodFacts {
            node_name: self.context.config.node_name.clone(),
            host_ip: self.context.config.node_ip.to_string(),
            pod_ips: if pod_ip.is_empty() { vec![] } else { vec![pod_ip.to_owned()] },
            service_account_name: spec::spec(pod).service_account_name.unwrap_or_else(|| "default".into()),
            node_allocatable_cpu_millis: self.context.node.cpu_millis,
            node_allocatable_memory_bytes: self.context.node.memory_bytes,
        }
    }

    async fn sync(&mut self, pod: &Pod) -> Result<(), AgentError> {
        let pod_spec = spec::spec(pod);
        let restart_policy = pod_spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        self.waiting.clear();
        let mut observed = self.observe().await?;

        let terminal = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        if terminal {
            // A finished pod keeps its containers (for logs) but not its sandbox.
            if let Some(sandbox) = observed.ready_sandbox() {
                self.context.runtime.stop_pod_sandbox(&sandbox.id).await?;
            }
            return self.report(pod, &observed, "").await;
        }

        // Volumes first: no container starts without them.
        let stale = self.volumes.as_ref().is_none_or(|(_, at)| at.elapsed() >= VOLUME_RESYNC);
        if stale {
            let pod_ip = observed.ready_sandbox().map(|_| ()).and(pod.status.as_ref().and_then(|s| s.pod_ip.clone())).unwrap_or_default();
            let facts = self.facts(pod, &pod_ip);
            match self.context.volumes.setup(pod, &facts, &ApiObjects(&self.context.api)).await {
                Ok(volumes) => self.volumes = Some((volumes, Instant::now())),
                Err(error) => {
                    self.context.events.pod(pod, None, EventType::Warning, "FailedMount", error.to_string());
                    if self.volumes.is_none() {
                        self.wake_in(RETRY);
                        return self.report(pod, &observed, "").await;
                    }
                }
            }
        }

        // The sandbox: the pod's network and namespaces.
        if observed.ready_sandbox().is_none() {
            let already_ran = observed.containers.values().flatten().any(|c| c.started_at > 0);
            if already_ran && restart_policy == "Never" {
                // Kubelet does not restart the sandbox of a pod that must not restart.
                return self.report(pod, &observed, "").await;
            }
            self.kill_containers(pod, &observed, 0).await;
            for sandbox in &observed.sandboxes {
                self.context.runtime.stop_pod_sandbox(&sandbox.id).await?;
            }
            let attempt = observed.sandboxes.len() as u32;
            let log_directory = self.log_directory(pod);
            std::fs::create_dir_all(&log_directory).map_err(|e| AgentError::io(&log_directory, e))?;
            let config = spec::sandbox_config(pod, attempt, &log_directory.to_string_lossy());
            if let Err(error) = self.context.runtime.run_pod_sandbox(config).await {
                self.context.events.pod(pod, None, EventType::Warning, "FailedCreatePodSandBox", format!("Failed to create pod sandbox: {error}"));
                self.wake_in(RETRY);
                return self.report(pod, &observed, "").await;
            }
            if attempt > 0 {
                self.context.events.pod(pod, None, EventType::Normal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.".into());
            }
            observed = self.observe().await?;
        }
        let Some(sandbox) = observed.ready_sandbox().cloned() else {
            self.wake_in(RETRY);
            return self.report(pod, &observed, "").await;
        };
        let pod_ip = self.pod_ip(pod, &sandbox.id).await;
        let sandbox_config = spec::sandbox_config(pod, sandbox.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), &self.log_directory(pod).to_string_lossy());
        self.write_etc_hosts(pod, &pod_ip)?;

        // Init containers, one at a time, each to completion.
        let mut initialized = true;
        for container in pod_spec.init_containers.iter().flatten() {
            let instances = observed.instances(&container.name).to_vec();
            match instances.first() {
                Some(latest) if is_exited(latest) && latest.exit_code == 0 => continue,
                Some(latest) if is_exited(latest) => {
                    if restart_policy != "Never" {
                        self.restart_after_backoff(pod, container, latest, &sandbox.id, &sandbox_config, &pod_ip).await;
                    }
                }
                Some(latest) if latest.state == ContainerState::ContainerCreated as i32 => {
                    self.start_created(pod, container, latest).await;
                }
                Some(_) => {}
                None => self.start_container(pod, container, 0, &sandbox.id, &sandbox_config, &pod_ip).await,
            }
            initialized = false;
            break;
        }

        if initialized {
            for container in &pod_spec.containers {
                self.sync_container(pod, container, &observed, &restart_policy, &sandbox.id, &sandbox_config, &pod_ip).await;
            }
        }
        let observed = self.observe().await?;
        self.report(pod, &observed, &pod_ip).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_container(
        &mut self,
        pod: &Pod,
        container: &Container,
        observed: &Observed,
        restart_policy: &str,
        sandbox_id: &str,
        sandbox_config: &tugboat_cri::api::PodSandboxConfig,
        pod_ip: &str,
    ) {
        let instances = observed.instances(&container.name);
        let Some(latest) = instances.first().cloned() else {
            return self.start_container(pod, container, 0, sandbox_id, sandbox_config, pod_ip).await;
        };
        let grace = spec::spec(pod).termination_grace_period_seconds.unwrap_or(30);
        if is_running(&latest) {
            let probes = self.probes.state(&container.name, &latest.id);
            let changed = latest.annotations.get(CONTAINER_HASH_ANNOTATION).is_some_and(|hash| *hash != spec::container_hash(container));
            let reason = match (probes.and_then(|p| p.failed), changed) {
                (Some(message), _) => Some(message),
                (None, true) => Some(format!("Container {} definition changed, will be restarted", container.name)),
                (None, false) => None,
            };
            match reason {
                Some(message) => {
                    self.probes.stop(&container.name);
                    self.context.events.pod(pod, Some(container_field_path(pod, &container.name)), EventType::Normal, "Killing", message);
                    self.stop_one(pod, container, &latest, grace).await;
                    // The exit is seen by the next sync, which restarts the container.
                    self.wake_in(Duration::ZERO);
                }
                None => self.probes.ensure(&self.context, pod, Target { container_id: latest.id.clone(), pod_ip: pod_ip.to_owned(), container: container.clone() }, &self.wake),
            }
            return;
        }
        if latest.state == ContainerState::ContainerCreated as i32 {
            return self.start_created(pod, container, &latest).await;
        }
        if !is_exited(&latest) {
            return;
        }
        self.probes.stop(&container.name);
        let restart = match restart_policy {
            "Always" => true,
            "OnFailure" => latest.exit_code != 0,
            _ => false,
        };
        if restart {
            self.restart_after_backoff(pod, container, &latest, sandbox_id, sandbox_config, pod_ip).await;
        }
    }

    /// Restarts an exited container unless its back-off is still running.
    async fn restart_after_backoff(
        &mut self,
        pod: &Pod,
        container: &Container,
        latest: &ContainerStatus,
        sandbox_id: &str,
        sandbox_config: &tugboat_cri::api::PodSandboxConfig,
        pod_ip: &str,
    ) {
        let backoff = self.restart_backoff.entry(container.name.clone()).or_default();
        let finished = system_time(latest.finished_at.max(latest.created_at));
        if latest.started_at > 0 && latest.finished_at - latest.started_at >= RESET_AFTER_RUNNING.as_nanos() as i64 {
            backoff.reset();
        }
        let retry_at = backoff.retry_at(finished);
        if retry_at > SystemTime::now() {
            let delay = backoff.delay().as_secs();
            let (name, namespace) = (pod.metadata.name.as_deref().unwrap_or_default(), pod.metadata.namespace.as_deref().unwrap_or_default());
            let message = format!("back-off {delay}s restarting failed container={} pod={name}_{namespace}({})", container.name, self.uid);
            self.waiting.insert(container.name.clone(), ("CrashLoopBackOff".into(), message));
            let event = format!("Back-off restarting failed container {} in pod {name}_{namespace}({})", container.name, self.uid);
            self.context.events.pod(pod, Some(container_field_path(pod, &container.name)), EventType::Warning, "BackOff", event);
            self.wake_at_time(retry_at);
            return;
        }
        backoff.step();
        let attempt = latest.metadata.as_ref().map(|m| m.attempt + 1).unwrap_or(1);
        self.start_container(pod, container, attempt, sandbox_id, sandbox_config, pod_ip).await;
    }

    /// A container created but never started (the agent stopped in between): start it now.
    async fn start_created(&mut self, pod: &Pod, container: &Container, instance: &ContainerStatus) {
        if let Err(error) = self.context.runtime.start_container(&instance.id).await {
            self.failed(pod, container, "RunContainerError", error.to_string());
        }
    }

    fn failed(&mut self, pod: &Pod, container: &Container, reason: &str, message: String) {
        self.context.events.pod(pod, Some(container_field_path(pod, &container.name)), EventType::Warning, "Failed", format!("Error: {message}"));
        self.waiting.insert(container.name.clone(), (reason.to_owned(), message));
        self.wake_in(RETRY);
    }

    async fn pull_secrets(&self, pod: &Pod) -> Vec<Secret> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut secrets = Vec::new();
        for reference in spec::spec(pod).image_pull_secrets.unwrap_or_default() {
            let path = format!("/api/v1/namespaces/{namespace}/secrets/{}", reference.name);
            if let Ok(Some(secret)) = self.context.api.get_opt::<Secret>(&path).await {
                secrets.push(secret);
            }
        }
        secrets
    }

    async fn start_container(&mut self, pod: &Pod, container: &Container, attempt: u32, sandbox_id: &str, sandbox_config: &tugboat_cri::api::PodSandboxConfig, pod_ip: &str) {
        let field_path = container_field_path(pod, &container.name);
        let context = self.context.clone();
        let secrets = self.pull_secrets(pod).await;
        let image_ref = match context.images.ensure(context.runtime.as_ref(), &context.events, pod, container, &field_path, &secrets).await {
            Ok(reference) => reference,
            Err(PullFailure { reason, message }) => {
                match context.images.retry_at(container.image.as_deref().unwrap_or_default()) {
                    // As kubelet: ErrImagePull for a moment, then ImagePullBackOff until the retry.
                    Some(_) if reason == "ErrImagePull" => self.wake_in(Duration::from_secs(1)),
                    Some(at) => self.wake_at_time(at),
                    None => self.wake_in(RETRY),
                }
                self.waiting.insert(container.name.clone(), (reason.to_owned(), message));
                return;
            }
        };
        let facts = self.facts(pod, pod_ip);
        let envs = match tugboat_podinputs::container_env(pod, container, &facts, &ApiObjects(&context.api)).await {
            Ok(envs) => envs,
            Err(error) => return self.failed(pod, container, "CreateContainerConfigError", error.to_string()),
        };
        let Some((volumes, _)) = &self.volumes else {
            return self.failed(pod, container, "CreateContainerConfigError", "the pod's volumes are not set up yet".into());
        };
        let mut mounts = match tugboat_podinputs::container_mounts_with_env(pod, container, volumes, &envs) {
            Ok(mounts) => mounts,
            Err(error) => return self.failed(pod, container, "CreateContainerConfigError", error.to_string()),
        };
        match self.runtime_files(pod, container, attempt) {
            Ok(files) => mounts.extend(files),
            Err(error) => return self.failed(pod, container, "CreateContainerConfigError", error.to_string()),
        }
        let config = spec::container_config(pod, container, ContainerInputs { image_ref, envs, mounts, attempt });
        let id = match context.runtime.create_container(sandbox_id, config, sandbox_config.clone()).await {
            Ok(id) => id,
            Err(error) => return self.failed(pod, container, "CreateContainerError", error.runtime_message()),
        };
        context.events.pod(pod, Some(field_path.clone()), EventType::Normal, "Created", format!("Created container {}", container.name));
        if let Err(error) = context.runtime.start_container(&id).await {
            return self.failed(pod, container, "RunContainerError", error.runtime_message());
        }
        context.events.pod(pod, Some(field_path.clone()), EventType::Normal, "Started", format!("Started container {}", container.name));
        self.remove_old_instances(&container.name, attempt).await;

        let post_start = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref());
        if let Some(handler) = post_start {
            let target = Target { container_id: id.clone(), pod_ip: pod_ip.to_owned(), container: container.clone() };
            let grace = spec::spec(pod).termination_grace_period_seconds.unwrap_or(30);
            if let Err(message) = run_hook(&context, &target, handler, Duration::from_secs(grace.max(1) as u64)).await {
                let text = format!("PostStartHook failed: {message}");
                context.events.pod(pod, Some(field_path.clone()), EventType::Warning, "FailedPostStartHook", text.clone());
                context.events.pod(pod, Some(field_path), EventType::Normal, "Killing", format!("FailedPostStartHook: {text}"));
                if let Err(error) = context.runtime.stop_container(&id, grace).await {
                    tracing::warn!(%error, "cannot stop a container whose postStart hook failed");
                }
            }
        }
    }

    /// Keeps the newest dead instance of a container (for `logs --previous` and lastState).
    async fn remove_old_instances(&self, name: &str, attempt: u32) {
        let Ok(observed) = self.observe().await else { return };
        for old in observed.instances(name).iter().filter(|c| c.metadata.as_ref().is_some_and(|m| m.attempt + 1 < attempt)) {
            if let Err(error) = self.context.runtime.remove_container(&old.id).await {
                tracing::debug!(%error, "cannot remove an old container instance");
            }
        }
    }

    /// /etc/hosts and the termination-message file, which the agent provides to every container.
    fn runtime_files(&self, pod: &Pod, container: &Container, attempt: u32) -> Result<Vec<tugboat_cri::api::Mount>, AgentError> {
        let mut mounts = Vec::new();
        let pod_dir = self.context.volumes.pod_dir(&self.uid);
        let in_mounts = |path: &str| container.volume_mounts.iter().flatten().any(|m| m.mount_path == path);
        if spec::spec(pod).host_network != Some(true) && !in_mounts("/etc/hosts") {
            mounts.push(tugboat_cri::api::Mount { container_path: "/etc/hosts".into(), host_path: pod_dir.join("etc-hosts").to_string_lossy().into_owned(), ..Default::default() });
        }
        let message_path = container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        if !in_mounts(&message_path) {
            let host = termination_log(&pod_dir, &container.name, attempt);
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
            }
            std::fs::write(&host, b"").map_err(|e| AgentError::io(&host, e))?;
            mounts.push(tugboat_cri::api::Mount { container_path: message_path, host_path: host.to_string_lossy().into_owned(), ..Default::default() });
        }
        Ok(mounts)
    }

    fn write_etc_hosts(&self, pod: &Pod, pod_ip: &str) -> Result<(), AgentError> {
        let pod_spec = spec::spec(pod);
        let mut text = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        if !pod_ip.is_empty() {
            text.push_str(&format!("{pod_ip}\t{}\n", spec::hostname(pod)));
        }
        for alias in pod_spec.host_aliases.unwrap_or_default() {
            text.push_str(&format!("\n# Entries added by HostAliases.\n{}\t{}\n", alias.ip, alias.hostnames.unwrap_or_default().join("\t")));
        }
        let dir = self.context.volumes.pod_dir(&self.uid);
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        let path = dir.join("etc-hosts");
        if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
            return Ok(());
        }
        std::fs::write(&path, text).map_err(|e| AgentError::io(&path, e))
    }

    async fn pod_ip(&self, pod: &Pod, sandbox_id: &str) -> String {
        if spec::spec(pod).host_network == Some(true) {
            return self.context.config.node_ip.to_string();
        }
        match self.context.runtime.pod_sandbox_status(sandbox_id).await {
            Ok(status) => status.network.map(|n| n.ip).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Runs the preStop hook, then stops the container within what is left of the grace period.
    async fn stop_one(&self, pod: &Pod, container: &Container, instance: &ContainerStatus, grace_seconds: i64) {
        stop_container(&self.context, pod, Some(container), instance, grace_seconds).await;
    }

    async fn kill_containers(&mut self, pod: &Pod, observed: &Observed, grace_seconds: i64) {
        self.probes.stop_all();
        let spec = spec::spec(pod);
        let stops = observed.running().map(|instance| {
            let name = instance.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            let container = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name).cloned();
            let context = self.context.clone();
            async move { stop_container(&context, pod, container.as_ref(), instance, grace_seconds).await }
        });
        futures::future::join_all(stops).await;
    }

    /// Stops everything of the pod; for a deleted Pod object, then removes it from the API.
    async fn terminate(&mut self, pod: Option<&Pod>) -> Result<(), AgentError> {
        let observed = self.observe().await?;
        let grace = match pod {
            Some(pod) => pod.metadata.deletion_grace_period_seconds.or(spec::spec(pod).termination_grace_period_seconds).unwrap_or(30),
            None => ORPHAN_GRACE_SECONDS,
        };
        let fallback = Pod::default();
        self.kill_containers(pod.unwrap_or(&fallback), &observed, grace).await;
        for sandbox in &observed.sandboxes {
            self.context.runtime.stop_pod_sandbox(&sandbox.id).await?;
            self.context.runtime.remove_pod_sandbox(&sandbox.id).await?;
        }
        self.context.volumes.teardown(&self.uid).await.map_err(|e| AgentError::Setup(e.to_string()))?;
        if let Some(pod) = pod {
            let log_directory = self.log_directory(pod);
            if let Err(error) = std::fs::remove_dir_all(&log_directory) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(%error, "cannot remove the pod's logs");
                }
            }
            let (namespace, name) = (pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default());
            let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}});
            match self.context.api.delete(&format!("/api/v1/namespaces/{namespace}/pods/{name}"), &options).await {
                Ok(()) => {}
                Err(error) if crate::api::is_gone(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    async fn report(&mut self, pod: &Pod, observed: &Observed, pod_ip: &str) -> Result<(), AgentError> {
        let pod_spec = spec::spec(pod);
        let pod_dir = self.context.volumes.pod_dir(&self.uid);
        let view = |container: &Container, probes: &ProbeManager, waiting: &HashMap<String, (String, String)>| {
            let instances = observed.instances(&container.name);
            let latest = instances.first().cloned();
            let probe = latest.as_ref().and_then(|l| probes.state(&container.name, &l.id));
            let running = latest.as_ref().is_some_and(is_running);
            let termination_message = latest.as_ref().filter(|l| is_exited(l)).and_then(|l| {
                let attempt = l.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
                read_termination_message(&termination_log(&pod_dir, &container.name, attempt), container, l)
            });
            ContainerView {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                latest,
                previous: instances.get(1).cloned(),
                waiting: waiting.get(&container.name).cloned(),
                // Until its probes are set up, a container with a probe has not passed it.
                ready: running && probe.as_ref().map_or(container.readiness_probe.is_none(), |p| p.ready),
                started: running && probe.as_ref().map_or(container.startup_probe.is_none(), |p| p.started),
                termination_message,
            }
        };
        let init: Vec<ContainerView> = pod_spec.init_containers.iter().flatten().map(|c| view(c, &self.probes, &self.waiting)).collect();
        let containers: Vec<ContainerView> = pod_spec.containers.iter().map(|c| view(c, &self.probes, &self.waiting)).collect();
        let restart_policy = pod_spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let phase = status::phase(&restart_policy, &init, &containers);
        let initialized = init.iter().all(status::init_succeeded);
        let ready = initialized && !containers.is_empty() && containers.iter().all(|c| c.ready);
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let init_statuses: Vec<Value> = init
            .iter()
            .map(|v| {
                let mut s = status::container_status(v, false);
                s["ready"] = status::init_succeeded(v).into();
                s
            })
            .collect();
        let container_statuses: Vec<Value> = containers.iter().map(|v| status::container_status(v, !initialized)).collect();
        let previous = pod.status.clone().unwrap_or_default();
        let pod_ip = if pod_ip.is_empty() { previous.pod_ip.clone().unwrap_or_default() } else { pod_ip.to_owned() };
        let host_ip = self.context.config.node_ip.to_string();
        let mut status = json!({
            "phase": phase,
            "conditions": status::conditions(pod, initialized, ready, &now),
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "startTime": previous.start_time.map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| now.clone()),
            "containerStatuses": container_statuses,
        });
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = init_statuses.into();
        }
        if !pod_ip.is_empty() {
            status["podIP"] = pod_ip.clone().into();
            status["podIPs"] = json!([{"ip": pod_ip}]);
        }
        if self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        let (namespace, name) = (pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default());
        let patch = json!({"metadata": {"uid": self.uid}, "status": status});
        match self.context.api.merge_patch(&format!("/api/v1/namespaces/{namespace}/pods/{name}/status"), &patch).await {
            Ok(_) => self.last_status = Some(patch["status"].clone()),
            Err(error) if crate::api::is_gone(&error) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }
}

fn termination_log(pod_dir: &std::path::Path, container: &str, attempt: u32) -> PathBuf {
    pod_dir.join("containers").join(container).join(format!("termination-{attempt}"))
}

/// The termination message: the file the container wrote, or with FallbackToLogsOnError and an
/// empty file after a failure, the end of its log (as kubelet: 80 lines, 2 KiB).
fn read_termination_message(path: &std::path::Path, container: &Container, instance: &ContainerStatus) -> Option<String> {
    const MAX_FILE: usize = 4096;
    const MAX_LOG: usize = 2048;
    let text = std::fs::read(path).ok().map(|bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_FILE)]).into_owned()).unwrap_or_default();
    if !text.is_empty() {
        return Some(text);
    }
    if container.termination_message_policy.as_deref() != Some("FallbackToLogsOnError") || instance.exit_code == 0 {
        return None;
    }
    let log = std::fs::read_to_string(&instance.log_path).ok()?;
    let lines: Vec<&str> = log.lines().filter_map(|l| l.splitn(4, ' ').nth(3)).collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    Some(tail[tail.len().saturating_sub(MAX_LOG)..].to_owned())
}

async fn run_hook(context: &Context, target: &Target, handler: &LifecycleHandler, timeout: Duration) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    let action = if let Some(exec) = &handler.exec {
        Action::Exec(exec)
    } else if let Some(http) = &handler.http_get {
        Action::HttpGet(http)
    } else if let Some(tcp) = &handler.tcp_socket {
        Action::TcpSocket(tcp)
    } else {
        return Ok(());
    };
    crate::probes::run_action(context, target, action, timeout).await
}

/// preStop (within the grace period), then SIGTERM and, after what is left of it, SIGKILL.
async fn stop_container(context: &Arc<Context>, pod: &Pod, container: Option<&Container>, instance: &ContainerStatus, grace_seconds: i64) {
    let started = Instant::now();
    let name = instance.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    if pod.metadata.uid.is_some() {
        context.events.pod(pod, Some(container_field_path(pod, &name)), EventType::Normal, "Killing", format!("Stopping container {name}"));
    }
    if let Some(container) = container {
        if let Some(handler) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
            let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
            let target = Target { container_id: instance.id.clone(), pod_ip, container: container.clone() };
            if let Err(message) = run_hook(context, &target, handler, Duration::from_secs(grace_seconds.max(1) as u64)).await {
                let text = format!("PreStopHook failed: {message}");
                context.events.pod(pod, Some(container_field_path(pod, &name)), EventType::Warning, "FailedPreStopHook", text);
            }
        }
    }
    let remaining = (grace_seconds - started.elapsed().as_secs() as i64).max(0);
    if let Err(error) = context.runtime.stop_container(&instance.id, remaining).await {
        tracing::warn!(%error, container = %instance.id, "cannot stop a container");
    }
}
