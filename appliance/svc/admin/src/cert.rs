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
    fn time_formats() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x18, b"20380119031407Z"), Some(2_147_483_647));
        assert_eq!(time(0x17, b"7001010000Z"), None);
    }
}
