//! The served form of a stored object: its stored JSON with `metadata.resourceVersion` added.
//! The store holds objects without their resourceVersion (the revision is the row's), so every
//! object served needs one; inserting it into the stored bytes spares decoding and re-encoding.

use crate::json_text;
use bytes::Bytes;
use tugboat_store::Revision;

/// `stored` (a JSON object whose `metadata` has no `resourceVersion`) with
/// `"resourceVersion":"<revision>"` as the first field of its top-level `metadata`; None when
/// `stored` has no top-level `metadata` object.
pub fn with_resource_version(stored: &[u8], revision: Revision) -> Option<Bytes> {
    let at = metadata_opening(stored)?;
    let empty = stored[at..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let field = format!("\"resourceVersion\":\"{revision}\"{}", if empty { "" } else { "," });
    let mut served = Vec::with_capacity(stored.len() + field.len());
    served.extend_from_slice(&stored[..at]);
    served.extend_from_slice(field.as_bytes());
    served.extend_from_slice(&stored[at..]);
    Some(Bytes::from(served))
}

/// The offset just after the `{` that opens the value of the top-level key `metadata`.
fn metadata_opening(json: &[u8]) -> Option<usize> {
    let value = json_text::field_offset(json, "metadata")?;
    (json[value] == b'{').then_some(value + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn served(stored: &str, revision: Revision) -> Option<Value> {
        with_resource_version(stored.as_bytes(), revision).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn adds_the_revision_to_top_level_metadata_only() {
        let stored = r#"{"apiVersion":"v1","data":{"metadata":"x","k":{"metadata":{}}},"kind":"ConfigMap","metadata":{"name":"a\"metadata\":{","namespace":"n"}}"#;
        let value = served(stored, 42).unwrap();
        assert_eq!(value["metadata"], json!({"name": "a\"metadata\":{", "namespace": "n", "resourceVersion": "42"}));
        assert_eq!(value["data"], json!({"metadata": "x", "k": {"metadata": {}}}));
    }

    #[test]
    fn handles_empty_metadata_and_whitespace() {
        assert_eq!(served(r#"{ "metadata" : { } }"#, 7).unwrap(), json!({"metadata": {"resourceVersion": "7"}}));
        assert_eq!(served(r#"{"metadata":{}}"#, 7).unwrap(), json!({"metadata": {"resourceVersion": "7"}}));
    }

    #[test]
    fn refuses_what_has_no_metadata_object() {
        assert!(served(r#"{"kind":"X"}"#, 1).is_none());
        assert!(served(r#"{"metadata":null}"#, 1).is_none());
        assert!(served(r#"{"a":"unterminated}"#, 1).is_none());
        assert!(served(r#"]]"#, 1).is_none());
    }
}
