//! Objects as kubectl sends them go through what the API server does on create: decode through
//! the typed structs, default, validate. Defaulted objects must pass validation, be stable under
//! a second defaulting, and use only fields the v1.32 types know (so decoding keeps them).

use serde_json::{json, Value};
use tugboat_api::{validation, Registry};

/// Decodes, defaults (with the UID the server assigns before defaulting) and validates `object`,
/// returning the stored form.
fn admit(object: Value) -> Value {
    let api_version = object["apiVersion"].as_str().expect("apiVersion").to_string();
    let kind = object["kind"].as_str().expect("kind").to_string();
    let resource = Registry::get().by_kind(&api_version, &kind).expect("a served kind");
    let mut stored = resource.decode(object).expect("decodes");
    stored["metadata"]["uid"] = json!("6f1c2a7e-0000-4000-8000-000000000001");
    resource.apply_defaults(&mut stored);

    let mut again = stored.clone();
    resource.apply_defaults(&mut again);
    assert_eq!(again, stored, "{kind}: defaulting is idempotent");
    assert_eq!(resource.decode(stored.clone()).expect("defaulted object decodes"), stored, "{kind}: every default is a known field");

    let mut errors = validation::validate_object(resource, &stored);
    errors.extend(resource.validate(&stored));
    assert!(errors.is_empty(), "{kind}: {errors:#?}");
    stored
}

fn pod_spec() -> Value {
    json!({
        "initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
        "containers": [{
            "name": "web", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 80}],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            "readinessProbe": {"tcpSocket": {"port": 80}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/nginx/conf.d"}, {"name": "cache", "mountPath": "/cache"}]
        }],
        "volumes": [{"name": "config", "configMap": {"name": "nginx"}}, {"name": "cache", "emptyDir": {}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]
    })
}

fn template(app: &str, spec: Value) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": spec})
}

#[test]
fn namespaces_secrets_and_pods() {
    let namespace = admit(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}));
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));

    let secret = admit(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "team-a"}, "stringData": {"password": "x"}}));
    assert_eq!(secret["type"], "Opaque");

    let pod = admit(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "team-a"}, "spec": pod_spec()}));
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"]["requests"], json!({"cpu": "500m", "memory": "128Mi"}));
    assert_eq!(pod["spec"]["initContainers"][0]["imagePullPolicy"], "IfNotPresent");
}

#[test]
fn services() {
    let node_port = admit(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9090}]}}));
    assert_eq!(node_port["spec"]["ports"][1]["targetPort"], 9090);
    assert_eq!(node_port["spec"]["externalTrafficPolicy"], "Cluster");
    admit(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}}));
    admit(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "search", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "search.example.com"}}));
    admit(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "selector": {"app": "edge"}, "ports": [{"port": 443}]}}));
}

#[test]
fn workloads() {
    let deployment = admit(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template("web", pod_spec())}}));
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");

    admit(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template("web", pod_spec())}}));
    admit(json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy", "namespace": "default"},
        "spec": {"template": template("legacy", pod_spec())}}));
    admit(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", pod_spec())}}));

    let stateful_set = admit(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": template("db", json!({"containers": [{"name": "postgres", "image": "postgres:16",
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}]})),
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}));
    assert_eq!(stateful_set["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
}

#[test]
fn batch() {
    let job_spec = json!({"containers": [{"name": "pi", "image": "perl:5.34", "command": ["perl", "-e", "print 1"]}], "restartPolicy": "Never"});
    let job = admit(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
        "spec": {"backoffLimit": 4, "template": {"spec": job_spec}}}));
    assert_eq!(job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], job["metadata"]["uid"]);
    assert_eq!(job["spec"]["backoffLimit"], 4);

    admit(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "report", "namespace": "default"},
        "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Berlin", "jobTemplate": {"spec": {"template": {"spec": job_spec}}}}}));
}
