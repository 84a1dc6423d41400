//! Accessors for object metadata on untyped JSON objects.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// JSON Pointer (RFC 6901) look-ups that allocate nothing for plain paths. serde_json's
/// `Value::pointer` builds two strings per step to unescape it, and a request reads dozens of
/// paths.
pub trait Pointer {
    fn at(&self, pointer: &str) -> Option<&Value>;
    fn at_mut(&mut self, pointer: &str) -> Option<&mut Value>;
}

impl Pointer for Value {
    fn at(&self, pointer: &str) -> Option<&Value> {
        let mut current = self;
        for token in tokens(pointer)? {
            current = match current {
                Value::Object(map) => map.get(token.as_ref())?,
                Value::Array(items) => items.get(index(&token)?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    fn at_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        let mut current = self;
        for token in tokens(pointer)? {
            current = match current {
                Value::Object(map) => map.get_mut(token.as_ref())?,
                Value::Array(items) => items.get_mut(index(&token)?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

/// The unescaped reference tokens of a pointer; None if it is neither empty nor starts with `/`.
fn tokens(pointer: &str) -> Option<impl Iterator<Item = Cow<'_, str>>> {
    let rest = match pointer {
        "" => None,
        _ => Some(pointer.strip_prefix('/')?),
    };
    Some(rest.into_iter().flat_map(|rest| rest.split('/')).map(|token| {
        if token.contains('~') {
            Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(token)
        }
    }))
}

/// An array index token: decimal digits without a leading zero or sign.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

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
    object.at(pointer).and_then(Value::as_str).unwrap_or("")
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
    fn pointers_resolve_as_rfc_6901_says() {
        let mut object = json!({"a": {"b/c": [1, {"d~e": 2}], "": 3}});
        assert_eq!(object.at(""), Some(&object.clone()));
        assert_eq!(object.at("/a/b~1c/1/d~0e"), Some(&2.into()));
        assert_eq!(object.at("/a/"), Some(&3.into()), "an empty token names the empty key");
        assert_eq!(object.at("/a/b~1c/01"), None, "no leading zeros");
        assert_eq!(object.at("/a/b~1c/+1"), None);
        assert_eq!(object.at("/a/b~1c/2"), None);
        assert_eq!(object.at("a"), None, "a pointer starts with /");
        *object.at_mut("/a/b~1c/0").unwrap() = 5.into();
        assert_eq!(object["a"]["b/c"][0], 5);
        for pointer in ["", "/a", "/a/b~1c/1/d~0e", "/a/", "/x/y", "/a/b~1c/01", "a"] {
            assert_eq!(object.at(pointer), object.pointer(pointer), "{pointer}");
        }
    }

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
