//! The agent's HTTPS endpoint, which the API server proxies `pods/log`, `pods/exec`,
//! `pods/attach` and `pods/portforward` to (kubelet's paths), plus `/stats/summary` (read by the
//! API server's metrics.k8s.io) and Prometheus `/metrics`.
//!
//! Invariant: every request carries a client certificate signed by the cluster CA (checked in the
//! TLS handshake); there is no anonymous access.

mod logs;
mod portforward;
mod remotecommand;
pub mod spdy;
mod targets;

use crate::Context;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use targets::{Backend, BackendError, ContainerRef, StreamOptions};
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder().status(status).header(header::CONTENT_TYPE, content_type).body(Full::new(body.into()).boxed()).unwrap_or_default()
}

fn status_response(error: &BackendError) -> Response<Body> {
    let (code, reason) = match error {
        BackendError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
        BackendError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        BackendError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    };
    let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": error.to_string(), "reason": reason, "code": code.as_u16()});
    full(code, "application/json", status.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()).ok_or(()) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

fn flag(query: &[(String, String)], name: &str) -> bool {
    query.iter().any(|(k, v)| k == name && (v == "1" || v == "true"))
}

fn offered_protocols(request: &Request<Incoming>) -> Vec<String> {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect()
}

fn is_websocket(request: &Request<Incoming>) -> bool {
    request.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers a WebSocket upgrade with `protocol` and hands the upgraded connection to `serve`.
fn accept_websocket<F, Fut>(mut request: Request<Incoming>, protocol: &str, serve: F) -> Response<Body>
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return status_response(&BackendError::BadRequest("missing Sec-WebSocket-Key".into()));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => serve(tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await).await,
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap_or_default()
}

async fn route(backend: Arc<Backend>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let query = query_pairs(request.uri().query());
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let node = &backend.context.config.node_name;
    match (request.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => full(StatusCode::OK, "text/plain", "ok"),
        (&Method::GET, ["stats", "summary"]) => full(StatusCode::OK, "application/json", backend.context.stats.summary(node).to_string()),
        (&Method::GET, ["metrics"]) => full(StatusCode::OK, "text/plain; version=0.0.4", backend.context.stats.prometheus(node)),
        (&Method::GET, ["containerLogs", namespace, pod, container]) => {
            let target = ContainerRef { namespace: namespace.to_string(), pod: pod.to_string(), container: container.to_string() };
            container_logs(backend, target, &query).await
        }
        (&Method::GET | &Method::POST, [kind @ ("exec" | "attach"), namespace, pod, container]) => {
            let target = ContainerRef { namespace: namespace.to_string(), pod: pod.to_string(), container: container.to_string() };
            let options = StreamOptions { stdin: flag(&query, "stdin"), stdout: flag(&query, "stdout"), stderr: flag(&query, "stderr"), tty: flag(&query, "tty") };
            let offered = offered_protocols(&request);
            let Some(protocol) = remotecommand::WEBSOCKET_PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)) else {
                return status_response(&BackendError::BadRequest(format!(
                    "{kind} needs a WebSocket upgrade with one of the subprotocols {}",
                    remotecommand::WEBSOCKET_PROTOCOLS.join(", ")
                )));
            };
            if !is_websocket(&request) {
                return status_response(&BackendError::BadRequest(format!("{kind} needs a WebSocket upgrade")));
            }
            let url = if *kind == "exec" {
                let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
                backend.exec_url(&target, command, options).await
            } else {
                backend.attach_url(&target, options).await
            };
            match url {
                Ok(url) => accept_websocket(request, protocol, move |ws| remotecommand::bridge(ws, url, options)),
                Err(error) => status_response(&error),
            }
        }
        (&Method::GET | &Method::POST, ["portForward", namespace, pod]) => {
            let ports: Vec<u16> = query.iter().filter(|(k, _)| k == "ports" || k == "port").flat_map(|(_, v)| v.split(',').filter_map(|p| p.trim().parse().ok()).collect::<Vec<_>>()).collect();
            port_forward(backend, request, namespace, pod, ports).await
        }
        _ => status_response(&BackendError::NotFound(format!("{} {path} is not served by the agent", request.method()))),
    }
}

async fn container_logs(backend: Arc<Backend>, target: ContainerRef, query: &[(String, String)]) -> Response<Body> {
    let options = match logs::LogOptions::from_query(query) {
        Ok(options) => options,
        Err(message) => return status_response(&BackendError::BadRequest(message)),
    };
    let path = match backend.log_path(&target, options.previous).await {
        Ok(path) => path,
        Err(error) => return status_response(&error),
    };
    if !path.exists() {
        return status_response(&BackendError::NotFound(format!("the log file {} of container {} does not exist", path.display(), target.container)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let still_written = || {
            let (backend, target, path) = (backend.clone(), ContainerRef { namespace: target.namespace.clone(), pod: target.pod.clone(), container: target.container.clone() }, path.clone());
            async move { backend.log_writer_running(&target, &path).await }
        };
        if let Err(error) = logs::stream(&path, options, tx, still_written).await {
            tracing::debug!(%error, "log stream ended");
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx)) });
    Response::builder().status(StatusCode::OK).header(header::CONTENT_TYPE, "text/plain").body(StreamBody::new(frames).boxed()).unwrap_or_default()
}

async fn port_forward(backend: Arc<Backend>, mut request: Request<Incoming>, namespace: &str, pod: &str, ports: Vec<u16>) -> Response<Body> {
    let url = match backend.port_forward_url(namespace, pod, ports).await {
        Ok(url) => url,
        Err(error) => return status_response(&error),
    };
    if is_websocket(&request) {
        if !offered_protocols(&request).iter().any(|p| p == portforward::WEBSOCKET_PROTOCOL) {
            return status_response(&BackendError::BadRequest(format!("port-forward over WebSocket needs the subprotocol {}", portforward::WEBSOCKET_PROTOCOL)));
        }
        return accept_websocket(request, portforward::WEBSOCKET_PROTOCOL, move |ws| async move {
            let (session, accepted) = spdy::Session::start(portforward::websocket_bytes(ws), false);
            portforward::bridge(accepted, session, url).await;
        });
    }
    let spdy_upgrade = request.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !spdy_upgrade {
        return status_response(&BackendError::BadRequest("port-forward needs a WebSocket or SPDY/3.1 upgrade".into()));
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let (session, accepted) = spdy::Session::start(TokioIo::new(upgraded), false);
            portforward::bridge(accepted, session, url).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", portforward::SPDY_PROTOCOL)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap_or_default()
}

/// Serves the endpoint on `listener` until the process ends.
pub async fn serve(context: Arc<Context>, listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let backend = Arc::new(Backend { context });
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let (acceptor, backend) = (acceptor.clone(), backend.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |request| {
                let backend = backend.clone();
                async move { Ok::<_, Infallible>(route(backend, request).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades().await {
                tracing::debug!(%error, "agent endpoint connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_commands() {
        let pairs = query_pairs(Some("command=sh&command=-c&command=echo%20hi%26bye&stdin=1"));
        let command: Vec<&str> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
        assert_eq!(command, ["sh", "-c", "echo hi&bye"]);
        assert!(flag(&pairs, "stdin"));
        assert_eq!(percent_decode("100%"), "100%");
    }
}
