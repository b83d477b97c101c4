//! Signed update bundles: what `cargo xtask image` writes as `target/image/hermes-VERSION.bundle`
//! and what `hermes firmware install` accepts.
//!
//! ```text
//! offset  size        what
//! 0       8           magic "HERMESUP"
//! 8       2           format version, little-endian (1)
//! 10      4           metadata length M, little-endian (at most MAX_METADATA)
//! 14      M           metadata: JSON {"version", "build_time", "payload", "payload_len",
//!                     "payload_sha256", "key_id"}
//! 14+M    N           the payload (a unified kernel image), N = payload_len (at most MAX_PAYLOAD)
//! 14+M+N  64          ed25519 signature over CONTEXT || bytes 0..14+M || sha256(payload)
//! ```
//!
//! The header (the first 14 + M bytes) gives the bundle's whole length, so a bundle can be read
//! from a raw block device whose size is rounded up to sectors ([`total_len`]).
//!
//! What it is not: a key store or an installer. Keys are 32-byte ed25519 seeds and public keys
//! in hex; installing a verified payload into a boot slot is `hermes_svc_init::firmware`'s.
//!
//! Invariants: [`verify`] is a pure function over bytes: every size is bounded before anything is
//! allocated or hashed, and every malformed, truncated, unsigned, corrupt or foreign-key bundle
//! is refused with a [`BundleError`] that says what is wrong (never a panic). Nothing in a
//! bundle is trusted before its signature is checked against the caller's key; [`create`] of the
//! same inputs gives the same bytes (ed25519 signatures are deterministic).

use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

/// The first bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"HERMESUP";
/// The one format this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Magic, format version and metadata length.
pub const PREFIX_LEN: usize = 14;
/// Longest metadata (it is a few hundred bytes).
pub const MAX_METADATA: usize = 4096;
/// Largest payload: a UKI is ~20 MiB; the ESP holds two of them.
pub const MAX_PAYLOAD: u64 = 256 * 1024 * 1024;
/// An ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest bundle [`total_len`] accepts.
pub const MAX_BUNDLE: u64 = (PREFIX_LEN + MAX_METADATA + SIGNATURE_LEN) as u64 + MAX_PAYLOAD;
/// Domain separation: a signature over a bundle is never valid for anything else.
const CONTEXT: &[u8] = b"hermes-update-bundle-v1\0";
/// The one payload kind so far.
pub const PAYLOAD_UKI: &str = "uki";
/// Longest version string (it becomes part of a FAT file name on the ESP).
pub const MAX_VERSION_LEN: usize = 64;

/// Why a bundle or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not an update bundle: {0} bytes is shorter than a bundle header")]
    TooShort(usize),
    #[error("not an update bundle (bad magic)")]
    BadMagic,
    #[error("unsupported bundle format {0} (this firmware reads format {FORMAT_VERSION})")]
    UnsupportedFormat(u16),
    #[error("bundle metadata of {0} bytes is longer than the limit of {MAX_METADATA}")]
    MetadataTooLong(usize),
    #[error("bundle metadata is invalid: {0}")]
    BadMetadata(String),
    #[error(
        "bundle version `{0}` is invalid (1 to {MAX_VERSION_LEN} of A-Z a-z 0-9 . _ ~ ^ -, starting with a letter or digit)"
    )]
    BadVersion(String),
    #[error("bundle payload of {0} bytes is larger than the limit of {MAX_PAYLOAD}")]
    PayloadTooLarge(u64),
    #[error("bundle is truncated: {got} of {expected} bytes")]
    Truncated { expected: u64, got: u64 },
    #[error("bundle has {0} bytes after its signature")]
    TrailingBytes(u64),
    #[error("bundle payload is corrupt (its sha256 does not match the signed header)")]
    DigestMismatch,
    #[error("bundle is signed by key {bundle_key}, not by this firmware's key {our_key}")]
    WrongKey { bundle_key: String, our_key: String },
    #[error("bundle signature is invalid (corrupt or not signed with this firmware's key)")]
    BadSignature,
    #[error("invalid key: {0}")]
    BadKey(String),
}

/// The signed metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The firmware version (the UKI's `.osrel` `VERSION_ID`, and its slot file name).
    pub version: String,
    /// Unix seconds: `SOURCE_DATE_EPOCH` of the build.
    pub build_time: u64,
    /// What the payload is: [`PAYLOAD_UKI`].
    pub payload: String,
    pub payload_len: u64,
    /// Lowercase hex.
    pub payload_sha256: String,
    /// [`key_id`] of the signing key (for the error message when keys differ).
    pub key_id: String,
}

/// An ed25519 public key that bundles are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// From 64 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<PublicKey, BundleError> {
        let bytes = hex32(text)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| BundleError::BadKey("not an ed25519 public key".into()))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// A short fingerprint: the first 8 bytes of sha256(key), in hex.
    pub fn id(&self) -> String {
        key_id(self.0.as_bytes())
    }
}

/// An ed25519 signing key (build host only).
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().id())
    }
}

impl SigningKey {
    /// From a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// From 64 hex digits (a key file's content; surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<SigningKey, BundleError> {
        hex32(text).map(SigningKey::from_seed)
    }

    /// The seed in hex, for the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

fn hex32(text: &str) -> Result<[u8; 32], BundleError> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(BundleError::BadKey(format!("expected 64 hex digits, got {} characters", text.len())));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| BundleError::BadKey(format!("not hex: {e}")))?;
    Ok(out)
}

/// The first 8 bytes of sha256(public key), hex.
pub fn key_id(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// Whether `v` may be a firmware version: it becomes `hermes-V+3.efi` on the ESP, so no `+`,
/// no `/`, nothing FAT or systemd-boot's counter parsing would trip on.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VERSION_LEN
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~^-".contains(&b))
}

/// Compares versions the way systemd-boot orders entries for the versions we produce: runs of
/// digits compare as numbers, runs of letters as text, a number is newer than letters, `~`
/// marks a pre-release (older than the same version without it), other separators only
/// separate (`0.1.10` > `0.1.9` > `0.1.9~rc1`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    #[derive(PartialEq, Eq)]
    enum Tok<'a> {
        Tilde,
        Num(&'a str),
        Alpha(&'a str),
    }
    fn tokens(s: &str) -> Vec<Tok<'_>> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'~' {
                out.push(Tok::Tilde);
                i += 1;
            } else if c.is_ascii_digit() {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                out.push(Tok::Num(s[start..i].trim_start_matches('0')));
            } else if c.is_ascii_alphabetic() {
                let start = i;
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                out.push(Tok::Alpha(&s[start..i]));
            } else {
                i += 1;
            }
        }
        out
    }
    let (ta, tb) = (tokens(a), tokens(b));
    let mut i = 0;
    loop {
        match (ta.get(i), tb.get(i)) {
            (None, None) => return Ordering::Equal,
            (Some(Tok::Tilde), Some(Tok::Tilde)) => {}
            (Some(Tok::Tilde), _) => return Ordering::Less,
            (_, Some(Tok::Tilde)) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(Tok::Num(x)), Some(Tok::Num(y))) => {
                let o = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
                if o != Ordering::Equal {
                    return o;
                }
            }
            (Some(Tok::Num(_)), Some(Tok::Alpha(_))) => return Ordering::Greater,
            (Some(Tok::Alpha(_)), Some(Tok::Num(_))) => return Ordering::Less,
            (Some(Tok::Alpha(x)), Some(Tok::Alpha(y))) => {
                let o = x.cmp(y);
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
        i += 1;
    }
}

/// Writes a signed bundle around `payload`.
pub fn create(key: &SigningKey, version: &str, build_time: u64, payload: &[u8]) -> Result<Vec<u8>, BundleError> {
    if !valid_version(version) {
        return Err(BundleError::BadVersion(version.to_string()));
    }
    if payload.len() as u64 > MAX_PAYLOAD {
        return Err(BundleError::PayloadTooLarge(payload.len() as u64));
    }
    let digest: [u8; 32] = Sha256::digest(payload).into();
    let meta = Metadata {
        version: version.to_string(),
        build_time,
        payload: PAYLOAD_UKI.to_string(),
        payload_len: payload.len() as u64,
        payload_sha256: hex::encode(digest),
        key_id: key.public().id(),
    };
    let meta = serde_json::to_vec(&meta).map_err(|e| BundleError::BadMetadata(e.to_string()))?;
    if meta.len() > MAX_METADATA {
        return Err(BundleError::MetadataTooLong(meta.len()));
    }
    let mut out = Vec::with_capacity(PREFIX_LEN + meta.len() + payload.len() + SIGNATURE_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    let signature = key.0.sign(&signed_message(&out, &digest));
    out.extend_from_slice(payload);
    out.extend_from_slice(&signature.to_bytes());
    Ok(out)
}

fn signed_message(header: &[u8], digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + header.len() + 32);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(header);
    m.extend_from_slice(digest);
    m
}

/// The length of the header (prefix and metadata) from the first [`PREFIX_LEN`] bytes.
pub fn header_len(prefix: &[u8]) -> Result<usize, BundleError> {
    if prefix.len() < PREFIX_LEN {
        return Err(BundleError::TooShort(prefix.len()));
    }
    if prefix[..8] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let format = u16::from_le_bytes([prefix[8], prefix[9]]);
    if format != FORMAT_VERSION {
        return Err(BundleError::UnsupportedFormat(format));
    }
    let meta_len = u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]) as usize;
    if meta_len > MAX_METADATA {
        return Err(BundleError::MetadataTooLong(meta_len));
    }
    Ok(PREFIX_LEN + meta_len)
}

/// The metadata of a header (unverified: for sizes only, until [`verify`]).
pub fn parse_header(header: &[u8]) -> Result<Metadata, BundleError> {
    let len = header_len(header)?;
    let meta_bytes =
        header.get(PREFIX_LEN..len).ok_or(BundleError::Truncated { expected: len as u64, got: header.len() as u64 })?;
    let meta: Metadata = serde_json::from_slice(meta_bytes).map_err(|e| BundleError::BadMetadata(e.to_string()))?;
    if meta.payload_len > MAX_PAYLOAD {
        return Err(BundleError::PayloadTooLarge(meta.payload_len));
    }
    Ok(meta)
}

/// The whole bundle's length from its header (at least [`header_len`] bytes of it): for reading
/// a bundle from a block device, which is longer than the bundle.
pub fn total_len(header: &[u8]) -> Result<u64, BundleError> {
    let len = header_len(header)?;
    let meta = parse_header(header)?;
    Ok(len as u64 + meta.payload_len + SIGNATURE_LEN as u64)
}

/// A bundle whose signature and digest were checked.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    pub meta: Metadata,
    pub payload: &'a [u8],
}

/// Checks `bytes` (exactly one bundle) against `key`: structure, sizes, metadata, signature,
/// payload digest. Pure; bounded by the sizes in the header, which are bounded themselves.
pub fn verify<'a>(bytes: &'a [u8], key: &PublicKey) -> Result<Verified<'a>, BundleError> {
    let hlen = header_len(bytes)?;
    if bytes.len() < hlen {
        return Err(BundleError::Truncated { expected: hlen as u64, got: bytes.len() as u64 });
    }
    let header = &bytes[..hlen];
    let meta = parse_header(header)?;
    let total = hlen as u64 + meta.payload_len + SIGNATURE_LEN as u64;
    let got = bytes.len() as u64;
    if got < total {
        return Err(BundleError::Truncated { expected: total, got });
    }
    if got > total {
        return Err(BundleError::TrailingBytes(got - total));
    }
    // Lengths are bounded above, so these fit in usize.
    let payload_end = hlen + meta.payload_len as usize;
    let payload = &bytes[hlen..payload_end];
    let mut sig = [0u8; SIGNATURE_LEN];
    sig.copy_from_slice(&bytes[payload_end..]);
    let digest: [u8; 32] = Sha256::digest(payload).into();
    let signature = ed25519_dalek::Signature::from_bytes(&sig);
    if key.0.verify_strict(&signed_message(header, &digest), &signature).is_err() {
        // The header is now known to be unsigned by us; say why as precisely as it allows.
        if meta.key_id != key.id() {
            return Err(BundleError::WrongKey { bundle_key: meta.key_id, our_key: key.id() });
        }
        if meta.payload_sha256 != hex::encode(digest) {
            return Err(BundleError::DigestMismatch);
        }
        return Err(BundleError::BadSignature);
    }
    // Signed: the metadata is ours. Still check what the installer relies on.
    if meta.payload_sha256 != hex::encode(digest) {
        return Err(BundleError::DigestMismatch);
    }
    if !valid_version(&meta.version) {
        return Err(BundleError::BadVersion(meta.version));
    }
    if meta.payload != PAYLOAD_UKI {
        return Err(BundleError::BadMetadata(format!("unknown payload kind `{}`", meta.payload)));
    }
    Ok(Verified { meta, payload })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed([n; 32])
    }

    fn payload() -> Vec<u8> {
        (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn round_trip_and_determinism() {
        let k = key(1);
        let b = create(&k, "0.2.0", 1_704_067_200, &payload()).unwrap();
        assert_eq!(b, create(&k, "0.2.0", 1_704_067_200, &payload()).unwrap());
        let v = verify(&b, &k.public()).unwrap();
        assert_eq!(v.meta.version, "0.2.0");
        assert_eq!(v.meta.build_time, 1_704_067_200);
        assert_eq!(v.payload, payload().as_slice());
        assert_eq!(total_len(&b[..header_len(&b).unwrap()]).unwrap(), b.len() as u64);
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let k = key(9);
        let k2 = SigningKey::from_hex(&format!("  {}\n", k.to_hex())).unwrap();
        assert_eq!(k.public(), k2.public());
        assert_eq!(PublicKey::from_hex(&k.public().to_hex()).unwrap(), k.public());
        assert!(matches!(PublicKey::from_hex("abcd"), Err(BundleError::BadKey(_))));
        assert!(matches!(SigningKey::from_hex(&"zz".repeat(32)), Err(BundleError::BadKey(_))));
    }

    #[test]
    fn wrong_key_is_named() {
        let b = create(&key(1), "0.2.0", 0, &payload()).unwrap();
        let err = verify(&b, &key(2).public()).unwrap_err();
        assert!(matches!(err, BundleError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains(&key(1).public().id()), "{err}");
    }

    #[test]
    fn structural_refusals() {
        let k = key(1);
        let b = create(&k, "0.2.0", 0, &payload()).unwrap();
        let pk = k.public();
        assert_eq!(verify(&b[..5], &pk).unwrap_err(), BundleError::TooShort(5));
        let mut bad = b.clone();
        bad[0] = b'X';
        assert_eq!(verify(&bad, &pk).unwrap_err(), BundleError::BadMagic);
        let mut bad = b.clone();
        bad[8] = 2;
        assert_eq!(verify(&bad, &pk).unwrap_err(), BundleError::UnsupportedFormat(2));
        let mut bad = b.clone();
        bad[10..14].copy_from_slice(&(1_000_000u32).to_le_bytes());
        assert_eq!(verify(&bad, &pk).unwrap_err(), BundleError::MetadataTooLong(1_000_000));
        // Truncated anywhere: header, payload, signature.
        for cut in [20, 200, b.len() / 2, b.len() - 1] {
            let err = verify(&b[..cut], &pk).unwrap_err();
            assert!(matches!(err, BundleError::Truncated { .. } | BundleError::BadMetadata(_)), "cut {cut}: {err}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(verify(&long, &pk).unwrap_err(), BundleError::TrailingBytes(1));
        // Unsigned: the signature zeroed.
        let mut unsigned = b.clone();
        let n = unsigned.len();
        unsigned[n - SIGNATURE_LEN..].fill(0);
        assert_eq!(verify(&unsigned, &pk).unwrap_err(), BundleError::BadSignature);
        // A payload byte flipped.
        let mut corrupt = b.clone();
        let hlen = header_len(&b).unwrap();
        corrupt[hlen + 100] ^= 0x40;
        assert_eq!(verify(&corrupt, &pk).unwrap_err(), BundleError::DigestMismatch);
    }

    #[test]
    fn a_resigned_header_with_a_changed_version_fails() {
        // Someone edits the version in the metadata (same length) without the key.
        let k = key(1);
        let b = create(&k, "0.2.0", 0, &payload()).unwrap();
        let at = b.windows(5).position(|w| w == b"0.2.0").unwrap();
        let mut bad = b.clone();
        bad[at..at + 5].copy_from_slice(b"9.2.0");
        assert_eq!(verify(&bad, &k.public()).unwrap_err(), BundleError::BadSignature);
    }

    #[test]
    fn oversized_payload_in_header_is_refused_before_reading() {
        let k = key(1);
        let meta = Metadata {
            version: "1".into(),
            build_time: 0,
            payload: PAYLOAD_UKI.into(),
            payload_len: MAX_PAYLOAD + 1,
            payload_sha256: String::new(),
            key_id: k.public().id(),
        };
        let meta = serde_json::to_vec(&meta).unwrap();
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        b.extend_from_slice(&meta);
        assert_eq!(total_len(&b).unwrap_err(), BundleError::PayloadTooLarge(MAX_PAYLOAD + 1));
        assert_eq!(verify(&b, &k.public()).unwrap_err(), BundleError::PayloadTooLarge(MAX_PAYLOAD + 1));
    }

    #[test]
    fn bad_versions_are_refused_at_creation() {
        for v in ["", "1+2", "a/b", "-1", "1 2", &"9".repeat(65)] {
            assert!(matches!(create(&key(1), v, 0, b"x"), Err(BundleError::BadVersion(_))), "{v:?}");
        }
    }

    /// Random corruptions (a small deterministic PRNG): flipped bits, overwritten bytes,
    /// truncations, insertions. None verifies, none panics.
    #[test]
    fn random_corruptions_never_verify() {
        let k = key(3);
        let pk = k.public();
        let good = create(&k, "1.0.0", 0, &payload()[..3000]).unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut b = good.clone();
            match rnd() % 4 {
                0 => {
                    let i = (rnd() % b.len() as u64) as usize;
                    b[i] ^= 1 << (rnd() % 8);
                }
                1 => {
                    for _ in 0..1 + rnd() % 8 {
                        let i = (rnd() % b.len() as u64) as usize;
                        let old = b[i];
                        b[i] = old.wrapping_add(1 + (rnd() % 255) as u8);
                    }
                }
                2 => {
                    let n = (rnd() % b.len() as u64) as usize;
                    b.truncate(n);
                }
                _ => {
                    let i = (rnd() % b.len() as u64) as usize;
                    b.insert(i, rnd() as u8);
                }
            }
            assert!(verify(&b, &pk).is_err(), "round {round}: a corrupted bundle verified");
            let _ = total_len(&b);
        }
        assert!(verify(&good, &pk).is_ok());
    }

    #[test]
    fn versions_order_like_systemd_boot() {
        assert_eq!(version_cmp("0.1.10", "0.1.9"), Ordering::Greater);
        assert_eq!(version_cmp("0.1.9~rc1", "0.1.9"), Ordering::Less);
        assert_eq!(version_cmp("0.2", "0.1.99"), Ordering::Greater);
        assert_eq!(version_cmp("1.0", "1.0"), Ordering::Equal);
        assert_eq!(version_cmp("1.0.1", "1.0"), Ordering::Greater);
        assert_eq!(version_cmp("1.0a", "1.0"), Ordering::Greater);
        assert_eq!(version_cmp("007", "7"), Ordering::Equal);
        assert_eq!(version_cmp("99999999999999999999999", "1"), Ordering::Greater);
    }
}
