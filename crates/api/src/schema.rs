//! Schemas of the served kinds, generated from the k8s-openapi types: the OpenAPI v3 documents
//! (`/openapi/v3`), strict field validation, and the per-field metadata strategic merge patch
//! needs. All three read one set of definitions, built once.

use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use crate::patch_strategies::patch_strategy;
use crate::registry::{Registry, ResourceType};
use tugboat_patch::{FieldStrategy, PatchMeta};

const REF_PREFIX: &str = "#/components/schemas/";

/// The component schemas of every served kind, keyed by OpenAPI definition name, carrying the
/// Kubernetes extensions kubectl reads (`x-kubernetes-group-version-kind`,
/// `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`).
pub struct Definitions {
    /// Hashed: the unknown-field walk of every request body resolves a definition name per
    /// nested object, and the names share long prefixes (`io.k8s.api.core.v1.`) that make an
    /// ordered map's comparisons slow.
    pub(crate) schemas: HashMap<String, Value>,
}

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(Definitions::build);

impl Definitions {
    pub fn get() -> &'static Definitions {
        &DEFINITIONS
    }

    fn build() -> Self {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        let registry = Registry::get();
        for t in registry.types() {
            t.schema(&mut generator);
        }
        generator.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
        generator.subschema_for::<k8s_openapi::api::core::v1::Binding>();
        generator.subschema_for::<meta::Status>();
        generator.subschema_for::<meta::DeleteOptions>();
        generator.subschema_for::<meta::WatchEvent<()>>();
        let mut schemas = generator.take_definitions(true);

        let gvk = |group: &str, version: &str, kind: &str| json!([{"group": group, "version": version, "kind": kind}]);
        for t in registry.types() {
            if let Some(Value::Object(schema)) = schemas.get_mut(&t.definition) {
                schema.insert("x-kubernetes-group-version-kind".into(), gvk(t.group, t.version, t.kind));
            }
            let list = json!({
                "description": format!("{} is a list of {}.", t.list_kind, t.kind),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                    "metadata": {"allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}]},
                    "items": {"type": "array", "items": {"$ref": format!("{REF_PREFIX}{}", t.definition)}},
                },
                "x-kubernetes-group-version-kind": gvk(t.group, t.version, t.list_kind),
            });
            schemas.insert(list_definition(t), list);
        }
        for (name, kind, group, version) in [
            ("io.k8s.api.autoscaling.v1.Scale", "Scale", "autoscaling", "v1"),
            ("io.k8s.api.core.v1.Binding", "Binding", "", "v1"),
            ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "Status", "", "v1"),
        ] {
            if let Some(Value::Object(schema)) = schemas.get_mut(name) {
                schema.insert("x-kubernetes-group-version-kind".into(), gvk(group, version, kind));
            }
        }
        for (definition, schema) in schemas.iter_mut() {
            let Some(Value::Object(properties)) = schema.get_mut("properties") else { continue };
            for (field, property) in properties.iter_mut() {
                let (Some((strategy, merge_key)), Value::Object(property)) = (patch_strategy(definition, field), property)
                else {
                    continue;
                };
                property.insert("x-kubernetes-patch-strategy".into(), strategy.into());
                if let Some(key) = merge_key {
                    property.insert("x-kubernetes-patch-merge-key".into(), key.into());
                }
            }
        }
        ensure_ref_targets_exist(&schemas);
        Self { schemas: schemas.into_iter().collect() }
    }

    pub fn schema(&self, definition: &str) -> Option<&Value> {
        self.schemas.get(definition)
    }

    /// The node for a definition, for walking an object alongside its schema.
    pub fn node(&'static self, definition: &str) -> Option<SchemaNode> {
        self.schemas.get_key_value(definition).map(|(name, schema)| SchemaNode { definition: Some(name.as_str()), schema })
    }

    pub(crate) fn resolve(&'static self, schema: &'static Value) -> SchemaNode {
        match reference(schema) {
            Some(name) => match self.schemas.get_key_value(name) {
                Some((name, target)) => SchemaNode { definition: Some(name.as_str()), schema: target },
                None => SchemaNode { definition: None, schema: &Value::Null },
            },
            None => SchemaNode { definition: None, schema },
        }
    }
}

fn list_definition(t: &ResourceType) -> String {
    format!("{}List", t.definition)
}

/// The definition a schema points at, through `$ref` or a one-element `allOf`.
fn reference(schema: &Value) -> Option<&str> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(REF_PREFIX);
    }
    match schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) => reference(only),
        _ => None,
    }
}

fn ensure_ref_targets_exist(schemas: &Map<String, Value>) {
    if cfg!(debug_assertions) {
        let mut refs = BTreeSet::new();
        for schema in schemas.values() {
            collect_refs(schema, &mut refs);
        }
        for r in refs {
            debug_assert!(schemas.contains_key(&r), "dangling schema reference {r}");
        }
    }
}

fn collect_refs(schema: &Value, refs: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(REF_PREFIX)) {
                refs.insert(r.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// A position in the schema tree: a schema and, if it is a named definition, its name.
#[derive(Clone, Copy)]
pub struct SchemaNode {
    pub(crate) definition: Option<&'static str>,
    pub(crate) schema: &'static Value,
}

impl SchemaNode {
    fn definitions() -> &'static Definitions {
        Definitions::get()
    }

    /// The schema of property `name`, unresolved.
    fn property(&self, name: &str) -> Option<&'static Value> {
        self.schema.get("properties").and_then(|p| p.get(name))
    }

    pub(crate) fn additional_properties(&self) -> Option<&'static Value> {
        self.schema.get("additionalProperties").filter(|v| v.is_object())
    }

    pub(crate) fn items(&self) -> Option<SchemaNode> {
        self.schema.get("items").map(|items| Self::definitions().resolve(items))
    }

    /// Free-form objects (RawExtension, `x-kubernetes-preserve-unknown-fields`, untyped maps).
    pub(crate) fn is_open(&self) -> bool {
        self.schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
            || (self.schema.get("properties").is_none() && self.additional_properties().is_none())
    }

    /// The node describing the value of field `name` (for maps: of any key).
    fn child(&self, name: &str) -> Option<SchemaNode> {
        let definitions = Self::definitions();
        if let Some(property) = self.property(name) {
            return Some(definitions.resolve(property));
        }
        self.additional_properties().map(|schema| definitions.resolve(schema))
    }
}

impl PatchMeta for SchemaNode {
    fn field(&self, name: &str) -> (FieldStrategy, Option<Self>) {
        let strategy = self
            .definition
            .and_then(|d| patch_strategy(d, name))
            .map(|(strategy, merge_key)| FieldStrategy {
                merge: strategy.split(',').any(|s| s == "merge"),
                retain_keys: strategy.split(',').any(|s| s == "retainKeys"),
                merge_key: merge_key.map(str::to_owned),
            })
            .unwrap_or_default();
        let child = self.child(name).map(|node| node.items().unwrap_or(node));
        (strategy, child)
    }
}

/// The patch metadata of a kind, for [`tugboat_patch::strategic_merge_patch`].
pub fn patch_meta(resource: &ResourceType) -> Option<SchemaNode> {
    Definitions::get().node(&resource.definition)
}

/// `GET /openapi/v3`: the index of group-version documents, each URL carrying a content hash
/// so clients cache it.
pub fn openapi_v3_index() -> Value {
    let mut paths = Map::new();
    for &(group, version) in Registry::get().group_versions() {
        let path = group_version_path(group, version);
        let hash = openapi_v3_document(group, version).map(|d| d.hash.as_str()).unwrap_or_default();
        paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}));
    }
    json!({"paths": paths})
}

/// `api/v1` or `apis/apps/v1`.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// One serialized group-version OpenAPI v3 document and its content hash.
pub struct OpenApiDocument {
    pub json: Vec<u8>,
    pub hash: String,
}

static DOCUMENTS: LazyLock<Vec<((&'static str, &'static str), OpenApiDocument)>> = LazyLock::new(|| {
    Registry::get()
        .group_versions()
        .iter()
        .map(|&(group, version)| {
            let json = serde_json::to_vec(&build_document(group, version)).unwrap_or_default();
            let hash = format!("{:016X}", fnv1a(&json));
            ((group, version), OpenApiDocument { json, hash })
        })
        .collect()
});

/// The OpenAPI v3 document of one group-version (`/openapi/v3/apis/apps/v1`).
pub fn openapi_v3_document(group: &str, version: &str) -> Option<&'static OpenApiDocument> {
    DOCUMENTS.iter().find(|((g, v), _)| *g == group && *v == version).map(|(_, d)| d)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn build_document(group: &str, version: &str) -> Value {
    let definitions = Definitions::get();
    let mut paths = Map::new();
    let mut roots = BTreeSet::from([
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent".to_string(),
    ]);
    let base = format!("/{}", group_version_path(group, version));
    for t in Registry::get().types().iter().filter(|t| t.group == group && t.version == version) {
        roots.insert(t.definition.clone());
        roots.insert(list_definition(t));
        let collection = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{base}/{}", t.plural)
        };
        let item = format!("{collection}/{{name}}");
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let object_ref = format!("{REF_PREFIX}{}", t.definition);
        let list_ref = format!("{REF_PREFIX}{}", list_definition(t));
        paths.insert(collection.clone(), json!({
            "get": operation(t, "list", &gvk, &list_ref, None),
            "post": operation(t, "post", &gvk, &object_ref, Some(&object_ref)),
            "delete": operation(t, "deletecollection", &gvk, &format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.Status"), None),
            "parameters": path_parameters(t.namespaced, false),
        }));
        paths.insert(item.clone(), item_operations(t, &gvk, &object_ref, t.namespaced));
        if t.subresources.status {
            paths.insert(format!("{item}/status"), item_operations(t, &gvk, &object_ref, t.namespaced));
        }
        if t.subresources.scale {
            let scale_gvk = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
            let scale_ref = format!("{REF_PREFIX}io.k8s.api.autoscaling.v1.Scale");
            paths.insert(format!("{item}/scale"), item_operations(t, &scale_gvk, &scale_ref, t.namespaced));
            roots.insert("io.k8s.api.autoscaling.v1.Scale".into());
        }
        if t.namespaced {
            paths.insert(format!("{base}/{}", t.plural), json!({
                "get": operation(t, "list", &gvk, &list_ref, None),
                "parameters": [],
            }));
        }
    }
    let mut reachable = BTreeSet::new();
    let mut pending: Vec<String> = roots.into_iter().collect();
    while let Some(name) = pending.pop() {
        if !reachable.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = definitions.schema(&name) {
            let mut refs = BTreeSet::new();
            collect_refs(schema, &mut refs);
            pending.extend(refs.into_iter().filter(|r| !reachable.contains(r)));
        }
    }
    let schemas: Map<String, Value> = reachable
        .into_iter()
        .filter_map(|name| definitions.schema(&name).map(|s| (name, s.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn item_operations(t: &ResourceType, gvk: &Value, object_ref: &str, namespaced: bool) -> Value {
    json!({
        "get": operation(t, "get", gvk, object_ref, None),
        "put": operation(t, "put", gvk, object_ref, Some(object_ref)),
        "patch": operation(t, "patch", gvk, object_ref, Some("patch")),
        "delete": operation(t, "delete", gvk, &format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.Status"), None),
        "parameters": path_parameters(namespaced, true),
    })
}

fn path_parameters(namespaced: bool, named: bool) -> Value {
    let mut parameters = Vec::new();
    if named {
        parameters.push(json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    if namespaced {
        parameters.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    Value::Array(parameters)
}

/// One operation. Writes list the `fieldValidation` parameter: that is how kubectl learns the
/// server validates fields itself and skips its own client-side validation.
fn operation(t: &ResourceType, action: &str, gvk: &Value, response_ref: &str, body: Option<&str>) -> Value {
    let query = |name: &str, kind: &str| json!({"name": name, "in": "query", "schema": {"type": kind, "uniqueItems": true}});
    let mut parameters = vec![query("pretty", "string")];
    match action {
        "list" => {
            for (name, kind) in [("allowWatchBookmarks", "boolean"), ("continue", "string"), ("fieldSelector", "string"),
                ("labelSelector", "string"), ("limit", "integer"), ("resourceVersion", "string"),
                ("resourceVersionMatch", "string"), ("sendInitialEvents", "boolean"), ("timeoutSeconds", "integer"),
                ("watch", "boolean")]
            {
                parameters.push(query(name, kind));
            }
        }
        "post" | "put" | "patch" => {
            for name in ["dryRun", "fieldManager", "fieldValidation"] {
                parameters.push(query(name, "string"));
            }
            if action == "patch" {
                parameters.push(query("force", "boolean"));
            }
        }
        _ => {}
    }
    let mut op = json!({
        "operationId": format!("{action}{}", t.kind),
        "tags": [t.group_resource()],
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": response_ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    });
    if let Some(body) = body {
        let content = if body == "patch" {
            let patch = json!({"schema": {"type": "object"}});
            json!({
                "application/json-patch+json": patch, "application/merge-patch+json": patch,
                "application/strategic-merge-patch+json": patch, "application/apply-patch+yaml": patch,
            })
        } else {
            json!({"application/json": {"schema": {"$ref": body}}})
        };
        op["requestBody"] = json!({"required": true, "content": content});
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceType {
        Registry::get().lookup("apps", "v1", "deployments").unwrap()
    }

    #[test]
    fn patch_meta_follows_refs_and_strategies() {
        let node = patch_meta(deployments()).unwrap();
        let (_, spec) = node.field("spec");
        let (_, template) = spec.unwrap().field("template");
        let (_, pod_spec) = template.unwrap().field("spec");
        let (strategy, container) = pod_spec.unwrap().field("containers");
        if patch_strategy("io.k8s.api.core.v1.PodSpec", "containers").is_some() {
            assert!(strategy.merge);
            assert_eq!(strategy.merge_key.as_deref(), Some("name"));
        }
        let (_, image) = container.unwrap().field("image");
        assert!(image.is_some());
    }

    #[test]
    fn documents_carry_what_kubectl_looks_for() {
        let index = openapi_v3_index();
        assert!(index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap().starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc: Value = serde_json::from_slice(&openapi_v3_document("apps", "v1").unwrap().json).unwrap();
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentStrategy"].is_object());
    }
}
