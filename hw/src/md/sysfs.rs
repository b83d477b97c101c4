//! md array state from `ROOT/sys/block/md*/md/`.
//!
//! What it is: [`read_snapshot`] reads, per array, `array_state`, `level`, `raid_disks`,
//! `degraded`, `sync_action`, `sync_completed`, `sync_speed`, `mismatch_cnt` and each member's
//! `dev-*/state` and `dev-*/slot` — small attribute files, cheap enough to read every 500 ms.
//!
//! What it is not: a writer (see [`super::control`]) and not mdstat (see [`super::mdstat`]).
//!
//! Invariants: an attribute that is missing or does not parse is `None`; an array whose directory
//! vanishes mid-read is simply absent from the snapshot; at most [`super::MAX_ARRAYS`] arrays and
//! [`super::MAX_MEMBERS`] members are read.

use std::path::Path;

use super::{
    Array, MAX_ARRAYS, MAX_MEMBERS, MdError, Member, MemberState, Snapshot, SyncAction, SyncProgress, derive_status,
};
use crate::sysfs::{list_dir, read_attr, read_u64, under};

/// Reads every md array that has an `md/` directory.
pub fn read_snapshot(root: &Path) -> Result<Snapshot, MdError> {
    let block = under(root, "/sys/block");
    let names = list_dir(&block, crate::discover::MAX_BLOCK_DEVICES)
        .map_err(|source| MdError::Io { path: block.clone(), source })?;
    let mut snap = Snapshot::default();
    for name in names.into_iter().filter(|n| n.starts_with("md")).take(MAX_ARRAYS) {
        let dir = block.join(&name).join("md");
        if !dir.is_dir() {
            continue;
        }
        snap.arrays.insert(name.clone(), read_array(&dir, name));
    }
    Ok(snap)
}

/// `sync_completed`: `none`, `delayed`, or `done / total` in sectors.
pub fn parse_sync_completed(s: &str) -> (Option<u64>, Option<u64>, bool) {
    let s = s.trim();
    if s == "delayed" {
        return (None, None, true);
    }
    match s.split_once('/') {
        Some((d, t)) => (d.trim().parse().ok(), t.trim().parse().ok(), false),
        None => (None, None, false),
    }
}

fn opt_text(p: &Path) -> Option<String> {
    read_attr(p).ok().flatten().filter(|s| !s.is_empty())
}

fn opt_u64(p: &Path) -> Option<u64> {
    read_u64(p).ok().flatten()
}

fn read_array(dir: &Path, name: String) -> Array {
    let array_state = opt_text(&dir.join("array_state"));
    let degraded = opt_u64(&dir.join("degraded")).and_then(|v| u32::try_from(v).ok());
    let action = opt_text(&dir.join("sync_action"));
    let sync = action.as_deref().and_then(SyncAction::parse).map(|action| {
        let completed = opt_text(&dir.join("sync_completed")).unwrap_or_default();
        let (done, total, delayed) = parse_sync_completed(&completed);
        let mut p = SyncProgress {
            action,
            done_sectors: done,
            total_sectors: total,
            permille: None,
            speed_kib_s: opt_u64(&dir.join("sync_speed")),
            eta_secs: None,
            delayed,
        };
        p.complete_estimates();
        p
    });
    let mut members = Vec::new();
    let entries = list_dir(dir, MAX_MEMBERS * 4).unwrap_or_default();
    for entry in entries.iter().filter_map(|e| e.strip_prefix("dev-")).take(MAX_MEMBERS) {
        let mdir = dir.join(format!("dev-{entry}"));
        let Some(state_text) = opt_text(&mdir.join("state")) else { continue };
        let slot = opt_text(&mdir.join("slot")).and_then(|s| s.parse::<u32>().ok());
        members.push(member(entry, &state_text, slot));
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Array {
        status: derive_status(array_state.as_deref(), sync.as_ref(), degraded.unwrap_or(0)),
        level: opt_text(&dir.join("level")),
        raid_disks: opt_u64(&dir.join("raid_disks")).and_then(|v| u32::try_from(v).ok()),
        degraded,
        sync,
        mismatch_cnt: opt_u64(&dir.join("mismatch_cnt")),
        size_kib: None,
        array_state,
        members,
        name,
    }
}

/// A member from its `state` flags and `slot`.
pub fn member(name: &str, state_text: &str, slot: Option<u32>) -> Member {
    let flags: Vec<String> =
        state_text.split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).take(16).collect();
    let has = |f: &str| flags.iter().any(|x| x == f);
    let state = if has("faulty") {
        MemberState::Faulty
    } else if has("in_sync") {
        MemberState::InSync
    } else if has("journal") {
        MemberState::Journal
    } else if has("spare") && slot.is_some() {
        MemberState::Rebuilding
    } else if has("spare") {
        MemberState::Spare
    } else {
        MemberState::Other(flags.join(","))
    };
    let slot = match state {
        MemberState::Faulty | MemberState::Spare => None,
        _ => slot,
    };
    Member { name: name.to_string(), slot, state, flags }
}
