//! The audit log: one JSON object per line in `DATA/admin/audit.log`, for every change made
//! through the admin service (and every sign-in, failed or not).
//!
//! Each line: `{"ts":"2026-11-28T21:10:12Z","admin":"root","peer":"127.0.0.1","action":
//! "account.create","target":"alice@example.org","ok":true,"detail":"..."}`.
//!
//! What it is not: the service log (that is stderr, collected by the supervisor), and not
//! tamper-proof against root on the box.
//!
//! Invariants: a line is appended with one `write` on an `O_APPEND` file and fsync'd before the
//! change is reported done, so a reader never sees a torn line and an acknowledged change is
//! always in the log; secrets (passwords, tokens) are never passed in; every string field is
//! bounded ([`MAX_FIELD`]); reading ([`tail`]) is bounded to the last [`MAX_TAIL_BYTES`].

use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// Longest string field, in characters.
pub const MAX_FIELD: usize = 512;
/// How much of the end of the log the logs page reads.
pub const MAX_TAIL_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub ts: String,
    pub admin: String,
    pub peer: String,
    pub action: String,
    #[serde(default)]
    pub target: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    write: Mutex<()>,
}

fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

impl AuditLog {
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog { path, write: Mutex::new(()) }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one entry durably. Blocking (fsync). A failure is logged and returned.
    pub fn record(
        &self,
        admin: &str,
        peer: &str,
        action: &str,
        target: &str,
        ok: bool,
        detail: &str,
    ) -> std::io::Result<()> {
        let entry = Entry {
            ts: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            admin: bounded(admin),
            peer: bounded(peer),
            action: bounded(action),
            target: bounded(target),
            ok,
            detail: bounded(detail),
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path)?;
            f.write_all(&line)?;
            f.sync_data()
        })();
        if let Err(e) = &result {
            tracing::error!(error = %e, action, "audit log write failed");
        }
        result
    }

    /// The last entries (newest first), at most `limit`, from the last [`MAX_TAIL_BYTES`].
    pub fn tail(&self, limit: usize) -> std::io::Result<Vec<Entry>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let start = len.saturating_sub(MAX_TAIL_BYTES);
        f.seek(std::io::SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        f.take(MAX_TAIL_BYTES).read_to_end(&mut buf)?;
        let mut lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
        if start > 0 && !lines.is_empty() {
            lines.remove(0); // a partial first line
        }
        Ok(lines.iter().rev().filter_map(|l| serde_json::from_slice(l).ok()).take(limit).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn append_and_tail_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"));
        log.record("root", "127.0.0.1", "domain.add", "example.org", true, "").unwrap();
        log.record("root", "127.0.0.1", "account.delete", &"x".repeat(2000), false, "refused").unwrap();
        let t = log.tail(10).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].action, "account.delete");
        assert!(t[0].target.chars().count() <= MAX_FIELD + 1);
        assert_eq!(t[1].target, "example.org");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(log.path()).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }
}
