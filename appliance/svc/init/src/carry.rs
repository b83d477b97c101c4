//! Carrying the admin's setup from a RAM `/data` onto a newly provisioned array.
//!
//! A box whose disks are not provisioned runs on a RAM `/data`, where the admin does the
//! first-boot setup and may change the configuration, upload a certificate and add domains
//! and accounts. When init's `provision` succeeded (`system_ops`), and before the reboot, it
//! mounts the new data volume at [`NEW_DATA_MOUNT`] (`nosuid,nodev,noexec`, a root-only mount
//! point) and copies [`CARRIED`] (`admin`, `config`, `tls`, `directory`) there with [`carry`],
//! then unmounts it ([`carry_to_new_volume`]). Nothing else is carried: `run/` (sockets,
//! endpoints), `log/`, and `store/`, `queue/`, `hw/`, which hold nothing on RAM.
//!
//! What it is not: a general copy tool or a migration. It copies regular files, folders and
//! symbolic links only (sockets, FIFOs and devices are skipped and named); links are copied as
//! links, never followed; hard links become separate files; extended attributes and ACLs are
//! not copied (Hermes sets none).
//!
//! Invariants:
//! - the source is walked with `openat(O_NOFOLLOW)` from open folder handles, and every file is
//!   checked with `fstat` after it is opened: a service that swaps a folder for a link while the
//!   copy runs makes that entry fail, it never makes init read outside `/data` (the copied tree
//!   is given back to the services at the next boot, so following a link would leak root's files);
//! - bounded: at most [`Limits::max_bytes`] of file data, [`Limits::max_entries`] entries and
//!   [`Limits::max_depth`] levels, measured before anything is written and enforced again while
//!   copying (files can grow meanwhile);
//! - modes (but set-user-ID and set-group-ID on files), owners, and access and modification
//!   times are kept; owners are set before modes (chown clears those bits), folder times after
//!   their contents are written;
//! - every file and folder is fsync'd; the copy goes to a staging folder [`STAGING`] first and
//!   each carried folder is renamed into place only when all of them are complete, so the new
//!   volume holds either all of them or none (a failure removes what was written; a power cut
//!   during the copy leaves only the staging folder, root's 0700, which nothing reads and a
//!   factory reset erases).

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What is carried, in this order: the admin UI's accounts, sessions, API tokens and audit log;
/// `hermes.toml`, its history and `network.toml`; the certificate; domains and accounts.
pub const CARRIED: [&str; 4] = ["admin", "config", "tls", "directory"];
/// Where init mounts the new data volume while it copies (under root's `/run`, mode 0700).
pub const NEW_DATA_MOUNT: &str = "/run/hermes-newdata";
/// The staging folder on the new volume, renamed away entry by entry once complete.
pub const STAGING: &str = ".carry-from-ram";

/// How much is carried at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// File data, in bytes.
    pub max_bytes: u64,
    /// Files, folders and links together.
    pub max_entries: u64,
    /// Folder nesting below a carried folder.
    pub max_depth: usize,
}

impl Limits {
    /// 256 MiB: the RAM `/data` of an unprovisioned box holds a configuration, a certificate,
    /// the directory and the admin UI's small files (kilobytes to a few MiB); anything near
    /// this is not a first-boot setup, and it is copied while the admin waits for the answer.
    /// 100 000 entries and 32 levels: far beyond Hermes' own layout (a few levels), and they
    /// bound the walk's time and open handles.
    pub const DEFAULT: Limits = Limits { max_bytes: 256 << 20, max_entries: 100_000, max_depth: 32 };
}

/// What was carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// The carried folders that existed on the RAM `/data`, in [`CARRIED`] order.
    pub folders: Vec<String>,
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    /// File data copied.
    pub bytes: u64,
    /// Files and folders fsync'd (every copied file and folder, the staging folder and the
    /// volume's top).
    pub synced: u64,
    /// Entries left out, with why (`admin/x.sock: a socket`).
    pub skipped: Vec<String>,
}

impl Carried {
    /// One line for the console and the answer.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "carried {} from the RAM /data ({} files, {} folders, {} links, {} KiB)",
            if self.folders.is_empty() { "nothing".to_string() } else { self.folders.join(", ") },
            self.files,
            self.dirs,
            self.links,
            self.bytes.div_ceil(1024)
        );
        if !self.skipped.is_empty() {
            s.push_str(&format!("; left out: {}", self.skipped.join(", ")));
        }
        s
    }
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("{}: {what}: {e}", path.display())
}

/// Copies [`CARRIED`] from the data folder `from` into the data folder `to` (a fresh volume's
/// top: none of them may exist there), within `limits`. All or nothing: on an error, whatever
/// was written to `to` is removed again and the error says what failed.
pub fn carry(from: &Path, to: &Path, limits: Limits) -> Result<Carried, String> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let src = rustix::fs::open(from, dir_flags, Mode::empty()).map_err(|e| err(from, "open", e))?;
    let dst = rustix::fs::open(to, dir_flags, Mode::empty()).map_err(|e| err(to, "open", e))?;
    let mut out = Carried::default();
    let mut present = Vec::new();
    let mut tally = Tally::default();
    for name in CARRIED {
        match rustix::fs::statat(&src, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => present.push(name),
            // Init makes each of them a folder; anything else was put there by a service.
            Ok(_) => {
                out.skipped.push(format!("{name}: not a folder"));
                continue;
            }
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(err(&from.join(name), "stat", e)),
        }
        if rustix::fs::statat(&dst, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(format!("{} already exists on the new volume; nothing was carried", to.join(name).display()));
        }
        measure(&src, OsStr::new(name), Path::new(name), 0, limits, &mut tally)?;
    }
    if tally.bytes > limits.max_bytes {
        return Err(format!(
            "the RAM /data's {} hold {} MiB, more than the {} MiB carried at most; nothing was carried",
            present.join(", "),
            tally.bytes.div_ceil(1 << 20),
            limits.max_bytes >> 20
        ));
    }
    // A staging folder left by an earlier attempt that a power cut interrupted.
    if rustix::fs::statat(&dst, STAGING, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
        std::fs::remove_dir_all(to.join(STAGING)).map_err(|e| err(&to.join(STAGING), "remove", e))?;
    }
    rustix::fs::mkdirat(&dst, STAGING, Mode::from_raw_mode(0o700)).map_err(|e| err(&to.join(STAGING), "mkdir", e))?;
    let result = copy_all(&src, &dst, to, &present, limits, &mut out);
    if let Err(e) = result {
        // Undo: the staging folder and any folder already renamed into place.
        for name in &out.folders {
            let _ = std::fs::remove_dir_all(to.join(name));
        }
        let _ = std::fs::remove_dir_all(to.join(STAGING));
        let _ = rustix::fs::fsync(&dst);
        return Err(e);
    }
    Ok(out)
}

/// The copy proper, into [`STAGING`], then the renames; `out.folders` lists what is in place.
fn copy_all(
    src: &OwnedFd,
    dst: &OwnedFd,
    to: &Path,
    present: &[&str],
    limits: Limits,
    out: &mut Carried,
) -> Result<(), String> {
    let staging_path = to.join(STAGING);
    let staging = open_dir(dst, STAGING).map_err(|e| err(&staging_path, "open", e))?;
    let mut copied = Vec::new();
    for name in present {
        if copy_entry(src, OsStr::new(name), &staging, Path::new(name), 0, limits, out)? {
            copied.push(*name);
        }
    }
    rustix::fs::fsync(&staging).map_err(|e| err(&staging_path, "fsync", e))?;
    out.synced += 1;
    for name in copied {
        rustix::fs::renameat_with(&staging, name, dst, name, RenameFlags::NOREPLACE)
            .map_err(|e| err(&to.join(name), "rename into place", e))?;
        out.folders.push(name.to_string());
    }
    rustix::fs::unlinkat(dst, STAGING, AtFlags::REMOVEDIR).map_err(|e| err(&staging_path, "remove", e))?;
    rustix::fs::fsync(dst).map_err(|e| err(to, "fsync", e))?;
    out.synced += 1;
    Ok(())
}

#[derive(Debug, Default)]
struct Tally {
    bytes: u64,
    entries: u64,
}

/// Counts what [`copy_entry`] would copy under `parent/name`, with the same rules; stops at the
/// entry or depth bound, and at once when the byte bound is passed (the caller says so).
fn measure(
    parent: &OwnedFd,
    name: &OsStr,
    rel: &Path,
    depth: usize,
    limits: Limits,
    t: &mut Tally,
) -> Result<(), String> {
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err(rel, "stat", e)),
    };
    t.entries += 1;
    if t.entries > limits.max_entries {
        return Err(format!("more than {} entries to carry; nothing was carried", limits.max_entries));
    }
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => t.bytes = t.bytes.saturating_add(u64::try_from(st.st_size).unwrap_or(u64::MAX)),
        FileType::Directory if t.bytes <= limits.max_bytes => {
            if depth >= limits.max_depth {
                return Err(format!(
                    "{}: nested deeper than {} levels; nothing was carried",
                    rel.display(),
                    limits.max_depth
                ));
            }
            let fd = match open_dir(parent, name) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(()),
                Err(e) => return Err(err(rel, "open", e)),
            };
            for child in children(&fd).map_err(|e| err(rel, "read", e))? {
                measure(&fd, &child, &rel.join(&child), depth + 1, limits, t)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn open_dir<P: rustix::path::Arg>(parent: &OwnedFd, name: P) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in an open folder (not `.` and `..`), sorted.
fn children(dir: &OwnedFd) -> rustix::io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsStr::from_bytes(bytes).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

fn owner(st: &rustix::fs::Stat) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    // u32::MAX is chown's "leave as is", never a real owner.
    let uid = (st.st_uid != u32::MAX).then(|| rustix::fs::Uid::from_raw(st.st_uid));
    let gid = (st.st_gid != u32::MAX).then(|| rustix::fs::Gid::from_raw(st.st_gid));
    (uid, gid)
}

fn times(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: st.st_atime, tv_nsec: i64::try_from(st.st_atime_nsec).unwrap_or(0) },
        last_modification: Timespec { tv_sec: st.st_mtime, tv_nsec: i64::try_from(st.st_mtime_nsec).unwrap_or(0) },
    }
}

/// Copies `src_parent/name` to `dst_parent/name`; `rel` names it in messages. Returns whether
/// something was written (false: gone meanwhile, or skipped and listed in `out.skipped`).
fn copy_entry(
    src_parent: &OwnedFd,
    name: &OsStr,
    dst_parent: &OwnedFd,
    rel: &Path,
    depth: usize,
    limits: Limits,
    out: &mut Carried,
) -> Result<bool, String> {
    let st = match rustix::fs::statat(src_parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(err(rel, "stat", e)),
    };
    if out.files + out.dirs + out.links >= limits.max_entries {
        return Err(format!("more than {} entries to carry", limits.max_entries));
    }
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            if depth >= limits.max_depth {
                return Err(format!("{}: nested deeper than {} levels", rel.display(), limits.max_depth));
            }
            let sfd = match open_dir(src_parent, name) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(false),
                // ELOOP/ENOTDIR: swapped for a link or a file since the stat.
                Err(e) => return Err(err(rel, "open", e)),
            };
            let st = rustix::fs::fstat(&sfd).map_err(|e| err(rel, "stat", e))?;
            rustix::fs::mkdirat(dst_parent, name, Mode::from_raw_mode(0o700)).map_err(|e| err(rel, "mkdir", e))?;
            let dfd = open_dir(dst_parent, name).map_err(|e| err(rel, "open the copy", e))?;
            out.dirs += 1;
            for child in children(&sfd).map_err(|e| err(rel, "read", e))? {
                copy_entry(&sfd, &child, &dfd, &rel.join(&child), depth + 1, limits, out)?;
            }
            let (uid, gid) = owner(&st);
            rustix::fs::fchown(&dfd, uid, gid).map_err(|e| err(rel, "chown", e))?;
            rustix::fs::fchmod(&dfd, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(|e| err(rel, "chmod", e))?;
            rustix::fs::futimens(&dfd, &times(&st)).map_err(|e| err(rel, "set times", e))?;
            rustix::fs::fsync(&dfd).map_err(|e| err(rel, "fsync", e))?;
            out.synced += 1;
            Ok(true)
        }
        FileType::RegularFile => {
            // NONBLOCK: a FIFO swapped in since the stat must not hang the open.
            let sfd = match rustix::fs::openat(
                src_parent,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(false),
                Err(e) => return Err(err(rel, "open", e)),
            };
            let st = rustix::fs::fstat(&sfd).map_err(|e| err(rel, "stat", e))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                out.skipped.push(format!("{}: no longer a regular file", rel.display()));
                return Ok(false);
            }
            let dfd = rustix::fs::openat(
                dst_parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| err(rel, "create", e))?;
            let left = limits.max_bytes.saturating_sub(out.bytes);
            let mut reader = std::io::Read::take(std::fs::File::from(sfd), left.saturating_add(1));
            let mut writer = std::fs::File::from(dfd);
            let n = std::io::copy(&mut reader, &mut writer).map_err(|e| err(rel, "copy", e))?;
            if n > left {
                return Err(format!(
                    "{}: the files to carry grew past {} MiB while being copied",
                    rel.display(),
                    limits.max_bytes >> 20
                ));
            }
            out.bytes += n;
            out.files += 1;
            let (uid, gid) = owner(&st);
            rustix::fs::fchown(writer.as_fd(), uid, gid).map_err(|e| err(rel, "chown", e))?;
            // No set-user-ID or set-group-ID file is carried (and /data is mounted nosuid anyway).
            let mode = st.st_mode & 0o1777;
            rustix::fs::fchmod(writer.as_fd(), Mode::from_raw_mode(mode)).map_err(|e| err(rel, "chmod", e))?;
            rustix::fs::futimens(writer.as_fd(), &times(&st)).map_err(|e| err(rel, "set times", e))?;
            writer.sync_all().map_err(|e| err(rel, "fsync", e))?;
            out.synced += 1;
            Ok(true)
        }
        FileType::Symlink => {
            let target = match rustix::fs::readlinkat(src_parent, name, Vec::new()) {
                Ok(t) => t,
                Err(rustix::io::Errno::NOENT) => return Ok(false),
                Err(e) => return Err(err(rel, "readlink", e)),
            };
            rustix::fs::symlinkat(target.as_c_str(), dst_parent, name).map_err(|e| err(rel, "symlink", e))?;
            let (uid, gid) = owner(&st);
            rustix::fs::chownat(dst_parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| err(rel, "chown", e))?;
            rustix::fs::utimensat(dst_parent, name, &times(&st), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| err(rel, "set times", e))?;
            out.links += 1;
            Ok(true)
        }
        other => {
            let kind = match other {
                FileType::Socket => "a socket",
                FileType::Fifo => "a FIFO",
                FileType::CharacterDevice | FileType::BlockDevice => "a device",
                _ => "not a file, folder or link",
            };
            out.skipped.push(format!("{}: {kind}", rel.display()));
            Ok(false)
        }
    }
}

/// On the appliance, after a successful provisioning: finds the new data volume (the ext4
/// label `hermes-data`, as the boot does), mounts it at [`NEW_DATA_MOUNT`]
/// (`nosuid,nodev,noexec`), [`carry`]s the RAM data folder `ram` onto it and unmounts it.
pub fn carry_to_new_volume(ram: &Path) -> Result<Carried, String> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let Some(dev) = crate::mounts::find_data_volume() else {
        return Err(format!("no volume labelled {} was found after provisioning", crate::mounts::DATA_LABEL));
    };
    let target = Path::new(NEW_DATA_MOUNT);
    std::fs::create_dir_all(target).map_err(|e| err(target, "mkdir", e))?;
    // Root's alone: no service may look into the new volume while it is mounted here.
    std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| err(target, "chmod", e))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(dev.as_str()), target, Some("ext4"), flags, Some("errors=remount-ro"))
        .map_err(|e| format!("mount {dev} on {NEW_DATA_MOUNT}: {e}"))?;
    let result = carry(ram, target, Limits::DEFAULT);
    let unmounted = match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            Err(format!("unmount {NEW_DATA_MOUNT}: {e}"))
        }
    };
    let _ = std::fs::remove_dir(target);
    let carried = result?;
    // The copy is fsync'd; an unmount that failed only means the kernel writes back the rest
    // itself (the reboot syncs first).
    unmounted.map(|()| carried)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A RAM /data as the admin leaves it before provisioning, with traps: a socket, a link
    /// out of the tree, a link to a folder outside, folders that are not carried.
    fn ram_data(dir: &Path, outside: &Path) {
        for d in ["admin/sessions", "config/history", "tls", "directory/domains/example.org", "run", "log", "store/u1"]
        {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("admin/admins.json"), "{\"root\":\"hash\"}").unwrap();
        std::fs::write(dir.join("admin/api-tokens.json"), "[\"digest\"]").unwrap();
        std::fs::write(dir.join("admin/sessions/s1"), "session").unwrap();
        std::fs::write(dir.join("config/hermes.toml"), "hostname = \"mx.example.org\"\n").unwrap();
        std::fs::write(dir.join("config/history/0001.toml"), "old").unwrap();
        std::fs::write(dir.join("config/network.toml"), "dns = []\n").unwrap();
        std::fs::write(dir.join("tls/cert.pem"), "CERT").unwrap();
        std::fs::write(dir.join("tls/key.pem"), "KEY").unwrap();
        std::fs::write(dir.join("directory/domains/example.org/alice.json"), "{}").unwrap();
        std::fs::write(dir.join("run/endpoints.json"), "{}").unwrap();
        std::fs::write(dir.join("log/console.log"), "log").unwrap();
        std::fs::write(dir.join("store/u1/1.eml"), "mail").unwrap();
        std::fs::write(outside.join("secret"), "root's").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), dir.join("admin/secret-link")).unwrap();
        std::os::unix::fs::symlink(outside, dir.join("config/dir-link")).unwrap();
        std::os::unix::fs::symlink("hermes.toml", dir.join("config/current")).unwrap();
        std::os::unix::net::UnixListener::bind(dir.join("admin/admin.sock")).unwrap();
        std::fs::set_permissions(dir.join("tls/key.pem"), PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.join("tls"), PermissionsExt::from_mode(0o750)).unwrap();
        std::fs::set_permissions(dir.join("admin"), PermissionsExt::from_mode(0o2750)).unwrap();
        std::fs::set_permissions(dir.join("config/hermes.toml"), PermissionsExt::from_mode(0o640)).unwrap();
        // A set-user-ID file: carried without the bit.
        std::fs::set_permissions(dir.join("config/history/0001.toml"), PermissionsExt::from_mode(0o4755)).unwrap();
        if root() {
            // Owners other than the test's own, as the services' on the appliance.
            for (p, uid, gid) in [("admin", 203, 1203), ("admin/admins.json", 203, 1204), ("tls/key.pem", 0, 1205)] {
                std::os::unix::fs::lchown(dir.join(p), Some(uid), Some(gid)).unwrap();
            }
            std::os::unix::fs::lchown(dir.join("config/current"), Some(204), Some(204)).unwrap();
        }
        // Old times, so that "kept" cannot be "now".
        for p in ["config/hermes.toml", "admin", "tls/cert.pem", "directory/domains"] {
            set_mtime(&dir.join(p), 1_600_000_000);
        }
        let old = Timestamps {
            last_access: Timespec { tv_sec: 1_500_000_000, tv_nsec: 0 },
            last_modification: Timespec { tv_sec: 1_500_000_000, tv_nsec: 5 },
        };
        rustix::fs::utimensat(rustix::fs::CWD, dir.join("config/current"), &old, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn set_mtime(p: &Path, secs: i64) {
        let t = Timestamps {
            last_access: Timespec { tv_sec: secs, tv_nsec: 0 },
            last_modification: Timespec { tv_sec: secs, tv_nsec: 123_456_789 },
        };
        rustix::fs::utimensat(rustix::fs::CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn same_meta(a: &Path, b: &Path) {
        let (ma, mb) = (std::fs::symlink_metadata(a).unwrap(), std::fs::symlink_metadata(b).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "{}", b.display());
        if ma.is_dir() {
            assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{}", b.display());
        } else if ma.is_file() {
            assert_eq!(ma.mode() & 0o1777, mb.mode() & 0o7777, "{}", b.display());
        }
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{}", b.display());
        assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "{}", b.display());
    }

    /// Everything the admin set up arrives with its modes, owners and times; nothing else does;
    /// links are links; a socket is skipped and named.
    #[test]
    fn carries_the_setup_and_nothing_else() {
        let (ram, new, outside) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ram_data(ram.path(), outside.path());
        std::fs::create_dir(new.path().join("lost+found")).unwrap();
        let c = carry(ram.path(), new.path(), Limits::DEFAULT).unwrap();
        assert_eq!(c.folders, CARRIED);
        assert_eq!((c.files, c.dirs, c.links), (9, 8, 3), "{c:?}");
        assert_eq!(c.synced, c.files + c.dirs + 2, "every file and folder, the staging folder and the top");
        assert_eq!(c.skipped, ["admin/admin.sock: a socket"]);
        let files = [
            "admin/admins.json",
            "admin/api-tokens.json",
            "admin/sessions/s1",
            "config/hermes.toml",
            "config/history/0001.toml",
            "config/network.toml",
            "tls/cert.pem",
            "tls/key.pem",
            "directory/domains/example.org/alice.json",
        ];
        let bytes: u64 = files.iter().map(|f| std::fs::metadata(ram.path().join(f)).unwrap().len()).sum();
        assert_eq!(c.bytes, bytes, "{c:?}");
        for f in files {
            assert_eq!(std::fs::read(ram.path().join(f)).unwrap(), std::fs::read(new.path().join(f)).unwrap(), "{f}");
        }
        let mut top: Vec<String> =
            std::fs::read_dir(new.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        top.sort();
        assert_eq!(top, ["admin", "config", "directory", "lost+found", "tls"], "no run, log, store, staging");
        for p in [
            "admin",
            "admin/admins.json",
            "admin/api-tokens.json",
            "admin/sessions/s1",
            "config",
            "config/hermes.toml",
            "config/history",
            "config/network.toml",
            "config/current",
            "tls",
            "tls/key.pem",
            "tls/cert.pem",
            "directory/domains",
            "directory/domains/example.org/alice.json",
        ] {
            same_meta(&ram.path().join(p), &new.path().join(p));
        }
        assert_eq!(std::fs::read_to_string(new.path().join("tls/key.pem")).unwrap(), "KEY");
        assert_eq!(std::fs::read_link(new.path().join("config/current")).unwrap(), Path::new("hermes.toml"));
        let meta = |p: &str| std::fs::symlink_metadata(new.path().join(p)).unwrap();
        assert_eq!(meta("admin").mode() & 0o7777, 0o2750);
        assert_eq!(meta("tls/key.pem").mode() & 0o7777, 0o600);
        assert_eq!(meta("config/history/0001.toml").mode() & 0o7777, 0o755, "set-user-ID dropped");
        assert_eq!(meta("config/hermes.toml").mtime(), 1_600_000_000);
        assert_eq!(meta("config/current").mtime_nsec(), 5, "the link's own time");
        if root() {
            assert_eq!((meta("admin").uid(), meta("admin").gid()), (203, 1203));
            assert_eq!((meta("admin/admins.json").uid(), meta("admin/admins.json").gid()), (203, 1204));
            assert_eq!(meta("config/current").uid(), 204, "the link's own owner");
        }
        // Links stay links, pointing where they pointed: never followed out of the tree.
        assert!(meta("admin/secret-link").file_type().is_symlink());
        assert_eq!(std::fs::read_link(new.path().join("admin/secret-link")).unwrap(), outside.path().join("secret"));
        assert!(meta("config/dir-link").file_type().is_symlink());
        assert!(!new.path().join("admin/admin.sock").exists());
        // The source is untouched.
        assert!(ram.path().join("admin/admin.sock").exists());
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "root's");
    }

    /// Over the bound: refused before anything is written, and the answer says how much.
    #[test]
    fn refuses_more_than_the_bound_and_writes_nothing() {
        let (ram, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(ram.path().join("config")).unwrap();
        std::fs::create_dir_all(ram.path().join("admin")).unwrap();
        std::fs::write(ram.path().join("admin/a"), vec![7u8; 600 << 10]).unwrap();
        std::fs::write(ram.path().join("config/big"), vec![7u8; 600 << 10]).unwrap();
        let limits = Limits { max_bytes: 1 << 20, ..Limits::DEFAULT };
        let e = carry(ram.path(), new.path(), limits).unwrap_err();
        assert!(e.contains("2 MiB, more than the 1 MiB") && e.contains("admin, config"), "{e}");
        assert_eq!(std::fs::read_dir(new.path()).unwrap().count(), 0, "nothing written");
        // Just under it: carried.
        std::fs::write(ram.path().join("config/big"), vec![7u8; 400 << 10]).unwrap();
        let c = carry(ram.path(), new.path(), limits).unwrap();
        assert_eq!(c.bytes, 1000 << 10);
        // Too many entries, too deep: refused too.
        let new2 = tempfile::tempdir().unwrap();
        let e = carry(ram.path(), new2.path(), Limits { max_entries: 3, ..Limits::DEFAULT }).unwrap_err();
        assert!(e.contains("more than 3 entries"), "{e}");
        std::fs::create_dir_all(ram.path().join("tls/a/b/c")).unwrap();
        let e = carry(ram.path(), new2.path(), Limits { max_depth: 2, ..Limits::DEFAULT }).unwrap_err();
        assert!(e.contains("tls/a/b: nested deeper than 2"), "{e}");
        assert_eq!(std::fs::read_dir(new2.path()).unwrap().count(), 0);
    }

    /// A failure half way (the target fills up as root, a folder that cannot be read as
    /// anyone else) removes everything written: the new volume holds all or nothing.
    #[test]
    fn a_failure_leaves_nothing_behind() {
        let (ram, new, outside) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ram_data(ram.path(), outside.path());
        // A carried folder that exists on the target already: refused before writing.
        std::fs::create_dir(new.path().join("tls")).unwrap();
        let e = carry(ram.path(), new.path(), Limits::DEFAULT).unwrap_err();
        assert!(e.contains("tls already exists"), "{e}");
        assert_eq!(std::fs::read_dir(new.path()).unwrap().count(), 1);
        std::fs::remove_dir(new.path().join("tls")).unwrap();
        // Fails after `admin` is staged: `config` holds more than the target takes (root: a
        // 256 KiB tmpfs) or a folder this user cannot read.
        let mounted = root();
        if mounted {
            nix::mount::mount(
                Some("tmpfs"),
                new.path(),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("size=256k,mode=0755"),
            )
            .unwrap();
            std::fs::write(ram.path().join("config/large"), vec![1u8; 1 << 20]).unwrap();
        } else {
            std::fs::set_permissions(ram.path().join("config/history"), PermissionsExt::from_mode(0o000)).unwrap();
        }
        let e = carry(ram.path(), new.path(), Limits::DEFAULT).unwrap_err();
        let left = std::fs::read_dir(new.path()).unwrap().count();
        if mounted {
            nix::mount::umount2(new.path(), nix::mount::MntFlags::MNT_DETACH).unwrap();
            assert!(e.contains("config/large: copy") && e.contains("No space"), "{e}");
        } else {
            std::fs::set_permissions(ram.path().join("config/history"), PermissionsExt::from_mode(0o755)).unwrap();
            assert!(e.contains("config/history: open"), "{e}");
        }
        assert_eq!(left, 0, "the staged admin folder was removed again");
        // A staging folder a power cut left behind is replaced; the copy then succeeds.
        std::fs::create_dir(new.path().join(STAGING)).unwrap();
        std::fs::write(new.path().join(STAGING).join("stale"), "from a cut power").unwrap();
        let c = carry(ram.path(), new.path(), Limits::DEFAULT).unwrap();
        assert_eq!(c.folders, CARRIED);
        assert!(!new.path().join(STAGING).exists());
    }

    /// A FIFO is skipped without blocking the copy; a carried name that is not a folder too.
    #[test]
    fn fifos_are_skipped_without_hanging() {
        let (ram, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(ram.path().join("config")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            ram.path().join("config/pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A carried name that is a link (to a folder outside) is not carried at all.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "root's").unwrap();
        std::os::unix::fs::symlink(outside.path(), ram.path().join("tls")).unwrap();
        let c = carry(ram.path(), new.path(), Limits::DEFAULT).unwrap();
        assert_eq!(c.skipped, ["tls: not a folder", "config/pipe: a FIFO"]);
        assert_eq!(c.folders, ["config"]);
        assert!(std::fs::symlink_metadata(new.path().join("tls")).is_err());
    }
}
