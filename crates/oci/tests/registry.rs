//! The loopback registry against a real client: `skopeo inspect` and `skopeo copy` (the same
//! distribution-API pull path containerd uses), plus the wire details checked by hand.

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tugboat_oci::{pause_image, serve_registry, sha256_digest, Image, PAUSE_REPOSITORY, PAUSE_TAG};

/// A registry serving the pause image (and busybox when installed) on a free loopback port;
/// dropping `stop` shuts it down.
struct TestRegistry {
    address: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn start_registry(images: Vec<(String, String, Image)>) -> TestRegistry {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_registry(listener, images, async move {
        let _ = stopped.await;
    }));
    TestRegistry { address, stop: Some(stop), server }
}

fn skopeo_installed() -> bool {
    if Path::new("/usr/bin/skopeo").exists() {
        return true;
    }
    eprintln!("SKIPPED: skopeo is not installed (Debian package skopeo; scripts/install-deps.sh installs it)");
    false
}

async fn skopeo(args: &[&str]) -> String {
    let output = Command::new("skopeo").args(args).output().await.expect("skopeo runs");
    assert!(output.status.success(), "skopeo {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One HTTP/1.1 exchange by hand, so the test sees the exact status line and headers.
async fn http(address: &str, method: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.expect("answer in time").expect("read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn skopeo_inspects_and_copies_the_pause_image() {
    if !skopeo_installed() {
        return;
    }
    let image = pause_image();
    let registry = start_registry(vec![(PAUSE_REPOSITORY.into(), PAUSE_TAG.into(), image.clone())]).await;
    let reference = format!("docker://{}/{PAUSE_REPOSITORY}:{PAUSE_TAG}", registry.address);

    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &reference]).await).expect("inspect json");
    assert_eq!(inspected["Digest"], image.manifest_digest.as_str());
    assert_eq!(inspected["Layers"], serde_json::json!([image.layers[0].digest]));
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(inspected["Architecture"], tugboat_oci::pause::pause_architecture());

    let dir = tempfile::tempdir().expect("tempdir");
    let destination = format!("oci:{}:1", dir.path().join("copy").display());
    skopeo(&["copy", "--insecure-policy", "--quiet", "--preserve-digests", "--src-tls-verify=false", &reference, &destination]).await;
    // The copy holds our exact blobs: skopeo verified each digest while pulling them.
    for (digest, bytes) in [(&image.manifest_digest, &image.manifest), (&image.config_digest, &image.config), (&image.layers[0].digest, &image.layers[0].bytes)] {
        let path = dir.path().join("copy/blobs/sha256").join(digest.trim_start_matches("sha256:"));
        let copied = std::fs::read(&path).unwrap_or_else(|e| panic!("{} missing from the copy: {e}", path.display()));
        assert_eq!(copied, bytes.as_ref());
    }

    // By digest works as well as by tag.
    let by_digest = format!("docker://{}/{PAUSE_REPOSITORY}@{}", registry.address, image.manifest_digest);
    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &by_digest]).await).expect("inspect json");
    assert_eq!(inspected["Digest"], image.manifest_digest.as_str());
}

#[tokio::test]
async fn skopeo_pulls_busybox_from_it() {
    let busybox = Path::new("/bin/busybox");
    if !skopeo_installed() || !busybox.exists() {
        return;
    }
    let image = tugboat_oci::busybox_image(busybox).expect("busybox image");
    let registry = start_registry(vec![("library/busybox".into(), "1".into(), image.clone())]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = format!("docker://{}/library/busybox:1", registry.address);
    let destination = format!("oci:{}:1", dir.path().display());
    skopeo(&["copy", "--insecure-policy", "--quiet", "--preserve-digests", "--src-tls-verify=false", &source, &destination]).await;
    let layer = dir.path().join("blobs/sha256").join(image.layers[0].digest.trim_start_matches("sha256:"));
    assert_eq!(sha256_digest(&std::fs::read(layer).expect("layer copied")), image.layers[0].digest);
}

#[tokio::test]
async fn speaks_the_distribution_api_on_the_wire() {
    let image = pause_image();
    let mut registry = start_registry(vec![(PAUSE_REPOSITORY.into(), PAUSE_TAG.into(), image.clone())]).await;
    let address = registry.address.clone();

    let (head, body) = http(&address, "GET", "/v2/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("docker-distribution-api-version: registry/2.0"), "{head}");
    assert_eq!(body, "{}");

    let manifest_path = format!("/v2/{PAUSE_REPOSITORY}/manifests/{PAUSE_TAG}");
    let (head, body) = http(&address, "GET", &manifest_path).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/vnd.oci.image.manifest.v1+json"), "{head}");
    assert!(head.contains(&format!("docker-content-digest: {}", image.manifest_digest)), "{head}");
    assert!(head.contains(&format!("content-length: {}", image.manifest.len())), "{head}");
    assert_eq!(body.as_bytes(), image.manifest.as_ref());

    // HEAD: the same headers (length included), no body.
    let (head, body) = http(&address, "HEAD", &manifest_path).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {}", image.manifest.len())), "{head}");
    assert!(head.contains(&format!("docker-content-digest: {}", image.manifest_digest)), "{head}");
    assert!(body.is_empty());

    let config_path = format!("/v2/{PAUSE_REPOSITORY}/blobs/{}", image.config_digest);
    let (head, body) = http(&address, "GET", &config_path).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body.as_bytes(), image.config.as_ref());
    let (head, _) = http(&address, "HEAD", &format!("/v2/{PAUSE_REPOSITORY}/blobs/{}", image.layers[0].digest)).await;
    assert!(head.contains(&format!("content-length: {}", image.layers[0].bytes.len())), "{head}");

    for (path, code) in [
        (format!("/v2/{PAUSE_REPOSITORY}/manifests/2"), "MANIFEST_UNKNOWN"),
        (format!("/v2/{PAUSE_REPOSITORY}/manifests/sha256:{}", "0".repeat(64)), "MANIFEST_UNKNOWN"),
        (format!("/v2/{PAUSE_REPOSITORY}/blobs/sha256:{}", "0".repeat(64)), "BLOB_UNKNOWN"),
        // A blob exists only under the repositories whose images use it.
        (format!("/v2/other/blobs/{}", image.config_digest), "NAME_UNKNOWN"),
        ("/v2/other/manifests/1".to_owned(), "NAME_UNKNOWN"),
    ] {
        let (head, body) = http(&address, "GET", &path).await;
        assert!(head.starts_with("http/1.1 404"), "{path}: {head}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("error json");
        assert_eq!(error["errors"][0]["code"], code, "{path}: {body}");
    }
    let (head, body) = http(&address, "GET", &format!("/v2/{PAUSE_REPOSITORY}/tags/list")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("tags json"), serde_json::json!({"name": PAUSE_REPOSITORY, "tags": [PAUSE_TAG]}));
    let (head, _) = http(&address, "DELETE", &manifest_path).await;
    assert!(head.starts_with("http/1.1 405"), "{head}");

    // Shutdown stops the server and closes the port.
    drop(registry.stop.take());
    tokio::time::timeout(Duration::from_secs(5), &mut registry.server).await.expect("stops in time").expect("no panic");
    assert!(TcpStream::connect(&address).await.is_err(), "the port should be closed after shutdown");
}
