//! Liveness, readiness and startup probes, and the exec/httpGet/tcpSocket actions that probes and
//! lifecycle hooks share.

use crate::events::EventType;
use crate::Context;
use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Pod, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What a probe action needs to reach its container.
#[derive(Clone)]
pub struct Target {
    pub container_id: String,
    pub pod_ip: String,
    pub container: Container,
}

/// One action of a probe or hook.
pub enum Action<'a> {
    Exec(&'a ExecAction),
    HttpGet(&'a HTTPGetAction),
    TcpSocket(&'a TCPSocketAction),
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).map_err(|_| format!("invalid port {number}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port name {name:?} not found in the container's ports")),
    }
}

/// Runs one action with a deadline. Ok = success; Err carries what to tell the user.
pub async fn run_action(context: &Context, target: &Target, action: Action<'_>, timeout: Duration) -> Result<(), String> {
    match action {
        Action::Exec(exec) => {
            let command = exec.command.clone().unwrap_or_default();
            let seconds = timeout.as_secs().max(1) as i64;
            let output = tokio::time::timeout(timeout + Duration::from_secs(1), context.runtime.exec_sync(&target.container_id, command.clone(), seconds))
                .await
                .map_err(|_| format!("command {command:?} timed out after {}s", timeout.as_secs()))?
                .map_err(|e| e.to_string())?;
            if output.exit_code == 0 {
                Ok(())
            } else {
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                Err(if text.trim().is_empty() { format!("command {command:?} exited with {}", output.exit_code) } else { text.trim().to_owned() })
            }
        }
        Action::HttpGet(http) => {
            let port = resolve_port(&http.port, &target.container)?;
            let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
            if http.scheme.as_deref() == Some("HTTPS") {
                return Err("HTTPS probes and hooks are not supported by this agent yet; use HTTP or exec".into());
            }
            let path = http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
            tokio::time::timeout(timeout, http_get(&host, port, &path, http.http_headers.as_deref().unwrap_or_default()))
                .await
                .map_err(|_| format!("Get \"http://{host}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))?
        }
        Action::TcpSocket(tcp) => {
            let port = resolve_port(&tcp.port, &target.container)?;
            let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| format!("dial tcp {host}:{port}: i/o timeout"))?
                .map(drop)
                .map_err(|e| format!("dial tcp {host}:{port}: connect: {e}"))
        }
    }
}

/// A GET with HTTP/1.1; success is a status from 200 to 399, as kubelet's probes judge.
async fn http_get(host: &str, port: u16, path: &str, headers: &[k8s_openapi::api::core::v1::HTTPHeader]) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let mut stream = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: connect: {e}"))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(&format!("{}: {}\r\n", header.name, header.value));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    // The status line is all a probe needs.
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let read = stream.read(&mut buffer).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

fn probe_action(probe: &Probe) -> Option<Action<'_>> {
    if let Some(exec) = &probe.exec {
        Some(Action::Exec(exec))
    } else if let Some(http) = &probe.http_get {
        Some(Action::HttpGet(http))
    } else {
        probe.tcp_socket.as_ref().map(Action::TcpSocket)
    }
}

/// Probe results of one container instance.
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub ready: bool,
    pub started: bool,
    /// Liveness or startup failed past its threshold: the container must be restarted.
    pub failed: Option<String>,
}

struct ContainerProbes {
    container_id: String,
    state: Arc<Mutex<ProbeState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// The probes of one pod's running containers, each container instance with its own tasks.
#[derive(Default)]
pub struct ProbeManager {
    containers: HashMap<String, ContainerProbes>,
}

impl ProbeManager {
    /// Starts the probes of a container instance (once per instance).
    pub fn ensure(&mut self, context: &Arc<Context>, pod: &Pod, target: Target, wake: &Arc<Notify>) {
        let name = target.container.name.clone();
        if self.containers.get(&name).is_some_and(|p| p.container_id == target.container_id) {
            return;
        }
        let container = &target.container;
        let state = Arc::new(Mutex::new(ProbeState {
            ready: container.readiness_probe.is_none(),
            started: container.startup_probe.is_none(),
            failed: None,
        }));
        let mut tasks = Vec::new();
        for (kind, probe) in [(Kind::Startup, &container.startup_probe), (Kind::Liveness, &container.liveness_probe), (Kind::Readiness, &container.readiness_probe)] {
            if let Some(probe) = probe.clone() {
                tasks.push(tokio::spawn(probe_loop(context.clone(), pod.clone(), target.clone(), kind, probe, state.clone(), wake.clone())));
            }
        }
        self.containers.insert(name, ContainerProbes { container_id: target.container_id, state, tasks });
    }

    /// Results for the container instance `container_id`; defaults for one without probes.
    pub fn state(&self, name: &str, container_id: &str) -> Option<ProbeState> {
        self.containers.get(name).filter(|p| p.container_id == container_id).map(|p| p.state.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    pub fn stop(&mut self, name: &str) {
        self.containers.remove(name);
    }

    pub fn stop_all(&mut self) {
        self.containers.clear();
    }
}

async fn probe_loop(context: Arc<Context>, pod: Pod, target: Target, kind: Kind, probe: Probe, state: Arc<Mutex<ProbeState>>, wake: Arc<Notify>) {
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let field_path = format!("spec.containers{{{}}}", target.container.name);
    tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        let started = state.lock().unwrap_or_else(|e| e.into_inner()).started;
        // Liveness and readiness wait for the startup probe to succeed.
        if kind == Kind::Startup || started {
            let result = match probe_action(&probe) {
                Some(action) => run_action(&context, &target, action, timeout).await,
                None => Err("the probe names no action (exec, httpGet or tcpSocket); gRPC probes are not supported".into()),
            };
            match result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                }
                Err(message) => {
                    failures += 1;
                    successes = 0;
                    context.events.pod(&pod, Some(field_path.clone()), EventType::Warning, "Unhealthy", format!("{} probe failed: {message}", kind.name()));
                    if failures >= failure_threshold && kind != Kind::Readiness {
                        let what = if kind == Kind::Liveness { "liveness" } else { "startup" };
                        state.lock().unwrap_or_else(|e| e.into_inner()).failed = Some(format!("Container {} failed {what} probe, will be restarted", target.container.name));
                        wake.notify_one();
                        return;
                    }
                }
            }
            let mut current = state.lock().unwrap_or_else(|e| e.into_inner());
            let before = (current.ready, current.started);
            match kind {
                Kind::Readiness if successes >= success_threshold => current.ready = true,
                Kind::Readiness if failures >= failure_threshold => current.ready = false,
                Kind::Startup if successes >= 1 => current.started = true,
                _ => {}
            }
            if before != (current.ready, current.started) {
                wake.notify_one();
            }
            if kind == Kind::Startup && current.started {
                return;
            }
        }
        tokio::time::sleep(period).await;
    }
}
