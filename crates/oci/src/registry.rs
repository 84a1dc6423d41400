//! A read-only OCI distribution registry over plain HTTP, for loopback: the pull side of the
//! distribution API (API check, tag list, manifests by tag or digest, blobs), nothing else. The agent
//! points its containerd at it for the sandbox image; tests can serve any image with it.

use crate::image::{Image, MANIFEST_MEDIA_TYPE};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Every distribution API answer carries this header; clients check it on `/v2/`.
const API_VERSION_HEADER: &str = "docker-distribution-api-version";
const DIGEST_HEADER: &str = "docker-content-digest";

/// One repository's content: tags, manifests and the blobs its manifests name. Blobs are only
/// served under a repository whose images use them, as a real registry does.
#[derive(Default)]
struct Repository {
    tags: HashMap<String, String>,
    manifests: HashMap<String, Bytes>,
    blobs: HashMap<String, Bytes>,
}

type Repositories = HashMap<String, Repository>;

/// Serves `images` (each as repository, tag, image) read-only on `listener` until `shutdown`
/// completes; open connections are closed then too. Never fails: a failed accept is logged
/// and retried, a broken connection only ends itself.
pub async fn serve_registry(listener: TcpListener, images: Vec<(String, String, Image)>, shutdown: impl Future<Output = ()>) {
    let mut repositories = Repositories::new();
    for (name, tag, image) in images {
        let repository = repositories.entry(name).or_default();
        repository.tags.insert(tag, image.manifest_digest.clone());
        for (digest, bytes) in image.blobs() {
            repository.blobs.insert(digest.to_owned(), bytes.clone());
        }
        repository.manifests.insert(image.manifest_digest, image.manifest);
    }
    let repositories = Arc::new(repositories);
    // Connections live in the set so that returning (on shutdown) aborts them all.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let repositories = repositories.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let response = respond(&repositories, &request);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                            tracing::debug!(%error, "registry connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Typically out of file descriptors: pause instead of spinning on it.
                    tracing::warn!(%error, "registry accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// What a request path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// `/v2/`: "is this a registry, and may I use it?"
    ApiCheck,
    Manifest { repository: &'a str, reference: &'a str },
    Blob { repository: &'a str, digest: &'a str },
    /// `/v2/<name>/tags/list`: skopeo lists tags before it inspects an image.
    Tags { repository: &'a str },
    Unknown,
}

/// Parses `/v2/<name>/manifests/<reference>` and `/v2/<name>/blobs/<digest>`. Repository
/// names contain slashes (`tugboat/pause`), so the last `/manifests/` or `/blobs/` splits.
fn route(path: &str) -> Route<'_> {
    if path == "/v2/" || path == "/v2" {
        return Route::ApiCheck;
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return Route::Unknown };
    if let Some(repository) = rest.strip_suffix("/tags/list") {
        if !repository.is_empty() {
            return Route::Tags { repository };
        }
    }
    if let Some((repository, reference)) = rest.rsplit_once("/manifests/") {
        if !repository.is_empty() && !reference.is_empty() {
            return Route::Manifest { repository, reference };
        }
    }
    if let Some((repository, digest)) = rest.rsplit_once("/blobs/") {
        if !repository.is_empty() && !digest.is_empty() {
            return Route::Blob { repository, digest };
        }
    }
    Route::Unknown
}

fn respond(repositories: &Repositories, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let head_only = request.method() == Method::HEAD;
    if !head_only && request.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "this registry is read-only", head_only);
    }
    match route(request.uri().path()) {
        Route::ApiCheck => content(Bytes::from_static(b"{}"), "application/json", None, head_only),
        Route::Manifest { repository, reference } => {
            let Some(repository) = repositories.get(repository) else {
                return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry", head_only);
            };
            // A reference is a digest (`sha256:…`) or else a tag.
            let digest = if reference.contains(':') { Some(reference) } else { repository.tags.get(reference).map(String::as_str) };
            match digest.and_then(|digest| repository.manifests.get(digest).map(|manifest| (digest, manifest))) {
                Some((digest, manifest)) => content(manifest.clone(), MANIFEST_MEDIA_TYPE, Some(digest), head_only),
                None => error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown", head_only),
            }
        }
        Route::Blob { repository, digest } => {
            let Some(repository) = repositories.get(repository) else {
                return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry", head_only);
            };
            match repository.blobs.get(digest) {
                Some(blob) => content(blob.clone(), "application/octet-stream", Some(digest), head_only),
                None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry", head_only),
            }
        }
        Route::Tags { repository: name } => {
            let Some(repository) = repositories.get(name) else {
                return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry", head_only);
            };
            let mut tags: Vec<&str> = repository.tags.keys().map(String::as_str).collect();
            tags.sort_unstable();
            let body = serde_json::json!({ "name": name, "tags": tags }).to_string();
            content(Bytes::from(body), "application/json", None, head_only)
        }
        Route::Unknown => error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint in this registry", head_only),
    }
}

/// A 200 with `body` (or, for HEAD, only its length and digest headers).
fn content(body: Bytes, content_type: &'static str, digest: Option<&str>, head_only: bool) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(if head_only { Bytes::new() } else { body }));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    // Digests are ours (`sha256:` + hex) or a client's path segment, which hyper has already
    // checked to be valid URI characters, hence valid header characters.
    if let Some(digest) = digest {
        if let Ok(value) = HeaderValue::from_str(digest) {
            headers.insert(DIGEST_HEADER, value);
        }
        // Content is addressed by digest, so the digest is the perfect entity tag.
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
            headers.insert(header::ETAG, etag);
        }
    }
    response
}

/// The distribution API's error answer: `{"errors":[{"code","message","detail"}]}`.
fn error(status: StatusCode, code: &str, message: &str, head_only: bool) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] }).to_string();
    let length = body.len();
    let mut response = Response::new(Full::new(if head_only { Bytes::new() } else { Bytes::from(body) }));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_on_the_last_keyword() {
        assert_eq!(route("/v2/"), Route::ApiCheck);
        assert_eq!(route("/v2"), Route::ApiCheck);
        assert_eq!(route("/v2/tugboat/pause/manifests/1"), Route::Manifest { repository: "tugboat/pause", reference: "1" });
        assert_eq!(route("/v2/a/blobs/b/blobs/sha256:00"), Route::Blob { repository: "a/blobs/b", digest: "sha256:00" });
        assert_eq!(route("/v2/pause/manifests/"), Route::Unknown);
        assert_eq!(route("/v2/tugboat/pause/tags/list"), Route::Tags { repository: "tugboat/pause" });
        assert_eq!(route("/v2/_catalog"), Route::Unknown);
        assert_eq!(route("/healthz"), Route::Unknown);
    }
}
