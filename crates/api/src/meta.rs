//! Accessors for object metadata on untyped JSON objects.

use serde_json::{Map, Value};

/// `metadata.name`, or "" if absent.
pub fn name(object: &Value) -> &str {
    str_at(object, "/metadata/name")
}

/// `metadata.namespace`, or "" if absent.
pub fn namespace(object: &Value) -> &str {
    str_at(object, "/metadata/namespace")
}

/// The string at a JSON pointer, or "" if absent or not a string.
pub fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `metadata`, created as an empty object if absent or not an object.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    object_field_mut(object, "metadata")
}

/// `object[field]` as a JSON object, replacing a missing or non-object value with `{}`.
/// `object` itself is turned into an object if it is not one.
pub fn object_field_mut<'a>(object: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Value::Object(map) = object else { unreachable!("made an object above") };
    let entry = map.entry(field).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object above"),
    }
}

/// The value at a dotted field path (`spec.nodeName`) rendered the way field selectors compare it:
/// strings as-is, booleans and numbers in their JSON form, absent as "".
pub fn field_value(object: &Value, dotted_path: &str) -> String {
    let mut current = object;
    for part in dotted_path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) => current.to_string(),
        Value::Array(_) | Value::Object(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_values_render_like_kubernetes() {
        let pod = json!({"spec":{"nodeName":"n1","hostNetwork":true},"status":{"phase":"Running"}});
        assert_eq!(field_value(&pod, "spec.nodeName"), "n1");
        assert_eq!(field_value(&pod, "spec.hostNetwork"), "true");
        assert_eq!(field_value(&pod, "status.podIP"), "");
    }

    #[test]
    fn object_field_mut_repairs_non_objects() {
        let mut v = json!({"metadata": 5});
        metadata_mut(&mut v).insert("name".into(), json!("x"));
        assert_eq!(name(&v), "x");
    }
}
