//! Per-user Sieve script storage: the scripts, which one is active, the last error a script
//! caused at delivery, and the vacation reply log.
//!
//! Layout (one folder per user, beside the mail store's `users/`, inside `DATA/store` so that
//! only the store process — the one service allowed to write there — writes it):
//!
//! ```text
//! DATA/store/sieve/<user-id>/
//!   scripts/<hex of the name>.sieve   one file per script (hex keeps any UTF-8 name file-safe)
//!   active                            the active script's name; absent: no script active
//!   last-error                        the last compile/run failure at delivery (text)
//!   vacation.json                     (sender, handle) → when the reply may be sent again
//! ```
//!
//! What it is not: no compiling (the caller checks a script before [`ScriptStore::put`]), and no
//! part of the mail store's change log: scripts are small configuration, not mail.
//!
//! Invariants:
//! - Every write is atomic and durable: a temporary file in the same folder, fsync, rename,
//!   fsync of the folder. A crash leaves the old or the new version, never a torn one.
//! - Mutations of one user are serialised by a per-user lock ([`user_lock`]), so count and
//!   size limits cannot be raced past by two sessions.
//! - At most `max_scripts` scripts of at most `max_bytes` each; the active script cannot be
//!   deleted (RFC 5804 §2.10), and renaming it keeps it active.

use hermes_core::directory::UserId;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// Why a script operation was refused; each maps to a ManageSieve response code.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("no such script")]
    NonExistent,
    #[error("a script with that name already exists")]
    AlreadyExists,
    #[error("the active script cannot be deleted")]
    Active,
    #[error("script too large")]
    TooLarge,
    #[error("too many scripts")]
    TooMany,
    #[error("script storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// Scripts of every user under one root (`DATA/store/sieve`).
#[derive(Debug, Clone)]
pub struct ScriptStore {
    root: PathBuf,
    max_bytes: usize,
    max_scripts: usize,
}

/// One script as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptEntry {
    pub name: String,
    pub active: bool,
}

const LOCK_STRIPES: usize = 64;
static LOCKS: LazyLock<Vec<Mutex<()>>> = LazyLock::new(|| (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect());

/// The lock serialising writes of `user`'s Sieve folder (striped: a few users share one).
pub fn user_lock(user: &UserId) -> MutexGuard<'static, ()> {
    let h = user.as_str().bytes().fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(usize::from(b)));
    // A poisoned stripe only means a thread panicked while holding it; files are still whole.
    LOCKS[h % LOCK_STRIPES].lock().unwrap_or_else(|e| e.into_inner())
}

fn hex_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex_name(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".sieve")?;
    if stem.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..stem.len()).step_by(2).map(|i| u8::from_str_radix(stem.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// Writes `data` to `path` atomically and durably (temp file, fsync, rename, fsync folder).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("path without a folder"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn remove_durable(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl ScriptStore {
    /// `root` is `DATA/store/sieve`; nothing is created until the first write.
    pub fn new(root: PathBuf, max_bytes: usize, max_scripts: usize) -> ScriptStore {
        ScriptStore { root, max_bytes, max_scripts }
    }

    /// `DATA/store/sieve` for a data folder.
    pub fn root_for(data: &hermes_core::paths::DataDir) -> PathBuf {
        data.store_dir().join("sieve")
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub fn user_dir(&self, user: &UserId) -> PathBuf {
        // A UserId is 32 hex digits, always a safe file name.
        self.root.join(user.as_str())
    }

    fn scripts_dir(&self, user: &UserId) -> PathBuf {
        self.user_dir(user).join("scripts")
    }

    fn script_path(&self, user: &UserId, name: &str) -> PathBuf {
        self.scripts_dir(user).join(format!("{}.sieve", hex_name(name)))
    }

    fn active_file(&self, user: &UserId) -> PathBuf {
        self.user_dir(user).join("active")
    }

    pub(crate) fn vacation_file(&self, user: &UserId) -> PathBuf {
        self.user_dir(user).join("vacation.json")
    }

    fn error_file(&self, user: &UserId) -> PathBuf {
        self.user_dir(user).join("last-error")
    }

    fn names(&self, user: &UserId) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        match std::fs::read_dir(self.scripts_dir(user)) {
            Ok(rd) => {
                for e in rd {
                    let e = e?;
                    if let Some(n) = e.file_name().to_str().and_then(unhex_name) {
                        names.push(n);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        names.sort();
        Ok(names)
    }

    /// The active script's name, if one is set and still exists.
    pub fn active_name(&self, user: &UserId) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(self.active_file(user)) {
            Ok(name) => {
                let name = name.trim_end_matches('\n').to_string();
                Ok(self.script_path(user, &name).exists().then_some(name))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The active script's file path, for delivery (the caller caches its compiled form).
    pub fn active_path(&self, user: &UserId) -> std::io::Result<Option<(String, PathBuf)>> {
        Ok(self.active_name(user)?.map(|n| {
            let p = self.script_path(user, &n);
            (n, p)
        }))
    }

    pub fn list(&self, user: &UserId) -> std::io::Result<Vec<ScriptEntry>> {
        let active = self.active_name(user)?;
        Ok(self
            .names(user)?
            .into_iter()
            .map(|name| ScriptEntry { active: active.as_deref() == Some(&name), name })
            .collect())
    }

    pub fn get(&self, user: &UserId, name: &str) -> Result<Vec<u8>, ScriptError> {
        match std::fs::read(self.script_path(user, name)) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ScriptError::NonExistent),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a script of `size` octets named `name` would fit (RFC 5804 HAVESPACE).
    pub fn have_space(&self, user: &UserId, name: &str, size: u64) -> Result<(), ScriptError> {
        if size > self.max_bytes as u64 {
            return Err(ScriptError::TooLarge);
        }
        let names = self.names(user)?;
        if !names.iter().any(|n| n == name) && names.len() >= self.max_scripts {
            return Err(ScriptError::TooMany);
        }
        Ok(())
    }

    /// Stores (creating or replacing) a script the caller has already compiled.
    pub fn put(&self, user: &UserId, name: &str, content: &[u8]) -> Result<(), ScriptError> {
        let _g = user_lock(user);
        self.have_space(user, name, content.len() as u64)?;
        write_atomic(&self.script_path(user, name), content)?;
        Ok(())
    }

    pub fn delete(&self, user: &UserId, name: &str) -> Result<(), ScriptError> {
        let _g = user_lock(user);
        if self.active_name(user)?.as_deref() == Some(name) {
            return Err(ScriptError::Active);
        }
        match remove_durable(&self.script_path(user, name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ScriptError::NonExistent),
            Err(e) => Err(e.into()),
        }
    }

    pub fn rename(&self, user: &UserId, old: &str, new: &str) -> Result<(), ScriptError> {
        let _g = user_lock(user);
        let from = self.script_path(user, old);
        let to = self.script_path(user, new);
        if !from.exists() {
            return Err(ScriptError::NonExistent);
        }
        if old == new {
            return Ok(());
        }
        if to.exists() {
            return Err(ScriptError::AlreadyExists);
        }
        let was_active = self.active_name(user)?.as_deref() == Some(old);
        // rename(2) would replace a target created meanwhile; the lock rules that out here.
        std::fs::rename(&from, &to)?;
        std::fs::File::open(self.scripts_dir(user))?.sync_all()?;
        if was_active {
            write_atomic(&self.active_file(user), new.as_bytes())?;
        }
        Ok(())
    }

    /// Makes `name` the active script; `None` deactivates scripts (RFC 5804 §2.8).
    pub fn set_active(&self, user: &UserId, name: Option<&str>) -> Result<(), ScriptError> {
        let _g = user_lock(user);
        match name {
            Some(n) => {
                if !self.script_path(user, n).exists() {
                    return Err(ScriptError::NonExistent);
                }
                write_atomic(&self.active_file(user), n.as_bytes())?;
            }
            None => match remove_durable(&self.active_file(user)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    }

    /// Records why the user's script failed at delivery (kept until the next failure or until
    /// the script changes), with the time, for ManageSieve and `hermes sieve`.
    pub fn record_error(&self, user: &UserId, text: &str) {
        let line = format!("{} {}\n", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), text);
        let _g = user_lock(user);
        if let Err(e) = write_atomic(&self.error_file(user), line.as_bytes()) {
            tracing::warn!(user = %user, error = %e, "could not record the Sieve error");
        }
    }

    pub fn last_error(&self, user: &UserId) -> Option<String> {
        std::fs::read_to_string(self.error_file(user)).ok().map(|s| s.trim_end().to_string()).filter(|s| !s.is_empty())
    }

    pub fn clear_error(&self, user: &UserId) {
        let _g = user_lock(user);
        match remove_durable(&self.error_file(user)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(user = %user, error = %e, "could not clear the Sieve error"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn names_round_trip_through_file_names() {
        for n in ["vacation", "Ünïcode ✓", "a/b\\c", ".."] {
            assert_eq!(unhex_name(&format!("{}.sieve", hex_name(n))).as_deref(), Some(n));
        }
        assert_eq!(unhex_name("zz.sieve"), None);
        assert_eq!(unhex_name(".tmp-1-2"), None);
    }

    #[test]
    fn scripts_lifecycle_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let s = ScriptStore::new(dir.path().join("sieve"), 10, 2);
        let u = user();
        assert!(s.list(&u).unwrap().is_empty());
        s.put(&u, "a", b"keep;").unwrap();
        assert!(matches!(s.put(&u, "b", b"01234567890"), Err(ScriptError::TooLarge)));
        s.put(&u, "b", b"discard;").unwrap();
        assert!(matches!(s.put(&u, "c", b"keep;"), Err(ScriptError::TooMany)));
        s.put(&u, "b", b"keep;").unwrap(); // replacing does not count twice
        s.set_active(&u, Some("a")).unwrap();
        assert!(matches!(s.delete(&u, "a"), Err(ScriptError::Active)));
        s.rename(&u, "a", "c").unwrap();
        assert_eq!(s.active_name(&u).unwrap().as_deref(), Some("c"), "renaming keeps it active");
        assert!(matches!(s.rename(&u, "b", "c"), Err(ScriptError::AlreadyExists)));
        assert!(matches!(s.set_active(&u, Some("zz")), Err(ScriptError::NonExistent)));
        let l = s.list(&u).unwrap();
        assert_eq!(
            l,
            vec![ScriptEntry { name: "b".into(), active: false }, ScriptEntry { name: "c".into(), active: true }]
        );
        s.set_active(&u, None).unwrap();
        s.delete(&u, "c").unwrap();
        assert!(matches!(s.get(&u, "c"), Err(ScriptError::NonExistent)));
        s.record_error(&u, "line 1: boom");
        assert!(s.last_error(&u).unwrap().ends_with("line 1: boom"));
        s.clear_error(&u);
        assert_eq!(s.last_error(&u), None);
        let leftovers: Vec<_> =
            std::fs::read_dir(s.user_dir(&u).join("scripts")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    }
}
