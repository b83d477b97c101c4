//! One user's store: opening (checkpoint + replay + repair), the commit path with group
//! commit, checkpointing, and every mailbox operation behind the public `UserStore` methods.
//!
//! What it is: the only code that mutates a user's state. An operation *prepares* records from
//! the current state (all validation happens here, under the state lock), writes them to the
//! log, applies them, releases the lock, then waits until the log is durable (group commit:
//! one fsync covers every record written before it started) before answering.
//! What it is not: store-wide concerns (the lock file, the user cache, multi-user delivery:
//! see `store`).
//!
//! Invariants:
//! - Durability order: message files are written and fsync'd before the record naming them is
//!   written; the `msgs/` folder is fsync'd before the log fsync that covers such a record; an
//!   operation returns (and a [`ChangeNotice`] is sent) only after the log fsync covering its
//!   records. Files are deleted only after the record that released them is durable.
//! - Readers never see a change that is not durable: they wait until `durable_seq` reaches
//!   `written_seq`, so a UID that a client has seen can never be handed out again after a crash.
//! - After an I/O failure that leaves the log or the disk state uncertain the user is
//!   *poisoned*: every later call fails and `Store::user` loads a fresh instance from disk.
//! - Lock order: `warning` before `sync` before `core`; nothing else is held while taking
//!   any of them (`checkpointing` is taken with none held).
//! - Quota: an operation that adds live mail reserves it in its transaction ([`Tx::reserve`])
//!   against the usage of the state it is prepared from, under `core`: the check and the
//!   records that change usage are one critical section, so concurrent writers cannot both
//!   pass. Quota warnings are sent after the triggering change is durable, one user's at a
//!   time (`warning`), and the warning's own append is exempt from the quota and from
//!   triggering another check.

use crate::blob::{self, FileId};
use crate::checkpoint;
use crate::log::{self, AppendError, LogWriter};
use crate::record::{AppendEntry, MAX_RECORD_BYTES, Record, RestoreEntry};
use crate::state::{RetainReason, Retained, State, entry, next_uidvalidity};
use crate::quota::{self, QuotaLimits, QuotaWarning, QuotaWarningComposer};
use crate::{
    ChangeNotice, CopyResult, DEFAULT_MAILBOXES, Flag, FlagOp, FlagUpdate, InternalDate, MailboxId, MailboxInfo,
    MailboxView, NewMessage, PurgeReport, Restored, RetainedFilter, RetainedMessage, RetainedReason, SpecialUse,
    StoreConfig, StoreError, Usage, UsageDetail, flags, name,
};
use std::collections::HashMap;
use hermes_core::directory::UserId;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Records between checkpoints: replaying 1,000 records takes milliseconds, and writing a
/// checkpoint of a 100,000-message user (a few MB) every 1,000 changes costs little.
pub const CHECKPOINT_EVERY: u64 = 1000;
/// Log segments kept after a checkpoint covers them, for a replica catching up.
pub const RETAINED_SEGMENTS: usize = 2;
/// Capacity of the change-notice channel; a receiver that lags further just resyncs.
pub const NOTICE_CAPACITY: usize = 256;
/// Decompressed-message cache: entries and total bytes (FETCH of headers then body of the
/// same message is the common pattern; a few entries catch it).
const CACHE_ENTRIES: usize = 16;
const CACHE_BYTES: usize = 8 << 20;

/// Store-wide things every user needs: the root, the config, and the lock that makes this
/// process the only writer (held as long as any user is open).
pub(crate) struct Shared {
    pub root: PathBuf,
    pub config: StoreConfig,
    pub _lock: nix::fcntl::Flock<std::fs::File>,
    /// Composes quota warnings; `None`: none are sent (and no level is recorded).
    pub warnings: parking_lot::RwLock<Option<QuotaWarningComposer>>,
    /// The usage levels that warn ([`crate::Store::set_quota_warning_percents`]).
    pub warning_percents: parking_lot::RwLock<Vec<u8>>,
    /// How long expunged mail is kept, in seconds: `config.retention_secs` until changed
    /// ([`crate::Store::set_retention_secs`]).
    pub retention_secs: std::sync::atomic::AtomicU64,
}

struct Core {
    state: State,
    log: LogWriter,
    written_seq: u64,
    durable_seq: u64,
    /// A new name appeared in `msgs/` since the last log fsync.
    dir_dirty: bool,
    checkpoint_seq: u64,
    /// The user's limits ([`crate::UserStore::set_quota`]); `None`: unlimited / not known.
    quota: Option<QuotaLimits>,
    /// The warning level last recorded (mirror of the `quota-warned` file).
    warned: u8,
}

#[derive(Default)]
struct Cache {
    entries: VecDeque<(FileId, Arc<Vec<u8>>)>,
    bytes: usize,
}

impl Cache {
    fn get(&mut self, id: FileId) -> Option<Arc<Vec<u8>>> {
        let pos = self.entries.iter().position(|(f, _)| *f == id)?;
        let e = self.entries.remove(pos)?;
        let data = Arc::clone(&e.1);
        self.entries.push_front(e);
        Some(data)
    }
    fn put(&mut self, id: FileId, data: Arc<Vec<u8>>) {
        if data.len() > CACHE_BYTES / 4 || self.entries.iter().any(|(f, _)| *f == id) {
            return;
        }
        self.bytes += data.len();
        self.entries.push_front((id, data));
        while self.entries.len() > CACHE_ENTRIES || self.bytes > CACHE_BYTES {
            match self.entries.pop_back() {
                Some((_, d)) => self.bytes = self.bytes.saturating_sub(d.len()),
                None => break,
            }
        }
    }
}

/// The implementation behind `UserStore`.
pub(crate) struct UserInner {
    id: UserId,
    dir: PathBuf,
    msgs: PathBuf,
    logs: PathBuf,
    shared: Arc<Shared>,
    core: Mutex<Core>,
    durable: Condvar,
    sync: Mutex<()>,
    notices: tokio::sync::broadcast::Sender<ChangeNotice>,
    poisoned: AtomicBool,
    /// Held while a checkpoint is written (one at a time: they share `checkpoint.tmp`).
    checkpointing: Mutex<()>,
    /// Held while quota warning levels are examined and a warning is sent (one at a time).
    warning: Mutex<()>,
    cache: Mutex<Cache>,
    pub(crate) last_used: AtomicU64,
}

/// Records an operation wants written, with the counters it allocates from.
struct Tx {
    modseq: u64,
    next_mailbox_id: u64,
    last_uidvalidity: u32,
    records: Vec<Record>,
    new_files: bool,
    /// The limits this transaction is checked against (`None`: exempt or unlimited).
    quota: Option<QuotaLimits>,
    /// Live mail this transaction adds, reserved so far.
    reserved: Usage,
}

impl Tx {
    fn new(st: &State, quota: Option<QuotaLimits>) -> Tx {
        Tx {
            modseq: st.modseq,
            next_mailbox_id: st.next_mailbox_id,
            last_uidvalidity: st.last_uidvalidity,
            records: Vec::new(),
            new_files: false,
            quota,
            reserved: Usage::default(),
        }
    }
    /// Reserves `bytes` in `messages` more live messages against the quota, on top of the
    /// state's usage and what this transaction already reserved: [`StoreError::OverQuota`]
    /// if that would pass a limit (reaching it exactly is allowed).
    fn reserve(&mut self, st: &State, bytes: u64, messages: u64) -> Result<(), StoreError> {
        let base = Usage {
            bytes: st.usage.bytes.saturating_add(self.reserved.bytes),
            messages: st.usage.messages.saturating_add(self.reserved.messages),
        };
        if !quota::fits(self.quota, base, bytes, messages) {
            return Err(StoreError::OverQuota);
        }
        self.reserved.bytes = self.reserved.bytes.saturating_add(bytes);
        self.reserved.messages = self.reserved.messages.saturating_add(messages);
        Ok(())
    }
    fn modseq(&mut self) -> u64 {
        self.modseq += 1;
        self.modseq
    }
    /// Adds MailboxCreate records for `name` and its missing parents; returns the id of `name`.
    fn create_with_parents(
        &mut self,
        st: &State,
        canonical: &str,
        special_use: Option<SpecialUse>,
        subscribe: bool,
    ) -> MailboxId {
        for p in name::parents(canonical) {
            if st.id_by_name(p).is_none() && !self.creates(p) {
                self.create_one(p, None, false);
            }
        }
        self.create_one(canonical, special_use, subscribe)
    }
    /// The id and UIDVALIDITY of mailbox `n` if this transaction creates it.
    fn created(&self, n: &str) -> Option<(MailboxId, u32)> {
        self.records.iter().find_map(|r| match r {
            Record::MailboxCreate { id, name, uidvalidity, .. } if name == n => Some((*id, *uidvalidity)),
            _ => None,
        })
    }
    fn creates(&self, n: &str) -> bool {
        self.records.iter().any(|r| matches!(r, Record::MailboxCreate { name, .. } if name == n))
    }
    fn create_one(&mut self, n: &str, special_use: Option<SpecialUse>, subscribe: bool) -> MailboxId {
        let id = MailboxId(self.next_mailbox_id);
        self.next_mailbox_id += 1;
        let uidvalidity = next_uidvalidity(self.last_uidvalidity, now_unix());
        self.last_uidvalidity = uidvalidity;
        let modseq = self.modseq();
        self.records.push(Record::MailboxCreate { id, name: n.to_string(), uidvalidity, special_use, modseq });
        if subscribe {
            self.records.push(Record::Subscribe { name: n.to_string() });
        }
        id
    }
}

pub(crate) fn now_unix() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

pub(crate) fn now_date() -> InternalDate {
    InternalDate { unix: now_unix(), offset_minutes: 0 }
}

fn poisoned_error() -> StoreError {
    StoreError::Io(std::io::Error::other("user store failed after an I/O error; reopen it"))
}

fn canonical(n: &str) -> Result<String, StoreError> {
    name::canonical(n).ok_or(StoreError::InvalidMailboxName)
}

fn notices_of(records: &[Record]) -> Vec<ChangeNotice> {
    let mut out: Vec<ChangeNotice> = Vec::new();
    let mut push = |n: ChangeNotice| {
        if let ChangeNotice::Mailbox { mailbox, modseq } = n {
            for o in out.iter_mut() {
                if let ChangeNotice::Mailbox { mailbox: m, modseq: s } = o
                    && *m == mailbox
                {
                    *s = (*s).max(modseq);
                    return;
                }
            }
        } else if out.contains(&n) {
            return;
        }
        out.push(n);
    };
    for r in records {
        match r {
            Record::MailboxCreate { .. }
            | Record::MailboxRename { .. }
            | Record::MailboxDelete { .. }
            | Record::DelayedMailboxDelete { .. }
            | Record::Subscribe { .. }
            | Record::Unsubscribe { .. } => push(ChangeNotice::MailboxList),
            Record::Append { mailbox, modseq, .. }
            | Record::Flags { mailbox, modseq, .. }
            | Record::Expunge { mailbox, modseq, .. }
            | Record::DelayedExpunge { mailbox, modseq, .. } => {
                push(ChangeNotice::Mailbox { mailbox: *mailbox, modseq: *modseq })
            }
            Record::Move { from, to, modseq, .. } | Record::DelayedMove { from, to, modseq, .. } => {
                push(ChangeNotice::Mailbox { mailbox: *from, modseq: *modseq });
                push(ChangeNotice::Mailbox { mailbox: *to, modseq: *modseq });
            }
            Record::RenameInbox { inbox, modseq, .. } => {
                push(ChangeNotice::MailboxList);
                push(ChangeNotice::Mailbox { mailbox: *inbox, modseq: *modseq });
            }
            Record::Restore { modseq, entries } => {
                for e in entries {
                    push(ChangeNotice::Mailbox { mailbox: e.to, modseq: *modseq });
                }
            }
            // Nothing visible changes: only hidden, retained messages go.
            Record::Purge { .. } => {}
        }
    }
    out
}

impl UserInner {
    /// Opens (creating if new) the user's folder: load the checkpoint, replay later log
    /// records, cut a torn tail, remove orphan files, and give a new user its mailboxes.
    pub(crate) fn open(shared: Arc<Shared>, id: &UserId) -> Result<UserInner, StoreError> {
        let dir = shared.root.join("users").join(id.as_str());
        let msgs = dir.join("msgs");
        let logs = dir.join("log");
        blob::create_dir_durable(&msgs)?;
        blob::create_dir_durable(&logs)?;
        let mut state = checkpoint::load(&dir)?.unwrap_or_else(State::new);
        let warned = quota::read_warned(&dir, id);
        let checkpoint_seq = state.seq;
        let log = replay(&logs, &mut state, checkpoint_seq, id)?;
        remove_orphans(&msgs, &state, id)?;
        let (notices, _) = tokio::sync::broadcast::channel(NOTICE_CAPACITY);
        let seq = state.seq;
        let inner = UserInner {
            id: id.clone(),
            dir,
            msgs,
            logs,
            shared,
            core: Mutex::new(Core {
                state,
                log,
                written_seq: seq,
                durable_seq: seq,
                dir_dirty: false,
                checkpoint_seq,
                quota: None,
                warned,
            }),
            durable: Condvar::new(),
            sync: Mutex::new(()),
            notices,
            poisoned: AtomicBool::new(false),
            checkpointing: Mutex::new(()),
            warning: Mutex::new(()),
            cache: Mutex::new(Cache::default()),
            last_used: AtomicU64::new(0),
        };
        let fresh = {
            let core = inner.core.lock();
            core.state.seq == 0 && core.state.mailboxes.is_empty()
        };
        if fresh {
            inner.commit(|st, tx| {
                tx.create_with_parents(st, name::INBOX, None, true);
                for (n, su) in DEFAULT_MAILBOXES {
                    if st.id_by_name(n).is_none() {
                        tx.create_with_parents(st, n, Some(su), true);
                    }
                }
                Ok(())
            })?;
        }
        Ok(inner)
    }

    pub(crate) fn user_id(&self) -> &UserId {
        &self.id
    }

    /// `users/<id>/cache/`: see `UserStore::cache_dir`.
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn msgs_dir(&self) -> &Path {
        &self.msgs
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeNotice> {
        self.notices.subscribe()
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
        let _core = self.core.lock();
        self.durable.notify_all();
    }

    /// Runs `f` on a state with no change pending durability. After poisoning it still answers
    /// from memory (callers of infallible readers get the last known state).
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let mut core = self.core.lock();
        while core.durable_seq < core.written_seq && !self.is_poisoned() {
            self.durable.wait(&mut core);
        }
        f(&core.state)
    }

    /// Prepares records with `prepare`, writes and applies them, and returns once durable;
    /// then, if live usage changed, updates the quota warning level (sending a warning).
    fn commit<T>(&self, prepare: impl FnOnce(&State, &mut Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.commit_as(Quota::Enforce, prepare)
    }

    fn commit_as<T>(
        &self,
        mode: Quota,
        prepare: impl FnOnce(&State, &mut Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (out, last_seq, dead, notices, usage_changed) = {
            let mut core = self.core.lock();
            if self.is_poisoned() {
                return Err(poisoned_error());
            }
            let limits = match mode {
                Quota::Enforce => core.quota,
                Quota::Exempt => None,
            };
            let usage_before = core.state.usage;
            let mut tx = Tx::new(&core.state, limits);
            let out = prepare(&core.state, &mut tx)?;
            if tx.records.is_empty() {
                let seq = core.written_seq;
                drop(core);
                self.sync_to(seq)?;
                return Ok(out);
            }
            let first = core.state.seq + 1;
            let mut frames = Vec::new();
            for (i, r) in tx.records.iter().enumerate() {
                let payload = r.encode();
                if payload.len() > MAX_RECORD_BYTES {
                    return Err(StoreError::Io(std::io::Error::other("change too large for one log record")));
                }
                log::frame(first + i as u64, &payload, &mut frames);
            }
            if tx.new_files {
                core.dir_dirty = true;
            }
            match core.log.append(&frames) {
                Ok(()) => {}
                Err(AppendError::Clean(e)) => return Err(e),
                Err(AppendError::Fatal(e)) => {
                    drop(core);
                    self.poison();
                    return Err(e);
                }
            }
            let mut dead = Vec::new();
            for (i, r) in tx.records.iter().enumerate() {
                dead.extend(core.state.apply(first + i as u64, r));
            }
            core.written_seq = core.state.seq;
            let usage_changed = core.state.usage != usage_before;
            (out, core.written_seq, dead, notices_of(&tx.records), usage_changed)
        };
        self.sync_to(last_seq)?;
        for f in dead {
            self.cache.lock().entries.retain(|(id, _)| *id != f);
            if let Err(e) = std::fs::remove_file(blob::path_in(&self.msgs, f))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(user = %self.id, error = %e, "could not remove a message file; removed at next open");
            }
        }
        for n in notices {
            let _ = self.notices.send(n);
        }
        self.maybe_checkpoint(last_seq);
        if usage_changed && mode == Quota::Enforce {
            self.quota_followup();
        }
        Ok(out)
    }

    // ---- quota ----

    pub(crate) fn set_quota(&self, limits: Option<QuotaLimits>) {
        let changed = {
            let mut core = self.core.lock();
            let changed = core.quota != limits;
            core.quota = limits;
            changed
        };
        if changed {
            self.rearm_warnings();
        }
    }

    pub(crate) fn quota(&self) -> Option<QuotaLimits> {
        self.core.lock().quota
    }

    pub(crate) fn quota_warned_percent(&self) -> u8 {
        self.core.lock().warned
    }

    /// After new limits: lowers the recorded warning level to what usage now reaches, so a
    /// raised quota re-arms the warnings. Never sends one (that happens on a change of mail).
    fn rearm_warnings(&self) {
        let _one = self.warning.lock();
        let (usage, limits, warned) = self.quota_position();
        let Some(limits) = limits else { return };
        let level = quota::level(usage, limits, &self.shared.warning_percents.read());
        if level < warned {
            self.record_warned(level);
        }
    }

    fn quota_position(&self) -> (Usage, Option<QuotaLimits>, u8) {
        let core = self.core.lock();
        (core.state.usage, core.quota, core.warned)
    }

    fn record_warned(&self, level: u8) {
        // Memory first: even if the file cannot be written, this process does not repeat the
        // warning; after a restart the old level at worst repeats it once.
        self.core.lock().warned = level;
        if let Err(e) = quota::write_warned(&self.dir, level) {
            tracing::warn!(user = %self.id, error = %e, level, "cannot record the quota warning level");
        }
    }

    /// Called after a durable change of live usage: if usage now reaches a warning threshold
    /// above the recorded level, appends one warning to INBOX (exempt from the quota) and then
    /// records the level; if it dropped below the recorded level, lowers the record so the
    /// next crossing warns again. Failures are logged: the next change retries.
    fn quota_followup(&self) {
        let _one = self.warning.lock();
        let (usage, limits, warned) = self.quota_position();
        // Limits unknown (nobody set them since the user was loaded): leave the record alone,
        // rather than re-arming warnings the user already got.
        let Some(limits) = limits else { return };
        let level = quota::level(usage, limits, &self.shared.warning_percents.read());
        if level == warned {
            return;
        }
        if level > warned {
            let composer = self.shared.warnings.read().clone();
            let Some(compose) = composer else { return };
            let raw = compose(&self.id, &QuotaWarning { percent: level, usage, limits });
            if let Err(e) = self.append_exempt_to_inbox(raw) {
                tracing::warn!(user = %self.id, error = %e, level, "quota warning not delivered; retried at the next change");
                return;
            }
            tracing::info!(
                user = %self.id,
                level,
                used_bytes = usage.bytes,
                limit_bytes = limits.bytes,
                used_messages = usage.messages,
                limit_messages = limits.messages,
                "quota warning delivered"
            );
        }
        self.record_warned(level);
    }

    /// Appends `raw` to INBOX without a quota check and without triggering a followup.
    fn append_exempt_to_inbox(&self, raw: Vec<u8>) -> Result<(), StoreError> {
        if raw.len() as u64 > self.shared.config.max_message_bytes {
            return Err(StoreError::TooLarge);
        }
        let message = NewMessage { raw, flags: Vec::new(), internal_date: None };
        let files = self.write_files(std::slice::from_ref(&message))?;
        let res = self.commit_as(Quota::Exempt, |st, tx| {
            let id = st.id_by_name(name::INBOX).ok_or(StoreError::NoSuchMailbox)?;
            let mb = st.mailboxes.get(&id).ok_or(StoreError::NoSuchMailbox)?;
            mb.uidnext.checked_add(1).ok_or_else(uid_space)?;
            let modseq = tx.modseq();
            let entries = files.iter().map(|(f, size)| entry(mb.uidnext, *f, Vec::new(), now_date(), *size)).collect();
            tx.records.push(Record::Append { mailbox: id, modseq, messages: entries });
            tx.new_files = true;
            Ok(())
        });
        if res.is_err() && !self.is_poisoned() {
            self.remove_files(files.iter().map(|f| f.0));
        }
        res
    }

    /// Group commit: returns once every record up to `seq` is durable. One caller at a time
    /// fsyncs (the `sync` lock); it covers everything written before it began, so callers queued
    /// behind it usually find their records already durable.
    fn sync_to(&self, seq: u64) -> Result<(), StoreError> {
        let _leader = self.sync.lock();
        let (target, file, dirty) = {
            let mut core = self.core.lock();
            if core.durable_seq >= seq {
                return Ok(());
            }
            if self.is_poisoned() {
                return Err(poisoned_error());
            }
            (core.written_seq, core.log.file(), std::mem::take(&mut core.dir_dirty))
        };
        let res = (|| -> Result<(), StoreError> {
            if dirty {
                blob::sync_dir(&self.msgs)?;
            }
            file.sync_data()?;
            Ok(())
        })();
        if let Err(e) = res {
            tracing::error!(user = %self.id, error = %e, "change log fsync failed; user store poisoned");
            self.poison();
            return Err(e);
        }
        let mut core = self.core.lock();
        core.durable_seq = core.durable_seq.max(target);
        self.durable.notify_all();
        Ok(())
    }

    fn maybe_checkpoint(&self, seq: u64) {
        let due = {
            let core = self.core.lock();
            seq.saturating_sub(core.checkpoint_seq) >= CHECKPOINT_EVERY
        };
        if !due {
            return;
        }
        // Another thread already writing one covers this need.
        if let Some(_busy) = self.checkpointing.try_lock()
            && let Err(e) = self.write_checkpoint()
        {
            tracing::warn!(user = %self.id, error = %e, "checkpoint failed; the log still covers every change");
        }
    }

    /// Writes a checkpoint now if anything changed since the last one.
    pub(crate) fn checkpoint(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.checkpointing.lock();
        self.write_checkpoint()
    }

    /// Writes a checkpoint of the current state, starting a new log segment first so that
    /// the segments before it can later be dropped. The caller holds `checkpointing`.
    fn write_checkpoint(&self) -> Result<(), StoreError> {
        if self.is_poisoned() {
            return Err(poisoned_error());
        }
        let snapshot = {
            let _leader = self.sync.lock();
            let mut core = self.core.lock();
            if core.state.seq <= core.checkpoint_seq {
                return Ok(());
            }
            // Make everything written durable, so the segment being closed is complete.
            if core.durable_seq < core.written_seq {
                let dirty = std::mem::take(&mut core.dir_dirty);
                let res = (|| -> Result<(), StoreError> {
                    if dirty {
                        blob::sync_dir(&self.msgs)?;
                    }
                    core.log.file().sync_data()?;
                    Ok(())
                })();
                if let Err(e) = res {
                    drop(core);
                    self.poison();
                    return Err(e);
                }
                core.durable_seq = core.written_seq;
                self.durable.notify_all();
            }
            if !core.log.is_empty() {
                let next = core.state.seq + 1;
                if let Err(e) = core.log.rotate(next) {
                    // The old segment is still open and intact; keep appending to it.
                    drop(core);
                    self.poison();
                    return Err(e);
                }
            }
            snapshot_of(&core.state)
        };
        let bytes = checkpoint::encode(&snapshot);
        checkpoint::store(&self.dir, &bytes)?;
        self.core.lock().checkpoint_seq = snapshot.seq;
        prune_segments(&self.logs, snapshot.seq)?;
        Ok(())
    }

    // ---- reads ----

    pub(crate) fn list_mailboxes(&self) -> Vec<MailboxInfo> {
        self.read(|st| st.list())
    }

    pub(crate) fn mailbox(&self, n: &str) -> Option<MailboxInfo> {
        let c = name::canonical(n)?;
        self.read(|st| st.id_by_name(&c).and_then(|id| st.mailboxes.get(&id)).map(|mb| st.info(mb)))
    }

    pub(crate) fn subscriptions(&self) -> Vec<String> {
        self.read(|st| st.subscriptions.iter().cloned().collect())
    }

    pub(crate) fn view(&self, mailbox: MailboxId) -> Result<MailboxView, StoreError> {
        self.read(|st| st.mailboxes.get(&mailbox).map(|mb| mb.view()).ok_or(StoreError::NoSuchMailbox))
    }

    pub(crate) fn usage(&self) -> Usage {
        self.read(|st| st.usage)
    }

    pub(crate) fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Arc<Vec<u8>>, StoreError> {
        let (file, size) = self.read(|st| {
            let mb = st.mailboxes.get(&mailbox).ok_or(StoreError::NoSuchMailbox)?;
            let i = mb.index_of(uid).ok_or(StoreError::NoSuchMessage)?;
            match (mb.files.get(i), mb.messages.get(i)) {
                (Some(f), Some(m)) => Ok((*f, m.size)),
                _ => Err(StoreError::NoSuchMessage),
            }
        })?;
        if let Some(hit) = self.cache.lock().get(file) {
            return Ok(hit);
        }
        let raw = blob::read(&blob::path_in(&self.msgs, file), size)?;
        if raw.len() as u64 != size {
            return Err(StoreError::Corrupt(format!("message file {} has the wrong size", file.file_name())));
        }
        let raw = Arc::new(raw);
        self.cache.lock().put(file, Arc::clone(&raw));
        Ok(raw)
    }

    // ---- mailbox operations ----

    pub(crate) fn create_mailbox(&self, n: &str, special_use: Option<SpecialUse>) -> Result<MailboxInfo, StoreError> {
        let c = canonical(n)?;
        let id = self.commit(|st, tx| {
            if st.id_by_name(&c).is_some() {
                return Err(StoreError::MailboxExists);
            }
            Ok(tx.create_with_parents(st, &c, special_use, false))
        })?;
        self.read(|st| st.mailboxes.get(&id).map(|mb| st.info(mb))).ok_or(StoreError::NoSuchMailbox)
    }

    pub(crate) fn delete_mailbox(&self, n: &str) -> Result<(), StoreError> {
        let c = canonical(n)?;
        if c == name::INBOX {
            return Err(StoreError::CannotDeleteInbox);
        }
        self.commit(|st, tx| {
            let id = st.id_by_name(&c).ok_or(StoreError::NoSuchMailbox)?;
            if has_children(st, &c) {
                return Err(StoreError::HasChildren);
            }
            let modseq = tx.modseq();
            tx.records.push(Record::DelayedMailboxDelete { id, modseq, at: now_unix() });
            Ok(())
        })
    }

    pub(crate) fn rename_mailbox(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let from = canonical(from)?;
        let to = canonical(to)?;
        self.commit(|st, tx| {
            let id = st.id_by_name(&from).ok_or(StoreError::NoSuchMailbox)?;
            if st.id_by_name(&to).is_some() || to == from {
                return Err(StoreError::MailboxExists);
            }
            if from == name::INBOX {
                for p in name::parents(&to) {
                    if st.id_by_name(p).is_none() && !tx.creates(p) {
                        tx.create_one(p, None, false);
                    }
                }
                let new = MailboxId(tx.next_mailbox_id);
                tx.next_mailbox_id += 1;
                let uidvalidity = next_uidvalidity(tx.last_uidvalidity, now_unix());
                tx.last_uidvalidity = uidvalidity;
                let modseq = tx.modseq();
                tx.records.push(Record::RenameInbox { inbox: id, new, name: to.clone(), uidvalidity, modseq });
                return Ok(());
            }
            if name::is_descendant(&to, &from) {
                return Err(StoreError::InvalidMailboxName);
            }
            let mut renames = vec![(id, to.clone())];
            let prefix = format!("{from}/");
            for (child, cid) in st.names.range(prefix.clone()..) {
                if !child.starts_with(&prefix) {
                    break;
                }
                let new_name = canonical(&format!("{to}/{}", &child[prefix.len()..]))?;
                if st.id_by_name(&new_name).is_some() {
                    return Err(StoreError::MailboxExists);
                }
                renames.push((*cid, new_name));
            }
            for p in name::parents(&to) {
                if st.id_by_name(p).is_none() && !tx.creates(p) {
                    tx.create_one(p, None, false);
                }
            }
            let modseq = tx.modseq();
            tx.records.push(Record::MailboxRename { renames, modseq });
            Ok(())
        })
    }

    pub(crate) fn set_subscribed(&self, n: &str, subscribed: bool) -> Result<(), StoreError> {
        let c = canonical(n)?;
        self.commit(|st, tx| {
            if st.subscriptions.contains(&c) != subscribed {
                tx.records.push(if subscribed { Record::Subscribe { name: c } } else { Record::Unsubscribe { name: c } });
            }
            Ok(())
        })
    }

    // ---- message operations ----

    /// Writes new message files for `messages` (compress, write, fsync), returning their
    /// entries without UIDs; on failure removes what it wrote.
    fn write_files(&self, messages: &[NewMessage]) -> Result<Vec<(FileId, u64)>, StoreError> {
        let mut written: Vec<(FileId, u64)> = Vec::with_capacity(messages.len());
        for m in messages {
            let res = (|| -> Result<FileId, StoreError> {
                let id = FileId::random();
                let z = blob::compress(&m.raw, self.shared.config.zstd_level)?;
                blob::write_new(&blob::path_in(&self.msgs, id), &z)?;
                Ok(id)
            })();
            match res {
                Ok(id) => written.push((id, m.raw.len() as u64)),
                Err(e) => {
                    self.remove_files(written.iter().map(|w| w.0));
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    pub(crate) fn remove_files(&self, files: impl IntoIterator<Item = FileId>) {
        for f in files {
            let _ = std::fs::remove_file(blob::path_in(&self.msgs, f));
        }
    }

    pub(crate) fn append(&self, mailbox: MailboxId, messages: Vec<NewMessage>) -> Result<(u32, Vec<u32>), StoreError> {
        let max = self.shared.config.max_message_bytes;
        if messages.iter().any(|m| m.raw.len() as u64 > max) {
            return Err(StoreError::TooLarge);
        }
        let uidvalidity = self.view_header(mailbox)?;
        if messages.is_empty() {
            return Ok((uidvalidity, Vec::new()));
        }
        let files = self.write_files(&messages)?;
        let res = self.commit(|st, tx| {
            let mb = st.mailboxes.get(&mailbox).ok_or(StoreError::NoSuchMailbox)?;
            let first = mb.uidnext;
            let count = u32::try_from(files.len()).map_err(|_| uid_space())?;
            first.checked_add(count).ok_or_else(uid_space)?;
            let bytes = files.iter().fold(0u64, |a, (_, size)| a.saturating_add(*size));
            tx.reserve(st, bytes, u64::from(count))?;
            let modseq = tx.modseq();
            let entries: Vec<AppendEntry> = messages
                .iter()
                .zip(&files)
                .enumerate()
                .map(|(i, (m, (f, size)))| {
                    entry(first + i as u32, *f, flags::normalize(&m.flags), m.internal_date.unwrap_or_else(now_date), *size)
                })
                .collect();
            let uids = entries.iter().map(|e| e.uid).collect();
            tx.records.push(Record::Append { mailbox, modseq, messages: entries });
            tx.new_files = true;
            Ok((mb.uidvalidity, uids))
        });
        if res.is_err() && !self.is_poisoned() {
            self.remove_files(files.iter().map(|f| f.0));
        }
        res
    }

    fn view_header(&self, mailbox: MailboxId) -> Result<u32, StoreError> {
        self.read(|st| st.mailboxes.get(&mailbox).map(|m| m.uidvalidity).ok_or(StoreError::NoSuchMailbox))
    }

    /// Delivery of an already linked file `file` of raw `size` to `targets` (mailbox names,
    /// created if missing, with flags), in one commit. One result per target.
    pub(crate) fn deliver_file(
        &self,
        file: FileId,
        size: u64,
        internal_date: InternalDate,
        targets: &[(&str, &[Flag])],
    ) -> Result<Vec<Result<crate::Appended, StoreError>>, StoreError> {
        self.commit(|st, tx| {
            let mut results = Vec::with_capacity(targets.len());
            // (mailbox, uidvalidity, next uid) for mailboxes touched in this commit.
            let mut touched: Vec<(MailboxId, u32, u32, Vec<AppendEntry>)> = Vec::new();
            for (mbname, fl) in targets {
                let Some(c) = name::canonical(mbname) else {
                    results.push(Err(StoreError::InvalidMailboxName));
                    continue;
                };
                // Before any mailbox is created for it: a refused delivery changes nothing.
                if let Err(e) = tx.reserve(st, size, 1) {
                    results.push(Err(e));
                    continue;
                }
                let (id, uidvalidity, uidnext) = match st.id_by_name(&c).and_then(|id| st.mailboxes.get(&id)) {
                    Some(mb) => (mb.id, mb.uidvalidity, mb.uidnext),
                    None => {
                        let created = tx.records.iter().find_map(|r| match r {
                            Record::MailboxCreate { id, name, uidvalidity, .. } if *name == c => Some((*id, *uidvalidity)),
                            _ => None,
                        });
                        let (id, uv) = match created {
                            Some(x) => x,
                            None => {
                                let id = tx.create_with_parents(st, &c, None, true);
                                (id, tx.last_uidvalidity)
                            }
                        };
                        (id, uv, 1)
                    }
                };
                let slot = match touched.iter().position(|t| t.0 == id) {
                    Some(p) => p,
                    None => {
                        touched.push((id, uidvalidity, uidnext, Vec::new()));
                        touched.len() - 1
                    }
                };
                let t = &mut touched[slot];
                let Some(next) = t.2.checked_add(1) else {
                    results.push(Err(uid_space()));
                    continue;
                };

                let uid = t.2;
                t.2 = next;
                t.3.push(entry(uid, file, flags::normalize(fl), internal_date, size));
                results.push(Ok(crate::Appended { mailbox: id, uidvalidity: t.1, uid }));
            }
            for (id, _, _, entries) in touched {
                if entries.is_empty() {
                    continue; // every target of this mailbox was refused (over quota)
                }
                let modseq = tx.modseq();
                tx.records.push(Record::Append { mailbox: id, modseq, messages: entries });
            }
            tx.new_files = true;
            Ok(results)
        })
    }

    pub(crate) fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        new: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate, StoreError> {
        let new = flags::normalize(new);
        self.commit(|st, tx| {
            let mb = st.mailboxes.get(&mailbox).ok_or(StoreError::NoSuchMailbox)?;
            let mut wanted = uids.to_vec();
            wanted.sort_unstable();
            wanted.dedup();
            let mut update = FlagUpdate::default();
            let mut changes = Vec::new();
            for uid in wanted {
                let Some(i) = mb.index_of(uid) else { continue };
                let m = &mb.messages[i];
                if unchanged_since.is_some_and(|u| m.modseq > u) {
                    update.modified.push(uid);
                    continue;
                }
                let result = flags::apply(&m.flags, op, &new);
                if result != m.flags {
                    changes.push((uid, result));
                }
            }
            if !changes.is_empty() {
                let modseq = tx.modseq();
                update.changed = changes.iter().map(|(u, f)| (*u, f.clone(), modseq)).collect();
                tx.records.push(Record::Flags { mailbox, modseq, changes });
            }
            Ok(update)
        })
    }

    fn copy_or_move(&self, from: MailboxId, uids: &[u32], to: MailboxId, is_move: bool) -> Result<CopyResult, StoreError> {
        self.commit(|st, tx| {
            let src = st.mailboxes.get(&from).ok_or(StoreError::NoSuchMailbox)?;
            let dst = st.mailboxes.get(&to).ok_or(StoreError::NoSuchMailbox)?;
            let mut wanted = uids.to_vec();
            wanted.sort_unstable();
            wanted.dedup();
            let found: Vec<usize> = wanted.iter().filter_map(|u| src.index_of(*u)).collect();
            let count = u32::try_from(found.len()).map_err(|_| uid_space())?;
            dst.uidnext.checked_add(count).ok_or_else(uid_space)?;
            let pairs: Vec<(u32, u32)> =
                found.iter().enumerate().map(|(k, i)| (src.messages[*i].uid, dst.uidnext + k as u32)).collect();
            if pairs.is_empty() {
                return Ok(CopyResult { uidvalidity: dst.uidvalidity, pairs });
            }
            if !is_move {
                // COPY adds live mail (even within one user: each copy counts); MOVE does not.
                let bytes = found.iter().fold(0u64, |a, i| a.saturating_add(src.messages[*i].size));
                tx.reserve(st, bytes, u64::from(count))?;
            }
            let modseq = tx.modseq();
            if is_move {
                tx.records.push(Record::DelayedMove { from, to, modseq, at: now_unix(), pairs: pairs.clone() });
            } else {
                let entries = found
                    .iter()
                    .zip(&pairs)
                    .map(|(i, (_, d))| {
                        let m = &src.messages[*i];
                        entry(*d, src.files[*i], m.flags.clone(), m.internal_date, m.size)
                    })
                    .collect();
                tx.records.push(Record::Append { mailbox: to, modseq, messages: entries });
            }
            Ok(CopyResult { uidvalidity: dst.uidvalidity, pairs })
        })
    }

    pub(crate) fn copy(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyResult, StoreError> {
        self.copy_or_move(from, uids, to, false)
    }

    pub(crate) fn move_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyResult, StoreError> {
        self.copy_or_move(from, uids, to, true)
    }

    pub(crate) fn expunge(&self, mailbox: MailboxId, uids: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        self.commit(|st, tx| {
            let mb = st.mailboxes.get(&mailbox).ok_or(StoreError::NoSuchMailbox)?;
            let mut within: Option<Vec<u32>> = uids.map(|u| u.to_vec());
            if let Some(w) = within.as_mut() {
                w.sort_unstable();
                w.dedup();
            }
            let gone: Vec<u32> = mb
                .messages
                .iter()
                .filter(|m| flags::has(&m.flags, flags::DELETED))
                .filter(|m| within.as_ref().is_none_or(|w| w.binary_search(&m.uid).is_ok()))
                .map(|m| m.uid)
                .collect();
            if !gone.is_empty() {
                let modseq = tx.modseq();
                tx.records.push(Record::DelayedExpunge { mailbox, modseq, at: now_unix(), uids: gone.clone() });
            }
            Ok(gone)
        })
    }

    // ---- delayed expunge, undelete, purge, QRESYNC ----

    pub(crate) fn usage_detail(&self) -> UsageDetail {
        self.read(|st| UsageDetail {
            live_bytes: st.usage.bytes,
            live_messages: st.usage.messages,
            retained_bytes: st.retained_usage.bytes,
            retained_messages: st.retained_usage.messages,
        })
    }

    fn retention(&self) -> i64 {
        i64::try_from(self.shared.retention_secs.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX)
    }

    pub(crate) fn list_retained(&self, filter: &RetainedFilter) -> Vec<RetainedMessage> {
        let retention = self.retention();
        self.read(|st| {
            let mut out: Vec<RetainedMessage> = matching_retained(st, filter)
                .into_iter()
                .map(|((mailbox, uid), r)| RetainedMessage {
                    mailbox,
                    mailbox_name: r.name.clone(),
                    uid,
                    expunged_at: r.at,
                    expunged_modseq: r.modseq,
                    expires_at: r.at.saturating_add(retention),
                    reason: match r.reason {
                        RetainReason::MailboxDeleted => RetainedReason::MailboxDeleted,
                        RetainReason::Expunged | RetainReason::Moved => RetainedReason::Expunged,
                    },
                    flags: r.flags.clone(),
                    internal_date: r.internal_date,
                    size: r.size,
                })
                .collect();
            out.sort_by_key(|m| (m.expunged_at, m.mailbox, m.uid));
            out
        })
    }

    pub(crate) fn read_retained_header(&self, mailbox: MailboxId, uid: u32, limit: usize) -> Result<Vec<u8>, StoreError> {
        let file = self.read(|st| st.retained.get(&(mailbox, uid)).map(|r| r.file));
        let file = file.ok_or(StoreError::NoSuchMessage)?;
        blob::read_head(&blob::path_in(&self.msgs, file), limit)
    }

    pub(crate) fn undelete(&self, filter: &RetainedFilter) -> Result<Vec<Restored>, StoreError> {
        self.commit(|st, tx| {
            // Key order: by original mailbox, then original UID.
            let chosen = matching_retained(st, filter);
            if chosen.is_empty() {
                return Ok(Vec::new());
            }
            // Where each original mailbox's messages go, and each destination's name,
            // UIDVALIDITY and next UID (several originals can share one destination).
            let mut dest_of: HashMap<MailboxId, MailboxId> = HashMap::new();
            let mut dests: HashMap<MailboxId, (String, u32, u32)> = HashMap::new();
            let mut entries = Vec::with_capacity(chosen.len());
            let mut out = Vec::with_capacity(chosen.len());
            for ((from, from_uid), r) in chosen {
                let dest = match dest_of.get(&from) {
                    Some(d) => *d,
                    None => {
                        let existing = st
                            .mailboxes
                            .get(&from)
                            .or_else(|| st.id_by_name(&r.name).and_then(|id| st.mailboxes.get(&id)));
                        let (id, info) = match existing {
                            Some(mb) => (mb.id, (mb.name.clone(), mb.uidvalidity, mb.uidnext)),
                            None => match tx.created(&r.name) {
                                Some((id, uv)) => (id, (r.name.clone(), uv, 1)),
                                None => {
                                    let id = tx.create_with_parents(st, &r.name, None, false);
                                    (id, (r.name.clone(), tx.last_uidvalidity, 1))
                                }
                            },
                        };
                        dests.entry(id).or_insert(info);
                        dest_of.insert(from, id);
                        id
                    }
                };
                let Some((dname, uv, next)) = dests.get_mut(&dest) else { continue };
                let uid = *next;
                *next = next.checked_add(1).ok_or_else(uid_space)?;
                let mut fl = r.flags.clone();
                fl.retain(|f| f != flags::DELETED);
                entries.push(RestoreEntry { from, from_uid, to: dest, to_uid: uid, flags: fl });
                out.push(Restored {
                    mailbox: dname.clone(),
                    mailbox_id: dest,
                    uidvalidity: *uv,
                    uid,
                    original_mailbox: from,
                    original_uid: from_uid,
                });
            }
            let modseq = tx.modseq();
            tx.records.push(Record::Restore { modseq, entries });
            Ok(out)
        })
    }

    pub(crate) fn purge_expired(&self, now: i64) -> Result<PurgeReport, StoreError> {
        let cutoff = now.saturating_sub(self.retention());
        self.commit(|st, tx| {
            let mut report = PurgeReport { users: 1, ..PurgeReport::default() };
            let mut released: HashMap<FileId, u32> = HashMap::new();
            for r in st.retained.values().filter(|r| r.at <= cutoff) {
                if r.reason.restorable() {
                    report.messages += 1;
                    report.bytes += r.size;
                }
                *released.entry(r.file).or_insert(0) += 1;
            }
            if released.is_empty() {
                return Ok(report);
            }
            report.files_removed =
                released.iter().filter(|(f, n)| st.refs.get(f).copied().unwrap_or(0) <= **n).count() as u64;
            tx.records.push(Record::Purge { cutoff });
            Ok(report)
        })
    }

    pub(crate) fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>, StoreError> {
        self.read(|st| {
            if !st.mailboxes.contains_key(&mailbox) {
                return Err(StoreError::NoSuchMailbox);
            }
            Ok(st
                .retained
                .range((mailbox, 0)..=(mailbox, u32::MAX))
                .filter(|(_, r)| r.modseq > modseq)
                .map(|((_, uid), _)| *uid)
                .collect())
        })
    }

    pub(crate) fn expunge_horizon(&self, mailbox: MailboxId) -> Result<u64, StoreError> {
        self.read(|st| st.mailboxes.get(&mailbox).map(|mb| mb.vanished_floor).ok_or(StoreError::NoSuchMailbox))
    }

    /// Writes a checkpoint if anything changed since the last one (clean close).
    pub(crate) fn close(&self) {
        if self.is_poisoned() {
            return;
        }
        let dirty = {
            let core = self.core.lock();
            core.state.seq > core.checkpoint_seq
        };
        if dirty && let Err(e) = self.checkpoint() {
            tracing::warn!(user = %self.id, error = %e, "checkpoint at close failed; the log covers every change");
        }
    }
}

impl Drop for UserInner {
    fn drop(&mut self) {
        self.close();
    }
}

fn uid_space() -> StoreError {
    StoreError::Io(std::io::Error::other("UID space of the mailbox exhausted"))
}

/// The restorable retained entries matching `filter`, in key order (mailbox id, UID).
fn matching_retained<'a>(st: &'a State, filter: &RetainedFilter) -> Vec<((MailboxId, u32), &'a Retained)> {
    let wanted = match filter.mailbox.as_deref() {
        Some(n) => match name::canonical(n) {
            Some(c) => Some(c),
            None => return Vec::new(), // no mailbox ever had an invalid name
        },
        None => None,
    };
    st.retained
        .iter()
        .filter(|(_, r)| r.reason.restorable())
        .filter(|(_, r)| filter.since.is_none_or(|s| r.at >= s))
        .filter(|(_, r)| filter.until.is_none_or(|u| r.at < u))
        .filter(|((mb, _), r)| match &wanted {
            None => true,
            Some(w) => r.name == *w || st.mailboxes.get(mb).is_some_and(|m| m.name == *w),
        })
        .map(|(k, r)| (*k, r))
        .collect()
}

fn has_children(st: &State, parent: &str) -> bool {
    let prefix = format!("{parent}/");
    st.names.range(prefix.clone()..).next().is_some_and(|(n, _)| n.starts_with(&prefix))
}

/// A copy of what a checkpoint needs (message lists are shared `Arc`s: cheap).
fn snapshot_of(st: &State) -> State {
    State {
        seq: st.seq,
        modseq: st.modseq,
        next_mailbox_id: st.next_mailbox_id,
        last_uidvalidity: st.last_uidvalidity,
        mailboxes: st.mailboxes.clone(),
        names: Default::default(),
        subscriptions: st.subscriptions.clone(),
        refs: Default::default(),
        usage: st.usage,
        retained: st.retained.clone(),
        retained_usage: st.retained_usage,
    }
}

/// Replays the log after `checkpoint_seq` into `state`, repairing a torn tail of the newest
/// segment, and returns a writer positioned after the last good record.
fn replay(logs: &Path, state: &mut State, checkpoint_seq: u64, user: &UserId) -> Result<LogWriter, StoreError> {
    let segments = log::list_segments(logs)?;
    let mut writer: Option<LogWriter> = None;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        if segments.get(i + 1).is_some_and(|next| next.first_seq <= checkpoint_seq.saturating_add(1)) {
            continue;
        }
        if seg.first_seq > state.seq.saturating_add(1) {
            return Err(StoreError::Corrupt(format!(
                "change log gap: records {}..{} missing for user {user}",
                state.seq + 1,
                seg.first_seq
            )));
        }
        let end = log::scan(seg, |seq, payload| {
            if seq > state.seq {
                let rec = Record::decode(payload)?;
                state.apply(seq, &rec);
            }
            Ok(())
        })?;
        if let Some(damage) = end.damage {
            if !is_last {
                return Err(StoreError::Corrupt(format!("change log segment damaged for user {user}: {damage}")));
            }
            tracing::warn!(user = %user, damage = %damage, kept = end.good_len, "truncating a torn change-log tail");
            if end.good_len == 0 {
                writer = Some(LogWriter::create(logs, seg.first_seq)?);
                continue;
            }
            log::truncate(&seg.path, end.good_len)?;
        }
        if is_last && end.last_seq == state.seq {
            writer = Some(LogWriter::open(logs, seg.first_seq, end.good_len)?);
        }
    }
    match writer {
        Some(w) if w.is_empty() && w.first_seq() != state.seq + 1 => LogWriter::create(logs, state.seq + 1),
        Some(w) => Ok(w),
        None => LogWriter::create(logs, state.seq + 1),
    }
}

/// Deletes segments wholly covered by the checkpoint at `seq`, keeping the newest
/// [`RETAINED_SEGMENTS`] of them for replication catch-up.
fn prune_segments(logs: &Path, seq: u64) -> Result<(), StoreError> {
    let segments = log::list_segments(logs)?;
    let covered: Vec<&log::Segment> = segments
        .iter()
        .enumerate()
        .filter(|(i, _)| segments.get(i + 1).is_some_and(|n| n.first_seq <= seq.saturating_add(1)))
        .map(|(_, s)| s)
        .collect();
    let drop_count = covered.len().saturating_sub(RETAINED_SEGMENTS);
    for s in covered.into_iter().take(drop_count) {
        std::fs::remove_file(&s.path)?;
    }
    Ok(())
}

/// Removes message files no message references (written, never acknowledged) and temp files.
fn remove_orphans(msgs: &Path, state: &State, user: &UserId) -> Result<(), StoreError> {
    let (ids, tmp) = blob::list(msgs)?;
    if state.seq == 0 && !ids.is_empty() {
        // A user with no change at all cannot own message files (its mailboxes are created
        // before anything is delivered): the log or checkpoint is missing, and deleting the
        // files as orphans would destroy the mail. Refuse instead.
        return Err(StoreError::Corrupt(format!("user {user} has message files but no change log")));
    }
    let mut removed = 0usize;
    for id in ids {
        if !state.refs.contains_key(&id) {
            std::fs::remove_file(blob::path_in(msgs, id))?;
            removed += 1;
        }
    }
    for t in tmp {
        std::fs::remove_file(t)?;
        removed += 1;
    }
    if removed > 0 {
        tracing::info!(user = %user, removed, "removed unreferenced message files");
    }
    Ok(())
}

/// Whether a commit is checked against the user's quota and followed by a warning check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quota {
    /// Every ordinary operation (operations that add no live mail never reserve any).
    Enforce,
    /// The quota warning itself: never refused, never triggers another warning.
    Exempt,
}
