//! ATA SMART over SAT: decoders for the 512-byte pages ATA disks return, the ATA PASS-THROUGH(16)
//! command blocks that request them, and the SCSI sense data that carries ATA registers back.
//!
//! What it is: pure functions. IDENTIFY DEVICE ([`decode_identify`]), SMART READ DATA
//! ([`decode_smart_data`]), READ THRESHOLDS ([`decode_thresholds`]), SMART RETURN STATUS from sense
//! data ([`smart_status_from_sense`]), the SMART self-test log ([`decode_selftest_log`]), the
//! SG_IO outcome check ([`check_pass_through`]) and the CDB builders ([`AtaCommand`]).
//!
//! What it is not: I/O ([`crate::ioctl`] sends the CDBs) and not a judgement of health
//! ([`crate::verdict`] does that). It knows no vendor-specific attribute layouts beyond the
//! smartmontools defaults for the attributes the verdict uses (see [`SmartAttribute::value`]).
//!
//! Invariants: every page decoder requires exactly [`SECTOR`] bytes, verifies the checksum where the
//! standard defines one, and reads only fixed offsets inside the page; garbage gives a
//! [`DecodeError`], never a panic. CDB layouts match smartmontools' `sat_device::ata_pass_through`
//! (SAT-4 §12.2.2): protocol in byte 1, CK_COND/T_DIR/BYTE_BLOCK/T_LENGTH in byte 2, 28-bit
//! registers in the odd bytes 4..12, device in 13, command in 14.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DecodeError, expect_len};
use crate::bytes::{ata_string, checksum8, le_u16, le_u32, le_u48, le_u64, u8_at};

/// Every page here is one 512-byte sector.
pub const SECTOR: usize = 512;

/// SCSI operation code of ATA PASS-THROUGH(16) (SAT).
pub const ATA_PASS_THROUGH_16: u8 = 0x85;
/// ATA IDENTIFY DEVICE.
pub const ATA_IDENTIFY_DEVICE: u8 = 0xEC;
/// ATA SMART (the feature register selects the subcommand).
pub const ATA_SMART: u8 = 0xB0;
/// SMART subcommand: READ DATA.
pub const SMART_READ_DATA: u8 = 0xD0;
/// SMART subcommand: READ ATTRIBUTE THRESHOLDS (obsolete in ACS, still implemented by disks).
pub const SMART_READ_THRESHOLDS: u8 = 0xD1;
/// SMART subcommand: EXECUTE OFF-LINE IMMEDIATE (starts self-tests).
pub const SMART_EXECUTE_OFFLINE_IMMEDIATE: u8 = 0xD4;
/// SMART subcommand: READ LOG.
pub const SMART_READ_LOG: u8 = 0xD5;
/// SMART subcommand: RETURN STATUS.
pub const SMART_RETURN_STATUS: u8 = 0xDA;
/// SMART log address of the (28-bit) self-test log.
pub const LOG_SELFTEST: u8 = 0x06;
/// The SMART key: LBA mid/high must hold these for every SMART command; RETURN STATUS echoes them
/// when the disk is healthy.
pub const SMART_LBA_MID: u8 = 0x4F;
pub const SMART_LBA_HIGH: u8 = 0xC2;
/// What RETURN STATUS puts in LBA mid/high when a threshold is exceeded.
pub const SMART_FAIL_LBA_MID: u8 = 0xF4;
pub const SMART_FAIL_LBA_HIGH: u8 = 0x2C;

/// Number of attribute slots in the SMART data and threshold pages.
pub const ATTRIBUTE_SLOTS: usize = 30;
/// Number of descriptors in the SMART self-test log.
pub const SELFTEST_DESCRIPTORS: usize = 21;

// ---------------------------------------------------------------------------------------------
// IDENTIFY DEVICE
// ---------------------------------------------------------------------------------------------

/// Nominal media rotation rate (IDENTIFY word 217).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// Not reported.
    Unknown,
    /// Non-rotating media (SSD).
    SolidState,
    /// Rotating media at this many rpm.
    Rpm(u16),
}

/// What IDENTIFY DEVICE tells about a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtaIdentity {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    /// World Wide Name (words 108..111), when the disk reports one.
    pub wwn: Option<u64>,
    /// User-addressable logical sectors (LBA48 words 100..103, else words 60..61).
    pub sectors: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    /// `sectors × logical_sector_size`.
    pub capacity_bytes: u64,
    pub lba48: bool,
    pub smart_supported: bool,
    pub smart_enabled: bool,
    pub selftest_supported: bool,
    pub rotation: Rotation,
}

/// A word pair (e.g. 82/85) is valid when bits 15:14 of its "valid" word read 01.
fn words_valid(w: u16) -> bool {
    w & 0xC000 == 0x4000
}

/// Decodes a 512-byte IDENTIFY DEVICE page.
///
/// Errors: wrong length; an ATAPI (packet) device; a page of zeros; a failed integrity word
/// (word 255 signature 0xA5 with a checksum that does not make the page sum to 0); an implausible
/// logical sector size.
pub fn decode_identify(page: &[u8]) -> Result<AtaIdentity, DecodeError> {
    const WHAT: &str = "IDENTIFY DEVICE";
    expect_len(WHAT, page, SECTOR)?;
    let malformed = |detail: &str| DecodeError::Malformed { what: WHAT.into(), detail: detail.into() };
    let w = |n: usize| le_u16(page, 2 * n);

    if page.iter().all(|&b| b == 0) {
        return Err(malformed("page is all zeros (device returned no data)"));
    }
    if w(0) & 0x8000 != 0 {
        return Err(malformed("word 0 bit 15 set: an ATAPI device, not an ATA disk"));
    }
    if w(255) & 0x00FF == 0x00A5 {
        let sum = checksum8(page);
        if sum != 0 {
            return Err(DecodeError::Checksum { what: WHAT.into(), sum });
        }
    }

    let w83_valid = words_valid(w(83));
    let w87_valid = words_valid(w(87));
    let lba48 = w83_valid && w(83) & (1 << 10) != 0;
    let lba48_sectors = le_u64(page, 200);
    let lba28_sectors = u64::from(le_u32(page, 120));
    let sectors = if lba48 && lba48_sectors != 0 { lba48_sectors } else { lba28_sectors };

    let w106 = w(106);
    let w106_valid = words_valid(w106);
    let logical_sector_size = if w106_valid && w106 & (1 << 12) != 0 {
        // Words 117..118: logical sector size in 16-bit words.
        let words = le_u32(page, 234);
        if !(256..=32_768).contains(&words) {
            return Err(malformed(&format!("logical sector size of {words} words is implausible")));
        }
        words * 2
    } else {
        512
    };
    let physical_sector_size = if w106_valid && w106 & (1 << 13) != 0 {
        logical_sector_size.checked_shl(u32::from(w106 & 0x0F)).unwrap_or(logical_sector_size)
    } else {
        logical_sector_size
    };

    // Word 82 bit 0: SMART supported; word 85 bit 0: enabled; word 84/87 bit 1: self-test.
    let smart_supported = w83_valid && w(82) & 1 != 0;
    let smart_enabled = smart_supported && w87_valid && w(85) & 1 != 0;
    let selftest_supported = smart_supported && w87_valid && w(87) & (1 << 1) != 0;

    let wwn = if w87_valid && w(87) & (1 << 8) != 0 {
        let v = (u64::from(w(108)) << 48) | (u64::from(w(109)) << 32) | (u64::from(w(110)) << 16) | u64::from(w(111));
        (v != 0).then_some(v)
    } else {
        None
    };

    let rotation = match w(217) {
        1 => Rotation::SolidState,
        r @ 0x0401..=0xFFFE => Rotation::Rpm(r),
        _ => Rotation::Unknown,
    };

    Ok(AtaIdentity {
        model: ata_string(page, 27, 20),
        serial: ata_string(page, 10, 10),
        firmware: ata_string(page, 23, 4),
        wwn,
        sectors,
        logical_sector_size,
        physical_sector_size,
        capacity_bytes: sectors.saturating_mul(u64::from(logical_sector_size)),
        lba48,
        smart_supported,
        smart_enabled,
        selftest_supported,
        rotation,
    })
}

// ---------------------------------------------------------------------------------------------
// SMART READ DATA and READ THRESHOLDS
// ---------------------------------------------------------------------------------------------

/// Whether to insist on the page checksum. Some firmware gets it wrong (smartmontools has
/// `-F` work-arounds for that); the service may choose to accept such a page and say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumPolicy {
    Verify,
    Ignore,
}

/// One SMART attribute as the disk reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartAttribute {
    pub id: u8,
    pub flags: u16,
    /// Normalised current value (1..253, higher is better).
    pub current: u8,
    /// Worst normalised value seen.
    pub worst: u8,
    /// The 48-bit raw field, as a little-endian number.
    pub raw: u64,
}

impl SmartAttribute {
    /// Pre-failure (warranty) attribute: crossing its threshold predicts imminent failure.
    pub fn prefailure(&self) -> bool {
        self.flags & 0x0001 != 0
    }

    /// smartmontools' default name for well-known ids, `Unknown_Attribute` otherwise.
    pub fn name(&self) -> &'static str {
        attribute_name(self.id)
    }

    /// The raw value interpreted as smartmontools does by default for this id:
    /// 5 and 196 are `raw16` (low 16 bits), 9 is `raw24` (hours; the top byte holds minutes on
    /// some disks), 190 and 194 are temperatures (low byte, °C), everything else is `raw48`.
    pub fn value(&self) -> u64 {
        match self.id {
            5 | 196 => self.raw & 0xFFFF,
            9 => self.raw & 0xFF_FFFF,
            190 | 194 => self.raw & 0xFF,
            _ => self.raw,
        }
    }
}

/// smartmontools' default attribute names for the ids Hermes shows.
pub fn attribute_name(id: u8) -> &'static str {
    match id {
        1 => "Raw_Read_Error_Rate",
        3 => "Spin_Up_Time",
        4 => "Start_Stop_Count",
        5 => "Reallocated_Sector_Ct",
        7 => "Seek_Error_Rate",
        9 => "Power_On_Hours",
        10 => "Spin_Retry_Count",
        12 => "Power_Cycle_Count",
        177 => "Wear_Leveling_Count",
        184 => "End-to-End_Error",
        187 => "Reported_Uncorrect",
        188 => "Command_Timeout",
        190 => "Airflow_Temperature_Cel",
        194 => "Temperature_Celsius",
        196 => "Reallocated_Event_Count",
        197 => "Current_Pending_Sector",
        198 => "Offline_Uncorrectable",
        199 => "UDMA_CRC_Error_Count",
        231 => "SSD_Life_Left",
        233 => "Media_Wearout_Indicator",
        241 => "Total_LBAs_Written",
        242 => "Total_LBAs_Read",
        _ => "Unknown_Attribute",
    }
}

/// Self-test execution status (high nibble of SMART data byte 363 and of each log descriptor's
/// status byte), as ACS defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfTestStatus {
    /// 0: completed without error, or no test has run.
    CompletedOk,
    /// 1: aborted by the host.
    AbortedByHost,
    /// 2: interrupted by a host reset.
    InterruptedByReset,
    /// 3: a fatal or unknown error stopped the test.
    FatalError,
    /// 4: completed with an unknown element failing.
    UnknownElementFailed,
    /// 5: completed with the electrical element failing.
    ElectricalFailed,
    /// 6: completed with the servo/seek element failing.
    ServoFailed,
    /// 7: completed with the read element failing.
    ReadFailed,
    /// 8: completed, handling damage suspected.
    HandlingDamage,
    /// 15: in progress.
    InProgress,
    /// 9..=14: reserved values.
    Reserved(u8),
}

impl SelfTestStatus {
    /// Decodes a status nibble (the caller passes `byte >> 4`).
    pub fn from_nibble(n: u8) -> Self {
        match n & 0x0F {
            0 => Self::CompletedOk,
            1 => Self::AbortedByHost,
            2 => Self::InterruptedByReset,
            3 => Self::FatalError,
            4 => Self::UnknownElementFailed,
            5 => Self::ElectricalFailed,
            6 => Self::ServoFailed,
            7 => Self::ReadFailed,
            8 => Self::HandlingDamage,
            15 => Self::InProgress,
            other => Self::Reserved(other),
        }
    }

    /// The test found the disk faulty (values 3..=8, as smartmontools counts errors).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::FatalError
                | Self::UnknownElementFailed
                | Self::ElectricalFailed
                | Self::ServoFailed
                | Self::ReadFailed
                | Self::HandlingDamage
        )
    }

    pub fn describe(self) -> String {
        match self {
            Self::CompletedOk => "completed without error".into(),
            Self::AbortedByHost => "aborted by host".into(),
            Self::InterruptedByReset => "interrupted by host reset".into(),
            Self::FatalError => "fatal or unknown error".into(),
            Self::UnknownElementFailed => "completed: unknown element failed".into(),
            Self::ElectricalFailed => "completed: electrical element failed".into(),
            Self::ServoFailed => "completed: servo/seek element failed".into(),
            Self::ReadFailed => "completed: read element failed".into(),
            Self::HandlingDamage => "completed: handling damage suspected".into(),
            Self::InProgress => "in progress".into(),
            Self::Reserved(n) => format!("reserved status {n}"),
        }
    }
}

/// Self-test execution state from the SMART data page (byte 363).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestExecution {
    pub status: SelfTestStatus,
    /// Percent of the test remaining (the low nibble × 10); meaningful while in progress.
    pub remaining_percent: u8,
}

impl SelfTestExecution {
    fn from_byte(b: u8) -> Self {
        Self { status: SelfTestStatus::from_nibble(b >> 4), remaining_percent: (b & 0x0F) * 10 }
    }
}

/// The SMART READ DATA page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartData {
    pub revision: u16,
    /// Non-empty attribute slots, in page order.
    pub attributes: Vec<SmartAttribute>,
    pub offline_collection_status: u8,
    pub selftest: SelfTestExecution,
    /// SMART capability word (bytes 368..369).
    pub capability: u16,
    /// Recommended polling time for a short self-test, minutes.
    pub short_test_minutes: u8,
    /// Recommended polling time for an extended self-test, minutes (word 375..376 when byte 373
    /// is 0xFF, as ACS specifies for long tests).
    pub extended_test_minutes: u16,
    /// Whether the checksum was verified and matched (false only under [`ChecksumPolicy::Ignore`]
    /// with a mismatching page).
    pub checksum_ok: bool,
}

impl SmartData {
    /// The first attribute with this id.
    pub fn attribute(&self, id: u8) -> Option<&SmartAttribute> {
        self.attributes.iter().find(|a| a.id == id)
    }

    /// Current temperature in °C from attribute 194, else 190; `None` if absent or implausible.
    pub fn temperature_c(&self) -> Option<u8> {
        [194u8, 190]
            .iter()
            .filter_map(|&id| self.attribute(id))
            .map(|a| a.value())
            .find(|&t| (1..=127).contains(&t))
            .and_then(|t| u8::try_from(t).ok())
    }

    /// Power-on hours from attribute 9.
    pub fn power_on_hours(&self) -> Option<u64> {
        self.attribute(9).map(SmartAttribute::value)
    }
}

fn verify_checksum(what: &str, page: &[u8], policy: ChecksumPolicy) -> Result<bool, DecodeError> {
    let sum = checksum8(page);
    match (sum, policy) {
        (0, _) => Ok(true),
        (_, ChecksumPolicy::Ignore) => Ok(false),
        (sum, ChecksumPolicy::Verify) => Err(DecodeError::Checksum { what: what.into(), sum }),
    }
}

/// Decodes a SMART READ DATA page: 30 attribute slots of 12 bytes at offset 2 (id, flags u16,
/// current, worst, raw 6 bytes, reserved), self-test execution status at 363, checksum at 511.
pub fn decode_smart_data(page: &[u8], policy: ChecksumPolicy) -> Result<SmartData, DecodeError> {
    const WHAT: &str = "SMART READ DATA";
    expect_len(WHAT, page, SECTOR)?;
    let checksum_ok = verify_checksum(WHAT, page, policy)?;
    let mut attributes = Vec::with_capacity(ATTRIBUTE_SLOTS);
    for slot in 0..ATTRIBUTE_SLOTS {
        let off = 2 + slot * 12;
        let id = u8_at(page, off);
        if id == 0 {
            continue;
        }
        attributes.push(SmartAttribute {
            id,
            flags: le_u16(page, off + 1),
            current: u8_at(page, off + 3),
            worst: u8_at(page, off + 4),
            raw: le_u48(page, off + 5),
        });
    }
    let extended = match u8_at(page, 373) {
        0xFF => le_u16(page, 375),
        m => u16::from(m),
    };
    Ok(SmartData {
        revision: le_u16(page, 0),
        attributes,
        offline_collection_status: u8_at(page, 362),
        selftest: SelfTestExecution::from_byte(u8_at(page, 363)),
        capability: le_u16(page, 368),
        short_test_minutes: u8_at(page, 372),
        extended_test_minutes: extended,
        checksum_ok,
    })
}

/// The READ THRESHOLDS page: attribute id → threshold (0 means "always passing").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    pub revision: u16,
    pub by_id: BTreeMap<u8, u8>,
}

/// Decodes a READ THRESHOLDS page: 30 slots of 12 bytes at offset 2 (id, threshold, reserved),
/// checksum at 511.
pub fn decode_thresholds(page: &[u8], policy: ChecksumPolicy) -> Result<Thresholds, DecodeError> {
    const WHAT: &str = "SMART READ THRESHOLDS";
    expect_len(WHAT, page, SECTOR)?;
    verify_checksum(WHAT, page, policy)?;
    let mut by_id = BTreeMap::new();
    for slot in 0..ATTRIBUTE_SLOTS {
        let off = 2 + slot * 12;
        let id = u8_at(page, off);
        if id != 0 {
            by_id.entry(id).or_insert(u8_at(page, off + 1));
        }
    }
    Ok(Thresholds { revision: le_u16(page, 0), by_id })
}

/// An attribute judged against its threshold, as smartmontools' `ata_get_attr_state` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeState {
    /// Threshold 0 ("always passing"), none known, or current value above it.
    Ok,
    /// The worst value reached the threshold in the past; the current value is above it.
    FailedInPast,
    /// The current value is at or below a non-zero threshold.
    FailingNow,
}

/// Compares an attribute with its threshold.
pub fn attribute_state(attr: &SmartAttribute, thresholds: &Thresholds) -> AttributeState {
    match thresholds.by_id.get(&attr.id).copied() {
        None | Some(0) => AttributeState::Ok,
        Some(t) if attr.current <= t => AttributeState::FailingNow,
        Some(t) if attr.worst <= t => AttributeState::FailedInPast,
        Some(_) => AttributeState::Ok,
    }
}

// ---------------------------------------------------------------------------------------------
// SMART self-test log (log address 6)
// ---------------------------------------------------------------------------------------------

/// One self-test log descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestEntry {
    /// The test that ran: the EXECUTE OFF-LINE IMMEDIATE subcommand (LBA low) that started it.
    pub test: u8,
    pub status: SelfTestStatus,
    pub remaining_percent: u8,
    /// Power-on hours when the test finished.
    pub lifetime_hours: u16,
    /// LBA of the first failure, for failed tests.
    pub first_failure_lba: Option<u32>,
}

impl SelfTestEntry {
    /// Human name of the test kind.
    pub fn test_name(&self) -> &'static str {
        match self.test {
            0x00 => "offline",
            0x01 | 0x81 => "short",
            0x02 | 0x82 => "extended",
            0x03 | 0x83 => "conveyance",
            0x04 | 0x84 => "selective",
            _ => "vendor-specific",
        }
    }
}

/// The self-test log, newest entry first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestLog {
    pub revision: u16,
    pub entries: Vec<SelfTestEntry>,
}

impl SelfTestLog {
    /// The newest test that ran to an end (neither in progress, aborted nor interrupted).
    pub fn last_finished(&self) -> Option<&SelfTestEntry> {
        self.entries.iter().find(|e| {
            !matches!(
                e.status,
                SelfTestStatus::InProgress | SelfTestStatus::AbortedByHost | SelfTestStatus::InterruptedByReset
            )
        })
    }
}

/// Decodes the SMART self-test log: revision at 0, 21 descriptors of 24 bytes from offset 2
/// (test, status, timestamp u16, checkpoint, failing LBA u32, vendor bytes), the index of the most
/// recent descriptor (1-based, 0 = empty log) at 508, checksum at 511.
pub fn decode_selftest_log(page: &[u8], policy: ChecksumPolicy) -> Result<SelfTestLog, DecodeError> {
    const WHAT: &str = "SMART self-test log";
    expect_len(WHAT, page, SECTOR)?;
    verify_checksum(WHAT, page, policy)?;
    let index = usize::from(u8_at(page, 508));
    if index > SELFTEST_DESCRIPTORS {
        return Err(DecodeError::Malformed {
            what: WHAT.into(),
            detail: format!("index {index} is beyond the {SELFTEST_DESCRIPTORS} descriptors"),
        });
    }
    let mut entries = Vec::new();
    if index > 0 {
        // Walk the ring backwards from the newest descriptor.
        for step in 0..SELFTEST_DESCRIPTORS {
            let slot = (index - 1 + SELFTEST_DESCRIPTORS - step) % SELFTEST_DESCRIPTORS;
            let off = 2 + slot * 24;
            let Some(d) = page.get(off..off + 24) else { continue };
            if d.iter().all(|&b| b == 0) {
                continue;
            }
            let status = SelfTestStatus::from_nibble(u8_at(d, 1) >> 4);
            let lba = le_u32(d, 5);
            entries.push(SelfTestEntry {
                test: u8_at(d, 0),
                status,
                remaining_percent: (u8_at(d, 1) & 0x0F) * 10,
                lifetime_hours: le_u16(d, 2),
                first_failure_lba: (status.is_failure() && lba != 0xFFFF_FFFF).then_some(lba),
            });
        }
    }
    Ok(SelfTestLog { revision: le_u16(page, 0), entries })
}

// ---------------------------------------------------------------------------------------------
// ATA PASS-THROUGH(16) command builders
// ---------------------------------------------------------------------------------------------

/// The self-test to start with EXECUTE OFF-LINE IMMEDIATE (the value goes in LBA low).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfTestKind {
    /// Short self-test in off-line mode (subcommand 1): about two minutes.
    Short,
    /// Extended self-test in off-line mode (subcommand 2): hours on a large disk.
    Long,
    /// Conveyance self-test in off-line mode (subcommand 3).
    Conveyance,
    /// Abort an off-line mode self-test (subcommand 0x7F).
    Abort,
}

impl SelfTestKind {
    pub fn subcommand(self) -> u8 {
        match self {
            Self::Short => 0x01,
            Self::Long => 0x02,
            Self::Conveyance => 0x03,
            Self::Abort => 0x7F,
        }
    }
}

/// One ATA command wrapped in ATA PASS-THROUGH(16), with what SG_IO must do around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaCommand {
    /// For messages and logs.
    pub name: &'static str,
    pub cdb: [u8; 16],
    /// Bytes to read from the device (0 for non-data commands).
    pub data_in: usize,
    /// CK_COND set: the SATL returns the ATA output registers in sense data.
    pub want_registers: bool,
}

/// SAT protocol field values.
const PROTO_NON_DATA: u8 = 3;
const PROTO_PIO_DATA_IN: u8 = 4;

/// Registers of a 28-bit ATA command.
#[derive(Clone, Copy, Default)]
struct Regs {
    features: u8,
    count: u8,
    lba_low: u8,
    lba_mid: u8,
    lba_high: u8,
    device: u8,
    command: u8,
}

fn pass_through_16(protocol: u8, want_registers: bool, r: Regs) -> [u8; 16] {
    let data_in = protocol == PROTO_PIO_DATA_IN;
    let ck_cond = u8::from(want_registers);
    let t_dir = 1u8; // from device (also set for non-data commands, as smartmontools does)
    let byte_block = 1u8; // T_LENGTH counts 512-byte blocks
    let t_length = if data_in { 2u8 } else { 0 }; // 2: the length is in the COUNT field
    let mut cdb = [0u8; 16];
    cdb[0] = ATA_PASS_THROUGH_16;
    cdb[1] = protocol << 1; // EXTEND = 0: all these commands are 28-bit
    cdb[2] = (ck_cond << 5) | (t_dir << 3) | (byte_block << 2) | t_length;
    cdb[4] = r.features;
    cdb[6] = r.count;
    cdb[8] = r.lba_low;
    cdb[10] = r.lba_mid;
    cdb[12] = r.lba_high;
    cdb[13] = r.device;
    cdb[14] = r.command;
    cdb
}

fn smart_regs(features: u8, count: u8, lba_low: u8) -> Regs {
    Regs { features, count, lba_low, lba_mid: SMART_LBA_MID, lba_high: SMART_LBA_HIGH, device: 0, command: ATA_SMART }
}

impl AtaCommand {
    /// IDENTIFY DEVICE (0xEC), PIO data-in, one sector.
    pub fn identify() -> Self {
        let r = Regs { count: 1, command: ATA_IDENTIFY_DEVICE, ..Regs::default() };
        Self {
            name: "IDENTIFY DEVICE",
            cdb: pass_through_16(PROTO_PIO_DATA_IN, false, r),
            data_in: SECTOR,
            want_registers: false,
        }
    }

    /// SMART READ DATA (0xB0/0xD0).
    pub fn smart_read_data() -> Self {
        Self {
            name: "SMART READ DATA",
            cdb: pass_through_16(PROTO_PIO_DATA_IN, false, smart_regs(SMART_READ_DATA, 1, 0)),
            data_in: SECTOR,
            want_registers: false,
        }
    }

    /// SMART READ ATTRIBUTE THRESHOLDS (0xB0/0xD1).
    pub fn smart_read_thresholds() -> Self {
        Self {
            name: "SMART READ THRESHOLDS",
            cdb: pass_through_16(PROTO_PIO_DATA_IN, false, smart_regs(SMART_READ_THRESHOLDS, 1, 0)),
            data_in: SECTOR,
            want_registers: false,
        }
    }

    /// SMART RETURN STATUS (0xB0/0xDA): non-data with CK_COND, the answer is in LBA mid/high.
    pub fn smart_return_status() -> Self {
        Self {
            name: "SMART RETURN STATUS",
            cdb: pass_through_16(PROTO_NON_DATA, true, smart_regs(SMART_RETURN_STATUS, 0, 0)),
            data_in: 0,
            want_registers: true,
        }
    }

    /// SMART EXECUTE OFF-LINE IMMEDIATE (0xB0/0xD4) with the self-test in LBA low.
    pub fn smart_execute_offline(kind: SelfTestKind) -> Self {
        let r = smart_regs(SMART_EXECUTE_OFFLINE_IMMEDIATE, 0, kind.subcommand());
        Self {
            name: "SMART EXECUTE OFF-LINE IMMEDIATE",
            cdb: pass_through_16(PROTO_NON_DATA, false, r),
            data_in: 0,
            want_registers: false,
        }
    }

    /// SMART READ LOG (0xB0/0xD5) of one sector at `log_address` (6: the self-test log).
    pub fn smart_read_log(log_address: u8) -> Self {
        Self {
            name: "SMART READ LOG",
            cdb: pass_through_16(PROTO_PIO_DATA_IN, false, smart_regs(SMART_READ_LOG, 1, log_address)),
            data_in: SECTOR,
            want_registers: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SG_IO outcome and SAT sense data
// ---------------------------------------------------------------------------------------------

/// ATA output registers returned by the SATL (28-bit view).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtaRegisters {
    pub error: u8,
    pub count: u8,
    pub lba_low: u8,
    pub lba_mid: u8,
    pub lba_high: u8,
    pub device: u8,
    pub status: u8,
}

/// ATA status register: ERR.
const ATA_STATUS_ERR: u8 = 0x01;
/// ATA status register: DF (device fault).
const ATA_STATUS_DF: u8 = 0x20;

/// The essentials of SCSI sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub response_code: u8,
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// ATA registers, from the ATA Status Return descriptor (type 0x09) of descriptor-format sense,
    /// or from fixed-format sense carrying ASC/ASCQ 00/1D ("ATA pass through information available").
    pub registers: Option<AtaRegisters>,
}

/// Sense key RECOVERED ERROR: what a SATL reports with CK_COND on success.
pub const SENSE_KEY_RECOVERED_ERROR: u8 = 0x01;
pub const SENSE_KEY_NO_SENSE: u8 = 0x00;
pub const SENSE_KEY_ILLEGAL_REQUEST: u8 = 0x05;
pub const SENSE_KEY_ABORTED_COMMAND: u8 = 0x0B;
/// ASCQ for ASC 0: "ATA pass through information available".
pub const ASCQ_ATA_PASS_THROUGH: u8 = 0x1D;

/// Decodes fixed (0x70/0x71) or descriptor (0x72/0x73) sense data; `None` if there is none or
/// the response code is not one of those.
pub fn decode_sense(sense: &[u8]) -> Option<Sense> {
    let rc = u8_at(sense, 0) & 0x7F;
    match rc {
        0x72 | 0x73 => {
            if sense.len() < 4 {
                return None;
            }
            let (key, asc, ascq) = (u8_at(sense, 1) & 0x0F, u8_at(sense, 2), u8_at(sense, 3));
            // Descriptors follow the 8-byte header, for `additional length` bytes.
            let end = sense.len().min(8 + usize::from(u8_at(sense, 7)));
            let mut off = 8;
            let mut registers = None;
            while off + 2 <= end {
                let kind = u8_at(sense, off);
                let len = usize::from(u8_at(sense, off + 1)) + 2;
                if kind == 0x09 && off + 14 <= end {
                    let d = &sense[off..off + 14];
                    registers = Some(AtaRegisters {
                        error: d[3],
                        count: d[5],
                        lba_low: d[7],
                        lba_mid: d[9],
                        lba_high: d[11],
                        device: d[12],
                        status: d[13],
                    });
                    break;
                }
                off += len;
            }
            Some(Sense { response_code: rc, key, asc, ascq, registers })
        }
        0x70 | 0x71 => {
            if sense.len() < 3 {
                return None;
            }
            let key = u8_at(sense, 2) & 0x0F;
            let valid_len = sense.len().min(8 + usize::from(u8_at(sense, 7)));
            let (asc, ascq) = if valid_len > 13 { (sense[12], sense[13]) } else { (0, 0) };
            let registers = (valid_len > 13 && asc == 0 && ascq == ASCQ_ATA_PASS_THROUGH).then(|| AtaRegisters {
                error: sense[3],
                status: sense[4],
                device: sense[5],
                count: sense[6],
                lba_low: sense[9],
                lba_mid: sense[10],
                lba_high: sense[11],
            });
            Some(Sense { response_code: rc, key, asc, ascq, registers })
        }
        _ => None,
    }
}

/// What SG_IO reported for one command (fields of `struct sg_io_hdr` after the call).
#[derive(Debug, Clone, Copy)]
pub struct SgOutcome<'a> {
    pub scsi_status: u8,
    pub host_status: u16,
    pub driver_status: u16,
    /// The sense bytes actually written (`sb_len_wr`).
    pub sense: &'a [u8],
}

/// Why an ATA PASS-THROUGH command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassThroughError {
    #[error("command timed out")]
    Timeout,
    #[error("transport error (host status {host:#x}, driver status {driver:#x}, SCSI status {scsi:#x})")]
    Transport { host: u16, driver: u16, scsi: u8 },
    #[error("ATA PASS-THROUGH not supported here (sense {key:#x}/{asc:#x}/{ascq:#x})")]
    Unsupported { key: u8, asc: u8, ascq: u8 },
    #[error("the disk rejected the command (ATA status {status:#04x}, error {error:#04x})")]
    Ata { status: u8, error: u8 },
    #[error("SCSI error (sense {key:#x}/{asc:#x}/{ascq:#x})")]
    Scsi { key: u8, asc: u8, ascq: u8 },
    #[error("the SATL returned no ATA registers")]
    NoRegisters,
}

/// SCSI status GOOD / CHECK CONDITION.
const SCSI_GOOD: u8 = 0x00;
const SCSI_CHECK_CONDITION: u8 = 0x02;
/// Linux host byte DID_TIME_OUT and driver byte DRIVER_TIMEOUT.
const DID_TIME_OUT: u16 = 0x03;
const DRIVER_TIMEOUT: u16 = 0x06;
// The driver byte's DRIVER_SENSE (0x08) only says sense data is valid: not an error by itself,
// so only the low three bits (DRIVER_BUSY..DRIVER_HARD) count as driver errors below.

/// Judges the outcome of an SG_IO ATA PASS-THROUGH call. With `want_registers` (CK_COND), returns
/// the ATA output registers; without, `Ok(None)` on success.
pub fn check_pass_through(out: &SgOutcome<'_>, want_registers: bool) -> Result<Option<AtaRegisters>, PassThroughError> {
    if out.host_status == DID_TIME_OUT || out.driver_status & 0x07 == DRIVER_TIMEOUT {
        return Err(PassThroughError::Timeout);
    }
    let transport =
        PassThroughError::Transport { host: out.host_status, driver: out.driver_status, scsi: out.scsi_status };
    let sense = decode_sense(out.sense);
    match (out.scsi_status & 0x7E, sense) {
        // CHECK CONDITION with sense: the sense says what happened, whatever the driver byte.
        (SCSI_CHECK_CONDITION, Some(s)) => match (s.key, s.registers) {
            (SENSE_KEY_NO_SENSE | SENSE_KEY_RECOVERED_ERROR, Some(r)) => {
                let r = ata_ok(r)?;
                Ok(want_registers.then_some(r))
            }
            (SENSE_KEY_NO_SENSE | SENSE_KEY_RECOVERED_ERROR, None)
                if s.asc == 0 && s.ascq == ASCQ_ATA_PASS_THROUGH && !want_registers =>
            {
                Ok(None)
            }
            (SENSE_KEY_ABORTED_COMMAND, Some(r)) => Err(PassThroughError::Ata { status: r.status, error: r.error }),
            (SENSE_KEY_ILLEGAL_REQUEST, _) => {
                Err(PassThroughError::Unsupported { key: s.key, asc: s.asc, ascq: s.ascq })
            }
            _ => Err(PassThroughError::Scsi { key: s.key, asc: s.asc, ascq: s.ascq }),
        },
        _ if out.host_status != 0 || out.driver_status & 0x07 != 0 => Err(transport),
        (SCSI_GOOD, sense) => match (want_registers, sense.and_then(|s| s.registers)) {
            (false, _) => Ok(None),
            (true, Some(r)) => ata_ok(r).map(Some),
            (true, None) => Err(PassThroughError::NoRegisters),
        },
        _ => Err(transport),
    }
}

fn ata_ok(r: AtaRegisters) -> Result<AtaRegisters, PassThroughError> {
    if r.status & (ATA_STATUS_ERR | ATA_STATUS_DF) != 0 {
        Err(PassThroughError::Ata { status: r.status, error: r.error })
    } else {
        Ok(r)
    }
}

/// The disk's overall SMART verdict (SMART RETURN STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmartStatus {
    /// LBA mid/high = 0x4F/0xC2.
    Passed,
    /// LBA mid/high = 0xF4/0x2C: a pre-failure threshold is exceeded.
    ThresholdExceeded,
}

/// SMART RETURN STATUS from the ATA output registers.
pub fn decode_smart_status(r: &AtaRegisters) -> Result<SmartStatus, DecodeError> {
    match (r.lba_mid, r.lba_high) {
        (SMART_LBA_MID, SMART_LBA_HIGH) => Ok(SmartStatus::Passed),
        (SMART_FAIL_LBA_MID, SMART_FAIL_LBA_HIGH) => Ok(SmartStatus::ThresholdExceeded),
        (mid, high) => Err(DecodeError::Malformed {
            what: "SMART RETURN STATUS".into(),
            detail: format!("LBA mid/high {mid:#04x}/{high:#04x} is neither 4f/c2 nor f4/2c"),
        }),
    }
}

/// SMART RETURN STATUS straight from the sense data of the ATA PASS-THROUGH call.
pub fn smart_status_from_sense(sense: &[u8]) -> Result<SmartStatus, DecodeError> {
    let registers = decode_sense(sense).and_then(|s| s.registers).ok_or_else(|| DecodeError::Malformed {
        what: "SMART RETURN STATUS".into(),
        detail: "sense data carries no ATA registers".into(),
    })?;
    decode_smart_status(&registers)
}

#[cfg(test)]
#[path = "ata_tests.rs"]
mod tests;
