//! Label selectors: `metav1.LabelSelector` (ReplicaSet) and the plain map of a
//! ReplicationController, with Kubernetes' matching rules.

use serde_json::{Map, Value};

use crate::ControllerError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// A `metav1.LabelSelector` (`matchLabels` and `matchExpressions`).
    pub fn from_label_selector(selector: &Value) -> Result<Self, ControllerError> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector["matchLabels"].as_object() {
            requirements.extend(Self::from_map_entries(labels)?.requirements);
        }
        for expression in selector["matchExpressions"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = expression["key"].as_str().ok_or(ControllerError::Invalid("a selector expression without key"))?.to_owned();
            let values: Vec<String> = expression["values"].as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
            requirements.push(match expression["operator"].as_str().unwrap_or_default() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => return Err(ControllerError::Invalid("an unknown selector operator")),
            });
        }
        Ok(Self { requirements })
    }

    /// A ReplicationController's `spec.selector`: every key must equal its value.
    pub fn from_map(selector: &Value) -> Result<Self, ControllerError> {
        match selector {
            Value::Null => Ok(Self::default()),
            Value::Object(map) => Self::from_map_entries(map),
            _ => Err(ControllerError::Invalid("a selector that is not a map")),
        }
    }

    fn from_map_entries(map: &Map<String, Value>) -> Result<Self, ControllerError> {
        let requirements = map
            .iter()
            .map(|(k, v)| v.as_str().map(|v| Requirement::Equals(k.clone(), v.to_owned())).ok_or(ControllerError::Invalid("a label value that is not a string")))
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` (an object of strings, or null) satisfies every requirement. An empty
    /// selector matches nothing here: a controller with one must not claim every pod (as in
    /// Kubernetes' ReplicaSet controller).
    pub fn matches(&self, labels: &Value) -> bool {
        if self.is_empty() {
            return false;
        }
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::In(k, values) => get(k).is_some_and(|l| values.iter().any(|v| v == l)),
            Requirement::NotIn(k, values) => get(k).is_none_or(|l| values.iter().all(|v| v != l)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn match_labels_and_expressions() {
        let selector = Selector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "track", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ]
        }))
        .unwrap();
        assert!(selector.matches(&json!({"app": "web", "tier": "a", "track": "x"})));
        assert!(selector.matches(&json!({"app": "web", "tier": "b", "track": "", "env": "dev"})));
        assert!(!selector.matches(&json!({"app": "api", "tier": "a", "track": "x"})));
        assert!(!selector.matches(&json!({"app": "web", "tier": "c", "track": "x"})));
        assert!(!selector.matches(&json!({"app": "web", "tier": "a", "track": "x", "env": "prod"})));
        assert!(!selector.matches(&json!({"app": "web", "tier": "a"})));
        assert!(!selector.matches(&json!({"app": "web", "tier": "a", "track": "x", "legacy": "1"})));
        assert!(!selector.matches(&Value::Null));
    }

    #[test]
    fn map_selector_requires_every_pair() {
        let selector = Selector::from_map(&json!({"app": "web", "tier": "fe"})).unwrap();
        assert!(selector.matches(&json!({"app": "web", "tier": "fe", "extra": "1"})));
        assert!(!selector.matches(&json!({"app": "web"})));
    }

    #[test]
    fn empty_selector_matches_nothing() {
        assert!(!Selector::from_map(&Value::Null).unwrap().matches(&json!({"app": "web"})));
        assert!(!Selector::from_label_selector(&json!({})).unwrap().matches(&json!({})));
    }

    #[test]
    fn bad_operator_is_an_error() {
        assert!(Selector::from_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "Gt"}]})).is_err());
    }
}
