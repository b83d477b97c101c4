//! md events between two snapshots, named as mdadm's monitor names them.
//!
//! What it is: [`diff`] (old → new → events) and [`initial`] (what to report about arrays already
//! present when watching starts). Names: `NewArray`, `DeviceDisappeared`, `Fail`, `FailSpare`,
//! `DegradedArray`, `RebuildStarted`, `Rebuild20/40/60/80`, `RebuildFinished`, `SpareActive`
//! (mdadm(8), MONITOR MODE).
//!
//! What it is not: a notifier (the caller logs, mails and shows them) and not `TestMessage`,
//! `MoveSpare` or `SparesMissing` (those depend on mdadm.conf, which Hermes does not use).
//!
//! Invariants: pure and deterministic; arrays are visited in name order and, within one array,
//! events come in causal order: member failures, `DegradedArray`, `RebuildFinished`,
//! `RebuildStarted`, `RebuildNN`, `SpareActive`. Deliberate difference from mdadm: `DegradedArray`
//! is also raised when a running array's degraded count rises (mdadm raises it only for a newly
//! seen degraded array), because the issue asks to be told the moment an array degrades.

use serde::{Serialize, Serializer};

use super::{Array, MemberState, Snapshot, SyncProgress};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    NewArray,
    DeviceDisappeared,
    /// An active member was marked faulty (or vanished).
    Fail,
    /// A spare, or a member being rebuilt, was marked faulty.
    FailSpare,
    DegradedArray,
    RebuildStarted,
    /// Progress crossed 20, 40, 60 or 80 %.
    Rebuild(u8),
    RebuildFinished,
    /// A rebuilt member became active and in sync.
    SpareActive,
}

impl EventKind {
    /// mdadm's name for the event.
    pub fn name(self) -> String {
        match self {
            Self::NewArray => "NewArray".into(),
            Self::DeviceDisappeared => "DeviceDisappeared".into(),
            Self::Fail => "Fail".into(),
            Self::FailSpare => "FailSpare".into(),
            Self::DegradedArray => "DegradedArray".into(),
            Self::RebuildStarted => "RebuildStarted".into(),
            Self::Rebuild(n) => format!("Rebuild{n:02}"),
            Self::RebuildFinished => "RebuildFinished".into(),
            Self::SpareActive => "SpareActive".into(),
        }
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// One event: what happened, to which array, and which member if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    #[serde(rename = "event")]
    pub kind: EventKind,
    pub array: String,
    pub member: Option<String>,
    /// Extra context (the sync action of rebuild events).
    pub detail: Option<String>,
}

impl Event {
    fn new(kind: EventKind, array: &str) -> Self {
        Self { kind, array: array.to_string(), member: None, detail: None }
    }
    fn member(mut self, m: &str) -> Self {
        self.member = Some(m.to_string());
        self
    }
    fn detail(mut self, d: &str) -> Self {
        self.detail = Some(d.to_string());
        self
    }
}

/// Events to raise for arrays present when monitoring starts: `DegradedArray` for degraded ones.
pub fn initial(snap: &Snapshot) -> Vec<Event> {
    snap.arrays.values().filter(|a| a.is_degraded()).map(|a| Event::new(EventKind::DegradedArray, &a.name)).collect()
}

/// The events that turn `old` into `new`.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Event> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = old.arrays.keys().chain(new.arrays.keys()).collect();
    for name in names {
        match (old.arrays.get(name), new.arrays.get(name)) {
            (None, Some(n)) => {
                out.push(Event::new(EventKind::NewArray, name));
                if n.is_degraded() {
                    out.push(Event::new(EventKind::DegradedArray, name));
                }
            }
            (Some(_), None) => out.push(Event::new(EventKind::DeviceDisappeared, name)),
            (Some(o), Some(n)) => diff_array(o, n, &mut out),
            (None, None) => {}
        }
    }
    out
}

fn running(a: &Array) -> Option<&SyncProgress> {
    a.sync.as_ref().filter(|s| s.running())
}

fn diff_array(o: &Array, n: &Array, out: &mut Vec<Event>) {
    let name = &n.name;
    // Member failures.
    for om in &o.members {
        if om.state == MemberState::Faulty {
            continue;
        }
        let failed = match n.member(&om.name) {
            Some(nm) => nm.state == MemberState::Faulty,
            // Gone without being seen faulty: an active member cannot be removed unless it failed;
            // a spare can be removed on purpose, so its disappearance is not a failure.
            None => om.state == MemberState::InSync,
        };
        if failed {
            let kind = if om.state == MemberState::InSync { EventKind::Fail } else { EventKind::FailSpare };
            out.push(Event::new(kind, name).member(&om.name));
        }
    }
    if n.degraded.unwrap_or(0) > o.degraded.unwrap_or(0) {
        out.push(Event::new(EventKind::DegradedArray, name));
    }
    // Sync operations.
    match (running(o), running(n)) {
        (Some(os), None) => out.push(Event::new(EventKind::RebuildFinished, name).detail(os.action.as_str())),
        (None, Some(ns)) => out.push(Event::new(EventKind::RebuildStarted, name).detail(ns.action.as_str())),
        (Some(os), Some(ns)) if os.action != ns.action => {
            out.push(Event::new(EventKind::RebuildFinished, name).detail(os.action.as_str()));
            out.push(Event::new(EventKind::RebuildStarted, name).detail(ns.action.as_str()));
        }
        (Some(os), Some(ns)) => {
            if let (Some(op), Some(np)) = (os.permille, ns.permille) {
                // As mdadm: one event for the highest 20 % step crossed.
                let (ostep, nstep) = (op / 200, (np / 200).min(4));
                if nstep > ostep && nstep >= 1 {
                    let pct = u8::try_from(nstep * 20).unwrap_or(80);
                    out.push(Event::new(EventKind::Rebuild(pct), name).detail(ns.action.as_str()));
                }
            }
        }
        (None, None) => {}
    }
    // Members that became active.
    for nm in &n.members {
        let was = o.member(&nm.name).map(|m| &m.state);
        if nm.state == MemberState::InSync && matches!(was, Some(MemberState::Rebuilding | MemberState::Spare)) {
            out.push(Event::new(EventKind::SpareActive, name).member(&nm.name));
        }
    }
}
