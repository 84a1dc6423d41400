//! The shared test registry: after `ensure_test_registry` the real registry serves the busybox
//! image tugboat-oci builds, byte for byte (checked with skopeo, an independent client).

use std::process::Command;
use tugboat_testkit::registry::{busybox_test_image, ensure_test_registry, BUSYBOX_IMAGE};

#[test]
fn the_test_registry_serves_the_busybox_image() {
    let reference = ensure_test_registry();
    assert_eq!(reference, BUSYBOX_IMAGE);
    // A second call in the same process is free and answers the same.
    assert_eq!(ensure_test_registry(), reference);

    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(output.status.success(), "skopeo inspect failed: {}", String::from_utf8_lossy(&output.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&output.stdout).expect("skopeo inspect prints JSON");
    let image = busybox_test_image();
    assert_eq!(inspected["Digest"], image.manifest_digest.as_str(), "{inspected:#}");
    assert_eq!(inspected["Layers"], serde_json::json!([image.layers[0].digest]), "{inspected:#}");
    assert_eq!(inspected["Os"], "linux");
}
