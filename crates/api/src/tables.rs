//! Table output (`kubectl get`): the columns of each kind and how a row is computed.
//!
//! Columns, their order, names, types and priorities follow kube-apiserver v1.32's printers. The
//! server always computes every cell, `-o wide` (priority 1) ones included, as kube-apiserver
//! does; kubectl hides the priority 1 columns unless asked for them.

use crate::meta::Pointer;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::time::Duration;

use crate::meta;

/// One column of a table, as `meta.k8s.io/v1` TableColumnDefinition.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// `name` for the NAME column, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: i32,
}

/// The table of one kind.
pub struct TableSpec {
    pub columns: &'static [Column],
    /// One cell per column, in order, for `object`; `now` is the current time, for ages.
    pub row: fn(object: &Value, now: jiff::Timestamp) -> Vec<Value>,
}

/// `duration` the way Kubernetes prints ages (apimachinery's `duration.HumanDuration`): whole
/// seconds up to 2 minutes, then ever coarser units with about two significant figures
/// ("45s", "5m30s", "3h15m", "2d4h", "400d", "3y20d").
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// "5m" or "5m30s": the smaller unit is left out when it is zero.
fn with_remainder(major: u64, major_unit: &str, minor: u64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

/// A signed duration as Kubernetes prints it: up to a second in the future still reads "0s"
/// (clocks of different machines disagree a little); further in the future is "<invalid>".
fn human_signed_duration(duration: jiff::SignedDuration) -> String {
    if duration.as_secs() < -1 {
        "<invalid>".into()
    } else if duration.is_negative() {
        "0s".into()
    } else {
        human_duration(duration.unsigned_abs())
    }
}

// ---------------------------------------------------------------------------------------------
// Column definitions shared by several kinds.

const fn column(name: &'static str, type_: &'static str, priority: i32, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.",
    priority: 0,
};
const AGE: Column = column("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");
const CONTAINERS: Column = column("Containers", "string", 1, "Names of each container in the template.");
const IMAGES: Column = column("Images", "string", 1, "Images referenced by each container in the template.");
const SELECTOR: Column = column("Selector", "string", 1, "A label query over pods that should match the replica count.");

// ---------------------------------------------------------------------------------------------
// Tables.

/// Kinds without a printer of their own get kube-apiserver's default table: NAME and CREATED AT
/// (an RFC 3339 `date`, not an age).
pub static DEFAULT: TableSpec = TableSpec { columns: &CREATED_AT_COLUMNS, row: created_at_row };

const CREATED_AT_COLUMNS: [Column; 2] =
    [NAME, column("Created At", "date", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.")];

fn created_at_row(object: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    // RFC 3339 in whole seconds; an absent timestamp is Go's zero time, printed as such.
    let created = timestamp(object, "/metadata/creationTimestamp")
        .and_then(|t| jiff::Timestamp::from_second(t.as_second()).ok())
        .map_or_else(|| "0001-01-01T00:00:00Z".into(), |t| t.to_string());
    vec![name(object), created.into()]
}

pub static NAMESPACE: TableSpec = TableSpec {
    columns: &[NAME, column("Status", "string", 0, "The status of the namespace"), AGE],
    row: |o, now| vec![name(o), text(o, "/status/phase").into(), age(o, now)],
};

pub static POD: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", "string", 0, "The aggregate status of the containers in this pod."),
        column("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        AGE,
        column("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster."),
        column("Node", "string", 1, "NodeName indicates in which node this pod is scheduled."),
        column("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
        column("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
    ],
    row: pod_row,
};

pub static SERVICE: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Type", "string", 0, "type determines how the Service is exposed."),
        column("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
        column("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
        column("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
        AGE,
        column("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
    ],
    row: service_row,
};

pub static ENDPOINTS: TableSpec = TableSpec {
    columns: &[NAME, column("Endpoints", "string", 0, "The set of all endpoints is the union of all subsets."), AGE],
    row: |o, now| vec![name(o), endpoints_cell(o).into(), age(o, now)],
};

pub static CONFIG_MAP: TableSpec = TableSpec {
    columns: &[NAME, column("Data", "string", 0, "Data contains the configuration data."), AGE],
    row: |o, now| vec![name(o), (count(o, "/data") + count(o, "/binaryData")).into(), age(o, now)],
};

pub static SECRET: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Type", "string", 0, "Used to facilitate programmatic handling of secret data."),
        column("Data", "string", 0, "Data contains the secret data."),
        AGE,
    ],
    row: |o, now| vec![name(o), text(o, "/type").into(), secret_keys(o).into(), age(o, now)],
};

pub static NODE: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Status", "string", 0, "The status of the node"),
        column("Roles", "string", 0, "The roles of the node"),
        AGE,
        column("Version", "string", 0, "Kubelet Version reported by the node."),
        column("Internal-IP", "string", 1, "List of addresses reachable to the node."),
        column("External-IP", "string", 1, "List of addresses reachable to the node."),
        column("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release."),
        column("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r'."),
        column("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API."),
    ],
    row: node_row,
};

const EVENT_COLUMNS: [Column; 10] = [
    column("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
    column("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
    column("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    column("Object", "string", 0, "The object that this event is about."),
    column("Subobject", "string", 1, "The part of the object the event is about, e.g. a container."),
    column("Source", "string", 1, "The component reporting this event."),
    column("Message", "string", 0, "A human-readable description of the status of this operation."),
    column("First Seen", "string", 1, "The time at which the event was first recorded."),
    column("Count", "string", 1, "The number of times this event has occurred."),
    Column { priority: 1, ..NAME },
];

pub static EVENT: TableSpec = TableSpec { columns: &EVENT_COLUMNS, row: |o, now| event_row(&EventFields::core(o), now) };
/// events.k8s.io/v1 events are the same objects as core/v1 events under other field names, and
/// kube-apiserver prints them with the same printer.
pub static EVENTS_V1: TableSpec = TableSpec { columns: &EVENT_COLUMNS, row: |o, now| event_row(&EventFields::events_v1(o), now) };

pub static SERVICE_ACCOUNT: TableSpec = TableSpec {
    columns: &[NAME, column("Secrets", "string", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE],
    row: |o, now| vec![name(o), list(o, "/secrets").len().into(), age(o, now)],
};

pub static REPLICATION_CONTROLLER: TableSpec = TableSpec {
    columns: &REPLICA_COLUMNS,
    row: |o, now| replica_row(o, now, format_labels(o.at("/spec/selector"))),
};
pub static REPLICA_SET: TableSpec = TableSpec {
    columns: &REPLICA_COLUMNS,
    row: |o, now| replica_row(o, now, format_label_selector(o.at("/spec/selector"))),
};

const REPLICA_COLUMNS: [Column; 8] = [
    NAME,
    column("Desired", "integer", 0, "Replicas is the number of desired replicas."),
    column("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
    column("Ready", "integer", 0, "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub static PERSISTENT_VOLUME: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity."),
        column("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted."),
        column("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
        column("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
        column("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
        column("StorageClass", "string", 0, "StorageClass of the pv"),
        column("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
        column("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE,
        column("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
    ],
    row: persistent_volume_row,
};

pub static PERSISTENT_VOLUME_CLAIM: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
        column("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
        column("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
        column("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has."),
        column("StorageClass", "string", 0, "StorageClass of the pvc"),
        column("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
        AGE,
        column("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim."),
    ],
    row: persistent_volume_claim_row,
};

pub static RESOURCE_QUOTA: TableSpec = TableSpec {
    columns: &[
        NAME,
        AGE,
        column("Request", "string", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
        column("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    ],
    row: resource_quota_row,
};

pub static DEPLOYMENT: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Ready", "string", 0, "Number of the pod with ready state"),
        column("Up-to-date", "string", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
        column("Available", "string", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
        AGE,
        CONTAINERS,
        IMAGES,
        column("Selector", "string", 1, "Label selector for pods."),
    ],
    row: deployment_row,
};

pub static STATEFUL_SET: TableSpec = TableSpec {
    columns: &[NAME, column("Ready", "string", 0, "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES],
    row: |o, now| {
        let (containers, images) = container_cells(o.at("/spec/template"));
        vec![name(o), ratio(o, "/status/readyReplicas", "/spec/replicas"), age(o, now), containers, images]
    },
};

pub static DAEMON_SET: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
        column("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
        column("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
        column("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
        column("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
        column("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: daemon_set_row,
};

pub static CONTROLLER_REVISION: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Controller", "string", 0, "Controller of the object"),
        column("Revision", "string", 0, "Revision indicates the revision of the state represented by Data."),
        AGE,
    ],
    row: |o, now| vec![name(o), controller_of(o).into(), int(o, "/revision").into(), age(o, now)],
};

pub static JOB: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Status", "string", 0, "Status of the job."),
        column("Completions", "string", 0, "The number of pods which reached phase Succeeded."),
        column("Duration", "string", 0, "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: job_row,
};

pub static CRON_JOB: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        column("Timezone", "string", 0, "The time zone name for the given schedule."),
        column("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions."),
        column("Active", "integer", 0, "A list of pointers to currently running jobs."),
        column("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: cron_job_row,
};

pub static HORIZONTAL_POD_AUTOSCALER: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Reference", "string", 0, "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
        column("Targets", "string", 0, "metrics contains the specifications for which to use to calculate the desired replica count."),
        column("MinPods", "string", 0, "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
        column("MaxPods", "string", 0, "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
        column("Replicas", "string", 0, "currentReplicas is current number of replicas of pods managed by this autoscaler."),
        AGE,
    ],
    row: horizontal_pod_autoscaler_row,
};

pub static LEASE: TableSpec = TableSpec {
    columns: &[NAME, column("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease."), AGE],
    row: |o, now| vec![name(o), text(o, "/spec/holderIdentity").into(), age(o, now)],
};

pub static ENDPOINT_SLICE: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("AddressType", "string", 0, "addressType specifies the type of address carried by this EndpointSlice."),
        column("Ports", "string", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
        column("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
        AGE,
    ],
    row: endpoint_slice_row,
};

pub static NETWORK_POLICY: TableSpec = TableSpec {
    columns: &[NAME, column("Pod-Selector", "string", 0, "Selects the pods to which this NetworkPolicy object applies."), AGE],
    row: |o, now| vec![name(o), format_label_selector(o.at("/spec/podSelector")).into(), age(o, now)],
};

pub static ROLE_BINDING: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Role", "string", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
        AGE,
        column("Users", "string", 1, "Users in the roleBinding"),
        column("Groups", "string", 1, "Groups in the roleBinding"),
        column("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding"),
    ],
    row: role_binding_row,
};

pub static PRIORITY_CLASS: TableSpec = TableSpec {
    columns: &[
        NAME,
        column("Value", "integer", 0, "value represents the integer value of this priority class."),
        column("Global-Default", "boolean", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
        AGE,
        column("PreemptionPolicy", "string", 0, "preemptionPolicy is the Policy for preempting pods with lower priority."),
    ],
    row: |o, now| {
        let global_default = o.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
        vec![name(o), int(o, "/value").into(), global_default.into(), age(o, now), text(o, "/preemptionPolicy").into()]
    },
};

// ---------------------------------------------------------------------------------------------
// Reading the JSON: absent or wrongly typed fields read as Go's zero values, as they would after
// decoding into the typed structs kube-apiserver prints from.

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    meta::str_at(object, pointer)
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.at(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object.at(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn object_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    object.at(pointer).and_then(Value::as_object)
}

/// The number of entries of the map at `pointer`.
fn count(object: &Value, pointer: &str) -> usize {
    object_at(object, pointer).map_or(0, Map::len)
}

fn timestamp(object: &Value, pointer: &str) -> Option<jiff::Timestamp> {
    text(object, pointer).parse().ok()
}

fn name(object: &Value) -> Value {
    meta::name(object).into()
}

fn age(object: &Value, now: jiff::Timestamp) -> Value {
    since(text(object, "/metadata/creationTimestamp"), now).into()
}

/// How long ago `time` (RFC 3339) was, or "<unknown>" when it is not set.
fn since(time: &str, now: jiff::Timestamp) -> String {
    match time.parse::<jiff::Timestamp>() {
        Ok(t) => human_signed_duration(now.duration_since(t)),
        Err(_) => "<unknown>".into(),
    }
}

/// "ready/desired", for the kinds whose READY column compares two counts.
fn ratio(object: &Value, ready: &str, desired: &str) -> Value {
    format!("{}/{}", int(object, ready), int(object, desired)).into()
}

fn none_if_empty(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

/// A label map as `a=b,c=d` (sorted by key), or "<none>".
fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    none_if_empty(pairs.join(","))
}

/// A `metav1.LabelSelector` in the string form of Kubernetes' selectors (requirements sorted by
/// key, value sets sorted): "" for an empty or absent selector, `Err` for one that cannot be
/// converted to a selector (unknown operator, a value set where none belongs, or vice versa).
fn selector_string(selector: Option<&Value>) -> Result<String, ()> {
    let Some(selector) = selector.and_then(Value::as_object) else { return Ok(String::new()) };
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (key, value) in selector.get("matchLabels").and_then(Value::as_object).into_iter().flatten() {
        requirements.push((key.clone(), format!("{key}={}", value.as_str().unwrap_or_default())));
    }
    for expression in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = text(expression, "/key");
        let mut values: Vec<&str> = list(expression, "/values").iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let rendered = match (text(expression, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(()),
        };
        requirements.push((key.to_string(), rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// A label selector as kubectl shows one (metav1.FormatLabelSelector): "<none>" when empty,
/// "<error>" when invalid.
fn format_label_selector(selector: Option<&Value>) -> String {
    selector_string(selector).map_or_else(|()| "<error>".into(), none_if_empty)
}

/// The CONTAINERS and IMAGES cells of a pod template: names and images, comma-separated.
fn container_cells(template: Option<&Value>) -> (Value, Value) {
    let containers = template.map_or(&[][..], |t| list(t, "/spec/containers"));
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(",").into(), images.join(",").into())
}

// ---------------------------------------------------------------------------------------------
// Pods.

/// A pod's row, with the kubelet-style STATUS reasoning of kubectl: the first init container
/// that has not succeeded explains the status ("Init:1/2", "Init:CrashLoopBackOff"), else the
/// last container with a waiting or terminated reason does, else the pod phase.
fn pod_row(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let init_specs = list(pod, "/spec/initContainers");
    // Sidecars (init containers that restart always) count as containers of the pod.
    let sidecars: BTreeSet<&str> =
        init_specs.iter().filter(|c| text(c, "/restartPolicy") == "Always").map(|c| text(c, "/name")).collect();
    let total = list(pod, "/spec/containers").len() + sidecars.len();
    let conditions = list(pod, "/status/conditions");
    let condition_true = |kind: &str| conditions.iter().any(|c| text(c, "/type") == kind && text(c, "/status") == "True");

    let phase = text(pod, "/status/phase");
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if conditions.iter().any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    let mut ready = 0;
    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, status) in list(pod, "/status/initContainerStatuses").iter().enumerate() {
        restarts.add(status);
        let sidecar = sidecars.contains(text(status, "/name"));
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = status.at("/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = match terminated {
            Some(t) => format!("Init:{}", termination_reason(t)),
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => format!("Init:{waiting_reason}"),
            None => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true("Initialized") {
        // Only sidecars keep counting once the pod has initialized.
        restarts = sidecar_restarts;
        let mut has_running = false;
        for status in list(pod, "/status/containerStatuses").iter().rev() {
            restarts.add(status);
            let waiting_reason = text(status, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = status.at("/state/terminated") {
                reason = termination_reason(terminated);
            } else if status.get("ready").and_then(Value::as_bool) == Some(true) && status.at("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is not "Completed".
        if reason == "Completed" && has_running {
            reason = if condition_true("Ready") { "Running" } else { "NotReady" }.into();
        }
    }

    if pod.at("/metadata/deletionTimestamp").is_some() {
        if text(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => format!("{} ({} ago)", restarts.count, human_signed_duration(now.duration_since(last))),
        _ => restarts.count.to_string(),
    };

    // kube-apiserver converts a lone status.podIP into status.podIPs before printing.
    let ip = list(pod, "/status/podIPs").first().map_or_else(|| text(pod, "/status/podIP"), |p| text(p, "/ip"));
    let gates = list(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passed = gates
            .iter()
            .filter(|gate| {
                let kind = text(gate, "/conditionType");
                conditions.iter().find(|c| text(c, "/type") == kind).is_some_and(|c| text(c, "/status") == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };

    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        age(pod, now),
        none_if_empty(ip.into()).into(),
        none_if_empty(text(pod, "/spec/nodeName").into()).into(),
        none_if_empty(text(pod, "/status/nominatedNodeName").into()).into(),
        readiness_gates.into(),
    ]
}

/// Restarts of a set of containers and when the latest of them ended.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<jiff::Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int(status, "/restartCount");
        if let Some(finished) = timestamp(status, "/lastState/terminated/finishedAt") {
            self.last = self.last.max(Some(finished));
        }
    }
}

/// Why a container terminated: its reason, else the signal or exit code.
fn termination_reason(terminated: &Value) -> String {
    match text(terminated, "/reason") {
        "" if int(terminated, "/signal") != 0 => format!("Signal:{}", int(terminated, "/signal")),
        "" => format!("ExitCode:{}", int(terminated, "/exitCode")),
        reason => reason.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Services, endpoints and endpoint slices.

fn service_row(service: &Value, now: jiff::Timestamp) -> Vec<Value> {
    // Services written before clusterIPs existed only carry clusterIP.
    let cluster_ip = list(service, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(service, "/spec/clusterIP"));
    let ports: Vec<String> = list(service, "/spec/ports")
        .iter()
        .map(|p| {
            let (port, protocol) = (int(p, "/port"), text(p, "/protocol"));
            match int(p, "/nodePort") {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(service),
        text(service, "/spec/type").into(),
        none_if_empty(cluster_ip.into()).into(),
        external_ip(service).into(),
        none_if_empty(ports.join(",")).into(),
        age(service, now),
        format_labels(service.at("/spec/selector")).into(),
    ]
}

/// The EXTERNAL-IP cell: external IPs, load balancer ingress points, or the external name.
fn external_ip(service: &Value) -> String {
    let external_ips: Vec<&str> = list(service, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match text(service, "/spec/type") {
        "ClusterIP" | "NodePort" => none_if_empty(external_ips.join(",")),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list(service, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match text(i, "/ip") {
                    "" => text(i, "/hostname"),
                    ip => ip,
                })
                .filter(|address| !address.is_empty())
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external_ips).collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(service, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    }
}

/// Up to three of `items` joined by commas, then " + N more...", or `empty` when there are none.
fn first_three(items: Vec<String>, empty: &str) -> String {
    const SHOWN: usize = 3;
    match items.len() {
        0 => empty.into(),
        n if n > SHOWN => format!("{} + {} more...", items[..SHOWN].join(","), n - SHOWN),
        _ => items.join(","),
    }
}

/// The ENDPOINTS cell: `ip:port` for every address and port (just `ip` for port-less subsets).
fn endpoints_cell(endpoints: &Value) -> String {
    let subsets = list(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut items = Vec::new();
    for subset in subsets {
        let addresses = list(subset, "/addresses");
        let ports = list(subset, "/ports");
        if ports.is_empty() {
            items.extend(addresses.iter().map(|a| text(a, "/ip").to_string()));
        }
        for port in ports {
            items.extend(addresses.iter().map(|a| host_port(text(a, "/ip"), int(port, "/port"))));
        }
    }
    // Subsets whose addresses are all gone leave an empty cell, not "<none>".
    first_three(items, "")
}

/// `host:port`, with IPv6 hosts in brackets.
fn host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn endpoint_slice_row(slice: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ports = list(slice, "/ports")
        .iter()
        .map(|p| match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".into(),
        })
        .collect();
    let addresses = list(slice, "/endpoints")
        .iter()
        .flat_map(|e| list(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect();
    vec![
        name(slice),
        text(slice, "/addressType").into(),
        first_three(ports, "<unset>").into(),
        first_three(addresses, "<unset>").into(),
        age(slice, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Configuration and storage.

/// The number of keys of a secret; `stringData` entries are part of `data` once stored.
fn secret_keys(secret: &Value) -> usize {
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for field in ["/data", "/stringData"] {
        keys.extend(object_at(secret, field).into_iter().flat_map(Map::keys).map(String::as_str));
    }
    keys.len()
}

/// Access modes abbreviated (RWO, ROX, RWX, RWOP) in that fixed order, as kubectl prints them.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class: the legacy beta annotation wins over `spec.storageClassName`.
fn storage_class(object: &Value) -> &str {
    match text(object, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class") {
        "" => text(object, "/spec/storageClassName"),
        class => class,
    }
}

/// A phase, or "Terminating" once deletion has begun.
fn phase_or_terminating(object: &Value) -> Value {
    if object.at("/metadata/deletionTimestamp").is_some() {
        "Terminating".into()
    } else {
        text(object, "/status/phase").into()
    }
}

fn unset_if_empty(value: &str) -> Value {
    if value.is_empty() { "<unset>" } else { value }.into()
}

fn persistent_volume_row(volume: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let claim = match volume.at("/spec/claimRef") {
        Some(claim) => format!("{}/{}", text(claim, "/namespace"), text(claim, "/name")),
        None => String::new(),
    };
    // An absent quantity prints as the zero quantity.
    let capacity = match text(volume, "/spec/capacity/storage") {
        "" => "0",
        size => size,
    };
    vec![
        name(volume),
        capacity.into(),
        access_modes(list(volume, "/spec/accessModes")).into(),
        text(volume, "/spec/persistentVolumeReclaimPolicy").into(),
        phase_or_terminating(volume),
        claim.into(),
        storage_class(volume).into(),
        unset_if_empty(text(volume, "/spec/volumeAttributesClassName")),
        text(volume, "/status/reason").into(),
        age(volume, now),
        unset_if_empty(text(volume, "/spec/volumeMode")),
    ]
}

fn persistent_volume_claim_row(claim: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let volume = text(claim, "/spec/volumeName");
    // Capacity and access modes are the bound volume's, so only shown once bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let capacity = match text(claim, "/status/capacity/storage") {
            "" => "0",
            size => size,
        };
        (capacity.to_string(), access_modes(list(claim, "/status/accessModes")))
    };
    vec![
        name(claim),
        phase_or_terminating(claim),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(claim).into(),
        unset_if_empty(text(claim, "/spec/volumeAttributesClassName")),
        age(claim, now),
        unset_if_empty(text(claim, "/spec/volumeMode")),
    ]
}

/// REQUEST and LIMIT: `resource: used/hard` for every hard limit, `limits.*` ones in LIMIT.
fn resource_quota_row(quota: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let mut resources: Vec<(&String, &Value)> = object_at(quota, "/status/hard").into_iter().flatten().collect();
    resources.sort_by(|a, b| a.0.cmp(b.0));
    for (resource, hard) in resources {
        let used = quota.at("/status/used").and_then(|u| u.get(resource)).and_then(Value::as_str).unwrap_or("0");
        let entry = format!("{resource}: {used}/{}", hard.as_str().unwrap_or("0"));
        if resource.starts_with("limits.") {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![name(quota), age(quota, now), requests.join(", ").into(), limits.join(", ").into()]
}

// ---------------------------------------------------------------------------------------------
// Nodes and events.

fn node_row(node: &Value, now: jiff::Timestamp) -> Vec<Value> {
    // Only the Ready condition makes the status (the last one listed, should there be several);
    // a node that has not reported is "Unknown".
    let mut status = match list(node, "/status/conditions").iter().rev().find(|c| text(c, "/type") == "Ready") {
        Some(c) if text(c, "/status") == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.at("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    // Roles come from `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role=<role>`.
    let roles: BTreeSet<&str> = object_at(node, "/metadata/labels")
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if key == "kubernetes.io/role" => value.as_str(),
            None => None,
        })
        .filter(|role| !role.is_empty())
        .collect();
    let address = |kind: &str| {
        let found = list(node, "/status/addresses").iter().find(|a| text(a, "/type") == kind);
        found.map_or("<none>", |a| text(a, "/address"))
    };
    let info = |field: &str| match text(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>",
        value => value,
    };
    vec![
        name(node),
        status.into(),
        none_if_empty(roles.into_iter().collect::<Vec<_>>().join(",")).into(),
        age(node, now),
        text(node, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// What the event printer reads, under the names of core/v1 events.
struct EventFields<'a> {
    event: &'a Value,
    first_timestamp: &'a str,
    last_timestamp: &'a str,
    count: i64,
    regarding: Option<&'a Value>,
    message: &'a str,
    source: Option<&'a Value>,
    reporting_controller: &'a str,
}

impl<'a> EventFields<'a> {
    fn core(event: &'a Value) -> Self {
        Self {
            event,
            first_timestamp: text(event, "/firstTimestamp"),
            last_timestamp: text(event, "/lastTimestamp"),
            count: int(event, "/count"),
            regarding: event.get("involvedObject"),
            message: text(event, "/message"),
            source: event.get("source"),
            reporting_controller: text(event, "/reportingComponent"),
        }
    }

    fn events_v1(event: &'a Value) -> Self {
        Self {
            event,
            first_timestamp: text(event, "/deprecatedFirstTimestamp"),
            last_timestamp: text(event, "/deprecatedLastTimestamp"),
            count: int(event, "/deprecatedCount"),
            regarding: event.get("regarding"),
            message: text(event, "/note"),
            source: event.get("deprecatedSource"),
            reporting_controller: text(event, "/reportingController"),
        }
    }
}

fn first_non_empty<'s>(preferred: &'s str, fallback: &'s str) -> &'s str {
    if preferred.is_empty() {
        fallback
    } else {
        preferred
    }
}

fn event_row(fields: &EventFields, now: jiff::Timestamp) -> Vec<Value> {
    let event = fields.event;
    // Events of the newer API carry eventTime and a series instead of timestamps and a count.
    let first_seen = match fields.first_timestamp {
        "" => since(text(event, "/eventTime"), now),
        first => since(first, now),
    };
    let mut last_seen = match fields.last_timestamp {
        "" => first_seen.clone(),
        last => since(last, now),
    };
    let mut count = fields.count;
    if let Some(series) = event.get("series").filter(|s| s.is_object()) {
        last_seen = since(text(series, "/lastObservedTime"), now);
        count = int(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let regarding = fields.regarding.unwrap_or(&Value::Null);
    let kind = text(regarding, "/kind").to_lowercase();
    let target = match text(regarding, "/name") {
        "" => kind,
        object_name => format!("{kind}/{object_name}"),
    };
    let source = fields.source.unwrap_or(&Value::Null);
    let component = first_non_empty(text(source, "/component"), fields.reporting_controller);
    let host = first_non_empty(text(source, "/host"), text(event, "/reportingInstance"));
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    vec![
        last_seen.into(),
        text(event, "/type").into(),
        text(event, "/reason").into(),
        target.into(),
        text(regarding, "/fieldPath").into(),
        source.into(),
        fields.message.trim().into(),
        first_seen.into(),
        count.into(),
        name(event),
    ]
}

// ---------------------------------------------------------------------------------------------
// Workloads.

fn deployment_row(deployment: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(deployment.at("/spec/template"));
    let selector = selector_string(deployment.at("/spec/selector")).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(deployment),
        ratio(deployment, "/status/readyReplicas", "/spec/replicas"),
        int(deployment, "/status/updatedReplicas").into(),
        int(deployment, "/status/availableReplicas").into(),
        age(deployment, now),
        containers,
        images,
        selector.into(),
    ]
}

/// Replica sets and replication controllers; they differ only in how the selector is written.
fn replica_row(object: &Value, now: jiff::Timestamp, selector: String) -> Vec<Value> {
    let (containers, images) = container_cells(object.at("/spec/template"));
    vec![
        name(object),
        int(object, "/spec/replicas").into(),
        int(object, "/status/replicas").into(),
        int(object, "/status/readyReplicas").into(),
        age(object, now),
        containers,
        images,
        selector.into(),
    ]
}

fn daemon_set_row(daemon_set: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(daemon_set.at("/spec/template"));
    let status = |field: &str| Value::from(int(daemon_set, &format!("/status/{field}")));
    vec![
        name(daemon_set),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        format_labels(daemon_set.at("/spec/template/spec/nodeSelector")).into(),
        age(daemon_set, now),
        containers,
        images,
        format_label_selector(daemon_set.at("/spec/selector")).into(),
    ]
}

/// Whether the job has a condition of this type, judged by the first such condition.
fn job_condition(job: &Value, kind: &str) -> bool {
    list(job, "/status/conditions").iter().find(|c| text(c, "/type") == kind).is_some_and(|c| text(c, "/status") == "True")
}

fn job_row(job: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let succeeded = int(job, "/status/succeeded");
    let completions = match job.at("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        // Without completions, any one success completes the job.
        None => match int(job, "/spec/parallelism") {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (timestamp(job, "/status/startTime"), timestamp(job, "/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_signed_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_signed_duration(end.duration_since(start)),
    };
    let status = if job_condition(job, "Complete") {
        "Complete"
    } else if job_condition(job, "Failed") {
        "Failed"
    } else if job.at("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if job_condition(job, "Suspended") {
        "Suspended"
    } else if job_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(job.at("/spec/template"));
    vec![
        name(job),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        containers,
        images,
        format_label_selector(job.at("/spec/selector")).into(),
    ]
}

fn cron_job_row(cron_job: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let last_schedule = match text(cron_job, "/status/lastScheduleTime") {
        "" => "<none>".to_string(),
        time => since(time, now),
    };
    let suspend = match cron_job.at("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let timezone = cron_job.at("/spec/timeZone").and_then(Value::as_str).unwrap_or("<none>");
    let job_template = cron_job.at("/spec/jobTemplate/spec");
    let (containers, images) = container_cells(job_template.and_then(|s| s.get("template")));
    vec![
        name(cron_job),
        text(cron_job, "/spec/schedule").into(),
        timezone.into(),
        suspend.into(),
        list(cron_job, "/status/active").len().into(),
        last_schedule.into(),
        age(cron_job, now),
        containers,
        images,
        format_label_selector(job_template.and_then(|s| s.get("selector"))).into(),
    ]
}

/// The controlling owner as `kind.group/name` (lowercase kind), or "<none>".
fn controller_of(object: &Value) -> String {
    let owners = list(object, "/metadata/ownerReferences");
    let Some(owner) = owners.iter().find(|o| o.get("controller").and_then(Value::as_bool) == Some(true)) else {
        return "<none>".into();
    };
    let api_version = text(owner, "/apiVersion");
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let kind = text(owner, "/kind");
    let owner_name = text(owner, "/name");
    match (kind, group) {
        ("", "") => owner_name.to_string(),
        (kind, "") => format!("{}/{owner_name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{owner_name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

// ---------------------------------------------------------------------------------------------
// Autoscaling and RBAC.

fn horizontal_pod_autoscaler_row(hpa: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let reference = format!("{}/{}", text(hpa, "/spec/scaleTargetRef/kind"), text(hpa, "/spec/scaleTargetRef/name"));
    let min_pods = hpa.at("/spec/minReplicas").and_then(Value::as_i64).map_or_else(|| "<unset>".into(), |n| n.to_string());
    vec![
        name(hpa),
        reference.into(),
        hpa_targets(hpa).into(),
        min_pods.into(),
        int(hpa, "/spec/maxReplicas").into(),
        int(hpa, "/status/currentReplicas").into(),
        age(hpa, now),
    ]
}

/// The TARGETS cell: `current/target` per metric, at most two, then " + N more...".
fn hpa_targets(hpa: &Value) -> String {
    const SHOWN: usize = 2;
    let specs = list(hpa, "/spec/metrics");
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = list(hpa, "/status/currentMetrics");
    let targets: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            // The status at the same index describes the current value of this metric.
            let current_of = |source: &str| statuses.get(i).and_then(|s| s.get(source)).filter(|s| !s.is_null());
            match text(spec, "/type") {
                "External" => value_metric(&spec["external"], current_of("external")),
                "Object" => value_metric(&spec["object"], current_of("object")),
                "Pods" => {
                    let current = current_of("pods").map_or_else(unknown, |s| quantity(s.at("/current/averageValue")));
                    format!("{current}/{}", quantity(spec.at("/pods/target/averageValue")))
                }
                "Resource" => resource_metric(&spec["resource"], current_of("resource")),
                "ContainerResource" => resource_metric(&spec["containerResource"], current_of("containerResource")),
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    if targets.len() > SHOWN {
        format!("{} + {} more...", targets[..SHOWN].join(", "), targets.len() - SHOWN)
    } else {
        targets.join(", ")
    }
}

fn unknown() -> String {
    "<unknown>".into()
}

/// A quantity as printed, or Go's rendering of a missing one.
fn quantity(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).unwrap_or("<nil>").to_string()
}

/// External and object metrics: an average value (marked "(avg)") or a plain value.
fn value_metric(source: &Value, status: Option<&Value>) -> String {
    match source.at("/target/averageValue") {
        Some(average) if !average.is_null() => {
            let current = status
                .and_then(|s| s.at("/current/averageValue"))
                .filter(|v| !v.is_null())
                .map_or_else(unknown, |v| quantity(Some(v)));
            format!("{current}/{} (avg)", quantity(Some(average)))
        }
        _ => {
            let current = status.map_or_else(unknown, |s| quantity(s.at("/current/value")));
            format!("{current}/{}", quantity(source.at("/target/value")))
        }
    }
}

/// Resource and container resource metrics: `name: current/target`, as a value or utilization.
fn resource_metric(source: &Value, status: Option<&Value>) -> String {
    let resource = text(source, "/name");
    match source.at("/target/averageValue") {
        Some(average) if !average.is_null() => {
            let current = status.map_or_else(unknown, |s| quantity(s.at("/current/averageValue")));
            format!("{resource}: {current}/{}", quantity(Some(average)))
        }
        _ => {
            let percent = |v: Option<&Value>| v.and_then(Value::as_i64).map(|n| format!("{n}%"));
            let current = percent(status.and_then(|s| s.at("/current/averageUtilization"))).unwrap_or_else(unknown);
            let target = percent(source.at("/target/averageUtilization")).unwrap_or_else(|| "<auto>".into());
            format!("{resource}: {current}/{target}")
        }
    }
}

fn role_binding_row(binding: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", text(binding, "/roleRef/kind"), text(binding, "/roleRef/name"));
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in list(binding, "/subjects") {
        let subject_name = text(subject, "/name");
        match text(subject, "/kind") {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => service_accounts.push(format!("{}/{subject_name}", text(subject, "/namespace"))),
            _ => {}
        }
    }
    vec![
        name(binding),
        role.into(),
        age(binding, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        service_accounts.join(", ").into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    /// The RFC 3339 time `seconds` before [`now`].
    fn ago(seconds: i64) -> String {
        (now() - jiff::SignedDuration::from_secs(seconds)).to_string()
    }

    fn cells(table: &TableSpec, object: Value) -> Vec<Value> {
        let row = (table.row)(&object, now());
        assert_eq!(row.len(), table.columns.len(), "one cell per column");
        row
    }

    fn pod_status(pod: Value) -> Value {
        cells(&POD, pod)[2].clone()
    }

    #[test]
    fn human_durations_follow_kubernetes() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 15 * 60, "3h15m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (52 * 3600, "2d4h"),
            (8 * 86400, "8d"),
            (400 * 86400, "400d"),
            (730 * 86400, "2y"),
            (750 * 86400, "2y20d"),
            (3000 * 86400, "8y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(Duration::from_secs(seconds)), expected, "{seconds}s");
        }
        assert_eq!(human_signed_duration(jiff::SignedDuration::from_millis(-1500)), "0s");
        assert_eq!(human_signed_duration(jiff::SignedDuration::from_secs(-5)), "<invalid>");
    }

    #[test]
    fn ages_are_unknown_without_a_creation_timestamp() {
        assert_eq!(cells(&CONFIG_MAP, json!({"metadata": {"name": "c"}}))[2], "<unknown>");
        assert_eq!(cells(&CONFIG_MAP, json!({"metadata": {"name": "c", "creationTimestamp": ago(330)}}))[2], "5m30s");
    }

    #[test]
    fn pod_columns_match_kubectl() {
        let names: Vec<&str> = POD.columns.iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]);
        let wide: Vec<i32> = POD.columns.iter().map(|c| c.priority).collect();
        assert_eq!(wide, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(POD.columns[0].format, "name");
    }

    #[test]
    fn running_pod_row() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(90)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}],
                     "readinessGates": [{"conditionType": "example.com/gate"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/gate", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}]}
        });
        assert_eq!(
            cells(&POD, pod),
            [json!("web"), json!("1/2"), json!("Running"), json!("0"), json!("90s"), json!("10.0.0.5"), json!("n1"), json!("<none>"), json!("1/1")]
        );
    }

    #[test]
    fn pod_status_strings() {
        let init_pending = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(pod_status(init_pending), "Init:0/1");

        let init_crash = json!({"spec": {"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i", "state": {"terminated": {"exitCode": 0}}},
                {"name": "j", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(init_crash), "Init:CrashLoopBackOff");

        let init_failed = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 3}}}]}});
        assert_eq!(pod_status(init_failed), "Init:ExitCode:3");

        let image_pull = json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ErrImagePull"}}}]}});
        assert_eq!(pod_status(image_pull), "ErrImagePull");

        let completed = json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(completed), "Completed");

        let killed = json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
        assert_eq!(pod_status(killed), "Signal:9");

        // The last container completed while another still runs: the pod is not "Completed".
        let partly_done = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(partly_done), "NotReady");

        let deleting = json!({"metadata": {"deletionTimestamp": ago(1)}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(pod_status(deleting), "Terminating");

        let lost = json!({"metadata": {"deletionTimestamp": ago(1)}, "status": {"phase": "Running", "reason": "NodeLost"}});
        assert_eq!(pod_status(lost), "Unknown");

        let gated = json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(pod_status(gated), "SchedulingGated");

        let evicted = json!({"status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(pod_status(evicted), "Evicted");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let pod = json!({"spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1, "state": {"running": {}}}]}});
        let row = cells(&POD, pod);
        assert_eq!(row[1], "2/2");
        assert_eq!(row[2], "Running");
        assert_eq!(row[3], "3");
    }

    #[test]
    fn restarts_show_when_the_last_one_happened() {
        let pod = json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 4,
                "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}}]}});
        assert_eq!(cells(&POD, pod)[3], "4 (5m ago)");
    }

    #[test]
    fn pods_survive_odd_json() {
        for pod in [json!(null), json!(5), json!({"spec": 1, "status": {"containerStatuses": "x", "conditions": [1, null]}})] {
            cells(&POD, pod);
        }
    }

    #[test]
    fn service_ports_and_addresses() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
            "selector": {"tier": "web", "app": "x"}}});
        let row = cells(&SERVICE, svc);
        assert_eq!(row[1..5], [json!("NodePort"), json!("10.96.0.10"), json!("<none>"), json!("80:30080/TCP,53/UDP")]);
        assert_eq!(row[6], "app=x,tier=web");

        let lb = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]}, "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}});
        let row = cells(&SERVICE, lb);
        assert_eq!(row[2..5], [json!("<none>"), json!("lb.example.com,1.2.3.4"), json!("<none>")]);
        assert_eq!(row[6], "<none>");
        assert_eq!(cells(&SERVICE, json!({"spec": {"type": "LoadBalancer"}}))[3], "<pending>");
        assert_eq!(cells(&SERVICE, json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}))[3], "db.example.com");
    }

    #[test]
    fn workload_rows() {
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}});
        let deployment = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "template": template,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let row = cells(&DEPLOYMENT, deployment);
        assert_eq!(row[1..4], [json!("2/3"), json!(3), json!(2)]);
        assert_eq!(row[5..], [json!("a,b"), json!("nginx,busybox"), json!("app=web,env in (dev,prod)")]);

        let rc = json!({"spec": {"replicas": 2, "selector": {"app": "web"}, "template": template}, "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(cells(&REPLICATION_CONTROLLER, rc)[1..4], [json!(2), json!(2), json!(1)]);

        let ds = json!({"spec": {"selector": {}, "template": {"spec": {"nodeSelector": {"os": "linux"}}}}, "status": {"desiredNumberScheduled": 3}});
        let row = cells(&DAEMON_SET, ds);
        assert_eq!(row[1], 3);
        assert_eq!(row[6], "os=linux");
        assert_eq!(row[10], "<none>");
    }

    #[test]
    fn job_rows() {
        let job = json!({"spec": {"completions": 3}, "status": {"succeeded": 1, "startTime": ago(600)}});
        assert_eq!(cells(&JOB, job)[1..4], [json!("Running"), json!("1/3"), json!("10m")]);
        let done = json!({"spec": {"parallelism": 2}, "status": {"succeeded": 1, "startTime": ago(100), "completionTime": ago(40),
            "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(cells(&JOB, done)[1..4], [json!("Complete"), json!("1/1 of 2"), json!("60s")]);

        let cron = json!({"spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {}}}}, "status": {"active": [{}]}});
        assert_eq!(cells(&CRON_JOB, cron)[1..6], [json!("*/5 * * * *"), json!("<none>"), json!("False"), json!(1), json!("<none>")]);
    }

    #[test]
    fn node_rows() {
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian"}}});
        assert_eq!(
            cells(&NODE, node)[1..],
            [json!("Ready,SchedulingDisabled"), json!("control-plane,master"), json!("<unknown>"), json!("v1.32.0"),
             json!("192.168.1.2"), json!("<none>"), json!("Debian"), json!("<unknown>"), json!("<unknown>")]
        );
        assert_eq!(cells(&NODE, json!({}))[1..3], [json!("Unknown"), json!("<none>")]);
        let flapping = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells(&NODE, flapping)[1], "NotReady");
    }

    #[test]
    fn event_rows_for_both_apis() {
        let core = json!({"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Pulled", "message": " pulled \n",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
            "source": {"component": "kubelet", "host": "n1"}, "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 3});
        assert_eq!(
            cells(&EVENT, core),
            [json!("60s"), json!("Normal"), json!("Pulled"), json!("pod/web"), json!("spec.containers{a}"),
             json!("kubelet, n1"), json!("pulled"), json!("10m"), json!(3), json!("web.1")]
        );
        let v1 = json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "Failed", "note": "boom",
            "regarding": {"kind": "Deployment", "name": "web"}, "reportingController": "ctrl", "eventTime": ago(5)});
        assert_eq!(
            cells(&EVENTS_V1, v1),
            [json!("5s"), json!("Warning"), json!("Failed"), json!("deployment/web"), json!(""), json!("ctrl"), json!("boom"), json!("5s"), json!(1), json!("e")]
        );
    }

    #[test]
    fn storage_rows() {
        let pv = json!({"spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "data"}, "storageClassName": "fast",
            "volumeMode": "Filesystem"}, "status": {"phase": "Bound"}});
        assert_eq!(
            cells(&PERSISTENT_VOLUME, pv)[1..],
            [json!("10Gi"), json!("RWO,RWX"), json!("Retain"), json!("Bound"), json!("ns/data"), json!("fast"), json!("<unset>"), json!(""), json!("<unknown>"), json!("Filesystem")]
        );
        let pending = json!({"spec": {"storageClassName": "fast"}, "status": {"phase": "Pending"}});
        assert_eq!(cells(&PERSISTENT_VOLUME_CLAIM, pending)[1..6], [json!("Pending"), json!(""), json!(""), json!(""), json!("fast")]);
        let quota = json!({"status": {"hard": {"pods": "10", "limits.cpu": "4", "requests.cpu": "2"}, "used": {"pods": "3"}}});
        assert_eq!(cells(&RESOURCE_QUOTA, quota)[2..], [json!("pods: 3/10, requests.cpu: 0/2"), json!("limits.cpu: 0/4")]);
    }

    #[test]
    fn small_tables() {
        let secret = json!({"type": "Opaque", "data": {"a": "eA=="}, "stringData": {"a": "x", "b": "y"}});
        assert_eq!(cells(&SECRET, secret)[1..3], [json!("Opaque"), json!(2)]);
        assert_eq!(cells(&SERVICE_ACCOUNT, json!({"secrets": [{}, {}]}))[1], 2);
        let endpoints = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(cells(&ENDPOINTS, endpoints)[1], "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...");
        assert_eq!(cells(&ENDPOINTS, json!({}))[1], "<none>");
        let slice = json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "dns"}], "endpoints": [{"addresses": ["10.0.0.1"]}]});
        assert_eq!(cells(&ENDPOINT_SLICE, slice)[1..4], [json!("IPv4"), json!("80,dns"), json!("10.0.0.1")]);
        let revision = json!({"revision": 3, "metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}]}});
        assert_eq!(cells(&CONTROLLER_REVISION, revision)[1..3], [json!("daemonset.apps/ds"), json!(3)]);
        let binding = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "namespace": "ns", "name": "bot"}, {"kind": "User", "name": "bob"}]});
        assert_eq!(cells(&ROLE_BINDING, binding)[3..], [json!("alice, bob"), json!(""), json!("ns/bot")]);
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5, "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}},
            {"type": "External", "external": {"target": {"value": "10"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}}]}});
        assert_eq!(
            cells(&HORIZONTAL_POD_AUTOSCALER, hpa)[1..6],
            [json!("Deployment/web"), json!("cpu: 40%/80%, <unknown>/1k + 1 more..."), json!("<unset>"), json!(5), json!(2)]
        );
        assert_eq!(cells(&NETWORK_POLICY, json!({"spec": {"podSelector": {}}}))[1], "<none>");
        assert_eq!(cells(&PRIORITY_CLASS, json!({"value": 1000, "globalDefault": true}))[1..3], [json!(1000), json!(true)]);
        assert_eq!(cells(&LEASE, json!({"spec": {"holderIdentity": "n1"}}))[1], "n1");
        assert_eq!(cells(&NAMESPACE, json!({"status": {"phase": "Active"}}))[1], "Active");
        assert_eq!(cells(&DEFAULT, json!({"metadata": {"creationTimestamp": "2024-01-02T03:04:05.25Z"}}))[1], "2024-01-02T03:04:05Z");
        assert_eq!(cells(&DEFAULT, json!({}))[1], "0001-01-01T00:00:00Z");
        assert_eq!(DEFAULT.columns[1].type_, "date");
    }

    #[test]
    fn every_table_has_a_name_column_and_one_cell_per_column() {
        for table in [
            &DEFAULT, &NAMESPACE, &POD, &SERVICE, &ENDPOINTS, &CONFIG_MAP, &SECRET, &NODE, &EVENT, &SERVICE_ACCOUNT,
            &REPLICATION_CONTROLLER, &PERSISTENT_VOLUME, &PERSISTENT_VOLUME_CLAIM, &RESOURCE_QUOTA, &DEPLOYMENT, &REPLICA_SET,
            &STATEFUL_SET, &DAEMON_SET, &CONTROLLER_REVISION, &JOB, &CRON_JOB, &HORIZONTAL_POD_AUTOSCALER, &LEASE,
            &ENDPOINT_SLICE, &NETWORK_POLICY, &ROLE_BINDING, &EVENTS_V1, &PRIORITY_CLASS,
        ] {
            assert_eq!(table.columns.iter().filter(|c| c.format == "name").count(), 1);
            cells(table, json!({}));
            cells(table, json!({"spec": [], "status": "x", "metadata": {"labels": 3}}));
        }
    }
}
