//! A real image registry for tests that run real containers: Debian's `docker-registry`
//! (the CNCF distribution registry) on 127.0.0.1:5000, holding a busybox image built with
//! `tugboat-oci` from the machine's static busybox.
//!
//! The registry is started detached and outlives the test process, so every later test (and
//! test process) reuses it; a file lock makes concurrent test processes take turns at starting
//! it and pushing the image.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Where the test registry listens: the address the agent's containerd and the tests pull from.
pub const TEST_REGISTRY: &str = "127.0.0.1:5000";
/// The busybox test image, as pods name it.
pub const BUSYBOX_IMAGE: &str = "127.0.0.1:5000/busybox:1";
/// Everything the test registry keeps (its config, log and storage). Deleting it empties the
/// registry; the next `ensure_test_registry` pushes the image again.
pub const TEST_REGISTRY_DIR: &str = "/var/lib/tugboat-test-registry";
/// Held while a process checks, starts or fills the registry; other processes wait on it.
const LOCK_PATH: &str = "/tmp/tugboat-test-registry.lock";
const BUSYBOX_PATH: &str = "/bin/busybox";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes sure the test registry serves on [`TEST_REGISTRY`] with the busybox image built from
/// this machine's `/bin/busybox`, and returns the image reference ([`BUSYBOX_IMAGE`]).
///
/// Once per process; safe when several test processes call it at once. Starts
/// `docker-registry` detached if nothing serves on the port; pushes the image with `skopeo`
/// unless the registry already has exactly this image (same manifest digest).
pub fn ensure_test_registry() -> String {
    static READY: OnceLock<String> = OnceLock::new();
    READY.get_or_init(prepare_test_registry).clone()
}

/// The busybox image `ensure_test_registry` pushes (the same bytes every time), for tests that
/// want its digests.
pub fn busybox_test_image() -> tugboat_oci::Image {
    tugboat_oci::busybox_image(Path::new(BUSYBOX_PATH))
        .unwrap_or_else(|e| panic!("cannot build the busybox test image ({e}); install busybox-static (scripts/install-deps.sh)"))
}

fn prepare_test_registry() -> String {
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .unwrap_or_else(|e| panic!("cannot open {LOCK_PATH}: {e}"));
    // Released when `lock_file` is dropped at the end of this function (or the process dies).
    lock_file.lock().unwrap_or_else(|e| panic!("cannot lock {LOCK_PATH}: {e}"));

    let address: SocketAddr = TEST_REGISTRY.parse().expect("TEST_REGISTRY is a socket address");
    ensure_registry_serving(address, Path::new(TEST_REGISTRY_DIR));
    let reference = format!("{address}/busybox:1");
    debug_assert_eq!(reference, BUSYBOX_IMAGE);
    ensure_image(&busybox_test_image(), &reference);
    reference
}

/// Pushes `image` to `reference` unless it is already there; says whether it pushed.
fn ensure_image(image: &tugboat_oci::Image, reference: &str) -> bool {
    if registry_manifest_digest(reference).as_deref() == Some(image.manifest_digest.as_str()) {
        return false;
    }
    push(image, reference);
    let pushed = registry_manifest_digest(reference);
    assert_eq!(pushed.as_deref(), Some(image.manifest_digest.as_str()), "after the push, {reference} has another digest");
    true
}

/// Starts `docker-registry` on `address` with its files under `dir`, unless a registry already
/// serves there. Returns the pid of the registry it started.
fn ensure_registry_serving(address: SocketAddr, dir: &Path) -> Option<u32> {
    match probe(address) {
        Probe::Registry => return None,
        Probe::SomethingElse(answer) => {
            panic!("{address} is taken by something that is not a plain-HTTP registry without auth; it answered:\n{answer}")
        }
        Probe::Nothing => {}
    }
    let binary = Path::new("/usr/bin/docker-registry");
    assert!(binary.exists(), "`docker-registry` is not installed; run scripts/install-deps.sh (Debian package docker-registry)");
    std::fs::create_dir_all(dir.join("storage")).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let config = dir.join("config.yml");
    std::fs::write(&config, registry_config(address, dir)).unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
    let log_path = dir.join("registry.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
    let log_for_stderr = log.try_clone().unwrap_or_else(|e| panic!("cannot share {}: {e}", log_path.display()));
    // Its own process group, so a Ctrl-C aimed at `cargo test` does not stop it; no pipes to
    // us, so nothing waits on it. The handle is dropped below without waiting: it outlives us.
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("docker-registry failed to start: {e}"))
    };
    let serving = crate::wait_until(START_TIMEOUT, || {
        matches!(probe(address), Probe::Registry) || matches!(child.try_wait(), Ok(Some(_)))
    });
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Ok(Some(status)) = child.try_wait() {
        panic!("docker-registry exited ({status}) instead of serving on {address}; its log:\n{}", log_text());
    }
    assert!(serving, "docker-registry did not serve on {address} within {START_TIMEOUT:?}; its log:\n{}", log_text());
    Some(child.id())
}

/// The registry's configuration. No blob descriptor cache (Debian's default config has an
/// in-memory one): with it, after someone deletes the storage directory the registry would
/// still answer "blob exists" for the deleted blobs, a push would skip uploading them and
/// every pull would fail. Without it, deleting the storage simply empties the registry.
fn registry_config(address: SocketAddr, dir: &Path) -> String {
    let storage = dir.join("storage");
    format!(
        "# Written by tugboat-testkit (registry.rs): the registry the tests pull from.\n\
         version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {address}\n",
        storage.display()
    )
}

enum Probe {
    /// A distribution registry answered `/v2/` with 200: plain HTTP and no auth.
    Registry,
    SomethingElse(String),
    Nothing,
}

/// Asks `address` for `GET /v2/`, the API check every registry client starts with.
fn probe(address: SocketAddr) -> Probe {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else { return Probe::Nothing };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return Probe::SomethingElse("(the connection failed while sending a request)".into());
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status_ok = answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200");
    if status_ok && answer.to_ascii_lowercase().contains("docker-distribution-api-version: registry/2.0") {
        Probe::Registry
    } else {
        Probe::SomethingElse(answer)
    }
}

/// The manifest digest the registry has under `reference`, if it has one.
fn registry_manifest_digest(reference: &str) -> Option<String> {
    let output = Command::new(skopeo())
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("skopeo failed to start: {e}"));
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Writes `image` as an OCI layout and copies it into the registry. `--preserve-digests`
/// because skopeo otherwise gzips uncompressed layers on the way, which changes every digest;
/// `--insecure-policy` because a minimal machine may have no /etc/containers/policy.json.
fn push(image: &tugboat_oci::Image, reference: &str) {
    let dir = tempfile::tempdir().expect("temporary directory for the image layout");
    image.write_oci_layout(dir.path(), "1").unwrap_or_else(|e| panic!("cannot write the image layout: {e}"));
    let output = Command::new(skopeo())
        .args(["copy", "--quiet", "--insecure-policy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", dir.path().display()))
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("skopeo failed to start: {e}"));
    assert!(output.status.success(), "skopeo could not push {reference}: {}", String::from_utf8_lossy(&output.stderr));
}

fn skopeo() -> PathBuf {
    crate::find_binary("skopeo")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole life of a test registry on a port of its own: started, filled, found filled,
    /// its storage deleted and filled again (and still pullable: no stale blob cache).
    #[test]
    fn registry_starts_fills_and_survives_deleting_its_storage() {
        if !Path::new("/usr/bin/docker-registry").exists() || !Path::new(BUSYBOX_PATH).exists() {
            eprintln!("SKIPPED: needs docker-registry, skopeo and busybox-static (scripts/install-deps.sh)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let address: SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse().expect("address");
        let pid = ensure_registry_serving(address, dir.path()).expect("a new registry was started");
        // Stop the registry we started, whatever happens below.
        struct Stop(u32);
        impl Drop for Stop {
            fn drop(&mut self) {
                let _ = Command::new("kill").arg(self.0.to_string()).status();
            }
        }
        let _stop = Stop(pid);
        assert_eq!(ensure_registry_serving(address, dir.path()), None, "a serving registry is reused");

        let image = tugboat_oci::pause_image();
        let reference = format!("{address}/tugboat/pause:1");
        assert!(ensure_image(&image, &reference), "an empty registry gets the image");
        assert!(!ensure_image(&image, &reference), "the same image is not pushed twice");

        std::fs::remove_dir_all(dir.path().join("storage")).expect("delete the storage");
        assert!(ensure_image(&image, &reference), "after deleting the storage the image is pushed again");
        let copy = dir.path().join("copy");
        let output = Command::new(skopeo())
            .args(["copy", "--quiet", "--insecure-policy", "--preserve-digests", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:1", copy.display()))
            .output()
            .expect("skopeo");
        assert!(output.status.success(), "pull after re-push: {}", String::from_utf8_lossy(&output.stderr));
    }
}
