//! A size-rotated log file: `DATA/log/hermes.log`, where host mode's supervisor keeps every
//! service's JSON log lines (the appliance's init keeps `DATA/log/console.log`).
//!
//! ```text
//! log/hermes.log        the current file, appended to
//! log/hermes.1.log      the previous one (then .2, .3: the oldest is dropped)
//! ```
//!
//! What it is not: no fsync per line (a log is not acknowledged data; a crash may lose the last
//! lines, never tear an earlier one), no compression, no shipping.
//!
//! Invariants: one `write_all` per line under a mutex, so lines never interleave; the files
//! never grow past [`LogFile::max_bytes`] plus one line; a write error is counted, never
//! propagated (a full disk must not stop a mail service), and the file is reopened on the next
//! line so a removed or rotated-away file is recreated.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Default size at which the file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Rotated files kept besides the current one.
pub const DEFAULT_KEEP: usize = 3;

pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<File>,
    size: u64,
    errors: u64,
}

impl LogFile {
    /// Opens (creating the folder and the file, mode 0640) `path` for appending.
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64, keep: usize) -> std::io::Result<LogFile> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path,
            max_bytes: max_bytes.max(4096),
            keep,
            inner: Mutex::new(Inner { file: Some(file), size, errors: 0 }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Lines that could not be written since the file was opened.
    pub fn errors(&self) -> u64 {
        self.inner.lock().map(|i| i.errors).unwrap_or(0)
    }

    /// Appends one line (`line` should end with `\n`; one is added if it does not).
    pub fn write_line(&self, line: &[u8]) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let len = line.len() as u64 + u64::from(!line.ends_with(b"\n"));
        if inner.size > 0 && inner.size + len > self.max_bytes {
            inner.file = None;
            self.rotate();
            inner.size = 0;
        }
        if inner.file.is_none() {
            match open_append(&self.path) {
                Ok(f) => {
                    inner.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    inner.file = Some(f);
                }
                Err(_) => {
                    inner.errors += 1;
                    return;
                }
            }
        }
        let Some(file) = inner.file.as_mut() else { return };
        let ok = if line.ends_with(b"\n") {
            file.write_all(line).is_ok()
        } else {
            let mut owned = Vec::with_capacity(line.len() + 1);
            owned.extend_from_slice(line);
            owned.push(b'\n');
            file.write_all(&owned).is_ok()
        };
        if ok {
            inner.size += len;
        } else {
            inner.errors += 1;
            inner.file = None;
        }
    }

    /// `hermes.log` → `hermes.1.log` → ... → `hermes.KEEP.log` (dropped beyond).
    fn rotate(&self) {
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
        }
        let _ = std::fs::rename(&self.path, self.numbered(1));
    }

    /// The `n`th rotated file: `hermes.log` → `hermes.N.log`.
    pub fn numbered(&self, n: usize) -> PathBuf {
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = self.path.extension().map(|s| s.to_string_lossy().into_owned());
        let name = match ext {
            Some(ext) => format!("{stem}.{n}.{ext}"),
            None => format!("{stem}.{n}"),
        };
        self.path.with_file_name(name)
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn appends_rotates_and_keeps_bounded_history() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(dir.path().join("log/hermes.log"), 4096, 2).unwrap();
        let line = [b'x'; 99];
        for _ in 0..200 {
            log.write_line(&line);
        }
        let current = std::fs::metadata(log.path()).unwrap().len();
        assert!(current <= 4096, "current file {current} bytes");
        assert_eq!(current % 100, 0, "only whole lines");
        assert!(log.numbered(1).exists() && log.numbered(2).exists());
        assert!(!log.numbered(3).exists(), "only two rotated files kept");
        assert_eq!(log.numbered(1).file_name().unwrap(), "hermes.1.log");
        let text = std::fs::read_to_string(log.numbered(1)).unwrap();
        assert!(text.lines().all(|l| l.len() == 99));
        assert_eq!(log.errors(), 0);
    }

    #[test]
    fn a_removed_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(dir.path().join("hermes.log"), 1 << 20, 1).unwrap();
        log.write_line(b"one\n");
        std::fs::remove_file(log.path()).unwrap();
        // The open handle still writes to the unlinked file; after rotation or an error the
        // path is reopened. Force a reopen by rotating: fill past the limit.
        let small = LogFile::open(dir.path().join("small.log"), 4096, 1).unwrap();
        small.write_line(&[b'a'; 4000]);
        std::fs::remove_file(small.path()).unwrap();
        small.write_line(&[b'b'; 200]);
        assert!(small.path().exists(), "recreated after rotation");
        log.write_line(b"two");
        assert_eq!(log.errors(), 0);
    }
}
