//! The cluster's public-key infrastructure: one CA, a serving certificate for the API server, and
//! client certificates (the admin's first), all kept as PEM files under `<data-dir>/pki/`.
//! Also writes kubeconfig files that embed them.
//!
//! Invariant: files are created once and then only read; a restart never replaces the CA, so
//! kubeconfigs handed out stay valid.

mod kubeconfig;

pub use kubeconfig::{write_kubeconfig, Kubeconfig, KubeconfigError};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} holds no usable PEM {what}; delete the pki directory to regenerate all certificates")]
    BadPem { path: PathBuf, what: &'static str },
    #[error("tls configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// Subject of a client certificate: Kubernetes reads the user from CN and groups from O.
#[derive(Debug, Clone)]
pub struct ClientIdentity<'a> {
    pub user: &'a str,
    pub groups: &'a [&'a str],
}

/// The CA and the server's own certificate, loaded from (or first created in) a directory.
pub struct ClusterPki {
    dir: PathBuf,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    pub ca_cert_pem: String,
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

const CA_COMMON_NAME: &str = "tugboat-ca";
const VALIDITY_DAYS: i64 = 3650;

impl ClusterPki {
    /// Loads the CA from `dir`, creating it (and `dir`) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(|source| io("create", dir, source))?;
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.crt");
        // The CA parameters are deterministic, so an issuer rebuilt from them and the stored key
        // signs certificates that chain to the stored CA certificate.
        let ca_params = ca_params();
        if key_path.exists() && cert_path.exists() {
            let key_pem = read(&key_path)?;
            let ca_key = KeyPair::from_pem(&key_pem)
                .map_err(|_| PkiError::BadPem { path: key_path.clone(), what: "private key" })?;
            let ca_cert_pem = read(&cert_path)?;
            return Ok(Self { dir: dir.to_owned(), ca_key, ca_params, ca_cert_pem });
        }
        let ca_key = KeyPair::generate()?;
        let ca_cert_pem = ca_params.self_signed(&ca_key)?.pem();
        write_private(&key_path, &ca_key.serialize_pem())?;
        write_public(&cert_path, &ca_cert_pem)?;
        Ok(Self { dir: dir.to_owned(), ca_key, ca_params, ca_cert_pem })
    }

    /// The serving certificate for `names` (DNS names or IP addresses), created on first use.
    /// Names added later (a new `--tls-san`) re-issue it; the CA stays.
    pub fn serving_cert(&self, names: &[String]) -> Result<CertPair, PkiError> {
        let base = self.dir.join("server");
        let names_path = self.dir.join("server.names");
        let wanted = names.join("\n");
        if let (Some(pair), Ok(existing)) = (self.read_pair(&base)?, fs::read_to_string(&names_path)) {
            if existing == wanted {
                return Ok(pair);
            }
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name("tugboat-apiserver", &[]);
        params.subject_alt_names = subject_alt_names(names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let pair = self.issue(params, &base)?;
        write_public(&names_path, &wanted)?;
        Ok(pair)
    }

    /// A client certificate for `identity`, stored as `<dir>/<file_stem>.crt|.key`, created on
    /// first use.
    pub fn client_cert(&self, file_stem: &str, identity: &ClientIdentity) -> Result<CertPair, PkiError> {
        let base = self.dir.join(file_stem);
        if let Some(pair) = self.read_pair(&base)? {
            return Ok(pair);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name(identity.user, identity.groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, &base)
    }

    /// A TLS server configuration presenting `serving`, which verifies client certificates
    /// against the CA when a client offers one. Clients without a certificate are let through
    /// the handshake so that other authentication (bearer tokens) can still decide; the API
    /// server rejects them with 401 otherwise.
    pub fn server_tls_config(&self, serving: &CertPair) -> Result<rustls::ServerConfig, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(&self.ca_cert_pem, &self.dir.join("ca.crt"))? {
            roots.add(cert)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Verifier(e.to_string()))?;
        let certs = parse_certs(&serving.cert_pem, &self.dir.join("server.crt"))?;
        let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
            .map_err(|_| PkiError::BadPem { path: self.dir.join("server.key"), what: "private key" })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    fn issue(&self, mut params: CertificateParams, base: &Path) -> Result<CertPair, PkiError> {
        let (not_before, not_after) = validity();
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert_pem = params.signed_by(&key, &issuer)?.pem();
        let pair = CertPair { cert_pem, key_pem: key.serialize_pem() };
        write_private(&base.with_extension("key"), &pair.key_pem)?;
        write_public(&base.with_extension("crt"), &pair.cert_pem)?;
        Ok(pair)
    }

    fn read_pair(&self, base: &Path) -> Result<Option<CertPair>, PkiError> {
        let (cert, key) = (base.with_extension("crt"), base.with_extension("key"));
        if !(cert.exists() && key.exists()) {
            return Ok(None);
        }
        Ok(Some(CertPair { cert_pem: read(&cert)?, key_pem: read(&key)? }))
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_COMMON_NAME, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let (not_before, not_after) = validity();
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

/// DNS names and IP addresses as certificate subject alternative names.
fn subject_alt_names(names: &[String]) -> Result<Vec<SanType>, rcgen::Error> {
    names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect()
}

fn validity() -> (time::OffsetDateTime, time::OffsetDateTime) {
    // Fixed dates keep the CA parameters identical across restarts (see `load_or_create`).
    let not_before = time::OffsetDateTime::from_unix_timestamp(1_704_067_200).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (not_before, not_before + time::Duration::days(VALIDITY_DAYS))
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn
}

fn parse_certs(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| PkiError::BadPem { path: path.to_owned(), what: "certificate" })?;
    if certs.is_empty() {
        return Err(PkiError::BadPem { path: path.to_owned(), what: "certificate" });
    }
    Ok(certs)
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io { action, path: path.to_owned(), source }
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| io("read", path, e))
}

fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_mode(path, contents, 0o644)
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_mode(path, contents, 0o600)
}

pub(crate) fn write_mode(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("write", &tmp, e))?;
    file.write_all(contents.as_bytes()).map_err(|e| io("write", &tmp, e))?;
    file.sync_all().map_err(|e| io("sync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_survives_reload_and_issued_certs_chain_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path()).unwrap();
        let first_ca = pki.ca_cert_pem.clone();
        let reloaded = ClusterPki::load_or_create(dir.path()).unwrap();
        assert_eq!(first_ca, reloaded.ca_cert_pem);

        let serving = reloaded.serving_cert(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        // The config builds only if the serving chain and CA parse; verifying a client cert
        // against the reloaded CA proves the rebuilt issuer signs with the stored key.
        reloaded.server_tls_config(&serving).unwrap();
        let admin = reloaded.client_cert("admin", &ClientIdentity { user: "admin", groups: &["system:masters"] }).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(parse_certs(&first_ca, Path::new("ca")).unwrap().remove(0)).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let cert = parse_certs(&admin.cert_pem, Path::new("admin")).unwrap().remove(0);
        verifier
            .verify_client_cert(&cert, &[], rustls_pki_types::UnixTime::now())
            .expect("admin certificate chains to the CA");
    }

    #[test]
    fn serving_cert_is_reissued_only_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path()).unwrap();
        let a = pki.serving_cert(&["localhost".into()]).unwrap();
        let b = pki.serving_cert(&["localhost".into()]).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        let c = pki.serving_cert(&["localhost".into(), "10.0.0.1".into()]).unwrap();
        assert_ne!(a.cert_pem, c.cert_pem);
    }
}

/// TLS for a node agent's endpoint: a fresh self-signed serving certificate for `names` (the API
/// server does not verify it, as kube-apiserver without --kubelet-certificate-authority), and
/// client certificates REQUIRED and verified against the cluster CA — only the API server (or an
/// admin) reaches logs, exec and port-forward. HTTP/1.1 only: streams are HTTP/1.1 upgrades.
pub fn agent_tls_config(client_ca_pem: &str, names: &[String]) -> Result<rustls::ServerConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(client_ca_pem, Path::new("the kubeconfig's certificate-authority-data"))? {
        roots.add(cert)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("tugboat-agent", &[]);
    params.subject_alt_names = subject_alt_names(names)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (not_before, not_after) = validity();
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).map_err(|_| PkiError::BadPem { path: PathBuf::from("agent serving key"), what: "private key" })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS for the API server's connections to node agents: it presents `client` (signed by the
/// cluster CA, which agents require) and does not verify the agent's self-signed serving
/// certificate — as kube-apiserver without --kubelet-certificate-authority. Signatures are still
/// checked, so the handshake itself is sound.
pub fn agent_client_tls_config(client: &CertPair) -> Result<rustls::ClientConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = parse_certs(&client.cert_pem, Path::new("the agent client certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).map_err(|_| PkiError::BadPem { path: PathBuf::from("agent client key"), what: "private key" })?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnverifiedAgentCertificate(provider)))
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct UnverifiedAgentCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UnverifiedAgentCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
