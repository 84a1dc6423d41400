//! The served kinds' schemas compiled once into a tree of field nodes, for admission's decode of
//! every written object: type checks, Kubernetes' normal form (in place), and strict field
//! validation's list of the fields the schema does not know, in one walk.
//!
//! In the definitions a field look-up is a chain of string-keyed maps (`properties`, the field,
//! `$ref`, the definition); here it is one hashed look-up, with references resolved to node
//! indices.
//!
//! Invariant: [`decode`] admits exactly what a decode through the kind's k8s-openapi type and
//! back admits, and gives the same value (the test below compares the two on generated objects
//! of every kind); it only does so without building the typed object and a second tree.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

use crate::registry::ResourceType;
use crate::schema::{Definitions, SchemaNode};

/// Why a request's object cannot be handled as its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct DecodeError {
    /// Where, as `spec.containers[0].name` (`.` for the object itself).
    pub path: String,
    pub problem: String,
}

/// Admission's decode of `object` as `resource`: rejects values of the wrong JSON type, and
/// brings the rest into the form Kubernetes stores — unknown fields and `null` optional fields
/// dropped, required fields that are missing set to their zero value, timestamps, quantities,
/// int-or-strings and base64 bytes re-encoded as k8s-openapi writes them.
///
/// With `unknown`, the paths of the fields the schema does not know are added to it, as
/// Kubernetes reports them for strict field validation (`spec.template.spec.containers[0].bogus`).
pub fn decode(resource: &ResourceType, mut object: Value, unknown: Option<&mut Vec<String>>) -> Result<Value, DecodeError> {
    let tree = FieldTree::get();
    let Some(root) = tree.root(&resource.definition) else {
        return Err(DecodeError { path: ".".into(), problem: format!("no schema for {}", resource.definition) });
    };
    tree.normalise(&mut object, root, None, &mut Unknown(unknown))?;
    Ok(object)
}

struct FieldTree {
    nodes: Vec<FieldNode>,
    /// Definition name → node.
    roots: foldhash::HashMap<&'static str, usize>,
}

/// What a value at a node must be, and how it is brought into normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Form {
    /// Any JSON, kept as sent (RawExtension, FieldsV1, `x-kubernetes-preserve-unknown-fields`).
    #[default]
    Any,
    /// An object with declared properties: unknown ones dropped, required ones filled in.
    Struct,
    /// An object of any keys, each value of the node's `any_property` form.
    Map,
    Array,
    String,
    Boolean,
    Int32,
    Int64,
    Number,
    /// Leaves whose k8s-openapi types have their own encoding: decoded and encoded through them.
    Time,
    MicroTime,
    IntOrString,
    Quantity,
    Bytes,
}

#[derive(Default)]
struct FieldNode {
    form: Form,
    /// Free-form: every field is known (RawExtension, `x-kubernetes-preserve-unknown-fields`,
    /// untyped maps).
    open: bool,
    properties: foldhash::HashMap<&'static str, usize>,
    /// Properties k8s-openapi requires: a missing one gets its zero value (or, for a timestamp,
    /// which has none, is an error).
    required: Vec<(&'static str, usize)>,
    /// The node of a map's values (`additionalProperties`).
    any_property: Option<usize>,
    items: Option<usize>,
    /// A kind's (apiVersion, kind): its typed form writes them, and takes no others.
    type_meta: Option<(String, String)>,
}

static FIELD_TREE: LazyLock<FieldTree> = LazyLock::new(FieldTree::build);

/// The definitions whose k8s-openapi types encode themselves (their schemas say too little).
fn special_form(definition: &str) -> Option<Form> {
    Some(match definition {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => Form::Time,
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => Form::MicroTime,
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => Form::IntOrString,
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => Form::Quantity,
        "io.k8s.apimachinery.pkg.runtime.RawExtension" | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => Form::Any,
        _ => return None,
    })
}

fn form_of(node: &SchemaNode) -> Form {
    if let Some(form) = node.definition.and_then(special_form) {
        return form;
    }
    let schema = node.schema;
    let format = schema.get("format").and_then(Value::as_str);
    match schema.get("type").and_then(Value::as_str) {
        _ if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) => Form::Any,
        Some("string") if format == Some("byte") => Form::Bytes,
        Some("string") => Form::String,
        Some("boolean") => Form::Boolean,
        Some("integer") if format == Some("int32") => Form::Int32,
        Some("integer") => Form::Int64,
        Some("number") => Form::Number,
        Some("array") => Form::Array,
        Some("object") if schema.get("properties").is_some() => Form::Struct,
        Some("object") if node.additional_properties().is_some() => Form::Map,
        // A struct without fields keeps none.
        Some("object") => Form::Struct,
        _ => Form::Any,
    }
}

impl FieldTree {
    fn get() -> &'static FieldTree {
        &FIELD_TREE
    }

    fn build() -> Self {
        let definitions = Definitions::get();
        let mut tree = FieldTree { nodes: Vec::new(), roots: Default::default() };
        // Compiled nodes by the address of their (resolved) schema: each schema once, which
        // also ends the recursion of self-referencing definitions.
        let mut compiled = HashMap::new();
        for name in definitions.schemas.keys() {
            if let Some(node) = definitions.node(name) {
                let index = tree.compile(node, &mut compiled);
                tree.roots.insert(name.as_str(), index);
            }
        }
        tree
    }

    fn compile(&mut self, node: SchemaNode, compiled: &mut HashMap<*const Value, usize>) -> usize {
        let address: *const Value = node.schema;
        if let Some(index) = compiled.get(&address) {
            return *index;
        }
        let index = self.nodes.len();
        self.nodes.push(FieldNode::default());
        compiled.insert(address, index);
        let definitions = Definitions::get();
        let form = form_of(&node);
        let mut properties = foldhash::HashMap::default();
        for (name, property) in node.schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            properties.insert(name.as_str(), self.compile(definitions.resolve(property), compiled));
        }
        let required = node
            .schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|name| properties.get_key_value(name).map(|(name, child)| (*name, *child)))
            .collect();
        let any_property = node.additional_properties().map(|schema| self.compile(definitions.resolve(schema), compiled));
        let items = node.items().map(|items| self.compile(items, compiled));
        let type_meta = match node.schema.get("x-kubernetes-group-version-kind").and_then(Value::as_array).map(Vec::as_slice) {
            Some([gvk]) => {
                let field = |name: &str| gvk.get(name).and_then(Value::as_str).unwrap_or_default();
                Some((crate::registry::api_version(field("group"), field("version")), field("kind").to_owned()))
            }
            _ => None,
        };
        self.nodes[index] = FieldNode { form, open: node.is_open(), properties, required, any_property, items, type_meta };
        index
    }

    fn root(&self, definition: &str) -> Option<usize> {
        self.roots.get(definition).copied()
    }

    /// Checks `value` against node `index` and brings it into normal form, in place.
    fn normalise(&self, value: &mut Value, index: usize, at: Option<&Step>, unknown: &mut Unknown) -> Result<(), DecodeError> {
        let node = &self.nodes[index];
        let wrong = |value: &Value| mismatch(at, node.form.expected(), value);
        match node.form {
            Form::Any => {}
            Form::Struct => {
                let Value::Object(fields) = value else { return Err(wrong(value)) };
                if let Some(type_meta) = &node.type_meta {
                    type_meta_of(fields, type_meta, at)?;
                }
                // An optional field that is null is absent; a required one gets its zero value
                // below, as when it is missing.
                fields.retain(|key, field| {
                    let known = node.properties.contains_key(key.as_str());
                    // A free-form node's typed form keeps none of the fields, but knows them all.
                    if !known && !node.open {
                        unknown.report(&step(at, key));
                    }
                    known && !field.is_null()
                });
                for (key, field) in fields.iter_mut() {
                    if let Some(&child) = node.properties.get(key.as_str()) {
                        self.normalise(field, child, Some(&step(at, key)), unknown)?;
                    }
                }
                for &(name, child) in &node.required {
                    if !fields.contains_key(name) {
                        let zero = self.zero(child).ok_or_else(|| DecodeError { path: path(at), problem: format!("missing field `{name}`") })?;
                        fields.insert(name.to_owned(), zero);
                    }
                }
            }
            Form::Map => {
                let Value::Object(entries) = value else { return Err(wrong(value)) };
                if let Some(child) = node.any_property {
                    for (key, entry) in entries.iter_mut() {
                        self.normalise_present(entry, child, &step(at, key), unknown)?;
                    }
                }
            }
            Form::Array => {
                let Value::Array(items) = value else { return Err(wrong(value)) };
                if let Some(child) = node.items {
                    // Kubernetes objects are never a top-level array; if one were, its items'
                    // paths would start at `[0]`.
                    let root = Step::RootField("");
                    let parent = at.unwrap_or(&root);
                    for (i, item) in items.iter_mut().enumerate() {
                        self.normalise_present(item, child, &Step::Item(parent, i), unknown)?;
                    }
                }
            }
            Form::String if value.is_string() => {}
            Form::String => return Err(wrong(value)),
            Form::Boolean if value.is_boolean() => {}
            Form::Boolean => return Err(wrong(value)),
            Form::Int32 if value.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {}
            Form::Int32 => return Err(wrong(value)),
            Form::Int64 if value.is_i64() => {}
            Form::Int64 => return Err(wrong(value)),
            Form::Number => {
                let Some(number) = value.as_f64() else { return Err(wrong(value)) };
                *value = serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number);
            }
            Form::Time if is_canonical_time(value, false) => {}
            Form::Time => through::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>(value, at)?,
            Form::MicroTime if is_canonical_time(value, true) => {}
            Form::MicroTime => through::<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>(value, at)?,
            Form::IntOrString => through::<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>(value, at)?,
            Form::Quantity => through::<k8s_openapi::apimachinery::pkg::api::resource::Quantity>(value, at)?,
            Form::Bytes => through::<k8s_openapi::ByteString>(value, at)?,
        }
        Ok(())
    }

    /// A map value or list item: there `null` is not an absent field but a value of the wrong
    /// type (unless anything goes, or the leaf's own type decides).
    fn normalise_present(&self, value: &mut Value, index: usize, at: &Step, unknown: &mut Unknown) -> Result<(), DecodeError> {
        if value.is_null() && !self.nodes[index].form.takes_null() {
            return Err(mismatch(Some(at), self.nodes[index].form.expected(), value));
        }
        self.normalise(value, index, Some(at), unknown)
    }

    /// What k8s-openapi fills a missing required field with (`Default`); timestamps have none.
    fn zero(&self, index: usize) -> Option<Value> {
        let node = &self.nodes[index];
        Some(match node.form {
            Form::Any => Value::Null,
            Form::Struct => {
                let mut fields = Map::new();
                if let Some((api_version, kind)) = &node.type_meta {
                    fields.insert("apiVersion".into(), api_version.clone().into());
                    fields.insert("kind".into(), kind.clone().into());
                }
                for &(name, child) in &node.required {
                    fields.insert(name.to_owned(), self.zero(child)?);
                }
                Value::Object(fields)
            }
            Form::Map => Value::Object(Map::new()),
            Form::Array => Value::Array(Vec::new()),
            Form::String | Form::Quantity | Form::Bytes => Value::String(String::new()),
            Form::Boolean => Value::Bool(false),
            Form::Int32 | Form::Int64 | Form::IntOrString => Value::from(0),
            Form::Number => Value::from(0.0),
            Form::Time | Form::MicroTime => return None,
        })
    }
}

impl Form {
    /// Whether a `null` map value or list item is this form's to judge.
    fn takes_null(self) -> bool {
        matches!(self, Form::Any | Form::Time | Form::MicroTime | Form::IntOrString | Form::Quantity | Form::Bytes)
    }

    fn expected(self) -> &'static str {
        match self {
            Form::Struct => "an object",
            Form::Map => "a map",
            Form::Array => "a sequence",
            Form::String | Form::Quantity | Form::Bytes => "a string",
            Form::Boolean => "a boolean",
            Form::Int32 => "i32",
            Form::Int64 => "i64",
            Form::Number => "f64",
            Form::Time | Form::MicroTime => "a timestamp",
            Form::IntOrString => "an integer or a string",
            Form::Any => "a value",
        }
    }
}

/// A kind's apiVersion and kind: set when missing, refused when other than its own.
fn type_meta_of(fields: &mut Map<String, Value>, (api_version, kind): &(String, String), at: Option<&Step>) -> Result<(), DecodeError> {
    for (field, expected) in [("apiVersion", api_version), ("kind", kind)] {
        match fields.get(field) {
            None => {
                fields.insert(field.to_owned(), Value::String(expected.clone()));
            }
            Some(Value::String(given)) if given == expected => {}
            Some(Value::String(given)) => {
                let problem = format!("invalid value: string {given:?}, expected {expected}");
                return Err(DecodeError { path: step(at, field).to_string(), problem });
            }
            Some(other) => return Err(mismatch(Some(&step(at, field)), "a string", other)),
        }
    }
    Ok(())
}

/// Whether `value` is a timestamp exactly as k8s-openapi writes one (`%Y-%m-%dT%H:%M:%SZ`, with
/// `.%6f` before the `Z` for a MicroTime), so that decoding and encoding it would give it back:
/// almost every one is, and formatting them anew was half the cost of a status write's decode.
fn is_canonical_time(value: &Value, micro: bool) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00:00:00";
    let Value::String(text) = value else { return false };
    let bytes = text.as_bytes();
    let fraction = if micro { 7 } else { 0 };
    bytes.len() == SHAPE.len() + fraction + 1
        && bytes.iter().zip(SHAPE).all(|(b, s)| if *s == b'0' { b.is_ascii_digit() } else { b == s })
        && (!micro || (bytes[19] == b'.' && bytes[20..26].iter().all(u8::is_ascii_digit)))
        && bytes.last() == Some(&b'Z')
        // A leap second parses, as the second before it.
        && &bytes[17..19] != b"60"
        && text.parse::<jiff::Timestamp>().is_ok()
}

/// Decodes `value` as the k8s-openapi type `T` and puts back what `T` encodes.
fn through<T: serde::de::DeserializeOwned + serde::Serialize>(value: &mut Value, at: Option<&Step>) -> Result<(), DecodeError> {
    let problem = |error: serde_json::Error| DecodeError { path: path(at), problem: error.to_string() };
    let typed: T = serde_json::from_value(value.take()).map_err(problem)?;
    *value = serde_json::to_value(typed).map_err(problem)?;
    Ok(())
}

fn mismatch(at: Option<&Step>, expected: &str, value: &Value) -> DecodeError {
    let found = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a sequence".to_owned(),
        Value::Object(_) => "a map".to_owned(),
    };
    DecodeError { path: path(at), problem: format!("invalid type: {found}, expected {expected}") }
}

fn path(at: Option<&Step>) -> String {
    at.map_or_else(|| ".".to_owned(), Step::to_string)
}

fn step<'a>(at: Option<&'a Step<'a>>, key: &'a str) -> Step<'a> {
    match at {
        Some(parent) => Step::Field(parent, key),
        None => Step::RootField(key),
    }
}

/// Where the unknown fields the walk drops are reported, if anywhere.
struct Unknown<'a>(Option<&'a mut Vec<String>>);

impl Unknown<'_> {
    fn report(&mut self, at: &Step) {
        if let Some(found) = &mut self.0 {
            found.push(at.to_string());
        }
    }
}

/// Where a walk is: a chain of steps back to the root, turned into text only for the fields
/// reported (the walk visits every field of every request body).
enum Step<'a> {
    Field(&'a Step<'a>, &'a str),
    RootField(&'a str),
    Item(&'a Step<'a>, usize),
}

impl std::fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::RootField(name) => f.write_str(name),
            Step::Field(parent, name) => write!(f, "{parent}.{name}"),
            Step::Item(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    /// xorshift64*: reproducible objects without a dependency.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }

        fn pick(&mut self, values: &[Value]) -> Value {
            values[self.below(values.len() as u64) as usize].clone()
        }
    }

    /// A value for node `index`: mostly of the node's form, sometimes of any other JSON type,
    /// with fields left out, set to null, unknown, or of the wrong type or range.
    fn generate(tree: &FieldTree, index: usize, random: &mut Random, depth: u32) -> Value {
        let node = &tree.nodes[index];
        if random.chance(4) {
            return random.pick(&[Value::Null, json!(true), json!(3), json!(-2.5), json!("s"), json!([1]), json!({"k": "v"})]);
        }
        match node.form {
            Form::Struct => {
                let mut fields = Map::new();
                if depth < 6 {
                    for (name, &child) in &node.properties {
                        if random.chance(if depth < 3 { 40 } else { 15 }) {
                            let value = if random.chance(5) { Value::Null } else { generate(tree, child, random, depth + 1) };
                            fields.insert((*name).to_owned(), value);
                        }
                    }
                }
                if random.chance(10) {
                    fields.insert("bogus".into(), json!({"x": 1}));
                }
                Value::Object(fields)
            }
            Form::Map => {
                let child = node.any_property;
                Value::Object((0..random.below(3)).map(|i| (format!("k{i}"), child.map_or(json!(i), |c| generate(tree, c, random, depth + 1)))).collect())
            }
            Form::Array => match node.items {
                Some(child) if depth < 6 => Value::Array((0..random.below(3)).map(|_| generate(tree, child, random, depth + 1)).collect()),
                _ => json!([]),
            },
            Form::String => json!("s"),
            Form::Boolean => json!(random.chance(50)),
            Form::Int32 => random.pick(&[json!(0), json!(7), json!(-3), json!(2_147_483_647), json!(2_147_483_648_i64), json!(-2_147_483_649_i64), json!(7.0)]),
            Form::Int64 => random.pick(&[json!(0), json!(5), json!(1_i64 << 40), json!(u64::MAX), json!(-5), json!(1.5)]),
            Form::Number => random.pick(&[json!(1.5), json!(2), json!(-1)]),
            Form::Time | Form::MicroTime => random.pick(&[
                json!("2024-01-02T03:04:05Z"),
                json!("2024-01-02T03:04:05.123456Z"),
                json!("2024-01-02T03:04:05.123Z"),
                json!("2024-01-02T03:04:05+01:00"),
                json!("2024-01-02t03:04:05z"),
                json!("2016-12-31T23:59:60Z"),
                json!("2016-12-31T23:59:60.000000Z"),
                json!("2024-02-30T03:04:05Z"),
                json!("2024-13-02T03:04:05Z"),
                json!("yesterday"),
            ]),
            Form::IntOrString => random.pick(&[json!(5), json!("25%"), json!(1.5), json!(1_i64 << 40), json!("x")]),
            Form::Quantity => random.pick(&[json!("100m"), json!("1Gi"), json!(5), json!("")]),
            Form::Bytes => random.pick(&[json!("aGVsbG8="), json!("aGVsbG8"), json!("!!"), json!("")]),
            Form::Any => random.pick(&[json!({"a": [1, null, "b"]}), Value::Null, json!(5), json!("raw")]),
        }
    }

    /// The invariant: for every kind, on thousands of generated objects (valid and not), the
    /// walk admits what the typed round trip admits and produces the same value.
    #[test]
    fn decode_agrees_with_the_typed_round_trip_on_every_kind() {
        let tree = FieldTree::get();
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let (mut admitted, mut refused) = (0, 0);
        for resource in Registry::get().types() {
            let root = tree.root(&resource.definition).expect("every kind has a schema");
            for _ in 0..600 {
                let mut object = generate(tree, root, &mut random, 0);
                if let Value::Object(fields) = &mut object {
                    if random.chance(90) {
                        fields.insert("apiVersion".into(), resource.api_version().into());
                        fields.insert("kind".into(), resource.kind.into());
                    }
                }
                let typed = (resource.typed_round_trip)(object.clone());
                let walked = decode(resource, object.clone(), None);
                match (&typed, &walked) {
                    (Ok(typed), Ok(walked)) => {
                        assert_eq!(typed, walked, "{}: {object}", resource.kind);
                        admitted += 1;
                    }
                    (Err(_), Err(_)) => refused += 1,
                    _ => panic!("{}: {object}\ntyped: {typed:?}\nwalked: {walked:?}", resource.kind),
                }
            }
        }
        // Both outcomes are exercised, not just one.
        assert!(admitted > 1000 && refused > 1000, "admitted {admitted}, refused {refused}");
    }

    /// Strict field validation's findings for a well-typed object.
    fn unknown_fields(resource: &ResourceType, object: &Value) -> Vec<String> {
        let mut found = Vec::new();
        decode(resource, object.clone(), Some(&mut found)).expect("well typed");
        found
    }

    fn lookup(resource: &str) -> &'static ResourceType {
        Registry::get().lookup("apps", "v1", resource).expect("served")
    }

    #[test]
    fn unknown_fields_are_found_with_kubernetes_paths() {
        let object = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","labels":{"a":"b"}},
            "spec":{"replicas":1,"bogus":1,"template":{"metadata":{"annotations":{"k":"v"}},"spec":{"containers":[{"name":"c","image":"i","imagePolicy":"x"}]}}}});
        assert_eq!(unknown_fields(lookup("deployments"), &object), ["spec.bogus", "spec.template.spec.containers[0].imagePolicy"]);
    }

    #[test]
    fn maps_take_any_key_and_free_form_fields_anything() {
        // A map's values have the map's value schema: any key, but not any field inside.
        let object = json!({"spec": {"template": {"spec": {"nodeSelector": {"any": "x"}, "overhead": {"cpu": "1"},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "example.com/gpu": "2"}}, "env": [{"name": "A", "valueFrom": {"bogus": 1}}]}]}}}});
        assert_eq!(unknown_fields(lookup("deployments"), &object), ["spec.template.spec.containers[0].env[0].valueFrom.bogus"]);
        // A ControllerRevision's data is a RawExtension: whatever it holds is known.
        let revision = json!({"data": {"spec": {"anything": {"at": ["all"]}}}, "revision": 1, "bogus": true});
        assert_eq!(unknown_fields(lookup("controllerrevisions"), &revision), ["bogus"]);
    }

    #[test]
    fn decode_names_where_a_value_has_the_wrong_type() {
        let pods = Registry::get().lookup("", "v1", "pods").expect("pods are served");
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}, {"name": 5}]}});
        let error = decode(pods, pod, None).expect_err("a number is not a name");
        assert_eq!(error.to_string(), "spec.containers[1].name: invalid type: integer `5`, expected a string");
    }

    #[test]
    fn decode_normalises_in_place() {
        let pods = Registry::get().lookup("", "v1", "pods").expect("pods are served");
        let pod = json!({"metadata": {"name": "p", "labels": null, "creationTimestamp": "2024-01-02T04:04:05+01:00", "bogus": 1},
            "spec": {"containers": [{"image": "i", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}}], "nodeName": null}});
        let decoded = decode(pods, pod, None).expect("a pod");
        assert_eq!(decoded, json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {"containers": [{"name": "", "image": "i", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}}]}}));
    }
}
