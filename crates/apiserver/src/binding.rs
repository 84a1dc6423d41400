//! The pods/binding write, made on the pod's JSON text. A binding sets two fields of an object of
//! a few kilobytes: decoding the whole pod into a tree, encoding it back and freeing the tree
//! was the largest part of every binding, and a binding is a quarter of a burst's writes. Here
//! only the objects on the way to the two fields (the pod, its metadata, spec and status) are
//! split into members; every other value is copied as text.
//!
//! Invariant: the result is the text `serde_json::to_vec` writes for the decoded pod with the
//! same change made (keys in order, no whitespace), when the pod's text is one this server wrote.

use crate::json_text::{elements, field, members, string, write_object, write_string, Edit, Member};

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
    let pod = members(served).ok_or(None)?;
    let metadata = object_members(field(&pod, "metadata"));
    if !binding.expected_uid.is_empty() && string_of(field(&metadata, "uid")) != binding.expected_uid {
        return Err(Some(Refusal::UidMismatch));
    }
    if !string_of(field(&metadata, "deletionTimestamp")).is_empty() {
        return Err(Some(Refusal::BeingDeleted));
    }
    let spec = object_members(field(&pod, "spec"));
    let assigned = string_of(field(&spec, "nodeName"));
    if !assigned.is_empty() {
        return Err(Some(Refusal::AlreadyAssigned(assigned.into_owned())));
    }
    let status = object_members(field(&pod, "status"));
    // As the decoded write did: absent conditions start empty, and conditions that are not a
    // list are left alone.
    let conditions = field(&status, "conditions").map_or(Some(Vec::new()), elements);
    let write_conditions = |out: &mut Vec<u8>| {
        out.push(b'[');
        for condition in conditions.iter().flatten().filter(|c| condition_type(c) != "PodScheduled") {
            out.extend_from_slice(condition);
            out.push(b',');
        }
        out.extend_from_slice(br#"{"lastProbeTime":null,"lastTransitionTime":"#);
        write_string(out, binding.now);
        out.extend_from_slice(br#","status":"True","type":"PodScheduled"}]"#);
    };
    let status_edits: &[(&str, Edit)] = if conditions.is_some() { &[("conditions", Edit::Set(&write_conditions))] } else { &[] };
    let mut stored = Vec::with_capacity(served.len() + 128);
    write_object(&mut stored, &pod, &[
        ("metadata", Edit::Set(&|out| write_object(out, &metadata, &[("resourceVersion", Edit::Remove)]))),
        ("spec", Edit::Set(&|out| write_object(out, &spec, &[("nodeName", Edit::Set(&|out| write_string(out, binding.node)))]))),
        ("status", Edit::Set(&|out| write_object(out, &status, status_edits))),
    ]);
    Ok(stored)
}

/// The members of an object value; none when absent or not an object (the decoded write
/// replaced such a value with an empty object too).
fn object_members(value: Option<&[u8]>) -> Vec<Member<'_>> {
    value.and_then(members).unwrap_or_default()
}

/// A string value; empty when absent or not a string (as `meta::str_at` reads).
fn string_of(value: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    value.and_then(string).unwrap_or_default()
}

fn condition_type(condition: &[u8]) -> std::borrow::Cow<'_, str> {
    string_of(members(condition).as_deref().and_then(|c| field(c, "type")))
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
