//! HTTP verbs on resources: one generic implementation for every registered kind.

use tugboat_api::meta::Pointer;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tugboat_api::selector::{FieldSelector, LabelSelector};
use tugboat_api::{meta, schema, ResourceType};
use tugboat_store::ListOptions;

use crate::binding::{Binding, Refusal};
use crate::cache::{CachedObject, ResourceCache};
use crate::error::{ApiError, ApiResult, Target};
use crate::objects::{DeleteOptions, Deleted, Part, WriteOptions};
use crate::request::{Query, ResourcePath};
use crate::respond::{self, Format};
use crate::{keys, watch, ApiServer};

/// Bodies above this are refused, as kube-apiserver does.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Label and field selectors of a list or watch.
#[derive(Clone)]
pub struct Filter {
    /// The resource's cache, which decodes what selectors read of its objects.
    cache: Arc<ResourceCache>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn parse(cache: &Arc<ResourceCache>, query: &Query) -> ApiResult<Self> {
        let resource = cache.resource;
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {}", e.0)))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), |field| {
            field == "metadata.name" || field == "metadata.namespace" || resource.field_selectors.contains(&field)
        })
        .map_err(|e| ApiError::bad_request(e.0))?;
        Ok(Self { cache: cache.clone(), labels, fields })
    }

    pub fn matches(&self, object: &CachedObject) -> bool {
        // Without selectors nothing is decoded: the cache decodes what selectors read lazily.
        (self.labels.is_empty() || self.labels.matches(Some(self.cache.labels(object))))
            && (self.fields.is_empty() || self.fields.matches(|field| self.cache.field(object, field)))
    }
}

/// The continue token of a paginated list: the revision of the snapshot and the last key served.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> ApiResult<Self> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: it was not produced by this server"))
    }
}

impl ApiServer {
    /// Serves one request addressed to a resource, a collection or a subresource.
    pub async fn handle_resource(&self, method: Method, path: ResourcePath, query: Query, headers: HeaderMap, body: Bytes) -> Response {
        let result = self.dispatch(method, path, query, &headers, body).await;
        result.unwrap_or_else(IntoResponse::into_response)
    }

    async fn dispatch(&self, method: Method, path: ResourcePath, query: Query, headers: &HeaderMap, body: Bytes) -> ApiResult<Response> {
        let resource = path.resource;
        let format = Format::negotiate(headers, query.get("includeObject"));
        let namespace = path.namespace.clone().unwrap_or_default();
        match (&method, path.name.as_deref(), path.subresource.as_deref()) {
            (&Method::GET, None, None) if query.flag("watch") => watch::serve(self, &path, &query, format).await,
            (&Method::GET, None, None) => self.list(&path, &query, format).await,
            (&Method::POST, None, None) => {
                let mut warnings = Vec::new();
                let object = self.objects.admit_body(resource, path.namespace.as_deref(), None, decode_body(headers, &body)?, query.field_validation()?, &mut warnings)?;
                let created = self.objects.create(resource, object, write_options(&query)?).await?;
                Ok(with_warnings(respond::object_json(StatusCode::CREATED, resource, created.json(), format), &warnings))
            }
            (&Method::DELETE, None, None) => self.delete_collection(&path, &query, headers, &body).await,
            (&Method::GET, Some(name), None | Some("status")) => {
                let object = self.objects.get_cached(resource, &namespace, name).await?;
                Ok(respond::object_json(StatusCode::OK, resource, object.json.clone(), format))
            }
            (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
                let part = if sub.is_some() { self.require_status(resource)? } else { Part::Main };
                let mut warnings = Vec::new();
                let incoming = self.objects.admit_body(resource, path.namespace.as_deref(), Some(name), decode_body(headers, &body)?, query.field_validation()?, &mut warnings)?;
                let pinned = !meta::str_at(&incoming, "/metadata/resourceVersion").is_empty();
                let updated = self
                    .objects
                    .update(resource, &namespace, name, part, pinned, write_options(&query)?, |_| Ok(incoming.clone()))
                    .await?;
                Ok(with_warnings(respond::object_json(StatusCode::OK, resource, updated.json(), format), &warnings))
            }
            (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
                let part = if sub.is_some() { self.require_status(resource)? } else { Part::Main };
                let patch = Patch::parse(headers, &body)?;
                let field_validation = query.field_validation()?;
                let warnings = std::sync::Mutex::new(Vec::new());
                let updated = self
                    .objects
                    .update(resource, &namespace, name, part, patch.pins_resource_version(), write_options(&query)?, |current| {
                        let view = if part == Part::Status { patch.status_view(current) } else { None };
                        let patched = patch.apply(resource, view.as_ref().unwrap_or(current))?;
                        let mut found = Vec::new();
                        let repatch = || patch.apply(resource, current);
                        let admitted = self.objects.admit_patched(resource, path.namespace.as_deref(), name, current, patched, repatch, field_validation, &mut found)?;
                        *warnings.lock().unwrap_or_else(|e| e.into_inner()) = found;
                        Ok(admitted)
                    })
                    .await?;
                let warnings = warnings.into_inner().unwrap_or_else(|e| e.into_inner());
                Ok(with_warnings(respond::object_json(StatusCode::OK, resource, updated.json(), format), &warnings))
            }
            (&Method::DELETE, Some(name), None) => {
                let options = delete_options(headers, &query, &body)?;
                match self.objects.delete(resource, &namespace, name, &options).await? {
                    Deleted::Gone(object) => {
                        let uid = meta::str_at(&object, "/metadata/uid");
                        Ok(respond::json_response(StatusCode::OK, &respond::success_status(resource, name, uid)))
                    }
                    Deleted::Pending(object) => Ok(respond::object(StatusCode::OK, resource, &object, Format::Json)),
                }
            }
            (_, Some(name), Some("scale")) if resource.subresources.scale => self.scale(&method, resource, &namespace, name, &query, headers, &body).await,
            (&Method::POST, Some(name), Some("binding")) if resource.group.is_empty() && resource.kind == "Pod" => {
                self.bind(resource, &namespace, name, headers, &body, &query).await
            }
            (&Method::PUT, Some(name), Some("finalize")) if resource.group.is_empty() && resource.kind == "Namespace" => {
                self.finalize(resource, name, headers, &body, &query, format).await
            }
            (_, Some(_), Some(sub)) if !matches!(sub, "status" | "scale" | "binding" | "finalize") => Err(ApiError::path_not_found()),
            _ => Err(ApiError::method_not_allowed(&method)),
        }
    }

    fn require_status(&self, resource: &ResourceType) -> ApiResult<Part> {
        if resource.subresources.status {
            Ok(Part::Status)
        } else {
            Err(ApiError::path_not_found())
        }
    }

    async fn list(&self, path: &ResourcePath, query: &Query, format: Format) -> ApiResult<Response> {
        let resource = path.resource;
        let filter = Filter::parse(self.objects.cache.resource(resource), query)?;
        let limit = query.integer("limit")?.filter(|l| *l > 0).map(|l| l as usize);
        let prefix = keys::list_prefix(resource, path.namespace.as_deref());
        if let Some(token) = query.get("continue") {
            return self.list_from_store(resource, &filter, &prefix, ContinueToken::decode(token)?, limit, format).await;
        }
        let revision_param = query.get("resourceVersion");
        match (revision_param, query.get("resourceVersionMatch")) {
            (Some(rv), Some("Exact")) => {
                let rv = parse_revision(rv)?;
                let start = ContinueToken { rv, start: String::new() };
                return self.list_from_store(resource, &filter, &prefix, start, limit, format).await;
            }
            (None, Some(m)) => {
                return Err(ApiError::bad_request(format!("resourceVersionMatch: Forbidden: resourceVersionMatch {m:?} is forbidden unless resourceVersion is provided")));
            }
            (Some("0"), _) => {}
            (Some(rv), _) => self.objects.cache.wait_for(parse_revision(rv)?, Duration::from_secs(3)).await?,
            (None, _) => {
                self.objects.cache.sync().await?;
            }
        }
        let cache = self.objects.cache.resource(resource);
        let narrowed = match filter.fields.required_value("metadata.name") {
            // One object by name (kubectl get -w NAME, wait, delete): a point range in the cache.
            Some(name) if !resource.namespaced || path.namespace.is_some() => format!("{prefix}{name}"),
            _ => prefix.clone(),
        };
        let snapshot = cache.snapshot(&narrowed, self.objects.cache.applied());
        let mut matching = snapshot.objects.into_iter().filter(|o| o.key.starts_with(&prefix) && filter.matches(o));
        let items: Vec<Arc<CachedObject>> = match limit {
            Some(limit) => matching.by_ref().take(limit).collect(),
            None => matching.by_ref().collect(),
        };
        let remaining = matching.count();
        let token = (remaining > 0)
            .then(|| items.last().map(|last| ContinueToken { rv: snapshot.revision, start: last.key.to_string() }.encode()))
            .flatten();
        Ok(respond::list(resource, &items, snapshot.revision, token, Some(remaining), format))
    }

    /// Pages of a list at a fixed past revision come from the store, which keeps history.
    async fn list_from_store(&self, resource: &'static ResourceType, filter: &Filter, prefix: &str, from: ContinueToken, limit: Option<usize>, format: Format) -> ApiResult<Response> {
        let mut items = Vec::new();
        let mut start_after = (!from.start.is_empty()).then_some(from.start);
        let mut more = false;
        let page_limit = limit.map(|l| l.clamp(1, 1000));
        'pages: loop {
            let page = self
                .objects
                .store
                .list(prefix, ListOptions { revision: Some(from.rv), start_after: start_after.clone(), limit: page_limit })
                .await
                .map_err(|e| match e {
                    tugboat_store::StoreError::Compacted { .. } => ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."),
                    other => ApiError::from_store(other),
                })?;
            for (i, kv) in page.items.iter().enumerate() {
                start_after = Some(kv.key.clone());
                let object = self.objects.cache.resource(resource).decode(&kv.key, &kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::internal(format!("stored object {} is not valid JSON: {e}", kv.key)))?;
                if filter.matches(&object) {
                    items.push(Arc::new(object));
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    more = i + 1 < page.items.len() || page.more;
                    break 'pages;
                }
            }
            if !page.more {
                break;
            }
        }
        let token = more.then(|| items.last().map(|last| ContinueToken { rv: from.rv, start: last.key.to_string() }.encode())).flatten();
        Ok(respond::list(resource, &items, from.rv, token, None, format))
    }

    async fn delete_collection(&self, path: &ResourcePath, query: &Query, headers: &HeaderMap, body: &Bytes) -> ApiResult<Response> {
        let resource = path.resource;
        let filter = Filter::parse(self.objects.cache.resource(resource), query)?;
        let options = delete_options(headers, query, body)?;
        let prefix = keys::list_prefix(resource, path.namespace.as_deref());
        self.objects.cache.sync().await?;
        let snapshot = self.objects.cache.resource(resource).snapshot(&prefix, self.objects.cache.applied());
        let mut deleted = Vec::new();
        for object in snapshot.objects.iter().filter(|o| filter.matches(o)) {
            match self.objects.delete(resource, object.namespace(), object.name(), &options).await {
                Ok(Deleted::Gone(value) | Deleted::Pending(value)) => deleted.push(value),
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(e),
            }
        }
        let list = json!({
            "kind": resource.list_kind, "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": self.objects.cache.applied_revision().to_string()},
            "items": deleted,
        });
        Ok(respond::json_response(StatusCode::OK, &list))
    }

    #[allow(clippy::too_many_arguments)]
    async fn scale(&self, method: &Method, resource: &'static ResourceType, namespace: &str, name: &str, query: &Query, headers: &HeaderMap, body: &Bytes) -> ApiResult<Response> {
        if *method == Method::GET {
            let (object, _) = self.objects.get(resource, namespace, name).await?;
            return Ok(respond::json_response(StatusCode::OK, &scale_of(resource, &object)));
        }
        let (patch, put_body) = match *method {
            Method::PUT => (None, Some(decode_body(headers, body)?)),
            Method::PATCH => (Some(Patch::parse(headers, body)?), None),
            _ => return Err(ApiError::method_not_allowed(method)),
        };
        let pinned = put_body.as_ref().is_some_and(|b| !meta::str_at(b, "/metadata/resourceVersion").is_empty())
            || patch.as_ref().is_some_and(Patch::pins_resource_version);
        let updated = self
            .objects
            .update(resource, namespace, name, Part::Main, pinned, write_options(query)?, |current| {
                let scale = scale_of(resource, current);
                let desired = match (&put_body, &patch) {
                    (Some(body), _) => body.clone(),
                    (None, Some(patch)) => patch.apply_untyped(&scale)?,
                    (None, None) => scale.clone(),
                };
                let replicas = desired
                    .at("/spec/replicas")
                    .and_then(Value::as_i64)
                    .filter(|r| *r >= 0 && *r <= i64::from(i32::MAX))
                    .ok_or_else(|| {
                        ApiError::invalid(&Target { resource, name }, &[tugboat_api::validation::FieldError {
                            reason: "FieldValueInvalid",
                            field: "spec.replicas".into(),
                            message: "Invalid value: must be a non-negative 32-bit integer".into(),
                        }])
                    })?;
                let mut next = current.clone();
                meta::object_field_mut(&mut next, "spec").insert("replicas".into(), replicas.into());
                let rv = meta::str_at(&desired, "/metadata/resourceVersion");
                if !rv.is_empty() {
                    meta::metadata_mut(&mut next).insert("resourceVersion".into(), rv.into());
                }
                Ok(next)
            })
            .await?;
        Ok(respond::json_response(StatusCode::OK, &scale_of(resource, &updated.object())))
    }

    /// `namespaces/{name}/finalize`: sets the namespace's `spec.finalizers` and nothing else, as
    /// the namespace controller does once it has emptied a terminating namespace (taking its
    /// `kubernetes` finalizer off lets the namespace go).
    async fn finalize(&self, namespaces: &'static ResourceType, name: &str, headers: &HeaderMap, body: &Bytes, query: &Query, format: Format) -> ApiResult<Response> {
        let incoming = decode_body(headers, body)?;
        let finalizers = incoming.at("/spec/finalizers").cloned().unwrap_or_else(|| json!([]));
        if !finalizers.as_array().is_some_and(|f| f.iter().all(Value::is_string)) {
            return Err(ApiError::bad_request("spec.finalizers must be a list of strings"));
        }
        let resource_version = meta::str_at(&incoming, "/metadata/resourceVersion");
        let updated = self
            .objects
            .update(namespaces, "", name, Part::Finalizers, !resource_version.is_empty(), write_options(query)?, |_| {
                Ok(json!({"metadata": {"resourceVersion": resource_version}, "spec": {"finalizers": finalizers}}))
            })
            .await?;
        Ok(respond::object_json(StatusCode::OK, namespaces, updated.json(), format))
    }

    async fn bind(&self, pods: &'static ResourceType, namespace: &str, name: &str, headers: &HeaderMap, body: &Bytes, query: &Query) -> ApiResult<Response> {
        let binding = decode_body(headers, body)?;
        let node = meta::str_at(&binding, "/target/name").to_owned();
        if node.is_empty() {
            return Err(ApiError::invalid(&Target { resource: pods, name }, &[tugboat_api::validation::FieldError {
                reason: "FieldValueRequired",
                field: "target.name".into(),
                message: "Required value".into(),
            }]));
        }
        let now = crate::objects::now_rfc3339();
        let binding = Binding { node: &node, expected_uid: meta::str_at(&binding, "/metadata/uid"), now: &now };
        // One write sets the node and PodScheduled=True, as Kubernetes' binding storage does:
        // every pod is bound once, so a second write here would be a fifth of a burst's writes.
        self.objects
            .update_in_storage(pods, namespace, name, write_options(query)?, |pod| {
                let target = Target { resource: pods, name };
                crate::binding::bind(pod, &binding).map_err(|refusal| match refusal {
                    Some(Refusal::UidMismatch) => ApiError::conflict(&target, "the UID in the binding does not match the pod"),
                    Some(Refusal::AlreadyAssigned(node)) => ApiError::conflict(&target, &format!("pod {name} is already assigned to node {node:?}")),
                    Some(Refusal::BeingDeleted) => ApiError::conflict(&target, &format!("pod {name} is being deleted, cannot be assigned to a host")),
                    None => ApiError::internal(format!("the stored pod {name} is not a JSON object; recreate it")),
                })
            })
            .await?;
        Ok(respond::json_response(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
    }
}

fn parse_revision(text: &str) -> ApiResult<i64> {
    text.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| ApiError::bad_request(format!("resourceVersion: Invalid value: {text:?}: must be a non-negative integer")))
}

/// The autoscaling/v1 Scale view of an object with `.spec.replicas`.
fn scale_of(resource: &ResourceType, object: &Value) -> Value {
    let selector = object.at("/spec/selector").map(|s| {
        if resource.kind == "ReplicationController" {
            // An RC's selector is a plain label map.
            s.as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
                .unwrap_or_default()
        } else {
            LabelSelector::from_object(s).ok().flatten().map(|s| s.to_string()).unwrap_or_default()
        }
    });
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut scale_meta = json!({});
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = metadata.get(field) {
            scale_meta[field] = v.clone();
        }
    }
    let mut status = json!({"replicas": object.at("/status/replicas").and_then(Value::as_i64).unwrap_or(0)});
    if let Some(selector) = selector {
        status["selector"] = selector.into();
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
        "spec": {"replicas": object.at("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

fn write_options(query: &Query) -> ApiResult<WriteOptions> {
    Ok(WriteOptions { dry_run: query.dry_run()? })
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json").split(';').next().unwrap_or("").trim()
}

/// A JSON or YAML request body.
pub fn decode_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    match content_type(headers) {
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}"))),
        "application/json" | "" | "*/*" => tugboat_api::json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        // kubectl's typed clients (create namespace, create configmap, expose, ...) send these.
        "application/vnd.kubernetes.protobuf" => tugboat_api::protobuf::decode(body).map_err(|e| ApiError::bad_request(e.to_string())),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// DeleteOptions from the body (as kubectl sends them) or the query.
fn delete_options(headers: &HeaderMap, query: &Query, body: &Bytes) -> ApiResult<DeleteOptions> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { decode_body(headers, body)? };
    let policy = body.get("propagationPolicy").and_then(Value::as_str).map(str::to_owned).or_else(|| query.get("propagationPolicy").map(str::to_owned));
    if let Some(p) = &policy {
        if !matches!(p.as_str(), "Foreground" | "Background" | "Orphan") {
            return Err(ApiError::bad_request(format!("propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\"")));
        }
    }
    let orphan = body.get("orphanDependents").and_then(Value::as_bool).or_else(|| query.get("orphanDependents").map(|v| v == "true"));
    let dry_run = match body.get("dryRun").and_then(Value::as_array) {
        Some(values) => values.iter().any(|v| v == "All"),
        None => query.dry_run()?,
    };
    Ok(DeleteOptions {
        grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64).or(query.integer("gracePeriodSeconds")?),
        propagation_policy: policy.or_else(|| orphan.filter(|o| *o).map(|_| "Orphan".to_owned())),
        precondition_uid: body.at("/preconditions/uid").and_then(Value::as_str).map(str::to_owned),
        precondition_revision: body.at("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_owned),
        dry_run,
    })
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", value);
        }
    }
    response
}

/// A PATCH body and its type.
enum Patch {
    Json(Bytes),
    Merge(Value),
    Strategic(Value),
}

impl Patch {
    fn parse(headers: &HeaderMap, body: &Bytes) -> ApiResult<Self> {
        let parse = |body: &Bytes| tugboat_api::json::from_slice::<Value>(body).map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")));
        match content_type(headers) {
            "application/json-patch+json" => Ok(Patch::Json(body.clone())),
            "application/merge-patch+json" => Ok(Patch::Merge(parse(body)?)),
            "application/strategic-merge-patch+json" => Ok(Patch::Strategic(parse(body)?)),
            "application/apply-patch+yaml" => Err(ApiError::unsupported_media_type("application/apply-patch+yaml (server-side apply is not supported yet; use client-side kubectl apply)")),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    /// Whether the patch itself names a resourceVersion (then a lost race is a 409).
    fn pins_resource_version(&self) -> bool {
        match self {
            Patch::Json(bytes) => tugboat_api::json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|ops| ops.as_array().cloned())
                .is_some_and(|ops| ops.iter().any(|op| op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion"))),
            Patch::Merge(p) | Patch::Strategic(p) => p.at("/metadata/resourceVersion").is_some_and(|v| !v.is_null()),
        }
    }

    /// What a status write needs patched of `current`, for a merge patch that names only plain
    /// fields: those fields, the status, and apiVersion and kind (admission reads them). A status
    /// write keeps nothing else of the patched object, so the rest of a large object is neither
    /// copied nor compared. None: patch the whole object.
    fn status_view(&self, current: &Value) -> Option<Value> {
        let (Patch::Merge(Value::Object(patch)) | Patch::Strategic(Value::Object(patch))) = self else { return None };
        let Value::Object(current) = current else { return None };
        // A directive (`$patch`, `$retainKeys` ...) may act on the object as a whole.
        if patch.keys().any(|field| field.starts_with('$')) {
            return None;
        }
        let fields = patch.keys().map(String::as_str).chain(["status", "apiVersion", "kind"].into_iter().filter(|field| !patch.contains_key(*field)));
        Some(Value::Object(fields.filter_map(|field| current.get(field).map(|value| (field.to_owned(), value.clone()))).collect()))
    }

    fn apply(&self, resource: &ResourceType, current: &Value) -> ApiResult<Value> {
        let result = match self {
            Patch::Strategic(patch) => match schema::patch_meta(resource) {
                Some(meta) => tugboat_patch::strategic_merge_patch(current, patch, &meta),
                None => tugboat_patch::strategic_merge_patch(current, patch, &tugboat_patch::NoMeta),
            },
            _ => return self.apply_untyped(current),
        };
        result.map_err(patch_error)
    }

    /// Applies the patch with no schema knowledge (for views such as Scale).
    fn apply_untyped(&self, current: &Value) -> ApiResult<Value> {
        match self {
            Patch::Json(bytes) => tugboat_patch::json_patch(current, bytes),
            Patch::Merge(patch) => tugboat_patch::merge_patch(current, patch),
            Patch::Strategic(patch) => tugboat_patch::strategic_merge_patch(current, patch, &tugboat_patch::NoMeta),
        }
        .map_err(patch_error)
    }
}

fn patch_error(error: tugboat_patch::PatchError) -> ApiError {
    match error {
        tugboat_patch::PatchError::Invalid(_) => ApiError::bad_request(error.to_string()),
        tugboat_patch::PatchError::Failed(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", error.to_string()),
    }
}
