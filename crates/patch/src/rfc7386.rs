//! JSON merge patch (RFC 7386).

use serde_json::Value;

use crate::PatchError;

/// Applies the JSON merge patch `patch` to `original`: objects merge key by key, `null` removes
/// a key, and anything else (a list, a scalar, a non-object patch) replaces the target whole.
///
/// Every JSON value is a valid merge patch, so this never fails; it returns a `Result` to share
/// the shape of the other patch types.
pub fn merge_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut document = original.clone();
    ::json_patch::merge(&mut document, patch);
    Ok(document)
}
