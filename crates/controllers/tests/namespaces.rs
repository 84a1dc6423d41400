//! The namespace controller against a real in-process API server: a deleted namespace is emptied
//! of every kind of object, waits for those with finalizers, and then goes away.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tugboat_client::{Client, ClientError};
use tugboat_testkit::eventually;

async fn merge_patch(client: &Client, path: &str, patch: Value) {
    let body = Bytes::from(serde_json::to_vec(&patch).unwrap());
    client.request(Method::PATCH, path, Some(("application/merge-patch+json", body))).await.unwrap();
}

fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_terminating_namespace_is_emptied_then_removed() {
    let api = tugboat_testkit::in_process::start_api_server().await;
    let client = api.client.clone();
    let informers = tugboat_controllers::shared_informers(&client);
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tugboat_controllers::namespaces::run(&informers, async move {
            let _ = stopped.await;
        })
        .await
    });

    const CMS: &str = "/api/v1/namespaces/doomed/configmaps";
    const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/doomed/deployments";
    client.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})).await.unwrap();
    client.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kept"}})).await.unwrap();
    let configmap = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
    client.create(CMS, &configmap("plain")).await.unwrap();
    let mut held = configmap("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    client.create(CMS, &held).await.unwrap();
    client.create("/api/v1/namespaces/kept/configmaps", &configmap("plain")).await.unwrap();
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    client.create(DEPLOYMENTS, &deployment).await.unwrap();

    client.request(Method::DELETE, "/api/v1/namespaces/doomed", None).await.unwrap();
    // Every kind is emptied, in every group; the object with a finalizer waits for it, and keeps
    // the namespace Terminating.
    eventually("the namespace emptied but for the held object", async || (names(&client.get(CMS).await.unwrap()), names(&client.get(DEPLOYMENTS).await.unwrap())), |(configmaps, deployments)| {
        configmaps == &["held"] && deployments.is_empty()
    })
    .await;
    assert!(client.get(&format!("{CMS}/held")).await.unwrap()["metadata"]["deletionTimestamp"].is_string());
    let namespace = client.get("/api/v1/namespaces/doomed").await.unwrap();
    assert_eq!(namespace["status"]["phase"], "Terminating");

    merge_patch(&client, &format!("{CMS}/held"), json!({"metadata": {"finalizers": null}})).await;
    let gone = eventually("the namespace gone", async || client.get("/api/v1/namespaces/doomed").await, |result| {
        matches!(result, Err(ClientError::Status { code: StatusCode::NOT_FOUND, .. }))
    })
    .await;
    assert!(gone.is_err());
    assert_eq!(names(&client.get("/api/v1/namespaces/kept/configmaps").await.unwrap()), ["plain"], "other namespaces are untouched");
}
