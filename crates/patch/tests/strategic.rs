//! Strategic merge patch, checked against the behaviour of Kubernetes'
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (cases modelled on its test suite, with data
//! of our own).

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{json, Value};
use tugboat_patch::{strategic_merge_patch, FieldStrategy, NoMeta, PatchError, PatchMeta};

/// How a test schema treats a field.
enum Rule {
    /// `patchStrategy: merge` on a list of primitives.
    Merge,
    /// `patchStrategy: merge`, `patchMergeKey: <key>`.
    Keyed(&'static str),
    /// `patchStrategy: retainKeys`.
    RetainKeys,
    /// `patchStrategy: merge,retainKeys`, `patchMergeKey: <key>`.
    KeyedRetainKeys(&'static str),
    /// Nothing known about the field's value.
    Opaque,
}

/// Patch metadata keyed by dotted field path; list items add no segment, so the containers'
/// env is `spec.template.spec.containers.env`.
#[derive(Clone)]
struct TestMeta {
    path: String,
    rules: Rc<HashMap<&'static str, Rule>>,
}

impl TestMeta {
    fn new(rules: impl IntoIterator<Item = (&'static str, Rule)>) -> Self {
        TestMeta {
            path: String::new(),
            rules: Rc::new(rules.into_iter().collect()),
        }
    }
}

impl PatchMeta for TestMeta {
    fn field(&self, name: &str) -> (FieldStrategy, Option<Self>) {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        };
        let keyed = |key: &str, retain_keys| FieldStrategy {
            merge: true,
            merge_key: Some(key.to_owned()),
            retain_keys,
        };
        let strategy = match self.rules.get(path.as_str()) {
            Some(Rule::Opaque) => return (FieldStrategy::default(), None),
            Some(Rule::Merge) => FieldStrategy {
                merge: true,
                ..FieldStrategy::default()
            },
            Some(Rule::Keyed(key)) => keyed(key, false),
            Some(Rule::KeyedRetainKeys(key)) => keyed(key, true),
            Some(Rule::RetainKeys) => FieldStrategy {
                retain_keys: true,
                ..FieldStrategy::default()
            },
            None => FieldStrategy::default(),
        };
        (
            strategy,
            Some(TestMeta {
                path,
                rules: Rc::clone(&self.rules),
            }),
        )
    }
}

/// The strategies Kubernetes gives the fields these tests use (Deployment / Pod template).
fn k8s() -> TestMeta {
    TestMeta::new([
        ("metadata.finalizers", Rule::Merge),
        ("metadata.ownerReferences", Rule::Keyed("uid")),
        ("spec.strategy", Rule::RetainKeys),
        ("spec.template.spec.containers", Rule::Keyed("name")),
        ("spec.template.spec.containers.env", Rule::Keyed("name")),
        (
            "spec.template.spec.containers.ports",
            Rule::Keyed("containerPort"),
        ),
        (
            "spec.template.spec.containers.volumeMounts",
            Rule::Keyed("mountPath"),
        ),
        ("spec.template.spec.initContainers", Rule::Keyed("name")),
        ("spec.template.spec.volumes", Rule::KeyedRetainKeys("name")),
        ("spec.podCIDRs", Rule::Merge),
        ("spec.untyped", Rule::Opaque),
        // Misdeclared on purpose: a merge list of objects without a merge key.
        ("spec.keyless", Rule::Merge),
    ])
}

fn apply(original: Value, patch: Value) -> Value {
    match strategic_merge_patch(&original, &patch, &k8s()) {
        Ok(result) => result,
        Err(e) => panic!("patch {patch} failed: {e}"),
    }
}

fn invalid(original: Value, patch: Value) -> String {
    match strategic_merge_patch(&original, &patch, &k8s()) {
        Err(PatchError::Invalid(message)) => message,
        other => panic!("expected an invalid patch, got {other:?}"),
    }
}

/// A pod template holding `containers`.
fn pod(containers: Value) -> Value {
    json!({"spec": {"template": {"spec": {"containers": containers}}}})
}

fn containers(document: &Value) -> &Value {
    &document["spec"]["template"]["spec"]["containers"]
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["name"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

mod maps {
    use super::*;

    #[test]
    fn nested_maps_merge_and_null_deletes() {
        let original = json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "front", "env": "prod"}}});
        let patch = json!({"metadata": {"labels": {"tier": null, "env": "staging", "team": "a"}}});
        assert_eq!(
            apply(original, patch),
            json!({"metadata": {"name": "web", "labels": {"app": "web", "env": "staging", "team": "a"}}})
        );
    }

    #[test]
    fn null_for_a_missing_field_is_ignored() {
        assert_eq!(apply(json!({"a": 1}), json!({"b": null})), json!({"a": 1}));
    }

    #[test]
    fn nulls_inside_new_maps_are_dropped() {
        let patch =
            json!({"spec": {"selector": {"app": "web", "tier": null}, "empty": {"x": null}}});
        assert_eq!(
            apply(json!({}), patch),
            json!({"spec": {"selector": {"app": "web"}, "empty": {}}})
        );
    }

    #[test]
    fn nulls_already_in_the_document_are_kept() {
        assert_eq!(
            apply(json!({"a": null, "b": {"c": null}}), json!({"d": 1})),
            json!({"a": null, "b": {"c": null}, "d": 1})
        );
    }

    #[test]
    fn scalars_replace_whatever_was_there() {
        let original = json!({"a": {"nested": true}, "b": [1, 2], "c": "x"});
        let patch = json!({"a": "flat", "b": 3, "c": {"now": "a map"}});
        assert_eq!(
            apply(original, patch),
            json!({"a": "flat", "b": 3, "c": {"now": "a map"}})
        );
    }

    #[test]
    fn replace_directive_replaces_the_map() {
        let original =
            json!({"metadata": {"labels": {"app": "web", "tier": "front"}, "name": "web"}});
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "owner": "me"}}});
        assert_eq!(
            apply(original, patch),
            json!({"metadata": {"labels": {"owner": "me"}, "name": "web"}})
        );
    }

    #[test]
    fn replace_directive_at_the_top_replaces_everything() {
        assert_eq!(
            apply(
                json!({"a": 1, "b": 2}),
                json!({"$patch": "replace", "c": 3})
            ),
            json!({"c": 3})
        );
        assert_eq!(
            apply(json!({"a": 1}), json!({"$patch": "replace"})),
            json!({})
        );
    }

    #[test]
    fn delete_directive_empties_the_map() {
        // Upstream leaves an empty map rather than removing the field.
        let original = json!({"metadata": {"labels": {"app": "web"}, "name": "web"}});
        let patch = json!({"metadata": {"labels": {"$patch": "delete", "ignored": "x"}}});
        assert_eq!(
            apply(original, patch),
            json!({"metadata": {"labels": {}, "name": "web"}})
        );
    }

    #[test]
    fn explicit_merge_directive_is_the_default() {
        let patch = json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}});
        assert_eq!(
            apply(json!({"metadata": {"labels": {"a": "1"}}}), patch),
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}})
        );
    }

    #[test]
    fn a_new_map_applies_its_directives_to_nothing() {
        // Upstream drops a new map carrying `$patch: replace`; here it is kept, minus the
        // directive.
        let patch = json!({"spec": {"nodeSelector": {"$patch": "replace", "disk": "ssd"}, "gone": {"$patch": "delete"}}});
        assert_eq!(
            apply(json!({"spec": {}}), patch),
            json!({"spec": {"nodeSelector": {"disk": "ssd"}}})
        );
    }

    #[test]
    fn unknown_directive_is_invalid() {
        let message = invalid(
            json!({}),
            json!({"metadata": {"labels": {"$patch": "frobnicate"}}}),
        );
        assert!(
            message.contains("metadata.labels") && message.contains("frobnicate"),
            "{message}"
        );
        let message = invalid(json!({}), json!({"$patch": 1}));
        assert!(message.contains("$patch must be a string"), "{message}");
    }

    #[test]
    fn dollar_fields_that_are_not_directives_are_data() {
        // JSONSchemaProps has `$ref` and `$schema` fields.
        assert_eq!(
            apply(json!({}), json!({"$ref": "#/x"})),
            json!({"$ref": "#/x"})
        );
    }

    #[test]
    fn patch_and_document_must_be_objects() {
        let meta = k8s();
        assert!(matches!(
            strategic_merge_patch(&json!({}), &json!([1]), &meta),
            Err(PatchError::Invalid(_))
        ));
        assert!(matches!(
            strategic_merge_patch(&json!("x"), &json!({}), &meta),
            Err(PatchError::Failed(_))
        ));
        assert_eq!(apply(Value::Null, json!({"a": 1})), json!({"a": 1}));
    }
}

mod lists {
    use super::*;

    #[test]
    fn lists_without_strategy_are_replaced() {
        let original = pod(json!([{"name": "web", "args": ["a", "b"], "command": ["run"]}]));
        let patch = pod(json!([{"name": "web", "args": ["c"]}]));
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([{"name": "web", "args": ["c"], "command": ["run"]}])
        );
    }

    #[test]
    fn replaced_lists_keep_nulls_between_primitives_and_drop_them_in_maps() {
        let patch =
            json!({"spec": {"tolerations": [{"key": "a", "value": null}], "args": ["x", null]}});
        assert_eq!(
            apply(json!({}), patch),
            json!({"spec": {"tolerations": [{"key": "a"}], "args": ["x", null]}})
        );
    }

    #[test]
    fn without_metadata_every_list_is_replaced() {
        let original = pod(json!([{"name": "a"}, {"name": "b"}]));
        let patch = pod(json!([{"name": "c"}]));
        let result = strategic_merge_patch(&original, &patch, &NoMeta).expect("applies");
        assert_eq!(containers(&result), &json!([{"name": "c"}]));
    }

    #[test]
    fn containers_merge_by_name() {
        let original = pod(json!([
            {"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent"},
            {"name": "sidecar", "image": "envoy:1"}
        ]));
        let patch = pod(json!([{"name": "web", "image": "nginx:1.27"}]));
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([
                {"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent"},
                {"name": "sidecar", "image": "envoy:1"}
            ])
        );
    }

    #[test]
    fn new_items_go_before_untouched_ones() {
        // Without $setElementOrder, Kubernetes places an item the patch adds ahead of the items
        // the patch does not mention.
        let original = pod(json!([{"name": "web"}, {"name": "sidecar"}]));
        let patch = pod(json!([{"name": "debug", "image": "busybox"}]));
        assert_eq!(
            names(containers(&apply(original, patch))),
            ["debug", "web", "sidecar"]
        );
    }

    #[test]
    fn patch_order_wins_among_the_items_it_names() {
        let original = pod(json!([{"name": "a"}, {"name": "b", "image": "b"}, {"name": "c"}]));
        let patch = pod(json!([{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]));
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([{"name": "b", "image": "b"}, {"name": "c", "image": "c"}, {"name": "a", "image": "a"}])
        );
    }

    #[test]
    fn new_item_after_an_existing_one_in_the_patch() {
        let original = pod(json!([{"name": "a"}, {"name": "b"}]));
        let patch = pod(json!([{"name": "b", "image": "x"}, {"name": "new"}]));
        assert_eq!(
            names(containers(&apply(original, patch))),
            ["a", "b", "new"]
        );
    }

    #[test]
    fn env_merges_by_name_and_delete_directive_removes() {
        let original = pod(json!([{"name": "web", "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "2"},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ]}]));
        let patch = pod(json!([{"name": "web", "env": [
            {"name": "B", "$patch": "delete"},
            {"name": "C", "value": "3", "valueFrom": null}
        ]}]));
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([{"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]}])
        );
    }

    #[test]
    fn ports_merge_by_number() {
        let original = pod(json!([{"name": "web", "ports": [
            {"containerPort": 80, "protocol": "TCP"},
            {"containerPort": 443, "protocol": "TCP"}
        ]}]));
        let patch = pod(
            json!([{"name": "web", "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}]}]),
        );
        assert_eq!(
            containers(&apply(original, patch))[0]["ports"],
            json!([
                {"containerPort": 80, "protocol": "TCP"},
                {"containerPort": 443, "protocol": "TCP", "name": "https"},
                {"containerPort": 8080}
            ])
        );
    }

    #[test]
    fn delete_directive_removes_every_duplicate() {
        let original = pod(json!([{"name": "a"}, {"name": "a", "image": "dup"}, {"name": "b"}]));
        let patch = pod(
            json!([{"name": "a", "$patch": "delete"}, {"name": "missing", "$patch": "delete"}]),
        );
        assert_eq!(containers(&apply(original, patch)), &json!([{"name": "b"}]));
    }

    #[test]
    fn replace_item_replaces_the_list() {
        let original = pod(json!([{"name": "a", "image": "a"}, {"name": "b"}]));
        let patch = pod(json!([{"$patch": "replace"}, {"name": "a", "tty": true}, {"name": "c"}]));
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([{"name": "a", "tty": true}, {"name": "c"}])
        );

        let emptied = apply(
            pod(json!([{"name": "a"}])),
            pod(json!([{"$patch": "replace"}])),
        );
        assert_eq!(containers(&emptied), &json!([]));
    }

    #[test]
    fn volumes_honour_retain_keys_per_item() {
        // Switching a volume's source: kubectl sends the new source and `$retainKeys`.
        let original = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "config", "configMap": {"name": "cfg"}}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "$retainKeys": ["name", "persistentVolumeClaim"], "persistentVolumeClaim": {"claimName": "pvc"}}
        ]}}}});
        assert_eq!(
            apply(original, patch)["spec"]["template"]["spec"]["volumes"],
            json!([
                {"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}},
                {"name": "config", "configMap": {"name": "cfg"}}
            ])
        );
    }

    #[test]
    fn new_items_lose_their_directives() {
        let patch = pod(json!([{
            "name": "debug",
            "$setElementOrder/env": [{"name": "A"}],
            "env": [{"name": "A", "value": "1"}, {"name": "GONE", "$patch": "delete"}],
            "resources": {"$patch": "replace", "limits": {"cpu": "1"}, "requests": null}
        }]));
        assert_eq!(
            containers(&apply(pod(json!([])), patch)),
            &json!([{"name": "debug", "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}}])
        );
    }

    #[test]
    fn a_new_merge_list_resolves_its_directives() {
        let patch = pod(
            json!([{"name": "a"}, {"name": "b", "$patch": "delete"}, {"name": "a", "image": "x"}]),
        );
        assert_eq!(
            containers(&apply(json!({}), patch)),
            &json!([{"name": "a", "image": "x"}])
        );
    }

    #[test]
    fn missing_merge_key_is_invalid() {
        let message = invalid(
            pod(json!([{"name": "web"}])),
            pod(json!([{"image": "nginx"}])),
        );
        assert_eq!(
            message,
            "spec.template.spec.containers: a list item does not contain the merge key \"name\""
        );
        let message = invalid(
            pod(json!([{"name": "web"}])),
            pod(json!([{"image": "nginx", "$patch": "delete"}])),
        );
        assert!(message.contains("merge key \"name\""), "{message}");
    }

    #[test]
    fn errors_name_the_list_item() {
        let original = pod(json!([{"name": "web", "env": [{"name": "A"}]}]));
        let message = invalid(
            original,
            pod(json!([{"name": "web", "env": [{"value": "x"}]}])),
        );
        assert_eq!(
            message,
            "spec.template.spec.containers[name=\"web\"].env: a list item does not contain the merge key \"name\""
        );
    }

    #[test]
    fn merge_directive_on_a_list_item_is_invalid() {
        let message = invalid(
            pod(json!([])),
            pod(json!([{"name": "a", "$patch": "merge"}])),
        );
        assert!(message.contains("$patch: merge"), "{message}");
    }

    #[test]
    fn merging_objects_needs_a_merge_key() {
        let message = invalid(
            json!({"spec": {"keyless": [{"a": 1}]}}),
            json!({"spec": {"keyless": [{"a": 2}]}}),
        );
        assert!(message.contains("without a merge key"), "{message}");
    }

    #[test]
    fn mixed_and_nested_lists_are_invalid() {
        let message = invalid(pod(json!([{"name": "a"}])), pod(json!(["a"])));
        assert!(message.contains("both an object and a string"), "{message}");
        let message = invalid(
            json!({"metadata": {"finalizers": [["a"]]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
        );
        assert!(message.contains("lists of lists"), "{message}");
    }

    #[test]
    fn a_list_where_the_document_has_a_map_is_invalid() {
        let message = invalid(
            json!({"metadata": {"labels": {"a": "b"}}}),
            json!({"metadata": {"labels": ["a"]}}),
        );
        assert_eq!(
            message,
            "metadata.labels: the patch has a list where the document has an object"
        );
        let message = invalid(pod(json!([])), pod(json!({"name": "web"})));
        assert!(
            message.contains("an object where the document has a list"),
            "{message}"
        );
    }

    #[test]
    fn fields_of_unknown_structure_are_replaced_whole() {
        let original = json!({"spec": {"untyped": {"a": {"b": 1}}}});
        assert_eq!(
            apply(original.clone(), json!({"spec": {"untyped": [1]}})),
            json!({"spec": {"untyped": [1]}})
        );
        // Below an unknown field, maps still merge and lists are replaced.
        let patch = json!({"spec": {"untyped": {"a": {"c": 2}, "list": [{"x": null}]}}});
        assert_eq!(
            apply(original, patch),
            json!({"spec": {"untyped": {"a": {"b": 1, "c": 2}, "list": [{}]}}})
        );
    }
}

mod primitive_lists {
    use super::*;

    fn finalizers(document: &Value) -> &Value {
        &document["metadata"]["finalizers"]
    }

    #[test]
    fn merge_as_a_set() {
        let result = apply(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(finalizers(&result), &json!(["a", "b", "c"]));
    }

    #[test]
    fn patch_order_is_kept_among_the_values_it_names() {
        let result = apply(
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"finalizers": ["c", "a"]}}),
        );
        assert_eq!(finalizers(&result), &json!(["b", "c", "a"]));
    }

    #[test]
    fn delete_from_primitive_list() {
        let result = apply(
            json!({"metadata": {"finalizers": ["a", "b", "c", "b"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "z"]}}),
        );
        assert_eq!(result, json!({"metadata": {"finalizers": ["a", "c"]}}));
    }

    #[test]
    fn delete_wins_over_add_of_the_same_value() {
        let result = apply(
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["b", "a"]}}),
        );
        assert_eq!(finalizers(&result), &json!([]));
    }

    #[test]
    fn delete_from_a_missing_list_adds_nothing() {
        let result = apply(
            json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(result, json!({"metadata": {"name": "x"}}));
    }

    #[test]
    fn delete_applies_to_lists_without_strategy_too() {
        let result = apply(
            json!({"spec": {"args": ["a", "b"]}}),
            json!({"spec": {"$deleteFromPrimitiveList/args": ["a"]}}),
        );
        assert_eq!(result, json!({"spec": {"args": ["b"]}}));
    }

    #[test]
    fn malformed_deletions_are_invalid() {
        let original = json!({"metadata": {"finalizers": ["a"]}});
        let message = invalid(
            original.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        );
        assert_eq!(message, "metadata.$deleteFromPrimitiveList/finalizers: $deleteFromPrimitiveList must be a list of primitive values");
        let message = invalid(
            original.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
        );
        assert!(message.contains("malformed directive"), "{message}");
        let message = invalid(
            pod(json!([{"name": "a"}])),
            json!({"spec": {"template": {"spec": {"$deleteFromPrimitiveList/containers": ["a"]}}}}),
        );
        assert!(
            message.contains("only to lists of primitive values"),
            "{message}"
        );
    }

    #[test]
    fn numbers_merge_too() {
        let result = apply(
            json!({"spec": {"podCIDRs": [1, 2]}}),
            json!({"spec": {"podCIDRs": [2, 3]}}),
        );
        assert_eq!(result, json!({"spec": {"podCIDRs": [1, 2, 3]}}));
    }
}

mod element_order {
    use super::*;

    fn order(field: &str, entries: Value) -> (String, Value) {
        (format!("$setElementOrder/{field}"), entries)
    }

    fn pod_patch(containers: Option<Value>, order_entries: Value) -> Value {
        let (key, entries) = order("containers", order_entries);
        let mut spec = json!({ key: entries });
        if let Some(containers) = containers {
            spec["containers"] = containers;
        }
        json!({"spec": {"template": {"spec": spec}}})
    }

    fn keyed(names: &[&str]) -> Value {
        names.iter().map(|name| json!({"name": name})).collect()
    }

    #[test]
    fn reorders_without_other_changes() {
        let original = pod(json!([{"name": "a"}, {"name": "b", "image": "b"}, {"name": "c"}]));
        let patch = pod_patch(None, keyed(&["c", "a", "b"]));
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([{"name": "c"}, {"name": "a"}, {"name": "b", "image": "b"}])
        );
    }

    #[test]
    fn items_the_order_does_not_name_stay_near_their_neighbours() {
        // "x" and "y" exist only on the server: they stay after "a", where they were.
        let original = pod(keyed(&["a", "b", "x", "y", "c", "d"]));
        let patch = pod_patch(None, keyed(&["b", "a", "d", "c"]));
        assert_eq!(
            names(containers(&apply(original, patch))),
            ["b", "a", "x", "y", "d", "c"]
        );

        let original = pod(keyed(&["a", "c", "d", "b", "z"]));
        let patch = pod_patch(None, keyed(&["d", "b", "c", "a"]));
        assert_eq!(
            names(containers(&apply(original, patch))),
            ["d", "b", "c", "a", "z"]
        );
    }

    #[test]
    fn adds_and_deletes_in_the_given_order() {
        let original = pod(json!([{"name": "a", "image": "a"}, {"name": "c"}, {"name": "b"}]));
        let patch = pod_patch(
            Some(json!([{"name": "new", "image": "n"}, {"name": "c", "$patch": "delete"}])),
            keyed(&["new", "b", "a"]),
        );
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([{"name": "new", "image": "n"}, {"name": "b"}, {"name": "a", "image": "a"}])
        );
    }

    #[test]
    fn places_new_items_in_the_middle() {
        let original = pod(keyed(&["a", "b"]));
        let patch = pod_patch(Some(keyed(&["n1", "n2"])), keyed(&["a", "n1", "b", "n2"]));
        assert_eq!(
            names(containers(&apply(original, patch))),
            ["a", "n1", "b", "n2"]
        );
    }

    #[test]
    fn may_name_items_that_do_not_exist() {
        let original = pod(keyed(&["a", "c"]));
        let patch = pod_patch(
            Some(json!([{"name": "c", "image": "c"}, {"name": "a"}])),
            keyed(&["c", "b", "a"]),
        );
        assert_eq!(
            containers(&apply(original, patch)),
            &json!([{"name": "c", "image": "c"}, {"name": "a"}])
        );
    }

    #[test]
    fn orders_a_list_the_document_does_not_have_yet() {
        let items = json!([{"name": "a"}, {"name": "gone", "$patch": "delete"}, {"name": "b"}]);
        let patch = pod_patch(Some(items), keyed(&["a", "b"]));
        assert_eq!(containers(&apply(json!({}), patch)), &keyed(&["a", "b"]));
    }

    #[test]
    fn orders_primitive_lists() {
        let original = json!({"metadata": {"finalizers": ["a", "x", "b"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"], "finalizers": ["c"]}});
        assert_eq!(
            apply(original, patch),
            json!({"metadata": {"finalizers": ["c", "a", "x", "b"]}})
        );

        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"], "$deleteFromPrimitiveList/finalizers": ["c"]}});
        assert_eq!(
            apply(original, patch),
            json!({"metadata": {"finalizers": ["b", "a"]}})
        );
    }

    #[test]
    fn patch_items_out_of_order_are_invalid() {
        let original = pod(keyed(&["a", "b", "c"]));
        let patch = pod_patch(Some(keyed(&["c", "a"])), keyed(&["a", "b", "c"]));
        let message = invalid(original.clone(), patch);
        assert!(
            message.starts_with("spec.template.spec.containers: ")
                && message.contains("$setElementOrder"),
            "{message}"
        );

        let patch = pod_patch(Some(keyed(&["z"])), keyed(&["a", "b"]));
        assert!(invalid(original, patch).contains("missing from $setElementOrder"));
    }

    #[test]
    fn malformed_orders_are_invalid() {
        let original = pod(keyed(&["a"]));
        assert!(invalid(original.clone(), pod_patch(None, json!("a"))).contains("must be a list"));
        assert!(
            invalid(original.clone(), pod_patch(None, json!([{"image": "a"}])))
                .contains("merge key \"name\"")
        );
        assert!(invalid(
            original,
            pod_patch(Some(json!({"name": "a"})), keyed(&["a"]))
        )
        .contains("orders a list"));
    }
}

mod retain_keys {
    use super::*;

    fn strategy(document: &Value) -> &Value {
        &document["spec"]["strategy"]
    }

    #[test]
    fn switching_to_recreate_drops_rolling_update() {
        let original = json!({"spec": {"replicas": 3, "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
        }}});
        // What kubectl apply sends when the manifest switches to Recreate.
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let result = apply(original.clone(), patch);
        assert_eq!(
            result,
            json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}})
        );

        // The directive alone clears the other fields too.
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            strategy(&apply(original, patch)),
            &json!({"type": "Recreate"})
        );
    }

    #[test]
    fn kept_fields_still_merge() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type", "rollingUpdate"], "rollingUpdate": {"maxSurge": 2}}}});
        assert_eq!(
            strategy(&apply(original, patch)),
            &json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}})
        );
    }

    #[test]
    fn without_the_directive_the_map_merges() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"type": "Recreate"}}});
        assert_eq!(
            strategy(&apply(original, patch)),
            &json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
        );
    }

    #[test]
    fn contradictions_and_malformed_lists_are_invalid() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
        let message = invalid(
            original.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        );
        assert_eq!(message, "spec.strategy: field \"rollingUpdate\" is set by the patch but missing from $retainKeys");
        let message = invalid(
            original.clone(),
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
        );
        assert!(message.contains("$retainKeys must be a list"), "{message}");
        let message = invalid(
            original,
            json!({"spec": {"strategy": {"$retainKeys": [1]}}}),
        );
        assert!(message.contains("$retainKeys must be a list"), "{message}");
    }

    #[test]
    fn applies_wherever_it_appears() {
        // Upstream honours the directive whatever the field's declared strategy.
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch = json!({"metadata": {"labels": {"$retainKeys": ["a"]}}});
        assert_eq!(
            apply(original, patch),
            json!({"metadata": {"labels": {"a": "1"}}})
        );
    }
}

/// What `kubectl apply` sends (a three-way strategic merge patch between the last applied
/// configuration, the new manifest and the live object), applied to the live object.
mod kubectl_apply {
    use super::*;

    fn live_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": "7f6c",
                "resourceVersion": "1234",
                "labels": {"app": "web", "tier": "frontend"},
                "annotations": {
                    "deployment.kubernetes.io/revision": "3",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}"
                },
                "finalizers": ["example.com/protect", "example.com/audit"]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25",
                                "imagePullPolicy": "IfNotPresent",
                                "terminationMessagePath": "/dev/termination-log",
                                "env": [
                                    {"name": "MODE", "value": "prod"},
                                    {"name": "DEBUG", "value": "1"},
                                    {"name": "REGION", "value": "eu"}
                                ],
                                "ports": [{"containerPort": 80, "protocol": "TCP"}]
                            },
                            {"name": "log-shipper", "image": "fluent-bit:3", "imagePullPolicy": "IfNotPresent"}
                        ],
                        "restartPolicy": "Always",
                        "dnsPolicy": "ClusterFirst"
                    }
                }
            },
            "status": {"replicas": 2, "readyReplicas": 2}
        })
    }

    #[test]
    fn changed_image_removed_env_and_removed_label() {
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}"},
                "labels": {"tier": null}
            },
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "log-shipper"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "MODE"}, {"name": "REGION"}],
                    "name": "web",
                    "image": "nginx:1.27",
                    "env": [{"$patch": "delete", "name": "DEBUG"}]
                }]
            }}}
        });
        let mut expected = live_deployment();
        expected["metadata"]["labels"] = json!({"app": "web"});
        expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{\"new\":true}");
        let web = &mut expected["spec"]["template"]["spec"]["containers"][0];
        web["image"] = json!("nginx:1.27");
        web["env"] = json!([{"name": "MODE", "value": "prod"}, {"name": "REGION", "value": "eu"}]);

        assert_eq!(apply(live_deployment(), patch), expected);
    }

    #[test]
    fn added_container_lands_where_the_manifest_puts_it() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "metrics"}, {"name": "log-shipper"}],
            "containers": [{"name": "metrics", "image": "exporter:2", "ports": [{"containerPort": 9100}]}]
        }}}});
        let result = apply(live_deployment(), patch);
        assert_eq!(
            names(containers(&result)),
            ["web", "metrics", "log-shipper"]
        );
        assert_eq!(
            containers(&result)[1]["ports"],
            json!([{"containerPort": 9100}])
        );
    }

    #[test]
    fn removed_finalizer_and_strategy_switch() {
        let patch = json!({
            "metadata": {
                "$setElementOrder/finalizers": ["example.com/protect"],
                "$deleteFromPrimitiveList/finalizers": ["example.com/audit"]
            },
            "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}
        });
        let result = apply(live_deployment(), patch);
        assert_eq!(
            result["metadata"]["finalizers"],
            json!(["example.com/protect"])
        );
        assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(result["status"], live_deployment()["status"]);
    }

    #[test]
    fn changed_port_list_and_replaced_args() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "log-shipper"}],
            "containers": [{
                "name": "web",
                "$setElementOrder/ports": [{"containerPort": 8080}],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"$patch": "delete", "containerPort": 80}],
                "args": ["--listen", ":8080"]
            }]
        }}}});
        let result = apply(live_deployment(), patch);
        let web = &containers(&result)[0];
        assert_eq!(
            web["ports"],
            json!([{"containerPort": 8080, "protocol": "TCP"}])
        );
        assert_eq!(web["args"], json!(["--listen", ":8080"]));
        assert_eq!(web["imagePullPolicy"], json!("IfNotPresent"));
    }
}
