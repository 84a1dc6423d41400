//! Discovery documents (`/api`, `/apis`, group-version resource lists) and `/version`.
//! Always the legacy (unaggregated) form, so clients never see a mix.

use serde_json::{json, Value};
use tugboat_api::{Registry, ResourceType};

const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group(name: &str) -> Value {
    let versions: Vec<Value> = Registry::get()
        .group_versions()
        .iter()
        .filter(|(g, _)| *g == name)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

pub fn api_group_list() -> Value {
    let mut names: Vec<&str> = Vec::new();
    for &(g, _) in Registry::get().group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    let mut groups: Vec<Value> = names.into_iter().map(group).collect();
    groups.push(crate::agent_proxy::metrics_group());
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(name: &str) -> Option<Value> {
    let mut doc = group(name);
    if doc["versions"].as_array().is_none_or(Vec::is_empty) {
        return None;
    }
    doc["kind"] = "APIGroup".into();
    doc["apiVersion"] = "v1".into();
    Some(doc)
}

pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for t in Registry::get().types().iter().filter(|t| t.group == group && t.version == version) {
        resources.push(resource_entry(t));
        if t.subresources.status {
            resources.push(subresource(t, "status", t.kind, None, &["get", "patch", "update"]));
        }
        if t.subresources.scale {
            resources.push(subresource(t, "scale", "Scale", Some(("autoscaling", "v1")), &["get", "patch", "update"]));
        }
        if t.group.is_empty() && t.kind == "Pod" {
            resources.push(subresource(t, "binding", "Binding", None, &["create"]));
            resources.push(subresource(t, "log", "Pod", None, &["get"]));
            for (name, kind) in [("exec", "PodExecOptions"), ("attach", "PodAttachOptions"), ("portforward", "PodPortForwardOptions")] {
                resources.push(subresource(t, name, kind, None, &["create", "get"]));
            }
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn resource_entry(t: &ResourceType) -> Value {
    let mut entry = json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": VERBS,
    });
    if !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        entry["categories"] = json!(t.categories);
    }
    entry
}

fn subresource(t: &ResourceType, name: &str, kind: &str, group_version: Option<(&str, &str)>, verbs: &[&str]) -> Value {
    let mut entry = json!({
        "name": format!("{}/{name}", t.plural),
        "singularName": "",
        "namespaced": t.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if let Some((g, v)) = group_version {
        entry["group"] = g.into();
        entry["version"] = v.into();
    }
    entry
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": concat!("v1.32.0+tugboat-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_name_subresources() {
        let apps = resource_list("apps", "v1");
        let names: Vec<&str> = apps["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"deployments") && names.contains(&"deployments/scale") && names.contains(&"deployments/status"));
        let scale = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!((scale["group"].as_str(), scale["kind"].as_str()), (Some("autoscaling"), Some("Scale")));
        let groups = api_group_list();
        assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "rbac.authorization.k8s.io"));
        assert!(api_group("nope").is_none());
    }
}
