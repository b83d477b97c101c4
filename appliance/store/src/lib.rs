//! The Hermes mail store: the only code that writes mail.
//!
//! CONTRACT (signatures are fixed — the IMAP and LMTP services code against them; see
//! `docs/store-format.md` for the on-disk format, recovery, durability order and replication):
//!
//! - **Per-user isolation**: each account's mail lives under `store/users/<user-id>/`; nothing
//!   one user does touches another user's folder (a message delivered to many users is written
//!   once and hard-linked into each user's folder).
//! - **Durability**: every method that changes state returns only after the change is durable
//!   (message file fsync'd, its folder fsync'd, the change-log record fsync'd). Group commit is
//!   allowed; acknowledging before fsync is not.
//! - **Change log**: every change is one record in the user's ordered change log, numbered by a
//!   per-user sequence; replaying the log (from a checkpoint) rebuilds the state, and replaying a
//!   record twice is harmless, so replication can ship and replay it (issue 3 / replication).
//! - **IMAP numbers**: UIDVALIDITY, UIDNEXT and MODSEQ never go backwards, across restarts and crashes.
//! - **Single writer**: [`Store::open`] takes an exclusive lock on the store folder; a second
//!   opener gets [`StoreError::Locked`] (the CLI then talks to the running server instead).
//! - Methods are blocking (they fsync): async callers use `spawn_blocking`.
//! - Mailbox names are UTF-8 with `/` as the hierarchy delimiter; `INBOX` is case-insensitive.
//!   The IMAP layer converts modified UTF-7 for IMAP4rev1 clients.
//!
//! - **Delayed expunge**: EXPUNGE, MOVE's source side and mailbox DELETE keep the messages,
//!   invisible to every view, for [`StoreConfig::retention_secs`]; [`UserStore::list_retained`]
//!   and [`UserStore::undelete`] bring them back with new UIDs, [`Store::purge_expired`] drops
//!   them after the retention period. Restores and purges are change-log records like any other.
//! - **QRESYNC**: [`UserStore::expunged_since`] answers VANISHED (EARLIER) from the retained
//!   entries for any client modseq at or above [`UserStore::expunge_horizon`].
//!
//! - **Quota**: [`UserStore::set_quota`] gives a user's limits (kept in memory; callers set them
//!   from the directory account at login and at LMTP RCPT). APPEND, COPY and delivery check
//!   `live usage + new <= limit` under the user's lock, in the same critical section that
//!   assigns UIDs, so concurrent writers can never together pass the limit; over it they get
//!   [`StoreError::OverQuota`]. MOVE within a user and undelete are never refused.
//! - **Quota warnings**: when live usage crosses one of the warning levels (by default
//!   [`QUOTA_WARNING_PERCENTS`]; [`Store::set_quota_warning_percents`]) of the byte limit, or
//!   of the message limit when there is one, the store appends one warning (composed by [`Store::set_quota_warnings`]) to INBOX,
//!   exempt from the quota, and persists the level warned at (`users/<id>/quota-warned`);
//!   dropping below a level re-arms it. At least once: a crash between the warning and the
//!   level file can repeat a warning, never lose one.
//!
//! What it is not: an IMAP server (no sequence numbers, no \Recent, no SEARCH: those live in
//! the session layer above `MailboxView`), nor a quota *policy* (which limits apply comes from
//! the directory, through the caller).
//! [`Usage`] counts live mail only: retained (expunged) mail does not count toward a quota;
//! [`UserStore::usage_detail`] reports both.
//!
//! Code map: `store` (lock, user cache, multi-user delivery), `user` (open/recover, group
//! commit, checkpoints, operations, undelete/purge), `state` (in-memory state, retained
//! messages and record application),
//! `record` (change-log record schema), `log` (segments and framing), `checkpoint`, `blob`
//! (message files), `name` (mailbox names), `flags`, `codec` (bounded binary primitives).

use hermes_core::directory::UserId;
use std::path::Path;
use std::sync::Arc;

mod blob;
mod checkpoint;
mod codec;
mod flags;
mod log;
mod name;
mod quota;
mod record;
mod state;
mod store;
mod user;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_quota;
#[cfg(test)]
mod tests_retention;

pub use name::{MAX_DEPTH as MAX_MAILBOX_DEPTH, MAX_NAME_BYTES as MAX_MAILBOX_NAME_BYTES};
pub use quota::{QUOTA_WARNING_PERCENTS, QuotaLimits, QuotaWarning, QuotaWarningComposer};
pub use user::{CHECKPOINT_EVERY, NOTICE_CAPACITY};

/// The hierarchy delimiter of mailbox names.
pub const DELIMITER: char = '/';

/// The folders every new account starts with, beside INBOX (RFC 6154 special use).
pub const DEFAULT_MAILBOXES: [(&str, SpecialUse); 5] = [
    ("Drafts", SpecialUse::Drafts),
    ("Sent", SpecialUse::Sent),
    ("Trash", SpecialUse::Trash),
    ("Junk", SpecialUse::Junk),
    ("Archive", SpecialUse::Archive),
];

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Largest message accepted, in bytes (raw, before compression).
    pub max_message_bytes: u64,
    /// zstd level for message files: 3 is zstd's default, a good speed/ratio balance for mail.
    pub zstd_level: i32,
    /// How long expunged messages (and the messages of deleted mailboxes) are kept, hidden,
    /// before [`Store::purge_expired`] drops them. 0: the next purge drops everything expunged.
    pub retention_secs: u64,
}

pub use hermes_core::DEFAULT_MAX_MESSAGE_BYTES;

/// zstd's own default level: a good speed/ratio balance for mail.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Default retention of expunged mail: 7 days. Long enough that a user who deleted mail by
/// mistake on a Friday can ask the help desk the next week (the seed recovered a handful a
/// week); short enough that the extra disk use stays a small fraction of the live mail (a few
/// percent for typical expunge rates). Cyrus' `expunge_days` and Dovecot lazy_expunge setups
/// commonly use the same order of magnitude.
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 60 * 60;

impl StoreConfig {
    /// A config with these limits and the default retention ([`DEFAULT_RETENTION_SECS`]).
    pub fn new(max_message_bytes: u64, zstd_level: i32) -> StoreConfig {
        StoreConfig { max_message_bytes, zstd_level, retention_secs: DEFAULT_RETENTION_SECS }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::new(DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_ZSTD_LEVEL)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SpecialUse {
    Drafts,
    Sent,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    /// The RFC 6154 attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

/// A mailbox's permanent identity inside one user's store (never reused; survives RENAME).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct MailboxId(pub u64);

/// IMAP INTERNALDATE: when the message arrived, with the arrival time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InternalDate {
    /// Unix seconds (UTC).
    pub unix: i64,
    /// Zone offset east of UTC in minutes, for display.
    pub offset_minutes: i16,
}

/// A flag: a system flag (`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`) in that
/// canonical spelling, or a keyword atom. Flags in a message are kept sorted and unique.
pub type Flag = String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub id: MailboxId,
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub messages: u32,
    pub unseen: u32,
    /// Sum of the raw (uncompressed) sizes of its messages: STATUS SIZE.
    pub size_bytes: u64,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub modseq: u64,
    /// Sorted, unique.
    pub flags: Vec<Flag>,
    pub internal_date: InternalDate,
    /// Raw size in bytes (RFC822.SIZE).
    pub size: u64,
}

/// A consistent picture of one mailbox at one moment, sorted by UID. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MailboxView {
    pub id: MailboxId,
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub messages: Arc<Vec<MessageMeta>>,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub raw: Vec<u8>,
    pub flags: Vec<Flag>,
    /// `None`: now.
    pub internal_date: Option<InternalDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone, Default)]
pub struct FlagUpdate {
    /// Messages whose flags changed: (uid, new flags, new modseq).
    pub changed: Vec<(u32, Vec<Flag>, u64)>,
    /// UIDs not changed because their modseq exceeded UNCHANGEDSINCE (RFC 7162 MODIFIED).
    pub modified: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct CopyResult {
    /// UIDVALIDITY of the destination (COPYUID).
    pub uidvalidity: u32,
    /// (source uid, destination uid), in source UID order.
    pub pairs: Vec<(u32, u32)>,
}

/// Where a delivered message goes.
#[derive(Debug, Clone)]
pub struct DeliveryTarget {
    pub user: UserId,
    /// `INBOX` unless Sieve (issue 3) says otherwise; created if missing.
    pub mailbox: String,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub mailbox: MailboxId,
    pub uidvalidity: u32,
    pub uid: u32,
}

/// Something changed in a user's store; sessions re-read the views they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeNotice {
    /// Messages appended, expunged, or flags changed in this mailbox (modseq now this high).
    Mailbox { mailbox: MailboxId, modseq: u64 },
    /// Mailboxes created, deleted, renamed, or subscriptions changed.
    MailboxList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

/// Live and retained totals of one user (raw sizes). Only `live_*` count toward a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageDetail {
    /// What [`UserStore::usage`] reports: the messages in the user's mailboxes.
    pub live_bytes: u64,
    pub live_messages: u64,
    /// Restorable expunged messages (and those of deleted mailboxes) awaiting purge. MOVE's
    /// source entries are not counted: their content is the live message in the destination.
    pub retained_bytes: u64,
    pub retained_messages: u64,
}

/// Which retained messages an admin means. Every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetainedFilter {
    /// The mailbox the message was expunged from: matches the name it had then, or the
    /// current name of that mailbox if it still exists (`INBOX` case-insensitively).
    pub mailbox: Option<String>,
    /// Expunged at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Expunged before this time (Unix seconds).
    pub until: Option<i64>,
}

/// Why a message is retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RetainedReason {
    /// Expunged (IMAP EXPUNGE/CLOSE, POP3 DELE at QUIT).
    Expunged,
    /// Its mailbox was deleted.
    MailboxDeleted,
}

/// An expunged message that can still be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    /// The mailbox it was expunged from (it may no longer exist).
    pub mailbox: MailboxId,
    /// That mailbox's name when the message was expunged.
    pub mailbox_name: String,
    /// Its UID there (never reused; a restored message gets a new one).
    pub uid: u32,
    /// When it was expunged, Unix seconds.
    pub expunged_at: i64,
    /// The MODSEQ of the expunge.
    pub expunged_modseq: u64,
    /// When a purge may drop it: `expunged_at` + the configured retention.
    pub expires_at: i64,
    pub reason: RetainedReason,
    /// Its flags when expunged (a restore drops `\Deleted`).
    pub flags: Vec<Flag>,
    pub internal_date: InternalDate,
    /// Raw size in bytes.
    pub size: u64,
}

/// One message brought back by [`UserStore::undelete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The mailbox it is in now (its original one, or one recreated under the original name).
    pub mailbox: String,
    pub mailbox_id: MailboxId,
    pub uidvalidity: u32,
    /// Its new UID.
    pub uid: u32,
    /// Where it was expunged from, and its UID there.
    pub original_mailbox: MailboxId,
    pub original_uid: u32,
}

/// What a purge removed.
#[derive(Debug, Clone, Default)]
pub struct PurgeReport {
    /// Users examined.
    pub users: u64,
    /// Restorable retained messages dropped, and their raw bytes.
    pub messages: u64,
    pub bytes: u64,
    /// Message files no longer referenced, unlinked after the purge record was durable.
    pub files_removed: u64,
    /// Users whose purge failed (they are retried at the next run), with the error text.
    pub failed: Vec<(UserId, String)>,
}

impl PurgeReport {
    fn absorb(&mut self, other: PurgeReport) {
        self.users += other.users;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.files_removed += other.files_removed;
        self.failed.extend(other.failed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is locked by another process")]
    Locked,
    #[error("no such mailbox")]
    NoSuchMailbox,
    #[error("mailbox already exists")]
    MailboxExists,
    #[error("invalid mailbox name")]
    InvalidMailboxName,
    #[error("mailbox has children")]
    HasChildren,
    #[error("INBOX cannot be deleted")]
    CannotDeleteInbox,
    #[error("message too large")]
    TooLarge,
    #[error("no such message")]
    NoSuchMessage,
    /// The change would take the user's live mail over the limits given to
    /// [`UserStore::set_quota`] (IMAP `NO [OVERQUOTA]`, LMTP 452 4.2.2 or 552 5.2.2).
    #[error("quota exceeded")]
    OverQuota,
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// The whole store. Cheap to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct Store {
    inner: Arc<store::StoreInner>,
}

impl Store {
    /// Opens (creating if missing) the store at `root`, taking its exclusive lock and
    /// recovering from any crash (torn log tails truncated, orphan files removed).
    ///
    /// Store-wide leftovers (the spool) are cleaned here; each user's log and files are
    /// checked and repaired when that user is first loaded, so opening a store with tens of
    /// thousands of users costs nothing per user.
    pub fn open(root: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        Ok(Store { inner: Arc::new(store::open(root, config)?) })
    }

    /// One user's store, opened on first use (a new user gets INBOX and [`DEFAULT_MAILBOXES`]).
    /// Every caller for the same user gets the same `Arc`.
    pub fn user(&self, id: &UserId) -> Result<Arc<UserStore>, StoreError> {
        self.inner.user(id)
    }

    /// Delivers one message to many targets: written and compressed once, hard-linked into each
    /// user's folder. One result per target, in order; durable when this returns.
    pub fn deliver(
        &self,
        raw: &[u8],
        internal_date: Option<InternalDate>,
        targets: &[DeliveryTarget],
    ) -> Vec<Result<Appended, StoreError>> {
        self.inner.deliver(raw, internal_date, targets)
    }

    /// Installs what composes quota warning messages (see [`QuotaWarningComposer`]); replaces
    /// any earlier one. Without one (e.g. a CLI that opened the store directly) no warning is
    /// sent and no level is recorded, so the service sends it at the user's next change.
    pub fn set_quota_warnings(&self, composer: QuotaWarningComposer) {
        self.inner.set_quota_warnings(composer)
    }

    /// Changes the retention period of expunged mail (a config reload): applies to the next
    /// purge and to the expiry times listed from now on.
    pub fn set_retention_secs(&self, secs: u64) {
        self.inner.set_retention_secs(secs)
    }

    /// Replaces the usage levels (percent, increasing) at which a warning is sent; the
    /// default is [`QUOTA_WARNING_PERCENTS`]. Applies from the next change of any user's mail.
    pub fn set_quota_warning_percents(&self, percents: Vec<u8>) {
        self.inner.set_quota_warning_percents(percents)
    }

    /// Drops, for every user in the store, the retained messages expunged at or before
    /// `now - retention_secs` (see [`UserStore::purge_expired`]). Users are loaded one at a
    /// time (idle ones are unloaded again by the usual cache policy); a user that fails is
    /// reported in [`PurgeReport::failed`] and the others are still purged. Meant to run
    /// periodically (hourly); idempotent, and safe to interrupt at any point.
    pub fn purge_expired(&self, now: i64) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport::default();
        for id in self.inner.user_ids()? {
            match self.user(&id).and_then(|u| u.purge_expired(now)) {
                Ok(r) => report.absorb(r),
                Err(e) => {
                    tracing::warn!(user = %id, error = %e, "purge of expired messages failed");
                    report.users += 1;
                    report.failed.push((id, e.to_string()));
                }
            }
        }
        Ok(report)
    }
}

/// One user's mail. Shared by every session of that user in this process.
pub struct UserStore {
    inner: user::UserInner,
}

impl UserStore {
    pub fn user_id(&self) -> &UserId {
        self.inner.user_id()
    }
    /// Notices of every change, for IDLE and for sessions to see each other's changes.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeNotice> {
        self.inner.subscribe()
    }
    /// All mailboxes, INBOX first then by name.
    pub fn list_mailboxes(&self) -> Vec<MailboxInfo> {
        self.inner.list_mailboxes()
    }
    /// `INBOX` matches case-insensitively; other names exactly.
    pub fn mailbox(&self, name: &str) -> Option<MailboxInfo> {
        self.inner.mailbox(name)
    }
    /// Creates a mailbox (and any missing parents, RFC 9051 §6.3.4).
    pub fn create_mailbox(&self, name: &str, special_use: Option<SpecialUse>) -> Result<MailboxInfo, StoreError> {
        self.inner.create_mailbox(name, special_use)
    }
    /// Deletes a mailbox and its messages. A mailbox with children: [`StoreError::HasChildren`]
    /// (RFC 9051 allows deleting it as \Noselect; we refuse, as Dovecot does by default).
    pub fn delete_mailbox(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_mailbox(name)
    }
    /// Renames a mailbox and its children. Renaming INBOX moves its messages to the new mailbox
    /// and leaves INBOX empty (RFC 9051 §6.3.6).
    pub fn rename_mailbox(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.inner.rename_mailbox(from, to)
    }
    /// Subscriptions may name mailboxes that do not exist (RFC 9051 §6.3.7).
    pub fn set_subscribed(&self, name: &str, subscribed: bool) -> Result<(), StoreError> {
        self.inner.set_subscribed(name, subscribed)
    }
    pub fn subscriptions(&self) -> Vec<String> {
        self.inner.subscriptions()
    }
    pub fn view(&self, mailbox: MailboxId) -> Result<MailboxView, StoreError> {
        self.inner.view(mailbox)
    }
    /// Appends messages atomically (all or none: MULTIAPPEND); returns (uidvalidity, uids).
    pub fn append(&self, mailbox: MailboxId, messages: Vec<NewMessage>) -> Result<(u32, Vec<u32>), StoreError> {
        self.inner.append(mailbox, messages)
    }
    /// Changes flags; `unchanged_since` is RFC 7162's UNCHANGEDSINCE. UIDs not in the mailbox are ignored.
    pub fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate, StoreError> {
        self.inner.store_flags(mailbox, uids, op, flags, unchanged_since)
    }
    /// Copies messages (flags and internal date kept; the file is hard-linked, not rewritten).
    pub fn copy(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyResult, StoreError> {
        self.inner.copy(from, uids, to)
    }
    /// Moves messages atomically (one change-log record): RFC 6851.
    pub fn move_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyResult, StoreError> {
        self.inner.move_messages(from, uids, to)
    }
    /// Expunges the messages flagged `\Deleted` (only those among `uids` when given: UID EXPUNGE).
    /// Returns the expunged UIDs in ascending order.
    pub fn expunge(&self, mailbox: MailboxId, uids: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        self.inner.expunge(mailbox, uids)
    }
    /// The folder for this user's derived caches (`users/<id>/cache/`), owned by services that
    /// run in the store process (the search index of hermes-svc-store). The store itself never
    /// reads it, never writes it and never relies on it: anything in it may be deleted at any
    /// time and is rebuilt from the mail. Not created here (the cache's owner creates it).
    pub fn cache_dir(&self) -> std::path::PathBuf {
        self.inner.cache_dir()
    }
    /// The raw message, decompressed.
    pub fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Arc<Vec<u8>>, StoreError> {
        self.inner.read_message(mailbox, uid)
    }
    /// Live mail only (what counts toward the quota); O(1).
    pub fn usage(&self) -> Usage {
        self.inner.usage()
    }
    /// Sets (or with `None` lifts) this user's limits. Kept in memory only, for as long as the
    /// user stays loaded: callers set it from the directory account whenever they start
    /// working for the user (IMAP/POP login, LMTP RCPT, admin commands), so a changed quota
    /// applies from the next login or delivery. A user loaded without one has no limit.
    /// Lowering the limit never refuses anything already stored; raising it re-arms warnings
    /// the user is now below.
    pub fn set_quota(&self, limits: Option<QuotaLimits>) {
        self.inner.set_quota(limits)
    }
    /// The limits last given to [`UserStore::set_quota`].
    pub fn quota(&self) -> Option<QuotaLimits> {
        self.inner.quota()
    }
    /// The highest warning level the user has been warned at and not since
    /// dropped below (0: none). Persisted in `users/<id>/quota-warned`.
    pub fn quota_warned_percent(&self) -> u8 {
        self.inner.quota_warned_percent()
    }
    /// Live and retained totals; O(1).
    pub fn usage_detail(&self) -> UsageDetail {
        self.inner.usage_detail()
    }
    /// The restorable retained messages matching `filter`, oldest expunge first.
    /// [`UserStore::undelete`] with the same filter restores exactly these.
    pub fn list_retained(&self, filter: &RetainedFilter) -> Vec<RetainedMessage> {
        self.inner.list_retained(filter)
    }
    /// The header of a retained message (as [`UserStore::list_retained`] names it: original
    /// mailbox and UID), up to and including the blank line that ends it, or its first `limit`
    /// bytes when no blank line comes sooner. Only that much is decompressed: listing thousands
    /// of retained messages stays cheap. [`StoreError::NoSuchMessage`] once purged or restored.
    pub fn read_retained_header(&self, mailbox: MailboxId, uid: u32, limit: usize) -> Result<Vec<u8>, StoreError> {
        self.inner.read_retained_header(mailbox, uid, limit)
    }
    /// Restores the retained messages matching `filter` (one change-log record, durable on
    /// return): each goes back to its mailbox if that still exists (by id, even if renamed),
    /// else to the mailbox now holding its original name, else to that name recreated (with
    /// missing parents). Each gets a new UID in the order of its original UID, its old flags
    /// minus `\Deleted`, and its internal date. Returns what was restored, in that order.
    pub fn undelete(&self, filter: &RetainedFilter) -> Result<Vec<Restored>, StoreError> {
        self.inner.undelete(filter)
    }
    /// Drops this user's retained messages expunged at or before `now - retention_secs`
    /// through one Purge record; their files are unlinked once that record is durable (a
    /// crash before that leaves them to the orphan sweep of the next open). Idempotent.
    pub fn purge_expired(&self, now: i64) -> Result<PurgeReport, StoreError> {
        self.inner.purge_expired(now)
    }
    /// UIDs expunged from `mailbox` (EXPUNGE, MOVE away, UID EXPUNGE) with a MODSEQ above
    /// `modseq`, ascending: RFC 7162 VANISHED (EARLIER). Complete only when `modseq` is at
    /// least [`UserStore::expunge_horizon`]; read the horizon after this call (it only grows,
    /// so a horizon read later that is still <= `modseq` proves this answer complete).
    pub fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>, StoreError> {
        self.inner.expunged_since(mailbox, modseq)
    }
    /// The lowest client MODSEQ for which [`UserStore::expunged_since`] is complete. Purges,
    /// restores, RENAME INBOX and mail expunged before delayed expunge existed (format 1)
    /// raise it. Below it, a QRESYNC server falls back as RFC 7162 §3.2.5.2 allows (use the
    /// client's known-UIDs/sequence match data, or report every UID the client may hold that
    /// is not in the mailbox).
    pub fn expunge_horizon(&self, mailbox: MailboxId) -> Result<u64, StoreError> {
        self.inner.expunge_horizon(mailbox)
    }
    /// Writes a checkpoint now if anything changed since the last one (added: for a clean
    /// shutdown or an admin command; the store also checkpoints every
    /// [`CHECKPOINT_EVERY`] changes and when a user is unloaded).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.inner.checkpoint()
    }
}
