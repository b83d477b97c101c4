//! Admin accounts, the first-boot setup token and API tokens, in `DATA/admin/`.
//!
//! ```text
//! DATA/admin/                      0700
//!   accounts/<name>.json           one AdminAccount (argon2id PHC hash), 0600
//!   setup-token                    SHA-256 of the one-time setup token + its issue time, 0600
//!   api-tokens.json                API tokens (SHA-256 of each token, never the token), 0600
//!   audit.log                      see `audit`
//! ```
//!
//! What it is not: the mail directory. Admins are not mail users, cannot log in over IMAP, and
//! mail users cannot log in here; the two never share a file.
//!
//! Invariants:
//! - Passwords are argon2id (hashed by `hermes_core::directory::hash_password`, the same
//!   parameters as mail accounts); an unknown admin name costs the same verification as a known
//!   one, so timing does not reveal which names exist.
//! - The setup token and API tokens are 256-bit random values stored only as SHA-256 digests
//!   (a high-entropy token needs no slow hash); comparisons are constant-time.
//! - The setup token works only while no admin exists, at most [`SETUP_TOKEN_TTL_SECS`] after it
//!   was issued, and once: creating the first admin deletes it, under the same lock that checks
//!   that no admin exists, so two racing setups cannot both succeed.
//! - Every file is written atomically with mode 0600 (`hermes_runtime::fs::write_atomic`).

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Mutex;

/// A setup token older than this is refused: `hermes up` issues a fresh one at every start,
/// so a token copied from an old console log is worthless after a day.
pub const SETUP_TOKEN_TTL_SECS: i64 = 24 * 60 * 60;
/// Longest admin name: enough for `firstname.lastname`, short enough for a file name.
pub const MAX_ADMIN_NAME: usize = 64;
/// Shortest admin password: NIST SP 800-63B's minimum for a memorised secret chosen by the user
/// is 8; an appliance's root of trust deserves more.
pub const MIN_ADMIN_PASSWORD: usize = 12;
/// Longest password accepted (bounds the argon2 input, as the CLI does).
pub const MAX_PASSWORD: usize = 1024;
/// API tokens kept at most: each is a line in one file read at every API request.
pub const MAX_API_TOKENS: usize = 100;
/// Longest record file read: real ones are a few hundred bytes.
const MAX_RECORD_BYTES: u64 = 256 * 1024;
/// argon2id hash verified for unknown names (a real hash of a random password).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0VKc2t2H7Ye1i4PZ3E3cq3Jb0bQ9oIqKdD3G3lCw0pI";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin names are 1-64 characters: lowercase letters, digits, '.', '_' and '-', not starting with '.'")]
    InvalidName,
    #[error("passwords must be {MIN_ADMIN_PASSWORD} to {MAX_PASSWORD} bytes, without control characters")]
    WeakPassword,
    #[error("an admin named {0} already exists")]
    Exists(String),
    #[error("no admin named {0}")]
    NoSuchAdmin(String),
    #[error("the setup token is wrong, expired, or already used")]
    BadSetupToken,
    #[error("setup is already done: sign in instead")]
    SetupDone,
    #[error("too many API tokens (at most {MAX_API_TOKENS}); revoke some first")]
    TooManyTokens,
    #[error("no such API token")]
    NoSuchToken,
    #[error("the token name must be 1-64 printable characters")]
    InvalidTokenName,
    #[error("admin storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("admin storage: corrupt record {0}")]
    Corrupt(String),
    #[error("password hashing failed")]
    Hash,
}

/// One admin account as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdminAccount {
    pub name: String,
    pub password_hash: Secret<String>,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SetupTokenRecord {
    sha256: String,
    issued: i64,
}

/// One API token as stored (the token itself is shown once, at creation, and never stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiToken {
    /// Public identifier (the first bytes of the token's digest), for listing and revoking.
    pub id: String,
    pub name: String,
    /// The admin who created it; requests made with it are audited as this admin.
    pub admin: String,
    pub created: i64,
    sha256: String,
}

/// `DATA/admin/`. All writes go through one process-wide mutex (only the admin service writes
/// here, plus `hermes up` issuing a setup token before the service starts).
#[derive(Debug)]
pub struct AdminStore {
    root: PathBuf,
    write: Mutex<()>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Constant-time equality of two byte strings (length is not secret here: digests).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an admin name (the same rule as the file name it becomes).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ADMIN_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Checks a new admin password's length and characters.
pub fn check_password(pw: &str) -> Result<(), AdminError> {
    if pw.len() < MIN_ADMIN_PASSWORD || pw.len() > MAX_PASSWORD || pw.chars().any(char::is_control) {
        return Err(AdminError::WeakPassword);
    }
    Ok(())
}

fn read_bounded(path: &std::path::Path) -> Result<Option<Vec<u8>>, AdminError> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut buf = Vec::new();
    f.take(MAX_RECORD_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_RECORD_BYTES {
        return Err(AdminError::Corrupt(path.display().to_string()));
    }
    Ok(Some(buf))
}

fn private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

impl AdminStore {
    /// Opens (creating, mode 0700) `DATA/admin/`.
    pub fn open(data: &DataDir) -> Result<AdminStore, AdminError> {
        let root = admin_dir(data);
        private_dir(&root.join("accounts"))?;
        Ok(AdminStore { root, write: Mutex::new(()) })
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn account_path(&self, name: &str) -> PathBuf {
        self.root.join("accounts").join(format!("{name}.json"))
    }

    /// Whether at least one admin account exists.
    pub fn has_admins(&self) -> Result<bool, AdminError> {
        Ok(!self.list()?.is_empty())
    }

    /// Every admin name, sorted.
    pub fn list(&self) -> Result<Vec<String>, AdminError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(self.root.join("accounts")) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str().and_then(|n| n.strip_suffix(".json"))
                && valid_name(name)
            {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Option<AdminAccount>, AdminError> {
        if !valid_name(name) {
            return Ok(None);
        }
        let Some(bytes) = read_bounded(&self.account_path(name))? else { return Ok(None) };
        let a: AdminAccount = serde_json::from_slice(&bytes).map_err(|_| AdminError::Corrupt(name.to_string()))?;
        if a.name != name {
            return Err(AdminError::Corrupt(name.to_string()));
        }
        Ok(Some(a))
    }

    fn write_account(&self, a: &AdminAccount) -> Result<(), AdminError> {
        let json = serde_json::to_vec_pretty(a).map_err(std::io::Error::other)?;
        hermes_runtime::fs::write_atomic(&self.account_path(&a.name), &json, 0o600)?;
        Ok(())
    }

    /// Creates an admin (another admin is signed in and has re-authenticated). Blocking (argon2).
    pub fn create(&self, name: &str, password: &Secret<String>) -> Result<(), AdminError> {
        if !valid_name(name) {
            return Err(AdminError::InvalidName);
        }
        check_password(password.expose())?;
        let hash = hermes_core::directory::hash_password(password).map_err(|_| AdminError::Hash)?;
        let _g = self.lock();
        if self.read(name)?.is_some() {
            return Err(AdminError::Exists(name.to_string()));
        }
        self.write_account(&AdminAccount { name: name.to_string(), password_hash: hash, created: now() })
    }

    /// Replaces an admin's password. Blocking (argon2).
    pub fn set_password(&self, name: &str, password: &Secret<String>) -> Result<(), AdminError> {
        check_password(password.expose())?;
        let hash = hermes_core::directory::hash_password(password).map_err(|_| AdminError::Hash)?;
        let _g = self.lock();
        let mut a = self.read(name)?.ok_or_else(|| AdminError::NoSuchAdmin(name.to_string()))?;
        a.password_hash = hash;
        self.write_account(&a)
    }

    /// Checks an admin's password. Blocking: one argon2 verification, known name or not.
    pub fn verify(&self, name: &str, password: &Secret<String>) -> Result<bool, AdminError> {
        let account = self.read(name)?;
        let pw = password.expose().as_bytes();
        let phc = account.as_ref().map_or(DUMMY_HASH, |a| a.password_hash.expose().as_str());
        let ok = match PasswordHash::new(phc) {
            Ok(h) => Argon2::default().verify_password(pw, &h).is_ok(),
            Err(_) => false,
        };
        Ok(ok && account.is_some() && !pw.is_empty())
    }

    /// Issues a fresh setup token if no admin exists (replacing any earlier one) and returns
    /// it; `None` when setup is done. Called by `hermes up` before it starts the services.
    pub fn issue_setup_token(&self) -> Result<Option<String>, AdminError> {
        let _g = self.lock();
        if self.has_admins()? {
            let _ = std::fs::remove_file(self.root.join("setup-token"));
            return Ok(None);
        }
        let token = random_token();
        let rec = SetupTokenRecord { sha256: sha256_hex(&token), issued: now() };
        let json = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
        hermes_runtime::fs::write_atomic(&self.root.join("setup-token"), &json, 0o600)?;
        Ok(Some(token))
    }

    /// Whether a usable setup token is on file (setup pending and possible).
    pub fn setup_pending(&self) -> Result<bool, AdminError> {
        Ok(!self.has_admins()? && self.setup_record()?.is_some_and(|r| now() - r.issued <= SETUP_TOKEN_TTL_SECS))
    }

    fn setup_record(&self) -> Result<Option<SetupTokenRecord>, AdminError> {
        let Some(bytes) = read_bounded(&self.root.join("setup-token"))? else { return Ok(None) };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// First-boot setup: with the one-time `token`, creates the first admin and burns the token.
    /// Blocking (argon2).
    pub fn complete_setup(
        &self,
        token: &Secret<String>,
        name: &str,
        password: &Secret<String>,
    ) -> Result<(), AdminError> {
        if !valid_name(name) {
            return Err(AdminError::InvalidName);
        }
        check_password(password.expose())?;
        // Hash before taking the lock; argon2 is the slow part.
        let hash = hermes_core::directory::hash_password(password).map_err(|_| AdminError::Hash)?;
        let _g = self.lock();
        if self.has_admins()? {
            return Err(AdminError::SetupDone);
        }
        let rec = self.setup_record()?.ok_or(AdminError::BadSetupToken)?;
        let given = sha256_hex(token.expose().trim());
        if !ct_eq(given.as_bytes(), rec.sha256.as_bytes()) || now() - rec.issued > SETUP_TOKEN_TTL_SECS {
            return Err(AdminError::BadSetupToken);
        }
        self.write_account(&AdminAccount { name: name.to_string(), password_hash: hash, created: now() })?;
        std::fs::remove_file(self.root.join("setup-token"))?;
        Ok(())
    }

    fn tokens_path(&self) -> PathBuf {
        self.root.join("api-tokens.json")
    }

    fn read_tokens(&self) -> Result<Vec<ApiToken>, AdminError> {
        match read_bounded(&self.tokens_path())? {
            Some(b) => serde_json::from_slice(&b).map_err(|_| AdminError::Corrupt("api-tokens.json".into())),
            None => Ok(Vec::new()),
        }
    }

    fn write_tokens(&self, tokens: &[ApiToken]) -> Result<(), AdminError> {
        let json = serde_json::to_vec_pretty(tokens).map_err(std::io::Error::other)?;
        hermes_runtime::fs::write_atomic(&self.tokens_path(), &json, 0o600)?;
        Ok(())
    }

    /// The API tokens on file (digests only).
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, AdminError> {
        self.read_tokens()
    }

    /// Creates an API token for `admin`; returns (its record, the token, shown once).
    pub fn create_api_token(&self, admin: &str, name: &str) -> Result<(ApiToken, Secret<String>), AdminError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AdminError::InvalidTokenName);
        }
        let _g = self.lock();
        let mut tokens = self.read_tokens()?;
        if tokens.len() >= MAX_API_TOKENS {
            return Err(AdminError::TooManyTokens);
        }
        // The `hat_` prefix makes a leaked token recognisable to secret scanners.
        let token = format!("hat_{}", random_token());
        let digest = sha256_hex(&token);
        let record = ApiToken {
            id: digest[..16].to_string(),
            name: name.to_string(),
            admin: admin.to_string(),
            created: now(),
            sha256: digest,
        };
        tokens.push(record.clone());
        self.write_tokens(&tokens)?;
        Ok((record, Secret::new(token)))
    }

    /// Revokes the token with public id `id`.
    pub fn revoke_api_token(&self, id: &str) -> Result<ApiToken, AdminError> {
        let _g = self.lock();
        let mut tokens = self.read_tokens()?;
        let pos = tokens.iter().position(|t| t.id == id).ok_or(AdminError::NoSuchToken)?;
        let removed = tokens.remove(pos);
        self.write_tokens(&tokens)?;
        Ok(removed)
    }

    /// The token matching a bearer credential, if any (and its admin still exists).
    pub fn check_api_token(&self, bearer: &str) -> Result<Option<ApiToken>, AdminError> {
        let digest = sha256_hex(bearer.trim());
        let mut found = None;
        for t in self.read_tokens()? {
            // Compare every entry: the time taken does not depend on which one matches.
            if ct_eq(t.sha256.as_bytes(), digest.as_bytes()) {
                found = Some(t);
            }
        }
        match found {
            Some(t) if self.read(&t.admin)?.is_some() => Ok(Some(t)),
            _ => Ok(None),
        }
    }
}

/// `DATA/admin/`.
pub fn admin_dir(data: &DataDir) -> PathBuf {
    data.root().join("admin")
}

/// For `hermes up`: issues a setup token if no admin exists yet; `None` otherwise.
pub fn issue_setup_token(data: &DataDir) -> Result<Option<String>, AdminError> {
    AdminStore::open(data)?.issue_setup_token()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, AdminStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = AdminStore::open(&DataDir::new(dir.path())).unwrap();
        (dir, s)
    }

    fn s(x: &str) -> Secret<String> {
        Secret::new(x.to_string())
    }

    #[test]
    fn setup_token_is_one_time_and_only_before_the_first_admin() {
        let (_d, st) = store();
        assert!(!st.setup_pending().unwrap());
        let token = st.issue_setup_token().unwrap().unwrap();
        assert!(st.setup_pending().unwrap());
        assert!(matches!(
            st.complete_setup(&s("wrong"), "root", &s("a-long-password")),
            Err(AdminError::BadSetupToken)
        ));
        assert!(matches!(st.complete_setup(&s(&token), "root", &s("short")), Err(AdminError::WeakPassword)));
        st.complete_setup(&s(&token), "root", &s("a-long-password")).unwrap();
        assert!(matches!(st.complete_setup(&s(&token), "other", &s("a-long-password")), Err(AdminError::SetupDone)));
        assert!(st.issue_setup_token().unwrap().is_none(), "no token once an admin exists");
        assert!(st.verify("root", &s("a-long-password")).unwrap());
        assert!(!st.verify("root", &s("a-long-passwore")).unwrap());
        assert!(!st.verify("nobody", &s("a-long-password")).unwrap());
        assert!(!st.verify("../x", &s("a-long-password")).unwrap());
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(st.account_path("root")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn stored_setup_token_is_a_digest() {
        let (_d, st) = store();
        let token = st.issue_setup_token().unwrap().unwrap();
        let on_disk = std::fs::read_to_string(st.root().join("setup-token")).unwrap();
        assert!(!on_disk.contains(&token));
    }

    #[test]
    fn api_tokens_create_check_revoke() {
        let (_d, st) = store();
        let t = st.issue_setup_token().unwrap().unwrap();
        st.complete_setup(&s(&t), "root", &s("a-long-password")).unwrap();
        let (rec, token) = st.create_api_token("root", "backup script").unwrap();
        assert!(!std::fs::read_to_string(st.tokens_path()).unwrap().contains(token.expose().as_str()));
        assert_eq!(st.check_api_token(token.expose()).unwrap().unwrap().admin, "root");
        assert!(st.check_api_token("hat_nope").unwrap().is_none());
        st.revoke_api_token(&rec.id).unwrap();
        assert!(st.check_api_token(token.expose()).unwrap().is_none());
    }

    #[test]
    fn names() {
        assert!(valid_name("alice.smith-2"));
        for bad in ["", ".x", "A", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
