//! A pod's volumes on the host, laid out as kubelet lays them out:
//! `<root>/<pod uid>/volumes/kubernetes.io~<plugin>/<volume name>`.
//!
//! emptyDir, hostPath and persistent volumes are prepared once per pod (kubelet mounts them once);
//! ConfigMap, Secret, downward API and projected volumes are rewritten on every [`VolumeManager::setup`]
//! through the AtomicWriter, so that changes reach running containers. Secret and projected
//! volumes live on a tmpfs, as kubelet keeps them, so secrets never touch the node's disk.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume};

use crate::atomic_writer::{self, AtomicWriteError, FileProjection, Payload};
use crate::fieldpath;
use crate::mountinfo;
use crate::quantity::{self, QuantityError};
use crate::{ObjectSource, PodFacts, SourceError};

/// kubelet's default file mode for ConfigMap, Secret, downward API and projected files (0644).
const DEFAULT_MODE: i32 = 0o644;
/// emptyDir directories are world-writable so a container running as any user can use them.
const EMPTY_DIR_MODE: u32 = 0o777;
/// Directories DirectoryOrCreate makes, as kubelet (0755).
const HOST_PATH_DIR_MODE: u32 = 0o755;
/// Files FileOrCreate makes, as kubelet (0644).
const HOST_PATH_FILE_MODE: u32 = 0o644;

/// What kind of volume a host path came from; decides mount attributes and sub-path creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    EmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    /// A persistentVolumeClaim or ephemeral volume, backed by a hostPath or local persistent volume.
    PersistentVolumeClaim,
}

impl VolumeKind {
    /// Kubelet's plugin directory name, for the kinds that live under the pod's directory.
    fn plugin_dir(self) -> Option<&'static str> {
        match self {
            VolumeKind::EmptyDir => Some("kubernetes.io~empty-dir"),
            VolumeKind::ConfigMap => Some("kubernetes.io~configmap"),
            VolumeKind::Secret => Some("kubernetes.io~secret"),
            VolumeKind::DownwardApi => Some("kubernetes.io~downward-api"),
            VolumeKind::Projected => Some("kubernetes.io~projected"),
            VolumeKind::HostPath | VolumeKind::PersistentVolumeClaim => None,
        }
    }

    /// Whether the runtime should relabel the volume for SELinux: kubelet's attributes say so for
    /// the volumes it creates itself, never for a path of the host.
    pub fn selinux_relabel(self) -> bool {
        !matches!(self, VolumeKind::HostPath | VolumeKind::PersistentVolumeClaim)
    }

    /// Whether a missing subPath is created: yes for writable directories; the AtomicWriter
    /// volumes own their contents, so a missing key there is an error instead of a stray directory.
    pub fn creates_sub_paths(self) -> bool {
        matches!(self, VolumeKind::EmptyDir | VolumeKind::HostPath | VolumeKind::PersistentVolumeClaim)
    }

    /// Whether only this crate writes the volume (and so it is set up again on every sync).
    fn rewritten(self) -> bool {
        matches!(self, VolumeKind::ConfigMap | VolumeKind::Secret | VolumeKind::DownwardApi | VolumeKind::Projected)
    }
}

/// One volume on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVolume {
    pub path: PathBuf,
    /// Read-only by nature (ConfigMap, Secret, downward API, projected, or a claim mounted
    /// `readOnly`): every mount of it is read-only whatever the volumeMount says.
    pub read_only: bool,
    pub kind: VolumeKind,
}

/// A pod's volumes by name, as [`VolumeManager::setup`] prepared them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    volumes: BTreeMap<String, HostVolume>,
}

impl PodVolumes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, volume: HostVolume) {
        self.volumes.insert(name.into(), volume);
    }

    pub fn get(&self, name: &str) -> Option<&HostVolume> {
        self.volumes.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostVolume)> {
        self.volumes.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }
}

/// Why one volume could not be set up. The messages are kubelet's where kubelet has one.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKeyMissing(String),
    #[error("references non-existent secret key: {0}")]
    SecretKeyMissing(String),
    /// Reading an object failed (not its absence); the source's words.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// A downward API item that cannot be resolved, e.g. `unsupported fieldPath: spec.x`.
    #[error("{0}")]
    DownwardApi(String),
    /// `expected` is "a directory", "a file", "a socket file", "a character device" or "a block device".
    #[error("hostPath type check failed: {} is not {expected}", path.display())]
    HostPathType { path: PathBuf, expected: &'static str },
    #[error("{0} is an invalid volume type")]
    InvalidHostPathType(String),
    #[error("hostPath {} is not an absolute path", .0.display())]
    RelativeHostPath(PathBuf),
    #[error("path \"{}\" does not exist", .0.display())]
    LocalPathMissing(PathBuf),
    #[error("emptyDir medium {0:?} is not supported by this node")]
    UnsupportedMedium(String),
    #[error("volume type {0} is not supported by this node")]
    UnsupportedType(String),
    #[error("invalid volume name {0:?}: it must be one path component")]
    InvalidName(String),
    #[error("invalid sizeLimit: {0}")]
    SizeLimit(QuantityError),
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    #[error("mount failed: tmpfs on {}: {source}", path.display())]
    Mount { path: PathBuf, source: io::Error },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    /// Several sources of one projected volume failed (Go's aggregate error format).
    #[error("{}", aggregate(.0))]
    Several(Vec<SetUpError>),
}

/// utilerrors.NewAggregate's text: one error as is, several as `[a, b]`.
fn aggregate(errors: &[SetUpError]) -> String {
    let mut texts: Vec<String> = Vec::new();
    for text in errors.iter().map(ToString::to_string) {
        if !texts.contains(&text) {
            texts.push(text);
        }
    }
    if texts.len() == 1 {
        texts.remove(0)
    } else {
        format!("[{}]", texts.join(", "))
    }
}

fn collect(mut errors: Vec<SetUpError>) -> Result<(), SetUpError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(SetUpError::Several(errors)),
    }
}

/// Why a claim cannot be used (kubelet's volume manager wording).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("failed to fetch PVC from API server: {0}")]
    FetchClaim(String),
    #[error("PVC {namespace}/{claim} was not created for pod {namespace}/{pod} (pod is not owner)")]
    NotOwned { namespace: String, claim: String, pod: String },
    #[error("PVC is being deleted")]
    BeingDeleted,
    #[error("PVC is not bound")]
    NotBound,
    #[error("failed to fetch PV {volume} from API server: {message}")]
    FetchVolume { volume: String, message: String },
    #[error("found PV object {0} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim")]
    VolumeNotBound(String),
    #[error("found PV object {volume} but its pv.Spec.ClaimRef.UID ({found}) does not point to claim.UID ({expected})")]
    WrongClaim { volume: String, found: String, expected: String },
    #[error("persistentvolume \"{volume}\" is a {source_type} volume; this node mounts only hostPath and local persistent volumes")]
    UnsupportedSource { volume: String, source_type: String },
    #[error("persistentvolume \"{0}\" has volumeMode Block; this node mounts only filesystem volumes")]
    BlockMode(String),
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid pod uid {0:?}: it must be one path component")]
    InvalidPodUid(String),
    /// kubelet's FailedMount text.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {reason}")]
    SetUp { volume: String, reason: SetUpError },
    #[error("error processing PVC {namespace}/{claim}: {reason}")]
    Claim { volume: String, namespace: String, claim: String, reason: Box<ClaimError> },
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    UnknownVolume { volume: String, container: String },
    #[error("error SubPath `{sub_path}` must not be an absolute path")]
    SubPathAbsolute { volume: String, container: String, sub_path: String },
    #[error("unable to provision SubPath `{sub_path}`: must not contain '..'")]
    SubPathBacksteps { volume: String, container: String, sub_path: String },
    /// subPathExpr referred to variables the container does not have (or that are empty).
    #[error("missing value for {missing}")]
    SubPathExprMissing { volume: String, container: String, missing: String },
    /// Kubelet does not tell users more (it could reveal the host's layout); `source` has it.
    #[error("failed to create subPath directory for volumeMount \"{volume}\" of container \"{container}\"")]
    SubPathCreate { volume: String, container: String, sub_path: String, source: io::Error },
    /// The subPath does not exist (where it is not created) or resolves outside its volume.
    #[error("failed to prepare subPath for volumeMount \"{volume}\" of container \"{container}\"")]
    SubPathPrepare { volume: String, container: String, sub_path: String, reason: String },
    #[error("invalid MountPropagation mode: \"{mode}\"")]
    Propagation { volume: String, container: String, mode: String },
    #[error("failed to resolve recursive read-only mode: {reason}")]
    RecursiveReadOnly { volume: String, container: String, reason: String },
    #[error("cannot unmount {}: {source}", path.display())]
    Unmount { path: PathBuf, source: io::Error },
    #[error("{} is still mounted; the pod's directory is kept", path.display())]
    StillMounted { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("the volume task failed: {0}")]
    Task(String),
}

/// A name used as one path component: anything else could point outside the pod's directory.
fn is_path_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// What must be done on disk for one volume (computed first, with the API objects it needs).
enum Plan {
    EmptyDir { path: PathBuf, memory: Option<Option<i64>> },
    HostPath { path: PathBuf, host_path_type: String },
    Local { path: PathBuf },
    Files { path: PathBuf, memory: Option<Option<i64>>, payload: Payload },
}

/// One pod's volumes that are not set up again: name → (definition, result).
type SettledVolumes = HashMap<String, (Volume, HostVolume)>;

/// Prepares, refreshes and removes pods' volumes under one root directory.
pub struct VolumeManager {
    root: PathBuf,
    /// Per pod uid, the volumes set up once (emptyDir, hostPath, claims) with the definition they
    /// came from: kubelet mounts these once, so a claim deleted later or a hostPath removed later
    /// does not fail a running pod. (Pod volumes are immutable; the definition is compared anyway.)
    settled: Mutex<HashMap<String, SettledVolumes>>,
}

impl VolumeManager {
    /// `root` is the agent data directory's `pods/`.
    pub fn new(root: PathBuf) -> Self {
        Self { root, settled: Mutex::new(HashMap::new()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<pod uid>`: the pod's volumes and the agent's per-pod files (`etc-hosts`).
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join(pod_uid)
    }

    fn settled_volume(&self, uid: &str, volume: &Volume) -> Option<HostVolume> {
        let settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        let (definition, host) = settled.get(uid)?.get(&volume.name)?;
        (definition == volume).then(|| host.clone())
    }

    fn settle(&self, uid: &str, volume: &Volume, host: &HostVolume) {
        let mut settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        settled.entry(uid.to_owned()).or_default().insert(volume.name.clone(), (volume.clone(), host.clone()));
    }

    /// Sets up (or refreshes) every volume of the pod. Idempotent; call it again to bring changed
    /// ConfigMaps, Secrets and labels/annotations into the files. Every volume is attempted; the
    /// first failure is answered (the others are logged), so one bad volume does not keep the
    /// rest from being refreshed.
    pub async fn setup(&self, pod: &Pod, facts: &PodFacts, source: &dyn ObjectSource) -> Result<PodVolumes, VolumeError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if !is_path_component(uid) {
            return Err(VolumeError::InvalidPodUid(uid.to_owned()));
        }
        let mut volumes = PodVolumes::new();
        let mut first_error = None;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            match self.setup_volume(pod, uid, volume, facts, source).await {
                Ok(host) => volumes.insert(volume.name.clone(), host),
                Err(error) => {
                    tracing::warn!(pod = %pod_name(pod), volume = %volume.name, %error, "cannot set up a volume");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(volumes),
        }
    }

    async fn setup_volume(&self, pod: &Pod, uid: &str, volume: &Volume, facts: &PodFacts, source: &dyn ObjectSource) -> Result<HostVolume, VolumeError> {
        let set_up_error = |reason| VolumeError::SetUp { volume: volume.name.clone(), reason };
        if !is_path_component(&volume.name) {
            return Err(set_up_error(SetUpError::InvalidName(volume.name.clone())));
        }
        if let Some(host) = self.settled_volume(uid, volume) {
            return Ok(host);
        }
        let (plan, host) = self.plan(pod, uid, volume, facts, source).await?;
        tokio::task::spawn_blocking(move || apply(plan))
            .await
            .map_err(|e| VolumeError::Task(e.to_string()))?
            .map_err(set_up_error)?;
        if !host.kind.rewritten() {
            self.settle(uid, volume, &host);
        }
        Ok(host)
    }

    /// Reads what the volume needs and decides what to write where.
    async fn plan(&self, pod: &Pod, uid: &str, volume: &Volume, facts: &PodFacts, source: &dyn ObjectSource) -> Result<(Plan, HostVolume), VolumeError> {
        let name = &volume.name;
        let set_up_error = |reason| VolumeError::SetUp { volume: name.clone(), reason };
        let namespace = pod_namespace(pod);
        let dir = |kind: VolumeKind| -> PathBuf {
            let mut path = self.pod_dir(uid).join("volumes");
            if let Some(plugin) = kind.plugin_dir() {
                path.push(plugin);
            }
            path.join(name)
        };
        let host = |kind: VolumeKind, path: PathBuf, read_only: bool| HostVolume { path, read_only, kind };

        if let Some(empty_dir) = &volume.empty_dir {
            let memory = match empty_dir.medium.as_deref().unwrap_or_default() {
                "" => None,
                "Memory" => Some(memory_volume_size(pod, facts, empty_dir.size_limit.as_ref().map(|q| q.0.as_str())).map_err(set_up_error)?),
                other => return Err(set_up_error(SetUpError::UnsupportedMedium(other.to_owned()))),
            };
            let path = dir(VolumeKind::EmptyDir);
            return Ok((Plan::EmptyDir { path: path.clone(), memory }, host(VolumeKind::EmptyDir, path, false)));
        }
        if let Some(host_path) = &volume.host_path {
            let path = PathBuf::from(&host_path.path);
            let plan = Plan::HostPath { path: path.clone(), host_path_type: host_path.type_.clone().unwrap_or_default() };
            return Ok((plan, host(VolumeKind::HostPath, path, false)));
        }
        if let Some(config_map) = &volume.config_map {
            let optional = config_map.optional.unwrap_or(false);
            let object = match source.config_map(namespace, &config_map.name).await.map_err(|e| set_up_error(e.into()))? {
                Some(object) => object,
                None if optional => ConfigMap::default(),
                None => return Err(set_up_error(SetUpError::ConfigMapNotFound(config_map.name.clone()))),
            };
            let payload = config_map_payload(config_map.items.as_deref(), &object, config_map.default_mode, optional).map_err(set_up_error)?;
            let path = dir(VolumeKind::ConfigMap);
            return Ok((Plan::Files { path: path.clone(), memory: None, payload }, host(VolumeKind::ConfigMap, path, true)));
        }
        if let Some(secret) = &volume.secret {
            let optional = secret.optional.unwrap_or(false);
            let secret_name = secret.secret_name.clone().unwrap_or_default();
            let object = match source.secret(namespace, &secret_name).await.map_err(|e| set_up_error(e.into()))? {
                Some(object) => object,
                None if optional => Secret::default(),
                None => return Err(set_up_error(SetUpError::SecretNotFound(secret_name))),
            };
            let payload = secret_payload(secret.items.as_deref(), &object, secret.default_mode, optional).map_err(set_up_error)?;
            let path = dir(VolumeKind::Secret);
            let memory = Some(memory_volume_size(pod, facts, None).map_err(set_up_error)?);
            return Ok((Plan::Files { path: path.clone(), memory, payload }, host(VolumeKind::Secret, path, true)));
        }
        if let Some(downward_api) = &volume.downward_api {
            let payload = downward_api_payload(downward_api.items.as_deref().unwrap_or_default(), pod, facts, downward_api.default_mode).map_err(set_up_error)?;
            let path = dir(VolumeKind::DownwardApi);
            return Ok((Plan::Files { path: path.clone(), memory: None, payload }, host(VolumeKind::DownwardApi, path, true)));
        }
        if let Some(projected) = &volume.projected {
            let payload = projected_payload(projected.sources.as_deref().unwrap_or_default(), projected.default_mode, pod, facts, source).await.map_err(set_up_error)?;
            let path = dir(VolumeKind::Projected);
            let memory = Some(memory_volume_size(pod, facts, None).map_err(set_up_error)?);
            return Ok((Plan::Files { path: path.clone(), memory, payload }, host(VolumeKind::Projected, path, true)));
        }
        let claim = match (&volume.persistent_volume_claim, &volume.ephemeral) {
            (Some(claim), _) => Some((claim.claim_name.clone(), claim.read_only.unwrap_or(false), false)),
            // A generic ephemeral volume's claim is named after the pod and the volume.
            (None, Some(_)) => Some((format!("{}-{}", pod.metadata.name.as_deref().unwrap_or_default(), name), false, true)),
            (None, None) => None,
        };
        if let Some((claim_name, read_only, ephemeral)) = claim {
            let claim_error = |reason| VolumeError::Claim { volume: name.clone(), namespace: namespace.to_owned(), claim: claim_name.clone(), reason: Box::new(reason) };
            let (plan, path) = resolve_claim(pod, namespace, &claim_name, ephemeral, source).await.map_err(claim_error)?;
            return Ok((plan, host(VolumeKind::PersistentVolumeClaim, path, read_only)));
        }
        Err(set_up_error(SetUpError::UnsupportedType(volume_type(volume))))
    }

    /// Unmounts and removes everything of the pod (its volumes and the agent's files beside them).
    /// Nothing is removed while anything below the pod's directory is still mounted, so a failed
    /// unmount can never delete what a mount exposes.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        if !is_path_component(pod_uid) {
            return Err(VolumeError::InvalidPodUid(pod_uid.to_owned()));
        }
        self.settled.lock().unwrap_or_else(|e| e.into_inner()).remove(pod_uid);
        let dir = self.pod_dir(pod_uid);
        tokio::task::spawn_blocking(move || teardown_dir(&dir)).await.map_err(|e| VolumeError::Task(e.to_string()))?
    }
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default")
}

fn pod_name(pod: &Pod) -> String {
    format!("{}/{}", pod_namespace(pod), pod.metadata.name.as_deref().unwrap_or_default())
}

/// The name of the volume's source field (`nfs`, `csi`, ...) for an error about it.
fn volume_type(volume: &Volume) -> String {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().find(|k| *k != "name").cloned().unwrap_or_else(|| "(none)".into()),
        _ => "(unknown)".into(),
    }
}

fn teardown_dir(dir: &Path) -> Result<(), VolumeError> {
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(VolumeError::Io { action: "inspect", path: dir.to_owned(), source }),
    }
    let io_error = |action| move |source| VolumeError::Io { action, path: dir.to_owned(), source };
    for mount_point in mountinfo::mounts_under(dir).map_err(io_error("list the mounts under"))? {
        match mountinfo::unmount(&mount_point, false) {
            Ok(()) => {}
            // Already gone (e.g. a lower mount of the same path went first).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOENT) => {}
            // Kubelet unmounts after the containers are gone; something still holding the mount is
            // detached so the pod's directory can go, and the kernel frees it when released.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                tracing::warn!(path = %mount_point.display(), "a volume mount is busy; detaching it");
                mountinfo::unmount(&mount_point, true).map_err(|source| VolumeError::Unmount { path: mount_point.clone(), source })?;
            }
            Err(source) => return Err(VolumeError::Unmount { path: mount_point, source }),
        }
    }
    if let Some(path) = mountinfo::mounts_under(dir).map_err(io_error("list the mounts under"))?.into_iter().next() {
        return Err(VolumeError::StillMounted { path });
    }
    fs::remove_dir_all(dir).map_err(io_error("remove"))
}

/// Does the plan's work on disk (blocking).
fn apply(plan: Plan) -> Result<(), SetUpError> {
    match plan {
        Plan::EmptyDir { path, memory } => prepare_dir(&path, memory),
        Plan::HostPath { path, host_path_type } => check_host_path(&path, &host_path_type),
        Plan::Local { path } => match fs::metadata(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SetUpError::LocalPathMissing(path)),
            Err(source) => Err(SetUpError::Io { action: "inspect", path, source }),
        },
        Plan::Files { path, memory, payload } => {
            prepare_dir(&path, memory)?;
            atomic_writer::write(&path, &payload)?;
            Ok(())
        }
    }
}

/// kubelet's emptyDir setup: a 0777 directory, with a tmpfs mounted on it for the Memory medium
/// (`memory` = Some(size in bytes, None for the kernel's default)) unless one is already there.
fn prepare_dir(path: &Path, memory: Option<Option<i64>>) -> Result<(), SetUpError> {
    let io_error = |action| move |source| SetUpError::Io { action, path: path.to_owned(), source };
    fs::create_dir_all(path).map_err(io_error("create the directory"))?;
    let mounted = memory.is_some() && mountinfo::is_mount_point(path).map_err(io_error("check the mounts of"))?;
    if !mounted {
        let mode = fs::metadata(path).map_err(io_error("inspect"))?.permissions().mode() & 0o7777;
        if mode != EMPTY_DIR_MODE {
            fs::set_permissions(path, fs::Permissions::from_mode(EMPTY_DIR_MODE)).map_err(io_error("set the mode of"))?;
        }
    }
    if let (Some(size), false) = (memory, mounted) {
        let options = size.map(|bytes| format!("size={bytes}")).unwrap_or_default();
        mountinfo::mount_tmpfs(path, &options).map_err(|source| SetUpError::Mount { path: path.to_owned(), source })?;
    }
    Ok(())
}

/// kubelet's hostPath type check (pkg/volume/hostpath): the `*OrCreate` types create what is
/// missing (not the parents of a file), the others only check; symlinks are followed.
fn check_host_path(path: &Path, host_path_type: &str) -> Result<(), SetUpError> {
    if !path.is_absolute() {
        return Err(SetUpError::RelativeHostPath(path.to_owned()));
    }
    let io_error = |action| move |source| SetUpError::Io { action, path: path.to_owned(), source };
    let wrong = |expected| SetUpError::HostPathType { path: path.to_owned(), expected };
    let file_type = || fs::metadata(path).ok().map(|m| m.file_type());
    match host_path_type {
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if host_path_type == "DirectoryOrCreate" && file_type().is_none() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(HOST_PATH_DIR_MODE)
                    .create(path)
                    .map_err(io_error("create the directory"))?;
            }
            if file_type().is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                Err(wrong("a directory"))
            }
        }
        "FileOrCreate" | "File" => {
            if host_path_type == "FileOrCreate" && file_type().is_none() {
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(HOST_PATH_FILE_MODE)
                    .open(path)
                    .map_err(io_error("create the file"))?;
            }
            if file_type().is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                Err(wrong("a file"))
            }
        }
        "Socket" => file_type().is_some_and(|t| t.is_socket()).then_some(()).ok_or_else(|| wrong("a socket file")),
        "CharDevice" => file_type().is_some_and(|t| t.is_char_device()).then_some(()).ok_or_else(|| wrong("a character device")),
        "BlockDevice" => file_type().is_some_and(|t| t.is_block_device()).then_some(()).ok_or_else(|| wrong("a block device")),
        other => Err(SetUpError::InvalidHostPathType(other.to_owned())),
    }
}

/// The size of a memory-backed volume, as kubelet's calculateEmptyDirMemorySize: the node's
/// allocatable memory, lowered to the pod's memory limit and then to the volume's sizeLimit when
/// those are set and smaller. `None`: nothing known, the kernel default (half the RAM) applies.
fn memory_volume_size(pod: &Pod, facts: &PodFacts, size_limit: Option<&str>) -> Result<Option<i64>, SetUpError> {
    let mut size = facts.node_allocatable_memory_bytes;
    let lower = |size: i64, candidate: i64| if candidate > 0 && (size <= 0 || candidate <= size) { candidate } else { size };
    if let Some(pod_limit) = pod_memory_limit(pod) {
        size = lower(size, pod_limit);
    }
    if let Some(limit) = size_limit {
        size = lower(size, quantity::bytes(limit).map_err(SetUpError::SizeLimit)?);
    }
    Ok((size > 0).then_some(size))
}

/// The pod's memory limit when every container declares one (kubelet's pod cgroup limit): the
/// larger of the app containers plus sidecars and each init container, plus the pod overhead.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| -> Option<i64> {
        let quantity = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        quantity::bytes(&quantity.0).ok()
    };
    let mut apps: i64 = 0;
    for container in &spec.containers {
        apps = apps.saturating_add(limit(container)?);
    }
    let (mut sidecars, mut init_peak) = (0i64, 0i64);
    for init in spec.init_containers.iter().flatten() {
        let value = limit(init)?;
        if init.restart_policy.as_deref() == Some("Always") {
            sidecars = sidecars.saturating_add(value);
        } else {
            init_peak = init_peak.max(sidecars.saturating_add(value));
        }
    }
    let overhead = spec.overhead.as_ref().and_then(|o| o.get("memory")).and_then(|q| quantity::bytes(&q.0).ok()).unwrap_or(0);
    Some(apps.saturating_add(sidecars).max(init_peak).saturating_add(overhead))
}

fn file_mode(mode: Option<i32>, default_mode: Option<i32>) -> u32 {
    (mode.or(default_mode).unwrap_or(DEFAULT_MODE) as u32) & 0o7777
}

/// configmap.MakePayload: every key (data and binaryData) or the listed items.
fn config_map_payload(items: Option<&[KeyToPath]>, config_map: &ConfigMap, default_mode: Option<i32>, optional: bool) -> Result<Payload, SetUpError> {
    let data = config_map.data.iter().flatten().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let binary = config_map.binary_data.iter().flatten().map(|(k, v)| (k.as_str(), v.0.as_slice()));
    let values: BTreeMap<&str, &[u8]> = binary.chain(data).collect();
    let mut payload = Payload::new();
    match items.filter(|items| !items.is_empty()) {
        None => {
            for (key, value) in values {
                payload.insert(key.to_owned(), FileProjection { data: value.to_vec(), mode: file_mode(None, default_mode) });
            }
        }
        Some(items) => {
            for item in items {
                // data wins over binaryData, as kubelet looks in data first.
                let value = config_map.data.as_ref().and_then(|d| d.get(&item.key)).map(|v| v.as_bytes()).or_else(|| values.get(item.key.as_str()).copied());
                match value {
                    Some(value) => {
                        payload.insert(item.path.clone(), FileProjection { data: value.to_vec(), mode: file_mode(item.mode, default_mode) });
                    }
                    None if optional => {}
                    None => return Err(SetUpError::ConfigMapKeyMissing(item.key.clone())),
                }
            }
        }
    }
    Ok(payload)
}

/// secret.MakePayload: every key or the listed items.
fn secret_payload(items: Option<&[KeyToPath]>, secret: &Secret, default_mode: Option<i32>, optional: bool) -> Result<Payload, SetUpError> {
    let values = crate::secret_values(secret);
    let mut payload = Payload::new();
    match items.filter(|items| !items.is_empty()) {
        None => {
            for (key, value) in values {
                payload.insert(key, FileProjection { data: value, mode: file_mode(None, default_mode) });
            }
        }
        Some(items) => {
            for item in items {
                match values.get(&item.key) {
                    Some(value) => {
                        payload.insert(item.path.clone(), FileProjection { data: value.clone(), mode: file_mode(item.mode, default_mode) });
                    }
                    None if optional => {}
                    None => return Err(SetUpError::SecretKeyMissing(item.key.clone())),
                }
            }
        }
    }
    Ok(payload)
}

/// downwardapi.CollectData: each item's field or resource as text; all items are tried and the
/// failures reported together.
fn downward_api_payload(items: &[DownwardAPIVolumeFile], pod: &Pod, facts: &PodFacts, default_mode: Option<i32>) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            fieldpath::metadata_field(pod, &field.field_path)
        } else if let Some(resource) = &item.resource_field_ref {
            let container_name = resource.container_name.as_deref().unwrap_or_default();
            match fieldpath::find_container(pod, container_name) {
                Some(container) => fieldpath::resource_field(resource, container, facts),
                None => Err(format!("container {container_name} not found")),
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(text) => {
                payload.insert(item.path.clone(), FileProjection { data: text.into_bytes(), mode: file_mode(item.mode, default_mode) });
            }
            Err(message) => errors.push(SetUpError::DownwardApi(message)),
        }
    }
    collect(errors)?;
    Ok(payload)
}

/// The projected volume's files: the sources merged in order (a later source's path wins).
async fn projected_payload(
    sources: &[k8s_openapi::api::core::v1::VolumeProjection],
    default_mode: Option<i32>,
    pod: &Pod,
    facts: &PodFacts,
    source: &dyn ObjectSource,
) -> Result<Payload, SetUpError> {
    let namespace = pod_namespace(pod);
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for projection in sources {
        let part = if let Some(config_map) = &projection.config_map {
            let optional = config_map.optional.unwrap_or(false);
            match source.config_map(namespace, &config_map.name).await {
                Ok(Some(object)) => config_map_payload(config_map.items.as_deref(), &object, default_mode, optional),
                Ok(None) if optional => Ok(Payload::new()),
                Ok(None) => Err(SetUpError::ConfigMapNotFound(config_map.name.clone())),
                Err(error) => Err(error.into()),
            }
        } else if let Some(secret) = &projection.secret {
            let optional = secret.optional.unwrap_or(false);
            match source.secret(namespace, &secret.name).await {
                Ok(Some(object)) => secret_payload(secret.items.as_deref(), &object, default_mode, optional),
                Ok(None) if optional => Ok(Payload::new()),
                Ok(None) => Err(SetUpError::SecretNotFound(secret.name.clone())),
                Err(error) => Err(error.into()),
            }
        } else if let Some(downward_api) = &projection.downward_api {
            downward_api_payload(downward_api.items.as_deref().unwrap_or_default(), pod, facts, default_mode)
        } else if let Some(token) = &projection.service_account_token {
            // A token needs the TokenRequest API, which Tugboat does not serve yet; writing a
            // placeholder would hand the container something that looks like a credential.
            tracing::warn!(pod = %pod_name(pod), path = %token.path, "projected serviceAccountToken sources are not supported yet; skipped");
            Ok(Payload::new())
        } else if projection.cluster_trust_bundle.is_some() {
            tracing::warn!(pod = %pod_name(pod), "projected clusterTrustBundle sources are not supported yet; skipped");
            Ok(Payload::new())
        } else {
            Ok(Payload::new())
        };
        match part {
            Ok(part) => payload.extend(part),
            Err(error) => errors.push(error),
        }
    }
    collect(errors)?;
    Ok(payload)
}

/// The path behind a claim: its bound persistent volume, which must be hostPath or local.
async fn resolve_claim(pod: &Pod, namespace: &str, claim_name: &str, ephemeral: bool, source: &dyn ObjectSource) -> Result<(Plan, PathBuf), ClaimError> {
    let claim = match source.persistent_volume_claim(namespace, claim_name).await {
        Ok(Some(claim)) => claim,
        Ok(None) => return Err(ClaimError::FetchClaim(format!("persistentvolumeclaims \"{claim_name}\" not found"))),
        Err(error) => return Err(ClaimError::FetchClaim(error.0)),
    };
    if ephemeral {
        // An ephemeral volume's claim must be the one created for this pod, not a same-named one.
        let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let owned = claim.metadata.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.uid == pod_uid);
        if !owned {
            return Err(ClaimError::NotOwned {
                namespace: namespace.to_owned(),
                claim: claim_name.to_owned(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
            });
        }
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(ClaimError::BeingDeleted);
    }
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if phase != Some("Bound") || volume_name.is_empty() {
        return Err(ClaimError::NotBound);
    }
    let volume = match source.persistent_volume(&volume_name).await {
        Ok(Some(volume)) => volume,
        Ok(None) => return Err(ClaimError::FetchVolume { message: format!("persistentvolumes \"{volume_name}\" not found"), volume: volume_name }),
        Err(error) => return Err(ClaimError::FetchVolume { volume: volume_name, message: error.0 }),
    };
    let spec = volume.spec.unwrap_or_default();
    let Some(claim_ref) = &spec.claim_ref else {
        return Err(ClaimError::VolumeNotBound(volume_name));
    };
    let claim_uid = claim.metadata.uid.clone().unwrap_or_default();
    let ref_uid = claim_ref.uid.clone().unwrap_or_default();
    if ref_uid != claim_uid {
        return Err(ClaimError::WrongClaim { volume: volume_name, found: ref_uid, expected: claim_uid });
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err(ClaimError::BlockMode(volume_name));
    }
    if let Some(host_path) = &spec.host_path {
        let path = PathBuf::from(&host_path.path);
        return Ok((Plan::HostPath { path: path.clone(), host_path_type: host_path.type_.clone().unwrap_or_default() }, path));
    }
    if let Some(local) = &spec.local {
        let path = PathBuf::from(&local.path);
        return Ok((Plan::Local { path: path.clone() }, path));
    }
    let source_type = match serde_json::to_value(&spec) {
        Ok(serde_json::Value::Object(fields)) => fields
            .keys()
            .find(|k| !matches!(k.as_str(), "accessModes" | "capacity" | "claimRef" | "mountOptions" | "nodeAffinity" | "persistentVolumeReclaimPolicy" | "storageClassName" | "volumeMode" | "volumeAttributesClassName"))
            .cloned()
            .unwrap_or_else(|| "(none)".into()),
        _ => "(unknown)".into(),
    };
    Err(ClaimError::UnsupportedSource { volume: volume_name, source_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web"}}, "spec": spec})).expect("a valid pod")
    }

    fn config_map(data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": data, "binaryData": {"bin": "AAE="}})).expect("a valid config map")
    }

    #[test]
    fn config_map_payload_as_kubelet() {
        let cm = config_map(json!({"a": "1", "b": "2"}));
        let all = config_map_payload(None, &cm, Some(0o600), false).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b", "bin"]);
        assert_eq!(all["bin"].data, vec![0, 1]);
        assert_eq!(all["a"].mode, 0o600);

        let items: Vec<KeyToPath> = serde_json::from_value(json!([{"key": "a", "path": "dir/a.txt", "mode": 0o400}, {"key": "bin", "path": "b"}])).unwrap();
        let some = config_map_payload(Some(&items), &cm, None, false).unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["b", "dir/a.txt"]);
        assert_eq!(some["dir/a.txt"].mode, 0o400);
        assert_eq!(some["b"].mode, 0o644);

        let missing: Vec<KeyToPath> = serde_json::from_value(json!([{"key": "nope", "path": "x"}])).unwrap();
        let error = config_map_payload(Some(&missing), &cm, None, false).unwrap_err();
        assert_eq!(error.to_string(), "configmap references non-existent config key: nope");
        assert!(config_map_payload(Some(&missing), &cm, None, true).unwrap().is_empty());
    }

    #[test]
    fn secret_payload_merges_string_data() {
        let secret: Secret = serde_json::from_value(json!({"data": {"a": "YQ==", "b": "Yg=="}, "stringData": {"b": "B", "c": "C"}})).unwrap();
        let payload = secret_payload(None, &secret, None, false).unwrap();
        assert_eq!(payload["a"].data, b"a");
        assert_eq!(payload["b"].data, b"B");
        assert_eq!(payload["c"].data, b"C");
        let missing: Vec<KeyToPath> = serde_json::from_value(json!([{"key": "z", "path": "z"}])).unwrap();
        assert_eq!(secret_payload(Some(&missing), &secret, None, false).unwrap_err().to_string(), "references non-existent secret key: z");
    }

    #[test]
    fn downward_api_payload_collects_every_error() {
        let pod = pod(json!({"containers": [{"name": "app", "resources": {"limits": {"memory": "64Mi"}}}]}));
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}, "mode": 0o400},
        ]))
        .unwrap();
        let payload = downward_api_payload(&items, &pod, &PodFacts::default(), None).unwrap();
        assert_eq!(payload["labels"].data, b"app=\"web\"");
        assert_eq!(payload["mem"].data, b"64");
        assert_eq!(payload["mem"].mode, 0o400);

        let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "a", "fieldRef": {"fieldPath": "spec.nodeName"}},
            {"path": "b", "resourceFieldRef": {"containerName": "ghost", "resource": "limits.cpu"}},
        ]))
        .unwrap();
        let error = downward_api_payload(&bad, &pod, &PodFacts::default(), None).unwrap_err();
        assert_eq!(error.to_string(), "[unsupported fieldPath: spec.nodeName, container ghost not found]");
    }

    #[test]
    fn memory_volumes_are_sized_like_kubelet() {
        let facts = PodFacts { node_allocatable_memory_bytes: 8 << 30, ..Default::default() };
        let unlimited = pod(json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"limits": {"memory": "1Gi"}}}]}));
        assert_eq!(memory_volume_size(&unlimited, &facts, None).unwrap(), Some(8 << 30), "the node's allocatable");
        assert_eq!(memory_volume_size(&unlimited, &facts, Some("64Mi")).unwrap(), Some(64 << 20));
        assert_eq!(memory_volume_size(&unlimited, &facts, Some("16Gi")).unwrap(), Some(8 << 30), "never above what the pod may use");
        let limited = pod(json!({"containers": [{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}, {"name": "b", "resources": {"limits": {"memory": "1Gi"}}}],
            "initContainers": [{"name": "i", "resources": {"limits": {"memory": "3Gi"}}}]}));
        assert_eq!(memory_volume_size(&limited, &facts, None).unwrap(), Some(3 << 30), "the init container's peak");
        assert_eq!(memory_volume_size(&limited, &facts, Some("1Gi")).unwrap(), Some(1 << 30));
        assert_eq!(memory_volume_size(&unlimited, &PodFacts::default(), None).unwrap(), None, "nothing known: the kernel's default");
        assert!(memory_volume_size(&unlimited, &facts, Some("lots")).is_err());
    }

    #[test]
    fn unsupported_volume_types_are_named() {
        let volume: Volume = serde_json::from_value(json!({"name": "v", "nfs": {"server": "s", "path": "/"}})).unwrap();
        assert_eq!(volume_type(&volume), "nfs");
    }

    #[test]
    fn only_single_path_components_are_accepted() {
        for ok in ["uid-1", "a.b", "..a"] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "/"] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }
}
