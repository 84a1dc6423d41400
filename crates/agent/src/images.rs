//! Image pulls: imagePullPolicy, imagePullSecrets, plain-HTTP registries, and the pull back-off
//! (ErrImagePull, then ImagePullBackOff doubling from 10 s to 5 min).

use crate::backoff::Backoff;
use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};
use tugboat_cri::{api::AuthConfig, Runtime};

/// Why a container cannot get its image (yet); `reason` is what the container status shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PullFailure {
    pub reason: &'static str,
    pub message: String,
}

pub struct ImagePuller {
    /// containerd's `config_path` (one `hosts.toml` per registry), when the agent runs containerd.
    hosts_dir: Option<PathBuf>,
    insecure_registries: Vec<String>,
    /// Per image: back-off, when the last pull failed, and the registry's message.
    backoff: Mutex<HashMap<String, (Backoff, SystemTime, String)>>,
}

/// The registry host of an image reference, as Docker reads it (`docker.io` when none is named).
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(name, _)| name);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether pulling is due: Always, or IfNotPresent/Never with the image absent. Never with the
/// image absent is a failure.
pub fn image_tag_defaults_to_always(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
}

impl ImagePuller {
    pub fn new(hosts_dir: Option<PathBuf>, insecure_registries: Vec<String>) -> Self {
        Self { hosts_dir, insecure_registries, backoff: Mutex::default() }
    }

    /// When a pull of `image` that failed may be tried again.
    pub fn retry_at(&self, image: &str) -> Option<SystemTime> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner()).get(image).map(|(backoff, failed_at, _)| backoff.retry_at(*failed_at))
    }

    /// Plain-HTTP registries (loopback ones, as Docker trusts them, and configured ones) get a
    /// `hosts.toml` so containerd speaks HTTP to them.
    fn allow_plain_http(&self, host: &str) {
        let Some(dir) = &self.hosts_dir else { return };
        if !(is_loopback_host(host) || self.insecure_registries.iter().any(|r| r == host)) {
            return;
        }
        let path = dir.join(host).join("hosts.toml");
        let text = format!("server = \"http://{host}\"\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
            return;
        }
        if let Err(error) = std::fs::create_dir_all(dir.join(host)).and_then(|_| std::fs::write(&path, text)) {
            tracing::warn!(%error, path = %path.display(), "cannot configure a plain-HTTP registry");
        }
    }

    /// Makes sure the container's image is present according to its pull policy, and answers the
    /// image reference to create the container from. `pod_secrets` are the pod's pull secrets.
    pub async fn ensure(
        &self,
        runtime: &dyn Runtime,
        recorder: &crate::events::Recorder,
        pod: &Pod,
        container: &Container,
        field_path: &str,
        pull_secrets: &[Secret],
    ) -> Result<String, PullFailure> {
        let image = container.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err(PullFailure { reason: "InvalidImageName", message: "the container names no image".into() });
        }
        let policy = container.image_pull_policy.clone().unwrap_or_else(|| if image_tag_defaults_to_always(&image) { "Always".into() } else { "IfNotPresent".into() });
        let present = runtime.image_status(&image).await.map_err(|e| PullFailure { reason: "ErrImagePull", message: e.to_string() })?;
        if policy != "Always" {
            if let Some(found) = present {
                return Ok(found.id);
            }
            if policy == "Never" {
                let message = format!("Container image \"{image}\" is not present with pull policy of Never");
                recorder.pod(pod, Some(field_path.to_owned()), crate::events::EventType::Warning, "ErrImageNeverPull", message.clone());
                return Err(PullFailure { reason: "ErrImageNeverPull", message });
            }
        }
        // A failed pull waits out its back-off before the next try.
        if let Some((backoff, failed_at, message)) = self.backoff.lock().unwrap_or_else(|p| p.into_inner()).get(&image) {
            if backoff.retry_at(*failed_at) > SystemTime::now() {
                let message = format!("Back-off pulling image \"{image}\": {message}");
                recorder.pod(pod, Some(field_path.to_owned()), crate::events::EventType::Normal, "BackOff", message.clone());
                return Err(PullFailure { reason: "ImagePullBackOff", message });
            }
        }
        recorder.pod(pod, Some(field_path.to_owned()), crate::events::EventType::Normal, "Pulling", format!("Pulling image \"{image}\""));
        let host = registry_host(&image);
        self.allow_plain_http(host);
        let auth = auth_for(host, pull_secrets);
        let started = Instant::now();
        match runtime.pull_image(&image, auth, None).await {
            Ok(reference) => {
                self.backoff.lock().unwrap_or_else(|p| p.into_inner()).remove(&image);
                let message = format!("Successfully pulled image \"{image}\" in {:.3}s", started.elapsed().as_secs_f64());
                recorder.pod(pod, Some(field_path.to_owned()), crate::events::EventType::Normal, "Pulled", message);
                Ok(reference)
            }
            Err(error) => {
                let message = error.runtime_message();
                let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                let entry = backoff.entry(image.clone()).or_insert_with(|| (Backoff::default(), SystemTime::now(), String::new()));
                entry.0.step();
                entry.1 = SystemTime::now();
                entry.2 = message.clone();
                let message = format!("Failed to pull image \"{image}\": {message}");
                recorder.pod(pod, Some(field_path.to_owned()), crate::events::EventType::Warning, "Failed", message.clone());
                Err(PullFailure { reason: "ErrImagePull", message })
            }
        }
    }
}

/// Credentials for `host` from `kubernetes.io/dockerconfigjson` (or legacy `dockercfg`) secrets.
pub fn auth_for(host: &str, secrets: &[Secret]) -> Option<AuthConfig> {
    for secret in secrets {
        let data = secret.data.as_ref()?;
        let (document, nested) = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
            (Some(json), _) => (json, true),
            (None, Some(cfg)) => (cfg, false),
            _ => continue,
        };
        let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&document.0) else { continue };
        let auths = if nested { &parsed["auths"] } else { &parsed };
        let Some(auths) = auths.as_object() else { continue };
        for (server, entry) in auths {
            let server_host = server.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or_default();
            let matches = server_host == host || (host == "docker.io" && server_host.ends_with("docker.io"));
            if !matches {
                continue;
            }
            let mut username = entry["username"].as_str().unwrap_or_default().to_owned();
            let mut password = entry["password"].as_str().unwrap_or_default().to_owned();
            if let Some(encoded) = entry["auth"].as_str() {
                if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) {
                    if let Some((user, pass)) = String::from_utf8_lossy(&decoded).split_once(':') {
                        username = user.to_owned();
                        password = pass.to_owned();
                    }
                }
            }
            return Some(AuthConfig { username, password, server_address: server_host.to_owned(), ..Default::default() });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn registry_hosts_and_loopback() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox:1"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("localhost/x"), "localhost");
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("registry.example.com:5000"));
    }

    #[test]
    fn default_pull_policy_follows_the_tag() {
        assert!(image_tag_defaults_to_always("busybox"));
        assert!(image_tag_defaults_to_always("busybox:latest"));
        assert!(image_tag_defaults_to_always("127.0.0.1:5000/busybox"));
        assert!(!image_tag_defaults_to_always("127.0.0.1:5000/busybox:1"));
        assert!(!image_tag_defaults_to_always("busybox@sha256:abc"));
    }

    #[test]
    fn pull_secrets_give_credentials_for_their_registry() {
        let config = serde_json::json!({"auths": {"registry.example.com": {"auth": base64::engine::general_purpose::STANDARD.encode("u:p")}}});
        let secret = Secret {
            data: Some(BTreeMap::from([(".dockerconfigjson".to_owned(), ByteString(config.to_string().into_bytes()))])),
            ..Default::default()
        };
        let auth = auth_for("registry.example.com", std::slice::from_ref(&secret)).unwrap();
        assert_eq!((auth.username.as_str(), auth.password.as_str()), ("u", "p"));
        assert!(auth_for("other.example.com", &[secret]).is_none());
    }
}
