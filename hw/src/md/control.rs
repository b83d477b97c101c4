//! Scrub control: start and stop `check`, throttle it, and decide when the next one is due.
//!
//! What it is: writes to `ROOT/sys/block/mdN/md/sync_action` (`check`, `idle`) and
//! `sync_speed_max`, with the checks that keep them safe; [`scrub_due`] is the pure schedule.
//!
//! What it is not: `repair` (rewriting mismatches is an admin decision, not a schedule) and not a
//! scheduler thread (the service calls [`scrub_due`] from its own timer).
//!
//! Invariants: array names are validated before any path is built (no `/`, no `..`); a scrub is
//! never started on a degraded, rebuilding or otherwise busy array; stopping only ever stops a
//! `check`/`repair`, never a recovery or resync.

use std::path::{Path, PathBuf};

use super::{MdError, SyncAction};
use crate::sysfs::{read_attr, under, write_attr};

/// Default scrub throttle: 50 MB/s per disk leaves most of a 16-disk box's bandwidth to mail.
pub const DEFAULT_SCRUB_SPEED_KIB_S: u32 = 50_000;
/// Default interval between scrubs: monthly, like Debian's mdadm `checkarray` cron job.
pub const DEFAULT_SCRUB_INTERVAL_DAYS: u32 = 30;

/// `md0`, `md127`, `md_d0`: `md` then ASCII letters, digits or `_`.
pub fn validate_name(name: &str) -> Result<(), MdError> {
    let ok = name.len() <= 32
        && name
            .strip_prefix("md")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if ok { Ok(()) } else { Err(MdError::BadName(name.to_string())) }
}

fn md_dir(root: &Path, name: &str) -> Result<PathBuf, MdError> {
    validate_name(name)?;
    let dir = under(root, "/sys/block").join(name).join("md");
    if dir.is_dir() { Ok(dir) } else { Err(MdError::NoSuchArray(name.to_string())) }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MdError + '_ {
    move |source| MdError::Io { path: path.to_path_buf(), source }
}

fn sync_action(dir: &Path) -> Result<String, MdError> {
    let p = dir.join("sync_action");
    read_attr(&p).map_err(io(&p))?.ok_or_else(|| MdError::Io {
        path: p.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no sync_action"),
    })
}

/// Starts a `check` scrub. Refused when the array is degraded or not idle.
pub fn start_check(root: &Path, name: &str) -> Result<(), MdError> {
    let dir = md_dir(root, name)?;
    let degraded_path = dir.join("degraded");
    let degraded = crate::sysfs::read_u64(&degraded_path).map_err(io(&degraded_path))?.unwrap_or(0);
    if degraded > 0 {
        return Err(MdError::Degraded { array: name.to_string() });
    }
    let action = sync_action(&dir)?;
    if action != "idle" {
        return Err(MdError::Busy { array: name.to_string(), action });
    }
    let p = dir.join("sync_action");
    write_attr(&p, "check").map_err(io(&p))
}

/// Stops a running `check` or `repair` (writes `idle`). Already idle is fine; a recovery,
/// resync or reshape is refused.
pub fn stop_scrub(root: &Path, name: &str) -> Result<(), MdError> {
    let dir = md_dir(root, name)?;
    let action = sync_action(&dir)?;
    match SyncAction::parse(&action) {
        Some(SyncAction::Check | SyncAction::Repair) => {
            let p = dir.join("sync_action");
            write_attr(&p, "idle").map_err(io(&p))
        }
        None if action == "idle" => Ok(()),
        _ => Err(MdError::NotScrubbing { array: name.to_string(), action }),
    }
}

/// Caps resync/check speed for this array (KiB/s per device), or restores the system default.
pub fn set_speed_limit(root: &Path, name: &str, kib_s: Option<u32>) -> Result<(), MdError> {
    let dir = md_dir(root, name)?;
    let p = dir.join("sync_speed_max");
    let value = kib_s.map_or_else(|| "system".to_string(), |v| v.max(1_000).to_string());
    write_attr(&p, &value).map_err(io(&p))
}

/// Whether a scrub is due: never scrubbed (`last_scrub_at` None) or the interval has passed.
/// Times are Unix seconds; the caller passes its clock.
pub fn scrub_due(last_scrub_at: Option<i64>, now: i64, interval_days: u32) -> bool {
    match last_scrub_at {
        None => true,
        Some(t) => now.saturating_sub(t) >= i64::from(interval_days).saturating_mul(86_400),
    }
}
