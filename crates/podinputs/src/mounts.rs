//! A container's volumeMounts as CRI mounts (kubelet's makeMounts).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use tugboat_cri::api::{self, MountPropagation};

use crate::expansion::expand;
use crate::volumes::{HostVolume, PodVolumes, VolumeError};

/// The container's volumeMounts as CRI mounts. `subPathExpr` is expanded against no variables, so
/// one that refers to a variable fails with "missing value for ..."; the agent passes the
/// container's environment through [`container_mounts_with_env`] to support it.
pub fn container_mounts(pod: &Pod, container: &Container, volumes: &PodVolumes) -> Result<Vec<api::Mount>, VolumeError> {
    container_mounts_with_env(pod, container, volumes, &[])
}

/// [`container_mounts`] with the container's environment (from [`crate::container_env`]) for
/// `subPathExpr`, as kubelet expands it.
pub fn container_mounts_with_env(pod: &Pod, container: &Container, volumes: &PodVolumes, env: &[api::KeyValue]) -> Result<Vec<api::Mount>, VolumeError> {
    let env: HashMap<&str, &str> = env.iter().map(|kv| (kv.key.as_str(), kv.value.as_str())).collect();
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes.get(&mount.name).ok_or_else(|| VolumeError::UnknownVolume { volume: mount.name.clone(), container: container.name.clone() })?;
        let sub_path = sub_path(mount, &container.name, &env)?;
        let host_path = if sub_path.is_empty() {
            volume.path.clone()
        } else {
            prepare_sub_path(volume, &sub_path, &mount.name, &container.name).inspect_err(|error| {
                tracing::warn!(pod = ?pod.metadata.name, container = %container.name, volume = %mount.name, %sub_path, ?error, "cannot prepare a subPath");
            })?
        };
        // Kubelet makes a relative container path absolute rather than refusing it.
        let container_path = if mount.mount_path.starts_with('/') { mount.mount_path.clone() } else { format!("/{}", mount.mount_path) };
        mounts.push(api::Mount {
            container_path,
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: mount.read_only.unwrap_or(false) || volume.read_only,
            selinux_relabel: volume.kind.selinux_relabel(),
            propagation: propagation(mount, &container.name)? as i32,
            recursive_read_only: recursive_read_only(mount, &container.name)?,
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// The mount's subPath (subPathExpr expanded), checked as kubelet checks it.
fn sub_path(mount: &VolumeMount, container: &str, env: &HashMap<&str, &str>) -> Result<String, VolumeError> {
    let sub_path = match mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
        Some(expression) => {
            let mut missing = BTreeSet::new();
            let expanded = expand(expression, |name| match env.get(name) {
                Some(value) if !value.is_empty() => Some((*value).to_owned()),
                _ => {
                    missing.insert(name.to_owned());
                    Some(String::new())
                }
            });
            if !missing.is_empty() {
                let missing = missing.into_iter().collect::<Vec<_>>().join(", ");
                return Err(VolumeError::SubPathExprMissing { volume: mount.name.clone(), container: container.to_owned(), missing });
            }
            expanded
        }
        None => mount.sub_path.clone().unwrap_or_default(),
    };
    if sub_path.starts_with('/') {
        return Err(VolumeError::SubPathAbsolute { volume: mount.name.clone(), container: container.to_owned(), sub_path });
    }
    if sub_path.split('/').any(|part| part == "..") {
        return Err(VolumeError::SubPathBacksteps { volume: mount.name.clone(), container: container.to_owned(), sub_path });
    }
    Ok(sub_path)
}

fn propagation(mount: &VolumeMount, container: &str) -> Result<MountPropagation, VolumeError> {
    match mount.mount_propagation.as_deref() {
        None | Some("None") => Ok(MountPropagation::PropagationPrivate),
        Some("HostToContainer") => Ok(MountPropagation::PropagationHostToContainer),
        Some("Bidirectional") => Ok(MountPropagation::PropagationBidirectional),
        Some(other) => Err(VolumeError::Propagation { volume: mount.name.clone(), container: container.to_owned(), mode: other.to_owned() }),
    }
}

/// kubelet's resolveRecursiveReadOnly, taking the runtime to support recursive read-only mounts
/// (containerd 2 does; an older runtime ignores the field, so "Enabled" degrades to read-only).
fn recursive_read_only(mount: &VolumeMount, container: &str) -> Result<bool, VolumeError> {
    let error = |reason: &str| VolumeError::RecursiveReadOnly { volume: mount.name.clone(), container: container.to_owned(), reason: reason.to_owned() };
    match mount.recursive_read_only.as_deref() {
        None | Some("Disabled") => Ok(false),
        Some(_) if mount.read_only != Some(true) => Err(error("rro requires ro")),
        Some(_) if mount.mount_propagation.as_deref().is_some_and(|p| p != "None") => Err(error("rro requires no mount propagation")),
        Some("Enabled" | "IfPossible") => Ok(true),
        Some(other) => Err(error(&format!("unknown recursive read-only mode {other:?}"))),
    }
}

/// The host path of a subPath, created when missing where the volume allows it. It is resolved
/// (symlinks followed) and must stay inside the volume: a container could otherwise plant a
/// symlink in an emptyDir that makes a later mount expose any host path. Kubelet guards the same
/// way (and also bind-mounts the result to close the remaining race, which this does not).
fn prepare_sub_path(volume: &HostVolume, sub_path: &str, volume_name: &str, container: &str) -> Result<PathBuf, VolumeError> {
    let prepare_error = |reason: String| VolumeError::SubPathPrepare { volume: volume_name.to_owned(), container: container.to_owned(), sub_path: sub_path.to_owned(), reason };
    let create_error = |source: io::Error| VolumeError::SubPathCreate { volume: volume_name.to_owned(), container: container.to_owned(), sub_path: sub_path.to_owned(), source };
    let root = volume.path.canonicalize().map_err(|e| prepare_error(format!("the volume's path {}: {e}", volume.path.display())))?;
    let joined = root.join(sub_path);
    let exists = fs::metadata(&joined).is_ok();
    if !exists {
        if !volume.kind.creates_sub_paths() {
            return Err(prepare_error(format!("{} does not exist", joined.display())));
        }
        create_inside(&root, sub_path).map_err(create_error)?;
    }
    let resolved = joined.canonicalize().map_err(|e| prepare_error(format!("{}: {e}", joined.display())))?;
    if !resolved.starts_with(&root) {
        return Err(prepare_error(format!("{} resolves to {}, outside the volume", joined.display(), resolved.display())));
    }
    Ok(resolved)
}

/// Creates the missing directories of `sub_path` under `root` one at a time with the mode of the
/// volume's root (kubelet's SafeMakeDir), following existing symlinks only while they stay inside.
fn create_inside(root: &Path, sub_path: &str) -> io::Result<()> {
    let mode = fs::metadata(root)?.permissions().mode() & 0o7777;
    let mut current = root.to_owned();
    for component in Path::new(sub_path).components() {
        let Component::Normal(part) = component else { continue };
        let next = current.join(part);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let resolved = next.canonicalize()?;
                if !resolved.starts_with(root) {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("{} leads outside the volume", next.display())));
                }
                current = resolved;
            }
            Ok(_) => current = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(mode).create(&next)?;
                // The umask narrowed the creation mode; the subPath gets the volume's own.
                fs::set_permissions(&next, fs::Permissions::from_mode(mode))?;
                current = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::VolumeKind;
    use serde_json::json;

    fn container(mounts: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "app", "volumeMounts": mounts})).expect("a valid container")
    }

    fn volumes(dir: &Path) -> PodVolumes {
        let mut volumes = PodVolumes::new();
        for (name, kind, read_only) in [("data", VolumeKind::EmptyDir, false), ("config", VolumeKind::ConfigMap, true), ("host", VolumeKind::HostPath, false)] {
            let path = dir.join(name);
            fs::create_dir_all(&path).unwrap();
            volumes.insert(name, HostVolume { path, read_only, kind });
        }
        volumes
    }

    #[test]
    fn mounts_carry_paths_modes_and_propagation() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = volumes(dir.path());
        let c = container(json!([
            {"name": "data", "mountPath": "/data"},
            {"name": "config", "mountPath": "etc/app"},
            {"name": "host", "mountPath": "/host", "readOnly": true, "mountPropagation": "HostToContainer"},
            {"name": "data", "mountPath": "/shared", "mountPropagation": "Bidirectional"},
            {"name": "host", "mountPath": "/rro", "readOnly": true, "recursiveReadOnly": "IfPossible"},
        ]));
        let mounts = container_mounts(&Pod::default(), &c, &volumes).unwrap();
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].container_path, "/data");
        assert_eq!(mounts[0].host_path, dir.path().join("data").to_string_lossy());
        assert!(!mounts[0].readonly);
        assert!(mounts[0].selinux_relabel);
        assert_eq!(mounts[0].propagation, MountPropagation::PropagationPrivate as i32);
        assert_eq!(mounts[1].container_path, "/etc/app");
        assert!(mounts[1].readonly, "a ConfigMap volume is read-only by nature");
        assert!(mounts[2].readonly);
        assert!(!mounts[2].selinux_relabel, "a host path is never relabeled");
        assert_eq!(mounts[2].propagation, MountPropagation::PropagationHostToContainer as i32);
        assert_eq!(mounts[3].propagation, MountPropagation::PropagationBidirectional as i32);
        assert!(!mounts[0].recursive_read_only && mounts[4].recursive_read_only);
    }

    #[test]
    fn unknown_volumes_and_bad_propagation_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = volumes(dir.path());
        let error = container_mounts(&Pod::default(), &container(json!([{"name": "ghost", "mountPath": "/x"}])), &volumes).unwrap_err();
        assert_eq!(error.to_string(), "cannot find volume \"ghost\" to mount into container \"app\"");
        let error = container_mounts(&Pod::default(), &container(json!([{"name": "data", "mountPath": "/x", "mountPropagation": "Sideways"}])), &volumes).unwrap_err();
        assert_eq!(error.to_string(), "invalid MountPropagation mode: \"Sideways\"");
        let error = container_mounts(&Pod::default(), &container(json!([{"name": "data", "mountPath": "/x", "recursiveReadOnly": "Enabled"}])), &volumes).unwrap_err();
        assert_eq!(error.to_string(), "failed to resolve recursive read-only mode: rro requires ro");
    }

    #[test]
    fn sub_paths_are_created_and_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = volumes(dir.path());
        fs::set_permissions(dir.path().join("data"), fs::Permissions::from_mode(0o777)).unwrap();
        let c = container(json!([{"name": "data", "mountPath": "/a", "subPath": "x/y"}]));
        let mounts = container_mounts(&Pod::default(), &c, &volumes).unwrap();
        let created = dir.path().join("data/x/y").canonicalize().unwrap();
        assert_eq!(mounts[0].host_path, created.to_string_lossy());
        assert_eq!(fs::metadata(&created).unwrap().permissions().mode() & 0o777, 0o777, "the volume root's mode");

        // A missing key of a ConfigMap volume is not papered over with a directory.
        let c = container(json!([{"name": "config", "mountPath": "/a", "subPath": "missing"}]));
        let error = container_mounts(&Pod::default(), &c, &volumes).unwrap_err();
        assert!(matches!(error, VolumeError::SubPathPrepare { .. }), "{error:?}");
        assert!(!dir.path().join("config/missing").exists());
    }

    #[test]
    fn sub_paths_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = volumes(dir.path());
        let mounts = |sub_path: &str| container_mounts(&Pod::default(), &container(json!([{"name": "data", "mountPath": "/a", "subPath": sub_path}])), &volumes);
        assert_eq!(mounts("../host").unwrap_err().to_string(), "unable to provision SubPath `../host`: must not contain '..'");
        assert_eq!(mounts("a/../../b").unwrap_err().to_string(), "unable to provision SubPath `a/../../b`: must not contain '..'");
        assert_eq!(mounts("/etc").unwrap_err().to_string(), "error SubPath `/etc` must not be an absolute path");
        assert!(mounts("..a").is_ok(), "a name that starts with dots is not a back-step");

        // A symlink planted inside the volume must not lead out of it, existing or to be created.
        std::os::unix::fs::symlink(dir.path().join("host"), dir.path().join("data/evil")).unwrap();
        assert!(matches!(mounts("evil"), Err(VolumeError::SubPathPrepare { .. })));
        assert!(matches!(mounts("evil/new"), Err(VolumeError::SubPathCreate { .. })));
        assert!(!dir.path().join("host/new").exists(), "nothing was created outside the volume");
        std::os::unix::fs::symlink("inner", dir.path().join("data/ok")).unwrap();
        fs::create_dir(dir.path().join("data/inner")).unwrap();
        assert!(mounts("ok/deeper").is_ok(), "symlinks that stay inside are followed");
        assert!(dir.path().join("data/inner/deeper").is_dir());
    }

    #[test]
    fn sub_path_expressions_expand_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = volumes(dir.path());
        let c = container(json!([{"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/logs"}]));
        let env = vec![api::KeyValue { key: "POD_NAME".into(), value: "web-0".into() }];
        let mounts = container_mounts_with_env(&Pod::default(), &c, &volumes, &env).unwrap();
        assert!(mounts[0].host_path.ends_with("data/web-0/logs"), "{}", mounts[0].host_path);
        let error = container_mounts(&Pod::default(), &c, &volumes).unwrap_err();
        assert_eq!(error.to_string(), "missing value for POD_NAME");
        let escape = container(json!([{"name": "data", "mountPath": "/x", "subPathExpr": "$(UP)/x"}]));
        let env = vec![api::KeyValue { key: "UP".into(), value: "..".into() }];
        assert!(matches!(container_mounts_with_env(&Pod::default(), &escape, &volumes, &env), Err(VolumeError::SubPathBacksteps { .. })));
    }
}
