//! kubeconfig files, in the format kubectl and client libraries read.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("kubeconfig {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error(transparent)]
    Write(#[from] crate::PkiError),
}

/// The single-cluster, single-user kubeconfig Tugboat writes and reads.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    pub server: String,
    pub ca_pem: String,
    pub client_cert_pem: Option<String>,
    pub client_key_pem: Option<String>,
    pub token: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    api_version: String,
    kind: String,
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
    current_context: String,
}

#[derive(Serialize, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Serialize, Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Serialize, Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority_data: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct Context {
    cluster: String,
    user: String,
}

const NAME: &str = "tugboat";

/// Writes `config` to `path` (mode 0600: it holds a private key).
pub fn write_kubeconfig(path: &Path, config: &Kubeconfig) -> Result<(), KubeconfigError> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let file = File {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Cluster { server: config.server.clone(), certificate_authority_data: b64(&config.ca_pem) },
        }],
        users: vec![NamedUser {
            name: NAME.into(),
            user: User {
                client_certificate_data: config.client_cert_pem.as_deref().map(b64),
                client_key_data: config.client_key_pem.as_deref().map(b64),
                token: config.token.clone(),
            },
        }],
        contexts: vec![NamedContext { name: NAME.into(), context: Context { cluster: NAME.into(), user: NAME.into() } }],
        current_context: NAME.into(),
    };
    let yaml = serde_yaml::to_string(&file).map_err(|e| KubeconfigError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    crate::write_mode(path, &yaml, 0o600)?;
    Ok(())
}

impl Kubeconfig {
    /// Reads the current context's cluster and user from a kubeconfig file.
    pub fn read(path: &Path) -> Result<Self, KubeconfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read { path: shown.clone(), source })?;
        let invalid = |reason: String| KubeconfigError::Invalid { path: shown.clone(), reason };
        let file: File = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let context = file
            .contexts
            .iter()
            .find(|c| c.name == file.current_context)
            .map(|c| &c.context)
            .ok_or_else(|| invalid(format!("current-context {:?} is not defined", file.current_context)))?;
        let cluster = file
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .map(|c| &c.cluster)
            .ok_or_else(|| invalid(format!("cluster {:?} is not defined", context.cluster)))?;
        let user = file.users.iter().find(|u| u.name == context.user).map(|u| &u.user);
        let decode = |field: &str, data: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| invalid(format!("{field} is not base64-encoded PEM")))
        };
        Ok(Self {
            server: cluster.server.clone(),
            ca_pem: decode("certificate-authority-data", &cluster.certificate_authority_data)?,
            client_cert_pem: user.and_then(|u| u.client_certificate_data.as_deref()).map(|d| decode("client-certificate-data", d)).transpose()?,
            client_key_pem: user.and_then(|u| u.client_key_data.as_deref()).map(|d| decode("client-key-data", d)).transpose()?,
            token: user.and_then(|u| u.token.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        let config = Kubeconfig {
            server: "https://127.0.0.1:6443".into(),
            ca_pem: "CA".into(),
            client_cert_pem: Some("CERT".into()),
            client_key_pem: Some("KEY".into()),
            token: None,
        };
        write_kubeconfig(&path, &config).unwrap();
        let read = Kubeconfig::read(&path).unwrap();
        assert_eq!(read.server, config.server);
        assert_eq!(read.ca_pem, "CA");
        assert_eq!(read.client_key_pem.as_deref(), Some("KEY"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("current-context: tugboat"), "{text}");
        assert!(text.contains("client-certificate-data"), "{text}");
    }
}
