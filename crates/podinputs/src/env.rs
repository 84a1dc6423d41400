//! A container's environment (kubelet's makeEnvironmentVariables): envFrom sources first, then
//! `env` in order, each entry able to refer to the ones before it with `$(VAR)`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use tugboat_cri::api;

use crate::expansion::expand;
use crate::fieldpath;
use crate::{ObjectSource, PodFacts, SourceError};

/// Why a container's environment cannot be built. The message is kubelet's (users see it as the
/// CreateContainerConfigError message); the fields say which pod, container and variable.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct EnvError {
    /// `namespace/name`.
    pub pod: String,
    pub container: String,
    /// The `env` entry being resolved; `None` for an `envFrom` source.
    pub variable: Option<String>,
    pub kind: EnvErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvErrorKind {
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { namespace: String, name: String },
    #[error("secret \"{name}\" not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyMissing { namespace: String, name: String, key: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyMissing { namespace: String, name: String, key: String },
    /// Reading an object failed (not its absence); the source's words.
    #[error("{0}")]
    Source(SourceError),
    /// e.g. `unsupported fieldPath: spec.x`.
    #[error("{0}")]
    FieldRef(String),
    /// e.g. `unsupported container resource : limits.gpu`.
    #[error("{0}")]
    ResourceFieldRef(String),
}

/// Variables in the order first defined; a later definition replaces the value in place.
#[derive(Default)]
struct Environment {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl Environment {
    fn set(&mut self, name: String, value: String) {
        if !self.values.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.values.insert(name, value);
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn into_key_values(mut self) -> Vec<api::KeyValue> {
        self.order.into_iter().map(|key| api::KeyValue { value: self.values.remove(&key).unwrap_or_default(), key }).collect()
    }
}

/// Objects read once per call, as kubelet reads each ConfigMap and Secret once per container.
#[derive(Default)]
struct Objects {
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Objects {
    async fn config_map(&mut self, source: &dyn ObjectSource, namespace: &str, name: &str) -> Result<Option<&ConfigMap>, SourceError> {
        if !self.config_maps.contains_key(name) {
            let object = source.config_map(namespace, name).await?;
            self.config_maps.insert(name.to_owned(), object);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, source: &dyn ObjectSource, namespace: &str, name: &str) -> Result<Option<&Secret>, SourceError> {
        if !self.secrets.contains_key(name) {
            let object = source.secret(namespace, name).await?;
            self.secrets.insert(name.to_owned(), object);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// A C-identifier-like environment variable name as Kubernetes accepts in envFrom keys
/// (validation.IsEnvVarName): `[-._a-zA-Z][-._a-zA-Z0-9]*`, not `.`, `..` or starting with `..`.
pub(crate) fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) && name != "." && !name.starts_with("..")
}

/// The container's environment in Kubernetes order: every envFrom source (keys with their
/// prefix; keys that are not valid names skipped with a warning), then `env` entries, each
/// literal value expanded against what came before. A later definition overrides an earlier one.
/// Optional references to missing objects or keys leave the variable out.
pub async fn container_env(pod: &Pod, container: &Container, facts: &PodFacts, source: &dyn ObjectSource) -> Result<Vec<api::KeyValue>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    let pod_name = format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or_default());
    let error = |variable: Option<&str>, kind| EnvError { pod: pod_name.clone(), container: container.name.clone(), variable: variable.map(str::to_owned), kind };
    let mut env = Environment::default();
    let mut objects = Objects::default();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (what, name, values): (&str, &str, Vec<(String, String)>) = if let Some(reference) = &from.config_map_ref {
            match objects.config_map(source, namespace, &reference.name).await.map_err(|e| error(None, EnvErrorKind::Source(e)))? {
                Some(config_map) => ("configMap", &reference.name, config_map.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect()),
                None if reference.optional == Some(true) => continue,
                None => return Err(error(None, EnvErrorKind::ConfigMapNotFound { namespace: namespace.to_owned(), name: reference.name.clone() })),
            }
        } else if let Some(reference) = &from.secret_ref {
            match objects.secret(source, namespace, &reference.name).await.map_err(|e| error(None, EnvErrorKind::Source(e)))? {
                Some(secret) => (
                    "secret",
                    &reference.name,
                    crate::secret_values(secret).into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect(),
                ),
                None if reference.optional == Some(true) => continue,
                None => return Err(error(None, EnvErrorKind::SecretNotFound { namespace: namespace.to_owned(), name: reference.name.clone() })),
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in values {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            // Kubelet's InvalidEnvironmentVariableNames event text.
            tracing::warn!(
                pod = %pod_name,
                container = %container.name,
                "Keys [{}] from the EnvFrom {what} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            );
        }
    }

    for var in container.env.iter().flatten() {
        let variable = Some(var.name.as_str());
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) if !value.is_empty() => Some(expand(value, |name| env.get(name).map(str::to_owned))),
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    Some(fieldpath::env_field(pod, facts, field.api_version.as_deref(), &field.field_path).map_err(|m| error(variable, EnvErrorKind::FieldRef(m)))?)
                } else if let Some(resource) = &from.resource_field_ref {
                    // In env the selector's containerName can only be this container.
                    Some(fieldpath::resource_field(resource, container, facts).map_err(|m| error(variable, EnvErrorKind::ResourceFieldRef(m)))?)
                } else if let Some(selector) = &from.config_map_key_ref {
                    let optional = selector.optional == Some(true);
                    match objects.config_map(source, namespace, &selector.name).await.map_err(|e| error(variable, EnvErrorKind::Source(e)))? {
                        Some(config_map) => match config_map.data.as_ref().and_then(|d| d.get(&selector.key)) {
                            Some(value) => Some(value.clone()),
                            None if optional => None,
                            None => {
                                let kind = EnvErrorKind::ConfigMapKeyMissing { namespace: namespace.to_owned(), name: selector.name.clone(), key: selector.key.clone() };
                                return Err(error(variable, kind));
                            }
                        },
                        None if optional => None,
                        None => return Err(error(variable, EnvErrorKind::ConfigMapNotFound { namespace: namespace.to_owned(), name: selector.name.clone() })),
                    }
                } else if let Some(selector) = &from.secret_key_ref {
                    let optional = selector.optional == Some(true);
                    match objects.secret(source, namespace, &selector.name).await.map_err(|e| error(variable, EnvErrorKind::Source(e)))? {
                        Some(secret) => match crate::secret_values(secret).remove(&selector.key) {
                            Some(value) => Some(String::from_utf8_lossy(&value).into_owned()),
                            None if optional => None,
                            None => {
                                let kind = EnvErrorKind::SecretKeyMissing { namespace: namespace.to_owned(), name: selector.name.clone(), key: selector.key.clone() };
                                return Err(error(variable, kind));
                            }
                        },
                        None if optional => None,
                        None => return Err(error(variable, EnvErrorKind::SecretNotFound { namespace: namespace.to_owned(), name: selector.name.clone() })),
                    }
                } else {
                    Some(String::new())
                }
            }
            _ => Some(String::new()),
        };
        if let Some(value) = value {
            env.set(var.name.clone(), value);
        }
    }
    Ok(env.into_key_values())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use serde_json::json;

    /// ConfigMaps and Secrets in namespace "ns", counting reads.
    #[derive(Default)]
    struct Source {
        config_maps: HashMap<String, ConfigMap>,
        secrets: HashMap<String, Secret>,
        fail: bool,
        reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ObjectSource for Source {
        async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, SourceError> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail {
                return Err(SourceError("the server is on fire".into()));
            }
            Ok(self.config_maps.get(name).filter(|_| namespace == "ns").cloned())
        }
        async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
            Ok(self.secrets.get(name).filter(|_| namespace == "ns").cloned())
        }
        async fn persistent_volume_claim(&self, _: &str, _: &str) -> Result<Option<PersistentVolumeClaim>, SourceError> {
            Ok(None)
        }
        async fn persistent_volume(&self, _: &str) -> Result<Option<PersistentVolume>, SourceError> {
            Ok(None)
        }
    }

    fn source() -> Source {
        let mut source = Source::default();
        source.config_maps.insert("cm".into(), serde_json::from_value(json!({"data": {"A": "from-cm", "B": "b", "bad key": "x", "1X": "y"}})).unwrap());
        source.config_maps.insert("other".into(), serde_json::from_value(json!({"data": {"A": "from-other"}})).unwrap());
        source.secrets.insert("s".into(), serde_json::from_value(json!({"data": {"PASSWORD": "aHVudGVyMg==", "TOKEN": "dA=="}})).unwrap());
        source
    }

    fn pod_with(container: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}, "annotations": {"a.b/c": "d"}},
            "spec": {"containers": [container]}
        }))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, container)
    }

    fn facts() -> PodFacts {
        PodFacts {
            node_name: "node-1".into(),
            host_ip: "192.0.2.1".into(),
            pod_ips: vec!["10.0.0.7".into()],
            service_account_name: "default".into(),
            node_allocatable_cpu_millis: 2000,
            node_allocatable_memory_bytes: 4 << 30,
        }
    }

    fn pairs(env: &[api::KeyValue]) -> Vec<(&str, &str)> {
        env.iter().map(|kv| (kv.key.as_str(), kv.value.as_str())).collect()
    }

    #[tokio::test]
    async fn env_from_then_env_with_overrides_and_expansion() {
        let (pod, c) = pod_with(json!({"name": "app",
            "envFrom": [{"configMapRef": {"name": "cm"}}, {"prefix": "S_", "secretRef": {"name": "s"}}, {"configMapRef": {"name": "other"}}],
            "env": [
                {"name": "GREETING", "value": "hi $(A) and $(S_TOKEN)"},
                {"name": "B", "value": "overridden"},
                {"name": "ESCAPED", "value": "$$(A) $(NOPE)"},
                {"name": "LATER", "value": "$(EARLIER)"},
                {"name": "EARLIER", "value": "e"},
                {"name": "REF", "value": "[$(EARLIER)]"},
                {"name": "EMPTY", "value": ""},
            ]}));
        let env = container_env(&pod, &c, &facts(), &source()).await.unwrap();
        assert_eq!(
            pairs(&env),
            [
                ("A", "from-other"),
                ("B", "overridden"),
                ("S_PASSWORD", "hunter2"),
                ("S_TOKEN", "t"),
                ("GREETING", "hi from-other and t"),
                ("ESCAPED", "$(A) $(NOPE)"),
                ("LATER", "$(EARLIER)"),
                ("EARLIER", "e"),
                ("REF", "[e]"),
                ("EMPTY", ""),
            ]
        );
    }

    #[tokio::test]
    async fn value_from_fields_resources_and_keys() {
        let (pod, c) = pod_with(json!({"name": "app",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "128Mi"}},
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace", "apiVersion": "v1"}}},
                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a.b/c']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "PASSWORD"}}},
                {"name": "NOT_EXPANDED", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "bad key"}}},
                {"name": "USES", "value": "$(POD).$(NS)"},
            ]}));
        let env = container_env(&pod, &c, &facts(), &source()).await.unwrap();
        assert_eq!(
            pairs(&env),
            [
                ("POD", "web"),
                ("NS", "ns"),
                ("UID", "u1"),
                ("APP", "web"),
                ("ANN", "d"),
                ("NODE", "node-1"),
                ("SA", "default"),
                ("HOST_IP", "192.0.2.1"),
                ("POD_IP", "10.0.0.7"),
                ("POD_IPS", "10.0.0.7"),
                ("CPU_REQ", "250"),
                ("CPU_LIMIT", "2"),
                ("MEM_LIMIT", "128"),
                ("CM", "b"),
                ("SECRET", "hunter2"),
                ("NOT_EXPANDED", "x"),
                ("USES", "web.ns"),
            ]
        );
    }

    #[tokio::test]
    async fn optional_references_leave_variables_out() {
        let (pod, c) = pod_with(json!({"name": "app",
            "envFrom": [{"configMapRef": {"name": "absent", "optional": true}}, {"secretRef": {"name": "absent", "optional": true}}],
            "env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "missing", "optional": true}}},
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}},
                {"name": "D", "valueFrom": {"secretKeyRef": {"name": "s", "key": "missing", "optional": true}}},
                {"name": "E", "value": "[$(A)]"},
            ]}));
        let env = container_env(&pod, &c, &facts(), &source()).await.unwrap();
        assert_eq!(pairs(&env), [("E", "[$(A)]")]);
    }

    #[tokio::test]
    async fn missing_objects_and_keys_are_errors_in_kubelet_words() {
        let cases = [
            (json!({"envFrom": [{"configMapRef": {"name": "absent"}}]}), "configmap \"absent\" not found", None),
            (json!({"envFrom": [{"secretRef": {"name": "absent"}}]}), "secret \"absent\" not found", None),
            (json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}), "couldn't find key k in ConfigMap ns/cm", Some("X")),
            (json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}), "configmap \"absent\" not found", Some("X")),
            (json!({"env": [{"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}), "couldn't find key k in Secret ns/s", Some("Y")),
            (json!({"env": [{"name": "Y", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}), "secret \"absent\" not found", Some("Y")),
            (json!({"env": [{"name": "Z", "valueFrom": {"fieldRef": {"fieldPath": "spec.restartPolicy"}}}]}), "unsupported fieldPath: spec.restartPolicy", Some("Z")),
            (json!({"env": [{"name": "Z", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]}), "unsupported container resource : limits.gpu", Some("Z")),
        ];
        for (mut container, message, variable) in cases {
            container["name"] = json!("app");
            let (pod, c) = pod_with(container);
            let error = container_env(&pod, &c, &facts(), &source()).await.unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(error.pod, "ns/web");
            assert_eq!(error.container, "app");
            assert_eq!(error.variable.as_deref(), variable);
        }
    }

    #[tokio::test]
    async fn source_failures_are_errors_and_objects_are_read_once() {
        let (pod, c) = pod_with(json!({"name": "app", "envFrom": [{"configMapRef": {"name": "cm", "optional": true}}]}));
        let failing = Source { fail: true, ..Default::default() };
        let error = container_env(&pod, &c, &facts(), &failing).await.unwrap_err();
        assert_eq!(error.to_string(), "the server is on fire", "an optional reference does not hide a failed read");

        let (pod, c) = pod_with(json!({"name": "app", "envFrom": [{"configMapRef": {"name": "cm"}}],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "A"}}}, {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}}]}));
        let source = source();
        container_env(&pod, &c, &facts(), &source).await.unwrap();
        assert_eq!(source.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn env_var_names() {
        for ok in ["A", "a_b", "my.env-name", "MY_ENV.NAME", "MyEnvName1", "_x", ".a", "-a"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "1X", "bad key", "a=b", ".", "..", "..a", "é"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }
}
