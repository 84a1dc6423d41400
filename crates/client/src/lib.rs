//! A small Kubernetes REST client: HTTPS with the cluster CA and a client certificate from a
//! kubeconfig, JSON bodies, and line-delimited watch streams. Tugboat's own components and
//! benchmarks use it; it depends on no server crate.
//!
//! A component running inside the API server's process may reach it in process instead
//! ([`Client::in_process`]): the same requests and answers, without TLS, HTTP/2 framing or a
//! socket in between.

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tugboat_pki::Kubeconfig;

pub use tugboat_api::Shape;

pub mod events;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Kubeconfig(#[from] tugboat_pki::KubeconfigError),
    #[error("kubeconfig holds no usable {0}")]
    Credentials(&'static str),
    #[error("tls setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("request to the API server failed: {0}")]
    Transport(String),
    /// The server answered with an error Status.
    #[error("the API server answered {code}: {message}")]
    Status { code: StatusCode, reason: String, message: String },
    #[error("the API server sent invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

type HttpsClient = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of an answer, whichever transport carried it.
type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;
/// An API server in this process: serves one request (path-only URI, headers, whole body).
type InProcessServer = dyn Fn(Request<Bytes>) -> BoxFuture<'static, Response<ResponseBody>> + Send + Sync;

#[derive(Clone)]
enum Transport {
    Https(Box<HttpsClient>),
    InProcess(Arc<InProcessServer>),
}

#[derive(Clone)]
pub struct Client {
    transport: Transport,
    base: String,
}

impl Client {
    /// A client for the current context of a kubeconfig file.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, ClientError> {
        let config = Kubeconfig::read(path)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(config.ca_pem.as_bytes()) {
            roots.add(cert.map_err(|_| ClientError::Credentials("certificate-authority-data"))?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let tls = match (&config.client_cert_pem, &config.client_key_pem) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ClientError::Credentials("client-certificate-data"))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| ClientError::Credentials("client-key-data"))?;
                builder.with_client_auth_cert(certs, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        // Without TCP_NODELAY small requests wait for delayed ACKs (tens of milliseconds).
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { transport: Transport::Https(Box::new(http)), base: config.server.trim_end_matches('/').to_owned() })
    }

    /// A client of the API server running in this process, which `serve` hands each request
    /// to. The server must treat these requests as authenticated: only code holding the server
    /// can make one.
    pub fn in_process<F, Fut, B>(serve: F) -> Self
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let server = move |request| -> BoxFuture<'static, Response<ResponseBody>> {
            let answer = serve(request);
            Box::pin(async move { answer.await.map(|body| body.map_err(Into::into).boxed_unsync()) })
        };
        Self { transport: Transport::InProcess(Arc::new(server)), base: String::new() }
    }

    /// The same credentials against another server URL (`https://host:port`).
    pub fn with_server(mut self, server: &str) -> Self {
        self.base = server.trim_end_matches('/').to_owned();
        self
    }

    async fn send(&self, method: Method, path: &str, body: Option<(&str, Bytes)>) -> Result<Response<ResponseBody>, ClientError> {
        let uri = match &self.transport {
            // The server's default field validation (Warn) walks every written object for
            // unknown fields to report in Warning headers, which this client never reads.
            Transport::InProcess(_) if matches!(method, Method::POST | Method::PUT | Method::PATCH) && !path.contains("fieldValidation=") => {
                let separator = if path.contains('?') { '&' } else { '?' };
                format!("{path}{separator}fieldValidation=Ignore")
            }
            _ => format!("{}{path}", self.base),
        };
        let mut request = Request::builder().method(method).uri(uri).header(header::ACCEPT, "application/json");
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        match &self.transport {
            Transport::Https(http) => {
                let request = request.body(Full::new(body)).map_err(|e| ClientError::Transport(e.to_string()))?;
                let response = http.request(request).await.map_err(|e| ClientError::Transport(e.to_string()))?;
                Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()))
            }
            Transport::InProcess(server) => {
                let request = request.body(body).map_err(|e| ClientError::Transport(e.to_string()))?;
                Ok(server(request).await)
            }
        }
    }

    /// Sends a request and returns the body of a 2xx answer; an error Status becomes
    /// [`ClientError::Status`].
    pub async fn request(&self, method: Method, path: &str, body: Option<(&str, Bytes)>) -> Result<Bytes, ClientError> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| ClientError::Transport(e.to_string()))?.to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let parsed: Value = tugboat_api::json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(ClientError::Status {
            code: status,
            reason: parsed["reason"].as_str().unwrap_or_default().to_owned(),
            message: parsed["message"].as_str().map(str::to_owned).unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(tugboat_api::json::from_slice(&self.request(Method::GET, path, None).await?)?)
    }

    pub async fn create(&self, collection: &str, object: &Value) -> Result<Value, ClientError> {
        self.create_as(collection, object).await
    }

    /// Creates an object and decodes the server's copy of it as `T`: only the fields `T` has
    /// are built (`serde::de::IgnoredAny` for none).
    pub async fn create_as<T: serde::de::DeserializeOwned>(&self, collection: &str, object: &Value) -> Result<T, ClientError> {
        let body = Bytes::from(serde_json::to_vec(object)?);
        Ok(tugboat_api::json::from_slice(&self.request(Method::POST, collection, Some(("application/json", body))).await?)?)
    }

    /// A JSON merge patch (RFC 7386) of the object or subresource at `path`.
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ClientError> {
        self.merge_patch_as(path, patch).await
    }

    /// [`Self::merge_patch`], decoding the patched object as `T` (see [`Self::create_as`]).
    pub async fn merge_patch_as<T: serde::de::DeserializeOwned>(&self, path: &str, patch: &Value) -> Result<T, ClientError> {
        let body = Bytes::from(serde_json::to_vec(patch)?);
        Ok(tugboat_api::json::from_slice(&self.request(Method::PATCH, path, Some(("application/merge-patch+json", body))).await?)?)
    }

    /// A watch (`path` must carry `watch=true`): one decoded event per item.
    pub async fn watch(&self, path: &str) -> Result<BoxStream<'static, Result<Value, ClientError>>, ClientError> {
        self.watch_shaped(path, None).await
    }

    /// A watch whose events' objects keep only `shape` (ERROR events are kept whole).
    pub async fn watch_shaped(&self, path: &str, shape: Option<&Shape>) -> Result<BoxStream<'static, Result<Value, ClientError>>, ClientError> {
        let event_shape = shape.map(|shape| Shape::Fields([("type".to_owned(), Shape::All), ("object".to_owned(), shape.clone())].into()));
        let decode = move |line: &[u8]| -> Result<Value, serde_json::Error> {
            let Some(event_shape) = &event_shape else { return tugboat_api::json::from_slice(line) };
            let event = event_shape.decode(line)?;
            if event["type"] == "ERROR" {
                return tugboat_api::json::from_slice(line);
            }
            Ok(event)
        };
        let lines = self.watch_lines(path).await?;
        Ok(lines.map(move |line| Ok(decode(&line?)?)).boxed())
    }

    /// A watch as its undecoded event lines.
    pub async fn watch_lines(&self, path: &str) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| ClientError::Transport(e.to_string()))?.to_bytes();
            return Err(ClientError::Status { code: status, reason: String::new(), message: String::from_utf8_lossy(&bytes).into_owned() });
        }
        let frames = response.into_body().into_data_stream();
        // A chunk may hold several events, and an event may span chunks. `scanned`: how much of
        // the buffer is known to hold no line end, so a large event is not rescanned per chunk.
        // A chunk that starts a line (the usual case: one event per chunk) becomes the buffer
        // without a copy, and its lines are handed out as slices of it.
        let lines = futures::stream::unfold((frames, BytesMut::new(), 0), |(mut frames, mut buffer, mut scanned)| async move {
            loop {
                if let Some(end) = memchr::memchr(b'\n', &buffer[scanned..]).map(|at| scanned + at) {
                    let mut line = buffer.split_to(end + 1);
                    line.truncate(end);
                    return Some((Ok(line.freeze()), (frames, buffer, 0)));
                }
                scanned = buffer.len();
                match frames.next().await {
                    Some(Ok(chunk)) if buffer.is_empty() => buffer = chunk.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..])),
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(ClientError::Transport(e.to_string())), (frames, BytesMut::new(), 0))),
                    None => return None,
                }
            }
        });
        Ok(lines.boxed())
    }
}

/// One watch event decoded straight into the object's type.
#[derive(serde::Deserialize)]
struct TypedEvent<T> {
    #[serde(rename = "type")]
    kind: String,
    object: T,
}

/// An informer: lists `collection`, then watches it from the list's revision, calling
/// `handle(kind, object)` with ADDED for listed objects and the event type after; relists after
/// errors and 410 Gone. Runs forever (abort its task to stop it).
pub async fn inform<T: serde::de::DeserializeOwned>(client: &Client, collection: &str, handle: impl Fn(&str, T)) {
    let item = |item: Value| serde_json::from_value::<T>(item).ok();
    let event = |line: &Bytes| tugboat_api::json::from_slice::<TypedEvent<T>>(line).ok().map(|event| (event.kind, event.object));
    inform_decoding(client, collection, item, event, handle).await
}

/// [`inform`] for a reader that decodes objects itself: `decode_item` gets each listed object,
/// `decode_event` each watch event's text (the whole event, as served) and answers its type and
/// what the reader made of it. For a reader that looks at a few fields of an event before it
/// decides whether to decode the rest.
pub async fn inform_decoding<T>(
    client: &Client,
    collection: &str,
    decode_item: impl Fn(Value) -> Option<T>,
    decode_event: impl Fn(&Bytes) -> Option<(String, T)>,
    handle: impl Fn(&str, T),
) {
    loop {
        let list = match client.get(collection).await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, collection, "cannot list; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let version = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned();
        let Value::Object(mut list) = list else { continue };
        if let Some(Value::Array(items)) = list.remove("items") {
            for object in items.into_iter().filter_map(&decode_item) {
                handle("ADDED", object);
            }
        }
        let separator = if collection.contains('?') { '&' } else { '?' };
        let path = format!("{collection}{separator}watch=true&allowWatchBookmarks=true&resourceVersion={version}");
        match client.watch_lines(&path).await {
            Ok(mut lines) => {
                while let Some(Ok(line)) = lines.next().await {
                    match decode_event(&line) {
                        Some((kind, _)) if kind == "BOOKMARK" => continue,
                        Some((kind, _)) if kind == "ERROR" => break,
                        Some((kind, object)) => handle(&kind, object),
                        // ERROR (its object is a Status) or an object this reader cannot use.
                        None if serde_json::from_slice::<Value>(&line).is_ok_and(|event| event["type"] == "ERROR") => break,
                        None => continue,
                    }
                }
            }
            Err(error) => tracing::warn!(%error, collection, "cannot watch; relisting"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// [`inform`] with objects that keep only `shape` (client-go's transform, done while decoding).
pub async fn inform_shaped(client: &Client, collection: &str, shape: &Shape, handle: impl Fn(&str, Value)) {
    let event_shape = Shape::Fields([("type".to_owned(), Shape::All), ("object".to_owned(), shape.clone())].into());
    let item = |item: Value| Some(shape.apply(&item));
    let event = |line: &Bytes| {
        let mut event = event_shape.decode(line).ok()?;
        Some((event["type"].as_str()?.to_owned(), event["object"].take()))
    };
    inform_decoding(client, collection, item, event, handle).await
}

/// Leader election through a coordination.k8s.io Lease, as Kubernetes components do it: the holder
/// renews `spec.renewTime` every [`leader::RENEW_EVERY`]; a candidate takes the lease over once it
/// has not been renewed for `leaseDurationSeconds`. Every write is conditional on the
/// resourceVersion read, so two candidates never both win.
pub mod leader {
    use super::{Client, ClientError};
    use bytes::Bytes;
    use http::{Method, StatusCode};
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// Kubernetes uses 15 s; 10 s keeps a failover (expiry plus one retry) within 15 s.
    pub const LEASE_DURATION: Duration = Duration::from_secs(10);
    pub const RENEW_EVERY: Duration = Duration::from_secs(2);

    fn now() -> String {
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// One attempt to hold the lease; Ok(true) when `identity` holds it afterwards.
    async fn try_hold(client: &Client, namespace: &str, name: &str, identity: &str) -> Result<bool, ClientError> {
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}");
        let current = match client.get(&path).await {
            Ok(lease) => lease,
            Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }) => {
                let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": namespace},
                    "spec": {"holderIdentity": identity, "leaseDurationSeconds": LEASE_DURATION.as_secs(), "acquireTime": now(), "renewTime": now(), "leaseTransitions": 0}});
                return match client.create(&format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"), &lease).await {
                    Ok(_) => Ok(true),
                    Err(ClientError::Status { code: StatusCode::CONFLICT, .. }) => Ok(false),
                    Err(error) => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        let spec = &current["spec"];
        let holder = spec["holderIdentity"].as_str().unwrap_or_default();
        let duration = spec["leaseDurationSeconds"].as_i64().unwrap_or(LEASE_DURATION.as_secs() as i64);
        let renewed = spec["renewTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let expired = renewed.is_none_or(|t| jiff::Timestamp::now().duration_since(t).as_secs() >= duration);
        if holder != identity && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let mut next = current.clone();
        next["spec"]["renewTime"] = now().into();
        next["spec"]["leaseDurationSeconds"] = LEASE_DURATION.as_secs().into();
        if holder != identity {
            next["spec"]["holderIdentity"] = identity.into();
            next["spec"]["acquireTime"] = now().into();
            next["spec"]["leaseTransitions"] = (spec["leaseTransitions"].as_i64().unwrap_or(0) + 1).into();
        }
        // The PUT carries the resourceVersion read: a concurrent writer makes it fail with 409.
        match client.request(Method::PUT, &path, Some(("application/json", Bytes::from(next.to_string())))).await {
            Ok(_) => Ok(true),
            Err(ClientError::Status { code: StatusCode::CONFLICT, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Runs `component` only while `identity` holds the lease `namespace/name`: it is started
    /// on winning and stopped (its shutdown future resolves) on losing. Runs forever.
    pub async fn run_while_leader<F, Fut>(client: Client, namespace: &str, name: &str, identity: &str, component: F)
    where
        F: Fn(tokio::sync::oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        loop {
            // Candidate: try until the lease is ours.
            loop {
                match try_hold(&client, namespace, name, identity).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) => tracing::debug!(%error, lease = name, "cannot reach the lease"),
                }
                tokio::time::sleep(RENEW_EVERY).await;
            }
            tracing::info!(lease = name, identity, "became the leader");
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let running = tokio::spawn(component(stopped));
            // Leader: renew; give up once the lease could not be renewed for its whole duration.
            let mut last_renewal = Instant::now();
            while last_renewal.elapsed() < LEASE_DURATION {
                tokio::time::sleep(RENEW_EVERY).await;
                match try_hold(&client, namespace, name, identity).await {
                    Ok(true) => last_renewal = Instant::now(),
                    Ok(false) => break,
                    Err(error) => tracing::warn!(%error, lease = name, "cannot renew the lease"),
                }
            }
            tracing::warn!(lease = name, identity, "lost the leadership; stopping");
            let _ = stop.send(());
            let _ = running.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An in-process client whose server answers `{}` and records each request's method and URI.
    fn recording_client() -> (Client, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let client = Client::in_process(move |request: Request<Bytes>| {
            record.lock().unwrap().push(format!("{} {}", request.method(), request.uri()));
            async { Response::new(Full::new(Bytes::from_static(b"{}"))) }
        });
        (client, seen)
    }

    #[tokio::test]
    async fn in_process_writes_ask_for_no_field_warnings_and_reads_are_untouched() {
        let (client, seen) = recording_client();
        client.get("/api/v1/namespaces/a/pods/p").await.unwrap();
        client.create("/api/v1/namespaces/a/events", &serde_json::json!({})).await.unwrap();
        client.merge_patch("/api/v1/namespaces/a/pods/p/status?dryRun=All", &serde_json::json!({})).await.unwrap();
        client.merge_patch("/api/v1/nodes/n?fieldValidation=Strict", &serde_json::json!({})).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "GET /api/v1/namespaces/a/pods/p",
                "POST /api/v1/namespaces/a/events?fieldValidation=Ignore",
                "PATCH /api/v1/namespaces/a/pods/p/status?dryRun=All&fieldValidation=Ignore",
                "PATCH /api/v1/nodes/n?fieldValidation=Strict",
            ]
        );
    }
}
