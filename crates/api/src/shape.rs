//! Which fields of an object a reader keeps (client-go's informer transform, done while
//! decoding): a watcher that reads a few fields of large objects never builds the rest, so
//! decoding a pod event costs a scan of its text, not a tree of every field.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// A tree of kept fields. Arrays are transparent: the shape of an array is that of each element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The whole value.
    All,
    /// Only these fields of an object, each with its own shape. A list, not a hash map: an
    /// object has a handful of kept fields, and comparing a few short names beats hashing each
    /// field name of every decoded object.
    Fields(Vec<(String, Shape)>),
}

impl Shape {
    /// The shape that keeps each dotted path, e.g. `metadata.labels` (all of it) or
    /// `status.conditions.type` (the `type` of every condition).
    pub fn of(paths: &[&str]) -> Self {
        let mut shape = Shape::Fields(Vec::new());
        for path in paths {
            shape.keep(path.split('.'));
        }
        shape
    }

    fn keep<'a>(&mut self, mut path: impl Iterator<Item = &'a str>) {
        let Some(field) = path.next() else {
            *self = Shape::All;
            return;
        };
        if let Shape::Fields(fields) = self {
            let index = match fields.iter().position(|(name, _)| name == field) {
                Some(index) => index,
                None => {
                    fields.push((field.to_owned(), Shape::Fields(Vec::new())));
                    fields.len() - 1
                }
            };
            fields[index].1.keep(path);
        }
    }

    /// The kept part of an already decoded value.
    pub fn apply(&self, value: &Value) -> Value {
        match (self, value) {
            (Shape::All, _) => value.clone(),
            (Shape::Fields(fields), Value::Object(object)) => Value::Object(
                object.iter().filter_map(|(name, v)| field(fields, name).map(|shape| (name.clone(), shape.apply(v)))).collect(),
            ),
            (Shape::Fields(_), Value::Array(items)) => Value::Array(items.iter().map(|item| self.apply(item)).collect()),
            (Shape::Fields(_), scalar) => scalar.clone(),
        }
    }

    /// Decodes JSON text, keeping only this shape.
    pub fn decode(&self, json: &[u8]) -> Result<Value, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_str(crate::json::text(json)?);
        let value = self.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for &Shape {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Shape::All => serde::Deserialize::deserialize(deserializer),
            Shape::Fields(fields) => deserializer.deserialize_any(Pruning { shape: self, fields }),
        }
    }
}

/// Builds a value from the kept fields and skips the others without building them.
struct Pruning<'s> {
    /// Applies to each element of an array.
    shape: &'s Shape,
    /// Of an object, the fields kept.
    fields: &'s [(String, Shape)],
}

/// The shape of the field `name`, if it is kept.
fn field<'s>(fields: &'s [(String, Shape)], name: &str) -> Option<&'s Shape> {
    fields.iter().find(|(kept, _)| kept == name).map(|(_, shape)| shape)
}

/// An object's field name, borrowed from the input unless it had escapes.
struct FieldName<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> Visitor<'de> for Name {
            type Value = FieldName<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

impl<'de> Visitor<'de> for Pruning<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(FieldName(name)) = map.next_key()? {
            match field(self.fields, &name) {
                Some(shape) => {
                    kept.insert(name.into_owned(), map.next_value_seed(shape)?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.shape)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "labels": {"a": "1"}, "annotations": {"big": "x"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "message": "m"}, {"type": "PodScheduled", "status": "True"}]},
        })
    }

    #[test]
    fn decoding_keeps_only_the_shape() {
        let shape = Shape::of(&["metadata.name", "metadata.labels", "spec.nodeName", "status.conditions.type", "status.conditions.status"]);
        let expected = json!({
            "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"nodeName": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]},
        });
        let text = serde_json::to_vec(&pod()).unwrap();
        assert_eq!(shape.decode(&text).unwrap(), expected);
        assert_eq!(shape.apply(&pod()), expected);
    }

    #[test]
    fn a_kept_path_keeps_everything_below_it_and_scalars_pass() {
        let shape = Shape::of(&["spec", "metadata.name.extra"]);
        let text = serde_json::to_vec(&pod()).unwrap();
        assert_eq!(shape.decode(&text).unwrap(), json!({"spec": pod()["spec"], "metadata": {"name": "p"}}));
        assert!(shape.decode(b"{\"spec\": 1} x").is_err(), "trailing text is an error, as for a full decode");
    }
}
