//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines, served from the watch cache,
//! or from a store watch when a client resumes from a revision older than the cache's log.

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tugboat_api::ResourceType;
use tugboat_store::Revision;

use crate::cache::{Catchup, Change, ChangeKind, CachedObject};
use crate::error::{ApiError, ApiResult};
use crate::handlers::Filter;
use crate::request::{Query, ResourcePath};
use crate::respond::{self, Format};
use crate::{keys, ApiServer};

/// Without `timeoutSeconds`, a watch lasts this long (kube-apiserver: 30 to 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A chunk of watch events is sent once it reaches this size (HTTP/2's default frame size).
const CHUNK_BYTES: usize = 16 * 1024;

/// Encodes watch events for one client, in its format, with its filter.
struct Encoder {
    resource: &'static ResourceType,
    filter: Filter,
    prefix: String,
    format: Format,
    sent_columns: bool,
}

impl Encoder {
    /// The event a change is for this watcher, if any: an object moving into or out of the
    /// selection is ADDED or DELETED, as Kubernetes reports it.
    fn change(&mut self, change: &Change) -> Option<Bytes> {
        let object = &change.object;
        if !object.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.filter.matches(object);
        let before = change.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match (change.kind, before, now) {
            (ChangeKind::Deleted, _, true) => "DELETED",
            (ChangeKind::Added, _, true) => "ADDED",
            (ChangeKind::Modified, true, true) => "MODIFIED",
            (ChangeKind::Modified, false, true) => "ADDED",
            (ChangeKind::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some(self.object(kind, object))
    }

    fn object(&mut self, kind: &str, object: &CachedObject) -> Bytes {
        match self.format {
            Format::Json => frame(kind, &object.json),
            Format::Table(include) => {
                let table = respond::table(self.resource, &[object.value()], include, !self.sent_columns, Some(object.revision.to_string()));
                self.sent_columns = true;
                frame(kind, &serde_json::to_vec(&table).unwrap_or_default())
            }
        }
    }

    fn bookmark(&self, revision: Revision) -> Bytes {
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
        });
        frame("BOOKMARK", &serde_json::to_vec(&object).unwrap_or_default())
    }
}

fn frame(kind: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object);
    out.put_slice(b"}\n");
    out.freeze()
}

/// Watch events waiting to leave together, joined only when they leave: one event leaves as
/// framed, several are copied once into a buffer of their total size (growing a buffer event by
/// event copied each pod several times over).
#[derive(Default)]
struct Chunk {
    events: Vec<Bytes>,
    len: usize,
}

impl Chunk {
    fn push(&mut self, event: Bytes) {
        self.len += event.len();
        self.events.push(event);
    }

    /// The events so far, as one buffer; the chunk is empty afterwards.
    fn take(&mut self) -> Bytes {
        let len = std::mem::take(&mut self.len);
        if self.events.len() == 1 {
            return self.events.pop().unwrap_or_default();
        }
        let mut joined = BytesMut::with_capacity(len);
        self.events.drain(..).for_each(|event| joined.put_slice(&event));
        joined.freeze()
    }
}

fn error_frame(error: &ApiError) -> Bytes {
    frame("ERROR", &serde_json::to_vec(&error.status()).unwrap_or_default())
}

/// Serves `?watch=true` on a collection.
pub async fn serve(server: &ApiServer, path: &ResourcePath, query: &Query, format: Format) -> ApiResult<Response> {
    let resource = path.resource;
    let filter = Filter::parse(server.objects.cache.resource(resource), query)?;
    let prefix = keys::list_prefix(resource, path.namespace.as_deref());
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query.integer("timeoutSeconds")?.filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64)).unwrap_or(DEFAULT_TIMEOUT);
    let cache = server.objects.cache.clone();
    let mut encoder = Encoder { resource, filter, prefix: prefix.clone(), format, sent_columns: false };
    let (sender, receiver) = mpsc::channel::<Bytes>(64);

    let start = match query.get("resourceVersion") {
        None | Some("0") => {
            if query.get("resourceVersion").is_none() {
                cache.sync().await?;
            }
            // "Start at most recent", with the current state first as ADDED events.
            let snapshot = cache.resource(resource).snapshot(&prefix, cache.applied());
            let mut initial = Vec::new();
            for object in &snapshot.objects {
                if encoder.filter.matches(object) {
                    initial.push(encoder.object("ADDED", object));
                }
            }
            Start::Cache { after: snapshot.revision, initial }
        }
        Some(text) => {
            let after: Revision = text.parse().ok().filter(|r| *r >= 0).ok_or_else(|| ApiError::bad_request(format!("resourceVersion: Invalid value: {text:?}")))?;
            cache.wait_for(after, Duration::from_secs(3)).await?;
            if after >= cache.resource(resource).floor() {
                Start::Cache { after, initial: Vec::new() }
            } else {
                // Older than the cache's log: the store still has it unless compacted (then 410).
                Start::Store(cache.watch_store(resource, prefix.clone(), after).await?, after)
            }
        }
    };

    let deadline = tokio::time::Instant::now() + timeout;
    let bookmark_interval = server.config.bookmark_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + bookmark_interval, bookmark_interval);
        let send = |bytes: Bytes| {
            let sender = sender.clone();
            async move { sender.send(bytes).await.is_ok() }
        };
        match start {
            Start::Cache { mut after, initial } => {
                for event in initial {
                    if !send(event).await {
                        return;
                    }
                }
                let resource_cache = cache.resource(resource).clone();
                let mut changed = resource_cache.subscribe();
                loop {
                    match resource_cache.changes_after(after) {
                        Catchup::Changes(changes) => {
                            // Events that are ready together leave in one chunk: one HTTP/2
                            // frame, one TLS record and one write instead of one per event.
                            let mut chunk = Chunk::default();
                            for change in changes {
                                after = change.revision();
                                if let Some(event) = encoder.change(&change) {
                                    chunk.push(event);
                                    if chunk.len >= CHUNK_BYTES && !send(chunk.take()).await {
                                        return;
                                    }
                                }
                            }
                            if chunk.len > 0 && !send(chunk.take()).await {
                                return;
                            }
                        }
                        Catchup::TooOld => {
                            let _ = send(error_frame(&ApiError::gone(format!("too old resource version: {after}")))).await;
                            return;
                        }
                    }
                    tokio::select! {
                        changed_result = changed.changed() => if changed_result.is_err() { return },
                        _ = tick.tick(), if bookmarks => {
                            // Everything up to `applied` is in the log once `applied` is read.
                            let applied = cache.applied_revision();
                            if let Catchup::Changes(changes) = resource_cache.changes_after(after) {
                                if changes.is_empty() {
                                    after = after.max(applied);
                                    if !send(encoder.bookmark(after)).await { return; }
                                }
                            }
                        }
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = sender.closed() => return,
                    }
                }
            }
            Start::Store(mut events, mut after) => loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(change)) => {
                            after = change.revision();
                            if let Some(event) = encoder.change(&change) {
                                if !send(event).await { return; }
                            }
                        }
                        Some(Err(error)) => {
                            let _ = send(error_frame(&error)).await;
                            return;
                        }
                        None => return,
                    },
                    _ = tick.tick(), if bookmarks => if !send(encoder.bookmark(after)).await { return },
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = sender.closed() => return,
                }
            },
        }
    });

    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver).map(Ok::<_, Infallible>);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(response)
}

enum Start {
    Cache { after: Revision, initial: Vec<Bytes> },
    Store(futures::stream::BoxStream<'static, ApiResult<Arc<Change>>>, Revision),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_chunk_joins_its_events_in_order_and_starts_again_empty() {
        let mut chunk = Chunk::default();
        chunk.push(Bytes::from_static(b"one\n"));
        assert_eq!(chunk.take(), Bytes::from_static(b"one\n"));
        chunk.push(Bytes::from_static(b"two\n"));
        chunk.push(Bytes::from_static(b"three\n"));
        assert_eq!(chunk.len, 10);
        assert_eq!(chunk.take(), Bytes::from_static(b"two\nthree\n"));
        assert_eq!((chunk.len, chunk.events.len()), (0, 0));
    }

    #[test]
    fn frames_are_one_json_line() {
        let line = frame("ADDED", br#"{"a":1}"#);
        let parsed: Value = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed, json!({"type": "ADDED", "object": {"a": 1}}));
        assert_eq!(line.last(), Some(&b'\n'));
    }
}
