//! Parsing a request's URL into what it addresses and its query options.

use std::collections::HashMap;
use tugboat_api::{Registry, ResourceType};

use crate::error::{ApiError, ApiResult};

/// What an API path names.
pub enum Target {
    /// `/api/v1`, `/apis/apps/v1`: the group-version's resource list.
    GroupVersion { group: String, version: String },
    /// A collection, an object, or an object's subresource.
    Resource(ResourcePath),
}

#[derive(Clone)]
pub struct ResourcePath {
    pub resource: &'static ResourceType,
    /// The namespace from the URL (`None` for cluster-scoped kinds and all-namespace requests).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...`; `None` if the path is not an API path
/// of a served group-version or resource.
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let registry = Registry::get();
    if !registry.serves(group, version) {
        return None;
    }
    let lookup = |plural: &str| registry.lookup(group, version, plural);
    let path = |resource: &'static ResourceType, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Some(Target::Resource(ResourcePath {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
        }))
    };
    match rest {
        [] => Some(Target::GroupVersion { group: group.into(), version: version.into() }),
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|r| r.namespaced) => {
            let resource = lookup(plural)?;
            match tail {
                [] => path(resource, Some(ns), None, None),
                [name] => path(resource, Some(ns), Some(name), None),
                [name, sub] => path(resource, Some(ns), Some(name), Some(sub)),
                _ => None,
            }
        }
        [plural, tail @ ..] => {
            let resource = lookup(plural)?;
            match tail {
                [] => path(resource, None, None, None),
                [name] if !resource.namespaced || *plural == "namespaces" => path(resource, None, Some(name), None),
                [name, sub] if !resource.namespaced => path(resource, None, Some(name), Some(sub)),
                _ => None,
            }
        }
    }
}

/// The query string as a map; repeated keys keep their last value.
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        Ok(Self(pairs.into_iter().collect()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn integer(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .map(|v| v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("{key}: invalid value {v:?}: must be an integer"))))
            .transpose()
    }

    /// `dryRun=All`: validate and answer, store nothing.
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!("dryRun: unsupported value {other:?}: supported values: \"All\""))),
        }
    }

    /// `fieldValidation`: Strict, Warn (the default) or Ignore.
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: invalid value {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match parse_path(path) {
            Some(Target::Resource(r)) => r,
            _ => panic!("{path} did not parse as a resource path"),
        }
    }

    #[test]
    fn paths() {
        let r = resource("/apis/apps/v1/namespaces/default/deployments/web/scale");
        assert_eq!((r.resource.plural, r.namespace.as_deref(), r.name.as_deref(), r.subresource.as_deref()),
                   ("deployments", Some("default"), Some("web"), Some("scale")));
        let r = resource("/api/v1/pods");
        assert_eq!((r.resource.plural, r.namespace, r.name), ("pods", None, None));
        let r = resource("/api/v1/namespaces/kube-system");
        assert_eq!((r.resource.plural, r.name.as_deref()), ("namespaces", Some("kube-system")));
        let r = resource("/api/v1/namespaces/ns1/status");
        assert_eq!((r.resource.plural, r.name.as_deref(), r.subresource.as_deref()), ("namespaces", Some("ns1"), Some("status")));
        let r = resource("/api/v1/nodes/n1/status");
        assert_eq!((r.name.as_deref(), r.subresource.as_deref()), (Some("n1"), Some("status")));
        assert!(matches!(parse_path("/apis/apps/v1"), Some(Target::GroupVersion { .. })));
        assert!(parse_path("/apis/nope/v1/things").is_none());
        assert!(parse_path("/api/v1/bogus").is_none());
        assert!(parse_path("/api/v1/pods/x").is_none(), "namespaced kinds need a namespace for one object");
    }
}
