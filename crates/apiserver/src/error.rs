//! API errors, rendered as `metav1.Status` with the HTTP code and reason Kubernetes uses.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};
use tugboat_api::validation::FieldError;
use tugboat_api::ResourceType;
use tugboat_store::StoreError;

/// An error answer of the API. Every handler failure becomes one of these; none is a panic.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The object an error is about, for the message and `details`.
pub struct Target<'a> {
    pub resource: &'a ResourceType,
    pub name: &'a str,
}

impl Target<'_> {
    fn details(&self) -> Value {
        json!({"name": self.name, "group": self.resource.group, "kind": self.resource.plural})
    }
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(target: &Target) -> Self {
        Self {
            details: Some(target.details()),
            ..Self::new(StatusCode::NOT_FOUND, "NotFound", format!("{} {:?} not found", target.resource.group_resource(), target.name))
        }
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        Self {
            details: Some(json!({"name": namespace, "kind": "namespaces"})),
            ..Self::new(StatusCode::NOT_FOUND, "NotFound", format!("namespaces {namespace:?} not found"))
        }
    }

    /// A dependency (a node agent) cannot be reached: 503.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
    }

    pub fn path_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
    }

    pub fn already_exists(target: &Target) -> Self {
        Self {
            details: Some(target.details()),
            ..Self::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} {:?} already exists", target.resource.group_resource(), target.name),
            )
        }
    }

    pub fn conflict(target: &Target, why: &str) -> Self {
        Self {
            details: Some(target.details()),
            ..Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Operation cannot be fulfilled on {} {:?}: {why}", target.resource.group_resource(), target.name),
            )
        }
    }

    pub fn stale(target: &Target) -> Self {
        Self::conflict(target, "the object has been modified; please apply your changes to the latest version and try again")
    }

    pub fn invalid(target: &Target, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> =
            errors.iter().map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field})).collect();
        let summary = match errors {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!(
                "[{}]",
                many.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join(", ")
            ),
        };
        let kind_name = if target.resource.group.is_empty() {
            target.resource.kind.to_string()
        } else {
            format!("{}.{}", target.resource.kind, target.resource.group)
        };
        Self {
            details: Some(json!({"name": target.name, "group": target.resource.group, "kind": target.resource.kind, "causes": causes})),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("{kind_name} {:?} is invalid: {summary}", target.name))
        }
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(method: &http::Method) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("the server does not allow the method {method} on the requested resource"))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"))
    }

    pub fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", message)
    }

    /// Maps a store failure that the handler did not expect as part of its own logic.
    pub fn from_store(error: StoreError) -> Self {
        match error {
            StoreError::Compacted { .. } => Self::gone(format!("too old resource version: {error}")),
            StoreError::FutureRevision { .. } => Self::timeout(format!("Too large resource version: {error}")),
            other => Self::internal(other.to_string()),
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::respond::json_response(self.code, &self.status())
    }
}
