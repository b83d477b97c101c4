//! Change-log records: the schema of one change and its binary payload encoding.
//!
//! What it is: the [`Record`] enum, its encoder, and a bounded decoder. The byte layout is
//! documented in `docs/store-format.md` ("Record payloads"); change both together.
//! What it is not: the framing (length, CRC, sequence number: see `log`) nor the semantics of
//! applying a record (see `state`).
//!
//! Invariants:
//! - Records carry ABSOLUTE results (assigned UIDs, full flag sets, modseqs, UIDVALIDITY), never
//!   deltas or "next free" requests, so applying one is deterministic and re-applying it is a no-op.
//! - Decoding never panics; names are re-validated and flags re-normalised, so a record from a
//!   replica or a damaged disk cannot put the state outside its invariants.
//! - A payload never exceeds [`MAX_RECORD_BYTES`].
//! - Kinds are only ever added, never changed: kinds 1–10 are format 1 and keep their meaning
//!   (an old Expunge still drops its messages at once when replayed); kinds 11–15 (delayed
//!   expunge, restore, purge) are format 2. This code writes 11–13 where it used to write 3, 8
//!   and 9, and reads every kind.

use crate::blob::FileId;
use crate::codec::{Reader, Writer};
use crate::{Flag, InternalDate, MailboxId, SpecialUse, StoreError, flags, name};

/// Largest record payload. A `UID MOVE 1:*` of 100,000 messages encodes to about 1 MB and a
/// flag change over them to a few MB; the bound keeps a corrupt length from allocating more.
pub const MAX_RECORD_BYTES: usize = 32 << 20;

/// One message added to a mailbox (APPEND, delivery or COPY: a copy references the source's file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendEntry {
    pub uid: u32,
    pub file: FileId,
    pub flags: Vec<Flag>,
    pub internal_date: InternalDate,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    MailboxCreate { id: MailboxId, name: String, uidvalidity: u32, special_use: Option<SpecialUse>, modseq: u64 },
    /// A mailbox and its children renamed together: (id, new full name) each.
    MailboxRename { renames: Vec<(MailboxId, String)>, modseq: u64 },
    MailboxDelete { id: MailboxId, modseq: u64 },
    Subscribe { name: String },
    Unsubscribe { name: String },
    Append { mailbox: MailboxId, modseq: u64, messages: Vec<AppendEntry> },
    /// New absolute flag sets.
    Flags { mailbox: MailboxId, modseq: u64, changes: Vec<(u32, Vec<Flag>)> },
    Expunge { mailbox: MailboxId, modseq: u64, uids: Vec<u32> },
    /// (source uid, destination uid) pairs: the destination gets the source's file, flags and
    /// date under the new uid; the sources are expunged. One record, so MOVE is atomic.
    Move { from: MailboxId, to: MailboxId, modseq: u64, pairs: Vec<(u32, u32)> },
    /// RENAME INBOX: a new mailbox `new` named `name` receives every INBOX message (same UIDs),
    /// INBOX stays, empty, with its UIDVALIDITY and UIDNEXT.
    RenameInbox { inbox: MailboxId, new: MailboxId, name: String, uidvalidity: u32, modseq: u64 },
    /// Delayed EXPUNGE (format 2): the messages leave the mailbox but are retained, hidden,
    /// with the expunge time `at` (Unix seconds, taken by the writer, so replay is deterministic).
    DelayedExpunge { mailbox: MailboxId, modseq: u64, at: i64, uids: Vec<u32> },
    /// Delayed MOVE (format 2): as [`Record::Move`], and each source is kept as a retained
    /// "moved" entry (for VANISHED, not restorable: its content lives on in `to`).
    DelayedMove { from: MailboxId, to: MailboxId, modseq: u64, at: i64, pairs: Vec<(u32, u32)> },
    /// Delayed mailbox DELETE (format 2): the mailbox goes, its messages are retained.
    DelayedMailboxDelete { id: MailboxId, modseq: u64, at: i64 },
    /// Undelete (format 2): retained messages return as new messages with new UIDs.
    Restore { modseq: u64, entries: Vec<RestoreEntry> },
    /// Purge (format 2): every retained message expunged at or before `cutoff` is dropped.
    Purge { cutoff: i64 },
}

/// One retained message brought back: the retained entry `(from, from_uid)` becomes message
/// `to_uid` of mailbox `to` with these flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestoreEntry {
    pub from: MailboxId,
    pub from_uid: u32,
    pub to: MailboxId,
    pub to_uid: u32,
    pub flags: Vec<Flag>,
}

const K_CREATE: u8 = 1;
const K_RENAME: u8 = 2;
const K_DELETE: u8 = 3;
const K_SUBSCRIBE: u8 = 4;
const K_UNSUBSCRIBE: u8 = 5;
const K_APPEND: u8 = 6;
const K_FLAGS: u8 = 7;
const K_EXPUNGE: u8 = 8;
const K_MOVE: u8 = 9;
const K_RENAME_INBOX: u8 = 10;
const K_DELAYED_EXPUNGE: u8 = 11;
const K_DELAYED_MOVE: u8 = 12;
const K_DELAYED_DELETE: u8 = 13;
const K_RESTORE: u8 = 14;
const K_PURGE: u8 = 15;

pub(crate) fn special_use_code(s: Option<SpecialUse>) -> u8 {
    match s {
        None => 0,
        Some(SpecialUse::Drafts) => 1,
        Some(SpecialUse::Sent) => 2,
        Some(SpecialUse::Trash) => 3,
        Some(SpecialUse::Junk) => 4,
        Some(SpecialUse::Archive) => 5,
    }
}

pub(crate) fn special_use_from(code: u8) -> Result<Option<SpecialUse>, StoreError> {
    Ok(match code {
        0 => None,
        1 => Some(SpecialUse::Drafts),
        2 => Some(SpecialUse::Sent),
        3 => Some(SpecialUse::Trash),
        4 => Some(SpecialUse::Junk),
        5 => Some(SpecialUse::Archive),
        _ => return Err(StoreError::Corrupt(format!("unknown special-use code {code}"))),
    })
}

pub(crate) fn write_flags(w: &mut Writer, f: &[Flag]) {
    w.len(f.len());
    for x in f {
        w.str(x);
    }
}

pub(crate) fn read_flags(r: &mut Reader<'_>) -> Result<Vec<Flag>, StoreError> {
    let n = r.count(4)?;
    let mut v = Vec::with_capacity(n.min(flags::MAX_FLAGS));
    for _ in 0..n {
        v.push(r.str()?);
    }
    Ok(flags::normalize(&v))
}

pub(crate) fn read_name(r: &mut Reader<'_>) -> Result<String, StoreError> {
    let s = r.str()?;
    match name::canonical(&s) {
        Some(c) if c == s => Ok(s),
        _ => Err(StoreError::Corrupt("invalid mailbox name in record".into())),
    }
}

impl Record {
    /// The payload bytes (without framing).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Record::MailboxCreate { id, name, uidvalidity, special_use, modseq } => {
                w.u8(K_CREATE);
                w.u64(id.0);
                w.str(name);
                w.u32(*uidvalidity);
                w.u8(special_use_code(*special_use));
                w.u64(*modseq);
            }
            Record::MailboxRename { renames, modseq } => {
                w.u8(K_RENAME);
                w.u64(*modseq);
                w.len(renames.len());
                for (id, n) in renames {
                    w.u64(id.0);
                    w.str(n);
                }
            }
            Record::MailboxDelete { id, modseq } => {
                w.u8(K_DELETE);
                w.u64(id.0);
                w.u64(*modseq);
            }
            Record::Subscribe { name } => {
                w.u8(K_SUBSCRIBE);
                w.str(name);
            }
            Record::Unsubscribe { name } => {
                w.u8(K_UNSUBSCRIBE);
                w.str(name);
            }
            Record::Append { mailbox, modseq, messages } => {
                w.u8(K_APPEND);
                w.u64(mailbox.0);
                w.u64(*modseq);
                w.len(messages.len());
                for m in messages {
                    w.u32(m.uid);
                    w.u128(m.file.0);
                    w.i64(m.internal_date.unix);
                    w.i16(m.internal_date.offset_minutes);
                    w.u64(m.size);
                    write_flags(&mut w, &m.flags);
                }
            }
            Record::Flags { mailbox, modseq, changes } => {
                w.u8(K_FLAGS);
                w.u64(mailbox.0);
                w.u64(*modseq);
                w.len(changes.len());
                for (uid, f) in changes {
                    w.u32(*uid);
                    write_flags(&mut w, f);
                }
            }
            Record::Expunge { mailbox, modseq, uids } => {
                w.u8(K_EXPUNGE);
                w.u64(mailbox.0);
                w.u64(*modseq);
                w.len(uids.len());
                for u in uids {
                    w.u32(*u);
                }
            }
            Record::Move { from, to, modseq, pairs } => {
                w.u8(K_MOVE);
                w.u64(from.0);
                w.u64(to.0);
                w.u64(*modseq);
                w.len(pairs.len());
                for (s, d) in pairs {
                    w.u32(*s);
                    w.u32(*d);
                }
            }
            Record::RenameInbox { inbox, new, name, uidvalidity, modseq } => {
                w.u8(K_RENAME_INBOX);
                w.u64(inbox.0);
                w.u64(new.0);
                w.str(name);
                w.u32(*uidvalidity);
                w.u64(*modseq);
            }
            Record::DelayedExpunge { mailbox, modseq, at, uids } => {
                w.u8(K_DELAYED_EXPUNGE);
                w.u64(mailbox.0);
                w.u64(*modseq);
                w.i64(*at);
                w.len(uids.len());
                for u in uids {
                    w.u32(*u);
                }
            }
            Record::DelayedMove { from, to, modseq, at, pairs } => {
                w.u8(K_DELAYED_MOVE);
                w.u64(from.0);
                w.u64(to.0);
                w.u64(*modseq);
                w.i64(*at);
                w.len(pairs.len());
                for (s, d) in pairs {
                    w.u32(*s);
                    w.u32(*d);
                }
            }
            Record::DelayedMailboxDelete { id, modseq, at } => {
                w.u8(K_DELAYED_DELETE);
                w.u64(id.0);
                w.u64(*modseq);
                w.i64(*at);
            }
            Record::Restore { modseq, entries } => {
                w.u8(K_RESTORE);
                w.u64(*modseq);
                w.len(entries.len());
                for e in entries {
                    w.u64(e.from.0);
                    w.u32(e.from_uid);
                    w.u64(e.to.0);
                    w.u32(e.to_uid);
                    write_flags(&mut w, &e.flags);
                }
            }
            Record::Purge { cutoff } => {
                w.u8(K_PURGE);
                w.i64(*cutoff);
            }
        }
        w.into_bytes()
    }

    /// Decodes one payload; the whole input must be consumed.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
        let mut r = Reader::new(bytes);
        let rec = match r.u8()? {
            K_CREATE => Record::MailboxCreate {
                id: MailboxId(r.u64()?),
                name: read_name(&mut r)?,
                uidvalidity: r.u32()?,
                special_use: special_use_from(r.u8()?)?,
                modseq: r.u64()?,
            },
            K_RENAME => {
                let modseq = r.u64()?;
                let n = r.count(12)?;
                let mut renames = Vec::with_capacity(n);
                for _ in 0..n {
                    renames.push((MailboxId(r.u64()?), read_name(&mut r)?));
                }
                Record::MailboxRename { renames, modseq }
            }
            K_DELETE => Record::MailboxDelete { id: MailboxId(r.u64()?), modseq: r.u64()? },
            K_SUBSCRIBE => Record::Subscribe { name: read_name(&mut r)? },
            K_UNSUBSCRIBE => Record::Unsubscribe { name: read_name(&mut r)? },
            K_APPEND => {
                let mailbox = MailboxId(r.u64()?);
                let modseq = r.u64()?;
                let n = r.count(42)?;
                let mut messages = Vec::with_capacity(n);
                for _ in 0..n {
                    let uid = r.u32()?;
                    let file = FileId(r.u128()?);
                    let internal_date = InternalDate { unix: r.i64()?, offset_minutes: r.i16()? };
                    let size = r.u64()?;
                    let flags = read_flags(&mut r)?;
                    messages.push(AppendEntry { uid, file, flags, internal_date, size });
                }
                Record::Append { mailbox, modseq, messages }
            }
            K_FLAGS => {
                let mailbox = MailboxId(r.u64()?);
                let modseq = r.u64()?;
                let n = r.count(8)?;
                let mut changes = Vec::with_capacity(n);
                for _ in 0..n {
                    changes.push((r.u32()?, read_flags(&mut r)?));
                }
                Record::Flags { mailbox, modseq, changes }
            }
            K_EXPUNGE => {
                let mailbox = MailboxId(r.u64()?);
                let modseq = r.u64()?;
                let n = r.count(4)?;
                let mut uids = Vec::with_capacity(n);
                for _ in 0..n {
                    uids.push(r.u32()?);
                }
                Record::Expunge { mailbox, modseq, uids }
            }
            K_MOVE => {
                let from = MailboxId(r.u64()?);
                let to = MailboxId(r.u64()?);
                let modseq = r.u64()?;
                let n = r.count(8)?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((r.u32()?, r.u32()?));
                }
                Record::Move { from, to, modseq, pairs }
            }
            K_RENAME_INBOX => Record::RenameInbox {
                inbox: MailboxId(r.u64()?),
                new: MailboxId(r.u64()?),
                name: read_name(&mut r)?,
                uidvalidity: r.u32()?,
                modseq: r.u64()?,
            },
            K_DELAYED_EXPUNGE => {
                let mailbox = MailboxId(r.u64()?);
                let modseq = r.u64()?;
                let at = r.i64()?;
                let n = r.count(4)?;
                let mut uids = Vec::with_capacity(n);
                for _ in 0..n {
                    uids.push(r.u32()?);
                }
                Record::DelayedExpunge { mailbox, modseq, at, uids }
            }
            K_DELAYED_MOVE => {
                let from = MailboxId(r.u64()?);
                let to = MailboxId(r.u64()?);
                let modseq = r.u64()?;
                let at = r.i64()?;
                let n = r.count(8)?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((r.u32()?, r.u32()?));
                }
                Record::DelayedMove { from, to, modseq, at, pairs }
            }
            K_DELAYED_DELETE => Record::DelayedMailboxDelete { id: MailboxId(r.u64()?), modseq: r.u64()?, at: r.i64()? },
            K_RESTORE => {
                let modseq = r.u64()?;
                let n = r.count(28)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let from = MailboxId(r.u64()?);
                    let from_uid = r.u32()?;
                    let to = MailboxId(r.u64()?);
                    let to_uid = r.u32()?;
                    let flags = read_flags(&mut r)?;
                    entries.push(RestoreEntry { from, from_uid, to, to_uid, flags });
                }
                Record::Restore { modseq, entries }
            }
            K_PURGE => Record::Purge { cutoff: r.i64()? },
            k => return Err(StoreError::Corrupt(format!("unknown record kind {k}"))),
        };
        if !r.is_empty() {
            return Err(StoreError::Corrupt("trailing bytes in record".into()));
        }
        Ok(rec)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        let date = InternalDate { unix: 1_700_000_000, offset_minutes: -300 };
        vec![
            Record::MailboxCreate {
                id: MailboxId(3),
                name: "Lists/rust".into(),
                uidvalidity: 1_700_000_001,
                special_use: Some(SpecialUse::Archive),
                modseq: 9,
            },
            Record::MailboxRename { renames: vec![(MailboxId(3), "L/rust".into()), (MailboxId(4), "L/rust/x".into())], modseq: 10 },
            Record::MailboxDelete { id: MailboxId(3), modseq: 11 },
            Record::Subscribe { name: "Sent".into() },
            Record::Unsubscribe { name: "Sent".into() },
            Record::Append {
                mailbox: MailboxId(1),
                modseq: 12,
                messages: vec![
                    AppendEntry { uid: 1, file: FileId(7), flags: vec!["\\Seen".into()], internal_date: date, size: 10 },
                    AppendEntry { uid: 2, file: FileId(u128::MAX), flags: vec![], internal_date: date, size: 0 },
                ],
            },
            Record::Flags { mailbox: MailboxId(1), modseq: 13, changes: vec![(1, vec!["$Junk".into(), "\\Flagged".into()])] },
            Record::Expunge { mailbox: MailboxId(1), modseq: 14, uids: vec![1, 2] },
            Record::Move { from: MailboxId(1), to: MailboxId(2), modseq: 15, pairs: vec![(4, 1), (5, 2)] },
            Record::RenameInbox { inbox: MailboxId(1), new: MailboxId(9), name: "Old".into(), uidvalidity: 5, modseq: 16 },
            Record::DelayedExpunge { mailbox: MailboxId(1), modseq: 17, at: 1_700_000_100, uids: vec![3, 9] },
            Record::DelayedMove { from: MailboxId(1), to: MailboxId(2), modseq: 18, at: -1, pairs: vec![(6, 3)] },
            Record::DelayedMailboxDelete { id: MailboxId(2), modseq: 19, at: i64::MAX },
            Record::Restore {
                modseq: 20,
                entries: vec![
                    RestoreEntry { from: MailboxId(2), from_uid: 3, to: MailboxId(10), to_uid: 1, flags: vec!["\\Seen".into()] },
                    RestoreEntry { from: MailboxId(1), from_uid: 9, to: MailboxId(1), to_uid: 12, flags: vec![] },
                ],
            },
            Record::Purge { cutoff: 1_700_000_000 },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for rec in samples() {
            let bytes = rec.encode();
            assert_eq!(Record::decode(&bytes).unwrap(), rec);
        }
    }

    #[test]
    fn every_prefix_and_garbage_is_refused_without_panic() {
        for rec in samples() {
            let bytes = rec.encode();
            for cut in 0..bytes.len() {
                assert!(Record::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Record::decode(&longer).is_err());
        }
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = Record::decode(&bytes);
        }
    }

    #[test]
    fn invalid_names_in_records_are_refused() {
        let rec = Record::Subscribe { name: "a//b".into() };
        assert!(Record::decode(&rec.encode()).is_err());
        let rec = Record::Subscribe { name: "inbox".into() };
        assert!(Record::decode(&rec.encode()).is_err(), "non-canonical INBOX spelling");
    }
}
