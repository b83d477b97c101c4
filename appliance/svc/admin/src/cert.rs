//! Reads the validity period of the TLS certificate (`DATA/tls/cert.pem`) for the dashboard.
//!
//! A minimal DER walk over the first certificate of the PEM chain: Certificate → TBSCertificate
//! → (optional [0] version, serialNumber, signature, issuer) → Validity { notBefore, notAfter }.
//! We do this rather than add an X.509 crate (x509-parser brings nom, asn1-rs, der-parser,
//! oid-registry...) because the dashboard needs two dates, nothing else, and the certificate
//! was already validated by rustls when the services loaded it.
//!
//! What it is not: certificate validation. It trusts nothing it reads; it only reports dates.
//!
//! Invariants: every length is checked against the remaining input (no panic, no allocation
//! beyond the PEM file, which is read with a size bound); any malformation yields `None`.

use base64::Engine as _;

/// Largest PEM file read (as hermes_runtime::tls bounds it).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A certificate's validity window (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// The validity of the first certificate in the PEM file at `path`.
pub fn read_validity(path: &std::path::Path) -> Option<Validity> {
    use std::io::Read;
    let mut pem = String::new();
    std::fs::File::open(path).ok()?.take(MAX_PEM_BYTES).read_to_string(&mut pem).ok()?;
    validity_from_pem(&pem)
}

pub fn validity_from_pem(pem: &str) -> Option<Validity> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    validity_from_der(&der)
}

/// One TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

pub fn validity_from_der(der: &[u8]) -> Option<Validity> {
    let (0x30, cert, _) = tlv(der)? else { return None };
    let (0x30, tbs, _) = tlv(cert)? else { return None };
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    let (0x02, _, r) = tlv(rest)? else { return None }; // serialNumber
    let (0x30, _, r) = tlv(r)? else { return None }; // signature algorithm
    let (0x30, _, r) = tlv(r)? else { return None }; // issuer
    let (0x30, validity, _) = tlv(r)? else { return None };
    let (t1, nb, r) = tlv(validity)?;
    let (t2, na, _) = tlv(r)?;
    Some(Validity { not_before: time(t1, nb)?, not_after: time(t2, na)? })
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ) → Unix seconds.
fn time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.strip_suffix('Z')?;
    let full = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i32 = s[..2].parse().ok()?;
            // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
            format!("{}{}", if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (0x18, 14) => s.to_string(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dt = chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S").ok()?;
    Some(dt.and_utc().timestamp())
}

/// What the TLS page shows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses (subjectAltName).
    pub sans: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    pub self_signed: bool,
}

/// Every `CERTIFICATE` block of a PEM text, decoded (at most [`MAX_CHAIN`]).
pub fn pem_certs(pem: &str) -> Option<Vec<Vec<u8>>> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end_m = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(i) = rest.find(begin) {
        let body = &rest[i + begin.len()..];
        let j = body.find(end_m)?;
        let b64: String = body[..j].chars().filter(|c| !c.is_whitespace()).collect();
        out.push(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
        rest = &body[j + end_m.len()..];
        if out.len() > MAX_CHAIN {
            return None;
        }
    }
    Some(out)
}

/// Longest chain accepted (leaf, intermediates, maybe a root).
pub const MAX_CHAIN: usize = 8;

/// A Name's attributes as `CN=..., O=...` (the common ones; others by OID).
fn name_text(name: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    let mut sets = name;
    while !sets.is_empty() {
        let (0x31, set, r) = tlv(sets)? else { return None };
        sets = r;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (0x30, atv, r) = tlv(atvs)? else { return None };
            atvs = r;
            let (0x06, oid, r2) = tlv(atv)? else { return None };
            let (_, value, _) = tlv(r2)?;
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN".to_string(),
                [0x55, 0x04, 0x0a] => "O".to_string(),
                [0x55, 0x04, 0x0b] => "OU".to_string(),
                [0x55, 0x04, 0x06] => "C".to_string(),
                [0x55, 0x04, 0x07] => "L".to_string(),
                [0x55, 0x04, 0x08] => "ST".to_string(),
                _ => format!("oid:{}", hex::encode(oid)),
            };
            parts.push(format!("{key}={}", String::from_utf8_lossy(value)));
            if parts.len() > 32 {
                return None;
            }
        }
    }
    Some(parts.join(", "))
}

/// The subjectAltName entries of an extensions block.
fn sans(exts: &[u8]) -> Option<Vec<String>> {
    let (0x30, list, _) = tlv(exts)? else { return None };
    let mut rest = list;
    while !rest.is_empty() {
        let (0x30, ext, r) = tlv(rest)? else { return None };
        rest = r;
        let (0x06, oid, mut r2) = tlv(ext)? else { return None };
        if oid != [0x55, 0x1d, 0x11] {
            continue;
        }
        let (tag, _, r3) = tlv(r2)?;
        if tag == 0x01 {
            r2 = r3; // critical
        }
        let (0x04, octets, _) = tlv(r2)? else { return None };
        let (0x30, names, _) = tlv(octets)? else { return None };
        let mut out = Vec::new();
        let mut n = names;
        while !n.is_empty() && out.len() < 1000 {
            let (tag, v, r) = tlv(n)?;
            n = r;
            match (tag, v.len()) {
                (0x82, _) => out.push(String::from_utf8_lossy(v).into_owned()),
                (0x87, 4) => out.push(std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string()),
                (0x87, 16) => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(v);
                    out.push(std::net::Ipv6Addr::from(a).to_string());
                }
                _ => {}
            }
        }
        return Some(out);
    }
    Some(Vec::new())
}

/// Subject, issuer, SANs and validity of a DER certificate.
pub fn info_from_der(der: &[u8]) -> Option<CertInfo> {
    use sha2::Digest as _;
    let (0x30, cert, _) = tlv(der)? else { return None };
    let (0x30, tbs, _) = tlv(cert)? else { return None };
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    let (0x02, _, r) = tlv(rest)? else { return None };
    let (0x30, _, r) = tlv(r)? else { return None };
    let (0x30, issuer, r) = tlv(r)? else { return None };
    let (0x30, _, r) = tlv(r)? else { return None };
    let (0x30, subject, r) = tlv(r)? else { return None };
    let (0x30, _, mut r) = tlv(r)? else { return None }; // subjectPublicKeyInfo
    let mut alt = Vec::new();
    while !r.is_empty() {
        let (tag, v, r2) = tlv(r)?;
        r = r2;
        if tag == 0xa3 {
            alt = sans(v)?;
        }
    }
    let v = validity_from_der(der)?;
    Some(CertInfo {
        subject: name_text(subject)?,
        issuer: name_text(issuer)?,
        self_signed: issuer == subject,
        sans: alt,
        not_before: v.not_before,
        not_after: v.not_after,
        sha256: hex::encode(sha2::Sha256::digest(der)),
    })
}

/// The chain in `DATA/tls/cert.pem`, leaf first (`None`: missing or unreadable).
pub fn read_chain(path: &std::path::Path) -> Option<Vec<CertInfo>> {
    use std::io::Read;
    let mut pem = String::new();
    std::fs::File::open(path).ok()?.take(MAX_PEM_BYTES).read_to_string(&mut pem).ok()?;
    pem_certs(&pem)?.iter().map(|d| info_from_der(d)).collect()
}

/// Largest certificate chain or key accepted by the upload form.
pub const MAX_UPLOAD_PEM: usize = 32 * 1024;

/// Why an uploaded certificate is refused, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> UploadError {
    UploadError { field, message: message.into() }
}

/// Checks an uploaded chain and key: bounded, parses, the key matches the leaf (rustls builds
/// a server config from them), the leaf is valid now.
pub fn check_upload(chain: &str, key: &str, now: i64) -> Result<Vec<CertInfo>, UploadError> {
    if chain.len() > MAX_UPLOAD_PEM {
        return Err(refuse("chain", format!("at most {} KiB", MAX_UPLOAD_PEM / 1024)));
    }
    if key.len() > MAX_UPLOAD_PEM {
        return Err(refuse("key", format!("at most {} KiB", MAX_UPLOAD_PEM / 1024)));
    }
    let ders = pem_certs(chain).ok_or_else(|| refuse("chain", "not a PEM certificate chain"))?;
    if ders.is_empty() {
        return Err(refuse("chain", "no -----BEGIN CERTIFICATE----- block"));
    }
    let infos: Vec<CertInfo> = ders
        .iter()
        .map(|d| info_from_der(d))
        .collect::<Option<_>>()
        .ok_or_else(|| refuse("chain", "a certificate in the chain could not be read"))?;
    let leaf = &infos[0];
    if leaf.not_after <= now {
        return Err(refuse("chain", "the certificate has expired"));
    }
    if leaf.not_before > now + 86_400 {
        return Err(refuse("chain", "the certificate is not valid yet"));
    }
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        ders.into_iter().map(rustls::pki_types::CertificateDer::from).collect();
    let k = rustls_pemfile::private_key(&mut key.as_bytes())
        .map_err(|_| refuse("key", "not a PEM private key"))?
        .ok_or_else(|| refuse("key", "no -----BEGIN PRIVATE KEY----- block"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|_| refuse("key", "TLS set-up failed"))?
        .with_no_client_auth()
        .with_single_cert(certs, k)
        .map_err(|e| refuse("key", format!("the key does not fit the certificate: {e}")))?;
    Ok(infos)
}

/// Installs a checked chain and key as `DATA/tls/{cert,key}.pem` (key first, each atomic).
pub fn install(data: &hermes_core::paths::DataDir, chain: &str, key: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(data.tls_dir())?;
    let chain = chain.replace("\r\n", "\n");
    let key = key.replace("\r\n", "\n");
    hermes_runtime::fs::write_atomic(&data.tls_key(), key.as_bytes(), 0o600)?;
    hermes_runtime::fs::write_atomic(&data.tls_cert(), chain.as_bytes(), 0o644)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn reads_the_self_signed_certificate_dates() {
        let now = std::time::SystemTime::now();
        let (pem, _) = hermes_runtime::tls::generate_self_signed("mail.example.org", now).unwrap();
        let v = validity_from_pem(&pem).unwrap();
        let now = chrono::Utc::now().timestamp();
        assert!(v.not_before <= now && v.not_before > now - 3 * 86_400, "{v:?}");
        let days = (v.not_after - now) / 86_400;
        assert!((823..=826).contains(&days), "{days}");
    }

    #[test]
    fn malformed_input_is_none_never_a_panic() {
        assert_eq!(validity_from_pem("nothing"), None);
        let (pem, _) = hermes_runtime::tls::generate_self_signed("x.org", std::time::SystemTime::now()).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        for cut in 0..der.len() {
            let _ = validity_from_der(&der[..cut]);
        }
        let mut bad = der.clone();
        for i in 0..bad.len().min(64) {
            bad[i] ^= 0xff;
            let _ = validity_from_der(&bad);
            bad[i] ^= 0xff;
        }
    }

    #[test]
    fn chain_details_and_upload_checks() {
        let now = chrono::Utc::now().timestamp();
        let (cert, key) =
            hermes_runtime::tls::generate_self_signed("mx.example.org", std::time::SystemTime::now()).unwrap();
        let infos = check_upload(&cert, &key, now).unwrap();
        assert_eq!(infos.len(), 1);
        assert!(infos[0].subject.contains("CN=mx.example.org"), "{:?}", infos[0]);
        assert!(infos[0].self_signed);
        assert!(
            infos[0].sans.contains(&"mx.example.org".to_string()) && infos[0].sans.contains(&"127.0.0.1".to_string())
        );
        let (_, other_key) =
            hermes_runtime::tls::generate_self_signed("b.example", std::time::SystemTime::now()).unwrap();
        assert_eq!(check_upload(&cert, &other_key, now).unwrap_err().field, "key");
        assert_eq!(check_upload("junk", &key, now).unwrap_err().field, "chain");
        assert_eq!(check_upload(&cert, "junk", now).unwrap_err().field, "key");
        assert!(check_upload(&cert, &key, now + 20 * 365 * 86_400).unwrap_err().message.contains("expired"));
        assert_eq!(check_upload(&"x".repeat(MAX_UPLOAD_PEM + 1), &key, now).unwrap_err().field, "chain");
    }

    #[test]
    fn time_formats() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x18, b"20380119031407Z"), Some(2_147_483_647));
        assert_eq!(time(0x17, b"7001010000Z"), None);
    }
}
