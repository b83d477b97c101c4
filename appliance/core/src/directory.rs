//! The directory: domains and accounts, stored as one small file per account so that the CLI
//! and a running server share it without a daemon, and a change takes effect at the next lookup.
//!
//! What it is: the embedded account database of a Hermes box and the only code that checks
//! passwords. What it is not: a cache (every [`Directory::lookup`] reads the file, so a change
//! made by `hermes account ...` is seen by a running server at its next lookup), an alias or
//! routing table (a later issue), or an LDAP client (multi-box deployments, a later issue).
//!
//! On disk (`DATA/directory/`, folders 0700, files 0600):
//!
//! ```text
//! lock                                      flock(2)ed exclusively by every writer
//! domains/<domain>/domain.json              {"domain": "...", "created": <unix seconds>}
//! domains/<domain>/accounts/<local>.json    one [`Account`] (JSON)
//! ```
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
//!   addresses exist.
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
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

