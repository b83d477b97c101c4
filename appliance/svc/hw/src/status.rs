//! The status the control socket serves: bays (SMART from the last sweep, presence fresh from
//! sysfs), arrays (fresh from sysfs and mdstat), recent events.
//!
//! Invariant: presence and array state are read at request time (a few dozen small sysfs reads),
//! so a pulled disk or a failed member shows at once, not at the next sweep; SMART data is never
//! read here (that is the sweep's, with its deadlines).

use hermes_hw::api::{self, ArrayInfo, ArrayMember, ArrayState, MemberRole, Membership, Status, VerdictLevel};
use hermes_hw::discover;
use hermes_hw::md::{Array, ArrayStatus, MemberState};

use crate::{Shared, bay_of_member, is_part_of};

pub fn status(sh: &Shared) -> Status {
    let s = &sh.settings;
    let (devices, map) = match discover::discover(&s.root) {
        Ok(d) => {
            let m = crate::bay_map(&s.root, &s.bays, &d);
            (d, m)
        }
        Err(_) => {
            let st = sh.state();
            (st.devices.clone(), st.map.clone())
        }
    };
    let snap = hermes_hw::md::read_arrays(&s.root).unwrap_or_default();
    let arrays: Vec<ArrayInfo> = snap.arrays.values().map(|a| array_info(a, |m| bay_of_member(&map, m))).collect();
    let st = sh.state();
    let mut bays = Vec::new();
    for b in 0..s.bays.bays {
        let Some((name, _)) = map.bays.get(&b) else {
            bays.push(api::Bay::empty(b));
            continue;
        };
        let dev = devices.iter().find(|d| &d.name == name);
        let cached = st.disks.get(name).map(|d| d.bay.clone()).filter(|c| {
            // The same disk (a swapped disk can take the old name).
            dev.and_then(|d| d.serial.as_deref())
                .is_none_or(|sn| c.serial.as_deref().is_none_or(|cs| cs.trim() == sn.trim()))
        });
        let mut bay = cached.unwrap_or_else(|| {
            let mut n = api::Bay::empty(b);
            n.present = true;
            n.device = Some(name.clone());
            if let Some(d) = dev {
                n.kind = crate::sweep::kind_of(d.kind);
                n.model = d.model.clone();
                n.serial = d.serial.clone();
                n.capacity_bytes = d.size_bytes;
            }
            n.verdict = VerdictLevel::Unknown;
            n.reasons = vec![api::ReasonInfo {
                level: VerdictLevel::Unknown,
                code: "not_probed_yet".into(),
                message: "not probed yet (the next SMART sweep reads it)".into(),
            }];
            n
        });
        bay.bay = b;
        bay.array = membership(&snap, name);
        bays.push(bay);
    }
    let unmapped = map
        .unmapped
        .iter()
        .map(|(d, why)| api::UnmappedDisk {
            device: d.clone(),
            reason: serde_json::to_value(why).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        })
        .collect();
    Status {
        bays,
        arrays,
        events: st.events.iter().cloned().collect(),
        sampled_at: st.sampled_at,
        unmapped,
        last_sweep: st.last_sweep,
    }
}

fn membership(snap: &hermes_hw::md::Snapshot, disk: &str) -> Option<Membership> {
    snap.arrays.values().find_map(|a| {
        a.members.iter().find(|m| is_part_of(&m.name, disk)).map(|m| Membership {
            array: a.name.clone(),
            role: role(&m.state),
            slot: m.slot,
        })
    })
}

pub fn role(s: &MemberState) -> MemberRole {
    match s {
        MemberState::InSync => MemberRole::Active,
        MemberState::Faulty => MemberRole::Faulty,
        MemberState::Spare => MemberRole::Spare,
        MemberState::Rebuilding => MemberRole::Rebuilding,
        MemberState::Journal => MemberRole::Journal,
        MemberState::Other(_) => MemberRole::Unknown,
    }
}

pub fn array_info(a: &Array, bay_of: impl Fn(&str) -> Option<u16>) -> ArrayInfo {
    let state = match a.status {
        ArrayStatus::Inactive => ArrayState::Failed,
        // More members missing than a RAID10 near-2 can lose is caught by md (it stops the array:
        // inactive); a running degraded array still serves data.
        ArrayStatus::Recovering => ArrayState::Recovering,
        ArrayStatus::Resyncing | ArrayStatus::Reshaping => ArrayState::Resyncing,
        ArrayStatus::Checking | ArrayStatus::Repairing => {
            if a.is_degraded() {
                ArrayState::Degraded
            } else {
                ArrayState::Checking
            }
        }
        ArrayStatus::Degraded => ArrayState::Degraded,
        ArrayStatus::Clean | ArrayStatus::Active | ArrayStatus::ReadOnly => {
            if a.is_degraded() {
                ArrayState::Degraded
            } else {
                ArrayState::Clean
            }
        }
    };
    let detail = serde_json::to_value(a.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let members: Vec<ArrayMember> = a
        .members
        .iter()
        .map(|m| ArrayMember { bay: bay_of(&m.name), device: m.name.clone(), role: role(&m.state), slot: m.slot })
        .collect();
    let spares = members.iter().filter(|m| m.role == MemberRole::Spare).filter_map(|m| m.bay).collect();
    let sync = a.sync.as_ref();
    ArrayInfo {
        name: a.name.clone(),
        level: a.level.clone().unwrap_or_default(),
        state,
        detail,
        raid_disks: a.raid_disks,
        degraded: a.degraded,
        size_bytes: a.size_kib.map(|k| k.saturating_mul(1024)),
        members,
        spares,
        sync_action: sync.map_or_else(|| "idle".to_string(), |s| s.action.as_str().to_string()),
        progress_percent: sync.and_then(|s| s.permille).map(|p| f32::from(p) / 10.0),
        speed_kib_s: sync.and_then(|s| s.speed_kib_s),
        eta_secs: sync.and_then(|s| s.eta_secs),
        mismatch_cnt: a.mismatch_cnt,
    }
}
