//! A GUID Partition Table writer (UEFI 2.10 §5.3): protective MBR, primary header and entry
//! array at the start of the disk, backup entry array and header at the end. The first piece
//! of the flashable disk image ([`crate::disk`]: the ESP with systemd-boot and slots A/B).
//!
//! What it is not: a partition editor. It lays out a fresh table from a list and writes it;
//! it never reads an existing disk.
//!
//! Invariants: partitions start on 1 MiB boundaries and never overlap the tables; both headers
//! carry correct CRC32s of themselves and of the entry array; GUIDs are derived from a seed
//! and the partition names (SHA-256), so the same layout gives the same bytes.

use sha2::{Digest, Sha256};

pub const SECTOR: u64 = 512;
/// Entries in the array (the minimum the spec allows, 128 × 128 bytes = 32 sectors).
pub const ENTRIES: u64 = 128;
pub const ENTRY_SIZE: u64 = 128;
/// Sectors of the entry array.
pub const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
/// Partition alignment: 1 MiB, what every modern tool uses (and flash erase blocks like).
pub const ALIGN: u64 = 1024 * 1024 / SECTOR;

/// The EFI system partition's type GUID.
pub const ESP_TYPE: Guid = Guid::parse_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
/// Linux filesystem data.
pub const LINUX_DATA_TYPE: Guid = Guid::parse_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");

/// A GUID in its textual field order; [`Guid::to_bytes`] gives the on-disk mixed-endian form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

impl Guid {
    /// `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (for constants; non-hex digits read as 0).
    pub const fn parse_const(s: &str) -> Guid {
        let b = s.as_bytes();
        let mut out = [0u8; 16];
        let mut i = 0;
        let mut j = 0;
        while i < b.len() && j < 16 {
            if b[i] == b'-' {
                i += 1;
                continue;
            }
            out[j] = hex(b[i]) << 4 | hex(b[i + 1]);
            i += 2;
            j += 1;
        }
        Guid(out)
    }

    /// A version-4-shaped GUID derived from `seed` and `name`.
    pub fn derived(seed: &[u8], name: &str) -> Guid {
        let mut h = Sha256::new();
        h.update(seed);
        h.update([0]);
        h.update(name.as_bytes());
        let d = h.finalize();
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[..16]);
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        Guid(g)
    }

    /// On-disk form: the first three fields little-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        let g = self.0;
        [g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]]
    }
}

/// One partition to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub name: String,
    pub type_guid: Guid,
    pub bytes: u64,
}

/// A laid-out partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn len(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub total_sectors: u64,
    pub disk_guid: Guid,
    pub partitions: Vec<Partition>,
}

/// Why a layout does not fit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GptError {
    #[error("{0} partitions; at most 128")]
    TooMany(usize),
    #[error("the partitions need {need} sectors; the disk has {have} usable")]
    TooSmall { need: u64, have: u64 },
    #[error("partition `{0}`: the name is longer than 36 UTF-16 units")]
    LongName(String),
}

fn align_up(lba: u64) -> u64 {
    lba.div_ceil(ALIGN) * ALIGN
}

/// Lays out `specs` in order on a disk of `total_sectors`, each aligned to [`ALIGN`].
pub fn layout(total_sectors: u64, specs: &[PartitionSpec], seed: &[u8]) -> Result<Gpt, GptError> {
    if specs.len() as u64 > ENTRIES {
        return Err(GptError::TooMany(specs.len()));
    }
    let last_usable = total_sectors.saturating_sub(2 + ENTRY_SECTORS);
    let mut next = align_up(2 + ENTRY_SECTORS);
    let mut partitions = Vec::new();
    for s in specs {
        if s.name.encode_utf16().count() > 36 {
            return Err(GptError::LongName(s.name.clone()));
        }
        let sectors = s.bytes.div_ceil(SECTOR).max(1);
        let last = next + sectors - 1;
        if last > last_usable {
            return Err(GptError::TooSmall { need: last, have: last_usable });
        }
        partitions.push(Partition {
            name: s.name.clone(),
            type_guid: s.type_guid,
            guid: Guid::derived(seed, &s.name),
            first_lba: next,
            last_lba: last,
        });
        next = align_up(last + 1);
    }
    Ok(Gpt { total_sectors, disk_guid: Guid::derived(seed, "disk"), partitions })
}

impl Gpt {
    fn entries(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut out[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_bytes());
            e[16..32].copy_from_slice(&p.guid.to_bytes());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            for (k, unit) in p.name.encode_utf16().enumerate().take(36) {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
            }
        }
        out
    }

    fn header(&self, current: u64, backup: u64, entries_lba: u64, entries_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(self.total_sectors - 2 - ENTRY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The protective MBR, primary header and entries: the first `2 + 32` sectors.
    pub fn head(&self) -> Vec<u8> {
        let entries = self.entries();
        let crc = crc32fast::hash(&entries);
        let mut out = vec![0u8; SECTOR as usize];
        let p = &mut out[446..462];
        p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        p[4] = 0xEE;
        p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        p[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = u32::try_from(self.total_sectors - 1).unwrap_or(u32::MAX);
        p[12..16].copy_from_slice(&size.to_le_bytes());
        out[510] = 0x55;
        out[511] = 0xAA;
        out.extend(self.header(1, self.total_sectors - 1, 2, crc));
        out.extend(entries);
        out
    }

    /// The backup entries and header: the last `32 + 1` sectors.
    pub fn tail(&self) -> Vec<u8> {
        let entries = self.entries();
        let crc = crc32fast::hash(&entries);
        let entries_lba = self.total_sectors - 1 - ENTRY_SECTORS;
        let mut out = entries;
        out.extend(self.header(self.total_sectors - 1, 1, entries_lba, crc));
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn specs() -> Vec<PartitionSpec> {
        vec![
            PartitionSpec { name: "esp".into(), type_guid: ESP_TYPE, bytes: 200 * 1024 * 1024 },
            PartitionSpec { name: "hermes-state".into(), type_guid: LINUX_DATA_TYPE, bytes: 16 * 1024 * 1024 },
        ]
    }

    #[test]
    fn esp_type_guid_on_disk_form() {
        // The bytes every GPT tool writes for the ESP type.
        assert_eq!(
            ESP_TYPE.to_bytes(),
            [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]
        );
    }

    #[test]
    fn layout_is_aligned_and_tables_check_out() {
        let total = 512 * 1024 * 1024 / SECTOR;
        let g = layout(total, &specs(), b"seed").unwrap();
        assert_eq!(g.partitions[0].first_lba, ALIGN);
        assert!(g.partitions.iter().all(|p| p.first_lba % ALIGN == 0));
        assert!(g.partitions[1].first_lba > g.partitions[0].last_lba);
        let head = g.head();
        assert_eq!(head.len() as u64, (2 + ENTRY_SECTORS) * SECTOR);
        assert_eq!(&head[510..512], &[0x55, 0xAA]);
        assert_eq!(head[446 + 4], 0xEE);
        let h = &head[512..1024];
        assert_eq!(&h[0..8], b"EFI PART");
        let mut zeroed = h[..92].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(u32::from_le_bytes(h[16..20].try_into().unwrap()), crc32fast::hash(&zeroed));
        assert_eq!(u32::from_le_bytes(h[88..92].try_into().unwrap()), crc32fast::hash(&head[1024..]));
        let tail = g.tail();
        assert_eq!(tail.len() as u64, (1 + ENTRY_SECTORS) * SECTOR);
        assert_eq!(&tail[..ENTRY_SECTORS as usize * 512], &head[1024..], "backup entries equal the primary");
        let b = &tail[ENTRY_SECTORS as usize * 512..];
        assert_eq!(u64::from_le_bytes(b[24..32].try_into().unwrap()), total - 1);
        assert_eq!(u64::from_le_bytes(b[72..80].try_into().unwrap()), total - 1 - ENTRY_SECTORS);
        assert_eq!(layout(total, &specs(), b"seed").unwrap().head(), head, "reproducible");
    }

    #[test]
    fn too_small_and_long_names_are_refused() {
        assert!(matches!(layout(100_000, &specs(), b"s"), Err(GptError::TooSmall { .. })));
        let long = vec![PartitionSpec { name: "x".repeat(37), type_guid: ESP_TYPE, bytes: 1 }];
        assert!(matches!(layout(1 << 20, &long, b"s"), Err(GptError::LongName(_))));
    }

    /// sfdisk (util-linux) reads the table back, when installed.
    #[test]
    fn sfdisk_reads_it() {
        if std::process::Command::new("sfdisk").arg("--version").output().is_err() {
            return;
        }
        let total = 512 * 1024 * 1024 / SECTOR;
        let g = layout(total, &specs(), b"seed").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(total * SECTOR).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&g.head(), 0).unwrap();
        f.write_all_at(&g.tail(), (total - 1 - ENTRY_SECTORS) * SECTOR).unwrap();
        let out = std::process::Command::new("sfdisk").arg("--json").arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("\"label\": \"gpt\""), "{text}");
        assert!(text.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), "{text}");
        assert!(text.contains("\"name\": \"hermes-state\""), "{text}");
    }
}
