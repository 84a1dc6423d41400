//! What a pod's containers are given, exactly as the kubelet gives it: volumes prepared on the host
//! ([`VolumeManager`], [`container_mounts`]) and environment variables ([`container_env`]).
//!
//! The agent reads the API objects a pod refers to through [`ObjectSource`]; this crate never talks
//! to the API server itself, so its logic runs against an in-memory source in tests.
//!
//! Layout on disk (kubelet's): `<root>/<pod uid>/volumes/kubernetes.io~<plugin>/<volume name>`.
//! ConfigMap, Secret, downward API and projected volumes are written with kubelet's AtomicWriter
//! scheme (see [`atomic_writer`]) so that updates reach running containers through the bind mount
//! of the volume directory.
//!
//! Not supported yet (documented, never faked): projected `serviceAccountToken` and
//! `clusterTrustBundle` sources are skipped with a warning (no token is written); service
//! environment variables (`enableServiceLinks`) are not generated; `fsGroup` ownership changes are
//! not applied; `limits.ephemeral-storage` without a limit falls back to 0 (the node's allocatable
//! ephemeral storage is not among [`PodFacts`]); volume types other than emptyDir, hostPath,
//! configMap, secret, downwardAPI, projected, persistentVolumeClaim and ephemeral (both backed by
//! hostPath or local persistent volumes) fail with an error naming the type. Secret and projected
//! volumes are tmpfs mounts, as kubelet makes them, so setting them up needs CAP_SYS_ADMIN.
//! `subPathExpr` needs the container's environment: use [`container_mounts_with_env`]. A subPath
//! is resolved and checked to stay inside its volume, but not bind-mounted to pin it as kubelet
//! does, so a container racing a symlink swap against container creation is not fully excluded.

pub mod atomic_writer;
mod env;
mod expansion;
mod fieldpath;
mod mounts;
mod mountinfo;
mod volumes;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};

pub use env::{container_env, EnvError, EnvErrorKind};
pub use mounts::{container_mounts, container_mounts_with_env};
pub use tugboat_api::quantity;
pub use quantity::{cpu_quota, cpu_shares};
pub use volumes::{ClaimError, HostVolume, PodVolumes, SetUpError, VolumeError, VolumeKind, VolumeManager};

/// Re-exported so callers name the CRI types this crate produces without another dependency.
pub use tugboat_cri::api;

/// A failure to read an object (not its absence, which is `Ok(None)`); the text is shown as is,
/// as kubelet shows the API server's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where the agent reads the API objects a pod refers to (the agent implements it with its API
/// client and cache).
#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, SourceError>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError>;
    async fn persistent_volume_claim(&self, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>, SourceError>;
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, SourceError>;
}

/// What the node knows about a pod that is not in the pod object (or not yet there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ips: Vec<String>,
    pub service_account_name: String,
    /// Used where a container has no CPU limit (downward API) as kubelet does.
    pub node_allocatable_cpu_millis: i64,
    /// Used where a container has no memory limit (downward API) and to size memory-backed volumes.
    pub node_allocatable_memory_bytes: i64,
}

/// A secret's values: `data`, with `stringData` merged over it. The API server is supposed to
/// fold `stringData` into `data` on write; doing it here too means a secret written by a server
/// that kept `stringData` still reaches the pod, with the same precedence Kubernetes gives it.
pub(crate) fn secret_values(secret: &Secret) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut values: std::collections::BTreeMap<String, Vec<u8>> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    for (k, v) in secret.string_data.iter().flatten() {
        values.insert(k.clone(), v.clone().into_bytes());
    }
    values
}
