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
//! What it is not: an IMAP server (no sequence numbers, no \Recent, no SEARCH: those live in
//! the session layer above `MailboxView`), nor a quota enforcer (`usage` reports, issue 3 enforces).
//!
//! Code map: `store` (lock, user cache, multi-user delivery), `user` (open/recover, group
//! commit, checkpoints, operations), `state` (in-memory state and record application),
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
mod record;
mod state;
mod store;
mod user;

#[cfg(test)]
mod tests;

pub use name::{MAX_DEPTH as MAX_MAILBOX_DEPTH, MAX_NAME_BYTES as MAX_MAILBOX_NAME_BYTES};
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
}

pub use hermes_core::DEFAULT_MAX_MESSAGE_BYTES;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES, zstd_level: 3 }
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
    /// The raw message, decompressed.
    pub fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Arc<Vec<u8>>, StoreError> {
        self.inner.read_message(mailbox, uid)
    }
    pub fn usage(&self) -> Usage {
        self.inner.usage()
    }
    /// Writes a checkpoint now if anything changed since the last one (added: for a clean
    /// shutdown or an admin command; the store also checkpoints every
    /// [`CHECKPOINT_EVERY`] changes and when a user is unloaded).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.inner.checkpoint()
    }
}
