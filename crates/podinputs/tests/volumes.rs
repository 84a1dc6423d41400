//! Volumes set up for real under a temporary directory, read back the way a container reads them
//! through the bind mount of the volume directory. Mount tests need root (CAP_SYS_ADMIN); without
//! it they say so and return.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use serde_json::{json, Value};
use tugboat_podinputs::{container_mounts, ObjectSource, PodFacts, PodVolumes, SourceError, VolumeError, VolumeKind, VolumeManager};

#[derive(Default)]
struct Objects {
    config_maps: Mutex<HashMap<String, ConfigMap>>,
    secrets: Mutex<HashMap<String, Secret>>,
    claims: Mutex<HashMap<String, PersistentVolumeClaim>>,
    volumes: Mutex<HashMap<String, PersistentVolume>>,
}

impl Objects {
    fn config_map(&self, name: &str, data: Value) {
        let object = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "data": data})).unwrap();
        self.config_maps.lock().unwrap().insert(name.into(), object);
    }
    fn secret(&self, name: &str, data: Value) {
        let object = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "data": data})).unwrap();
        self.secrets.lock().unwrap().insert(name.into(), object);
    }
    fn claim(&self, name: &str, object: Value) {
        self.claims.lock().unwrap().insert(name.into(), serde_json::from_value(object).unwrap());
    }
    fn volume(&self, name: &str, object: Value) {
        self.volumes.lock().unwrap().insert(name.into(), serde_json::from_value(object).unwrap());
    }
}

#[async_trait::async_trait]
impl ObjectSource for Objects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, SourceError> {
        Ok(self.config_maps.lock().unwrap().get(name).filter(|_| namespace == "ns").cloned())
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
        Ok(self.secrets.lock().unwrap().get(name).filter(|_| namespace == "ns").cloned())
    }
    async fn persistent_volume_claim(&self, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>, SourceError> {
        Ok(self.claims.lock().unwrap().get(name).filter(|_| namespace == "ns").cloned())
    }
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, SourceError> {
        Ok(self.volumes.lock().unwrap().get(name).cloned())
    }
}

/// A volume root in a temporary directory; whatever a failed test left mounted is detached on drop
/// so the directory can go.
struct Fixture {
    dir: tempfile::TempDir,
    manager: VolumeManager,
    objects: Objects,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manager = VolumeManager::new(dir.path().join("pods"));
        Self { dir, manager, objects: Objects::default() }
    }

    async fn setup(&self, pod: &Pod) -> Result<PodVolumes, VolumeError> {
        self.manager.setup(pod, &facts(), &self.objects).await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let Ok(root) = self.dir.path().canonicalize() else { return };
        let mut leftovers: Vec<PathBuf> = mounts().into_iter().map(|(point, _, _)| point).filter(|p| p.starts_with(&root)).collect();
        leftovers.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in leftovers {
            let c = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path alive for the call.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn facts() -> PodFacts {
    PodFacts {
        node_name: "node-1".into(),
        host_ip: "192.0.2.1".into(),
        pod_ips: vec!["10.0.0.9".into()],
        service_account_name: "default".into(),
        node_allocatable_cpu_millis: 2000,
        node_allocatable_memory_bytes: 1 << 30,
    }
}

fn pod(volumes: Value) -> Pod {
    pod_with_labels(volumes, json!({"app": "web"}))
}

fn pod_with_labels(volumes: Value, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "4b1c2d3e-uid", "labels": labels, "annotations": {"note": "a \"quoted\" value"}},
        "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}}}], "volumes": volumes}
    }))
    .unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: mounting a tmpfs needs root");
    }
    root
}

/// (mount point, filesystem type, super options) of every mount.
fn mounts() -> Vec<(PathBuf, String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some((PathBuf::from(fields[4].replace("\\040", " ")), fields.get(dash + 1)?.to_string(), fields.get(dash + 3)?.to_string()))
        })
        .collect()
}

fn mount_of(path: &Path) -> Option<(String, String)> {
    let path = path.canonicalize().ok()?;
    mounts().into_iter().rev().find(|(point, _, _)| *point == path).map(|(_, fs_type, options)| (fs_type, options))
}

fn data_target(volume: &Path) -> PathBuf {
    fs::read_link(volume.join("..data")).unwrap()
}

fn version_dirs(volume: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(volume).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with("..2")).collect();
    names.sort();
    names
}

#[tokio::test]
async fn config_map_updates_reach_the_volume_atomically() {
    let f = Fixture::new();
    f.objects.config_map("app-config", json!({"a.conf": "one", "b.conf": "two"}));
    let pod = pod(json!([{"name": "cfg", "configMap": {"name": "app-config"}}]));
    let volumes = f.setup(&pod).await.unwrap();
    let cfg = volumes.get("cfg").unwrap();
    assert_eq!(cfg.path, f.dir.path().join("pods/4b1c2d3e-uid/volumes/kubernetes.io~configmap/cfg"));
    assert!(cfg.read_only);
    assert_eq!(cfg.kind, VolumeKind::ConfigMap);

    // A container sees the volume directory through a bind mount: the same names as here.
    let volume = cfg.path.clone();
    assert_eq!(fs::read_to_string(volume.join("a.conf")).unwrap(), "one");
    assert_eq!(fs::read_link(volume.join("a.conf")).unwrap(), Path::new("..data/a.conf"));
    let first = data_target(&volume);
    assert!(first.to_string_lossy().starts_with("..20"), "{first:?}");
    assert_eq!(fs::metadata(volume.join("a.conf")).unwrap().permissions().mode() & 0o777, 0o644);

    // A resync without a change writes nothing.
    f.setup(&pod).await.unwrap();
    assert_eq!(data_target(&volume), first);

    // A change: new content through the same path, a key gone, the old version removed.
    f.objects.config_map("app-config", json!({"a.conf": "uno", "c.conf": "tres"}));
    f.setup(&pod).await.unwrap();
    let second = data_target(&volume);
    assert_ne!(second, first);
    assert_eq!(fs::read_to_string(volume.join("a.conf")).unwrap(), "uno");
    assert_eq!(fs::read_to_string(volume.join("..data").join("c.conf")).unwrap(), "tres");
    assert_eq!(fs::canonicalize(volume.join("a.conf")).unwrap(), volume.canonicalize().unwrap().join(&second).join("a.conf"));
    assert!(fs::symlink_metadata(volume.join("b.conf")).is_err(), "a removed key's file is gone");
    assert_eq!(version_dirs(&volume), vec![second.to_string_lossy().into_owned()], "the old version was removed");
}

#[tokio::test]
async fn config_map_items_modes_and_missing_objects() {
    let f = Fixture::new();
    let pod = pod(json!([
        {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "k", "path": "nested/dir/k.txt", "mode": 0o600}], "defaultMode": 0o440}},
        {"name": "opt", "configMap": {"name": "maybe", "optional": true}},
    ]));
    let error = f.setup(&pod).await.unwrap_err();
    assert_eq!(error.to_string(), "MountVolume.SetUp failed for volume \"cfg\" : configmap \"settings\" not found");
    // The optional one was set up anyway, empty.
    let opt = f.dir.path().join("pods/4b1c2d3e-uid/volumes/kubernetes.io~configmap/opt");
    assert!(opt.join("..data").exists());

    f.objects.config_map("settings", json!({"other": "x"}));
    let error = f.setup(&pod).await.unwrap_err();
    assert_eq!(error.to_string(), "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: k");

    f.objects.config_map("settings", json!({"k": "v"}));
    f.objects.config_map("maybe", json!({"late": "arrival"}));
    let volumes = f.setup(&pod).await.unwrap();
    let cfg = &volumes.get("cfg").unwrap().path;
    assert_eq!(fs::read_to_string(cfg.join("nested/dir/k.txt")).unwrap(), "v");
    assert_eq!(fs::metadata(cfg.join("nested/dir/k.txt")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(opt.join("late")).unwrap(), "arrival", "an optional ConfigMap created later appears");
}

#[tokio::test]
async fn downward_api_files_follow_label_changes() {
    let f = Fixture::new();
    let volumes = json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
    ]}}]);
    let set_up = f.setup(&pod_with_labels(volumes.clone(), json!({"b": "2", "a": "1"}))).await.unwrap();
    let info = set_up.get("info").unwrap().path.clone();
    assert_eq!(fs::read_to_string(info.join("labels")).unwrap(), "a=\"1\"\nb=\"2\"");
    assert_eq!(fs::read_to_string(info.join("annotations")).unwrap(), "note=\"a \\\"quoted\\\" value\"");
    assert_eq!(fs::read_to_string(info.join("name")).unwrap(), "web");
    assert_eq!(fs::read_to_string(info.join("mem")).unwrap(), "256");
    assert_eq!(fs::read_to_string(info.join("cpu")).unwrap(), "500");

    f.setup(&pod_with_labels(volumes, json!({"a": "1", "tier": "front"}))).await.unwrap();
    assert_eq!(fs::read_to_string(info.join("labels")).unwrap(), "a=\"1\"\ntier=\"front\"");
    assert_eq!(version_dirs(&info).len(), 1);
}

#[tokio::test]
async fn memory_empty_dir_is_a_tmpfs_until_teardown() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    let pod = pod(json!([
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "disk", "emptyDir": {}},
    ]));
    let volumes = f.setup(&pod).await.unwrap();
    let scratch = volumes.get("scratch").unwrap().path.clone();
    let disk = volumes.get("disk").unwrap().path.clone();
    let (fs_type, options) = mount_of(&scratch).expect("the memory emptyDir is a mount point");
    assert_eq!(fs_type, "tmpfs");
    assert!(options.contains("size=65536k"), "{options}");
    assert!(mount_of(&disk).is_none(), "a disk emptyDir is a plain directory");
    assert_eq!(fs::metadata(&disk).unwrap().permissions().mode() & 0o777, 0o777);

    // Data survives a resync, and a resync does not stack a second tmpfs.
    fs::write(scratch.join("state"), "kept").unwrap();
    fs::write(disk.join("state"), "kept").unwrap();
    f.setup(&pod).await.unwrap();
    let fresh = VolumeManager::new(f.dir.path().join("pods"));
    fresh.setup(&pod, &facts(), &f.objects).await.unwrap();
    assert_eq!(fs::read_to_string(scratch.join("state")).unwrap(), "kept");
    assert_eq!(fs::read_to_string(disk.join("state")).unwrap(), "kept");
    let canonical = scratch.canonicalize().unwrap();
    assert_eq!(mounts().iter().filter(|(p, _, _)| *p == canonical).count(), 1);

    f.manager.teardown("4b1c2d3e-uid").await.unwrap();
    assert!(!mounts().iter().any(|(p, _, _)| *p == canonical), "unmounted");
    assert!(!f.manager.pod_dir("4b1c2d3e-uid").exists(), "removed");
    f.manager.teardown("4b1c2d3e-uid").await.unwrap();
}

#[tokio::test]
async fn memory_empty_dir_without_a_limit_takes_the_pods() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    let volumes = f.setup(&pod(json!([{"name": "scratch", "emptyDir": {"medium": "Memory"}}]))).await.unwrap();
    let (_, options) = mount_of(&volumes.get("scratch").unwrap().path).unwrap();
    assert!(options.contains("size=262144k"), "the pod's 256Mi memory limit: {options}");
}

#[tokio::test]
async fn secrets_and_projections_live_on_tmpfs() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    f.objects.secret("creds", json!({"password": "aHVudGVyMg==", "user": "YWRtaW4="}));
    f.objects.config_map("app-config", json!({"setting": "on"}));
    let pod = pod(json!([
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "all", "projected": {"defaultMode": 0o440, "sources": [
            {"secret": {"name": "creds", "items": [{"key": "user", "path": "auth/user"}]}},
            {"configMap": {"name": "app-config"}},
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
        ]}},
    ]));
    let volumes = f.setup(&pod).await.unwrap();
    let creds = volumes.get("creds").unwrap();
    assert!(creds.path.ends_with("volumes/kubernetes.io~secret/creds"));
    assert!(creds.read_only);
    assert_eq!(mount_of(&creds.path).map(|m| m.0).as_deref(), Some("tmpfs"), "secrets never touch the disk");
    assert_eq!(fs::read_to_string(creds.path.join("password")).unwrap(), "hunter2");
    assert_eq!(fs::metadata(creds.path.join("password")).unwrap().permissions().mode() & 0o777, 0o400);

    let all = &volumes.get("all").unwrap().path;
    assert!(all.ends_with("volumes/kubernetes.io~projected/all"));
    assert_eq!(mount_of(all).map(|m| m.0).as_deref(), Some("tmpfs"));
    assert_eq!(fs::read_to_string(all.join("auth/user")).unwrap(), "admin");
    assert_eq!(fs::read_to_string(all.join("setting")).unwrap(), "on");
    assert_eq!(fs::read_to_string(all.join("labels")).unwrap(), "app=\"web\"");
    assert_eq!(fs::metadata(all.join("setting")).unwrap().permissions().mode() & 0o777, 0o440);
    assert!(fs::symlink_metadata(all.join("token")).is_err(), "no placeholder token is written");

    // A rotated secret reaches the mounted tmpfs.
    f.objects.secret("creds", json!({"password": "czNjcjN0", "user": "YWRtaW4="}));
    f.setup(&pod).await.unwrap();
    assert_eq!(fs::read_to_string(creds.path.join("password")).unwrap(), "s3cr3t");

    f.manager.teardown("4b1c2d3e-uid").await.unwrap();
    let root = f.dir.path().canonicalize().unwrap();
    assert!(!mounts().iter().any(|(p, _, _)| p.starts_with(&root)));
    assert!(!f.manager.pod_dir("4b1c2d3e-uid").exists());
}

#[tokio::test]
async fn missing_secrets_fail_in_kubelet_words() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    let error = f.setup(&pod(json!([{"name": "creds", "secret": {"secretName": "absent"}}]))).await.unwrap_err();
    assert_eq!(error.to_string(), "MountVolume.SetUp failed for volume \"creds\" : secret \"absent\" not found");
    f.objects.secret("s", json!({"a": "YQ=="}));
    let error = f.setup(&pod(json!([{"name": "creds", "secret": {"secretName": "s", "items": [{"key": "b", "path": "b"}]}}]))).await.unwrap_err();
    assert_eq!(error.to_string(), "MountVolume.SetUp failed for volume \"creds\" : references non-existent secret key: b");
    let error = f
        .setup(&pod(json!([{"name": "p", "projected": {"sources": [{"configMap": {"name": "x"}}, {"secret": {"name": "y"}}]}}])))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "MountVolume.SetUp failed for volume \"p\" : [configmap \"x\" not found, secret \"y\" not found]");
}

#[tokio::test]
async fn host_path_types_are_checked_and_created() {
    let f = Fixture::new();
    let host = f.dir.path().join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("file"), "x").unwrap();
    let socket_path = host.join("sock");
    let _socket = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    let fixture = &f;
    let check = |path: PathBuf, type_: &str| {
        let pod = pod(json!([{"name": "h", "hostPath": {"path": path, "type": type_}}]));
        async move { fixture.setup(&pod).await.map(|v| v.get("h").unwrap().clone()).map_err(|e| e.to_string()) }
    };
    let p = |name: &str| host.join(name);
    let shown = |name: &str| p(name).display().to_string();

    let made = check(p("made/deep"), "DirectoryOrCreate").await.unwrap();
    assert_eq!(made.path, p("made/deep"));
    assert_eq!(made.kind, VolumeKind::HostPath);
    assert!(!made.read_only);
    assert!(p("made/deep").is_dir());
    assert_eq!(fs::metadata(p("made/deep")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(check(p("file"), "DirectoryOrCreate").await.unwrap_err(), format!("MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory", shown("file")));
    assert!(check(p("made"), "Directory").await.is_ok());
    assert_eq!(check(p("absent"), "Directory").await.unwrap_err(), format!("MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory", shown("absent")));
    assert!(!p("absent").exists());

    check(p("new-file"), "FileOrCreate").await.unwrap();
    assert!(p("new-file").is_file());
    assert_eq!(fs::metadata(p("new-file")).unwrap().permissions().mode() & 0o777, 0o644);
    fs::write(p("new-file"), "content").unwrap();
    check(p("new-file"), "FileOrCreate").await.unwrap();
    assert_eq!(fs::read_to_string(p("new-file")).unwrap(), "content", "an existing file is not truncated");
    assert!(check(p("no-parent/file"), "FileOrCreate").await.unwrap_err().contains("cannot create the file"), "parents are not created for a file");
    assert_eq!(check(p("made"), "File").await.unwrap_err(), format!("MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a file", shown("made")));

    assert!(check(socket_path.clone(), "Socket").await.is_ok());
    assert!(fs::metadata(&socket_path).unwrap().file_type().is_socket());
    assert!(check(p("file"), "Socket").await.unwrap_err().ends_with("is not a socket file"));
    assert!(check("/dev/null".into(), "CharDevice").await.is_ok());
    assert!(check("/dev/null".into(), "BlockDevice").await.unwrap_err().ends_with("/dev/null is not a block device"));
    assert!(check(p("file"), "CharDevice").await.unwrap_err().ends_with("is not a character device"));
    assert_eq!(check(p("file"), "Sideways").await.unwrap_err(), "MountVolume.SetUp failed for volume \"h\" : Sideways is an invalid volume type");
    assert!(check(p("whatever"), "").await.is_ok(), "no type: no check");
}

#[tokio::test]
async fn claims_resolve_to_their_host_path_volumes() {
    let f = Fixture::new();
    let data = f.dir.path().join("pv-data");
    fs::create_dir(&data).unwrap();
    let bound = |volume: &str| json!({"metadata": {"name": "data", "namespace": "ns", "uid": "claim-uid"}, "spec": {"volumeName": volume}, "status": {"phase": "Bound"}});
    let pod = pod(json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}]));

    let error = f.setup(&pod).await.unwrap_err();
    assert_eq!(error.to_string(), "error processing PVC ns/data: failed to fetch PVC from API server: persistentvolumeclaims \"data\" not found");

    f.objects.claim("data", json!({"metadata": {"name": "data", "namespace": "ns", "uid": "claim-uid"}, "spec": {}, "status": {"phase": "Pending"}}));
    assert_eq!(f.setup(&pod).await.unwrap_err().to_string(), "error processing PVC ns/data: PVC is not bound");

    f.objects.claim("data", bound("pv-1"));
    assert_eq!(f.setup(&pod).await.unwrap_err().to_string(), "error processing PVC ns/data: failed to fetch PV pv-1 from API server: persistentvolumes \"pv-1\" not found");

    f.objects.volume("pv-1", json!({"metadata": {"name": "pv-1"}, "spec": {"nfs": {"server": "nas", "path": "/export"}, "claimRef": {"uid": "claim-uid"}}}));
    assert_eq!(
        f.setup(&pod).await.unwrap_err().to_string(),
        "error processing PVC ns/data: persistentvolume \"pv-1\" is a nfs volume; this node mounts only hostPath and local persistent volumes"
    );

    f.objects.volume("pv-1", json!({"metadata": {"name": "pv-1"}, "spec": {"hostPath": {"path": data}, "claimRef": {"uid": "someone-else"}}}));
    assert!(f.setup(&pod).await.unwrap_err().to_string().contains("does not point to claim.UID (claim-uid)"));

    f.objects.volume("pv-1", json!({"metadata": {"name": "pv-1"}, "spec": {"hostPath": {"path": data}, "claimRef": {"uid": "claim-uid"}}}));
    let volumes = f.setup(&pod).await.unwrap();
    let volume = volumes.get("data").unwrap();
    assert_eq!(volume.path, data);
    assert!(volume.read_only, "the claim is mounted readOnly");
    assert_eq!(volume.kind, VolumeKind::PersistentVolumeClaim);

    // Resolved once, as kubelet mounts once: the claim going away does not fail a running pod.
    f.objects.claims.lock().unwrap().clear();
    assert_eq!(f.setup(&pod).await.unwrap().get("data").unwrap().path, data);
    // Teardown leaves the persistent data alone.
    fs::write(data.join("keep"), "me").unwrap();
    f.manager.teardown("4b1c2d3e-uid").await.unwrap();
    assert_eq!(fs::read_to_string(data.join("keep")).unwrap(), "me");
}

#[tokio::test]
async fn local_and_ephemeral_claims() {
    let f = Fixture::new();
    let data = f.dir.path().join("local-disk");
    f.objects.claim("web-scratch", json!({"metadata": {"name": "web-scratch", "uid": "c2", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "4b1c2d3e-uid", "controller": true}]}, "spec": {"volumeName": "local-1"}, "status": {"phase": "Bound"}}));
    f.objects.volume("local-1", json!({"metadata": {"name": "local-1"}, "spec": {"local": {"path": data}, "claimRef": {"uid": "c2"}}}));
    let pod = pod(json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}}]));
    let error = f.setup(&pod).await.unwrap_err();
    assert_eq!(error.to_string(), format!("MountVolume.SetUp failed for volume \"scratch\" : path \"{}\" does not exist", data.display()));
    fs::create_dir(&data).unwrap();
    assert_eq!(f.setup(&pod).await.unwrap().get("scratch").unwrap().path, data);

    let f = Fixture::new();
    f.objects.claim("web-scratch", json!({"metadata": {"name": "web-scratch", "uid": "c2"}, "spec": {"volumeName": "local-1"}, "status": {"phase": "Bound"}}));
    assert_eq!(
        f.setup(&pod).await.unwrap_err().to_string(),
        "error processing PVC ns/web-scratch: PVC ns/web-scratch was not created for pod ns/web (pod is not owner)"
    );
}

#[tokio::test]
async fn mounts_of_set_up_volumes() {
    let f = Fixture::new();
    f.objects.config_map("app-config", json!({"app.yaml": "port: 80"}));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "4b1c2d3e-uid"},
        "spec": {
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/app/app.yaml", "subPath": "app.yaml"},
                {"name": "work", "mountPath": "/work", "subPath": "app/cache"},
                {"name": "cfg", "mountPath": "/etc/app/all"},
            ]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}, {"name": "work", "emptyDir": {}}]
        }
    }))
    .unwrap();
    let volumes = f.setup(&pod).await.unwrap();
    let mounts = container_mounts(&pod, &pod.spec.as_ref().unwrap().containers[0], &volumes).unwrap();
    assert_eq!(fs::read_to_string(&mounts[0].host_path).unwrap(), "port: 80");
    assert!(mounts[0].readonly);
    let work = Path::new(&mounts[1].host_path);
    assert!(work.is_dir() && work.ends_with("work/app/cache"));
    assert!(!mounts[1].readonly);
    assert_eq!(mounts[2].host_path, volumes.get("cfg").unwrap().path.to_string_lossy());
}

#[tokio::test]
async fn unsupported_volumes_and_bad_uids_are_refused() {
    let f = Fixture::new();
    let error = f.setup(&pod(json!([{"name": "nfs", "nfs": {"server": "nas", "path": "/"}}]))).await.unwrap_err();
    assert_eq!(error.to_string(), "MountVolume.SetUp failed for volume \"nfs\" : volume type nfs is not supported by this node");
    let mut bad = pod(json!([]));
    bad.metadata.uid = Some("../escape".into());
    assert!(matches!(f.setup(&bad).await, Err(VolumeError::InvalidPodUid(_))));
    assert!(matches!(f.manager.teardown("..").await, Err(VolumeError::InvalidPodUid(_))));
    assert!(matches!(f.manager.teardown("").await, Err(VolumeError::InvalidPodUid(_))));
    assert!(f.dir.path().exists());
}

#[tokio::test]
async fn teardown_removes_the_pods_directory_only() {
    let f = Fixture::new();
    let other = pod(json!([{"name": "work", "emptyDir": {}}]));
    let mut mine = other.clone();
    mine.metadata.uid = Some("other-uid".into());
    f.setup(&other).await.unwrap();
    f.setup(&mine).await.unwrap();
    fs::write(f.manager.pod_dir("4b1c2d3e-uid").join("etc-hosts"), "127.0.0.1 localhost\n").unwrap();
    f.manager.teardown("4b1c2d3e-uid").await.unwrap();
    assert!(!f.manager.pod_dir("4b1c2d3e-uid").exists());
    assert!(f.manager.pod_dir("other-uid").join("volumes/kubernetes.io~empty-dir/work").is_dir());
}
