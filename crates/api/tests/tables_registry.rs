//! Every served kind prints through the table the registry names for it: one NAME column, one
//! cell per column, whatever shape the object has, and the `kubectl get` columns kubectl users
//! know for the common kinds.

use serde_json::{json, Value};
use tugboat_api::Registry;

fn now() -> jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("a valid timestamp")
}

fn column_names(plural: &str, priority: i32) -> Vec<&'static str> {
    let resource = Registry::get().types().iter().find(|t| t.plural == plural).expect("a served kind");
    resource.table.columns.iter().filter(|c| c.priority == priority).map(|c| c.name).collect()
}

#[test]
fn every_kind_prints_one_cell_per_column() {
    let odd: [Value; 4] = [
        json!(null),
        json!({}),
        json!({"metadata": {"name": "x", "creationTimestamp": "not a time", "labels": []}, "spec": 3, "status": []}),
        json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T11:59:00Z"}, "spec": {"template": {"spec": {"containers": "c"}}}}),
    ];
    for resource in Registry::get().types() {
        let table = resource.table;
        assert_eq!(table.columns.iter().filter(|c| c.format == "name").count(), 1, "{}", resource.plural);
        for object in &odd {
            let row = (table.row)(object, now());
            assert_eq!(row.len(), table.columns.len(), "{}: {object}", resource.plural);
        }
    }
}

#[test]
fn common_kinds_have_the_kubectl_columns() {
    assert_eq!(column_names("pods", 0), ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(column_names("pods", 1), ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    assert_eq!(column_names("deployments", 0), ["Name", "Ready", "Up-to-date", "Available", "Age"]);
    assert_eq!(column_names("deployments", 1), ["Containers", "Images", "Selector"]);
    assert_eq!(column_names("services", 0), ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]);
    assert_eq!(column_names("services", 1), ["Selector"]);
    assert_eq!(column_names("nodes", 0), ["Name", "Status", "Roles", "Age", "Version"]);
    assert_eq!(column_names("nodes", 1), ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]);
    assert_eq!(column_names("jobs", 0), ["Name", "Status", "Completions", "Duration", "Age"]);
    assert_eq!(column_names("events", 0), ["Last Seen", "Type", "Reason", "Object", "Message"]);
    assert_eq!(column_names("serviceaccounts", 0), ["Name", "Secrets", "Age"]);
    assert_eq!(column_names("replicasets", 0), ["Name", "Desired", "Current", "Ready", "Age"]);
    assert_eq!(column_names("replicationcontrollers", 1), ["Containers", "Images", "Selector"]);
}

#[test]
fn ages_are_human_durations_from_now() {
    let pods = Registry::get().lookup("", "v1", "pods").expect("pods are served");
    let pod = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T08:45:00Z"}});
    assert_eq!((pods.table.row)(&pod, now())[4], "3h15m");
    let unknown = json!({"metadata": {"name": "web"}});
    assert_eq!((pods.table.row)(&unknown, now())[4], "<unknown>");
}
