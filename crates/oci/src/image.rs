//! OCI images assembled in memory: one uncompressed layer, a config and a manifest, with
//! content digests. JSON is written from structs (field order is declaration order whatever
//! serde_json features the build unifies), so an image's bytes and digests never change
//! between builds.

use crate::tar::TarBuilder;
use crate::OciError;
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed: the layers are small, they only travel over loopback, and it spares a
/// compression dependency.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// What a container's processes find in PATH unless the pod sets it; the usual default.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A content-addressed blob: `digest` is `sha256:<hex>` of `bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub bytes: Bytes,
}

impl Blob {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self { digest: sha256_digest(&bytes), bytes }
    }
}

/// A single-platform OCI image: manifest, config and layers, each with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub manifest: Bytes,
    pub manifest_digest: String,
    pub config: Bytes,
    pub config_digest: String,
    pub layers: Vec<Blob>,
}

/// `sha256:<lowercase hex>`, the digest form OCI uses everywhere.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut digest = String::with_capacity(7 + 64);
    digest.push_str("sha256:");
    for byte in hash {
        digest.push_str(&format!("{byte:02x}"));
    }
    digest
}

/// The parts of the image config (OCI image-spec `config.md`) we set.
#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'a str,
    os: &'a str,
    config: ContainerConfig<'a>,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct ContainerConfig<'a> {
    #[serde(rename = "Env")]
    env: Vec<&'a str>,
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<&'a str>>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    cmd: Option<Vec<&'a str>>,
    #[serde(rename = "WorkingDir")]
    working_dir: &'a str,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Digests of the uncompressed layers; ours are uncompressed, so the layer digests.
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor<'a> {
    pub media_type: &'a str,
    pub digest: &'a str,
    pub size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<RefNameAnnotation<'a>>,
}

#[derive(Serialize)]
pub(crate) struct RefNameAnnotation<'a> {
    #[serde(rename = "org.opencontainers.image.ref.name")]
    pub ref_name: &'a str,
}

/// What runs when a container starts without its own command.
pub struct Launch<'a> {
    pub entrypoint: Option<Vec<&'a str>>,
    pub cmd: Option<Vec<&'a str>>,
}

impl Image {
    /// Builds an image of one layer (`layer`, an uncompressed tar).
    pub fn from_layer(architecture: &str, layer: Vec<u8>, launch: Launch<'_>) -> Result<Self, OciError> {
        let layer = Blob::new(layer);
        let config = ImageConfig {
            architecture,
            os: "linux",
            config: ContainerConfig { env: vec![DEFAULT_PATH], entrypoint: launch.entrypoint, cmd: launch.cmd, working_dir: "/" },
            rootfs: RootFs { kind: "layers", diff_ids: vec![layer.digest.clone()] },
        };
        let config = Blob::new(serde_json::to_vec(&config)?);
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE,
            config: Descriptor { media_type: CONFIG_MEDIA_TYPE, digest: &config.digest, size: config.bytes.len(), annotations: None },
            layers: vec![Descriptor { media_type: LAYER_MEDIA_TYPE, digest: &layer.digest, size: layer.bytes.len(), annotations: None }],
        };
        let manifest = Blob::new(serde_json::to_vec(&manifest)?);
        Ok(Self {
            manifest: manifest.bytes,
            manifest_digest: manifest.digest,
            config: config.bytes,
            config_digest: config.digest,
            layers: vec![layer],
        })
    }

    /// Every blob a registry serves for this image except the manifest: config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        std::iter::once((self.config_digest.as_str(), &self.config))
            .chain(self.layers.iter().map(|layer| (layer.digest.as_str(), &layer.bytes)))
    }

    /// Writes the image as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`)
    /// under `dir`, with `tag` as its reference name, so `skopeo copy oci:DIR:TAG …` can read
    /// it. The index lists this image only: a directory holds one tag.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> Result<(), OciError> {
        let blob_dir = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blob_dir).map_err(|source| OciError::Io { path: blob_dir.clone(), source })?;
        let manifest = (self.manifest_digest.as_str(), &self.manifest);
        for (digest, bytes) in std::iter::once(manifest).chain(self.blobs()) {
            let hex = digest.strip_prefix("sha256:").ok_or_else(|| OciError::BadDigest(digest.to_owned()))?;
            write_file(&blob_dir.join(hex), bytes)?;
        }
        write_file(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Index<'a> {
            schema_version: u32,
            manifests: Vec<Descriptor<'a>>,
        }
        let index = Index {
            schema_version: 2,
            manifests: vec![Descriptor {
                media_type: MANIFEST_MEDIA_TYPE,
                digest: &self.manifest_digest,
                size: self.manifest.len(),
                annotations: Some(RefNameAnnotation { ref_name: tag }),
            }],
        };
        write_file(&dir.join("index.json"), &serde_json::to_vec(&index)?)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    std::fs::write(path, bytes).map_err(|source| OciError::Io { path: path.to_owned(), source })
}

/// The sandbox image: `/pause` (see [`crate::pause`]) as its entrypoint, nothing else.
pub fn pause_image() -> Image {
    let build = || -> Result<Image, OciError> {
        let mut layer = TarBuilder::new();
        layer.file("pause", 0o755, &crate::pause::pause_executable())?;
        let launch = Launch { entrypoint: Some(vec!["/pause"]), cmd: None };
        Image::from_layer(crate::pause::pause_architecture(), layer.finish(), launch)
    };
    // Built from constants only: a failure here is a bug in this crate, found by its tests.
    build().expect("the built-in pause image is well-formed")
}

/// The commands `busybox_image` links to `/bin/busybox` (busybox picks the applet by name).
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "httpd", "sleep", "wget", "nc", "cat", "echo", "ls", "tar", "kill", "ps", "env", "true", "false", "mkdir", "rm", "date",
    "hostname", "nslookup", "id", "touch", "tail", "head", "grep", "test", "[", "yes", "dd", "mount", "top", "sync",
];

/// `/etc/passwd` with the two users workloads ask for by name.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// A test image around a static busybox: `/bin/busybox` with applet symlinks in `/bin`
/// ([`BUSYBOX_APPLETS`]), `/tmp` (1777), `/etc/passwd`, `/etc/group`, `/www` for `httpd`, and
/// `sh` as its command. The architecture is read from the executable itself.
pub fn busybox_image(busybox_path: &Path) -> Result<Image, OciError> {
    let busybox = std::fs::read(busybox_path).map_err(|source| OciError::Io { path: busybox_path.to_owned(), source })?;
    let architecture = static_executable_architecture(&busybox)
        .map_err(|reason| OciError::NotStaticExecutable { path: busybox_path.to_owned(), reason })?;
    let mut layer = TarBuilder::new();
    layer.directory("bin", 0o755)?;
    layer.file("bin/busybox", 0o755, &busybox)?;
    for applet in BUSYBOX_APPLETS {
        layer.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    layer.directory("etc", 0o755)?;
    layer.file("etc/passwd", 0o644, PASSWD.as_bytes())?;
    layer.file("etc/group", 0o644, GROUP.as_bytes())?;
    layer.directory("root", 0o700)?;
    layer.directory("tmp", 0o1777)?;
    layer.directory("www", 0o755)?;
    Image::from_layer(architecture, layer.finish(), Launch { entrypoint: None, cmd: Some(vec!["sh"]) })
}

/// The OCI architecture of an ELF executable that needs no dynamic loader; otherwise why not.
/// A dynamically linked busybox would fail only when a container starts, with a baffling
/// "no such file or directory" (the missing loader), so refuse it here.
fn static_executable_architecture(file: &[u8]) -> Result<&'static str, String> {
    const PT_INTERP: u32 = 3;
    if file.len() < 64 || &file[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if file[4] != 2 || file[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |at: usize| file.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| file.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |at: usize| file.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let architecture = match u16_at(18) {
        Some(62) => "amd64",
        Some(183) => "arm64",
        other => return Err(format!("unsupported machine {other:?}")),
    };
    let truncated = || "truncated ELF header".to_owned();
    let header_offset = usize::try_from(u64_at(32).ok_or_else(truncated)?).map_err(|_| truncated())?;
    let header_size = usize::from(u16_at(54).ok_or_else(truncated)?);
    let header_count = usize::from(u16_at(56).ok_or_else(truncated)?);
    for index in 0..header_count {
        let kind = u32_at(header_offset + index * header_size).ok_or_else(truncated)?;
        if kind == PT_INTERP {
            return Err("dynamically linked (has an interpreter); install busybox-static".into());
        }
    }
    Ok(architecture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_image_is_deterministic_and_consistent() {
        let image = pause_image();
        assert_eq!(image, pause_image());
        assert_eq!(sha256_digest(&image.manifest), image.manifest_digest);
        assert_eq!(sha256_digest(&image.config), image.config_digest);
        let config: serde_json::Value = serde_json::from_slice(&image.config).expect("config json");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/pause"]));
        assert_eq!(config["rootfs"]["diff_ids"][0], image.layers[0].digest.as_str());
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).expect("manifest json");
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
        assert_eq!(manifest["config"]["size"], image.config.len());
        assert_eq!(manifest["layers"][0]["digest"], image.layers[0].digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], image.layers[0].bytes.len());
    }

    /// The exact digest, so an accidental change to any byte of the pause image (which changes
    /// the sandbox image every node pulls) is a deliberate, reviewed one.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn pause_image_digest_is_pinned() {
        assert_eq!(pause_image().manifest_digest, PINNED_X86_64_PAUSE_MANIFEST_DIGEST);
    }
    #[cfg(target_arch = "x86_64")]
    const PINNED_X86_64_PAUSE_MANIFEST_DIGEST: &str = "sha256:c041a7020f0c0426ead3c6d5193343ec57fd968ad0c444235a07d51094216518";

    #[test]
    fn busybox_image_has_the_applets_and_files() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            eprintln!("SKIPPED: /bin/busybox is missing (Debian package busybox-static)");
            return;
        }
        let image = busybox_image(busybox).expect("busybox image");
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = dir.path().join("layer.tar");
        std::fs::write(&layer, &image.layers[0].bytes).expect("write layer");
        let output = std::process::Command::new("tar").arg("-tvf").arg(&layer).output().expect("tar");
        let listing = String::from_utf8_lossy(&output.stdout);
        for applet in BUSYBOX_APPLETS {
            assert!(listing.contains(&format!("bin/{applet} -> busybox")), "missing {applet}:\n{listing}");
        }
        assert!(listing.lines().any(|l| l.starts_with("drwxrwxrwt") && l.ends_with(" tmp/")), "{listing}");
        assert!(listing.contains("etc/passwd") && listing.contains(" www/"), "{listing}");
        let config: serde_json::Value = serde_json::from_slice(&image.config).expect("config json");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
        assert!(config["config"].get("Entrypoint").is_none());
    }

    #[test]
    fn dynamic_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("text");
        std::fs::write(&text, "#!/bin/sh\n").expect("write");
        assert!(matches!(busybox_image(&text), Err(OciError::NotStaticExecutable { .. })));
        // Any dynamically linked system binary has a PT_INTERP header.
        let dynamic = Path::new("/bin/ls");
        if dynamic.exists() {
            let error = busybox_image(dynamic).expect_err("dynamic executable");
            assert!(error.to_string().contains("dynamically linked"), "{error}");
        }
        assert!(matches!(busybox_image(&dir.path().join("missing")), Err(OciError::Io { .. })));
    }

    #[test]
    fn oci_layout_has_index_and_blobs() {
        let image = pause_image();
        let dir = tempfile::tempdir().expect("tempdir");
        image.write_oci_layout(dir.path(), "1").expect("layout");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).expect("index")).expect("index json");
        assert_eq!(index["manifests"][0]["digest"], image.manifest_digest.as_str());
        assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "1");
        for digest in [&image.manifest_digest, &image.config_digest, &image.layers[0].digest] {
            let path = dir.path().join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
            assert_eq!(sha256_digest(&std::fs::read(&path).expect("blob")), *digest);
        }
    }
}
