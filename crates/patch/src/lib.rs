//! Kubernetes patch semantics over `serde_json::Value`.
//!
//! - [`json_patch()`]: RFC 6902 (`application/json-patch+json`).
//! - [`merge_patch`]: RFC 7386 (`application/merge-patch+json`).
//! - [`strategic_merge_patch`]: Kubernetes strategic merge patch
//!   (`application/strategic-merge-patch+json`), driven by per-field metadata supplied through
//!   the [`PatchMeta`] trait (the API crate derives it from the built-in kinds' schemas).
//!
//! This crate knows nothing about particular kinds: every kind-specific fact comes in through
//! [`PatchMeta`].

mod rfc6902;
mod rfc7386;
mod strategic;

pub use rfc6902::json_patch;
pub use rfc7386::merge_patch;
pub use strategic::strategic_merge_patch;

/// How a field is combined with the same field in a patch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldStrategy {
    /// `patchStrategy: merge`. For a list of objects, items are matched by `merge_key`;
    /// for a list of primitives (no merge key), the list is merged as a set.
    /// Without it, a list in the patch replaces the whole list.
    pub merge: bool,
    /// `patchMergeKey`: the field that identifies an item in a merged list of objects.
    pub merge_key: Option<String>,
    /// `patchStrategy: retainKeys`: the `$retainKeys` directive is honoured for this object.
    pub retain_keys: bool,
}

/// Schema metadata for strategic merge patch, one node per object type.
pub trait PatchMeta: Sized {
    /// The strategy of field `name` of objects described by `self`, and the metadata of that
    /// field's value (for a list: of its items; for a map: of its values). `None` for the
    /// metadata means "unknown": everything below is merged like a JSON merge patch with
    /// lists replaced.
    fn field(&self, name: &str) -> (FieldStrategy, Option<Self>);
}

/// Metadata that knows nothing: every list is replaced, every map merged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMeta;

impl PatchMeta for NoMeta {
    fn field(&self, _name: &str) -> (FieldStrategy, Option<Self>) {
        (FieldStrategy::default(), Some(NoMeta))
    }
}

/// A patch that cannot be applied. The message is shown to the user as-is.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is not valid: {0}")]
    Invalid(String),
    #[error("the patch could not be applied: {0}")]
    Failed(String),
}
