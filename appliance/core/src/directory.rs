//! The directory: domains and accounts, stored as one small file per account so that the CLI
//! and a running server share it without a daemon, and a change takes effect at the next lookup.
//!
//! CONTRACT (bodies are being written; signatures are fixed — other crates code against them):
//! - Addresses are `local@domain`, compared case-insensitively (stored lowercased).
//! - Passwords are hashed with argon2id (PHC string). [`Directory::authenticate`] is blocking
//!   (argon2 costs tens of milliseconds): async callers use `spawn_blocking`.
//! - Every account has a [`UserId`]: random, never reused, the name of its folder in the store,
//!   so deleting and re-adding an address never resurrects old mail.
//! - Writes are atomic (temp file, fsync, rename, fsync folder) and serialised by a lock file.
//!
//! **Architecture Invariant:** only [`Directory::authenticate`] constructs [`Authenticated`].

use crate::secret::Secret;
use std::path::PathBuf;

/// The store's stable name for an account: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct UserId(String);

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
    /// Unix seconds.
    pub created: i64,
    /// The argon2id PHC string. Never logged (Account's Debug is derived, so keep it in a Secret).
    pub password_hash: Secret<String>,
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

/// A handle on `DATA/directory`. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Directory {
    root: PathBuf,
}

impl Directory {
    /// Opens (creating if missing) the directory under `data`.
    pub fn open(data: &crate::paths::DataDir) -> Result<Directory, DirectoryError> {
        let root = data.directory_dir();
        std::fs::create_dir_all(&root)?;
        Ok(Directory { root })
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    // The following are implemented in this module (signatures fixed):
    // pub fn add_domain(&self, domain: &str) -> Result<(), DirectoryError>
    // pub fn remove_domain(&self, domain: &str) -> Result<(), DirectoryError>   // refuses if accounts remain
    // pub fn list_domains(&self) -> Result<Vec<String>, DirectoryError>        // sorted
    // pub fn has_domain(&self, domain: &str) -> Result<bool, DirectoryError>
    // pub fn add_account(&self, address: &str, password: &Secret<String>, quota_bytes: Option<u64>) -> Result<Account, DirectoryError>
    // pub fn import_account(&self, address: &str, phc_hash: &str, quota_bytes: Option<u64>) -> Result<Account, DirectoryError>
    // pub fn set_password(&self, address: &str, password: &Secret<String>) -> Result<(), DirectoryError>
    // pub fn set_quota(&self, address: &str, quota_bytes: u64) -> Result<(), DirectoryError>
    // pub fn remove_account(&self, address: &str) -> Result<Account, DirectoryError>
    // pub fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<Account>, DirectoryError>  // sorted by address
    // pub fn lookup(&self, address: &str) -> Result<Option<Account>, DirectoryError>
    //     // `user+tag@domain` resolves to `user@domain` (subaddressing)
    // pub fn authenticate(&self, login: &str, password: &Secret<String>) -> Result<Authenticated, AuthError>
    //     // blocking; runs argon2 verification even for unknown users (equal timing)
}

/// Default quota for new accounts: 1 GiB, the seed service's figure rounded up.
pub const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;
