//! The flashable disk image, `target/image/hermes.img`: a GPT disk with one EFI system partition
//! holding systemd-boot and the firmware slots (docs/image.md, "Disk image" is the contract the
//! firmware installer follows):
//!
//! ```text
//! LBA 0            protective MBR
//! LBA 1..33        primary GPT header and entries
//! 1 MiB            ESP: FAT32, label HERMES-ESP, partition name `esp`, ESP_BYTES long
//!   /EFI/BOOT/BOOTX64.EFI                 systemd-boot (the removable-media path firmware boots)
//!   /EFI/systemd/systemd-bootx64.efi      systemd-boot again, where bootctl keeps it
//!   /loader/loader.conf                   timeout 0, editor no, auto-entries no, auto-firmware no
//!   /EFI/Linux/hermes-VERSION+3.efi       slot A: the UKI, 3 boot tries left
//! last 33 sectors  backup GPT entries and header
//! ```
//!
//! Slots are systemd-boot "type #2" entries (UKIs in `/EFI/Linux`) with boot counting: the
//! loader sorts entries with no tries left last and the others newest version first (from
//! `.osrel`), and renames `+3` to `+2-1` before booting one; the installer writes the other
//! slot as `hermes-NEWVERSION+3.efi` and init renames an entry to `hermes-VERSION.efi` once the
//! box is healthy. A new slot that keeps failing runs out of tries and the old one boots again.
//!
//! What it is not: a partitioner for a real disk. The image is exactly [`DISK_BYTES`] long;
//! written to a larger disk, the backup GPT is not at the disk's end (Linux says so, and any
//! GPT tool moves it); nothing else depends on it.
//!
//! Invariants: no root, no loop devices (every byte is computed here); the same UKI,
//! systemd-boot, version and timestamp give the same bytes; slot A plus an equal-sized slot B
//! fit in the ESP, or the build fails.

use crate::fat::{FatError, Volume};
use crate::gpt::{self, PartitionSpec};

pub const MIB: u64 = 1024 * 1024;
/// The EFI system partition: room for two slots of up to ~28 MiB each (a dev UKI is ~21 MiB, a
/// release one ~17 MiB); the whole image stays under 64 MB (60 MiB).
pub const ESP_BYTES: u64 = 58 * MIB;
/// The whole image: 1 MiB for the MBR and primary GPT (partition alignment), the ESP, 1 MiB
/// for the backup GPT.
pub const DISK_BYTES: u64 = ESP_BYTES + 2 * MIB;
/// The ESP's FAT volume label.
pub const ESP_LABEL: &str = "HERMES-ESP";
/// The ESP's GPT partition name.
pub const ESP_NAME: &str = "esp";
/// Boot tries a freshly written slot gets.
pub const BOOT_TRIES: u32 = 3;
/// Where slots live on the ESP.
pub const SLOT_DIR: &str = "EFI/Linux";
/// systemd-boot's configuration: boot the first entry at once, no editing of the command line
/// at the console, no entries the loader invents (other OSes, "reboot into firmware").
pub const LOADER_CONF: &str = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n";

/// The file name of a slot's UKI: `hermes-0.1.0+3.efi` with tries left, `hermes-0.1.0.efi`
/// once marked good.
pub fn slot_file_name(version: &str, tries_left: Option<u32>) -> String {
    match tries_left {
        Some(n) => format!("hermes-{version}+{n}.efi"),
        None => format!("hermes-{version}.efi"),
    }
}

/// What the disk image holds.
#[derive(Debug, Clone)]
pub struct DiskInputs<'a> {
    /// `systemd-bootx64.efi` from systemd-boot-efi.
    pub systemd_boot: &'a [u8],
    /// Slot A's UKI ([`crate::uki::build`]).
    pub uki: &'a [u8],
    pub version: &'a str,
    /// Every timestamp on the ESP, and its volume serial number (`SOURCE_DATE_EPOCH`).
    pub mtime: u32,
}

/// Why the disk image cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiskError {
    #[error("the UKI ({uki} bytes) twice over does not fit the {ESP_BYTES}-byte ESP (slot B needs the same room)")]
    SlotsDoNotFit { uki: u64 },
    #[error("ESP: {0}")]
    Fat(#[from] FatError),
    #[error("GPT: {0}")]
    Gpt(#[from] gpt::GptError),
}

/// The ESP's files (paths and contents), sorted by path.
pub fn esp_files(i: &DiskInputs<'_>) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("EFI/BOOT/BOOTX64.EFI".to_string(), i.systemd_boot.to_vec()),
        ("EFI/systemd/systemd-bootx64.efi".to_string(), i.systemd_boot.to_vec()),
        (format!("{SLOT_DIR}/{}", slot_file_name(i.version, Some(BOOT_TRIES))), i.uki.to_vec()),
        ("loader/loader.conf".to_string(), LOADER_CONF.as_bytes().to_vec()),
    ];
    files.sort();
    files
}

/// The ESP volume alone ([`ESP_BYTES`] long); `first_lba`: where it starts on the disk.
pub fn esp(i: &DiskInputs<'_>, first_lba: u32) -> Result<Vec<u8>, DiskError> {
    // Slot B will need as much room as slot A, plus the loader and FAT's own tables.
    let fixed = 2 * i.systemd_boot.len() as u64 + 2 * MIB;
    if 2 * i.uki.len() as u64 + fixed > ESP_BYTES {
        return Err(DiskError::SlotsDoNotFit { uki: i.uki.len() as u64 });
    }
    let mut v = Volume::new(ESP_LABEL, i.mtime, u64::from(i.mtime))?;
    for (path, data) in esp_files(i) {
        v.file(&path, data)?;
    }
    Ok(v.to_bytes(ESP_BYTES, first_lba)?)
}

/// The whole disk image ([`DISK_BYTES`] long).
pub fn build(i: &DiskInputs<'_>) -> Result<Vec<u8>, DiskError> {
    let total = DISK_BYTES / gpt::SECTOR;
    let seed = format!("hermes-{}-{}", i.version, i.mtime);
    let table = gpt::layout(
        total,
        &[PartitionSpec { name: ESP_NAME.into(), type_guid: gpt::ESP_TYPE, bytes: ESP_BYTES }],
        seed.as_bytes(),
    )?;
    let part = &table.partitions[0];
    let esp = esp(i, u32::try_from(part.first_lba).unwrap_or(u32::MAX))?;
    let mut disk = vec![0u8; DISK_BYTES as usize];
    let head = table.head();
    disk[..head.len()].copy_from_slice(&head);
    let at = part.offset() as usize;
    disk[at..at + esp.len()].copy_from_slice(&esp);
    let tail = table.tail();
    let at = disk.len() - tail.len();
    disk[at..].copy_from_slice(&tail);
    Ok(disk)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn inputs<'a>(uki: &'a [u8]) -> DiskInputs<'a> {
        DiskInputs { systemd_boot: b"MZ systemd-boot", uki, version: "0.1.0", mtime: crate::SOURCE_DATE_EPOCH }
    }

    #[test]
    fn names_and_config() {
        assert_eq!(slot_file_name("0.1.0", Some(3)), "hermes-0.1.0+3.efi");
        assert_eq!(slot_file_name("0.2.0", None), "hermes-0.2.0.efi");
        let files = esp_files(&inputs(b"uki"));
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "EFI/BOOT/BOOTX64.EFI",
                "EFI/Linux/hermes-0.1.0+3.efi",
                "EFI/systemd/systemd-bootx64.efi",
                "loader/loader.conf"
            ]
        );
        assert_eq!(
            LOADER_CONF.lines().collect::<Vec<_>>(),
            ["timeout 0", "editor no", "auto-entries no", "auto-firmware no"]
        );
    }

    #[test]
    fn slot_b_must_fit() {
        let big = vec![0u8; (ESP_BYTES / 2) as usize];
        assert!(matches!(build(&inputs(&big)), Err(DiskError::SlotsDoNotFit { .. })));
    }

    /// sfdisk reads the partition table; fsck.fat and mtools read the ESP at its offset.
    #[test]
    fn sfdisk_fsck_and_mtools_read_the_disk() {
        let uki: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let disk = build(&inputs(&uki)).unwrap();
        assert_eq!(disk.len() as u64, DISK_BYTES);
        assert_eq!(build(&inputs(&uki)).unwrap(), disk, "reproducible");
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("hermes.img");
        std::fs::write(&img, &disk).unwrap();
        let out =
            std::process::Command::new("sfdisk").arg("--json").arg(&img).output().expect("sfdisk (fdisk package)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B") && text.contains("\"name\": \"esp\""), "{text}");
        assert!(text.contains("\"start\": 2048") && text.contains("\"size\": 118784"), "{text}");

        let esp = dir.path().join("esp.img");
        std::fs::write(&esp, &disk[MIB as usize..(MIB + ESP_BYTES) as usize]).unwrap();
        let out = std::process::Command::new("fsck.fat").arg("-n").arg(&esp).output().expect("fsck.fat (dosfstools)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let spec = format!("{}@@{}", img.display(), MIB);
        let out = std::process::Command::new("mtype")
            .args(["-i", &spec, "::/EFI/Linux/hermes-0.1.0+3.efi"])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .expect("mtype (mtools)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, uki);
        let out = std::process::Command::new("mtype")
            .args(["-i", &spec, "::/loader/loader.conf"])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), LOADER_CONF);
    }
}
