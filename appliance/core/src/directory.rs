//! The directory: domains and accounts, stored as one small file per account so that the CLI
//! and a running server share it without a daemon, and a change takes effect at the next lookup.
//!
//! What it is: the embedded account database of a Hermes box and the only code that checks
//! passwords. What it is not: a cache of accounts (every [`Directory::lookup`] reads the file, so a change
//! made by `hermes account ...` is seen by a running server at its next lookup), an alias or
//! routing table (a later issue), or an LDAP client (multi-box deployments, a later issue).
//!
//! On disk (`DATA/directory/`, folders 0700, files 0600):
//!
//! ```text
//! lock                                      flock(2)ed exclusively by every writer
//! domains/<domain>/domain.json              {"domain": "...", "created": <unix seconds>}
//! domains/<domain>/accounts/<local>.json    one [`Account`] (JSON)
//! domains/<domain>/aliases/<local>.json     one [`Alias`] (JSON): local@domain → targets
//! domains/<domain>/catchall.json            the domain's catch-all [`Alias`] (`@domain`)
//! ```
//!
//! Aliases are one-to-many; a target is any valid address, in a local domain (an account or
//! another alias, expanded by the router) or external (forwarded). An alias cannot shadow an
//! existing account: [`Directory::add_alias`] refuses an address that has one.
//!
//! Invariants:
//! - Addresses are `local@domain`, compared case-insensitively (stored lowercased). Domains are
//!   LDH labels (IDNs in their `xn--` A-label form), at most 253 bytes. Local parts are the
//!   RFC 5321 dot-atom subset `[a-z0-9!#$%&'*=?^_`{|}~.-]` without `/` (a path separator) and
//!   without `+` (the subaddress separator), no leading, trailing or doubled dot, at most 64
//!   bytes. So every name is a safe file name, and no valid name starts with `.` (temporary and
//!   trash files do).
//! - Passwords are hashed with argon2id (PHC string). [`Directory::authenticate`] is blocking
//!   (argon2 costs tens of milliseconds): async callers use `spawn_blocking`. An unknown login
//!   costs the same argon2 verification as a known one, so timing does not reveal which
//!   addresses exist. At most one argon2 verification per CPU runs at once, process-wide, each
//!   reusing its slot's memory, so a burst of logins queues instead of allocating 19 MiB per
//!   blocking thread.
//! - Verified-credentials cache (the one cache here, like Dovecot's auth cache): after a
//!   successful argon2 verification, the process remembers address → (SHA-256 of a random
//!   per-process 32-byte key and the password, the PHC string it was verified against, time).
//!   A login within [`AUTH_CACHE_TTL`] (10 minutes) whose password's keyed hash matches
//!   (constant-time) and whose account file, read as always, still holds that PHC string skips
//!   argon2. So a password change or account deletion takes effect at the next login; failed
//!   attempts never populate the cache and a wrong password always pays argon2, so guessing is
//!   no cheaper; the cache holds no password and nothing testable offline without the key,
//!   which lives only in this process's memory. At most [`AUTH_CACHE_MAX_ENTRIES`] entries.
//! - Every account has a [`UserId`]: random (128 bits), never reused, the name of its folder in
//!   the store, so deleting and re-adding an address never resurrects old mail. A record whose
//!   `user_id` or `address` does not validate is reported as [`DirectoryError::Corrupt`], never
//!   used as a path.
//! - Writes are atomic (temp file, fsync, rename, fsync folder) and serialised by an exclusive
//!   flock on `lock`; readers take no lock and see either the old or the new file, never a
//!   partial one. [`Directory::lookup`] is one file read: O(1) in the number of accounts.
//!
//! **Architecture Invariant:** only [`Directory::authenticate`] constructs [`Authenticated`].

use crate::secret::Secret;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The store's stable name for an account: 32 lowercase hex digits.
/// Deserialising validates too (`try_from`), so a damaged record can never name a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct UserId(String);

impl TryFrom<String> for UserId {
    type Error = String;
    fn try_from(s: String) -> Result<UserId, String> {
        UserId::parse(&s).ok_or_else(|| "user_id must be 32 lowercase hex digits".to_string())
    }
}

impl UserId {
    /// Accepts only 32 lowercase hex digits, so a `UserId` is always safe as a file name.
    pub fn parse(s: &str) -> Option<UserId> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| UserId(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One account as the directory stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// `local@domain`, lowercased.
    pub address: String,
    pub user_id: UserId,
    /// Storage quota in bytes (issue 3 enforces it).
    pub quota_bytes: u64,
    /// Message-count quota (RFC 9208 MESSAGE). Absent in records written before it existed,
    /// which read as [`MessageQuota::Default`]: nothing is lost or changed by the upgrade.
    #[serde(default, skip_serializing_if = "MessageQuota::is_default")]
    pub quota_messages: MessageQuota,
    /// Unix seconds.
    pub created: i64,
    /// The argon2id PHC string. Never logged (Account's Debug is derived, so keep it in a Secret).
    pub password_hash: Secret<String>,
}

/// An account's limit on its number of live messages (RFC 9208 MESSAGE).
///
/// Stored in the account record as absent (`Default`), the string `"unlimited"`, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageQuota {
    /// Whatever `[store] default_quota_messages` says (unlimited unless set).
    #[default]
    Default,
    /// No limit, whatever the site default.
    Unlimited,
    /// At most this many live messages.
    Limit(u64),
}

impl MessageQuota {
    pub fn is_default(&self) -> bool {
        *self == MessageQuota::Default
    }

    /// The limit that applies, given the site default (`None`: unlimited).
    pub fn resolve(&self, site_default: Option<u64>) -> Option<u64> {
        match self {
            MessageQuota::Default => site_default,
            MessageQuota::Unlimited => None,
            MessageQuota::Limit(n) => Some(*n),
        }
    }

    /// Parses `unlimited`, `default` or a positive number of messages.
    pub fn parse(text: &str) -> Result<MessageQuota, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(MessageQuota::Unlimited);
        }
        if t.eq_ignore_ascii_case("default") {
            return Ok(MessageQuota::Default);
        }
        match t.parse::<u64>() {
            Ok(0) => Err("a message quota must be greater than zero (or \"unlimited\")".into()),
            Ok(n) => Ok(MessageQuota::Limit(n)),
            Err(_) => Err(format!("not a message count: {t:?} (a number, \"unlimited\" or \"default\")")),
        }
    }
}

impl std::fmt::Display for MessageQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageQuota::Default => f.write_str("default"),
            MessageQuota::Unlimited => f.write_str("unlimited"),
            MessageQuota::Limit(n) => write!(f, "{n}"),
        }
    }
}

impl serde::Serialize for MessageQuota {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MessageQuota::Default => s.serialize_none(),
            MessageQuota::Unlimited => s.serialize_str("unlimited"),
            MessageQuota::Limit(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> serde::Deserialize<'de> for MessageQuota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MessageQuota, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(MessageQuota::Default),
            Some(Raw::Number(n)) if n > 0 => Ok(MessageQuota::Limit(n)),
            Some(Raw::Number(_)) => Err(serde::de::Error::custom("quota_messages must be greater than zero")),
            Some(Raw::Text(t)) => MessageQuota::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Proof that a user logged in. Only [`Directory::authenticate`] makes one.
#[derive(Debug, Clone)]
pub struct Authenticated {
    account: Account,
    _private: (),
}

impl Authenticated {
    pub fn account(&self) -> &Account {
        &self.account
    }
    pub fn user_id(&self) -> &UserId {
        &self.account.user_id
    }
    pub fn address(&self) -> &str {
        &self.account.address
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    #[error("invalid domain: {0}")]
    InvalidDomain(String),
    #[error("no such domain: {0}")]
    NoSuchDomain(String),
    #[error("domain already exists: {0}")]
    DomainExists(String),
    #[error("domain {0} still has accounts")]
    DomainNotEmpty(String),
    #[error("no such account: {0}")]
    NoSuchAccount(String),
    #[error("account already exists: {0}")]
    AccountExists(String),
    #[error("no such alias: {0}")]
    NoSuchAlias(String),
    #[error("invalid alias target {0:?}")]
    InvalidTarget(String),
    #[error("invalid password hash (expected an argon2id PHC string)")]
    InvalidHash,
    #[error("password must not be empty")]
    EmptyPassword,
    #[error("directory I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt directory record {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Why a login failed. The protocol answer is the same for both (no user enumeration).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// argon2id memory cost in KiB: 19 MiB, with [`ARGON2_T_COST`] and [`ARGON2_P_COST`] the
/// OWASP Password Storage Cheat Sheet's recommended argon2id configuration (m=19456, t=2, p=1).
/// About 20–40 ms per hash on a server core: negligible for a login, ruinous for a guesser.
/// Tests use the same parameters: hashing is never weakened for speed.
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// argon2id passes (OWASP: 2 with 19 MiB).
pub const ARGON2_T_COST: u32 = 2;
/// argon2id lanes (OWASP: 1; parallelism would let one login occupy several cores).
pub const ARGON2_P_COST: u32 = 1;

/// Largest memory cost accepted from an imported hash: 256 MiB. Verification runs with the
/// hash's own parameters, so an unbounded import would let one record make every login to it
/// allocate gigabytes.
pub const MAX_IMPORT_M_COST_KIB: u32 = 256 * 1024;
/// Largest time cost accepted from an imported hash (same reason).
pub const MAX_IMPORT_T_COST: u32 = 16;
/// Largest parallelism accepted from an imported hash (same reason).
pub const MAX_IMPORT_P_COST: u32 = 8;

/// Verified against when the login names no account, so an unknown user costs the same argon2
/// work as a wrong password. It is the hash of a random password nobody knows, made once with
/// the parameters above (m=19456, t=2, p=1); the `dummy_hash_matches_current_params` test
/// keeps the two in step.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$9JEKk7dUJU7bCvEPClNzFw$DIi9K/7OS9M3FIEusLvGI9d32L87esKop2wufjsOavc";

/// The RFC 5321 limit on a local part.
const MAX_LOCAL_LEN: usize = 64;
/// The DNS limit on a domain name (RFC 1035 §2.3.4, without the final dot).
const MAX_DOMAIN_LEN: usize = 253;
/// The DNS limit on one label.
const MAX_LABEL_LEN: usize = 63;
/// Size bound on one account or domain record read from disk: real records are ~300 bytes; a
/// larger file is damage, not data, and is not read into memory.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// `domains/<domain>/domain.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct DomainRecord {
    domain: String,
    /// Unix seconds.
    created: i64,
}

/// A normalised, validated address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    local: String,
    domain: String,
}

impl Address {
    fn full(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// Lowercases and checks a domain name; `None` if it cannot be a mail domain.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let d = domain.to_ascii_lowercase();
    if d.is_empty() || d.len() > MAX_DOMAIN_LEN {
        return None;
    }
    for label in d.split('.') {
        let b = label.as_bytes();
        if b.is_empty()
            || b.len() > MAX_LABEL_LEN
            || !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            || b[0] == b'-'
            || b[b.len() - 1] == b'-'
        {
            return None;
        }
    }
    Some(d)
}

/// Lowercases and checks a local part (the dot-atom subset described in the module doc).
fn normalize_local(local: &str) -> Option<String> {
    let l = local.to_ascii_lowercase();
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*=?^_`{|}~.-".contains(&c);
    let valid = !l.is_empty()
        && l.len() <= MAX_LOCAL_LEN
        && l.bytes().all(ok_char)
        && !l.starts_with('.')
        && !l.ends_with('.')
        && !l.contains("..");
    valid.then_some(l)
}

/// Parses `local@domain` (the last `@` separates them), lowercased and validated. With
/// `subaddress`, `user+tag@domain` yields `user@domain`.
fn parse_address(address: &str, subaddress: bool) -> Option<Address> {
    let (local, domain) = address.rsplit_once('@')?;
    let local = if subaddress { local.split_once('+').map_or(local, |(user, _tag)| user) } else { local };
    Some(Address { local: normalize_local(local)?, domain: normalize_domain(domain)? })
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

fn argon2_hasher() -> Result<Argon2<'static>, DirectoryError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| DirectoryError::Io(std::io::Error::other(format!("argon2 parameters: {e}"))))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with argon2id and a fresh random salt. Blocking (tens of milliseconds).
pub fn hash_password(password: &Secret<String>) -> Result<Secret<String>, DirectoryError> {
    if password.expose().is_empty() {
        return Err(DirectoryError::EmptyPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2_hasher()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|e| DirectoryError::Io(std::io::Error::other(format!("argon2: {e}"))))?;
    Ok(Secret::new(hash.to_string()))
}

/// Checks that `phc` is an argon2id PHC string whose cost parameters are within the import
/// bounds; returns it normalised (re-serialised).
pub fn validate_phc_hash(phc: &str) -> Result<String, DirectoryError> {
    let hash = PasswordHash::new(phc.trim()).map_err(|_| DirectoryError::InvalidHash)?;
    if hash.algorithm != Algorithm::Argon2id.ident() || hash.hash.is_none() || hash.salt.is_none() {
        return Err(DirectoryError::InvalidHash);
    }
    let params = Params::try_from(&hash).map_err(|_| DirectoryError::InvalidHash)?;
    if params.m_cost() > MAX_IMPORT_M_COST_KIB
        || params.t_cost() > MAX_IMPORT_T_COST
        || params.p_cost() > MAX_IMPORT_P_COST
    {
        return Err(DirectoryError::InvalidHash);
    }
    Ok(hash.to_string())
}

mod auth_cache;
pub use auth_cache::{CACHE_MAX_ENTRIES as AUTH_CACHE_MAX_ENTRIES, CACHE_TTL as AUTH_CACHE_TTL};

/// Verifies `password` against a stored PHC string; any parse failure is a mismatch. At most
/// one verification per CPU runs at once, process-wide (see `auth_cache`).
fn verify(phc: &str, password: &[u8]) -> bool {
    auth_cache::verify_bounded(phc, password)
}

fn random_user_id() -> UserId {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    UserId(hex::encode(bytes))
}

/// Creates `dir` (and parents) with mode 0700 if missing; tightens an existing one.
fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temp file beside it (mode 0600), fsync, rename over
/// `path`, fsync the folder. A crash leaves either the old file or the new one (and perhaps a
/// dot-named temp file, which every reader ignores).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("path has no parent folder"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("record");
    let tmp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), random_user_id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a whole record, refusing files over [`MAX_RECORD_BYTES`]. `Ok(None)` if absent.
fn read_record(path: &Path) -> Result<Option<Vec<u8>>, DirectoryError> {
    use std::io::Read;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut buf = Vec::with_capacity(512);
    file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_RECORD_BYTES {
        return Err(DirectoryError::Corrupt { path: path.to_path_buf(), reason: "record too large".into() });
    }
    Ok(Some(buf))
}

/// A handle on `DATA/directory`. Cheap to clone; holds no open files and caches nothing.
#[derive(Debug, Clone)]
pub struct Directory {
    root: PathBuf,
}

/// One account for [`Directory::import_accounts`].
#[derive(Debug, Clone)]
pub struct ImportEntry {
    pub address: String,
    /// An argon2id PHC string (checked by [`validate_phc_hash`]).
    pub phc_hash: String,
    /// `None`: [`DEFAULT_QUOTA_BYTES`].
    pub quota_bytes: Option<u64>,
}

/// The exclusive writer lock; released when dropped (closing the file).
struct WriteLock {
    _flock: Flock<File>,
}

impl Directory {
    /// Opens (creating if missing, mode 0700) the directory under `data`.
    pub fn open(data: &crate::paths::DataDir) -> Result<Directory, DirectoryError> {
        let root = data.directory_dir();
        ensure_private_dir(&root)?;
        ensure_private_dir(&root.join("domains"))?;
        Ok(Directory { root })
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn domains_dir(&self) -> PathBuf {
        self.root.join("domains")
    }
    fn domain_dir(&self, domain: &str) -> PathBuf {
        self.domains_dir().join(domain)
    }
    fn domain_file(&self, domain: &str) -> PathBuf {
        self.domain_dir(domain).join("domain.json")
    }
    fn accounts_dir(&self, domain: &str) -> PathBuf {
        self.domain_dir(domain).join("accounts")
    }
    fn account_file(&self, addr: &Address) -> PathBuf {
        self.accounts_dir(&addr.domain).join(format!("{}.json", addr.local))
    }

    /// Takes the writers' lock (blocking until other writers finish).
    fn lock(&self) -> Result<WriteLock, DirectoryError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.root.join("lock"))?;
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| DirectoryError::Io(std::io::Error::from(errno)))?;
        Ok(WriteLock { _flock: flock })
    }

    fn domain_exists(&self, domain: &str) -> Result<bool, DirectoryError> {
        match fs::metadata(self.domain_file(domain)) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a domain. Addresses at it can then be added.
    pub fn add_domain(&self, domain: &str) -> Result<(), DirectoryError> {
        let d = normalize_domain(domain).ok_or_else(|| DirectoryError::InvalidDomain(domain.to_string()))?;
        let _lock = self.lock()?;
        if self.domain_exists(&d)? {
            return Err(DirectoryError::DomainExists(d));
        }
        ensure_private_dir(&self.accounts_dir(&d))?;
        fsync_dir(&self.domain_dir(&d))?;
        let record = DomainRecord { domain: d.clone(), created: now_unix() };
        let json = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        write_atomic(&self.domain_file(&d), &json)?;
        fsync_dir(&self.domains_dir())?;
        tracing::info!(domain = %d, "domain added");
        Ok(())
    }

    /// Removes a domain; refuses while it still has accounts.
    pub fn remove_domain(&self, domain: &str) -> Result<(), DirectoryError> {
        let d = normalize_domain(domain).ok_or_else(|| DirectoryError::InvalidDomain(domain.to_string()))?;
        let _lock = self.lock()?;
        if !self.domain_exists(&d)? {
            return Err(DirectoryError::NoSuchDomain(d));
        }
        if !self.account_files(&d)?.is_empty() {
            return Err(DirectoryError::DomainNotEmpty(d));
        }
        // Rename first so readers see the domain vanish at once, then clear the trash (it may
        // hold stale temp files from a crashed writer).
        let trash = self.domains_dir().join(format!(".deleted.{d}.{}", random_user_id()));
        fs::rename(self.domain_dir(&d), &trash)?;
        fsync_dir(&self.domains_dir())?;
        fs::remove_dir_all(&trash)?;
        tracing::info!(domain = %d, "domain removed");
        Ok(())
    }

    /// Every domain, sorted.
    pub fn list_domains(&self) -> Result<Vec<String>, DirectoryError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(self.domains_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if normalize_domain(&name).as_deref() == Some(name.as_str()) && self.domain_exists(&name)? {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether `domain` exists. A name that cannot be a domain does not.
    pub fn has_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
        match normalize_domain(domain) {
            Some(d) => self.domain_exists(&d),
            None => Ok(false),
        }
    }

    /// The local parts with an account file in `domain` (unsorted). Temp files are skipped.
    fn account_files(&self, domain: &str) -> Result<Vec<String>, DirectoryError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(self.accounts_dir(domain)) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            let Some(local) = name.strip_suffix(".json") else { continue };
            if normalize_local(local).as_deref() == Some(local) {
                out.push(local.to_string());
            }
        }
        Ok(out)
    }

    /// Reads and checks one account record. `Ok(None)` if absent.
    fn read_account(&self, addr: &Address) -> Result<Option<Account>, DirectoryError> {
        let path = self.account_file(addr);
        let Some(bytes) = read_record(&path)? else { return Ok(None) };
        let account: Account = serde_json::from_slice(&bytes)
            .map_err(|e| DirectoryError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        if account.address != addr.full() {
            return Err(DirectoryError::Corrupt {
                path,
                reason: format!("record names {:?}, file names {:?}", account.address, addr.full()),
            });
        }
        Ok(Some(account))
    }

    fn write_account(&self, account: &Account, addr: &Address) -> Result<(), DirectoryError> {
        let json = serde_json::to_vec_pretty(account).map_err(std::io::Error::other)?;
        write_atomic(&self.account_file(addr), &json)?;
        Ok(())
    }

    /// Validates `address` for an add: a well-formed address in an existing domain.
    fn address_for_add(&self, address: &str) -> Result<Address, DirectoryError> {
        let addr = parse_address(address, false).ok_or_else(|| DirectoryError::InvalidAddress(address.to_string()))?;
        if !self.domain_exists(&addr.domain)? {
            return Err(DirectoryError::NoSuchDomain(addr.domain));
        }
        Ok(addr)
    }

    fn insert_account(
        &self,
        addr: &Address,
        hash: String,
        quota_bytes: Option<u64>,
    ) -> Result<Account, DirectoryError> {
        let _lock = self.lock()?;
        if !self.domain_exists(&addr.domain)? {
            return Err(DirectoryError::NoSuchDomain(addr.domain.clone()));
        }
        if self.read_account(addr)?.is_some() || self.account_file(addr).exists() {
            return Err(DirectoryError::AccountExists(addr.full()));
        }
        let account = Account {
            address: addr.full(),
            user_id: random_user_id(),
            quota_bytes: quota_bytes.unwrap_or(DEFAULT_QUOTA_BYTES),
            quota_messages: MessageQuota::Default,
            created: now_unix(),
            password_hash: Secret::new(hash),
        };
        self.write_account(&account, addr)?;
        tracing::info!(user = %account.address, user_id = %account.user_id, "account added");
        Ok(account)
    }

    /// Adds an account with a new password (hashed here, before the lock is taken).
    pub fn add_account(
        &self,
        address: &str,
        password: &Secret<String>,
        quota_bytes: Option<u64>,
    ) -> Result<Account, DirectoryError> {
        let addr = self.address_for_add(address)?;
        let hash = hash_password(password)?;
        self.insert_account(&addr, hash.expose().clone(), quota_bytes)
    }

    /// Adds an account with an existing argon2id PHC hash (migrations, benchmarks).
    pub fn import_account(
        &self,
        address: &str,
        phc_hash: &str,
        quota_bytes: Option<u64>,
    ) -> Result<Account, DirectoryError> {
        let addr = self.address_for_add(address)?;
        let hash = validate_phc_hash(phc_hash)?;
        self.insert_account(&addr, hash, quota_bytes)
    }

    /// Imports many accounts with existing argon2id hashes under one lock hold (migrations and
    /// the 50,000-account benchmark). One result per entry, in order: a bad entry (invalid
    /// address or hash, unknown domain, duplicate) fails alone; the outer `Err` means the batch
    /// could not be written at all. Durable like single writes but with one `syncfs` and one
    /// folder fsync per batch instead of two fsyncs per account.
    pub fn import_accounts(
        &self,
        entries: &[ImportEntry],
    ) -> Result<Vec<Result<Account, DirectoryError>>, DirectoryError> {
        let _lock = self.lock()?;
        let mut results = Vec::with_capacity(entries.len());
        let mut seen = std::collections::HashSet::new();
        // (temp path, final path) of each staged record.
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut folders = std::collections::BTreeSet::new();
        let outcome = (|| -> Result<(), DirectoryError> {
            for entry in entries {
                let prepared = (|| {
                    let addr = parse_address(&entry.address, false)
                        .ok_or_else(|| DirectoryError::InvalidAddress(entry.address.clone()))?;
                    let hash = validate_phc_hash(&entry.phc_hash)?;
                    if !self.domain_exists(&addr.domain)? {
                        return Err(DirectoryError::NoSuchDomain(addr.domain));
                    }
                    if !seen.insert(addr.full()) || self.account_file(&addr).exists() {
                        return Err(DirectoryError::AccountExists(addr.full()));
                    }
                    Ok((addr, hash))
                })();
                let (addr, hash) = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                let account = Account {
                    address: addr.full(),
                    user_id: random_user_id(),
                    quota_bytes: entry.quota_bytes.unwrap_or(DEFAULT_QUOTA_BYTES),
                    quota_messages: MessageQuota::Default,
                    created: now_unix(),
                    password_hash: Secret::new(hash),
                };
                let json = serde_json::to_vec_pretty(&account).map_err(std::io::Error::other)?;
                let path = self.account_file(&addr);
                let dir = self.accounts_dir(&addr.domain);
                let tmp = dir.join(format!(".{}.json.tmp.{}.{}", addr.local, std::process::id(), random_user_id()));
                let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
                staged.push((tmp, path));
                f.write_all(&json)?;
                folders.insert(dir);
                results.push(Ok(account));
            }
            if staged.is_empty() {
                return Ok(());
            }
            // One flush of the file system makes every staged file durable before any rename.
            let root = File::open(&self.root)?;
            nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)).map_err(std::io::Error::from)?;
            for (tmp, path) in &staged {
                fs::rename(tmp, path)?;
            }
            for dir in &folders {
                fsync_dir(dir)?;
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            for (tmp, _) in &staged {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
        let imported = results.iter().filter(|r| r.is_ok()).count();
        tracing::info!(imported, failed = results.len() - imported, "accounts imported");
        Ok(results)
    }

    /// Read-modify-write of one account under the lock.
    fn update_account(&self, address: &str, change: impl FnOnce(&mut Account)) -> Result<Account, DirectoryError> {
        let addr = parse_address(address, false).ok_or_else(|| DirectoryError::InvalidAddress(address.to_string()))?;
        let _lock = self.lock()?;
        let mut account = self.read_account(&addr)?.ok_or_else(|| DirectoryError::NoSuchAccount(addr.full()))?;
        change(&mut account);
        self.write_account(&account, &addr)?;
        Ok(account)
    }

    /// Replaces an account's password.
    pub fn set_password(&self, address: &str, password: &Secret<String>) -> Result<(), DirectoryError> {
        let hash = hash_password(password)?;
        let account = self.update_account(address, |a| a.password_hash = hash)?;
        tracing::info!(user = %account.address, "password changed");
        Ok(())
    }

    /// Sets an account's storage quota in bytes.
    pub fn set_quota(&self, address: &str, quota_bytes: u64) -> Result<(), DirectoryError> {
        let account = self.update_account(address, |a| a.quota_bytes = quota_bytes)?;
        tracing::info!(user = %account.address, quota_bytes, "quota changed");
        Ok(())
    }

    /// Sets an account's message-count quota (RFC 9208 MESSAGE).
    pub fn set_message_quota(&self, address: &str, quota: MessageQuota) -> Result<Account, DirectoryError> {
        let account = self.update_account(address, |a| a.quota_messages = quota)?;
        tracing::info!(user = %account.address, quota_messages = %quota, "message quota changed");
        Ok(account)
    }

    /// Removes an account and returns what it was. Its mail is not touched here: the store
    /// keeps the folder named by the returned [`UserId`] until it is purged.
    pub fn remove_account(&self, address: &str) -> Result<Account, DirectoryError> {
        let addr = parse_address(address, false).ok_or_else(|| DirectoryError::InvalidAddress(address.to_string()))?;
        let _lock = self.lock()?;
        let account = self.read_account(&addr)?.ok_or_else(|| DirectoryError::NoSuchAccount(addr.full()))?;
        fs::remove_file(self.account_file(&addr))?;
        fsync_dir(&self.accounts_dir(&addr.domain))?;
        tracing::info!(user = %account.address, user_id = %account.user_id, "account removed");
        Ok(account)
    }

    /// Every account (or those of one domain), sorted by address.
    pub fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<Account>, DirectoryError> {
        let domains = match domain {
            Some(d) => {
                let d = normalize_domain(d).ok_or_else(|| DirectoryError::InvalidDomain(d.to_string()))?;
                if !self.domain_exists(&d)? {
                    return Err(DirectoryError::NoSuchDomain(d));
                }
                vec![d]
            }
            None => self.list_domains()?,
        };
        let mut out = Vec::new();
        for d in domains {
            for local in self.account_files(&d)? {
                let addr = Address { local, domain: d.clone() };
                // A file removed between listing and reading is simply gone.
                if let Some(account) = self.read_account(&addr)? {
                    out.push(account);
                }
            }
        }
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }

    /// The account for `address`, or `None`. `user+tag@domain` resolves to `user@domain`
    /// (subaddressing). An address that cannot be valid is not found (`Ok(None)`); `Err` means
    /// the directory could not be read. One file read, no lock, no cache.
    pub fn lookup(&self, address: &str) -> Result<Option<Account>, DirectoryError> {
        match parse_address(address, true) {
            Some(addr) => self.read_account(&addr),
            None => Ok(None),
        }
    }

    /// Checks a login (the full address, case-insensitive; no subaddress) and password.
    /// Blocking: one argon2 verification whether or not the account exists (at most one per
    /// CPU at once, process-wide; callers beyond that wait), except that the same password
    /// verified against the same stored hash within [`AUTH_CACHE_TTL`] is accepted from the
    /// verified-credentials cache without argon2. The account file is read every time.
    pub fn authenticate(&self, login: &str, password: &Secret<String>) -> Result<Authenticated, AuthError> {
        let account = match parse_address(login, false) {
            Some(addr) => self.read_account(&addr)?,
            None => None,
        };
        let pw = password.expose().as_bytes();
        match account {
            Some(account) if !pw.is_empty() => {
                let phc = account.password_hash.expose();
                if auth_cache::hit(&self.root, &account.address, phc, pw) {
                    return Ok(Authenticated { account, _private: () });
                }
                if !verify(phc, pw) {
                    return Err(AuthError::InvalidCredentials);
                }
                auth_cache::remember(&self.root, &account.address, phc, pw);
                Ok(Authenticated { account, _private: () })
            }
            Some(_) => Err(AuthError::InvalidCredentials),
            None => {
                // Same work as a real check, result ignored: no timing oracle for existence.
                let _ = verify(DUMMY_HASH, pw);
                Err(AuthError::InvalidCredentials)
            }
        }
    }
}

/// Most targets of one alias: a department list of a few hundred fits; larger lists belong
/// in the list manager.
pub const MAX_ALIAS_TARGETS: usize = 1000;

/// One alias or catch-all as the directory stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alias {
    /// `local@domain` (lowercased), or `@domain` for the domain's catch-all.
    pub address: String,
    /// Where the mail goes, in order; duplicates removed.
    pub targets: Vec<String>,
    /// Unix seconds.
    pub created: i64,
}

impl Alias {
    pub fn is_catch_all(&self) -> bool {
        self.address.starts_with('@')
    }
}

/// Checks and normalises an alias target: `local@domain`, the local part a dot-atom (with
/// `+`, case kept: it may be an external mailbox), the domain lowercased.
pub fn normalize_target(target: &str) -> Option<String> {
    let (local, domain) = target.trim().rsplit_once('@')?;
    let atext = |c: u8| c.is_ascii_alphanumeric() || b"!#$&'*+=?^_`{|}~-/".contains(&c);
    let ok = !local.is_empty()
        && local.len() <= MAX_LOCAL_LEN
        && local.split('.').all(|atom| !atom.is_empty() && atom.bytes().all(atext));
    let domain = normalize_domain(domain)?;
    ok.then(|| format!("{local}@{domain}"))
}

/// `local@domain` → (Some(local), domain); `@domain` → (None, domain).
fn parse_alias_address(address: &str) -> Option<(Option<String>, String)> {
    if let Some(d) = address.strip_prefix('@') {
        return Some((None, normalize_domain(d)?));
    }
    let a = parse_address(address, false)?;
    Some((Some(a.local), a.domain))
}

impl Directory {
    fn aliases_dir(&self, domain: &str) -> PathBuf {
        self.domain_dir(domain).join("aliases")
    }
    fn alias_file(&self, local: Option<&str>, domain: &str) -> PathBuf {
        match local {
            Some(l) => self.aliases_dir(domain).join(format!("{l}.json")),
            None => self.domain_dir(domain).join("catchall.json"),
        }
    }

    fn read_alias(&self, local: Option<&str>, domain: &str) -> Result<Option<Alias>, DirectoryError> {
        let path = self.alias_file(local, domain);
        let Some(bytes) = read_record(&path)? else { return Ok(None) };
        let alias: Alias =
            serde_json::from_slice(&bytes).map_err(|e| DirectoryError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let want = match local {
            Some(l) => format!("{l}@{domain}"),
            None => format!("@{domain}"),
        };
        if alias.address != want {
            return Err(DirectoryError::Corrupt { path, reason: format!("record names {:?}, file names {want:?}", alias.address) });
        }
        Ok(Some(alias))
    }

    /// Creates or replaces the alias `address` (`local@domain`, or `@domain` for the catch-all)
    /// with `targets`. The domain must exist and `address` must not be an account.
    pub fn add_alias(&self, address: &str, targets: &[String]) -> Result<Alias, DirectoryError> {
        let (local, domain) =
            parse_alias_address(address).ok_or_else(|| DirectoryError::InvalidAddress(address.to_string()))?;
        let mut clean: Vec<String> = Vec::new();
        for t in targets {
            let n = normalize_target(t).ok_or_else(|| DirectoryError::InvalidTarget(t.clone()))?;
            if !clean.contains(&n) {
                clean.push(n);
            }
        }
        if clean.is_empty() || clean.len() > MAX_ALIAS_TARGETS {
            return Err(DirectoryError::InvalidTarget(format!("{} targets (1 to {MAX_ALIAS_TARGETS} allowed)", clean.len())));
        }
        let _lock = self.lock()?;
        if !self.domain_exists(&domain)? {
            return Err(DirectoryError::NoSuchDomain(domain));
        }
        if let Some(l) = &local
            && self.read_account(&Address { local: l.clone(), domain: domain.clone() })?.is_some()
        {
            return Err(DirectoryError::AccountExists(format!("{l}@{domain}")));
        }
        let alias = Alias {
            address: match &local {
                Some(l) => format!("{l}@{domain}"),
                None => format!("@{domain}"),
            },
            targets: clean,
            created: now_unix(),
        };
        ensure_private_dir(&self.aliases_dir(&domain))?;
        let json = serde_json::to_vec_pretty(&alias).map_err(std::io::Error::other)?;
        write_atomic(&self.alias_file(local.as_deref(), &domain), &json)?;
        tracing::info!(alias = %alias.address, targets = alias.targets.len(), "alias set");
        Ok(alias)
    }

    /// Removes an alias (or `@domain`, the catch-all) and returns what it was.
    pub fn remove_alias(&self, address: &str) -> Result<Alias, DirectoryError> {
        let (local, domain) =
            parse_alias_address(address).ok_or_else(|| DirectoryError::InvalidAddress(address.to_string()))?;
        let _lock = self.lock()?;
        let alias = self.read_alias(local.as_deref(), &domain)?.ok_or_else(|| DirectoryError::NoSuchAlias(address.to_ascii_lowercase()))?;
        let path = self.alias_file(local.as_deref(), &domain);
        fs::remove_file(&path)?;
        if let Some(parent) = path.parent() {
            fsync_dir(parent)?;
        }
        tracing::info!(alias = %alias.address, "alias removed");
        Ok(alias)
    }

    /// Every alias and catch-all (or those of one domain), sorted by address.
    pub fn list_aliases(&self, domain: Option<&str>) -> Result<Vec<Alias>, DirectoryError> {
        let domains = match domain {
            Some(d) => vec![normalize_domain(d).ok_or_else(|| DirectoryError::InvalidDomain(d.to_string()))?],
            None => self.list_domains()?,
        };
        let mut out = Vec::new();
        for d in domains {
            if let Some(c) = self.read_alias(None, &d)? {
                out.push(c);
            }
            let entries = match fs::read_dir(self.aliases_dir(&d)) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in entries {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
                let Some(local) = name.strip_suffix(".json") else { continue };
                if normalize_local(local).as_deref() == Some(local)
                    && let Some(a) = self.read_alias(Some(local), &d)?
                {
                    out.push(a);
                }
            }
        }
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }

    /// The alias for exactly `address` (no subaddress stripping), or `None`. One file read.
    pub fn lookup_alias(&self, address: &str) -> Result<Option<Alias>, DirectoryError> {
        match parse_address(address, false) {
            Some(a) => self.read_alias(Some(&a.local), &a.domain),
            None => Ok(None),
        }
    }

    /// The catch-all of `domain`, or `None`.
    pub fn catch_all(&self, domain: &str) -> Result<Option<Alias>, DirectoryError> {
        match normalize_domain(domain) {
            Some(d) => self.read_alias(None, &d),
            None => Ok(None),
        }
    }
}

/// Default quota for new accounts: 1 GiB, the seed service's figure rounded up.
pub const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use crate::paths::DataDir;
    use std::os::unix::fs::PermissionsExt;

    fn pw(s: &str) -> Secret<String> {
        Secret::new(s.to_string())
    }

    fn dir() -> (tempfile::TempDir, Directory) {
        let tmp = tempfile::tempdir().unwrap();
        let d = Directory::open(&DataDir::new(tmp.path())).unwrap();
        (tmp, d)
    }

    /// One precomputed hash (of "secret") keeps the tests that do not test hashing fast,
    /// without weakening the parameters.
    fn secret_hash() -> String {
        hash_password(&pw("secret")).unwrap().expose().clone()
    }

    #[test]
    fn dummy_hash_matches_current_params() {
        let h = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(h.algorithm, Algorithm::Argon2id.ident());
        let p = Params::try_from(&h).unwrap();
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST));
        let fresh = hash_password(&pw("x")).unwrap();
        let f = Params::try_from(&PasswordHash::new(fresh.expose()).unwrap()).unwrap();
        assert_eq!((f.m_cost(), f.t_cost(), f.p_cost()), (p.m_cost(), p.t_cost(), p.p_cost()));
    }

    #[test]
    fn domains_add_list_remove() {
        let (_t, d) = dir();
        assert!(d.list_domains().unwrap().is_empty());
        d.add_domain("Example.ORG").unwrap();
        d.add_domain("a.example").unwrap();
        assert_eq!(d.list_domains().unwrap(), ["a.example", "example.org"]);
        assert!(d.has_domain("EXAMPLE.org").unwrap());
        assert!(!d.has_domain("nope.example").unwrap());
        assert!(!d.has_domain("../etc").unwrap());
        assert!(matches!(d.add_domain("example.org"), Err(DirectoryError::DomainExists(_))));
        d.remove_domain("example.org").unwrap();
        assert_eq!(d.list_domains().unwrap(), ["a.example"]);
        assert!(matches!(d.remove_domain("example.org"), Err(DirectoryError::NoSuchDomain(_))));
        // Nothing left behind by the rename-then-delete.
        let names: Vec<_> = fs::read_dir(d.root().join("domains")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.example"]);
    }

    #[test]
    fn domain_with_accounts_is_not_removed() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.import_account("a@example.org", &secret_hash(), None).unwrap();
        assert!(matches!(d.remove_domain("example.org"), Err(DirectoryError::DomainNotEmpty(_))));
        d.remove_account("a@example.org").unwrap();
        d.remove_domain("example.org").unwrap();
    }

    #[test]
    fn invalid_domains_are_refused() {
        let (_t, d) = dir();
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghij"; 26].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            "-a.org",
            "a-.org",
            "a_b.org",
            "a/b",
            "..",
            "exa mple.org",
            "é.org",
            long_label.as_str(),
            long_name.as_str(),
            "example.org.",
        ] {
            assert!(matches!(d.add_domain(bad), Err(DirectoryError::InvalidDomain(_))), "{bad:?}");
        }
        d.add_domain("xn--bcher-kva.example").unwrap();
        d.add_domain(&"a".repeat(63)).unwrap();
    }

    #[test]
    fn invalid_addresses_are_refused() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        let long = format!("{}@example.org", "a".repeat(65));
        for bad in [
            "",
            "alice",
            "@example.org",
            "alice@",
            ".a@example.org",
            "a.@example.org",
            "a..b@example.org",
            "a/b@example.org",
            "a+b@example.org",
            "a b@example.org",
            "\"a\"@example.org",
            "a@b@bad..org",
            "ä@example.org",
            "a@exa_mple.org",
            long.as_str(),
        ] {
            let r = d.add_account(bad, &pw("x"), None);
            assert!(matches!(r, Err(DirectoryError::InvalidAddress(_))), "{bad:?}: {r:?}");
        }
        assert!(matches!(d.add_account("a@other.org", &pw("x"), None), Err(DirectoryError::NoSuchDomain(_))));
        assert!(matches!(d.add_account("a@example.org", &pw(""), None), Err(DirectoryError::EmptyPassword)));
        // The dot-atom specials are fine.
        d.import_account("o'brien.j_x-y!#$%&*=?^`{|}~@example.org", &secret_hash(), None).unwrap();
    }

    #[test]
    fn accounts_add_list_remove_and_duplicates() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.add_domain("example.net").unwrap();
        let h = secret_hash();
        let a = d.import_account("Bob@Example.org", &h, Some(5 << 20)).unwrap();
        assert_eq!(a.address, "bob@example.org");
        assert_eq!(a.quota_bytes, 5 << 20);
        let b = d.import_account("alice@example.org", &h, None).unwrap();
        assert_eq!(b.quota_bytes, DEFAULT_QUOTA_BYTES);
        assert_ne!(a.user_id, b.user_id);
        d.import_account("carol@example.net", &h, None).unwrap();
        assert!(matches!(d.import_account("BOB@example.org", &h, None), Err(DirectoryError::AccountExists(_))));

        let all: Vec<_> = d.list_accounts(None).unwrap().into_iter().map(|a| a.address).collect();
        assert_eq!(all, ["alice@example.org", "bob@example.org", "carol@example.net"]);
        let org: Vec<_> = d.list_accounts(Some("EXAMPLE.ORG")).unwrap().into_iter().map(|a| a.address).collect();
        assert_eq!(org, ["alice@example.org", "bob@example.org"]);
        assert!(matches!(d.list_accounts(Some("none.org")), Err(DirectoryError::NoSuchDomain(_))));

        let removed = d.remove_account("bob@EXAMPLE.org").unwrap();
        assert_eq!(removed.user_id, a.user_id);
        assert!(d.lookup("bob@example.org").unwrap().is_none());
        assert!(matches!(d.remove_account("bob@example.org"), Err(DirectoryError::NoSuchAccount(_))));
        // Re-adding gets a fresh user id: old mail is never resurrected.
        let again = d.import_account("bob@example.org", &h, None).unwrap();
        assert_ne!(again.user_id, a.user_id);
    }

    /// The bounded verifier agrees with the argon2 crate's own verifier.
    #[test]
    fn bounded_verify_matches_reference() {
        let h = secret_hash();
        let parsed = PasswordHash::new(&h).unwrap();
        use argon2::password_hash::PasswordVerifier;
        assert!(Argon2::default().verify_password(b"secret", &parsed).is_ok());
        assert!(verify(&h, b"secret"));
        assert!(!verify(&h, b"Secret"));
        assert!(!verify("not a phc string", b"secret"));
        assert!(!verify(DUMMY_HASH, b""));
    }

    #[test]
    fn auth_cache_hit_is_fast_and_wrong_password_never_hits() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.add_account("carol@example.org", &pw("right"), None).unwrap();
        let first = std::time::Instant::now();
        d.authenticate("carol@example.org", &pw("right")).unwrap();
        let argon = first.elapsed();
        // Best of a few, so a busy machine's scheduling hiccup does not fail the test.
        let hit = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                d.authenticate("Carol@example.org", &pw("right")).unwrap();
                t.elapsed()
            })
            .min()
            .unwrap();
        assert!(hit < std::time::Duration::from_millis(1), "cache hit took {hit:?} (argon2: {argon:?})");
        // A wrong password pays argon2 and fails; it never populates or matches the cache.
        let t = std::time::Instant::now();
        assert!(matches!(d.authenticate("carol@example.org", &pw("wrong")), Err(AuthError::InvalidCredentials)));
        assert!(t.elapsed() > hit * 3, "a wrong password must cost a verification");
        assert!(matches!(d.authenticate("carol@example.org", &pw("wrong")), Err(AuthError::InvalidCredentials)));
        assert!(matches!(d.authenticate("carol@example.org", &pw("")), Err(AuthError::InvalidCredentials)));
        // The right one still hits.
        d.authenticate("carol@example.org", &pw("right")).unwrap();
    }

    #[test]
    fn auth_cache_password_change_invalidates_and_deletion_fails() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.add_account("dave@example.org", &pw("old"), None).unwrap();
        d.authenticate("dave@example.org", &pw("old")).unwrap();
        d.authenticate("dave@example.org", &pw("old")).unwrap(); // cached
        d.set_password("dave@example.org", &pw("new")).unwrap();
        assert!(matches!(d.authenticate("dave@example.org", &pw("old")), Err(AuthError::InvalidCredentials)));
        d.authenticate("dave@example.org", &pw("new")).unwrap();
        d.authenticate("dave@example.org", &pw("new")).unwrap(); // cached
        d.remove_account("dave@example.org").unwrap();
        assert!(matches!(d.authenticate("dave@example.org", &pw("new")), Err(AuthError::InvalidCredentials)));
        // Re-added with the same password: a new hash (new salt), so a fresh verification.
        let again = d.add_account("dave@example.org", &pw("new"), None).unwrap();
        assert_eq!(d.authenticate("dave@example.org", &pw("new")).unwrap().user_id(), &again.user_id);
        assert!(auth_cache::len() >= 1);
    }

    #[test]
    fn concurrent_logins_all_succeed_under_the_bound() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        let h = secret_hash();
        for i in 0..6 {
            d.import_account(&format!("p{i}@example.org"), &h, None).unwrap();
        }
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || d.authenticate(&format!("p{i}@example.org"), &pw("secret")).is_ok())
            })
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
        assert!(auth_cache::max_concurrent_verifications() >= 1);
    }

    #[test]
    fn password_change_then_authenticate() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        let acct = d.add_account("alice@example.org", &pw("first"), None).unwrap();
        let auth = d.authenticate("Alice@Example.ORG", &pw("first")).unwrap();
        assert_eq!(auth.address(), "alice@example.org");
        assert_eq!(auth.user_id(), &acct.user_id);
        d.set_password("alice@example.org", &pw("second")).unwrap();
        assert!(matches!(d.authenticate("alice@example.org", &pw("first")), Err(AuthError::InvalidCredentials)));
        d.authenticate("alice@example.org", &pw("second")).unwrap();
        assert!(matches!(d.set_password("alice@example.org", &pw("")), Err(DirectoryError::EmptyPassword)));
        assert!(matches!(d.set_password("nobody@example.org", &pw("x")), Err(DirectoryError::NoSuchAccount(_))));
        // The user id survives a password change.
        assert_eq!(d.lookup("alice@example.org").unwrap().unwrap().user_id, acct.user_id);
    }

    #[test]
    fn wrong_password_unknown_user_and_garbage_logins() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.import_account("alice@example.org", &secret_hash(), None).unwrap();
        for (login, pass) in [
            ("alice@example.org", "wrong"),
            ("alice@example.org", ""),
            ("nobody@example.org", "secret"),
            ("alice", "secret"),
            ("alice+tag@example.org", "secret"),
            ("../../etc/passwd", "x"),
            ("", ""),
        ] {
            assert!(matches!(d.authenticate(login, &pw(pass)), Err(AuthError::InvalidCredentials)), "{login}");
        }
        d.authenticate("alice@example.org", &pw("secret")).unwrap();
    }

    #[test]
    fn unknown_user_costs_an_argon2_verification() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.import_account("alice@example.org", &secret_hash(), None).unwrap();
        let t = std::time::Instant::now();
        let _ = d.authenticate("alice@example.org", &pw("wrong"));
        let known = t.elapsed();
        let t = std::time::Instant::now();
        let _ = d.authenticate("nobody@example.org", &pw("wrong"));
        let unknown = t.elapsed();
        // Same order of magnitude (the machine is shared, so no tight bound).
        assert!(unknown * 4 > known, "known {known:?} unknown {unknown:?}");
    }

    #[test]
    fn subaddress_lookup() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        let a = d.import_account("alice@example.org", &secret_hash(), None).unwrap();
        for addr in [
            "alice@example.org",
            "ALICE@example.org",
            "alice+lists@example.org",
            "alice+@Example.Org",
            "alice+a+b@example.org",
        ] {
            assert_eq!(d.lookup(addr).unwrap().map(|x| x.user_id), Some(a.user_id.clone()), "{addr}");
        }
        for addr in
            ["+alice@example.org", "bob@example.org", "alice@example.net", "alice", "", "a/../alice@example.org"]
        {
            assert!(d.lookup(addr).unwrap().is_none(), "{addr}");
        }
    }

    #[test]
    fn import_validates_the_hash() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        // A hash made elsewhere (Python's argon2-cffi, other parameters; password "password").
        let phc = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQxMjM0NTY3OA$ZNOIrrAHtmQzbCNX391HxJY0DBLY7ofdM/Ba6SOqVxg";
        d.import_account("old@example.org", phc, Some(1 << 20)).unwrap();
        d.authenticate("old@example.org", &pw("password")).unwrap();
        assert!(matches!(d.authenticate("old@example.org", &pw("Password")), Err(AuthError::InvalidCredentials)));
        for bad in [
            "",
            "plain",
            "$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$2y$10$abcdefghijklmnopqrstuuJ5hM1bV4y4sJ7yH0e7G1M9X1oZbWz6",
            "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ",
            "$argon2id$v=19$m=4194304,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        ] {
            assert!(matches!(d.import_account("x@example.org", bad, None), Err(DirectoryError::InvalidHash)), "{bad}");
        }
    }

    #[test]
    fn quota_changes() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.import_account("a@example.org", &secret_hash(), None).unwrap();
        d.set_quota("A@example.org", 123).unwrap();
        assert_eq!(d.lookup("a@example.org").unwrap().unwrap().quota_bytes, 123);
        assert!(matches!(d.set_quota("b@example.org", 1), Err(DirectoryError::NoSuchAccount(_))));
    }

    #[test]
    fn message_quota_is_kept_and_old_records_read_as_default() {
        let (tmp, d) = dir();
        d.add_domain("example.org").unwrap();
        let a = d.import_account("a@example.org", &secret_hash(), Some(5000)).unwrap();
        assert_eq!(a.quota_messages, MessageQuota::Default);
        let path = tmp.path().join("directory/domains/example.org/accounts/a.json");
        // A record as written before the field existed has no `quota_messages` at all.
        assert!(!fs::read_to_string(&path).unwrap().contains("quota_messages"));
        let before = d.lookup("a@example.org").unwrap().unwrap();
        d.set_message_quota("a@example.org", MessageQuota::Limit(3)).unwrap();
        let after = d.lookup("a@example.org").unwrap().unwrap();
        assert_eq!(after.quota_messages, MessageQuota::Limit(3));
        assert_eq!((after.quota_bytes, &after.user_id, after.created), (5000, &before.user_id, before.created));
        assert_eq!(after.password_hash.expose(), before.password_hash.expose());
        assert!(fs::read_to_string(&path).unwrap().contains("\"quota_messages\": 3"));
        d.set_message_quota("a@example.org", MessageQuota::Unlimited).unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("\"quota_messages\": \"unlimited\""));
        assert_eq!(d.lookup("a@example.org").unwrap().unwrap().quota_messages.resolve(Some(9)), None);
        d.set_message_quota("a@example.org", MessageQuota::Default).unwrap();
        assert!(!fs::read_to_string(&path).unwrap().contains("quota_messages"));
        assert_eq!(d.lookup("a@example.org").unwrap().unwrap().quota_messages.resolve(Some(9)), Some(9));
        // Damaged values are reported, never taken as "unlimited".
        let text = fs::read_to_string(&path).unwrap().replace("\"quota_bytes\"", "\"quota_messages\": 0,\n  \"quota_bytes\"");
        fs::write(&path, text).unwrap();
        assert!(matches!(d.lookup("a@example.org"), Err(DirectoryError::Corrupt { .. })));
        assert_eq!(MessageQuota::parse("Unlimited"), Ok(MessageQuota::Unlimited));
        assert_eq!(MessageQuota::parse(" 12 "), Ok(MessageQuota::Limit(12)));
        assert!(MessageQuota::parse("0").is_err() && MessageQuota::parse("-1").is_err() && MessageQuota::parse("1k").is_err());
    }

    #[test]
    fn files_are_private() {
        let (tmp, d) = dir();
        d.add_domain("example.org").unwrap();
        d.import_account("a@example.org", &secret_hash(), None).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tmp.path().join("directory");
        for p in [
            root.clone(),
            root.join("domains"),
            root.join("domains/example.org"),
            root.join("domains/example.org/accounts"),
        ] {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        }
        for p in [
            root.join("lock"),
            root.join("domains/example.org/domain.json"),
            root.join("domains/example.org/accounts/a.json"),
        ] {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }

    #[test]
    fn corrupt_records_are_reported_not_used() {
        let (tmp, d) = dir();
        d.add_domain("example.org").unwrap();
        let a = d.import_account("a@example.org", &secret_hash(), None).unwrap();
        let path = tmp.path().join("directory/domains/example.org/accounts/a.json");
        let text = fs::read_to_string(&path).unwrap().replace(a.user_id.as_str(), "../../../../tmp/evil0000000000000");
        fs::write(&path, text).unwrap();
        assert!(matches!(d.lookup("a@example.org"), Err(DirectoryError::Corrupt { .. })));
        fs::write(&path, "{").unwrap();
        assert!(matches!(d.lookup("a@example.org"), Err(DirectoryError::Corrupt { .. })));
        assert!(matches!(d.authenticate("a@example.org", &pw("secret")), Err(AuthError::Directory(_))));
        // A record copied under another name is refused too.
        d.import_account("b@example.org", &secret_hash(), None).unwrap();
        fs::copy(tmp.path().join("directory/domains/example.org/accounts/b.json"), &path).unwrap();
        assert!(matches!(d.lookup("a@example.org"), Err(DirectoryError::Corrupt { .. })));
    }

    #[test]
    fn changes_are_seen_by_other_handles_at_once() {
        let (tmp, d) = dir();
        let other = Directory::open(&DataDir::new(tmp.path())).unwrap();
        d.add_domain("example.org").unwrap();
        assert!(other.lookup("a@example.org").unwrap().is_none());
        d.import_account("a@example.org", &secret_hash(), None).unwrap();
        assert!(other.lookup("a@example.org").unwrap().is_some());
        d.set_quota("a@example.org", 7).unwrap();
        assert_eq!(other.lookup("a@example.org").unwrap().unwrap().quota_bytes, 7);
    }

    #[test]
    fn temp_files_are_ignored() {
        let (tmp, d) = dir();
        d.add_domain("example.org").unwrap();
        let accounts = tmp.path().join("directory/domains/example.org/accounts");
        fs::write(accounts.join(".a.json.tmp.1.2"), "{").unwrap();
        assert!(d.list_accounts(None).unwrap().is_empty());
        d.remove_domain("example.org").unwrap();
    }

    #[test]
    fn concurrent_adds_do_not_corrupt() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        let h = secret_hash();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let d = d.clone();
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        d.import_account(&format!("u{t}-{i}@example.org"), &h, None).unwrap();
                        // Every thread also races on one shared name: exactly one wins.
                        let _ = d.import_account(&format!("shared{i}@example.org"), &h, Some(t));
                        let _ = d.set_quota(&format!("shared{i}@example.org"), 1000 + t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = d.list_accounts(Some("example.org")).unwrap();
        assert_eq!(all.len(), 8 * 25 + 25);
        let ids: std::collections::HashSet<_> = all.iter().map(|a| a.user_id.clone()).collect();
        assert_eq!(ids.len(), all.len());
        for a in &all {
            assert!(a.quota_bytes == DEFAULT_QUOTA_BYTES || (1000..1008).contains(&a.quota_bytes), "{a:?}");
        }
        d.authenticate("u3-7@example.org", &pw("secret")).unwrap();
    }

    #[test]
    fn batch_import() {
        let (tmp, d) = dir();
        d.add_domain("example.org").unwrap();
        d.import_account("taken@example.org", &secret_hash(), None).unwrap();
        let h = secret_hash();
        let e = |a: &str, h: &str| ImportEntry { address: a.into(), phc_hash: h.into(), quota_bytes: Some(9) };
        let results = d
            .import_accounts(&[
                e("A@example.org", &h),
                e("bad..x@example.org", &h),
                e("b@example.org", "nope"),
                e("taken@example.org", &h),
                e("a@example.org", &h),
                e("c@nowhere.org", &h),
                e("c@example.org", &h),
            ])
            .unwrap();
        let kinds: Vec<_> = results
            .iter()
            .map(|r| match r {
                Ok(_) => "ok",
                Err(DirectoryError::InvalidAddress(_)) => "address",
                Err(DirectoryError::InvalidHash) => "hash",
                Err(DirectoryError::AccountExists(_)) => "exists",
                Err(DirectoryError::NoSuchDomain(_)) => "domain",
                Err(_) => "other",
            })
            .collect();
        assert_eq!(kinds, ["ok", "address", "hash", "exists", "exists", "domain", "ok"]);
        assert_eq!(d.lookup("a@example.org").unwrap().unwrap().quota_bytes, 9);
        d.authenticate("c@example.org", &pw("secret")).unwrap();
        let leftovers = fs::read_dir(tmp.path().join("directory/domains/example.org/accounts"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        let a = d.import_account("a@example.org", &secret_hash(), None).unwrap();
        assert!(!format!("{a:?}").contains("argon2"));
    }

    #[test]
    fn aliases_one_to_many_catch_all_and_no_shadowing() {
        let (_t, d) = dir();
        d.add_domain("example.org").unwrap();
        d.import_account("alice@example.org", &secret_hash(), None).unwrap();
        let a = d.add_alias("Team@Example.org", &["alice@example.org".into(), "Bob.X@Other.NET".into(), "alice@example.org".into()]).unwrap();
        assert_eq!(a.address, "team@example.org");
        assert_eq!(a.targets, ["alice@example.org", "Bob.X@other.net"]);
        assert_eq!(d.lookup_alias("TEAM@example.org").unwrap().unwrap().targets.len(), 2);
        assert!(d.lookup_alias("team+x@example.org").unwrap().is_none(), "exact lookup only");
        assert!(matches!(d.add_alias("alice@example.org", &["x@y.org".into()]), Err(DirectoryError::AccountExists(_))));
        assert!(matches!(d.add_alias("x@nowhere.org", &["x@y.org".into()]), Err(DirectoryError::NoSuchDomain(_))));
        assert!(matches!(d.add_alias("x@example.org", &["not an address".into()]), Err(DirectoryError::InvalidTarget(_))));
        assert!(matches!(d.add_alias("x@example.org", &[]), Err(DirectoryError::InvalidTarget(_))));
        d.add_alias("@example.org", &["alice@example.org".into()]).unwrap();
        assert!(d.catch_all("EXAMPLE.org").unwrap().unwrap().is_catch_all());
        let all: Vec<String> = d.list_aliases(None).unwrap().into_iter().map(|a| a.address).collect();
        assert_eq!(all, ["@example.org", "team@example.org"]);
        d.remove_alias("team@example.org").unwrap();
        d.remove_alias("@example.org").unwrap();
        assert!(matches!(d.remove_alias("team@example.org"), Err(DirectoryError::NoSuchAlias(_))));
        assert!(d.list_aliases(Some("example.org")).unwrap().is_empty());
    }
}
