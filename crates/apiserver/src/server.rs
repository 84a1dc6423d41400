//! HTTPS: the TLS listener, authentication, and routing of paths to handlers.
//!
//! Invariant: nothing but the health endpoints answers a request that is not authenticated.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tugboat_api::schema;

use crate::error::ApiError;
use crate::handlers::MAX_BODY_BYTES;
use crate::request::{parse_path, Query, Target};
use crate::respond::{bytes_response, json_response};
use crate::{discovery, ApiServer};

/// Who the client is. Client certificates are verified against the cluster CA during the TLS
/// handshake, so presenting one means being authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    ClientCertificate,
    /// A component in the server's own process (kube-apiserver's loopback client): only code
    /// that holds the server itself can send such a request.
    InProcess,
    Anonymous,
}

/// Accepts TLS connections until `shutdown` resolves.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let router = axum::Router::new().fallback(route).with_state(server);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "tls handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let authentication = if tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()) {
                Authentication::ClientCertificate
            } else {
                Authentication::Anonymous
            };
            let service = router.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(authentication);
                request
            });
            let service = hyper_util::service::TowerToHyperService::new(service);
            if let Err(error) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// Serves one request from a component in this process, as if it had come over a connection
/// authenticated with a client certificate.
pub async fn serve_in_process(server: Arc<ApiServer>, request: http::Request<Bytes>) -> Response {
    let mut request = request.map(Body::from);
    request.extensions_mut().insert(Authentication::InProcess);
    route(State(server), request).await
}

async fn route(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") || path.starts_with("/readyz/") || path.starts_with("/livez/") || path.starts_with("/healthz/") {
        return health(&server).await;
    }
    if !matches!(request.extensions().get::<Authentication>(), Some(Authentication::ClientCertificate | Authentication::InProcess)) {
        return ApiError::unauthorized().into_response();
    }
    let started = std::time::Instant::now();
    let response = route_authenticated(&server, method.clone(), request).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    response
}

async fn route_authenticated(server: &ApiServer, method: Method, request: Request) -> Response {
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let read_only = |doc: serde_json::Value| {
        if method == Method::GET {
            json_response(StatusCode::OK, &doc)
        } else {
            ApiError::method_not_allowed(&method).into_response()
        }
    };
    match path.as_str() {
        "/version" => return read_only(discovery::version()),
        "/api" => return read_only(discovery::api_versions(&server.config.advertise_address)),
        "/apis" => return read_only(discovery::api_group_list()),
        "/openapi/v3" => return read_only(schema::openapi_v3_index()),
        _ => {}
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => return ApiError::path_not_found().into_response(),
        };
        return match schema::openapi_v3_document(group, version) {
            Some(doc) => {
                let mut response = bytes_response(StatusCode::OK, Bytes::from_static(b""));
                *response.body_mut() = Body::from(doc.json.clone());
                response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                response
            }
            None => ApiError::path_not_found().into_response(),
        };
    }
    if path == "/apis/metrics.k8s.io" {
        return read_only(serde_json::json!({"kind": "APIGroup", "apiVersion": "v1", "name": "metrics.k8s.io", "versions": crate::agent_proxy::metrics_group()["versions"], "preferredVersion": crate::agent_proxy::metrics_group()["preferredVersion"]}));
    }
    if path.starts_with("/apis/metrics.k8s.io/v1beta1") {
        return crate::agent_proxy::metrics(server, &method, &path).await;
    }
    if let Some(group) = path.strip_prefix("/apis/").filter(|g| !g.contains('/')) {
        return match discovery::api_group(group) {
            Some(doc) => read_only(doc),
            None => ApiError::path_not_found().into_response(),
        };
    }
    let Some(target) = parse_path(&path) else {
        return ApiError::path_not_found().into_response();
    };
    match target {
        Target::GroupVersion { group, version } => read_only(discovery::resource_list(&group, &version)),
        Target::Resource(resource_path) if is_pod_stream(&resource_path) => {
            let (namespace, name) = (resource_path.namespace.clone().unwrap_or_default(), resource_path.name.clone().unwrap_or_default());
            let subresource = resource_path.subresource.clone().unwrap_or_default();
            crate::agent_proxy::pod_stream(server, &namespace, &name, &subresource, request).await
        }
        Target::Resource(resource_path) => {
            let query = match Query::parse(request.uri().query()) {
                Ok(query) => query,
                Err(error) => return error.into_response(),
            };
            let (parts, body) = request.into_parts();
            let body = match read_body(body).await {
                Ok(body) => body,
                Err(error) => return error.into_response(),
            };
            server.handle_resource(method, resource_path, query, parts.headers, body).await
        }
    }
}

/// `pods/{log,exec,attach,portforward}`: served by the pod's node agent.
fn is_pod_stream(path: &crate::request::ResourcePath) -> bool {
    path.resource.group.is_empty()
        && path.resource.kind == "Pod"
        && path.name.is_some()
        && matches!(path.subresource.as_deref(), Some("log" | "exec" | "attach" | "portforward"))
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large()),
        Err(error) => Err(ApiError::bad_request(format!("could not read the request body: {error}"))),
    }
}

async fn health(server: &ApiServer) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), server.objects.store.current_revision()).await {
        Ok(Ok(_)) => {
            let mut response = Response::new(Body::from("ok"));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            response
        }
        Ok(Err(error)) => {
            let mut response = Response::new(Body::from(format!("[-]etcd failed: {error}\nhealthz check failed")));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
        Err(_) => {
            let mut response = Response::new(Body::from("[-]etcd failed: the store did not answer within 2s\nhealthz check failed"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}
