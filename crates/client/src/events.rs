//! Core/v1 Events as Tugboat's components write them (the scheduler's Scheduled, a controller's
//! SuccessfulCreate, the kubelet's Pulled ...): one shape for all, serialized straight from
//! borrowed fields. The scheduler writes one per pod it binds, so building a JSON tree first
//! would cost a burst real time.
//!
//! Components record Events through a [`Recorder`], as through client-go's event broadcaster:
//! recording never waits, one writer sends them in order, and when more than
//! [`MAX_QUEUED_EVENTS`] wait, new ones are dropped.
//!
//! Invariant: recording an Event never blocks its caller and never queues without bound.

use crate::Client;
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

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

/// Events waiting to be written beyond this many are dropped: client-go's `maxQueuedEvents`. A
/// component that outruns the API server (a scheduler binding thousands of pods a second) keeps
/// its bindings going and loses Events, not the other way round.
pub const MAX_QUEUED_EVENTS: usize = 1000;

/// One write of the Event writer.
enum EventWrite {
    Create { namespace: String, body: Bytes },
    /// A merge patch of an existing Event (a repeat's count and lastTimestamp).
    Patch { path: String, body: Bytes },
}

/// Records Events for one component: a bounded queue and one background writer that sends them
/// in order (client-go's `EventBroadcaster` recording to an API sink). The writer stops once
/// every clone of its recorder is gone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<EventWrite>,
    /// Events dropped so far, for the warning that says how many.
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the writer; needs a Tokio runtime.
    pub fn start(client: Client) -> Self {
        Self::with_capacity(client, MAX_QUEUED_EVENTS)
    }

    fn with_capacity(client: Client, capacity: usize) -> Self {
        let (queue, mut writes) = mpsc::channel(capacity);
        tokio::spawn(async move {
            while let Some(write) = writes.recv().await {
                let (method, path, content_type, body) = match write {
                    EventWrite::Create { namespace, body } => (Method::POST, format!("/api/v1/namespaces/{namespace}/events"), "application/json", body),
                    EventWrite::Patch { path, body } => (Method::PATCH, path, "application/merge-patch+json", body),
                };
                if let Err(error) = client.request(method, &path, Some((content_type, body))).await {
                    tracing::debug!(%error, "cannot record an event");
                }
            }
        });
        Self { queue, dropped: Arc::default() }
    }

    /// Queues the creation of `event`.
    pub fn create(&self, event: &NewEvent<'_>) {
        self.enqueue(EventWrite::Create { namespace: event.namespace.to_owned(), body: Bytes::from(event.to_json()) });
    }

    /// Queues a merge patch of the Event at `path` (`/api/v1/namespaces/{ns}/events/{name}`).
    pub fn patch(&self, path: String, patch: &serde_json::Value) {
        self.enqueue(EventWrite::Patch { path, body: Bytes::from(patch.to_string()) });
    }

    fn enqueue(&self, write: EventWrite) {
        if self.queue.try_send(write).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped % MAX_QUEUED_EVENTS as u64 == 1 {
                tracing::warn!(dropped, "too many events waiting for the API server; dropping events (the cluster's work goes on)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scheduled(name: &str) -> NewEvent<'_> {
        let at: jiff::Timestamp = "2026-12-04T10:11:12.345Z".parse().unwrap();
        NewEvent {
            name,
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
        }
    }

    #[test]
    fn an_event_has_the_fields_kubectl_describe_reads_and_leaves_out_empty_ones() {
        let event = scheduled("web.1");
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

    /// A request as the server saw it: method, path, content type, body.
    type Seen = (http::Method, String, String, String);

    /// A server that hands each request to the test and answers only when the test lets it.
    fn stalled_server() -> (Client, mpsc::UnboundedReceiver<Seen>, Arc<tokio::sync::Semaphore>) {
        let (requests, received) = mpsc::unbounded_channel();
        let answers = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = answers.clone();
        let client = Client::in_process(move |request: http::Request<Bytes>| {
            let content_type = request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let path = request.uri().path().to_owned();
            let body = String::from_utf8_lossy(request.body()).into_owned();
            let _ = requests.send((request.method().clone(), path, content_type, body));
            let gate = gate.clone();
            async move {
                let _ = gate.acquire().await.map(|permit| permit.forget());
                http::Response::new(http_body_util::Full::new(Bytes::from_static(b"{}")))
            }
        });
        (client, received, answers)
    }

    #[tokio::test]
    async fn events_are_written_in_order_and_dropped_beyond_the_queue_without_waiting() {
        let (client, mut received, answers) = stalled_server();
        let recorder = Recorder::with_capacity(client, 2);
        recorder.create(&scheduled("web.1"));
        let (method, path, _, body) = received.recv().await.expect("the first event reaches the server");
        assert_eq!((method, path.as_str()), (Method::POST, "/api/v1/namespaces/ns/events"));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["metadata"]["name"], "web.1");
        // The writer waits for the server's answer: two more wait in the queue, the rest are dropped.
        recorder.patch("/api/v1/namespaces/ns/events/web.1".into(), &serde_json::json!({"count": 2}));
        for name in ["web.2", "web.3", "web.4"] {
            recorder.create(&scheduled(name));
        }
        assert_eq!(recorder.dropped.load(Ordering::Relaxed), 2);
        answers.add_permits(3);
        let (method, path, content_type, body) = received.recv().await.expect("the queued patch");
        assert_eq!((method, path.as_str(), content_type.as_str(), body.as_str()), (Method::PATCH, "/api/v1/namespaces/ns/events/web.1", "application/merge-patch+json", r#"{"count":2}"#));
        let (_, _, _, body) = received.recv().await.expect("the queued create");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["metadata"]["name"], "web.2");
        drop(recorder);
        assert!(received.recv().await.is_none(), "dropped events are never sent, and the writer stops with its recorder");
    }
}
