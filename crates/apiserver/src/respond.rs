//! Rendering responses: objects, lists and Tables, in the form the client asked for.

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use tugboat_api::ResourceType;

use crate::cache::CachedObject;

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    bytes_response(code, Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
}

pub fn bytes_response(code: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What `Accept` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table(IncludeObject),
}

/// `includeObject` of a Table request: what each row's `object` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl Format {
    /// Picks the first acceptable media type: a `meta.k8s.io/v1` Table, or plain JSON.
    pub fn negotiate(headers: &HeaderMap, include_object: Option<&str>) -> Self {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        for media in accept.split(',') {
            let mut params = media.split(';').map(str::trim);
            let media_type = params.next().unwrap_or("");
            let params: Vec<&str> = params.collect();
            if params.contains(&"as=Table") {
                if media_type == "application/json" && params.contains(&"v=v1") && params.contains(&"g=meta.k8s.io") {
                    let include = match include_object {
                        Some("None") => IncludeObject::None,
                        Some("Object") => IncludeObject::Object,
                        _ => IncludeObject::Metadata,
                    };
                    return Format::Table(include);
                }
                continue;
            }
            if params.iter().any(|p| p.starts_with("as=")) {
                continue;
            }
            if matches!(media_type, "application/json" | "*/*" | "application/*" | "") {
                return Format::Json;
            }
        }
        Format::Json
    }
}

/// The `metav1.Table` of `objects`; `with_columns` false for watch events after the first.
pub fn table(resource: &ResourceType, objects: &[Value], include: IncludeObject, with_columns: bool, revision: Option<String>) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": (resource.table.row)(object, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    })
                }
                IncludeObject::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    let mut table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "rows": rows});
    if let Some(revision) = revision {
        table["metadata"]["resourceVersion"] = revision.into();
    }
    if with_columns {
        table["columnDefinitions"] = resource
            .table
            .columns
            .iter()
            .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect();
    }
    table
}

/// One object in the requested format.
pub fn object(code: StatusCode, resource: &ResourceType, value: &Value, format: Format) -> Response {
    match format {
        Format::Json => json_response(code, value),
        Format::Table(include) => json_response(code, &table(resource, std::slice::from_ref(value), include, true, None)),
    }
}

/// An object given as its served JSON, which a JSON answer carries as it is.
pub fn object_json(code: StatusCode, resource: &ResourceType, json: Bytes, format: Format) -> Response {
    match format {
        Format::Json => bytes_response(code, json),
        Format::Table(_) => object(code, resource, &serde_json::from_slice(&json).unwrap_or(Value::Null), format),
    }
}

/// A list of cached objects, concatenating their stored JSON without re-encoding it.
pub fn list(
    resource: &ResourceType,
    objects: &[Arc<CachedObject>],
    revision: i64,
    continue_token: Option<String>,
    remaining: Option<usize>,
    format: Format,
) -> Response {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = token.into();
        if let Some(remaining) = remaining {
            metadata["remainingItemCount"] = remaining.into();
        }
    }
    if let Format::Table(include) = format {
        let values: Vec<Value> = objects.iter().map(|o| o.value()).collect();
        let mut table = table(resource, &values, include, true, Some(revision.to_string()));
        table["metadata"] = metadata;
        return json_response(StatusCode::OK, &table);
    }
    let head = json!({"kind": resource.list_kind, "apiVersion": resource.api_version(), "metadata": metadata});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let mut body = BytesMut::with_capacity(head.len() + 16 + objects.iter().map(|o| o.json.len() + 1).sum::<usize>());
    // `{"kind":...,"metadata":{...}}` becomes `{"kind":...,"metadata":{...},"items":[...]}`.
    body.put_slice(&head[..head.len() - 1]);
    body.put_slice(b",\"items\":[");
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(&object.json);
    }
    body.put_slice(b"]}");
    bytes_response(StatusCode::OK, body.freeze())
}

/// `{"kind":"Status","status":"Success",...}` for deletions that removed the object.
pub fn success_status(resource: &ResourceType, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": uid},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        h
    }

    #[test]
    fn negotiates_tables_like_kubectl_asks() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(Format::negotiate(&headers(kubectl), None), Format::Table(IncludeObject::Metadata));
        assert_eq!(Format::negotiate(&headers(kubectl), Some("Object")), Format::Table(IncludeObject::Object));
        assert_eq!(Format::negotiate(&headers("application/json"), None), Format::Json);
        assert_eq!(Format::negotiate(&headers("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"), None), Format::Json);
        assert_eq!(Format::negotiate(&HeaderMap::new(), None), Format::Json);
    }
}
