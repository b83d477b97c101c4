//! The maildrop of one POP3 session: the user's INBOX as it was at login, with DELE marks.
//!
//! What it is: [`Maildrop`], a pure value built from a [`MailboxView`]: message *n* is the
//! *n*-th message of the view in UID order, with its stored size; it answers the questions of
//! STAT, LIST and UIDL, records DELE marks and forgets them on RSET, and lists the marked UIDs
//! for the UPDATE state. What it is not: I/O — reading message bytes and expunging are the
//! session's calls to the store ([`super::transaction`]).
//!
//! Invariants:
//! - Numbering never changes during a session (RFC 1939 §5): numbers are 1-based indices into
//!   a list fixed at login; a marked message keeps its number and is skipped by STAT and LIST.
//! - The unique-id of a message ([`Maildrop::unique_id`]) is `<uidvalidity>.<uid>` in decimal:
//!   the store never reuses a UID under one UIDVALIDITY and keeps both across restarts, so the
//!   id is stable for the life of the message and never names another message (RFC 1939 §7).
//!   It is at most 21 octets of digits and a dot, inside RFC 1939's 1-70 printable octets.
//! - Sizes are the stored sizes (RFC822.SIZE); the octets sent may differ by CRLF conversion
//!   and byte-stuffing, which RFC 1939 §11 allows.

use hermes_proto::pop3::Response;
use hermes_store::{MailboxId, MailboxView};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub uid: u32,
    pub size: u64,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct Maildrop {
    pub mailbox: MailboxId,
    pub uidvalidity: u32,
    entries: Vec<Entry>,
}

impl Maildrop {
    pub fn from_view(view: &MailboxView) -> Maildrop {
        let entries = view.messages.iter().map(|m| Entry { uid: m.uid, size: m.size, deleted: false }).collect();
        Maildrop { mailbox: view.id, uidvalidity: view.uidvalidity, entries }
    }

    /// All messages, marked ones included, numbered from 1.
    pub fn entries(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.entries.iter().enumerate().map(|(i, e)| (u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1), e))
    }

    /// Messages not marked as deleted, with their numbers.
    pub fn live(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.entries().filter(|(_, e)| !e.deleted)
    }

    /// (message count, total octets) of the messages not marked: the STAT answer.
    pub fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0u64), |(n, s), (_, e)| (n + 1, s.saturating_add(e.size)))
    }

    /// Message `n`, unless it does not exist or is marked as deleted (the `-ERR` to send).
    pub fn get(&self, n: u32) -> Result<Entry, Response> {
        let i = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
        match i.and_then(|i| self.entries.get(i)) {
            None => Err(Response::err(format!("There is no message {n}"))),
            Some(e) if e.deleted => Err(Response::err(format!("Message {n} is already deleted"))),
            Some(e) => Ok(*e),
        }
    }

    /// Marks message `n` for deletion at QUIT.
    pub fn mark_deleted(&mut self, n: u32) -> Result<(), Response> {
        self.get(n)?;
        let i = (n as usize).saturating_sub(1);
        if let Some(e) = self.entries.get_mut(i) {
            e.deleted = true;
        }
        Ok(())
    }

    /// RSET: forgets every mark.
    pub fn unmark_all(&mut self) {
        for e in &mut self.entries {
            e.deleted = false;
        }
    }

    /// UIDs marked for deletion, ascending.
    pub fn marked_uids(&self) -> Vec<u32> {
        self.entries.iter().filter(|e| e.deleted).map(|e| e.uid).collect()
    }

    /// The UIDL unique-id of a message (see the module invariants).
    pub fn unique_id(&self, entry: &Entry) -> String {
        format!("{}.{}", self.uidvalidity, entry.uid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_store::{InternalDate, MessageMeta};
    use std::sync::Arc;

    fn drop_of(sizes: &[(u32, u64)]) -> Maildrop {
        let messages = sizes
            .iter()
            .map(|&(uid, size)| MessageMeta {
                uid,
                modseq: 1,
                flags: vec![],
                internal_date: InternalDate { unix: 0, offset_minutes: 0 },
                size,
            })
            .collect();
        let view = MailboxView {
            id: MailboxId(1),
            name: "INBOX".into(),
            uidvalidity: 1_700_000_000,
            uidnext: 100,
            highest_modseq: 1,
            messages: Arc::new(messages),
        };
        Maildrop::from_view(&view)
    }

    #[test]
    fn numbering_is_fixed_and_marks_are_skipped() {
        let mut d = drop_of(&[(3, 120), (7, 200), (9, 5)]);
        assert_eq!(d.stat(), (3, 325));
        d.mark_deleted(2).unwrap();
        assert_eq!(d.stat(), (2, 125));
        assert_eq!(d.live().map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(d.get(3).unwrap().uid, 9);
        assert!(d.get(2).unwrap_err().text.contains("already deleted"));
        assert!(d.mark_deleted(2).is_err());
        assert!(d.get(0).is_err() && d.get(4).is_err() && d.get(u32::MAX).is_err());
        assert_eq!(d.marked_uids(), vec![7]);
        d.unmark_all();
        assert_eq!(d.stat(), (3, 325));
        assert!(d.marked_uids().is_empty());
    }

    #[test]
    fn unique_ids_are_uidvalidity_dot_uid() {
        let d = drop_of(&[(3, 1), (4294967295, 1)]);
        let ids: Vec<String> = d.entries().map(|(_, e)| d.unique_id(e)).collect();
        assert_eq!(ids, vec!["1700000000.3", "1700000000.4294967295"]);
        for id in ids {
            assert!((1..=70).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
    }
}
