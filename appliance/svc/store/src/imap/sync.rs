//! The selected mailbox as one session sees it, and how that picture catches up with the store
//! (RFC 9051 §5.2, §7.4.1 and §7.5; RFC 3501 §5.5).
//!
//! What it is: the session's message-sequence-number → UID map, the highest mod-sequence the
//! client has been told about, and [`Selected::sync`], which compares the map with a fresh
//! [`MailboxView`] and writes the untagged `EXPUNGE`, `EXISTS`, `FLAGS` and `FETCH (FLAGS)`
//! responses that bring the client up to date.
//! What it is not: a cache of message data (that is the store's), and it never talks to the
//! store itself — the session fetches views (in `spawn_blocking`) and hands them in.
//!
//! Invariants:
//! - `uids` is strictly ascending and is exactly the client's idea of the mailbox: MSN n is
//!   `uids[n-1]`. It changes only when a response telling the client so is written: `EXISTS`
//!   appends, `EXPUNGE` removes.
//! - Expunges are reported only when the caller allows it (never during FETCH, STORE or SEARCH,
//!   RFC 9051 §7.5.1); until then an expunged message stays in `uids` as a "ghost" that keeps
//!   its MSN but has no metadata in the view.
//! - `EXPUNGE` responses are written highest MSN first, so each number is valid at the moment the
//!   client reads it without any adjustment.
//! - A flag change is reported once: changes this session already reported (its own STORE) are
//!   remembered in `reported` until the next sync and skipped.
//! - Once QRESYNC is enabled (RFC 7162 §3.2.10) expunges are reported as one `* VANISHED uids`
//!   instead of `EXPUNGE` lines; once CONDSTORE is enabled every unsolicited `FETCH` carries
//!   `MODSEQ` (§3.1.4).

use hermes_proto::imap::{SeqItem, SequenceSet};
use hermes_store::{MailboxId, MailboxView, MessageMeta};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;

/// The system flags every mailbox offers (RFC 9051 §2.3.2), in FLAGS-response order.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// A message number in a command that the mailbox does not have (answered `BAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidMsn;

pub struct Selected {
    pub id: MailboxId,
    /// The store's (UTF-8) name at SELECT time; a RENAME by another session does not change the id.
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: u32,
    /// MSN-1 → UID as the client knows it (ghosts included).
    uids: Vec<u32>,
    /// The latest view of the mailbox taken from the store.
    view: MailboxView,
    /// Highest mod-sequence whose flag changes the client has been told about.
    known_modseq: u64,
    /// Flag changes already reported by this session's own commands: uid → modseq.
    reported: HashMap<u32, u64>,
    /// Keywords announced in the last `FLAGS` response.
    keywords: BTreeSet<String>,
    /// RFC 5182 saved search result, as UIDs (ascending).
    saved: Vec<u32>,
    /// CONDSTORE is enabled in this session: unsolicited FETCH responses carry MODSEQ.
    pub condstore: bool,
    /// QRESYNC is enabled: expunges are reported as VANISHED.
    pub qresync: bool,
    /// The mailbox's shared search/sort index, held while selected so that it stays resident
    /// (see `crate::index`; SELECT sets it and starts its background catch-up).
    pub search_index: Option<std::sync::Arc<crate::index::MailboxIndex>>,
}

impl Selected {
    /// The state right after SELECT/EXAMINE: the client will be told about every message.
    pub fn open(view: MailboxView, read_only: bool) -> Selected {
        let uids: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();
        let known_modseq = max_modseq(&view);
        let keywords = keywords_of(view.messages.iter());
        Selected {
            id: view.id,
            name: view.name.clone(),
            read_only,
            uidvalidity: view.uidvalidity,
            uids,
            view,
            known_modseq,
            reported: HashMap::new(),
            keywords,
            saved: Vec::new(),
            condstore: false,
            qresync: false,
            search_index: None,
        }
    }

    /// The mailbox's HIGHESTMODSEQ as of the last view (RFC 7162 §3.1.2.1).
    pub fn highest_modseq(&self) -> u64 {
        max_modseq(&self.view)
    }

    /// Number of messages as the client knows it (EXISTS).
    pub fn exists(&self) -> u32 {
        u32::try_from(self.uids.len()).unwrap_or(u32::MAX)
    }

    pub fn view(&self) -> &MailboxView {
        &self.view
    }

    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// The message's metadata, or `None` for a ghost (expunged, not yet reported).
    pub fn meta(&self, uid: u32) -> Option<&MessageMeta> {
        let msgs = &self.view.messages;
        msgs.binary_search_by_key(&uid, |m| m.uid).ok().and_then(|i| msgs.get(i))
    }

    /// The MSN of a UID the client knows.
    pub fn msn_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().and_then(|i| u32::try_from(i + 1).ok())
    }

    /// The keywords of the last `FLAGS` response, for FLAGS and PERMANENTFLAGS at SELECT.
    pub fn keywords(&self) -> &BTreeSet<String> {
        &self.keywords
    }

    /// The `FLAGS (...)` list: system flags then keywords in use.
    pub fn flags_list(&self) -> String {
        let mut s = String::from("(");
        s.push_str(&SYSTEM_FLAGS.join(" "));
        for k in &self.keywords {
            s.push(' ');
            s.push_str(k);
        }
        s.push(')');
        s
    }

    /// The saved search result (RFC 5182), as UIDs.
    pub fn saved_uids(&self) -> &[u32] {
        &self.saved
    }

    /// Saves a search result (RFC 5182), given as UIDs.
    pub fn save_result(&mut self, uids: Vec<u32>) {
        self.saved = uids;
    }

    /// Resolves a sequence set (MSNs, or UIDs when `uid`) to the messages the client knows, as
    /// ascending (msn, uid) pairs. MSNs beyond EXISTS are an error (`BAD`, as Dovecot answers);
    /// UIDs that do not exist are silently skipped (RFC 9051 §6.4.8).
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, u32)>, InvalidMsn> {
        let mut out = Vec::new();
        if uid {
            let largest = self.uids.last().copied().unwrap_or(0);
            let saved = self.saved_ranges(true);
            for (lo, hi) in set.ranges(largest, &saved) {
                let start = self.uids.partition_point(|&u| u < lo);
                for (i, &u) in self.uids.iter().enumerate().skip(start) {
                    if u > hi {
                        break;
                    }
                    out.push((u32::try_from(i + 1).unwrap_or(u32::MAX), u));
                }
            }
        } else {
            let largest = self.exists();
            let saved = self.saved_ranges(false);
            let explicit = set.0.iter().any(|i| !matches!(i, SeqItem::Saved));
            for (lo, hi) in set.ranges(largest, &saved) {
                if hi > largest && explicit {
                    return Err(InvalidMsn);
                }
                for msn in lo..=hi.min(largest) {
                    if let Some(&u) = self.uids.get(msn as usize - 1) {
                        out.push((msn, u));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether MSN `msn` (1-based) / UID `uid` is in `set`, for SEARCH's sequence-set and UID keys.
    pub fn set_contains(&self, set: &SequenceSet, uid_mode: bool, n: u32) -> bool {
        let largest = if uid_mode { self.uids.last().copied().unwrap_or(0) } else { self.exists() };
        set.contains(n, largest, &self.saved_ranges(uid_mode))
    }

    fn saved_ranges(&self, uid: bool) -> Vec<(u32, u32)> {
        let nums: Vec<u32> =
            if uid { self.saved.clone() } else { self.saved.iter().filter_map(|&u| self.msn_of(u)).collect() };
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for n in nums {
            match ranges.last_mut() {
                Some(r) if r.1.checked_add(1) == Some(n) => r.1 = n,
                _ => ranges.push((n, n)),
            }
        }
        ranges
    }

    /// Remembers that this session already told the client about `uid`'s flags at `modseq`.
    pub fn note_reported(&mut self, uid: u32, modseq: u64) {
        self.reported.insert(uid, modseq);
    }

    /// Brings the client up to date with `view` (the same mailbox, freshly read), writing
    /// untagged responses to `out`. `allow_expunge` is false during FETCH, STORE and SEARCH
    /// (and their UID forms); expunges are then deferred. `with_uid` adds `UID` to the
    /// unsolicited FETCH responses.
    pub fn sync(&mut self, view: MailboxView, allow_expunge: bool, out: &mut Vec<u8>) {
        let unchanged = Arc::ptr_eq(&view.messages, &self.view.messages)
            || (view.highest_modseq == self.view.highest_modseq
                && view.uidnext == self.view.uidnext
                && view.messages.len() == self.view.messages.len());
        if unchanged && self.uids.len() == view.messages.len() {
            self.view = view;
            self.reported.clear();
            return;
        }
        self.view = view;
        let msgs = Arc::clone(&self.view.messages);

        // 1. Expunges, highest MSN first.
        if allow_expunge {
            let mut keep = vec![true; self.uids.len()];
            let mut gone = false;
            for (i, &u) in self.uids.iter().enumerate() {
                if msgs.binary_search_by_key(&u, |m| m.uid).is_err() {
                    keep[i] = false;
                    gone = true;
                }
            }
            if gone {
                if self.qresync {
                    let vanished = self.uids.iter().zip(&keep).filter(|(_, k)| !**k).map(|(u, _)| *u);
                    let set = hermes_proto::imap::response::sequence_set(vanished);
                    let _ = writeln_crlf(out, format_args!("* VANISHED {set}"));
                }
                for i in (0..self.uids.len()).rev() {
                    if !keep[i] {
                        if !self.qresync {
                            let _ = writeln_crlf(out, format_args!("* {} EXPUNGE", i + 1));
                        }
                        self.reported.remove(&self.uids[i]);
                    }
                }
                let mut idx = 0;
                self.uids.retain(|_| {
                    let k = keep[idx];
                    idx += 1;
                    k
                });
                self.saved.retain(|u| msgs.binary_search_by_key(u, |m| m.uid).is_ok());
            }
        }

        // 2. New messages (UIDs only grow, so they are all above the last one known).
        let last = self.uids.last().copied().unwrap_or(0);
        let first_new = msgs.partition_point(|m| m.uid <= last);
        let new_msgs = msgs.get(first_new..).unwrap_or(&[]);

        // 3. Keywords: a FLAGS response precedes anything that uses a new keyword.
        let changed_iter = msgs.iter().filter(|m| m.modseq > self.known_modseq);
        let mut new_keywords = false;
        for m in changed_iter.chain(new_msgs.iter()) {
            for f in &m.flags {
                if !f.starts_with('\\') && !self.keywords.contains(f) {
                    self.keywords.insert(f.clone());
                    new_keywords = true;
                }
            }
        }
        if new_keywords {
            let list = self.flags_list();
            let _ = writeln_crlf(out, format_args!("* FLAGS {list}"));
            let _ = writeln_crlf(
                out,
                format_args!("* OK [PERMANENTFLAGS {}] Flags permitted", permanent_flags(&list, self.read_only)),
            );
        }

        if !new_msgs.is_empty() {
            self.uids.extend(new_msgs.iter().map(|m| m.uid));
            let _ = writeln_crlf(out, format_args!("* {} EXISTS", self.uids.len()));
        }

        // 4. Flag changes of messages the client already knew.
        for m in msgs.get(..first_new).unwrap_or(&[]) {
            if m.modseq <= self.known_modseq {
                continue;
            }
            if self.reported.get(&m.uid) == Some(&m.modseq) {
                continue;
            }
            if let Some(msn) = self.msn_of(m.uid) {
                let _ = write!(out, "* {msn} FETCH (UID {} FLAGS ({})", m.uid, m.flags.join(" "));
                if self.condstore {
                    let _ = write!(out, " MODSEQ ({})", m.modseq);
                }
                out.extend_from_slice(b")\r\n");
            }
        }
        self.known_modseq = self.known_modseq.max(max_modseq(&self.view));
        self.reported.clear();
    }
}

/// The PERMANENTFLAGS list for a FLAGS list: everything plus `\*` (clients may create keywords),
/// or `()` for a read-only mailbox.
pub fn permanent_flags(flags_list: &str, read_only: bool) -> String {
    if read_only {
        return "()".to_string();
    }
    let inner = flags_list.trim_start_matches('(').trim_end_matches(')');
    format!("({inner} \\*)")
}

fn max_modseq(view: &MailboxView) -> u64 {
    view.messages.iter().map(|m| m.modseq).max().unwrap_or(0).max(view.highest_modseq)
}

fn keywords_of<'a>(msgs: impl Iterator<Item = &'a MessageMeta>) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for m in msgs {
        for f in &m.flags {
            if !f.starts_with('\\') && !set.contains(f) {
                set.insert(f.clone());
            }
        }
    }
    set
}

fn writeln_crlf(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    out.write_fmt(args)?;
    out.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use hermes_store::InternalDate;
    use std::num::NonZeroU32;

    fn meta(uid: u32, modseq: u64, flags: &[&str]) -> MessageMeta {
        MessageMeta {
            uid,
            modseq,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            internal_date: InternalDate { unix: 0, offset_minutes: 0 },
            size: 10,
        }
    }

    fn view(msgs: Vec<MessageMeta>, modseq: u64, uidnext: u32) -> MailboxView {
        MailboxView {
            id: MailboxId(1),
            name: "INBOX".into(),
            uidvalidity: 7,
            uidnext,
            highest_modseq: modseq,
            messages: Arc::new(msgs),
        }
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn set(items: &[(u32, Option<u32>)]) -> SequenceSet {
        SequenceSet(
            items
                .iter()
                .map(|&(a, b)| {
                    let a = hermes_proto::imap::SeqNum::Value(NonZeroU32::new(a).unwrap());
                    match b {
                        None => SeqItem::Single(a),
                        Some(0) => SeqItem::Range(a, hermes_proto::imap::SeqNum::Largest),
                        Some(b) => SeqItem::Range(a, hermes_proto::imap::SeqNum::Value(NonZeroU32::new(b).unwrap())),
                    }
                })
                .collect(),
        )
    }

    #[test]
    fn new_messages_then_flag_changes() {
        let mut s = Selected::open(view(vec![meta(1, 1, &[]), meta(2, 2, &[])], 2, 3), false);
        let mut out = Vec::new();
        s.sync(view(vec![meta(1, 4, &["\\Seen"]), meta(2, 2, &[]), meta(3, 3, &[])], 4, 4), true, &mut out);
        assert_eq!(text(&out), "* 3 EXISTS\r\n* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n");
        let mut out = Vec::new();
        s.sync(view(vec![meta(1, 4, &["\\Seen"]), meta(2, 2, &[]), meta(3, 3, &[])], 4, 4), true, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn expunges_highest_first_and_deferred_when_not_allowed() {
        let mut s =
            Selected::open(view(vec![meta(1, 1, &[]), meta(2, 1, &[]), meta(3, 1, &[]), meta(4, 1, &[])], 1, 5), false);
        let after = view(vec![meta(1, 1, &[]), meta(3, 1, &[])], 2, 5);
        let mut out = Vec::new();
        s.sync(after.clone(), false, &mut out);
        assert!(out.is_empty(), "{}", text(&out));
        assert_eq!(s.exists(), 4);
        assert!(s.meta(2).is_none());
        assert_eq!(s.resolve(&set(&[(1, Some(0))]), false).unwrap().len(), 4);
        s.sync(after, true, &mut out);
        assert_eq!(text(&out), "* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n");
        assert_eq!(s.uids(), &[1, 3]);
        assert_eq!(s.msn_of(3), Some(2));
    }

    #[test]
    fn own_reported_changes_are_not_repeated() {
        let mut s = Selected::open(view(vec![meta(1, 1, &[])], 1, 2), false);
        s.note_reported(1, 2);
        let mut out = Vec::new();
        s.sync(view(vec![meta(1, 2, &["\\Flagged"])], 2, 2), true, &mut out);
        assert!(out.is_empty(), "{}", text(&out));
    }

    #[test]
    fn new_keyword_announces_flags() {
        let mut s = Selected::open(view(vec![meta(1, 1, &[])], 1, 2), false);
        let mut out = Vec::new();
        s.sync(view(vec![meta(1, 2, &["$Junk"])], 2, 2), true, &mut out);
        let t = text(&out);
        assert!(t.starts_with("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)\r\n"), "{t}");
        assert!(t.contains("[PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk \\*)]"), "{t}");
        assert!(t.ends_with("* 1 FETCH (UID 1 FLAGS ($Junk))\r\n"), "{t}");
    }

    #[test]
    fn qresync_reports_vanished_and_condstore_modseq() {
        let mut s =
            Selected::open(view(vec![meta(1, 1, &[]), meta(2, 1, &[]), meta(3, 1, &[]), meta(5, 1, &[])], 1, 6), false);
        s.qresync = true;
        s.condstore = true;
        let mut out = Vec::new();
        s.sync(view(vec![meta(1, 3, &["\\Seen"]), meta(5, 1, &[])], 3, 6), true, &mut out);
        assert_eq!(text(&out), "* VANISHED 2:3\r\n* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (3))\r\n");
        assert_eq!(s.uids(), &[1, 5]);
        assert_eq!(s.highest_modseq(), 3);
    }

    #[test]
    fn resolve_msn_and_uid_sets() {
        let s = Selected::open(view(vec![meta(3, 1, &[]), meta(7, 1, &[]), meta(9, 1, &[])], 1, 10), false);
        assert_eq!(s.resolve(&set(&[(2, Some(0))]), false).unwrap(), vec![(2, 7), (3, 9)]);
        assert_eq!(s.resolve(&set(&[(4, None)]), false), Err(InvalidMsn));
        assert_eq!(s.resolve(&set(&[(1, Some(8))]), true).unwrap(), vec![(1, 3), (2, 7)]);
        // `UID 20:*` on a mailbox whose largest UID is 9 is `9:20`: the last message.
        assert_eq!(s.resolve(&set(&[(20, Some(0))]), true).unwrap(), vec![(3, 9)]);
        assert!(s.resolve(&set(&[(100, None)]), true).unwrap().is_empty());
    }
}
