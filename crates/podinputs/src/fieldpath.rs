//! The downward API: a pod's fields and a container's resources as text, in kubelet's format
//! (pkg/fieldpath and pkg/api/v1/resource).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use crate::quantity::Quantity;
use crate::PodFacts;

/// `metadata.labels['key']` → ("metadata.labels", "key"), as fieldpath.SplitMaybeSubscriptedPath.
pub(crate) fn split_subscripted(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (field, key) = inner.split_once("['")?;
    (!field.is_empty()).then_some((field, key))
}

/// A pod's metadata field as text (fieldpath.ExtractFieldPathAsString). The error is kubelet's.
pub(crate) fn metadata_field(pod: &Pod, path: &str) -> Result<String, String> {
    let metadata = &pod.metadata;
    if let Some((field, key)) = split_subscripted(path) {
        return match field {
            "metadata.annotations" => Ok(metadata.annotations.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()),
            "metadata.labels" => Ok(metadata.labels.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()),
            _ => Err(format!("fieldPath {path:?} does not support subscript")),
        };
    }
    match path {
        "metadata.annotations" => Ok(format_map(metadata.annotations.as_ref())),
        "metadata.labels" => Ok(format_map(metadata.labels.as_ref())),
        "metadata.name" => Ok(metadata.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(metadata.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(metadata.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {path}")),
    }
}

/// A field for an environment variable (kubelet's podFieldSelectorRuntimeValue): the metadata
/// fields plus what only the node knows (its name and IPs, the pod's IPs).
pub(crate) fn env_field(pod: &Pod, facts: &PodFacts, api_version: Option<&str>, path: &str) -> Result<String, String> {
    let version = api_version.filter(|v| !v.is_empty()).unwrap_or("v1");
    if version != "v1" {
        return Err(format!("unsupported pod version: {version}"));
    }
    // "spec.host" is what old v1 clients sent for spec.nodeName.
    let path = if path == "spec.host" { "spec.nodeName" } else { path };
    match path {
        "spec.nodeName" => Ok(facts.node_name.clone()),
        "spec.serviceAccountName" => Ok(facts.service_account_name.clone()),
        "status.hostIP" | "status.hostIPs" => Ok(facts.host_ip.clone()),
        "status.podIP" => Ok(facts.pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => Ok(facts.pod_ips.join(",")),
        _ => metadata_field(pod, path),
    }
}

/// `key="value"` lines sorted by key, without a final newline (fieldpath.FormatMap: Go's `%q`).
pub(crate) fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    // BTreeMap<String, _> iterates in byte order, the order Go's sort.Strings gives.
    map.into_iter().flatten().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// A string quoted as Go's strconv.Quote: printable characters as they are, `"` and `\` escaped,
/// the rest as `\n`-style, `\x`, `\u` or `\U` escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's unicode.IsPrint, closely enough for annotation values: graphic characters and the ASCII
/// space, not controls, other spaces, format characters, private use or noncharacters.
fn go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let code = c as u32;
    let format_or_private = matches!(code,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF
        | 0xE0000..=0xE007F);
    let noncharacter = (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE;
    !format_or_private && !noncharacter
}

/// A container's resource as text (resource.ExtractContainerResourceValue after
/// MergeContainerResourceLimits): a missing or zero limit is the node's allocatable amount; the
/// value is divided by the divisor ("1" when unset or zero) and rounded up.
pub(crate) fn resource_field(selector: &ResourceFieldSelector, container: &Container, facts: &PodFacts) -> Result<String, String> {
    let resources = container.resources.as_ref();
    let quantity = |which: &str, name: &str| -> Result<Option<Quantity>, String> {
        let map = resources.and_then(|r| if which == "limits" { r.limits.as_ref() } else { r.requests.as_ref() });
        match map.and_then(|m| m.get(name)) {
            Some(q) => Quantity::parse(&q.0).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    };
    let divisor = match &selector.divisor {
        Some(d) => Quantity::parse(&d.0).map_err(|e| e.to_string())?,
        None => Quantity::parse("1").map_err(|e| e.to_string())?,
    };
    let divisor = if divisor.is_zero() { Quantity::parse("1").map_err(|e| e.to_string())? } else { divisor };
    let (which, name) = selector
        .resource
        .split_once('.')
        .filter(|(which, _)| matches!(*which, "limits" | "requests"))
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    let value = quantity(which, name)?.filter(|q| !(which == "limits" && q.is_zero()));
    let overflow = || format!("the value of {} is out of range", selector.resource);
    match name {
        "cpu" => {
            let millis = match value {
                Some(q) => q.milli_value().ok_or_else(overflow)?,
                None if which == "limits" => facts.node_allocatable_cpu_millis,
                None => 0,
            };
            Ok(div_ceil(millis, divisor.milli_value().ok_or_else(overflow)?).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match value {
                Some(q) => q.value().ok_or_else(overflow)?,
                None if which == "limits" && name == "memory" => facts.node_allocatable_memory_bytes,
                // The node's allocatable ephemeral storage is not known here (see the crate docs).
                None => 0,
            };
            Ok(div_ceil(bytes, divisor.value().ok_or_else(overflow)?).to_string())
        }
        // Hugepages have no node fallback in kubelet either.
        n if n.starts_with("hugepages-") => {
            let bytes = match value {
                Some(q) => q.value().ok_or_else(overflow)?,
                None => 0,
            };
            Ok(div_ceil(bytes, divisor.value().ok_or_else(overflow)?).to_string())
        }
        _ => Err(format!("unsupported container resource : {}", selector.resource)),
    }
}

/// Ceiling division; a non-positive divisor (which validation forbids) counts as 1.
fn div_ceil(value: i64, divisor: i64) -> i64 {
    if divisor <= 0 {
        return value;
    }
    let quotient = value / divisor;
    if value % divisor > 0 {
        quotient + 1
    } else {
        quotient
    }
}

/// The pod's container of that name, regular containers first, then init containers.
pub(crate) fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                "labels": {"b": "2", "a": "1", "app.kubernetes.io/name": "web"},
                "annotations": {"note": "say \"hi\"\n\tback\\slash", "unicode": "héllo\u{200b}", "bell": "\u{7}"}},
            "spec": {"containers": [{"name": "app"}], "initContainers": [{"name": "init"}]}
        }))
        .expect("a valid pod")
    }

    #[test]
    fn labels_and_annotations_are_sorted_quoted_lines() {
        let pod = pod();
        assert_eq!(metadata_field(&pod, "metadata.labels").as_deref(), Ok("a=\"1\"\napp.kubernetes.io/name=\"web\"\nb=\"2\""));
        assert_eq!(
            metadata_field(&pod, "metadata.annotations").as_deref(),
            Ok("bell=\"\\a\"\nnote=\"say \\\"hi\\\"\\n\\tback\\\\slash\"\nunicode=\"héllo\\u200b\"")
        );
        assert_eq!(metadata_field(&Pod::default(), "metadata.labels").as_deref(), Ok(""));
    }

    #[test]
    fn metadata_fields_and_subscripts() {
        let pod = pod();
        assert_eq!(metadata_field(&pod, "metadata.name").as_deref(), Ok("web"));
        assert_eq!(metadata_field(&pod, "metadata.namespace").as_deref(), Ok("prod"));
        assert_eq!(metadata_field(&pod, "metadata.uid").as_deref(), Ok("u-1"));
        assert_eq!(metadata_field(&pod, "metadata.labels['app.kubernetes.io/name']").as_deref(), Ok("web"));
        assert_eq!(metadata_field(&pod, "metadata.labels['missing']").as_deref(), Ok(""));
        assert_eq!(metadata_field(&pod, "metadata.annotations['bell']").as_deref(), Ok("\u{7}"));
        assert_eq!(metadata_field(&pod, "metadata.name['x']"), Err("fieldPath \"metadata.name['x']\" does not support subscript".into()));
        assert_eq!(metadata_field(&pod, "spec.nodeName"), Err("unsupported fieldPath: spec.nodeName".into()));
    }

    #[test]
    fn env_fields_include_what_the_node_knows() {
        let pod = pod();
        let facts = PodFacts {
            node_name: "n1".into(),
            host_ip: "10.0.0.1".into(),
            pod_ips: vec!["10.1.0.5".into(), "fd00::5".into()],
            service_account_name: "builder".into(),
            ..Default::default()
        };
        let field = |path| env_field(&pod, &facts, None, path);
        assert_eq!(field("spec.nodeName").as_deref(), Ok("n1"));
        assert_eq!(field("spec.host").as_deref(), Ok("n1"));
        assert_eq!(field("spec.serviceAccountName").as_deref(), Ok("builder"));
        assert_eq!(field("status.hostIP").as_deref(), Ok("10.0.0.1"));
        assert_eq!(field("status.hostIPs").as_deref(), Ok("10.0.0.1"));
        assert_eq!(field("status.podIP").as_deref(), Ok("10.1.0.5"));
        assert_eq!(field("status.podIPs").as_deref(), Ok("10.1.0.5,fd00::5"));
        assert_eq!(field("metadata.name").as_deref(), Ok("web"));
        assert_eq!(env_field(&pod, &facts, Some("v2"), "metadata.name"), Err("unsupported pod version: v2".into()));
        assert_eq!(env_field(&pod, &PodFacts::default(), None, "status.podIP").as_deref(), Ok(""));
    }

    fn container(limits: serde_json::Value, requests: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "app", "resources": {"limits": limits, "requests": requests}})).expect("a valid container")
    }

    fn selector(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector { resource: resource.into(), divisor: divisor.map(|d| Q(d.into())), container_name: None }
    }

    #[test]
    fn resources_round_up_to_the_divisor() {
        let facts = PodFacts { node_allocatable_cpu_millis: 4000, node_allocatable_memory_bytes: 8 << 30, ..Default::default() };
        let c = container(json!({"cpu": "250m", "memory": "100Mi", "ephemeral-storage": "1Gi"}), json!({"cpu": "1250m", "memory": "1000"}));
        let value = |resource, divisor| resource_field(&selector(resource, divisor), &c, &facts);
        assert_eq!(value("limits.cpu", None).as_deref(), Ok("1"), "250m rounds up to one CPU");
        assert_eq!(value("limits.cpu", Some("1m")).as_deref(), Ok("250"));
        assert_eq!(value("limits.cpu", Some("100m")).as_deref(), Ok("3"));
        assert_eq!(value("requests.cpu", None).as_deref(), Ok("2"));
        assert_eq!(value("requests.cpu", Some("0")).as_deref(), Ok("2"), "a zero divisor counts as 1");
        assert_eq!(value("limits.memory", None).as_deref(), Ok("104857600"));
        assert_eq!(value("limits.memory", Some("1Mi")).as_deref(), Ok("100"));
        assert_eq!(value("limits.memory", Some("1G")).as_deref(), Ok("1"));
        assert_eq!(value("requests.memory", Some("1k")).as_deref(), Ok("1"));
        assert_eq!(value("limits.ephemeral-storage", Some("1Mi")).as_deref(), Ok("1024"));
        assert_eq!(value("requests.ephemeral-storage", None).as_deref(), Ok("0"));
        assert_eq!(value("limits.gpu", None), Err("unsupported container resource : limits.gpu".into()));
        assert_eq!(value("cpu", None), Err("unsupported container resource : cpu".into()));
    }

    #[test]
    fn missing_limits_fall_back_to_node_allocatable() {
        let facts = PodFacts { node_allocatable_cpu_millis: 3500, node_allocatable_memory_bytes: 2 << 30, ..Default::default() };
        let c = container(json!({"cpu": "0"}), json!({}));
        assert_eq!(resource_field(&selector("limits.cpu", None), &c, &facts).as_deref(), Ok("4"));
        assert_eq!(resource_field(&selector("limits.cpu", Some("1m")), &c, &facts).as_deref(), Ok("3500"));
        assert_eq!(resource_field(&selector("limits.memory", Some("1Mi")), &c, &facts).as_deref(), Ok("2048"));
        assert_eq!(resource_field(&selector("requests.cpu", Some("1m")), &c, &facts).as_deref(), Ok("0"), "requests never fall back");
    }

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\u{0}b\u{7f}"), "\"a\\x00b\\x7f\"");
        assert_eq!(go_quote("nbsp\u{a0}"), "\"nbsp\\u00a0\"");
        assert_eq!(go_quote("日本"), "\"日本\"");
        assert_eq!(go_quote("\u{10ffff}"), "\"\\U0010ffff\"");
    }

    #[test]
    fn containers_are_found_among_init_containers_too() {
        let pod = pod();
        assert!(find_container(&pod, "app").is_some());
        assert!(find_container(&pod, "init").is_some());
        assert!(find_container(&pod, "other").is_none());
    }
}
