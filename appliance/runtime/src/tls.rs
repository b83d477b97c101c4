//! TLS for the appliance's listeners: a rustls server configuration (TLS 1.2 and 1.3, the ring
//! provider) from `DATA/tls/cert.pem` + `DATA/tls/key.pem`, and a self-signed certificate made
//! on first start so a fresh box speaks TLS before the admin installs a real one.
//!
//! What it is not: no ACME, no SNI certificate selection, no client certificates, no ALPN.
//! Certificate renewal is an admin action (replace the files, reload the service).
//!
//! Invariants: the key file is written mode 0600 and atomically; [`ensure_self_signed`] never
//! replaces an existing certificate or key; a key that does not match its certificate is
//! refused at load time rather than failing on the first handshake.

use hermes_core::paths::DataDir;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Validity of the self-signed certificate: 825 days, the longest lifetime Apple platforms
/// accept for a TLS server certificate, so iOS Mail does not reject it for its lifetime alone.
pub const SELF_SIGNED_VALIDITY_DAYS: u64 = 825;

/// Largest PEM file we read: a chain of a few certificates is a few KiB; 1 MiB is abuse.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no TLS certificate at {0}")]
    Missing(PathBuf),
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TlsError::Missing(path.to_path_buf())
        } else {
            TlsError::Io { path: path.to_path_buf(), source: e }
        }
    })?;
    let mut buf = Vec::new();
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| TlsError::Io { path: path.to_path_buf(), source: e })?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::Invalid { path: path.to_path_buf(), reason: "file too large".into() });
    }
    Ok(buf)
}

/// Builds the rustls server configuration from PEM certificate chain and key files.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_pem = read_bounded(cert_path)?;
    let key_pem = read_bounded(key_path)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid { path: cert_path.to_path_buf(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid { path: cert_path.to_path_buf(), reason: "no certificate in file".into() });
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Invalid { path: key_path.to_path_buf(), reason: e.to_string() })?
        .ok_or_else(|| TlsError::Invalid { path: key_path.to_path_buf(), reason: "no private key in file".into() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        // `with_single_cert` checks that the key matches the end-entity certificate.
        .with_single_cert(certs, key)?;
    Ok(config)
}

/// The acceptor for `DATA/tls/cert.pem` + `DATA/tls/key.pem`.
/// [`TlsError::Missing`] when no certificate exists (the caller decides whether that is fatal).
pub fn load_acceptor(data: &DataDir) -> Result<TlsAcceptor, TlsError> {
    let config = load_server_config(&data.tls_cert(), &data.tls_key())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Creates a self-signed certificate for `hostname` (SANs: hostname, localhost, 127.0.0.1, ::1;
/// valid [`SELF_SIGNED_VALIDITY_DAYS`] days; ECDSA P-256) unless a certificate or key already
/// exists. Returns whether one was created. The supervisor calls this on first start.
pub fn ensure_self_signed(data: &DataDir, hostname: &str) -> Result<bool, TlsError> {
    let cert_path = data.tls_cert();
    let key_path = data.tls_key();
    if cert_path.exists() || key_path.exists() {
        return Ok(false);
    }
    let (cert_pem, key_pem) = generate_self_signed(hostname, std::time::SystemTime::now())?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(data.tls_dir()).map_err(io(&data.tls_dir()))?;
    // Key first: a certificate without its key would make the next start skip generation.
    crate::fs::write_atomic(&key_path, key_pem.as_bytes(), 0o600).map_err(io(&key_path))?;
    crate::fs::write_atomic(&cert_path, cert_pem.as_bytes(), 0o644).map_err(io(&cert_path))?;
    tracing::info!(cert = %cert_path.display(), hostname, "created self-signed TLS certificate");
    Ok(true)
}

/// (certificate PEM, private key PEM) for a self-signed certificate valid from `now`.
pub fn generate_self_signed(hostname: &str, now: std::time::SystemTime) -> Result<(String, String), TlsError> {
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
            names.push(extra.to_string());
        }
    }
    // `CertificateParams::new` turns names that parse as IP addresses into IP SANs.
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, hostname);
    dn.push(rcgen::DnType::OrganizationName, "Hermes self-signed");
    params.distinguished_name = dn;
    let days = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0);
    let (y, m, d) = civil_from_days(days as i64);
    // Start yesterday: a client whose clock is a little behind still accepts it.
    let today = rcgen::date_time_ymd(y, m, d);
    params.not_before = today - std::time::Duration::from_secs(86_400);
    params.not_after = today + std::time::Duration::from_secs(SELF_SIGNED_VALIDITY_DAYS * 86_400);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y as i32, m as u8, d as u8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn self_signed_is_created_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        assert!(matches!(load_acceptor(&data), Err(TlsError::Missing(_))));
        assert!(ensure_self_signed(&data, "mail.example.org").unwrap());
        let mode = std::fs::metadata(data.tls_key()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(data.tls_cert()).unwrap();
        assert!(!ensure_self_signed(&data, "mail.example.org").unwrap());
        assert_eq!(std::fs::read(data.tls_cert()).unwrap(), before, "never replaced");
        load_acceptor(&data).unwrap();
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let now = std::time::SystemTime::now();
        let (cert, _) = generate_self_signed("a.example", now).unwrap();
        let (_, other_key) = generate_self_signed("b.example", now).unwrap();
        std::fs::create_dir_all(data.tls_dir()).unwrap();
        std::fs::write(data.tls_cert(), cert).unwrap();
        std::fs::write(data.tls_key(), other_key).unwrap();
        assert!(load_acceptor(&data).is_err());
    }

    #[test]
    fn garbage_pem_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(data.tls_dir()).unwrap();
        std::fs::write(data.tls_cert(), b"-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
        std::fs::write(data.tls_key(), b"nothing").unwrap();
        assert!(load_acceptor(&data).is_err());
    }

    #[tokio::test]
    async fn handshake_over_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        ensure_self_signed(&data, "localhost").unwrap();
        let acceptor = load_acceptor(&data).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(s).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut tls, b"hello").await.unwrap();
            tokio::io::AsyncWriteExt::shutdown(&mut tls).await.unwrap();
        });
        let cert_pem = std::fs::read(data.tls_cert()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut cert_pem.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut buf).await.unwrap();
        assert_eq!(buf, b"hello");
        server.await.unwrap();
    }
}
