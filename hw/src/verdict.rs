//! The verdict per disk: ok, warning, failing or unknown, with the reasons that led to it.
//!
//! What it is: a pure function [`judge`] from what was read from a disk ([`Readings`]), how its error
//! counters grew ([`crate::history::growth`]) and the thresholds ([`VerdictConfig`]) to a
//! [`Verdict`]. Also [`sample_of`], which turns readings into the daily [`Sample`] kept in history.
//!
//! What it is not: I/O or scheduling. It never reads a disk or a clock.
//!
//! Invariants: every rule that raises the level adds a [`Reason`] with a stable `code` and a
//! message naming the value and the threshold; the overall level is the highest reason's level
//! (Ok < Unknown < Warning < Failing), so a known problem is never hidden by something unreadable;
//! a disk with nothing readable is Unknown, never Ok. The rules and their sources are in
//! `docs/hw.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::Sample;
use crate::smart::ata::{self, AtaIdentity, AttributeState, Rotation, SelfTestLog, SmartData, SmartStatus, Thresholds};
use crate::smart::nvme::{NvmeHealth, NvmeIdentity, NvmeSelfTestLog, kelvin_to_celsius};

/// Backblaze's five failure-predicting SMART attributes (Backblaze, "What SMART Stats Tell Us About
/// Hard Drives", 2016): 76.7 % of failed drives had at least one of them above zero, against 4.2 %
/// of working drives.
pub const CRITICAL_ATTRIBUTES: [u8; 5] = [5, 187, 188, 197, 198];

/// HDD temperature that warrants a warning: above the 45–50 °C band where failure rates start to
/// climb (Google, "Failure Trends in a Large Disk Drive Population", 2007; Backblaze drive-temperature
/// data), and 5 °C below the 60 °C maximum operating temperature of common enterprise/NAS disks.
pub const DEFAULT_HDD_TEMP_WARN_C: i16 = 55;
/// HDD temperature treated as failing: beyond every common HDD's rated operating range (60–65 °C);
/// the disk is out of spec and data is at risk until cooling is fixed.
pub const DEFAULT_HDD_TEMP_FAIL_C: i16 = 65;
/// SATA SSD warning temperature: SSDs are rated to 70 °C and throttle near it.
pub const DEFAULT_SSD_TEMP_WARN_C: i16 = 70;
/// SATA SSD failing temperature: beyond the rated 0–70 °C operating range.
pub const DEFAULT_SSD_TEMP_FAIL_C: i16 = 80;
/// NVMe percentage used that warrants a warning: 90 % of the rated endurance is consumed, time to
/// order a replacement.
pub const DEFAULT_NVME_USED_WARN: u8 = 90;
/// NVMe percentage used treated as failing: the rated endurance is exhausted (the spec's 100 %).
pub const DEFAULT_NVME_USED_FAIL: u8 = 100;
/// Window for "growing": a counter that rose within the last 30 days marks the disk failing; after a
/// quiet month it falls back to a warning (non-zero, stable).
pub const DEFAULT_GROWTH_WINDOW_DAYS: u32 = 30;

/// Thresholds of the verdict (part of the health config; every default a named constant above).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictConfig {
    pub hdd_temp_warn_c: i16,
    pub hdd_temp_fail_c: i16,
    pub ssd_temp_warn_c: i16,
    pub ssd_temp_fail_c: i16,
    pub nvme_used_warn: u8,
    pub nvme_used_fail: u8,
    pub growth_window_days: u32,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        Self {
            hdd_temp_warn_c: DEFAULT_HDD_TEMP_WARN_C,
            hdd_temp_fail_c: DEFAULT_HDD_TEMP_FAIL_C,
            ssd_temp_warn_c: DEFAULT_SSD_TEMP_WARN_C,
            ssd_temp_fail_c: DEFAULT_SSD_TEMP_FAIL_C,
            nvme_used_warn: DEFAULT_NVME_USED_WARN,
            nvme_used_fail: DEFAULT_NVME_USED_FAIL,
            growth_window_days: DEFAULT_GROWTH_WINDOW_DAYS,
        }
    }
}

impl VerdictConfig {
    /// Every inconsistency at once, each with its field name.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.hdd_temp_warn_c >= self.hdd_temp_fail_c {
            errs.push("hdd_temp_warn_c must be below hdd_temp_fail_c".to_string());
        }
        if self.ssd_temp_warn_c >= self.ssd_temp_fail_c {
            errs.push("ssd_temp_warn_c must be below ssd_temp_fail_c".to_string());
        }
        if self.nvme_used_warn >= self.nvme_used_fail {
            errs.push("nvme_used_warn must be below nvme_used_fail".to_string());
        }
        if !(1..=366).contains(&self.growth_window_days) {
            errs.push("growth_window_days must be 1..=366".to_string());
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// A disk's health, in increasing order of concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    /// Not enough could be read to judge (the reason says what and why).
    Unknown,
    Warning,
    Failing,
}

/// One finding. `Ok`-level reasons are notes that do not change the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub level: Health,
    /// Stable machine-readable code (e.g. `attr_197_nonzero`).
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub health: Health,
    pub reasons: Vec<Reason>,
}

/// What was read from an ATA disk; each part may have failed on its own (the error's text).
#[derive(Debug, Clone)]
pub struct AtaReadings {
    pub identity: Result<AtaIdentity, String>,
    pub status: Result<SmartStatus, String>,
    pub data: Result<SmartData, String>,
    pub thresholds: Result<Thresholds, String>,
    pub selftest_log: Result<SelfTestLog, String>,
}

/// What was read from an NVMe drive.
#[derive(Debug, Clone)]
pub struct NvmeReadings {
    pub identity: Result<NvmeIdentity, String>,
    pub health: Result<NvmeHealth, String>,
    /// Device Self-test log (optional feature: OACS bit 4).
    pub selftest_log: Result<NvmeSelfTestLog, String>,
}

/// Everything known about one disk at one time.
#[derive(Debug, Clone)]
pub enum Readings {
    Ata(AtaReadings),
    Nvme(NvmeReadings),
    /// The disk could not be probed at all (no SMART transport, open failed, …).
    Unreadable(String),
}

/// The history counter name for an ATA attribute id.
pub fn counter_key(attribute_id: u8) -> String {
    format!("ata_{attribute_id}")
}

/// The history counter name for NVMe media and data integrity errors.
pub const NVME_MEDIA_ERRORS: &str = "nvme_media_errors";

/// The daily sample for these readings, taken at `at` (Unix seconds).
pub fn sample_of(readings: &Readings, at: i64) -> Sample {
    let mut s = Sample { at, counters: BTreeMap::new(), temperature_c: None, power_on_hours: None };
    match readings {
        Readings::Ata(r) => {
            if let Ok(d) = &r.data {
                for id in CRITICAL_ATTRIBUTES {
                    if let Some(a) = d.attribute(id) {
                        s.counters.insert(counter_key(id), a.value());
                    }
                }
                s.temperature_c = d.temperature_c().map(i16::from);
                s.power_on_hours = d.power_on_hours();
            }
        }
        Readings::Nvme(r) => {
            if let Ok(h) = &r.health {
                s.counters.insert(NVME_MEDIA_ERRORS.into(), sat_u64(h.media_errors));
                s.temperature_c = h.temperature_c();
                s.power_on_hours = Some(sat_u64(h.power_on_hours));
            }
        }
        Readings::Unreadable(_) => {}
    }
    s
}

fn sat_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

struct Findings(Vec<Reason>);

impl Findings {
    fn add(&mut self, level: Health, code: impl Into<String>, message: impl Into<String>) {
        self.0.push(Reason { level, code: code.into(), message: message.into() });
    }
}

/// Judges a disk. `growth` maps counter names ([`counter_key`], [`NVME_MEDIA_ERRORS`]) to their
/// increase within the config's window, as [`crate::history::growth`] computes it.
pub fn judge(readings: &Readings, growth: &BTreeMap<String, u64>, cfg: &VerdictConfig) -> Verdict {
    let mut f = Findings(Vec::new());
    match readings {
        Readings::Ata(r) => judge_ata(r, growth, cfg, &mut f),
        Readings::Nvme(r) => judge_nvme(r, growth, cfg, &mut f),
        Readings::Unreadable(why) => f.add(Health::Unknown, "unreadable", format!("disk unreadable: {why}")),
    }
    let health = f.0.iter().map(|r| r.level).max().unwrap_or(Health::Ok);
    Verdict { health, reasons: f.0 }
}

fn judge_ata(r: &AtaReadings, growth: &BTreeMap<String, u64>, cfg: &VerdictConfig, f: &mut Findings) {
    let mut solid_state = false;
    match &r.identity {
        Err(e) => f.add(Health::Unknown, "identify_failed", format!("IDENTIFY DEVICE failed: {e}")),
        Ok(id) => {
            solid_state = id.rotation == Rotation::SolidState;
            if !id.smart_supported {
                f.add(Health::Unknown, "smart_unsupported", "the disk does not support SMART");
            } else if !id.smart_enabled {
                f.add(Health::Unknown, "smart_disabled", "SMART is disabled on the disk");
            }
        }
    }

    match &r.status {
        Err(e) => f.add(Health::Unknown, "status_unreadable", format!("SMART RETURN STATUS failed: {e}")),
        Ok(SmartStatus::ThresholdExceeded) => f.add(
            Health::Failing,
            "smart_status_failed",
            "SMART overall health self-assessment FAILED (a pre-failure threshold is exceeded)",
        ),
        Ok(SmartStatus::Passed) => {}
    }

    match &r.data {
        Err(e) => f.add(Health::Unknown, "attributes_unreadable", format!("SMART READ DATA failed: {e}")),
        Ok(d) => {
            for id in CRITICAL_ATTRIBUTES {
                let Some(a) = d.attribute(id) else { continue };
                let value = a.value();
                let grew = growth.get(&counter_key(id)).copied().unwrap_or(0);
                if grew > 0 {
                    f.add(
                        Health::Failing,
                        format!("attr_{id}_growing"),
                        format!(
                            "{} ({id}) is {value} and grew by {grew} in the last {} days",
                            a.name(),
                            cfg.growth_window_days
                        ),
                    );
                } else if value > 0 {
                    f.add(
                        Health::Warning,
                        format!("attr_{id}_nonzero"),
                        format!("{} ({id}) is {value} (Backblaze failure predictor; should be 0)", a.name()),
                    );
                }
            }
            if let Some(t) = d.temperature_c().map(i16::from) {
                let (warn, fail, kind) = if solid_state {
                    (cfg.ssd_temp_warn_c, cfg.ssd_temp_fail_c, "SSD")
                } else {
                    (cfg.hdd_temp_warn_c, cfg.hdd_temp_fail_c, "HDD")
                };
                temperature(f, t, warn, fail, kind);
            }
            match &r.thresholds {
                Ok(th) => {
                    for a in &d.attributes {
                        if ata::attribute_state(a, th) == AttributeState::FailingNow {
                            let (level, what) = if a.prefailure() {
                                (Health::Failing, "pre-failure")
                            } else {
                                (Health::Warning, "usage")
                            };
                            f.add(
                                level,
                                format!("attr_{}_below_threshold", a.id),
                                format!(
                                    "{what} attribute {} ({}) value {} is at or below its threshold {}",
                                    a.name(),
                                    a.id,
                                    a.current,
                                    th.by_id.get(&a.id).copied().unwrap_or(0)
                                ),
                            );
                        }
                    }
                }
                // Thresholds are obsolete in ACS; a disk may refuse them. SMART RETURN STATUS
                // still covers pre-failure thresholds, so this is a note, not "unknown".
                Err(e) => f.add(Health::Ok, "thresholds_unreadable", format!("READ THRESHOLDS failed: {e}")),
            }
            if d.selftest.status == ata::SelfTestStatus::InProgress {
                f.add(
                    Health::Ok,
                    "selftest_running",
                    format!("a self-test is running, {}% remaining", d.selftest.remaining_percent),
                );
            }
        }
    }

    match &r.selftest_log {
        // Not every disk keeps the log (e.g. no self-test support): a note.
        Err(e) => f.add(Health::Ok, "selftest_log_unreadable", format!("self-test log unreadable: {e}")),
        Ok(log) => selftest_findings(log, f),
    }
}

fn selftest_findings(log: &SelfTestLog, f: &mut Findings) {
    let Some(last) = log.last_finished() else { return };
    let lba = |e: &ata::SelfTestEntry| e.first_failure_lba.map(|l| format!(" at LBA {l}")).unwrap_or_default();
    if last.status.is_failure() {
        f.add(
            Health::Failing,
            "selftest_failed",
            format!(
                "the last {} self-test (at {} power-on hours) failed: {}{}",
                last.test_name(),
                last.lifetime_hours,
                last.status.describe(),
                lba(last)
            ),
        );
    } else if let Some(old) = log.entries.iter().find(|e| e.status.is_failure()) {
        f.add(
            Health::Warning,
            "selftest_failed_earlier",
            format!(
                "a {} self-test failed at {} power-on hours ({}{}); later tests passed",
                old.test_name(),
                old.lifetime_hours,
                old.status.describe(),
                lba(old)
            ),
        );
    }
}

fn temperature(f: &mut Findings, t: i16, warn: i16, fail: i16, kind: &str) {
    if t >= fail {
        f.add(Health::Failing, "temperature_critical", format!("{kind} temperature {t} °C ≥ {fail} °C"));
    } else if t >= warn {
        f.add(Health::Warning, "temperature_high", format!("{kind} temperature {t} °C ≥ {warn} °C"));
    }
}

fn judge_nvme(r: &NvmeReadings, growth: &BTreeMap<String, u64>, cfg: &VerdictConfig, f: &mut Findings) {
    let (mut wctemp, mut cctemp) = (None, None);
    match &r.identity {
        Err(e) => f.add(Health::Unknown, "identify_failed", format!("NVMe Identify Controller failed: {e}")),
        Ok(id) => {
            wctemp = kelvin_to_celsius(id.wctemp_k);
            cctemp = kelvin_to_celsius(id.cctemp_k);
        }
    }
    match &r.selftest_log {
        Err(e) => f.add(Health::Ok, "selftest_log_unreadable", format!("self-test log unreadable: {e}")),
        Ok(log) => {
            if let Some(last) = log.last_finished().filter(|e| e.result.is_failure()) {
                let lba = last.failing_lba.map(|l| format!(" at LBA {l}")).unwrap_or_default();
                f.add(
                    Health::Failing,
                    "selftest_failed",
                    format!(
                        "the last {} self-test (at {} power-on hours) failed: {:?} (segment {}){lba}",
                        last.test_name(),
                        last.power_on_hours,
                        last.result,
                        last.segment
                    ),
                );
            } else if let Some(old) = log.entries.iter().find(|e| e.result.is_failure()) {
                f.add(
                    Health::Warning,
                    "selftest_failed_earlier",
                    format!(
                        "a {} self-test failed at {} power-on hours; later tests passed",
                        old.test_name(),
                        old.power_on_hours
                    ),
                );
            }
        }
    }
    let h = match &r.health {
        Err(e) => {
            f.add(Health::Unknown, "health_unreadable", format!("NVMe SMART/Health log failed: {e}"));
            return;
        }
        Ok(h) => h,
    };
    let cw = h.critical_warning;
    let bits: [(bool, Health, &str, &str); 6] = [
        (cw.spare_below_threshold(), Health::Failing, "nvme_spare_critical", "available spare below threshold"),
        (cw.temperature(), Health::Warning, "nvme_temperature_warning", "temperature outside the drive's thresholds"),
        (cw.reliability_degraded(), Health::Failing, "nvme_reliability_degraded", "NVM subsystem reliability degraded"),
        (cw.read_only(), Health::Failing, "nvme_read_only", "media placed in read-only mode"),
        (
            cw.volatile_backup_failed(),
            Health::Failing,
            "nvme_volatile_backup_failed",
            "volatile memory backup failed: acknowledged writes may be lost on power loss",
        ),
        (cw.pmr_read_only(), Health::Warning, "nvme_pmr_read_only", "persistent memory region is read-only"),
    ];
    for (set, level, code, msg) in bits {
        if set {
            f.add(level, code, format!("critical warning: {msg}"));
        }
    }
    if h.available_spare < h.spare_threshold && !cw.spare_below_threshold() {
        f.add(
            Health::Failing,
            "nvme_spare_critical",
            format!("available spare {}% is below the threshold {}%", h.available_spare, h.spare_threshold),
        );
    }
    if h.percentage_used >= cfg.nvme_used_fail {
        f.add(Health::Failing, "nvme_worn_out", format!("{}% of rated endurance used", h.percentage_used));
    } else if h.percentage_used >= cfg.nvme_used_warn {
        f.add(Health::Warning, "nvme_wearing_out", format!("{}% of rated endurance used", h.percentage_used));
    }
    let grew = growth.get(NVME_MEDIA_ERRORS).copied().unwrap_or(0);
    if grew > 0 {
        f.add(
            Health::Failing,
            "nvme_media_errors_growing",
            format!(
                "media and data integrity errors: {} (grew by {grew} in the last {} days)",
                h.media_errors, cfg.growth_window_days
            ),
        );
    } else if h.media_errors > 0 {
        f.add(Health::Warning, "nvme_media_errors", format!("media and data integrity errors: {}", h.media_errors));
    }
    if let Some(t) = h.temperature_c() {
        match (cctemp, wctemp) {
            (Some(c), _) if t >= c => {
                f.add(Health::Failing, "temperature_critical", format!("NVMe temperature {t} °C ≥ critical {c} °C"));
            }
            (_, Some(w)) if t >= w && !cw.temperature() => {
                f.add(Health::Warning, "temperature_high", format!("NVMe temperature {t} °C ≥ warning {w} °C"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
