//! The registry of served kinds. Adding a kind is one declaration in [`declarations`]; every
//! generic piece (HTTP handlers, storage keys, discovery, OpenAPI, watch cache) reads from here.

use k8s_openapi::{ClusterResourceScope, ListableResource, NamespaceResourceScope, Resource};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::any::TypeId;
use std::sync::LazyLock;

use crate::tables::{self, TableSpec};
use crate::validation::FieldError;
use crate::{defaults, field_tree, validation};

/// Which of the standard subresources a kind serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subresources {
    /// `/status`: writes there change only `.status`; writes to the main resource never do.
    pub status: bool,
    /// `/scale` (autoscaling/v1 Scale over `.spec.replicas`).
    pub scale: bool,
}

/// One served resource type (a kind in one group-version).
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The URL path segment, e.g. `deployments`.
    pub plural: &'static str,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: Subresources,
    /// Kind-specific field selector paths, beyond `metadata.name` and `metadata.namespace`.
    pub field_selectors: &'static [&'static str],
    /// OpenAPI definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub definition: String,
    pub table: &'static TableSpec,
    /// Whether names must be DNS-1035 labels (services, namespaces) rather than DNS-1123 subdomains.
    pub name_rule: NameRule,
    /// Decoding through the kind's k8s-openapi type and back: what [`field_tree::decode`] must
    /// agree with.
    #[cfg(test)]
    pub(crate) typed_round_trip: fn(Value) -> Result<Value, serde_json::Error>,
    schema: fn(&mut SchemaGenerator) -> Schema,
    defaulter: fn(&mut Value),
    validator: fn(&Value) -> Vec<FieldError>,
    /// Rules on what an update may change: (current, next).
    update_validator: fn(&Value, &Value) -> Vec<FieldError>,
}

/// How `metadata.name` is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    /// RBAC names may contain ':' and more; Kubernetes only forbids path segments.
    PathSegment,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }

    /// `deployments.apps`, or `pods` for the core group.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Decodes `object` as this kind, as its k8s-openapi type would: rejects wrong types and
    /// brings the JSON into normal form (see [`field_tree::decode`]).
    pub fn decode(&self, object: Value) -> Result<Value, field_tree::DecodeError> {
        field_tree::decode(self, object, None)
    }

    /// Fills in the defaults Kubernetes applies on create and update.
    pub fn apply_defaults(&self, object: &mut Value) {
        (self.defaulter)(object)
    }

    /// Kind-specific validation (the generic metadata checks live in [`validation::validate_object`]).
    pub fn validate(&self, object: &Value) -> Vec<FieldError> {
        (self.validator)(object)
    }

    /// Kind-specific rules on an update of `current` into `next` (what may not change).
    pub fn validate_update(&self, current: &Value, next: &Value) -> Vec<FieldError> {
        (self.update_validator)(current, next)
    }

    /// Registers the kind's schema (and everything it references) with `generator`.
    pub fn schema(&self, generator: &mut SchemaGenerator) -> Schema {
        (self.schema)(generator)
    }

    /// Whether changes outside metadata and status bump `metadata.generation`.
    pub fn tracks_generation(&self) -> bool {
        self.subresources.status
    }
}

/// `apps/v1`, or `v1` for the core group.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Starts the declaration of a kind from its k8s-openapi type.
fn kind<T>() -> ResourceType
where
    T: Resource + ListableResource + JsonSchema + Serialize + DeserializeOwned + 'static,
{
    let namespaced = TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>();
    debug_assert!(namespaced || TypeId::of::<T::Scope>() == TypeId::of::<ClusterResourceScope>());
    ResourceType {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: T::LIST_KIND,
        plural: T::URL_PATH_SEGMENT,
        singular: T::KIND.to_ascii_lowercase(),
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: Subresources::default(),
        field_selectors: &[],
        definition: T::schema_name().into_owned(),
        table: &tables::DEFAULT,
        name_rule: NameRule::Dns1123Subdomain,
        #[cfg(test)]
        typed_round_trip: |value| serde_json::from_value::<T>(value).and_then(|typed| serde_json::to_value(typed)),
        schema: |generator| generator.subschema_for::<T>(),
        defaulter: |_| {},
        validator: |_| Vec::new(),
        update_validator: |_, _| Vec::new(),
    }
}

impl ResourceType {
    fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }
    /// Member of `kubectl get all`.
    fn in_all(mut self) -> Self {
        self.categories = &["all"];
        self
    }
    fn status(mut self) -> Self {
        self.subresources.status = true;
        self
    }
    fn scale(mut self) -> Self {
        self.subresources.scale = true;
        self
    }
    fn fields(mut self, paths: &'static [&'static str]) -> Self {
        self.field_selectors = paths;
        self
    }
    fn table(mut self, table: &'static TableSpec) -> Self {
        self.table = table;
        self
    }
    fn names(mut self, rule: NameRule) -> Self {
        self.name_rule = rule;
        self
    }
    fn defaults(mut self, defaulter: fn(&mut Value)) -> Self {
        self.defaulter = defaulter;
        self
    }
    fn validation(mut self, validator: fn(&Value) -> Vec<FieldError>) -> Self {
        self.validator = validator;
        self
    }
    fn update_validation(mut self, validator: fn(&Value, &Value) -> Vec<FieldError>) -> Self {
        self.update_validator = validator;
        self
    }
}

/// Every served kind, one declaration each.
fn declarations() -> Vec<ResourceType> {
    use k8s_openapi::api::{apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch};
    use k8s_openapi::api::{coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery};
    use k8s_openapi::api::{events::v1 as events, networking::v1 as networking, rbac::v1 as rbac};
    use k8s_openapi::api::scheduling::v1 as scheduling;
    use NameRule::*;
    vec![
        kind::<core::Namespace>().short(&["ns"]).status().names(Dns1123Label).fields(&["status.phase"])
            .table(&tables::NAMESPACE).defaults(defaults::namespace),
        kind::<core::Pod>().short(&["po"]).in_all().status()
            .fields(&["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"])
            .table(&tables::POD).defaults(defaults::pod).validation(validation::pod).update_validation(validation::pod_update),
        kind::<core::Service>().short(&["svc"]).in_all().status().names(Dns1035Label)
            .fields(&["spec.clusterIP", "spec.type"])
            .table(&tables::SERVICE).defaults(defaults::service).validation(validation::service),
        kind::<core::Endpoints>().short(&["ep"]).table(&tables::ENDPOINTS),
        kind::<core::ConfigMap>().short(&["cm"]).table(&tables::CONFIG_MAP),
        kind::<core::Secret>().fields(&["type"]).table(&tables::SECRET).defaults(defaults::secret),
        kind::<core::Node>().short(&["no"]).status().fields(&["spec.unschedulable"]).table(&tables::NODE),
        kind::<core::Event>().short(&["ev"])
            .fields(&["involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                      "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                      "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"])
            .table(&tables::EVENT),
        kind::<core::ServiceAccount>().short(&["sa"]).table(&tables::SERVICE_ACCOUNT),
        kind::<core::ReplicationController>().short(&["rc"]).in_all().status().scale()
            .fields(&["status.replicas"]).table(&tables::REPLICATION_CONTROLLER)
            .defaults(defaults::replication_controller).validation(validation::replication_controller),
        kind::<core::PersistentVolume>().short(&["pv"]).status().table(&tables::PERSISTENT_VOLUME),
        kind::<core::PersistentVolumeClaim>().short(&["pvc"]).status().table(&tables::PERSISTENT_VOLUME_CLAIM),
        kind::<core::ResourceQuota>().short(&["quota"]).status().table(&tables::RESOURCE_QUOTA),
        kind::<core::LimitRange>().short(&["limits"]),
        kind::<apps::Deployment>().short(&["deploy"]).in_all().status().scale()
            .table(&tables::DEPLOYMENT).defaults(defaults::deployment).validation(validation::deployment),
        kind::<apps::ReplicaSet>().short(&["rs"]).in_all().status().scale().fields(&["status.replicas"])
            .table(&tables::REPLICA_SET).defaults(defaults::replica_set).validation(validation::replica_set),
        kind::<apps::StatefulSet>().short(&["sts"]).in_all().status().scale()
            .table(&tables::STATEFUL_SET).defaults(defaults::stateful_set).validation(validation::stateful_set),
        kind::<apps::DaemonSet>().short(&["ds"]).in_all().status()
            .table(&tables::DAEMON_SET).defaults(defaults::daemon_set).validation(validation::daemon_set),
        kind::<apps::ControllerRevision>().table(&tables::CONTROLLER_REVISION),
        kind::<batch::Job>().in_all().status().fields(&["status.successful"])
            .table(&tables::JOB).defaults(defaults::job).validation(validation::job),
        kind::<batch::CronJob>().short(&["cj"]).in_all().status()
            .table(&tables::CRON_JOB).defaults(defaults::cron_job).validation(validation::cron_job),
        kind::<autoscaling::HorizontalPodAutoscaler>().short(&["hpa"]).in_all().status()
            .table(&tables::HORIZONTAL_POD_AUTOSCALER),
        kind::<coordination::Lease>().table(&tables::LEASE),
        kind::<discovery::EndpointSlice>().table(&tables::ENDPOINT_SLICE),
        kind::<networking::NetworkPolicy>().short(&["netpol"]).table(&tables::NETWORK_POLICY),
        kind::<rbac::Role>().names(PathSegment),
        kind::<rbac::RoleBinding>().names(PathSegment).table(&tables::ROLE_BINDING),
        kind::<rbac::ClusterRole>().names(PathSegment),
        kind::<rbac::ClusterRoleBinding>().names(PathSegment).table(&tables::ROLE_BINDING),
        kind::<events::Event>().short(&["ev"]).table(&tables::EVENTS_V1),
        kind::<scheduling::PriorityClass>().short(&["pc"]).table(&tables::PRIORITY_CLASS),
    ]
}

/// All served kinds, indexed for the lookups the API server makes on every request.
pub struct Registry {
    types: Vec<ResourceType>,
    /// Index into `types` by (group, version, plural): every request looks its resource up.
    /// Looked up on every request and by every write: a fast hasher.
    by_path: foldhash::HashMap<(&'static str, &'static str, &'static str), usize>,
    group_versions: Vec<(&'static str, &'static str)>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::of(declarations()));

impl Registry {
    fn of(types: Vec<ResourceType>) -> Self {
        let by_path = types.iter().enumerate().map(|(index, t)| ((t.group, t.version, t.plural), index)).collect();
        let mut group_versions = Vec::new();
        for t in &types {
            if !group_versions.contains(&(t.group, t.version)) {
                group_versions.push((t.group, t.version));
            }
        }
        Self { types, by_path, group_versions }
    }

    pub fn get() -> &'static Registry {
        &REGISTRY
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The resource served at `/apis/<group>/<version>/<plural>` (`group` empty for `/api/v1`).
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.by_path.get(&(group, version, plural)).map(|&index| &self.types[index])
    }

    /// The resource for a kind in an `apiVersion` (`apps/v1`, `v1`).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.kind == kind && t.api_version() == api_version)
    }

    /// Group-versions served, core first, in declaration order.
    pub fn group_versions(&self) -> &[(&'static str, &'static str)] {
        &self.group_versions
    }

    /// Whether `/apis/<group>/<version>` (`/api/v1` for the core group) is served.
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.group_versions.iter().any(|&(g, v)| g == group && v == version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_unique_and_consistent() {
        let registry = Registry::get();
        let mut seen = std::collections::HashSet::new();
        for t in registry.types() {
            assert!(seen.insert((t.group, t.version, t.plural)), "duplicate {}", t.group_resource());
            assert_eq!(registry.lookup(t.group, t.version, t.plural).map(|f| f.kind), Some(t.kind));
            assert!(t.definition.ends_with(t.kind), "{} has definition {}", t.kind, t.definition);
        }
        let pods = registry.lookup("", "v1", "pods").unwrap();
        assert!(pods.namespaced && pods.subresources.status);
        assert!(!registry.lookup("", "v1", "nodes").unwrap().namespaced);
        assert_eq!(registry.lookup("apps", "v1", "deployments").unwrap().short_names, ["deploy"]);
    }

    #[test]
    fn decode_rejects_wrong_types_and_drops_unknown_fields() {
        let cm = Registry::get().lookup("", "v1", "configmaps").unwrap();
        let ok = cm
            .decode(serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"},"bogus":1}))
            .unwrap();
        assert_eq!(ok["data"]["k"], "v");
        assert!(ok.get("bogus").is_none());
        assert!(cm.decode(serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","data":{"k":5}})).is_err());
    }
}
