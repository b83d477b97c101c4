//! The md watcher thread and the failure policy.
//!
//! What it is: [`watch`] polls md's sysfs every [`POLL_INTERVAL`] and turns each change into
//! events ([`describe`]); on `Fail`/`FailSpare` it removes the faulty member from its array
//! ([`remove_failed`]: md has already started rebuilding onto a hot spare, the kernel's job) and
//! remembers the bay; every few seconds while a bay waits, [`check_replacements`] looks for a new
//! disk there and, when `[hw] auto_replace` allows and the disk is blank, adds it to the array as
//! the new spare (`mdadm --add`).
//!
//! What it is not: a rebuild driver. md picks the spare and rebuilds by itself; this only does
//! the bookkeeping mdadm's monitor and an admin would do.
//!
//! Invariants: a disk that carries anything (a filesystem, an md superblock, a partition table)
//! is never added automatically; the reason is reported once. Removal and adding run on threads
//! of their own, so the watcher keeps its 500 ms pace while md settles.

use std::sync::Arc;
use std::time::Duration;

use hermes_hw::api::{EventInfo, EventSeverity};
use hermes_hw::md::events::{Event, EventKind};
use hermes_hw::md::watch::{POLL_INTERVAL, Watcher};
use hermes_hw::md::{MemberState, Snapshot};
use hermes_hw::provision;

use crate::{Pending, Shared, bay_of_member, event, now};

/// Polls between replacement checks (every 5 s while a bay waits for a new disk).
const REPLACEMENT_EVERY: u32 = 10;
/// How long md may take to take a faulty member out of its slot before `remove` is given up.
const REMOVE_WAIT: Duration = Duration::from_secs(15);

/// The watcher thread.
pub fn watch(sh: &Arc<Shared>) {
    let (mut w, initial) = loop {
        match Watcher::new(&sh.settings.root) {
            Ok(x) => break x,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read md state; retrying in 5 s");
                if !sh.sleep(Duration::from_secs(5)) {
                    return;
                }
            }
        }
    };
    handle(sh, w.snapshot(), initial);
    let mut polls: u32 = 0;
    let mut failing_reads = false;
    while sh.sleep(POLL_INTERVAL) {
        match w.poll() {
            Ok(evs) => {
                failing_reads = false;
                if !evs.is_empty() {
                    let snap = w.snapshot().clone();
                    handle(sh, &snap, evs);
                }
            }
            Err(e) if !failing_reads => {
                failing_reads = true;
                tracing::warn!(error = %e, "md state unreadable");
            }
            Err(_) => {}
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(REPLACEMENT_EVERY) && !sh.state().pending.is_empty() {
            check_replacements(sh);
        }
    }
}

/// Records a batch of md events and applies the policy to failures.
fn handle(sh: &Arc<Shared>, snap: &Snapshot, evs: Vec<Event>) {
    let map = sh.state().map.clone();
    let infos: Vec<EventInfo> = evs.iter().map(|e| describe(e, snap, |m| bay_of_member(&map, m))).collect();
    sh.record(infos);
    for e in evs {
        if matches!(e.kind, EventKind::Fail | EventKind::FailSpare)
            && let Some(member) = e.member.clone()
        {
            let sh = sh.clone();
            let array = e.array.clone();
            let _ = std::thread::Builder::new()
                .name(format!("remove-{member}"))
                .spawn(move || remove_failed(&sh, &array, &member));
        }
    }
}

/// Severity of an md event.
pub fn severity(kind: EventKind) -> EventSeverity {
    match kind {
        EventKind::Fail | EventKind::FailSpare | EventKind::DegradedArray | EventKind::DeviceDisappeared => {
            EventSeverity::Critical
        }
        _ => EventSeverity::Info,
    }
}

/// An md event as the admin reads it.
pub fn describe(e: &Event, snap: &Snapshot, bay_of: impl Fn(&str) -> Option<u16>) -> EventInfo {
    let bay = e.member.as_deref().and_then(&bay_of);
    let who = match (&e.member, bay) {
        (Some(m), Some(b)) => format!("{m} (bay {b})"),
        (Some(m), None) => m.clone(),
        _ => String::new(),
    };
    let a = snap.arrays.get(&e.array);
    let name = &e.array;
    let message = match e.kind {
        EventKind::NewArray => format!("{name}: array appeared"),
        EventKind::DeviceDisappeared => format!("{name}: array disappeared"),
        EventKind::Fail => format!("{name}: member {who} failed"),
        EventKind::FailSpare => format!("{name}: spare {who} failed"),
        EventKind::DegradedArray => {
            let missing = a.and_then(|a| a.degraded).unwrap_or(0);
            let total = a.and_then(|a| a.raid_disks).unwrap_or(0);
            let spares = a.map_or(0, |a| a.members.iter().filter(|m| m.state == MemberState::Spare).count());
            format!("{name} is degraded: {missing} of {total} members missing, {spares} spare(s) left")
        }
        EventKind::RebuildStarted => {
            format!("{name}: {} started", e.detail.as_deref().unwrap_or("rebuild"))
        }
        EventKind::Rebuild(n) => format!("{name}: {} {n}% done", e.detail.as_deref().unwrap_or("rebuild")),
        EventKind::RebuildFinished => format!("{name}: {} finished", e.detail.as_deref().unwrap_or("rebuild")),
        EventKind::SpareActive => format!("{name}: {who} is now an active member"),
    };
    EventInfo {
        time: now(),
        kind: e.kind.name(),
        severity: severity(e.kind),
        array: Some(e.array.clone()),
        bay,
        device: e.member.clone(),
        message,
    }
}

/// Takes a failed member out of its array (as `mdadm --remove` would) and remembers its bay.
pub fn remove_failed(sh: &Shared, array: &str, member: &str) {
    let root = &sh.settings.root;
    let (bay, serial) = {
        let st = sh.state();
        let bay = bay_of_member(&st.map, member);
        let serial = st.disks.get(member).and_then(|d| d.bay.serial.clone());
        (bay, serial)
    };
    let outcome = provision::remove_member(root, array, member, REMOVE_WAIT);
    let mut e = match &outcome {
        Ok(()) => event(
            "MemberRemoved",
            EventSeverity::Warning,
            format!(
                "{array}: removed failed member {member}{}; replace the disk{}",
                bay.map(|b| format!(" (bay {b})")).unwrap_or_default(),
                bay.map(|b| format!(" in bay {b}")).unwrap_or_default()
            ),
        ),
        Err(err) => event(
            "MemberRemoveFailed",
            EventSeverity::Critical,
            format!("{array}: could not remove failed member {member}: {err}"),
        ),
    };
    e.array = Some(array.to_string());
    e.device = Some(member.to_string());
    e.bay = bay;
    sh.record(vec![e]);
    if outcome.is_ok()
        && let Some(bay) = bay
    {
        sh.state().pending.insert(
            bay,
            Pending { array: array.to_string(), old_device: member.to_string(), old_serial: serial, refused: None },
        );
    }
}

/// Looks at the bays of removed members for a new disk, and adds it when policy allows.
pub fn check_replacements(sh: &Arc<Shared>) {
    let s = &sh.settings;
    let Ok(devices) = hermes_hw::discover::discover(&s.root) else { return };
    let map = crate::bay_map(&s.root, &s.bays, &devices);
    let snap = hermes_hw::md::read_arrays(&s.root).unwrap_or_default();
    let pending = sh.state().pending.clone();
    for (bay, p) in pending {
        let Some((name, _)) = map.bays.get(&bay) else { continue };
        let dev = devices.iter().find(|d| &d.name == name);
        let serial = dev.and_then(|d| d.serial.clone());
        let same_disk = name == &p.old_device && (serial.is_none() || serial == p.old_serial);
        let in_array = snap.arrays.values().any(|a| a.members.iter().any(|m| crate::is_part_of(&m.name, name)));
        if same_disk || in_array {
            continue;
        }
        let refuse = |why: String| {
            if p.refused.as_deref() != Some(why.as_str()) {
                let mut e = event("ReplacementWaiting", EventSeverity::Warning, why.clone());
                e.bay = Some(bay);
                e.device = Some(name.clone());
                e.array = Some(p.array.clone());
                sh.record(vec![e]);
                if let Some(x) = sh.state().pending.get_mut(&bay) {
                    x.refused = Some(why);
                }
            }
        };
        if !s.auto_replace {
            refuse(format!(
                "a new disk {name} is in bay {bay} (was {}); [hw] auto_replace is off: add it with `mdadm /dev/{} --add /dev/{name}`",
                p.old_device, p.array
            ));
            continue;
        }
        if let Some(sig) = provision::read_signature(&name_node(s, name)) {
            refuse(format!(
                "a new disk {name} is in bay {bay} but carries {sig}; not added automatically (wipe it first)"
            ));
            continue;
        }
        let args = match provision::add_args(&p.array, &s.dev_root, name) {
            Ok(a) => a,
            Err(e) => {
                refuse(e.to_string());
                continue;
            }
        };
        let mdadm = crate::under(&s.root, provision::MDADM).display().to_string();
        match provision::run(&mdadm, &args, Duration::from_secs(60)) {
            Ok(_) => {
                let mut e = event(
                    "MemberAdded",
                    EventSeverity::Info,
                    format!(
                        "{}: added the new disk {name} in bay {bay} (replaces {}); md rebuilds onto it if degraded",
                        p.array, p.old_device
                    ),
                );
                e.bay = Some(bay);
                e.device = Some(name.clone());
                e.array = Some(p.array.clone());
                sh.record(vec![e]);
                sh.state().pending.remove(&bay);
            }
            Err(e) => refuse(format!("adding {name} (bay {bay}) to {} failed: {e}", p.array)),
        }
    }
}

fn name_node(s: &crate::Settings, name: &str) -> std::path::PathBuf {
    s.dev_root.join(name)
}
