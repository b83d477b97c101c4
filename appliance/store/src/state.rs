//! One user's store state in memory, and how a change-log record changes it.
//!
//! What it is: mailboxes (with their sorted message lists), names, subscriptions, file
//! reference counts and usage totals; [`State::apply`] folds one record in.
//! What it is not: validation of requests (`user` builds records only from valid requests) nor
//! persistence (`checkpoint`, `log`).
//!
//! Invariants:
//! - `apply` is deterministic and total: given the same state and record it always produces the
//!   same state, it never fails or panics, and a record whose seq is not above `seq` is ignored
//!   (idempotent replay). Records that do not fit the state (a mailbox that is gone, a UID below
//!   UIDNEXT) are skipped piecewise rather than half-applied.
//! - Each mailbox's `messages` is sorted by UID, unique, and `files` is parallel to it.
//! - `uidnext` exceeds every UID ever used in the mailbox; `highest_modseq` and the user-wide
//!   `modseq` only grow; `last_uidvalidity` only grows.
//! - `refs[f]` is the number of messages (in all mailboxes) whose content is file `f`; a file
//!   whose count reaches zero is returned by `apply` for deletion once the change is durable.
//! - `unseen`, `size_bytes` and `usage` equal what recounting the messages would give.
//! - Delayed expunge (format 2): an expunged message leaves its mailbox for `retained`, keyed
//!   by (original mailbox id, original UID) — unique, since a mailbox never reuses a UID and
//!   ids are never reused. A retained entry holds a reference to its file like a live message,
//!   so `refs[f]` counts live messages plus retained entries; a file is released only by a
//!   Purge (or by the format-1 records, which drop at once). `retained_usage` counts the
//!   restorable entries (reason other than `Moved`).
//! - `vanished_floor` of a mailbox: every UID expunged from it with a modseq above the floor
//!   is still in `retained` (so VANISHED (EARLIER) for a client at modseq >= floor is exact).
//!   It only grows: raised by Purge and Restore (to the modseq of each entry they take away)
//!   and by the format-1 records that drop messages without retaining them.

use crate::blob::FileId;
use crate::record::{AppendEntry, Record, RestoreEntry};
use crate::{
    Flag, InternalDate, MailboxId, MailboxInfo, MailboxView, MessageMeta, SpecialUse, Usage, flags, name,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct MailboxState {
    pub id: MailboxId,
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub special_use: Option<SpecialUse>,
    pub messages: Arc<Vec<MessageMeta>>,
    pub files: Vec<FileId>,
    pub unseen: u32,
    pub size_bytes: u64,
    /// Lowest client modseq for which the retained entries list every UID expunged since.
    pub vanished_floor: u64,
}

/// Why a message is retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetainReason {
    /// EXPUNGE (IMAP, or POP3 DELE at QUIT): restorable.
    Expunged,
    /// Its mailbox was deleted: restorable (into a recreated mailbox).
    MailboxDeleted,
    /// MOVE's source: the content lives on in the destination. Kept only so VANISHED can
    /// report the source UID; not restorable (that would duplicate the message).
    Moved,
}

impl RetainReason {
    pub(crate) fn code(self) -> u8 {
        match self {
            RetainReason::Expunged => 1,
            RetainReason::MailboxDeleted => 2,
            RetainReason::Moved => 3,
        }
    }
    pub(crate) fn from_code(c: u8) -> Option<RetainReason> {
        match c {
            1 => Some(RetainReason::Expunged),
            2 => Some(RetainReason::MailboxDeleted),
            3 => Some(RetainReason::Moved),
            _ => None,
        }
    }
    pub(crate) fn restorable(self) -> bool {
        self != RetainReason::Moved
    }
}

/// An expunged message kept for the retention period. Its key in [`State::retained`] is
/// (original mailbox id, original UID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retained {
    /// The mailbox's name when the message was expunged.
    pub name: String,
    /// The modseq of the expunge (what VANISHED (EARLIER) compares against).
    pub modseq: u64,
    /// When it was expunged, Unix seconds.
    pub at: i64,
    pub reason: RetainReason,
    pub flags: Vec<Flag>,
    pub internal_date: InternalDate,
    pub size: u64,
    pub file: FileId,
}

impl MailboxState {
    pub(crate) fn new(
        id: MailboxId,
        name: String,
        uidvalidity: u32,
        special_use: Option<SpecialUse>,
        modseq: u64,
    ) -> MailboxState {
        MailboxState {
            id,
            name,
            uidvalidity,
            uidnext: 1,
            highest_modseq: modseq,
            special_use,
            messages: Arc::new(Vec::new()),
            files: Vec::new(),
            unseen: 0,
            size_bytes: 0,
            vanished_floor: 0,
        }
    }

    pub(crate) fn index_of(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Inserts a message keeping UID order (appends are always at the end in practice).
    fn insert(&mut self, meta: MessageMeta, file: FileId) -> bool {
        let msgs = Arc::make_mut(&mut self.messages);
        let pos = match msgs.last() {
            Some(last) if last.uid >= meta.uid => match msgs.binary_search_by_key(&meta.uid, |m| m.uid) {
                Ok(_) => return false,
                Err(p) => p,
            },
            _ => msgs.len(),
        };
        if !flags::has(&meta.flags, flags::SEEN) {
            self.unseen += 1;
        }
        self.size_bytes += meta.size;
        self.uidnext = self.uidnext.max(meta.uid.saturating_add(1));
        msgs.insert(pos, meta);
        self.files.insert(pos, file);
        true
    }

    /// Removes the messages with these UIDs; returns (meta, file) of each removed, in UID order.
    fn remove(&mut self, uids: &[u32]) -> Vec<(MessageMeta, FileId)> {
        let mut wanted: Vec<u32> = uids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() || self.messages.is_empty() {
            return Vec::new();
        }
        let mut removed = Vec::new();
        let old_msgs = std::mem::take(Arc::make_mut(&mut self.messages));
        let old_files = std::mem::take(&mut self.files);
        let mut keep_msgs = Vec::with_capacity(old_msgs.len());
        let mut keep_files = Vec::with_capacity(old_files.len());
        for (m, f) in old_msgs.into_iter().zip(old_files) {
            if wanted.binary_search(&m.uid).is_ok() {
                if !flags::has(&m.flags, flags::SEEN) {
                    self.unseen = self.unseen.saturating_sub(1);
                }
                self.size_bytes = self.size_bytes.saturating_sub(m.size);
                removed.push((m, f));
            } else {
                keep_msgs.push(m);
                keep_files.push(f);
            }
        }
        *Arc::make_mut(&mut self.messages) = keep_msgs;
        self.files = keep_files;
        removed
    }

    pub(crate) fn view(&self) -> MailboxView {
        MailboxView {
            id: self.id,
            name: self.name.clone(),
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highest_modseq: self.highest_modseq,
            messages: Arc::clone(&self.messages),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    /// The last record applied.
    pub seq: u64,
    /// Highest modseq handed out (user-wide counter).
    pub modseq: u64,
    pub next_mailbox_id: u64,
    pub last_uidvalidity: u32,
    pub mailboxes: BTreeMap<MailboxId, MailboxState>,
    pub names: BTreeMap<String, MailboxId>,
    pub subscriptions: BTreeSet<String>,
    pub refs: HashMap<FileId, u32>,
    pub usage: Usage,
    /// Expunged messages kept for the retention period, by (original mailbox, original UID).
    pub retained: BTreeMap<(MailboxId, u32), Retained>,
    /// Totals of the restorable retained entries.
    pub retained_usage: Usage,
}

impl State {
    pub(crate) fn new() -> State {
        State { next_mailbox_id: 1, ..State::default() }
    }

    pub(crate) fn id_by_name(&self, canonical: &str) -> Option<MailboxId> {
        self.names.get(canonical).copied()
    }

    pub(crate) fn info(&self, mb: &MailboxState) -> MailboxInfo {
        MailboxInfo {
            id: mb.id,
            name: mb.name.clone(),
            uidvalidity: mb.uidvalidity,
            uidnext: mb.uidnext,
            highest_modseq: mb.highest_modseq,
            messages: u32::try_from(mb.messages.len()).unwrap_or(u32::MAX),
            unseen: mb.unseen,
            size_bytes: mb.size_bytes,
            special_use: mb.special_use,
            subscribed: self.subscriptions.contains(&mb.name),
        }
    }

    /// INBOX first, then by name.
    pub(crate) fn list(&self) -> Vec<MailboxInfo> {
        let mut out = Vec::with_capacity(self.mailboxes.len());
        if let Some(mb) = self.id_by_name(name::INBOX).and_then(|id| self.mailboxes.get(&id)) {
            out.push(self.info(mb));
        }
        for (n, id) in &self.names {
            if n == name::INBOX {
                continue;
            }
            if let Some(mb) = self.mailboxes.get(id) {
                out.push(self.info(mb));
            }
        }
        out
    }

    fn add_ref(&mut self, f: FileId) {
        *self.refs.entry(f).or_insert(0) += 1;
    }

    fn drop_ref(&mut self, f: FileId, dead: &mut Vec<FileId>) {
        if let Some(n) = self.refs.get_mut(&f) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.refs.remove(&f);
                dead.push(f);
            }
        }
    }

    fn add_usage(&mut self, size: u64) {
        self.usage.bytes += size;
        self.usage.messages += 1;
    }

    fn sub_usage(&mut self, size: u64) {
        self.usage.bytes = self.usage.bytes.saturating_sub(size);
        self.usage.messages = self.usage.messages.saturating_sub(1);
    }

    fn add_retained_usage(&mut self, r: &Retained) {
        if r.reason.restorable() {
            self.retained_usage.bytes += r.size;
            self.retained_usage.messages += 1;
        }
    }

    fn sub_retained_usage(&mut self, r: &Retained) {
        if r.reason.restorable() {
            self.retained_usage.bytes = self.retained_usage.bytes.saturating_sub(r.size);
            self.retained_usage.messages = self.retained_usage.messages.saturating_sub(1);
        }
    }

    /// Keeps a message that left mailbox `mailbox` (named `name`) as a retained entry. The
    /// caller decides the file reference: an expunged message hands its reference over.
    #[allow(clippy::too_many_arguments)] // private helper; the fields of one retained entry
    fn retain(
        &mut self,
        mailbox: MailboxId,
        name: &str,
        meta: MessageMeta,
        file: FileId,
        modseq: u64,
        at: i64,
        reason: RetainReason,
        dead: &mut Vec<FileId>,
    ) {
        let r = Retained {
            name: name.to_string(),
            modseq,
            at,
            reason,
            flags: meta.flags,
            internal_date: meta.internal_date,
            size: meta.size,
            file,
        };
        self.add_retained_usage(&r);
        if let Some(old) = self.retained.insert((mailbox, meta.uid), r) {
            // Unreachable from records this store writes (a UID is expunged once); keep the
            // counts right anyway.
            self.sub_retained_usage(&old);
            self.drop_ref(old.file, dead);
        }
    }

    fn raise_floor(&mut self, mailbox: MailboxId, modseq: u64) {
        if let Some(mb) = self.mailboxes.get_mut(&mailbox) {
            mb.vanished_floor = mb.vanished_floor.max(modseq);
        }
    }

    fn bump(&mut self, modseq: u64) {
        self.modseq = self.modseq.max(modseq);
    }

    /// Applies record `seq`. Returns the files no message references any more.
    pub(crate) fn apply(&mut self, seq: u64, rec: &Record) -> Vec<FileId> {
        let mut dead = Vec::new();
        if seq <= self.seq {
            return dead;
        }
        self.seq = seq;
        match rec {
            Record::MailboxCreate { id, name, uidvalidity, special_use, modseq } => {
                self.bump(*modseq);
                self.last_uidvalidity = self.last_uidvalidity.max(*uidvalidity);
                self.next_mailbox_id = self.next_mailbox_id.max(id.0.saturating_add(1));
                if self.mailboxes.contains_key(id) || self.names.contains_key(name) {
                    return dead;
                }
                self.mailboxes
                    .insert(*id, MailboxState::new(*id, name.clone(), *uidvalidity, *special_use, *modseq));
                self.names.insert(name.clone(), *id);
            }
            Record::MailboxRename { renames, modseq } => {
                self.bump(*modseq);
                let mut moved: Vec<(MailboxId, &String, bool)> = Vec::new();
                for (id, new_name) in renames {
                    if let Some(mb) = self.mailboxes.get(id) {
                        let old = mb.name.clone();
                        self.names.remove(&old);
                        let was_subscribed = self.subscriptions.remove(&old);
                        moved.push((*id, new_name, was_subscribed));
                    }
                }
                for (id, new_name, sub) in moved {
                    if let Some(mb) = self.mailboxes.get_mut(&id) {
                        mb.name = new_name.clone();
                        mb.highest_modseq = mb.highest_modseq.max(*modseq);
                    }
                    self.names.insert(new_name.clone(), id);
                    if sub {
                        self.subscriptions.insert(new_name.clone());
                    }
                }
            }
            Record::MailboxDelete { id, modseq } => {
                self.bump(*modseq);
                if let Some(mb) = self.mailboxes.remove(id) {
                    self.names.remove(&mb.name);
                    for (m, f) in mb.messages.iter().zip(mb.files.iter()) {
                        self.sub_usage(m.size);
                        self.drop_ref(*f, &mut dead);
                    }
                }
            }
            Record::Subscribe { name } => {
                self.subscriptions.insert(name.clone());
            }
            Record::Unsubscribe { name } => {
                self.subscriptions.remove(name);
            }
            Record::Append { mailbox, modseq, messages } => {
                self.bump(*modseq);
                self.append(*mailbox, *modseq, messages);
            }
            Record::Flags { mailbox, modseq, changes } => {
                self.bump(*modseq);
                let Some(mb) = self.mailboxes.get_mut(mailbox) else { return dead };
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                let mut unseen = i64::from(mb.unseen);
                let msgs = Arc::make_mut(&mut mb.messages);
                for (uid, new_flags) in changes {
                    let Ok(i) = msgs.binary_search_by_key(uid, |m| m.uid) else { continue };
                    let m = &mut msgs[i];
                    let was_seen = flags::has(&m.flags, flags::SEEN);
                    let now_seen = flags::has(new_flags, flags::SEEN);
                    unseen += i64::from(was_seen) - i64::from(now_seen);
                    m.flags = new_flags.clone();
                    m.modseq = *modseq;
                }
                mb.unseen = u32::try_from(unseen.max(0)).unwrap_or(u32::MAX);
            }
            Record::Expunge { mailbox, modseq, uids } => {
                self.bump(*modseq);
                let Some(mb) = self.mailboxes.get_mut(mailbox) else { return dead };
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                // Format 1: dropped, not retained, so VANISHED cannot be answered below here.
                mb.vanished_floor = mb.vanished_floor.max(*modseq);
                let removed = mb.remove(uids);
                for (m, f) in removed {
                    self.sub_usage(m.size);
                    self.drop_ref(f, &mut dead);
                }
            }
            Record::Move { from, to, modseq, pairs } => {
                self.bump(*modseq);
                if !self.mailboxes.contains_key(to) {
                    return dead;
                }
                let Some(src) = self.mailboxes.get_mut(from) else { return dead };
                src.highest_modseq = src.highest_modseq.max(*modseq);
                src.vanished_floor = src.vanished_floor.max(*modseq);
                let srcs: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                let removed = src.remove(&srcs);
                let mut by_uid: HashMap<u32, (MessageMeta, FileId)> =
                    removed.into_iter().map(|(m, f)| (m.uid, (m, f))).collect();
                let Some(dst) = self.mailboxes.get_mut(to) else { return dead };
                dst.highest_modseq = dst.highest_modseq.max(*modseq);
                let mut lost = Vec::new();
                for (s, d) in pairs {
                    let Some((mut meta, f)) = by_uid.remove(s) else { continue };
                    meta.uid = *d;
                    meta.modseq = *modseq;
                    let size = meta.size;
                    if *d == 0 || *d < dst.uidnext || !dst.insert(meta, f) {
                        // The destination UID is already used: the message cannot land. Never
                        // reached from records this store wrote; keeps the state consistent.
                        lost.push((f, size));
                    }
                }
                for (f, size) in lost {
                    self.sub_usage(size);
                    self.drop_ref(f, &mut dead);
                }
            }
            Record::RenameInbox { inbox, new, name, uidvalidity, modseq } => {
                self.bump(*modseq);
                self.last_uidvalidity = self.last_uidvalidity.max(*uidvalidity);
                self.next_mailbox_id = self.next_mailbox_id.max(new.0.saturating_add(1));
                if self.mailboxes.contains_key(new) || self.names.contains_key(name) {
                    return dead;
                }
                let Some(ib) = self.mailboxes.get_mut(inbox) else { return dead };
                let mut nb = MailboxState::new(*new, name.clone(), *uidvalidity, None, *modseq);
                nb.uidnext = ib.uidnext;
                let mut msgs = std::mem::take(Arc::make_mut(&mut ib.messages));
                for m in &mut msgs {
                    m.modseq = *modseq;
                }
                nb.messages = Arc::new(msgs);
                nb.files = std::mem::take(&mut ib.files);
                nb.unseen = std::mem::take(&mut ib.unseen);
                nb.size_bytes = std::mem::take(&mut ib.size_bytes);
                ib.highest_modseq = ib.highest_modseq.max(*modseq);
                // Every INBOX UID vanished from INBOX (same UIDVALIDITY) without a retained entry.
                ib.vanished_floor = ib.vanished_floor.max(*modseq);
                self.names.insert(name.clone(), *new);
                self.mailboxes.insert(*new, nb);
            }
            Record::DelayedExpunge { mailbox, modseq, at, uids } => {
                self.bump(*modseq);
                let Some(mb) = self.mailboxes.get_mut(mailbox) else { return dead };
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                let name = mb.name.clone();
                for (m, f) in mb.remove(uids) {
                    self.sub_usage(m.size);
                    self.retain(*mailbox, &name, m, f, *modseq, *at, RetainReason::Expunged, &mut dead);
                }
            }
            Record::DelayedMove { from, to, modseq, at, pairs } => {
                self.bump(*modseq);
                if !self.mailboxes.contains_key(to) {
                    return dead;
                }
                let Some(src) = self.mailboxes.get_mut(from) else { return dead };
                src.highest_modseq = src.highest_modseq.max(*modseq);
                let src_name = src.name.clone();
                let srcs: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                let mut by_uid: HashMap<u32, (MessageMeta, FileId)> =
                    src.remove(&srcs).into_iter().map(|(m, f)| (m.uid, (m, f))).collect();
                let mut landed = Vec::new();
                let mut lost = Vec::new();
                if let Some(dst) = self.mailboxes.get_mut(to) {
                    dst.highest_modseq = dst.highest_modseq.max(*modseq);
                    for (s, d) in pairs {
                        let Some((meta, f)) = by_uid.remove(s) else { continue };
                        let mut moved = meta.clone();
                        moved.uid = *d;
                        moved.modseq = *modseq;
                        if *d != 0 && *d >= dst.uidnext && dst.insert(moved, f) {
                            landed.push((meta, f));
                        } else {
                            // Cannot land (never from records this store writes): keep it
                            // restorable rather than lose it.
                            lost.push((meta, f));
                        }
                    }
                }
                for (meta, f) in landed {
                    // The destination keeps the source's reference; the tombstone takes another.
                    self.add_ref(f);
                    self.retain(*from, &src_name, meta, f, *modseq, *at, RetainReason::Moved, &mut dead);
                }
                for (meta, f) in lost {
                    self.sub_usage(meta.size);
                    self.retain(*from, &src_name, meta, f, *modseq, *at, RetainReason::Expunged, &mut dead);
                }
            }
            Record::DelayedMailboxDelete { id, modseq, at } => {
                self.bump(*modseq);
                if let Some(mb) = self.mailboxes.remove(id) {
                    self.names.remove(&mb.name);
                    let msgs = Arc::unwrap_or_clone(mb.messages);
                    for (m, f) in msgs.into_iter().zip(mb.files) {
                        self.sub_usage(m.size);
                        self.retain(*id, &mb.name, m, f, *modseq, *at, RetainReason::MailboxDeleted, &mut dead);
                    }
                }
            }
            Record::Restore { modseq, entries } => {
                self.bump(*modseq);
                self.restore(*modseq, entries);
            }
            Record::Purge { cutoff } => {
                let expired: Vec<(MailboxId, u32)> =
                    self.retained.iter().filter(|(_, r)| r.at <= *cutoff).map(|(k, _)| *k).collect();
                for key in expired {
                    if let Some(r) = self.retained.remove(&key) {
                        self.sub_retained_usage(&r);
                        self.raise_floor(key.0, r.modseq);
                        self.drop_ref(r.file, &mut dead);
                    }
                }
            }
        }
        dead
    }

    /// Applies a Restore: each named retained entry becomes a message of its destination
    /// (which must exist, with the UID at or above its UIDNEXT); an entry that cannot land stays
    /// retained. The file reference passes from the entry to the message.
    fn restore(&mut self, modseq: u64, entries: &[RestoreEntry]) {
        for e in entries {
            let key = (e.from, e.from_uid);
            let Some(r) = self.retained.get(&key) else { continue };
            let Some(dst) = self.mailboxes.get_mut(&e.to) else { continue };
            if e.to_uid == 0 || e.to_uid < dst.uidnext {
                continue;
            }
            let meta = MessageMeta {
                uid: e.to_uid,
                modseq,
                flags: e.flags.clone(),
                internal_date: r.internal_date,
                size: r.size,
            };
            let (file, size) = (r.file, r.size);
            if !dst.insert(meta, file) {
                continue;
            }
            dst.highest_modseq = dst.highest_modseq.max(modseq);
            if let Some(r) = self.retained.remove(&key) {
                self.sub_retained_usage(&r);
                // The old UID is no longer listed as expunged: VANISHED below here is unknown.
                self.raise_floor(e.from, r.modseq);
            }
            self.add_usage(size);
        }
    }

    fn append(&mut self, mailbox: MailboxId, modseq: u64, entries: &[AppendEntry]) {
        let Some(mb) = self.mailboxes.get_mut(&mailbox) else { return };
        mb.highest_modseq = mb.highest_modseq.max(modseq);
        let mut added = Vec::new();
        for e in entries {
            if e.uid == 0 || e.uid < mb.uidnext {
                continue;
            }
            let meta = MessageMeta {
                uid: e.uid,
                modseq,
                flags: e.flags.clone(),
                internal_date: e.internal_date,
                size: e.size,
            };
            if mb.insert(meta, e.file) {
                added.push((e.file, e.size));
            }
        }
        for (f, size) in added {
            self.add_ref(f);
            self.add_usage(size);
        }
    }

    /// Rebuilds the derived fields (refs, usage, unseen, sizes, uidnext floor) from the
    /// messages: used after loading a checkpoint, so derived data is never trusted from disk.
    pub(crate) fn rebuild_derived(&mut self) {
        self.refs.clear();
        self.usage = Usage::default();
        let mut refs: HashMap<FileId, u32> = HashMap::new();
        for mb in self.mailboxes.values_mut() {
            mb.unseen = 0;
            mb.size_bytes = 0;
            for (m, f) in mb.messages.iter().zip(mb.files.iter()) {
                if !flags::has(&m.flags, flags::SEEN) {
                    mb.unseen += 1;
                }
                mb.size_bytes += m.size;
                self.usage.bytes += m.size;
                self.usage.messages += 1;
                *refs.entry(*f).or_insert(0) += 1;
                mb.uidnext = mb.uidnext.max(m.uid.saturating_add(1));
                mb.highest_modseq = mb.highest_modseq.max(m.modseq);
            }
            self.modseq = self.modseq.max(mb.highest_modseq);
            self.last_uidvalidity = self.last_uidvalidity.max(mb.uidvalidity);
            self.next_mailbox_id = self.next_mailbox_id.max(mb.id.0.saturating_add(1));
        }
        let mut retained_usage = Usage::default();
        for ((mailbox, _), r) in &self.retained {
            *refs.entry(r.file).or_insert(0) += 1;
            if r.reason.restorable() {
                retained_usage.bytes += r.size;
                retained_usage.messages += 1;
            }
            self.modseq = self.modseq.max(r.modseq);
            self.next_mailbox_id = self.next_mailbox_id.max(mailbox.0.saturating_add(1));
        }
        self.retained_usage = retained_usage;
        self.refs = refs;
        self.names = self.mailboxes.values().map(|m| (m.name.clone(), m.id)).collect();
    }
}

/// A UIDVALIDITY for a new mailbox: the current time, but always above every earlier one
/// (`last`), so a name deleted and recreated (even within one second, or after the clock
/// stepped back) never sees an old value again.
pub(crate) fn next_uidvalidity(last: u32, now_unix: i64) -> u32 {
    let now = u32::try_from(now_unix.max(1)).unwrap_or(u32::MAX);
    now.max(last.saturating_add(1)).max(1)
}

/// A message to add, as `user` prepares it for an Append record.
pub(crate) fn entry(uid: u32, file: FileId, flags: Vec<Flag>, internal_date: InternalDate, size: u64) -> AppendEntry {
    AppendEntry { uid, file, flags, internal_date, size }
}
