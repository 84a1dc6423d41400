//! JSON patch (RFC 6902), applied with the `json-patch` crate; this module only turns its errors
//! into messages a user can act on.

use ::json_patch::jsonptr::Pointer;
use ::json_patch::{Patch, PatchErrorKind, PatchOperation};
use serde_json::Value;

use crate::PatchError;

/// Applies the JSON patch `patch` (the raw request body: a JSON array of operations) to
/// `original`. The operations apply in order and the patch is all-or-nothing: `original` is
/// never modified.
///
/// A body that is not a list of well-formed operations is [`PatchError::Invalid`]; an operation
/// that cannot apply to this document (a `test` that does not match, a path that does not
/// exist) is [`PatchError::Failed`].
pub fn json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let operations: Patch = serde_json::from_slice(patch)
        .map_err(|e| PatchError::Invalid(format!("malformed JSON patch: {e}")))?;
    let mut document = original.clone();
    // `patch_unsafe` skips the crate's undo log: on failure the partly patched copy is simply
    // dropped, so there is nothing to roll back.
    ::json_patch::patch_unsafe(&mut document, &operations).map_err(|e| {
        let operation = operations.get(e.operation);
        PatchError::Failed(describe(operation, &e.path, &e.kind))
    })?;
    Ok(document)
}

fn describe(operation: Option<&PatchOperation>, path: &Pointer, kind: &PatchErrorKind) -> String {
    let name = operation.map_or("patch", operation_name);
    let path = shown(path);
    match kind {
        PatchErrorKind::TestFailed => format!("test operation failed at {path}"),
        PatchErrorKind::InvalidPointer => {
            format!("{name} operation failed: path {path} does not exist")
        }
        PatchErrorKind::InvalidFromPointer => {
            let from = operation
                .and_then(from_path)
                .map_or_else(|| "\"from\"".to_owned(), shown);
            format!("{name} operation failed: path {from} does not exist")
        }
        PatchErrorKind::CannotMoveInsideItself => {
            let from = operation
                .and_then(from_path)
                .map_or_else(|| "\"from\"".to_owned(), shown);
            format!("move operation failed: cannot move {from} into its own child {path}")
        }
        // The kind is non-exhaustive: fall back to the crate's own wording for future kinds.
        other => format!("{name} operation failed at {path}: {other}"),
    }
}

fn operation_name(operation: &PatchOperation) -> &'static str {
    match operation {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

fn from_path(operation: &PatchOperation) -> Option<&Pointer> {
    match operation {
        PatchOperation::Move(op) => Some(&op.from),
        PatchOperation::Copy(op) => Some(&op.from),
        _ => None,
    }
}

/// The empty pointer names the whole document; printing it verbatim would leave a gap in the
/// message.
fn shown(path: &Pointer) -> String {
    if path.is_root() {
        "/ (the whole document)".to_owned()
    } else {
        path.to_string()
    }
}
