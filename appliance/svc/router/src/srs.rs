//! SRS (Sender Rewriting Scheme, the libsrs2 `SRS0` form): when mail from a foreign sender is
//! forwarded by an alias to an external address, the envelope sender is rewritten to an
//! address in our domain so the next hop's SPF check passes and bounces come back to us; a
//! bounce to such an address is verified and routed back to the original sender.
//!
//! `SRS0=HHHH=TT=orig.domain=orig-local@srs.domain`: `TT` the day (base32, mod 1024), `HHHH`
//! a truncated HMAC-SHA256 (base64url) of `TT`, domain and local part under a secret key.
//!
//! What it is not: no SRS1 (re-forwarding an SRS address keeps its first form: we forward it
//! unchanged); no per-domain keys.
//!
//! Invariants: a reverse address verifies only with the right key, within
//! [`MAX_AGE_DAYS`]; comparison is case-insensitive (MTAs may lowercase local parts); the key
//! file `queue/srs.key` is created once (0600, 32 random bytes) and never replaced.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// How long a rewritten address can be bounced to (libsrs2's default is 21 days).
pub const MAX_AGE_DAYS: u32 = 21;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#[derive(Clone)]
pub struct Srs {
    key: Vec<u8>,
    domain: String,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srs").field("domain", &self.domain).finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn day_now() -> u32 {
    (chrono::Utc::now().timestamp().max(0) / 86_400) as u32
}

impl Srs {
    pub fn new(key: Vec<u8>, domain: impl Into<String>) -> Srs {
        Srs { key, domain: domain.into().to_ascii_lowercase() }
    }

    /// Loads `path` or creates it with a fresh random key.
    pub fn load_or_create(path: &std::path::Path, domain: &str) -> std::io::Result<Srs> {
        match std::fs::read(path) {
            Ok(k) if k.len() >= 16 => Ok(Srs::new(k, domain)),
            Ok(_) => Err(std::io::Error::other("SRS key file too short")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use rand::RngCore;
                let mut k = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut k);
                hermes_runtime::fs::write_atomic(path, &k, 0o600)?;
                Ok(Srs::new(k, domain))
            }
            Err(e) => Err(e),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn hash(&self, tt: &str, domain: &str, local: &str) -> String {
        let msg = format!("{}={}={}", tt, domain.to_ascii_lowercase(), local.to_ascii_lowercase());
        let h = hmac(&self.key, msg.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h[..3])
    }

    fn timestamp(day: u32) -> String {
        let d = day % 1024;
        [BASE32[(d >> 5) as usize] as char, BASE32[(d & 31) as usize] as char].iter().collect()
    }

    /// The forward rewrite of `sender` (`local@domain`); an SRS0 address is returned as is.
    pub fn forward(&self, sender: &str) -> Option<String> {
        let (local, domain) = sender.rsplit_once('@')?;
        if local.len() >= 5 && local[..5].eq_ignore_ascii_case("SRS0=") {
            return Some(sender.to_string());
        }
        let tt = Self::timestamp(day_now());
        let hh = self.hash(&tt, domain, local);
        let out = format!("SRS0={hh}={tt}={domain}={local}@{}", self.domain);
        // RFC 5321: the local part must stay within 64 octets; if not, do not rewrite.
        (out.rsplit_once('@').map(|(l, _)| l.len()).unwrap_or(usize::MAX) <= 64).then_some(out)
    }

    /// The original sender of an SRS0 address at our domain, if it verifies.
    pub fn reverse(&self, address: &str) -> Option<String> {
        let (local, domain) = address.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.domain) || local.len() < 5 || !local[..5].eq_ignore_ascii_case("SRS0=") {
            return None;
        }
        let mut parts = local[5..].splitn(4, '=');
        let (hh, tt, odomain, olocal) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if tt.len() != 2 || odomain.is_empty() || olocal.is_empty() {
            return None;
        }
        if !self.hash(&tt.to_ascii_uppercase(), odomain, olocal).eq_ignore_ascii_case(hh) {
            return None;
        }
        let t = tt.to_ascii_uppercase();
        let val = |c: u8| BASE32.iter().position(|&b| b == c).map(|p| p as u32);
        let stamp = val(t.as_bytes()[0])? << 5 | val(t.as_bytes()[1])?;
        let age = (day_now() % 1024 + 1024 - stamp) % 1024;
        (age <= MAX_AGE_DAYS).then(|| format!("{olocal}@{odomain}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let s = Srs::new(b"0123456789abcdef0123456789abcdef".to_vec(), "Hub.Example.org");
        let f = s.forward("Alice@Sender.example").unwrap();
        assert!(f.starts_with("SRS0=") && f.ends_with("@hub.example.org"), "{f}");
        assert_eq!(s.reverse(&f).unwrap(), "Alice@Sender.example");
        assert_eq!(s.reverse(&f.to_ascii_lowercase()).unwrap().to_ascii_lowercase(), "alice@sender.example");
        // Wrong key, tampered target, other domain: refused.
        let other = Srs::new(b"another key, another key, another".to_vec(), "hub.example.org");
        assert!(other.reverse(&f).is_none());
        assert!(s.reverse(&f.replace("Sender.example", "victim.example")).is_none());
        assert!(s.reverse(&f.replace("hub.example.org", "x.org")).is_none());
        assert!(s.reverse("plain@hub.example.org").is_none());
        assert_eq!(s.forward(&f).unwrap(), f, "not rewritten twice");
        // RFC 4231 test case 2 for the HMAC.
        assert_eq!(
            hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
