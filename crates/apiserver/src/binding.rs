//! The pods/binding write, made on the pod's JSON text. A binding sets two fields of an object of
//! a few kilobytes: decoding the whole pod into a tree, encoding it back and freeing the tree
//! was the largest part of every binding, and a binding is a quarter of a burst's writes. Here
//! only the objects on the way to the two fields (the pod, its metadata, spec and status) are
//! split into members; every other value is copied as text.
//!
//! Invariant: the result is the text `serde_json::to_vec` writes for the decoded pod with the
//! same change made (keys in order, no whitespace), when the pod's text is one this server wrote.

use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;

/// What the binding asks for.
pub struct Binding<'a> {
    pub node: &'a str,
    /// The pod's UID as the binder saw it; empty when it named none.
    pub expected_uid: &'a str,
    /// The PodScheduled condition's lastTransitionTime.
    pub now: &'a str,
}

/// Why a pod cannot be bound; each is a conflict, as Kubernetes answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    UidMismatch,
    AlreadyAssigned(String),
    BeingDeleted,
}

/// A pod's stored text (without resourceVersion) after `binding`, from its served text: with
/// `spec.nodeName` set and PodScheduled=True replacing any PodScheduled condition. Err(None)
/// when `served` is not a JSON object.
pub fn bind(served: &[u8], binding: &Binding) -> Result<Vec<u8>, Option<Refusal>> {
    let text = tugboat_api::json::text(served).map_err(|_| None)?;
    let mut pod: Members = serde_json::from_str(text).map_err(|_| None)?;
    let mut metadata = members_of(pod.get("metadata"));
    if !binding.expected_uid.is_empty() && string_of(metadata.get("uid")) != binding.expected_uid {
        return Err(Some(Refusal::UidMismatch));
    }
    if !string_of(metadata.get("deletionTimestamp")).is_empty() {
        return Err(Some(Refusal::BeingDeleted));
    }
    let mut spec = members_of(pod.get("spec"));
    let assigned = string_of(spec.get("nodeName"));
    if !assigned.is_empty() {
        return Err(Some(Refusal::AlreadyAssigned(assigned.into_owned())));
    }
    metadata.remove("resourceVersion");
    spec.insert(Text::from("nodeName"), Part::String(binding.node));
    let mut status = members_of(pod.get("status"));
    // As the decoded write did: absent conditions start empty, and conditions that are not a
    // list are left alone.
    let conditions = match raw_of(status.get("conditions")) {
        Some(raw) => serde_json::from_str::<Vec<Part>>(raw.get()).ok(),
        None => Some(Vec::new()),
    };
    if let Some(mut list) = conditions {
        list.retain(|condition| raw_of(Some(condition)).is_none_or(|raw| condition_type(raw) != "PodScheduled"));
        list.push(Part::Condition { now: binding.now });
        status.insert(Text::from("conditions"), Part::List(list));
    }
    pod.insert(Text::from("metadata"), Part::Object(metadata));
    pod.insert(Text::from("spec"), Part::Object(spec));
    pod.insert(Text::from("status"), Part::Object(status));
    serde_json::to_vec(&pod).map_err(|_| None)
}

/// An object's members in key order, each value as text or as rewritten.
type Members<'a> = BTreeMap<Text<'a>, Part<'a>>;

/// One value of the rewritten pod. Parsed values are `Raw`; the others are written here.
#[derive(Serialize)]
#[serde(untagged)]
enum Part<'a> {
    /// Unchanged: its text, copied as it was.
    Raw(&'a RawValue),
    Object(Members<'a>),
    List(Vec<Part<'a>>),
    String(&'a str),
    #[serde(serialize_with = "scheduled_condition")]
    Condition { now: &'a str },
}

// By hand: a derived (untagged) Deserialize would buffer the value, and only serde_json's own
// deserializer can hand out its text.
impl<'de> Deserialize<'de> for Part<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&RawValue>::deserialize(deserializer).map(Part::Raw)
    }
}

/// PodScheduled=True, with its keys in the order the encoder writes them.
fn scheduled_condition<S: Serializer>(now: &&str, serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Condition<'a> {
        last_probe_time: (),
        last_transition_time: &'a str,
        status: &'a str,
        r#type: &'a str,
    }
    Condition { last_probe_time: (), last_transition_time: now, status: "True", r#type: "PodScheduled" }.serialize(serializer)
}

/// The text of a parsed value.
fn raw_of<'a>(value: Option<&Part<'a>>) -> Option<&'a RawValue> {
    match value {
        Some(Part::Raw(raw)) => Some(raw),
        _ => None,
    }
}

/// The members of an object value; none when absent or not an object (the decoded write
/// replaced such a value with an empty object too).
fn members_of<'a>(value: Option<&Part<'a>>) -> Members<'a> {
    raw_of(value).and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default()
}

/// A string value; empty when absent or not a string (as `meta::str_at` reads).
fn string_of<'a>(value: Option<&Part<'a>>) -> Cow<'a, str> {
    raw_of(value).and_then(|raw| serde_json::from_str::<Text>(raw.get()).ok()).map(|t| t.0).unwrap_or_default()
}

fn condition_type(condition: &RawValue) -> Cow<'_, str> {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, default)]
        r#type: Option<Text<'a>>,
    }
    serde_json::from_str::<Typed>(condition.get()).ok().and_then(|t| t.r#type).map(|t| t.0).unwrap_or_default()
}

/// A string of the text: borrowed unless it has escapes. (serde borrows `Cow` only as a
/// struct field, and map keys are not fields.)
#[derive(PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Text<'a>(Cow<'a, str>);

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }
}

impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NOW: &str = "2026-12-05T10:00:00Z";

    fn binding(node: &str) -> Binding<'_> {
        Binding { node, expected_uid: "", now: NOW }
    }

    /// The decoded write this replaces: what `bind` must give, byte for byte.
    fn bound_by_decoding(mut pod: Value, node: &str) -> Vec<u8> {
        pod["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        pod["spec"]["nodeName"] = node.into();
        if pod.get("status").is_none_or(|s| !s.is_object()) {
            pod["status"] = json!({});
        }
        let conditions = pod["status"].as_object_mut().unwrap().entry("conditions").or_insert_with(|| json!([]));
        if let Value::Array(conditions) = conditions {
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": NOW}));
        }
        serde_json::to_vec(&pod).unwrap()
    }

    fn served(pod: &Value) -> Vec<u8> {
        serde_json::to_vec(pod).unwrap()
    }

    fn pending_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u-1", "resourceVersion": "41",
                         "labels": {"app": "web", "odd\"key\\": "é\u{1}"}, "annotations": {"a/b": "{\"json\": [1, 2]}"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}],
                     "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                         {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                     "priority": 0, "schedulerName": "default-scheduler", "tolerations": [], "enableServiceLinks": true},
            "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"},
                {"type": "Ready", "status": "False"}]},
        })
    }

    #[test]
    fn binds_as_the_decoded_write_did_byte_for_byte() {
        let pod = pending_pod();
        let bound = bind(&served(&pod), &binding("node-7")).unwrap();
        assert_eq!(String::from_utf8(bound.clone()).unwrap(), String::from_utf8(bound_by_decoding(pod, "node-7")).unwrap());
        let bound: Value = serde_json::from_slice(&bound).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "node-7");
        assert_eq!(bound["status"]["conditions"].as_array().unwrap().len(), 2, "the old PodScheduled is replaced");
        assert!(bound["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn adds_what_is_missing_and_leaves_conditions_that_are_not_a_list() {
        for pod in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "resourceVersion": "3"}}),
            json!({"metadata": {"name": "a"}, "spec": null, "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "a"}, "spec": {}, "status": {"conditions": null}}),
            json!({"metadata": {"name": "a"}, "spec": {"nodeName": ""}, "status": {"conditions": [{"status": "True"}, 7]}}),
        ] {
            assert_eq!(bind(&served(&pod), &binding("n\"1")).unwrap(), bound_by_decoding(pod.clone(), "n\"1"), "{pod}");
        }
    }

    #[test]
    fn refuses_as_kubernetes_does() {
        let mut pod = pending_pod();
        let uid_mismatch = Binding { node: "n", expected_uid: "other", now: NOW };
        assert_eq!(bind(&served(&pod), &uid_mismatch), Err(Some(Refusal::UidMismatch)));
        assert!(bind(&served(&pod), &Binding { expected_uid: "u-1", ..uid_mismatch }).is_ok());
        pod["spec"]["nodeName"] = "node-1".into();
        assert_eq!(bind(&served(&pod), &binding("n")), Err(Some(Refusal::AlreadyAssigned("node-1".into()))));
        pod["spec"]["nodeName"] = "".into();
        pod["metadata"]["deletionTimestamp"] = NOW.into();
        assert_eq!(bind(&served(&pod), &binding("n")), Err(Some(Refusal::BeingDeleted)));
        assert_eq!(bind(b"[1]", &binding("n")), Err(None));
        assert_eq!(bind(b"{\"metadata\":", &binding("n")), Err(None));
    }
}
