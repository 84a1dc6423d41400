//! Core/v1 Events as Tugboat's components write them (the scheduler's Scheduled, a controller's
//! SuccessfulCreate, the kubelet's Pulled ...): one shape for all, serialized straight from
//! borrowed fields. The scheduler writes one per pod it binds, so building a JSON tree first
//! would cost a burst real time.

use serde::Serialize;

/// The object an Event is about (`involvedObject`); empty fields are left out.
#[derive(Serialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub uid: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub resource_version: &'a str,
    /// Which part of the object, as `spec.containers{name}`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub field_path: &'a str,
}

/// An Event to create.
pub struct NewEvent<'a> {
    /// Conventionally the object's name and a unique suffix: see [`event_name`].
    pub name: &'a str,
    pub namespace: &'a str,
    pub about: InvolvedObject<'a>,
    /// `Normal` or `Warning`.
    pub kind: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
    /// The reporting component (`default-scheduler`, `kubelet` ...).
    pub component: &'a str,
    /// The reporting node, for the kubelet.
    pub host: Option<&'a str>,
    pub first: jiff::Timestamp,
    pub last: jiff::Timestamp,
    pub count: u64,
}

/// A fresh Event name for an event about `object_name`, as client-go makes them.
pub fn event_name(object_name: &str) -> String {
    format!("{object_name}.{:x}", jiff::Timestamp::now().as_nanosecond())
}

/// An Event's timestamps: metav1.Time, whole seconds.
pub fn seconds(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: WireMeta<'a>,
    involved_object: InvolvedObject<'a>,
    reason: &'a str,
    message: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    count: u64,
    first_timestamp: String,
    last_timestamp: String,
    source: WireSource<'a>,
    reporting_component: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reporting_instance: Option<&'a str>,
}

#[derive(Serialize)]
struct WireMeta<'a> {
    name: &'a str,
    namespace: &'a str,
}

#[derive(Serialize)]
struct WireSource<'a> {
    component: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

impl NewEvent<'_> {
    /// The Event's JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            api_version: "v1",
            kind: "Event",
            metadata: WireMeta { name: self.name, namespace: self.namespace },
            involved_object: self.about,
            reason: self.reason,
            message: self.message,
            event_type: self.kind,
            count: self.count,
            first_timestamp: seconds(self.first),
            last_timestamp: seconds(self.last),
            source: WireSource { component: self.component, host: self.host },
            reporting_component: self.component,
            reporting_instance: self.host,
        };
        // Borrowed strings and integers only: serializing cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_has_the_fields_kubectl_describe_reads_and_leaves_out_empty_ones() {
        let at: jiff::Timestamp = "2026-12-04T10:11:12.345Z".parse().unwrap();
        let event = NewEvent {
            name: "web.1",
            namespace: "ns",
            about: InvolvedObject { api_version: "v1", kind: "Pod", name: "web", namespace: "ns", uid: "u1", ..Default::default() },
            kind: "Normal",
            reason: "Scheduled",
            message: "Successfully assigned ns/web to n1",
            component: "default-scheduler",
            host: None,
            first: at,
            last: at,
            count: 1,
        };
        let body: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(
            body,
            json!({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": "ns"},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "ns", "uid": "u1"},
                "reason": "Scheduled", "message": "Successfully assigned ns/web to n1", "type": "Normal", "count": 1,
                "firstTimestamp": "2026-12-04T10:11:12Z", "lastTimestamp": "2026-12-04T10:11:12Z",
                "source": {"component": "default-scheduler"}, "reportingComponent": "default-scheduler",
            })
        );
        let kubelet = NewEvent { host: Some("n1"), ..event };
        let body: serde_json::Value = serde_json::from_slice(&kubelet.to_json()).unwrap();
        assert_eq!((&body["source"]["host"], &body["reportingInstance"]), (&json!("n1"), &json!("n1")));
    }
}
