//! The file systems PID 1 mounts at boot and takes down at shutdown.
//!
//! What it is not: the RAID and disk logic (hw provisions and assembles `/data`'s array; this
//! mounts what exists, or a RAM-backed `/data` when no provisioned disk does).
//!
//! Invariants: mounting is idempotent (an already mounted target is left alone, so a re-exec
//! or a kernel that mounted devtmpfs itself is fine); every API file system is `nosuid` and,
//! but for `/dev`, `noexec`; `/data` is never unmounted while a service runs.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::Path;

/// One API mount.
#[derive(Debug, Clone, Copy)]
pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
    pub mode: u32,
}

const NOSUID_NODEV_NOEXEC: MsFlags =
    MsFlags::from_bits_truncate(MsFlags::MS_NOSUID.bits() | MsFlags::MS_NODEV.bits() | MsFlags::MS_NOEXEC.bits());

/// In order: parents before children.
pub const API_MOUNTS: [Mount; 7] = [
    Mount { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: None, mode: 0o555 },
    Mount { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: None, mode: 0o555 },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        mode: 0o755,
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::from_bits_truncate(MsFlags::MS_NOSUID.bits() | MsFlags::MS_NOEXEC.bits()),
        data: Some("mode=0620,ptmxmode=0666"),
        mode: 0o755,
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::from_bits_truncate(MsFlags::MS_NOSUID.bits() | MsFlags::MS_NODEV.bits()),
        data: Some("mode=0755,size=10%"),
        mode: 0o755,
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("mode=1777,size=10%"),
        mode: 0o1777,
    },
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
        mode: 0o755,
    },
];

/// Whether `target` is a mount point (listed in /proc/self/mounts). False when /proc is not
/// mounted yet.
pub fn is_mounted(target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(target)))
        .unwrap_or(false)
}

/// Mounts every API file system; returns the failures (PID 1 goes on without them and says so).
pub fn mount_api() -> Vec<String> {
    let mut errors = Vec::new();
    for m in API_MOUNTS {
        let _ = std::fs::create_dir_all(m.target);
        if is_mounted(m.target) {
            continue;
        }
        if let Err(e) = mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data) {
            errors.push(format!("mount {} on {}: {e}", m.fstype, m.target));
        }
    }
    // /dev/shm for libraries that want POSIX shared memory; /dev/fd and friends for shells.
    let _ = std::fs::create_dir_all("/dev/shm");
    if !is_mounted("/dev/shm")
        && let Err(e) = mount(Some("tmpfs"), "/dev/shm", Some("tmpfs"), NOSUID_NODEV_NOEXEC, Some("mode=1777"))
    {
        errors.push(format!("mount tmpfs on /dev/shm: {e}"));
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    errors
}

/// Mounts a RAM-backed `/data` (tmpfs, mode 0711): the box has no provisioned disks yet.
pub fn mount_ram_data(target: &Path) -> nix::Result<()> {
    let _ = std::fs::create_dir_all(target);
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::from_bits_truncate(MsFlags::MS_NOSUID.bits() | MsFlags::MS_NODEV.bits()),
        Some("mode=0711,size=50%"),
    )
}

/// The ext4 label that marks a provisioned data volume.
pub const DATA_LABEL: &str = "hermes-data";

/// Finds a block device whose ext4 volume label is [`DATA_LABEL`] (`/dev/md127` once hw has
/// assembled the array, or a single disk in tests).
pub fn find_data_volume() -> Option<String> {
    let mut names: Vec<String> =
        std::fs::read_dir("/sys/class/block").ok()?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    // md arrays first: a member disk of a RAID1/10 can carry the same superblock.
    names.sort_by_key(|n| !n.starts_with("md"));
    names.into_iter().find_map(|n| {
        let dev = format!("/dev/{n}");
        (ext4_label(&dev).as_deref() == Some(DATA_LABEL)).then_some(dev)
    })
}

/// The volume label of an ext2/3/4 file system on `dev`, if it has one.
pub fn ext4_label(dev: &str) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(dev).ok()?;
    let mut sb = [0u8; 1024];
    f.seek(SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut sb).ok()?;
    parse_ext4_label(&sb)
}

/// The label from an ext superblock (the 1024 bytes at offset 1024): magic 0xEF53 at 0x38,
/// `s_volume_name[16]` at 0x78.
pub fn parse_ext4_label(sb: &[u8]) -> Option<String> {
    if sb.get(0x38..0x3A) != Some(&[0x53, 0xEF]) {
        return None;
    }
    let name = sb.get(0x78..0x88)?;
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    std::str::from_utf8(&name[..end]).ok().map(str::to_string)
}

/// Mounts the data volume `dev` (ext4) on `target`.
pub fn mount_data_volume(dev: &str, target: &Path) -> nix::Result<()> {
    let _ = std::fs::create_dir_all(target);
    mount(
        Some(dev),
        target,
        Some("ext4"),
        MsFlags::from_bits_truncate(MsFlags::MS_NOSUID.bits() | MsFlags::MS_NODEV.bits()),
        Some("errors=remount-ro"),
    )
}

/// At shutdown: unmount `/data` (remount read-only if busy) and remount the rest read-only
/// where that means anything. Returns what failed.
pub fn take_down(data: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let target = data.to_string_lossy().into_owned();
    if is_mounted(&target)
        && umount2(data, MntFlags::empty()).is_err()
        && let Err(e) = mount(None::<&str>, data, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)
    {
        errors.push(format!("remount {target} read-only: {e}"));
    }
    for t in ["/tmp", "/run"] {
        let _ = umount2(t, MntFlags::MNT_DETACH);
    }
    errors
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn ext4_labels() {
        let mut sb = vec![0u8; 1024];
        assert_eq!(parse_ext4_label(&sb), None);
        sb[0x38] = 0x53;
        sb[0x39] = 0xEF;
        sb[0x78..0x78 + 11].copy_from_slice(b"hermes-data");
        assert_eq!(parse_ext4_label(&sb).as_deref(), Some(DATA_LABEL));
    }

    #[test]
    fn api_mounts_parents_first() {
        for (i, m) in API_MOUNTS.iter().enumerate() {
            for later in &API_MOUNTS[i + 1..] {
                assert!(!m.target.starts_with(&format!("{}/", later.target)), "{} before {}", m.target, later.target);
            }
        }
    }
}
