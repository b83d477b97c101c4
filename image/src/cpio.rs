//! A writer for the "newc" cpio format (`070701`), the format the Linux kernel unpacks as an
//! initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! What it is not: a general archiver. It writes directories, regular files, symlinks and
//! character devices from memory; it never reads the host's metadata, so building an image
//! needs no root (device nodes are just headers) and the output depends only on the entries.
//!
//! Invariants: entries are written sorted by path with parents before children (the caller's
//! insertion order does not matter); every mtime is the archive's fixed `mtime`, every owner
//! is the entry's declared uid/gid, inode numbers count from 1 in output order; so the same
//! entries always give the same bytes. Paths are relative, clean and unique.

use std::collections::BTreeMap;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A character device `major:minor`.
    CharDev(u32, u32),
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (the file type comes from `kind`).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    #[error("`{0}` is not a clean relative path")]
    BadPath(String),
    #[error("`{0}` is added twice")]
    Duplicate(String),
    #[error("`{0}` is larger than cpio's 4 GiB limit")]
    TooLarge(String),
}

/// An archive being assembled in memory.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn clean(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds an entry, and every missing parent folder (mode 0755, root).
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<(), CpioError> {
        if !clean(path) {
            return Err(CpioError::BadPath(path.to_string()));
        }
        if let Kind::File(data) = &entry.kind
            && u32::try_from(data.len()).is_err()
        {
            return Err(CpioError::TooLarge(path.to_string()));
        }
        let mut parent = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for c in &components[..components.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            self.entries.entry(parent.clone()).or_insert(Entry { kind: Kind::Dir, perm: 0o755, uid: 0, gid: 0 });
        }
        match self.entries.get(path) {
            // A folder made implicitly may be restated explicitly (say, with other permissions).
            Some(existing) if existing.kind == Kind::Dir && entry.kind == Kind::Dir => {
                self.entries.insert(path.to_string(), entry);
                Ok(())
            }
            Some(_) => Err(CpioError::Duplicate(path.to_string())),
            None => {
                self.entries.insert(path.to_string(), entry);
                Ok(())
            }
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        self.add(path, Entry { kind: Kind::Dir, perm, uid: 0, gid: 0 })
    }

    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.add(path, Entry { kind: Kind::File(data), perm, uid: 0, gid: 0 })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.add(path, Entry { kind: Kind::Symlink(target.to_string()), perm: 0o777, uid: 0, gid: 0 })
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<(), CpioError> {
        self.add(path, Entry { kind: Kind::CharDev(major, minor), perm, uid: 0, gid: 0 })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of file sizes.
    pub fn payload_bytes(&self) -> u64 {
        self.entries.values().map(|e| if let Kind::File(d) = &e.kind { d.len() as u64 } else { 0 }).sum()
    }

    /// The archive's bytes. The BTreeMap order puts `a` before `a/b`, so parents come first.
    pub fn to_bytes(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload_bytes() as usize + self.entries.len() * 160);
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let (type_bits, data, rdev): (u32, &[u8], (u32, u32)) = match &entry.kind {
                Kind::Dir => (0o040000, &[], (0, 0)),
                Kind::File(d) => (0o100000, d, (0, 0)),
                Kind::Symlink(t) => (0o120000, t.as_bytes(), (0, 0)),
                Kind::CharDev(ma, mi) => (0o020000, &[], (*ma, *mi)),
            };
            let nlink = if entry.kind == Kind::Dir { 2 } else { 1 };
            header(
                &mut out,
                &Header {
                    ino: ino as u32 + 1,
                    mode: type_bits | (entry.perm & 0o7777),
                    uid: entry.uid,
                    gid: entry.gid,
                    nlink,
                    mtime,
                    size: data.len() as u32,
                    rdev,
                },
                path,
            );
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        header(
            &mut out,
            &Header { ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, size: 0, rdev: (0, 0) },
            "TRAILER!!!",
        );
        out
    }
}

struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
}

fn header(out: &mut Vec<u8>, h: &Header, name: &str) {
    out.extend_from_slice(b"070701");
    let name_size = name.len() as u32 + 1;
    for v in [h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.size, 0, 0, h.rdev.0, h.rdev.1, name_size, 0] {
        out.extend_from_slice(format!("{v:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn header_layout_and_padding() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"hi".to_vec()).unwrap();
        let bytes = a.to_bytes(0);
        // 110-byte header + "init\0" = 115, padded to 116; data 2 padded to 4.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[6..14], b"00000001");
        assert_eq!(&bytes[14..22], b"000081ED");
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..118], b"hi");
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn parents_are_implied_and_order_is_independent_of_insertion() {
        let mut a = Archive::new();
        a.file("b/c/d", 0o644, vec![1]).unwrap();
        a.symlink("a", "b").unwrap();
        let mut b = Archive::new();
        b.symlink("a", "b").unwrap();
        b.dir("b", 0o755).unwrap();
        b.file("b/c/d", 0o644, vec![1]).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(a.to_bytes(7), b.to_bytes(7));
    }

    #[test]
    fn bad_and_duplicate_paths_are_refused() {
        let mut a = Archive::new();
        assert_eq!(a.file("/abs", 0o644, vec![]), Err(CpioError::BadPath("/abs".into())));
        assert_eq!(a.file("a/../b", 0o644, vec![]), Err(CpioError::BadPath("a/../b".into())));
        a.file("x", 0o644, vec![]).unwrap();
        assert_eq!(a.file("x", 0o644, vec![]), Err(CpioError::Duplicate("x".into())));
    }

    #[test]
    fn gnu_cpio_reads_it_back() {
        // Cross-check with the system's cpio when present (Debian's `cpio` package).
        if std::process::Command::new("cpio").arg("--version").output().is_err() {
            return;
        }
        let mut a = Archive::new();
        a.file("etc/hostname", 0o644, b"hermes\n".to_vec()).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        a.symlink("init", "bin/hermes").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, a.to_bytes(0)).unwrap();
        let out = std::process::Command::new("cpio").args(["-t", "-v", "-F"]).arg(&archive).output().unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("etc/hostname"), "{listing}");
        assert!(listing.contains("init -> bin/hermes"), "{listing}");
        assert!(listing.contains("dev/console"), "{listing}");
    }
}
