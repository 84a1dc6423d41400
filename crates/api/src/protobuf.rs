//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into
//! the JSON wire form. kubectl's typed clients (`kubectl create namespace`, `create configmap`,
//! `expose`, ...) send built-in kinds this way and do not fall back to JSON.
//!
//! The body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` field is the
//! object in the proto2 encoding of Kubernetes' generated.proto. Field layouts come from
//! [`crate::protobuf_schema`] (generated); JSON names come from the OpenAPI schemas, because
//! the proto field names are the JSON names while the generated layout only has them snake_cased.

use base64::Engine;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

use crate::protobuf_schema::MESSAGES;
use crate::schema::Definitions;
use crate::Registry;

const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic bytes \"k8s\\0\"")]
    NoMagic,
    #[error("the protobuf body is truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error("protobuf bodies of {kind} in {api_version} are not supported; send JSON instead")]
    UnknownKind { api_version: String, kind: String },
}

/// The scalar or message kind of a field.
#[derive(Debug)]
pub enum Kind {
    String,
    Bytes,
    Int32,
    Int64,
    Bool,
    Double,
    Float,
    /// A nested message, by OpenAPI definition name.
    Message(&'static str),
    /// A map, encoded as repeated entries `{1: key, 2: value}`.
    Map(&'static Kind, &'static Kind),
}

#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// prost's snake_case rendering of the proto (= JSON) name.
    pub name: &'static str,
    pub repeated: bool,
    pub kind: Kind,
}

#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// Where a decoded field goes in the JSON object.
enum Placement {
    Named(String),
    /// A Go embedded struct: its fields are inlined into the parent object.
    Inline,
}

/// Per message: tag → (field, placement), built once.
static LAYOUTS: LazyLock<HashMap<&'static str, HashMap<u32, (&'static Field, Placement)>>> = LazyLock::new(|| {
    MESSAGES
        .iter()
        .map(|message| {
            let properties = Definitions::get()
                .schema(message.name)
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            let fields = message
                .fields
                .iter()
                .map(|field| {
                    let wanted = normalize(field.name);
                    let json_name = properties.and_then(|p| p.keys().find(|k| normalize(k) == wanted).cloned());
                    let placement = match (json_name, &field.kind) {
                        (Some(name), _) => Placement::Named(name),
                        (None, Kind::Message(_)) if properties.is_some() => Placement::Inline,
                        (None, _) => Placement::Named(lower_camel(field.name)),
                    };
                    (field.tag, (field, placement))
                })
                .collect();
            (message.name, fields)
        })
        .collect()
});

fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes a Kubernetes protobuf body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for entry in Reader::new(envelope) {
        let (tag, value) = entry?;
        match (tag, value) {
            (1, Wire::Bytes(type_meta)) => {
                for meta in Reader::new(type_meta) {
                    match meta? {
                        (1, Wire::Bytes(v)) => api_version = utf8(v)?,
                        (2, Wire::Bytes(v)) => kind = utf8(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(bytes)) => raw = bytes,
            _ => {}
        }
    }
    let definition = definition_for(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownKind { api_version: api_version.clone(), kind: kind.clone() })?;
    let mut object = match decode_message(definition, raw)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

fn definition_for(api_version: &str, kind: &str) -> Option<&'static str> {
    if kind == "DeleteOptions" {
        return Some("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions");
    }
    if let Some(resource) = Registry::get().by_kind(api_version, kind) {
        return MESSAGES.iter().find(|m| m.name == resource.definition).map(|m| m.name);
    }
    // Subresource bodies (Scale, Binding, Eviction): match the group-version's package.
    let (group, version) = api_version.split_once('/').unwrap_or(("core", api_version));
    let group = group.split('.').next().unwrap_or(group);
    let suffix = format!(".{group}.{version}.{kind}");
    MESSAGES.iter().find(|m| m.name.starts_with("io.k8s.api.") && m.name.ends_with(&suffix)).map(|m| m.name)
}

fn utf8(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed("a string field is not UTF-8"))
}

fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, ProtobufError> {
    match name {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let (mut seconds, mut nanos) = (0i64, 0i64);
            for entry in Reader::new(bytes) {
                match entry? {
                    (1, Wire::Varint(v)) => seconds = v as i64,
                    (2, Wire::Varint(v)) => nanos = i64::from(v as i32),
                    _ => {}
                }
            }
            return Ok(Value::String(timestamp(seconds, nanos, name.ends_with("MicroTime"))));
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Duration" => {
            let mut nanos = 0i64;
            for entry in Reader::new(bytes) {
                if let (1, Wire::Varint(v)) = entry? {
                    nanos = v as i64;
                }
            }
            return Ok(Value::String(go_duration(nanos)));
        }
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
            for entry in Reader::new(bytes) {
                match entry? {
                    (1, Wire::Varint(v)) => is_string = v == 1,
                    (2, Wire::Varint(v)) => int = i64::from(v as i32),
                    (3, Wire::Bytes(v)) => string = utf8(v)?,
                    _ => {}
                }
            }
            return Ok(if is_string { Value::String(string) } else { Value::from(int) });
        }
        // A one-string message that JSON renders as the bare string.
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            for entry in Reader::new(bytes) {
                if let (1, Wire::Bytes(v)) = entry? {
                    return Ok(Value::String(utf8(v)?));
                }
            }
            return Ok(Value::String(String::new()));
        }
        "io.k8s.apimachinery.pkg.runtime.RawExtension" => {
            for entry in Reader::new(bytes) {
                if let (1, Wire::Bytes(raw)) = entry? {
                    return Ok(serde_json::from_slice(raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned())));
                }
            }
            return Ok(Value::Null);
        }
        _ => {}
    }
    let Some(layout) = LAYOUTS.get(name) else {
        // A message the layout does not know (a newer field's type): keep nothing rather than guess.
        return Ok(Value::Object(Map::new()));
    };
    let mut object = Map::new();
    for entry in Reader::new(bytes) {
        let (tag, wire) = entry?;
        let Some((field, placement)) = layout.get(&tag) else { continue };
        match placement {
            Placement::Inline => {
                if let (Kind::Message(inner), Wire::Bytes(b)) = (&field.kind, wire) {
                    if let Value::Object(fields) = decode_message(inner, b)? {
                        object.extend(fields);
                    }
                }
            }
            Placement::Named(json_name) => match &field.kind {
                Kind::Map(key_kind, value_kind) => {
                    let Wire::Bytes(entry_bytes) = wire else { return Err(ProtobufError::Malformed("a map entry is not length-delimited")) };
                    let (mut key, mut value) = (Value::Null, Value::Null);
                    for part in Reader::new(entry_bytes) {
                        match part? {
                            (1, w) => key = scalar(key_kind, w)?,
                            (2, w) => value = scalar(value_kind, w)?,
                            _ => {}
                        }
                    }
                    let key = match key {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let map = object.entry(json_name.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(map) = map {
                        map.insert(key, if value.is_null() { default_of(value_kind) } else { value });
                    }
                }
                kind if field.repeated => {
                    let list = object.entry(json_name.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    let Value::Array(list) = list else { continue };
                    match (kind, wire) {
                        // Packed repeated numbers.
                        (Kind::Int32 | Kind::Int64 | Kind::Bool, Wire::Bytes(packed)) => {
                            let mut cursor = packed;
                            while !cursor.is_empty() {
                                let v = varint(&mut cursor)?;
                                list.push(scalar(kind, Wire::Varint(v))?);
                            }
                        }
                        (kind, wire) => list.push(scalar(kind, wire)?),
                    }
                }
                kind => {
                    object.insert(json_name.clone(), scalar(kind, wire)?);
                }
            },
        }
    }
    Ok(Value::Object(object))
}

/// JSON for a map value the encoder left empty.
fn default_of(kind: &Kind) -> Value {
    match kind {
        Kind::String | Kind::Bytes => Value::String(String::new()),
        Kind::Message(_) | Kind::Map(..) => Value::Object(Map::new()),
        Kind::Bool => Value::Bool(false),
        _ => Value::from(0),
    }
}

fn scalar(kind: &Kind, wire: Wire) -> Result<Value, ProtobufError> {
    Ok(match (kind, wire) {
        (Kind::String, Wire::Bytes(b)) => Value::String(utf8(b)?),
        (Kind::Bytes, Wire::Bytes(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Kind::Int32, Wire::Varint(v)) => Value::from(i64::from(v as i32)),
        (Kind::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Kind::Double, Wire::Fixed64(v)) => serde_json::Number::from_f64(f64::from_bits(v)).map(Value::Number).unwrap_or(Value::Null),
        (Kind::Float, Wire::Fixed32(v)) => serde_json::Number::from_f64(f64::from(f32::from_bits(v))).map(Value::Number).unwrap_or(Value::Null),
        (Kind::Message(name), Wire::Bytes(b)) => decode_message(name, b)?,
        _ => return Err(ProtobufError::Malformed("a field's wire type does not match its schema")),
    })
}

/// RFC 3339 in UTC, as Kubernetes writes `Time` (seconds) and `MicroTime` (microseconds).
fn timestamp(seconds: i64, nanos: i64, micro: bool) -> String {
    let Ok(t) = jiff::Timestamp::new(seconds, nanos.clamp(0, 999_999_999) as i32) else {
        return String::new();
    };
    if micro {
        t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
    } else {
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// Go's `time.Duration.String()` for whole seconds and above (e.g. `1h0m0s`, `90s` → `1m30s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let total = nanos.unsigned_abs();
    let (secs, frac) = (total / 1_000_000_000, total % 1_000_000_000);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let seconds = if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:09}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => format!("{sign}{seconds}"),
        (0, m) => format!("{sign}{m}m{seconds}"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}"),
    }
}

/// One field's payload by wire type.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(cursor: &mut &[u8]) -> Result<u64, ProtobufError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = cursor.split_first().ok_or(ProtobufError::Malformed("a varint runs past the end"))?;
        *cursor = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtobufError::Malformed("a varint is longer than 10 bytes"))
}

/// Iterates the fields of one message.
struct Reader<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes, failed: false }
    }

    fn next_field(&mut self) -> Result<(u32, Wire<'a>), ProtobufError> {
        let key = varint(&mut self.rest)?;
        let tag = u32::try_from(key >> 3).map_err(|_| ProtobufError::Malformed("a field tag is out of range"))?;
        let take = |rest: &mut &'a [u8], n: usize| -> Result<&'a [u8], ProtobufError> {
            if rest.len() < n {
                return Err(ProtobufError::Malformed("a field runs past the end"));
            }
            let (head, tail) = rest.split_at(n);
            *rest = tail;
            Ok(head)
        };
        let wire = match key & 7 {
            0 => Wire::Varint(varint(&mut self.rest)?),
            1 => Wire::Fixed64(u64::from_le_bytes(take(&mut self.rest, 8)?.try_into().map_err(|_| ProtobufError::Malformed("bad fixed64"))?)),
            2 => {
                let len = usize::try_from(varint(&mut self.rest)?).map_err(|_| ProtobufError::Malformed("a length is out of range"))?;
                Wire::Bytes(take(&mut self.rest, len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(take(&mut self.rest, 4)?.try_into().map_err(|_| ProtobufError::Malformed("bad fixed32"))?)),
            _ => return Err(ProtobufError::Malformed("an unsupported wire type (groups are not used by Kubernetes)")),
        };
        Ok((tag, wire))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u32, Wire<'a>), ProtobufError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal protobuf writer for building test bodies.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn varint(&mut self, mut v: u64) {
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(byte);
                    return;
                }
                self.0.push(byte | 0x80);
            }
        }
        fn int(mut self, tag: u32, v: u64) -> Self {
            self.varint(u64::from(tag) << 3);
            self.varint(v);
            self
        }
        fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
            self.varint((u64::from(tag) << 3) | 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        fn str(self, tag: u32, s: &str) -> Self {
            self.bytes(tag, s.as_bytes())
        }
        fn msg(self, tag: u32, m: Writer) -> Self {
            self.bytes(tag, &m.0)
        }
    }

    fn w() -> Writer {
        Writer::default()
    }

    fn envelope(api_version: &str, kind: &str, raw: Writer) -> Vec<u8> {
        let mut body = MAGIC.to_vec();
        body.extend(w().msg(1, w().str(1, api_version).str(2, kind)).msg(2, raw).str(4, "application/vnd.kubernetes.protobuf").0);
        body
    }

    fn entry(k: &str, v: &str) -> Writer {
        w().str(1, k).str(2, v)
    }

    #[test]
    fn namespace_and_configmap() {
        let ns = envelope("v1", "Namespace", w().msg(1, w().str(1, "team")).msg(2, w()));
        assert_eq!(decode(&ns).unwrap(), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}, "spec": {}}));

        let meta = w().str(1, "cm").str(3, "default").msg(8, w().int(1, 1_700_000_000)).msg(11, entry("app", "web"));
        let cm = envelope("v1", "ConfigMap", w().msg(1, meta).msg(2, entry("k", "v")).msg(2, entry("empty", "")));
        assert_eq!(
            decode(&cm).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "namespace": "default", "creationTimestamp": "2023-11-14T22:13:20Z", "labels": {"app": "web"}},
                   "data": {"k": "v", "empty": ""}})
        );
    }

    #[test]
    fn deployment_with_embedded_fields_quantities_and_int_or_string() {
        let container = w()
            .str(1, "web")
            .str(2, "busybox")
            .msg(6, w().int(3, 80).str(4, "TCP"))
            .msg(8, w().msg(1, w().str(1, "cpu").msg(2, w().str(1, "100m"))))
            .msg(7, w().str(1, "A").msg(3, w().msg(3, w().msg(1, w().str(1, "settings")).str(2, "key"))));
        let spec = w()
            .int(1, 3)
            .msg(2, w().msg(1, entry("app", "web")))
            .msg(3, w().msg(1, w().msg(11, entry("app", "web"))).msg(2, w().msg(2, container)))
            .msg(4, w().str(1, "RollingUpdate").msg(2, w().msg(1, w().int(1, 1).str(3, "25%")).msg(2, w().int(1, 0).int(2, 1))));
        let body = envelope("apps/v1", "Deployment", w().msg(1, w().str(1, "web")).msg(2, spec));
        let d = decode(&body).unwrap();
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
        assert_eq!(c["resources"]["limits"]["cpu"], "100m");
        // ConfigMapKeySelector embeds LocalObjectReference: its `name` is inlined.
        assert_eq!(c["env"][0]["valueFrom"]["configMapKeyRef"], json!({"name": "settings", "key": "key"}));
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"], json!({"maxUnavailable": "25%", "maxSurge": 1}));
    }

    #[test]
    fn secrets_bytes_and_delete_options() {
        let mut data = w().str(1, "password");
        data = data.bytes(2, b"s3cret");
        let secret = envelope("v1", "Secret", w().msg(1, w().str(1, "s")).msg(2, data).str(3, "Opaque"));
        let decoded = decode(&secret).unwrap();
        assert_eq!(decoded["data"]["password"], "czNjcmV0");
        assert_eq!(decoded["type"], "Opaque");

        let options = envelope("v1", "DeleteOptions", w().int(1, 0).str(4, "Foreground"));
        let decoded = decode(&options).unwrap();
        assert_eq!((decoded["gracePeriodSeconds"].as_i64(), decoded["propagationPolicy"].as_str()), (Some(0), Some("Foreground")));
    }

    #[test]
    fn every_message_reference_resolves_and_every_kind_has_a_layout() {
        let special = ["Time", "MicroTime", "Duration", "Quantity", "IntOrString", "RawExtension"];
        for message in MESSAGES {
            for field in message.fields {
                let target = match &field.kind {
                    Kind::Message(t) | Kind::Map(_, Kind::Message(t)) => t,
                    _ => continue,
                };
                let known = MESSAGES.iter().any(|m| m.name == *target) || special.iter().any(|s| target.ends_with(&format!(".{s}")));
                assert!(known, "{}.{} refers to unknown {target}", message.name, field.name);
            }
        }
        for resource in Registry::get().types() {
            assert!(definition_for(&resource.api_version(), resource.kind).is_some(), "no layout for {}", resource.kind);
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(decode(b"{}"), Err(ProtobufError::NoMagic));
        let mut body = envelope("v1", "ConfigMap", w().msg(1, w().str(1, "cm")));
        body.truncate(body.len() - 2);
        assert!(matches!(decode(&body), Err(ProtobufError::Malformed(_))));
        assert!(matches!(decode(&envelope("v1", "Nope", w())), Err(ProtobufError::UnknownKind { .. })));
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }
}
