//! Admission of new pods, as kube-apiserver's mutating plugins do it on create:
//!
//! - DefaultTolerationSeconds: every pod tolerates `node.kubernetes.io/not-ready` and
//!   `node.kubernetes.io/unreachable` (NoExecute) for 300 s unless it already says otherwise, so a
//!   pod on a node that stops reporting is evicted after five minutes, not at once.
//! - Priority: `spec.priorityClassName` becomes `spec.priority` (and `spec.preemptionPolicy`) from
//!   its PriorityClass; a pod without a class gets the global default class, or priority 0.
//!
//! The rules are pure functions over the pod and the PriorityClasses; [`admit_pod`] looks the
//! classes up in the watch cache.

use serde_json::{json, Value};
use tugboat_api::{meta, Registry, Shape};

use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::objects::Objects;

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Kubernetes' `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;
const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

/// Why a pod is refused; the message is Kubernetes' own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("no PriorityClass with name {0} was found")]
    UnknownPriorityClass(String),
    #[error("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name")]
    PriorityMismatch { given: i64, computed: i64 },
    #[error("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name")]
    PreemptionPolicyMismatch { given: String, computed: String },
}

/// Whether one of `tolerations` already covers the NoExecute taint `key`: same key or the empty
/// (wildcard) key, effect NoExecute or empty. Like Kubernetes, the operator is not examined.
fn tolerates_no_execute(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let key_matches = matches!(t["key"].as_str(), None | Some("")) || t["key"] == key;
        let effect_matches = matches!(t["effect"].as_str(), None | Some("") | Some("NoExecute"));
        key_matches && effect_matches
    })
}

/// DefaultTolerationSeconds: adds the not-ready and unreachable tolerations a pod lacks.
pub fn add_default_tolerations(pod: &mut Value) {
    let existing: Vec<Value> = pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    let missing: Vec<Value> = [NOT_READY_TAINT, UNREACHABLE_TAINT]
        .into_iter()
        .filter(|key| !tolerates_no_execute(&existing, key))
        .map(|key| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}))
        .collect();
    if missing.is_empty() {
        return;
    }
    let spec = meta::object_field_mut(pod, "spec");
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Value::Array(list) = tolerations {
        list.extend(missing);
    } else {
        *tolerations = Value::Array(missing);
    }
}

/// The class a pod without `priorityClassName` gets: among the globalDefault classes, the one
/// with the lowest value (as Kubernetes picks when several claim to be the default).
pub fn global_default<'a>(classes: impl IntoIterator<Item = &'a Value>) -> Option<&'a Value> {
    classes.into_iter().filter(|c| c["globalDefault"] == true).min_by_key(|c| c["value"].as_i64().unwrap_or(0))
}

/// Priority admission on create. `class` is the PriorityClass the pod names, None when the name
/// was not found (ignored when the pod names none); `default` is the cluster's global default.
pub fn apply_priority(pod: &mut Value, class: Option<&Value>, default: Option<&Value>) -> Result<(), AdmissionError> {
    let class_name = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_owned();
    let (name, priority, policy) = if class_name.is_empty() {
        match default {
            Some(default) => (default["metadata"]["name"].as_str().unwrap_or_default().to_owned(), default["value"].as_i64().unwrap_or(0), class_policy(default)),
            None => (String::new(), 0, PREEMPT_LOWER_PRIORITY.to_owned()),
        }
    } else {
        let class = class.ok_or_else(|| AdmissionError::UnknownPriorityClass(class_name.clone()))?;
        (class_name, class["value"].as_i64().unwrap_or(0), class_policy(class))
    };
    if let Some(given) = pod["spec"]["priority"].as_i64() {
        if given != priority {
            return Err(AdmissionError::PriorityMismatch { given, computed: priority });
        }
    }
    if let Some(given) = pod["spec"]["preemptionPolicy"].as_str() {
        if given != policy {
            return Err(AdmissionError::PreemptionPolicyMismatch { given: given.to_owned(), computed: policy });
        }
    }
    let spec = meta::object_field_mut(pod, "spec");
    if !name.is_empty() {
        spec.insert("priorityClassName".into(), name.into());
    }
    spec.insert("priority".into(), priority.into());
    spec.insert("preemptionPolicy".into(), policy.into());
    Ok(())
}

/// A class's preemptionPolicy, with the PriorityClass default.
fn class_policy(class: &Value) -> String {
    class["preemptionPolicy"].as_str().unwrap_or(PREEMPT_LOWER_PRIORITY).to_owned()
}

/// Runs every pod admission rule on a pod about to be created. PriorityClasses come from the
/// watch cache as they do from an informer in kube-apiserver; a class not (yet) cached is looked
/// up consistently before the pod is refused for it.
pub async fn admit_pod(objects: &Objects, pod: &mut Value) -> ApiResult<()> {
    add_default_tolerations(pod);
    let classes = Registry::get()
        .lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses are not registered"))?;
    let class_name = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_owned();
    let (class, default) = if class_name.is_empty() {
        let cached = objects.cache.resource(classes).snapshot(&keys::resource_prefix(classes), objects.cache.applied());
        // Every pod without a class reads every class: decode only what priority admission reads.
        static READ: std::sync::OnceLock<Shape> = std::sync::OnceLock::new();
        let read = READ.get_or_init(|| Shape::of(&["metadata.name", "value", "globalDefault", "preemptionPolicy"]));
        let all: Vec<Value> = cached.objects.iter().filter_map(|o| read.decode(&o.json).ok()).collect();
        (None, global_default(&all).cloned())
    } else {
        let cached = objects.cache.resource(classes).object(&keys::object_key(classes, "", &class_name)).map(|o| o.value());
        let class = match cached {
            Some(class) => Some(class),
            None => match objects.get(classes, "", &class_name).await {
                Ok((class, _)) => Some(class),
                Err(e) if e.reason == "NotFound" => None,
                Err(e) => return Err(e),
            },
        };
        (class, None)
    };
    apply_priority(pod, class.as_ref(), default.as_ref())
        .map_err(|e| ApiError::forbidden(format!("pods \"{}\" is forbidden: {e}", meta::name(pod))))
}

/// The PriorityClasses Kubernetes creates in every cluster: (name, value, description).
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn class(name: &str, value: i64, global_default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": global_default})
    }

    fn toleration_keys(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod["spec"]["tolerations"].as_array().unwrap().iter().map(|t| (t["key"].as_str().unwrap_or("").to_owned(), t["tolerationSeconds"].as_i64())).collect()
    }

    #[test]
    fn default_tolerations_are_added_once() {
        let mut p = pod(json!({"containers": []}));
        add_default_tolerations(&mut p);
        assert_eq!(toleration_keys(&p), [(NOT_READY_TAINT.to_owned(), Some(300)), (UNREACHABLE_TAINT.to_owned(), Some(300))]);
        assert_eq!(p["spec"]["tolerations"][0], json!({"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        let again = p.clone();
        add_default_tolerations(&mut p);
        assert_eq!(p, again);
    }

    #[test]
    fn own_tolerations_are_kept_and_count() {
        // The pod's own unreachable toleration (any effect form that covers NoExecute) wins.
        let mut p = pod(json!({"tolerations": [{"key": UNREACHABLE_TAINT, "operator": "Exists", "tolerationSeconds": 2}]}));
        add_default_tolerations(&mut p);
        assert_eq!(toleration_keys(&p), [(UNREACHABLE_TAINT.to_owned(), Some(2)), (NOT_READY_TAINT.to_owned(), Some(300))]);
        // A NoSchedule toleration does not cover NoExecute.
        let mut p = pod(json!({"tolerations": [{"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoSchedule"}]}));
        add_default_tolerations(&mut p);
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 3);
        // The wildcard toleration covers both.
        let mut p = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        add_default_tolerations(&mut p);
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn named_class_sets_priority_and_policy() {
        let mut critical = class("critical", 1000, false);
        critical["preemptionPolicy"] = json!("Never");
        let mut p = pod(json!({"priorityClassName": "critical"}));
        apply_priority(&mut p, Some(&critical), None).unwrap();
        assert_eq!(p["spec"]["priority"], 1000);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn global_default_applies_only_without_a_class() {
        let classes = [class("low", 10, true), class("lower", 5, true), class("other", 99, false)];
        let default = global_default(&classes);
        let mut p = pod(json!({}));
        apply_priority(&mut p, None, default).unwrap();
        assert_eq!((p["spec"]["priorityClassName"].as_str(), p["spec"]["priority"].as_i64()), (Some("lower"), Some(5)));
        assert_eq!(p["spec"]["preemptionPolicy"], PREEMPT_LOWER_PRIORITY);
        let mut p = pod(json!({}));
        apply_priority(&mut p, None, None).unwrap();
        assert_eq!(p["spec"]["priority"], 0);
        assert!(p["spec"]["priorityClassName"].is_null());
    }

    #[test]
    fn unknown_class_and_disagreeing_priority_are_refused() {
        let mut p = pod(json!({"priorityClassName": "foo"}));
        let error = apply_priority(&mut p, None, None).unwrap_err();
        assert_eq!(error.to_string(), "no PriorityClass with name foo was found");
        let mut p = pod(json!({"priorityClassName": "c", "priority": 7}));
        let error = apply_priority(&mut p, Some(&class("c", 1000, false)), None).unwrap_err();
        assert_eq!(error.to_string(), "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name");
        // The same value is accepted, as in Kubernetes.
        let mut p = pod(json!({"priorityClassName": "c", "priority": 1000}));
        assert_eq!(apply_priority(&mut p, Some(&class("c", 1000, false)), None), Ok(()));
    }
}
