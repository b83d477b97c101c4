//! Config apply: a validated, atomic, versioned edit of `DATA/config/hermes.toml`, its history
//! in `DATA/config/history/`, diffs between versions and rollback.
//!
//! ```text
//! config/hermes.toml                          the configuration in force
//! config/history/<unix ms>-<sha8>.toml        every version applied through the admin UI,
//!                                             and the version it replaced the first time
//! ```
//!
//! What it is not: the reload itself. After a version is written, `ops::apply_config` asks the
//! store and the router to reload it (`{"op":"reload"}` on their sockets, see
//! [`crate::control::reload_all`]); this module only validates, versions and writes.
//!
//! Invariants:
//! - Nothing invalid is ever written: the text must pass `Config::from_toml` (every error is
//!   reported at once, with its field path) before anything touches the disk.
//! - The history copy is written (and fsync'd) before `hermes.toml` is replaced, and the
//!   replacement is atomic (temp file, fsync, rename, fsync folder): a crash leaves the old or
//!   the new file, and every version that was ever in force is in the history.
//! - A version id is `<unix milliseconds>-<8 hex>` (ordered by when it was applied); anything
//!   else is refused before it becomes a path.
//! - Sizes are bounded ([`MAX_CONFIG_BYTES`]); a diff is computed only for inputs within
//!   [`MAX_DIFF_CELLS`], otherwise shown as a whole replacement.

use hermes_core::config::{Config, ConfigError};
use hermes_core::paths::DataDir;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A config file is a few KiB; 256 KiB leaves room for thousands of routes.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// Bound on the line-diff table (old lines × new lines, after trimming common ends).
pub const MAX_DIFF_CELLS: usize = 4_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the configuration is invalid")]
    Invalid(Vec<ConfigError>),
    #[error("nothing changed")]
    Unchanged,
    #[error("the configuration is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge,
    #[error("no such version")]
    NoSuchVersion,
    #[error("config storage: {0}")]
    Io(#[from] std::io::Error),
}

/// One version in the history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Version {
    pub id: String,
    /// When it was applied (Unix seconds).
    pub applied_at: i64,
    #[serde(skip)]
    applied_ms: i64,
    pub sha256_prefix: String,
    pub bytes: u64,
}

fn history_dir(data: &DataDir) -> PathBuf {
    data.config_history_dir()
}

fn sha8(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}

/// A well-formed version id (`1764361812345-a1b2c3d4`).
pub fn valid_id(id: &str) -> bool {
    let Some((ts, h)) = id.split_once('-') else { return false };
    !ts.is_empty()
        && ts.len() <= 16
        && ts.bytes().all(|b| b.is_ascii_digit())
        && h.len() == 8
        && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn read_bounded(path: &std::path::Path) -> Result<Option<String>, ApplyError> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut s = String::new();
    f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_string(&mut s)?;
    if s.len() > MAX_CONFIG_BYTES {
        return Err(ApplyError::TooLarge);
    }
    Ok(Some(s))
}

/// The configuration in force (empty if the file does not exist: the built-in defaults).
pub fn current(data: &DataDir) -> Result<String, ApplyError> {
    Ok(read_bounded(&data.config_file())?.unwrap_or_default())
}

/// Checks a configuration text; every problem with its field path.
pub fn validate(text: &str) -> Result<Config, ApplyError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ApplyError::TooLarge);
    }
    Config::from_toml(text).map_err(|e| ApplyError::Invalid(e.0))
}

fn save_version(data: &DataDir, text: &str, at_ms: i64) -> Result<Version, ApplyError> {
    let id = format!("{at_ms}-{}", sha8(text));
    let path = history_dir(data).join(format!("{id}.toml"));
    if !path.exists() {
        hermes_runtime::fs::write_atomic(&path, text.as_bytes(), 0o600)?;
    }
    Ok(Version { id, applied_at: at_ms / 1000, applied_ms: at_ms, sha256_prefix: sha8(text), bytes: text.len() as u64 })
}

/// Validates `text` and makes it the configuration in force, keeping every version.
/// Blocking (fsync). Callers serialise applies (one admin process; `AppState` holds a lock).
pub fn apply(data: &DataDir, text: &str) -> Result<Version, ApplyError> {
    // Browsers submit textareas with CRLF line ends; the file keeps LF.
    let text = text.replace("\r\n", "\n");
    validate(&text)?;
    let old = current(data)?;
    if old == text {
        return Err(ApplyError::Unchanged);
    }
    let now = chrono::Utc::now().timestamp_millis();
    // The first apply also keeps the version it replaces (the one `hermes up` wrote, or a
    // hand edit), so rollback can always reach it.
    if !old.is_empty()
        && !list(data)?
            .iter()
            .any(|v| v.sha256_prefix == sha8(&old) && version_text(data, &v.id).ok().as_deref() == Some(old.as_str()))
    {
        save_version(data, &old, now.saturating_sub(1))?;
    }
    let v = save_version(data, &text, now)?;
    hermes_runtime::fs::write_atomic(&data.config_file(), text.as_bytes(), 0o600)?;
    Ok(v)
}

/// Every version in the history, newest first.
pub fn list(data: &DataDir) -> Result<Vec<Version>, ApplyError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(history_dir(data)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let Some(id) = entry.file_name().to_str().and_then(|n| n.strip_suffix(".toml")).map(str::to_string) else {
            continue;
        };
        if !valid_id(&id) {
            continue;
        }
        let (ts, h) = id.split_once('-').unwrap_or(("0", ""));
        let ms: i64 = ts.parse().unwrap_or(0);
        out.push(Version {
            applied_at: ms / 1000,
            applied_ms: ms,
            sha256_prefix: h.to_string(),
            bytes: entry.metadata().map(|m| m.len()).unwrap_or(0),
            id,
        });
    }
    out.sort_by(|a, b| b.applied_ms.cmp(&a.applied_ms).then_with(|| b.id.cmp(&a.id)));
    Ok(out)
}

/// The text of version `id`.
pub fn version_text(data: &DataDir, id: &str) -> Result<String, ApplyError> {
    if !valid_id(id) {
        return Err(ApplyError::NoSuchVersion);
    }
    read_bounded(&history_dir(data).join(format!("{id}.toml")))?.ok_or(ApplyError::NoSuchVersion)
}

/// Makes version `id` the configuration in force again (validated like any apply: a version
/// that the current code no longer accepts is refused with its errors).
pub fn rollback(data: &DataDir, id: &str) -> Result<Version, ApplyError> {
    let text = version_text(data, id)?;
    apply(data, &text)
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffLine {
    /// `' '` unchanged, `'-'` only in the old text, `'+'` only in the new.
    pub kind: char,
    pub text: String,
}

/// A line diff of `old` → `new` (longest common subsequence on the lines between the common
/// prefix and suffix; beyond [`MAX_DIFF_CELLS`], the middle is shown as removed then added).
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let line = |kind, t: &str| DiffLine { kind, text: t.to_string() };
    let mut out: Vec<DiffLine> = a[..prefix].iter().map(|t| line(' ', t)).collect();
    if am.len().saturating_mul(bm.len()) > MAX_DIFF_CELLS {
        out.extend(am.iter().map(|t| line('-', t)));
        out.extend(bm.iter().map(|t| line('+', t)));
    } else {
        // lcs[i][j]: LCS length of am[i..] and bm[j..].
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                out.push(line(' ', am[i]));
                i += 1;
                j += 1;
            } else if j < m && (i == n || lcs[i * (m + 1) + j + 1] >= lcs[(i + 1) * (m + 1) + j]) {
                out.push(line('+', bm[j]));
                j += 1;
            } else {
                out.push(line('-', am[i]));
                i += 1;
            }
        }
    }
    out.extend(a[a.len() - suffix..].iter().map(|t| line(' ', t)));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn apply_keeps_every_version_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        hermes_runtime::fs::write_atomic(&data.config_file(), b"[imap]\nport = 10143\n", 0o600).unwrap();
        let e = apply(&data, "[imap]\nport = \"x\"\n").unwrap_err();
        assert!(matches!(e, ApplyError::Invalid(_)));
        let e = apply(&data, "[imap]\nportt = 1\n[store]\nzstd_level = 99\n").unwrap_err();
        assert!(matches!(e, ApplyError::Invalid(ref v) if v[0].message.contains("portt")), "{e:?}");
        assert_eq!(current(&data).unwrap(), "[imap]\nport = 10143\n", "nothing invalid is written");
        assert!(matches!(apply(&data, "[imap]\nport = 10143\n"), Err(ApplyError::Unchanged)));
        let v1 = apply(&data, "[imap]\r\nport = 20143\r\n").unwrap();
        assert_eq!(current(&data).unwrap(), "[imap]\nport = 20143\n");
        let versions = list(&data).unwrap();
        assert_eq!(versions.len(), 2, "the replaced original is kept too");
        assert_eq!(versions[0].id, v1.id);
        let original = &versions[1];
        rollback(&data, &original.id).unwrap();
        assert_eq!(current(&data).unwrap(), "[imap]\nport = 10143\n");
        assert!(matches!(version_text(&data, "../../etc/passwd"), Err(ApplyError::NoSuchVersion)));
    }

    #[test]
    fn diffs() {
        let d = diff("a\nb\nc\nd\n", "a\nc\nx\nd\n");
        let s: Vec<String> = d.iter().map(|l| format!("{}{}", l.kind, l.text)).collect();
        assert_eq!(s, [" a", "-b", " c", "+x", " d"]);
        assert!(diff("same\n", "same\n").iter().all(|l| l.kind == ' '));
        assert_eq!(diff("", "new\n"), [DiffLine { kind: '+', text: "new".into() }]);
    }
}
