//! Bounded reads and writes of sysfs/procfs attribute files under a root path.
//!
//! Not a cache and not a watcher: each call opens, reads and closes one small file.
//! Invariants: a read never returns more than [`MAX_ATTR_BYTES`] bytes (a larger file is an error,
//! not a silent truncation), text is trimmed, and a missing file is `Ok(None)`, not an error,
//! because sysfs attributes legitimately come and go with the kernel's version and device state.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest sysfs attribute we read. Real attributes are one line; `/proc/mdstat` has its own cap.
pub(crate) const MAX_ATTR_BYTES: usize = 64 * 1024;

/// Reads at most `max` bytes of a file; `Ok(None)` if it does not exist.
pub(crate) fn read_bounded(path: &Path, max: usize) -> io::Result<Option<Vec<u8>>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(Some(buf))
}

/// A trimmed text attribute; `Ok(None)` if the file does not exist.
pub(crate) fn read_attr(path: &Path) -> io::Result<Option<String>> {
    Ok(read_bounded(path, MAX_ATTR_BYTES)?.map(|b| String::from_utf8_lossy(&b).trim().to_string()))
}

/// An attribute parsed as an unsigned integer (first whitespace-separated token).
pub(crate) fn read_u64(path: &Path) -> io::Result<Option<u64>> {
    Ok(read_attr(path)?.and_then(|s| s.split_whitespace().next()?.parse().ok()))
}

/// Writes one attribute value (sysfs stores take a single write).
pub(crate) fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// `root` joined with an absolute-looking path such as `/sys/block`.
pub(crate) fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Names of the entries of a directory, sorted; empty if it does not exist. At most `max`.
pub(crate) fn list_dir(path: &Path, max: usize) -> io::Result<Vec<String>> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
        if names.len() >= max {
            break;
        }
    }
    names.sort();
    Ok(names)
}
