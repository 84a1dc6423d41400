//! Where objects live in the store: `/registry/<group>/<resource>/[<namespace>/]<name>`, with
//! `core` standing for the empty core group.

use tugboat_api::ResourceType;

pub const ROOT: &str = "/registry/";

/// The key segment of a resource's group: `core` stands for the empty core group.
fn group_segment(resource: &ResourceType) -> &'static str {
    if resource.group.is_empty() {
        "core"
    } else {
        resource.group
    }
}

/// `/registry/apps/deployments/`.
pub fn resource_prefix(resource: &ResourceType) -> String {
    format!("{ROOT}{}/{}/", group_segment(resource), resource.plural)
}

/// The prefix of every object a list or watch covers: one namespace, or all.
pub fn list_prefix(resource: &ResourceType, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if resource.namespaced => format!("{}{ns}/", resource_prefix(resource)),
        _ => resource_prefix(resource),
    }
}

/// Built by concatenation: every read and write computes one, and formatting (twice, through
/// the resource prefix) cost a write more than its namespace check.
pub fn object_key(resource: &ResourceType, namespace: &str, name: &str) -> String {
    let group = group_segment(resource);
    let parts: [&str; 8] = if resource.namespaced {
        [ROOT, group, "/", resource.plural, "/", namespace, "/", name]
    } else {
        [ROOT, group, "/", resource.plural, "/", name, "", ""]
    };
    parts.concat()
}

/// The resource prefix (`/registry/apps/deployments/`) of a key, if it is an object key.
pub fn resource_prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(ROOT)?;
    let group_end = rest.find('/')?;
    let resource_end = rest[group_end + 1..].find('/')?;
    Some(&key[..ROOT.len() + group_end + 1 + resource_end + 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tugboat_api::Registry;

    #[test]
    fn keys_round_trip_to_their_prefix() {
        let deployments = Registry::get().lookup("apps", "v1", "deployments").unwrap();
        let key = object_key(deployments, "default", "web");
        assert_eq!(key, "/registry/apps/deployments/default/web");
        assert_eq!(resource_prefix_of(&key), Some("/registry/apps/deployments/"));
        let nodes = Registry::get().lookup("", "v1", "nodes").unwrap();
        assert_eq!(object_key(nodes, "", "n1"), "/registry/core/nodes/n1");
        assert_eq!(resource_prefix_of("/tugboat-meta/x"), None);
        assert_eq!(list_prefix(deployments, Some("a")), "/registry/apps/deployments/a/");
    }
}
