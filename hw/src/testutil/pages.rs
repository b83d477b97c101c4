//! Builders for SMART pages and SAT sense data with known values.
//!
//! Not recordings: each builder lays bytes out exactly as the standard says, so a test states the
//! values it expects. Invariant: ATA pages come out with a valid checksum in byte 511.

use crate::smart::ata::{AtaRegisters, SECTOR};
use crate::smart::nvme::{HEALTH_LOG_LEN, IDENTIFY_LEN, SELFTEST_LOG_LEN};

/// Writes an ATA string (two characters per word, first in the high byte), space-padded.
fn put_ata_string(page: &mut [u8], word: usize, words: usize, s: &str) {
    let mut chars: Vec<u8> = s.bytes().take(words * 2).collect();
    chars.resize(words * 2, b' ');
    for (i, pair) in chars.chunks(2).enumerate() {
        let off = 2 * (word + i);
        page[off] = pair[1];
        page[off + 1] = pair[0];
    }
}

fn put_word(page: &mut [u8], word: usize, v: u16) {
    page[2 * word..2 * word + 2].copy_from_slice(&v.to_le_bytes());
}

/// Sets byte 511 so the page sums to 0 modulo 256.
pub fn fix_checksum(page: &mut [u8; SECTOR]) {
    page[511] = 0;
    let sum = page.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    page[511] = 0u8.wrapping_sub(sum);
}

/// IDENTIFY DEVICE page contents.
#[derive(Debug, Clone)]
pub struct Identify {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub sectors: u64,
    /// Use the LBA48 words (100..103); otherwise only words 60..61.
    pub lba48: bool,
    pub smart_supported: bool,
    pub smart_enabled: bool,
    /// log2(physical / logical), 0 for 512n disks, 3 for 512e.
    pub physical_shift: u8,
    /// Words 117..118 (logical sector size in words) when not 512-byte sectors.
    pub logical_words: Option<u32>,
    pub rotation: u16,
    pub wwn: Option<u64>,
    /// Write the integrity word (signature 0xA5 + checksum) in word 255.
    pub integrity: bool,
}

impl Default for Identify {
    fn default() -> Self {
        Self {
            model: "WDC WD80EFZZ-68BTXN0".into(),
            serial: "WD-CA0ABCDE".into(),
            firmware: "81.00A81".into(),
            sectors: 15_628_053_168,
            lba48: true,
            smart_supported: true,
            smart_enabled: true,
            physical_shift: 3,
            logical_words: None,
            rotation: 5400,
            wwn: Some(0x5000_CCA2_9ABC_DEF0),
            integrity: true,
        }
    }
}

impl Identify {
    pub fn build(&self) -> [u8; SECTOR] {
        let mut p = [0u8; SECTOR];
        put_word(&mut p, 0, 0x0040); // fixed device, ATA
        put_ata_string(&mut p, 10, 10, &self.serial);
        put_ata_string(&mut p, 23, 4, &self.firmware);
        put_ata_string(&mut p, 27, 20, &self.model);
        put_word(&mut p, 49, 1 << 9); // LBA supported
        let lba28 = u32::try_from(self.sectors.min(0x0FFF_FFFF)).unwrap_or(0x0FFF_FFFF);
        p[120..124].copy_from_slice(&lba28.to_le_bytes());
        let mut w82 = 0u16;
        let mut w83 = 0x4000u16;
        let mut w84 = 0x4000u16;
        let mut w85 = 0u16;
        let mut w87 = 0x4000u16;
        if self.smart_supported {
            w82 |= 1;
            w84 |= 1 << 1;
            w87 |= 1 << 1;
        }
        if self.smart_enabled {
            w85 |= 1;
        }
        if self.lba48 {
            w83 |= 1 << 10;
            p[200..208].copy_from_slice(&self.sectors.to_le_bytes());
        }
        if let Some(wwn) = self.wwn {
            w84 |= 1 << 8;
            w87 |= 1 << 8;
            put_word(&mut p, 108, (wwn >> 48) as u16);
            put_word(&mut p, 109, (wwn >> 32) as u16);
            put_word(&mut p, 110, (wwn >> 16) as u16);
            put_word(&mut p, 111, wwn as u16);
        }
        put_word(&mut p, 82, w82);
        put_word(&mut p, 83, w83);
        put_word(&mut p, 84, w84);
        put_word(&mut p, 85, w85);
        put_word(&mut p, 87, w87);
        let mut w106 = 0x4000u16;
        if self.physical_shift > 0 {
            w106 |= (1 << 13) | u16::from(self.physical_shift & 0x0F);
        }
        if let Some(words) = self.logical_words {
            w106 |= 1 << 12;
            p[234..238].copy_from_slice(&words.to_le_bytes());
        }
        put_word(&mut p, 106, w106);
        put_word(&mut p, 217, self.rotation);
        if self.integrity {
            put_word(&mut p, 255, 0x00A5);
            fix_checksum(&mut p);
        }
        p
    }
}

/// One attribute for [`smart_data_page`]: id, flags, current, worst, raw (48-bit).
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub id: u8,
    pub flags: u16,
    pub current: u8,
    pub worst: u8,
    pub raw: u64,
}

impl Attr {
    pub const fn new(id: u8, current: u8, raw: u64) -> Self {
        // Pre-fail for the ids whose thresholds matter, like real disks.
        let flags = if matches!(id, 1 | 3 | 5 | 7 | 10) { 0x0033 } else { 0x0032 };
        Self { id, flags, current, worst: current, raw }
    }
}

/// A healthy 8 TB NAS disk's attribute table (values of the kind smartctl shows).
pub fn healthy_attrs() -> Vec<Attr> {
    vec![
        Attr::new(1, 100, 0),
        Attr::new(3, 200, 0),
        Attr::new(4, 100, 57),
        Attr::new(5, 200, 0),
        Attr::new(7, 100, 0),
        Attr::new(9, 60, 29_345),
        Attr::new(10, 100, 0),
        Attr::new(12, 100, 57),
        Attr::new(187, 100, 0),
        Attr::new(188, 100, 0),
        Attr::new(192, 200, 44),
        Attr::new(193, 200, 1_210),
        // 194: 36 °C now, min 21, max 45 packed in the higher bytes (tempminmax).
        Attr::new(194, 116, 36 | (21 << 16) | (45 << 32)),
        Attr::new(196, 200, 0),
        Attr::new(197, 200, 0),
        Attr::new(198, 100, 0),
        Attr::new(199, 200, 0),
    ]
}

/// SMART READ DATA page with these attributes, self-test execution byte, polling times; checksum set.
pub fn smart_data_page(attrs: &[Attr], selftest_byte: u8) -> [u8; SECTOR] {
    let mut p = [0u8; SECTOR];
    p[0..2].copy_from_slice(&0x0010u16.to_le_bytes());
    for (slot, a) in attrs.iter().take(30).enumerate() {
        let off = 2 + slot * 12;
        p[off] = a.id;
        p[off + 1..off + 3].copy_from_slice(&a.flags.to_le_bytes());
        p[off + 3] = a.current;
        p[off + 4] = a.worst;
        p[off + 5..off + 11].copy_from_slice(&a.raw.to_le_bytes()[..6]);
    }
    p[362] = 0x82; // off-line data collection completed, auto off-line enabled
    p[363] = selftest_byte;
    p[364..366].copy_from_slice(&6_000u16.to_le_bytes());
    p[367] = 0x7B;
    p[368..370].copy_from_slice(&0x0003u16.to_le_bytes());
    p[370] = 0x01;
    p[372] = 2; // short test: 2 min
    p[373] = 0xFF; // extended: see word 375
    p[375..377].copy_from_slice(&781u16.to_le_bytes());
    fix_checksum(&mut p);
    p
}

/// READ THRESHOLDS page for these (id, threshold) pairs; checksum set.
pub fn thresholds_page(thresholds: &[(u8, u8)]) -> [u8; SECTOR] {
    let mut p = [0u8; SECTOR];
    p[0..2].copy_from_slice(&0x0010u16.to_le_bytes());
    for (slot, &(id, t)) in thresholds.iter().take(30).enumerate() {
        let off = 2 + slot * 12;
        p[off] = id;
        p[off + 1] = t;
    }
    fix_checksum(&mut p);
    p
}

/// Typical thresholds for [`healthy_attrs`].
pub fn healthy_thresholds() -> Vec<(u8, u8)> {
    vec![
        (1, 51),
        (3, 21),
        (4, 0),
        (5, 140),
        (7, 0),
        (9, 0),
        (10, 0),
        (12, 0),
        (187, 0),
        (188, 0),
        (192, 0),
        (193, 0),
        (194, 0),
        (196, 0),
        (197, 0),
        (198, 0),
        (199, 0),
    ]
}

/// One self-test log descriptor: test (LBA low), status byte, hours, failing LBA.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry {
    pub test: u8,
    pub status: u8,
    pub hours: u16,
    pub lba: u32,
}

/// Self-test log with `entries` oldest first, written from descriptor 0 and wrapping after 21;
/// the index points at the newest one. Checksum set.
pub fn selftest_log_page(entries: &[LogEntry]) -> [u8; SECTOR] {
    let mut p = [0u8; SECTOR];
    p[0..2].copy_from_slice(&1u16.to_le_bytes());
    let mut index = 0usize;
    for (n, e) in entries.iter().enumerate() {
        let slot = n % 21;
        let off = 2 + slot * 24;
        p[off] = e.test;
        p[off + 1] = e.status;
        p[off + 2..off + 4].copy_from_slice(&e.hours.to_le_bytes());
        p[off + 5..off + 9].copy_from_slice(&e.lba.to_le_bytes());
        index = slot + 1;
    }
    p[508] = u8::try_from(index).unwrap_or(0);
    fix_checksum(&mut p);
    p
}

/// Descriptor-format sense (0x72, RECOVERED ERROR, 00/1D) with an ATA Status Return descriptor.
pub fn sense_descriptor(r: AtaRegisters) -> Vec<u8> {
    sense_descriptor_with_key(0x01, r)
}

/// As [`sense_descriptor`] with another sense key (e.g. 0x0B ABORTED COMMAND).
pub fn sense_descriptor_with_key(key: u8, r: AtaRegisters) -> Vec<u8> {
    let mut s = vec![0x72, key, 0x00, 0x1D, 0, 0, 0, 14];
    s.extend_from_slice(&[
        0x09, 0x0C, 0x00, r.error, 0, r.count, 0, r.lba_low, 0, r.lba_mid, 0, r.lba_high, r.device, r.status,
    ]);
    s
}

/// Fixed-format sense (0x70, RECOVERED ERROR, 00/1D) carrying the ATA registers (SAT-3).
pub fn sense_fixed(r: AtaRegisters) -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = 0x01;
    s[3] = r.error;
    s[4] = r.status;
    s[5] = r.device;
    s[6] = r.count;
    s[7] = 10;
    s[9] = r.lba_low;
    s[10] = r.lba_mid;
    s[11] = r.lba_high;
    s[12] = 0x00;
    s[13] = 0x1D;
    s
}

/// NVMe Identify Controller contents.
#[derive(Debug, Clone)]
pub struct NvmeIdentify {
    pub vid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub oacs: u16,
    pub wctemp_k: u16,
    pub cctemp_k: u16,
    pub total_capacity: u128,
}

impl Default for NvmeIdentify {
    fn default() -> Self {
        Self {
            vid: 0x144D,
            serial: "S5GXNF0R123456".into(),
            model: "Samsung SSD 980 PRO 1TB".into(),
            firmware: "5B2QGXA7".into(),
            oacs: 0x0017,
            wctemp_k: 355,
            cctemp_k: 358,
            total_capacity: 1_000_204_886_016,
        }
    }
}

impl NvmeIdentify {
    pub fn build(&self) -> Vec<u8> {
        let mut p = vec![0u8; IDENTIFY_LEN];
        let mut ascii = |off: usize, len: usize, s: &str| {
            let mut b: Vec<u8> = s.bytes().take(len).collect();
            b.resize(len, b' ');
            p[off..off + len].copy_from_slice(&b);
        };
        ascii(4, 20, &self.serial);
        ascii(24, 40, &self.model);
        ascii(64, 8, &self.firmware);
        p[0..2].copy_from_slice(&self.vid.to_le_bytes());
        p[2..4].copy_from_slice(&self.vid.to_le_bytes());
        p[256..258].copy_from_slice(&self.oacs.to_le_bytes());
        p[266..268].copy_from_slice(&self.wctemp_k.to_le_bytes());
        p[268..270].copy_from_slice(&self.cctemp_k.to_le_bytes());
        p[280..296].copy_from_slice(&self.total_capacity.to_le_bytes());
        p[516..520].copy_from_slice(&1u32.to_le_bytes());
        p
    }
}

/// NVMe SMART / Health log contents.
#[derive(Debug, Clone)]
pub struct NvmeHealthPage {
    pub critical_warning: u8,
    pub temperature_k: u16,
    pub available_spare: u8,
    pub spare_threshold: u8,
    pub percentage_used: u8,
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub error_log_entries: u128,
}

impl Default for NvmeHealthPage {
    fn default() -> Self {
        Self {
            critical_warning: 0,
            temperature_k: 310,
            available_spare: 100,
            spare_threshold: 10,
            percentage_used: 3,
            data_units_read: 12_345_678,
            data_units_written: 23_456_789,
            power_cycles: 120,
            power_on_hours: 8_760,
            unsafe_shutdowns: 7,
            media_errors: 0,
            error_log_entries: 2,
        }
    }
}

impl NvmeHealthPage {
    pub fn build(&self) -> Vec<u8> {
        let mut p = vec![0u8; HEALTH_LOG_LEN];
        p[0] = self.critical_warning;
        p[1..3].copy_from_slice(&self.temperature_k.to_le_bytes());
        p[3] = self.available_spare;
        p[4] = self.spare_threshold;
        p[5] = self.percentage_used;
        for (off, v) in [
            (32, self.data_units_read),
            (48, self.data_units_written),
            (112, self.power_cycles),
            (128, self.power_on_hours),
            (144, self.unsafe_shutdowns),
            (160, self.media_errors),
            (176, self.error_log_entries),
        ] {
            p[off..off + 16].copy_from_slice(&v.to_le_bytes());
        }
        p[200..202].copy_from_slice(&self.temperature_k.to_le_bytes());
        p
    }
}

/// NVMe Device Self-test log: current operation and completion, then entries newest first as
/// (status byte = code << 4 | result, segment, power-on hours, failing LBA); unused slots 0x0F.
pub fn nvme_selftest_log_page(current: u8, completion: u8, entries: &[(u8, u8, u64, Option<u64>)]) -> Vec<u8> {
    let mut p = vec![0u8; SELFTEST_LOG_LEN];
    p[0] = current;
    p[1] = completion;
    for i in 0..20 {
        let off = 4 + i * 28;
        match entries.get(i) {
            Some(&(status, segment, hours, lba)) => {
                p[off] = status;
                p[off + 1] = segment;
                p[off + 4..off + 12].copy_from_slice(&hours.to_le_bytes());
                if let Some(lba) = lba {
                    p[off + 2] = 0x02;
                    p[off + 16..off + 24].copy_from_slice(&lba.to_le_bytes());
                }
            }
            None => p[off] = 0x0F,
        }
    }
    p
}
