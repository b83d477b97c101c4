//! Polling md sysfs state for changes, fast enough to report a degraded array within 2 s.
//!
//! What it is: [`Watcher`] keeps the last [`Snapshot`] read by [`super::sysfs::read_snapshot`] and
//! turns each poll into [`Event`]s; [`watch`] runs that every [`POLL_INTERVAL`] on the caller's
//! thread until told to stop.
//!
//! What it is not: an async task, an inotify/`poll(2)` listener on sysfs (md does
//! `sysfs_notify` on `array_state`, `sync_action`, `degraded` and `dev-*/state`; using it is a later
//! optimisation), or a notifier: the callback decides what to do with events.
//!
//! Invariants: one poll reads only small sysfs attributes (no `/proc/mdstat`, no device I/O):
//! about five files per array plus two per member, i.e. ~40 small reads for a 16-disk RAID10,
//! twice a second. A failed read of the tree yields an error for that poll and keeps the previous
//! snapshot, so a transient error never produces phantom events.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::events::{self, Event};
use super::{MdError, Snapshot, sysfs};

/// Poll period: a change is seen at most this long after the kernel makes it, plus one read,
/// well within the 2 s the issue asks for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Watcher {
    root: PathBuf,
    last: Snapshot,
}

impl Watcher {
    /// Reads the first snapshot; returns the watcher and the events for arrays already degraded.
    pub fn new(root: &Path) -> Result<(Self, Vec<Event>), MdError> {
        let last = sysfs::read_snapshot(root)?;
        let initial = events::initial(&last);
        Ok((Self { root: root.to_path_buf(), last }, initial))
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.last
    }

    /// Reads the state again and returns what changed since the last successful poll.
    pub fn poll(&mut self) -> Result<Vec<Event>, MdError> {
        let now = sysfs::read_snapshot(&self.root)?;
        let evs = events::diff(&self.last, &now);
        self.last = now;
        Ok(evs)
    }
}

/// Polls every `interval` until `stop` is set, calling `on_events` with each non-empty batch (and
/// once at start for arrays already degraded) and `on_error` for failed polls. Blocking: run it on
/// its own thread.
pub fn watch(
    root: &Path,
    interval: Duration,
    stop: &AtomicBool,
    mut on_events: impl FnMut(&Snapshot, Vec<Event>),
    mut on_error: impl FnMut(&MdError),
) -> Result<(), MdError> {
    let (mut w, initial) = Watcher::new(root)?;
    if !initial.is_empty() {
        on_events(w.snapshot(), initial);
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(interval);
        match w.poll() {
            Ok(evs) if !evs.is_empty() => on_events(w.snapshot(), evs),
            Ok(_) => {}
            Err(e) => on_error(&e),
        }
    }
    Ok(())
}
