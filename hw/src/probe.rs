//! Reading one disk's SMART state through the transport its kind calls for.
//!
//! What it is: [`read_disk`] picks SG_IO/ATA PASS-THROUGH or the NVMe admin ioctl from the
//! [`BlockDevice`]'s kind, issues the reads in [`crate::ioctl`] and gathers every outcome, success
//! or error text, into [`Readings`] for [`crate::verdict::judge`]; [`start_selftest`] starts a
//! short or long self-test on either kind.
//!
//! What it is not: a scheduler or a thread. It blocks for up to a few timeouts; callers run it on a
//! blocking thread, one disk at a time or in a small pool.
//!
//! Invariants: a disk that times out on IDENTIFY is not asked anything else in the same probe (the
//! other readings carry "skipped" with the reason), so a dead disk costs one timeout per sweep,
//! not five; no error aborts the probe of other parts, so the verdict always gets the reason.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::discover::{BlockDevice, DiskKind};
use crate::ioctl::{self, IoctlError};
use crate::smart::ata::{ChecksumPolicy, SelfTestKind};
use crate::smart::nvme::NvmeSelfTest;
use crate::verdict::{AtaReadings, NvmeReadings, Readings};

/// How to reach devices.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Where device nodes live (`/dev` on the box; a temp dir in tests).
    pub dev_root: PathBuf,
    /// Per-command timeout.
    pub timeout: Duration,
    pub checksum: ChecksumPolicy,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { dev_root: PathBuf::from("/dev"), timeout: ioctl::DEFAULT_TIMEOUT, checksum: ChecksumPolicy::Verify }
    }
}

/// What the admin can ask for (`hermes hw selftest BAY short|long`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfTestRequest {
    Short,
    Long,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{name}: {why}")]
    NoSmart { name: String, why: &'static str },
    #[error(transparent)]
    Ioctl(#[from] IoctlError),
}

fn no_smart(kind: DiskKind) -> Option<&'static str> {
    match kind {
        DiskKind::Ata | DiskKind::Nvme => None,
        DiskKind::Scsi => Some("SAS/SCSI SMART (log pages 0x2F, 0x0D, 0x10) is not read yet"),
        DiskKind::Virtio => Some("virtio disks have no SMART"),
    }
}

/// Reads everything the verdict needs from one disk.
pub fn read_disk(dev: &BlockDevice, cfg: &ProbeConfig) -> Readings {
    if let Some(why) = no_smart(dev.kind) {
        return Readings::Unreadable(why.to_string());
    }
    let node = dev.dev_node(&cfg.dev_root);
    let t = cfg.timeout;
    let text = |e: IoctlError| e.to_string();
    match dev.kind {
        DiskKind::Nvme => {
            let identity = ioctl::nvme_identify(&node, t);
            if let Err(e) = &identity
                && (e.is_timeout() || matches!(e, IoctlError::Open { .. }))
            {
                let why = format!("skipped: {e}");
                return Readings::Nvme(NvmeReadings {
                    identity: identity.map_err(text),
                    health: Err(why.clone()),
                    selftest_log: Err(why),
                });
            }
            let supports_selftest = identity.as_ref().map(|i| i.selftest_supported()).unwrap_or(true);
            Readings::Nvme(NvmeReadings {
                health: ioctl::nvme_smart_log(&node, t).map_err(text),
                selftest_log: if supports_selftest {
                    ioctl::nvme_selftest_log(&node, t).map_err(text)
                } else {
                    Err("the drive does not support device self-tests".into())
                },
                identity: identity.map_err(text),
            })
        }
        _ => {
            let identity = ioctl::ata_identify(&node, t);
            if let Err(e) = &identity
                && (e.is_timeout() || matches!(e, IoctlError::Open { .. }))
            {
                let why = format!("skipped: {e}");
                return Readings::Ata(AtaReadings {
                    identity: identity.map_err(text),
                    status: Err(why.clone()),
                    data: Err(why.clone()),
                    thresholds: Err(why.clone()),
                    selftest_log: Err(why),
                });
            }
            Readings::Ata(AtaReadings {
                status: ioctl::ata_smart_status(&node, t).map_err(text),
                data: ioctl::ata_smart_read(&node, t, cfg.checksum).map_err(text),
                thresholds: ioctl::ata_smart_thresholds(&node, t, cfg.checksum).map_err(text),
                selftest_log: ioctl::ata_selftest_log(&node, t, cfg.checksum).map_err(text),
                identity: identity.map_err(text),
            })
        }
    }
}

/// Starts a self-test on an ATA or NVMe disk; returns once the disk has accepted it.
pub fn start_selftest(dev: &BlockDevice, cfg: &ProbeConfig, kind: SelfTestRequest) -> Result<(), ProbeError> {
    if let Some(why) = no_smart(dev.kind) {
        return Err(ProbeError::NoSmart { name: dev.name.clone(), why });
    }
    let node = dev.dev_node(&cfg.dev_root);
    match (dev.kind, kind) {
        (DiskKind::Nvme, SelfTestRequest::Short) => {
            ioctl::nvme_start_selftest(&node, NvmeSelfTest::Short, cfg.timeout)?
        }
        (DiskKind::Nvme, SelfTestRequest::Long) => {
            ioctl::nvme_start_selftest(&node, NvmeSelfTest::Extended, cfg.timeout)?
        }
        (_, SelfTestRequest::Short) => ioctl::ata_start_selftest(&node, SelfTestKind::Short, cfg.timeout)?,
        (_, SelfTestRequest::Long) => ioctl::ata_start_selftest(&node, SelfTestKind::Long, cfg.timeout)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::verdict::{Health, VerdictConfig, judge};

    fn disk(name: &str, kind: DiskKind) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            kind,
            vendor: None,
            model: None,
            serial: None,
            size_bytes: None,
            rotational: None,
            removable: false,
            usb: false,
            location: None,
        }
    }

    #[test]
    fn a_missing_disk_is_unknown_with_the_reason_after_one_attempt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = ProbeConfig { dev_root: dir.path().to_path_buf(), ..ProbeConfig::default() };
        for kind in [DiskKind::Ata, DiskKind::Nvme] {
            let r = read_disk(&disk("sdx", kind), &cfg);
            let v = judge(&r, &BTreeMap::new(), &VerdictConfig::default());
            assert_eq!(v.health, Health::Unknown, "{v:?}");
            assert!(v.reasons.iter().any(|r| r.message.contains("cannot open")), "{v:?}");
            assert!(v.reasons.iter().any(|r| r.message.contains("skipped")), "{v:?}");
        }
    }

    #[test]
    fn a_node_that_is_not_a_disk_is_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("sdy"), b"").expect("file");
        let cfg = ProbeConfig { dev_root: dir.path().to_path_buf(), ..ProbeConfig::default() };
        let v = judge(&read_disk(&disk("sdy", DiskKind::Ata), &cfg), &BTreeMap::new(), &VerdictConfig::default());
        assert_eq!(v.health, Health::Unknown);
        assert!(start_selftest(&disk("sdy", DiskKind::Ata), &cfg, SelfTestRequest::Short).is_err());
    }

    #[test]
    fn sas_and_virtio_say_why_they_have_no_smart() {
        let cfg = ProbeConfig::default();
        for kind in [DiskKind::Scsi, DiskKind::Virtio] {
            let v = judge(&read_disk(&disk("vda", kind), &cfg), &BTreeMap::new(), &VerdictConfig::default());
            assert_eq!(v.health, Health::Unknown);
            assert!(matches!(
                start_selftest(&disk("vda", kind), &cfg, SelfTestRequest::Long),
                Err(ProbeError::NoSmart { .. })
            ));
        }
    }
}
