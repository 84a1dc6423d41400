//! Defaults Kubernetes fills in on create and update, per kind.
//!
//! They follow kube-apiserver v1.32: the `SetDefaults_*` functions of `pkg/apis/*/v1/defaults.go`
//! and the generated defaulters that apply them to nested structs (every container, probe and
//! volume of a pod spec, of a pod and of every workload's pod template alike).
//!
//! A default only fills a field that is unset: absent or null, or, for fields Go keeps as plain
//! values, `""` or `0`. So defaulting is idempotent and never replaces what the user wrote. A field
//! of the wrong JSON type is left as it is; decoding is what rejects those.

use crate::meta::Pointer;
use serde_json::{json, Map, Value};

type Object = Map<String, Value>;

pub fn namespace(object: &mut Value) {
    let Some(namespace) = object.as_object_mut() else { return };
    let name = string(namespace.get("metadata"), "name").to_owned();
    let deleting = namespace.get("metadata").and_then(|m| m.get("deletionTimestamp")).is_some_and(|t| !t.is_null());
    // Not a default but a fact kube-apiserver maintains, so that label selectors can pick
    // namespaces by name: the label always equals the name, whatever the user sent.
    if !name.is_empty() {
        if let Some(labels) = child(namespace, "metadata").and_then(|m| child(m, "labels")) {
            labels.insert("kubernetes.io/metadata.name".into(), name.into());
        }
    }
    // The API server's own finalizer, which holds a deleted namespace until its contents are
    // gone. Namespace cleanup removes it at the end of a deletion, so it must not come back then.
    if !deleting {
        if let Some(spec) = child(namespace, "spec") {
            match spec.get_mut("finalizers") {
                Some(Value::Array(finalizers)) => {
                    if !finalizers.iter().any(|f| f == "kubernetes") {
                        finalizers.push("kubernetes".into());
                    }
                }
                None | Some(Value::Null) => {
                    spec.insert("finalizers".into(), json!(["kubernetes"]));
                }
                Some(_) => {}
            }
        }
    }
}

pub fn pod(object: &mut Value) {
    if let Some(spec) = object.as_object_mut().and_then(|pod| child(pod, "spec")) {
        pod_spec(spec, SpecOf::Pod);
    }
}

pub fn service(object: &mut Value) {
    let Some(service) = object.as_object_mut() else { return };
    let Some(spec) = child(service, "spec") else { return };
    service_spec(spec);
    // Load balancer addresses route traffic to the nodes (VIP) unless the provider said otherwise.
    if string(service.get("spec"), "type") == "LoadBalancer" {
        let ingress = service.get_mut("status").and_then(|s| s.get_mut("loadBalancer")).and_then(Value::as_object_mut);
        for point in ingress.into_iter().flat_map(|lb| elements(lb, "ingress")) {
            if !string_field(point, "ip").is_empty() {
                default(point, "ipMode", "VIP");
            }
        }
    }
}

pub fn secret(object: &mut Value) {
    if let Some(secret) = object.as_object_mut() {
        default_zero(secret, "type", "Opaque");
    }
}

pub fn replication_controller(object: &mut Value) {
    let Some(spec) = workload_spec(object, SpecOf::Template) else { return };
    default(spec, "replicas", 1);
    // A controller with no selector or labels of its own takes its template's labels for both.
    let Some(labels) = template_labels(spec) else { return };
    if is_empty_map(spec.get("selector")) {
        spec.insert("selector".into(), labels.clone());
    }
    if let Some(metadata) = object.as_object_mut().and_then(|rc| child(rc, "metadata")) {
        if is_empty_map(metadata.get("labels")) {
            metadata.insert("labels".into(), labels);
        }
    }
}

pub fn deployment(object: &mut Value) {
    let Some(spec) = workload_spec(object, SpecOf::Template) else { return };
    default(spec, "replicas", 1);
    if let Some(rolling_update) = rolling_update(spec, "strategy") {
        default(rolling_update, "maxUnavailable", "25%");
        default(rolling_update, "maxSurge", "25%");
    }
    default(spec, "revisionHistoryLimit", 10);
    default(spec, "progressDeadlineSeconds", 600);
}

pub fn replica_set(object: &mut Value) {
    if let Some(spec) = workload_spec(object, SpecOf::Template) {
        default(spec, "replicas", 1);
    }
}

pub fn stateful_set(object: &mut Value) {
    let Some(spec) = workload_spec(object, SpecOf::Template) else { return };
    default_zero(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = child(spec, "updateStrategy") {
        // Only a defaulted strategy gets a rolling update section; one the user typed as
        // RollingUpdate without it stays without.
        if is_zero(strategy.get("type")) {
            strategy.insert("type".into(), "RollingUpdate".into());
            default(strategy, "rollingUpdate", json!({}));
        }
        if string_field(strategy, "type") == "RollingUpdate" {
            if let Some(rolling_update) = existing(strategy, "rollingUpdate") {
                default(rolling_update, "partition", 0);
            }
        }
    }
    if let Some(policy) = child(spec, "persistentVolumeClaimRetentionPolicy") {
        default_zero(policy, "whenDeleted", "Retain");
        default_zero(policy, "whenScaled", "Retain");
    }
    default(spec, "replicas", 1);
    default(spec, "revisionHistoryLimit", 10);
    for claim in elements(spec, "volumeClaimTemplates") {
        persistent_volume_claim(claim);
    }
}

pub fn daemon_set(object: &mut Value) {
    let Some(spec) = workload_spec(object, SpecOf::Template) else { return };
    if let Some(rolling_update) = rolling_update(spec, "updateStrategy") {
        default(rolling_update, "maxUnavailable", 1);
        default(rolling_update, "maxSurge", 0);
    }
    default(spec, "revisionHistoryLimit", 10);
}

pub fn job(object: &mut Value) {
    let metadata = object.get("metadata");
    let (name, uid) = (string(metadata, "name").to_owned(), string(metadata, "uid").to_owned());
    let Some(spec) = workload_spec(object, SpecOf::BatchTemplate) else { return };
    // A non-parallel job may leave both unset; then it runs one pod to one completion.
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec.insert("completions".into(), 1.into());
    }
    default(spec, "parallelism", 1);
    // With a backoff limit per index, the job-wide limit would only get in the way.
    let backoff_limit = if is_unset(spec.get("backoffLimitPerIndex")) { 6 } else { i32::MAX };
    default(spec, "backoffLimit", backoff_limit);
    default(spec, "completionMode", "NonIndexed");
    default(spec, "suspend", false);
    if let Some(policy) = existing(spec, "podFailurePolicy") {
        for rule in elements(policy, "rules") {
            for pattern in elements(rule, "onPodConditions") {
                default_zero(pattern, "status", "True");
            }
        }
    }
    // Replacing pods only once they are fully gone is what a pod failure policy relies on.
    let replacement = if is_unset(spec.get("podFailurePolicy")) { "TerminatingOrFailed" } else { "Failed" };
    default(spec, "podReplacementPolicy", replacement);
    default(spec, "manualSelector", false);
    if spec.get("manualSelector") != Some(&Value::Bool(true)) && !uid.is_empty() {
        generate_job_selector(spec, &name, &uid);
    }
    // A job with no labels of its own takes its template's.
    let Some(labels) = template_labels(spec) else { return };
    if let Some(metadata) = object.as_object_mut().and_then(|job| child(job, "metadata")) {
        if is_empty_map(metadata.get("labels")) {
            metadata.insert("labels".into(), labels);
        }
    }
}

pub fn cron_job(object: &mut Value) {
    let Some(spec) = object.as_object_mut().and_then(|cron_job| child(cron_job, "spec")) else { return };
    default_zero(spec, "concurrencyPolicy", "Allow");
    default(spec, "suspend", false);
    default(spec, "successfulJobsHistoryLimit", 3);
    default(spec, "failedJobsHistoryLimit", 1);
    let template = existing(spec, "jobTemplate").and_then(|t| existing(t, "spec")).and_then(|s| existing(s, "template"));
    if let Some(template) = template {
        pod_template(template, SpecOf::BatchTemplate);
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads.

/// A workload's `spec`, after defaulting the pod template in it.
fn workload_spec(object: &mut Value, of: SpecOf) -> Option<&mut Object> {
    let spec = object.as_object_mut().and_then(|o| child(o, "spec"))?;
    if let Some(template) = existing(spec, "template") {
        pod_template(template, of);
    }
    Some(spec)
}

/// Defaults a Deployment's or DaemonSet's update strategy to a rolling update and returns its
/// `rollingUpdate` section, or `None` when the user chose another strategy.
fn rolling_update<'a>(spec: &'a mut Object, field: &str) -> Option<&'a mut Object> {
    let strategy = child(spec, field)?;
    default_zero(strategy, "type", "RollingUpdate");
    if string_field(strategy, "type") != "RollingUpdate" {
        return None;
    }
    child(strategy, "rollingUpdate")
}

/// Jobs select their pods by the job's UID, and label them with it and the job name, unless the
/// user chose the selector (`manualSelector`). kube-apiserver does this while creating a Job,
/// once the UID is known; Tugboat assigns the UID before defaulting, so it is done here.
fn generate_job_selector(spec: &mut Object, name: &str, uid: &str) {
    let labels = existing(spec, "template").and_then(|t| child(t, "metadata")).and_then(|m| child(m, "labels"));
    if let Some(labels) = labels {
        for (key, value) in [
            ("job-name", name),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", uid),
            ("batch.kubernetes.io/controller-uid", uid),
        ] {
            // A label the user set is kept; one that contradicts the selector fails validation.
            labels.entry(key).or_insert_with(|| value.into());
        }
    }
    if let Some(match_labels) = child(spec, "selector").and_then(|s| child(s, "matchLabels")) {
        match_labels.entry("batch.kubernetes.io/controller-uid").or_insert_with(|| uid.into());
    }
}

/// The labels of a workload's pod template, when it has some (possibly none: `{}`).
fn template_labels(spec: &Object) -> Option<Value> {
    spec.get("template").and_then(|t| t.at("/metadata/labels")).filter(|l| l.is_object()).cloned()
}

fn persistent_volume_claim(claim: &mut Object) {
    if let Some(spec) = child(claim, "spec") {
        default(spec, "volumeMode", "Filesystem");
    }
    if let Some(status) = child(claim, "status") {
        default_zero(status, "phase", "Pending");
    }
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates.

/// What a pod spec belongs to, which decides a few of its defaults.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SpecOf {
    /// A pod. Pods also get the defaults Kubernetes gives pods only and not templates (service
    /// links, requests from limits, host ports), so that they do not appear in every workload.
    Pod,
    /// The template of a workload whose pods always restart.
    Template,
    /// The template of a Job or CronJob. Its restart policy must be OnFailure or Never, so none
    /// is defaulted: validation asks for one (kube-apiserver fills in Always and then rejects
    /// it with the same error; leaving it unset stores nothing the user did not choose).
    BatchTemplate,
}

fn pod_template(template: &mut Object, of: SpecOf) {
    if let Some(spec) = child(template, "spec") {
        pod_spec(spec, of);
    }
}

fn pod_spec(spec: &mut Object, of: SpecOf) {
    default_zero(spec, "dnsPolicy", "ClusterFirst");
    if of != SpecOf::BatchTemplate {
        default_zero(spec, "restartPolicy", "Always");
    }
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", 30);
    default_zero(spec, "schedulerName", "default-scheduler");
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for c in elements(spec, field) {
            container(c);
        }
    }
    for v in elements(spec, "volumes") {
        volume(v);
    }
    if of == SpecOf::Pod {
        default(spec, "enableServiceLinks", true);
        let host_network = spec.get("hostNetwork") == Some(&Value::Bool(true));
        for field in ["initContainers", "containers"] {
            for c in elements(spec, field) {
                requests_from_limits(c);
                if host_network {
                    // On the host's network a container port is a host port.
                    for port in elements(c, "ports") {
                        if is_zero(port.get("hostPort")) {
                            if let Some(container_port) = port.get("containerPort").cloned() {
                                port.insert("hostPort".into(), container_port);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A container that states limits but not requests requests what it is limited to.
fn requests_from_limits(container: &mut Object) {
    let Some(resources) = existing(container, "resources") else { return };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else { return };
    if let Some(requests) = child(resources, "requests") {
        for (resource, quantity) in limits {
            requests.entry(resource).or_insert(quantity);
        }
    }
}

fn container(container: &mut Object) {
    if is_zero(container.get("imagePullPolicy")) {
        let policy = pull_policy(string_field(container, "image"));
        container.insert("imagePullPolicy".into(), policy.into());
    }
    default_zero(container, "terminationMessagePath", "/dev/termination-log");
    default_zero(container, "terminationMessagePolicy", "File");
    for port in elements(container, "ports") {
        default_zero(port, "protocol", "TCP");
    }
    for variable in elements(container, "env") {
        if let Some(field_ref) = existing(variable, "valueFrom").and_then(|v| existing(v, "fieldRef")) {
            default_zero(field_ref, "apiVersion", "v1");
        }
    }
    for field in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing(container, field) {
            probe(p);
        }
    }
    if let Some(lifecycle) = existing(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = existing(lifecycle, hook) {
                http_get(handler);
            }
        }
    }
}

fn probe(probe: &mut Object) {
    default_zero(probe, "timeoutSeconds", 1);
    default_zero(probe, "periodSeconds", 10);
    default_zero(probe, "successThreshold", 1);
    default_zero(probe, "failureThreshold", 3);
    http_get(probe);
    if let Some(grpc) = existing(probe, "grpc") {
        default(grpc, "service", "");
    }
}

fn http_get(handler: &mut Object) {
    if let Some(get) = existing(handler, "httpGet") {
        default_zero(get, "path", "/");
        default_zero(get, "scheme", "HTTP");
    }
}

/// Every source a v1.32 volume can name, in the order kube-apiserver's validation considers them
/// (the first one named is the volume's source). A volume that names none is an empty directory.
pub(crate) const VOLUME_SOURCES: [&str; 30] = [
    "hostPath", "emptyDir", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret", "nfs", "iscsi",
    "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "quobyte", "cinder", "cephfs", "downwardAPI", "fc",
    "flexVolume", "configMap", "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume", "azureDisk",
    "storageos", "projected", "scaleIO", "csi", "ephemeral", "image",
];

/// The file mode of files projected into a volume: 0644.
const DEFAULT_FILE_MODE: i64 = 0o644;

fn volume(volume: &mut Object) {
    if VOLUME_SOURCES.iter().all(|source| is_unset(volume.get(*source))) {
        volume.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = existing(volume, source) {
            default(source, "defaultMode", DEFAULT_FILE_MODE);
        }
    }
    if let Some(downward_api) = existing(volume, "downwardAPI") {
        field_refs(downward_api);
    }
    if let Some(projected) = existing(volume, "projected") {
        for source in elements(projected, "sources") {
            if let Some(token) = existing(source, "serviceAccountToken") {
                default(token, "expirationSeconds", 3600);
            }
            if let Some(downward_api) = existing(source, "downwardAPI") {
                field_refs(downward_api);
            }
        }
    }
    if let Some(host_path) = existing(volume, "hostPath") {
        // "" means: mount whatever is there, without checks.
        default(host_path, "type", "");
    }
    if let Some(iscsi) = existing(volume, "iscsi") {
        default_zero(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = existing(volume, "rbd") {
        default_zero(rbd, "pool", "rbd");
        default_zero(rbd, "user", "admin");
        default_zero(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(disk) = existing(volume, "azureDisk") {
        default(disk, "cachingMode", "ReadWrite");
        default(disk, "kind", "Shared");
        default(disk, "fsType", "ext4");
        default(disk, "readOnly", false);
    }
    if let Some(scale_io) = existing(volume, "scaleIO") {
        default_zero(scale_io, "storageMode", "ThinProvisioned");
        default_zero(scale_io, "fsType", "xfs");
    }
    let claim_spec = existing(volume, "ephemeral").and_then(|e| existing(e, "volumeClaimTemplate")).and_then(|t| existing(t, "spec"));
    if let Some(spec) = claim_spec {
        default(spec, "volumeMode", "Filesystem");
    }
}

/// Downward API items that name a field of the pod mean the v1 pod's.
fn field_refs(downward_api: &mut Object) {
    for item in elements(downward_api, "items") {
        if let Some(field_ref) = existing(item, "fieldRef") {
            default_zero(field_ref, "apiVersion", "v1");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Services.

fn service_spec(spec: &mut Object) {
    default_zero(spec, "sessionAffinity", "None");
    match string_field(spec, "sessionAffinity") {
        // Affinity settings without affinity mean nothing; kube-apiserver drops them.
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let client_ip = child(spec, "sessionAffinityConfig").and_then(|c| child(c, "clientIP"));
            if let Some(client_ip) = client_ip {
                default(client_ip, "timeoutSeconds", 10800);
            }
        }
        _ => {}
    }
    default_zero(spec, "type", "ClusterIP");
    for port in elements(spec, "ports") {
        default_zero(port, "protocol", "TCP");
        // Traffic goes to the same port on the pods unless another is named.
        if is_zero(port.get("targetPort")) {
            if let Some(number) = port.get("port").filter(|p| p.is_number()).cloned() {
                port.insert("targetPort".into(), number);
            }
        }
    }
    let service_type = string_field(spec, "type").to_owned();
    let has_external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible =
        matches!(service_type.as_str(), "NodePort" | "LoadBalancer") || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_zero(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(service_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default(spec, "internalTrafficPolicy", "Cluster");
    }
    if service_type == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", true);
    }
    if service_type != "ExternalName" {
        ip_families(spec);
    }
}

/// The IP family fields, which kube-apiserver settles when it allocates a Service's addresses.
/// Tugboat's service network is IPv4 only. Headless services without a selector, whose
/// endpoints are written by hand, may hold addresses of both families.
fn ip_families(spec: &mut Object) {
    let headless = string_field(spec, "clusterIP") == "None";
    let selectorless = is_empty_map(spec.get("selector"));
    let manual_endpoints = headless && selectorless;
    default(spec, "ipFamilyPolicy", if manual_endpoints { "RequireDualStack" } else { "SingleStack" });
    let no_families = match spec.get("ipFamilies") {
        None | Some(Value::Null) => true,
        Some(Value::Array(families)) => families.is_empty(),
        Some(_) => false,
    };
    if no_families {
        let families =
            if manual_endpoints && string_field(spec, "ipFamilyPolicy") != "SingleStack" { json!(["IPv4", "IPv6"]) } else { json!(["IPv4"]) };
        spec.insert("ipFamilies".into(), families);
    }
}

// ---------------------------------------------------------------------------------------------
// Container images.

/// `Always` for an image that names the `latest` tag, explicitly or by naming neither a tag
/// nor a digest; `IfNotPresent` for any other, including references that do not parse.
fn pull_policy(image: &str) -> &'static str {
    match parse_image_reference(image) {
        Some(ImageReference { tag: Some("latest"), .. } | ImageReference { tag: None, digest: None }) => "Always",
        _ => "IfNotPresent",
    }
}

struct ImageReference<'a> {
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Parses `[domain[:port]/]path[:tag][@digest]` with the grammar of container image references.
fn parse_image_reference(image: &str) -> Option<ImageReference<'_>> {
    // A bare image ID is not a reference.
    if image.len() == 64 && image.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    // A colon after the last slash starts the tag; an earlier one belongs to the registry's port.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    let valid = digest.is_none_or(is_digest) && tag.is_none_or(is_tag) && name.len() <= 255 && is_repository(name);
    valid.then_some(ImageReference { tag, digest })
}

/// Path components, optionally after a registry domain.
fn is_repository(name: &str) -> bool {
    let components: Vec<&str> = name.split('/').collect();
    match components.as_slice() {
        [only] => is_path_component(only),
        [first, rest @ ..] => (is_domain(first) || is_path_component(first)) && rest.iter().all(|c| is_path_component(c)),
        [] => false,
    }
}

/// Lowercase alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut separator = String::new();
    for b in bytes {
        if alnum(b) {
            let allowed = separator.is_empty() || matches!(separator.as_str(), "." | "_" | "__") || separator.bytes().all(|s| s == b'-');
            if !allowed {
                return false;
            }
            separator.clear();
        } else {
            separator.push(char::from(*b));
        }
    }
    true
}

/// A registry host (DNS labels, possibly uppercase, or a bracketed IPv6 address) and optional port.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (domain, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(ipv6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !ipv6.is_empty() && ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    host.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
    })
}

/// Up to 128 word characters, dots and dashes, not starting with a dot or dash.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    (1..=128).contains(&tag.len())
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, e.g. `sha256:` and 64 hex digits (at least 32).
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else { return false };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------------
// JSON helpers.

/// Absent or null: what Go decodes to a nil pointer, map or slice.
fn is_unset(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

/// Unset, or the zero value of a plain Go string or number field, which Go cannot tell apart
/// from unset.
fn is_zero(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => false,
    }
}

/// Unset or `{}`; a value of another type is not a map to fill.
fn is_empty_map(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

fn default(object: &mut Object, field: &str, value: impl Into<Value>) {
    if is_unset(object.get(field)) {
        object.insert(field.into(), value.into());
    }
}

fn default_zero(object: &mut Object, field: &str, value: impl Into<Value>) {
    if is_zero(object.get(field)) {
        object.insert(field.into(), value.into());
    }
}

/// `object[field]` as an object, created when unset; `None` when it holds something else.
fn child<'a>(object: &'a mut Object, field: &str) -> Option<&'a mut Object> {
    if is_unset(object.get(field)) {
        object.insert(field.into(), Value::Object(Map::new()));
    }
    object.get_mut(field).and_then(Value::as_object_mut)
}

/// `object[field]` as an object, if it is one.
fn existing<'a>(object: &'a mut Object, field: &str) -> Option<&'a mut Object> {
    object.get_mut(field).and_then(Value::as_object_mut)
}

/// The objects in the array `object[field]`.
fn elements<'a>(object: &'a mut Object, field: &str) -> impl Iterator<Item = &'a mut Object> {
    object.get_mut(field).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn string_field<'a>(object: &'a Object, field: &str) -> &'a str {
    object.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// `parent[field]` as a string, "" when absent or not a string.
fn string<'a>(parent: Option<&'a Value>, field: &str) -> &'a str {
    parent.and_then(|p| p.get(field)).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(defaulter: fn(&mut Value), mut object: Value) -> Value {
        defaulter(&mut object);
        let mut again = object.clone();
        defaulter(&mut again);
        assert_eq!(again, object, "defaulting twice changes nothing");
        object
    }

    #[test]
    fn pods_get_spec_container_and_volume_defaults() {
        let pod = defaulted(
            pod,
            json!({"metadata": {"name": "p"}, "spec": {
                "containers": [{"name": "c", "image": "nginx:1.25",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "readinessProbe": {"grpc": {"port": 9000}},
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}],
                "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "cfg"}},
                            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(c["livenessProbe"], json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}));
        assert_eq!(c["readinessProbe"]["grpc"]["service"], "");
        assert_eq!(c["resources"]["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][2]["projected"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][2]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3600);
    }

    #[test]
    fn user_values_are_kept() {
        let pod = defaulted(
            pod,
            json!({"spec": {"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 0,
                "enableServiceLinks": false, "securityContext": {"runAsUser": 1000},
                "containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never",
                    "ports": [{"containerPort": 53, "protocol": "UDP"}],
                    "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 30}}],
                "volumes": [{"name": "s", "secret": {"secretName": "s", "defaultMode": 256}}]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["dnsPolicy"], "Default");
        assert_eq!(spec["terminationGracePeriodSeconds"], 0);
        assert_eq!(spec["enableServiceLinks"], false);
        assert_eq!(spec["securityContext"], json!({"runAsUser": 1000}));
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "UDP");
        assert_eq!(spec["containers"][0]["livenessProbe"]["periodSeconds"], 30);
        assert_eq!(spec["volumes"][0]["secret"]["defaultMode"], 256);
        assert!(spec["volumes"][0].get("emptyDir").is_none());
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("docker.io/library/nginx", "Always"),
            ("localhost:5000/team/app", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("registry.example.com:5000/app:v1", "IfNotPresent"),
            (&format!("nginx@{digest}"), "IfNotPresent"),
            (&format!("nginx:latest@{digest}"), "Always"),
            ("Nginx", "IfNotPresent"),
            ("nginx:", "IfNotPresent"),
            ("", "IfNotPresent"),
        ];
        for (image, expected) in cases {
            assert_eq!(pull_policy(image), expected, "{image}");
        }
    }

    #[test]
    fn host_network_pods_use_container_ports_on_the_host() {
        let pod = defaulted(pod, json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}));
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn templates_get_pod_spec_defaults_but_not_pod_only_ones() {
        let rolling = defaulted(
            deployment,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"limits": {"cpu": "1"}}}]}}}}),
        );
        let spec = &rolling["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let pod_spec = &spec["template"]["spec"];
        assert_eq!(pod_spec["restartPolicy"], "Always");
        assert_eq!(pod_spec["containers"][0]["imagePullPolicy"], "Always");
        assert!(pod_spec.get("enableServiceLinks").is_none());
        assert!(pod_spec["containers"][0]["resources"].get("requests").is_none());

        let recreate = defaulted(deployment, json!({"spec": {"strategy": {"type": "Recreate"}}}));
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn replication_controllers_take_selector_and_labels_from_the_template() {
        let rc = defaulted(replication_controller, json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "web"}}}}}));
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        let own = defaulted(
            replication_controller,
            json!({"metadata": {"labels": {"team": "a"}}, "spec": {"replicas": 0, "selector": {"app": "x"}, "template": {"metadata": {"labels": {"app": "x", "v": "1"}}}}}),
        );
        assert_eq!(own["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(own["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(own["spec"]["replicas"], 0);
    }

    #[test]
    fn stateful_and_daemon_sets() {
        let sts = defaulted(stateful_set, json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}));
        let spec = &sts["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(spec["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        assert_eq!((spec["replicas"].clone(), spec["revisionHistoryLimit"].clone()), (json!(1), json!(10)));
        assert_eq!(spec["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
        assert_eq!(spec["volumeClaimTemplates"][0]["status"]["phase"], "Pending");
        let on_delete = defaulted(stateful_set, json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}));
        assert_eq!(on_delete["spec"]["updateStrategy"], json!({"type": "OnDelete"}));

        let ds = defaulted(daemon_set, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": "10%"}}}}));
        assert_eq!(ds["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "10%"}}));
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn jobs_select_their_pods_by_uid() {
        let pi = defaulted(
            job,
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"metadata": {"labels": {"app": "pi"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}}),
        );
        let spec = &pi["spec"];
        assert_eq!((spec["completions"].clone(), spec["parallelism"].clone(), spec["backoffLimit"].clone()), (json!(1), json!(1), json!(6)));
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels["app"], "pi");
        assert_eq!(&pi["metadata"]["labels"], labels);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn job_templates_get_no_restart_policy() {
        let parallel = defaulted(job, json!({"spec": {"parallelism": 3, "template": {"spec": {"containers": [{"name": "c"}]}}}}));
        assert!(parallel["spec"].get("completions").is_none());
        assert!(parallel["spec"]["template"]["spec"].get("restartPolicy").is_none());
        assert_eq!(parallel["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        // Without a UID (not yet created) there is nothing to select by.
        assert!(parallel["spec"].get("selector").is_none());

        let manual = defaulted(job, json!({"metadata": {"uid": "u"}, "spec": {"manualSelector": true, "backoffLimitPerIndex": 1, "podFailurePolicy": {"rules": [{"onPodConditions": [{"type": "DisruptionTarget"}]}]}}}));
        assert!(manual["spec"].get("selector").is_none());
        assert_eq!(manual["spec"]["backoffLimit"], i32::MAX);
        assert_eq!(manual["spec"]["podReplacementPolicy"], "Failed");
        assert_eq!(manual["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"], "True");

        let cron = defaulted(cron_job, json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}}}}));
        let spec = &cron["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!((spec["suspend"].clone(), spec["successfulJobsHistoryLimit"].clone(), spec["failedJobsHistoryLimit"].clone()), (json!(false), json!(3), json!(1)));
        assert_eq!(spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"], "OnFailure");
        assert_eq!(spec["jobTemplate"]["spec"]["template"]["spec"]["schedulerName"], "default-scheduler");
    }

    #[test]
    fn services() {
        let svc = defaulted(service, json!({"spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}));
        let spec = &svc["spec"];
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));

        let plain = defaulted(service, json!({"spec": {"ports": [{"port": 80}]}}));
        assert_eq!(plain["spec"]["type"], "ClusterIP");
        assert!(plain["spec"].get("externalTrafficPolicy").is_none());

        let headless = defaulted(service, json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));

        let external = defaulted(service, json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}));
        assert!(external["spec"].get("ipFamilyPolicy").is_none());
        assert!(external["spec"].get("internalTrafficPolicy").is_none());

        let sticky = defaulted(service, json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "h"}]}}}));
        assert_eq!(sticky["spec"]["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));
        assert_eq!(sticky["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(sticky["status"]["loadBalancer"]["ingress"], json!([{"ip": "1.2.3.4", "ipMode": "VIP"}, {"hostname": "h"}]));
    }

    #[test]
    fn secrets_and_namespaces() {
        assert_eq!(defaulted(secret, json!({}))["type"], "Opaque");
        assert_eq!(defaulted(secret, json!({"type": "kubernetes.io/tls"}))["type"], "kubernetes.io/tls");

        let ns = defaulted(namespace, json!({"metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "spoofed"}}}));
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        let own = defaulted(namespace, json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["example.com/x"]}}));
        assert_eq!(own["spec"]["finalizers"], json!(["example.com/x", "kubernetes"]));
        // Once namespace cleanup has released it, a deleting namespace does not get it back.
        let deleting = defaulted(namespace, json!({"metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"finalizers": []}}));
        assert_eq!(deleting["spec"]["finalizers"], json!([]));
        assert!(ns.get("status").is_none());
    }

    #[test]
    fn odd_json_does_not_panic() {
        let defaulters: [fn(&mut Value); 11] =
            [namespace, pod, service, secret, replication_controller, deployment, replica_set, stateful_set, daemon_set, job, cron_job];
        let odd = [
            json!(null),
            json!(7),
            json!({"spec": "x", "metadata": 1}),
            json!({"spec": {"template": [1], "strategy": 5, "ports": {"a": 1}, "updateStrategy": {"type": 3}}}),
            json!({"spec": {"template": {"metadata": {"labels": "x"}, "spec": {"containers": [1, {"ports": 2, "livenessProbe": []}], "volumes": "v"}}}}),
            json!({"spec": {"containers": {"a": 1}, "volumes": [null, {"projected": {"sources": [3]}}], "hostNetwork": true}}),
            json!({"spec": {"jobTemplate": {"spec": 4}, "ports": [{"port": "80"}]}, "status": {"loadBalancer": {"ingress": [1]}}}),
        ];
        for defaulter in defaulters {
            for object in &odd {
                defaulted(defaulter, object.clone());
            }
        }
    }
}
