//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386).

use serde_json::{json, Value};
use tugboat_patch::{json_patch, merge_patch, PatchError};

fn document() -> Value {
    json!({
        "metadata": {"name": "web", "labels": {"a": "1"}},
        "spec": {"replicas": 1, "args": ["x", "y"]}
    })
}

fn patched(operations: Value) -> Value {
    match json_patch(&document(), operations.to_string().as_bytes()) {
        Ok(result) => result,
        Err(e) => panic!("{operations} failed: {e}"),
    }
}

fn failure(operations: Value) -> String {
    match json_patch(&document(), operations.to_string().as_bytes()) {
        Err(PatchError::Failed(message)) => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

mod rfc6902 {
    use super::*;

    #[test]
    fn applies_every_operation_in_order() {
        let result = patched(json!([
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "remove", "path": "/spec/args/0"},
            {"op": "add", "path": "/spec/args/-", "value": "z"},
            {"op": "copy", "from": "/metadata/name", "path": "/metadata/labels/name"},
            {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/moved"},
            {"op": "test", "path": "/spec/replicas", "value": 3}
        ]));
        assert_eq!(
            result,
            json!({
                "metadata": {"name": "web", "labels": {"b": "2", "name": "web", "moved": "1"}},
                "spec": {"replicas": 3, "args": ["y", "z"]}
            })
        );
    }

    #[test]
    fn escaped_pointers() {
        let result = patched(
            json!([{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"}]),
        );
        assert_eq!(
            result["metadata"]["labels"]["app.kubernetes.io/name"],
            json!("web")
        );
    }

    #[test]
    fn empty_patch_changes_nothing() {
        assert_eq!(patched(json!([])), document());
    }

    #[test]
    fn failed_test() {
        assert_eq!(
            failure(json!([{"op": "test", "path": "/metadata/labels/a", "value": "2"}])),
            "test operation failed at /metadata/labels/a"
        );
    }

    #[test]
    fn missing_paths() {
        assert_eq!(
            failure(json!([{"op": "remove", "path": "/spec/x"}])),
            "remove operation failed: path /spec/x does not exist"
        );
        assert_eq!(
            failure(json!([{"op": "replace", "path": "/spec/x", "value": 1}])),
            "replace operation failed: path /spec/x does not exist"
        );
        assert_eq!(
            failure(json!([{"op": "add", "path": "/spec/x/y", "value": 1}])),
            "add operation failed: path /spec/x/y does not exist"
        );
        assert_eq!(
            failure(json!([{"op": "add", "path": "/spec/args/7", "value": 1}])),
            "add operation failed: path /spec/args/7 does not exist"
        );
        assert_eq!(
            failure(json!([{"op": "move", "from": "/spec/nope", "path": "/spec/x"}])),
            "move operation failed: path /spec/nope does not exist"
        );
        assert_eq!(
            failure(json!([{"op": "remove", "path": ""}])),
            "remove operation failed: path / (the whole document) does not exist"
        );
    }

    #[test]
    fn move_into_own_child() {
        assert_eq!(
            failure(json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}])),
            "move operation failed: cannot move /spec into its own child /spec/inner"
        );
    }

    #[test]
    fn all_or_nothing() {
        // The first operation would apply, the second fails: the caller gets only the error,
        // and its document is untouched by construction.
        let message = failure(json!([
            {"op": "replace", "path": "/spec/replicas", "value": 9},
            {"op": "test", "path": "/spec/replicas", "value": 1}
        ]));
        assert_eq!(message, "test operation failed at /spec/replicas");
    }

    #[test]
    fn malformed_patches_are_invalid() {
        for body in [
            "{\"op\": \"add\"}",
            "[{\"op\": \"frobnicate\", \"path\": \"/a\"}]",
            "[{\"op\": \"add\", \"path\": \"/a\"}]",
            "[{\"op\": \"add\", \"path\": \"no-slash\", \"value\": 1}]",
            "not json",
        ] {
            match json_patch(&document(), body.as_bytes()) {
                Err(PatchError::Invalid(message)) => {
                    assert!(message.starts_with("malformed JSON patch"), "{message}")
                }
                other => panic!("{body}: expected invalid, got {other:?}"),
            }
        }
    }
}

mod rfc7386 {
    use super::*;

    fn merged(original: Value, patch: Value) -> Value {
        match merge_patch(&original, &patch) {
            Ok(result) => result,
            Err(e) => panic!("merge patch failed: {e}"),
        }
    }

    #[test]
    fn merges_maps_and_null_deletes() {
        assert_eq!(
            merged(
                document(),
                json!({"metadata": {"labels": {"a": null, "b": "2"}}, "spec": {"replicas": 2}})
            ),
            json!({"metadata": {"name": "web", "labels": {"b": "2"}}, "spec": {"replicas": 2, "args": ["x", "y"]}})
        );
    }

    #[test]
    fn lists_are_replaced() {
        assert_eq!(
            merged(json!({"a": [1, 2, {"b": 1}]}), json!({"a": [{"c": null}]})),
            json!({"a": [{"c": null}]})
        );
    }

    #[test]
    fn non_object_patch_replaces_the_document() {
        assert_eq!(merged(document(), json!(["x"])), json!(["x"]));
        assert_eq!(merged(document(), json!("s")), json!("s"));
        assert_eq!(merged(document(), Value::Null), Value::Null);
    }

    #[test]
    fn objects_replace_scalars_and_drop_their_nulls() {
        assert_eq!(
            merged(json!({"a": "b"}), json!({"a": {"c": "d", "e": null}})),
            json!({"a": {"c": "d"}})
        );
        assert_eq!(merged(json!(["a"]), json!({"a": "b"})), json!({"a": "b"}));
    }

    #[test]
    fn rfc_example() {
        let original = json!({
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "This will be unchanged"
        });
        let patch = json!({
            "title": "Hello!",
            "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": null},
            "tags": ["example"]
        });
        assert_eq!(
            merged(original, patch),
            json!({
                "title": "Hello!",
                "author": {"givenName": "John"},
                "tags": ["example"],
                "content": "This will be unchanged",
                "phoneNumber": "+01-123-456-7890"
            })
        );
    }
}
