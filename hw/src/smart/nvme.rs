//! NVMe health: decoders for Identify Controller and the SMART / Health Information log page
//! (log 0x02), and the `struct nvme_admin_cmd` layout used by `NVME_IOCTL_ADMIN_CMD`.
//!
//! What it is: pure functions over the 4096-byte identify page, the 512-byte health page and the
//! 564-byte Device Self-test log (NVM Express Base Specification 2.0, "Identify Controller Data
//! Structure", "SMART / Health Information Log Page", "Device Self-test Log"), and builders for the
//! admin commands that fetch them or start a self-test.
//!
//! What it is not: I/O ([`crate::ioctl`] issues the commands) and not a verdict
//! ([`crate::verdict`]). Namespaces, error-log and vendor log pages are not decoded.
//!
//! Invariants: decoders require the exact page size and read fixed offsets; garbage gives a
//! [`DecodeError`], never a panic. [`NvmeAdminCmd`] is `repr(C)` and its size and field offsets are
//! checked at compile time against the kernel's `include/uapi/linux/nvme_ioctl.h` (72 bytes).

use std::mem::{offset_of, size_of};

use serde::{Deserialize, Serialize};

use super::{DecodeError, expect_len};
use crate::bytes::{clean_ascii, le_u16, le_u32, le_u128, u8_at};

/// Size of an Identify data structure.
pub const IDENTIFY_LEN: usize = 4096;
/// Size of the SMART / Health Information log page.
pub const HEALTH_LOG_LEN: usize = 512;
/// Admin opcode: Get Log Page.
pub const ADMIN_GET_LOG_PAGE: u8 = 0x02;
/// Admin opcode: Identify.
pub const ADMIN_IDENTIFY: u8 = 0x06;
/// Identify CNS value: Identify Controller.
pub const CNS_CONTROLLER: u32 = 0x01;
/// Log identifier: SMART / Health Information.
pub const LID_HEALTH: u8 = 0x02;
/// The "all namespaces" NSID, used for controller-wide log pages.
pub const NSID_ALL: u32 = 0xFFFF_FFFF;
/// Largest log page this crate asks for (it reads only small, fixed pages).
pub const MAX_LOG_LEN: usize = 64 * 1024;

/// Kelvin to whole degrees Celsius (0 K means "not reported").
pub fn kelvin_to_celsius(k: u16) -> Option<i16> {
    (k != 0).then(|| i16::try_from(i32::from(k) - 273).unwrap_or(i16::MAX))
}

// ---------------------------------------------------------------------------------------------
// Identify Controller
// ---------------------------------------------------------------------------------------------

/// What Identify Controller tells about a drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeIdentity {
    /// PCI vendor id.
    pub vid: u16,
    /// PCI subsystem vendor id.
    pub ssvid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// Optional Admin Command Support bits.
    pub oacs: u16,
    /// Warning composite temperature threshold (Kelvin; 0 = not reported).
    pub wctemp_k: u16,
    /// Critical composite temperature threshold (Kelvin; 0 = not reported).
    pub cctemp_k: u16,
    /// Total NVM capacity in bytes (0 when the drive does not report it: no namespace management).
    pub total_capacity: u128,
    /// Number of namespaces.
    pub namespaces: u32,
}

impl NvmeIdentity {
    /// OACS bit 4: Device Self-test command supported.
    pub fn selftest_supported(&self) -> bool {
        self.oacs & (1 << 4) != 0
    }
}

/// Decodes a 4096-byte Identify Controller structure: VID at 0, SSVID at 2, serial 4..24,
/// model 24..64, firmware 64..72 (ASCII, space-padded), OACS at 256, WCTEMP at 266, CCTEMP at 268,
/// TNVMCAP at 280..296, NN at 516.
pub fn decode_identify_controller(page: &[u8]) -> Result<NvmeIdentity, DecodeError> {
    const WHAT: &str = "NVMe Identify Controller";
    expect_len(WHAT, page, IDENTIFY_LEN)?;
    if page.iter().all(|&b| b == 0) {
        return Err(DecodeError::Malformed {
            what: WHAT.into(),
            detail: "page is all zeros (device returned no data)".into(),
        });
    }
    let ascii = |from: usize, to: usize| page.get(from..to).map(clean_ascii).unwrap_or_default();
    Ok(NvmeIdentity {
        vid: le_u16(page, 0),
        ssvid: le_u16(page, 2),
        serial: ascii(4, 24),
        model: ascii(24, 64),
        firmware: ascii(64, 72),
        oacs: le_u16(page, 256),
        wctemp_k: le_u16(page, 266),
        cctemp_k: le_u16(page, 268),
        total_capacity: le_u128(page, 280),
        namespaces: le_u32(page, 516),
    })
}

// ---------------------------------------------------------------------------------------------
// SMART / Health Information (log 0x02)
// ---------------------------------------------------------------------------------------------

/// Critical Warning bits (byte 0 of the health log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalWarning(pub u8);

impl CriticalWarning {
    /// Bit 0: available spare has fallen below the threshold.
    pub fn spare_below_threshold(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// Bit 1: a temperature is above an over-temperature or below an under-temperature threshold.
    pub fn temperature(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// Bit 2: NVM subsystem reliability degraded (media errors or internal errors).
    pub fn reliability_degraded(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// Bit 3: media placed in read-only mode.
    pub fn read_only(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// Bit 4: volatile memory backup device failed (power-loss protection gone).
    pub fn volatile_backup_failed(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// Bit 5: persistent memory region became read-only.
    pub fn pmr_read_only(self) -> bool {
        self.0 & 0x20 != 0
    }
}

/// The SMART / Health Information log page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeHealth {
    pub critical_warning: CriticalWarning,
    /// Composite temperature in Kelvin (0 = not reported).
    pub temperature_k: u16,
    /// Remaining spare capacity, percent (0..=100).
    pub available_spare: u8,
    /// Spare threshold, percent (0..=100).
    pub spare_threshold: u8,
    /// Vendor estimate of life used, percent; may exceed 100 (capped at 255 by the spec).
    pub percentage_used: u8,
    /// In units of 1000 × 512 bytes.
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub host_read_commands: u128,
    pub host_write_commands: u128,
    /// Minutes.
    pub controller_busy_time: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub error_log_entries: u128,
    /// Minutes spent above WCTEMP / CCTEMP.
    pub warning_temp_minutes: u32,
    pub critical_temp_minutes: u32,
    /// Temperature sensors 1..8 that report a value (Kelvin), in order.
    pub sensors_k: Vec<u16>,
}

impl NvmeHealth {
    pub fn temperature_c(&self) -> Option<i16> {
        kelvin_to_celsius(self.temperature_k)
    }
}

/// Decodes the 512-byte SMART / Health Information log page.
///
/// Errors: wrong length; an all-zero page (the drive returned nothing); available spare or spare
/// threshold above 100 % (impossible values: the page is not a health log).
pub fn decode_health_log(page: &[u8]) -> Result<NvmeHealth, DecodeError> {
    const WHAT: &str = "NVMe SMART/Health log";
    expect_len(WHAT, page, HEALTH_LOG_LEN)?;
    let malformed = |detail: String| DecodeError::Malformed { what: WHAT.into(), detail };
    if page.iter().all(|&b| b == 0) {
        return Err(malformed("page is all zeros (device returned no data)".into()));
    }
    let available_spare = u8_at(page, 3);
    let spare_threshold = u8_at(page, 4);
    if available_spare > 100 || spare_threshold > 100 {
        return Err(malformed(format!(
            "available spare {available_spare}% / threshold {spare_threshold}% exceed 100%"
        )));
    }
    let sensors_k = (0..8).map(|i| le_u16(page, 200 + 2 * i)).filter(|&k| k != 0).collect();
    Ok(NvmeHealth {
        critical_warning: CriticalWarning(u8_at(page, 0)),
        temperature_k: le_u16(page, 1),
        available_spare,
        spare_threshold,
        percentage_used: u8_at(page, 5),
        data_units_read: le_u128(page, 32),
        data_units_written: le_u128(page, 48),
        host_read_commands: le_u128(page, 64),
        host_write_commands: le_u128(page, 80),
        controller_busy_time: le_u128(page, 96),
        power_cycles: le_u128(page, 112),
        power_on_hours: le_u128(page, 128),
        unsafe_shutdowns: le_u128(page, 144),
        media_errors: le_u128(page, 160),
        error_log_entries: le_u128(page, 176),
        warning_temp_minutes: le_u32(page, 192),
        critical_temp_minutes: le_u32(page, 196),
        sensors_k,
    })
}

// ---------------------------------------------------------------------------------------------
// Device Self-test log (log 0x06)
// ---------------------------------------------------------------------------------------------

/// Size of the Device Self-test log page: 4-byte header and 20 results of 28 bytes.
pub const SELFTEST_LOG_LEN: usize = 564;
/// Log identifier: Device Self-test.
pub const LID_SELFTEST: u8 = 0x06;
/// Admin opcode: Device Self-test.
pub const ADMIN_DEVICE_SELF_TEST: u8 = 0x14;

/// The self-test to start (Self-test Code, CDW10 bits 3:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NvmeSelfTest {
    Short,
    Extended,
    Abort,
}

impl NvmeSelfTest {
    pub fn code(self) -> u32 {
        match self {
            Self::Short => 0x1,
            Self::Extended => 0x2,
            Self::Abort => 0xF,
        }
    }
}

/// Result of one self-test (Device Self-test Status bits 3:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NvmeSelfTestResult {
    /// 0: completed without error.
    Passed,
    /// 1..=4, 8, 9: aborted (by a command, reset, namespace removal, format, unknown, sanitize).
    Aborted(u8),
    /// 5: fatal or unknown error.
    FatalError,
    /// 6: a segment failed, which one is unknown.
    UnknownSegmentFailed,
    /// 7: one or more segments failed (the first in `segment`).
    SegmentFailed,
    /// Reserved values.
    Reserved(u8),
}

impl NvmeSelfTestResult {
    fn from_nibble(n: u8) -> Self {
        match n & 0x0F {
            0 => Self::Passed,
            n @ (1..=4 | 8 | 9) => Self::Aborted(n),
            5 => Self::FatalError,
            6 => Self::UnknownSegmentFailed,
            7 => Self::SegmentFailed,
            n => Self::Reserved(n),
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Self::FatalError | Self::UnknownSegmentFailed | Self::SegmentFailed)
    }
}

/// One entry of the Device Self-test log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeSelfTestEntry {
    /// Self-test Code: 1 short, 2 extended, 0xE vendor specific.
    pub code: u8,
    pub result: NvmeSelfTestResult,
    pub segment: u8,
    pub power_on_hours: u64,
    /// Failing LBA, when the drive marks it valid.
    pub failing_lba: Option<u64>,
}

impl NvmeSelfTestEntry {
    pub fn test_name(&self) -> &'static str {
        match self.code {
            0x1 => "short",
            0x2 => "extended",
            0xE => "vendor-specific",
            _ => "unknown",
        }
    }
}

/// The Device Self-test log: what runs now and the results, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeSelfTestLog {
    /// Self-test Code of the test in progress (0 = none).
    pub current_operation: u8,
    /// Percent complete of the test in progress.
    pub current_completion: u8,
    pub entries: Vec<NvmeSelfTestEntry>,
}

impl NvmeSelfTestLog {
    /// The newest test that ran to an end (not aborted).
    pub fn last_finished(&self) -> Option<&NvmeSelfTestEntry> {
        self.entries.iter().find(|e| !matches!(e.result, NvmeSelfTestResult::Aborted(_)))
    }
}

/// Decodes the 564-byte Device Self-test log. Entries whose result is 0xF ("not used") are skipped.
pub fn decode_selftest_log(page: &[u8]) -> Result<NvmeSelfTestLog, DecodeError> {
    const WHAT: &str = "NVMe Device Self-test log";
    expect_len(WHAT, page, SELFTEST_LOG_LEN)?;
    let mut entries = Vec::new();
    for i in 0..20 {
        let off = 4 + i * 28;
        let status = u8_at(page, off);
        if status & 0x0F == 0x0F {
            continue;
        }
        let flba_valid = u8_at(page, off + 2) & 0x02 != 0;
        entries.push(NvmeSelfTestEntry {
            code: status >> 4,
            result: NvmeSelfTestResult::from_nibble(status),
            segment: u8_at(page, off + 1),
            power_on_hours: crate::bytes::le_u64(page, off + 4),
            failing_lba: flba_valid.then(|| crate::bytes::le_u64(page, off + 16)),
        });
    }
    Ok(NvmeSelfTestLog { current_operation: u8_at(page, 0) & 0x0F, current_completion: u8_at(page, 1) & 0x7F, entries })
}

// ---------------------------------------------------------------------------------------------
// Admin commands
// ---------------------------------------------------------------------------------------------

/// `struct nvme_admin_cmd` (alias of `struct nvme_passthru_cmd`) from
/// `include/uapi/linux/nvme_ioctl.h`. `addr` is the user buffer's address as an integer; only
/// [`crate::ioctl`] fills it, right before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NvmeAdminCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

// The kernel ABI: 72 bytes, these offsets. A mismatch is a build error, not a corrupted ioctl.
const _: () = {
    assert!(size_of::<NvmeAdminCmd>() == 72);
    assert!(offset_of!(NvmeAdminCmd, nsid) == 4);
    assert!(offset_of!(NvmeAdminCmd, metadata) == 16);
    assert!(offset_of!(NvmeAdminCmd, addr) == 24);
    assert!(offset_of!(NvmeAdminCmd, metadata_len) == 32);
    assert!(offset_of!(NvmeAdminCmd, data_len) == 36);
    assert!(offset_of!(NvmeAdminCmd, cdw10) == 40);
    assert!(offset_of!(NvmeAdminCmd, cdw15) == 60);
    assert!(offset_of!(NvmeAdminCmd, timeout_ms) == 64);
    assert!(offset_of!(NvmeAdminCmd, result) == 68);
};

/// `_IOWR('N', 0x41, struct nvme_admin_cmd)`: dir 3 (read|write) << 30, size << 16, type << 8, nr.
pub const NVME_IOCTL_ADMIN_CMD: u32 =
    (3 << 30) | ((size_of::<NvmeAdminCmd>() as u32) << 16) | ((b'N' as u32) << 8) | 0x41;

/// Why an admin command could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("log page length {0} is not a non-zero multiple of 4 up to {MAX_LOG_LEN} bytes")]
    LogLength(usize),
}

impl NvmeAdminCmd {
    /// Identify (0x06) with CNS = 1: Identify Controller, 4096 bytes.
    pub fn identify_controller() -> Self {
        Self {
            opcode: ADMIN_IDENTIFY,
            nsid: 0,
            data_len: IDENTIFY_LEN as u32,
            cdw10: CNS_CONTROLLER,
            ..Self::default()
        }
    }

    /// Get Log Page (0x02): `len` bytes of log `lid` for `nsid`. NUMD (dwords − 1, 0-based) is split
    /// into NUMDL (CDW10 bits 31:16) and NUMDU (CDW11 bits 15:0); LID is CDW10 bits 7:0.
    pub fn get_log_page(lid: u8, nsid: u32, len: usize) -> Result<Self, BuildError> {
        if len == 0 || !len.is_multiple_of(4) || len > MAX_LOG_LEN {
            return Err(BuildError::LogLength(len));
        }
        let numd = u32::try_from(len / 4 - 1).map_err(|_| BuildError::LogLength(len))?;
        let data_len = u32::try_from(len).map_err(|_| BuildError::LogLength(len))?;
        Ok(Self {
            opcode: ADMIN_GET_LOG_PAGE,
            nsid,
            data_len,
            cdw10: ((numd & 0xFFFF) << 16) | u32::from(lid),
            cdw11: numd >> 16,
            ..Self::default()
        })
    }

    /// Get Log Page for the controller-wide SMART / Health log (NSID all-ones, 512 bytes).
    pub fn health_log() -> Self {
        Self {
            opcode: ADMIN_GET_LOG_PAGE,
            nsid: NSID_ALL,
            data_len: HEALTH_LOG_LEN as u32,
            cdw10: ((HEALTH_LOG_LEN as u32 / 4 - 1) << 16) | u32::from(LID_HEALTH),
            ..Self::default()
        }
    }

    /// Device Self-test (0x14) on all namespaces, Self-test Code in CDW10.
    pub fn device_self_test(kind: NvmeSelfTest) -> Self {
        Self { opcode: ADMIN_DEVICE_SELF_TEST, nsid: NSID_ALL, cdw10: kind.code(), ..Self::default() }
    }

    /// Get Log Page for the Device Self-test log (564 bytes, controller-wide).
    pub fn selftest_log() -> Self {
        Self {
            opcode: ADMIN_GET_LOG_PAGE,
            nsid: 0,
            data_len: SELFTEST_LOG_LEN as u32,
            cdw10: ((SELFTEST_LOG_LEN as u32 / 4 - 1) << 16) | u32::from(LID_SELFTEST),
            ..Self::default()
        }
    }

    /// The struct as the kernel sees it (little-endian, x86-64 / aarch64), for layout tests and logs.
    pub fn to_bytes(&self) -> [u8; 72] {
        let mut b = [0u8; 72];
        let mut put = |off: usize, v: &[u8]| {
            if let Some(dst) = b.get_mut(off..off + v.len()) {
                dst.copy_from_slice(v);
            }
        };
        put(0, &[self.opcode, self.flags]);
        put(2, &self.rsvd1.to_le_bytes());
        put(4, &self.nsid.to_le_bytes());
        put(8, &self.cdw2.to_le_bytes());
        put(12, &self.cdw3.to_le_bytes());
        put(16, &self.metadata.to_le_bytes());
        put(24, &self.addr.to_le_bytes());
        put(32, &self.metadata_len.to_le_bytes());
        put(36, &self.data_len.to_le_bytes());
        for (i, v) in [self.cdw10, self.cdw11, self.cdw12, self.cdw13, self.cdw14, self.cdw15].iter().enumerate() {
            put(40 + 4 * i, &v.to_le_bytes());
        }
        put(64, &self.timeout_ms.to_le_bytes());
        put(68, &self.result.to_le_bytes());
        b
    }
}

#[cfg(test)]
#[path = "nvme_tests.rs"]
mod tests;
