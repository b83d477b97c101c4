//! A FAT32 writer (Microsoft's "FAT: General Overview of On-Disk Format" 1.03, and the VFAT long
//! file name extension): the EFI system partition of the disk image, with systemd-boot, its
//! `loader.conf` and the unified kernel images of the slots.
//!
//! What it is not: a file system driver. It lays out a fresh volume from a tree of folders and
//! files held in memory and writes it; it never reads or modifies an existing volume (the
//! appliance changes its ESP at run time through the kernel's vfat).
//!
//! Invariants:
//! - the same tree, label, volume id and timestamp give the same bytes: children are laid out
//!   sorted by name, clusters allocated in that order (each file contiguous), every timestamp
//!   is the given one, short names are derived deterministically;
//! - a volume is FAT32 only if it has at least 65 525 clusters (the spec's rule, which Linux,
//!   fsck.fat and firmware apply): clusters are 512 bytes up to 260 MiB, as mkfs.fat picks, so
//!   a volume must be at least ~33 MiB;
//! - names that are not exactly an upper-case 8.3 name get VFAT long-name entries (UTF-16,
//!   checksummed against their short name); two names of one folder that differ only in case
//!   are refused (FAT compares names case-insensitively).

use std::collections::BTreeMap;

pub const SECTOR: u64 = 512;
/// Reserved sectors before the first FAT: boot sector (0), FSInfo (1), backups (6, 7).
const RESERVED: u64 = 32;
const FATS: u64 = 2;
const BACKUP_BOOT: u64 = 6;
/// The fewest clusters a FAT32 volume may have.
pub const MIN_CLUSTERS: u64 = 65_525;
/// Cluster numbers are 28 bits; the top values are reserved.
const MAX_CLUSTERS: u64 = 0x0FFF_FFF5;
const END_OF_CHAIN: u32 = 0x0FFF_FFFF;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_LONG_NAME: u8 = 0x0F;

/// Why a volume cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FatError {
    #[error("`{0}` is not a valid path (empty, `.`, `..` or a character FAT does not allow)")]
    BadPath(String),
    #[error("`{0}` is added twice (FAT names are case-insensitive)")]
    Duplicate(String),
    #[error("`{0}`: a file is in the way of a folder")]
    NotAFolder(String),
    #[error("`{0}` is larger than FAT's 4 GiB limit")]
    TooLarge(String),
    #[error("a FAT32 volume of {bytes} bytes has {clusters} clusters; FAT32 needs at least 65525")]
    TooFewClusters { bytes: u64, clusters: u64 },
    #[error("the files need {need} clusters; the volume has {have}")]
    Full { need: u64, have: u64 },
    #[error("the volume label `{0}` is not 1 to 11 printable ASCII characters")]
    BadLabel(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(BTreeMap<String, Node>),
    File(Vec<u8>),
}

/// A volume being assembled in memory.
#[derive(Debug, Clone)]
pub struct Volume {
    label: [u8; 11],
    volume_id: u32,
    date: u16,
    time: u16,
    root: BTreeMap<String, Node>,
}

/// The DOS date and time (local time taken as UTC) of a Unix time; clamped to 1980..=2107.
pub fn dos_datetime(unix: u64) -> (u16, u16) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year < 1980 {
        return ((1 << 5) | 1, 0);
    }
    let year = year.min(2107);
    let date = (((year - 1980) as u16) << 9) | ((month as u16) << 5) | day as u16;
    let time = (((secs / 3600) as u16) << 11) | ((((secs / 60) % 60) as u16) << 5) | ((secs % 60) / 2) as u16;
    (date, time)
}

/// Characters a long name may not hold.
fn long_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.encode_utf16().count() <= 255
        && !name.chars().any(|c| (c as u32) < 0x20 || "\"*/:<>?\\|".contains(c))
        && !name.ends_with(' ')
        && !name.ends_with('.')
}

/// Characters a short name may hold (besides letters and digits).
fn short_char_ok(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || "!#$%&'()-@^_`{}~".contains(c)
}

/// `name` as an exact short name (already upper case, base ≤ 8, extension ≤ 3), if it is one.
fn exact_short(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) => (b, e),
        None => (name, ""),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || !base.chars().chain(ext.chars()).all(short_char_ok) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

/// The short-name "basis" of a long name (upper case, invalid characters as `_`, dots and spaces
/// removed, base up to 8, extension from the last dot up to 3) and whether it lost anything.
fn basis(name: &str) -> (Vec<u8>, Vec<u8>, bool) {
    let map = |s: &str| -> (Vec<u8>, bool) {
        let mut lossy = false;
        let mut out = Vec::new();
        for c in s.chars() {
            if c == ' ' || c == '.' {
                lossy = true;
                continue;
            }
            let u = c.to_ascii_uppercase();
            if short_char_ok(u) {
                out.push(u as u8);
            } else {
                out.push(b'_');
                lossy = true;
            }
        }
        (out, lossy)
    };
    let trimmed = name.trim_start_matches('.');
    let (base, ext) = match trimmed.rsplit_once('.') {
        Some((b, e)) => (b, e),
        None => (trimmed, ""),
    };
    let (mut b, lb) = map(base);
    let (mut e, le) = map(ext);
    let lossy = lb || le || b.len() > 8 || e.len() > 3 || trimmed.len() != name.len();
    b.truncate(8);
    e.truncate(3);
    (b, e, lossy)
}

/// The checksum of a short name that its long-name entries carry.
pub fn short_name_checksum(short: &[u8; 11]) -> u8 {
    short.iter().fold(0u8, |sum, &b| ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(b))
}

/// Short names for the children of one folder, in order: exact 8.3 upper-case names as they
/// are, others from their basis (with `~N` when lossy or taken).
fn short_names(names: &[&str]) -> Vec<([u8; 11], bool)> {
    let mut taken: std::collections::BTreeSet<[u8; 11]> = names.iter().filter_map(|n| exact_short(n)).collect();
    let mut out = Vec::new();
    for name in names {
        if let Some(s) = exact_short(name) {
            out.push((s, false));
            continue;
        }
        let (b, e, lossy) = basis(name);
        let b = if b.is_empty() { b"_".to_vec() } else { b };
        let make = |base: &[u8]| {
            let mut s = [b' '; 11];
            s[..base.len()].copy_from_slice(base);
            s[8..8 + e.len()].copy_from_slice(&e);
            s
        };
        let plain = make(&b);
        if !lossy && !taken.contains(&plain) {
            taken.insert(plain);
            out.push((plain, true));
            continue;
        }
        let mut n = 1u32;
        loop {
            let tail = format!("~{n}");
            let keep = (8 - tail.len()).min(b.len());
            let mut base = b[..keep].to_vec();
            base.extend_from_slice(tail.as_bytes());
            let s = make(&base);
            if taken.insert(s) {
                out.push((s, true));
                break;
            }
            n += 1;
        }
    }
    out
}

/// The 32-byte long-name entries for `name` (physical order: last part first).
fn long_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if !units.len().is_multiple_of(13) {
        units.push(0);
        while !units.len().is_multiple_of(13) {
            units.push(0xFFFF);
        }
    }
    let parts = units.len() / 13;
    let sum = short_name_checksum(short);
    let mut out = Vec::new();
    for i in (0..parts).rev() {
        let mut e = [0u8; 32];
        e[0] = (i as u8 + 1) | if i + 1 == parts { 0x40 } else { 0 };
        e[11] = ATTR_LONG_NAME;
        e[13] = sum;
        let chunk = &units[i * 13..i * 13 + 13];
        let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (u, o) in chunk.iter().zip(offsets) {
            e[o..o + 2].copy_from_slice(&u.to_le_bytes());
        }
        out.push(e);
    }
    out
}

impl Volume {
    /// An empty volume. `label`: up to 11 printable ASCII characters (upper-cased, as DOS
    /// stores it); `volume_id`: the serial number (derive it from `SOURCE_DATE_EPOCH`);
    /// `unix_time`: every timestamp.
    pub fn new(label: &str, volume_id: u32, unix_time: u64) -> Result<Volume, FatError> {
        if label.is_empty() || label.len() > 11 || !label.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(FatError::BadLabel(label.to_string()));
        }
        let mut l = [b' '; 11];
        l[..label.len()].copy_from_slice(label.to_ascii_uppercase().as_bytes());
        let (date, time) = dos_datetime(unix_time);
        Ok(Volume { label: l, volume_id, date, time, root: BTreeMap::new() })
    }

    fn folder(&mut self, parts: &[&str], full: &str) -> Result<&mut BTreeMap<String, Node>, FatError> {
        let mut dir = &mut self.root;
        for p in parts {
            let key = find_key(dir, p).unwrap_or_else(|| (*p).to_string());
            let node = dir.entry(key).or_insert_with(|| Node::Dir(BTreeMap::new()));
            dir = match node {
                Node::Dir(d) => d,
                Node::File(_) => return Err(FatError::NotAFolder(full.to_string())),
            };
        }
        Ok(dir)
    }

    fn split(path: &str) -> Result<Vec<&str>, FatError> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if parts.iter().any(|p| !long_name_ok(p)) {
            return Err(FatError::BadPath(path.to_string()));
        }
        Ok(parts)
    }

    /// Adds a folder (and its parents); adding an existing folder again is fine.
    pub fn dir(&mut self, path: &str) -> Result<(), FatError> {
        let parts = Self::split(path)?;
        self.folder(&parts, path)?;
        Ok(())
    }

    /// Adds a file (and its parent folders).
    pub fn file(&mut self, path: &str, data: Vec<u8>) -> Result<(), FatError> {
        let parts = Self::split(path)?;
        if data.len() as u64 > u64::from(u32::MAX) {
            return Err(FatError::TooLarge(path.to_string()));
        }
        let Some((name, parents)) = parts.split_last() else { return Err(FatError::BadPath(path.to_string())) };
        let dir = self.folder(parents, path)?;
        if find_key(dir, name).is_some() {
            return Err(FatError::Duplicate(path.to_string()));
        }
        dir.insert((*name).to_string(), Node::File(data));
        Ok(())
    }

    /// The clusters the tree needs with `cluster_bytes` clusters (folders included).
    fn clusters_needed(dir: &BTreeMap<String, Node>, is_root: bool, cluster_bytes: u64) -> u64 {
        let mut n = dir_entries(dir, is_root).len() as u64 * 32;
        n = n.div_ceil(cluster_bytes).max(1);
        for child in dir.values() {
            n += match child {
                Node::Dir(d) => Self::clusters_needed(d, false, cluster_bytes),
                Node::File(data) => (data.len() as u64).div_ceil(cluster_bytes),
            };
        }
        n
    }

    /// The whole volume of `bytes` bytes (a multiple of 512). `hidden_sectors`: the partition's
    /// first LBA on its disk (the BPB records it).
    pub fn to_bytes(&self, bytes: u64, hidden_sectors: u32) -> Result<Vec<u8>, FatError> {
        let total = bytes / SECTOR;
        let spc: u64 = match bytes {
            0..=272_629_759 => 1,
            272_629_760..=8_589_934_591 => 8,
            8_589_934_592..=17_179_869_183 => 16,
            17_179_869_184..=34_359_738_367 => 32,
            _ => 64,
        };
        let cluster_bytes = spc * SECTOR;
        // FATSz from the spec: (DskSize - Rsvd) / ((256 * SecPerClus + NumFATs) / 2), for FAT32.
        let fat_sectors = (total.saturating_sub(RESERVED)).div_ceil((256 * spc + FATS) / 2);
        let data_start = RESERVED + FATS * fat_sectors;
        let clusters = total.saturating_sub(data_start) / spc;
        if clusters < MIN_CLUSTERS || total > u64::from(u32::MAX) {
            return Err(FatError::TooFewClusters { bytes, clusters });
        }
        let clusters = clusters.min(MAX_CLUSTERS);
        let need = Self::clusters_needed(&self.root, true, cluster_bytes);
        if need > clusters {
            return Err(FatError::Full { need, have: clusters });
        }
        let mut out = vec![0u8; (total * SECTOR) as usize];
        let mut fat: Vec<u32> = vec![0; clusters as usize + 2];
        fat[0] = 0x0FFF_FFF8;
        fat[1] = END_OF_CHAIN;
        let mut w = Writer {
            out: &mut out,
            fat: &mut fat,
            next: 2,
            cluster_bytes,
            data_offset: data_start * SECTOR,
            date: self.date,
            time: self.time,
            label: self.label,
        };
        w.write_dir(&self.root, 0, true);
        let used = w.next - 2;

        // Boot sector.
        let mut bs = [0u8; 512];
        bs[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
        bs[3..11].copy_from_slice(b"MSWIN4.1");
        bs[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
        bs[13] = spc as u8;
        bs[14..16].copy_from_slice(&(RESERVED as u16).to_le_bytes());
        bs[16] = FATS as u8;
        bs[21] = 0xF8;
        bs[24..26].copy_from_slice(&63u16.to_le_bytes());
        bs[26..28].copy_from_slice(&255u16.to_le_bytes());
        bs[28..32].copy_from_slice(&hidden_sectors.to_le_bytes());
        bs[32..36].copy_from_slice(&(total as u32).to_le_bytes());
        bs[36..40].copy_from_slice(&(fat_sectors as u32).to_le_bytes());
        bs[44..48].copy_from_slice(&2u32.to_le_bytes());
        bs[48..50].copy_from_slice(&1u16.to_le_bytes());
        bs[50..52].copy_from_slice(&(BACKUP_BOOT as u16).to_le_bytes());
        bs[64] = 0x80;
        bs[66] = 0x29;
        bs[67..71].copy_from_slice(&self.volume_id.to_le_bytes());
        bs[71..82].copy_from_slice(&self.label);
        bs[82..90].copy_from_slice(b"FAT32   ");
        // Boot code for a BIOS that tries the volume: `int 0x18` (boot failure), then halt.
        bs[90..94].copy_from_slice(&[0xCD, 0x18, 0xF4, 0xEB]);
        bs[94] = 0xFD;
        bs[510] = 0x55;
        bs[511] = 0xAA;
        // FSInfo.
        let mut fsi = [0u8; 512];
        fsi[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
        fsi[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
        fsi[488..492].copy_from_slice(&((clusters - used) as u32).to_le_bytes());
        fsi[492..496].copy_from_slice(&((used + 2) as u32).to_le_bytes());
        fsi[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
        for base in [0, BACKUP_BOOT] {
            let o = (base * SECTOR) as usize;
            out[o..o + 512].copy_from_slice(&bs);
            out[o + 512..o + 1024].copy_from_slice(&fsi);
            // Sector 2 of each copy carries only the boot signature (as mkfs.fat writes it).
            out[o + 1024 + 510] = 0x55;
            out[o + 1024 + 511] = 0xAA;
        }
        let mut fat_bytes = Vec::with_capacity((fat_sectors * SECTOR) as usize);
        for v in &fat {
            fat_bytes.extend_from_slice(&v.to_le_bytes());
        }
        fat_bytes.resize((fat_sectors * SECTOR) as usize, 0);
        for i in 0..FATS {
            let o = ((RESERVED + i * fat_sectors) * SECTOR) as usize;
            out[o..o + fat_bytes.len()].copy_from_slice(&fat_bytes);
        }
        Ok(out)
    }
}

/// The existing key of `dir` equal to `name` ignoring case.
fn find_key(dir: &BTreeMap<String, Node>, name: &str) -> Option<String> {
    let upper = name.to_uppercase();
    dir.keys().find(|k| k.to_uppercase() == upper).cloned()
}

/// One folder's entries before clusters are known: (short name, long name if any, child).
fn dir_entries(dir: &BTreeMap<String, Node>, is_root: bool) -> Vec<[u8; 32]> {
    let names: Vec<&str> = dir.keys().map(String::as_str).collect();
    let mut out = Vec::new();
    // "." and ".." (or the volume label in the root).
    out.push([0u8; 32]);
    if !is_root {
        out.push([0u8; 32]);
    }
    for (name, (short, long)) in names.iter().zip(short_names(&names)) {
        if long {
            out.extend(long_entries(name, &short));
        }
        out.push([0u8; 32]);
    }
    out
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    fat: &'a mut Vec<u32>,
    next: u64,
    cluster_bytes: u64,
    data_offset: u64,
    date: u16,
    time: u16,
    label: [u8; 11],
}

impl Writer<'_> {
    /// Allocates `n` contiguous clusters, chained; returns the first (0 for none).
    fn alloc(&mut self, n: u64) -> u32 {
        if n == 0 {
            return 0;
        }
        let first = self.next;
        for c in first..first + n {
            self.fat[c as usize] = if c + 1 == first + n { END_OF_CHAIN } else { (c + 1) as u32 };
        }
        self.next += n;
        first as u32
    }

    fn put(&mut self, cluster: u32, data: &[u8]) {
        let o = (self.data_offset + (u64::from(cluster) - 2) * self.cluster_bytes) as usize;
        self.out[o..o + data.len()].copy_from_slice(data);
    }

    fn entry(&self, name: &[u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[0..11].copy_from_slice(name);
        e[11] = attr;
        e[14..16].copy_from_slice(&self.time.to_le_bytes());
        e[16..18].copy_from_slice(&self.date.to_le_bytes());
        e[18..20].copy_from_slice(&self.date.to_le_bytes());
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[22..24].copy_from_slice(&self.time.to_le_bytes());
        e[24..26].copy_from_slice(&self.date.to_le_bytes());
        e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }

    /// Writes a folder and everything under it; returns its first cluster. `parent`: the
    /// parent's first cluster (0 for the root, as `..` records it).
    fn write_dir(&mut self, dir: &BTreeMap<String, Node>, parent: u32, is_root: bool) -> u32 {
        let count = dir_entries(dir, is_root).len() as u64;
        let me = self.alloc((count * 32).div_ceil(self.cluster_bytes).max(1));
        let names: Vec<&str> = dir.keys().map(String::as_str).collect();
        let shorts = short_names(&names);
        let mut entries: Vec<[u8; 32]> = Vec::new();
        if is_root {
            entries.push(self.entry(&self.label, ATTR_VOLUME_ID, 0, 0));
        } else {
            entries.push(self.entry(b".          ", ATTR_DIRECTORY, me, 0));
            entries.push(self.entry(b"..         ", ATTR_DIRECTORY, parent, 0));
        }
        for ((name, node), (short, long)) in dir.iter().zip(shorts) {
            let (attr, cluster, size) = match node {
                Node::File(data) => {
                    let c = self.alloc((data.len() as u64).div_ceil(self.cluster_bytes));
                    if c != 0 {
                        self.put(c, data);
                    }
                    (ATTR_ARCHIVE, c, data.len() as u32)
                }
                Node::Dir(d) => (ATTR_DIRECTORY, self.write_dir(d, if is_root { 0 } else { me }, false), 0),
            };
            if long {
                entries.extend(long_entries(name, &short));
            }
            entries.push(self.entry(&short, attr, cluster, size));
        }
        let bytes: Vec<u8> = entries.concat();
        self.put(me, &bytes);
        me
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn sample() -> Volume {
        let mut v = Volume::new("HERMES-ESP", 0x1234_5678, 1_704_067_200).unwrap();
        v.file("EFI/BOOT/BOOTX64.EFI", b"MZ boot".to_vec()).unwrap();
        v.file("EFI/systemd/systemd-bootx64.efi", vec![7u8; 3000]).unwrap();
        v.file("loader/loader.conf", b"timeout 0\n".to_vec()).unwrap();
        v.dir("loader/entries").unwrap();
        v.file("EFI/Linux/hermes-0.1.0+3.efi", (0..200_000u32).map(|i| i as u8).collect()).unwrap();
        v.file("EFI/Linux/a name with many characters, longer than twenty-six.txt", b"x".to_vec()).unwrap();
        v.file("empty", Vec::new()).unwrap();
        v
    }

    #[test]
    fn dos_dates() {
        // 2024-01-01T00:00:00Z
        assert_eq!(dos_datetime(1_704_067_200), ((44 << 9) | (1 << 5) | 1, 0));
        // 2000-02-29T13:45:30Z
        assert_eq!(dos_datetime(951_831_930), ((20 << 9) | (2 << 5) | 29, (13 << 11) | (45 << 5) | 15));
        assert_eq!(dos_datetime(0), ((1 << 5) | 1, 0), "before 1980: clamped");
    }

    #[test]
    fn short_names_and_checksums() {
        let names = ["BOOTX64.EFI", "Linux", "systemd-bootx64.efi", "systemd-other.efi", "loader.conf", "a+b"];
        let s: Vec<String> = short_names(&names).iter().map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect();
        assert_eq!(s, ["BOOTX64 EFI", "LINUX      ", "SYSTEM~1EFI", "SYSTEM~2EFI", "LOADER~1CON", "A_B~1      "]);
        assert!(!short_names(&["BOOTX64.EFI"])[0].1, "an exact 8.3 name needs no long name");
        // The checksum of "FILENAMEEXT" as computed by the reference algorithm.
        let mut sum = 0u8;
        for b in b"SYSTEM~1EFI" {
            sum = (if sum & 1 != 0 { 0x80u8 } else { 0 }).wrapping_add(sum >> 1).wrapping_add(*b);
        }
        assert_eq!(short_name_checksum(b"SYSTEM~1EFI"), sum);
        let long = long_entries("systemd-bootx64.efi", b"SYSTEM~1EFI");
        assert_eq!(long.len(), 2);
        assert_eq!(long[0][0], 0x42, "last part first, flagged");
        assert_eq!(long[1][0], 0x01);
        assert_eq!(long[1][1], b's');
    }

    #[test]
    fn refuses_bad_input() {
        let mut v = Volume::new("X", 1, 0).unwrap();
        assert!(matches!(v.file("a/../b", vec![]), Err(FatError::BadPath(_))));
        assert!(matches!(v.file("a/b:c", vec![]), Err(FatError::BadPath(_))));
        v.file("EFI/x", vec![]).unwrap();
        assert!(matches!(v.file("efi/X", vec![]), Err(FatError::Duplicate(_))));
        assert!(matches!(v.file("EFI/x/y", vec![]), Err(FatError::NotAFolder(_))));
        assert!(matches!(v.to_bytes(16 * MIB, 0), Err(FatError::TooFewClusters { .. })));
        v.file("big", vec![1; (40 * MIB) as usize]).unwrap();
        assert!(matches!(v.to_bytes(34 * MIB, 0), Err(FatError::Full { .. })));
        assert!(Volume::new("twelve chars", 1, 0).is_err());
    }

    #[test]
    fn layout_is_fat32_and_reproducible() {
        let a = sample().to_bytes(40 * MIB, 2048).unwrap();
        assert_eq!(a.len() as u64, 40 * MIB);
        assert_eq!(&a[82..90], b"FAT32   ");
        assert_eq!(&a[510..512], &[0x55, 0xAA]);
        assert_eq!(&a[..512], &a[6 * 512..7 * 512], "backup boot sector");
        assert_eq!(&a[71..82], b"HERMES-ESP ");
        assert_eq!(sample().to_bytes(40 * MIB, 2048).unwrap(), a, "same tree, same bytes");
        let mut other = sample();
        other.file("more", vec![1]).unwrap();
        assert_ne!(other.to_bytes(40 * MIB, 2048).unwrap(), a);
    }

    fn have(tool: &str) -> bool {
        std::process::Command::new(tool).arg("--help").output().is_ok()
    }

    /// dosfstools and mtools (Linux's reading of FAT) find no error and list every file with
    /// its long name and contents. Both are installed by scripts/test.sh.
    #[test]
    fn fsck_fat_and_mtools_read_it_back() {
        assert!(have("fsck.fat"), "fsck.fat is missing: apt-get install dosfstools");
        assert!(have("mtype"), "mtools is missing: apt-get install mtools");
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        let v = sample();
        std::fs::write(&img, v.to_bytes(40 * MIB, 0).unwrap()).unwrap();
        let out = std::process::Command::new("fsck.fat").arg("-n").arg("-v").arg(&img).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "fsck.fat -n failed:\n{text}");
        assert!(!text.to_lowercase().contains("differ"), "{text}");
        assert!(text.contains("13 files, 407/80618 clusters"), "{text}");

        let mtools = |args: &[&str]| {
            let out =
                std::process::Command::new(args[0]).args(&args[1..]).env("MTOOLS_SKIP_CHECK", "1").output().unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        let i = img.to_str().unwrap();
        let listing = String::from_utf8_lossy(&mtools(&["mdir", "-i", i, "-/", "-b", "::/"])).into_owned();
        for want in [
            "::/EFI/BOOT/BOOTX64.EFI",
            "::/EFI/systemd/systemd-bootx64.efi",
            "::/EFI/Linux/hermes-0.1.0+3.efi",
            "::/EFI/Linux/a name with many characters, longer than twenty-six.txt",
            "::/loader/loader.conf",
            "::/loader/entries/",
            "::/empty",
        ] {
            assert!(listing.lines().any(|l| l == want), "{want} missing from:\n{listing}");
        }
        assert_eq!(mtools(&["mtype", "-i", i, "::/loader/loader.conf"]), b"timeout 0\n");
        let big = mtools(&["mtype", "-i", i, "::/EFI/Linux/hermes-0.1.0+3.efi"]);
        assert_eq!(big, (0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        assert_eq!(mtools(&["mtype", "-i", i, "::/EFI/systemd/systemd-bootx64.efi"]), vec![7u8; 3000]);
        let label = String::from_utf8_lossy(&mtools(&["mlabel", "-i", i, "-s", "::"])).into_owned();
        assert!(label.contains("HERMES-ESP"), "{label}");
    }
}
