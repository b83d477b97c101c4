//! The real disk I/O: SG_IO carrying ATA PASS-THROUGH(16), and `NVME_IOCTL_ADMIN_CMD`.
//!
//! What it is: thin, blocking wrappers. Each function opens the device node, issues one ioctl with a
//! kernel-enforced timeout, closes the node, and hands the bytes to the pure decoders in
//! [`crate::smart`]; every decision (is this a success, what do the bytes mean) is made there.
//!
//! What it is not: async, retrying or caching. Callers run these on a blocking thread
//! (`tokio::task::spawn_blocking` or a dedicated sweep thread), never on the async runtime, and
//! decide about retries. It cannot be tested without disks: the QEMU scenario of issue 5 exercises
//! it against emulated AHCI and NVMe disks.
//!
//! Invariants: the timeout is always passed to the kernel (SG_IO `timeout` in ms, NVMe
//! `timeout_ms`), clamped to [`MIN_TIMEOUT`]..[`MAX_TIMEOUT`], so an unanswering disk ends in an
//! error rather than a hung daemon (the SCSI error handler may add its own recovery time on top).
//! Buffers handed to the kernel are owned by the calling frame and outlive the ioctl.
//!
//! Why `unsafe` is allowed here and nowhere else: the kernel ioctl ABI takes raw pointers to
//! `repr(C)` structs that themselves point at user buffers; nix offers the ioctl macros but the
//! calls they generate are `unsafe fn`. The crate denies `unsafe_code`; this module opts out.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uchar, c_uint, c_ushort, c_void};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

use crate::smart::DecodeError;
use crate::smart::ata::{
    self, AtaCommand, AtaIdentity, AtaRegisters, ChecksumPolicy, PassThroughError, SelfTestKind, SelfTestLog,
    SgOutcome, SmartData, SmartStatus, Thresholds,
};
use crate::smart::nvme::{self, NvmeAdminCmd, NvmeHealth, NvmeIdentity, NvmeSelfTest, NvmeSelfTestLog};

/// A sensible per-command timeout: SMART reads take milliseconds, a disk spinning up takes seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Below this a healthy but busy disk would time out spuriously.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Above this a dead disk would hold a sweep for too long.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// `SG_IO` (not `_IOC`-encoded; from `include/scsi/sg.h`).
const SG_IO: u32 = 0x2285;
const SG_DXFER_NONE: c_int = -1;
const SG_DXFER_FROM_DEV: c_int = -3;
/// Sense buffer size: enough for descriptor sense with an ATA return descriptor.
const SENSE_LEN: usize = 32;

/// `struct sg_io_hdr` from `include/scsi/sg.h`.
#[repr(C)]
struct SgIoHdr {
    interface_id: c_int,
    dxfer_direction: c_int,
    cmd_len: c_uchar,
    mx_sb_len: c_uchar,
    iovec_count: c_ushort,
    dxfer_len: c_uint,
    dxferp: *mut c_void,
    cmdp: *mut c_uchar,
    sbp: *mut c_uchar,
    timeout: c_uint,
    flags: c_uint,
    pack_id: c_int,
    usr_ptr: *mut c_void,
    status: c_uchar,
    masked_status: c_uchar,
    msg_status: c_uchar,
    sb_len_wr: c_uchar,
    host_status: c_ushort,
    driver_status: c_ushort,
    resid: c_int,
    duration: c_uint,
    info: c_uint,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<SgIoHdr>() == 88);

nix::ioctl_readwrite_bad!(sg_io_ioctl, SG_IO, SgIoHdr);
nix::ioctl_readwrite!(nvme_admin_ioctl, b'N', 0x41, NvmeAdminCmd);

/// Why a device command failed.
#[derive(Debug, thiserror::Error)]
pub enum IoctlError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{command} on {path}: ioctl failed: {errno}")]
    Ioctl { command: &'static str, path: PathBuf, errno: Errno },
    #[error("{command} on {path}: timed out")]
    Timeout { command: &'static str, path: PathBuf },
    #[error("{command} on {path}: {source}")]
    PassThrough { command: &'static str, path: PathBuf, source: PassThroughError },
    #[error("{command} on {path}: NVMe status {status:#06x}")]
    NvmeStatus { command: &'static str, path: PathBuf, status: i32 },
    #[error("{command} on {path}: {source}")]
    Decode { command: &'static str, path: PathBuf, source: DecodeError },
}

impl IoctlError {
    /// The disk did not answer in time (the verdict says "unknown: timed out").
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
            || matches!(self, Self::PassThrough { source: PassThroughError::Timeout, .. })
    }
}

fn clamp_ms(timeout: Duration) -> u32 {
    let t = timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT);
    u32::try_from(t.as_millis()).unwrap_or(u32::MAX - 1)
}

/// Opens a device node for ioctls: read-write (SG_IO with ATA pass-through needs it on some
/// kernels), non-blocking (no wait on removable media), close-on-exec.
fn open_dev(path: &Path) -> Result<File, IoctlError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| IoctlError::Open { path: path.to_path_buf(), source })
}

/// Sends one ATA PASS-THROUGH(16) command. Returns the data read (`cmd.data_in` bytes, zero-filled
/// first) and, for CK_COND commands, the ATA output registers.
pub fn ata_command(
    dev: &Path,
    cmd: &AtaCommand,
    timeout: Duration,
) -> Result<(Vec<u8>, Option<AtaRegisters>), IoctlError> {
    let file = open_dev(dev)?;
    let mut cdb = cmd.cdb;
    let mut data = vec![0u8; cmd.data_in];
    let mut sense = [0u8; SENSE_LEN];
    let dxfer_len = c_uint::try_from(data.len()).unwrap_or(0);
    let mut hdr = SgIoHdr {
        interface_id: c_int::from(b'S'),
        dxfer_direction: if data.is_empty() { SG_DXFER_NONE } else { SG_DXFER_FROM_DEV },
        cmd_len: 16,
        mx_sb_len: SENSE_LEN as c_uchar,
        iovec_count: 0,
        dxfer_len,
        dxferp: if data.is_empty() { std::ptr::null_mut() } else { data.as_mut_ptr().cast() },
        cmdp: cdb.as_mut_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: clamp_ms(timeout),
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: `hdr` is a correctly laid out `sg_io_hdr` (size checked at compile time); its
    // pointers reference `cdb` (16 bytes = cmd_len), `sense` (SENSE_LEN = mx_sb_len) and `data`
    // (dxfer_len bytes, or null with SG_DXFER_NONE), all owned by this frame and alive until the
    // synchronous ioctl returns. The fd is open for the duration of the call.
    let res = unsafe { sg_io_ioctl(file.as_raw_fd(), &mut hdr) };
    drop(file);
    if let Err(errno) = res {
        return Err(match errno {
            Errno::ETIMEDOUT => IoctlError::Timeout { command: cmd.name, path: dev.to_path_buf() },
            errno => IoctlError::Ioctl { command: cmd.name, path: dev.to_path_buf(), errno },
        });
    }
    let written = usize::from(hdr.sb_len_wr).min(SENSE_LEN);
    let outcome = SgOutcome {
        scsi_status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
        sense: sense.get(..written).unwrap_or(&[]),
    };
    let regs = ata::check_pass_through(&outcome, cmd.want_registers).map_err(|source| IoctlError::PassThrough {
        command: cmd.name,
        path: dev.to_path_buf(),
        source,
    })?;
    Ok((data, regs))
}

fn ata_read(dev: &Path, cmd: AtaCommand, timeout: Duration) -> Result<Vec<u8>, IoctlError> {
    ata_command(dev, &cmd, timeout).map(|(data, _)| data)
}

fn decoded<T>(command: &'static str, dev: &Path, r: Result<T, DecodeError>) -> Result<T, IoctlError> {
    r.map_err(|source| IoctlError::Decode { command, path: dev.to_path_buf(), source })
}

/// IDENTIFY DEVICE.
pub fn ata_identify(dev: &Path, timeout: Duration) -> Result<AtaIdentity, IoctlError> {
    let cmd = AtaCommand::identify();
    let page = ata_read(dev, cmd, timeout)?;
    decoded(cmd.name, dev, ata::decode_identify(&page))
}

/// SMART READ DATA.
pub fn ata_smart_read(dev: &Path, timeout: Duration, policy: ChecksumPolicy) -> Result<SmartData, IoctlError> {
    let cmd = AtaCommand::smart_read_data();
    let page = ata_read(dev, cmd, timeout)?;
    decoded(cmd.name, dev, ata::decode_smart_data(&page, policy))
}

/// SMART READ THRESHOLDS.
pub fn ata_smart_thresholds(dev: &Path, timeout: Duration, policy: ChecksumPolicy) -> Result<Thresholds, IoctlError> {
    let cmd = AtaCommand::smart_read_thresholds();
    let page = ata_read(dev, cmd, timeout)?;
    decoded(cmd.name, dev, ata::decode_thresholds(&page, policy))
}

/// SMART RETURN STATUS.
pub fn ata_smart_status(dev: &Path, timeout: Duration) -> Result<SmartStatus, IoctlError> {
    let cmd = AtaCommand::smart_return_status();
    let (_, regs) = ata_command(dev, &cmd, timeout)?;
    let regs = regs.ok_or(IoctlError::PassThrough {
        command: cmd.name,
        path: dev.to_path_buf(),
        source: PassThroughError::NoRegisters,
    })?;
    decoded(cmd.name, dev, ata::decode_smart_status(&regs))
}

/// Starts (or, with [`SelfTestKind::Abort`], aborts) an off-line self-test; returns at once.
pub fn ata_start_selftest(dev: &Path, kind: SelfTestKind, timeout: Duration) -> Result<(), IoctlError> {
    ata_command(dev, &AtaCommand::smart_execute_offline(kind), timeout).map(|_| ())
}

/// SMART READ LOG of the self-test log (address 6).
pub fn ata_selftest_log(dev: &Path, timeout: Duration, policy: ChecksumPolicy) -> Result<SelfTestLog, IoctlError> {
    let cmd = AtaCommand::smart_read_log(ata::LOG_SELFTEST);
    let page = ata_read(dev, cmd, timeout)?;
    decoded(cmd.name, dev, ata::decode_selftest_log(&page, policy))
}

/// Sends one NVMe admin command with a zero-filled buffer of `cmd.data_len` bytes; returns the
/// buffer and the completion's DW0 (`result`).
pub fn nvme_admin(
    dev: &Path,
    command: &'static str,
    mut cmd: NvmeAdminCmd,
    timeout: Duration,
) -> Result<(Vec<u8>, u32), IoctlError> {
    let len = usize::try_from(cmd.data_len).unwrap_or(usize::MAX);
    if len > nvme::IDENTIFY_LEN.max(nvme::MAX_LOG_LEN) {
        return Err(IoctlError::Ioctl { command, path: dev.to_path_buf(), errno: Errno::EINVAL });
    }
    let file = open_dev(dev)?;
    let mut buf = vec![0u8; len];
    cmd.addr = if buf.is_empty() { 0 } else { buf.as_mut_ptr() as u64 };
    cmd.timeout_ms = clamp_ms(timeout);
    // SAFETY: `cmd` is a `repr(C)` `nvme_admin_cmd` whose layout is checked at compile time in
    // `smart::nvme`; `addr` points at `buf`, owned by this frame, exactly `data_len` bytes long and
    // alive until the synchronous ioctl returns; no metadata buffer is passed (metadata_len 0).
    let res = unsafe { nvme_admin_ioctl(file.as_raw_fd(), &mut cmd) };
    drop(file);
    match res {
        Ok(0) => Ok((buf, cmd.result)),
        Ok(status) => Err(IoctlError::NvmeStatus { command, path: dev.to_path_buf(), status }),
        Err(Errno::ETIMEDOUT | Errno::EINTR) => Err(IoctlError::Timeout { command, path: dev.to_path_buf() }),
        Err(errno) => Err(IoctlError::Ioctl { command, path: dev.to_path_buf(), errno }),
    }
}

/// Identify Controller.
pub fn nvme_identify(dev: &Path, timeout: Duration) -> Result<NvmeIdentity, IoctlError> {
    const CMD: &str = "NVMe Identify Controller";
    let (page, _) = nvme_admin(dev, CMD, NvmeAdminCmd::identify_controller(), timeout)?;
    decoded(CMD, dev, nvme::decode_identify_controller(&page))
}

/// The SMART / Health Information log page.
pub fn nvme_smart_log(dev: &Path, timeout: Duration) -> Result<NvmeHealth, IoctlError> {
    const CMD: &str = "NVMe Get Log Page (SMART/Health)";
    let (page, _) = nvme_admin(dev, CMD, NvmeAdminCmd::health_log(), timeout)?;
    decoded(CMD, dev, nvme::decode_health_log(&page))
}

/// Starts (or aborts) a device self-test; returns at once.
pub fn nvme_start_selftest(dev: &Path, kind: NvmeSelfTest, timeout: Duration) -> Result<(), IoctlError> {
    nvme_admin(dev, "NVMe Device Self-test", NvmeAdminCmd::device_self_test(kind), timeout).map(|_| ())
}

/// The Device Self-test log page.
pub fn nvme_selftest_log(dev: &Path, timeout: Duration) -> Result<NvmeSelfTestLog, IoctlError> {
    const CMD: &str = "NVMe Get Log Page (Device Self-test)";
    let (page, _) = nvme_admin(dev, CMD, NvmeAdminCmd::selftest_log(), timeout)?;
    decoded(CMD, dev, nvme::decode_selftest_log(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        let nvme = nix::request_code_readwrite!(b'N', 0x41, std::mem::size_of::<NvmeAdminCmd>());
        assert_eq!(u64::from(nvme::NVME_IOCTL_ADMIN_CMD), nvme as u64);
        assert_eq!(SG_IO, 0x2285);
    }

    #[test]
    fn timeouts_are_clamped() {
        assert_eq!(clamp_ms(Duration::ZERO), 1_000);
        assert_eq!(clamp_ms(Duration::from_secs(10)), 10_000);
        assert_eq!(clamp_ms(Duration::from_secs(86_400)), 120_000);
    }

    #[test]
    fn missing_device_is_an_open_error_not_a_panic() {
        let err = ata_identify(Path::new("/nonexistent/sdz"), DEFAULT_TIMEOUT).expect_err("no dev");
        assert!(matches!(err, IoctlError::Open { .. }));
        let err = nvme_smart_log(Path::new("/nonexistent/nvme9n1"), DEFAULT_TIMEOUT).expect_err("no dev");
        assert!(matches!(err, IoctlError::Open { .. }));
        assert!(!err.is_timeout());
    }

    #[test]
    fn a_regular_file_is_not_a_disk() {
        // SG_IO on a regular file fails with ENOTTY (or EINVAL): an error, never a panic.
        let f = tempfile::NamedTempFile::new().expect("tempfile");
        let err = ata_smart_status(f.path(), DEFAULT_TIMEOUT).expect_err("not a disk");
        assert!(matches!(err, IoctlError::Ioctl { .. }), "{err}");
        let err = nvme_identify(f.path(), DEFAULT_TIMEOUT).expect_err("not a disk");
        assert!(matches!(err, IoctlError::Ioctl { .. }), "{err}");
    }
}
