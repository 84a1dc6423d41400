//! Validation: generic object metadata and the kind-specific rules Kubernetes enforces.
//!
//! The rules, field paths and messages follow kube-apiserver v1.32 (`pkg/apis/*/validation` and
//! apimachinery's validators), including how Go renders a bad value in a message: strings
//! quoted, numbers bare, maps and structs as Go source. Objects are validated after defaulting,
//! as kube-apiserver does, so a field defaulting always fills is reported as required when unset.
//! Fields of the wrong JSON type read as unset; decoding is what rejects them.

use crate::meta::Pointer;
use serde_json::{Map, Value};
use std::collections::HashSet;

use crate::defaults::VOLUME_SOURCES;
use crate::registry::{NameRule, ResourceType};
use crate::selector::LabelSelector;

/// One invalid field, reported as a `StatusCause` of a 422 Invalid response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`,
    /// `FieldValueTooLong`, `FieldValueForbidden`, `FieldValueNotFound`.
    pub reason: &'static str,
    /// JSON path such as `metadata.name` or `spec.template.spec.containers[0].image`.
    pub field: String,
    /// Human-readable, as Kubernetes words it (`Required value`, `Invalid value: "X": ...`).
    pub message: String,
}

/// Checks every object's metadata: name, generateName, namespace, labels, annotations, owner
/// references and finalizers. The kind's own rules are [`ResourceType::validate`]; the API
/// server runs both.
pub fn validate_object(resource: &ResourceType, object: &Value) -> Vec<FieldError> {
    let metadata = object.get("metadata").unwrap_or(&Value::Null);
    let mut errors = Vec::new();
    let generate_name = text(metadata, "generateName");
    if !generate_name.is_empty() {
        for message in name_problems(resource.name_rule, generate_name, true) {
            errors.push(invalid("metadata.generateName", &quoted(generate_name), &message));
        }
    }
    let name = text(metadata, "name");
    if name.is_empty() {
        // The API server fills the name in from a valid generateName before it validates; an
        // object checked before that is complete with the prefix alone.
        if generate_name.is_empty() {
            errors.push(required("metadata.name", "name or generateName is required"));
        }
    } else {
        for message in name_problems(resource.name_rule, name, false) {
            errors.push(invalid("metadata.name", &quoted(name), &message));
        }
    }
    let namespace = text(metadata, "namespace");
    if resource.namespaced {
        if namespace.is_empty() {
            errors.push(required("metadata.namespace", ""));
        } else {
            for message in dns1123_label(namespace) {
                errors.push(invalid("metadata.namespace", &quoted(namespace), &message));
            }
        }
    } else if !namespace.is_empty() {
        errors.push(forbidden("metadata.namespace", "not allowed on this type"));
    }
    errors.extend(nonnegative(metadata, "generation", "metadata.generation"));
    errors.extend(labels(metadata.get("labels"), "metadata.labels"));
    errors.extend(annotations(metadata.get("annotations"), "metadata.annotations"));
    errors.extend(owner_references(array(metadata, "ownerReferences")));
    for finalizer in array(metadata, "finalizers").iter().filter_map(Value::as_str) {
        for message in qualified_name(finalizer) {
            errors.push(invalid("metadata.finalizers", &quoted(finalizer), &message));
        }
    }
    errors
}

pub fn pod(object: &Value) -> Vec<FieldError> {
    pod_spec(field(object, "spec"), "spec", SpecContext::default())
}

/// Kubernetes' pod update rule: a pod's spec is fixed at creation except for container images,
/// a shorter activeDeadlineSeconds, added tolerations, a negative terminationGracePeriodSeconds
/// raised to 1, and removed scheduling gates. (The scheduler relies on it: what it counts of a
/// bound pod cannot change under it.)
pub fn pod_update(current: &Value, next: &Value) -> Vec<FieldError> {
    let (old, new) = (field(current, "spec"), field(next, "spec"));
    let mut errors = Vec::new();
    match (old.get("activeDeadlineSeconds").and_then(Value::as_i64), new.get("activeDeadlineSeconds").and_then(Value::as_i64)) {
        (Some(_), None) => errors.push(forbidden("spec.activeDeadlineSeconds", "must not update from a positive integer to nil value")),
        (Some(before), Some(after)) if after > before => {
            errors.push(invalid("spec.activeDeadlineSeconds", &after.to_string(), "must be less than or equal to previous value"))
        }
        _ => {}
    }
    let tolerations = array(new, "tolerations");
    if !array(old, "tolerations").iter().all(|kept| tolerations.contains(kept)) {
        errors.push(forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"));
    }
    let gates = array(old, "schedulingGates");
    if !array(new, "schedulingGates").iter().all(|gate| gates.contains(gate)) {
        errors.push(forbidden("spec.schedulingGates", "only deletion is allowed, but found new scheduling gate"));
    }
    // The rest must be as it was: compare with the mutable fields taken from the current spec.
    let mut masked = new.clone();
    if let (Value::Object(masked), Value::Object(old)) = (&mut masked, old) {
        for list in ["containers", "initContainers"] {
            if let (Some(Value::Array(containers)), Some(Value::Array(before))) = (masked.get_mut(list), old.get(list)) {
                for (container, before) in containers.iter_mut().zip(before) {
                    if let (Value::Object(container), Some(image)) = (container, before.get("image")) {
                        container.insert("image".into(), image.clone());
                    }
                }
            }
        }
        let grace = |spec: &Map<String, Value>| spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
        let mut mutable = vec!["activeDeadlineSeconds", "tolerations", "schedulingGates"];
        if grace(old).is_some_and(|g| g < 0) && grace(masked) == Some(1) {
            mutable.push("terminationGracePeriodSeconds");
        }
        for name in mutable {
            match old.get(name) {
                Some(value) => masked.insert(name.into(), value.clone()),
                None => masked.remove(name),
            };
        }
    }
    if masked != *old {
        errors.push(forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    errors
}

pub fn service(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors = Vec::new();
    let service_type = text(spec, "type");
    let ports = array(spec, "ports");
    // Before allocation only clusterIP may say so; after it, clusterIPs does too.
    let headless = text(spec, "clusterIP") == "None" || array(spec, "clusterIPs").first().and_then(Value::as_str) == Some("None");
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errors.push(required("spec.ports", ""));
    }
    match service_type {
        "LoadBalancer" | "NodePort" if headless => {
            errors.push(invalid("spec.clusterIPs[0]", &quoted("None"), &format!("may not be set to 'None' for {service_type} services")));
        }
        "ExternalName" => {
            // A trailing dot marks the name as fully qualified.
            let cname = text(spec, "externalName").trim_end_matches('.');
            if cname.is_empty() {
                errors.push(required("spec.externalName", ""));
            } else {
                errors.extend(dns1123_subdomain(cname).iter().map(|m| invalid("spec.externalName", &quoted(cname), m)));
            }
        }
        _ => {}
    }
    if service_type == "LoadBalancer" {
        for (i, port) in ports.iter().enumerate() {
            // Load balancers of some clouds open their firewalls too wide for the kubelet's port.
            if int(port, "port") == Some(KUBELET_PORT) {
                errors.push(invalid(&format!("spec.ports[{i}]"), &KUBELET_PORT.to_string(), "may not expose port 10250 externally since it is used by kubelet"));
            }
        }
    }
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        errors.extend(service_port(port, &format!("spec.ports[{i}]"), ports.len() > 1, &mut port_names));
    }
    errors.extend(labels(spec.get("selector"), "spec.selector"));
    errors.extend(session_affinity(spec));
    match service_type {
        "" => errors.push(required("spec.type", "")),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errors.push(not_supported("spec.type", &quoted(other), &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"])),
    }
    let mut node_ports = HashSet::new();
    let mut service_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = text(port, "protocol");
        let node_port = int(port, "nodePort").unwrap_or(0);
        if node_port != 0 {
            let path = format!("spec.ports[{i}].nodePort");
            if service_type == "ClusterIP" {
                errors.push(forbidden(&path, "may not be used when `type` is 'ClusterIP'"));
            } else if !NODE_PORT_RANGE.contains(&node_port) {
                errors.push(invalid(&path, &node_port.to_string(), "provided port is not in the valid range. The range of valid ports is 30000-32767"));
            }
            if !node_ports.insert((protocol, node_port)) {
                errors.push(duplicate(&path, &node_port.to_string()));
            }
        }
        let number = int(port, "port").unwrap_or(0);
        if !service_ports.insert((protocol, number)) {
            // Kubernetes shows the (protocol, port) key as the Go struct it compares.
            let key = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                quoted(protocol)
            );
            errors.push(duplicate(&format!("spec.ports[{i}]"), &key));
        }
    }
    errors.extend(traffic_policies(spec, service_type));
    errors
}

pub fn replication_controller(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors: Vec<FieldError> = nonnegative(spec, "minReadySeconds", "spec.minReadySeconds").into_iter().collect();
    // A replication controller's selector is a plain label map.
    let selector = spec.get("selector").filter(|s| !s.is_null());
    if selector.and_then(Value::as_object).is_none_or(Map::is_empty) {
        errors.push(required("spec.selector", ""));
    }
    errors.extend(nonnegative(spec, "replicas", "spec.replicas"));
    match spec.get("template").filter(|t| !t.is_null()) {
        None => errors.push(required("spec.template", "")),
        Some(template) => {
            let selector = serde_json::json!({"matchLabels": selector.cloned().unwrap_or_else(|| serde_json::json!({}))});
            errors.extend(template_selection(Some(&selector), template).unwrap_or_default());
            errors.extend(pod_template(template, "spec.template", SpecContext::default()));
            errors.extend(always_restarting(template, "spec.template", Deadline::Forbidden("ReplicationController")));
        }
    }
    errors
}

pub fn deployment(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors: Vec<FieldError> = nonnegative(spec, "replicas", "spec.replicas").into_iter().collect();
    errors.extend(replica_set_spec(spec, "deployment"));
    errors.extend(deployment_strategy(field(spec, "strategy")));
    errors.extend(nonnegative(spec, "minReadySeconds", "spec.minReadySeconds"));
    errors.extend(nonnegative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit"));
    if let Some(deadline) = int(spec, "progressDeadlineSeconds") {
        errors.extend(nonnegative(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds"));
        if deadline <= int(spec, "minReadySeconds").unwrap_or(0) {
            errors.push(invalid("spec.progressDeadlineSeconds", &deadline.to_string(), "must be greater than minReadySeconds"));
        }
    }
    errors
}

pub fn replica_set(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors: Vec<FieldError> = nonnegative(spec, "replicas", "spec.replicas").into_iter().collect();
    errors.extend(nonnegative(spec, "minReadySeconds", "spec.minReadySeconds"));
    // Kubernetes words the empty-selector error for replica sets as it does for deployments.
    errors.extend(replica_set_spec(spec, "deployment"));
    errors
}

pub fn stateful_set(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors = Vec::new();
    match text(spec, "podManagementPolicy") {
        "" => errors.push(required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errors.push(invalid("spec.podManagementPolicy", &quoted(other), "must be 'OrderedReady' or 'Parallel'")),
    }
    let strategy = field(spec, "updateStrategy");
    let rolling_update = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match text(strategy, "type") {
        "" => errors.push(required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(rolling_update) = rolling_update {
                let shown = format!(
                    "apps.RollingUpdateStatefulSetStrategy{{Partition:{}, MaxUnavailable:{}}}",
                    int(rolling_update, "partition").unwrap_or(0),
                    go_pointer(rolling_update.get("maxUnavailable"), "intstr.IntOrString")
                );
                errors.push(invalid("spec.updateStrategy.rollingUpdate", &shown, "only allowed for updateStrategy 'RollingUpdate'"));
            }
        }
        "RollingUpdate" => {
            if let Some(rolling_update) = rolling_update {
                errors.extend(nonnegative(rolling_update, "partition", "spec.updateStrategy.rollingUpdate.partition"));
            }
        }
        _ => errors.push(invalid(
            "spec.updateStrategy",
            &go_strategy("apps.StatefulSetUpdateStrategy", strategy, "apps.RollingUpdateStatefulSetStrategy"),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    let retention = field(spec, "persistentVolumeClaimRetentionPolicy");
    if !retention.is_null() {
        for when in ["whenDeleted", "whenScaled"] {
            let policy = text(retention, when);
            if policy != "Retain" && policy != "Delete" {
                errors.push(not_supported(&format!("spec.persistentVolumeClaimRetentionPolicy.{when}"), &quoted(policy), &["Retain", "Delete"]));
            }
        }
    }
    errors.extend(nonnegative(spec, "replicas", "spec.replicas"));
    errors.extend(nonnegative(spec, "minReadySeconds", "spec.minReadySeconds"));
    errors.extend(selector_rules(spec, true, Some("statefulset")));
    let template = field(spec, "template");
    // kube-apiserver checks only the template's labels and annotations here, as the claim
    // templates' volumes would fail its pod spec checks. Tugboat checks the whole pod spec and
    // counts the claim templates, mounted by their names, as volumes: a broken template then
    // fails when it is written rather than when its pods are.
    let claims: Vec<&str> = array(spec, "volumeClaimTemplates").iter().map(|c| text(field(c, "metadata"), "name")).collect();
    match template_selection(spec.get("selector"), template) {
        Err(()) => errors.push(invalid("spec.selector", &go_label_selector(spec.get("selector")), "")),
        Ok(mismatch) => {
            errors.extend(mismatch);
            errors.extend(pod_template(template, "spec.template", SpecContext { claim_volumes: &claims, batch: false }));
        }
    }
    errors.extend(always_restarting(template, "spec.template", Deadline::Forbidden("StatefulSet")));
    errors
}

pub fn daemon_set(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors = label_selector(spec.get("selector"), "spec.selector");
    let template = field(spec, "template");
    errors.extend(template_selection(spec.get("selector"), template).unwrap_or_default());
    if spec.get("selector").and_then(Value::as_object).is_some_and(selector_is_empty) {
        errors.push(invalid("spec.selector", &go_label_selector(spec.get("selector")), "empty selector is invalid for daemonset"));
    }
    errors.extend(pod_template(template, "spec.template", SpecContext::default()));
    errors.extend(always_restarting(template, "spec.template", Deadline::Invalid("activeDeadlineSeconds must be nil for daemons")));
    errors.extend(nonnegative(spec, "minReadySeconds", "spec.minReadySeconds"));
    errors.extend(nonnegative(spec, "templateGeneration", "spec.templateGeneration"));
    let strategy = field(spec, "updateStrategy");
    match text(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
            None => errors.push(required("spec.updateStrategy.rollingUpdate", "")),
            Some(rolling_update) => errors.extend(rolling_update_daemon_set(rolling_update, "spec.updateStrategy.rollingUpdate")),
        },
        _ => errors.push(not_supported(
            "spec.updateStrategy",
            &go_strategy("apps.DaemonSetUpdateStrategy", strategy, "apps.RollingUpdateDaemonSet"),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    errors.extend(nonnegative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit"));
    errors
}

pub fn job(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors = job_spec(spec, "spec");
    errors.extend(selector_rules(spec, true, None));
    errors.extend(template_selection(spec.get("selector"), field(spec, "template")).unwrap_or_default());
    // An indexed job's pods are named `<job>-<index>`, and those names must be valid hostnames.
    if text(spec, "completionMode") == "Indexed" {
        if let Some(completions) = int(spec, "completions").filter(|c| *c > 0) {
            let name = text(field(object, "metadata"), "name");
            let last_pod = format!("{name}-{}", completions - 1);
            if !dns1123_label(&last_pod).is_empty() {
                let message = format!("will not able to create pod with invalid DNS label: {last_pod}");
                errors.push(invalid("metadata.name", &quoted(name), &message));
            }
        }
    }
    errors
}

pub fn cron_job(object: &Value) -> Vec<FieldError> {
    let spec = field(object, "spec");
    let mut errors = Vec::new();
    let schedule = text(spec, "schedule");
    if schedule.is_empty() {
        errors.push(required("spec.schedule", ""));
    } else {
        if let Err(message) = check_schedule(schedule) {
            errors.push(invalid("spec.schedule", &quoted(schedule), &message));
        }
        if schedule.contains("TZ") {
            errors.push(invalid("spec.schedule", &quoted(schedule), "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"));
        }
    }
    errors.extend(nonnegative(spec, "startingDeadlineSeconds", "spec.startingDeadlineSeconds"));
    if let Some(zone) = spec.get("timeZone").and_then(Value::as_str) {
        errors.extend(time_zone(zone));
    }
    match text(spec, "concurrencyPolicy") {
        "" => errors.push(required("spec.concurrencyPolicy", "")),
        "Allow" | "Forbid" | "Replace" => {}
        other => errors.push(not_supported("spec.concurrencyPolicy", &quoted(other), &["Allow", "Forbid", "Replace"])),
    }
    let job_template = field(field(spec, "jobTemplate"), "spec");
    errors.extend(job_spec(job_template, "spec.jobTemplate.spec"));
    // The controller generates each job's selector from the job it creates.
    if job_template.get("selector").is_some_and(|s| !s.is_null()) {
        errors.push(invalid("spec.jobTemplate.spec.selector", &go_label_selector(job_template.get("selector")), "`selector` will be auto-generated"));
    }
    if job_template.get("manualSelector") == Some(&Value::Bool(true)) {
        errors.push(not_supported("spec.jobTemplate.spec.manualSelector", "true", &["nil", "false"]));
    }
    errors.extend(nonnegative(spec, "successfulJobsHistoryLimit", "spec.successfulJobsHistoryLimit"));
    errors.extend(nonnegative(spec, "failedJobsHistoryLimit", "spec.failedJobsHistoryLimit"));
    // The jobs it creates are named `<cron job>-<scheduled time>`, 11 characters longer, and
    // their names end up in label values, which hold at most 63.
    let name = text(field(object, "metadata"), "name");
    if name.len() > 52 {
        errors.push(invalid("metadata.name", &quoted(name), "must be no more than 52 characters"));
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// Field errors, worded as apimachinery's `field.Error` renders them.

fn error(reason: &'static str, field: &str, message: String) -> FieldError {
    FieldError { reason, field: field.to_string(), message }
}

/// `message` followed by `: detail`, unless there is no detail.
fn with_detail(message: String, detail: &str) -> String {
    if detail.is_empty() {
        message
    } else {
        format!("{message}: {detail}")
    }
}

fn required(field: &str, detail: &str) -> FieldError {
    error("FieldValueRequired", field, with_detail("Required value".into(), detail))
}

/// `shown` is the bad value as Go prints it: see [`quoted`] for strings; numbers are bare.
fn invalid(field: &str, shown: &str, detail: &str) -> FieldError {
    error("FieldValueInvalid", field, with_detail(format!("Invalid value: {shown}"), detail))
}

fn not_supported(field: &str, shown: &str, supported: &[&str]) -> FieldError {
    let supported: Vec<String> = supported.iter().map(|s| quoted(s)).collect();
    error("FieldValueNotSupported", field, format!("Unsupported value: {shown}: supported values: {}", supported.join(", ")))
}

fn duplicate(field: &str, shown: &str) -> FieldError {
    error("FieldValueDuplicate", field, format!("Duplicate value: {shown}"))
}

fn not_found(field: &str, shown: &str) -> FieldError {
    error("FieldValueNotFound", field, format!("Not found: {shown}"))
}

fn forbidden(field: &str, detail: &str) -> FieldError {
    error("FieldValueForbidden", field, with_detail("Forbidden".into(), detail))
}

fn too_long(field: &str, max_bytes: usize) -> FieldError {
    error("FieldValueTooLong", field, format!("Too long: may not be more than {max_bytes} bytes"))
}

/// A string as Go's `%q` prints it: in double quotes, with escapes.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && u32::from(c) < 0x80 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A map of strings as Go's `%#v` prints one: `map[string]string{"a":"b", "c":"d"}`.
fn go_string_map(value: Option<&Value>) -> String {
    let Some(map) = value.and_then(Value::as_object) else { return "map[string]string(nil)".into() };
    let mut entries: Vec<String> = map.iter().map(|(k, v)| format!("{}:{}", quoted(k), quoted(v.as_str().unwrap_or_default()))).collect();
    entries.sort();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// A pointer field as Go's `%#v` prints it. Go shows the address, which has no counterpart
/// here; a fixed one stands in for it.
fn go_pointer(value: Option<&Value>, type_name: &str) -> String {
    let target = if value.is_some_and(|v| !v.is_null()) { "0xc000000000" } else { "nil" };
    format!("(*{type_name})({target})")
}

/// An update strategy (`type` and `rollingUpdate`) as Go's `%#v` prints it.
fn go_strategy(type_name: &str, strategy: &Value, rolling_update_type: &str) -> String {
    let rolling_update = go_pointer(strategy.get("rollingUpdate"), rolling_update_type);
    format!("{type_name}{{Type:{}, RollingUpdate:{rolling_update}}}", quoted(text(strategy, "type")))
}

/// A `metav1.LabelSelector` as its generated `String()` prints it.
fn go_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else { return "nil".into() };
    let mut match_labels: Vec<String> = map(selector, "matchLabels")
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {},", v.as_str().unwrap_or_default()))
        .collect();
    match_labels.sort();
    let expressions: String = array(selector, "matchExpressions")
        .iter()
        .map(|e| {
            let values: Vec<&str> = array(e, "values").iter().filter_map(Value::as_str).collect();
            format!("LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},", text(e, "key"), text(e, "operator"), values.join(" "))
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}",
        match_labels.concat()
    )
}

/// An int-or-string as Kubernetes prints one: the string or the number, unquoted.
fn int_or_string(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the JSON: absent or wrongly typed fields read as unset.

fn field<'a>(object: &'a Value, name: &str) -> &'a Value {
    object.get(name).unwrap_or(&Value::Null)
}

fn text<'a>(object: &'a Value, name: &str) -> &'a str {
    object.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn int(object: &Value, name: &str) -> Option<i64> {
    object.get(name).and_then(Value::as_i64)
}

fn array<'a>(object: &'a Value, name: &str) -> &'a [Value] {
    object.get(name).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn map<'a>(object: &'a Value, name: &str) -> Option<&'a Map<String, Value>> {
    object.get(name).and_then(Value::as_object)
}

fn is_set(object: &Value, name: &str) -> bool {
    object.get(name).is_some_and(|v| !v.is_null())
}

/// `object[name]` must not be negative.
fn nonnegative(object: &Value, name: &str, path: &str) -> Option<FieldError> {
    int(object, name).filter(|n| *n < 0).map(|n| invalid(path, &n.to_string(), "must be greater than or equal to 0"))
}

// ---------------------------------------------------------------------------------------------
// Names, labels and annotations (apimachinery's `IsDNS1123Label` and friends).

const DNS1123_LABEL_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FORMAT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FORMAT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MESSAGE: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// A format message as apimachinery words it: what is allowed, examples, and the regex.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    if examples.is_empty() {
        format!("{message} (regex used for validation is '{format}')")
    } else {
        format!("{message} (e.g. {}regex used for validation is '{format}')", examples.join(" or "))
    }
}

fn max_length_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`: also the shape of each part of a subdomain.
fn is_label_shaped(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(alnum) && bytes.last().is_some_and(alnum) && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

fn dns1123_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(max_length_error(63));
    }
    if !is_label_shaped(value) {
        problems.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FORMAT,
            &["my-name", "123-abc"],
        ));
    }
    problems
}

fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 253 {
        problems.push(max_length_error(253));
    }
    if !value.split('.').all(is_label_shaped) {
        problems.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FORMAT,
            &["example.com"],
        ));
    }
    problems
}

fn dns1035_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(max_length_error(63));
    }
    if !is_label_shaped(value) || !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FORMAT,
            &["my-name", "abc-123"],
        ));
    }
    problems
}

/// What is wrong with `name` as `metadata.name` (or, with `prefix`, as `generateName`).
fn name_problems(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let check: fn(&str) -> Vec<String> = match rule {
        NameRule::PathSegment => return path_segment_problems(name, prefix),
        NameRule::Dns1123Subdomain => dns1123_subdomain,
        NameRule::Dns1123Label => dns1123_label,
        NameRule::Dns1035Label => dns1035_label,
    };
    // A generated name appends random characters, so a prefix may end in a dash. Kubernetes
    // checks the prefix with its last two characters replaced by one letter.
    if prefix && name.len() > 1 && name.ends_with('-') {
        let mut masked: String = name.chars().collect();
        masked.pop();
        masked.pop();
        masked.push('a');
        check(&masked)
    } else {
        check(name)
    }
}

/// Names that become one segment of a URL path: anything but `.`, `..`, `/` and `%`.
fn path_segment_problems(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        if let Some(bad) = [".", ".."].into_iter().find(|bad| name == *bad) {
            return vec![format!("may not be '{bad}'")];
        }
    }
    ["/", "%"].into_iter().filter(|bad| name.contains(bad)).map(|bad| format!("may not contain '{bad}'")).collect()
}

/// `name` or `prefix/name` (a label key, annotation key or finalizer).
fn qualified_name(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".into());
            } else {
                problems.extend(dns1123_subdomain(prefix).into_iter().map(|p| format!("prefix part {p}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FORMAT, &["MyName", "my.name", "123-abc"])
            )]
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        problems.push(format!("name part {}", max_length_error(63)));
    }
    if !is_qualified_name_part(name) {
        problems.push(format!("name part {}", regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FORMAT, &["MyName", "my.name", "123-abc"])));
    }
    problems
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn label_value(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(max_length_error(63));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        problems.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?",
            &["MyValue", "my_value", "12345"],
        ));
    }
    problems
}

fn labels(labels: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels.and_then(Value::as_object).into_iter().flatten() {
        errors.extend(qualified_name(key).iter().map(|m| invalid(path, &quoted(key), m)));
        let value = value.as_str().unwrap_or_default();
        errors.extend(label_value(value).iter().map(|m| invalid(path, &quoted(value), m)));
    }
    errors
}

fn annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut size = 0;
    for (key, value) in annotations.and_then(Value::as_object).into_iter().flatten() {
        // Annotation keys are label keys, except that case does not matter.
        errors.extend(qualified_name(&key.to_lowercase()).iter().map(|m| invalid(path, &quoted(key), m)));
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errors
}

fn owner_references(references: &[Value]) -> Vec<FieldError> {
    const PATH: &str = "metadata.ownerReferences";
    let mut errors = Vec::new();
    let mut first_controller: Option<String> = None;
    for reference in references {
        // The API version's version part; the group is empty for the core group.
        let version = text(reference, "apiVersion").rsplit('/').next().unwrap_or_default();
        for (name, part) in [("apiVersion", version), ("kind", text(reference, "kind")), ("name", text(reference, "name")), ("uid", text(reference, "uid"))] {
            if part.is_empty() {
                let detail = if name == "apiVersion" { "version must not be empty".to_string() } else { format!("{name} must not be empty") };
                errors.push(invalid(&format!("{PATH}.{name}"), &quoted(text(reference, name)), &detail));
            }
        }
        if reference.get("controller") == Some(&Value::Bool(true)) {
            let controller = format!("{}/{}", text(reference, "kind"), text(reference, "name"));
            match &first_controller {
                Some(first) => {
                    let detail = format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {controller}");
                    errors.push(invalid(PATH, &go_owner_references(references), &detail));
                }
                None => first_controller = Some(controller),
            }
        }
    }
    errors
}

/// Owner references as Go's `%#v` prints the slice.
fn go_owner_references(references: &[Value]) -> String {
    let rendered: Vec<String> = references
        .iter()
        .map(|r| {
            format!(
                "v1.OwnerReference{{APIVersion:{}, Kind:{}, Name:{}, UID:{}, Controller:{}, BlockOwnerDeletion:{}}}",
                quoted(text(r, "apiVersion")),
                quoted(text(r, "kind")),
                quoted(text(r, "name")),
                quoted(text(r, "uid")),
                go_pointer(r.get("controller"), "bool"),
                go_pointer(r.get("blockOwnerDeletion"), "bool")
            )
        })
        .collect();
    format!("[]v1.OwnerReference{{{}}}", rendered.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Label selectors of workloads.

/// A `metav1.LabelSelector`'s own validity: label syntax and operators that fit their values.
fn label_selector(selector: Option<&Value>, path: &str) -> Vec<FieldError> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else { return Vec::new() };
    let mut errors = labels(selector.get("matchLabels"), &format!("{path}.matchLabels"));
    for (i, expression) in array(selector, "matchExpressions").iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let values = array(expression, "values");
        match text(expression, "operator") {
            "In" | "NotIn" if values.is_empty() => {
                errors.push(required(&format!("{at}.values"), "must be specified when `operator` is 'In' or 'NotIn'"));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                errors.push(forbidden(&format!("{at}.values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(invalid(&format!("{at}.operator"), &quoted(other), "not a valid selector operator")),
        }
        let key = text(expression, "key");
        errors.extend(qualified_name(key).iter().map(|m| invalid(&format!("{at}.key"), &quoted(key), m)));
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or_default();
            errors.extend(label_value(value).iter().map(|m| invalid(&format!("{at}.values[{j}]"), &quoted(value), m)));
        }
    }
    errors
}

fn selector_is_empty(selector: &Map<String, Value>) -> bool {
    let count = |name: &str| match selector.get(name) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    count("matchLabels") + count("matchExpressions") == 0
}

/// `spec.selector` of a workload: present when `required`, valid, and not empty when
/// `empty_invalid_for` names the kind (as the message does).
fn selector_rules(spec: &Value, required_selector: bool, empty_invalid_for: Option<&str>) -> Vec<FieldError> {
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let Some(selector) = selector else {
        return if required_selector { vec![required("spec.selector", "")] } else { Vec::new() };
    };
    let mut errors = label_selector(Some(selector), "spec.selector");
    if let Some(kind) = empty_invalid_for {
        if selector.as_object().is_some_and(selector_is_empty) {
            errors.push(invalid("spec.selector", &go_label_selector(Some(selector)), &format!("empty selector is invalid for {kind}")));
        }
    }
    errors
}

/// Whether `selector` selects the pods of `template`: `Err` if it is not a usable selector,
/// else the mismatch, if any. A missing selector selects nothing; an empty one, everything.
fn template_selection(selector: Option<&Value>, template: &Value) -> Result<Option<FieldError>, ()> {
    let selector = LabelSelector::from_object(selector.unwrap_or(&Value::Null)).map_err(|_| ())?;
    let template_labels = template.at("/metadata/labels");
    let selected = selector.is_some_and(|s| s.matches(template_labels.and_then(Value::as_object)));
    Ok((!selected).then(|| {
        invalid("spec.template.metadata.labels", &go_string_map(template_labels), "`selector` does not match template `labels`")
    }))
}

/// Replica sets and deployments: a required, non-empty selector that selects the template's
/// pods, which restart always.
fn replica_set_spec(spec: &Value, kind: &str) -> Vec<FieldError> {
    let mut errors = selector_rules(spec, true, Some(kind));
    let template = field(spec, "template");
    match template_selection(spec.get("selector"), template) {
        Err(()) => errors.push(invalid("spec.selector", &go_label_selector(spec.get("selector")), "invalid label selector")),
        Ok(mismatch) => {
            errors.extend(mismatch);
            errors.extend(pod_template(template, "spec.template", SpecContext::default()));
            errors.extend(always_restarting(template, "spec.template", Deadline::Forbidden("ReplicaSet")));
        }
    }
    errors
}

/// How a controller of always-running pods rejects a pod deadline in its template.
enum Deadline {
    /// Forbidden, naming the controller kind.
    Forbidden(&'static str),
    /// Invalid, with this message.
    Invalid(&'static str),
}

/// Pods of long-running controllers must restart always and may have no deadline.
fn always_restarting(template: &Value, path: &str, deadline: Deadline) -> Vec<FieldError> {
    let spec = field(template, "spec");
    let mut errors = Vec::new();
    let restart_policy = text(spec, "restartPolicy");
    if restart_policy != "Always" {
        errors.push(not_supported(&format!("{path}.spec.restartPolicy"), &quoted(restart_policy), &["Always"]));
    }
    if let Some(seconds) = spec.get("activeDeadlineSeconds").filter(|s| !s.is_null()) {
        let at = format!("{path}.spec.activeDeadlineSeconds");
        errors.push(match deadline {
            Deadline::Forbidden(kind) => forbidden(&at, &format!("activeDeadlineSeconds in {kind} is not Supported")),
            Deadline::Invalid(message) => invalid(&at, &seconds.to_string(), message),
        });
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// Update strategies.

fn deployment_strategy(strategy: &Value) -> Vec<FieldError> {
    let rolling_update = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match text(strategy, "type") {
        "Recreate" => match rolling_update {
            Some(_) => vec![forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")],
            None => Vec::new(),
        },
        "RollingUpdate" => match rolling_update {
            None => vec![required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")],
            Some(rolling_update) => {
                let path = "spec.strategy.rollingUpdate";
                let max_unavailable = rolling_update.get("maxUnavailable");
                let max_surge = rolling_update.get("maxSurge");
                let mut errors = positive_int_or_percent(max_unavailable, &format!("{path}.maxUnavailable"));
                errors.extend(positive_int_or_percent(max_surge, &format!("{path}.maxSurge")));
                if int_or_percent_value(max_unavailable) == 0 && int_or_percent_value(max_surge) == 0 {
                    errors.push(invalid(&format!("{path}.maxUnavailable"), &int_or_string(max_unavailable), "may not be 0 when `maxSurge` is 0"));
                }
                errors.extend(not_more_than_100_percent(max_unavailable, &format!("{path}.maxUnavailable")));
                errors
            }
        },
        _ => vec![not_supported(
            "spec.strategy",
            &go_strategy("apps.DeploymentStrategy", strategy, "apps.RollingUpdateDeployment"),
            &["Recreate", "RollingUpdate"],
        )],
    }
}

fn rolling_update_daemon_set(rolling_update: &Value, path: &str) -> Vec<FieldError> {
    let max_unavailable = rolling_update.get("maxUnavailable");
    let max_surge = rolling_update.get("maxSurge");
    let mut errors = positive_int_or_percent(max_unavailable, &format!("{path}.maxUnavailable"));
    errors.extend(positive_int_or_percent(max_surge, &format!("{path}.maxSurge")));
    errors.extend(not_more_than_100_percent(max_unavailable, &format!("{path}.maxUnavailable")));
    errors.extend(not_more_than_100_percent(max_surge, &format!("{path}.maxSurge")));
    // A daemon set either takes nodes' pods down first or surges new ones first, not both.
    match (int_or_percent_value(max_unavailable) != 0, int_or_percent_value(max_surge) != 0) {
        (true, true) => errors.push(invalid(&format!("{path}.maxSurge"), &int_or_string(max_surge), "may not be set when maxUnavailable is non-zero")),
        (false, false) => errors.push(required(&format!("{path}.maxUnavailable"), "cannot be 0 when maxSurge is 0")),
        _ => {}
    }
    errors
}

/// The number in `25%`, if `value` is a valid percentage.
fn percent(value: Option<&Value>) -> Option<i64> {
    let digits = value?.as_str()?.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Absurdly long digit strings count as zero, as Go's failed conversion does.
    Some(digits.parse().unwrap_or(0))
}

fn int_or_percent_value(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => percent(value).unwrap_or_else(|| s.parse().unwrap_or(0)),
        _ => 0,
    }
}

fn positive_int_or_percent(value: Option<&Value>, path: &str) -> Vec<FieldError> {
    match value {
        Some(Value::String(s)) if percent(value).is_none() => vec![invalid(
            path,
            s,
            &regex_error("a valid percent string must be a numeric string followed by an ending '%'", "[0-9]+%", &["1%", "93%"]),
        )],
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
            vec![invalid(path, &n.to_string(), "must be greater than or equal to 0")]
        }
        _ => Vec::new(),
    }
}

fn not_more_than_100_percent(value: Option<&Value>, path: &str) -> Option<FieldError> {
    percent(value).filter(|p| *p > 100).map(|_| invalid(path, &int_or_string(value), "must not be greater than 100%"))
}

// ---------------------------------------------------------------------------------------------
// Pod specs.

/// Where a pod spec sits, for the few rules that depend on it.
#[derive(Clone, Copy, Default)]
struct SpecContext<'a> {
    /// Volumes the pods get from outside the spec: a StatefulSet's claim templates.
    claim_volumes: &'a [&'a str],
    /// A Job's template, whose restart policy is left unset by defaulting and checked by the
    /// Job's own rule, which names the values a Job allows.
    batch: bool,
}

/// A workload's pod template: its labels, annotations and pod spec.
fn pod_template(template: &Value, path: &str, context: SpecContext) -> Vec<FieldError> {
    // Kubernetes reports the template's metadata at `<path>.labels`, without `.metadata`.
    let mut errors = labels(template.at("/metadata/labels"), &format!("{path}.labels"));
    errors.extend(annotations(template.at("/metadata/annotations"), &format!("{path}.annotations")));
    let spec = field(template, "spec");
    errors.extend(pod_spec(spec, &format!("{path}.spec"), context));
    if !array(spec, "ephemeralContainers").is_empty() {
        errors.push(forbidden(&format!("{path}.spec.ephemeralContainers"), "ephemeral containers not allowed in pod template"));
    }
    errors
}

fn pod_spec(spec: &Value, path: &str, context: SpecContext) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut volumes = volumes(spec, path, &mut errors);
    volumes.extend(context.claim_volumes.iter().copied());
    containers(spec, path, &volumes, &mut errors);
    let restart_policy = text(spec, "restartPolicy");
    if !(context.batch && restart_policy.is_empty()) {
        errors.extend(one_of(restart_policy, &format!("{path}.restartPolicy"), &["Always", "OnFailure", "Never"]));
    }
    let dns_policy = text(spec, "dnsPolicy");
    errors.extend(one_of(dns_policy, &format!("{path}.dnsPolicy"), &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]));
    if dns_policy == "None" && !is_set(spec, "dnsConfig") {
        errors.push(required(&format!("{path}.dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"));
    }
    errors.extend(labels(spec.get("nodeSelector"), &format!("{path}.nodeSelector")));
    for (i, gate) in array(spec, "readinessGates").iter().enumerate() {
        let condition = text(gate, "conditionType");
        let at = format!("{path}.readinessGates[{i}].conditionType");
        errors.extend(qualified_name(condition).iter().map(|m| invalid(&at, &quoted(condition), m)));
    }
    for name in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let value = text(spec, name);
        if !value.is_empty() {
            errors.extend(dns1123_subdomain(value).iter().map(|m| invalid(&format!("{path}.{name}"), &quoted(value), m)));
        }
    }
    if let Some(seconds) = int(spec, "activeDeadlineSeconds").filter(|s| !(1..=i64::from(i32::MAX)).contains(s)) {
        errors.push(invalid(&format!("{path}.activeDeadlineSeconds"), &seconds.to_string(), "must be between 1 and 2147483647, inclusive"));
    }
    for name in ["hostname", "subdomain"] {
        let value = text(spec, name);
        if !value.is_empty() {
            errors.extend(dns1123_label(value).iter().map(|m| invalid(&format!("{path}.{name}"), &quoted(value), m)));
        }
    }
    errors
}

/// An enumerated value: required, and one of `supported`.
fn one_of(value: &str, path: &str, supported: &[&str]) -> Option<FieldError> {
    if value.is_empty() {
        Some(required(path, ""))
    } else if !supported.contains(&value) {
        Some(not_supported(path, &quoted(value), supported))
    } else {
        None
    }
}

/// Validates the volumes and returns the names of the valid ones, which containers may mount.
fn volumes<'a>(spec: &'a Value, path: &str, errors: &mut Vec<FieldError>) -> HashSet<&'a str> {
    let mut valid = HashSet::new();
    for (i, volume) in array(spec, "volumes").iter().enumerate() {
        let at = format!("{path}.volumes[{i}]");
        let mut volume_errors = volume_source(volume, &at);
        let name = text(volume, "name");
        let name_path = format!("{at}.name");
        if name.is_empty() {
            volume_errors.push(required(&name_path, ""));
        } else {
            volume_errors.extend(dns1123_label(name).iter().map(|m| invalid(&name_path, &quoted(name), m)));
        }
        if valid.contains(name) {
            volume_errors.push(duplicate(&name_path, &quoted(name)));
        }
        // A broken volume is not mountable, so mounts of it are reported as well.
        if volume_errors.is_empty() {
            valid.insert(name);
        }
        errors.extend(volume_errors);
    }
    valid
}

/// A volume names exactly one source, and the common sources their required fields.
fn volume_source(volume: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut sources = VOLUME_SOURCES.iter().filter(|source| is_set(volume, source));
    let Some(source) = sources.next() else { return vec![required(path, "must specify a volume type")] };
    for extra in sources {
        errors.push(forbidden(&format!("{path}.{extra}"), "may not specify more than 1 volume type"));
    }
    let at = format!("{path}.{source}");
    let settings = field(volume, source);
    let required_field = match *source {
        "secret" => Some("secretName"),
        "configMap" => Some("name"),
        "persistentVolumeClaim" => Some("claimName"),
        "hostPath" => Some("path"),
        _ => None,
    };
    if let Some(name) = required_field.filter(|name| text(settings, name).is_empty()) {
        errors.push(required(&format!("{at}.{name}"), ""));
    }
    if let Some(mode) = int(settings, "defaultMode").filter(|m| !(0..=0o777).contains(m)) {
        errors.push(invalid(&format!("{at}.defaultMode"), &mode.to_string(), "must be a number between 0 and 0777 (octal), both inclusive"));
    }
    if *source == "hostPath" {
        let kind = text(settings, "type");
        const HOST_PATH_TYPES: [&str; 8] = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
        if !HOST_PATH_TYPES.contains(&kind) {
            errors.push(not_supported(&format!("{at}.type"), &quoted(kind), &HOST_PATH_TYPES));
        }
    }
    errors
}

fn containers(spec: &Value, path: &str, volumes: &HashSet<&str>, errors: &mut Vec<FieldError>) {
    let containers = array(spec, "containers");
    if containers.is_empty() {
        errors.push(required(&format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (i, container) in containers.iter().enumerate() {
        let at = format!("{path}.containers[{i}]");
        container_common(container, &at, volumes, errors);
        let name = text(container, "name");
        if !names.insert(name) {
            errors.push(duplicate(&format!("{at}.name"), &quoted(name)));
        }
        probes(container, &at, errors);
        if is_set(container, "restartPolicy") {
            errors.push(forbidden(&format!("{at}.restartPolicy"), "may not be set for non-init containers"));
        }
    }
    for (i, container) in array(spec, "initContainers").iter().enumerate() {
        let at = format!("{path}.initContainers[{i}]");
        container_common(container, &at, volumes, errors);
        // Init containers with restartPolicy Always are sidecars: they run alongside the others.
        let sidecar = match container.get("restartPolicy").filter(|p| !p.is_null()) {
            None => false,
            Some(policy) => {
                let policy = policy.as_str().unwrap_or_default();
                if policy != "Always" {
                    errors.push(not_supported(&format!("{at}.restartPolicy"), &quoted(policy), &["Always"]));
                }
                policy == "Always"
            }
        };
        // Names are unique among regular and init containers together.
        let name = text(container, "name");
        if names.contains(name) {
            errors.push(duplicate(&format!("{at}.name"), &quoted(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
        if sidecar {
            probes(container, &at, errors);
        } else {
            for hook in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if is_set(container, hook) {
                    errors.push(forbidden(&format!("{at}.{hook}"), "may not be set for init containers without restartPolicy=Always"));
                }
            }
        }
    }
}

/// The rules every kind of container shares.
fn container_common(container: &Value, path: &str, volumes: &HashSet<&str>, errors: &mut Vec<FieldError>) {
    let name = text(container, "name");
    if name.is_empty() {
        errors.push(required(&format!("{path}.name"), ""));
    } else {
        errors.extend(dns1123_label(name).iter().map(|m| invalid(&format!("{path}.name"), &quoted(name), m)));
    }
    if text(container, "image").is_empty() {
        errors.push(required(&format!("{path}.image"), ""));
    }
    let termination_message_policy = text(container, "terminationMessagePolicy");
    errors.extend(one_of(termination_message_policy, &format!("{path}.terminationMessagePolicy"), &["File", "FallbackToLogsOnError"]));
    container_ports(container, path, errors);
    for (i, variable) in array(container, "env").iter().enumerate() {
        if text(variable, "name").is_empty() {
            errors.push(required(&format!("{path}.env[{i}].name"), ""));
        }
    }
    let mut mount_points = HashSet::new();
    for (i, mount) in array(container, "volumeMounts").iter().enumerate() {
        let at = format!("{path}.volumeMounts[{i}]");
        let volume = text(mount, "name");
        if volume.is_empty() {
            errors.push(required(&format!("{at}.name"), ""));
        }
        if !volumes.contains(volume) {
            errors.push(not_found(&format!("{at}.name"), &quoted(volume)));
        }
        let mount_path = text(mount, "mountPath");
        if mount_path.is_empty() {
            errors.push(required(&format!("{at}.mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errors.push(invalid(&format!("{at}.mountPath"), &quoted(mount_path), "must be unique"));
        }
    }
    errors.extend(one_of(text(container, "imagePullPolicy"), &format!("{path}.imagePullPolicy"), &["Always", "IfNotPresent", "Never"]));
}

fn container_ports(container: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in array(container, "ports").iter().enumerate() {
        let at = format!("{path}.ports[{i}]");
        let name = text(port, "name");
        if !name.is_empty() {
            let problems = port_name(name);
            if !problems.is_empty() {
                errors.extend(problems.iter().map(|m| invalid(&format!("{at}.name"), &quoted(name), m)));
            } else if !names.insert(name) {
                errors.push(duplicate(&format!("{at}.name"), &quoted(name)));
            }
        }
        match int(port, "containerPort").unwrap_or(0) {
            0 => errors.push(required(&format!("{at}.containerPort"), "")),
            number => errors.extend(port_number(number, &format!("{at}.containerPort"))),
        }
        match int(port, "hostPort").unwrap_or(0) {
            0 => {}
            number => errors.extend(port_number(number, &format!("{at}.hostPort"))),
        }
        errors.extend(one_of(text(port, "protocol"), &format!("{at}.protocol"), &["SCTP", "TCP", "UDP"]));
    }
}

fn port_number(number: i64, path: &str) -> Option<FieldError> {
    (!(1..=65535).contains(&number)).then(|| invalid(path, &number.to_string(), "must be between 1 and 65535, inclusive"))
}

/// What is wrong with an IANA service name used as a port name.
fn port_name(name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if name.len() > 15 {
        problems.push(max_length_error(15));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        problems.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        problems.push("must not contain consecutive hyphens".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push("must not begin or end with a hyphen".into());
    }
    problems
}

/// A port given by number or by the name of a container port.
fn port_number_or_name(value: Option<&Value>, path: &str) -> Vec<FieldError> {
    match value {
        Some(Value::String(name)) => port_name(name).iter().map(|m| invalid(path, &quoted(name), m)).collect(),
        Some(Value::Number(n)) => port_number(n.as_i64().unwrap_or(0), path).into_iter().collect(),
        _ => port_number(0, path).into_iter().collect(),
    }
}

fn probes(container: &Value, path: &str, errors: &mut Vec<FieldError>) {
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = container.get(kind).filter(|p| !p.is_null()) else { continue };
        let at = format!("{path}.{kind}");
        let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"].into_iter().filter(|h| is_set(probe, h)).collect();
        match handlers.as_slice() {
            [] => errors.push(required(&at, "must specify a handler type")),
            [handler, extra @ ..] => {
                errors.extend(extra.iter().map(|h| forbidden(&format!("{at}.{h}"), "may not specify more than 1 handler type")));
                let settings = field(probe, handler);
                let handler_path = format!("{at}.{handler}");
                match *handler {
                    "exec" if array(settings, "command").is_empty() => errors.push(required(&format!("{handler_path}.command"), "")),
                    "httpGet" => {
                        if text(settings, "path").is_empty() {
                            errors.push(required(&format!("{handler_path}.path"), ""));
                        }
                        errors.extend(port_number_or_name(settings.get("port"), &format!("{handler_path}.port")));
                        let scheme = text(settings, "scheme");
                        if scheme != "HTTP" && scheme != "HTTPS" {
                            errors.push(not_supported(&format!("{handler_path}.scheme"), &quoted(scheme), &["HTTP", "HTTPS"]));
                        }
                    }
                    "tcpSocket" => errors.extend(port_number_or_name(settings.get("port"), &format!("{handler_path}.port"))),
                    "grpc" => errors.extend(port_number(int(settings, "port").unwrap_or(0), &format!("{handler_path}.port"))),
                    _ => {}
                }
            }
        }
        for number in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
            errors.extend(nonnegative(probe, number, &format!("{at}.{number}")));
        }
        if let Some(seconds) = int(probe, "terminationGracePeriodSeconds") {
            if kind == "readinessProbe" {
                errors.push(invalid(&format!("{at}.terminationGracePeriodSeconds"), &seconds.to_string(), "must not be set for readinessProbes"));
            } else if seconds <= 0 {
                errors.push(invalid(&format!("{at}.terminationGracePeriodSeconds"), &seconds.to_string(), "must be greater than 0"));
            }
        }
        // A liveness or startup probe succeeds at its first success; more would only delay it.
        let successes = int(probe, "successThreshold").unwrap_or(0);
        if kind != "readinessProbe" && successes != 1 {
            errors.push(invalid(&format!("{at}.successThreshold"), &successes.to_string(), "must be 1"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Services.

/// The kubelet's port, which load balancers may not expose.
const KUBELET_PORT: i64 = 10250;
/// Node ports Tugboat allocates from; the API server's allocator uses the same fixed range.
const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;
/// The longest client IP affinity Kubernetes allows: a day.
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

fn service_port<'a>(port: &'a Value, path: &str, several: bool, names: &mut HashSet<&'a str>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = text(port, "name");
    // With several ports, names tell them apart (in endpoints, for instance).
    if several && name.is_empty() {
        errors.push(required(&format!("{path}.name"), ""));
    } else if !name.is_empty() {
        errors.extend(dns1123_label(name).iter().map(|m| invalid(&format!("{path}.name"), &quoted(name), m)));
        if !names.insert(name) {
            errors.push(duplicate(&format!("{path}.name"), &quoted(name)));
        }
    }
    errors.extend(port_number(int(port, "port").unwrap_or(0), &format!("{path}.port")));
    errors.extend(one_of(text(port, "protocol"), &format!("{path}.protocol"), &["SCTP", "TCP", "UDP"]));
    errors.extend(port_number_or_name(port.get("targetPort"), &format!("{path}.targetPort")));
    if let Some(protocol) = port.get("appProtocol").and_then(Value::as_str) {
        errors.extend(qualified_name(protocol).iter().map(|m| invalid(&format!("{path}.appProtocol"), &quoted(protocol), m)));
    }
    errors
}

fn session_affinity(spec: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let affinity = text(spec, "sessionAffinity");
    errors.extend(one_of(affinity, "spec.sessionAffinity", &["ClientIP", "None"]));
    let config = spec.get("sessionAffinityConfig").filter(|c| !c.is_null());
    match affinity {
        "ClientIP" => {
            let detail = "when session affinity type is ClientIP";
            let client_ip = config.and_then(|c| c.get("clientIP")).filter(|c| !c.is_null());
            match (config, client_ip, client_ip.and_then(|c| int(c, "timeoutSeconds"))) {
                (None, _, _) => errors.push(required("spec.sessionAffinityConfig", detail)),
                (Some(_), None, _) => errors.push(required("spec.sessionAffinityConfig.clientIP", detail)),
                (Some(_), Some(_), None) => errors.push(required("spec.sessionAffinityConfig.clientIP.timeoutSeconds", detail)),
                (Some(_), Some(_), Some(seconds)) if !(1..=MAX_CLIENT_IP_AFFINITY_SECONDS).contains(&seconds) => errors.push(invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    &seconds.to_string(),
                    "must be greater than 0 and less than 86400",
                )),
                _ => {}
            }
        }
        "None" if config.is_some() => errors.push(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None")),
        _ => {}
    }
    errors
}

fn traffic_policies(spec: &Value, service_type: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let has_external_ips = !array(spec, "externalIPs").is_empty();
    let externally_accessible = matches!(service_type, "NodePort" | "LoadBalancer") || (service_type == "ClusterIP" && has_external_ips);
    let external = text(spec, "externalTrafficPolicy");
    if !externally_accessible {
        if !external.is_empty() {
            errors.push(invalid("spec.externalTrafficPolicy", &quoted(external), "may only be set for externally-accessible services"));
        }
    } else {
        errors.extend(one_of(external, "spec.externalTrafficPolicy", &["Cluster", "Local"]));
    }
    match spec.get("internalTrafficPolicy").filter(|p| !p.is_null()) {
        None if matches!(service_type, "ClusterIP" | "NodePort" | "LoadBalancer") => errors.push(required(
            "spec.internalTrafficPolicy",
            &format!("must be specified when `type` is '{service_type}'"),
        )),
        None => {}
        Some(policy) => {
            let policy = policy.as_str().unwrap_or_default();
            if policy != "Cluster" && policy != "Local" {
                errors.push(not_supported("spec.internalTrafficPolicy", &quoted(policy), &["Cluster", "Local"]));
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// Jobs and cron jobs.

/// A job's spec, alone or as a cron job's job template; the selector is checked by the caller.
fn job_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for name in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        errors.extend(nonnegative(spec, name, &format!("{path}.{name}")));
    }
    if let Some(mode) = spec.get("completionMode").filter(|m| !m.is_null()) {
        let mode = mode.as_str().unwrap_or_default();
        match mode {
            "NonIndexed" => {}
            "Indexed" => {
                if !is_set(spec, "completions") {
                    errors.push(required(&format!("{path}.completions"), "when completion mode is Indexed"));
                }
                if let Some(parallelism) = int(spec, "parallelism").filter(|p| *p > MAX_INDEXED_PARALLELISM) {
                    let message = format!("must be less than or equal to {MAX_INDEXED_PARALLELISM} when completion mode is Indexed");
                    errors.push(invalid(&format!("{path}.parallelism"), &parallelism.to_string(), &message));
                }
            }
            other => errors.push(not_supported(&format!("{path}.completionMode"), &quoted(other), &["NonIndexed", "Indexed"])),
        }
    }
    let failure_policy = is_set(spec, "podFailurePolicy");
    if let Some(policy) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        // Pods that failed per the failure policy must be gone before they are replaced.
        let supported: &[&str] = if failure_policy { &["Failed"] } else { &["Failed", "TerminatingOrFailed"] };
        if !supported.contains(&policy) {
            errors.push(not_supported(&format!("{path}.podReplacementPolicy"), &quoted(policy), supported));
        }
    }
    let template = field(spec, "template");
    errors.extend(pod_template(template, &format!("{path}.template"), SpecContext { claim_volumes: &[], batch: true }));
    // Job pods run to completion, so they must not restart always.
    let restart_path = format!("{path}.template.spec.restartPolicy");
    let restart_policy = text(field(template, "spec"), "restartPolicy");
    let only_never = "only \"Never\" is supported when podFailurePolicy is specified";
    match restart_policy {
        "" | "Always" if !failure_policy => errors.push(required(&restart_path, "valid values: \"OnFailure\", \"Never\"")),
        "" | "Always" | "OnFailure" if failure_policy => errors.push(invalid(&restart_path, &quoted(restart_policy), only_never)),
        _ => {}
    }
    errors
}

/// Indexed jobs track completions per index; this bounds that bookkeeping.
const MAX_INDEXED_PARALLELISM: i64 = 100_000;

fn time_zone(zone: &str) -> Vec<FieldError> {
    const PATH: &str = "spec.timeZone";
    if zone.is_empty() {
        return vec![invalid(PATH, &quoted(zone), "timeZone must be nil or non-empty string")];
    }
    let well_formed = zone.split('/').all(|part| {
        part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
    });
    if !well_formed {
        return vec![invalid(PATH, &quoted(zone), &format!("unknown time zone {zone}"))];
    }
    if zone.eq_ignore_ascii_case("local") {
        return vec![invalid(PATH, &quoted(zone), "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")];
    }
    Vec::new()
}

/// Checks a cron schedule as Kubernetes' cron parser (robfig/cron's standard parser) does, with
/// its error messages: five fields (minute, hour, day of month, month, day of week), or a
/// descriptor such as `@hourly` or `@every 1h30m`.
fn check_schedule(schedule: &str) -> Result<(), String> {
    let mut spec = schedule;
    // The parser accepts a leading time zone; Kubernetes then rejects it (see `cron_job`).
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(space) = spec.find(' ') else { return Err(format!("provided bad location {spec}")) };
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return check_descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u64, u64, &[&str]); 5] = [(0, 59, &[]), (0, 23, &[]), (1, 31, &[]), (1, 12, &MONTHS), (0, 6, &DAYS)];
    for (field, (min, max, names)) in fields.into_iter().zip(bounds) {
        for range in field.split(',').filter(|r| !r.is_empty()) {
            check_cron_range(range, min, max, names)?;
        }
    }
    Ok(())
}

/// One `*`, `n`, `n-m` or `n-m/step` (names allowed for months and days).
fn check_cron_range(range: &str, min: u64, max: u64, names: &[&str]) -> Result<(), String> {
    let (span, step) = match range.split('/').collect::<Vec<_>>().as_slice() {
        [span] => (*span, None),
        [span, step] => (*span, Some(cron_number(step)?)),
        _ => return Err(format!("too many slashes: {range}")),
    };
    let number = |text: &str| match names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Names count from the range's first value (months from 1, days from 0).
        Some(index) => Ok(index as u64 + min),
        None => cron_number(text),
    };
    let bounds: Vec<&str> = span.split('-').collect();
    let (start, mut end) = match bounds.as_slice() {
        // The parser looks no further than a leading wildcard.
        [wildcard, ..] if *wildcard == "*" || *wildcard == "?" => (min, max),
        [single] => {
            let start = number(single)?;
            (start, start)
        }
        [low, high] => (number(low)?, number(high)?),
        _ => return Err(format!("too many hyphens: {range}")),
    };
    // "n/step" means from n to the maximum.
    if step.is_some() && bounds.len() == 1 {
        end = max;
    }
    if start < min {
        return Err(format!("beginning of range ({start}) below minimum ({min}): {range}"));
    }
    if end > max {
        return Err(format!("end of range ({end}) above maximum ({max}): {range}"));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {range}"));
    }
    if step == Some(0) {
        return Err(format!("step of range should be a positive number: {range}"));
    }
    Ok(())
}

/// A non-negative number, with the errors of Go's `strconv.Atoi` as the cron parser reports them.
fn cron_number(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("failed to parse int from {text}: strconv.Atoi: parsing {}: invalid syntax", quoted(text)));
    }
    let Ok(number) = text.parse::<i64>() else {
        return Err(format!("failed to parse int from {text}: strconv.Atoi: parsing {}: value out of range", quoted(text)));
    };
    u64::try_from(number).map_err(|_| format!("negative number ({number}) not allowed: {text}"))
}

fn check_descriptor(descriptor: &str) -> Result<(), String> {
    const NAMED: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
    if NAMED.contains(&descriptor) {
        return Ok(());
    }
    match descriptor.strip_prefix("@every ") {
        Some(duration) => check_go_duration(duration).map_err(|e| format!("failed to parse duration {descriptor}: {e}")),
        None => Err(format!("unrecognized descriptor: {descriptor}")),
    }
}

/// Go's duration syntax (`time.ParseDuration`): signed decimal numbers with units, `1h30m`.
fn check_go_duration(duration: &str) -> Result<(), String> {
    let invalid_duration = || format!("time: invalid duration {}", quoted(duration));
    let mut rest = duration.strip_prefix(['-', '+']).unwrap_or(duration);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err(invalid_duration());
    }
    while !rest.is_empty() {
        let whole = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut number = whole;
        let mut fraction = 0;
        if rest[number..].starts_with('.') {
            fraction = rest[number + 1..].bytes().take_while(u8::is_ascii_digit).count();
            number += 1 + fraction;
        }
        if whole == 0 && fraction == 0 {
            return Err(invalid_duration());
        }
        rest = &rest[number..];
        let unit_length = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        if unit_length == 0 {
            return Err(format!("time: missing unit in duration {}", quoted(duration)));
        }
        let unit = &rest[..unit_length];
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return Err(format!("time: unknown unit {} in duration {}", quoted(unit), quoted(duration)));
        }
        rest = &rest[unit_length..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{defaults, Registry};
    use serde_json::json;

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    fn resource(plural: &str) -> &'static ResourceType {
        let registry = Registry::get();
        registry.types().iter().find(|t| t.plural == plural).expect("a served kind")
    }

    #[test]
    fn a_pod_update_changes_only_what_kubernetes_lets_change() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a:1", "resources": {"requests": {"cpu": "100m"}}}],
            "tolerations": [{"key": "k", "operator": "Exists"}], "activeDeadlineSeconds": 60, "terminationGracePeriodSeconds": -1}});
        let updated = |change: &dyn Fn(&mut Value)| {
            let mut next = pod.clone();
            change(&mut next);
            messages(&pod_update(&pod, &next))
        };
        let allowed = updated(&|next| {
            next["spec"]["containers"][0]["image"] = "a:2".into();
            next["spec"]["tolerations"].as_array_mut().unwrap().push(json!({"key": "other", "operator": "Exists"}));
            next["spec"]["activeDeadlineSeconds"] = 30.into();
            next["spec"]["terminationGracePeriodSeconds"] = 1.into();
            next["metadata"]["labels"] = json!({"app": "web"});
        });
        assert_eq!(allowed, Vec::<String>::new());
        let resized = updated(&|next| next["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "2".into());
        assert_eq!(resized.len(), 1);
        assert!(resized[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{resized:?}");
        assert_eq!(updated(&|next| next["spec"]["tolerations"] = json!([])), ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]);
        assert_eq!(updated(&|next| next["spec"]["activeDeadlineSeconds"] = 90.into()), ["spec.activeDeadlineSeconds: Invalid value: 90: must be less than or equal to previous value"]);
        assert_eq!(updated(&|next| next["spec"]["terminationGracePeriodSeconds"] = 5.into()).len(), 1, "only -1 to 1");
    }

    #[test]
    fn names_follow_the_kind_rule() {
        let configmaps = resource("configmaps");
        let ok = json!({"metadata": {"name": "app.config-1", "namespace": "default"}});
        assert_eq!(validate_object(configmaps, &ok), []);

        let upper = json!({"metadata": {"name": "Foo", "namespace": "default"}});
        let errors = validate_object(resource("namespaces"), &json!({"metadata": {"name": "Foo"}}));
        assert_eq!(errors[0].reason, "FieldValueInvalid");
        assert_eq!(
            errors[0].message,
            "Invalid value: \"Foo\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(messages(&validate_object(configmaps, &upper)).len(), 1);

        let services = resource("services");
        let digit = validate_object(services, &json!({"metadata": {"name": "1web", "namespace": "default"}}));
        assert!(digit[0].message.contains("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"));

        let roles = resource("roles");
        let slash = validate_object(roles, &json!({"metadata": {"name": "system:a/b", "namespace": "default"}}));
        assert_eq!(messages(&slash), ["metadata.name: Invalid value: \"system:a/b\": may not contain '/'"]);
        assert_eq!(validate_object(roles, &json!({"metadata": {"name": "system:Controller", "namespace": "x"}})), []);

        let long = "a".repeat(64);
        let too_long = validate_object(resource("namespaces"), &json!({"metadata": {"name": long}}));
        assert_eq!(too_long[0].message, format!("Invalid value: \"{long}\": must be no more than 63 characters"));
    }

    #[test]
    fn name_or_generate_name_is_required() {
        let pods = resource("pods");
        let errors = validate_object(pods, &json!({"metadata": {"namespace": "default"}}));
        assert_eq!(errors, [FieldError { reason: "FieldValueRequired", field: "metadata.name".into(), message: "Required value: name or generateName is required".into() }]);
        // A generated name's prefix may end in a dash.
        let prefixed = json!({"metadata": {"generateName": "web-", "name": "web-x7k2p", "namespace": "default"}});
        assert_eq!(validate_object(pods, &prefixed), []);
        let bad_prefix = validate_object(pods, &json!({"metadata": {"generateName": "Web-", "name": "web-1", "namespace": "default"}}));
        assert_eq!(bad_prefix[0].field, "metadata.generateName");
        // Before the name is generated, the prefix alone will do.
        assert_eq!(validate_object(pods, &json!({"metadata": {"generateName": "web-", "namespace": "default"}})), []);
        let only_bad_prefix = validate_object(pods, &json!({"metadata": {"generateName": "Web-", "namespace": "default"}}));
        assert_eq!(only_bad_prefix.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["metadata.generateName"]);
    }

    #[test]
    fn namespaces_by_scope() {
        let nodes = resource("nodes");
        let errors = validate_object(nodes, &json!({"metadata": {"name": "n1", "namespace": "default"}}));
        assert_eq!(messages(&errors), ["metadata.namespace: Forbidden: not allowed on this type"]);
        let errors = validate_object(resource("pods"), &json!({"metadata": {"name": "p"}}));
        assert_eq!(messages(&errors), ["metadata.namespace: Required value"]);
    }

    #[test]
    fn labels_and_annotations() {
        let pods = resource("pods");
        let object = json!({"metadata": {"name": "p", "namespace": "d",
            "labels": {"app.kubernetes.io/name": "web", "bad key": "v", "ok": "-bad", "empty": ""},
            "annotations": {"Example.COM/Note": "fine", "a/b/c": "x"}}});
        let errors = messages(&validate_object(pods, &object));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters"));
        assert!(errors[1].starts_with("metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of"));
        assert!(errors[2].starts_with("metadata.annotations: Invalid value: \"a/b/c\": a qualified name must consist of"));

        let big = json!({"metadata": {"name": "p", "namespace": "d", "annotations": {"k": "x".repeat(256 * 1024)}}});
        let errors = validate_object(pods, &big);
        assert_eq!(errors[0].reason, "FieldValueTooLong");
        assert_eq!(messages(&errors), ["metadata.annotations: Too long: may not be more than 262144 bytes"]);
    }

    #[test]
    fn owner_references_and_finalizers() {
        let object = json!({"metadata": {"name": "p", "namespace": "d", "finalizers": ["example.com/cleanup", "bad/"],
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "", "controller": true}]}});
        let errors = messages(&validate_object(resource("pods"), &object));
        assert_eq!(errors[0], "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty");
        assert!(errors[1].ends_with("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"));
        assert!(errors[2].starts_with("metadata.finalizers: Invalid value: \"bad/\": name part must be non-empty"));
    }

    type Defaulter = fn(&mut Value);
    type Validator = fn(&Value) -> Vec<FieldError>;

    /// Runs `defaulter` on `object`, as the API server does before validating.
    fn check(defaulter: Defaulter, validator: Validator, mut object: Value) -> Vec<String> {
        defaulter(&mut object);
        messages(&validator(&object))
    }

    fn nginx_pod_spec() -> Value {
        json!({"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "readinessProbe": {"httpGet": {"port": 80}}}],
            "volumes": [{"name": "data"}]})
    }

    #[test]
    fn valid_pods_pass() {
        assert_eq!(check(defaults::pod, pod, json!({"spec": nginx_pod_spec()})), Vec::<String>::new());
    }

    #[test]
    fn pod_rules() {
        assert_eq!(check(defaults::pod, pod, json!({"spec": {}})), ["spec.containers: Required value"]);

        let spec = json!({"restartPolicy": "Sometimes", "dnsPolicy": "Nope",
            "volumes": [{"name": "v"}, {"name": "v"}, {"name": "Bad_Name"}, {"name": "two", "secret": {"secretName": "s"}, "configMap": {"name": "c"}}],
            "initContainers": [{"name": "web", "image": "busybox", "livenessProbe": {"exec": {"command": ["true"]}}}],
            "containers": [
                {"name": "web", "ports": [{"containerPort": 70000, "protocol": "XTP", "name": "http"}, {"containerPort": 81, "name": "http"}],
                 "volumeMounts": [{"name": "missing", "mountPath": "/m"}]},
                {"name": "web", "image": "x"}]});
        let errors = check(defaults::pod, pod, json!({"spec": spec}));
        let expected = [
            "spec.volumes[1].name: Duplicate value: \"v\"",
            "spec.volumes[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            "spec.volumes[3].configMap: Forbidden: may not specify more than 1 volume type",
            "spec.containers[0].image: Required value",
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[0].protocol: Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
            "spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
            "spec.containers[1].name: Duplicate value: \"web\"",
            "spec.initContainers[0].name: Duplicate value: \"web\"",
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            "spec.dnsPolicy: Unsupported value: \"Nope\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ];
        assert_eq!(errors, expected);
        let not_found = pod(&json!({"spec": {"containers": [{"name": "c", "volumeMounts": [{"name": "x"}]}]}}));
        assert_eq!(not_found.iter().find(|e| e.field.ends_with("volumeMounts[0].name")).map(|e| e.reason), Some("FieldValueNotFound"));
    }

    #[test]
    fn probes_need_one_handler() {
        let spec = json!({"containers": [{"name": "c", "image": "x",
            "livenessProbe": {"successThreshold": 2, "exec": {"command": ["true"]}},
            "readinessProbe": {"tcpSocket": {"port": "HTTP"}, "exec": {"command": []}},
            "startupProbe": {}}]});
        assert_eq!(
            check(defaults::pod, pod, json!({"spec": spec})),
            [
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
                "spec.containers[0].readinessProbe.exec.command: Required value",
                "spec.containers[0].startupProbe: Required value: must specify a handler type",
            ]
        );
    }

    fn deployment_object() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": nginx_pod_spec()}}})
    }

    #[test]
    fn valid_workloads_pass() {
        let template = deployment_object()["spec"]["template"].clone();
        let selector = json!({"matchLabels": {"app": "web"}});
        let cases: [(Defaulter, Validator, Value); 6] = [
            (defaults::deployment, deployment, deployment_object()),
            (defaults::replica_set, replica_set, json!({"spec": {"selector": selector, "template": template}})),
            (defaults::replication_controller, replication_controller, json!({"spec": {"template": template}})),
            (defaults::daemon_set, daemon_set, json!({"spec": {"selector": selector, "template": template}})),
            (
                defaults::stateful_set,
                stateful_set,
                json!({"spec": {"selector": selector, "serviceName": "web", "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres", "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "pgdata"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
            ),
            (
                defaults::job,
                job,
                json!({"metadata": {"name": "pi", "uid": "0b6f"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "pi", "image": "perl"}]}}}}),
            ),
        ];
        for (defaulter, validator, object) in cases {
            assert_eq!(check(defaulter, validator, object), Vec::<String>::new());
        }
    }

    #[test]
    fn selectors_must_match_templates() {
        let mut object = deployment_object();
        object["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
        assert_eq!(
            check(defaults::deployment, deployment, object),
            ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"]
        );

        let mut object = deployment_object();
        object["spec"].as_object_mut().map(|spec| spec.remove("selector"));
        assert_eq!(
            check(defaults::deployment, deployment, object),
            [
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );

        let mut object = deployment_object();
        object["spec"]["selector"] = json!({});
        assert_eq!(
            check(defaults::deployment, deployment, object),
            ["spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{},MatchExpressions:[]LabelSelectorRequirement{},}: empty selector is invalid for deployment"]
        );

        let mut object = deployment_object();
        object["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In"}]});
        let errors = check(defaults::deployment, deployment, object);
        assert_eq!(errors[0], "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'");
    }

    #[test]
    fn deployment_rules() {
        let mut object = deployment_object();
        object["spec"]["replicas"] = json!(-1);
        object["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        object["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        assert_eq!(
            check(defaults::deployment, deployment, object),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0",
            ]
        );

        let mut object = deployment_object();
        object["spec"]["strategy"] = json!({"type": "Rolling"});
        assert_eq!(
            check(defaults::deployment, deployment, object),
            ["spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:\"Rolling\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\""]
        );

        let mut object = deployment_object();
        object["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": "150%", "maxUnavailable": "abc"}});
        object["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        assert_eq!(
            check(defaults::deployment, deployment, object),
            [
                "spec.template.spec.containers[0].image: Required value",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: abc: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            ]
        );
    }

    #[test]
    fn other_workload_rules() {
        let rc = json!({"spec": {"replicas": 1}});
        assert_eq!(check(defaults::replication_controller, replication_controller, rc), ["spec.selector: Required value", "spec.template: Required value"]);

        let sts = json!({"spec": {"podManagementPolicy": "Sometimes", "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
            "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        assert_eq!(
            check(defaults::stateful_set, stateful_set, sts),
            [
                "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
                "spec.updateStrategy.rollingUpdate: Invalid value: apps.RollingUpdateStatefulSetStrategy{Partition:1, MaxUnavailable:(*intstr.IntOrString)(nil)}: only allowed for updateStrategy 'RollingUpdate'",
            ]
        );

        let ds = json!({"spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"activeDeadlineSeconds": 5, "containers": [{"name": "c", "image": "x"}]}}}});
        assert_eq!(
            check(defaults::daemon_set, daemon_set, ds),
            [
                "spec.template.spec.activeDeadlineSeconds: Invalid value: 5: activeDeadlineSeconds must be nil for daemons",
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0",
            ]
        );
    }

    #[test]
    fn jobs_must_not_restart_always() {
        let job_object = json!({"metadata": {"name": "pi", "uid": "u"}, "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}}});
        assert_eq!(
            check(defaults::job, job, job_object.clone()),
            ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        let mut always = job_object.clone();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(check(defaults::job, job, always), ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]);

        let mut indexed = job_object;
        indexed["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        indexed["spec"]["completionMode"] = json!("Indexed");
        indexed["spec"]["parallelism"] = json!(2);
        assert_eq!(check(defaults::job, job, indexed), ["spec.completions: Required value: when completion mode is Indexed"]);

        let unselected = json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}});
        assert_eq!(check(defaults::job, job, unselected)[0], "spec.selector: Required value");
    }

    fn cron_job_object(schedule: &str) -> Value {
        json!({"metadata": {"name": "report"}, "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    }

    #[test]
    fn cron_schedules() {
        for schedule in ["*/5 * * * *", "0 9-17 * * mon-fri", "30 2 1,15 * *", "0 0 * JAN,jul sun", "@hourly", "@every 1h30m", "5/10 * * * ?"] {
            assert_eq!(check(defaults::cron_job, cron_job, cron_job_object(schedule)), Vec::<String>::new(), "{schedule}");
        }
        let cases = [
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("x * * * *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("@often", "unrecognized descriptor: @often"),
            ("@every 5", "failed to parse duration @every 5: time: missing unit in duration \"5\""),
            ("@every 2d", "failed to parse duration @every 2d: time: unknown unit \"d\" in duration \"2d\""),
        ];
        for (schedule, message) in cases {
            let errors = check(defaults::cron_job, cron_job, cron_job_object(schedule));
            assert_eq!(errors, [format!("spec.schedule: Invalid value: {}: {message}", quoted(schedule))]);
        }
        let errors = check(defaults::cron_job, cron_job, cron_job_object(""));
        assert_eq!(errors, ["spec.schedule: Required value"]);
    }

    #[test]
    fn cron_job_rules() {
        let mut object = cron_job_object("@daily");
        object["metadata"]["name"] = json!("n".repeat(53));
        object["spec"]["timeZone"] = json!("Local");
        object["spec"]["concurrencyPolicy"] = json!("Sometimes");
        object["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        object["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            check(defaults::cron_job, cron_job, object),
            [
                "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
                "spec.jobTemplate.spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{a: b,},MatchExpressions:[]LabelSelectorRequirement{},}: `selector` will be auto-generated",
                &format!("metadata.name: Invalid value: \"{}\": must be no more than 52 characters", "n".repeat(53)),
            ]
        );
    }

    #[test]
    fn service_rules() {
        let ok = json!({"spec": {"type": "NodePort", "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "targetPort": "https"}]}});
        assert_eq!(check(defaults::service, service, ok), Vec::<String>::new());
        let headless = json!({"spec": {"clusterIP": "None", "selector": {"app": "db"}}});
        assert_eq!(check(defaults::service, service, headless), Vec::<String>::new());
        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com."}});
        assert_eq!(check(defaults::service, service, external), Vec::<String>::new());

        assert_eq!(check(defaults::service, service, json!({"spec": {}})), ["spec.ports: Required value"]);

        let bad = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 0, "nodePort": 80},
            {"name": "Web", "port": 443, "targetPort": 70000, "protocol": "HTTP"},
            {"name": "dup", "port": 443, "nodePort": 30001},
            {"name": "dup", "port": 8443, "nodePort": 30001}]}});
        assert_eq!(
            check(defaults::service, service, bad),
            [
                "spec.ports[0].name: Required value",
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[3].name: Duplicate value: \"dup\"",
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
                "spec.ports[3].nodePort: Duplicate value: 30001",
            ]
        );

        let clash = json!({"spec": {"type": "Mesh", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}});
        assert_eq!(
            check(defaults::service, service, clash),
            [
                "spec.type: Unsupported value: \"Mesh\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ]
        );
        let cluster_node_port = json!({"spec": {"ports": [{"port": 80, "nodePort": 30000}]}});
        assert_eq!(check(defaults::service, service, cluster_node_port), ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]);
    }

    #[test]
    fn odd_json_does_not_panic() {
        let validators: [Validator; 9] =
            [pod, service, replication_controller, deployment, replica_set, stateful_set, daemon_set, job, cron_job];
        let odd = [
            json!(null),
            json!("x"),
            json!({"spec": 5, "metadata": []}),
            json!({"spec": {"containers": {"a": 1}, "volumes": [1, null, {"secret": 3}], "ports": "p", "selector": [], "template": 4}}),
            json!({"spec": {"selector": {"matchLabels": 1, "matchExpressions": [2, {"values": "x"}]}, "template": {"metadata": {"labels": 3}, "spec": {"containers": [{"ports": [{"containerPort": "x"}], "livenessProbe": {"httpGet": 5}}]}}}}),
            json!({"spec": {"schedule": "TZ=x", "strategy": {"rollingUpdate": {"maxSurge": []}}, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": {}}}}}),
            json!({"spec": {"schedule": "@every ", "jobTemplate": {"spec": {"completionMode": "Indexed", "completions": 99999999999i64}}, "ports": [{"targetPort": null}]}}),
        ];
        let resources = Registry::get().types();
        for object in &odd {
            for validator in validators {
                validator(object);
            }
            for resource in resources {
                validate_object(resource, object);
            }
        }
    }

    #[test]
    fn go_rendering() {
        assert_eq!(quoted("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
        assert_eq!(go_string_map(None), "map[string]string(nil)");
        assert_eq!(go_string_map(Some(&json!({"b": "2", "a": "1"}))), "map[string]string{\"a\":\"1\", \"b\":\"2\"}");
    }
}
