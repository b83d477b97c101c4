//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN mechanisms, decoding only.
//!
//! What it is not: no password check (the router asks the directory), no other mechanisms
//! (CRAM-MD5 and friends need stored plaintext; SCRAM is a later issue).
//!
//! Invariants: responses are base64 of at most [`MAX_SASL_RESPONSE`] decoded bytes; an
//! authorization identity different from the authentication identity is refused (no proxy
//! authorisation); credentials never appear in `Debug` output.

use base64::Engine as _;
use std::fmt;

/// Largest decoded SASL response: an address (256) + password (1024) + separators, rounded up.
pub const MAX_SASL_RESPONSE: usize = 2048;

/// A username and password from AUTH. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Why a response was refused (answered 501 5.5.2 or 535 5.7.8 by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// Not base64, too long, or not UTF-8.
    Malformed,
    /// PLAIN with an authorization identity naming someone else.
    ProxyNotAllowed,
}

/// Decodes a base64 response line (`=` is the empty response, RFC 4954 §4).
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end_matches(' ');
    if line == "=" {
        return Ok(Vec::new());
    }
    if line.len() > MAX_SASL_RESPONSE * 4 / 3 + 4 {
        return Err(SaslError::Malformed);
    }
    base64::engine::general_purpose::STANDARD.decode(line).map_err(|_| SaslError::Malformed)
}

/// PLAIN: `authzid NUL authcid NUL passwd`.
pub fn plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed);
    };
    let authz = std::str::from_utf8(authz).map_err(|_| SaslError::Malformed)?;
    let username = std::str::from_utf8(authc).map_err(|_| SaslError::Malformed)?;
    let password = std::str::from_utf8(pass).map_err(|_| SaslError::Malformed)?;
    if username.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(username) {
        return Err(SaslError::ProxyNotAllowed);
    }
    Ok(Credentials { username: username.to_string(), password: password.to_string() })
}

/// Base64 for a server challenge.
pub fn encode_challenge(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn plain_rfc4616_examples() {
        // RFC 4616 §4: "\0tim\0tanstaaftanstaaf"
        let d = decode_response("AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap();
        let c = plain(&d).unwrap();
        assert_eq!(c.username, "tim");
        assert_eq!(c.password, "tanstaaftanstaaf");
        assert!(!format!("{c:?}").contains("tanstaaf"));
        // "Kurt\0tim\0..." names another identity: refused.
        assert_eq!(plain(b"Kurt\0tim\0pw"), Err(SaslError::ProxyNotAllowed));
        assert_eq!(plain(b"tim\0tim\0pw").unwrap().username, "tim");
        assert_eq!(plain(b"nonuls"), Err(SaslError::Malformed));
        assert_eq!(plain(b"\0\0pw"), Err(SaslError::Malformed));
        assert!(decode_response("!!!").is_err());
        assert_eq!(decode_response("=").unwrap(), b"");
    }
}
