//! The Node object: registration with capacity and system facts, its Lease in `kube-node-lease`
//! renewed every 10 s, and status (conditions from real pressure checks) every 10 s.

use crate::{AgentConfig, AgentError, Context};
use serde_json::{json, Value};
use std::time::Duration;
use tugboat_cri::Runtime;

const HEARTBEAT: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i64 = 40;
/// Below these the node reports pressure (kubelet's default hard eviction thresholds).
const MEMORY_PRESSURE_BYTES: u64 = 100 * 1024 * 1024;
const DISK_PRESSURE_PERCENT: u64 = 10;

/// Facts about the machine, read once at start.
pub struct NodeFacts {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
    pub kernel_version: String,
    pub os_image: String,
    pub runtime_version: String,
    pub boot_id: String,
    pub machine_id: String,
    pub hostname: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// A `/proc/meminfo` field in bytes.
pub fn meminfo_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kib: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// (total, available) bytes of the filesystem holding `path`.
pub fn filesystem_bytes(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some((stat.f_blocks as u64 * block, stat.f_bavail as u64 * block))
}

impl NodeFacts {
    pub async fn gather(config: &AgentConfig, runtime: &dyn Runtime) -> Result<Self, AgentError> {
        let (name, version) = runtime.version().await?;
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64;
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os_image = os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".into());
        std::fs::create_dir_all(&config.data_dir).map_err(|e| AgentError::io(&config.data_dir, e))?;
        Ok(Self {
            cpu_millis: cpus * 1000,
            memory_bytes: meminfo_bytes("MemTotal").unwrap_or(0) as i64,
            ephemeral_storage_bytes: filesystem_bytes(&config.data_dir).map(|(total, _)| total).unwrap_or(0) as i64,
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image,
            runtime_version: format!("{name}://{version}"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            machine_id: read_trimmed("/etc/machine-id"),
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
        })
    }
}

fn resources(context: &Context) -> Value {
    let facts = &context.node;
    json!({
        "cpu": format!("{}m", facts.cpu_millis),
        "memory": format!("{}Ki", facts.memory_bytes / 1024),
        "ephemeral-storage": format!("{}Ki", facts.ephemeral_storage_bytes / 1024),
        "pods": context.config.max_pods.to_string(),
    })
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason, "message": message,
           "lastHeartbeatTime": now, "lastTransitionTime": now})
}

/// The node's status as measured now.
async fn status(context: &Context) -> Value {
    let facts = &context.node;
    let now = jiff::Timestamp::now().to_string();
    let runtime_up = context.runtime.version().await.is_ok();
    let memory_available = meminfo_bytes("MemAvailable").unwrap_or(u64::MAX);
    let disk = filesystem_bytes(&context.config.data_dir);
    let disk_pressure = disk.is_some_and(|(total, available)| total > 0 && available * 100 / total < DISK_PRESSURE_PERCENT);
    let pids_max: u64 = read_trimmed("/proc/sys/kernel/pid_max").parse().unwrap_or(u64::MAX);
    let pids = std::fs::read_dir("/proc").map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count() as u64).unwrap_or(0);
    let memory_pressure = memory_available < MEMORY_PRESSURE_BYTES;
    let pid_pressure = pids * 100 / pids_max.max(1) > 90;
    let ready = if runtime_up {
        condition("Ready", true, "KubeletReady", "kubelet is posting ready status", &now)
    } else {
        condition("Ready", false, "KubeletNotReady", "container runtime is down: the agent cannot reach containerd", &now)
    };
    json!({
        "capacity": resources(context),
        "allocatable": resources(context),
        "conditions": [
            if memory_pressure { condition("MemoryPressure", true, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available", &now) }
            else { condition("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", &now) },
            if disk_pressure { condition("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure", &now) }
            else { condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", &now) },
            if pid_pressure { condition("PIDPressure", true, "KubeletHasInsufficientPID", "kubelet has insufficient PID available", &now) }
            else { condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available", &now) },
            ready,
        ],
        "addresses": [
            {"type": "InternalIP", "address": context.config.node_ip.to_string()},
            {"type": "Hostname", "address": facts.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": context.config.port}},
        "nodeInfo": {
            "machineID": facts.machine_id, "systemUUID": facts.machine_id, "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version, "osImage": facts.os_image,
            "containerRuntimeVersion": facts.runtime_version,
            "kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0",
            "operatingSystem": "linux", "architecture": go_arch(),
        },
    })
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Creates the Node (or takes over the existing one of the same name) and reports its status.
pub async fn register(context: &Context) -> Result<Value, AgentError> {
    let name = &context.config.node_name;
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": go_arch(),
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": go_arch(),
        }},
    });
    match context.api.create("/api/v1/nodes", &node).await {
        Ok(_) => tracing::info!(node = %name, "registered the node"),
        Err(tugboat_client::ClientError::Status { code: http::StatusCode::CONFLICT, .. }) => tracing::info!(node = %name, "the node exists; taking it over"),
        Err(error) => return Err(error.into()),
    }
    let patched = context.api.merge_patch(&format!("/api/v1/nodes/{name}/status"), &json!({"status": status(context).await})).await?;
    Ok(patched)
}

/// Renews the Lease and reports status every [`HEARTBEAT`], forever.
pub async fn heartbeat(context: std::sync::Arc<Context>) {
    let name = context.config.node_name.clone();
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
    let mut ticker = tokio::time::interval(HEARTBEAT);
    loop {
        ticker.tick().await;
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let renewed = context.api.merge_patch(&lease_path, &json!({"spec": {"renewTime": now, "holderIdentity": name}})).await;
        if let Err(error) = renewed {
            if crate::api::is_gone(&error) {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now},
                });
                if let Err(error) = context.api.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", &lease).await {
                    tracing::warn!(%error, "cannot create the node lease");
                }
            } else {
                tracing::warn!(%error, "cannot renew the node lease");
            }
        }
        let update = context.api.merge_patch(&format!("/api/v1/nodes/{name}/status"), &json!({"status": status(&context).await})).await;
        match update {
            Err(error) if crate::api::is_gone(&error) => {
                // Someone deleted the Node: register again, as kubelet does.
                if let Err(error) = register(&context).await {
                    tracing::warn!(%error, "cannot re-register the node");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot update the node status"),
            Ok(_) => {}
        }
    }
}
