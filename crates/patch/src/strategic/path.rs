//! Where in the document the patch is being applied, so that errors can say so.

use std::fmt;

use serde_json::Value;

use crate::PatchError;

/// A location in the document, rendered the way Kubernetes names fields:
/// `spec.template.spec.containers[name="web"].env`. List items are named by their merge key
/// because that, not the index, is what a strategic merge patch matches them by.
#[derive(Clone, Copy)]
pub(super) enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, &'a str, &'a Value),
}

impl<'a> Path<'a> {
    pub(super) fn field(&'a self, name: &'a str) -> Path<'a> {
        Path::Field(self, name)
    }

    pub(super) fn item(&'a self, merge_key: &'a str, value: &'a Value) -> Path<'a> {
        Path::Item(self, merge_key, value)
    }

    /// A [`PatchError::Invalid`] about this location.
    pub(super) fn invalid(&self, message: impl fmt::Display) -> PatchError {
        match self {
            Path::Root => PatchError::Invalid(message.to_string()),
            _ => PatchError::Invalid(format!("{self}: {message}")),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(parent, key, value) => write!(f, "{parent}[{key}={value}]"),
        }
    }
}
