//! Message files: one zstd-compressed raw message per file, named by a random 128-bit id.
//!
//! What it is: naming, writing (compress, write, fsync), hard-linking, reading (bounded
//! decompression) and listing of message files, plus the fsync helpers the store uses.
//! What it is not: the bookkeeping of which message uses which file (that is `state`, which
//! counts references) nor the decision to delete one (that is `user`, after the change that
//! dropped the last reference is durable).
//!
//! Invariants:
//! - A file's content never changes after it is fsync'd; a name is created once (`create_new`).
//! - A file name is `<32 lowercase hex digits>.zst`; anything else in `msgs/` is not ours to
//!   delete except `*.tmp` leftovers.
//! - Reading never produces more than the caller's bound (the configured maximum message size).

use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The permanent name of one stored message file (random, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileId(pub u128);

impl FileId {
    pub(crate) fn random() -> FileId {
        FileId(rand::random::<u128>())
    }
    pub(crate) fn file_name(self) -> String {
        format!("{:032x}.zst", self.0)
    }
    /// Parses a file name made by [`FileId::file_name`].
    pub(crate) fn parse_file_name(name: &str) -> Option<FileId> {
        let hex = name.strip_suffix(".zst")?;
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().map(FileId)
    }
}

pub(crate) fn path_in(dir: &Path, id: FileId) -> PathBuf {
    dir.join(id.file_name())
}

/// Compresses `raw` at `level`.
pub(crate) fn compress(raw: &[u8], level: i32) -> Result<Vec<u8>, StoreError> {
    zstd::bulk::compress(raw, level).map_err(StoreError::Io)
}

/// Writes `compressed` to a new file `path` and fsyncs its data (not its folder).
pub(crate) fn write_new(path: &Path, compressed: &[u8]) -> Result<(), StoreError> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    let res = f.write_all(compressed).and_then(|()| f.sync_data());
    if let Err(e) = res {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e.into());
    }
    Ok(())
}

/// Reads and decompresses a message file, refusing output beyond `limit` bytes.
pub(crate) fn read(path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NoSuchMessage),
        Err(e) => return Err(e.into()),
    };
    let decoder = zstd::stream::read::Decoder::new(f)?;
    let mut out = Vec::new();
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| StoreError::Corrupt(format!("message file {}: {e}", path.display())))?;
    if out.len() as u64 > limit {
        return Err(StoreError::Corrupt(format!("message file {} larger than the limit", path.display())));
    }
    Ok(out)
}

/// Reads and decompresses the start of a message file: up to and including the blank line that
/// ends its header, or at most `limit` bytes when no blank line comes first (a header without a
/// body, or a hostile one). Decompresses only as much as it returns (plus one read's worth).
pub(crate) fn read_head(path: &Path, limit: usize) -> Result<Vec<u8>, StoreError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NoSuchMessage),
        Err(e) => return Err(e.into()),
    };
    let mut decoder = zstd::stream::read::Decoder::new(f)?;
    let mut out: Vec<u8> = Vec::with_capacity(limit.min(16 * 1024));
    let mut chunk = [0u8; 4096];
    while out.len() < limit {
        let want = chunk.len().min(limit - out.len());
        let n = decoder
            .read(chunk.get_mut(..want).unwrap_or_default())
            .map_err(|e| StoreError::Corrupt(format!("message file {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        // Search from just before the new bytes, so a blank line split across reads is found.
        let from = out.len().saturating_sub(3);
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = header_end(&out, from) {
            out.truncate(end);
            break;
        }
    }
    Ok(out)
}

/// The index just past the first blank line (LF LF or LF CR LF) at or after `from`, if any; a
/// message that starts with a blank line has an empty header.
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    if from == 0 {
        if buf.starts_with(b"\n") {
            return Some(1);
        }
        if buf.starts_with(b"\r\n") {
            return Some(2);
        }
    }
    let mut i = from;
    while let Some(rel) = buf.get(i..).and_then(|rest| rest.iter().position(|&c| c == b'\n')) {
        let lf = i + rel;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// fsyncs a directory so that names created or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Creates `dir` (and parents) if missing, fsyncing each created level's parent.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Every message file in `dir` (names that are not ours are skipped), plus `*.tmp` leftovers.
pub(crate) fn list(dir: &Path) -> Result<(Vec<FileId>, Vec<PathBuf>), StoreError> {
    let mut ids = Vec::new();
    let mut tmp = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = FileId::parse_file_name(name) {
            ids.push(id);
        } else if name.ends_with(".tmp") {
            tmp.push(entry.path());
        }
    }
    Ok((ids, tmp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let id = FileId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.file_name(), "0123456789abcdef0011223344556677.zst");
        assert_eq!(FileId::parse_file_name(&id.file_name()), Some(id));
        for bad in ["x.zst", "0123456789ABCDEF0011223344556677.zst", "0123456789abcdef0011223344556677", ""] {
            assert_eq!(FileId::parse_file_name(bad), None);
        }
    }

    #[test]
    fn write_read_and_bounded_decompression() {
        let dir = tempfile::tempdir().unwrap();
        let raw = b"Subject: hi\r\n\r\nbody\r\n".repeat(100);
        let p = path_in(dir.path(), FileId::random());
        write_new(&p, &compress(&raw, 3).unwrap()).unwrap();
        assert_eq!(read(&p, raw.len() as u64).unwrap(), raw);
        assert!(matches!(read(&p, 10), Err(StoreError::Corrupt(_))));
        std::fs::write(p.with_extension("bad"), b"not zstd").unwrap();
        assert!(read(&p.with_extension("bad"), 100).is_err());
        assert!(matches!(read(&dir.path().join("missing.zst"), 100), Err(StoreError::NoSuchMessage)));
    }
}
