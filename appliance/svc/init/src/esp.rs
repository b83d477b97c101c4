//! The EFI system partition and efivarfs at boot: find the ESP (FAT label `HERMES-ESP`, else
//! the GPT partition type of an ESP), check and repair its FAT with `fsck.fat` (a power cut
//! mid-write leaves FAT inconsistent: it has no journal), mount it read-write at [`crate::firmware::ESP_MOUNT`], and
//! mount efivarfs so the boot loader's variables (`LoaderEntrySelected`,
//! `LoaderBootCountPath`) say which slot is running.
//!
//! What it is not: a FAT or GPT library. It reads the few bytes that identify a partition; the
//! kernel's vfat driver does the rest.
//!
//! Invariants: only a partition (never a whole disk) is mounted; the ESP is mounted `nosuid`,
//! `nodev`, `noexec`, readable by root alone; a box booted without an ESP (direct kernel boot)
//! just has none, and firmware commands say so.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The ESP's FAT volume label in the Hermes disk image.
pub const ESP_LABEL: &str = "HERMES-ESP";
/// The EFI system partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B, as stored in a GPT
/// entry (the first three fields little-endian).
pub const ESP_TYPE: [u8; 16] =
    [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B];
/// Where efivarfs goes.
pub const EFIVARS: &str = crate::firmware::EFIVARS;

/// The FAT volume label of a boot sector (FAT32's at 0x47, FAT12/16's at 0x2B), trimmed.
pub fn fat_label(boot: &[u8]) -> Option<String> {
    if boot.len() < 512 || boot[510..512] != [0x55, 0xAA] {
        return None;
    }
    let at = if &boot[0x52..0x5A] == b"FAT32   " {
        0x47
    } else if &boot[0x36..0x39] == b"FAT" {
        0x2B
    } else {
        return None;
    };
    let label = std::str::from_utf8(&boot[at..at + 11]).ok()?.trim_end();
    (!label.is_empty() && label != "NO NAME").then(|| label.to_string())
}

/// The type GUID of partition `number` (1-based) from a disk's GPT header (LBA 1) and a reader
/// positioned anywhere on the disk.
pub fn gpt_partition_type(disk: &mut (impl Read + Seek), sector: u64, number: u32) -> Option<[u8; 16]> {
    let mut header = [0u8; 92];
    disk.seek(SeekFrom::Start(sector)).ok()?;
    disk.read_exact(&mut header).ok()?;
    if &header[..8] != b"EFI PART" {
        return None;
    }
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().ok()?);
    let count = u32::from_le_bytes(header[80..84].try_into().ok()?);
    let size = u32::from_le_bytes(header[84..88].try_into().ok()?);
    if number == 0 || number > count || !(128..=4096).contains(&size) {
        return None;
    }
    let at = entries_lba.checked_mul(sector)?.checked_add(u64::from(number - 1) * u64::from(size))?;
    let mut guid = [0u8; 16];
    disk.seek(SeekFrom::Start(at)).ok()?;
    disk.read_exact(&mut guid).ok()?;
    Some(guid)
}

fn read_sys(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Finds the ESP: a partition labelled [`ESP_LABEL`] first, else the first partition whose GPT
/// type is an ESP.
pub fn find() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| Path::new(&format!("/sys/class/block/{n}/partition")).exists())
        .collect();
    names.sort();
    for n in &names {
        let mut boot = [0u8; 512];
        let ok = std::fs::File::open(format!("/dev/{n}")).and_then(|mut f| f.read_exact(&mut boot)).is_ok();
        if ok && fat_label(&boot).as_deref() == Some(ESP_LABEL) {
            return Some(format!("/dev/{n}"));
        }
    }
    names
        .into_iter()
        .find(|n| {
            let Some(number) = read_sys(&format!("/sys/class/block/{n}/partition")).and_then(|p| p.parse().ok()) else {
                return false;
            };
            // The parent disk is the partition's folder's parent in sysfs.
            let Ok(real) = std::fs::canonicalize(format!("/sys/class/block/{n}")) else { return false };
            let Some(disk) = real.parent().and_then(|p| p.file_name()).and_then(|d| d.to_str()).map(str::to_string)
            else {
                return false;
            };
            let sector = read_sys(&format!("/sys/class/block/{disk}/queue/logical_block_size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(512u64);
            let Ok(mut f) = std::fs::File::open(format!("/dev/{disk}")) else { return false };
            gpt_partition_type(&mut f, sector, number) == Some(ESP_TYPE)
        })
        .map(|n| format!("/dev/{n}"))
}

/// dosfstools' checker, shipped in the image (`[image] tools`).
pub const FSCK_FAT: &str = "/sbin/fsck.fat";

/// Checks and repairs the FAT file system on `dev` before it is mounted read-write: FAT has no
/// journal, so a power cut while a slot or a boot counter is written can leave the two FATs, a
/// directory entry and its clusters out of step, and the kernel would then turn the mount
/// read-only at the first inconsistency it meets (`errors=remount-ro`), refusing every later
/// update (found by the QEMU power-cut test). `fsck.fat -a -w`: repair automatically (keeping
/// the first FAT, freeing lost clusters, truncating or dropping broken entries), write at once.
/// Returns the line to log, `None` when the file system was clean.
pub fn check_esp(dev: &str) -> Option<String> {
    let out = match std::process::Command::new(FSCK_FAT)
        .args(["-a", "-w", dev])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("{FSCK_FAT} is not in this image: the ESP {dev} is mounted unchecked"));
        }
        Err(e) => return Some(format!("cannot run {FSCK_FAT} on the ESP {dev}: {e}")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let detail: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("fsck.fat ")).take(6).collect();
    match out.status.code() {
        Some(0) => None,
        Some(1) => Some(format!(
            "the ESP {dev} was not cleanly unmounted (a power cut or a reset) and fsck.fat repaired it: {}",
            detail.join("; ")
        )),
        code => Some(format!(
            "fsck.fat could not repair the ESP {dev} (exit {}): {} {}",
            code.map_or_else(|| "by a signal".to_string(), |c| c.to_string()),
            detail.join("; "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Mounts `dev` (vfat) read-write at `target`, root only.
pub fn mount_esp(dev: &str, target: &Path) -> nix::Result<()> {
    let _ = std::fs::create_dir_all(target);
    mount(
        Some(dev),
        target,
        Some("vfat"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("umask=0077,errors=remount-ro"),
    )
}

/// Mounts efivarfs when the firmware is UEFI (`/sys/firmware/efi` exists). `Ok(false)` on a
/// BIOS or direct-kernel boot.
pub fn mount_efivarfs() -> nix::Result<bool> {
    if !Path::new("/sys/firmware/efi").exists() {
        return Ok(false);
    }
    if crate::mounts::is_mounted(EFIVARS) {
        return Ok(true);
    }
    mount(
        Some("efivarfs"),
        EFIVARS,
        Some("efivarfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map(|()| true)
}

/// At boot: efivarfs, then the ESP; returns the lines to log, and whether the ESP is mounted.
pub fn bring_up() -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    match mount_efivarfs() {
        Ok(true) => {}
        Ok(false) => lines.push("no UEFI variables (not booted by UEFI)".to_string()),
        Err(e) => lines.push(format!("cannot mount efivarfs: {e}")),
    }
    let target = Path::new(crate::firmware::ESP_MOUNT);
    // Disk drivers probe in the background after their modules load: on a UEFI boot (which
    // came from a disk) give the partitions a few seconds to appear.
    let mut found = find();
    let uefi = Path::new("/sys/firmware/efi").exists();
    for _ in 0..50 {
        if found.is_some() || !uefi {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        found = find();
    }
    if let Some(dev) = &found
        && let Some(line) = check_esp(dev)
    {
        lines.push(line);
    }
    let mounted = match found {
        Some(dev) => match mount_esp(&dev, target) {
            Ok(()) => {
                lines.push(format!("ESP {dev} on {}", target.display()));
                true
            }
            Err(e) => {
                lines.push(format!("cannot mount the ESP {dev}: {e}"));
                false
            }
        },
        None => {
            lines.push("no EFI system partition: firmware updates are not possible on this boot".to_string());
            false
        }
    };
    if mounted {
        for name in crate::firmware::clean(target) {
            lines.push(format!("removed {name}, left by an interrupted install"));
        }
    }
    (lines, mounted)
}

/// At shutdown: unmount the ESP (everything on it was fsync'd when written).
pub fn take_down() {
    let _ = umount2(crate::firmware::ESP_MOUNT, MntFlags::empty());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    /// What a power cut mid-write leaves on FAT (the dirty bit, a cluster allocated in the first
    /// FAT only, the FATs differing) is repaired by [`check_esp`] with the real fsck.fat, after
    /// which the file system is clean and a second check says nothing.
    #[test]
    fn a_dirty_fat_is_repaired_before_the_mount() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        let made = std::process::Command::new("mkfs.fat")
            .args(["-C", "-F", "16", "-n", "HERMES-ESP"])
            .arg(&img)
            .arg("16384")
            .output()
            .expect("mkfs.fat (dosfstools) is installed by scripts/test.sh");
        assert!(made.status.success(), "{made:?}");
        let path = img.to_str().unwrap();
        assert_eq!(check_esp(path), None, "a fresh file system is clean");
        let mut b = std::fs::read(&img).unwrap();
        let bytes_per_sector = u16::from_le_bytes([b[11], b[12]]) as usize;
        let reserved = u16::from_le_bytes([b[14], b[15]]) as usize;
        let cluster = 200;
        let at = reserved * bytes_per_sector + cluster * 2;
        b[at..at + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
        b[37] |= 1; // FAT16's "not cleanly unmounted" bit
        std::fs::write(&img, b).unwrap();
        let line = check_esp(path).expect("the damage is reported");
        assert!(line.contains("repaired"), "{line}");
        assert!(line.contains("Dirty bit") || line.contains("FATs differ") || line.contains("Reclaimed"), "{line}");
        assert_eq!(check_esp(path), None, "repaired: clean at the next check");
    }

    #[test]
    fn fat32_label() {
        let mut b = vec![0u8; 512];
        assert_eq!(fat_label(&b), None);
        b[510] = 0x55;
        b[511] = 0xAA;
        b[0x52..0x5A].copy_from_slice(b"FAT32   ");
        b[0x47..0x52].copy_from_slice(b"HERMES-ESP ");
        assert_eq!(fat_label(&b).as_deref(), Some(ESP_LABEL));
        b[0x47..0x52].copy_from_slice(b"NO NAME    ");
        assert_eq!(fat_label(&b), None);
    }

    /// The image builder's own writers: its FAT32 volume's label and its GPT's ESP entry.
    #[test]
    fn reads_what_the_image_builder_writes() {
        use hermes_image::{fat, gpt};
        assert_eq!(gpt::ESP_TYPE.to_bytes(), ESP_TYPE);
        let table = gpt::layout(
            200_000,
            &[
                gpt::PartitionSpec { name: "esp".into(), type_guid: gpt::ESP_TYPE, bytes: 40 << 20 },
                gpt::PartitionSpec { name: "other".into(), type_guid: gpt::LINUX_DATA_TYPE, bytes: 1 << 20 },
            ],
            b"seed",
        )
        .unwrap();
        let mut c = std::io::Cursor::new(table.head());
        assert_eq!(gpt_partition_type(&mut c, 512, 1), Some(ESP_TYPE));
        assert_eq!(gpt_partition_type(&mut c, 512, 2), Some(gpt::LINUX_DATA_TYPE.to_bytes()));
        let volume = fat::Volume::new(ESP_LABEL, 1, 0).unwrap().to_bytes(40 << 20, 2048).unwrap();
        assert_eq!(fat_label(&volume[..512]).as_deref(), Some(ESP_LABEL));
    }

    #[test]
    fn gpt_type_of_a_partition() {
        // A disk image written by the image builder's GPT writer: partition 1 is the ESP.
        let sector = 512u64;
        let mut disk = vec![0u8; 64 * 1024];
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        disk[1024..1040].copy_from_slice(&ESP_TYPE);
        disk[1024 + 128] = 0xAF;
        let mut c = std::io::Cursor::new(disk);
        assert_eq!(gpt_partition_type(&mut c, sector, 1), Some(ESP_TYPE));
        assert_ne!(gpt_partition_type(&mut c, sector, 2), Some(ESP_TYPE));
        assert_eq!(gpt_partition_type(&mut c, sector, 0), None);
        assert_eq!(gpt_partition_type(&mut c, sector, 129), None);
        assert_eq!(gpt_partition_type(&mut std::io::Cursor::new(vec![0u8; 2048]), sector, 1), None);
    }
}
