//! What the API server asks of node agents: the streaming pod subresources (`log`, `exec`,
//! `attach`, `portforward`), proxied to the pod's node agent over HTTPS with the API server's own
//! client certificate — upgrades (WebSocket, SPDY) are passed through byte for byte — and the
//! `metrics.k8s.io/v1beta1` API, assembled from the agents' `/stats/summary`.
//!
//! Invariant: the API server never interprets a stream's bytes; protocols are the agent's business.

use tugboat_api::meta::Pointer;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tugboat_api::{meta, Registry};

use crate::error::ApiError;
use crate::ApiServer;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Headers that carry a stream's negotiation to the agent.
const FORWARDED_HEADERS: &[&str] = &[
    "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions",
    "x-stream-protocol-version", "content-type", "accept",
];

fn core(kind: &str) -> &'static tugboat_api::ResourceType {
    Registry::get().by_kind("v1", kind).expect("core kinds are registered")
}

/// Where a node's agent listens: its InternalIP (else first address) and kubelet port.
fn agent_address(node: &Value) -> Option<String> {
    let addresses = node.at("/status/addresses").and_then(Value::as_array)?;
    let address = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())
        .and_then(|a| a["address"].as_str())?;
    let port = node.at("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).filter(|p| *p > 0)?;
    Some(if address.contains(':') { format!("[{address}]:{port}") } else { format!("{address}:{port}") })
}

/// Opens an HTTP/1.1 connection to an agent.
async fn connect(tls: &Arc<rustls::ClientConfig>, address: &str) -> Result<hyper::client::conn::http1::SendRequest<Body>, ApiError> {
    let unavailable = |message: String| ApiError::service_unavailable(message);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| unavailable(format!("dial tcp {address}: i/o timeout; is the node's agent running?")))?
        .map_err(|e| unavailable(format!("dial tcp {address}: {e}; is the node's agent running?")))?;
    let _ = tcp.set_nodelay(true);
    // The agent's certificate is not verified (see tugboat_pki::agent_client_tls_config): any
    // name will do.
    let name = rustls_pki_types::ServerName::try_from("tugboat-agent").map_err(|e| unavailable(e.to_string()))?;
    let tls_stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| unavailable(format!("tls to the agent at {address}: {e}")))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls_stream)).await.map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "agent connection ended");
        }
    });
    Ok(sender)
}

/// Serves `pods/{log,exec,attach,portforward}` by proxying to the pod's node agent.
pub async fn pod_stream(server: &ApiServer, namespace: &str, name: &str, subresource: &str, mut request: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let Some(tls) = &server.config.agent_client_tls else {
            return Err(ApiError::service_unavailable("this API server has no credentials for node agents"));
        };
        let (pod, _) = server.objects.get(core("Pod"), namespace, name).await?;
        let node_name = meta::str_at(&pod, "/spec/nodeName").to_owned();
        if node_name.is_empty() {
            return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
        }
        let (node, _) = server.objects.get(core("Node"), "", &node_name).await?;
        let address = agent_address(&node).ok_or_else(|| ApiError::service_unavailable(format!("node {node_name} reports no agent address")))?;
        let query = request.uri().query().unwrap_or_default().to_owned();
        let mut container = String::new();
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.strip_prefix("container=") {
                Some(value) => container = value.to_owned(),
                None => rest.push(pair),
            }
        }
        if container.is_empty() && subresource != "portforward" {
            // kubectl's default: the annotated default container, else the first.
            container = meta::str_at(&pod, "/metadata/annotations/kubectl.kubernetes.io~1default-container").to_owned();
            if container.is_empty() {
                container = meta::str_at(&pod, "/spec/containers/0/name").to_owned();
            }
        }
        let path = match subresource {
            "log" => format!("/containerLogs/{namespace}/{name}/{container}"),
            "exec" => format!("/exec/{namespace}/{name}/{container}"),
            "attach" => format!("/attach/{namespace}/{name}/{container}"),
            _ => format!("/portForward/{namespace}/{name}"),
        };
        let uri = if rest.is_empty() { path } else { format!("{path}?{}", rest.join("&")) };
        let mut upstream = http::Request::builder().method(request.method().clone()).uri(uri).header(header::HOST, address.as_str());
        for (key, value) in request.headers() {
            if FORWARDED_HEADERS.contains(&key.as_str()) {
                upstream = upstream.header(key, value);
            }
        }
        let upstream = upstream.body(Body::empty()).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut sender = connect(tls, &address).await?;
        let mut response = sender.send_request(upstream).await.map_err(|e| ApiError::service_unavailable(format!("the agent at {address}: {e}")))?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let client_upgrade = hyper::upgrade::on(&mut request);
            let agent_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match (client_upgrade.await, agent_upgrade.await) {
                    (Ok(client), Ok(agent)) => {
                        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
                    }
                    (Err(error), _) | (_, Err(error)) => tracing::debug!(%error, "stream upgrade failed"),
                }
            });
            let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
            for (key, value) in response.headers() {
                answer = answer.header(key, value);
            }
            return Ok(answer.body(Body::empty()).unwrap_or_default());
        }
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static("text/plain"));
        let body = Body::new(response.into_body().map_err(axum::Error::new));
        let mut answer = Response::new(body);
        *answer.status_mut() = status;
        answer.headers_mut().insert(header::CONTENT_TYPE, content_type);
        Ok(answer)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// GET of an agent path, decoded as JSON.
async fn agent_json(tls: &Arc<rustls::ClientConfig>, address: &str, path: &str) -> Result<Value, ApiError> {
    let mut sender = connect(tls, address).await?;
    let request = http::Request::builder().uri(path).header(header::HOST, address).body(Body::empty()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| ApiError::service_unavailable(e.to_string()))?;
    let bytes: Bytes = response.into_body().collect().await.map_err(|e| ApiError::service_unavailable(e.to_string()))?.to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ApiError::service_unavailable(format!("the agent at {address} sent invalid JSON: {e}")))
}

/// Nanocores as a Kubernetes quantity ("123456n"), bytes as Ki.
fn cpu_quantity(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn usage(stats: &Value) -> Value {
    json!({
        "cpu": cpu_quantity(stats["cpu"]["usageNanoCores"].as_u64().unwrap_or(0)),
        "memory": memory_quantity(stats["memory"]["workingSetBytes"].as_u64().unwrap_or(0)),
    })
}

/// Serves `/apis/metrics.k8s.io/v1beta1/...`: NodeMetrics and PodMetrics, as metrics-server does.
pub async fn metrics(server: &ApiServer, method: &Method, path: &str) -> Response {
    if method != Method::GET {
        return ApiError::method_not_allowed(method).into_response();
    }
    let segments: Vec<&str> = path.trim_start_matches("/apis/metrics.k8s.io/v1beta1").split('/').filter(|s| !s.is_empty()).collect();
    let (kind, namespace, name) = match segments.as_slice() {
        [] => return crate::respond::json_response(StatusCode::OK, &metrics_resource_list()),
        ["nodes"] => ("nodes", None, None),
        ["nodes", name] => ("nodes", None, Some(*name)),
        ["pods"] => ("pods", None, None),
        ["namespaces", ns, "pods"] => ("pods", Some(*ns), None),
        ["namespaces", ns, "pods", name] => ("pods", Some(*ns), Some(*name)),
        _ => return ApiError::path_not_found().into_response(),
    };
    let Some(tls) = &server.config.agent_client_tls else {
        return ApiError::service_unavailable("this API server has no credentials for node agents").into_response();
    };
    let nodes = match server.objects.list_all(core("Node")).await {
        Ok(nodes) => nodes,
        Err(error) => return error.into_response(),
    };
    // Ask every node's agent at once.
    let summaries = futures::future::join_all(nodes.iter().filter_map(|node| {
        let address = agent_address(node)?;
        let tls = tls.clone();
        Some(async move { agent_json(&tls, &address, "/stats/summary").await.ok() })
    }))
    .await;
    let mut items = Vec::new();
    for summary in summaries.into_iter().flatten() {
        if kind == "nodes" {
            let node = &summary["node"];
            let node_name = node["nodeName"].as_str().unwrap_or_default();
            if name.is_some_and(|n| n != node_name) {
                continue;
            }
            items.push(json!({"metadata": {"name": node_name, "creationTimestamp": jiff::Timestamp::now().to_string()},
                "timestamp": node["cpu"]["time"], "window": "10s", "usage": usage(node)}));
        } else {
            for pod in summary["pods"].as_array().into_iter().flatten() {
                let (pod_namespace, pod_name) = (pod["podRef"]["namespace"].as_str().unwrap_or_default(), pod["podRef"]["name"].as_str().unwrap_or_default());
                if namespace.is_some_and(|n| n != pod_namespace) || name.is_some_and(|n| n != pod_name) {
                    continue;
                }
                let containers: Vec<Value> = pod["containers"].as_array().into_iter().flatten().map(|c| json!({"name": c["name"], "usage": usage(c)})).collect();
                items.push(json!({"metadata": {"name": pod_name, "namespace": pod_namespace, "creationTimestamp": jiff::Timestamp::now().to_string()},
                    "timestamp": pod["cpu"]["time"], "window": "10s", "containers": containers}));
            }
        }
    }
    let item_kind = if kind == "nodes" { "NodeMetrics" } else { "PodMetrics" };
    let body = match name {
        Some(name) => match items.into_iter().next() {
            Some(mut item) => {
                item["kind"] = item_kind.into();
                item["apiVersion"] = "metrics.k8s.io/v1beta1".into();
                item
            }
            None => {
                let resource = if kind == "nodes" { "nodes.metrics.k8s.io" } else { "pods.metrics.k8s.io" };
                return ApiError::new(StatusCode::NOT_FOUND, "NotFound", format!("{resource} {name:?} not found")).into_response();
            }
        },
        None => json!({"kind": format!("{item_kind}List"), "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
    };
    crate::respond::json_response(StatusCode::OK, &body)
}

pub fn metrics_group() -> Value {
    json!({"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
           "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}})
}

pub fn metrics_resource_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]})
}
