//! The API server in-process on the embedded store, spoken to over real HTTPS with the project's
//! client: status codes and reasons, subresource rules, selectors, pagination and watch.

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tugboat_apiserver::{ApiConfig, ApiServer, Ipv4Cidr};
use tugboat_client::{Client, ClientError};
use tugboat_pki::{write_kubeconfig, ClientIdentity, ClusterPki, Kubeconfig};
use tugboat_store::{SqliteOptions, SqliteStore, Store};

struct Harness {
    client: Client,
    anonymous: Client,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap());
    let pki = ClusterPki::load_or_create(&dir.path().join("pki")).unwrap();
    let serving = pki.serving_cert(&["127.0.0.1".into()]).unwrap();
    let tls = Arc::new(pki.server_tls_config(&serving).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = ApiConfig {
        advertise_address: address.to_string(),
        secure_port: address.port(),
        service_cidr: Ipv4Cidr::parse("10.43.0.0/16").unwrap(),
        cluster_cidr: Ipv4Cidr::parse("10.42.0.0/16").unwrap(),
        node_cidr_mask_size: tugboat_apiserver::DEFAULT_NODE_CIDR_PREFIX,
        bookmark_interval: Duration::from_millis(200),
        compaction_interval: Duration::from_secs(3600),
        agent_client_tls: None,
    };
    let server = ApiServer::start(store.clone(), config).await.unwrap();
    tokio::spawn(tugboat_apiserver::serve(server, listener, tls, std::future::pending()));
    let admin = pki.client_cert("admin", &ClientIdentity { user: "admin", groups: &["system:masters"] }).unwrap();
    let write = |name: &str, cert: Option<&tugboat_pki::CertPair>| {
        let path = dir.path().join(name);
        let config = Kubeconfig {
            server: format!("https://{address}"),
            ca_pem: pki.ca_cert_pem.clone(),
            client_cert_pem: cert.map(|c| c.cert_pem.clone()),
            client_key_pem: cert.map(|c| c.key_pem.clone()),
            token: None,
        };
        write_kubeconfig(&path, &config).unwrap();
        Client::from_kubeconfig(&path).unwrap()
    };
    let client = write("admin.kubeconfig", Some(&admin));
    let anonymous = write("anonymous.kubeconfig", None);
    Harness { client, anonymous, store, _dir: dir }
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}})
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

/// The status code and reason of a failed request.
fn failure<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (StatusCode, String, String) {
    match result {
        Err(ClientError::Status { code, reason, message }) => (code, reason, message),
        other => panic!("expected an error Status, got {other:?}"),
    }
}

async fn send(client: &Client, method: Method, path: &str, content_type: &str, body: &Value) -> Result<Value, ClientError> {
    let bytes = client.request(method, path, Some((content_type, Bytes::from(serde_json::to_vec(body).unwrap())))).await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn errors_carry_kubernetes_codes_and_reasons() {
    let h = start().await;
    let c = &h.client;
    let (code, reason, _) = failure(h.anonymous.get("/api/v1/namespaces").await);
    assert_eq!((code, reason.as_str()), (StatusCode::UNAUTHORIZED, "Unauthorized"));
    assert!(h.anonymous.request(Method::GET, "/readyz", None).await.is_ok(), "health checks need no credentials");

    let (code, reason, message) = failure(c.get(&format!("{CMS}/missing")).await);
    assert_eq!((code, reason.as_str(), message.as_str()), (StatusCode::NOT_FOUND, "NotFound", "configmaps \"missing\" not found"));

    c.create(CMS, &configmap("a")).await.unwrap();
    let (code, reason, _) = failure(c.create(CMS, &configmap("a")).await);
    assert_eq!((code, reason.as_str()), (StatusCode::CONFLICT, "AlreadyExists"));

    let (code, reason, message) = failure(c.create(CMS, &configmap("Bad_Name")).await);
    assert_eq!((code, reason.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"), "{message}");

    let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}});
    assert_eq!(failure(c.create(CMS, &wrong_kind).await).0, StatusCode::BAD_REQUEST);
    let wrong_ns = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "other"}});
    assert_eq!(failure(c.create(CMS, &wrong_ns).await).0, StatusCode::BAD_REQUEST);
    let malformed = c.request(Method::POST, CMS, Some(("application/json", Bytes::from_static(b"{\"kind\": ")))).await;
    assert_eq!(failure(malformed).0, StatusCode::BAD_REQUEST);
    let huge = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"}, "data": {"k": "x".repeat(4 << 20)}});
    assert_eq!(failure(c.create(CMS, &huge).await).0, StatusCode::PAYLOAD_TOO_LARGE);
    let strict = send(c, Method::POST, &format!("{CMS}?fieldValidation=Strict"), "application/json", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "bogus": 1})).await;
    let (code, _, message) = failure(strict);
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(message.contains("unknown field \"bogus\""), "{message}");
    let (code, _, _) = failure(c.create("/api/v1/namespaces/nowhere/configmaps", &configmap("x")).await);
    assert_eq!(code, StatusCode::NOT_FOUND);
    let bad_patch = send(c, Method::PATCH, &format!("{CMS}/a"), "application/json-patch+json", &json!([{"op": "test", "path": "/data/k", "value": "nope"}])).await;
    assert!(failure(bad_patch).0.is_client_error());
    // Nothing of the refused writes was stored.
    let names: Vec<String> = c.get(CMS).await.unwrap()["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["a"]);
}

#[tokio::test]
async fn optimistic_concurrency_status_and_generation() {
    let h = start().await;
    let c = &h.client;
    let created = c.create(DEPLOYS, &deployment("web")).await.unwrap();
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["creationTimestamp"].is_string());
    let stale = created["metadata"]["resourceVersion"].as_str().unwrap().to_owned();

    let mut update = created.clone();
    update["spec"]["replicas"] = json!(3);
    update["status"] = json!({"replicas": 42});
    let updated = send(c, Method::PUT, &format!("{DEPLOYS}/web"), "application/json", &update).await.unwrap();
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(updated["status"].get("replicas").is_none(), "the main resource never writes status: {}", updated["status"]);

    let (code, reason, _) = failure(send(c, Method::PUT, &format!("{DEPLOYS}/web"), "application/json", &update).await);
    assert_eq!((code, reason.as_str()), (StatusCode::CONFLICT, "Conflict"), "stale resourceVersion {stale}");

    let status = send(c, Method::PATCH, &format!("{DEPLOYS}/web/status"), "application/merge-patch+json", &json!({"spec": {"replicas": 9}, "status": {"replicas": 3}})).await.unwrap();
    assert_eq!((status["status"]["replicas"].as_i64(), status["spec"]["replicas"].as_i64()), (Some(3), Some(3)));
    assert_eq!(status["metadata"]["generation"], 2);

    let scaled = send(c, Method::PATCH, &format!("{DEPLOYS}/web/scale"), "application/merge-patch+json", &json!({"spec": {"replicas": 5}})).await.unwrap();
    assert_eq!((scaled["kind"].as_str(), scaled["spec"]["replicas"].as_i64(), scaled["status"]["replicas"].as_i64()), (Some("Scale"), Some(5), Some(3)));
    assert_eq!(c.get(&format!("{DEPLOYS}/web")).await.unwrap()["spec"]["replicas"], 5);

    let smp = send(c, Method::PATCH, &format!("{DEPLOYS}/web"), "application/strategic-merge-patch+json",
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}, {"name": "d", "image": "x"}]}}}})).await.unwrap();
    let containers = smp["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "merged by name: {containers:?}");

    // What a patch changes is decoded as the kind's type; what it leaves alone is kept as stored.
    let (code, _, message) = failure(send(c, Method::PATCH, &format!("{DEPLOYS}/web/status"), "application/merge-patch+json", &json!({"status": {"replicas": "three"}})).await);
    assert_eq!(code, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("cannot be handled as a Deployment"), "{message}");
    let pruned = send(c, Method::PATCH, &format!("{DEPLOYS}/web/status"), "application/merge-patch+json", &json!({"status": {"readyReplicas": 2, "bogus": 1}})).await.unwrap();
    assert_eq!((pruned["status"]["readyReplicas"].as_i64(), pruned["status"].get("bogus")), (Some(2), None), "unknown fields are dropped");
    assert_eq!(pruned["spec"], smp["spec"]);
    // A status write keeps the rest of the object whatever else the patch names, stores nothing
    // when the status stays as it was, and honours a resourceVersion the patch pins.
    let status_path = format!("{DEPLOYS}/web/status");
    let unchanged = send(c, Method::PATCH, &status_path, "application/merge-patch+json", &json!({"metadata": {"labels": {"x": "y"}}, "status": {"readyReplicas": 2}})).await.unwrap();
    assert_eq!((&unchanged["metadata"]["resourceVersion"], unchanged["metadata"].get("labels")), (&pruned["metadata"]["resourceVersion"], None));
    let no_status = send(c, Method::PATCH, &status_path, "application/merge-patch+json", &json!({"metadata": {"labels": {"x": "y"}}})).await.unwrap();
    assert_eq!((&no_status["metadata"]["resourceVersion"], &no_status["status"]), (&pruned["metadata"]["resourceVersion"], &pruned["status"]));
    let (code, _, _) = failure(send(c, Method::PATCH, &status_path, "application/merge-patch+json", &json!({"metadata": {"resourceVersion": stale}, "status": {"readyReplicas": 1}})).await);
    assert_eq!(code, StatusCode::CONFLICT);
    let conditions = json!([{"type": "Available", "status": "True"}]);
    let strategic = send(c, Method::PATCH, &status_path, "application/strategic-merge-patch+json", &json!({"status": {"conditions": conditions}})).await.unwrap();
    assert_eq!((&strategic["status"]["conditions"], &strategic["status"]["readyReplicas"], &strategic["spec"]), (&conditions, &json!(2), &smp["spec"]));
    assert_ne!(strategic["metadata"]["resourceVersion"], pruned["metadata"]["resourceVersion"]);
    // A kind with a required field the patch does not touch (roleRef) is admitted whole.
    const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "u"}]});
    c.create(BINDINGS, &binding).await.unwrap();
    let labelled = send(c, Method::PATCH, &format!("{BINDINGS}/b"), "application/merge-patch+json", &json!({"metadata": {"labels": {"a": "b"}}})).await.unwrap();
    assert_eq!((labelled["metadata"]["labels"]["a"].as_str(), labelled["roleRef"]["name"].as_str()), (Some("b"), Some("view")));
}

#[tokio::test]
async fn a_binding_assigns_a_pod_once() {
    let h = start().await;
    let c = &h.client;
    const PODS: &str = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let created = c.create(PODS, &pod).await.unwrap();
    let binding = |node: &str, uid: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "uid": uid}, "target": {"kind": "Node", "name": node}});

    let (code, _, message) = failure(c.create(&format!("{PODS}/p/binding"), &binding("n1", "not-the-pods-uid")).await);
    assert_eq!(code, StatusCode::CONFLICT, "{message}");
    let dry_run = c.create(&format!("{PODS}/p/binding?dryRun=All"), &binding("n1", "")).await.unwrap();
    assert_eq!(dry_run["status"], "Success");
    assert_eq!(c.get(&format!("{PODS}/p")).await.unwrap()["spec"]["nodeName"], Value::Null, "a dry run stores nothing");

    let uid = created["metadata"]["uid"].as_str().unwrap();
    let answer = c.create(&format!("{PODS}/p/binding"), &binding("n1", uid)).await.unwrap();
    assert_eq!((answer["kind"].as_str(), answer["code"].as_i64()), (Some("Status"), Some(201)));
    let bound = c.get(&format!("{PODS}/p")).await.unwrap();
    assert_eq!(bound["spec"]["nodeName"], "n1");
    let scheduled: Vec<&Value> = bound["status"]["conditions"].as_array().unwrap().iter().filter(|c| c["type"] == "PodScheduled").collect();
    assert_eq!((scheduled.len(), &scheduled[0]["status"]), (1, &json!("True")));
    assert_eq!(bound["metadata"]["generation"], created["metadata"]["generation"], "binding is not a spec change");
    assert_ne!(bound["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);

    let (code, _, message) = failure(c.create(&format!("{PODS}/p/binding"), &binding("n2", "")).await);
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(message.contains("already assigned to node \"n1\""), "{message}");
    let (code, _, _) = failure(c.create(&format!("{PODS}/missing/binding"), &binding("n1", "")).await);
    assert_eq!(code, StatusCode::NOT_FOUND);

    // After the binding, an update may change the image, not where the pod runs or what it asks.
    let pod_path = format!("{PODS}/p");
    // Strategic merge, as `kubectl set image` sends it: containers merge by name.
    let patch = |spec: Value| {
        let pod_path = pod_path.clone();
        async move { send(c, Method::PATCH, &pod_path, "application/strategic-merge-patch+json", &json!({"spec": spec})).await }
    };
    let (code, reason, message) = failure(patch(json!({"nodeName": "n2"})).await);
    assert_eq!((code, reason.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"), "{message}");
    assert!(message.contains("spec: Forbidden: pod updates may not change fields other than"), "{message}");
    let resized = json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "2"}}}]});
    assert_eq!(failure(patch(resized).await).0, StatusCode::UNPROCESSABLE_ENTITY);
    let new_image = patch(json!({"containers": [{"name": "c", "image": "busybox:2"}]})).await.unwrap();
    assert_eq!((new_image["spec"]["containers"][0]["image"].as_str(), new_image["spec"]["nodeName"].as_str()), (Some("busybox:2"), Some("n1")));
}

#[tokio::test]
async fn selectors_pagination_and_deletecollection() {
    let h = start().await;
    let c = &h.client;
    for i in 0..7 {
        let mut cm = configmap(&format!("cm{i}"));
        cm["metadata"]["labels"]["parity"] = json!(if i % 2 == 0 { "even" } else { "odd" });
        c.create(CMS, &cm).await.unwrap();
    }
    let even = c.get(&format!("{CMS}?labelSelector=parity%3Deven")).await.unwrap();
    assert_eq!(even["items"].as_array().unwrap().len(), 4);
    let one = c.get(&format!("{CMS}?fieldSelector=metadata.name%3Dcm3")).await.unwrap();
    assert_eq!(one["items"][0]["metadata"]["name"], "cm3");
    assert_eq!(failure(c.get(&format!("{CMS}?fieldSelector=spec.bogus%3Dx")).await).0, StatusCode::BAD_REQUEST);

    let mut names = Vec::new();
    let mut next = format!("{CMS}?limit=3");
    let mut pages = 0;
    loop {
        let page = c.get(&next).await.unwrap();
        pages += 1;
        // Writes between pages must not show up: every page is at the first page's revision.
        c.create(CMS, &configmap(&format!("late{pages}"))).await.unwrap();
        names.extend(page["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()));
        match page["metadata"]["continue"].as_str() {
            Some(token) => next = format!("{CMS}?limit=3&continue={token}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["cm0", "cm1", "cm2", "cm3", "cm4", "cm5", "cm6"]);

    c.request(Method::DELETE, &format!("{CMS}?labelSelector=parity%3Dodd"), None).await.unwrap();
    let left = c.get(&format!("{CMS}?labelSelector=parity")).await.unwrap();
    assert_eq!(left["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn watch_resumes_filters_and_expires() {
    let h = start().await;
    let c = &h.client;
    let start_rv = c.get(CMS).await.unwrap()["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    c.create(CMS, &configmap("w1")).await.unwrap();
    send(c, Method::PATCH, &format!("{CMS}/w1"), "application/merge-patch+json", &json!({"metadata": {"labels": {"app": "y"}}})).await.unwrap();
    c.create(CMS, &configmap("w2")).await.unwrap();
    c.request(Method::DELETE, &format!("{CMS}/w2"), None).await.unwrap();

    let mut all = c.watch(&format!("{CMS}?watch=true&resourceVersion={start_rv}")).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(Duration::from_secs(5), all.next()).await.unwrap().unwrap().unwrap();
        seen.push(format!("{} {}", event["type"].as_str().unwrap(), event["object"]["metadata"]["name"].as_str().unwrap()));
    }
    assert_eq!(seen, ["ADDED w1", "MODIFIED w1", "ADDED w2", "DELETED w2"]);

    // With a selector, an object leaving the selection is a DELETED event.
    let mut selected = c.watch(&format!("{CMS}?watch=true&resourceVersion={start_rv}&labelSelector=app%3Dx&allowWatchBookmarks=true")).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = tokio::time::timeout(Duration::from_secs(5), selected.next()).await.unwrap().unwrap().unwrap();
        seen.push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(&seen[..4], ["ADDED", "DELETED", "ADDED", "DELETED"]);
    assert_eq!(seen[4], "BOOKMARK");

    // Compacted history: resuming from before it is 410 Gone, reason Expired.
    let now = h.store.current_revision().await.unwrap();
    h.store.compact(now).await.unwrap();
    let old = format!("{CMS}?watch=true&resourceVersion={start_rv}");
    // The cache keeps its own log until it hears of the compaction; the store refuses at once.
    let result = c.watch(&old).await;
    if let Ok(mut stream) = result {
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
    }
    let (code, _, _) = failure(c.get(&format!("{CMS}?resourceVersion={start_rv}&resourceVersionMatch=Exact")).await);
    assert_eq!(code, StatusCode::GONE);
}

#[tokio::test]
async fn deletion_honours_finalizers_and_namespaces_wait_for_theirs() {
    let h = start().await;
    let c = &h.client;
    let mut cm = configmap("held");
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    c.create(CMS, &cm).await.unwrap();
    let pending = c.request(Method::DELETE, &format!("{CMS}/held"), None).await.unwrap();
    let pending: Value = serde_json::from_slice(&pending).unwrap();
    assert!(pending["metadata"]["deletionTimestamp"].is_string());
    send(c, Method::PATCH, &format!("{CMS}/held"), "application/merge-patch+json", &json!({"metadata": {"finalizers": null}})).await.unwrap();
    assert_eq!(failure(c.get(&format!("{CMS}/held")).await).0, StatusCode::NOT_FOUND, "removing the last finalizer deletes");

    c.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})).await.unwrap();
    c.create("/api/v1/namespaces/doomed/configmaps", &configmap("inside")).await.unwrap();
    // A finalizer keeps the namespace Terminating until it is removed.
    c.create("/api/v1/namespaces/doomed/configmaps", &cm).await.unwrap();
    c.request(Method::DELETE, "/api/v1/namespaces/doomed", None).await.unwrap();
    assert!(c.get("/api/v1/namespaces/doomed").await.unwrap()["metadata"]["deletionTimestamp"].is_string());
    let (code, _, message) = failure(c.create("/api/v1/namespaces/doomed/configmaps", &configmap("late")).await);
    assert_eq!(code, StatusCode::FORBIDDEN, "{message}");
    assert!(message.contains("because it is being terminated"), "{message}");
    // Emptying it is the namespace controller's (not running here); the server lets the namespace
    // go once the controller takes its `kubernetes` finalizer off through `finalize`.
    let terminating = c.get("/api/v1/namespaces/doomed").await.unwrap();
    assert_eq!((&terminating["status"]["phase"], &terminating["spec"]["finalizers"]), (&json!("Terminating"), &json!(["kubernetes"])));
    let unfinalized = send(c, Method::PATCH, "/api/v1/namespaces/doomed", "application/merge-patch+json", &json!({"spec": {"finalizers": []}})).await.unwrap();
    assert_eq!(unfinalized["spec"]["finalizers"], json!(["kubernetes"]), "only finalize writes a namespace's finalizers");
    let finalize = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}, "spec": {"finalizers": []}});
    send(c, Method::PUT, "/api/v1/namespaces/doomed/finalize", "application/json", &finalize).await.unwrap();
    assert_eq!(failure(c.get("/api/v1/namespaces/doomed").await).0, StatusCode::NOT_FOUND, "a terminating namespace without finalizers goes");
    assert_eq!(failure(send(c, Method::PUT, "/api/v1/namespaces/default/finalize", "application/json", &json!({"spec": {"finalizers": "x"}})).await).0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn discovery_openapi_and_tables() {
    let h = start().await;
    let c = &h.client;
    let core = c.get("/api/v1").await.unwrap();
    let pods = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(c.get("/version").await.unwrap()["minor"], "32");
    let index = c.get("/openapi/v3").await.unwrap();
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap().to_owned();
    let doc = c.get(&url).await.unwrap();
    assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object());
    let services = c.get("/api/v1/namespaces/default/services/kubernetes").await.unwrap();
    assert_eq!(services["spec"]["clusterIP"], "10.43.0.1");
}

#[tokio::test]
async fn nodes_get_distinct_pod_networks() {
    let h = start().await;
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let a = h.client.create("/api/v1/nodes", &node("a")).await.unwrap();
    let b = h.client.create("/api/v1/nodes", &node("b")).await.unwrap();
    assert_eq!(a["spec"]["podCIDR"], "10.42.0.0/24");
    assert_eq!(a["spec"]["podCIDRs"], json!(["10.42.0.0/24"]));
    assert_eq!(b["spec"]["podCIDR"], "10.42.1.0/24");
    // A network chosen by the creator is kept.
    let chosen = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "c"}, "spec": {"podCIDR": "10.42.9.0/24"}});
    assert_eq!(h.client.create("/api/v1/nodes", &chosen).await.unwrap()["spec"]["podCIDR"], "10.42.9.0/24");
    h.client.request(Method::DELETE, "/api/v1/nodes/a", None).await.unwrap();
    // A freed network is handed out again.
    assert_eq!(h.client.create("/api/v1/nodes", &node("d")).await.unwrap()["spec"]["podCIDR"], "10.42.0.0/24");
}
