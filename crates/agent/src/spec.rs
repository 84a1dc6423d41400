//! From a Pod to CRI configurations: the sandbox (hostname, DNS, ports, namespaces, cgroup) and
//! each container (command, env, mounts, resources, security context, log file).

use crate::pleg::POD_UID_LABEL;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, SecurityContext};
use sha2::Digest;
use std::collections::HashMap;
use tugboat_cri::api::{
    Capability, ContainerConfig, ContainerMetadata, DnsConfig, Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PortMapping,
};

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Annotation with a hash of the container's spec: a changed spec (e.g. a new image) restarts it.
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
const CPU_PERIOD_MICROS: i64 = 100_000;

/// CRI's namespace modes.
const NAMESPACE_POD: i32 = 0;
const NAMESPACE_CONTAINER: i32 = 1;
const NAMESPACE_NODE: i32 = 2;

/// Kubelet's defaults for unprivileged containers: kernel files a container must not see or write.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
];
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (POD_UID_LABEL.to_owned(), pod.metadata.uid.clone().unwrap_or_default()),
        (POD_NAME_LABEL.to_owned(), pod.metadata.name.clone().unwrap_or_default()),
        (POD_NAMESPACE_LABEL.to_owned(), pod.metadata.namespace.clone().unwrap_or_default()),
    ])
}

pub fn spec(pod: &Pod) -> PodSpec {
    pod.spec.clone().unwrap_or_default()
}

fn namespace_options(spec: &PodSpec) -> NamespaceOption {
    NamespaceOption {
        network: if spec.host_network == Some(true) { NAMESPACE_NODE } else { NAMESPACE_POD },
        pid: if spec.host_pid == Some(true) {
            NAMESPACE_NODE
        } else if spec.share_process_namespace == Some(true) {
            NAMESPACE_POD
        } else {
            NAMESPACE_CONTAINER
        },
        ipc: if spec.host_ipc == Some(true) { NAMESPACE_NODE } else { NAMESPACE_POD },
        ..Default::default()
    }
}

/// The DNS a pod's sandbox gets. Without cluster DNS, ClusterFirst behaves as Default (the
/// node's resolver), as kubelet does when no cluster DNS is configured.
fn dns_config(spec: &PodSpec) -> DnsConfig {
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut config = DnsConfig::default();
    if policy != "None" {
        let mut text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        // A local stub resolver (systemd-resolved) is unreachable from a pod's network.
        if text.lines().any(|l| l.trim().starts_with("nameserver 127.")) {
            if let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
                text = upstream;
            }
        }
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => config.servers.extend(words.next().map(str::to_owned)),
                Some("search") => config.searches.extend(words.map(str::to_owned)),
                Some("options") => config.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
    }
    if let Some(extra) = &spec.dns_config {
        config.servers.extend(extra.nameservers.clone().unwrap_or_default());
        config.searches.extend(extra.searches.clone().unwrap_or_default());
        for option in extra.options.clone().unwrap_or_default() {
            let name = option.name.unwrap_or_default();
            config.options.push(match option.value {
                Some(value) => format!("{name}:{value}"),
                None => name,
            });
        }
    }
    config
}

/// The pod's hostname: spec.hostname, else its name (cut to a DNS label).
pub fn hostname(pod: &Pod) -> String {
    let spec = spec(pod);
    if spec.host_network == Some(true) {
        return std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    }
    let name = spec.hostname.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    name.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_owned()
}

pub fn sandbox_config(pod: &Pod, attempt: u32, log_directory: &str) -> PodSandboxConfig {
    let spec = spec(pod);
    let pod_security = spec.security_context.clone().unwrap_or_default();
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.clone().unwrap_or_default())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => 1,
                Some("SCTP") => 2,
                _ => 0,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.unwrap_or_default(),
        })
        .collect();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    let mut labels = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect::<HashMap<_, _>>();
    labels.extend(pod_labels(pod));
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: hostname(pod),
        log_directory: log_directory.to_owned(),
        dns_config: Some(dns_config(&spec)),
        port_mappings,
        labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/tugboat/pod{}", pod.metadata.uid.as_deref().unwrap_or_default()),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(&spec)),
                run_as_user: pod_security.run_as_user.map(|value| Int64Value { value }),
                run_as_group: pod_security.run_as_group.map(|value| Int64Value { value }),
                supplemental_groups: pod_security.supplemental_groups.clone().unwrap_or_default(),
                privileged,
                ..Default::default()
            }),
            sysctls: pod_security.sysctls.unwrap_or_default().into_iter().map(|s| (s.name, s.value)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A short, stable hash of the container's spec.
pub fn container_hash(container: &Container) -> String {
    let json = serde_json::to_vec(container).unwrap_or_default();
    let digest = sha2::Sha256::digest(&json);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The quantity in a container's limits (or else requests) for `resource`.
fn resource_quantity<'a>(container: &'a Container, which: &str, resource: &str) -> Option<&'a str> {
    let resources = container.resources.as_ref()?;
    let map = if which == "limits" { resources.limits.as_ref() } else { resources.requests.as_ref() }?;
    map.get(resource).map(|q| q.0.as_str())
}

pub fn linux_resources(container: &Container) -> LinuxContainerResources {
    use tugboat_podinputs::quantity;
    let cpu_limit = resource_quantity(container, "limits", "cpu").and_then(|q| quantity::cpu_millis(q).ok());
    // A request defaults to the limit, as the API server defaults it.
    let cpu_request = resource_quantity(container, "requests", "cpu").and_then(|q| quantity::cpu_millis(q).ok()).or(cpu_limit);
    let memory_limit = resource_quantity(container, "limits", "memory").and_then(|q| quantity::bytes(q).ok());
    LinuxContainerResources {
        cpu_shares: quantity::cpu_shares(cpu_request.unwrap_or(0)),
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD_MICROS } else { 0 },
        cpu_quota: cpu_limit.map(|millis| quantity::cpu_quota(millis, CPU_PERIOD_MICROS)).unwrap_or(0),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        ..Default::default()
    }
}

fn security_context(spec: &PodSpec, container: &Container) -> LinuxContainerSecurityContext {
    let pod = spec.security_context.clone().unwrap_or_default();
    let own: SecurityContext = container.security_context.clone().unwrap_or_default();
    let privileged = own.privileged == Some(true);
    let capabilities = own.capabilities.clone().unwrap_or_default();
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(spec)),
        run_as_user: own.run_as_user.or(pod.run_as_user).map(|value| Int64Value { value }),
        run_as_group: own.run_as_group.or(pod.run_as_group).map(|value| Int64Value { value }),
        readonly_rootfs: own.read_only_root_filesystem == Some(true),
        supplemental_groups: pod.supplemental_groups.clone().unwrap_or_default().into_iter().chain(pod.fs_group).collect(),
        no_new_privs: own.allow_privilege_escalation == Some(false),
        masked_paths: if privileged { vec![] } else { MASKED_PATHS.iter().map(|p| p.to_string()).collect() },
        readonly_paths: if privileged { vec![] } else { READONLY_PATHS.iter().map(|p| p.to_string()).collect() },
        ..Default::default()
    }
}

/// Everything a container is created with besides what the spec says literally.
pub struct ContainerInputs {
    pub image_ref: String,
    pub envs: Vec<KeyValue>,
    pub mounts: Vec<Mount>,
    pub attempt: u32,
}

/// The container's log file, relative to the sandbox's log directory.
pub fn log_path(container_name: &str, attempt: u32) -> String {
    format!("{container_name}/{attempt}.log")
}

pub fn container_config(pod: &Pod, container: &Container, inputs: ContainerInputs) -> ContainerConfig {
    let spec = spec(pod);
    let mut labels = pod_labels(pod);
    labels.insert(CONTAINER_NAME_LABEL.to_owned(), container.name.clone());
    let annotations = HashMap::from([
        (CONTAINER_HASH_ANNOTATION.to_owned(), container_hash(container)),
        (
            TERMINATION_MESSAGE_PATH_ANNOTATION.to_owned(),
            container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into()),
        ),
    ]);
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: container.name.clone(), attempt: inputs.attempt }),
        image: Some(tugboat_cri::image_spec(&inputs.image_ref)),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: inputs.envs,
        mounts: inputs.mounts,
        labels,
        annotations,
        log_path: log_path(&container.name, inputs.attempt),
        stdin: container.stdin == Some(true),
        stdin_once: container.stdin_once == Some(true),
        tty: container.tty == Some(true),
        linux: Some(LinuxContainerConfig { resources: Some(linux_resources(container)), security_context: Some(security_context(&spec, container)) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}}, "spec": spec})).unwrap()
    }

    #[test]
    fn sandbox_carries_identity_ports_and_namespaces() {
        let pod = pod(serde_json::json!({"hostname": "h", "shareProcessNamespace": true, "containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]}));
        let config = sandbox_config(&pod, 2, "/logs/x");
        let metadata = config.metadata.unwrap();
        assert_eq!((metadata.name.as_str(), metadata.uid.as_str(), metadata.attempt), ("web", "u1", 2));
        assert_eq!(config.hostname, "h");
        assert_eq!(config.labels[POD_UID_LABEL], "u1");
        assert_eq!(config.labels["app"], "web");
        assert_eq!(config.port_mappings.len(), 1);
        assert_eq!((config.port_mappings[0].container_port, config.port_mappings[0].host_port), (80, 8080));
        let namespaces = config.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!((namespaces.network, namespaces.pid, namespaces.ipc), (NAMESPACE_POD, NAMESPACE_POD, NAMESPACE_POD));
    }

    #[test]
    fn resources_become_shares_quota_and_memory_limit() {
        let mut container = Container { name: "c".into(), ..Default::default() };
        container.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("500m".into())), ("memory".into(), Quantity("64Mi".into()))])),
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
            ..Default::default()
        });
        let resources = linux_resources(&container);
        assert_eq!(resources.cpu_shares, 256);
        assert_eq!((resources.cpu_quota, resources.cpu_period), (50_000, 100_000));
        assert_eq!(resources.memory_limit_in_bytes, 64 * 1024 * 1024);
        let unlimited = linux_resources(&Container { name: "c".into(), ..Default::default() });
        assert_eq!((unlimited.cpu_shares, unlimited.cpu_quota, unlimited.memory_limit_in_bytes), (2, 0, 0));
    }

    #[test]
    fn container_config_has_identity_log_path_and_security() {
        let pod = pod(serde_json::json!({"securityContext": {"runAsUser": 1000}, "containers": [
            {"name": "c", "image": "i", "command": ["sh"], "securityContext": {"runAsGroup": 3000, "readOnlyRootFilesystem": true,
             "capabilities": {"add": ["NET_ADMIN"]}}}]}));
        let container = spec(&pod).containers[0].clone();
        let config = container_config(&pod, &container, ContainerInputs { image_ref: "sha256:x".into(), envs: vec![], mounts: vec![], attempt: 3 });
        assert_eq!(config.log_path, "c/3.log");
        assert_eq!(config.labels[CONTAINER_NAME_LABEL], "c");
        assert_eq!(config.annotations[CONTAINER_HASH_ANNOTATION], container_hash(&container));
        let security = config.linux.unwrap().security_context.unwrap();
        assert_eq!(security.run_as_user.unwrap().value, 1000);
        assert_eq!(security.run_as_group.unwrap().value, 3000);
        assert!(security.readonly_rootfs);
        assert_eq!(security.capabilities.unwrap().add_capabilities, ["NET_ADMIN"]);
        assert!(!security.masked_paths.is_empty());
    }
}
