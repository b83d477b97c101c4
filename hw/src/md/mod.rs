//! md RAID: the state of every array, the events between two states, and scrub control.
//!
//! What it is: the [`Array`] model (status, members, rebuild progress and ETA, mismatch count),
//! built from `ROOT/sys/block/md*/md/` ([`sysfs`]) and `ROOT/proc/mdstat` ([`mdstat`]);
//! [`events::diff`] that names changes as mdadm's monitor does; [`watch::Watcher`] that polls the
//! cheap sysfs attributes; and [`control`] to start/stop `check` scrubs and throttle them.
//!
//! What it is not: array creation or assembly (provisioning, later work), and not a daemon: the
//! caller owns the polling thread.
//!
//! Invariants: sysfs is authoritative for state; mdstat only fills what sysfs lacks (personalities,
//! speed/finish estimates on old kernels). Missing attributes are `None`, never guessed. Every
//! reader is bounded (number of arrays, members, file sizes) and takes a root path.

pub mod control;
pub mod events;
pub mod mdstat;
pub mod sysfs;
pub mod watch;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Most arrays read (a box has a handful).
pub const MAX_ARRAYS: usize = 256;
/// Most members read per array.
pub const MAX_MEMBERS: usize = 256;

/// What the array is doing or how it is: a running sync operation wins over "degraded", which wins
/// over clean/active (see [`derive_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrayStatus {
    /// Idle, all members in sync, no writes in flight.
    Clean,
    /// Running with writes in flight (`active`, `write-pending`, `active-idle`).
    Active,
    /// Missing members, nothing rebuilding.
    Degraded,
    /// Resynchronising redundancy (after an unclean shutdown or creation).
    Resyncing,
    /// Rebuilding onto a spare or a re-added disk.
    Recovering,
    /// A `check` scrub is running.
    Checking,
    /// A `repair` scrub is running.
    Repairing,
    /// Changing shape (level, disks, chunk).
    Reshaping,
    /// Read-only (`readonly`).
    ReadOnly,
    /// Not running (`inactive`, `clear`), or assembled but not started.
    Inactive,
}

/// A resync-type operation, as `sync_action` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    Resync,
    Recover,
    Check,
    Repair,
    Reshape,
}

impl SyncAction {
    /// From `sync_action` (sysfs) or the mdstat progress word. `idle`/`frozen` are `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "resync" => Some(Self::Resync),
            "recover" | "recovery" => Some(Self::Recover),
            "check" => Some(Self::Check),
            "repair" => Some(Self::Repair),
            "reshape" => Some(Self::Reshape),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resync => "resync",
            Self::Recover => "recover",
            Self::Check => "check",
            Self::Repair => "repair",
            Self::Reshape => "reshape",
        }
    }
}

/// Progress of a running (or delayed) sync operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub action: SyncAction,
    /// Sectors (512 B) done and total, from `sync_completed` (or mdstat's 1K blocks × 2).
    pub done_sectors: Option<u64>,
    pub total_sectors: Option<u64>,
    /// Progress in tenths of a percent (0..=1000).
    pub permille: Option<u16>,
    /// Current speed, KiB/s.
    pub speed_kib_s: Option<u64>,
    /// Estimated seconds to finish.
    pub eta_secs: Option<u64>,
    /// Queued behind another array on the same disks (`resync=DELAYED`, `sync_completed` "delayed").
    pub delayed: bool,
}

impl SyncProgress {
    /// Running, not merely queued.
    pub fn running(&self) -> bool {
        !self.delayed
    }

    /// Fills permille and ETA from done/total/speed where they are missing.
    pub fn complete_estimates(&mut self) {
        if let (Some(done), Some(total)) = (self.done_sectors, self.total_sectors) {
            if total > 0 && self.permille.is_none() {
                let p = u128::from(done.min(total)) * 1000 / u128::from(total);
                self.permille = u16::try_from(p).ok();
            }
            if self.eta_secs.is_none() {
                // Sectors are 512 B: remaining KiB = remaining sectors / 2; speed 0 gives no ETA.
                let remaining_kib = total.saturating_sub(done) / 2;
                self.eta_secs = self.speed_kib_s.and_then(|speed| remaining_kib.checked_div(speed));
            }
        }
    }
}

/// A member's role, from `dev-*/state` and `slot` (or mdstat's markers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Active and in sync.
    InSync,
    /// Marked faulty (still listed until removed).
    Faulty,
    /// Hot spare, not in a slot.
    Spare,
    /// In a slot, being rebuilt.
    Rebuilding,
    /// Journal device.
    Journal,
    /// Any other state text the kernel reports.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Kernel name of the component: `sda`, `sdb1`, `nvme0n1p2`.
    pub name: String,
    /// Slot (role) in the array; `None` for spares and faulty devices.
    pub slot: Option<u32>,
    pub state: MemberState,
    /// Raw state flags (`in_sync`, `write_mostly`, `faulty`, `want_replacement`, …).
    pub flags: Vec<String>,
}

/// One md array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Array {
    /// `md0`, `md127`.
    pub name: String,
    pub status: ArrayStatus,
    /// `raid10`, `raid1`, …
    pub level: Option<String>,
    /// Raw `array_state`.
    pub array_state: Option<String>,
    pub raid_disks: Option<u32>,
    /// Number of missing members.
    pub degraded: Option<u32>,
    pub sync: Option<SyncProgress>,
    /// Sectors found inconsistent by the last `check`/`repair` (meaningful after one).
    pub mismatch_cnt: Option<u64>,
    /// Array size in KiB (from mdstat's "blocks").
    pub size_kib: Option<u64>,
    /// Sorted by name.
    pub members: Vec<Member>,
}

impl Array {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.unwrap_or(0) > 0
    }
}

/// Every array at one moment, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub arrays: BTreeMap<String, Array>,
}

/// The overall status from the raw attributes.
pub fn derive_status(array_state: Option<&str>, sync: Option<&SyncProgress>, degraded: u32) -> ArrayStatus {
    if matches!(array_state, Some("inactive" | "clear")) {
        return ArrayStatus::Inactive;
    }
    if let Some(s) = sync.filter(|s| s.running()) {
        return match s.action {
            SyncAction::Recover => ArrayStatus::Recovering,
            SyncAction::Resync => ArrayStatus::Resyncing,
            SyncAction::Check => ArrayStatus::Checking,
            SyncAction::Repair => ArrayStatus::Repairing,
            SyncAction::Reshape => ArrayStatus::Reshaping,
        };
    }
    if degraded > 0 {
        return ArrayStatus::Degraded;
    }
    match array_state {
        Some("readonly") => ArrayStatus::ReadOnly,
        Some("active" | "write-pending" | "active-idle") => ArrayStatus::Active,
        _ => ArrayStatus::Clean,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MdError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("array name {0:?} is not an md device name")]
    BadName(String),
    #[error("array {array} is not running a scrub (sync_action is {action})")]
    NotScrubbing { array: String, action: String },
    #[error("array {array} is busy ({action}); a scrub can start only when idle")]
    Busy { array: String, action: String },
    #[error("array {array} is degraded; scrubbing it would only add load to the surviving disks")]
    Degraded { array: String },
    #[error("array {0} does not exist")]
    NoSuchArray(String),
}

/// Reads every array: sysfs for state, `/proc/mdstat` for what sysfs lacks.
pub fn read_arrays(root: &Path) -> Result<Snapshot, MdError> {
    let mut snap = sysfs::read_snapshot(root)?;
    let mdstat_path = crate::sysfs::under(root, "/proc/mdstat");
    let text = crate::sysfs::read_bounded(&mdstat_path, mdstat::MAX_MDSTAT_BYTES)
        .map_err(|source| MdError::Io { path: mdstat_path.clone(), source })?;
    if let Some(text) = text {
        let parsed = mdstat::parse(&String::from_utf8_lossy(&text));
        for st in parsed.arrays {
            match snap.arrays.get_mut(&st.name) {
                Some(a) => merge(a, &st),
                None => {
                    snap.arrays.insert(st.name.clone(), st.into_array());
                }
            }
        }
    }
    Ok(snap)
}

/// Fills fields of a sysfs-read array from mdstat.
fn merge(a: &mut Array, st: &mdstat::MdstatArray) {
    if a.level.is_none() {
        a.level.clone_from(&st.level);
    }
    if a.size_kib.is_none() {
        a.size_kib = st.blocks_kib;
    }
    if a.members.is_empty() {
        a.members = st.members();
    }
    if let (Some(s), Some(m)) = (a.sync.as_mut(), st.sync.as_ref()) {
        if s.action == m.action {
            s.speed_kib_s = s.speed_kib_s.filter(|&v| v > 0).or(m.speed_kib_s);
            s.eta_secs = s.eta_secs.or(m.eta_secs);
            s.permille = s.permille.or(m.permille);
            s.complete_estimates();
        }
    } else if a.sync.is_none() && a.array_state.is_none() {
        a.sync.clone_from(&st.sync);
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
